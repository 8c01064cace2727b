//! SPEC §17.4 orchestrator dispatch, reconciliation and retry, end to end: the real
//! `symphony` binary over real git repositories, bash agents as real processes, the HTTP API
//! on 127.0.0.1. Includes the failure paths: agent command not found, agent crash, agent
//! hanging (stall), issue moved to `done` or `blocked` by a human mid-run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::Value;
use symphony_tests::{
    Daemon, IssueSpec, Repo, alive, issues_text, run_bounded, text, wait_for, workflow,
};
use symphony_tracker::{StateConfig, Store, ops};

const LIMIT: Duration = Duration::from_secs(60);

/// Writes a handoff file: the agent's normal way out.
const HANDOFF: &str =
    "mkdir -p .symphony && printf '{\"summary\":\"done\"}' > .symphony/handoff.json";

/// An agent that records its pid and works (printing, so it never looks stalled) until
/// killed.
const BUSY: &str = "echo $$ > \"$SYMPHONY_REPO_ROOT/markers/$SYMPHONY_ISSUE_ID.pid\"; while true; do echo working; sleep 0.1; done";

fn front(runner_command: &str, extra: &str) -> String {
    workflow(&format!(
        "polling:\n  interval_ms: 100\nworkspace:\n  root: workspaces\n{extra}\nrunner:\n  kind: shell\n  command: |\n    mkdir -p \"$SYMPHONY_REPO_ROOT/markers\"\n    {runner_command}"
    ))
}

fn wait_pid(repo: &Repo, id: &str) -> u32 {
    wait_for(LIMIT, &format!("the agent of {id} to start"), || {
        std::fs::read_to_string(repo.path(&format!("markers/{id}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    })
}

fn retry_row(daemon: &Daemon, id: &str) -> Option<Value> {
    daemon.state()["retrying"]
        .as_array()?
        .iter()
        .find(|r| r["issue_id"] == id)
        .cloned()
}

fn seconds_between(from: &Value, to: &Value) -> i64 {
    let parse = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    (parse(to) - parse(from)).whole_seconds()
}

/// What a human does with `symphony issues close` / `update`: a locked tracker write.
fn human_sets_state(repo: &Repo, id: &str, state: &str) {
    let store = Store::new(repo.issues_path());
    let states = StateConfig::default();
    store
        .transact(|tx| {
            if states.is_terminal(state) {
                ops::close(tx, id, Some(state), &states).map(|_| ())
            } else {
                let change = ops::IssueUpdate {
                    state: Some(state.into()),
                    ..ops::IssueUpdate::default()
                };
                ops::update(tx, id, &change, &states).map(|_| ())
            }
        })
        .unwrap();
}

#[test]
fn spec_17_4_dispatch_order_is_priority_then_age_and_open_blockers_hold_todo_issues() {
    let issues = [
        IssueSpec::todo("A-1").priority(Some(3)),
        IssueSpec::todo("A-2")
            .priority(Some(1))
            .created("2026-02-01T00:00:00Z"),
        IssueSpec::todo("A-3")
            .priority(Some(1))
            .created("2026-01-15T00:00:00Z"),
        IssueSpec::todo("A-4")
            .priority(None)
            .created("2025-01-01T00:00:00Z"),
        IssueSpec::todo("A-5").blocked_by(&["A-9"]),
        IssueSpec::todo("A-6")
            .priority(Some(1))
            .blocked_by(&["A-1"]),
        IssueSpec::todo("A-9").state("done"),
    ];
    let repo = Repo::new(
        &issues_text(&issues),
        &front(
            &format!(
                "echo \"$SYMPHONY_ISSUE_ID\" >> \"$SYMPHONY_REPO_ROOT/markers/order\"; {HANDOFF}"
            ),
            "agent:\n  max_concurrent_agents: 1",
        ),
    );
    let daemon = Daemon::start(&repo, &[]);
    let order = wait_for(LIMIT, "five dispatches", || {
        let order = std::fs::read_to_string(repo.path("markers/order")).ok()?;
        let all_handed_off = ["A-1", "A-2", "A-3", "A-4", "A-5"]
            .iter()
            .all(|id| repo.state(id) == "review");
        (order.lines().count() >= 5 && all_handed_off).then_some(order)
    });
    // Two more poll intervals: A-6 must stay put (its blocker A-1 is in review, not terminal).
    std::thread::sleep(Duration::from_millis(300));
    let (status, logs) = daemon.stop();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        ["A-3", "A-2", "A-5", "A-1", "A-4"],
        "priority, then oldest, null priority last; A-5's blocker is done"
    );
    assert_eq!(repo.state("A-6"), "todo");
    assert!(repo.attempt_dirs("A-6").is_empty());
}

#[test]
fn spec_17_4_issue_moved_to_done_mid_run_stops_the_agent_and_cleans_the_workspace() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("D-1")]),
        &front(
            BUSY,
            "hooks:\n  before_remove: touch \"$SYMPHONY_REPO_ROOT/markers/before_remove.ran\"",
        ),
    );
    let run = std::thread::spawn({
        let cmd = repo.symphony(&["run", "--once", "WORKFLOW.md"]);
        move || run_bounded(cmd, LIMIT)
    });
    let pid = wait_pid(&repo, "D-1");
    assert!(repo.path("workspaces/D-1").is_dir());
    human_sets_state(&repo, "D-1", "done");
    let out = run.join().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stopped by reconciliation is as designed: {stdout}"
    );
    assert!(stdout.contains("stopped: terminal"), "{stdout}");
    wait_for(Duration::from_secs(5), "the agent to be killed", || {
        (!alive(pid)).then_some(())
    });
    assert!(
        !repo.path("workspaces/D-1").exists(),
        "terminal workspace cleaned"
    );
    assert!(repo.path("markers/before_remove.ran").exists());
    let record = repo.record("D-1");
    assert_eq!(record["state"], "done", "the human's decision stands");
    assert!(record.get("claim").is_none(), "claim released");
    let manifest = repo.manifest("D-1");
    assert_eq!(manifest["outcome"], "stopped");
    assert!(
        manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "agent.stdout.log")
    );
}

