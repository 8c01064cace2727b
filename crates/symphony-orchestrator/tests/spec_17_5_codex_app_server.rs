//! SPEC §17.5 (coding-agent app-server client) against a scripted fake app-server
//! (`tests/fixtures/agents/fake_app_server.py`) launched through `bash -lc`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use symphony_orchestrator::config::RunnerConfig;
use symphony_orchestrator::runner::{AgentEventKind, AgentSession, RunnerError, TokenUsage};

struct FakeServer {
    harness: support::Harness,
    record: PathBuf,
    config: RunnerConfig,
}

impl FakeServer {
    async fn new(scenario: &str, extra: &str) -> Self {
        let harness = support::Harness::new("XSY-42").await;
        let record = harness.dir.path().join("record.jsonl");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents/fake_app_server.py");
        let mut settings = extra.to_owned();
        for default in ["read_timeout_ms: 3000", "turn_timeout_ms: 15000"] {
            let key = default.split(':').next().unwrap();
            if !extra.contains(key) {
                settings.push_str(&format!("\n  {default}"));
            }
        }
        let config = support::runner_config(&format!(
            "codex:\n  command: python3 '{}' {scenario} '{}'\n{settings}",
            script.display(),
            record.display()
        ));
        Self {
            harness,
            record,
            config,
        }
    }

    async fn start(&self) -> Result<AgentSession, RunnerError> {
        bounded(AgentSession::start(
            &self.config,
            self.harness.launch.clone(),
        ))
        .await
    }

    /// Every record line the fake server wrote.
    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn received(&self) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter_map(|r| r.get("received").cloned())
            .collect()
    }

    fn received_method(&self, method: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|m| m["method"] == method)
            .collect()
    }

    fn response_to(&self, id: Value) -> Value {
        self.received()
            .into_iter()
            .find(|m| m.get("method").is_none() && m["id"] == id)
            .unwrap_or_else(|| panic!("no response to {id}"))
    }
}

async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("the app-server call is bounded")
}

#[tokio::test]
async fn spec_17_5_launch_uses_workspace_cwd_via_bash_lc() {
    let mut fake = FakeServer::new("normal", "").await;
    // The server starts only under a bash login shell: `[[` is bash syntax (sh fails on it)
    // and `login_shell` is set only by `bash -l`.
    let command = fake.config.command.take().unwrap();
    fake.config.command = Some(format!(
        "[[ -n $BASH_VERSION ]] && shopt -q login_shell && exec {command}"
    ));
    let session = fake.start().await.unwrap();
    let first = &fake.records()[0];
    assert_eq!(
        first["cwd"],
        json!(fake.harness.workspace.display().to_string())
    );
    assert_eq!(first["env"]["SYMPHONY_ISSUE_IDENTIFIER"], "XSY-42");
    assert_eq!(
        first["env"]["SYMPHONY_ISSUES_FILE"],
        "/repo/issues/issues.jsonl"
    );
    session.stop().await;
    assert!(
        fake.harness
            .drain()
            .iter()
            .all(|e| e.kind != AgentEventKind::StartupFailed)
    );
}

