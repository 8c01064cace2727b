//! SPEC §17.2 workspace manager and hooks, as `symphony run` drives them: `after_create`
//! once per workspace and workspaces reused across attempts, a `before_run` timeout failing
//! the attempt with its output kept, and start-up removal of terminal issues' workspaces.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::Value;
use symphony_tests::{IssueSpec, Repo, issues_text, text, workflow};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn spec_17_2_before_run_timeout_fails_the_attempt_and_keeps_the_hook_output() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("W-1")]),
        &workflow(
            "workspace:\n  root: workspaces\nhooks:\n  timeout_ms: 1500\n  before_run: |\n    echo preparing\n    sleep 30\n  after_run: echo cleaned\nrunner:\n  kind: shell\n  command: touch agent.ran",
        ),
    );
    let out = repo.run_once(&[], LIMIT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("hook_timeout: before_run hook timed out after 1500 ms"),
        "{stdout}"
    );
    assert!(
        !repo.path("workspaces/W-1/agent.ran").exists(),
        "the agent never started"
    );
    let dir = &repo.attempt_dirs("W-1")[0];
    let hook: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("hooks/before_run.json")).unwrap())
            .unwrap();
    assert_eq!(hook["status"], "timed_out");
    assert_eq!(hook["stdout"]["text"], "preparing\n");
    let after: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("hooks/after_run.json")).unwrap())
            .unwrap();
    assert_eq!(after["status"], "succeeded", "after_run still runs");
    assert_eq!(repo.manifest("W-1")["error"]["kind"], "hook_timeout");
    let record = repo.record("W-1");
    assert_eq!(record["state"], "in_progress");
    assert!(record.get("claim").is_none(), "released for a retry");
}

#[test]
fn spec_17_2_a_failing_after_run_hook_is_logged_and_the_handoff_still_recorded() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("W-1")]),
        &workflow(
            "workspace:\n  root: workspaces\nhooks:\n  after_run: echo lint failed >&2; exit 2\nrunner:\n  kind: shell\n  command: mkdir -p .symphony && printf '{\"summary\":\"done\"}' > .symphony/handoff.json",
        ),
    );
    let out = repo.run_once(&[], LIMIT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("handed_off"), "{stdout}");
    assert_eq!(repo.state("W-1"), "review");
    let manifest = repo.manifest("W-1");
    assert_eq!(manifest["outcome"], "handed_off");
    let dir = &repo.attempt_dirs("W-1")[0];
    let after: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("hooks/after_run.json")).unwrap())
            .unwrap();
    assert_eq!(after["status"], "failed", "{after}");
    assert_eq!(after["stderr"]["text"], "lint failed\n");
    assert!(
        text(&out.stderr).contains("after_run"),
        "the failure is logged"
    );
}

#[test]
fn spec_17_2_after_create_runs_once_and_the_workspace_is_reused_by_the_next_attempt() {
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("W-1")]),
        &workflow(
            "workspace:\n  root: workspaces\nhooks:\n  after_create: echo created >> \"$SYMPHONY_REPO_ROOT/markers.log\"\nrunner:\n  kind: shell\n  command: |\n    if [ -f first.done ]; then\n      mkdir -p .symphony && printf '{\"summary\":\"second time\"}' > .symphony/handoff.json\n    else\n      touch first.done; exit 1\n    fi",
        ),
    );
    let first = repo.run_once(&[], LIMIT);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stdout));
    let second = repo.run_once(&[], LIMIT);
    assert!(second.status.success(), "{}", text(&second.stdout));
    assert_eq!(repo.state("W-1"), "review");
    assert_eq!(
        std::fs::read_to_string(repo.path("markers.log")).unwrap(),
        "created\n",
        "after_create ran for the new directory only"
    );
    let dirs = repo.attempt_dirs("W-1");
    assert!(dirs[0].join("hooks/after_create.json").exists());
    assert!(!dirs[1].join("hooks/after_create.json").exists());
}

#[test]
fn spec_17_2_startup_removes_the_workspaces_of_terminal_issues_only() {
    let issues = [
        IssueSpec::todo("T-1").state("done"),
        IssueSpec::todo("T-2").state("review"),
    ];
    let repo = Repo::new(
        &issues_text(&issues),
        &workflow(
            "workspace:\n  root: workspaces\nhooks:\n  before_remove: pwd >> \"$SYMPHONY_REPO_ROOT/removed.log\"\nrunner:\n  kind: shell\n  command: exit 0",
        ),
    );
    repo.write("workspaces/T-1/work.txt", "old");
    repo.write("workspaces/T-2/work.txt", "keep");
    let out = repo.run_once(&[], LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no issue was ready"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        !repo.path("workspaces/T-1").exists(),
        "terminal workspace removed"
    );
    assert!(
        repo.path("workspaces/T-2/work.txt").exists(),
        "review workspace kept"
    );
    let removed = std::fs::read_to_string(repo.path("removed.log")).unwrap();
    assert!(removed.trim_end().ends_with("workspaces/T-1"), "{removed}");
}
