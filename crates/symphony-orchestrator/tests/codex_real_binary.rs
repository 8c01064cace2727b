//! The codex runner against the real `codex app-server` (`@openai/codex`
//! [`TARGET_CODEX_VERSION`], installed by `.ci/install-codex.sh`, found through
//! `SYMPHONY_CODEX_BIN` or the script's cache path), driven through full turns by a scripted
//! Responses-API model served on 127.0.0.1 (`support/scripted_model.rs`). `CODEX_HOME` is a temp
//! dir; no network and no API key are needed. Without the binary every test prints a loud
//! SKIPPED line and returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::scripted_model::{ScriptedModel, Step, codex_overrides};
use symphony_orchestrator::git_issues::{GitIssues, TrackerSettings};
use symphony_orchestrator::runner::codex::{TARGET_CODEX_VERSION, TrackerTools};
use symphony_orchestrator::runner::presets;
use symphony_orchestrator::runner::{AgentEvent, AgentEventKind, AgentSession, RunnerError};
use symphony_tracker::StateConfig;

fn codex_bin(test: &str) -> Option<PathBuf> {
    support::codex_bin::installed_codex(test, TARGET_CODEX_VERSION)
}

fn call(name: &str, arguments: Value) -> Step {
    Step::Call {
        name: name.into(),
        arguments,
    }
}

/// A real codex session over a scripted model, a temp `CODEX_HOME` and a temp tracker.
struct Real {
    harness: support::Harness,
    model: ScriptedModel,
    tracker: Arc<GitIssues>,
    front_matter: String,
}

impl Real {
    async fn new(bin: &Path, steps: Vec<Step>, settings: &str, wrap: &str) -> Real {
        let mut harness = support::Harness::new("XSY-42").await;
        let dir = harness.dir.path().to_path_buf();
        let model = ScriptedModel::start(steps, &dir.join("model")).unwrap();
        let home = dir.join("codex-home");
        std::fs::create_dir_all(&home).unwrap();
        let issues = dir.join("repo/issues/issues.jsonl");
        std::fs::create_dir_all(issues.parent().unwrap()).unwrap();
        std::fs::write(&issues, issue_lines(&harness.launch.issue_id)).unwrap();
        let tracker = Arc::new(GitIssues::new(&issues, "node-a"));
        harness.launch.tracker_tools = Some(TrackerTools {
            tracker: Arc::clone(&tracker),
            settings: TrackerSettings {
                states: StateConfig::default(),
                claim_ttl_ms: 60_000,
                required_labels: Vec::new(),
                commit: false,
            },
            proofs_dir: "proofs/XSY-42/now".into(),
        });
        let overrides: Vec<String> = codex_overrides(&model.base_url, "SCRIPTED_KEY")
            .iter()
            .map(|o| format!("-c '{o}'"))
            .collect();
        let codex = format!(
            "env CODEX_HOME='{}' SCRIPTED_KEY=test-key '{}' app-server {}",
            home.display(),
            bin.display(),
            overrides.join(" ")
        );
        let command = wrap.replace("CODEX", &codex);
        let mut front_matter = format!(
            "runner:\n  kind: codex\n  command: >-\n    {command}\n  read_timeout_ms: 20000"
        );
        for default in ["turn_timeout_ms: 60000", "stall_timeout_ms: 0"] {
            let key = default.split(':').next().unwrap();
            if !settings.contains(key) {
                front_matter.push_str(&format!("\n  {default}"));
            }
        }
        front_matter.push_str(settings);
        Real {
            harness,
            model,
            tracker,
            front_matter,
        }
    }

    async fn start(&self) -> Result<AgentSession, RunnerError> {
        let config = support::runner_config(&self.front_matter);
        bounded(AgentSession::start(&config, self.harness.launch.clone())).await
    }

    fn record(&self) -> Value {
        Value::Object(
            self.tracker
                .fetch_issue(&self.harness.launch.issue_id)
                .unwrap()
                .unwrap(),
        )
    }

