//! Dynamic `WORKFLOW.md` reload (Symphony SPEC §6.2): a store holding the last known good
//! workflow, re-read when the file changes, and a filesystem watcher that signals changes.
//!
//! The scheduler calls [`WorkflowStore::reload_if_changed`] when the watcher signals and again
//! on every tick (watch events can be missed). An invalid file never replaces the current
//! workflow: the error is logged once per distinct file content and kept in
//! [`WorkflowStore::last_error`] until a valid file (or the current content) is back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::prompt::check_template;
use crate::workflow::{Workflow, WorkflowError, parse_workflow};

/// Identity of one version of the file: modification time, length and SHA-256 of the content.
/// Two versions are the same when their content hashes match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    len: u64,
    digest: [u8; 32],
}

impl Fingerprint {
    fn same_content(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

/// What [`WorkflowStore::reload_if_changed`] did.
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// The content is the current one, or the already-rejected one.
    Unchanged,
    /// A new valid workflow replaced the current one.
    Reloaded(Arc<Workflow>),
    /// The file changed but is invalid; the last known good workflow stays current.
    Rejected(WorkflowError),
}

/// The last known good workflow and the file it came from.
#[derive(Debug)]
pub struct WorkflowStore {
    path: PathBuf,
    current: Arc<Workflow>,
    fingerprint: Fingerprint,
    rejected: Option<(Fingerprint, WorkflowError)>,
}

fn read(path: &Path) -> Result<(String, Fingerprint), WorkflowError> {
    let missing = |e: std::io::Error| WorkflowError::MissingWorkflowFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(missing)?;
    let text = std::fs::read_to_string(path).map_err(missing)?;
    let fingerprint = Fingerprint {
        modified: meta.modified().ok(),
        len: meta.len(),
        digest: Sha256::digest(text.as_bytes()).into(),
    };
    Ok((text, fingerprint))
}

fn warn_on_template(workflow: &Workflow) {
    if let Err(e) = check_template(&workflow.definition) {
        tracing::warn!(error_kind = e.kind(), error = %e, "workflow prompt template does not parse; runs will fail until it is fixed");
    }
}

impl WorkflowStore {
    /// Loads the workflow at `path` (startup: an invalid file is an error, SPEC §6.3).
    ///
    /// # Errors
    /// Any [`WorkflowError`] from reading or parsing the file.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, WorkflowError> {
        let path = path.into();
        let (text, fingerprint) = read(&path)?;
        let workflow = parse_workflow(&path, &text)?;
        warn_on_template(&workflow);
        Ok(Self {
            path,
            current: Arc::new(workflow),
            fingerprint,
            rejected: None,
        })
    }

    /// The workflow file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current (last known good) workflow.
    pub fn current(&self) -> Arc<Workflow> {
        Arc::clone(&self.current)
    }

    /// The error of the file's present invalid content, if it is invalid.
    pub fn last_error(&self) -> Option<&WorkflowError> {
        self.rejected.as_ref().map(|(_, e)| e)
    }

    /// Re-reads the file and, when its content changed, re-parses it. A valid new version
    /// becomes current; an invalid one is logged (`tracing::error!`, once per content) and
    /// returned, and the last known good version stays current.
    pub fn reload_if_changed(&mut self) -> ReloadOutcome {
        let (text, fingerprint) = match read(&self.path) {
            Ok(read) => read,
            Err(e) => return self.reject(None, e),
        };
        if fingerprint.same_content(&self.fingerprint) {
            self.fingerprint = fingerprint;
            self.rejected = None;
            return ReloadOutcome::Unchanged;
        }
        if let Some((rejected, _)) = &self.rejected
            && rejected.same_content(&fingerprint)
        {
            return ReloadOutcome::Unchanged;
        }
        match parse_workflow(&self.path, &text) {
            Ok(workflow) => {
                warn_on_template(&workflow);
                self.current = Arc::new(workflow);
                self.fingerprint = fingerprint;
                self.rejected = None;
                tracing::info!(path = %self.path.display(), "workflow reloaded");
                ReloadOutcome::Reloaded(self.current())
            }
            Err(e) => self.reject(Some(fingerprint), e),
        }
    }

    fn reject(&mut self, fingerprint: Option<Fingerprint>, error: WorkflowError) -> ReloadOutcome {
        let repeated = self
            .rejected
            .as_ref()
            .is_some_and(|(previous, previous_error)| {
                fingerprint.is_some_and(|f| previous.same_content(&f)) || *previous_error == error
            });
        if repeated {
            return ReloadOutcome::Unchanged;
        }
        tracing::error!(
            error_kind = error.kind(),
            error = %error,
            "workflow reload rejected; keeping the last known good configuration"
        );
        let fingerprint = fingerprint.unwrap_or(Fingerprint {
            modified: None,
            len: 0,
            digest: [0; 32],
        });
        self.rejected = Some((fingerprint, error.clone()));
        ReloadOutcome::Rejected(error)
    }
}

/// A failure to start watching the workflow file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot watch for workflow changes: {reason}")]
pub struct WatchError {
    /// The directory that could not be watched.
    pub path: PathBuf,
    /// The watcher's error.
    pub reason: String,
}

/// Keeps the filesystem watch alive; dropping it stops the signals.
pub struct WorkflowWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for WorkflowWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkflowWatcher")
    }
}

/// Watches the directory of `path` and sends `()` on the returned channel whenever an entry
/// named like the workflow file changes (editors often replace the file by renaming, so the
/// directory is watched, not the file). Signals coalesce: the channel holds at most one.
///
/// # Errors
/// [`WatchError`] when the platform watcher cannot be created or the directory watched.
pub fn watch_workflow(path: &Path) -> Result<(WorkflowWatcher, mpsc::Receiver<()>), WatchError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path.file_name().map(ToOwned::to_owned);
    let (tx, rx) = mpsc::channel(1);
    let watch_error = |e: notify::Error| WatchError {
        path: dir.clone(),
        reason: e.to_string(),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.paths.iter().any(|p| p.file_name() == name.as_deref()) {
            // Full means a signal is already pending; the reader re-reads the file anyway.
            let _ = tx.try_send(());
        }
    })
    .map_err(watch_error)?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(watch_error)?;
    Ok((WorkflowWatcher { _watcher: watcher }, rx))
}
