//! Runner presets: named defaults for `runner.command`, `runner.continuation_command`,
//! `runner.output_format` and the environment allowlist. A preset is configuration only; every
//! field it sets can be overridden in `WORKFLOW.md`. See `docs/runners.md`.

use crate::config::{OutputFormat, RunnerKind};

/// One named preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The `runner.preset` value.
    pub name: &'static str,
    /// The runner it configures.
    pub kind: RunnerKind,
    /// Command for the first turn (prompt on stdin).
    pub command: &'static str,
    /// Command for continuation turns (continuation guidance on stdin), when it differs.
    pub continuation_command: Option<&'static str>,
    /// How stdout is parsed into events.
    pub output_format: OutputFormat,
    /// Environment variables the agent needs beyond the default allowlist.
    pub env: &'static [&'static str],
}

/// Environment the Claude Code CLI reads for credentials and endpoints.
pub const CLAUDE_ENV: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CONFIG_DIR",
];

/// Environment the Codex CLI reads for credentials, endpoints and its state directory.
pub const CODEX_ENV: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "CODEX_API_KEY",
    "CODEX_HOME",
];

/// Every preset, by name.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "claude_code",
        kind: RunnerKind::Shell,
        command: "claude -p --output-format stream-json --verbose --dangerously-skip-permissions",
        continuation_command: Some(
            "claude -p --continue --output-format stream-json --verbose --dangerously-skip-permissions",
        ),
        output_format: OutputFormat::ClaudeStreamJson,
        env: CLAUDE_ENV,
    },
    Preset {
        name: "codex_exec",
        kind: RunnerKind::Shell,
        // codex 0.171 removed `--full-auto`; `--sandbox workspace-write` is what it meant for
        // `exec` (which never asks for approvals).
        command: "codex exec --json --sandbox workspace-write --skip-git-repo-check",
        continuation_command: Some("codex exec --json --skip-git-repo-check resume --last"),
        output_format: OutputFormat::CodexExecJsonl,
        env: CODEX_ENV,
    },
    Preset {
        name: "codex",
        kind: RunnerKind::Codex,
        command: "codex app-server",
        continuation_command: None,
        output_format: OutputFormat::Plain,
        env: CODEX_ENV,
    },
];

/// The preset called `name`, if any.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// Names of every preset, in table order.
pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}
