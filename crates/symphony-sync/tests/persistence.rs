//! The document on disk: restart, torn log tail, corrupt snapshot, another tracker's
//! document, compaction. In every failure the issues file stays byte-identical.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use symphony_sync::{LocalTracker, SyncError};
use symphony_tracker::Store;

const SEED: &str = concat!(
    "{\"id\": \"T-0001\", \"identifier\": \"T-0001\", \"title\": \"one\", \"state\": \"todo\", \"created_at\": \"2026-01-01T00:00:00Z\", \"updated_at\": \"2026-01-01T00:00:00Z\", \"priority\": 1, \"description\": \"a\\n\\nb\"}\n",
    "{\"id\": \"T-0002\", \"identifier\": \"T-0002\", \"title\": \"two\", \"state\": \"todo\", \"created_at\": \"2026-01-01T00:00:00Z\", \"updated_at\": \"2026-01-01T00:00:00Z\", \"priority\": 2, \"description\": \"c\"}\n",
);

fn clone(dir: &Path) -> Store {
    std::fs::create_dir_all(dir.join("issues")).unwrap();
    let path = dir.join("issues/issues.jsonl");
    std::fs::write(&path, SEED).unwrap();
    Store::new(path)
}

fn sync_dir(store: &Store) -> PathBuf {
    store.state_dir().join("sync")
}

fn set_title(store: &Store, id: &str, title: &str) {
    let text = std::fs::read_to_string(store.path()).unwrap();
    let out: String = text
        .split_inclusive('\n')
        .map(|line| {
            if line.contains(&format!("\"id\": \"{id}\"")) {
                let mut record: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
                record["title"] = title.into();
                format!(
                    "{}\n",
                    serde_json::to_string(&record)
                        .unwrap()
                        .replace("\":", "\": ")
                        .replace(",\"", ", \"")
                )
            } else {
                line.to_string()
            }
        })
        .collect();
    std::fs::write(store.path(), out).unwrap();
}

#[test]
fn restart_loads_snapshot_and_log_and_rewrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = clone(dir.path());
    let mut local = LocalTracker::open(store.clone(), "t").unwrap();
    local.sync_file().unwrap();
    local.compact().unwrap();
    set_title(&store, "T-0002", "after the snapshot");
    local.sync_file().unwrap();
    let heads = local.replica().doc().get_heads();
    drop(local);
    let file = std::fs::read(store.path()).unwrap();
    let mut again = LocalTracker::open(store.clone(), "t").unwrap();
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    assert_eq!(again.replica().doc().get_heads(), heads);
    assert_eq!(
        again.replica().issue("T-0002").unwrap()["title"],
        "after the snapshot"
    );
    let report = again.sync_file().unwrap();
    assert!(report.import.change.is_none());
    assert!(!report.projection.written);
    assert_eq!(std::fs::read(store.path()).unwrap(), file);
}

#[test]
fn a_torn_log_tail_is_cut_back_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let store = clone(dir.path());
    let mut local = LocalTracker::open(store.clone(), "t").unwrap();
    local.sync_file().unwrap();
    let before_edit = local.replica().doc().get_heads();
    set_title(&store, "T-0001", "torn away");
    local.sync_file().unwrap();
    drop(local);
    let log = sync_dir(&store).join("changes.log");
    let len = std::fs::metadata(&log).unwrap().len();
    // An append that stopped 3 bytes short of its end.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let file = std::fs::read(store.path()).unwrap();
    let again = LocalTracker::open(store.clone(), "t").unwrap();
    assert_eq!(again.warnings.len(), 1, "{:?}", again.warnings);
    assert!(
        again.warnings[0].contains("changes.log"),
        "{}",
        again.warnings[0]
    );
    assert_eq!(again.replica().doc().get_heads(), before_edit);
    assert!(std::fs::metadata(&log).unwrap().len() < len - 3);
    assert_eq!(std::fs::read(store.path()).unwrap(), file);
    // The lost change was an import of the file: the next sync imports the edit again.
    let mut again = again;
    let report = again.sync_file().unwrap();
    assert_eq!(report.import.touched, vec!["T-0001".to_string()]);
    assert!(!report.projection.written);
    assert_eq!(
        again.replica().issue("T-0001").unwrap()["title"],
        "torn away"
    );
    assert_eq!(again.replica().ids().len(), 2);
    assert_eq!(std::fs::read(store.path()).unwrap(), file);
    drop(again);
    // Cut once: the next load has nothing to repair.
    assert!(LocalTracker::open(store, "t").unwrap().warnings.is_empty());
}

