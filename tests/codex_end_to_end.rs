//! `runner.kind: codex` end to end with the real `codex app-server` (`@openai/codex`, installed
//! by `.ci/install-codex.sh`; `SYMPHONY_CODEX_BIN` or the script's cache path) and the
//! `symphony-scripted-model` endpoint on 127.0.0.1: `symphony run` dispatches the issue, the
//! scripted model has Codex run `exec_command` in the workspace and call the host-side
//! `symphony_handoff` tool. Without the binary the tests print a loud SKIPPED line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use symphony_tests::{Daemon, IssueSpec, Repo, issues_text, text, wait_for, workflow};

#[path = "../crates/symphony-orchestrator/tests/support/codex_bin.rs"]
mod codex_bin;

/// The codex version the runner targets (`runner::codex::TARGET_CODEX_VERSION`).
const TARGET_CODEX_VERSION: &str = "0.171.0";

fn codex_bin(test: &str) -> Option<PathBuf> {
    codex_bin::installed_codex(test, TARGET_CODEX_VERSION)
}

/// The scripted model as a child process; killed on drop.
struct Model {
    child: Child,
    base_url: String,
    log_dir: PathBuf,
}

impl Model {
    fn start(steps: &Value, dir: &Path) -> Model {
        let script = dir.join("script.json");
        std::fs::write(&script, steps.to_string()).unwrap();
        let log_dir = dir.join("model-log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_symphony-scripted-model"))
            .arg(&script)
            .arg(&log_dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("http://127.0.0.1:"), "{line:?}");
        Model {
            child,
            base_url: line.trim().to_owned(),
            log_dir,
        }
    }

    fn requests(&self) -> usize {
        std::fs::read_to_string(self.log_dir.join("requests.jsonl"))
            .map_or(0, |t| t.lines().count())
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A workflow running the real codex against `model`, `CODEX_HOME` under `home`.
fn codex_workflow(bin: &Path, model: &Model, home: &Path, extra: &str) -> String {
    let overrides = [
        "model_provider=\"scripted\"".to_owned(),
        "model_providers.scripted.name=\"scripted\"".to_owned(),
        format!("model_providers.scripted.base_url=\"{}\"", model.base_url),
        "model_providers.scripted.wire_api=\"responses\"".to_owned(),
        "model_providers.scripted.env_key=\"SCRIPTED_KEY\"".to_owned(),
        "model=\"scripted-model\"".to_owned(),
    ]
    .map(|o| format!("-c '{o}'"))
    .join(" ");
    workflow(&format!(
        "polling:\n  interval_ms: 200\nworkspace:\n  root: workspaces\nagent:\n  max_turns: 1\n\
         runner:\n  kind: codex\n  command: >-\n    env CODEX_HOME='{}' SCRIPTED_KEY=test-key '{}' app-server {overrides}\n  \
         read_timeout_ms: 20000\n  stall_timeout_ms: 0\n{extra}",
        home.display(),
        bin.display()
    ))
}

#[test]
fn codex_runner_end_to_end_command_in_the_workspace_then_handoff_through_the_host_tool() {
    let Some(bin) = codex_bin("codex_runner_end_to_end...") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let model = Model::start(
        &json!([
            {"call": "exec_command", "arguments": {"cmd": "echo made-by-codex > made.txt"}},
            {"call": "symphony_handoff", "arguments": {"summary": "Wrote made.txt with codex",
                "files_changed": ["made.txt"],
                "validation": [{"command": "cat made.txt", "status": "passed"}]}},
            {"message": "Handed off."}
        ]),
        scratch.path(),
    );
    let home = scratch.path().join("codex-home");
    std::fs::create_dir_all(&home).unwrap();
    let issues = issues_text(&[IssueSpec::todo("XSY-0001")]);
    let repo = Repo::new("", "");
    repo.write("issues/issues.jsonl", &issues);
    repo.write("WORKFLOW.md", &codex_workflow(&bin, &model, &home, ""));
    let out = repo.run_once(&[], Duration::from_secs(120));
    let logs = text(&out.stderr);
    assert!(out.status.success(), "{}\n{logs}", text(&out.stdout));

    let made = repo.path("workspaces/XSY-0001/made.txt");
    assert_eq!(
        std::fs::read_to_string(&made).unwrap().trim(),
        "made-by-codex"
    );
    let record = repo.record("XSY-0001");
    assert_eq!(record["state"], "review", "{logs}");
    assert_eq!(record["handoff"]["summary"], "Wrote made.txt with codex");
    assert_eq!(record["handoff"]["files_changed"], json!(["made.txt"]));
    let manifest = repo.manifest("XSY-0001");
    assert_eq!(manifest["outcome"], "handed_off", "{manifest}");
    // Three scripted requests of 110, 210 and 310 tokens: Codex's absolute thread total.
    assert_eq!(manifest["tokens"]["total"], 630, "{manifest}");
    let dir = &repo.attempt_dirs("XSY-0001")[0];
    let session_log = std::fs::read_to_string(dir.join("agent.stdout.log")).unwrap();
    assert!(
        session_log.contains("\"item/tool/call\""),
        "the proofs hold the session log"
    );
    assert!(session_log.contains("\"turn/completed\""));
    assert_eq!(
        record["handoff"]["proofs_dir"],
        json!(format!(
            "proofs/XSY-0001/{}",
            dir.file_name().unwrap().to_str().unwrap()
        ))
    );
    assert_eq!(model.requests(), 3);
}

#[test]
fn codex_approval_the_policy_does_not_grant_waits_for_an_operator_in_the_state_api() {
    let Some(bin) = codex_bin("codex_approval_the_policy_does_not_grant...") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let model = Model::start(
        &json!([{"call": "exec_command", "arguments": {"cmd": "echo no > denied.txt"}}]),
        scratch.path(),
    );
    let home = scratch.path().join("codex-home");
    std::fs::create_dir_all(&home).unwrap();
    let repo = Repo::new("", "");
    repo.write(
        "issues/issues.jsonl",
        &issues_text(&[IssueSpec::todo("XSY-0002")]),
    );
    repo.write(
        "WORKFLOW.md",
        &codex_workflow(&bin, &model, &home, "  approval_policy: untrusted\n"),
    );
    let daemon = Daemon::start(&repo, &[]);
    let state = wait_for(
        Duration::from_secs(60),
        "the issue waiting for an operator",
        || {
            let state = daemon.state();
            (state["counts"]["waiting"] == 1).then_some(state)
        },
    );
    let row = &state["waiting"][0];
    assert_eq!(row["issue_identifier"], "XSY-0002");
    let reason = row["reason"].as_str().unwrap();
    assert!(reason.starts_with("approval_required:"), "{reason}");
    assert!(
        reason.contains("denied.txt"),
        "the request is shown: {reason}"
    );
    // Several poll intervals later: still waiting, never retried, one attempt only.
    std::thread::sleep(Duration::from_secs(2));
    let state = daemon.state();
    assert_eq!(state["counts"]["waiting"], 1);
    assert_eq!(state["counts"]["retrying"], 0);
    assert_eq!(state["counts"]["running"], 0);
    assert_eq!(repo.attempt_dirs("XSY-0002").len(), 1);
    assert_eq!(model.requests(), 1);
    let (_, html) = daemon.get("/");
    assert!(
        html.as_str()
            .unwrap_or_default()
            .contains("Waiting for an operator (1)")
    );
    let (status, logs) = daemon.stop();
    assert!(status.success(), "{logs}");
    assert!(!repo.path("workspaces/XSY-0002/denied.txt").exists());
}
