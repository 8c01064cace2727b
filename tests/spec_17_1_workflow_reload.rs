//! SPEC §17.1 workflow reload on a running `symphony run`: a changed WORKFLOW.md applies to
//! the next dispatch without a restart; an invalid one keeps the last good configuration,
//! says so in the log and the API, and recovers when fixed. (Typed errors for an invalid file
//! at start: `spec_17_7_startup_failures_name_their_kind_and_exit_2`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Map, Value};
use symphony_tests::{Daemon, IssueSpec, Repo, issues_text, wait_for, workflow};
use symphony_tracker::Store;

const LIMIT: Duration = Duration::from_secs(60);

fn versioned(version: &str) -> String {
    workflow(&format!(
        "polling:\n  interval_ms: 100\nworkspace:\n  root: workspaces\nrunner:\n  kind: shell\n  command: |\n    echo {version} > \"$SYMPHONY_REPO_ROOT/$SYMPHONY_ISSUE_ID.version\"\n    mkdir -p .symphony && printf '{{\"summary\":\"done\"}}' > .symphony/handoff.json"
    ))
}

/// Appends a ready issue with a locked tracker write (as `symphony issues create` would).
fn add_issue(repo: &Repo, id: &str) {
    let line = IssueSpec::todo(id).line();
    let record: Map<String, Value> = serde_json::from_str(&line).unwrap();
    Store::new(repo.issues_path())
        .transact(|tx| tx.append(record))
        .unwrap();
}

fn version_of(repo: &Repo, id: &str) -> String {
    wait_for(LIMIT, &format!("{id} to be handed off"), || {
        let version = std::fs::read_to_string(repo.path(&format!("{id}.version"))).ok()?;
        (repo.state(id) == "review").then(|| version.trim().to_string())
    })
}

#[test]
fn spec_17_1_workflow_changes_apply_to_the_next_dispatch_without_restart() {
    let repo = Repo::new(&issues_text(&[IssueSpec::todo("V-1")]), &versioned("v1"));
    let daemon = Daemon::start(&repo, &[]);
    assert_eq!(version_of(&repo, "V-1"), "v1");
    repo.write("WORKFLOW.md", &versioned("v2"));
    wait_for(LIMIT, "the reload to be logged", || {
        daemon.logs().contains("workflow reloaded").then_some(())
    });
    add_issue(&repo, "V-2");
    assert_eq!(version_of(&repo, "V-2"), "v2");
    let (status, _) = daemon.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn spec_17_1_invalid_reload_keeps_the_last_good_config_and_says_so() {
    let repo = Repo::new(&issues_text(&[IssueSpec::todo("V-1")]), &versioned("v1"));
    let daemon = Daemon::start(&repo, &[]);
    assert_eq!(version_of(&repo, "V-1"), "v1");
    repo.write(
        "WORKFLOW.md",
        &versioned("v2").replace("  interval_ms: 100", "  interval_ms: soon"),
    );
    let health = wait_for(LIMIT, "the rejected reload in the API", || {
        let health = daemon.state()["workflow"].clone();
        health["reload_error"].is_string().then_some(health)
    });
    let error = health["reload_error"].as_str().unwrap();
    assert!(
        error.contains("WORKFLOW.md:5:16:") && error.contains("polling.interval_ms"),
        "{error}"
    );
    let logs = daemon.logs();
    assert!(
        logs.contains("workflow reload rejected; keeping the last known good configuration"),
        "{logs}"
    );
    add_issue(&repo, "V-2");
    assert_eq!(
        version_of(&repo, "V-2"),
        "v1",
        "the last good workflow still dispatches"
    );
    repo.write("WORKFLOW.md", &versioned("v3"));
    wait_for(LIMIT, "the fixed workflow to be in force", || {
        daemon.state()["workflow"]["reload_error"]
            .is_null()
            .then_some(())
    });
    add_issue(&repo, "V-3");
    assert_eq!(version_of(&repo, "V-3"), "v3");
    let (status, _) = daemon.stop();
    assert_eq!(status.code(), Some(0));
}
