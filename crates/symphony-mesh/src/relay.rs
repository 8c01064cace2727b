//! A userspace UDP relay that impairs the links between mesh nodes: per-link delay, jitter,
//! loss, rate limit (a token bucket with a bounded queue) and partitions, over real UDP
//! sockets on 127.0.0.1. A test and bench tool, not for production.
//!
//! Topology: node `j` is reached through its *front* socket `F_j` (nodes advertise it and
//! dial it). A packet from a node's real socket `R_i` arriving at `F_j` is forwarded to
//! `R_j` from a *back* socket `B_ij` dedicated to the pair, so `j` sees one stable source
//! address per peer; `j`'s answers to `B_ij` go back to `R_i` from `F_j`, the address `i`
//! dialled. Conditions apply per direction: `i → j` on the way in, `j → i` on the way back.
//!
//! A link with conditions queues packets in order and delivers each at
//! `departure + delay + U(0, jitter)`, where departure is when the rate limiter has sent the
//! packet's bits (`rate_kbit`; the queue is capped at `queue_bytes`, more is tail-dropped).
//! Packets are not reordered. Loss drops each packet independently with probability `loss`.
//! A partition drops every packet between nodes of different groups until healed.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Largest UDP payload read.
const MAX_DATAGRAM: usize = 65_535;
/// Packets waiting on one impaired link at most (besides the byte cap of a rate limit).
const LINK_QUEUE: usize = 8192;

/// Impairments of one direction of a link. `LinkConditions::default()` is a perfect link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConditions {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter)` per packet.
    pub jitter: Duration,
    /// Probability that a packet is dropped, 0.0 to 1.0.
    pub loss: f64,
    /// Rate limit in kbit/s (1000 bit/s); `None` for unlimited.
    pub rate_kbit: Option<u32>,
    /// Bytes that may wait for the rate limiter before packets are tail-dropped.
    /// Default 64 KiB.
    pub queue_bytes: usize,
}

impl Default for LinkConditions {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            rate_kbit: None,
            queue_bytes: 64 * 1024,
        }
    }
}

impl LinkConditions {
    fn is_perfect(&self) -> bool {
        self.delay.is_zero()
            && self.jitter.is_zero()
            && self.loss <= 0.0
            && self.rate_kbit.is_none()
    }
}

/// Packet counters of the whole relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RelayStats {
    /// Packets forwarded.
    pub forwarded: u64,
    /// Bytes forwarded (UDP payloads: the bytes QUIC put on the wire).
    pub forwarded_bytes: u64,
    /// Packets dropped by the loss setting.
    pub dropped_loss: u64,
    /// Packets tail-dropped by a full rate-limiter queue.
    pub dropped_queue: u64,
    /// Packets dropped by a partition.
    pub dropped_partition: u64,
    /// Packets for a node whose real address is not registered yet.
    pub dropped_unregistered: u64,
}

#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    forwarded_bytes: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_queue: AtomicU64,
    dropped_partition: AtomicU64,
    dropped_unregistered: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// One end of a link: a registered node, or an unknown source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum End {
    Node(usize),
    Other(SocketAddr),
}

struct Packet {
    at: Instant,
    data: Vec<u8>,
    from: Arc<UdpSocket>,
    to: SocketAddr,
}

struct Link {
    /// When the rate limiter has sent everything queued so far.
    free_at: Instant,
    queue: mpsc::Sender<Packet>,
}

struct State {
    nodes: Vec<Option<SocketAddr>>,
    by_addr: HashMap<SocketAddr, usize>,
    default: LinkConditions,
    conditions: HashMap<(usize, usize), LinkConditions>,
    groups: Option<Vec<u8>>,
    links: HashMap<(End, End), Link>,
    backs: HashMap<(SocketAddr, usize), Arc<UdpSocket>>,
}

struct Shared {
    fronts: Vec<(SocketAddr, Arc<UdpSocket>)>,
    state: Mutex<State>,
    counters: Counters,
    tasks: Mutex<JoinSet<()>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // No multi-step invariant spans a panic, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .spawn(task);
    }
}

