//! SPEC §11.1 / §11.3 on a real tracker file holding one record per kind of defect seen in
//! real files, beside ready issues: the real `symphony run` daemon dispatches the ready
//! issues, names every bad record with its line in the log and in `/api/v1/state`, and
//! changes no line of the file but the dispatched issues' own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::Value;
use symphony_tests::{Daemon, IssueSpec, Repo, wait_for, workflow};

const LIMIT: Duration = Duration::from_secs(60);

/// Writes a handoff file: the agent's normal way out.
const HANDOFF: &str =
    "mkdir -p .symphony && printf '{\"summary\":\"done\"}' > .symphony/handoff.json";

/// The tracker file, one line per entry: (id, line, dispatched?, bad?).
fn tracker_file() -> Vec<(&'static str, String, bool, bool)> {
    let todo = |id: &str| IssueSpec::todo(id).line();
    vec![
        ("R-1", todo("R-1"), true, false),
        (
            "D-1",
            IssueSpec::todo("D-1").state("done").line(),
            false,
            false,
        ),
        // A bare id string where the schema wants a ref object: read as the ref (D-1 is
        // done, so S-1 is ready), warned about.
        (
            "S-1",
            todo("S-1").replace("\"blocked_by\":[]", "\"blocked_by\":[\"D-1\"]"),
            true,
            true,
        ),
        // A state no list names: never dispatched, named.
        (
            "U-1",
            IssueSpec::todo("U-1").state("wontfix").line(),
            false,
            true,
        ),
        // A priority out of range: sorted as no priority (still dispatched), named.
        (
            "P-1",
            IssueSpec::todo("P-1").priority(Some(7)).line(),
            true,
            true,
        ),
        ("R-2", todo("R-2"), true, false),
        // A string where a list is expected: cannot be normalized, left out.
        (
            "L-1",
            todo("L-1").replace("\"labels\":[\"test\"]", "\"labels\":\"test\""),
            false,
            true,
        ),
        // An id defined twice: both records left out.
        ("X-1", todo("X-1"), false, true),
        ("R-3", todo("R-3"), true, false),
        (
            "X-1",
            todo("X-1").replace("Work on X-1", "Other X-1"),
            false,
            true,
        ),
    ]
}

fn finding_lines(state: &Value) -> Vec<u64> {
    let mut lines: Vec<u64> = state["tracker"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    lines.dedup();
    lines
}

#[test]
fn spec_11_1_one_bad_record_per_defect_the_ready_issues_are_dispatched_and_the_bad_ones_named() {
    let entries = tracker_file();
    let text: String = entries
        .iter()
        .map(|(_, line, _, _)| format!("{line}\n"))
        .collect();
    let repo = Repo::new(
        &text,
        &workflow(&format!(
            "polling:\n  interval_ms: 100\nworkspace:\n  root: workspaces\nrunner:\n  kind: shell\n  command: |\n    {HANDOFF}"
        )),
    );
    let daemon = Daemon::start(&repo, &[]);
    let dispatched: Vec<&str> = entries.iter().filter(|e| e.2).map(|e| e.0).collect();
    wait_for(LIMIT, "every ready issue handed off", || {
        dispatched
            .iter()
            .all(|id| repo.state(id) == "review")
            .then_some(())
    });
    let state = daemon.state();
    let bad_lines: Vec<u64> = (1..=entries.len() as u64)
        .filter(|&n| entries[n as usize - 1].3)
        .collect();
    assert_eq!(finding_lines(&state), bad_lines, "{}", state["tracker"]);
    let findings = state["tracker"]["findings"].as_array().unwrap();
    let omitted: Vec<u64> = findings
        .iter()
        .filter(|f| f["omitted"] == true)
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    assert_eq!(
        omitted,
        [7, 8, 10],
        "labels not a list, and both X-1 records"
    );
    assert_eq!(state["tracker"]["fetch_error"], Value::Null);
    let (status, logs) = daemon.stop();
    assert!(status.success(), "{logs}");
    for line in &bad_lines {
        assert!(
            logs.contains(&format!("issues.jsonl:{line}:")),
            "line {line} is named in the log: {logs}"
        );
    }
    for failure in [
        "candidate fetch failed",
        "startup cleanup skipped",
        "restart recovery skipped",
        "tracker states not readable",
    ] {
        assert!(!logs.contains(failure), "{failure}: {logs}");
    }
    // Nothing else changed: every line but the dispatched issues' is byte-identical.
    let after = repo.issues();
    let after: Vec<&str> = after.lines().collect();
    assert_eq!(after.len(), entries.len());
    for ((id, before, was_dispatched, _), now) in entries.iter().zip(after) {
        if *was_dispatched {
            assert_ne!(&now, before, "{id} was handed off");
        } else {
            assert_eq!(&now, before, "{id}'s line is untouched");
        }
    }
}
