//! Errors of the sync crate. Each names the file, line or document it is about.

use std::path::PathBuf;

/// Everything that can go wrong holding the tracker as a document.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Reading or writing the issues file failed (the tracker's error names file and line).
    #[error(transparent)]
    Tracker(#[from] symphony_tracker::TrackerError),

    /// A file under `.symphony/sync/` could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },

    /// A persisted document does not load: the snapshot or a whole log entry is corrupt.
    #[error("{path}: {message} (the issues file was not touched; see docs/sync.md, Recovery)")]
    Corrupt {
        /// The snapshot or log.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// The persisted document belongs to another tracker.
    #[error(
        "{path}: the document is of tracker {found:?}, not {expected:?} (the issues file was not touched; see docs/sync.md, Recovery)"
    )]
    WrongTracker {
        /// The snapshot or log.
        path: PathBuf,
        /// The tracker this node serves.
        expected: String,
        /// The tracker the document names.
        found: String,
    },

    /// Automerge refused an operation or a change.
    #[error("document: {0}")]
    Automerge(#[from] automerge::AutomergeError),

    /// The document does not have the layout of a tracker document.
    #[error("document: {0}")]
    Layout(String),

    /// The file kept changing while it was being projected.
    #[error("{path}: the issues file kept changing during projection; try again")]
    Busy {
        /// The issues file.
        path: PathBuf,
    },
}

impl SyncError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> SyncError {
        SyncError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn json(error: serde_json::Error) -> SyncError {
        SyncError::Layout(format!("encoding a key order: {error}"))
    }
}

/// Results of this crate.
pub type Result<T, E = SyncError> = std::result::Result<T, E>;
