//! SPEC §17.1 (workflow and config parsing) against real files, including the x0x-symphony
//! fixture workflow.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use symphony_orchestrator::config::{OutputFormat, RunnerKind, preflight, preflight_problems};
use symphony_orchestrator::prompt::{DEFAULT_PROMPT, render_prompt};
use symphony_orchestrator::reload::{ReloadOutcome, WorkflowStore, watch_workflow};
use symphony_orchestrator::workflow::{
    DEFAULT_WORKFLOW_FILE, load_workflow, parse_workflow_in_env, resolve_workflow_path,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/x0x-symphony")
        .join(name)
}

fn issue() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("issue-XSY-0003.json")).unwrap()).unwrap()
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("WORKFLOW.md");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn spec_17_1_fixture_workflow_loads_with_its_settings() {
    let wf = load_workflow(&fixture("WORKFLOW.md")).unwrap();
    let c = &wf.config;
    assert_eq!(c.tracker.kind.as_deref(), Some("git_issues"));
    assert_eq!(c.tracker.path, fixture("issues/issues.jsonl"));
    assert_eq!(c.tracker.states.active, ["todo", "in_progress"]);
    assert_eq!(
        c.tracker.states.terminal,
        ["done", "cancelled", "duplicate"]
    );
    assert_eq!(c.tracker.states.review, ["review"]);
    assert_eq!(c.tracker.states.blocked, ["blocked"]);
    assert_eq!(c.tracker.id_prefix.as_deref(), Some("XSY"));
    assert_eq!(c.polling.interval_ms, 30_000);
    let home = std::env::var("HOME").unwrap();
    assert_eq!(
        c.workspace.root,
        Path::new(&home).join("x0x-symphony/workspaces")
    );
    assert_eq!(c.hooks.timeout_ms, 120_000);
    assert!(
        c.hooks
            .after_create
            .as_deref()
            .unwrap()
            .contains("git clone")
    );
    assert!(c.hooks.before_run.is_some() && c.hooks.after_run.is_some());
    assert!(c.hooks.before_remove.is_some());
    assert_eq!(c.agent.max_concurrent_agents, 2);
    assert_eq!(c.agent.limit_for_state("todo"), 1);
    assert_eq!(c.agent.max_turns, 8);
    assert_eq!(c.runner.kind, RunnerKind::Shell);
    assert_eq!(c.runner.preset.as_deref(), Some("claude_code"));
    assert_eq!(c.runner.output_format, OutputFormat::ClaudeStreamJson);
    assert_eq!(
        c.runner.approval_policy,
        Some(serde_json::json!("untrusted"))
    );
    assert_eq!(c.runner.stall_timeout_ms, 300_000);
    assert!(wf.definition.config.contains_key("tracker"));
    assert!(
        wf.definition
            .prompt_template
            .starts_with("# x0x-symphony Agent Workflow")
    );
    preflight(c).unwrap();
}

#[test]
fn spec_17_1_prompt_template_renders_issue_and_attempt() {
    let wf = load_workflow(&fixture("WORKFLOW.md")).unwrap();
    let first = render_prompt(&wf.definition, &issue(), None).unwrap();
    assert!(first.contains("issue `XSY-0003`"), "{first}");
    assert!(first.contains("- State: `todo`"));
    assert!(first.contains("- Priority: `2`"));
    assert!(first.contains("- Attempt: ``"), "nil attempt renders empty");
    assert!(first.contains("proofs/XSY-0003/<utc-timestamp>/"));
    let retry = render_prompt(&wf.definition, &issue(), Some(3)).unwrap();
    assert!(retry.contains("- Attempt: `3`"));
}

#[test]
fn spec_17_1_prompt_rendering_fails_on_unknown_variables_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let unknown_var = load_workflow(&write(dir.path(), "---\n---\nHi {{ issue.titel }}")).unwrap();
    let err = render_prompt(&unknown_var.definition, &issue(), None).unwrap_err();
    assert_eq!(err.kind(), "template_render_error");
    assert!(err.to_string().contains("WORKFLOW.md:3:"), "{err}");

    let unknown_filter = load_workflow(&write(dir.path(), "Hi\n{{ issue.title | yell }}")).unwrap();
    let err = render_prompt(&unknown_filter.definition, &issue(), None).unwrap_err();
    assert_eq!(err.kind(), "template_parse_error");
}

#[test]
fn spec_17_1_empty_prompt_body_uses_the_default_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let wf = load_workflow(&write(
        dir.path(),
        "---\ntracker:\n  kind: git_issues\n---\n\n",
    ))
    .unwrap();
    assert_eq!(
        render_prompt(&wf.definition, &issue(), None).unwrap(),
        DEFAULT_PROMPT
    );
}

