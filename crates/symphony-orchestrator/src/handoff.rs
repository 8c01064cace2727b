//! The handoff file an agent may write instead of running `symphony issues handoff`:
//! `<workspace>/.symphony/handoff.json`, one JSON object with the fields of the CLI's handoff
//! (design.md, Orchestrator):
//!
//! ```json
//! {"summary": "required, not blank",
//!  "files_changed": ["paths"],
//!  "validation": [{"command": "cargo test", "status": "passed", "note": "optional", "exit_code": 0}],
//!  "follow_up": ["text"],
//!  "proofs_dir": "optional; the orchestrator links the attempt's proofs when absent"}
//! ```
//!
//! Anything else — another top-level key, a wrong type, a blank summary, more than
//! [`MAX_HANDOFF_BYTES`] — is refused with an error naming the file and the JSON pointer. A
//! refused file is renamed to `handoff.rejected.json` so the next attempt starts clean and the
//! agent's text is kept for the operator.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use symphony_tracker::{Handoff, ValidationRun};

/// The handoff file, relative to the workspace.
pub const HANDOFF_FILE: &str = ".symphony/handoff.json";
/// Where a refused handoff file is moved, relative to the workspace.
pub const REJECTED_FILE: &str = ".symphony/handoff.rejected.json";
/// Largest accepted handoff file, in bytes.
pub const MAX_HANDOFF_BYTES: u64 = 1024 * 1024;

const FIELDS: &[&str] = &[
    "summary",
    "files_changed",
    "validation",
    "follow_up",
    "proofs_dir",
];
const RUN_FIELDS: &[&str] = &["command", "status", "note", "exit_code"];

/// A handoff file that cannot be accepted. Messages lead with the file, then the JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    /// The file exists but cannot be read.
    #[error("{path}: cannot read the handoff: {reason}")]
    Read {
        /// The handoff file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The file is larger than [`MAX_HANDOFF_BYTES`].
    #[error("{path}: the handoff is {bytes} bytes, more than the {limit}-byte limit")]
    TooLarge {
        /// The handoff file.
        path: PathBuf,
        /// Its size in bytes.
        bytes: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file is not JSON.
    #[error("{path}:{line}:{column}: the handoff is not JSON: {message}")]
    NotJson {
        /// The handoff file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The JSON does not have the handoff's shape.
    #[error("{path}: {pointer}: {message}")]
    Invalid {
        /// The handoff file.
        path: PathBuf,
        /// JSON pointer of the offending value (empty for the whole document).
        pointer: String,
        /// What was expected.
        message: String,
    },
}

impl HandoffError {
    /// Stable class for manifests and logs: `handoff_unreadable`, `handoff_too_large`,
    /// `handoff_not_json`, `handoff_invalid`.
    pub fn kind(&self) -> &'static str {
        match self {
            HandoffError::Read { .. } => "handoff_unreadable",
            HandoffError::TooLarge { .. } => "handoff_too_large",
            HandoffError::NotJson { .. } => "handoff_not_json",
            HandoffError::Invalid { .. } => "handoff_invalid",
        }
    }
}

/// Reads and validates `<workspace>/.symphony/handoff.json`; `Ok(None)` when there is none.
///
/// # Errors
/// [`HandoffError`] for an unreadable, oversized, non-JSON or mis-shaped file. The file is
/// left in place; see [`reject`].
pub fn read(workspace: &Path) -> Result<Option<Handoff>, HandoffError> {
    let path = workspace.join(HANDOFF_FILE);
    let read_error = |e: std::io::Error| HandoffError::Read {
        path: path.clone(),
        reason: e.to_string(),
    };
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    if metadata.len() > MAX_HANDOFF_BYTES {
        return Err(HandoffError::TooLarge {
            path,
            bytes: metadata.len(),
            limit: MAX_HANDOFF_BYTES,
        });
    }
    let text = std::fs::read_to_string(&path).map_err(read_error)?;
    parse(&path, &text).map(Some)
}

/// Moves a refused handoff file to `handoff.rejected.json` (replacing an older one) and
/// returns the new path.
///
/// # Errors
/// The OS error of the rename.
pub fn reject(workspace: &Path) -> std::io::Result<PathBuf> {
    let rejected = workspace.join(REJECTED_FILE);
    std::fs::rename(workspace.join(HANDOFF_FILE), &rejected)?;
    Ok(rejected)
}

/// Whether the handoff file at `path` was already recorded on `record`: the record holds a
/// handoff whose `updated_at` is no older than the file's modification time (to the second,
/// the precision of the tracker's timestamps). An unreadable time counts as not recorded.
pub fn recorded_already(path: &Path, record: &Map<String, Value>) -> bool {
    let Some(recorded) = record
        .get("handoff")
        .and_then(|h| h.get("updated_at"))
        .and_then(Value::as_str)
        .and_then(|at| symphony_tracker::model::parse_timestamp(at).ok())
    else {
        return false;
    };
    let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified()) else {
        return false;
    };
    let modified = time::OffsetDateTime::from(modified);
    // The record's time is cut to the second: a file written in that second was recorded.
    modified < recorded + time::Duration::seconds(1)
}