#[test]
fn spec_17_4_issue_moved_to_a_non_active_state_stops_the_agent_and_keeps_the_workspace() {
    let repo = Repo::new(&issues_text(&[IssueSpec::todo("B-1")]), &front(BUSY, ""));
    let run = std::thread::spawn({
        let cmd = repo.symphony(&["run", "--once", "WORKFLOW.md"]);
        move || run_bounded(cmd, LIMIT)
    });
    let pid = wait_pid(&repo, "B-1");
    human_sets_state(&repo, "B-1", "blocked");
    let out = run.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("stopped: inactive"),
        "{}",
        text(&out.stdout)
    );
    wait_for(Duration::from_secs(5), "the agent to be killed", || {
        (!alive(pid)).then_some(())
    });
    assert!(repo.path("workspaces/B-1").is_dir(), "workspace kept");
    let record = repo.record("B-1");
    assert_eq!(record["state"], "blocked");
    assert!(record.get("claim").is_none());
}

#[test]
fn spec_17_4_active_issue_gets_continuation_turns_up_to_max_turns() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("C-1")]),
        &front(
            &format!("if [ \"$SYMPHONY_TURN\" = 2 ]; then {HANDOFF}; fi"),
            "agent:\n  max_turns: 3",
        ),
    );
    let out = repo.run_once(&[], LIMIT);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(repo.state("C-1"), "review");
    let manifest = repo.manifest("C-1");
    assert_eq!(manifest["turns"], 2);
    let dir = &repo.attempt_dirs("C-1")[0];
    let prompt = std::fs::read_to_string(dir.join("prompt.md")).unwrap();
    assert!(
        prompt.starts_with("Continue working on the same issue (turn 2 of at most 3)"),
        "{prompt}"
    );
}