/// A running relay for `n` nodes. Dropping it stops every relay task.
pub struct Relay {
    shared: Arc<Shared>,
}

impl Relay {
    /// Binds one front socket per node on 127.0.0.1 and starts relaying with `conditions` on
    /// every link.
    ///
    /// # Errors
    /// The OS error when a socket cannot be bound.
    pub async fn start(nodes: usize, conditions: LinkConditions) -> io::Result<Relay> {
        let mut fronts = Vec::with_capacity(nodes);
        for _ in 0..nodes {
            let socket = UdpSocket::bind(("127.0.0.1", 0)).await?;
            fronts.push((socket.local_addr()?, Arc::new(socket)));
        }
        let shared = Arc::new(Shared {
            fronts,
            state: Mutex::new(State {
                nodes: vec![None; nodes],
                by_addr: HashMap::new(),
                default: conditions,
                conditions: HashMap::new(),
                groups: None,
                links: HashMap::new(),
                backs: HashMap::new(),
            }),
            counters: Counters::default(),
            tasks: Mutex::new(JoinSet::new()),
        });
        for node in 0..nodes {
            shared.spawn(front_loop(shared.clone(), node));
        }
        Ok(Relay { shared })
    }

    /// The address node `node` should advertise and others should dial.
    ///
    /// # Panics
    /// When `node` is not below the node count given to [`Relay::start`].
    pub fn front(&self, node: usize) -> SocketAddr {
        self.shared.fronts[node].0
    }

    /// Records node `node`'s real (bound) address, where its traffic is forwarded.
    pub fn register(&self, node: usize, addr: SocketAddr) {
        let mut state = self.shared.state();
        if let Some(slot) = state.nodes.get_mut(node) {
            *slot = Some(addr);
            state.by_addr.insert(addr, node);
        }
    }

    /// Sets the conditions of the direction `from → to`.
    pub fn set_link(&self, from: usize, to: usize, conditions: LinkConditions) {
        self.shared
            .state()
            .conditions
            .insert((from, to), conditions);
    }

    /// Sets the conditions of every link to and from `node`, both directions.
    pub fn set_node(&self, node: usize, conditions: LinkConditions) {
        let mut state = self.shared.state();
        for other in 0..state.nodes.len() {
            if other != node {
                state.conditions.insert((node, other), conditions);
                state.conditions.insert((other, node), conditions);
            }
        }
    }

    /// Drops every packet between nodes whose `groups` entries differ (index = node).
    pub fn partition(&self, groups: &[u8]) {
        self.shared.state().groups = Some(groups.to_vec());
    }

    /// Lifts the partition.
    pub fn heal(&self) {
        self.shared.state().groups = None;
    }

    /// Packet counters since start.
    pub fn stats(&self) -> RelayStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RelayStats {
            forwarded: get(&c.forwarded),
            forwarded_bytes: get(&c.forwarded_bytes),
            dropped_loss: get(&c.dropped_loss),
            dropped_queue: get(&c.dropped_queue),
            dropped_partition: get(&c.dropped_partition),
            dropped_unregistered: get(&c.dropped_unregistered),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .abort_all();
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("nodes", &self.shared.fronts.len())
            .finish_non_exhaustive()
    }
}

/// Receives packets for node `node` and forwards them through the pair's back socket.
async fn front_loop(shared: Arc<Shared>, node: usize) {
    let front = shared.fronts[node].1.clone();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((len, src)) = front.recv_from(&mut buf).await else {
            // ICMP errors surface here on some systems; the socket itself stays usable.
            continue;
        };
        let back = match back_socket(&shared, src, node).await {
            Ok(back) => back,
            Err(err) => {
                tracing::warn!(%src, node, error = %err, "relay cannot bind a back socket");
                continue;
            }
        };
        let (from, target) = {
            let state = shared.state();
            (end_of(&state, src), state.nodes[node])
        };
        let Some(target) = target else {
            bump(&shared.counters.dropped_unregistered, 1);
            continue;
        };
        forward(&shared, from, End::Node(node), &buf[..len], back, target).await;
    }
}

