//! A deterministic discrete-event simulator of a swarm of [`State`]s, for the tests and the
//! bench (`mesh-bench --sim`, see [`swarm`]).
//!
//! It plays the network shell: executes every [`Command`], delivers messages after a per-link
//! latency plus jitter (in order per direction, as on one QUIC stream), drops gossip-class
//! frames with a configured probability (receiver overload), delays frames whose packet was
//! lost by QUIC's recovery (one probe timeout per loss, head-of-line blocking the frames
//! behind it on that link), fires timers, and models connections: dials take a
//! round trip, `Disconnect` closes after queued frames arrive, and a link whose far end was
//! killed or partitioned away reports `PeerDown` on both live ends after the idle timeout.
//! Sends to a partitioned or dead peer, or slower than the send timeout (a slow node), report
//! `SendTimedOut`; a timed-out gossip frame is dropped, a control frame arrives late.
//! Virtual time only; one seed fixes everything.

#[cfg(test)]
mod scenarios;
pub mod swarm;

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{
    Command, Config, Event, GossipMessage, Message, MessageId, PeerAddr, SendClass, State, Topic,
};
use crate::NodeId;

/// Network model and protocol configuration of a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Fixes every random choice of the run (links, jitter, losses, node RNGs).
    pub seed: u64,
    /// Each link's fixed one-way latency is drawn uniformly from this range.
    pub latency: (Duration, Duration),
    /// Per-frame extra delay drawn uniformly from `[0, jitter)`.
    pub jitter: Duration,
    /// Probability that a gossip-class frame is lost (receiver overload).
    pub gossip_loss: f64,
    /// Probability that the packet carrying a frame is lost on the wire. QUIC retransmits
    /// it after a probe timeout ([`SimConfig::probe_timeout`]); each further loss of the
    /// retransmission doubles the wait (RFC 9002 §6.2). Frames behind it on the same link
    /// wait too (one ordered stream).
    pub packet_loss: f64,
    /// Added to the link's round trip to give the probe timeout of a lost packet (RFC 9002
    /// §6.2.1: 4 × rttvar + max_ack_delay). Default 10 ms.
    pub probe_extra: Duration,
    /// A connection whose peer is unreachable this long is reported down.
    pub idle_timeout: Duration,
    /// A dial to an unreachable peer fails after this.
    pub connect_timeout: Duration,
    /// A send slower than this is reported as `SendTimedOut`.
    pub send_timeout: Duration,
    /// Extra delay of every frame sent to a slow node.
    pub slow_extra: Duration,
    /// Protocol configuration of every node.
    pub proto: Config,
}

impl SimConfig {
    /// The default network: links of 5–40 ms with 5 ms jitter, no loss, 10 s idle timeout.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            latency: (Duration::from_millis(5), Duration::from_millis(40)),
            jitter: Duration::from_millis(5),
            gossip_loss: 0.0,
            packet_loss: 0.0,
            probe_extra: Duration::from_millis(10),
            idle_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            send_timeout: Duration::from_millis(500),
            slow_extra: Duration::from_secs(2),
            proto: Config::default(),
        }
    }
}

#[derive(Debug)]
enum SimEvent {
    Proto(Event),
    Arrive {
        from: usize,
        epoch: u64,
        message: Message,
    },
    Dial(PeerAddr),
    Handshake {
        peer: usize,
    },
    Close {
        peer: usize,
        epoch: u64,
    },
    IdleCheck {
        peer: usize,
        epoch: u64,
    },
}

#[derive(Debug)]
struct Scheduled {
    at: Duration,
    seq: u64,
    node: usize,
    event: SimEvent,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug)]
struct Link {
    epoch: u64,
    closing_at: Option<Duration>,
    /// Last scheduled arrival per direction (0: low index → high index).
    last_arrival: [Duration; 2],
}

/// A message delivered to the application of a node.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Virtual time of the delivery since the start of the run.
    pub at: Duration,
    /// The message.
    pub id: MessageId,
    /// Its payload.
    pub payload: Bytes,
    /// Links from the origin (1 = direct).
    pub hops: u16,
}

/// One simulated node.
pub struct SimNode {
    /// Its protocol state.
    pub state: State,
    /// False once killed.
    pub alive: bool,
    /// Everything delivered to its application, in order.
    pub deliveries: Vec<Delivery>,
    /// `NeighborUp` commands so far.
    pub neighbor_up: u64,
    /// `NeighborDown` commands so far.
    pub neighbor_down: u64,
}