    /// The pid the runner reported for the app-server.
    fn pid(events: &[AgentEvent]) -> u32 {
        events
            .iter()
            .find_map(|e| e.pid)
            .expect("events carry the app-server pid")
    }
}

fn issue_lines(id: &str) -> String {
    let line = |id: &str, state: &str, title: &str, blocked: &str| {
        format!(
            "{{\"id\":\"{id}\",\"identifier\":\"{id}\",\"title\":\"{title}\",\"description\":\"d\",\
             \"priority\":1,\"state\":\"{state}\",\"branch_name\":null,\"url\":null,\"labels\":[],\
             \"blocked_by\":[{blocked}],\"created_at\":\"2026-01-01T00:00:00Z\",\"updated_at\":\"2026-01-01T00:00:00Z\"}}\n"
        )
    };
    line("dep-1", "done", "The dependency", "")
        + &line(
            id,
            "in_progress",
            "Make it work",
            "{\"id\":\"dep-1\",\"identifier\":\"dep-1\",\"state\":\"todo\"}",
        )
}

async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(90), fut)
        .await
        .expect("the real codex call is bounded")
}

fn kinds(events: &[AgentEvent]) -> Vec<AgentEventKind> {
    events.iter().map(|e| e.kind).collect()
}

/// The `function_call_output` Codex sent back for `call_id`, from the model's request log.
fn tool_output(model: &ScriptedModel, call_id: &str) -> String {
    model
        .requests()
        .iter()
        .flat_map(|r| r["input"].as_array().cloned().unwrap_or_default())
        .find(|item| item["type"] == "function_call_output" && item["call_id"] == call_id)
        .and_then(|item| item["output"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no function_call_output for {call_id}"))
}

#[tokio::test]
async fn real_codex_runs_a_command_in_the_workspace_then_hands_off_through_the_host_tool() {
    let Some(bin) = codex_bin("real_codex_runs_a_command...") else {
        return;
    };
    let steps = vec![
        call(
            "exec_command",
            json!({"cmd": "echo made-by-codex > made.txt"}),
        ),
        call("symphony_issue", json!({})),
        call(
            "symphony_handoff",
            json!({"summary": "made.txt written", "files_changed": ["made.txt"],
            "validation": [{"command": "cat made.txt", "status": "passed"}]}),
        ),
        Step::Message("Handed off.".into()),
        call("linear_graphql", json!({"query": "{ viewer { id } }"})),
        Step::Message("Second turn done.".into()),
    ];
    let mut real = Real::new(&bin, steps, "", "CODEX").await;
    let mut session = real.start().await.unwrap();
    let first = bounded(session.run_turn("Write made.txt, then hand off."))
        .await
        .unwrap();
    let written = std::fs::read_to_string(real.harness.workspace.join("made.txt")).unwrap();
    assert_eq!(
        written.trim(),
        "made-by-codex",
        "exec_command ran in the workspace"
    );

    let record = real.record();
    assert_eq!(
        record["state"], "review",
        "symphony_handoff moved the issue"
    );
    assert_eq!(record["handoff"]["summary"], "made.txt written");
    assert_eq!(record["handoff"]["files_changed"], json!(["made.txt"]));
    assert_eq!(record["handoff"]["proofs_dir"], "proofs/XSY-42/now");
    assert!(tool_output(&real.model, "call_1").contains("\"blockers\""));
    assert!(
        tool_output(&real.model, "call_1").contains("\"state\":\"done\""),
        "symphony_issue reports the blocker's current state, not the stale copy"
    );
    assert!(tool_output(&real.model, "call_2").contains("\"recorded\":true"));

    let (thread, turn) = first.session_id.as_deref().unwrap().split_at(36);
    assert!(
        turn.starts_with('-') && turn.len() > 1,
        "<thread_id>-<turn_id>"
    );
    // Absolute totals from thread/tokenUsage/updated: the scripted usage is 110, 210, 310, 410
    // per request, so the thread total after four requests is 1040 (not a delta, not doubled).
    let usage = first.usage.unwrap();
    assert_eq!((usage.input, usage.output, usage.total), (1000, 40, 1040));

    let second = bounded(session.run_turn("Continue.")).await.unwrap();
    let second_id = second.session_id.unwrap();
    assert!(
        second_id.starts_with(thread),
        "the continuation turn stays on the thread"
    );
    assert_ne!(second_id, first.session_id.unwrap());
    assert_eq!(
        tool_output(&real.model, "call_4"),
        "unsupported call: linear_graphql",
        "codex answers a tool nobody advertised itself and the session goes on"
    );
    assert_eq!(second.usage.unwrap().total, 1040 + 510 + 610);
    let events = real.harness.drain();
    let pid = Real::pid(&events);
    session.stop().await;
    assert!(
        support::dies(pid).await,
        "the app-server is gone after stop"
    );
    let kinds = kinds(&events);
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == AgentEventKind::ToolCallCompleted)
            .count(),
        2
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == AgentEventKind::TurnCompleted)
            .count(),
        2
    );
    let log = real.harness.stdout_log();
    assert!(log.contains("\"item/tool/call\"") && log.contains("\"turn/completed\""));
    let thread_start = &real.model.requests()[0];
    let offered: Vec<&str> = thread_start["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(offered.contains(&"symphony_handoff") && offered.contains(&"symphony_issue"));
}

