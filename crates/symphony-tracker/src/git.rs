//! Committing the issues file, and nothing else, to git (`--commit`).
//!
//! The commit's tree is HEAD's tree with one blob replaced — the file's current bytes — not
//! the index: whatever else the user has staged stays staged and out of the commit. The
//! index entry of the file is then set to the committed blob, so `git status` does not show
//! the committed change as staged-but-different.

use std::path::{Path, PathBuf};

use git2::{FileMode, IndexEntry, IndexTime, Oid, Repository, RepositoryState, Signature};

use crate::error::{Result, TrackerError};

/// Author and committer used when git config has no `user.name`/`user.email`.
pub const FALLBACK_SIGNATURE: (&str, &str) = ("Symphony", "symphony@localhost");

/// Commits the current content of `path` on the branch HEAD points to, with `message`, and
/// returns the new commit's id (40 hex digits). On an unborn branch the commit is the first.
///
/// Errors: [`TrackerError::Io`] when the file cannot be read; [`TrackerError::Git`] when
/// `path` is not inside a git work tree, a merge or rebase is in progress (committing one
/// file would abandon it), or libgit2 fails (its message is kept).
pub fn commit_file(path: &Path, message: &str) -> Result<String> {
    let git = |message: String| TrackerError::Git {
        path: path.to_path_buf(),
        message,
    };
    let absolute = std::fs::canonicalize(path).map_err(|e| TrackerError::io(path, e))?;
    let bytes = std::fs::read(&absolute).map_err(|e| TrackerError::io(path, e))?;
    let repo = Repository::discover(absolute.parent().unwrap_or(Path::new("/")))
        .map_err(|e| git(format!("not in a git repository ({})", e.message())))?;
    if repo.state() != RepositoryState::Clean {
        return Err(git(format!(
            "the repository is in the middle of a {:?}; finish it before committing",
            repo.state()
        )));
    }
    let relative = relative_path(&repo, &absolute).map_err(git)?;
    commit_blob(&repo, &relative, &bytes, message).map_err(|e| git(e.message().to_string()))
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
        .map_err(|_| format!("not inside the work tree {}", workdir.display()))
}

fn commit_blob(
    repo: &Repository,
    relative: &Path,
    bytes: &[u8],
    message: &str,
) -> std::result::Result<String, git2::Error> {
    let blob = repo.blob(bytes)?;
    let parent = match repo.head() {
        Ok(head) => Some(head.peel_to_commit()?),
        Err(e) if e.code() == git2::ErrorCode::UnbornBranch => None,
        Err(e) => return Err(e),
    };
    let baseline = match &parent {
        Some(commit) => commit.tree()?,
        None => repo.find_tree(repo.treebuilder(None)?.write()?)?,
    };
    let mode = match baseline.get_path(relative) {
        Ok(entry) if entry.filemode() == i32::from(FileMode::BlobExecutable) => {
            FileMode::BlobExecutable
        }
        _ => FileMode::Blob,
    };
    let tree_id = git2::build::TreeUpdateBuilder::new()
        .upsert(relative, blob, mode)
        .create_updated(repo, &baseline)?;
    let tree = repo.find_tree(tree_id)?;
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
    stage_blob(repo, relative, bytes, blob, mode)?;
    Ok(commit.to_string())
}

/// Points the index entry of `relative` at the committed blob. Stat fields are zero, so git
/// re-hashes the work-tree file once instead of trusting stale stat data.
fn stage_blob(
    repo: &Repository,
    relative: &Path,
    bytes: &[u8],
    blob: Oid,
    mode: FileMode,
) -> std::result::Result<(), git2::Error> {
    let mut index = repo.index()?;
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
    index.add_frombuffer(&entry, bytes)?;
    index.write()
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
}