#[tokio::test]
async fn spec_17_5_startup_handshake_sends_initialize_initialized_thread_start_turn_start() {
    let fake = FakeServer::new("normal", "").await;
    let mut session = fake.start().await.unwrap();
    bounded(session.run_turn("Do the task")).await.unwrap();
    session.stop().await;
    let methods: Vec<_> = fake
        .received()
        .iter()
        .filter_map(|m| m["method"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        methods,
        [
            "initialize",
            "initialized",
            "thread/start",
            "thread/name/set",
            "turn/start"
        ]
    );
    let init = &fake.received_method("initialize")[0];
    assert_eq!(init["params"]["clientInfo"]["name"], "symphony");
    assert!(init["params"]["clientInfo"]["version"].is_string());
    assert_eq!(
        init["params"]["capabilities"],
        json!({"experimentalApi": true}),
        "dynamicTools is experimental in codex 0.171"
    );
    assert!(init["id"].is_u64());
}

#[tokio::test]
async fn spec_17_5_policy_payloads_use_the_documented_settings() {
    let fake = FakeServer::new("normal", "").await;
    let mut session = fake.start().await.unwrap();
    bounded(session.run_turn("Do the task")).await.unwrap();
    session.stop().await;
    let workspace = fake.harness.workspace.display().to_string();
    let thread = &fake.received_method("thread/start")[0]["params"];
    assert_eq!(thread["approvalPolicy"], "never");
    assert_eq!(thread["sandbox"], "workspace-write");
    assert_eq!(thread["cwd"], json!(workspace));
    let turn = &fake.received_method("turn/start")[0]["params"];
    assert_eq!(turn["threadId"], "thr_1");
    assert_eq!(
        turn["input"],
        json!([{"type": "text", "text": "Do the task"}])
    );
    assert_eq!(turn["cwd"], json!(workspace));
    assert!(turn.get("title").is_none(), "turn/start has no title field");
    let name = &fake.received_method("thread/name/set")[0]["params"];
    assert_eq!(name["name"], "XSY-42: Make it work");
    assert_eq!(turn["approvalPolicy"], "never");
    assert_eq!(
        turn["sandboxPolicy"],
        json!({"type": "workspaceWrite", "writableRoots": [workspace], "networkAccess": false}),
        "the default turn sandbox writes only the workspace, without network"
    );
    assert_eq!(thread["dynamicTools"], json!([]), "no tracker, no tools");

    let custom = FakeServer::new(
        "normal",
        "  approval_policy: on-request\n  sandbox: danger-full-access",
    )
    .await;
    let mut session = custom.start().await.unwrap();
    bounded(session.run_turn("x")).await.unwrap();
    session.stop().await;
    let turn = &custom.received_method("turn/start")[0]["params"];
    assert_eq!(turn["approvalPolicy"], "on-request");
    assert_eq!(turn["sandboxPolicy"], json!({"type": "dangerFullAccess"}));

    let explicit = FakeServer::new(
        "normal",
        "  thread_sandbox: read-only\n  turn_sandbox_policy:\n    type: workspaceWrite\n    writableRoots: [/srv/a]\n    networkAccess: true",
    )
    .await;
    let mut session = explicit.start().await.unwrap();
    bounded(session.run_turn("x")).await.unwrap();
    session.stop().await;
    let thread = &explicit.received_method("thread/start")[0]["params"];
    assert_eq!(thread["sandbox"], "read-only");
    let turn = &explicit.received_method("turn/start")[0]["params"];
    assert_eq!(
        turn["sandboxPolicy"],
        json!({"type": "workspaceWrite", "writableRoots": ["/srv/a"], "networkAccess": true}),
        "turn_sandbox_policy is passed through"
    );
}

#[tokio::test]
async fn spec_17_5_nested_ids_compose_the_session_id_and_emit_session_started() {
    let mut fake = FakeServer::new("normal", "").await;
    let mut session = fake.start().await.unwrap();
    let first = bounded(session.run_turn("one")).await.unwrap();
    assert_eq!(first.session_id.as_deref(), Some("thr_1-turn_1"));
    assert_eq!(session.session_id(), Some("thr_1-turn_1"));
    let second = bounded(session.run_turn("continue")).await.unwrap();
    assert_eq!(
        second.session_id.as_deref(),
        Some("thr_1-turn_2"),
        "same thread, next turn"
    );
    assert_eq!(second.turn, 2);
    session.stop().await;
    let turn_starts = fake.received_method("turn/start");
    assert_eq!(turn_starts.len(), 2);
    assert!(
        turn_starts
            .iter()
            .all(|t| t["params"]["threadId"] == "thr_1")
    );
    assert_eq!(fake.received_method("thread/start").len(), 1);
    let started: Vec<_> = fake
        .harness
        .drain()
        .into_iter()
        .filter(|e| e.kind == AgentEventKind::SessionStarted)
        .map(|e| e.session_id.unwrap())
        .collect();
    assert_eq!(started, ["thr_1-turn_1", "thr_1-turn_2"]);
}

#[tokio::test]
async fn spec_17_5_request_read_timeout_is_enforced() {
    let mut fake = FakeServer::new("silent_initialize", "  read_timeout_ms: 1500").await;
    let started = std::time::Instant::now();
    let err = fake.start().await.unwrap_err();
    assert_eq!(
        err,
        RunnerError::ResponseTimeout {
            method: "initialize".into(),
            timeout_ms: 1500
        }
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let events = fake.harness.drain();
    assert_eq!(events.last().unwrap().kind, AgentEventKind::StartupFailed);
}

#[tokio::test]
async fn spec_17_5_turn_timeout_is_enforced() {
    let fake = FakeServer::new("hang_turn", "  turn_timeout_ms: 800").await;
    let mut session = fake.start().await.unwrap();
    let started = std::time::Instant::now();
    let err = bounded(session.run_turn("x")).await.unwrap_err();
    assert_eq!(err, RunnerError::TurnTimeout { timeout_ms: 800 });
    assert!(started.elapsed() < Duration::from_secs(10));
    session.stop().await;
}

#[tokio::test]
async fn spec_17_5_turn_timeout_is_a_silence_interval_not_a_total_cap() {
    let fake = FakeServer::new("steady_turn", "  turn_timeout_ms: 800").await;
    let mut session = fake.start().await.unwrap();
    let started = std::time::Instant::now();
    bounded(session.run_turn("x")).await.unwrap();
    assert!(
        started.elapsed() > Duration::from_millis(2000),
        "the turn ran longer than the timeout and still completed"
    );
    session.stop().await;
}

#[tokio::test]
async fn spec_17_5_partial_json_lines_are_buffered_until_newline() {
    let mut fake = FakeServer::new("normal", "").await;
    let mut session = fake.start().await.unwrap();
    bounded(session.run_turn("x")).await.unwrap();
    session.stop().await;
    let events = fake.harness.drain();
    assert!(
        events
            .iter()
            .any(|e| e.message.as_deref() == Some("item/agentMessage/delta: Working on it")),
        "the line written in two pieces arrives whole"
    );
    assert!(events.iter().all(|e| e.kind != AgentEventKind::Malformed));
}

#[tokio::test]
async fn spec_17_5_stderr_is_logged_and_never_parsed_as_protocol() {
    let mut fake = FakeServer::new("normal", "").await;
    let mut session = fake.start().await.unwrap();
    let outcome = bounded(session.run_turn("x")).await.unwrap();
    session.stop().await;
    assert_eq!(
        outcome.session_id.as_deref(),
        Some("thr_1-turn_1"),
        "stderr's fake thread id is ignored"
    );
    let stderr = fake.harness.stderr_log();
    assert!(stderr.contains("startup noise"), "{stderr}");
    assert!(stderr.contains("stderr is diagnostics only"));
    let events = fake.harness.drain();
    assert!(
        events
            .iter()
            .all(|e| e.kind != AgentEventKind::Malformed && e.kind != AgentEventKind::OtherMessage)
    );
    let completed = events
        .iter()
        .filter(|e| e.kind == AgentEventKind::TurnCompleted)
        .count();
    assert_eq!(
        completed, 1,
        "a turn/completed line on stderr does not end anything"
    );
    assert!(
        fake.harness
            .stdout_log()
            .contains("\"thread/tokenUsage/updated\""),
        "protocol lines are kept as proofs"
    );
}

#[tokio::test]
async fn spec_17_5_non_json_stdout_lines_are_malformed_events_not_crashes() {
    let mut fake = FakeServer::new("malformed", "").await;
    let mut session = fake.start().await.unwrap();
    bounded(session.run_turn("x")).await.unwrap();
    session.stop().await;
    let events = fake.harness.drain();
    let malformed: Vec<_> = events
        .iter()
        .filter(|e| e.kind == AgentEventKind::Malformed)
        .collect();
    assert_eq!(malformed.len(), 1);
    assert_eq!(malformed[0].message.as_deref(), Some("this is not json"));
}

#[tokio::test]
async fn spec_17_5_approvals_are_auto_approved_and_unsupported_calls_fail_without_stalling() {
    let mut fake = FakeServer::new("approvals", "").await;
    let mut session = fake.start().await.unwrap();
    let outcome = bounded(session.run_turn("x")).await.unwrap();
    session.stop().await;
    assert_eq!(
        fake.response_to(json!("srv-1"))["result"],
        json!({"decision": "acceptForSession"})
    );
    assert_eq!(
        fake.response_to(json!(7))["result"],
        json!({"decision": "acceptForSession"})
    );
    assert_eq!(
        fake.response_to(json!("legacy-1"))["result"],
        json!({"decision": "approved_for_session"}),
        "legacy approval payload variant"
    );
    let tool = fake.response_to(json!(8));
    assert_eq!(tool["result"]["success"], false);
    assert!(
        tool["result"]["contentItems"][0]["text"]
            .as_str()
            .unwrap()
            .contains("unsupported_tool_call")
    );
    assert_eq!(fake.response_to(json!(9))["error"]["code"], -32601);

    let events = fake.harness.drain();
    let count = |kind| events.iter().filter(|e| e.kind == kind).count();
    assert_eq!(count(AgentEventKind::ApprovalAutoApproved), 3);
    assert_eq!(count(AgentEventKind::UnsupportedToolCall), 1);
    assert_eq!(count(AgentEventKind::TurnCompleted), 1);
    assert_eq!(
        outcome.usage,
        Some(TokenUsage {
            input: 11,
            output: 4,
            total: 15
        }),
        "token-count wrapper variant with nested total_token_usage"
    );
}

#[tokio::test]
async fn spec_17_5_user_input_request_fails_the_attempt_without_stalling() {
    let mut fake = FakeServer::new("input_required", "  stall_timeout_ms: 0").await;
    let mut session = fake.start().await.unwrap();
    let started = std::time::Instant::now();
    let err = bounded(session.run_turn("x")).await.unwrap_err();
    assert_eq!(
        err,
        RunnerError::TurnInputRequired {
            method: "item/tool/requestUserInput".into()
        }
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    session.stop().await;
    assert_eq!(
        fake.harness.drain().last().unwrap().kind,
        AgentEventKind::TurnInputRequired
    );
}

#[tokio::test]
async fn spec_17_5_usage_and_rate_limits_are_extracted_from_nested_payloads() {
    let mut fake = FakeServer::new("normal", "").await;
    let mut session = fake.start().await.unwrap();
    let first = bounded(session.run_turn("one")).await.unwrap();
    assert_eq!(
        first.usage,
        Some(TokenUsage {
            input: 120,
            output: 30,
            total: 150
        })
    );
    assert_eq!(first.last_message.as_deref(), Some("Finished turn 1"));
    let second = bounded(session.run_turn("two")).await.unwrap();
    assert_eq!(
        second.usage,
        Some(TokenUsage {
            input: 240,
            output: 60,
            total: 300
        }),
        "absolute thread totals, not the `last` deltas"
    );
    session.stop().await;
    let events = fake.harness.drain();
    let usage: Vec<_> = events.iter().filter_map(|e| e.usage).collect();
    assert!(usage.contains(&TokenUsage {
        input: 120,
        output: 30,
        total: 150
    }));
    let limits = events.iter().find_map(|e| e.rate_limits.clone()).unwrap();
    assert_eq!(limits["primary"]["usedPercent"], 12.5);
}

#[tokio::test]
async fn spec_17_5_failed_turn_status_is_turn_failed() {
    let mut fake = FakeServer::new("turn_failed", "").await;
    let mut session = fake.start().await.unwrap();
    let err = bounded(session.run_turn("x")).await.unwrap_err();
    assert_eq!(
        err,
        RunnerError::TurnFailed {
            message: "context window exceeded".into()
        }
    );
    session.stop().await;
    let kinds: Vec<_> = fake.harness.drain().iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&AgentEventKind::TurnEndedWithError));
    assert_eq!(kinds.last(), Some(&AgentEventKind::TurnFailed));
}

#[tokio::test]
async fn spec_17_5_app_server_exit_mid_turn_is_port_exit() {
    let fake = FakeServer::new("exit_mid_turn", "").await;
    let mut session = fake.start().await.unwrap();
    let err = bounded(session.run_turn("x")).await.unwrap_err();
    let RunnerError::PortExit {
        exit_code,
        stderr_tail,
        ..
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(*exit_code, Some(3));
    assert!(
        stderr_tail.contains("model connection lost"),
        "{stderr_tail}"
    );
    session.stop().await;
}

#[tokio::test]
async fn spec_17_5_error_response_to_a_request_is_response_error() {
    let fake = FakeServer::new("thread_error", "").await;
    let err = fake.start().await.unwrap_err();
    assert_eq!(
        err,
        RunnerError::ResponseError {
            method: "thread/start".into(),
            code: Some(-32000),
            message: "not logged in".into()
        }
    );
}

#[tokio::test]
async fn codex_command_not_found_is_codex_not_found() {
    let h = support::Harness::new("XSY-43").await;
    let config = support::runner_config("codex:\n  command: symphony-no-such-codex app-server");
    let err = bounded(AgentSession::start(&config, h.launch.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "codex_not_found");
}

#[tokio::test]
async fn a_result_without_the_targeted_shape_is_a_protocol_mismatch_naming_both_versions() {
    let mut fake = FakeServer::new("thread_without_id", "").await;
    let err = fake.start().await.unwrap_err();
    assert_eq!(err.kind(), "protocol_mismatch");
    let text = err.to_string();
    assert!(text.contains("`thread/start`"), "{text}");
    assert!(
        text.contains("codex 0.0 answered"),
        "the installed version from the user agent: {text}"
    );
    assert!(text.contains("codex 0.171.0"), "{text}");
    assert!(text.contains("missing field `id`"), "{text}");
    let events = fake.harness.drain();
    assert_eq!(events.last().unwrap().kind, AgentEventKind::StartupFailed);
}