#[tokio::test]
async fn real_codex_approval_under_a_policy_that_does_not_allow_it_ends_approval_required() {
    let Some(bin) = codex_bin("real_codex_approval...") else {
        return;
    };
    let steps = vec![call("exec_command", json!({"cmd": "echo no > denied.txt"}))];
    let mut real = Real::new(&bin, steps, "\n  approval_policy: untrusted", "CODEX").await;
    let mut session = real.start().await.unwrap();
    let err = bounded(session.run_turn("x")).await.unwrap_err();
    assert_eq!(err.kind(), "approval_required", "{err}");
    assert!(
        err.to_string().contains("denied.txt"),
        "the request is named: {err}"
    );
    let events = real.harness.drain();
    assert!(kinds(&events).contains(&AgentEventKind::ApprovalRequired));
    assert!(
        support::dies(Real::pid(&events)).await,
        "nothing left running"
    );
    session.stop().await;
    assert!(!real.harness.workspace.join("denied.txt").exists());
}

#[tokio::test]
async fn real_codex_user_input_request_ends_turn_input_required() {
    let Some(bin) = codex_bin("real_codex_user_input...") else {
        return;
    };
    let question = json!({"questions": [{"id": "color", "header": "Color", "question": "Which one?",
        "options": [{"label": "Red", "description": "r"}, {"label": "Blue", "description": "b"}]}]});
    let steps = vec![call("request_user_input", question)];
    // Codex offers request_user_input outside Plan mode only with this feature on.
    let wrap = "CODEX --enable default_mode_request_user_input";
    let mut real = Real::new(&bin, steps, "", wrap).await;
    let mut session = real.start().await.unwrap();
    let err = bounded(session.run_turn("x")).await.unwrap_err();
    assert_eq!(err.kind(), "turn_input_required", "{err}");
    let events = real.harness.drain();
    assert!(
        support::dies(Real::pid(&events)).await,
        "nothing left running"
    );
    session.stop().await;
}

#[tokio::test]
async fn real_codex_malformed_protocol_line_is_a_malformed_event_and_the_turn_goes_on() {
    let Some(bin) = codex_bin("real_codex_malformed...") else {
        return;
    };
    let steps = vec![Step::Message("ok".into())];
    // A wrapper prints a non-JSON line on the protocol stream before exec'ing the real codex.
    let wrap = "bash -c 'echo \"{not json\"; exec \"$0\" \"$@\"' CODEX";
    let mut real = Real::new(&bin, steps, "", wrap).await;
    let mut session = real.start().await.unwrap();
    let outcome = bounded(session.run_turn("x")).await.unwrap();
    assert_eq!(outcome.last_message.as_deref(), Some("ok"));
    let events = real.harness.drain();
    let malformed: Vec<_> = events
        .iter()
        .filter(|e| e.kind == AgentEventKind::Malformed)
        .collect();
    assert_eq!(malformed.len(), 1);
    assert_eq!(malformed[0].message.as_deref(), Some("{not json"));
    let pid = Real::pid(&events);
    session.stop().await;
    assert!(support::dies(pid).await);
}