#[test]
fn spec_17_4_normal_exit_schedules_a_short_continuation_retry_attempt_1() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("N-1")]),
        &front(
            &format!("if [ \"$SYMPHONY_ATTEMPT\" != 0 ]; then {HANDOFF}; fi"),
            "agent:\n  max_turns: 1",
        ),
    );
    let daemon = Daemon::start(&repo, &[]);
    let retry = wait_for(LIMIT, "a continuation retry", || retry_row(&daemon, "N-1"));
    assert_eq!(retry["kind"], "continuation");
    assert_eq!(retry["attempt"], 1);
    assert!(retry["error"].is_null());
    wait_for(LIMIT, "the continuation to hand off", || {
        (repo.state("N-1") == "review").then_some(())
    });
    let (status, _) = daemon.stop();
    assert_eq!(status.code(), Some(0));
    let dirs = repo.attempt_dirs("N-1");
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    let first: Value =
        serde_json::from_str(&std::fs::read_to_string(dirs[0].join("manifest.json")).unwrap())
            .unwrap();
    let second: Value =
        serde_json::from_str(&std::fs::read_to_string(dirs[1].join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(first["outcome"], "continuation");
    assert_eq!(second["attempt"], 1);
    assert_eq!(second["outcome"], "handed_off");
}

#[test]
fn spec_8_4_a_due_retry_that_finds_its_issue_terminal_removes_the_workspace() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("T-1")]),
        &front("true", "agent:\n  max_turns: 1"),
    );
    let daemon = Daemon::start(&repo, &[]);
    wait_for(LIMIT, "a continuation retry", || retry_row(&daemon, "T-1"));
    let workspace = repo.path("workspaces/T-1");
    assert!(workspace.is_dir());
    // Closed by a human while the retry waits (1 s): no worker runs, so only the retry
    // path can clean the workspace (SPEC §8.4 / §16.6 on_retry_timer).
    human_sets_state(&repo, "T-1", "done");
    wait_for(LIMIT, "the retry to be released", || {
        retry_row(&daemon, "T-1").is_none().then_some(())
    });
    wait_for(
        Duration::from_secs(10),
        "the workspace to be removed",
        || (!workspace.exists()).then_some(()),
    );
    let (status, logs) = daemon.stop();
    assert_eq!(status.code(), Some(0));
    assert!(logs.contains("retry released"), "{logs}");
    assert!(
        logs.contains("workspace of a terminal issue cleaned"),
        "{logs}"
    );
}

#[test]
fn spec_17_4_agent_crash_retries_with_10s_based_backoff_and_keeps_its_output() {
    let crash = "echo boom-on-stderr >&2; exit 3";
    let repo = Repo::new(&issues_text(&[IssueSpec::todo("X-1")]), &front(crash, ""));
    let daemon = Daemon::start(&repo, &[]);
    let snapshot = wait_for(LIMIT, "a failure retry", || {
        let state = daemon.state();
        state["retrying"].as_array()?.first()?;
        Some(state)
    });
    let retry = &snapshot["retrying"][0];
    assert_eq!(retry["kind"], "failure");
    assert_eq!(retry["attempt"], 1);
    let error = retry["error"].as_str().unwrap();
    assert!(
        error.starts_with("agent_crashed: agent exited with code Some(3)"),
        "{error}"
    );
    assert!(error.contains("boom-on-stderr"), "{error}");
    let delay = seconds_between(&snapshot["generated_at"], &retry["due_at"]);
    assert!(
        (8..=10).contains(&delay),
        "first failure backs off 10 s, got {delay}"
    );
    let (status, _) = daemon.stop();
    assert_eq!(status.code(), Some(0));
    let dir = &repo.attempt_dirs("X-1")[0];
    let stderr = std::fs::read_to_string(dir.join("agent.stderr.log")).unwrap();
    assert_eq!(stderr, "boom-on-stderr\n", "nothing lost");
    let manifest = repo.manifest("X-1");
    assert_eq!(manifest["error"]["kind"], "agent_crashed");
    let record = repo.record("X-1");
    assert_eq!(record["state"], "in_progress");
    assert!(record.get("claim").is_none(), "released for the retry");
}

