//! SIGKILL of a process in the middle of a burst of writes: after a restart every change it
//! acknowledged is in the document, and the issues file is whole.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use symphony_sync::LocalTracker;
use symphony_tracker::{Document, Store};

#[test]
fn sigkill_during_a_burst_loses_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("issues")).unwrap();
    let path = dir.path().join("issues/issues.jsonl");
    let seed: String = (1..=50)
        .map(|n| {
            format!(
                "{{\"id\":\"T-{n:04}\",\"identifier\":\"T-{n:04}\",\"title\":\"issue {n}\",\
                 \"priority\":0,\"state\":\"todo\",\"labels\":[],\"blocked_by\":[],\
                 \"created_at\":\"2026-01-01T00:00:00Z\",\"updated_at\":\"2026-01-01T00:00:00Z\"}}\n"
            )
        })
        .collect();
    std::fs::write(&path, seed).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sync-bench"))
        .args(["burst", &dir.path().to_string_lossy(), "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let mut acked = 0u64;
    while acked < 40 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "burst too slow"
        );
        let line = lines.next().expect("child ended").unwrap();
        acked = line.trim_start_matches("ack ").parse().unwrap();
    }
    // SIGKILL: no chance to flush or clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    let file = Document::read(&path, usize::MAX).unwrap();
    assert_eq!(file.record_count(), 50);
    for (index, _) in file.record_lines() {
        file.record(index).unwrap();
    }
    let mut local = LocalTracker::open(Store::new(&path), "t").unwrap();
    let in_doc = local.replica().issue("T-0001").unwrap()["priority"]
        .as_u64()
        .unwrap();
    assert!(
        in_doc >= acked,
        "acknowledged {acked}, document has {in_doc}"
    );
    local.sync_file().unwrap();
    let after = local.replica().issue("T-0001").unwrap()["priority"]
        .as_u64()
        .unwrap();
    assert!(after >= acked);
    assert_eq!(local.replica().ids().len(), 50);
}
