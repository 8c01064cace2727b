//! `WORKFLOW.md` discovery and parsing (Symphony SPEC §5.1, §5.2, §5.5).
//!
//! A workflow file is Markdown with optional YAML front matter between two `---` lines. The front
//! matter becomes the raw config map (typed by [`crate::config`]); the trimmed body is the Liquid
//! prompt template (rendered by [`crate::prompt`]). Live reload lives in [`crate::reload`].

use std::path::{Path, PathBuf};

use crate::config::{EnvLookup, ServiceConfig, process_env};

/// The file name looked up in the process working directory when no explicit path is given
/// (SPEC §5.1).
pub const DEFAULT_WORKFLOW_FILE: &str = "WORKFLOW.md";

/// A workflow error. [`WorkflowError::kind`] gives the SPEC §5.5 class name.
///
/// Every message starts with the location (`path:line:column` where known), then the fact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// The workflow file could not be read (absent, unreadable, not UTF-8).
    #[error("{path}: cannot read workflow file: {reason}")]
    MissingWorkflowFile {
        /// The path that was tried.
        path: PathBuf,
        /// Why reading failed (OS error text).
        reason: String,
    },
    /// The front matter is not valid YAML, is never closed, or does not decode into the settings
    /// schema (wrong type, unknown enum value, non-positive duration...).
    #[error("{path}:{line}:{column}: {message}")]
    WorkflowParseError {
        /// The workflow file.
        path: PathBuf,
        /// 1-based line in the workflow file.
        line: usize,
        /// 1-based column in that line.
        column: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The front matter is valid YAML but not a map of settings.
    #[error("{path}:{line}: front matter must be a YAML map of settings, found {found}")]
    WorkflowFrontMatterNotAMap {
        /// The workflow file.
        path: PathBuf,
        /// 1-based line where the front matter starts.
        line: usize,
        /// The YAML type found instead (`a list`, `a string`...).
        found: &'static str,
    },
    /// The prompt template is not valid Liquid or uses an unknown filter or tag.
    #[error("{path}:{line}: prompt template does not parse: {message}")]
    TemplateParseError {
        /// The workflow file.
        path: PathBuf,
        /// 1-based line in the workflow file (the line the error points at when Liquid says,
        /// else the first line of the prompt body).
        line: usize,
        /// Liquid's explanation.
        message: String,
    },
    /// Rendering failed: unknown variable or index, bad filter argument, or the issue is not an
    /// object.
    #[error("{path}:{line}: prompt template does not render: {message}")]
    TemplateRenderError {
        /// The workflow file.
        path: PathBuf,
        /// 1-based line of the first line of the prompt body (Liquid reports no render position).
        line: usize,
        /// Liquid's explanation, with the variable it could not find.
        message: String,
    },
}

impl WorkflowError {
    /// The SPEC §5.5 error class: `missing_workflow_file`, `workflow_parse_error`,
    /// `workflow_front_matter_not_a_map`, `template_parse_error` or `template_render_error`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingWorkflowFile { .. } => "missing_workflow_file",
            Self::WorkflowParseError { .. } => "workflow_parse_error",
            Self::WorkflowFrontMatterNotAMap { .. } => "workflow_front_matter_not_a_map",
            Self::TemplateParseError { .. } => "template_parse_error",
            Self::TemplateRenderError { .. } => "template_render_error",
        }
    }
}

/// The parsed file (SPEC §4.1.2): the raw front matter map and the trimmed prompt body.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowDefinition {
    /// Absolute path of the workflow file.
    pub path: PathBuf,
    /// Front matter root object (empty when the file has none). Extensions owned by other crates
    /// (for example `mesh:`) deserialize their own block from here.
    pub config: serde_yaml::Mapping,
    /// Markdown body after the front matter, trimmed.
    pub prompt_template: String,
    /// 1-based line in the file where the trimmed prompt body starts (for error positions).
    pub prompt_line: usize,
}

impl WorkflowDefinition {
    /// The directory holding the workflow file; relative paths in the config resolve against it.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }
}

/// A loaded workflow: the definition and its typed config.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// The parsed file.
    pub definition: WorkflowDefinition,
    /// The typed view with defaults and `$VAR`/`~` resolution applied (SPEC §6).
    pub config: ServiceConfig,
}

/// Chooses the workflow file (SPEC §5.1): the explicit path when given, else `WORKFLOW.md` in the
/// process working directory. The result is absolute (joined onto the working directory when
/// relative); whether the file exists is checked by [`load_workflow`].
///
/// # Errors
/// `missing_workflow_file` when the working directory cannot be determined.
pub fn resolve_workflow_path(explicit: Option<&Path>) -> Result<PathBuf, WorkflowError> {
    let chosen = explicit.unwrap_or(Path::new(DEFAULT_WORKFLOW_FILE));
    if chosen.is_absolute() {
        return Ok(chosen.to_path_buf());
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(chosen))
        .map_err(|e| WorkflowError::MissingWorkflowFile {
            path: chosen.to_path_buf(),
            reason: format!("cannot determine the working directory: {e}"),
        })
}

