//! The sync protocol between two documents, in memory: a peer offline for 200 changes
//! catches up with only the missing changes, and hostile messages are refused untouched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use automerge::ActorId;
use symphony_sync::session::{MAX_MESSAGE_BYTES, Session, SessionError, converge};
use symphony_sync::{LocalTracker, Replica};
use symphony_tracker::Store;

fn tracker(dir: &std::path::Path, issues: usize) -> LocalTracker {
    std::fs::create_dir_all(dir.join("issues")).unwrap();
    let path = dir.join("issues/issues.jsonl");
    let mut text = String::new();
    for n in 1..=issues {
        text.push_str(&format!(
            "{{\"id\": \"T-{n:04}\", \"identifier\": \"T-{n:04}\", \"title\": \"issue {n}\", \"state\": \"todo\", \"created_at\": \"2026-01-01T00:00:00Z\", \"updated_at\": \"2026-01-01T00:00:00Z\", \"priority\": 1, \"description\": \"{}\"}}\n",
            (0..40).map(|w| format!("w{}", (n * 7919 + w * 104729) % 100003)).collect::<Vec<_>>().join(" ")
        ));
    }
    std::fs::write(&path, text).unwrap();
    let mut local = LocalTracker::open(Store::new(path), "t").unwrap();
    local.sync_file().unwrap();
    local
}

fn set_priority(local: &mut LocalTracker, id: &str, priority: usize) {
    let path = local.store().path().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    let out: String = text
        .split_inclusive('\n')
        .map(|line| {
            if line.contains(&format!("\"id\": \"{id}\"")) {
                let at = line.find("\"priority\": ").unwrap() + "\"priority\": ".len();
                let end = at + line[at..].find(',').unwrap();
                format!("{}{priority}{}", &line[..at], &line[end..])
            } else {
                line.to_string()
            }
        })
        .collect();
    std::fs::write(&path, out).unwrap();
    assert!(local.sync_file().unwrap().import.change.is_some());
}

#[test]
fn a_peer_offline_for_200_changes_receives_only_what_it_misses() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = tracker(dir.path(), 20);
    // A history both sides share: Automerge sends the whole document instead of changes
    // when a peer misses over a third of them, so the tracker must have lived a while.
    for n in 0..500 {
        set_priority(&mut a, &format!("T-{:04}", n % 20 + 1), n + 10);
    }
    let mut b = Replica::new("t", ActorId::random()).unwrap();
    let (mut at_a, mut at_b) = (Session::new(), Session::new());
    let (_, full) = converge(a.replica_mut(), &mut at_a, &mut b, &mut at_b).unwrap();
    assert_eq!(b.ids().len(), 20);
    // B goes away; both keep only the persisted part of their sync state.
    let (saved_a, saved_b) = (at_a.encode(), at_b.encode());
    for n in 0..200 {
        set_priority(&mut a, &format!("T-{:04}", n % 20 + 1), 1000 + n);
    }
    let missing: usize = b
        .doc()
        .get_changes_added(a.replica().doc())
        .iter()
        .map(|c| c.raw_bytes().len())
        .sum();
    let history: usize = a
        .replica()
        .doc()
        .get_changes(&[])
        .iter()
        .map(|c| c.raw_bytes().len())
        .sum();
    let (mut at_a, mut at_b) = (Session::resume(&saved_a), Session::resume(&saved_b));
    let (messages, bytes) = converge(a.replica_mut(), &mut at_a, &mut b, &mut at_b).unwrap();
    assert_eq!(b.doc().get_heads(), a.replica().doc().get_heads());
    assert_eq!(b.issue("T-0020").unwrap()["priority"], 1000 + 199);
    let per_change = bytes / 200;
    eprintln!(
        "catch-up: first sync {full} bytes; 200 missed changes ({missing} bytes of changes, \
         history {history}) sent as {bytes} bytes in {messages} messages ({per_change} per change)"
    );
    // Only the missing changes travel, plus a bounded protocol overhead (heads, bloom filter).
    assert!(
        bytes < missing + 2048,
        "catch-up {bytes} bytes for {missing} missing"
    );
    assert!(
        bytes < history,
        "catch-up {bytes} bytes vs whole history {history}"
    );
    assert!(per_change < 300, "{per_change} bytes per change");
}

#[test]
fn garbage_and_oversized_messages_are_refused_and_the_document_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = tracker(dir.path(), 3);
    let heads = a.replica().doc().get_heads();
    let mut session = Session::new();
    let garbage = session.receive(a.replica_mut(), b"\x42not a sync message at all");
    assert!(
        matches!(garbage, Err(SessionError::Undecodable(_))),
        "{garbage:?}"
    );
    let huge = vec![0x42u8; MAX_MESSAGE_BYTES + 1];
    let oversized = session.receive(a.replica_mut(), &huge);
    assert!(
        matches!(oversized, Err(SessionError::TooLarge { .. })),
        "{oversized:?}"
    );
    assert_eq!(a.replica().doc().get_heads(), heads);
    // The honest exchange still works after the refusals.
    let mut b = Replica::new("t", ActorId::random()).unwrap();
    let mut at_b = Session::new();
    let mut fresh = Session::new();
    converge(a.replica_mut(), &mut fresh, &mut b, &mut at_b).unwrap();
    assert_eq!(b.ids().len(), 3);
}
