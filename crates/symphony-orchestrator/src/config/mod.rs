//! The typed service config (Symphony SPEC §4.1.3, §6): every value the orchestrator reads from
//! the front matter, with SPEC §6.4 defaults, `$VAR`/`~` resolution for paths and secrets, and
//! this product's extensions (`git_issues` tracker, runners, claims). `docs/workflow.md` is the
//! reference for every key.

mod preflight;
mod raw;
mod resolve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use symphony_tracker::StateConfig;

pub use preflight::{PreflightError, SUPPORTED_TRACKER_KIND, preflight, preflight_problems};
pub use resolve::{EnvLookup, process_env};

use crate::runner::presets;
use crate::workflow::{WorkflowDefinition, WorkflowError, keyed_yaml_error};
use raw::{RawCodex, RawFrontMatter, RawRunner, RawTracker};
use resolve::{PathValue, resolve_path};

/// Default `tracker.path`, relative to the workflow file's directory.
pub const DEFAULT_TRACKER_PATH: &str = "issues/issues.jsonl";
/// Default `tracker.states.active`.
pub const DEFAULT_ACTIVE_STATES: &[&str] = &["todo", "in_progress"];
/// Default `tracker.states.terminal`.
pub const DEFAULT_TERMINAL_STATES: &[&str] = &["done", "cancelled", "duplicate"];
/// Default `tracker.states.review`.
pub const DEFAULT_REVIEW_STATES: &[&str] = &["review"];
/// Default `tracker.states.blocked`.
pub const DEFAULT_BLOCKED_STATES: &[&str] = &["blocked"];
/// Default `polling.interval_ms` (SPEC §5.3.2).
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 30_000;
/// Directory name of the default workspace root under the system temp dir (SPEC §5.3.3).
pub const DEFAULT_WORKSPACE_DIR_NAME: &str = "symphony_workspaces";
/// Default `hooks.timeout_ms` (SPEC §5.3.4).
pub const DEFAULT_HOOK_TIMEOUT_MS: u64 = 60_000;
/// Default `agent.max_concurrent_agents` (SPEC §5.3.5).
pub const DEFAULT_MAX_CONCURRENT_AGENTS: usize = 10;
/// Default `agent.max_turns` (SPEC §6.4).
pub const DEFAULT_MAX_TURNS: u32 = 20;
/// Default `agent.max_retry_backoff_ms` (SPEC §5.3.5).
pub const DEFAULT_MAX_RETRY_BACKOFF_MS: u64 = 300_000;
/// Default command of the codex app-server runner (SPEC §5.3.6).
pub const DEFAULT_CODEX_COMMAND: &str = "codex app-server";
/// Default `runner.turn_timeout_ms` / `codex.turn_timeout_ms` (SPEC §5.3.6).
pub const DEFAULT_TURN_TIMEOUT_MS: u64 = 3_600_000;
/// Default `runner.read_timeout_ms` / `codex.read_timeout_ms` (SPEC §5.3.6).
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 5_000;
/// Default `runner.stall_timeout_ms` / `codex.stall_timeout_ms` (SPEC §5.3.6).
pub const DEFAULT_STALL_TIMEOUT_MS: u64 = 300_000;
/// Default `claims.ttl_ms`.
pub const DEFAULT_CLAIM_TTL_MS: u64 = 600_000;
/// Environment variables every agent process receives from the orchestrator's environment
/// (when set); presets and `runner.env` add to this list. Nothing else is passed through.
pub const DEFAULT_ENV_ALLOWLIST: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "TZ",
];

/// Compares tracker states the SPEC way (SPEC §4.2): trimmed and lowercased.
pub fn normalize_state(state: &str) -> String {
    state.trim().to_lowercase()
}

/// The typed view of a workflow's front matter.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// `tracker:`.
    pub tracker: TrackerConfig,
    /// `polling:`.
    pub polling: PollingConfig,
    /// `workspace:`.
    pub workspace: WorkspaceConfig,
    /// `hooks:`.
    pub hooks: HooksConfig,
    /// `agent:`.
    pub agent: AgentConfig,
    /// `runner:` (or the legacy `codex:` block).
    pub runner: RunnerConfig,
    /// `claims:`.
    pub claims: ClaimsConfig,
    /// `server:`.
    pub server: ServerConfig,
}

