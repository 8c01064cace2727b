//! Whole nodes (`Mesh`) over real UDP sockets on 127.0.0.1: direct messages, pubsub in a
//! 20-node swarm, crashes, a partition and a slow peer through the UDP relay, an untrusted
//! node, roster events. Every test is bounded by `tokio::time::timeout`; configs use short
//! idle timeouts and ticks so the whole file runs in well under two minutes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use symphony_mesh::relay::{LinkConditions, Relay};
use symphony_mesh::{
    BootstrapPeer, Delivery, DirectError, Identity, MembershipEvent, Mesh, MeshConfig, NodeId,
    PeerView, Receipt, Subscription, TrustConfig,
};

const TOPIC: &str = "tracker";

async fn bounded<F: Future>(limit: Duration, test: F) -> F::Output {
    tokio::time::timeout(limit, test)
        .await
        .expect("test exceeded its time bound")
}

/// Fast failure detection and repair: 1 s idle timeout, 100 ms ticks.
fn config() -> MeshConfig {
    let mut c = MeshConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        trust: TrustConfig::Open,
        ..MeshConfig::default()
    };
    c.transport.keep_alive_ms = 200;
    c.transport.idle_timeout_ms = 1000;
    c.transport.handshake_timeout_ms = 2000;
    c.transport.send_timeout_ms = 500;
    c.transport.shutdown_grace_ms = 200;
    c.proto.tick_ms = 100;
    c.proto.request_timeout_ms = 1000;
    c.proto.backoff_base_ms = 200;
    c.proto.backoff_max_ms = 2000;
    c.proto.lost_backoff_max_ms = 2000;
    c.proto.merge_cooldown_ms = 2000;
    c.proto.shuffle_interval_ms = 2000;
    c.proto.cooling_base_ms = 2000;
    c.direct.timeout_ms = 2000;
    c
}

fn via(peer: &Mesh) -> BootstrapPeer {
    BootstrapPeer {
        id: Some(peer.node_id()),
        addr: peer.advertised_addr(),
    }
}

async fn start(mut config: MeshConfig, bootstrap: &[&Mesh]) -> Mesh {
    config.bootstrap = bootstrap.iter().map(|m| via(m)).collect();
    Mesh::start_with_identity(config, Identity::generate().unwrap())
        .await
        .unwrap()
}

/// Polls `check` every 20 ms until it holds.
async fn eventually<F: Future<Output = bool>>(mut check: impl FnMut() -> F) {
    while !check().await {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn active_view(mesh: &Mesh) -> Vec<NodeId> {
    mesh.peers()
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.view == PeerView::Active)
        .map(|p| p.node_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_exchange_a_direct_message_with_a_direct_receipt() {
    bounded(Duration::from_secs(20), async {
        let a = start(config(), &[]).await;
        let b = start(config(), &[&a]).await;
        let mut inbox = b.direct_messages().await.unwrap();
        assert!(b.direct_messages().await.is_none(), "one inbox per node");
        eventually(|| async { active_view(&a).await == vec![b.node_id()] }).await;

        let receipt = a.send_direct(b.node_id(), "hello b").await.unwrap();
        assert_eq!(receipt, Receipt::Direct);
        let message = inbox.recv().await.unwrap();
        assert_eq!(message.from, a.node_id());
        assert_eq!(message.payload, Bytes::from_static(b"hello b"));
        assert_eq!(message.receipt, Receipt::Direct);

        let diagnostics = a.diagnostics().await.unwrap();
        assert_eq!(diagnostics.direct.counters.receipts_direct, 1);
        assert_eq!(diagnostics.direct.pending, 0);
        let peer = diagnostics
            .peers
            .iter()
            .find(|p| p.node_id == b.node_id())
            .unwrap();
        assert_eq!(peer.messages.sent.direct, 1);
        assert_eq!(peer.messages.received.direct, 1, "the receipt");
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_direct_message_to_self_loops_back() {
    bounded(Duration::from_secs(10), async {
        let a = start(config(), &[]).await;
        let mut inbox = a.direct_messages().await.unwrap();
        let receipt = a.send_direct(a.node_id(), "note to self").await.unwrap();
        assert_eq!(receipt, Receipt::Loopback);
        let message = inbox.recv().await.unwrap();
        assert_eq!(
            (message.from, message.receipt),
            (a.node_id(), Receipt::Loopback)
        );
        assert_eq!(message.payload, Bytes::from_static(b"note to self"));
        // A request to self is answered through the same inbox.
        let answering = tokio::spawn(async move {
            let request = inbox.recv().await.unwrap();
            request.reply(b"pong".to_vec()).await.unwrap()
        });
        let response = a
            .request(a.node_id(), "ping", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(response, Bytes::from_static(b"pong"));
        assert_eq!(answering.await.unwrap(), Receipt::Loopback);
        assert_eq!(a.diagnostics().await.unwrap().direct.responses, 1);
        a.shutdown().await;
        assert_eq!(
            a.send_direct(a.node_id(), "late").await,
            Err(DirectError::ShuttingDown)
        );
    })
    .await;
}
