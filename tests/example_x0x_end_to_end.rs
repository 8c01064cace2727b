//! The bundled example end to end (README's first command, `examples/x0x/run.sh`): a fresh
//! git repository from the real x0x-symphony backlog, `symphony run --once`, a scripted
//! agent making real changes and running real checks. Afterwards the seven ready issues are
//! in review with handoffs and committed proofs, every other line is byte-identical, and the
//! work tree is clean.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use symphony_tests::{X0X_READY, git_in, run_bounded, symphony_bin, text};

#[test]
fn example_x0x_run_hands_off_every_ready_issue_and_leaves_the_rest_byte_identical() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    let repo = scratch.path().join("x0x");
    let mut cmd = Command::new(root.join("examples/x0x/run.sh"));
    cmd.env("SYMPHONY_BIN", symphony_bin())
        .env("EXAMPLE_DIR", &repo);
    let out = run_bounded(cmd, Duration::from_secs(180));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("7 attempt(s): 7 as designed; all as designed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("== 29 of 36 lines byte-identical, 7 changed"),
        "{stdout}"
    );

    let fixture = std::fs::read_to_string(root.join("examples/x0x/issues/issues.jsonl")).unwrap();
    let after = std::fs::read_to_string(repo.join("issues/issues.jsonl")).unwrap();
    assert_eq!(fixture.lines().count(), after.lines().count());
    let cli_handoff = Command::new(symphony_bin())
        .args(["issues", "handoff", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    for (before, after) in fixture.lines().zip(after.lines()) {
        let record: Value = serde_json::from_str(after).unwrap();
        let id = record["id"].as_str().unwrap();
        if !X0X_READY.contains(&id) {
            assert_eq!(before, after, "{id} untouched, byte for byte");
            continue;
        }
        assert_eq!(record["state"], "review", "{id}");
        assert!(record.get("claim").is_none(), "{id}: claim released");
        let handoff = &record["handoff"];
        assert!(
            handoff["summary"]
                .as_str()
                .unwrap()
                .contains(&format!("notes/{id}.md"))
        );
        assert_eq!(
            handoff["files_changed"],
            serde_json::json!([format!("notes/{id}.md")])
        );
        assert_eq!(
            handoff["validation"][0]["status"], "passed",
            "{id}: git diff --check"
        );
        assert_eq!(
            handoff["validation"][1]["status"], "passed",
            "{id}: bash -n"
        );
        let proofs = repo.join(handoff["proofs_dir"].as_str().unwrap());
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(proofs.join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(manifest["outcome"], "handed_off");
        let odd = id[4..].parse::<u32>().unwrap() % 2 == 1;
        let expected_via = if odd && cli_handoff { "cli" } else { "file" };
        assert_eq!(manifest["handoff_via"], expected_via, "{id}");
        // The agent's real change: a committed note on its branch, in its clone.
        let clone = repo.join(format!(".symphony/workspaces/{id}/repo"));
        let branch = format!("symphony/{id}");
        assert_eq!(
            git_in(&clone, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
            branch
        );
        assert_eq!(
            git_in(&clone, &["show", "--name-only", "--format=", "HEAD"]).trim(),
            format!("notes/{id}.md")
        );
    }
    if !cli_handoff {
        eprintln!(
            "note: this symphony build has no `issues handoff`; every agent used .symphony/handoff.json"
        );
    }
    let log = git_in(&repo, &["log", "--format=%s"]);
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(subjects.len(), 8, "{log}");
    for id in X0X_READY {
        assert!(
            subjects
                .iter()
                .any(|s| s.starts_with(&format!("{id}: handoff → review (proofs/{id}/"))),
            "{id}: {log}"
        );
    }
    assert_eq!(
        git_in(&repo, &["status", "--porcelain"]),
        "",
        "everything recorded is committed"
    );
    assert_eq!(git_in(&repo, &["show", "HEAD:issues/issues.jsonl"]), after);
}