/// Reads and parses a workflow file, then types its config.
///
/// # Errors
/// `missing_workflow_file` when unreadable; `workflow_parse_error` or
/// `workflow_front_matter_not_a_map` when the front matter is bad (see [`parse_workflow`]).
pub fn load_workflow(path: &Path) -> Result<Workflow, WorkflowError> {
    let text = std::fs::read_to_string(path).map_err(|e| WorkflowError::MissingWorkflowFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    parse_workflow(path, &text)
}

/// Parses workflow text that was read from `path` (SPEC §5.2) and types its config (SPEC §6).
///
/// The prompt template is not compiled here: template errors fail only the run attempt that
/// renders it (SPEC §5.5), see [`crate::prompt::check_template`] for an early check.
///
/// # Errors
/// `workflow_parse_error` (YAML syntax, unclosed front matter, a value of the wrong type) with the
/// file line and column; `workflow_front_matter_not_a_map` when the YAML is a list or scalar.
pub fn parse_workflow(path: &Path, text: &str) -> Result<Workflow, WorkflowError> {
    parse_workflow_in_env(path, text, &process_env)
}

/// Like [`parse_workflow`] with an explicit environment for `$VAR` and `~` resolution (hermetic
/// callers and tests).
///
/// # Errors
/// As [`parse_workflow`].
pub fn parse_workflow_in_env(
    path: &Path,
    text: &str,
    env: EnvLookup<'_>,
) -> Result<Workflow, WorkflowError> {
    let (definition, yaml) = split_workflow(path, text)?;
    let config = ServiceConfig::from_front_matter_in_env(&definition, yaml, env)?;
    Ok(Workflow { definition, config })
}

/// Line of the first front matter line (line 1 is the opening `---`).
pub(crate) const FRONT_MATTER_FIRST_LINE: usize = 2;

/// Splits `text` into (front matter, body start byte) when it opens with a `---` line.
/// `Some(Err(()))` means the front matter is never closed.
fn split_front_matter(text: &str) -> Option<Result<(&str, usize), ()>> {
    let text_start = text
        .strip_prefix('\u{feff}')
        .map_or(0, |_| '\u{feff}'.len_utf8());
    let rest = &text[text_start..];
    let first_end = rest.find('\n').unwrap_or(rest.len());
    if rest[..first_end].trim_end() != "---" {
        return None;
    }
    let yaml_start = text_start + (first_end + 1).min(rest.len());
    let mut offset = yaml_start;
    for line in text[yaml_start..].split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Some(Ok((&text[yaml_start..offset], offset + line.len())));
        }
        offset += line.len();
    }
    Some(Err(()))
}

/// Splits the file into its definition and the raw front matter text ("" when absent).
fn split_workflow<'t>(
    path: &Path,
    text: &'t str,
) -> Result<(WorkflowDefinition, &'t str), WorkflowError> {
    let (config, yaml, body_start) = match split_front_matter(text) {
        None => (serde_yaml::Mapping::new(), "", 0),
        Some(Err(())) => {
            return Err(WorkflowError::WorkflowParseError {
                path: path.to_path_buf(),
                line: 1,
                column: 1,
                message: "front matter opened with `---` is never closed by a `---` line".into(),
            });
        }
        Some(Ok((yaml, body_start))) => (parse_front_matter(path, yaml)?, yaml, body_start),
    };
    let body = &text[body_start..];
    let trimmed = body.trim();
    let leading = &body[..body.len() - body.trim_start().len()];
    let prompt_line = line_of(text, body_start) + leading.matches('\n').count();
    let definition = WorkflowDefinition {
        path: path.to_path_buf(),
        config,
        prompt_template: trimmed.to_owned(),
        prompt_line,
    };
    Ok((definition, yaml))
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

fn parse_front_matter(path: &Path, yaml: &str) -> Result<serde_yaml::Mapping, WorkflowError> {
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| yaml_error(path, &e))?;
    match value {
        serde_yaml::Value::Mapping(map) => Ok(map),
        // Comments only, or nothing between the `---` lines.
        serde_yaml::Value::Null => Ok(serde_yaml::Mapping::new()),
        other => Err(WorkflowError::WorkflowFrontMatterNotAMap {
            path: path.to_path_buf(),
            line: FRONT_MATTER_FIRST_LINE,
            found: yaml_type_name(&other),
        }),
    }
}