/// Parses and validates the text of the handoff file at `path`.
///
/// # Errors
/// [`HandoffError::NotJson`] or [`HandoffError::Invalid`].
pub fn parse(path: &Path, text: &str) -> Result<Handoff, HandoffError> {
    let value: Value = serde_json::from_str(text).map_err(|e| HandoffError::NotJson {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    from_value(path, value)
}

/// Validates a handoff given as JSON (the `symphony_handoff` tool's arguments); `source` names
/// where it came from in errors.
///
/// # Errors
/// [`HandoffError::Invalid`] naming the JSON pointer.
pub fn from_value(source: &Path, value: Value) -> Result<Handoff, HandoffError> {
    let path = source;
    let invalid = |pointer: &str, message: &str| HandoffError::Invalid {
        path: path.to_path_buf(),
        pointer: pointer.to_string(),
        message: message.to_string(),
    };
    let Value::Object(object) = value else {
        return Err(invalid("", "expected a JSON object"));
    };
    if let Some(key) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            &format!("/{key}"),
            &format!("unknown field (expected {})", FIELDS.join(", ")),
        ));
    }
    let summary = match object.get("summary") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(invalid("/summary", "must not be blank")),
        Some(_) => return Err(invalid("/summary", "expected a string")),
        None => return Err(invalid("/summary", "is required")),
    };
    let mut validation = Vec::new();
    for (at, run) in list(&object, "validation", path)?.iter().enumerate() {
        validation.push(validation_run(run, &format!("/validation/{at}"), path)?);
    }
    Ok(Handoff {
        summary: Some(summary),
        files_changed: strings(&object, "files_changed", path)?,
        validation,
        follow_up: strings(&object, "follow_up", path)?,
        proofs_dir: optional_string(&object, "proofs_dir", "/proofs_dir", path)?,
        updated_at: None,
        extra: Map::new(),
    })
}

fn list<'v>(
    object: &'v Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<&'v [Value], HandoffError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(HandoffError::Invalid {
            path: path.to_path_buf(),
            pointer: format!("/{key}"),
            message: "expected a list".into(),
        }),
    }
}

fn strings(
    object: &Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<Vec<String>, HandoffError> {
    list(object, key, path)?
        .iter()
        .enumerate()
        .map(|(at, item)| {
            item.as_str()
                .map(str::to_string)
                .ok_or_else(|| HandoffError::Invalid {
                    path: path.to_path_buf(),
                    pointer: format!("/{key}/{at}"),
                    message: "expected a string".into(),
                })
        })
        .collect()
}

fn optional_string(
    object: &Map<String, Value>,
    key: &str,
    pointer: &str,
    path: &Path,
) -> Result<Option<String>, HandoffError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(HandoffError::Invalid {
            path: path.to_path_buf(),
            pointer: pointer.to_string(),
            message: "expected a string".into(),
        }),
    }
}

