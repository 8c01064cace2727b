//! The `tracker:` settings of WORKFLOW.md, read through the orchestrator's loader so the
//! tracker commands and `symphony run` agree on every default and on `$VAR`/`~`/relative path
//! resolution (docs/workflow.md).

use std::path::{Path, PathBuf};

use symphony_orchestrator::workflow::{DEFAULT_WORKFLOW_FILE, load_workflow};
use symphony_tracker::StateConfig;
use symphony_tracker::ids::IdConfig;

use crate::UsageError;

/// Where the issues file is when there is no WORKFLOW.md.
pub const DEFAULT_ISSUES_PATH: &str = "issues/issues.jsonl";

/// What the tracker commands take from WORKFLOW.md.
#[derive(Debug, Clone)]
pub struct TrackerSettings {
    /// `tracker.*_states`.
    pub states: StateConfig,
    /// `tracker.id_scheme` and `tracker.id_prefix` (the prefix is inferred from the file when
    /// unset).
    pub ids: IdConfig,
    /// `tracker.path`, resolved against the workflow file's directory.
    pub path: PathBuf,
}

/// The settings of `explicit`, else of `./WORKFLOW.md` when it exists, else the defaults.
///
/// Errors: a [`UsageError`] naming the file, line and what was expected when the workflow
/// cannot be read or its front matter is invalid.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<TrackerSettings> {
    let default_file = Path::new(DEFAULT_WORKFLOW_FILE);
    let file = match explicit {
        Some(path) => path,
        None if default_file.is_file() => default_file,
        None => {
            return Ok(TrackerSettings {
                states: StateConfig::default(),
                ids: IdConfig::default(),
                path: PathBuf::from(DEFAULT_ISSUES_PATH),
            });
        }
    };
    let tracker = load_workflow(file)
        .map_err(|e| UsageError(e.to_string()))?
        .config
        .tracker;
    Ok(TrackerSettings {
        ids: tracker.ids(),
        states: tracker.states,
        path: tracker.path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use symphony_tracker::ids::SchemeKind;

    fn load_text(text: &str) -> anyhow::Result<TrackerSettings> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("WORKFLOW.md");
        std::fs::write(&path, text)?;
        let settings = load(Some(&path))?;
        Ok(TrackerSettings {
            path: settings.path.strip_prefix(dir.path())?.to_path_buf(),
            ..settings
        })
    }

    #[test]
    fn the_x0x_symphony_workflow_tracker_block_is_read() {
        let text = include_str!("../tests/fixtures/x0x-symphony-WORKFLOW.md");
        let settings = load_text(text).unwrap();
        assert_eq!(settings.ids.prefix.as_deref(), Some("XSY"));
        assert_eq!(settings.path, Path::new("issues/issues.jsonl"));
        assert_eq!(settings.states, StateConfig::default());
        assert_eq!(settings.ids.kind, SchemeKind::Sequential);
    }

    #[test]
    fn lists_may_be_comma_separated_and_unknown_schemes_are_refused() {
        let settings = load_text(
            "---\ntracker:\n  active_states: 'open, doing'\n  id_scheme: hash\n  path: t.jsonl\n---\nprompt",
        )
        .unwrap();
        assert_eq!(settings.states.active, ["open", "doing"]);
        assert_eq!(settings.states.terminal, StateConfig::default().terminal);
        assert_eq!(settings.ids.kind, SchemeKind::Hash);
        assert_eq!(settings.path, Path::new("t.jsonl"));
        let err = load_text("---\ntracker:\n  id_scheme: uuid\n---\n").unwrap_err();
        assert!(format!("{err:#}").contains("uuid"), "{err:#}");
    }

    #[test]
    fn a_file_without_front_matter_gives_the_defaults() {
        let settings = load_text("# Just a prompt\n").unwrap();
        assert_eq!(settings.states, StateConfig::default());
        assert_eq!(settings.path, Path::new(DEFAULT_ISSUES_PATH));
        assert!(load_text("---\ntracker: [1\n---\n").is_err());
    }
}
