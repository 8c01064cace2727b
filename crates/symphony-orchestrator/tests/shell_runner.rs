//! The shell runner with real `bash` children: environment allowlist, prompt delivery, cwd,
//! typed failures, timeouts that kill the process group, and stream-json events and usage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use symphony_orchestrator::runner::{AgentEventKind, AgentSession, RunnerError, TokenUsage};

fn fake_claude() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents/fake_claude.sh")
}

async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("the runner call is bounded")
}

#[tokio::test]
async fn shell_runner_passes_only_allowlisted_environment() {
    // CARGO_MANIFEST_DIR is set for every test process by cargo: a variable the agent must not
    // see unless the workflow allowlists it.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let mut h = support::Harness::new("XSY-1").await;
    let config = support::runner_config("runner:\n  command: env");
    let mut session = AgentSession::start(&config, h.launch.clone())
        .await
        .unwrap();
    bounded(session.run_turn("hello")).await.unwrap();
    let env = h.stdout_log();
    let vars: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    assert!(!vars.contains(&"CARGO_MANIFEST_DIR"), "{env}");
    assert!(vars.contains(&"PATH") && vars.contains(&"HOME"));
    let expect = [
        "SYMPHONY_ISSUE_ID=id-XSY-1".to_owned(),
        "SYMPHONY_ISSUE_IDENTIFIER=XSY-1".to_owned(),
        "SYMPHONY_ATTEMPT=0".to_owned(),
        format!("SYMPHONY_WORKSPACE={}", h.workspace.display()),
        format!("SYMPHONY_PROMPT_FILE={}", h.logs.prompt.display()),
        "SYMPHONY_TURN=1".to_owned(),
        "SYMPHONY_ISSUES_FILE=/repo/issues/issues.jsonl".to_owned(),
    ];
    for line in expect {
        assert!(env.lines().any(|l| l == line), "missing {line} in\n{env}");
    }
    h.drain();

    let config = support::runner_config("runner:\n  command: env\n  env: CARGO_MANIFEST_DIR");
    let mut launch = h.launch.clone();
    launch.logs.stdout = h.dir.path().join("logs/second.stdout.log");
    let mut session = AgentSession::start(&config, launch).await.unwrap();
    bounded(session.run_turn("hello")).await.unwrap();
    let env = std::fs::read_to_string(h.dir.path().join("logs/second.stdout.log")).unwrap();
    assert!(
        env.lines().any(|l| l.starts_with("CARGO_MANIFEST_DIR=")),
        "runner.env extends the allowlist"
    );
}

#[tokio::test]
async fn spec_10_1_the_agent_runs_under_bash_lc_in_the_workspace() {
    let h = support::Harness::new("XSY-9").await;
    // `[[`, `shopt` and `$BASH_VERSION` are bash's; `login_shell` is set only by `bash -l`.
    let config = support::runner_config(
        "runner:\n  command: '[[ -n $BASH_VERSION ]] && shopt -q login_shell && pwd > launched.txt'",
    );
    let mut session = AgentSession::start(&config, h.launch.clone())
        .await
        .unwrap();
    bounded(session.run_turn("hello")).await.unwrap();
    let launched = std::fs::read_to_string(h.workspace.join("launched.txt")).unwrap();
    assert_eq!(Path::new(launched.trim()), h.workspace.as_path());
}

#[tokio::test]
async fn shell_runner_delivers_the_prompt_on_stdin_and_in_the_prompt_file() {
    let h = support::Harness::new("XSY-2").await;
    let config = support::runner_config(
        "runner:\n  command: 'cat > got.stdin; cat \"$SYMPHONY_PROMPT_FILE\" > got.file'",
    );
    let prompt = "Fix `XSY-2`.\nUse \"quotes\" and $dollars.\n".repeat(5_000);
    let mut session = AgentSession::start(&config, h.launch.clone())
        .await
        .unwrap();
    let outcome = bounded(session.run_turn(&prompt)).await.unwrap();
    assert_eq!(outcome.turn, 1);
    assert_eq!(
        std::fs::read_to_string(h.workspace.join("got.stdin")).unwrap(),
        prompt
    );
    assert_eq!(
        std::fs::read_to_string(h.workspace.join("got.file")).unwrap(),
        prompt
    );
    assert_eq!(std::fs::read_to_string(&h.logs.prompt).unwrap(), prompt);
}