#[test]
fn spec_17_1_explicit_path_is_used_and_cwd_default_is_workflow_md() {
    let dir = tempfile::tempdir().unwrap();
    let custom = dir.path().join("custom.md");
    std::fs::write(&custom, "custom prompt").unwrap();
    let chosen = resolve_workflow_path(Some(&custom)).unwrap();
    assert_eq!(chosen, custom);
    assert_eq!(
        load_workflow(&chosen).unwrap().definition.prompt_template,
        "custom prompt"
    );
    let default = resolve_workflow_path(None).unwrap();
    assert_eq!(
        default,
        std::env::current_dir().unwrap().join(DEFAULT_WORKFLOW_FILE)
    );
}

#[test]
fn spec_17_1_missing_workflow_file_is_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_workflow(&dir.path().join("WORKFLOW.md")).unwrap_err();
    assert_eq!(err.kind(), "missing_workflow_file");
    assert!(err.to_string().contains("WORKFLOW.md"), "{err}");
}

#[test]
fn spec_17_1_invalid_yaml_front_matter_is_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "---\ntracker:\n  kind: git_issues\n   bad: [\n---\nbody",
    );
    let err = load_workflow(&path).unwrap_err();
    assert_eq!(err.kind(), "workflow_parse_error");
    assert!(
        err.to_string().starts_with(&format!("{}:", path.display())),
        "{err}"
    );
}

#[test]
fn spec_17_1_front_matter_non_map_is_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_workflow(&write(dir.path(), "---\njust a string\n---\nbody")).unwrap_err();
    assert_eq!(err.kind(), "workflow_front_matter_not_a_map");
}

#[test]
fn spec_17_1_config_defaults_apply_when_optional_values_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let c = load_workflow(&write(
        dir.path(),
        "---\ntracker:\n  kind: git_issues\n---\n",
    ))
    .unwrap()
    .config;
    assert_eq!(c.tracker.path, dir.path().join("issues/issues.jsonl"));
    assert_eq!(c.polling.interval_ms, 30_000);
    assert_eq!(
        c.workspace.root,
        std::env::temp_dir().join("symphony_workspaces")
    );
    assert_eq!(c.hooks.timeout_ms, 60_000);
    assert_eq!(c.agent.max_concurrent_agents, 10);
    assert_eq!(c.agent.max_turns, 20);
    assert_eq!(c.agent.max_retry_backoff_ms, 300_000);
    assert_eq!(c.runner.command.as_deref(), Some("codex app-server"));
    assert_eq!(
        (
            c.runner.turn_timeout_ms,
            c.runner.read_timeout_ms,
            c.runner.stall_timeout_ms
        ),
        (3_600_000, 5_000, 300_000)
    );
    assert_eq!(c.claims.ttl_ms, 600_000);
    assert_eq!(c.server.port, None);
}

#[test]
fn spec_17_1_tracker_kind_validation_enforces_the_supported_kind() {
    let dir = tempfile::tempdir().unwrap();
    let linear = load_workflow(&write(dir.path(), "---\ntracker:\n  kind: linear\n---\n")).unwrap();
    let err = preflight(&linear.config).unwrap_err();
    assert_eq!(err.kind(), "unsupported_tracker_kind");
    assert!(err.to_string().contains("`git_issues`"), "{err}");
    let none = load_workflow(&write(dir.path(), "prompt only")).unwrap();
    let kinds: Vec<_> = preflight_problems(&none.config)
        .iter()
        .map(|e| e.kind())
        .collect();
    assert_eq!(kinds, ["missing_tracker_kind"]);
}

#[test]
fn spec_17_1_paths_resolve_var_and_tilde_and_old_tracker_keys_are_ignored() {
    let env = |name: &str| match name {
        "SYM_WS" => Some("/srv/symphony".to_owned()),
        "HOME" => Some("/home/op".to_owned()),
        _ => None,
    };
    // `api_key`, `endpoint` and `project_slug` (older tracker schemas, still in real files)
    // are unknown keys now: ignored (SPEC §5.3), never resolved or kept.
    let text = "---\ntracker:\n  kind: git_issues\n  api_key: $SYM_TOKEN\n  endpoint: https://x\n  project_slug: p\n  path: ~/tracker/issues.jsonl\nworkspace:\n  root: ${SYM_WS}/ws\n---\n";
    let c = parse_workflow_in_env(Path::new("/repo/WORKFLOW.md"), text, &env)
        .unwrap()
        .config;
    let kinds: Vec<&str> = preflight_problems(&c).iter().map(|p| p.kind()).collect();
    assert!(
        kinds.is_empty(),
        "the old keys are not tracker errors: {kinds:?}"
    );
    assert_eq!(
        c.tracker.path,
        PathBuf::from("/home/op/tracker/issues.jsonl")
    );
    assert_eq!(c.workspace.root, PathBuf::from("/srv/symphony/ws"));

    let empty = "---\nworkspace:\n  root: $SYM_UNSET/ws\n---\n";
    let c = parse_workflow_in_env(Path::new("/repo/WORKFLOW.md"), empty, &env)
        .unwrap()
        .config;
    assert_eq!(
        c.workspace.root,
        std::env::temp_dir().join("symphony_workspaces")
    );
}