/// The back socket of (source, node), created with its return loop on first use.
async fn back_socket(
    shared: &Arc<Shared>,
    src: SocketAddr,
    node: usize,
) -> io::Result<Arc<UdpSocket>> {
    if let Some(back) = shared.state().backs.get(&(src, node)) {
        return Ok(back.clone());
    }
    let back = Arc::new(UdpSocket::bind(("127.0.0.1", 0)).await?);
    shared.state().backs.insert((src, node), back.clone());
    shared.spawn(back_loop(shared.clone(), back.clone(), src, node));
    Ok(back)
}

/// Returns node `node`'s answers on a back socket to `src`, from the node's front.
async fn back_loop(shared: Arc<Shared>, back: Arc<UdpSocket>, src: SocketAddr, node: usize) {
    let front = shared.fronts[node].1.clone();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((len, _)) = back.recv_from(&mut buf).await else {
            continue;
        };
        let to = end_of(&shared.state(), src);
        forward(
            &shared,
            End::Node(node),
            to,
            &buf[..len],
            front.clone(),
            src,
        )
        .await;
    }
}

fn end_of(state: &State, addr: SocketAddr) -> End {
    state
        .by_addr
        .get(&addr)
        .map_or(End::Other(addr), |node| End::Node(*node))
}

/// Applies the `from → to` conditions to one packet and sends it (now or via the link queue).
async fn forward(
    shared: &Arc<Shared>,
    from: End,
    to: End,
    data: &[u8],
    socket: Arc<UdpSocket>,
    dest: SocketAddr,
) {
    if impair(shared, from, to, data, &socket, dest) {
        bump(&shared.counters.forwarded, 1);
        bump(&shared.counters.forwarded_bytes, data.len() as u64);
        // UDP: a send error is a loss the protocol recovers from.
        let _ = socket.send_to(data, dest).await;
    }
}

/// Drops or queues the packet per the link's conditions; true when it goes out now.
fn impair(
    shared: &Arc<Shared>,
    from: End,
    to: End,
    data: &[u8],
    socket: &Arc<UdpSocket>,
    dest: SocketAddr,
) -> bool {
    let counters = &shared.counters;
    let now = Instant::now();
    let mut state = shared.state();
    if let (Some(groups), End::Node(a), End::Node(b)) = (&state.groups, from, to)
        && groups.get(a) != groups.get(b)
    {
        bump(&counters.dropped_partition, 1);
        return false;
    }
    let conditions = match (from, to) {
        (End::Node(a), End::Node(b)) => state.conditions.get(&(a, b)).copied(),
        _ => None,
    }
    .unwrap_or(state.default);
    if conditions.is_perfect() {
        return true;
    }
    let mut rng = rand::rng();
    if conditions.loss > 0.0 && rng.random_bool(conditions.loss.min(1.0)) {
        bump(&counters.dropped_loss, 1);
        return false;
    }
    let link = state.links.entry((from, to)).or_insert_with(|| {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        shared.spawn(link_loop(shared.clone(), rx));
        Link {
            free_at: now,
            queue: tx,
        }
    });
    let mut departure = now;
    if let Some(kbit) = conditions.rate_kbit {
        let bits_per_sec = f64::from(kbit.max(1)) * 1000.0;
        let start = link.free_at.max(now);
        let queued_bytes = start.duration_since(now).as_secs_f64() * bits_per_sec / 8.0;
        if queued_bytes + data.len() as f64 > conditions.queue_bytes as f64 {
            bump(&counters.dropped_queue, 1);
            return false;
        }
        link.free_at = start + Duration::from_secs_f64(data.len() as f64 * 8.0 / bits_per_sec);
        departure = link.free_at;
    }
    let jitter = if conditions.jitter.is_zero() {
        Duration::ZERO
    } else {
        conditions.jitter.mul_f64(rng.random_range(0.0..1.0))
    };
    let packet = Packet {
        at: departure + conditions.delay + jitter,
        data: data.to_vec(),
        from: socket.clone(),
        to: dest,
    };
    if link.queue.try_send(packet).is_err() {
        bump(&counters.dropped_queue, 1);
    }
    false
}

