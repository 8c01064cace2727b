//! The name every clone of a tracker shares: its repository's root commit (design.md,
//! "Sync": "name the tracker by something all clones share").

use std::path::Path;

use crate::error::{Result, SyncError};

/// `git:<root commit>` of the repository holding `issues_file`: the root commit reached from
/// HEAD (the smallest id when unrelated histories were merged, so every clone picks the
/// same). Errors: [`SyncError::Layout`] naming the path when it is not in a git repository
/// with commits (name the tracker explicitly then).
pub fn tracker_name(issues_file: &Path) -> Result<String> {
    let dir = issues_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fail = |why: String| {
        SyncError::Layout(format!(
            "{}: cannot name the tracker by its root commit: {why}",
            issues_file.display()
        ))
    };
    let repo = git2::Repository::discover(dir).map_err(|e| fail(e.message().to_string()))?;
    let mut walk = repo.revwalk().map_err(|e| fail(e.message().to_string()))?;
    walk.push_head()
        .map_err(|e| fail(e.message().to_string()))?;
    let mut roots = Vec::new();
    for oid in walk {
        let oid = oid.map_err(|e| fail(e.message().to_string()))?;
        let commit = repo
            .find_commit(oid)
            .map_err(|e| fail(e.message().to_string()))?;
        if commit.parent_count() == 0 {
            roots.push(oid.to_string());
        }
    }
    roots.sort();
    roots
        .into_iter()
        .next()
        .map(|root| format!("git:{root}"))
        .ok_or_else(|| fail("no commits".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_root_commit_name_and_a_plain_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        let file = dir.path().join("issues/issues.jsonl");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("issues/issues.jsonl")).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let who = git2::Signature::now("t", "t@example.invalid").unwrap();
        let root = repo
            .commit(Some("HEAD"), &who, &who, "root", &tree, &[])
            .unwrap();
        let parent = repo.find_commit(root).unwrap();
        repo.commit(Some("HEAD"), &who, &who, "next", &tree, &[&parent])
            .unwrap();
        assert_eq!(tracker_name(&file).unwrap(), format!("git:{root}"));
        let plain = tempfile::tempdir().unwrap();
        let error = tracker_name(&plain.path().join("issues.jsonl")).unwrap_err();
        assert!(error.to_string().contains("issues.jsonl"), "{error}");
    }
}