#[test]
fn a_damaged_entry_before_others_is_refused_naming_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = clone(dir.path());
    let mut local = LocalTracker::open(store.clone(), "t").unwrap();
    local.sync_file().unwrap();
    set_title(&store, "T-0001", "later");
    local.sync_file().unwrap();
    drop(local);
    let log = sync_dir(&store).join("changes.log");
    let mut bytes = std::fs::read(&log).unwrap();
    // The first entry's payload starts after the header (8 + 4 + 1) and its frame (8).
    bytes[8 + 4 + 1 + 8 + 10] ^= 0xff;
    std::fs::write(&log, &bytes).unwrap();
    let file = std::fs::read(store.path()).unwrap();
    let error = LocalTracker::open(store.clone(), "t")
        .err()
        .expect("must refuse");
    assert!(matches!(error, SyncError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("changes.log"), "{error}");
    assert_eq!(std::fs::read(store.path()).unwrap(), file);
}

#[test]
fn a_corrupt_snapshot_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = clone(dir.path());
    let mut local = LocalTracker::open(store.clone(), "t").unwrap();
    local.sync_file().unwrap();
    local.compact().unwrap();
    drop(local);
    let snapshot = sync_dir(&store).join("snapshot");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 16] {
        *byte ^= 0x5a;
    }
    std::fs::write(&snapshot, &bytes).unwrap();
    let file = std::fs::read(store.path()).unwrap();
    let error = LocalTracker::open(store.clone(), "t")
        .err()
        .expect("must refuse");
    assert!(matches!(error, SyncError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("snapshot"), "{error}");
    assert_eq!(std::fs::read(store.path()).unwrap(), file);
}

#[test]
fn another_trackers_document_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = clone(dir.path());
    let mut local = LocalTracker::open(store.clone(), "ours").unwrap();
    local.sync_file().unwrap();
    drop(local);
    let file = std::fs::read(store.path()).unwrap();
    let error = LocalTracker::open(store.clone(), "theirs")
        .err()
        .expect("must refuse");
    match &error {
        SyncError::WrongTracker {
            path,
            expected,
            found,
        } => {
            assert!(path.ends_with("changes.log"), "{}", path.display());
            assert_eq!((expected.as_str(), found.as_str()), ("theirs", "ours"));
        }
        other => panic!("expected WrongTracker, got {other}"),
    }
    // With a snapshot the snapshot is named.
    let mut local = LocalTracker::open(store.clone(), "ours").unwrap();
    local.compact().unwrap();
    drop(local);
    let error = LocalTracker::open(store.clone(), "theirs")
        .err()
        .expect("must refuse");
    assert!(error.to_string().contains("snapshot"), "{error}");
    assert_eq!(std::fs::read(store.path()).unwrap(), file);
}

#[test]
fn compaction_empties_the_log_and_keeps_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = clone(dir.path());
    let mut local = LocalTracker::open(store.clone(), "t").unwrap();
    local.sync_file().unwrap();
    for n in 0..5 {
        set_title(&store, "T-0001", &format!("edit {n}"));
        local.sync_file().unwrap();
    }
    let log = sync_dir(&store).join("changes.log");
    let grown = std::fs::metadata(&log).unwrap().len();
    local.compact().unwrap();
    assert!(std::fs::metadata(&log).unwrap().len() < grown);
    let heads = local.replica().doc().get_heads();
    drop(local);
    let again = LocalTracker::open(store, "t").unwrap();
    assert_eq!(again.replica().doc().get_heads(), heads);
    assert_eq!(again.replica().issue("T-0001").unwrap()["title"], "edit 4");
}