/// Delivers one impaired link's packets in order, each at its time.
async fn link_loop(shared: Arc<Shared>, mut queue: mpsc::Receiver<Packet>) {
    while let Some(packet) = queue.recv().await {
        tokio::time::sleep_until(packet.at.into()).await;
        bump(&shared.counters.forwarded, 1);
        bump(&shared.counters.forwarded_bytes, packet.data.len() as u64);
        let _ = packet.from.send_to(&packet.data, packet.to).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(conditions: LinkConditions) -> (Relay, UdpSocket, UdpSocket) {
        let relay = Relay::start(2, conditions).await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        relay.register(0, a.local_addr().unwrap());
        relay.register(1, b.local_addr().unwrap());
        (relay, a, b)
    }

    async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 2048];
        let (len, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        buf.truncate(len);
        (buf, from)
    }

    #[tokio::test]
    async fn packets_go_through_the_front_and_answers_come_back_from_it() {
        let (relay, a, b) = pair(LinkConditions::default()).await;
        a.send_to(b"ping", relay.front(1)).await.unwrap();
        let (data, back) = recv(&b).await;
        assert_eq!(data, b"ping");
        assert_ne!(
            back,
            a.local_addr().unwrap(),
            "b sees the pair's back socket"
        );
        b.send_to(b"pong", back).await.unwrap();
        let (data, from) = recv(&a).await;
        assert_eq!((data.as_slice(), from), (&b"pong"[..], relay.front(1)));
        assert_eq!(relay.stats().forwarded, 2);
    }

    #[tokio::test]
    async fn delay_applies_per_direction_and_partitions_drop_until_healed() {
        let (relay, a, b) = pair(LinkConditions::default()).await;
        relay.set_link(
            0,
            1,
            LinkConditions {
                delay: Duration::from_millis(80),
                ..LinkConditions::default()
            },
        );
        let sent = Instant::now();
        a.send_to(b"slow", relay.front(1)).await.unwrap();
        let (_, back) = recv(&b).await;
        assert!(sent.elapsed() >= Duration::from_millis(80));
        let sent = Instant::now();
        b.send_to(b"fast", back).await.unwrap();
        recv(&a).await;
        assert!(sent.elapsed() < Duration::from_millis(80));

        relay.partition(&[0, 1]);
        a.send_to(b"cut", relay.front(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(relay.stats().dropped_partition, 1);
        relay.heal();
        a.send_to(b"healed", relay.front(1)).await.unwrap();
        assert_eq!(recv(&b).await.0, b"healed");
    }

    #[tokio::test]
    async fn the_rate_limit_spaces_packets_and_tail_drops_beyond_the_queue() {
        let conditions = LinkConditions {
            rate_kbit: Some(80), // 10 kB/s: a 1000-byte packet takes 100 ms
            queue_bytes: 2500,
            ..LinkConditions::default()
        };
        let (relay, a, b) = pair(conditions).await;
        let sent = Instant::now();
        for _ in 0..4 {
            a.send_to(&[7u8; 1000], relay.front(1)).await.unwrap();
        }
        recv(&b).await;
        recv(&b).await;
        assert!(sent.elapsed() >= Duration::from_millis(190));
        assert_eq!(relay.stats().dropped_queue, 2, "only 2.5 kB may queue");
    }

    #[tokio::test]
    async fn loss_drops_about_the_configured_share() {
        let (relay, a, _b) = pair(LinkConditions {
            loss: 0.5,
            ..LinkConditions::default()
        })
        .await;
        for _ in 0..400 {
            a.send_to(b"x", relay.front(1)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let dropped = relay.stats().dropped_loss;
        assert!((120..=280).contains(&dropped), "dropped {dropped} of 400");
    }
}
