//! Real nodes on 127.0.0.1: a mesh each, a temp clone each, the sync task between them.
//! Every test is bounded in time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use symphony_mesh::{BootstrapPeer, Identity, Mesh, MeshConfig, TrustConfig};
use symphony_sync::{LocalTracker, SyncConfig, SyncNode};
use symphony_tracker::Store;

const SEED: &str = concat!(
    "{\"id\": \"T-0001\", \"identifier\": \"T-0001\", \"title\": \"one\", \"priority\": 1, \"description\": \"first\\n\\nsecond\\n\\nthird\"}\n",
    "{\"id\": \"T-0002\", \"identifier\": \"T-0002\", \"title\": \"two\", \"priority\": 2, \"description\": \"c\"}\n",
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
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("issues")).unwrap();
    let path = dir.path().join("issues/issues.jsonl");
    std::fs::write(&path, SEED).unwrap();
    let store = Store::new(&path);
    let mut config = config();
    config.bootstrap = bootstrap
        .iter()
        .map(|m| BootstrapPeer {
            id: Some(m.node_id()),
            addr: m.advertised_addr(),
        })
        .collect();
    let mesh = Mesh::start_with_identity(config, Identity::generate().unwrap())
        .await
        .unwrap();
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
                "{{\"id\": \"T-0003\", \"identifier\": \"T-0003\", \"title\": \"{title}\", \"priority\": 3, \"description\": \"\"}}\n"
            ));
            std::fs::write(n.store.path(), text).unwrap();
        }
        a.sync.sync_file().await.unwrap();
        b.sync.sync_file().await.unwrap();
        for n in [&a, &b] {
            until(async || {
                let t3 = field(n, "T-0003", "title").await;
                let t4 = field(n, "T-0004", "title").await;
                let mut titles = [t3, t4];
                titles.sort_by_key(|t| t.to_string());
                titles == [serde_json::json!("made on a"), serde_json::json!("made on b")]
            })
            .await;
        }
        until(async || {
            let (fa, fb) = (std::fs::read(a.store.path()).unwrap(), std::fs::read(b.store.path()).unwrap());
            fa == fb && String::from_utf8_lossy(&fa).lines().count() == 4
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
