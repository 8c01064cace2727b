//! Committing tracker files, and nothing else, to git (`--commit`, and the orchestrator's
//! handoff commits).
//!
//! A commit's tree is HEAD's tree with exactly the named paths replaced — their current bytes,
//! or bytes the caller computed — never the index: whatever else the user has staged stays
//! staged and out of the commit. The index entries of the committed paths are then set to the
//! committed blobs, so `git status` does not show the committed change as staged-but-different.
//!
//! A process killed in the middle of a commit leaves git's lock files behind
//! (`refs/heads/<branch>.lock`, `index.lock`), and every later commit fails on them. So that
//! a lock we left is known to be ours, a commit first writes its pid to
//! `<git dir>/symphony-commit.pid` ([`COMMIT_MARKER`]) and removes it when done. The next
//! commit that finds the marker of a process that is no longer alive removes those lock
//! files and carries on; a lock file without our marker belongs to someone else, and the
//! error names the file to remove. Callers hold the tracker lock, so no two symphony
//! commits run at once in one repository.

use std::path::{Path, PathBuf};

use git2::{
    ErrorCode, FileMode, IndexEntry, IndexTime, Oid, Repository, RepositoryState, Signature,
};

use crate::error::{Result, TrackerError};

/// Author and committer used when git config has no `user.name`/`user.email`.
pub const FALLBACK_SIGNATURE: (&str, &str) = ("Symphony", "symphony@localhost");

/// The file in the git directory naming the pid of the symphony process committing now.
pub const COMMIT_MARKER: &str = "symphony-commit.pid";

/// One path of a [`commit_paths`] commit.
#[derive(Debug, Clone, Copy)]
pub enum Staged<'a> {
    /// The current content of a file, or of every file under a directory (recursively).
    Current(&'a Path),
    /// These bytes at this file path (which may differ from the work-tree file).
    Bytes(&'a Path, &'a [u8]),
}

impl Staged<'_> {
    fn path(&self) -> &Path {
        match self {
            Staged::Current(path) | Staged::Bytes(path, _) => path,
        }
    }
}

/// Commits the current content of `path` on the branch HEAD points to, with `message`, and
/// returns the new commit's id (40 hex digits). On an unborn branch the commit is the first.
///
/// Errors: as [`commit_paths`].
pub fn commit_file(path: &Path, message: &str) -> Result<String> {
    commit_paths(&[Staged::Current(path)], message)
}

