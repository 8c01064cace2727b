//! SPEC §17.7 CLI and host lifecycle, on the real `symphony` binary over real git
//! repositories: workflow path argument and default, typed start-up failures with exit code 2,
//! and a clean shutdown on SIGTERM with exit code 0 and claims released.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use symphony_tests::{Daemon, IssueSpec, Repo, issues_text, run_bounded, text, wait_for, workflow};

const LIMIT: Duration = Duration::from_secs(60);

/// A workflow whose agent hands off at once through `.symphony/handoff.json`.
fn handing_off_workflow() -> String {
    workflow(
        "  commit: true\npolling:\n  interval_ms: 200\nworkspace:\n  root: workspaces\nrunner:\n  kind: shell\n  command: mkdir -p .symphony && printf '{\"summary\":\"done\"}' > .symphony/handoff.json",
    )
}

#[test]
fn spec_17_7_explicit_workflow_path_argument_is_used() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("T-1")]),
        &handing_off_workflow(),
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let workflow = repo.path("WORKFLOW.md");
    let mut cmd = repo.symphony(&["run", "--once", workflow.to_str().unwrap()]);
    cmd.current_dir(elsewhere.path());
    let out = run_bounded(cmd, LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(repo.state("T-1"), "review");
    assert!(text(&out.stdout).contains("T-1"), "{}", text(&out.stdout));
}

#[test]
fn spec_17_7_default_workflow_is_workflow_md_in_the_working_directory() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("T-1")]),
        &handing_off_workflow(),
    );
    let out = run_bounded(repo.symphony(&["run", "--once"]), LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(repo.state("T-1"), "review");
}

#[test]
fn spec_17_7_nonexistent_workflow_path_is_a_typed_startup_failure() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("T-1")]),
        &handing_off_workflow(),
    );
    let out = run_bounded(repo.symphony(&["run", "--once", "nope/WORKFLOW.md"]), LIMIT);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let missing = repo.path("nope/WORKFLOW.md");
    assert!(
        stderr.contains(&format!(
            "error: missing_workflow_file: {}: cannot read workflow file",
            missing.display()
        )),
        "{stderr}"
    );
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = repo.symphony(&["run", "--once"]);
    cmd.current_dir(empty.path());
    let out = run_bounded(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("error: missing_workflow_file: "),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(repo.state("T-1"), "todo", "nothing ran");
}

#[test]
fn spec_17_7_startup_failures_name_their_kind_and_exit_2() {
    for (front_matter, kind) in [
        ("tracker: [git_issues\n", "workflow_parse_error"),
        ("- a list\n", "workflow_front_matter_not_a_map"),
        (
            "tracker:\n  kind: linear\nrunner:\n  command: x\n",
            "unsupported_tracker_kind",
        ),
        (
            "tracker:\n  kind: git_issues\n  path: missing.jsonl\nrunner:\n  command: x\n",
            "tracker_unavailable",
        ),
    ] {
        let repo = Repo::new(
            &issues_text(&[IssueSpec::todo("T-1")]),
            &format!("---\n{front_matter}---\nprompt\n"),
        );
        let out = run_bounded(repo.symphony(&["run", "--once"]), LIMIT);
        assert_eq!(out.status.code(), Some(2), "{kind}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("error: {kind}: ")),
            "{kind}: {stderr}"
        );
        assert!(
            stderr.contains(repo.root.to_str().unwrap()),
            "names the path: {stderr}"
        );
    }
}

#[test]
fn spec_17_7_sigterm_stops_workers_releases_claims_and_exits_0() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("T-1")]),
        &workflow(
            "polling:\n  interval_ms: 200\nworkspace:\n  root: workspaces\nhooks:\n  after_run: touch after_run.ran\nrunner:\n  kind: shell\n  command: echo $$ > \"$SYMPHONY_REPO_ROOT/agent.pid\"; while true; do echo working; sleep 0.2; done",
        ),
    );
    let daemon = Daemon::start(&repo, &[]);
    let pid: u32 = wait_for(LIMIT, "the agent to start", || {
        std::fs::read_to_string(repo.path("agent.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    assert!(
        repo.record("T-1")["claim"].is_object(),
        "claimed while running"
    );
    assert_eq!(repo.state("T-1"), "in_progress");
    let (status, logs) = daemon.stop();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(!symphony_tests::alive(pid), "agent stopped");
    assert!(
        repo.path("workspaces/T-1/after_run.ran").exists(),
        "after_run ran"
    );
    let record = repo.record("T-1");
    assert!(record.get("claim").is_none(), "claim released: {record}");
    assert_eq!(
        record["state"], "in_progress",
        "state kept for the next start"
    );
    assert!(logs.contains("shutting down"), "{logs}");
}

#[test]
fn spec_17_7_server_port_in_the_workflow_enables_the_api_and_the_flag_overrides_it() {
    let busy = "polling:\n  interval_ms: 200\nworkspace:\n  root: workspaces\nrunner:\n  kind: shell\n  command: exit 0";
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("T-1").state("review")]),
        &workflow(&format!("{busy}\nserver:\n  port: 0")),
    );
    let daemon = Daemon::spawn(&repo, &["run"]);
    let (status, body) = daemon.get("/api/v1/state");
    assert_eq!(status, 200);
    assert_eq!(body["counts"]["running"], 0);
    let (status, _) = daemon.stop();
    assert_eq!(status.code(), Some(0));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    repo.write(
        "WORKFLOW.md",
        &workflow(&format!("{busy}\nserver:\n  port: {port}")),
    );
    let daemon = Daemon::spawn(&repo, &["run", "--port", "0"]);
    assert_ne!(daemon.port, port, "--port overrides server.port");
    let (status, _) = daemon.stop();
    assert_eq!(status.code(), Some(0));
    let out = run_bounded(repo.symphony(&["run"]), LIMIT);
    assert_eq!(out.status.code(), Some(2), "the workflow's port is taken");
    assert!(
        text(&out.stderr).contains(&format!(
            "error: http_bind_failed: 127.0.0.1:{port}: cannot listen"
        )),
        "{}",
        text(&out.stderr)
    );
}