/// The simulator: a swarm of nodes on a virtual network and clock.
pub struct Sim {
    config: SimConfig,
    rng: StdRng,
    base: Instant,
    now: Duration,
    seq: u64,
    next_epoch: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    /// The nodes, by index.
    pub nodes: Vec<SimNode>,
    addrs: Vec<PeerAddr>,
    index: BTreeMap<NodeId, usize>,
    links: BTreeMap<(usize, usize), Link>,
    dialing: BTreeSet<(usize, usize)>,
    abandoned: BTreeSet<(usize, usize)>,
    latency: BTreeMap<(usize, usize), Duration>,
    group: Option<Vec<u8>>,
    slow: BTreeSet<usize>,
    /// Payload frames received per message id (duplicates included), for RMR.
    pub receptions: BTreeMap<MessageId, u64>,
    /// Payload frames sent to each node (eager pushes and pull answers).
    pub payload_sends_to: Vec<u64>,
    /// Packets lost on the wire and retransmitted.
    pub packets_lost: u64,
}

fn node_id(index: usize) -> NodeId {
    let mut bytes = [0x5a; 32];
    bytes[..8].copy_from_slice(&(index as u64).to_be_bytes());
    NodeId::from_bytes(bytes)
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Sim {
    /// `n` nodes, not yet joined, at virtual time zero.
    ///
    /// # Errors
    /// The protocol configuration is invalid.
    pub fn new(config: SimConfig, n: usize) -> Result<Self, super::ConfigError> {
        let addrs: Vec<PeerAddr> = (0..n)
            .map(|i| {
                let ip = Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1);
                PeerAddr::new(node_id(i), SocketAddr::new(ip.into(), 4433))
            })
            .collect();
        let nodes = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let seed = config.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
                Ok(SimNode {
                    state: State::new(*addr, config.proto.clone(), seed)?,
                    alive: true,
                    deliveries: Vec::new(),
                    neighbor_up: 0,
                    neighbor_down: 0,
                })
            })
            .collect::<Result<_, super::ConfigError>>()?;
        Ok(Self {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            base: Instant::now(),
            now: Duration::ZERO,
            seq: 0,
            next_epoch: 0,
            queue: BinaryHeap::new(),
            nodes,
            index: addrs.iter().enumerate().map(|(i, a)| (a.id, i)).collect(),
            addrs,
            links: BTreeMap::new(),
            dialing: BTreeSet::new(),
            abandoned: BTreeSet::new(),
            latency: BTreeMap::new(),
            group: None,
            slow: BTreeSet::new(),
            receptions: BTreeMap::new(),
            payload_sends_to: vec![0; n],
            packets_lost: 0,
        })
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The NodeId of node `node`.
    pub fn id(&self, node: usize) -> NodeId {
        self.addrs[node].id
    }

    /// Nodes in the swarm, dead ones included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the swarm has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Indices of the live nodes.
    pub fn alive(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].alive)
    }

    /// Node `node` joins through the bootstrap nodes `via`, `after` from now.
    pub fn join(&mut self, node: usize, via: &[usize], after: Duration) {
        let peers = via.iter().map(|v| self.addrs[*v]).collect();
        self.schedule(after, node, SimEvent::Proto(Event::Join(peers)));
    }

    /// Feeds `event` to node `node` now.
    pub fn input(&mut self, node: usize, event: Event) {
        self.schedule(Duration::ZERO, node, SimEvent::Proto(event));
    }

    /// Node `node` publishes `payload` on `topic` now.
    pub fn publish(&mut self, node: usize, topic: &Topic, payload: Bytes) {
        let topic = topic.clone();
        self.input(node, Event::Publish { topic, payload });
    }

    /// Node `node` crashes: it stops processing, and its neighbours see its links go down
    /// after the idle timeout.
    pub fn kill(&mut self, node: usize) {
        self.nodes[node].alive = false;
        let links: Vec<((usize, usize), u64)> = self
            .links
            .iter()
            .filter(|((a, b), _)| *a == node || *b == node)
            .map(|(k, l)| (*k, l.epoch))
            .collect();
        for ((a, b), epoch) in links {
            let other = if a == node { b } else { a };
            let idle = self.config.idle_timeout;
            self.schedule(idle, other, SimEvent::IdleCheck { peer: node, epoch });
        }
    }

    /// Splits the network: nodes with different group numbers cannot reach each other.
    pub fn partition(&mut self, group: Vec<u8>) {
        let crossing: Vec<((usize, usize), u64)> = self
            .links
            .iter()
            .filter(|((a, b), _)| group[*a] != group[*b])
            .map(|(k, l)| (*k, l.epoch))
            .collect();
        self.group = Some(group);
        let idle = self.config.idle_timeout;
        for ((a, b), epoch) in crossing {
            self.schedule(idle, a, SimEvent::IdleCheck { peer: b, epoch });
        }
    }

    /// Ends the partition.
    pub fn heal(&mut self) {
        self.group = None;
    }

    /// Frames sent to `node` take `slow_extra` longer from now on.
    pub fn make_slow(&mut self, node: usize) {
        self.slow.insert(node);
    }

    /// Processes every event due within `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Some(Reverse(next)) = self.queue.pop() else {
                break;
            };
            self.now = next.at;
            self.process(next.node, next.event);
        }
        self.now = until;
    }

    fn schedule(&mut self, after: Duration, node: usize, event: SimEvent) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at: self.now + after,
            seq: self.seq,
            node,
            event,
        }));
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.nodes[a].alive
            && self.nodes[b].alive
            && self.group.as_ref().is_none_or(|g| g[a] == g[b])
    }

    fn link_latency(&mut self, a: usize, b: usize) -> Duration {
        let (lo, hi) = self.config.latency;
        let seed = self.config.seed;
        *self.latency.entry(pair(a, b)).or_insert_with(|| {
            let key = (a.min(b) as u64) << 32 | a.max(b) as u64;
            let mut rng = StdRng::seed_from_u64(seed ^ key.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            lo + (hi - lo).mul_f64(rng.random::<f64>())
        })
    }

    fn process(&mut self, node: usize, event: SimEvent) {
        if !self.nodes[node].alive {
            return;
        }
        match event {
            SimEvent::Proto(event) => self.feed(node, event),
            SimEvent::Arrive {
                from,
                epoch,
                message,
            } => {
                if self.links.get(&pair(from, node)).map(|l| l.epoch) != Some(epoch) {
                    return;
                }
                if let Message::Gossip(GossipMessage::Gossip { id, .. }) = &message {
                    *self.receptions.entry(*id).or_default() += 1;
                }
                let from = self.id(from);
                self.feed(node, Event::Message { from, message });
            }
            SimEvent::Dial(addr) => self.dial(node, addr),
            SimEvent::Handshake { peer } => self.handshake(node, peer),
            SimEvent::Close { peer, epoch } => self.close(node, peer, epoch),
            SimEvent::IdleCheck { peer, epoch } => {
                if !self.reachable(node, peer) {
                    self.close(node, peer, epoch);
                }
            }
        }
    }

    fn feed(&mut self, node: usize, event: Event) {
        let now = self.base + self.now;
        let commands: Vec<Command> = self.nodes[node].state.handle(event, now).collect();
        for command in commands {
            self.execute(node, command);
        }
    }

    fn execute(&mut self, node: usize, command: Command) {
        match command {
            Command::Send { to, message, class } => {
                if let Some(&peer) = self.index.get(&to) {
                    self.send(node, peer, message, class);
                }
            }
            Command::Connect(addr) => self.dial(node, addr),
            Command::Disconnect(id) => {
                let Some(&peer) = self.index.get(&id) else {
                    return;
                };
                self.disconnect(node, peer);
            }
            Command::SetTimer { after, timer } => {
                self.schedule(after, node, SimEvent::Proto(Event::TimerFired(timer)));
            }
            Command::Deliver {
                message_id,
                payload,
                hops,
                ..
            } => {
                let at = self.now;
                self.nodes[node].deliveries.push(Delivery {
                    at,
                    id: message_id,
                    payload,
                    hops,
                });
            }
            Command::NeighborUp(id) => {
                self.nodes[node].neighbor_up += 1;
                // The shell reports the path RTT of a neighbour's link, as the node actor
                // does from QUIC each tick.
                if let Some(&peer) = self.index.get(&id) {
                    let rtt = self.link_latency(node, peer) * 2;
                    let loss = self.config.packet_loss;
                    let path = Event::Path {
                        peer: id,
                        rtt,
                        loss,
                    };
                    self.schedule(Duration::ZERO, node, SimEvent::Proto(path));
                }
            }
            Command::NeighborDown(_) => self.nodes[node].neighbor_down += 1,
        }
    }

    fn send(&mut self, from: usize, to: usize, message: Message, class: SendClass) {
        let Some(epoch) = self.links.get(&pair(from, to)).map(|l| l.epoch) else {
            return;
        };
        let peer = self.id(to);
        let timed_out = SimEvent::Proto(Event::SendTimedOut(peer));
        if !self.reachable(from, to) {
            self.schedule(self.config.send_timeout, from, timed_out);
            return;
        }
        if let Message::Gossip(GossipMessage::Gossip { .. }) = &message {
            self.payload_sends_to[to] += 1;
        }
        let mut delay = self.link_latency(from, to);
        delay += self.config.jitter.mul_f64(self.rng.random::<f64>());
        if self.slow.contains(&to) {
            delay += self.config.slow_extra;
        }
        let late = delay > self.config.send_timeout;
        // After the send-timeout check: QUIC delivers a retransmitted frame late but never
        // drops it, and the transport's send timeout is about writes blocked by flow
        // control, not about retransmissions.
        delay += self.recovery_delay(from, to);
        if late {
            self.schedule(self.config.send_timeout, from, timed_out);
            if class == SendClass::Gossip {
                return;
            }
        }
        let lost = class == SendClass::Gossip && self.rng.random::<f64>() < self.config.gossip_loss;
        let direction = usize::from(from > to);
        let now = self.now;
        let Some(link) = self.links.get_mut(&pair(from, to)) else {
            return;
        };
        let arrival = (now + delay).max(link.last_arrival[direction]);
        link.last_arrival[direction] = arrival;
        let after = arrival - now;
        if !late {
            let latency = after;
            let done = SimEvent::Proto(Event::SendSucceeded { peer, latency });
            self.schedule(after, from, done);
        }
        if !lost {
            self.schedule(
                after,
                to,
                SimEvent::Arrive {
                    from,
                    epoch,
                    message,
                },
            );
        }
    }

    /// Extra delay of a frame from losses of its packet: one probe timeout (round trip +
    /// `probe_extra`) for the first loss, doubled for each loss of the retransmission.
    fn recovery_delay(&mut self, from: usize, to: usize) -> Duration {
        if self.config.packet_loss <= 0.0 {
            return Duration::ZERO;
        }
        let mut probe = self.link_latency(from, to) * 2 + self.config.probe_extra;
        let mut extra = Duration::ZERO;
        // Bounded: at 16 consecutive losses the link is as good as dead.
        for _ in 0..16 {
            if self.rng.random::<f64>() >= self.config.packet_loss {
                break;
            }
            self.packets_lost += 1;
            extra += probe;
            probe *= 2;
        }
        extra
    }

    fn dial(&mut self, node: usize, addr: PeerAddr) {
        let target = self
            .index
            .get(&addr.id)
            .copied()
            .filter(|t| self.addrs[*t].addr == addr.addr);
        let down = SimEvent::Proto(Event::PeerDown(addr.id));
        let Some(peer) = target else {
            self.schedule(self.config.connect_timeout, node, down);
            return;
        };
        if let Some(link) = self.links.get(&pair(node, peer)) {
            match link.closing_at {
                Some(at) => {
                    let after = at.saturating_sub(self.now) + Duration::from_millis(1);
                    self.schedule(after, node, SimEvent::Dial(addr));
                }
                None => self.input(node, Event::PeerUp(addr.id)),
            }
            return;
        }
        if self.reachable(node, peer) {
            self.dialing.insert((node, peer));
            let rtt = self.link_latency(node, peer) * 2;
            self.schedule(rtt, node, SimEvent::Handshake { peer });
        } else {
            self.schedule(self.config.connect_timeout, node, down);
        }
    }

    fn handshake(&mut self, node: usize, peer: usize) {
        self.dialing.remove(&(node, peer));
        let peer_id = self.id(peer);
        if self.abandoned.remove(&(node, peer)) || !self.reachable(node, peer) {
            self.feed(node, Event::PeerDown(peer_id));
            return;
        }
        match self.links.get(&pair(node, peer)).map(|l| l.closing_at) {
            Some(Some(at)) => {
                let after = at.saturating_sub(self.now) + Duration::from_millis(1);
                let addr = self.addrs[peer];
                self.schedule(after, node, SimEvent::Dial(addr));
            }
            Some(None) => self.feed(node, Event::PeerUp(peer_id)),
            None => {
                self.next_epoch += 1;
                let link = Link {
                    epoch: self.next_epoch,
                    closing_at: None,
                    last_arrival: [self.now; 2],
                };
                self.links.insert(pair(node, peer), link);
                let node_id = self.id(node);
                self.feed(node, Event::PeerUp(peer_id));
                if self.nodes[peer].alive {
                    self.feed(peer, Event::PeerUp(node_id));
                }
            }
        }
    }

    fn disconnect(&mut self, node: usize, peer: usize) {
        if self.dialing.contains(&(node, peer)) {
            self.abandoned.insert((node, peer));
            return;
        }
        let now = self.now;
        let Some(link) = self.links.get_mut(&pair(node, peer)) else {
            self.input(node, Event::PeerDown(self.addrs[peer].id));
            return;
        };
        if link.closing_at.is_some() {
            return;
        }
        let flushed = link.last_arrival[0].max(link.last_arrival[1]).max(now);
        let at = flushed + Duration::from_millis(1);
        link.closing_at = Some(at);
        let epoch = link.epoch;
        self.schedule(at - now, node, SimEvent::Close { peer, epoch });
    }

    fn close(&mut self, node: usize, peer: usize, epoch: u64) {
        if self.links.get(&pair(node, peer)).map(|l| l.epoch) != Some(epoch) {
            return;
        }
        self.links.remove(&pair(node, peer));
        for (a, b) in [(node, peer), (peer, node)] {
            if self.nodes[a].alive {
                let id = self.id(b);
                self.feed(a, Event::PeerDown(id));
            }
        }
    }
}