fn validation_run(run: &Value, pointer: &str, path: &Path) -> Result<ValidationRun, HandoffError> {
    let invalid = |at: &str, message: &str| HandoffError::Invalid {
        path: path.to_path_buf(),
        pointer: format!("{pointer}{at}"),
        message: message.to_string(),
    };
    let Value::Object(run) = run else {
        return Err(invalid(
            "",
            "expected an object {command, status, note?, exit_code?}",
        ));
    };
    if let Some(key) = run.keys().find(|k| !RUN_FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            &format!("/{key}"),
            &format!("unknown field (expected {})", RUN_FIELDS.join(", ")),
        ));
    }
    let required = |key: &str| match run.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(invalid(&format!("/{key}"), "expected a non-blank string")),
    };
    let exit_code = match run.get("exit_code") {
        None | Some(Value::Null) => None,
        Some(code) => Some(
            code.as_i64()
                .ok_or_else(|| invalid("/exit_code", "expected an integer"))?,
        ),
    };
    Ok(ValidationRun {
        command: required("command")?,
        status: required("status")?,
        note: optional_string(run, "note", &format!("{pointer}/note"), path)?,
        exit_code,
        extra: Map::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Handoff, HandoffError> {
        parse(Path::new("/ws/.symphony/handoff.json"), text)
    }

    #[test]
    fn a_full_handoff_is_accepted() {
        let h = check(
            r#"{"summary":"Did it","files_changed":["a.rs"],"validation":[{"command":"cargo test","status":"passed","exit_code":0,"note":"51/51"}],"follow_up":["more"],"proofs_dir":null}"#,
        )
        .unwrap();
        assert_eq!(h.summary.as_deref(), Some("Did it"));
        assert_eq!(h.files_changed, ["a.rs"]);
        assert_eq!(h.validation[0].exit_code, Some(0));
        assert_eq!(h.validation[0].note.as_deref(), Some("51/51"));
        assert_eq!(h.follow_up, ["more"]);
        assert_eq!(h.proofs_dir, None);
    }

    #[test]
    fn malformed_handoffs_name_the_file_and_pointer() {
        for (text, expected) in [
            (
                "{",
                "/ws/.symphony/handoff.json:1:1: the handoff is not JSON",
            ),
            ("[]", "/ws/.symphony/handoff.json: : expected a JSON object"),
            ("{}", ": /summary: is required"),
            (r#"{"summary":"  "}"#, "/summary: must not be blank"),
            (r#"{"summary":"s","sumary":"s"}"#, "/sumary: unknown field"),
            (
                r#"{"summary":"s","files_changed":"a"}"#,
                "/files_changed: expected a list",
            ),
            (
                r#"{"summary":"s","follow_up":[1]}"#,
                "/follow_up/0: expected a string",
            ),
            (
                r#"{"summary":"s","validation":[{"command":"x"}]}"#,
                "/validation/0/status: expected a non-blank string",
            ),
            (
                r#"{"summary":"s","validation":[{"command":"x","status":"passed","exit_code":"0"}]}"#,
                "/validation/0/exit_code: expected an integer",
            ),
        ] {
            let err = check(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn files_are_read_bounded_and_rejected_ones_are_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        std::fs::create_dir_all(dir.path().join(".symphony")).unwrap();
        std::fs::write(dir.path().join(HANDOFF_FILE), r#"{"summary":"ok"}"#).unwrap();
        assert!(read(dir.path()).unwrap().is_some());
        let big = vec![b' '; usize::try_from(MAX_HANDOFF_BYTES).unwrap() + 1];
        std::fs::write(dir.path().join(HANDOFF_FILE), big).unwrap();
        assert_eq!(read(dir.path()).unwrap_err().kind(), "handoff_too_large");
        let moved = reject(dir.path()).unwrap();
        assert!(moved.ends_with(REJECTED_FILE));
        assert_eq!(read(dir.path()).unwrap(), None);
    }
}
