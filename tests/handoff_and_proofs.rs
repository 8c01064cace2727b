//! Handoffs (design.md, Orchestrator): through `.symphony/handoff.json` or a tracker write by
//! the agent (what `symphony issues handoff` does), validated, recorded, linked to the
//! attempt's proofs and committed with them; a malformed handoff is rejected, kept, and the
//! attempt retried. Real binary, real git, bash agents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::Value;
use symphony_tests::{Daemon, IssueSpec, Repo, issues_text, text, wait_for, workflow};

const LIMIT: Duration = Duration::from_secs(60);

fn front(command: &str, extra: &str) -> String {
    workflow(&format!(
        "  commit: true\npolling:\n  interval_ms: 100\nworkspace:\n  root: workspaces\n{extra}\nrunner:\n  kind: shell\n  command: |\n    {command}"
    ))
}

fn manifest(dir: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn malformed_handoff_is_rejected_kept_and_the_attempt_retried() {
    let command = "mkdir -p .symphony\n    if [ \"$SYMPHONY_ATTEMPT\" = 0 ]; then\n      printf '{\"sumary\":\"typo\"}' > .symphony/handoff.json\n    else\n      printf '{\"summary\":\"fixed\"}' > .symphony/handoff.json\n    fi";
    let repo = Repo::new(
        &issues_text(&[IssueSpec::todo("F-1")]),
        &front(
            command,
            "agent:\n  max_turns: 1\n  max_retry_backoff_ms: 300",
        ),
    );
    let daemon = Daemon::start(&repo, &[]);
    wait_for(LIMIT, "the retried attempt to hand off", || {
        (repo.state("F-1") == "review").then_some(())
    });
    let (status, logs) = daemon.stop();
    assert_eq!(status.code(), Some(0));
    assert!(logs.contains("handoff file rejected"), "{logs}");
    let dirs = repo.attempt_dirs("F-1");
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    let rejected = manifest(&dirs[0]);
    assert_eq!(rejected["outcome"], "failed");
    assert_eq!(rejected["error"]["kind"], "handoff_invalid");
    let message = rejected["error"]["message"].as_str().unwrap();
    assert!(message.ends_with(".symphony/handoff.json: /sumary: unknown field (expected summary, files_changed, validation, follow_up, proofs_dir)"), "{message}");
    assert_eq!(
        std::fs::read_to_string(dirs[0].join("handoff.rejected.json")).unwrap(),
        "{\"sumary\":\"typo\"}",
        "the agent's text is kept with the proofs"
    );
    assert!(
        repo.path("workspaces/F-1/.symphony/handoff.rejected.json")
            .exists()
    );
    assert!(
        !repo.path("workspaces/F-1/.symphony/handoff.json").exists(),
        "consumed"
    );
    let accepted = manifest(&dirs[1]);
    assert_eq!(accepted["attempt"], 1);
    assert_eq!(accepted["handoff_via"], "file");
    let handoff = &repo.record("F-1")["handoff"];
    assert_eq!(handoff["summary"], "fixed");
    let proofs = handoff["proofs_dir"].as_str().unwrap();
    assert!(
        dirs[1].ends_with(proofs),
        "{proofs} links the accepted attempt"
    );
}

#[test]
fn tracker_handoff_by_the_agent_is_detected_linked_and_committed_alone() {
    // What `symphony issues handoff` does: a locked write of the agent's own record. The agent
    // then keeps running for a few poll intervals: reconciliation must let it finish.
    let command = "now=$(date -u +%Y-%m-%dT%H:%M:%SZ)\n    flock \"$SYMPHONY_REPO_ROOT/.symphony/tracker.lock\" sed -i \"/^{\\\"id\\\":\\\"$SYMPHONY_ISSUE_ID\\\"/s/\\\"state\\\":\\\"in_progress\\\"/\\\"state\\\":\\\"review\\\",\\\"handoff\\\":{\\\"summary\\\":\\\"via the tracker\\\",\\\"updated_at\\\":\\\"$now\\\"}/\" \"$SYMPHONY_ISSUES_FILE\"\n    sleep 0.5\n    echo finished";
    let issues = [
        IssueSpec::todo("K-1"),
        IssueSpec::todo("K-2").state("blocked"),
    ];
    let repo = Repo::new(&issues_text(&issues), &front(command, ""));
    let out = repo.run_once(&[], LIMIT);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let record = repo.record("K-1");
    assert_eq!(record["state"], "review");
    assert_eq!(record["handoff"]["summary"], "via the tracker");
    assert!(record.get("claim").is_none());
    let dir = &repo.attempt_dirs("K-1")[0];
    let proofs = record["handoff"]["proofs_dir"].as_str().unwrap();
    assert!(dir.ends_with(proofs));
    assert_eq!(manifest(dir)["handoff_via"], "cli");
    assert!(
        std::fs::read_to_string(dir.join("agent.stdout.log"))
            .unwrap()
            .contains("finished"),
        "the agent was not killed after handing off"
    );
    let subject = repo.git(&["log", "-1", "--format=%s"]);
    assert_eq!(subject.trim(), format!("K-1: handoff → review ({proofs})"));
    let files = repo.git(&["show", "--name-only", "--format=", "HEAD"]);
    let mut expected: Vec<String> = vec!["issues/issues.jsonl".into()];
    expected.extend(
        manifest(dir)["files"]
            .as_array()
            .unwrap()
            .iter()
            .chain(std::iter::once(&Value::from("manifest.json")))
            .map(|f| format!("{proofs}/{}", f.as_str().unwrap())),
    );
    expected.sort();
    assert_eq!(files.lines().collect::<Vec<_>>(), expected);
    assert_eq!(
        repo.git(&["status", "--porcelain"]),
        "",
        "everything recorded is committed"
    );
}

#[test]
fn a_handoff_commit_carries_only_its_own_record() {
    let command = "if [ \"$SYMPHONY_ISSUE_ID\" = P-2 ]; then exit 1; fi\n    mkdir -p .symphony && printf '{\"summary\":\"done\",\"validation\":[{\"command\":\"true\",\"status\":\"passed\",\"exit_code\":0}]}' > .symphony/handoff.json";
    let issues = [IssueSpec::todo("P-1"), IssueSpec::todo("P-2")];
    let repo = Repo::new(&issues_text(&issues), &front(command, ""));
    let initial = repo.issues();
    let out = repo.run_once(&[], LIMIT);
    assert_eq!(
        out.status.code(),
        Some(1),
        "P-2 failed: {}",
        text(&out.stdout)
    );
    let committed = repo.git(&["show", "HEAD:issues/issues.jsonl"]);
    let lines = |t: &str| t.lines().map(str::to_string).collect::<Vec<_>>();
    let (initial, committed, current) = (lines(&initial), lines(&committed), lines(&repo.issues()));
    assert_ne!(committed[0], initial[0], "P-1's handoff is committed");
    assert_eq!(committed[0], current[0]);
    assert_eq!(committed[1], initial[1], "P-2's failed attempt is not");
    assert_ne!(
        current[1], initial[1],
        "P-2 is in_progress in the work tree"
    );
    let record = repo.record("P-1");
    assert_eq!(record["handoff"]["validation"][0]["exit_code"], 0);
    assert_eq!(
        repo.git(&["status", "--porcelain"]),
        " M issues/issues.jsonl\n?? proofs/P-2/\n",
        "only P-2's uncommitted state and proofs remain"
    );
}