#[tokio::test]
async fn shell_runner_missing_command_is_agent_not_found() {
    let mut h = support::Harness::new("XSY-3").await;
    let config = support::runner_config("runner:\n  command: symphony-no-such-agent-binary --go");
    let mut session = AgentSession::start(&config, h.launch.clone())
        .await
        .unwrap();
    let err = bounded(session.run_turn("x")).await.unwrap_err();
    let RunnerError::AgentNotFound {
        command,
        stderr_tail,
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(err.kind(), "agent_not_found");
    assert_eq!(command, "symphony-no-such-agent-binary --go");
    assert!(
        stderr_tail.contains("symphony-no-such-agent-binary"),
        "{stderr_tail}"
    );
    let events = h.drain();
    assert_eq!(events.last().unwrap().kind, AgentEventKind::TurnFailed);
}

#[tokio::test]
async fn shell_runner_crash_reports_exit_status_and_stderr_tail() {
    let h = support::Harness::new("XSY-4").await;
    let config = support::runner_config(
        "runner:\n  command: 'echo working; for i in $(seq 1 3000); do echo noise $i >&2; done; echo \"panic: boom\" >&2; exit 3'",
    );
    let mut session = AgentSession::start(&config, h.launch.clone())
        .await
        .unwrap();
    let err = bounded(session.run_turn("x")).await.unwrap_err();
    let RunnerError::AgentCrashed {
        exit_code,
        signal,
        stderr_tail,
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert_eq!((*exit_code, *signal), (Some(3), None));
    assert!(stderr_tail.ends_with("panic: boom\n"), "{stderr_tail}");
    assert!(stderr_tail.len() < 4_000, "the tail is bounded");
    assert!(
        h.stderr_log().contains("noise 1\n"),
        "the full stderr is in the log"
    );
    assert_eq!(h.stdout_log(), "working\n");
}

#[tokio::test]
async fn shell_runner_turn_timeout_kills_the_process_group() {
    let h = support::Harness::new("XSY-5").await;
    let config = support::runner_config(
        "runner:\n  command: 'sleep 1000 & echo $! > bg.pid; echo started; sleep 1000'\n  turn_timeout_ms: 2500",
    );
    let mut session = AgentSession::start(&config, h.launch.clone())
        .await
        .unwrap();
    let err = bounded(session.run_turn("x")).await.unwrap_err();
    assert_eq!(err, RunnerError::TurnTimeout { timeout_ms: 2500 });
    let pid = support::read_pid(&h.workspace.join("bg.pid")).await;
    assert!(
        support::dies(pid).await,
        "background agent process {pid} survived the timeout"
    );
}

#[tokio::test]
async fn shell_runner_silence_beyond_stall_timeout_is_stalled() {
    // Output every 1.2 s keeps a 2 s stall timeout from firing although the run lasts longer;
    // then silence trips it.
    let h = support::Harness::new("XSY-6").await;
    let config = support::runner_config(
        "runner:\n  command: 'echo one; sleep 1.2; echo two; sleep 1.2; echo three; exec sleep 1000'\n  stall_timeout_ms: 2000",
    );
    let mut session = AgentSession::start(&config, h.launch.clone())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = bounded(session.run_turn("x")).await.unwrap_err();
    assert_eq!(err, RunnerError::Stalled { idle_ms: 2000 });
    assert!(
        started.elapsed() >= Duration::from_millis(4_400),
        "output reset the stall clock"
    );
    assert_eq!(h.stdout_log(), "one\ntwo\nthree\n");
}

#[tokio::test]
async fn shell_runner_plain_output_lines_are_notification_events() {
    let mut h = support::Harness::new("XSY-8").await;
    let config = support::runner_config("runner:\n  command: 'echo first; echo; echo second'");
    let mut session = AgentSession::start(&config, h.launch.clone())
        .await
        .unwrap();
    let outcome = bounded(session.run_turn("x")).await.unwrap();
    assert_eq!(outcome.last_message.as_deref(), Some("second"));
    let events = h.drain();
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            AgentEventKind::SessionStarted,
            AgentEventKind::Notification,
            AgentEventKind::Notification,
            AgentEventKind::TurnCompleted,
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.issue_id == "id-XSY-8" && e.pid.is_some())
    );
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
}

#[tokio::test]
async fn shell_runner_claude_preset_parses_stream_json_and_accumulates_usage_across_turns() {
    let mut h = support::Harness::new("XSY-9").await;
    let script = fake_claude();
    let config = support::runner_config(&format!(
        "runner:\n  preset: claude_code\n  command: bash '{0}'\n  continuation_command: bash '{0}' --continue",
        script.display()
    ));
    let mut session = AgentSession::start(&config, h.launch.clone())
        .await
        .unwrap();
    let first = bounded(session.run_turn("full task prompt")).await.unwrap();
    let per_turn = TokenUsage {
        input: 1510,
        output: 78,
        total: 1588,
    };
    assert_eq!(first.usage, Some(per_turn));
    assert_eq!(
        first.session_id.as_deref(),
        Some("5d1b6a9e-0c55-4bb4-9e7c-3f1d2a7b8c90")
    );
    assert_eq!(
        first.last_message.as_deref(),
        Some("Done: handed off for review.")
    );

    let second = bounded(session.run_turn("continue please")).await.unwrap();
    assert_eq!(second.turn, 2);
    assert_eq!(
        second.usage,
        Some(per_turn.plus(per_turn)),
        "usage is a session total"
    );
    assert_eq!(
        std::fs::read_to_string(h.workspace.join("continued")).unwrap(),
        "turn 2\n"
    );
    assert_eq!(
        std::fs::read_to_string(h.workspace.join("stdin.turn1")).unwrap(),
        "full task prompt"
    );
    assert_eq!(
        std::fs::read_to_string(h.workspace.join("promptfile.turn2")).unwrap(),
        "continue please"
    );

    let events = h.drain();
    let completed: Vec<_> = events
        .iter()
        .filter(|e| e.kind == AgentEventKind::TurnCompleted)
        .collect();
    assert_eq!(completed.len(), 2, "exactly one terminal event per turn");
    assert_eq!(completed[1].usage, Some(per_turn.plus(per_turn)));
    assert!(
        events
            .iter()
            .any(|e| e.message.as_deref() == Some("Reading the issue and the workspace."))
    );
    assert!(
        events
            .iter()
            .any(|e| e.message.as_deref() == Some("tool_use Bash"))
    );
    assert!(!events.iter().any(|e| e.kind == AgentEventKind::Malformed));
}