#[test]
fn spec_17_4_retry_backoff_is_capped_by_max_retry_backoff_ms_and_attempts_grow() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("X-1")]),
        &front("exit 1", "agent:\n  max_retry_backoff_ms: 700"),
    );
    let daemon = Daemon::start(&repo, &[]);
    let snapshot = wait_for(LIMIT, "the third failure", || {
        let state = daemon.state();
        let attempt = state["retrying"].as_array()?.first()?["attempt"].as_u64()?;
        (attempt >= 3).then_some(state)
    });
    let retry = &snapshot["retrying"][0];
    assert!(seconds_between(&snapshot["generated_at"], &retry["due_at"]) <= 1);
    let (status, _) = daemon.stop();
    assert_eq!(status.code(), Some(0));
    assert!(repo.attempt_dirs("X-1").len() >= 3);
}

#[test]
fn spec_17_4_agent_command_not_found_fails_the_attempt_with_its_kind() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("M-1")]),
        &workflow(
            "workspace:\n  root: workspaces\nrunner:\n  kind: shell\n  command: no-such-agent-binary-xyz --go",
        ),
    );
    let out = repo.run_once(&[], LIMIT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("agent_not_found: agent command not found"),
        "{stdout}"
    );
    assert!(stdout.contains("1 not as designed"), "{stdout}");
    let manifest = repo.manifest("M-1");
    assert_eq!(manifest["error"]["kind"], "agent_not_found");
    let dir = &repo.attempt_dirs("M-1")[0];
    let stderr = std::fs::read_to_string(dir.join("agent.stderr.log")).unwrap();
    assert!(stderr.contains("no-such-agent-binary-xyz"), "{stderr}");
    let record = repo.record("M-1");
    assert_eq!(record["state"], "in_progress");
    assert!(record.get("claim").is_none());
}

#[test]
fn spec_17_4_stalled_agent_is_killed_and_retried() {
    let hang =
        "echo $$ > \"$SYMPHONY_REPO_ROOT/markers/$SYMPHONY_ISSUE_ID.pid\"; echo started; sleep 60";
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("H-1")]),
        &front(hang, "").replace(
            "  kind: shell\n",
            "  kind: shell\n  stall_timeout_ms: 500\n",
        ),
    );
    let daemon = Daemon::start(&repo, &[]);
    let pid = wait_pid(&repo, "H-1");
    let retry = wait_for(LIMIT, "a stall retry", || retry_row(&daemon, "H-1"));
    assert!(
        retry["error"].as_str().unwrap().contains("stalled"),
        "{retry}"
    );
    assert_eq!(retry["kind"], "failure");
    assert!(!alive(pid), "the hanging agent was killed");
    let (status, _) = daemon.stop();
    assert_eq!(status.code(), Some(0));
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(repo.attempt_dirs("H-1")[0].join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["error"]["kind"], "stalled");
}

