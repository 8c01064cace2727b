//! Dispatch preflight validation (SPEC §6.3, adapted to the `git_issues` tracker and runners):
//! run before the scheduling loop starts and before every dispatch cycle.

use super::{RunnerKind, ServiceConfig};
use crate::runner::presets;

/// The only tracker kind this product supports.
pub const SUPPORTED_TRACKER_KIND: &str = "git_issues";

/// A reason the config cannot dispatch work. [`PreflightError::kind`] gives the stable class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    /// `tracker.kind` is absent.
    #[error("tracker.kind is missing; set `tracker.kind: {supported}`")]
    MissingTrackerKind {
        /// The supported kind.
        supported: &'static str,
    },
    /// `tracker.kind` names a tracker this product does not implement (for example `linear`).
    #[error("tracker.kind `{kind}` is not supported; the supported kind is `{supported}`")]
    UnsupportedTrackerKind {
        /// The configured kind.
        kind: String,
        /// The supported kind.
        supported: &'static str,
    },
    /// `tracker.provider` holds what the `git_issues` adapter does not take (SPEC §5.3.1:
    /// provider keys are validated by the selected adapter; `git_issues` has none — its
    /// settings are `tracker.path`, `tracker.id_prefix`, `tracker.id_scheme`, `tracker.commit`).
    #[error("tracker.provider{key}: the git_issues tracker takes no provider keys ({fix})")]
    InvalidTrackerConfig {
        /// `.KEY` for the first unknown key; empty when `provider` is not a map.
        key: String,
        /// What to do instead.
        fix: &'static str,
    },
    /// `runner.preset` names no known preset.
    #[error("runner.preset `{preset}` is unknown; known presets: {known}")]
    UnknownRunnerPreset {
        /// The configured preset.
        preset: String,
        /// Comma-separated known preset names.
        known: String,
    },
    /// `runner.kind` contradicts the preset's kind.
    #[error(
        "runner.kind `{kind}` contradicts runner.preset `{preset}`, which is a `{preset_kind}` preset"
    )]
    RunnerPresetKindMismatch {
        /// The configured preset.
        preset: String,
        /// The configured kind.
        kind: &'static str,
        /// The preset's kind.
        preset_kind: &'static str,
    },
    /// No command to launch the agent (SPEC §6.3 `codex.command` present and non-empty).
    #[error("runner.command is missing; set runner.command or runner.preset")]
    MissingRunnerCommand,
}

impl PreflightError {
    /// Stable snake_case class: `missing_tracker_kind`, `unsupported_tracker_kind`,
    /// `unknown_runner_preset`, `runner_preset_kind_mismatch`, `missing_runner_command`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingTrackerKind { .. } => "missing_tracker_kind",
            Self::UnsupportedTrackerKind { .. } => "unsupported_tracker_kind",
            Self::UnknownRunnerPreset { .. } => "unknown_runner_preset",
            Self::RunnerPresetKindMismatch { .. } => "runner_preset_kind_mismatch",
            Self::MissingRunnerCommand => "missing_runner_command",
            Self::InvalidTrackerConfig { .. } => "invalid_tracker_config",
        }
    }
}

fn kind_name(kind: RunnerKind) -> &'static str {
    match kind {
        RunnerKind::Shell => "shell",
        RunnerKind::Codex => "codex",
    }
}

/// Every preflight problem of `config`, in check order (empty when it can dispatch).
pub fn preflight_problems(config: &ServiceConfig) -> Vec<PreflightError> {
    let mut problems = Vec::new();
    match config.tracker.kind.as_deref() {
        None => problems.push(PreflightError::MissingTrackerKind {
            supported: SUPPORTED_TRACKER_KIND,
        }),
        Some(SUPPORTED_TRACKER_KIND) => {}
        Some(other) => problems.push(PreflightError::UnsupportedTrackerKind {
            kind: other.to_owned(),
            supported: SUPPORTED_TRACKER_KIND,
        }),
    }
    if let Some(problem) = git_issues_provider_problem(config.tracker.provider.as_ref()) {
        problems.push(problem);
    }
    let runner = &config.runner;
    if let Some(name) = runner.preset.as_deref() {
        match presets::find(name) {
            None => problems.push(PreflightError::UnknownRunnerPreset {
                preset: name.to_owned(),
                known: presets::names().join(", "),
            }),
            Some(preset) if preset.kind != runner.kind => {
                problems.push(PreflightError::RunnerPresetKindMismatch {
                    preset: name.to_owned(),
                    kind: kind_name(runner.kind),
                    preset_kind: kind_name(preset.kind),
                });
            }
            Some(_) => {}
        }
    }
    if runner
        .command
        .as_deref()
        .is_none_or(|c| c.trim().is_empty())
    {
        problems.push(PreflightError::MissingRunnerCommand);
    }
    problems
}

