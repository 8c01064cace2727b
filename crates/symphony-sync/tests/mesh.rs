//! Real nodes on 127.0.0.1: a mesh each, a temp clone each, the sync task between them.
//! Every test is bounded in time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use symphony_mesh::relay::{LinkConditions, Relay};
use symphony_mesh::{BootstrapPeer, Identity, Mesh, MeshConfig, TrustConfig};
use symphony_sync::{LocalTracker, SyncConfig, SyncNode};
use symphony_tracker::Store;

const SEED: &str = concat!(
    "{\"id\": \"T-0001\", \"identifier\": \"T-0001\", \"title\": \"one\", \"state\": \"todo\", \"created_at\": \"2026-01-01T00:00:00Z\", \"updated_at\": \"2026-01-01T00:00:00Z\", \"priority\": 1, \"description\": \"first\\n\\nsecond\\n\\nthird\"}\n",
    "{\"id\": \"T-0002\", \"identifier\": \"T-0002\", \"title\": \"two\", \"state\": \"todo\", \"created_at\": \"2026-01-01T00:00:00Z\", \"updated_at\": \"2026-01-01T00:00:00Z\", \"priority\": 2, \"description\": \"c\"}\n",
    "{\"id\": \"T-0010\", \"identifier\": \"T-0010\", \"title\": \"ten\", \"state\": \"todo\", \"created_at\": \"2026-01-01T00:00:00Z\", \"updated_at\": \"2026-01-01T00:00:00Z\", \"priority\": 2, \"description\": \"\"}\n",
    "{\"id\": \"T-0011\", \"identifier\": \"T-0011\", \"title\": \"eleven\", \"state\": \"todo\", \"created_at\": \"2026-01-01T00:00:00Z\", \"updated_at\": \"2026-01-01T00:00:00Z\", \"priority\": 2, \"description\": \"\"}\n",
    "{\"id\": \"T-0012\", \"identifier\": \"T-0012\", \"title\": \"twelve\", \"state\": \"todo\", \"created_at\": \"2026-01-01T00:00:00Z\", \"updated_at\": \"2026-01-01T00:00:00Z\", \"priority\": 2, \"description\": \"\"}\n",
);

/// Only one multi-node test at a time: CI has two cores.
static NODES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test exceeded its time bound")
}

fn config() -> MeshConfig {
    let mut c = MeshConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        trust: TrustConfig::Open,
        ..MeshConfig::default()
    };
    c.transport.keep_alive_ms = 400;
    c.transport.idle_timeout_ms = 3000;
    c.transport.handshake_timeout_ms = 2000;
    c.transport.shutdown_grace_ms = 200;
    c.proto.tick_ms = 100;
    c
}

struct Node {
    mesh: Mesh,
    sync: SyncNode,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn node(bootstrap: &[&Mesh]) -> Node {
    let mut config = config();
    config.bootstrap = bootstrap
        .iter()
        .map(|m| BootstrapPeer {
            id: Some(m.node_id()),
            addr: m.advertised_addr(),
        })
        .collect();
    node_in(tempfile::tempdir().unwrap(), config).await
}

/// A node over the clone in `dir` (seeded when new), its key kept in the clone.
async fn node_in(dir: tempfile::TempDir, mut config: MeshConfig) -> Node {
    std::fs::create_dir_all(dir.path().join("issues")).unwrap();
    let path = dir.path().join("issues/issues.jsonl");
    if !path.exists() {
        std::fs::write(&path, SEED).unwrap();
    }
    let store = Store::new(&path);
    config.key_path = dir.path().join(".symphony/node.key");
    let mesh = Mesh::start(config).await.unwrap();
    let local = LocalTracker::open(store.clone(), "t").unwrap();
    let mut sync_config = SyncConfig::for_tracker("t");
    sync_config.anti_entropy = Duration::from_millis(300);
    let sync = SyncNode::start(local, mesh.clone(), sync_config)
        .await
        .unwrap();
    sync.sync_file().await.unwrap();
    Node {
        mesh,
        sync,
        store,
        _dir: dir,
    }
}

fn edit(path: &Path, id: &str, key: &str, value: serde_json::Value) {
    let text = std::fs::read_to_string(path).unwrap();
    let out: String = text
        .split_inclusive('\n')
        .map(|line| {
            let mut record: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line.trim_end()).unwrap();
            if record["id"] == id {
                record.insert(key.into(), value.clone());
                format!("{}\n", serde_json::to_string(&record).unwrap())
            } else {
                line.to_string()
            }
        })
        .collect();
    std::fs::write(path, out).unwrap();
}