#[tokio::test]
async fn shell_runner_stream_reported_failure_is_turn_failed() {
    let mut h = support::Harness::new("XSY-10").await;
    let config = support::runner_config(&format!(
        "runner:\n  preset: claude_code\n  command: bash '{}' --fail",
        fake_claude().display()
    ));
    let mut session = AgentSession::start(&config, h.launch.clone())
        .await
        .unwrap();
    let err = bounded(session.run_turn("x")).await.unwrap_err();
    assert_eq!(
        err,
        RunnerError::TurnFailed {
            message: "API Error: overloaded".into()
        }
    );
    assert_eq!(h.drain().last().unwrap().kind, AgentEventKind::TurnFailed);
}

/// The worker flow of SPEC §16.5 on a spawned task (so every future involved is `Send`):
/// prepare the workspace, `before_run`, render the prompt, run a turn, `after_run`.
#[tokio::test]
async fn worker_flow_runs_on_a_spawned_task() {
    let dir = tempfile::tempdir().unwrap();
    let workflow_path = dir.path().join("WORKFLOW.md");
    std::fs::write(
        &workflow_path,
        "---\ntracker:\n  kind: git_issues\nworkspace:\n  root: ws\nhooks:\n  after_create: echo created > created.txt\n  before_run: test -f created.txt\n  after_run: echo done > after_run.txt\nrunner:\n  command: 'cat > prompt.txt'\n---\nWork on {{ issue.identifier }} (attempt {{ attempt }}).",
    )
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let logs_dir = dir.path().join("proofs");
    let worker = tokio::spawn(async move {
        use symphony_orchestrator::hooks::{HookKind, run_configured_hook};
        use symphony_orchestrator::runner::{AgentLaunch, AgentLogs};
        use symphony_orchestrator::workspace::WorkspaceManager;
        let workflow = symphony_orchestrator::workflow::load_workflow(&workflow_path).unwrap();
        let config = &workflow.config;
        let issue = serde_json::json!({"id": "i-1", "identifier": "XSY-1", "title": "T"});
        let manager = WorkspaceManager::new(&config.workspace.root);
        let prepared = manager.prepare("XSY-1", &config.hooks, &[]).await.unwrap();
        let ws = prepared.workspace.path.clone();
        let before = run_configured_hook(HookKind::BeforeRun, &config.hooks, &ws, &[])
            .await
            .unwrap();
        before.check().unwrap();
        let prompt =
            symphony_orchestrator::prompt::render_prompt(&workflow.definition, &issue, Some(2))
                .unwrap();
        let launch = AgentLaunch {
            issue_id: "i-1".into(),
            issue_identifier: "XSY-1".into(),
            issue_title: "T".into(),
            attempt: Some(2),
            workspace_root: config.workspace.root.clone(),
            workspace_path: ws.clone(),
            env: Vec::new(),
            logs: AgentLogs {
                stdout: logs_dir.join("stdout.log"),
                stderr: logs_dir.join("stderr.log"),
                prompt: logs_dir.join("prompt.md"),
            },
            events: tx,
            tracker_tools: None,
        };
        let mut session = AgentSession::start(&config.runner, launch).await.unwrap();
        let outcome = session.run_turn(&prompt).await.unwrap();
        session.stop().await;
        let after = run_configured_hook(HookKind::AfterRun, &config.hooks, &ws, &[])
            .await
            .unwrap();
        (ws, outcome, after)
    });
    let (ws, outcome, after) = bounded(worker).await.unwrap();
    assert_eq!(
        ws,
        std::fs::canonicalize(dir.path()).unwrap().join("ws/XSY-1")
    );
    assert_eq!(outcome.turn, 1);
    assert!(after.succeeded());
    assert_eq!(
        std::fs::read_to_string(ws.join("prompt.txt")).unwrap(),
        "Work on XSY-1 (attempt 2)."
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("after_run.txt")).unwrap(),
        "done\n"
    );
    let mut kinds = Vec::new();
    while let Ok(e) = rx.try_recv() {
        kinds.push(e.kind);
    }
    assert_eq!(
        kinds,
        [
            AgentEventKind::SessionStarted,
            AgentEventKind::TurnCompleted
        ]
    );
}