/// Commits exactly `entries` on the branch HEAD points to: the tree is HEAD's tree with each
/// entry's file(s) upserted, so nothing else — staged or not — enters the commit. Paths may
/// be absolute or relative to the process directory; they must all lie in one work tree.
/// Returns the new commit's id (40 hex digits).
///
/// Errors: [`TrackerError::Io`] when a file cannot be read; [`TrackerError::Git`] when a path
/// is not inside a git work tree, a merge or rebase is in progress (a partial commit would
/// abandon it), or libgit2 fails (its message is kept, e.g. when another process moved HEAD
/// during the commit — nothing is committed then and the caller may retry).
pub fn commit_paths(entries: &[Staged<'_>], message: &str) -> Result<String> {
    let Some(first) = entries.first() else {
        return Err(TrackerError::Git {
            path: PathBuf::new(),
            message: "nothing to commit".into(),
        });
    };
    let anchor = first.path();
    let git = |message: String| TrackerError::Git {
        path: anchor.to_path_buf(),
        message,
    };
    let start = std::path::absolute(anchor).map_err(|e| TrackerError::io(anchor, e))?;
    let repo = Repository::discover(start.parent().unwrap_or(Path::new("/")))
        .map_err(|e| git(format!("not in a git repository ({})", e.message())))?;
    if repo.state() != RepositoryState::Clean {
        return Err(git(format!(
            "the repository is in the middle of a {:?}; finish it before committing",
            repo.state()
        )));
    }
    let mut blobs = Vec::new();
    for entry in entries {
        collect(&repo, entry, &mut blobs)?;
    }
    recover_our_stale_locks(&repo);
    let marker = repo.path().join(COMMIT_MARKER);
    std::fs::write(&marker, format!("{}\n", std::process::id()))
        .map_err(|e| TrackerError::io(&marker, e))?;
    let committed = commit_blobs(&repo, &blobs, message);
    if let Err(e) = std::fs::remove_file(&marker) {
        tracing::warn!(path = %marker.display(), error = %e, "commit marker not removed");
    }
    committed.map_err(|e| git(describe(&repo, &e)))
}

/// Git's lock files a commit takes: the branch HEAD points to, HEAD itself, the index.
fn commit_lock_files(repo: &Repository) -> Vec<PathBuf> {
    let mut locks = vec![
        repo.path().join("HEAD.lock"),
        repo.path().join("index.lock"),
    ];
    if let Ok(head) = repo.find_reference("HEAD")
        && let Ok(Some(target)) = head.symbolic_target()
    {
        locks.push(repo.commondir().join(format!("{target}.lock")));
    }
    locks
}

/// Removes the git lock files a killed symphony commit left: only when the commit marker
/// names a process that is not alive (a live or unknown owner keeps its locks).
fn recover_our_stale_locks(repo: &Repository) {
    let marker = repo.path().join(COMMIT_MARKER);
    let Ok(text) = std::fs::read_to_string(&marker) else {
        return;
    };
    let owner = text.trim().parse::<i32>().ok();
    let alive = owner
        .filter(|&pid| pid != i32::try_from(std::process::id()).unwrap_or(0))
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|pid| {
            // EPERM: the process exists under another user.
            !matches!(
                rustix::process::test_kill_process(pid),
                Err(rustix::io::Errno::SRCH)
            )
        });
    if alive {
        return;
    }
    for lock in commit_lock_files(repo) {
        match std::fs::remove_file(&lock) {
            Ok(()) => tracing::warn!(
                path = %lock.display(),
                pid = ?owner,
                "removed a git lock file left by a killed symphony commit"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %lock.display(), error = %e, "stale git lock file not removed")
            }
        }
    }
    let _ = std::fs::remove_file(&marker);
}

/// libgit2's message, and for a lock held by someone else, which file to remove.
fn describe(repo: &Repository, error: &git2::Error) -> String {
    if error.code() != ErrorCode::Locked {
        return error.message().to_string();
    }
    let held: Vec<String> = commit_lock_files(repo)
        .into_iter()
        .filter(|lock| lock.exists())
        .map(|lock| lock.display().to_string())
        .collect();
    match held.as_slice() {
        [] => error.message().to_string(),
        files => format!(
            "{}: {} exists; another git process is using the repository, or one was killed \
             mid-commit. If no git process is running in this repository, remove {}",
            error.message(),
            files.join(" and "),
            files.join(" "),
        ),
    }
}

/// The content of `path` in HEAD's tree; `None` on an unborn branch or when HEAD has no
/// such file.
///
/// Errors: [`TrackerError::Git`] when `path` is not inside a git work tree or libgit2 fails.
pub fn head_content(path: &Path) -> Result<Option<Vec<u8>>> {
    let git = |message: String| TrackerError::Git {
        path: path.to_path_buf(),
        message,
    };
    let absolute = absolute_in_tree(path)?;
    let repo = Repository::discover(absolute.parent().unwrap_or(Path::new("/")))
        .map_err(|e| git(format!("not in a git repository ({})", e.message())))?;
    let relative = relative_path(&repo, &absolute).map_err(git)?;
    let tree = match repo.head() {
        Ok(head) => head
            .peel_to_tree()
            .map_err(|e| git(e.message().to_string()))?,
        Err(e) if e.code() == git2::ErrorCode::UnbornBranch => return Ok(None),
        Err(e) => return Err(git(e.message().to_string())),
    };
    let Ok(entry) = tree.get_path(&relative) else {
        return Ok(None);
    };
    let blob = repo
        .find_blob(entry.id())
        .map_err(|e| git(e.message().to_string()))?;
    Ok(Some(blob.content().to_vec()))
}

/// A blob to upsert: its path relative to the work tree and its bytes.
struct Blob {
    relative: PathBuf,
    bytes: Vec<u8>,
}

/// `path` made absolute with its parent directory canonicalized (the file itself may be a
/// path the caller is about to write, and symlinked temp dirs must match the work tree).
fn absolute_in_tree(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).map_err(|e| TrackerError::io(path, e))?;
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => Ok(std::fs::canonicalize(parent)
            .map_err(|e| TrackerError::io(parent, e))?
            .join(name)),
        _ => Ok(absolute),
    }
}