fn yaml_type_name(value: &serde_yaml::Value) -> &'static str {
    match value {
        serde_yaml::Value::Null => "nothing",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a map",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

/// Maps a serde_yaml error on the front matter to a `workflow_parse_error` positioned in the
/// workflow file (serde_yaml counts lines from the first front matter line).
pub(crate) fn yaml_error(path: &Path, error: &serde_yaml::Error) -> WorkflowError {
    let mut message = error.to_string();
    let (line, column) = match error.location() {
        Some(loc) => {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_owned();
            }
            (loc.line() + FRONT_MATTER_FIRST_LINE - 1, loc.column())
        }
        None => (FRONT_MATTER_FIRST_LINE, 1),
    };
    WorkflowError::WorkflowParseError {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

/// Maps an error typing the front matter to a `workflow_parse_error` at the offending key:
/// serde_yaml alone points at the start of the block holding it (`agent.max_turns: 0` would
/// report `agent`'s first key), so the key path is tracked while deserializing and its line
/// looked up in `yaml`. Falls back to [`yaml_error`] when the key is not found in block style.
pub(crate) fn keyed_yaml_error(
    path: &Path,
    yaml: &str,
    error: &serde_path_to_error::Error<serde_yaml::Error>,
) -> WorkflowError {
    let fallback = yaml_error(path, error.inner());
    let keys: Option<Vec<String>> = error
        .path()
        .iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        })
        .collect();
    let (
        Some(keys),
        WorkflowError::WorkflowParseError {
            message,
            line: at_line,
            column: at_column,
            ..
        },
    ) = (keys, &fallback)
    else {
        return fallback;
    };
    let Some((line, key_column)) = key_position(yaml, &keys).filter(|_| !keys.is_empty()) else {
        return fallback;
    };
    let line = line + FRONT_MATTER_FIRST_LINE - 1;
    // On the key's own line serde_yaml found the value itself (a wrong type): keep its column.
    let column = if line == *at_line {
        *at_column
    } else {
        key_column
    };
    let dotted = keys.join(".");
    // serde_yaml prefixes the part of the path it tracked (`agent: `); the full one replaces it.
    let fact = match message.split_once(": ") {
        Some((prefix, rest)) if dotted.starts_with(prefix) && !prefix.contains(' ') => rest,
        _ => message.as_str(),
    };
    WorkflowError::WorkflowParseError {
        path: path.to_path_buf(),
        line,
        column,
        message: format!("{dotted}: {fact}"),
    }
}

/// 1-based (line, column) in `yaml` of the block-style key path `keys` (`agent`, then
/// `max_turns` indented under it); `None` when it is not written that way.
fn key_position(yaml: &str, keys: &[String]) -> Option<(usize, usize)> {
    let mut depth = 0;
    let mut parent_indent: Option<usize> = None;
    for (index, line) in yaml.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if parent_indent.is_some_and(|parent| indent <= parent) {
            return None;
        }
        let key = keys.get(depth)?;
        let named = trimmed
            .strip_prefix(key.as_str())
            .is_some_and(|rest| rest.trim_start().starts_with(':'));
        if named {
            if depth + 1 == keys.len() {
                return Some((index + 1, indent + 1));
            }
            parent_indent = Some(indent);
            depth += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Workflow, WorkflowError> {
        parse_workflow(Path::new("/repo/WORKFLOW.md"), text)
    }

    #[test]
    fn file_without_front_matter_is_all_prompt() {
        let wf = parse("\n\nHello {{ issue.identifier }}\n\n").unwrap();
        assert!(wf.definition.config.is_empty());
        assert_eq!(
            wf.definition.prompt_template,
            "Hello {{ issue.identifier }}"
        );
        assert_eq!(wf.definition.prompt_line, 3);
    }

    #[test]
    fn front_matter_and_body_are_split_and_body_trimmed() {
        let wf = parse("---\npolling:\n  interval_ms: 5\n---\n\n  Body line\n\n").unwrap();
        assert_eq!(wf.config.polling.interval_ms, 5);
        assert_eq!(wf.definition.prompt_template, "Body line");
        assert_eq!(wf.definition.prompt_line, 6);
    }

    #[test]
    fn empty_front_matter_is_an_empty_map() {
        let wf = parse("---\n# only a comment\n---\nbody").unwrap();
        assert!(wf.definition.config.is_empty());
        assert_eq!(wf.definition.prompt_template, "body");
    }

    #[test]
    fn unclosed_front_matter_is_a_parse_error() {
        let err = parse("---\npolling: {}\nbody").unwrap_err();
        assert_eq!(err.kind(), "workflow_parse_error");
        assert!(err.to_string().contains("never closed"), "{err}");
    }

    #[test]
    fn yaml_syntax_error_points_at_the_file_line() {
        let err = parse("---\npolling:\n  interval_ms: [1, 2\n---\nbody").unwrap_err();
        let WorkflowError::WorkflowParseError { line, .. } = &err else {
            panic!("unexpected {err:?}");
        };
        assert!(
            *line >= 3,
            "line {line} should be inside the front matter: {err}"
        );
        assert!(err.to_string().starts_with("/repo/WORKFLOW.md:"), "{err}");
    }

    #[test]
    fn non_map_front_matter_is_typed() {
        let err = parse("---\n- a\n- b\n---\nbody").unwrap_err();
        assert_eq!(err.kind(), "workflow_front_matter_not_a_map");
        assert!(err.to_string().contains("found a list"), "{err}");
    }

    #[test]
    fn explicit_path_wins_and_relative_paths_are_made_absolute() {
        let explicit = resolve_workflow_path(Some(Path::new("/etc/x/WF.md"))).unwrap();
        assert_eq!(explicit, PathBuf::from("/etc/x/WF.md"));
        let default = resolve_workflow_path(None).unwrap();
        assert_eq!(
            default,
            std::env::current_dir().unwrap().join(DEFAULT_WORKFLOW_FILE)
        );
    }
}