#[test]
fn spec_17_1_runner_command_is_preserved_as_a_shell_command_string() {
    let dir = tempfile::tempdir().unwrap();
    let command = "$HOME/bin/codex app-server --config ~/x.toml | tee \"$LOG\"";
    let text = format!("---\ncodex:\n  command: '{command}'\n---\n");
    let c = load_workflow(&write(dir.path(), &text)).unwrap().config;
    assert_eq!(c.runner.kind, RunnerKind::Codex);
    assert_eq!(c.runner.command.as_deref(), Some(command));
}

#[test]
fn spec_17_1_per_state_concurrency_normalizes_states_and_ignores_invalid_values() {
    let dir = tempfile::tempdir().unwrap();
    let text = "---\nagent:\n  max_concurrent_agents: 5\n  max_concurrent_agents_by_state:\n    '  In_Progress ': 2\n    Todo: '3'\n    review: 0\n    blocked: lots\n    done: -2\n---\n";
    let c = load_workflow(&write(dir.path(), text)).unwrap().config;
    let limits: Vec<_> = c.agent.max_concurrent_agents_by_state.iter().collect();
    assert_eq!(
        limits,
        [(&"in_progress".to_owned(), &2), (&"todo".to_owned(), &3)]
    );
    assert_eq!(c.agent.limit_for_state("REVIEW"), 5);
}

#[test]
fn spec_17_1_invalid_reload_keeps_last_known_good_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "---\npolling:\n  interval_ms: 1000\n---\nv1");
    let mut store = WorkflowStore::open(&path).unwrap();
    assert!(matches!(
        store.reload_if_changed(),
        ReloadOutcome::Unchanged
    ));

    std::fs::write(&path, "---\npolling: [unclosed\n---\nv2").unwrap();
    let ReloadOutcome::Rejected(err) = store.reload_if_changed() else {
        panic!("an invalid file must be rejected");
    };
    assert_eq!(err.kind(), "workflow_parse_error");
    assert_eq!(store.current().config.polling.interval_ms, 1000);
    assert_eq!(store.current().definition.prompt_template, "v1");
    assert_eq!(
        store.last_error().map(|e| e.kind()),
        Some("workflow_parse_error")
    );
    assert!(
        matches!(store.reload_if_changed(), ReloadOutcome::Unchanged),
        "the same invalid content is reported once"
    );

    std::fs::remove_file(&path).unwrap();
    let ReloadOutcome::Rejected(err) = store.reload_if_changed() else {
        panic!("a deleted file must be rejected");
    };
    assert_eq!(err.kind(), "missing_workflow_file");
    assert_eq!(store.current().definition.prompt_template, "v1");

    std::fs::write(&path, "---\npolling:\n  interval_ms: 2000\n---\nv3").unwrap();
    let ReloadOutcome::Reloaded(wf) = store.reload_if_changed() else {
        panic!("a fixed file must be reloaded");
    };
    assert_eq!(wf.config.polling.interval_ms, 2000);
    assert!(store.last_error().is_none());
}

#[tokio::test]
async fn spec_17_1_workflow_file_changes_are_detected_and_reapplied() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "---\nagent:\n  max_concurrent_agents: 1\n---\nold prompt",
    );
    let mut store = WorkflowStore::open(&path).unwrap();
    let (_watcher, mut changes) = watch_workflow(&path).unwrap();

    // Replace by rename, as editors do, so the watch must follow the name, not the inode.
    let staged = dir.path().join(".WORKFLOW.md.tmp");
    std::fs::write(
        &staged,
        "---\nagent:\n  max_concurrent_agents: 7\n---\nnew prompt",
    )
    .unwrap();
    std::fs::rename(&staged, &path).unwrap();

    tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("the watcher signals the change")
        .expect("the watcher channel stays open");
    let ReloadOutcome::Reloaded(wf) = store.reload_if_changed() else {
        panic!("the changed file must be reloaded");
    };
    assert_eq!(wf.config.agent.max_concurrent_agents, 7);
    assert_eq!(store.current().definition.prompt_template, "new prompt");
}