#[tokio::test]
async fn real_codex_crashing_mid_turn_is_port_exit() {
    let Some(bin) = codex_bin("real_codex_crashing...") else {
        return;
    };
    let mut real = Real::new(
        &bin,
        vec![Step::Hang],
        "\n  turn_timeout_ms: 30000",
        "CODEX",
    )
    .await;
    let mut session = real.start().await.unwrap();
    let pid = Real::pid(&real.harness.drain());
    let model_asked = async {
        while real.model.served() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        kill_group(pid);
    };
    let (result, ()) = bounded(async { tokio::join!(session.run_turn("x"), model_asked) }).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), "port_exit", "{err}");
    assert!(support::dies(pid).await);
    session.stop().await;
}

/// SIGKILL to the app-server's process group: `codex` is a node launcher over the native
/// app-server, and a crash of the app-server is the whole tree going away.
fn kill_group(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn real_codex_silence_past_the_turn_timeout_is_turn_timeout() {
    let Some(bin) = codex_bin("real_codex_silence...") else {
        return;
    };
    let mut real = Real::new(&bin, vec![Step::Hang], "\n  turn_timeout_ms: 3000", "CODEX").await;
    let mut session = real.start().await.unwrap();
    let started = std::time::Instant::now();
    let err = bounded(session.run_turn("x")).await.unwrap_err();
    assert_eq!(err, RunnerError::TurnTimeout { timeout_ms: 3000 });
    assert!(started.elapsed() < Duration::from_secs(30));
    let events = real.harness.drain();
    assert!(
        support::dies(Real::pid(&events)).await,
        "the process group was killed"
    );
    session.stop().await;
}

#[tokio::test]
async fn real_codex_speaks_the_targeted_version() {
    let Some(bin) = codex_bin("real_codex_speaks_the_targeted_version") else {
        return;
    };
    let out = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.contains(TARGET_CODEX_VERSION),
        "installed {version:?}, the runner's messages are written for {TARGET_CODEX_VERSION}"
    );
}

#[tokio::test]
async fn real_codex_exec_preset_runs_a_turn_and_a_resumed_continuation_without_double_counting() {
    let Some(bin) = codex_bin("real_codex_exec_preset...") else {
        return;
    };
    let mut harness = support::Harness::new("XSY-44").await;
    let dir = harness.dir.path().to_path_buf();
    let steps = vec![
        call("exec_command", json!({"cmd": "echo via-exec > exec.txt"})),
        Step::Message("exec done".into()),
        Step::Message("resumed done".into()),
    ];
    let model = ScriptedModel::start(steps, &dir.join("model")).unwrap();
    let home = dir.join("codex-home");
    std::fs::create_dir_all(&home).unwrap();
    let overrides: Vec<String> = codex_overrides(&model.base_url, "SCRIPTED_KEY")
        .iter()
        .map(|o| format!("-c '{o}'"))
        .collect();
    // The preset's own command lines, with the binary, CODEX_HOME and the provider filled in.
    let preset = presets::find("codex_exec").unwrap();
    let fill = |command: &str| {
        let args = command.strip_prefix("codex ").unwrap();
        format!(
            "env CODEX_HOME='{}' SCRIPTED_KEY=k '{}' {args} {}",
            home.display(),
            bin.display(),
            overrides.join(" ")
        )
    };
    let config = support::runner_config(&format!(
        "runner:\n  preset: codex_exec\n  command: >-\n    {}\n  continuation_command: >-\n    {}\n  stall_timeout_ms: 0",
        fill(preset.command),
        fill(preset.continuation_command.unwrap())
    ));
    let mut session = bounded(AgentSession::start(&config, harness.launch.clone()))
        .await
        .unwrap();
    let first = bounded(session.run_turn("Write exec.txt.")).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(harness.workspace.join("exec.txt"))
            .unwrap()
            .trim(),
        "via-exec"
    );
    // Requests of 100 and 200 input tokens (+10 output each).
    assert_eq!(first.usage.unwrap().total, 320);
    let second = bounded(session.run_turn("Continue.")).await.unwrap();
    assert_eq!(
        second.session_id, first.session_id,
        "resume --last continues the thread"
    );
    // `resume` reports the thread's running total (300 + 300 input, 30 output): 630, not
    // 320 + 630.
    assert_eq!(second.usage.unwrap().total, 630);
    session.stop().await;
    let events = harness.drain();
    assert!(events.iter().all(|e| e.kind != AgentEventKind::TurnFailed));
    let said = |text: &str| {
        events
            .iter()
            .any(|e| e.message.as_deref().is_some_and(|m| m.ends_with(text)))
    };
    assert!(said("agent_message exec done") && said("agent_message resumed done"));
}

