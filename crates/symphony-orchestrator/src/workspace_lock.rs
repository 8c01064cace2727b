//! The workspace lock: `<workspace>/.symphony/workspace.lock`, held by an attempt and by every
//! process it starts in the workspace, so that a restart never dispatches into a workspace a
//! process of an earlier run still works in (two agents in one directory corrupt each other).
//!
//! It is an advisory `flock`, not a pid file: the kernel drops it when the last holder exits,
//! so nothing goes stale and no pid can be reused. The attempt takes it exclusively — which
//! succeeds only when no process holds it at all — then downgrades to shared; each hook and
//! agent process started with that workspace as working directory opens the file and takes a
//! shared lock before it executes ([`crate::process_group`]), and its descendants inherit the
//! descriptor. When the orchestrator is killed its agents die with it (`PR_SET_PDEATHSIG`),
//! but a grandchild that outlives them still holds the lock.
//!
//! Each such child also appends `<pgid> <orchestrator pid>` to the lock file. An attempt that
//! finds the workspace held kills the process groups listed there whose orchestrator is no
//! longer alive — the rest of an agent that should have died with it — and waits for the lock
//! (at most [`HELD_WAIT`]); a workspace still held then (a live orchestrator's processes, or a
//! process that left its group) fails the attempt with `workspace_busy`, retried with backoff.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};
use rustix::process::{
    Pid, Signal, kill_process_group, test_kill_process, test_kill_process_group,
};

/// The lock file, relative to the workspace.
pub const WORKSPACE_LOCK_FILE: &str = ".symphony/workspace.lock";
/// Longest wait for a workspace a live process of an earlier run still holds.
pub const HELD_WAIT: Duration = Duration::from_secs(10);
/// How often a held workspace is re-tried.
const HELD_POLL: Duration = Duration::from_millis(100);

/// A workspace lock failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceLockError {
    /// The lock file cannot be created, opened or locked.
    #[error("{path}: cannot {op}: {reason}")]
    Io {
        /// The lock file or its directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        reason: String,
    },
    /// Processes of an earlier run still hold the workspace.
    #[error(
        "{path}: the workspace is still held by a live process of an earlier run (waited {waited_ms} ms); \
         `fuser -v {path}` lists it — the attempt is retried once it has ended"
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// How long the attempt waited, in ms.
        waited_ms: u64,
    },
}

impl WorkspaceLockError {
    /// Stable class: `workspace_busy` or `workspace_io`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Held { .. } => "workspace_busy",
            Self::Io { .. } => "workspace_io",
        }
    }
}

/// A held workspace lock (shared once taken); released on drop.
#[derive(Debug)]
pub struct WorkspaceLock {
    _file: File,
    path: PathBuf,
}

impl WorkspaceLock {
    /// Takes the lock of `workspace`, waiting up to `wait` while other processes hold it.
    ///
    /// # Errors
    /// [`WorkspaceLockError::Held`] after `wait`; [`WorkspaceLockError::Io`] when the file
    /// cannot be created or locked.
    pub async fn acquire(workspace: &Path, wait: Duration) -> Result<Self, WorkspaceLockError> {
        let path = workspace.join(WORKSPACE_LOCK_FILE);
        let io = |op, e: &dyn std::fmt::Display, at: &Path| WorkspaceLockError::Io {
            path: at.to_path_buf(),
            op,
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("create the directory", &e, dir))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io("open the lock file", &e, &path))?;
        let started = Instant::now();
        let mut warned = false;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) if started.elapsed() < wait => {
                    if !warned {
                        tracing::warn!(path = %path.display(), "workspace held by a live process of an earlier run; waiting for it to end");
                        kill_orphaned_groups(&path);
                        warned = true;
                    }
                    tokio::time::sleep(HELD_POLL).await;
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(WorkspaceLockError::Held {
                        waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                        path,
                    });
                }
                Err(e) => return Err(io("lock the workspace", &e, &path)),
            }
        }
        // Nobody holds it: the holder lines are history.
        file.set_len(0)
            .map_err(|e| io("truncate the lock file", &e, &path))?;
        // Shared from here on, so the processes of this attempt can share it.
        flock(&file, FlockOperation::LockShared)
            .map_err(|e| io("share the workspace lock", &e, &path))?;
        Ok(WorkspaceLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// SIGKILLs the process groups listed in the lock file whose orchestrator is gone (a group
/// whose orchestrator lives belongs to a run still going on, and is left alone).
fn kill_orphaned_groups(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let alive = |pid: Pid| !matches!(test_kill_process(pid), Err(rustix::io::Errno::SRCH));
    for line in text.lines() {
        let mut fields = line
            .split_whitespace()
            .map(|n| n.parse::<i32>().ok().and_then(Pid::from_raw));
        let (Some(Some(pgid)), Some(Some(orchestrator))) = (fields.next(), fields.next()) else {
            continue;
        };
        if alive(orchestrator) || test_kill_process_group(pgid).is_err() {
            continue;
        }
        match kill_process_group(pgid, Signal::KILL) {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                pgid = pgid.as_raw_nonzero().get(),
                orchestrator_pid = orchestrator.as_raw_nonzero().get(),
                "killed a process group an earlier, killed orchestrator left in the workspace"
            ),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not kill a process group left in the workspace")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_workspace_held_by_another_open_lock_is_busy_until_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = WorkspaceLock::acquire(dir.path(), Duration::ZERO)
            .await
            .unwrap();
        let err = WorkspaceLock::acquire(dir.path(), Duration::from_millis(150))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "workspace_busy", "{err}");
        assert!(err.to_string().contains("fuser -v"), "{err}");
        drop(first);
        WorkspaceLock::acquire(dir.path(), Duration::ZERO)
            .await
            .unwrap();
    }
}