fn collect(repo: &Repository, entry: &Staged<'_>, blobs: &mut Vec<Blob>) -> Result<()> {
    let path = entry.path();
    let absolute = absolute_in_tree(path)?;
    let relative = relative_path(repo, &absolute).map_err(|message| TrackerError::Git {
        path: path.to_path_buf(),
        message,
    })?;
    match entry {
        Staged::Bytes(_, bytes) => blobs.push(Blob {
            relative,
            bytes: bytes.to_vec(),
        }),
        Staged::Current(_) if absolute.is_dir() => {
            let mut children: Vec<PathBuf> = std::fs::read_dir(&absolute)
                .map_err(|e| TrackerError::io(&absolute, e))?
                .map(|child| child.map(|c| c.path()))
                .collect::<std::io::Result<_>>()
                .map_err(|e| TrackerError::io(&absolute, e))?;
            children.sort();
            for child in &children {
                collect(repo, &Staged::Current(child), blobs)?;
            }
        }
        Staged::Current(_) => {
            let bytes = std::fs::read(&absolute).map_err(|e| TrackerError::io(path, e))?;
            blobs.push(Blob { relative, bytes });
        }
    }
    Ok(())
}

/// `absolute` relative to the work tree of `repo`.
fn relative_path(repo: &Repository, absolute: &Path) -> std::result::Result<PathBuf, String> {
    let workdir = repo
        .workdir()
        .ok_or_else(|| "the repository is bare".to_string())?;
    let workdir = std::fs::canonicalize(workdir).map_err(|e| e.to_string())?;
    absolute
        .strip_prefix(&workdir)
        .map(Path::to_path_buf)
        .map_err(|_| {
            format!(
                "{} is not inside the work tree {}",
                absolute.display(),
                workdir.display()
            )
        })
}

fn commit_blobs(
    repo: &Repository,
    blobs: &[Blob],
    message: &str,
) -> std::result::Result<String, git2::Error> {
    let parent = match repo.head() {
        Ok(head) => Some(head.peel_to_commit()?),
        Err(e) if e.code() == git2::ErrorCode::UnbornBranch => None,
        Err(e) => return Err(e),
    };
    let baseline = match &parent {
        Some(commit) => commit.tree()?,
        None => repo.find_tree(repo.treebuilder(None)?.write()?)?,
    };
    let mut update = git2::build::TreeUpdateBuilder::new();
    let mut staged = Vec::with_capacity(blobs.len());
    for blob in blobs {
        let id = repo.blob(&blob.bytes)?;
        let mode = match baseline.get_path(&blob.relative) {
            Ok(entry) if entry.filemode() == i32::from(FileMode::BlobExecutable) => {
                FileMode::BlobExecutable
            }
            _ => FileMode::Blob,
        };
        update.upsert(&blob.relative, id, mode);
        staged.push((blob, id, mode));
    }
    let tree = repo.find_tree(update.create_updated(repo, &baseline)?)?;
    let signature = match repo.signature() {
        Ok(signature) => signature,
        Err(_) => Signature::now(FALLBACK_SIGNATURE.0, FALLBACK_SIGNATURE.1)?,
    };
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let commit = repo.commit(
        Some("HEAD"),
        &signature,
        &signature,
        message,
        &tree,
        &parents,
    )?;
    let mut index = repo.index()?;
    for (blob, id, mode) in staged {
        stage_blob(&mut index, &blob.relative, &blob.bytes, id, mode)?;
    }
    index.write()?;
    Ok(commit.to_string())
}

