//! The tracker lock: local writers (the daemon, CLI commands, agents running
//! `symphony issues handoff`) serialize on one lock file under `.symphony/`.
//!
//! Writers hold it exclusively for read-modify-write; readers hold it shared so they never
//! observe a half-finished append. Waits are bounded.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Result, TrackerError};

/// File name of the lock inside the state directory.
pub const LOCK_FILE: &str = "tracker.lock";

/// A held tracker lock; released on drop.
#[derive(Debug)]
pub struct TrackerLock {
    _file: File,
}

impl TrackerLock {
    /// Takes the lock exclusively, creating `state_dir` and the lock file if needed.
    ///
    /// Errors: [`TrackerError::LockTimeout`] after `timeout`; [`TrackerError::Io`] when the
    /// directory or file cannot be created.
    pub fn exclusive(state_dir: &Path, timeout: Duration) -> Result<TrackerLock> {
        if !state_dir.is_dir() {
            create_state_dir(state_dir)?;
        }
        let path = state_dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| TrackerError::io(&path, e))?;
        acquire(&path, &file, timeout, File::try_lock)?;
        Ok(TrackerLock { _file: file })
    }

    /// Takes the lock shared. Returns `None` without waiting when no lock file exists: no
    /// symphony writer has ever run here, and a read needs no state directory.
    pub fn shared(state_dir: &Path, timeout: Duration) -> Result<Option<TrackerLock>> {
        let path = state_dir.join(LOCK_FILE);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TrackerError::io(&path, e)),
        };
        acquire(&path, &file, timeout, File::try_lock_shared)?;
        Ok(Some(TrackerLock { _file: file }))
    }
}

fn acquire(
    path: &Path,
    file: &File,
    timeout: Duration,
    try_lock: fn(&File) -> std::result::Result<(), TryLockError>,
) -> Result<()> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match try_lock(file) {
            Ok(()) => return Ok(()),
            Err(TryLockError::Error(e)) => return Err(TrackerError::io(path, e)),
            Err(TryLockError::WouldBlock) if started.elapsed() >= timeout => {
                return Err(TrackerError::LockTimeout {
                    path: path.to_path_buf(),
                    waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                });
            }
            Err(TryLockError::WouldBlock) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

/// Creates `state_dir` with a `.gitignore` of `*`, so the lock and journal never show up as
/// untracked files in repositories that do not ignore `.symphony/` themselves.
fn create_state_dir(state_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(state_dir).map_err(|e| TrackerError::io(state_dir, e))?;
    let ignore = state_dir.join(".gitignore");
    std::fs::write(&ignore, "*\n").map_err(|e| TrackerError::io(&ignore, e))
}

/// The `.symphony/` directory that holds the lock and journal for the issues file at `path`:
/// at the root of the git work tree containing it; without git, beside the `issues/`
/// directory (or beside the file when it is not in one).
pub fn state_dir_for(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = absolute.parent().unwrap_or(Path::new("."));
    let root = dir
        .ancestors()
        .find(|candidate| candidate.join(".git").exists())
        .or_else(|| {
            (dir.file_name().is_some_and(|name| name == "issues"))
                .then(|| dir.parent())
                .flatten()
        })
        .unwrap_or(dir);
    root.join(".symphony")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_exclusive_lock_times_out_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let held = TrackerLock::exclusive(dir.path(), Duration::from_secs(1)).unwrap();
        let err = TrackerLock::exclusive(dir.path(), Duration::from_millis(30)).unwrap_err();
        assert!(matches!(err, TrackerError::LockTimeout { .. }), "{err}");
        drop(held);
        TrackerLock::exclusive(dir.path(), Duration::from_millis(30)).unwrap();
    }

    #[test]
    fn the_state_dir_ignores_itself_in_git() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".symphony");
        drop(TrackerLock::exclusive(&state, Duration::ZERO).unwrap());
        assert_eq!(
            std::fs::read_to_string(state.join(".gitignore")).unwrap(),
            "*\n"
        );
    }

    #[test]
    fn shared_locks_coexist_and_need_no_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            TrackerLock::shared(dir.path(), Duration::ZERO)
                .unwrap()
                .is_none()
        );
        drop(TrackerLock::exclusive(dir.path(), Duration::ZERO).unwrap());
        let a = TrackerLock::shared(dir.path(), Duration::ZERO).unwrap();
        let b = TrackerLock::shared(dir.path(), Duration::ZERO).unwrap();
        assert!(a.is_some() && b.is_some());
    }

    #[test]
    fn state_dir_is_at_the_git_root_or_beside_issues() {
        let dir = tempfile::tempdir().unwrap();
        let issues = dir.path().join("issues/issues.jsonl");
        assert_eq!(state_dir_for(&issues), dir.path().join(".symphony"));
        std::fs::create_dir_all(dir.path().join("repo/.git")).unwrap();
        let nested = dir.path().join("repo/a/b/issues.jsonl");
        assert_eq!(state_dir_for(&nested), dir.path().join("repo/.symphony"));
    }
}
