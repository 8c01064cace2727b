//! Human renderings of a node's diagnostics document (`symphony_mesh::Diagnostics` as JSON;
//! docs/mesh.md, "Diagnostics"). Read by JSON pointer, so a field a node does not report
//! shows as `?` instead of failing.

use std::fmt::Write as _;

use serde_json::Value;

fn num(doc: &Value, pointer: &str) -> String {
    match doc.pointer(pointer) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "?".to_string(),
    }
}

fn u64_at(doc: &Value, pointer: &str) -> u64 {
    doc.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

fn short(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}

fn duration(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

fn kinds(doc: &Value, pointer: &str) -> String {
    [
        "eager",
        "ihave",
        "iwant",
        "graft",
        "prune",
        "membership",
        "direct",
    ]
    .iter()
    .map(|k| format!("{k} {}", num(doc, &format!("{pointer}/{k}"))))
    .collect::<Vec<_>>()
    .join(", ")
}

/// Non-zero counters of an object, as `name n` pairs; `none` when all are zero.
fn nonzero(doc: &Value, pointer: &str) -> String {
    let mut parts = Vec::new();
    if let Some(Value::Object(map)) = doc.pointer(pointer) {
        for (name, value) in map {
            match value {
                Value::Number(n) if n.as_u64() != Some(0) => parts.push(format!("{name} {n}")),
                Value::Object(_) => {
                    let inner = nonzero(value, "");
                    if inner != "none" {
                        parts.push(format!("{name}: {inner}"));
                    }
                }
                _ => {}
            }
        }
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

/// `symphony mesh status`: the whole document with `--json`, else a summary.
///
/// # Errors
/// Only when JSON serialization fails.
pub fn status(doc: &Value, json: bool) -> anyhow::Result<String> {
    if json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(doc)?));
    }
    let mut out = String::new();
    let line = |out: &mut String, label: &str, value: String| {
        let _ = writeln!(out, "{label:<10}{value}");
    };
    line(&mut out, "node", num(doc, "/node_id"));
    line(
        &mut out,
        "listen",
        format!(
            "{} (advertised {})",
            num(doc, "/local_addr"),
            num(doc, "/advertised_addr")
        ),
    );
    line(&mut out, "uptime", duration(u64_at(doc, "/uptime_ms")));
    line(
        &mut out,
        "views",
        format!(
            "active {}, passive {}, lost {}, connected {}, pending {}",
            num(doc, "/views/active"),
            num(doc, "/views/passive"),
            num(doc, "/views/lost"),
            num(doc, "/views/connected"),
            num(doc, "/views/pending_requests"),
        ),
    );
    line(&mut out, "sent", kinds(doc, "/messages/sent"));
    line(&mut out, "received", kinds(doc, "/messages/received"));
    line(&mut out, "drops", nonzero(doc, "/drops"));
    line(&mut out, "timeouts", nonzero(doc, "/timeouts"));
    let cooled = doc
        .pointer("/cooled")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|c| {
                    format!(
                        "{} for {} ms (backoff {} ms)",
                        short(&num(c, "/peer")),
                        num(c, "/until_in_ms"),
                        num(c, "/backoff_ms")
                    )
                })
                .collect::<Vec<_>>()
        })
        .filter(|list| !list.is_empty())
        .map_or_else(|| "none".to_string(), |list| list.join("; "));
    line(&mut out, "cooled", cooled);
    line(
        &mut out,
        "queues",
        format!(
            "events {}/{}, api {}, direct inbox {}, control backlog {}, timers {}",
            num(doc, "/queues/events/depth"),
            num(doc, "/queues/events/capacity"),
            num(doc, "/queues/api"),
            num(doc, "/queues/direct_inbox"),
            num(doc, "/queues/control_backlog"),
            num(doc, "/queues/timers"),
        ),
    );
    line(
        &mut out,
        "direct",
        format!(
            "sent {}, received {}, relayed {}, pending {}, timeouts {}, unreachable {}",
            num(doc, "/direct/sent"),
            num(doc, "/direct/received"),
            num(doc, "/direct/forwarded"),
            num(doc, "/direct/pending"),
            num(doc, "/direct/timeouts"),
            num(doc, "/direct/unreachable"),
        ),
    );
    Ok(out)
}