#[test]
fn spec_17_4_slot_exhaustion_requeues_retries_with_the_reason() {
    let issues = [
        IssueSpec::todo("S-1").priority(Some(1)),
        IssueSpec::todo("S-2").priority(Some(2)),
    ];
    let command = format!("if [ \"$SYMPHONY_ISSUE_ID\" = S-1 ]; then exit 1; fi; {BUSY}");
    let repo = Repo::new(
        &issues_text(&issues),
        &front(
            &command,
            "agent:\n  max_concurrent_agents: 1\n  max_retry_backoff_ms: 300",
        ),
    );
    let daemon = Daemon::start(&repo, &[]);
    let retry = wait_for(LIMIT, "a requeued retry", || {
        retry_row(&daemon, "S-1").filter(|r| r["error"] == "no available orchestrator slots")
    });
    assert!(retry["attempt"].as_u64().unwrap() >= 2);
    let state = daemon.state();
    assert_eq!(state["running"][0]["issue_id"], "S-2");
    assert_eq!(state["counts"]["running"], 1);
    let (status, _) = daemon.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn spec_13_3_snapshot_rate_limits_are_the_latest_payload_the_agent_reported() {
    let fake = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/symphony-orchestrator/tests/fixtures/agents/fake_app_server.py");
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("R-1")]),
        &workflow(&format!(
            "polling:\n  interval_ms: 100\nworkspace:\n  root: workspaces\nagent:\n  max_turns: 1\nrunner:\n  kind: codex\n  command: python3 '{}' normal record.jsonl",
            fake.display()
        )),
    );
    let daemon = Daemon::start(&repo, &[]);
    let state = wait_for(LIMIT, "rate limits in the snapshot", || {
        let state = daemon.state();
        (!state["rate_limits"].is_null()).then_some(state)
    });
    assert_eq!(
        state["rate_limits"],
        serde_json::json!({"primary": {"usedPercent": 12.5, "windowDurationMins": 300}, "secondary": null})
    );
    assert!(state["codex_totals"]["total_tokens"].as_u64().unwrap() >= 150);
    let (status, _) = daemon.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn spec_17_4_snapshot_api_returns_rows_totals_and_json_errors() {
    let repo = Repo::new(&issues_text(&[IssueSpec::todo("R-1")]), &front(BUSY, ""));
    let daemon = Daemon::start(&repo, &[]);
    wait_pid(&repo, "R-1");
    let state = wait_for(LIMIT, "an agent event", || {
        let state = daemon.state();
        (state["running"][0]["last_event"] == "notification").then_some(state)
    });
    assert_eq!(
        state["counts"],
        serde_json::json!({"running": 1, "retrying": 0, "waiting": 0})
    );
    let row = &state["running"][0];
    assert_eq!(row["issue_identifier"], "R-1");
    assert_eq!(row["state"], "in_progress");
    assert_eq!(row["turn_count"], 1);
    assert_eq!(row["last_message"], "working");
    assert!(row["tokens"]["total_tokens"].is_u64());
    assert!(state["codex_totals"]["seconds_running"].as_f64().unwrap() > 0.0);
    assert_eq!(
        state["rate_limits"],
        Value::Null,
        "a shell agent reports none"
    );
    assert!(state["retrying"].as_array().unwrap().is_empty());

    let (status, detail) = daemon.get("/api/v1/R-1");
    assert_eq!(status, 200);
    assert_eq!(detail["status"], "running");
    assert_eq!(detail["issue_id"], "R-1");
    assert!(
        detail["logs"]["codex_session_logs"][0]["path"]
            .as_str()
            .unwrap()
            .starts_with("proofs/R-1/")
    );
    assert!(!detail["recent_events"].as_array().unwrap().is_empty());

    let (status, body) = daemon.get("/api/v1/NOPE-9");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "issue_not_found");
    for (method, path) in [
        ("POST", "/api/v1/state"),
        ("GET", "/api/v1/refresh"),
        ("DELETE", "/api/v1/R-1"),
    ] {
        let (status, body) = symphony_tests::http(daemon.port, method, path);
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
    let (status, body) = daemon.post("/api/v1/refresh");
    assert_eq!(status, 202);
    assert_eq!(body["queued"], true);
    assert_eq!(body["operations"], serde_json::json!(["poll", "reconcile"]));
    let (status, body) = daemon.get("/no/such/route");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, html) = daemon.get("/");
    assert_eq!(status, 200);
    let html = html.as_str().unwrap();
    assert!(
        html.contains("<h1>Symphony</h1>") && html.contains("R-1"),
        "{html}"
    );
    let (status, logs) = daemon.stop();
    assert_eq!(status.code(), Some(0), "{logs}");
}

