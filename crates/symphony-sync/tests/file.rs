//! Import and projection against real issues files: the fixtures round-trip byte for byte,
//! only affected lines are rewritten, genesis is deterministic, concurrent edits merge.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use automerge::ActorId;
use symphony_sync::{LocalTracker, Replica};
use symphony_tracker::{Document, Store};

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![
        PathBuf::from("/work/shared/fixtures/x0x/issues.jsonl"),
        PathBuf::from("/work/shared/fixtures/x0x-symphony/issues.jsonl"),
        root.join("examples/x0x/issues/issues.jsonl"),
        root.join("issues/issues.jsonl"),
    ];
    files.retain(|f| f.exists());
    assert!(files.len() >= 2, "fixtures missing");
    files
}

/// A clone: the issues file copied to `dir/issues/issues.jsonl`.
fn clone_of(source: &Path, dir: &Path) -> Store {
    std::fs::create_dir_all(dir.join("issues")).unwrap();
    let path = dir.join("issues/issues.jsonl");
    std::fs::copy(source, &path).unwrap();
    Store::new(path)
}

fn edit_line(
    store: &Store,
    id: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) {
    // A human edit: rewrite one line in place, as an editor would.
    let text = std::fs::read_to_string(store.path()).unwrap();
    let mut out = String::new();
    let mut edit = Some(edit);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let record: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        if record.get("id").and_then(|v| v.as_str()) == Some(id) {
            let mut map = record.as_object().cloned().unwrap();
            (edit.take().unwrap())(&mut map);
            out.push_str(&serde_json::to_string(&map).unwrap());
            out.push_str(&line[body.len()..]);
        } else {
            out.push_str(line);
        }
    }
    std::fs::write(store.path(), out).unwrap();
}

fn exchange(a: &mut LocalTracker, b: &mut LocalTracker) {
    // `x.get_changes_added(y)`: the changes of `y` that `x` lacks.
    let to_b = b.replica().doc().get_changes_added(a.replica().doc());
    let to_a = a.replica().doc().get_changes_added(b.replica().doc());
    b.apply_changes(to_b).unwrap();
    a.apply_changes(to_a).unwrap();
}

#[test]
fn import_then_projection_of_every_fixture_is_byte_identical() {
    for source in fixtures() {
        let dir = tempfile::tempdir().unwrap();
        let store = clone_of(&source, dir.path());
        let before = std::fs::read(store.path()).unwrap();
        let mut local = LocalTracker::open(store.clone(), "fixture").unwrap();
        let report = local.sync_file().unwrap();
        assert!(report.import.genesis, "{}", source.display());
        assert!(
            report.import.refused.is_empty(),
            "{:?}",
            report.import.refused
        );
        assert!(!report.projection.written, "{}", source.display());
        // Project every issue again from the document: still no byte changes.
        let mut fresh = Replica::new("fixture", ActorId::random()).unwrap();
        let file = Document::read(store.path(), usize::MAX).unwrap();
        fresh.import(&file).unwrap();
        for id in fresh.ids() {
            let from_doc = serde_json::Value::Object(fresh.issue(&id).unwrap());
            let line = file
                .record_lines()
                .find(|(i, _)| file.id_of(*i).unwrap() == id)
                .unwrap()
                .1;
            let from_file: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                serde_json::to_string(&from_doc).unwrap(),
                serde_json::to_string(&from_file).unwrap(),
                "{id} of {} differs in value or key order",
                source.display()
            );
        }
        assert_eq!(
            std::fs::read(store.path()).unwrap(),
            before,
            "{}",
            source.display()
        );
    }
}

#[test]
fn genesis_is_the_same_change_on_every_node() {
    let source = &fixtures()[0];
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = LocalTracker::open(clone_of(source, one.path()), "t").unwrap();
    let mut b = LocalTracker::open(clone_of(source, two.path()), "t").unwrap();
    a.sync_file().unwrap();
    b.sync_file().unwrap();
    assert_eq!(a.replica().doc().get_heads(), b.replica().doc().get_heads());
    assert!(
        a.replica()
            .doc()
            .get_changes_added(b.replica().doc())
            .is_empty()
    );
    // A different tracker name gives a different document.
    let three = tempfile::tempdir().unwrap();
    let mut c = LocalTracker::open(clone_of(source, three.path()), "other").unwrap();
    c.sync_file().unwrap();
    assert_ne!(a.replica().doc().get_heads(), c.replica().doc().get_heads());
}