/// Points the index entry of `relative` at the committed blob. Stat fields are zero, so git
/// re-hashes the work-tree file once instead of trusting stale stat data.
fn stage_blob(
    index: &mut git2::Index,
    relative: &Path,
    bytes: &[u8],
    blob: Oid,
    mode: FileMode,
) -> std::result::Result<(), git2::Error> {
    let entry = IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: u32::try_from(i32::from(mode)).unwrap_or(0o100644),
        uid: 0,
        gid: 0,
        file_size: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        id: blob,
        flags: 0,
        flags_extended: 0,
        path: relative.to_string_lossy().into_owned().into_bytes(),
    };
    index.add_frombuffer(&entry, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        git(dir.path(), &["config", "user.name", "Tester"]);
        git(dir.path(), &["config", "user.email", "tester@example.com"]);
        std::fs::create_dir_all(dir.path().join("issues")).unwrap();
        std::fs::write(dir.path().join("issues/issues.jsonl"), "{\"id\":\"A-1\"}\n").unwrap();
        std::fs::write(dir.path().join("other.txt"), "one\n").unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "initial"]);
        dir
    }

    #[test]
    fn commits_only_the_issues_file_and_leaves_other_staged_changes_staged() {
        let dir = repo();
        let issues = dir.path().join("issues/issues.jsonl");
        std::fs::write(&issues, "{\"id\":\"A-1\"}\n{\"id\":\"A-2\"}\n").unwrap();
        std::fs::write(dir.path().join("other.txt"), "two\n").unwrap();
        git(dir.path(), &["add", "other.txt"]);
        let id = commit_file(&issues, "issues: create A-2").unwrap();
        assert_eq!(git(dir.path(), &["rev-parse", "HEAD"]).trim(), id);
        assert_eq!(
            git(
                dir.path(),
                &["show", "--name-only", "--format=%s|%an", "HEAD"]
            ),
            "issues: create A-2|Tester\n\nissues/issues.jsonl\n"
        );
        assert_eq!(
            git(dir.path(), &["status", "--porcelain"]),
            "M  other.txt\n",
            "issues.jsonl clean, other.txt still staged"
        );
    }

    #[test]
    fn works_on_an_unborn_branch() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        let issues = dir.path().join("issues.jsonl");
        std::fs::write(&issues, "").unwrap();
        let id = commit_file(&issues, "issues: init").unwrap();
        assert_eq!(git(dir.path(), &["rev-parse", "HEAD"]).trim(), id);
        assert_eq!(
            git(dir.path(), &["ls-tree", "--name-only", "HEAD"]),
            "issues.jsonl\n"
        );
    }

    #[test]
    fn outside_a_repository_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let issues = dir.path().join("issues.jsonl");
        std::fs::write(&issues, "").unwrap();
        let err = commit_file(&issues, "m").unwrap_err().to_string();
        assert!(
            err.contains("git commit failed: not in a git repository"),
            "{err}"
        );
    }

    #[test]
    fn commit_paths_commits_a_directory_and_computed_bytes_and_nothing_else() {
        let dir = repo();
        let issues = dir.path().join("issues/issues.jsonl");
        std::fs::write(&issues, "{\"id\":\"A-1\",\"s\":1}\n{\"id\":\"A-2\"}\n").unwrap();
        let proofs = dir.path().join("proofs/A-1/t");
        std::fs::create_dir_all(proofs.join("hooks")).unwrap();
        std::fs::write(proofs.join("manifest.json"), "{}").unwrap();
        std::fs::write(proofs.join("hooks/before_run.json"), "{}").unwrap();
        std::fs::write(dir.path().join("other.txt"), "two\n").unwrap();
        let committed = b"{\"id\":\"A-1\",\"s\":1}\n";
        let id = commit_paths(
            &[Staged::Bytes(&issues, committed), Staged::Current(&proofs)],
            "A-1: handoff",
        )
        .unwrap();
        assert_eq!(git(dir.path(), &["rev-parse", "HEAD"]).trim(), id);
        assert_eq!(
            git(dir.path(), &["show", "--name-only", "--format=%s", "HEAD"]),
            "A-1: handoff\n\nissues/issues.jsonl\nproofs/A-1/t/hooks/before_run.json\nproofs/A-1/t/manifest.json\n"
        );
        assert_eq!(
            git(dir.path(), &["show", "HEAD:issues/issues.jsonl"]).as_bytes(),
            committed
        );
        assert_eq!(
            head_content(&issues).unwrap().as_deref(),
            Some(&committed[..])
        );
        assert_eq!(
            git(dir.path(), &["status", "--porcelain"]),
            " M issues/issues.jsonl\n M other.txt\n",
            "the work tree keeps the uncommitted record and file"
        );
    }
}