#[test]
fn spec_17_4_restart_recovery_resumes_live_claims_and_releases_stale_ones() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("Z-0").state("done")]),
        &front(HANDOFF, ""),
    );
    let node = {
        let daemon = Daemon::start(&repo, &[]);
        let node = daemon.state()["node"].as_str().unwrap().to_string();
        daemon.stop();
        node
    };
    let now = symphony_tracker::model::now_timestamp();
    let claim = |node: &str, at: &str| {
        format!(
            ",\"claim\":{{\"node\":\"{node}\",\"slot\":0,\"claimed_at\":\"{at}\",\"heartbeat_at\":\"{at}\"}}"
        )
    };
    let issues = [
        IssueSpec::todo("L-1")
            .state("in_progress")
            .with(&claim(&node, &now)),
        IssueSpec::todo("S-1")
            .state("in_progress")
            .with(&claim(&node, "2020-01-01T00:00:00Z")),
        IssueSpec::todo("O-1")
            .state("in_progress")
            .with(&claim("another-node", &now)),
    ];
    repo.write("issues/issues.jsonl", &issues_text(&issues));
    let out = repo.run_once(&["--log-level", "info"], LIMIT);
    let logs = text(&out.stderr);
    assert!(out.status.success(), "{logs}");
    assert!(
        logs.lines().any(
            |l| l.contains("resuming an issue this node claimed before restart")
                && l.contains("L-1")
        ),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("released a stale claim") && l.contains("S-1")),
        "{logs}"
    );
    assert_eq!(repo.state("L-1"), "review");
    assert_eq!(
        repo.state("S-1"),
        "review",
        "released, then dispatched like any candidate"
    );
    let other = repo
        .issues()
        .lines()
        .find(|l| l.contains("\"id\":\"O-1\""))
        .unwrap()
        .to_string();
    assert_eq!(
        other,
        issues[2].line(),
        "another node's live claim is untouched"
    );
}

#[test]
fn claims_heartbeat_while_the_agent_runs_and_never_commit() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("E-1")]),
        &front(BUSY, "claims:\n  ttl_ms: 400"),
    );
    let daemon = Daemon::start(&repo, &[]);
    wait_pid(&repo, "E-1");
    let first = repo.record("E-1");
    let claim = first["claim"].clone();
    assert_eq!(claim["node"], daemon.state()["node"]);
    assert_eq!(first["shard"]["claim_ttl_ms"], 400);
    let refreshed = wait_for(LIMIT, "a newer heartbeat", || {
        let record = repo.record("E-1");
        (record["claim"]["heartbeat_at"] != claim["heartbeat_at"]).then_some(record)
    });
    assert_eq!(refreshed["claim"]["claimed_at"], claim["claimed_at"]);
    assert_eq!(
        refreshed["updated_at"], first["updated_at"],
        "liveness is not a change"
    );
    let (status, _) = daemon.stop();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        repo.git(&["log", "--oneline"]).lines().count(),
        1,
        "no commits"
    );
}

#[test]
fn a_claim_taken_by_another_node_stops_the_agent() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("G-1")]),
        &front(BUSY, "claims:\n  ttl_ms: 400"),
    );
    let run = std::thread::spawn({
        let cmd = repo.symphony(&["run", "--once", "WORKFLOW.md"]);
        move || run_bounded(cmd, LIMIT)
    });
    let pid = wait_pid(&repo, "G-1");
    Store::new(repo.issues_path())
        .transact(|tx| {
            tx.modify("G-1", |record| {
                record["claim"]["node"] = Value::from("intruder");
                Ok(())
            })
        })
        .unwrap();
    let out = run.join().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("stopped: claim_lost"), "{stdout}");
    assert!(text(&out.stderr).contains("claim lost to another node"));
    assert!(!alive(pid));
    assert_eq!(
        repo.record("G-1")["claim"]["node"],
        "intruder",
        "its claim is left alone"
    );
}