async fn until(mut check: impl AsyncFnMut() -> bool) {
    while !check().await {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn field(node: &Node, id: &str, key: &str) -> serde_json::Value {
    node.sync
        .issue(id)
        .await
        .unwrap()
        .and_then(|r| r.get(key).cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_editing_different_fields_converge_with_identical_files() {
    let _one = NODES.lock().await;
    bounded(async {
        let a = node(&[]).await;
        let b = node(&[&a.mesh]).await;
        edit(a.store.path(), "T-0001", "title", "edited on a".into());
        edit(b.store.path(), "T-0001", "priority", 4.into());
        a.sync.sync_file().await.unwrap();
        b.sync.sync_file().await.unwrap();
        for n in [&a, &b] {
            until(async || {
                field(n, "T-0001", "title").await == "edited on a"
                    && field(n, "T-0001", "priority").await == 4
            })
            .await;
        }
        until(async || {
            std::fs::read(a.store.path()).unwrap() == std::fs::read(b.store.path()).unwrap()
        })
        .await;
        let status = a.sync.status().await.unwrap();
        assert!(
            status.messages_in > 0 && status.bad_peers.is_empty(),
            "{status:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_editing_different_paragraphs_keep_both_edits() {
    let _one = NODES.lock().await;
    bounded(async {
        let a = node(&[]).await;
        let b = node(&[&a.mesh]).await;
        edit(
            a.store.path(),
            "T-0001",
            "description",
            "FIRST\n\nsecond\n\nthird".into(),
        );
        edit(
            b.store.path(),
            "T-0001",
            "description",
            "first\n\nsecond\n\nthird, longer".into(),
        );
        a.sync.sync_file().await.unwrap();
        b.sync.sync_file().await.unwrap();
        for n in [&a, &b] {
            until(async || {
                field(n, "T-0001", "description").await == "FIRST\n\nsecond\n\nthird, longer"
            })
            .await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_on_two_nodes_keep_every_issue_with_unique_ids() {
    let _one = NODES.lock().await;
    bounded(async {
        let a = node(&[]).await;
        let b = node(&[&a.mesh]).await;
        for (n, title) in [(&a, "made on a"), (&b, "made on b")] {
            let mut text = std::fs::read_to_string(n.store.path()).unwrap();
            text.push_str(&format!(
                "{{\"id\": \"T-0013\", \"identifier\": \"T-0013\", \"title\": \"{title}\", \"state\": \"todo\", \"created_at\": \"2026-01-01T00:00:00Z\", \"updated_at\": \"2026-01-01T00:00:00Z\", \"priority\": 3, \"description\": \"\"}}\n"
            ));
            std::fs::write(n.store.path(), text).unwrap();
        }
        a.sync.sync_file().await.unwrap();
        b.sync.sync_file().await.unwrap();
        for n in [&a, &b] {
            until(async || {
                let t3 = field(n, "T-0013", "title").await;
                let t4 = field(n, "T-0014", "title").await;
                let mut titles = [t3, t4];
                titles.sort_by_key(|t| t.to_string());
                titles == [serde_json::json!("made on a"), serde_json::json!("made on b")]
            })
            .await;
        }
        until(async || {
            let (fa, fb) = (std::fs::read(a.store.path()).unwrap(), std::fs::read(b.store.path()).unwrap());
            fa == fb && String::from_utf8_lossy(&fa).lines().count() == 7
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_of_five_nodes_reaches_all_of_them() {
    let _one = NODES.lock().await;
    bounded(async {
        let first = node(&[]).await;
        let mut nodes = vec![first];
        for _ in 0..4 {
            let next = node(&[&nodes[0].mesh]).await;
            nodes.push(next);
        }
        edit(nodes[4].store.path(), "T-0002", "state", "review".into());
        let started = std::time::Instant::now();
        nodes[4].sync.sync_file().await.unwrap();
        for n in &nodes {
            until(async || field(n, "T-0002", "state").await == "review").await;
        }
        eprintln!("a change reached 5 nodes in {:?}", started.elapsed());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_garbage_is_dropped_and_counted_while_honest_peers_sync() {
    let _one = NODES.lock().await;
    bounded(async {
        let a = node(&[]).await;
        let b = node(&[&a.mesh]).await;
        let mut hostile_config = config();
        hostile_config.bootstrap = vec![BootstrapPeer {
            id: Some(a.mesh.node_id()),
            addr: a.mesh.advertised_addr(),
        }];
        let hostile = Mesh::start_with_identity(hostile_config, Identity::generate().unwrap())
            .await
            .unwrap();
        until(async || {
            hostile
                .send_sync(a.mesh.node_id(), b"garbage, not a frame".to_vec())
                .await
                .is_ok()
        })
        .await;
        until(async || !a.sync.status().await.unwrap().bad_peers.is_empty()).await;
        let status = a.sync.status().await.unwrap();
        assert_eq!(status.bad_peers.len(), 1, "{status:?}");
        assert!(
            status.bad_peers.contains_key(&hostile.node_id().short()),
            "{status:?}"
        );
        edit(b.store.path(), "T-0002", "title", "still syncing".into());
        b.sync.sync_file().await.unwrap();
        until(async || field(&a, "T-0002", "title").await == "still syncing").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_behind_a_partitioned_relay_converge_after_the_heal() {
    let _one = NODES.lock().await;
    bounded(async {
        let n = 5;
        let relay = Relay::start(n, LinkConditions::default()).await.unwrap();
        let mut nodes: Vec<Node> = Vec::new();
        for i in 0..n {
            let mut c = config();
            c.advertise = Some(relay.front(i));
            c.bootstrap = nodes
                .iter()
                .enumerate()
                .map(|(j, m)| BootstrapPeer {
                    id: Some(m.mesh.node_id()),
                    addr: relay.front(j),
                })
                .collect();
            // The relay's port is known before the node's: register as soon as it listens.
            let dir = tempfile::tempdir().unwrap();
            let node = node_in(dir, c).await;
            relay.register(i, node.mesh.local_addr());
            nodes.push(node);
        }
        // Everyone hears a first change: the overlay is up.
        edit(
            nodes[0].store.path(),
            "T-0002",
            "state",
            "in_progress".into(),
        );
        nodes[0].sync.sync_file().await.unwrap();
        for node in &nodes {
            until(async || field(node, "T-0002", "state").await == "in_progress").await;
        }
        relay.partition(&[0, 0, 0, 1, 1]);
        edit(nodes[0].store.path(), "T-0001", "title", "left side".into());
        edit(nodes[4].store.path(), "T-0001", "priority", 9.into());
        nodes[0].sync.sync_file().await.unwrap();
        nodes[4].sync.sync_file().await.unwrap();
        until(async || field(&nodes[2], "T-0001", "title").await == "left side").await;
        until(async || field(&nodes[3], "T-0001", "priority").await == 9).await;
        assert_ne!(
            field(&nodes[2], "T-0001", "priority").await,
            9,
            "crossed the partition"
        );
        assert!(relay.stats().dropped_partition > 0);
        relay.heal();
        let healed = std::time::Instant::now();
        for node in &nodes {
            until(async || {
                field(node, "T-0001", "title").await == "left side"
                    && field(node, "T-0001", "priority").await == 9
            })
            .await;
        }
        eprintln!("5 nodes converged {:?} after the heal", healed.elapsed());
        let first = std::fs::read_to_string(nodes[0].store.path()).unwrap();
        for node in &nodes[1..] {
            let same = tokio::time::timeout(
                Duration::from_secs(5),
                until(async || std::fs::read_to_string(node.store.path()).unwrap() == first),
            )
            .await;
            let other = std::fs::read_to_string(node.store.path()).unwrap();
            assert!(same.is_ok(), "files differ:\n{first}\n---\n{other}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_offline_for_200_changes_catches_up_with_only_the_missing_changes() {
    let _one = NODES.lock().await;
    bounded(async {
        let a = node(&[]).await;
        // A history before B exists: Automerge sends a whole document to a peer missing
        // over a third of the changes, and a tracker in use has a long history.
        for n in 0..450 {
            edit(a.store.path(), "T-0001", "priority", (10 + n).into());
            a.sync.sync_file().await.unwrap();
        }
        let b = node(&[&a.mesh]).await;
        until(async || field(&b, "T-0001", "priority").await == 459).await;
        let b_dir = b._dir;
        b.mesh.shutdown().await;
        drop(b.sync);
        // Let A's sync task notice B is gone before the burst.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for n in 0..200 {
            edit(a.store.path(), "T-0002", "priority", (1000 + n).into());
            a.sync.sync_file().await.unwrap();
        }
        let log = b_dir.path().join(".symphony/sync/changes.log");
        let log_before = std::fs::metadata(&log).unwrap().len();
        let mut c = config();
        c.bootstrap = vec![BootstrapPeer {
            id: Some(a.mesh.node_id()),
            addr: a.mesh.advertised_addr(),
        }];
        let b = node_in(b_dir, c).await;
        until(async || field(&b, "T-0002", "priority").await == 1199).await;
        let status = b.sync.status().await.unwrap();
        let logged = std::fs::metadata(&log).unwrap().len() - log_before;
        eprintln!(
            "catch-up after 200 changes: {} bytes in {} messages; the changes take {logged} bytes in the log",
            status.bytes_in, status.messages_in
        );
        // Only the missing changes travel (the log frames each with 8 bytes), plus the
        // protocol's heads and bloom filters.
        assert!(status.bytes_in < logged + 4096, "{} bytes for {logged}", status.bytes_in);
        assert!(status.bytes_in > logged / 2, "{} bytes for {logged}", status.bytes_in);
    })
    .await;
}
