//! One node's tracker: the issues file, its document and the document's persistence, kept in
//! step in the order that makes a crash safe (docs/sync.md, "The write path").
//!
//! [`LocalTracker::sync_file`] imports the file, fsyncs the new changes to the log, projects
//! the document into the file, then records the file heads. [`LocalTracker::apply_changes`]
//! takes changes from a peer, renumbers this node's losing creations, persists, and
//! projects. A change is on disk before [`LocalTracker::sync_file`] or
//! [`LocalTracker::apply_changes`] returns, so a caller that broadcasts afterwards never
//! announces a change it could lose.

use std::path::Path;

use automerge::Change;
use symphony_tracker::Store;

use crate::error::Result;
use crate::persist::{self, Persistence};
use crate::replica::{FileSync, Replica};

/// Compact when the log outgrows this many bytes (and the last snapshot).
pub const COMPACT_LOG_BYTES: u64 = 8 * 1024 * 1024;

/// The issues file of one clone and its persisted document.
pub struct LocalTracker {
    store: Store,
    replica: Replica,
    persistence: Persistence,
    /// What loading repaired (a torn log tail).
    pub warnings: Vec<String>,
}

impl LocalTracker {
    /// Opens the document of tracker `tracker` for the issues file of `store` (persisted
    /// under the store's state directory, `sync/`). Nothing is written to the issues file:
    /// call [`LocalTracker::sync_file`]. Errors: as [`persist::open`].
    pub fn open(store: Store, tracker: &str) -> Result<LocalTracker> {
        let loaded = persist::open(store.state_dir(), tracker)?;
        Ok(LocalTracker {
            store,
            replica: loaded.replica,
            persistence: loaded.persistence,
            warnings: loaded.warnings,
        })
    }

    /// The document.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The document, for changes made by the caller; call [`LocalTracker::persist`] and
    /// [`LocalTracker::sync_file`] afterwards.
    pub fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }

    /// The issues file's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The state directory holding `sync/`.
    pub fn state_dir(&self) -> &Path {
        self.store.state_dir()
    }

    /// Appends unsaved changes to the log and fsyncs it. Returns how many were written.
    pub fn persist(&mut self) -> Result<usize> {
        self.persistence.persist(&self.replica)
    }

    /// Imports the file, persists, projects, records the file heads (module docs).
    pub fn sync_file(&mut self) -> Result<FileSync> {
        let report = self.replica.sync_file_staged(&self.store, &mut |replica| {
            self.persistence.persist(replica).map(drop)
        })?;
        self.persistence
            .save_file_heads(self.replica.file_heads())?;
        if self.persistence.log_bytes() > COMPACT_LOG_BYTES {
            self.persistence.compact(&self.replica)?;
        }
        Ok(report)
    }

    /// Applies changes from a peer, then persists and projects them. Errors: a change the
    /// document rejects ([`crate::SyncError::Automerge`]) leaves the document unchanged.
    pub fn apply_changes(&mut self, changes: Vec<Change>) -> Result<FileSync> {
        self.replica.apply_changes(changes)?;
        self.sync_file()
    }

    /// Writes a snapshot and empties the log. Returns the snapshot's size in bytes.
    pub fn compact(&mut self) -> Result<u64> {
        self.persistence.compact(&self.replica)
    }
}
