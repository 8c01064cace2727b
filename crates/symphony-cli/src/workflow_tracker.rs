//! The `tracker:` block of WORKFLOW.md's YAML front matter — only what the tracker commands
//! need. Everything else in the file is ignored here; the orchestrator's WORKFLOW.md loader
//! owns the full format (docs: WORKFLOW.md reference) and will replace this module.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;
use symphony_tracker::StateConfig;
use symphony_tracker::ids::{IdConfig, SchemeKind};

use crate::UsageError;

/// Default issues file, relative to the workflow's directory.
pub const DEFAULT_ISSUES_PATH: &str = "issues/issues.jsonl";

/// The tracker settings of a workflow (defaults when there is no WORKFLOW.md).
#[derive(Debug, Clone)]
pub struct TrackerSettings {
    /// `tracker.{active,terminal,review,blocked}_states`, defaults for the lists not given.
    pub states: StateConfig,
    /// `tracker.id_scheme` (`sequential` or `hash`) and `tracker.id_prefix`.
    pub ids: IdConfig,
    /// `tracker.path` resolved against the workflow's directory
    /// (default [`DEFAULT_ISSUES_PATH`]).
    pub path: PathBuf,
}

/// Reads the tracker settings from `explicit`, else from `./WORKFLOW.md` when it exists,
/// else returns the defaults.
///
/// Errors (exit code 2): an explicit file that cannot be read, front matter that is not
/// YAML, a `tracker:` block of the wrong shape, an unknown `id_scheme`.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<TrackerSettings> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StateList {
        List(Vec<String>),
        CommaSeparated(String),
    }
    #[derive(Default, Deserialize)]
    #[serde(default)]
    struct Block {
        path: Option<String>,
        active_states: Option<StateList>,
        terminal_states: Option<StateList>,
        review_states: Option<StateList>,
        blocked_states: Option<StateList>,
        id_prefix: Option<String>,
        id_scheme: Option<String>,
    }
    #[derive(Default, Deserialize)]
    #[serde(default)]
    struct FrontMatter {
        tracker: Option<Block>,
    }

    let default_file = Path::new("WORKFLOW.md");
    let file = match explicit {
        Some(path) => Some(path),
        None => default_file.is_file().then_some(default_file),
    };
    let (block, base) = match file {
        None => (Block::default(), PathBuf::new()),
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
            let yaml = text
                .strip_prefix("---")
                .and_then(|rest| rest.split_once("\n---"))
                .map_or("", |(yaml, _)| yaml);
            let front: FrontMatter = if yaml.trim().is_empty() {
                FrontMatter::default()
            } else {
                serde_yaml::from_str(yaml)
                    .map_err(|e| UsageError(format!("{}: front matter: {e}", file.display())))?
            };
            let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
            (front.tracker.unwrap_or_default(), base)
        }
    };
    let list = |given: Option<StateList>, default: Vec<String>| match given {
        None => default,
        Some(StateList::List(names)) => names,
        Some(StateList::CommaSeparated(text)) => text
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    let defaults = StateConfig::default();
    let id_scheme = match block.id_scheme.as_deref() {
        None => SchemeKind::default(),
        Some(text) => text
            .parse()
            .map_err(|e: String| UsageError(format!("tracker.id_scheme: {e}")))
            .with_context(|| format!("{}", file.unwrap_or(default_file).display()))?,
    };
    Ok(TrackerSettings {
        states: StateConfig {
            active: list(block.active_states, defaults.active),
            terminal: list(block.terminal_states, defaults.terminal),
            review: list(block.review_states, defaults.review),
            blocked: list(block.blocked_states, defaults.blocked),
        },
        ids: IdConfig {
            kind: id_scheme,
            prefix: block.id_prefix.filter(|p| !p.trim().is_empty()),
        },
        path: base.join(block.path.as_deref().unwrap_or(DEFAULT_ISSUES_PATH)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(
            format!("{err:#}").contains("unknown id scheme \"uuid\""),
            "{err:#}"
        );
    }

    #[test]
    fn a_file_without_front_matter_gives_the_defaults() {
        let settings = load_text("# Just a prompt\n").unwrap();
        assert_eq!(settings.states, StateConfig::default());
        assert_eq!(settings.path, Path::new(DEFAULT_ISSUES_PATH));
        assert!(load_text("---\ntracker: [1\n---\n").is_err());
    }
}
