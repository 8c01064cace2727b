//! `symphony sync status` on a real git clone: no document yet, a document in step with the
//! file, and a corrupt snapshot refused with exit 2 and the file untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{COMPACT, Project, git, git_init};
use symphony_sync::LocalTracker;
use symphony_tracker::Store;

fn committed_project() -> Project {
    let project = Project::fixture(COMPACT);
    // Commits everything: the issues file is in the root commit.
    git_init(project.root());
    project
}

#[test]
fn status_reports_no_document_then_the_document_in_step_with_the_file() {
    let project = committed_project();
    let run = project.run(&["sync", "status", "--json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(status["document"], false);
    let root = git(project.root(), &["rev-list", "--max-parents=0", "HEAD"]);
    assert_eq!(status["tracker"], format!("git:{}", root.trim()));

    let tracker = status["tracker"].as_str().unwrap().to_string();
    let mut local = LocalTracker::open(Store::new(project.issues()), &tracker).unwrap();
    local.sync_file().unwrap();
    drop(local);
    let run = project.run(&["sync", "status", "--json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(status["document"], true);
    assert_eq!(status["issues"], 36);
    assert_eq!(status["file_in_step"], true);
    assert_eq!(status["heads"].as_array().unwrap().len(), 1);
    assert!(status["log_bytes"].as_u64().unwrap() > 0);
    let text = project.run(&["sync", "status"]).expect(0).stdout();
    assert!(text.contains("in step with the document"), "{text}");
}

#[test]
fn a_corrupt_snapshot_exits_2_naming_it_and_leaves_the_file_alone() {
    let project = committed_project();
    let before = project.content();
    let mut local = LocalTracker::open(Store::new(project.issues()), "t").unwrap();
    local.sync_file().unwrap();
    local.compact().unwrap();
    drop(local);
    let snapshot = project.root().join(".symphony/sync/snapshot");
    std::fs::write(&snapshot, b"SYMSNAP1 but not really").unwrap();
    let run = project.run(&["sync", "status", "--tracker", "t"]).expect(2);
    assert!(run.stderr().contains("snapshot"), "{}", run.stderr());
    assert_eq!(project.content(), before);
}
