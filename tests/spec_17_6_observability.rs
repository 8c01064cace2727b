//! SPEC §17.6 observability of `symphony run`: structured logs carrying `issue_id`,
//! `issue_identifier` and `session_id` (JSON and text), log sinks that fail without stopping
//! the run, token totals that stay correct across repeated absolute updates, and dispatch
//! validation failures that operators can see.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use symphony_tests::{Daemon, IssueSpec, Repo, issues_text, text, wait_for, workflow};

const LIMIT: Duration = Duration::from_secs(60);

fn handing_off() -> String {
    workflow(
        "workspace:\n  root: workspaces\nrunner:\n  kind: shell\n  command: echo hello; mkdir -p .symphony && printf '{\"summary\":\"done\"}' > .symphony/handoff.json",
    )
}

#[test]
fn spec_17_6_json_logs_carry_issue_and_session_context() {
    let repo = Repo::new(&issues_text(&[IssueSpec::todo("O-1")]), &handing_off());
    let out = repo.run_once(&["--log-format", "json", "--log-level", "info"], LIMIT);
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let completed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "attempt completed")
        .unwrap_or_else(|| panic!("no completion line: {stderr}"));
    let span = &completed["span"];
    assert_eq!(span["issue_id"], "O-1");
    assert_eq!(span["issue_identifier"], "O-1");
    let session = span["session_id"].as_str().unwrap();
    assert!(session.starts_with("O-1-"), "{session}");
    assert_eq!(completed["fields"]["session_id"], session);
    assert_eq!(completed["fields"]["outcome"], "handed_off");
    let dispatched = lines
        .iter()
        .find(|l| l["fields"]["message"] == "dispatched")
        .unwrap();
    assert_eq!(dispatched["fields"]["issue_identifier"], "O-1");
}

#[test]
fn spec_17_6_text_logs_are_key_value_lines_with_the_same_context() {
    let repo = Repo::new(&issues_text(&[IssueSpec::todo("O-1")]), &handing_off());
    let out = repo.run_once(&["--log-level", "info"], LIMIT);
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("attempt completed"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("issue_id=O-1"), "{line}");
    assert!(line.contains("issue_identifier=O-1"), "{line}");
    assert!(line.contains("session_id=O-1-"), "{line}");
    assert!(line.contains("outcome=handed_off"), "{line}");
}

#[test]
fn spec_17_6_failing_log_sinks_do_not_stop_the_run() {
    let repo = Repo::new(&issues_text(&[IssueSpec::todo("O-1")]), &handing_off());
    // stderr is a pipe nobody reads (closed: every write fails with EPIPE), and the log file
    // is /dev/full (every write fails with ENOSPC).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = repo.symphony(&[
        "run",
        "--once",
        "--log-level",
        "debug",
        "--log-file",
        "/dev/full",
    ]);
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(repo.state("O-1"), "review");

    let repo = Repo::new(&issues_text(&[IssueSpec::todo("O-2")]), &handing_off());
    let out = repo.run_once(&["--log-file", "/nonexistent-dir/symphony.log"], LIMIT);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains(
            "warning: --log-file /nonexistent-dir/symphony.log: cannot open (No such file or directory (os error 2)); logging to stderr only"
        ),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(repo.state("O-2"), "review");
}

#[test]
fn spec_17_6_token_totals_stay_correct_across_repeated_absolute_updates() {
    // A Claude Code stream-json turn: the result line reports 10 + 1200 + 300 input and 78
    // output tokens. Each of two turns prints it; the runner reports session totals
    // (1588, then 3176), which must not be double counted.
    let turn = r#"{"type":"system","subtype":"init","session_id":"sess-1","tools":[]}
{"type":"assistant","message":{"content":[{"type":"text","text":"Working."}],"usage":{"input_tokens":4,"output_tokens":9}},"session_id":"sess-1"}
{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"sess-1","usage":{"input_tokens":10,"cache_creation_input_tokens":1200,"cache_read_input_tokens":300,"output_tokens":78}}
"#;
    let issues = [IssueSpec::todo("U-1"), IssueSpec::todo("U-2")];
    let repo = Repo::new(
        &issues_text(&issues),
        &workflow(
            "polling:\n  interval_ms: 100\nworkspace:\n  root: workspaces\nagent:\n  max_turns: 2\nrunner:\n  kind: shell\n  output_format: claude_stream_json\n  command: |\n    cat \"$SYMPHONY_REPO_ROOT/turn.jsonl\"\n    if [ \"$SYMPHONY_TURN\" = 2 ]; then mkdir -p .symphony && printf '{\"summary\":\"done\"}' > .symphony/handoff.json; fi",
        ),
    );
    repo.write("turn.jsonl", turn);
    let daemon = Daemon::start(&repo, &[]);
    wait_for(LIMIT, "both issues handed off", || {
        (repo.state("U-1") == "review" && repo.state("U-2") == "review").then_some(())
    });
    let totals = wait_for(LIMIT, "both runs to end", || {
        let state = daemon.state();
        (state["counts"]["running"] == 0).then(|| state["codex_totals"].clone())
    });
    assert_eq!(totals["input_tokens"], 2 * 2 * 1510);
    assert_eq!(totals["output_tokens"], 2 * 2 * 78);
    assert_eq!(totals["total_tokens"], 2 * 2 * 1588);
    let (status, _) = daemon.stop();
    assert_eq!(status.code(), Some(0));
    let manifest = repo.manifest("U-1");
    assert_eq!(manifest["session_id"], "sess-1");
    assert_eq!(manifest["tokens"]["total"], 2 * 1588);
}

#[test]
fn spec_17_6_dispatch_validation_failures_are_operator_visible() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("Q-0").state("done")]),
        &workflow(
            "polling:\n  interval_ms: 100\nworkspace:\n  root: workspaces\nrunner:\n  kind: shell\n  command: exit 0",
        ),
    );
    let daemon = Daemon::start(&repo, &[]);
    repo.write(
        "WORKFLOW.md",
        &workflow(
            "polling:\n  interval_ms: 100\nworkspace:\n  root: workspaces\nrunner:\n  kind: shell",
        ),
    );
    let health = wait_for(LIMIT, "the preflight error in the API", || {
        let health = daemon.state()["workflow"].clone();
        health["preflight_error"].is_string().then_some(health)
    });
    assert_eq!(
        health["preflight_error"],
        "runner.command is missing; set runner.command or runner.preset"
    );
    let (status, logs) = daemon.stop();
    assert_eq!(status.code(), Some(0));
    assert!(
        logs.contains("dispatch preflight failed; no dispatch this tick"),
        "{logs}"
    );
}