/// The `git_issues` adapter's check of `tracker.provider`: absent or `{}`.
fn git_issues_provider_problem(provider: Option<&serde_yaml::Value>) -> Option<PreflightError> {
    const FIX: &str =
        "remove tracker.provider; set tracker.path, tracker.id_prefix or tracker.commit instead";
    match provider? {
        serde_yaml::Value::Mapping(map) => {
            let (key, _) = map.iter().next()?;
            let key = match key {
                serde_yaml::Value::String(key) => format!(".{key}"),
                other => format!(".{other:?}"),
            };
            Some(PreflightError::InvalidTrackerConfig { key, fix: FIX })
        }
        _ => Some(PreflightError::InvalidTrackerConfig {
            key: String::new(),
            fix: "it must be a map, and for git_issues an empty one",
        }),
    }
}

/// Validates that `config` can poll and launch workers (SPEC §6.3).
///
/// # Errors
/// The first problem [`preflight_problems`] finds.
pub fn preflight(config: &ServiceConfig) -> Result<(), PreflightError> {
    match preflight_problems(config).into_iter().next() {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::workflow::parse_workflow;

    fn problems(front_matter: &str) -> Vec<&'static str> {
        let text = format!("---\n{front_matter}\n---\nprompt");
        let wf = parse_workflow(Path::new("/repo/WORKFLOW.md"), &text).unwrap();
        preflight_problems(&wf.config)
            .iter()
            .map(PreflightError::kind)
            .collect()
    }

    #[test]
    fn git_issues_with_a_command_passes() {
        assert!(
            problems("tracker:\n  kind: git_issues\nrunner:\n  command: ./agent.sh").is_empty()
        );
    }

    #[test]
    fn spec_17_1_tracker_provider_is_kept_and_validated_by_the_git_issues_adapter() {
        let base = "tracker:\n  kind: git_issues\nrunner:\n  command: a";
        assert!(problems(&format!("{base}\n")).is_empty());
        let text =
            "---\ntracker:\n  kind: git_issues\n  provider: {}\nrunner:\n  command: a\n---\n";
        let wf = parse_workflow(Path::new("/r/WORKFLOW.md"), text).unwrap();
        assert!(preflight(&wf.config).is_ok(), "an empty provider map");
        let text = "---\ntracker:\n  kind: git_issues\n  provider:\n    endpoint: https://x\n    nested: {a: 1}\nrunner:\n  command: a\n---\n";
        let wf = parse_workflow(Path::new("/r/WORKFLOW.md"), text).unwrap();
        let provider = wf.config.tracker.provider.as_ref().unwrap();
        assert_eq!(
            provider["nested"]["a"],
            serde_yaml::Value::from(1),
            "kept as written"
        );
        let err = preflight(&wf.config).unwrap_err();
        assert_eq!(err.kind(), "invalid_tracker_config");
        assert!(
            err.to_string().starts_with("tracker.provider.endpoint: "),
            "{err}"
        );
        let text =
            "---\ntracker:\n  kind: git_issues\n  provider: [1]\nrunner:\n  command: a\n---\n";
        let wf = parse_workflow(Path::new("/r/WORKFLOW.md"), text).unwrap();
        assert!(
            preflight(&wf.config)
                .unwrap_err()
                .to_string()
                .contains("must be a map")
        );
    }

    #[test]
    fn linear_is_rejected_naming_the_supported_kind() {
        let text = "---\ntracker:\n  kind: linear\n---\n";
        let wf = parse_workflow(Path::new("/r/WORKFLOW.md"), text).unwrap();
        let err = preflight(&wf.config).unwrap_err();
        assert_eq!(err.kind(), "unsupported_tracker_kind");
        assert!(err.to_string().contains("git_issues"), "{err}");
    }

    #[test]
    fn missing_kind_and_command_are_both_reported() {
        assert_eq!(
            problems("runner:\n  kind: shell"),
            ["missing_tracker_kind", "missing_runner_command"]
        );
    }

    #[test]
    fn unknown_and_mismatched_presets_are_reported() {
        assert_eq!(
            problems("tracker:\n  kind: git_issues\nrunner:\n  preset: nope\n  command: x"),
            ["unknown_runner_preset"]
        );
        assert_eq!(
            problems("tracker:\n  kind: git_issues\nrunner:\n  kind: codex\n  preset: claude_code"),
            ["runner_preset_kind_mismatch"]
        );
    }
}
