//! Errors of the tracker crate. Every variant carries the location a user needs to act on it.

use std::path::PathBuf;

/// Everything that can go wrong reading, validating or writing the issues file.
///
/// Display strings lead with the location (`path:line:column:`), then the fact, then the fix
/// when one is known — the shape of compiler diagnostics.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },

    /// The issues file does not exist.
    #[error("{path}: issues file not found (create one with `symphony init`)")]
    Missing {
        /// The path that was looked up.
        path: PathBuf,
    },

    /// The file is not UTF-8.
    #[error("{path}:{line}:{column}: invalid UTF-8 (the issues file must be UTF-8 JSON Lines)")]
    InvalidUtf8 {
        /// The issues file.
        path: PathBuf,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 1-based byte column of the first invalid byte.
        column: usize,
    },

    /// A line is not a JSON object.
    #[error("{path}:{line}:{column}: {message}")]
    Json {
        /// The issues file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column within the line.
        column: usize,
        /// What the parser expected.
        message: String,
    },

    /// A record does not have the shape the schema requires (wrong type, missing field).
    #[error("{path}:{line}: {pointer}: {message}")]
    Record {
        /// The issues file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// JSON pointer of the offending value within the record (`/priority`).
        pointer: String,
        /// What was expected.
        message: String,
    },

    /// A line is longer than the record size limit.
    #[error(
        "{path}:{line}: record is {bytes} bytes, larger than the {limit}-byte limit for one issue"
    )]
    RecordTooLarge {
        /// The issues file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Size of the line in bytes.
        bytes: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// The file contains unresolved git conflict markers.
    #[error(
        "{path}:{line}: unresolved git conflict marker `{marker}`; resolve it by hand, and enable \
         the merge driver so this does not recur: `git config merge.symphony.driver \
         \"symphony merge-driver %O %A %B %P\"` and \
         `issues/issues.jsonl merge=symphony` in .gitattributes (see docs/merge.md)"
    )]
    ConflictMarkers {
        /// The issues file.
        path: PathBuf,
        /// 1-based line of the first marker.
        line: usize,
        /// The marker found (`<<<<<<<`, `=======`, `>>>>>>>` or `|||||||`).
        marker: String,
    },

    /// A line starts with a UTF-8 byte order mark (U+FEFF), which JSON Lines does not allow.
    /// Refused by every command, like conflict markers: the file as a whole needs fixing.
    #[error(
        "{path}:{line}:1: the line starts with a UTF-8 byte order mark (U+FEFF); JSON Lines has none \
         — remove those 3 bytes (e.g. `sed -i '{line}s/^\\xEF\\xBB\\xBF//' {path}`)"
    )]
    ByteOrderMark {
        /// The issues file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },

    /// Two records share an id.
    #[error("{path}:{line}: duplicate id {id:?} (first defined on line {first_line})")]
    DuplicateId {
        /// The issues file.
        path: PathBuf,
        /// 1-based line of the second occurrence.
        line: usize,
        /// 1-based line of the first occurrence.
        first_line: usize,
        /// The duplicated id.
        id: String,
    },

    /// No record has the requested id.
    #[error("{path}: no issue with id {id:?}")]
    NotFound {
        /// The issues file.
        path: PathBuf,
        /// The id looked up.
        id: String,
    },

    /// The requested change is not allowed (e.g. an agent writing a human-only state).
    #[error("{id}: {message}")]
    Rejected {
        /// The issue concerned.
        id: String,
        /// Why the change was refused.
        message: String,
    },

    /// The file changed on disk while a write was being prepared; nothing was written.
    #[error("{path}: the file changed on disk during the write; nothing was written, retry")]
    ConcurrentModification {
        /// The issues file.
        path: PathBuf,
    },

    /// A write would leave fewer records than the file has; refused so nothing is lost.
    #[error(
        "{path}: refusing to write {written} records over {existing} (records leave the file \
         only through an explicit remove)"
    )]
    WouldDropRecords {
        /// The issues file.
        path: PathBuf,
        /// Records in the file before the write.
        existing: usize,
        /// Records the write would have left.
        written: usize,
    },

    /// The tracker lock could not be taken in time.
    #[error("{path}: another symphony process holds the tracker lock (waited {waited_ms} ms)")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited, in milliseconds.
        waited_ms: u64,
    },

    /// The JSON Schema of the issues file could not be read or compiled.
    #[error("{path}: invalid issue schema: {message}")]
    Schema {
        /// The schema file (`issues/schema.json`), or `<built-in>`.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A new id is needed but no prefix is configured and the file has no ids to infer one.
    #[error(
        "no id prefix: set `tracker.id_prefix` in WORKFLOW.md (or run `symphony init --prefix XYZ`)"
    )]
    NoIdPrefix,

    /// The git commit of the issues file failed.
    #[error("{path}: git commit failed: {message}")]
    Git {
        /// The issues file.
        path: PathBuf,
        /// libgit2's message.
        message: String,
    },
}

impl TrackerError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = TrackerError> = std::result::Result<T, E>;
