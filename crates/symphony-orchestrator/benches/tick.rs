//! Figures for `symphony run` (printed, not asserted):
//!
//! (a) tick cost with 10 000 issues of ~1 KB in the tracker: candidate fetch (read, parse the
//!     scheduling fields, readiness, claim rules, dispatch order) plus the scheduler's
//!     selection; also the reconciliation read and the heartbeat write of 10 running issues;
//! (b) dispatch latency of a running orchestrator: a ready issue appended to the 10k file →
//!     the agent process writes its marker file; with a 1 s poll interval alone, and with
//!     `POST /api/v1/refresh` right after the append.
//!
//! Run: `cargo bench -p symphony-orchestrator --bench tick`. Medians and p90 over the samples.
//! Agents start in `bash -lc` login shells, so the host user's profile is part of (b); the
//! bench prints `bash -lc true` alone for comparison. To measure the orchestrator without it:
//! `HOME=$(mktemp -d) CARGO_HOME=~/.cargo RUSTUP_HOME=~/.rustup cargo bench …`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use symphony_orchestrator::git_issues::{GitIssues, TrackerSettings};
use symphony_orchestrator::orchestrator::{self, RunOptions};
use symphony_orchestrator::reload::WorkflowStore;
use symphony_orchestrator::scheduler::{Limits, Scheduler};
use symphony_tracker::{StateConfig, Store};
use time::OffsetDateTime;

const ISSUES: usize = 10_000;
const TICK_SAMPLES: usize = 30;
const LATENCY_SAMPLES: usize = 15;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let issues = root.join("issues/issues.jsonl");
    std::fs::create_dir_all(issues.parent().unwrap()).unwrap();
    let bytes = write_backlog(&issues);
    println!(
        "tracker: {ISSUES} issues, {:.1} MB ({} bytes/issue)",
        bytes as f64 / 1e6,
        bytes / ISSUES
    );
    tick_cost(&issues);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "bash -lc true (the shell every hook and agent starts in): {}",
        bash_startup()
    );
    runtime.block_on(dispatch_latency(&root, false));
    runtime.block_on(dispatch_latency(&root, true));
}

/// 10k records of ~1 KB: 30% todo (some blocked by open issues), 10% in_progress,
/// 30% done, 15% review, 15% blocked.
fn write_backlog(path: &Path) -> usize {
    let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(12);
    let mut text = String::with_capacity(ISSUES * 1100);
    for n in 0..ISSUES {
        let state = match n % 20 {
            0..=5 => "todo",
            6..=7 => "in_progress",
            8..=13 => "done",
            14..=16 => "review",
            _ => "blocked",
        };
        let blocker = if n % 3 == 0 && n > 0 {
            format!(
                "{{\"id\":\"B-{:05}\",\"identifier\":\"B-{:05}\"}}",
                n - 1,
                n - 1
            )
        } else {
            String::new()
        };
        text.push_str(&format!(
            "{{\"id\":\"B-{n:05}\",\"identifier\":\"B-{n:05}\",\"title\":\"Backlog item {n}\",\"description\":\"{filler}\",\
             \"priority\":{},\"state\":\"{state}\",\"branch_name\":null,\"url\":null,\"labels\":[\"bench\",\"area-{}\"],\
             \"blocked_by\":[{blocker}],\"created_at\":\"2026-01-01T00:00:00Z\",\"updated_at\":\"2026-01-02T00:00:00Z\"}}\n",
            n % 5,
            n % 7
        ));
    }
    std::fs::write(path, &text).unwrap();
    text.len()
}

fn settings() -> TrackerSettings {
    TrackerSettings {
        states: StateConfig::default(),
        claim_ttl_ms: 600_000,
        required_labels: Vec::new(),
        commit: false,
    }
}