use symphony_tracker::ids::IdConfig;
/// How new issue ids are minted by the `git_issues` tracker: the tracker's own type.
pub use symphony_tracker::ids::SchemeKind as IdScheme;

/// `tracker:` settings. States are stored normalized ([`normalize_state`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// `tracker.kind`, trimmed and lowercased; `None` when absent. Only `git_issues` passes
    /// [`preflight`].
    pub kind: Option<String>,
    /// The JSONL issues file: `tracker.path` resolved against the workflow directory
    /// (default `issues/issues.jsonl`).
    pub path: PathBuf,
    /// `tracker.provider` as written (SPEC §5.3.1: adapter-owned, unknown keys preserved);
    /// `None` when absent. `git_issues` takes no provider keys: [`preflight`] refuses any.
    pub provider: Option<serde_yaml::Value>,
    /// `tracker.{active,terminal,review,blocked}_states`: the one definition of what each
    /// state means, shared with the tracker's readiness, claim and handoff rules.
    pub states: StateConfig,
    /// `tracker.id_prefix` for new issue ids.
    pub id_prefix: Option<String>,
    /// `tracker.id_scheme`.
    pub id_scheme: IdScheme,
    /// Labels (lowercased) an issue must all carry to be dispatched; empty means no filter.
    pub required_labels: Vec<String>,
    /// Whether tracker writes are committed to git.
    pub commit: bool,
}

impl TrackerConfig {
    /// `tracker.id_scheme` and `tracker.id_prefix` as the tracker's [`IdConfig`].
    pub fn ids(&self) -> IdConfig {
        IdConfig {
            kind: self.id_scheme,
            prefix: self.id_prefix.clone(),
        }
    }
}

/// `polling:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollingConfig {
    /// Milliseconds between ticks (default 30000).
    pub interval_ms: u64,
}

/// `workspace:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceConfig {
    /// Absolute workspace root: `workspace.root` after `$VAR`/`~` expansion, joined onto the
    /// workflow directory when relative; default `<system temp>/symphony_workspaces`.
    pub root: PathBuf,
}

/// `hooks:` settings (SPEC §5.3.4). Blank scripts count as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HooksConfig {
    /// Runs once when a workspace directory is created; failure aborts creation.
    pub after_create: Option<String>,
    /// Runs before each attempt; failure aborts the attempt.
    pub before_run: Option<String>,
    /// Runs after each attempt; failure is logged and ignored.
    pub after_run: Option<String>,
    /// Runs before a workspace is deleted; failure is logged and ignored.
    pub before_remove: Option<String>,
    /// Milliseconds each hook may run (default 60000; non-positive values fall back to it).
    pub timeout_ms: u64,
}

/// `agent:` settings (SPEC §5.3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Global concurrency limit (default 10).
    pub max_concurrent_agents: usize,
    /// Most turns one worker runs back to back (default 20).
    pub max_turns: u32,
    /// Cap on failure retry backoff in milliseconds (default 300000).
    pub max_retry_backoff_ms: u64,
    /// Per-state concurrency limits keyed by normalized state; invalid entries were dropped.
    pub max_concurrent_agents_by_state: BTreeMap<String, usize>,
}

impl AgentConfig {
    /// The concurrency limit for issues in `state` (SPEC §8.3): the per-state entry when present,
    /// else the global limit.
    pub fn limit_for_state(&self, state: &str) -> usize {
        self.max_concurrent_agents_by_state
            .get(&normalize_state(state))
            .copied()
            .unwrap_or(self.max_concurrent_agents)
    }
}

/// Which runner implementation drives the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerKind {
    /// Any harness as a process: `bash -lc <command>` per turn, prompt on stdin.
    Shell,
    /// The Codex app-server JSON-RPC protocol over stdio (SPEC §10).
    Codex,
}

/// How the shell runner reads the agent's stdout into events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Every line is a `notification` event.
    #[default]
    Plain,
    /// Claude Code `--output-format stream-json` lines.
    ClaudeStreamJson,
    /// `codex exec --json` JSONL events.
    CodexExecJsonl,
}