/// The schema file of `name` under the `generate-json-schema --experimental` output `dir`.
fn schema(dir: &Path, name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(&value)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test]
async fn real_codex_every_message_the_runner_sends_fits_the_installed_schema() {
    let Some(bin) = codex_bin("real_codex_every_message...") else {
        return;
    };
    let schema_dir = tempfile::tempdir().unwrap();
    let generated = std::process::Command::new(&bin)
        .args([
            "app-server",
            "generate-json-schema",
            "--experimental",
            "--out",
        ])
        .arg(schema_dir.path())
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    let steps = vec![
        call("exec_command", json!({"cmd": "true"})),
        call("symphony_issue", json!({})),
        call("symphony_handoff", json!({"summary": ""})),
        call("symphony_handoff", json!({"summary": "ok"})),
        Step::Message("done".into()),
    ];
    let sent = tempfile::NamedTempFile::new().unwrap();
    // A pipeline through tee records every line the runner writes to the app-server.
    let wrap = format!("tee -a '{}' | CODEX", sent.path().display());
    let real = Real::new(&bin, steps, "", &wrap).await;
    let mut session = real.start().await.unwrap();
    bounded(session.run_turn("x")).await.unwrap();
    session.stop().await;

    let by_method = [
        ("initialize", "v1/InitializeParams.json"),
        ("thread/start", "v2/ThreadStartParams.json"),
        ("thread/name/set", "v2/ThreadSetNameParams.json"),
        ("turn/start", "v2/TurnStartParams.json"),
    ];
    let tool_result = schema(schema_dir.path(), "DynamicToolCallResponse.json");
    let turn_start = schema(schema_dir.path(), "v2/TurnStartParams.json");
    assert!(
        !turn_start.is_valid(&json!({"threadId": "t", "sandboxPolicy": {"type": "bogus"}})),
        "the schema check can fail"
    );
    let mut checked = Vec::new();
    for line in std::fs::read_to_string(sent.path()).unwrap().lines() {
        let message: Value = serde_json::from_str(line).unwrap();
        let (what, validator) = match message["method"].as_str() {
            Some(method) => match by_method.iter().find(|(m, _)| *m == method) {
                Some((_, file)) => (method.to_owned(), schema(schema_dir.path(), file)),
                None => {
                    assert_eq!(method, "initialized", "unexpected client message {message}");
                    continue;
                }
            },
            None => ("item/tool/call result".to_owned(), tool_result.clone()),
        };
        let instance = if message.get("method").is_some() {
            &message["params"]
        } else {
            &message["result"]
        };
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{what} {instance}: {errors:?}");
        checked.push(what);
    }
    for want in [
        "initialize",
        "thread/start",
        "thread/name/set",
        "turn/start",
    ] {
        assert!(
            checked.iter().any(|c| c == want),
            "{want} not sent: {checked:?}"
        );
    }
    assert_eq!(
        checked
            .iter()
            .filter(|c| *c == "item/tool/call result")
            .count(),
        3,
        "the issue read, the refused handoff and the accepted one"
    );
    assert!(
        tool_output(&real.model, "call_2").contains("/summary: must not be blank"),
        "a refused handoff tells the model why: {}",
        tool_output(&real.model, "call_2")
    );
    assert_eq!(real.record()["state"], "review");
}