#[test]
fn a_remote_change_rewrites_only_its_line() {
    let source = &fixtures()[1];
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = LocalTracker::open(clone_of(source, one.path()), "t").unwrap();
    let mut b = LocalTracker::open(clone_of(source, two.path()), "t").unwrap();
    a.sync_file().unwrap();
    b.sync_file().unwrap();
    let id = a.replica().ids()[3].clone();
    edit_line(a.store(), &id, |r| {
        r.insert("priority".into(), 0.into());
    });
    let report = a.sync_file().unwrap();
    assert_eq!(report.import.touched, vec![id.clone()]);
    let before = std::fs::read_to_string(b.store().path()).unwrap();
    exchange(&mut a, &mut b);
    let after = std::fs::read_to_string(b.store().path()).unwrap();
    let changed: Vec<(usize, &str)> = before
        .lines()
        .zip(after.lines())
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, (_, y))| (i, y))
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(
        changed[0].1.contains(&format!("\"id\": \"{id}\""))
            || changed[0].1.contains(&format!("\"id\":\"{id}\""))
    );
    assert_eq!(after.lines().count(), before.lines().count());
    assert_eq!(std::fs::read(a.store().path()).unwrap(), after.as_bytes());
}

#[test]
fn concurrent_edits_to_different_fields_both_survive() {
    let source = &fixtures()[1];
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = LocalTracker::open(clone_of(source, one.path()), "t").unwrap();
    let mut b = LocalTracker::open(clone_of(source, two.path()), "t").unwrap();
    a.sync_file().unwrap();
    b.sync_file().unwrap();
    let id = a.replica().ids()[0].clone();
    edit_line(a.store(), &id, |r| {
        r.insert("title".into(), "edited on a".into());
    });
    edit_line(b.store(), &id, |r| {
        r.insert("priority".into(), 4.into());
    });
    a.sync_file().unwrap();
    b.sync_file().unwrap();
    exchange(&mut a, &mut b);
    for node in [&a, &b] {
        let issue = node.replica().issue(&id).unwrap();
        assert_eq!(issue["title"], "edited on a");
        assert_eq!(issue["priority"], 4);
    }
    assert_eq!(
        std::fs::read(a.store().path()).unwrap(),
        std::fs::read(b.store().path()).unwrap()
    );
}

#[test]
fn concurrent_edits_to_different_paragraphs_both_survive() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("seed.jsonl");
    std::fs::write(
        &source,
        concat!(
            "{\"id\": \"T-0001\", \"identifier\": \"T-0001\", \"title\": \"t\", ",
            "\"description\": \"one\\n\\ntwo\\n\\nthree\", \"priority\": 0, \"state\": \"todo\", ",
            "\"labels\": [], \"blocked_by\": [], \"created_at\": \"2026-01-01T00:00:00Z\", ",
            "\"updated_at\": \"2026-01-01T00:00:00Z\"}\n"
        ),
    )
    .unwrap();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = LocalTracker::open(clone_of(&source, one.path()), "t").unwrap();
    let mut b = LocalTracker::open(clone_of(&source, two.path()), "t").unwrap();
    a.sync_file().unwrap();
    b.sync_file().unwrap();
    edit_line(a.store(), "T-0001", |r| {
        r.insert("description".into(), "ONE\n\ntwo\n\nthree".into());
    });
    edit_line(b.store(), "T-0001", |r| {
        r.insert("description".into(), "one\n\ntwo\n\nthree and more".into());
    });
    a.sync_file().unwrap();
    b.sync_file().unwrap();
    exchange(&mut a, &mut b);
    for node in [&a, &b] {
        let issue = node.replica().issue("T-0001").unwrap();
        assert_eq!(issue["description"], "ONE\n\ntwo\n\nthree and more");
    }
    assert_eq!(
        std::fs::read(a.store().path()).unwrap(),
        std::fs::read(b.store().path()).unwrap()
    );
}