/// `runner:` settings, or the legacy `codex:` block mapped onto the codex runner.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerConfig {
    /// `runner.kind`; default the preset's kind, else `shell` (`codex` for a legacy `codex:`
    /// block or when neither block is present).
    pub kind: RunnerKind,
    /// `runner.preset` as written.
    pub preset: Option<String>,
    /// The command run via `bash -lc`: `runner.command`, else the preset's, else
    /// `codex app-server` for the codex runner. Never rewritten.
    pub command: Option<String>,
    /// Command for continuation turns of the shell runner (default: `command`).
    pub continuation_command: Option<String>,
    /// How shell runner stdout is parsed (default: the preset's, else `plain`).
    pub output_format: OutputFormat,
    /// Names of environment variables passed to the agent: [`DEFAULT_ENV_ALLOWLIST`], the
    /// preset's, then `runner.env`. Deduplicated, in that order.
    pub env_allowlist: Vec<String>,
    /// Milliseconds one turn may run (default 3600000).
    pub turn_timeout_ms: u64,
    /// Milliseconds to wait for a protocol response (default 5000; codex runner).
    pub read_timeout_ms: u64,
    /// Milliseconds without agent output before the run counts as stalled (default 300000);
    /// `0` disables stall detection (configured values `<= 0`).
    pub stall_timeout_ms: u64,
    /// Codex `approvalPolicy` as written (string or object); codex runner only.
    pub approval_policy: Option<serde_json::Value>,
    /// Codex `SandboxMode` for `thread/start` (`read-only`, `workspace-write`,
    /// `danger-full-access`), from `thread_sandbox` (or the older `sandbox`); codex runner only.
    pub thread_sandbox: Option<String>,
    /// Codex `SandboxPolicy` object for every `turn/start`, passed through (SPEC §5.3.6); codex
    /// runner only. Unset: derived from the thread sandbox (`runner::codex` docs).
    pub turn_sandbox_policy: Option<serde_json::Value>,
}

/// `claims:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsConfig {
    /// Milliseconds a claim lives without a heartbeat (default 600000).
    pub ttl_ms: u64,
}

/// `server:` settings (SPEC §13.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Loopback HTTP port; `None` disables the server unless the CLI asks; `0` is ephemeral.
    pub port: Option<u16>,
}

impl ServiceConfig {
    /// Types the front matter of `definition` (whose raw YAML text is `yaml`), resolving `$VAR`
    /// and `~` through `env`. Normally reached through [`crate::workflow::parse_workflow`].
    ///
    /// # Errors
    /// `workflow_parse_error` naming the key, the file line and what was expected.
    pub fn from_front_matter_in_env(
        definition: &WorkflowDefinition,
        yaml: &str,
        env: EnvLookup<'_>,
    ) -> Result<Self, WorkflowError> {
        let raw: RawFrontMatter = if yaml.trim().is_empty() || definition.config.is_empty() {
            RawFrontMatter::default()
        } else {
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(yaml))
                .map_err(|e| keyed_yaml_error(&definition.path, yaml, &e))?
        };
        let dir = definition.dir();
        let hooks = raw.hooks.unwrap_or_default();
        let agent = raw.agent.unwrap_or_default();
        Ok(Self {
            tracker: tracker_config(raw.tracker.unwrap_or_default(), dir, env),
            polling: PollingConfig {
                interval_ms: raw
                    .polling
                    .and_then(|p| p.interval_ms)
                    .map_or(DEFAULT_POLL_INTERVAL_MS, |v| v.0),
            },
            workspace: WorkspaceConfig {
                root: raw
                    .workspace
                    .and_then(|w| w.root)
                    .and_then(|r| path_or_default("workspace.root", &r, dir, env))
                    .unwrap_or_else(|| std::env::temp_dir().join(DEFAULT_WORKSPACE_DIR_NAME)),
            },
            hooks: HooksConfig {
                after_create: script(hooks.after_create),
                before_run: script(hooks.before_run),
                after_run: script(hooks.after_run),
                before_remove: script(hooks.before_remove),
                timeout_ms: hooks.timeout_ms.map_or(DEFAULT_HOOK_TIMEOUT_MS, |t| t.0),
            },
            agent: AgentConfig {
                max_concurrent_agents: agent
                    .max_concurrent_agents
                    .map_or(DEFAULT_MAX_CONCURRENT_AGENTS, |v| saturate(v.0)),
                max_turns: agent.max_turns.map_or(DEFAULT_MAX_TURNS, |v| {
                    u32::try_from(v.0).unwrap_or(u32::MAX)
                }),
                max_retry_backoff_ms: agent
                    .max_retry_backoff_ms
                    .map_or(DEFAULT_MAX_RETRY_BACKOFF_MS, |v| v.0),
                max_concurrent_agents_by_state: state_limits(
                    agent.max_concurrent_agents_by_state.unwrap_or_default(),
                ),
            },
            runner: runner_config(raw.runner, raw.codex),
            claims: ClaimsConfig {
                ttl_ms: raw
                    .claims
                    .and_then(|c| c.ttl_ms)
                    .map_or(DEFAULT_CLAIM_TTL_MS, |v| v.0),
            },
            server: ServerConfig {
                port: raw.server.and_then(|s| s.port),
            },
        })
    }
}

