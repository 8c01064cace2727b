//! Whole nodes (`Mesh`) over real UDP sockets on 127.0.0.1: direct messages, pubsub in a
//! 20-node swarm, crashes, a partition and a slow peer through the UDP relay, an untrusted
//! node, roster events. Every test is bounded by `tokio::time::timeout`; configs use short
//! idle timeouts and ticks so the whole file runs in well under two minutes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use symphony_mesh::relay::{LinkConditions, Relay};
use symphony_mesh::{
    BootstrapPeer, Delivery, DirectError, Identity, MembershipEvent, Mesh, MeshConfig, NodeId,
    PeerView, Receipt, Subscription, TrustConfig,
};

const TOPIC: &str = "tracker";

/// Swarm tests take this lock so that only one swarm runs at a time: CI has two cores, and
/// two debug-build swarms at once starve keep-alives into idle timeouts.
static SWARM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn bounded<F: Future>(limit: Duration, test: F) -> F::Output {
    tokio::time::timeout(limit, test)
        .await
        .expect("test exceeded its time bound")
}

/// Fast failure detection and repair: 2 s idle timeout, 100 ms ticks.
fn config() -> MeshConfig {
    let mut c = MeshConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        trust: TrustConfig::Open,
        ..MeshConfig::default()
    };
    c.transport.keep_alive_ms = 400;
    c.transport.idle_timeout_ms = 2000;
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

fn allow(ids: &[&Identity]) -> TrustConfig {
    TrustConfig::Allow(ids.iter().map(|i| i.node_id()).collect())
}

async fn start_as(identity: Identity, trust: TrustConfig, bootstrap: &[&Mesh]) -> Mesh {
    let mut config = config();
    config.trust = trust;
    config.bootstrap = bootstrap.iter().map(|m| via(m)).collect();
    Mesh::start_with_identity(config, identity).await.unwrap()
}