/// `symphony mesh peers`: the `peers` array with `--json`, else a table.
///
/// # Errors
/// Only when JSON serialization fails.
pub fn peers(doc: &Value, json: bool) -> anyhow::Result<String> {
    let empty = Vec::new();
    let peers = doc
        .pointer("/peers")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    if json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(peers)?));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16}  {:<9}  {:<21}  {:<4}  {:>6}  {:>8}  {:>7}  {:>7}  {:>6}  {:>6}  {:>5}  {:>5}",
        "NODE",
        "VIEW",
        "ADDR",
        "CONN",
        "SCORE",
        "COOLED",
        "EAGER>",
        "EAGER<",
        "IHAVE>",
        "DUPS",
        "TMOUT",
        "QUEUE"
    );
    for p in peers {
        let cooled = p
            .pointer("/cooled/until_in_ms")
            .and_then(Value::as_u64)
            .map_or_else(|| "-".to_string(), |ms| format!("{ms}ms"));
        let score = p
            .pointer("/score")
            .and_then(Value::as_f64)
            .map_or_else(|| "?".to_string(), |s| format!("{s:.1}"));
        let addr = match p.pointer("/addr") {
            Some(Value::String(a)) => a.clone(),
            _ => "-".to_string(),
        };
        let connected = if p.pointer("/connected") == Some(&Value::Bool(true)) {
            "yes"
        } else {
            "no"
        };
        let _ = writeln!(
            out,
            "{:<16}  {:<9}  {:<21}  {:<4}  {:>6}  {:>8}  {:>7}  {:>7}  {:>6}  {:>6}  {:>5}  {:>5}",
            short(&num(p, "/node_id")),
            num(p, "/view"),
            addr,
            connected,
            score,
            cooled,
            num(p, "/messages/sent/eager"),
            num(p, "/messages/received/eager"),
            num(p, "/messages/sent/ihave"),
            num(p, "/duplicates"),
            num(p, "/send_timeouts"),
            num(p, "/queues/control/frames"),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({
            "node_id": "ab".repeat(32),
            "local_addr": "127.0.0.1:7400",
            "advertised_addr": "10.0.0.1:7400",
            "uptime_ms": 3_723_000,
            "views": {"active": 5, "passive": 12, "lost": 0, "connected": 6, "pending_requests": 0},
            "messages": {"sent": {"eager": 10}, "received": {"eager": 9}},
            "drops": {"subscriber_queue_full": 3, "on_close": 0,
                      "stream_violations": {"oversized": 1, "truncated": 0}},
            "timeouts": {"send": 0},
            "cooled": [{"peer": "cd".repeat(32), "until_in_ms": 1200, "backoff_ms": 2000}],
            "peers": [{"node_id": "cd".repeat(32), "addr": "10.0.0.2:7400", "view": "active",
                       "connected": true, "score": 1.25,
                       "cooled": {"until_in_ms": 1200},
                       "messages": {"sent": {"eager": 4, "ihave": 2}, "received": {"eager": 3}},
                       "duplicates": 1, "send_timeouts": 2,
                       "queues": {"control": {"frames": 7}}}]
        })
    }

    #[test]
    fn status_summarises_views_drops_and_cooling() {
        let text = status(&doc(), false).unwrap();
        assert!(text.contains("uptime    1h 02m 03s"), "{text}");
        assert!(text.contains("active 5, passive 12"), "{text}");
        assert!(text.contains("drops     subscriber_queue_full 3, stream_violations: oversized 1"));
        assert!(text.contains("timeouts  none"));
        assert!(text.contains("cdcdcdcdcdcdcdcd for 1200 ms (backoff 2000 ms)"));
        assert!(text.contains("received  eager 9, ihave ?"), "{text}");
        let json: Value = serde_json::from_str(&status(&doc(), true).unwrap()).unwrap();
        assert_eq!(json, doc());
    }

    #[test]
    fn peers_renders_one_row_per_peer() {
        let text = peers(&doc(), false).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NODE"));
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "cdcdcdcdcdcdcdcd",
                "active",
                "10.0.0.2:7400",
                "yes",
                "1.2",
                "1200ms",
                "4",
                "3",
                "2",
                "1",
                "2",
                "7"
            ]
        );
        let json: Value = serde_json::from_str(&peers(&doc(), true).unwrap()).unwrap();
        assert_eq!(json, doc()["peers"]);
    }
}