#[test]
fn concurrent_creations_of_one_id_keep_both_issues_under_unique_ids() {
    let source = &fixtures()[1];
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = LocalTracker::open(clone_of(source, one.path()), "t").unwrap();
    let mut b = LocalTracker::open(clone_of(source, two.path()), "t").unwrap();
    a.sync_file().unwrap();
    b.sync_file().unwrap();
    let count = a.replica().ids().len();
    let template = a.replica().issue(&a.replica().ids()[0]).unwrap();
    let new_id = "XSY-9000";
    for (node, title) in [(&a, "made on a"), (&b, "made on b")] {
        let mut record = template.clone();
        record.insert("id".into(), new_id.into());
        record.insert("identifier".into(), new_id.into());
        record.insert("title".into(), title.into());
        let mut text = std::fs::read_to_string(node.store().path()).unwrap();
        text.push_str(&serde_json::to_string(&record).unwrap());
        text.push('\n');
        std::fs::write(node.store().path(), text).unwrap();
    }
    a.sync_file().unwrap();
    b.sync_file().unwrap();
    exchange(&mut a, &mut b);
    // The loser's author moved it; the move reaches the other node on the next exchange.
    exchange(&mut a, &mut b);
    for node in [&a, &b] {
        let ids = node.replica().ids();
        assert_eq!(ids.len(), count + 2, "{ids:?}");
        let titles: Vec<String> = ids
            .iter()
            .filter_map(|id| node.replica().issue(id))
            .map(|r| r["title"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(titles.iter().any(|t| t == "made on a"));
        assert!(titles.iter().any(|t| t == "made on b"));
        let file = Document::read(node.store().path(), usize::MAX).unwrap();
        assert_eq!(file.record_count(), count + 2);
        assert_eq!(
            symphony_tracker::ids::unique_ids(&file).unwrap().len(),
            count + 2
        );
    }
    assert_eq!(
        std::fs::read(a.store().path()).unwrap(),
        std::fs::read(b.store().path()).unwrap()
    );
}

#[test]
fn a_line_that_does_not_parse_is_reported_and_never_overwritten() {
    let source = &fixtures()[1];
    let dir = tempfile::tempdir().unwrap();
    let store = clone_of(source, dir.path());
    let mut local = LocalTracker::open(store.clone(), "t").unwrap();
    local.sync_file().unwrap();
    let mut text = std::fs::read_to_string(store.path()).unwrap();
    text.push_str("{\"id\": \"XSY-0999\", \"title\": broken\n");
    std::fs::write(store.path(), &text).unwrap();
    let error = local.sync_file().map(|r| r.import.refused);
    // Either the import refuses the line and the projection has nothing to write, or the
    // tracker refuses to rewrite a file with a broken line; the file is untouched both ways.
    match error {
        Ok(refused) => {
            assert_eq!(refused.len(), 1, "{refused:?}");
            assert_eq!(refused[0].line, text.lines().count());
            assert!(
                refused[0].message.contains("issues.jsonl"),
                "{}",
                refused[0].message
            );
        }
        Err(e) => assert!(e.to_string().contains("issues.jsonl"), "{e}"),
    }
    assert_eq!(std::fs::read_to_string(store.path()).unwrap(), text);
    assert!(local.replica().issue("XSY-0999").is_none());
}

#[test]
fn a_human_edit_after_a_remote_change_is_imported_not_reverted() {
    let source = &fixtures()[1];
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = LocalTracker::open(clone_of(source, one.path()), "t").unwrap();
    let mut b = LocalTracker::open(clone_of(source, two.path()), "t").unwrap();
    a.sync_file().unwrap();
    b.sync_file().unwrap();
    let id = a.replica().ids()[1].clone();
    edit_line(a.store(), &id, |r| {
        r.insert("state".into(), "review".into());
    });
    a.sync_file().unwrap();
    exchange(&mut a, &mut b);
    edit_line(b.store(), &id, |r| {
        r.insert("title".into(), "retitled on b".into());
    });
    b.sync_file().unwrap();
    exchange(&mut a, &mut b);
    for node in [&a, &b] {
        let issue = node.replica().issue(&id).unwrap();
        assert_eq!(issue["state"], "review");
        assert_eq!(issue["title"], "retitled on b");
    }
}

#[test]
fn a_line_a_human_edits_is_written_back_in_the_files_style() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("seed.jsonl");
    let seed: String = (1..=5)
        .map(|n| {
            format!(
                "{{\"id\": \"T-000{n}\", \"identifier\": \"T-000{n}\", \"title\": \"t{n}\", \
                 \"priority\": {n}, \"state\": \"todo\", \"labels\": [], \"blocked_by\": [], \
                 \"created_at\": \"2026-01-01T00:00:00Z\", \"updated_at\": \"2026-01-01T00:00:00Z\"}}\n"
            )
        })
        .collect();
    std::fs::write(&source, seed).unwrap();
    let store = clone_of(&source, dir.path());
    let mut local = LocalTracker::open(store.clone(), "t").unwrap();
    local.sync_file().unwrap();
    let id = local.replica().ids()[2].clone();
    let spaced = std::fs::read_to_string(store.path()).unwrap();
    edit_line(&store, &id, |r| {
        r.insert("title".into(), "typed compact".into());
    });
    let report = local.sync_file().unwrap();
    assert_eq!(report.import.touched, vec![id.clone()]);
    assert_eq!(report.projection.changed, vec![id.clone()], "{report:?}");
    let text = std::fs::read_to_string(store.path()).unwrap();
    let line = text.lines().find(|l| l.contains("typed compact")).unwrap();
    let style_of = |t: &str| t.contains("\", \"");
    assert_eq!(
        style_of(line),
        style_of(spaced.lines().next().unwrap()),
        "{line}"
    );
}

#[test]
fn a_missing_issues_file_is_refused_and_empties_nothing() {
    let source = &fixtures()[1];
    let dir = tempfile::tempdir().unwrap();
    let store = clone_of(source, dir.path());
    let mut local = LocalTracker::open(store.clone(), "t").unwrap();
    local.sync_file().unwrap();
    let count = local.replica().ids().len();
    let saved = std::fs::read(store.path()).unwrap();
    std::fs::remove_file(store.path()).unwrap();
    let error = local
        .sync_file()
        .expect_err("a missing file must be refused");
    assert!(error.to_string().contains("issues.jsonl"), "{error}");
    assert_eq!(local.replica().ids().len(), count);
    assert!(!store.path().exists());
    std::fs::write(store.path(), &saved).unwrap();
    let report = local.sync_file().unwrap();
    assert!(report.import.change.is_none() && !report.projection.written);
}

#[test]
fn a_node_that_hears_a_peer_before_its_first_import_shares_the_peers_genesis() {
    let source = &fixtures()[1];
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = LocalTracker::open(clone_of(source, one.path()), "t").unwrap();
    a.sync_file().unwrap();
    let id = a.replica().ids()[5].clone();
    edit_line(a.store(), &id, |r| {
        r.insert("title".into(), "edited before b imported".into());
    });
    a.sync_file().unwrap();
    let mut b = LocalTracker::open(clone_of(source, two.path()), "t").unwrap();
    // The peer's changes arrive before b has imported its own file.
    let from_a = b.replica().doc().get_changes_added(a.replica().doc());
    b.replica_mut().apply_changes(from_a).unwrap();
    let report = b.sync_file().unwrap();
    assert!(report.import.genesis);
    assert_eq!(b.replica().doc().get_heads(), a.replica().doc().get_heads());
    assert_eq!(b.replica().ids(), a.replica().ids());
    assert_eq!(
        std::fs::read(b.store().path()).unwrap(),
        std::fs::read(a.store().path()).unwrap()
    );
}