/// Echoes every inbound message back upper-cased, as the response to it.
fn spawn_echo(mut inbox: symphony_mesh::DirectMessages) {
    tokio::spawn(async move {
        while let Some(message) = inbox.recv().await {
            let answer = message.payload.to_ascii_uppercase();
            let _ = message.reply(answer).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_is_relayed_through_a_middle_node() {
    bounded(Duration::from_secs(20), async {
        // a and c do not trust each other, so they can never connect: b must relay.
        let (ia, ib, ic) = (
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
        );
        let (a_id, b_id, c_id) = (ia.node_id(), ib.node_id(), ic.node_id());
        let b = start_as(ib, allow(&[&ia, &ic]), &[]).await;
        let a = start_as(ia, TrustConfig::Allow(vec![b_id]), &[&b]).await;
        let c = start_as(ic, TrustConfig::Allow(vec![b_id]), &[&b]).await;
        eventually(|| async {
            active_view(&a).await == vec![b_id] && active_view(&c).await == vec![b_id]
        })
        .await;
        let mut inbox = c.direct_messages().await.unwrap();

        let receipt = a.send_direct(c_id, "through b").await.unwrap();
        assert_eq!(receipt, Receipt::Relayed { via: b_id });
        let message = inbox.recv().await.unwrap();
        assert_eq!(message.from, a_id);
        assert_eq!(message.receipt, Receipt::Relayed { via: b_id });

        spawn_echo(inbox);
        let response = a
            .request(c_id, "relayed request", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(response, Bytes::from_static(b"RELAYED REQUEST"));
        let relay = b.diagnostics().await.unwrap();
        assert!(
            relay.direct.counters.forwarded >= 3,
            "2 messages and 1 response"
        );
        // The response's receipt may still be on its way back through b.
        eventually(|| async { b.diagnostics().await.unwrap().direct.relay_entries == 0 }).await;
        for node in [a, b, c] {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn direct_failures_are_typed() {
    bounded(Duration::from_secs(20), async {
        let a = start(config(), &[]).await;
        let nobody = Identity::generate().unwrap().node_id();
        assert_eq!(
            a.send_direct(nobody, "x").await,
            Err(DirectError::Unreachable {
                node: nobody,
                reason: symphony_mesh::direct::UnreachableReason::NoNeighbours
            })
        );
        let b = start(config(), &[&a]).await;
        eventually(|| async { active_view(&a).await == vec![b.node_id()] }).await;
        // b's only neighbour is a, where the message came from: no route.
        assert_eq!(
            a.send_direct(nobody, "x").await,
            Err(DirectError::Unreachable {
                node: nobody,
                reason: symphony_mesh::direct::UnreachableReason::NoRoute
            })
        );
        let big = vec![0u8; symphony_mesh::proto::wire::MAX_PAYLOAD_LEN + 1];
        assert!(matches!(
            a.send_direct(b.node_id(), big).await,
            Err(DirectError::TooLarge { .. })
        ));
        // b takes its inbox but never answers: the request times out.
        let _silent = b.direct_messages().await.unwrap();
        let started = Instant::now();
        assert_eq!(
            a.request(b.node_id(), "anyone?", Duration::from_millis(300))
                .await,
            Err(DirectError::Timeout {
                node: b.node_id(),
                after_ms: 300
            })
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_gets_its_response_from_a_connected_node() {
    bounded(Duration::from_secs(20), async {
        let a = start(config(), &[]).await;
        let b = start(config(), &[&a]).await;
        spawn_echo(b.direct_messages().await.unwrap());
        eventually(|| async { active_view(&a).await == vec![b.node_id()] }).await;
        for i in 0..20 {
            let response = a
                .request(b.node_id(), format!("ping {i}"), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(response, Bytes::from(format!("PING {i}")));
        }
        let diagnostics = a.diagnostics().await.unwrap();
        assert_eq!(diagnostics.direct.responses, 20);
        assert_eq!(diagnostics.direct.requests_waiting, 0);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn membership_events_report_neighbours_up_and_down() {
    bounded(Duration::from_secs(20), async {
        let a = start(config(), &[]).await;
        let mut events = a.membership_events();
        let b = start(config(), &[&a]).await;
        assert_eq!(
            events.recv().await,
            Some(MembershipEvent::NeighborUp { peer: b.node_id() })
        );
        b.shutdown().await;
        assert_eq!(
            events.recv().await,
            Some(MembershipEvent::NeighborDown { peer: b.node_id() })
        );
        a.shutdown().await;
        assert_eq!(events.recv().await, None, "the stream ends with the node");
    })
    .await;
}

/// What one node received: deliveries with their arrival time.
type Log = std::sync::Arc<std::sync::Mutex<Vec<(Delivery, Instant)>>>;

fn collect(mut subscription: Subscription) -> Log {
    let log = Log::default();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Some(delivery) = subscription.recv().await {
            sink.lock().unwrap().push((delivery, Instant::now()));
        }
    });
    log
}

/// Bootstrap contacts of node `i`: the first three nodes started before it.
fn contacts(i: usize, peers: &[BootstrapPeer]) -> Vec<BootstrapPeer> {
    peers.iter().take(i.min(3)).copied().collect()
}

/// A swarm of nodes subscribed to [`TOPIC`]; `None` marks a killed node.
struct Swarm {
    nodes: Vec<Option<Mesh>>,
    logs: Vec<Log>,
    epoch: Instant,
    published: Vec<(usize, Bytes)>,
}

impl Swarm {
    fn new() -> Self {
        Self {
            nodes: Vec::new(),
            logs: Vec::new(),
            epoch: Instant::now(),
            published: Vec::new(),
        }
    }

    async fn add(&mut self, mesh: Mesh) {
        let subscription = mesh.subscribe(TOPIC).await.unwrap();
        self.logs.push(collect(subscription));
        self.nodes.push(Some(mesh));
    }

    fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    fn node(&self, i: usize) -> &Mesh {
        self.nodes[i].as_ref().unwrap()
    }

    /// Publishes from node `i`; the payload carries the publish time for latency.
    async fn publish(&mut self, i: usize, label: &str) {
        let sent = self.epoch.elapsed().as_nanos() as u64;
        let mut payload = sent.to_be_bytes().to_vec();
        payload.extend_from_slice(format!("{label}-{}", self.published.len()).as_bytes());
        let payload = Bytes::from(payload);
        self.node(i).publish(TOPIC, payload.clone()).await.unwrap();
        self.published.push((i, payload));
    }

    /// (message, node) pairs among `messages` that a live node other than the publisher
    /// lacks.
    fn missing(&self, messages: &[(usize, Bytes)]) -> Vec<(String, usize)> {
        let mut missing = Vec::new();
        for node in self.alive() {
            let log = self.logs[node].lock().unwrap();
            let got: BTreeSet<&Bytes> = log.iter().map(|(d, _)| &d.payload).collect();
            for (publisher, payload) in messages {
                if *publisher != node && !got.contains(payload) {
                    let label = String::from_utf8_lossy(&payload[8..]).into_owned();
                    missing.push((label, node));
                }
            }
        }
        missing
    }

    async fn all_delivered(&self, messages: &[(usize, Bytes)], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let missing = self.missing(messages);
            if missing.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let node = self.node(missing[0].1);
                let d = node.diagnostics().await.unwrap();
                eprintln!(
                    "node {} drops {:#?}\npubsub {:#?}\nviews {:?}\ntimeouts {:?}\nnode {:?}\ncache {:?}",
                    missing[0].1,
                    d.drops,
                    d.proto.pubsub,
                    d.views,
                    d.timeouts,
                    d.node,
                    d.proto.cache
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} deliveries missing after {limit:?}, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Latencies of the deliveries of `messages` to `nodes`.
    fn latencies(&self, messages: &[(usize, Bytes)], nodes: &[usize]) -> Vec<Duration> {
        let wanted: BTreeSet<&Bytes> = messages.iter().map(|(_, p)| p).collect();
        let mut latencies = Vec::new();
        for node in nodes {
            for (delivery, at) in self.logs[*node].lock().unwrap().iter() {
                if wanted.contains(&delivery.payload) {
                    let sent = u64::from_be_bytes(delivery.payload[..8].try_into().unwrap());
                    let sent = self.epoch + Duration::from_nanos(sent);
                    latencies.push(at.duration_since(sent));
                }
            }
        }
        latencies.sort();
        latencies
    }

    /// Deliveries of the same message to the same node more than once.
    fn redelivered(&self) -> usize {
        self.logs
            .iter()
            .map(|log| {
                let log = log.lock().unwrap();
                let unique: BTreeSet<_> = log.iter().map(|(d, _)| d.message_id).collect();
                log.len() - unique.len()
            })
            .sum()
    }

    async fn active_views(&self) -> BTreeMap<NodeId, Vec<NodeId>> {
        let mut views = BTreeMap::new();
        for i in self.alive() {
            let node = self.node(i);
            views.insert(node.node_id(), active_view(node).await);
        }
        views
    }

    /// Whether the live nodes' active views form one connected overlay.
    async fn connected(&self) -> bool {
        let views = self.active_views().await;
        let Some(start) = views.keys().next().copied() else {
            return true;
        };
        let mut seen = BTreeSet::from([start]);
        let mut todo = vec![start];
        while let Some(node) = todo.pop() {
            for next in views.get(&node).into_iter().flatten() {
                if views.contains_key(next) && seen.insert(*next) {
                    todo.push(*next);
                }
            }
        }
        seen.len() == views.len()
    }

    async fn shutdown(self) {
        for node in self.nodes.into_iter().flatten() {
            node.shutdown().await;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// A plain loopback swarm of `n` nodes, each joining through up to three earlier ones.
async fn loopback_swarm(n: usize) -> Swarm {
    let mut swarm = Swarm::new();
    let mut peers = Vec::new();
    for i in 0..n {
        let mut config = config();
        config.bootstrap = contacts(i, &peers);
        let mesh = Mesh::start_with_identity(config, Identity::generate().unwrap())
            .await
            .unwrap();
        peers.push(via(&mesh));
        swarm.add(mesh).await;
    }
    swarm
}

async fn settle(swarm: &Swarm) {
    eventually(|| async {
        let views = swarm.active_views().await;
        views.values().all(|v| !v.is_empty()) && swarm.connected().await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_deliver_every_message_from_random_publishers() {
    let _swarm = SWARM.lock().await;
    bounded(Duration::from_secs(40), async {
        let mut swarm = loopback_swarm(20).await;
        settle(&swarm).await;
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            swarm.publish(rng.random_range(0..20), "random").await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let published = swarm.published.clone();
        swarm
            .all_delivered(&published, Duration::from_secs(15))
            .await;
        assert_eq!(swarm.redelivered(), 0, "a message was delivered twice");
        let latencies = swarm.latencies(&published, &swarm.alive());
        println!(
            "20 nodes, 100 messages: p50 {:?} p99 {:?} max {:?}",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies[latencies.len() - 1]
        );
        swarm.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_5_of_20_mid_stream_the_rest_still_deliver() {
    let _swarm = SWARM.lock().await;
    bounded(Duration::from_secs(60), async {
        // The victims run on their own runtime; shutting it down stops their tasks and
        // sockets without any close frame, like a crash.
        let victims = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut swarm = Swarm::new();
        let mut peers = Vec::new();
        for i in 0..20 {
            let mut config = config();
            config.bootstrap = contacts(i, &peers);
            let identity = Identity::generate().unwrap();
            let mesh = if i >= 15 {
                victims
                    .spawn(Mesh::start_with_identity(config, identity))
                    .await
                    .unwrap()
            } else {
                Mesh::start_with_identity(config, identity).await
            }
            .unwrap();
            peers.push(via(&mesh));
            swarm.add(mesh).await;
        }
        settle(&swarm).await;
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..30 {
            swarm.publish(rng.random_range(0..15), "before").await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        victims.shutdown_background();
        for victim in 15..20 {
            swarm.nodes[victim] = None;
        }
        for _ in 0..50 {
            swarm.publish(rng.random_range(0..15), "after").await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let published = swarm.published.clone();
        swarm
            .all_delivered(&published, Duration::from_secs(20))
            .await;
        assert_eq!(swarm.redelivered(), 0);
        // The survivors notice the crashes through the idle timeout and repair their views.
        eventually(|| async {
            let views = swarm.active_views().await;
            let dead: BTreeSet<NodeId> = peers[15..].iter().map(|p| p.id.unwrap()).collect();
            views.values().flatten().all(|p| !dead.contains(p)) && swarm.connected().await
        })
        .await;
        swarm.shutdown().await;
    })
    .await;
}

/// A swarm behind the relay: node `i` listens on loopback and advertises its relay front.
async fn relayed_swarm(n: usize, mut tune: impl FnMut(&mut MeshConfig)) -> (Swarm, Relay) {
    let relay = Relay::start(n, LinkConditions::default()).await.unwrap();
    let identities: Vec<Identity> = (0..n).map(|_| Identity::generate().unwrap()).collect();
    let peers: Vec<BootstrapPeer> = identities
        .iter()
        .enumerate()
        .map(|(i, id)| BootstrapPeer {
            id: Some(id.node_id()),
            addr: relay.front(i),
        })
        .collect();
    let mut swarm = Swarm::new();
    for (i, identity) in identities.into_iter().enumerate() {
        let mut config = config();
        config.advertise = Some(relay.front(i));
        config.bootstrap = contacts(i, &peers);
        tune(&mut config);
        let mesh = Mesh::start_with_identity(config, identity).await.unwrap();
        relay.register(i, mesh.local_addr());
        swarm.add(mesh).await;
    }
    (swarm, relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_longer_than_the_idle_timeout_heals_and_the_overlay_remerges() {
    let _swarm = SWARM.lock().await;
    bounded(Duration::from_secs(60), async {
        let n = 12;
        let (mut swarm, relay) = relayed_swarm(n, |_| {}).await;
        settle(&swarm).await;
        let half = |i: usize| u8::from(i >= n / 2);
        let groups: Vec<u8> = (0..n).map(half).collect();
        let ids: Vec<NodeId> = (0..n).map(|i| swarm.node(i).node_id()).collect();
        relay.partition(&groups);
        // Longer than the 2 s idle timeout: each half evicts the other from its views.
        let cut = Instant::now();
        eventually(|| async {
            let views = swarm.active_views().await;
            views.iter().all(|(node, view)| {
                let side = half(ids.iter().position(|i| i == node).unwrap());
                view.iter()
                    .all(|p| half(ids.iter().position(|i| i == p).unwrap()) == side)
            })
        })
        .await;
        tokio::time::sleep(Duration::from_secs(4).saturating_sub(cut.elapsed())).await;
        let during_start = swarm.published.len();
        for i in [0, n - 1] {
            swarm.publish(i, "during").await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (publisher, payload) in &swarm.published[during_start..] {
            let side = half(*publisher);
            for node in (0..n).filter(|j| half(*j) != side) {
                let log = swarm.logs[node].lock().unwrap();
                assert!(
                    log.iter().all(|(d, _)| d.payload != *payload),
                    "a message crossed the partition"
                );
            }
        }
        assert!(relay.stats().dropped_partition > 0);

        relay.heal();
        let healed = Instant::now();
        eventually(|| swarm.connected()).await;
        println!("overlay re-merged {:?} after the heal", healed.elapsed());
        let merges: u64 = {
            let mut total = 0;
            for i in 0..n {
                total += swarm
                    .node(i)
                    .diagnostics()
                    .await
                    .unwrap()
                    .proto
                    .membership
                    .merge_links;
            }
            total
        };
        assert!(merges > 0, "no merge link was made");
        let after_start = swarm.published.len();
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..30 {
            swarm.publish(rng.random_range(0..n), "healed").await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let healed_messages = swarm.published[after_start..].to_vec();
        swarm
            .all_delivered(&healed_messages, Duration::from_secs(15))
            .await;
        swarm.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_peer_is_cooled_without_hurting_others() {
    let _swarm = SWARM.lock().await;
    bounded(Duration::from_secs(60), async {
        let n = 8;
        let slow = n - 1;
        let (mut swarm, relay) = relayed_swarm(n, |c| {
            // Detect a peer a few seconds behind; keep connections alive through its queue.
            c.transport.stream_window = 32 << 10;
            c.transport.send_timeout_ms = 300;
            c.transport.keep_alive_ms = 500;
            c.transport.idle_timeout_ms = 5000;
        })
        .await;
        settle(&swarm).await;
        // 64 kbit/s with a 4 KiB queue: about 8 kB/s gets through, against ~40 kB/s offered.
        relay.set_node(
            slow,
            LinkConditions {
                rate_kbit: Some(64),
                queue_bytes: 4 << 10,
                ..LinkConditions::default()
            },
        );
        let fast: Vec<usize> = (0..slow).collect();
        let mut rng = StdRng::seed_from_u64(4);
        let padding = "x".repeat(1000);
        let start = swarm.published.len();
        for _ in 0..240 {
            swarm.publish(rng.random_range(0..slow), &padding).await;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let messages: Vec<(usize, Bytes)> = swarm.published[start..].to_vec();
        // Complete delivery to every fast node.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let missing: Vec<_> = swarm
                .missing(&messages)
                .into_iter()
                .filter(|(_, node)| *node != slow)
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "fast nodes miss {missing:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The slow peer's neighbours cooled it.
        let slow_id = swarm.node(slow).node_id();
        let mut coolings = 0;
        let mut cooled_seen = false;
        for i in 0..slow {
            let d = swarm.node(i).diagnostics().await.unwrap();
            coolings += d.proto.pubsub.coolings;
            cooled_seen |= d.cooled.iter().any(|c| c.peer == slow_id);
        }
        assert!(coolings > 0, "nobody cooled the slow peer");
        // The fast nodes' latency over the second half, once the slow peer is cooled.
        let late = &messages[messages.len() / 2..];
        let latencies = swarm.latencies(late, &fast);
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        println!(
            "slow peer: {coolings} coolings (cooled now: {cooled_seen}); fast nodes p50 {p50:?} \
             p99 {p99:?} max {:?}",
            latencies[latencies.len() - 1]
        );
        assert!(p50 < Duration::from_millis(50), "p50 {p50:?}");
        assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");
        swarm.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_node_cannot_join() {
    bounded(Duration::from_secs(30), async {
        let ids: Vec<Identity> = (0..3).map(|_| Identity::generate().unwrap()).collect();
        let trust = allow(&ids.iter().collect::<Vec<_>>());
        let mut members = Vec::new();
        for identity in ids {
            let contacts: Vec<&Mesh> = members.iter().collect();
            let mesh = start_as(identity, trust.clone(), &contacts).await;
            members.push(mesh);
        }
        let mut subscriptions = Vec::new();
        for member in &members {
            subscriptions.push(member.subscribe(TOPIC).await.unwrap());
        }
        let intruder = start_as(
            Identity::generate().unwrap(),
            TrustConfig::Open,
            &[&members[0]],
        )
        .await;
        let mut intruder_events = intruder.membership_events();
        let mut intruder_topic = intruder.subscribe(TOPIC).await.unwrap();
        eventually(|| async {
            let mut refused = 0;
            for member in &members {
                refused += member
                    .diagnostics()
                    .await
                    .unwrap()
                    .transport
                    .connections
                    .refused_untrusted;
            }
            refused > 0
        })
        .await;
        members[1].publish(TOPIC, "members only").await.unwrap();
        assert_eq!(
            subscriptions[0].recv().await.unwrap().payload,
            Bytes::from_static(b"members only")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(intruder.peers().await.unwrap().iter().all(|p| !p.connected));
        assert!(
            tokio::time::timeout(Duration::from_millis(100), intruder_topic.recv())
                .await
                .is_err(),
            "the intruder received a message"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(100), intruder_events.recv())
                .await
                .is_err(),
            "the intruder got a neighbour"
        );
        let intruder_id = intruder.node_id();
        for member in &members {
            let peers = member.peers().await.unwrap();
            assert!(peers.iter().all(|p| p.node_id != intruder_id));
        }
        let diagnostics = intruder.diagnostics().await.unwrap();
        assert!(diagnostics.transport.connections.dial_failures > 0);
        intruder.shutdown().await;
        for member in members {
            member.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rtt_is_measured_per_peer_and_shown_in_diagnostics() {
    let _swarm = SWARM.lock().await;
    bounded(Duration::from_secs(30), async {
        // 40 ms each way through the relay: a round trip of about 80 ms.
        let conditions = LinkConditions {
            delay: Duration::from_millis(40),
            ..LinkConditions::default()
        };
        let relay = Relay::start(2, conditions).await.unwrap();
        let ids = [Identity::generate().unwrap(), Identity::generate().unwrap()];
        let first = BootstrapPeer {
            id: Some(ids[0].node_id()),
            addr: relay.front(0),
        };
        let mut nodes = Vec::new();
        for (i, identity) in ids.into_iter().enumerate() {
            let mut config = config();
            config.advertise = Some(relay.front(i));
            config.bootstrap = if i == 0 { vec![] } else { vec![first] };
            let mesh = Mesh::start_with_identity(config, identity).await.unwrap();
            relay.register(i, mesh.local_addr());
            nodes.push(mesh);
        }
        let (a, b) = (&nodes[0], &nodes[1]);
        let rtt_ms = |d: &symphony_mesh::Diagnostics| {
            let peer = d.peers.iter().find(|p| p.node_id == b.node_id())?;
            let proto = d.proto.peers.get(&b.node_id())?;
            Some((peer.path.rtt_us as f64 / 1000.0, proto.rtt_ms))
        };
        // The actor reports RTTs to the protocol every tick (100 ms here) once connected.
        eventually(|| async {
            let d = a.diagnostics().await.unwrap();
            rtt_ms(&d).is_some_and(|(_, proto)| proto > 0.0)
        })
        .await;
        let d = a.diagnostics().await.unwrap();
        let (path, proto) = rtt_ms(&d).unwrap();
        assert!((75.0..400.0).contains(&path), "path RTT {path} ms");
        assert!((75.0..400.0).contains(&proto), "protocol's RTT {proto} ms");
        let peer = d.peers.iter().find(|p| p.node_id == b.node_id()).unwrap();
        assert!(peer.path.sent_packets > 0 && peer.path.cwnd > 0);
        for node in &nodes {
            node.shutdown().await;
        }
    })
    .await;
}