fn tick_cost(issues: &Path) {
    let tracker = GitIssues::new(issues, "bench-node");
    let s = settings();
    let scheduler = Scheduler::new(Limits {
        max_concurrent_agents: 10,
        max_concurrent_agents_by_state: Default::default(),
        max_retry_backoff: Duration::from_secs(300),
    });
    let mut fetch = Vec::new();
    let mut candidates = 0;
    for _ in 0..TICK_SAMPLES {
        let started = Instant::now();
        let found = tracker
            .fetch_candidate_issues(&s, OffsetDateTime::now_utc())
            .unwrap();
        let chosen = scheduler.select(&found.candidates);
        fetch.push(started.elapsed());
        candidates = found.candidates.len();
        assert_eq!(chosen.len(), 10);
    }
    println!(
        "tick (candidate fetch + selection), {candidates} candidates: {}",
        stats(&mut fetch)
    );
    // Ten todo issues (n % 20 == 1) spread over the file, as if running.
    let running: Vec<(String, OffsetDateTime)> = (0..10)
        .map(|k| {
            (
                format!("B-{:05}", k * 997 * 20 % ISSUES + 1),
                OffsetDateTime::now_utc(),
            )
        })
        .collect();
    let mut reconcile = Vec::new();
    for _ in 0..TICK_SAMPLES {
        let started = Instant::now();
        let seen = tracker.fetch_issue_states_by_ids(&s, &running).unwrap();
        reconcile.push(started.elapsed());
        assert_eq!(seen.len(), 10);
    }
    println!(
        "reconciliation read of 10 running issues: {}",
        stats(&mut reconcile)
    );
    let ids: Vec<String> = running.iter().map(|(id, _)| id.clone()).collect();
    for id in &ids {
        tracker.claim(&s, id, OffsetDateTime::now_utc()).unwrap();
    }
    let mut heartbeat = Vec::new();
    for _ in 0..TICK_SAMPLES {
        let started = Instant::now();
        tracker.heartbeat(&ids, OffsetDateTime::now_utc()).unwrap();
        heartbeat.push(started.elapsed());
    }
    println!("heartbeat write of 10 claims: {}", stats(&mut heartbeat));
}

fn bash_startup() -> String {
    let mut samples: Vec<Duration> = (0..10)
        .map(|_| {
            let started = Instant::now();
            std::process::Command::new("bash")
                .args(["-lc", "true"])
                .status()
                .unwrap();
            started.elapsed()
        })
        .collect();
    stats(&mut samples)
}

async fn dispatch_latency(root: &Path, refresh: bool) {
    let poll_ms = 1000;
    let markers = root.join("markers");
    std::fs::create_dir_all(&markers).unwrap();
    let workflow = root.join("WORKFLOW.md");
    std::fs::write(
        &workflow,
        format!(
            "---\ntracker:\n  kind: git_issues\npolling:\n  interval_ms: {poll_ms}\nworkspace:\n  root: workspaces\n\
             agent:\n  max_concurrent_agents: 4\nrunner:\n  kind: shell\n  command: |\n    touch \"$SYMPHONY_REPO_ROOT/markers/$SYMPHONY_ISSUE_ID\"\n    \
             mkdir -p .symphony && printf '{{\"summary\":\"ok\"}}' > .symphony/handoff.json\n---\nWork on {{{{ issue.identifier }}}}.\n"
        ),
    )
    .unwrap();
    let store = WorkflowStore::open(&workflow).unwrap();
    // Nothing may be ready before the measurement starts: park the backlog's todo issues.
    let issues = root.join("issues/issues.jsonl");
    let text = std::fs::read_to_string(&issues).unwrap();
    std::fs::write(
        &issues,
        text.replace("\"state\":\"todo\"", "\"state\":\"blocked\"")
            .replace("\"state\":\"in_progress\"", "\"state\":\"blocked\""),
    )
    .unwrap();
    let mut service = orchestrator::start(
        store,
        RunOptions {
            node_id: "bench-node".into(),
            once: false,
            port: Some(0),
            symphony_bin: None,
        },
    )
    .await
    .unwrap();
    let port = service.http_addr().unwrap().port();
    let tracker = Store::new(&issues);
    let mut samples = Vec::new();
    for n in 0..LATENCY_SAMPLES {
        let id = format!("NEW-{}-{n:03}", if refresh { "r" } else { "p" });
        // Spread the appends over the poll cycle.
        tokio::time::sleep(Duration::from_millis(137 * (n as u64 % 7) + 50)).await;
        let record: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "id": id, "identifier": id, "title": "new", "description": null, "priority": 1,
            "state": "todo", "branch_name": null, "url": null, "labels": [], "blocked_by": [],
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        tracker.transact(|tx| tx.append(record)).unwrap();
        let started = Instant::now();
        if refresh {
            post_refresh(port);
        }
        let marker: PathBuf = markers.join(&id);
        while !marker.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{id} never started"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(started.elapsed());
    }
    service.shutdown();
    service.wait().await;
    let mode = if refresh {
        "with POST /api/v1/refresh"
    } else {
        "poll interval 1000 ms alone"
    };
    println!(
        "dispatch latency, new ready issue → agent process running ({mode}): {}",
        stats(&mut samples)
    );
}

fn post_refresh(port: u16) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"POST /api/v1/refresh HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
}

fn stats(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms (n={})",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
        samples.len()
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