fn saturate(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn script(raw: Option<String>) -> Option<String> {
    raw.filter(|s| !s.trim().is_empty())
}

fn states(raw: Option<raw::StrList>, default: &[&str]) -> Vec<String> {
    match raw {
        Some(list) => list.0.iter().map(|s| normalize_state(s)).collect(),
        None => default.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn path_or_default(key: &str, raw: &str, dir: &Path, env: EnvLookup<'_>) -> Option<PathBuf> {
    match resolve_path(raw, dir, env)? {
        PathValue::Resolved(path) => Some(path),
        PathValue::MissingVariable(var) => {
            tracing::warn!(key, variable = %var, "config path refers to an unset or empty environment variable; using the default");
            None
        }
    }
}

fn tracker_config(raw: RawTracker, dir: &Path, env: EnvLookup<'_>) -> TrackerConfig {
    TrackerConfig {
        kind: raw
            .kind
            .map(|k| k.trim().to_lowercase())
            .filter(|k| !k.is_empty()),
        path: raw
            .path
            .and_then(|p| path_or_default("tracker.path", &p, dir, env))
            .unwrap_or_else(|| dir.join(DEFAULT_TRACKER_PATH)),
        provider: raw.provider.filter(|p| !p.is_null()),
        states: StateConfig {
            active: states(raw.active_states, DEFAULT_ACTIVE_STATES),
            terminal: states(raw.terminal_states, DEFAULT_TERMINAL_STATES),
            review: states(raw.review_states, DEFAULT_REVIEW_STATES),
            blocked: states(raw.blocked_states, DEFAULT_BLOCKED_STATES),
        },
        id_prefix: raw
            .id_prefix
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty()),
        id_scheme: raw.id_scheme.unwrap_or_default(),
        required_labels: states(raw.required_labels, &[]),
        commit: raw.commit.unwrap_or(false),
    }
}

/// Keeps entries whose value is a positive integer (or a string holding one); keys normalized.
fn state_limits(raw: serde_yaml::Mapping) -> BTreeMap<String, usize> {
    let mut limits = BTreeMap::new();
    for (key, value) in raw {
        let Some(state) = key.as_str().map(normalize_state).filter(|s| !s.is_empty()) else {
            tracing::warn!(key = ?key, "agent.max_concurrent_agents_by_state: ignoring a non-string state key");
            continue;
        };
        let limit = match &value {
            serde_yaml::Value::Number(n) => n.as_u64(),
            serde_yaml::Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .filter(|n| *n > 0);
        match limit {
            Some(n) => {
                limits.insert(state, saturate(n));
            }
            None => tracing::warn!(
                state = %state,
                value = ?value,
                "agent.max_concurrent_agents_by_state: ignoring a limit that is not a positive integer"
            ),
        }
    }
    limits
}

fn stall_ms(raw: Option<raw::Int>) -> u64 {
    raw.map_or(DEFAULT_STALL_TIMEOUT_MS, |v| {
        u64::try_from(v.0).unwrap_or(0)
    })
}

fn json_value(raw: Option<serde_yaml::Value>) -> Option<serde_json::Value> {
    raw.and_then(|v| serde_json::to_value(v).ok())
        .filter(|v| !v.is_null())
}

fn allowlist<'a>(extra: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in DEFAULT_ENV_ALLOWLIST.iter().copied().chain(extra) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

fn runner_config(runner: Option<RawRunner>, codex: Option<RawCodex>) -> RunnerConfig {
    match runner {
        Some(runner) => {
            if codex.is_some() {
                tracing::warn!(
                    "the legacy codex: block is ignored because a runner: block is present"
                );
            }
            shell_or_preset_runner(runner)
        }
        None => legacy_codex_runner(codex.unwrap_or_default()),
    }
}

fn non_blank(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn shell_or_preset_runner(raw: RawRunner) -> RunnerConfig {
    let preset_name = non_blank(raw.preset).map(|p| p.trim().to_owned());
    let preset = preset_name.as_deref().and_then(presets::find);
    let kind = raw
        .kind
        .or(preset.map(|p| p.kind))
        .unwrap_or(RunnerKind::Shell);
    let command = non_blank(raw.command)
        .or_else(|| preset.map(|p| p.command.to_owned()))
        .or_else(|| (kind == RunnerKind::Codex).then(|| DEFAULT_CODEX_COMMAND.to_owned()));
    let preset_env = preset.map_or(
        if kind == RunnerKind::Codex {
            presets::CODEX_ENV
        } else {
            &[]
        },
        |p| p.env,
    );
    let user_env = raw.env.unwrap_or_default().0;
    RunnerConfig {
        kind,
        preset: preset_name,
        command,
        continuation_command: non_blank(raw.continuation_command).or_else(|| {
            preset
                .and_then(|p| p.continuation_command)
                .map(str::to_owned)
        }),
        output_format: raw
            .output_format
            .or(preset.map(|p| p.output_format))
            .unwrap_or_default(),
        env_allowlist: allowlist(
            preset_env
                .iter()
                .copied()
                .chain(user_env.iter().map(String::as_str)),
        ),
        turn_timeout_ms: raw.turn_timeout_ms.map_or(DEFAULT_TURN_TIMEOUT_MS, |v| v.0),
        read_timeout_ms: raw.read_timeout_ms.map_or(DEFAULT_READ_TIMEOUT_MS, |v| v.0),
        stall_timeout_ms: stall_ms(raw.stall_timeout_ms),
        approval_policy: json_value(raw.approval_policy),
        thread_sandbox: non_blank(raw.thread_sandbox),
        turn_sandbox_policy: json_value(raw.turn_sandbox_policy),
    }
}

fn legacy_codex_runner(raw: RawCodex) -> RunnerConfig {
    RunnerConfig {
        kind: RunnerKind::Codex,
        preset: None,
        command: Some(non_blank(raw.command).unwrap_or_else(|| DEFAULT_CODEX_COMMAND.to_owned())),
        continuation_command: None,
        output_format: OutputFormat::Plain,
        env_allowlist: allowlist(presets::CODEX_ENV.iter().copied()),
        turn_timeout_ms: raw.turn_timeout_ms.map_or(DEFAULT_TURN_TIMEOUT_MS, |v| v.0),
        read_timeout_ms: raw.read_timeout_ms.map_or(DEFAULT_READ_TIMEOUT_MS, |v| v.0),
        stall_timeout_ms: stall_ms(raw.stall_timeout_ms),
        approval_policy: json_value(raw.approval_policy),
        thread_sandbox: non_blank(raw.thread_sandbox),
        turn_sandbox_policy: json_value(raw.turn_sandbox_policy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::{parse_workflow, parse_workflow_in_env};

    fn config(front_matter: &str) -> ServiceConfig {
        let text = format!("---\n{front_matter}\n---\nprompt");
        parse_workflow(Path::new("/repo/WORKFLOW.md"), &text)
            .unwrap()
            .config
    }

    #[test]
    fn defaults_apply_when_keys_are_missing() {
        let c = config("{}");
        assert_eq!(c.tracker.kind, None);
        assert_eq!(c.tracker.path, PathBuf::from("/repo/issues/issues.jsonl"));
        assert_eq!(c.tracker.states.active, ["todo", "in_progress"]);
        assert_eq!(
            c.tracker.states.terminal,
            ["done", "cancelled", "duplicate"]
        );
        assert_eq!(c.tracker.states.review, ["review"]);
        assert_eq!(c.tracker.states.blocked, ["blocked"]);
        assert_eq!(c.tracker.id_scheme, IdScheme::Sequential);
        assert!(!c.tracker.commit);
        assert_eq!(c.polling.interval_ms, 30_000);
        assert_eq!(
            c.workspace.root,
            std::env::temp_dir().join("symphony_workspaces")
        );
        assert_eq!(
            c.hooks,
            HooksConfig {
                timeout_ms: 60_000,
                ..HooksConfig::default()
            }
        );
        assert_eq!(c.agent.max_concurrent_agents, 10);
        assert_eq!(c.agent.max_turns, 20);
        assert_eq!(c.agent.max_retry_backoff_ms, 300_000);
        assert!(c.agent.max_concurrent_agents_by_state.is_empty());
        assert_eq!(c.runner.kind, RunnerKind::Codex);
        assert_eq!(c.runner.command.as_deref(), Some("codex app-server"));
        assert_eq!(c.runner.turn_timeout_ms, 3_600_000);
        assert_eq!(c.runner.read_timeout_ms, 5_000);
        assert_eq!(c.runner.stall_timeout_ms, 300_000);
        assert_eq!(c.claims.ttl_ms, 600_000);
        assert_eq!(c.server.port, None);
    }

    #[test]
    fn state_lists_accept_comma_strings_and_are_normalized() {
        let c =
            config("tracker:\n  active_states: ' Todo , In_Progress'\n  terminal_states: [Done]");
        assert_eq!(c.tracker.states.active, ["todo", "in_progress"]);
        assert!(c.tracker.states.is_active("TODO "));
        assert!(c.tracker.states.is_terminal("done"));
        assert!(!c.tracker.states.is_active("done"));
    }

    #[test]
    fn per_state_limits_normalize_keys_and_drop_invalid_values() {
        let c = config(
            "agent:\n  max_concurrent_agents: '3'\n  max_concurrent_agents_by_state:\n    ' Todo ': 2\n    review: 0\n    blocked: -1\n    in_progress: '4'\n    other: abc\n",
        );
        let limits = &c.agent.max_concurrent_agents_by_state;
        assert_eq!(limits.len(), 2, "{limits:?}");
        assert_eq!(c.agent.limit_for_state("TODO"), 2);
        assert_eq!(c.agent.limit_for_state("in_progress"), 4);
        assert_eq!(c.agent.limit_for_state("review"), 3);
    }

    #[test]
    fn spec_5_3_4_invalid_hook_timeouts_fail_validation() {
        assert_eq!(config("hooks: {}").hooks.timeout_ms, 60_000);
        assert_eq!(config("hooks:\n  timeout_ms: '250'").hooks.timeout_ms, 250);
        for bad in ["0", "-5", "soon"] {
            let text = format!("---\nhooks:\n  timeout_ms: {bad}\n---\n");
            let err = parse_workflow(Path::new("/r/WORKFLOW.md"), &text).unwrap_err();
            assert_eq!(err.kind(), "workflow_parse_error", "{bad}: {err}");
            assert!(
                err.to_string().contains("WORKFLOW.md:3:"),
                "{bad}: names the line: {err}"
            );
        }
    }

    #[test]
    fn wrong_value_types_name_the_key_and_line() {
        let text = "---\ntracker:\n  kind: git_issues\npolling:\n  interval_ms: soon\n---\n";
        let err = parse_workflow(Path::new("/r/WORKFLOW.md"), text).unwrap_err();
        assert_eq!(err.kind(), "workflow_parse_error");
        let msg = err.to_string();
        assert!(msg.starts_with("/r/WORKFLOW.md:5:"), "{msg}");
        assert!(msg.contains("polling.interval_ms"), "{msg}");
    }

    #[test]
    fn non_positive_intervals_are_rejected() {
        let text = "---\npolling:\n  interval_ms: 0\n---\n";
        let err = parse_workflow(Path::new("/r/WORKFLOW.md"), text).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected a positive integer, found 0"),
            "{err}"
        );
    }

    #[test]
    fn an_out_of_range_value_names_its_key_and_points_at_its_own_line() {
        // Issue 8: `agent.max_turns: 0` used to report `agent` at max_concurrent_agents' line.
        let text = "---\ntracker:\n  kind: git_issues\nagent:\n  max_concurrent_agents: 2\n\n  # turns\n  max_turns: 0\n---\n";
        let err = parse_workflow(Path::new("/r/WORKFLOW.md"), text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/r/WORKFLOW.md:8:3: agent.max_turns: expected a positive integer, found 0"
        );
        // The block's first key: serde_yaml's line, and the key named all the same.
        let first = "---\nagent:\n  max_turns: 0\n  max_concurrent_agents: 2\n---\n";
        let err = parse_workflow(Path::new("/r/WORKFLOW.md"), first).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/r/WORKFLOW.md:3:3: agent.max_turns: expected a positive"),
            "{err}"
        );
        // A key that is not in block style falls back to serde_yaml's position.
        let flow = "---\nagent: {max_concurrent_agents: 2, max_turns: 0}\n---\n";
        let err = parse_workflow(Path::new("/r/WORKFLOW.md"), flow).unwrap_err();
        assert!(err.to_string().starts_with("/r/WORKFLOW.md:2:"), "{err}");
        assert!(err.to_string().contains("found 0"), "{err}");
    }

    #[test]
    fn stall_timeout_non_positive_disables() {
        let c = config("runner:\n  kind: shell\n  command: x\n  stall_timeout_ms: -1");
        assert_eq!(c.runner.stall_timeout_ms, 0);
    }

    #[test]
    fn legacy_codex_block_maps_onto_the_codex_runner_and_keeps_the_command_verbatim() {
        let c = config(
            "codex:\n  command: $HOME/bin/codex app-server --flag ~/x\n  read_timeout_ms: 7",
        );
        assert_eq!(c.runner.kind, RunnerKind::Codex);
        assert_eq!(
            c.runner.command.as_deref(),
            Some("$HOME/bin/codex app-server --flag ~/x")
        );
        assert_eq!(c.runner.read_timeout_ms, 7);
        assert!(c.runner.env_allowlist.iter().any(|n| n == "OPENAI_API_KEY"));
    }

    #[test]
    fn runner_block_wins_over_codex_block_and_preset_fills_defaults() {
        let c = config(
            "codex:\n  command: ignored\nrunner:\n  preset: claude_code\n  env: [MY_TOKEN, PATH]\n  approval_policy: never",
        );
        assert_eq!(c.runner.kind, RunnerKind::Shell);
        assert_eq!(c.runner.output_format, OutputFormat::ClaudeStreamJson);
        assert!(
            c.runner
                .command
                .as_deref()
                .unwrap()
                .starts_with("claude -p")
        );
        assert!(c.runner.continuation_command.is_some());
        let env = &c.runner.env_allowlist;
        assert_eq!(env.iter().filter(|n| *n == "PATH").count(), 1);
        assert!(env.iter().any(|n| n == "ANTHROPIC_API_KEY"));
        assert_eq!(env.last().map(String::as_str), Some("MY_TOKEN"));
        assert_eq!(c.runner.approval_policy, Some(serde_json::json!("never")));
    }

    #[test]
    fn unknown_runner_kind_is_a_parse_error() {
        let text = "---\nrunner:\n  kind: docker\n---\n";
        let err = parse_workflow(Path::new("/r/WORKFLOW.md"), text).unwrap_err();
        assert!(err.to_string().contains("runner.kind"), "{err}");
    }

    #[test]
    fn paths_resolve_from_the_given_environment() {
        let env = |name: &str| match name {
            "WS_ROOT" => Some("/srv/ws".to_owned()),
            "HOME" => Some("/home/me".to_owned()),
            _ => None,
        };
        let text = "---\ntracker:\n  path: ~/issues.jsonl\nworkspace:\n  root: $WS_ROOT/sub\n---\n";
        let c = parse_workflow_in_env(Path::new("/r/WORKFLOW.md"), text, &env)
            .unwrap()
            .config;
        assert_eq!(c.tracker.path, PathBuf::from("/home/me/issues.jsonl"));
        assert_eq!(c.workspace.root, PathBuf::from("/srv/ws/sub"));
    }

    #[test]
    fn relative_workspace_root_resolves_against_the_workflow_directory() {
        assert_eq!(
            config("workspace:\n  root: ws").workspace.root,
            PathBuf::from("/repo/ws")
        );
        assert_eq!(
            config("workspace:\n  root: ../ws").workspace.root,
            PathBuf::from("/ws")
        );
    }
}
