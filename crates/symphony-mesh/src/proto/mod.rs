//! The IO-free protocol core of the mesh: HyParView membership and PlumTree pubsub as plain
//! state machines, in the style of iroh-gossip's `proto` and quinn-proto.
//!
//! One [`State`] per node. The network shell feeds it [`Event`]s together with the current
//! time and executes the [`Command`]s it returns: no sockets, tasks, clocks or global
//! randomness live here (the RNG is a seeded `StdRng` inside the state), so a whole swarm runs
//! deterministically in a simulator ([`sim`], for tests and the bench).
//!
//! Parts: [`hyparview`] (membership, with settling re-joins and partition re-merge),
//! [`plumtree`] (one broadcast tree per topic and origin), [`score`] (decayed peer score
//! steering eager/lazy), [`cooling`] (slow-peer backoff with one recovery probe), [`wire`]
//! (the versioned binary codec, documented in `docs/wire.md`).
//!
//! Contract with the shell:
//! - every `Connect(addr)` is answered by exactly one `PeerUp(addr.id)` (connected, or an
//!   existing connection reused) or `PeerDown(addr.id)` (dial failed);
//! - `PeerUp` is also reported for inbound connections, after the peer's key is verified;
//! - `PeerDown` is reported when the last connection to a peer closes, for any reason
//!   (QUIC idle timeout, peer closed, our own `Disconnect`);
//! - `Disconnect(peer)` closes the connection after the frames already queued for the peer
//!   are flushed, or abandons a dial in progress; either way `PeerDown` follows, and until
//!   it does the state neither dials that peer nor accepts its requests;
//! - each `Send` on a live connection is answered by `SendSucceeded` or `SendTimedOut`
//!   (per-peer send timeout); a `Send` to a peer without a connection is dropped;
//! - `SetTimer { after, timer }` fires `TimerFired(timer)` once, `after` from now;
//! - `Path { peer, rtt, loss }` is reported for connected peers now and then (the node
//!   actor: every tick); without it the graft timers use their fixed defaults and no link
//!   counts as lossy.

pub(crate) mod cache;
mod config;
pub mod cooling;
pub mod hyparview;
pub mod plumtree;
pub mod score;
pub mod sim;
mod state;
mod stats;
pub mod wire;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::NodeId;

pub use cache::Evictions;
pub use config::{Config, ConfigError, MembershipConfig, PubsubConfig};
pub use cooling::{CooledPeer, CoolingConfig};
pub use hyparview::{MembershipCounters, MembershipMessage, Priority};
pub use plumtree::trees::TreeEvictions;
pub use plumtree::{GossipMessage, IHaveEntry, PubsubCounters};
pub use score::ScoreParams;
pub use state::State;
pub use stats::{
    CacheStats, CooledStats, KindCounters, MessageKind, PeerStats, ProtoStats, TopicStats,
};

/// A peer as advertised on the wire: its identity plus the address it listens on.
///
/// A node advertises its own listen address (in `Join`, `ForwardJoin`, `Neighbor` and
/// `Shuffle`) because the address the transport sees may be a relayed or NAT-mapped one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct PeerAddr {
    /// The peer's identity (its Ed25519 public key).
    pub id: NodeId,
    /// The UDP address its QUIC endpoint listens on.
    pub addr: SocketAddr,
}

impl PeerAddr {
    /// Pairs an identity with its listen address.
    pub const fn new(id: NodeId, addr: SocketAddr) -> Self {
        Self { id, addr }
    }
}

/// A pubsub topic name: 1 to [`wire::MAX_TOPIC_LEN`] bytes of UTF-8. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

/// A topic name that is empty or longer than [`wire::MAX_TOPIC_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic {name:?}: expected 1 to {max} bytes of UTF-8, got {len}")]
pub struct TopicError {
    /// The rejected name, truncated to 80 characters.
    pub name: String,
    /// Its length in bytes.
    pub len: usize,
    /// The maximum length in bytes.
    pub max: usize,
}

impl Topic {
    /// Validates and wraps a topic name.
    ///
    /// # Errors
    /// [`TopicError`] when `name` is empty or longer than [`wire::MAX_TOPIC_LEN`] bytes.
    pub fn new(name: &str) -> Result<Self, TopicError> {
        if name.is_empty() || name.len() > wire::MAX_TOPIC_LEN {
            return Err(TopicError {
                name: name.chars().take(80).collect(),
                len: name.len(),
                max: wire::MAX_TOPIC_LEN,
            });
        }
        Ok(Self(Arc::from(name)))
    }

    /// The topic name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", &*self.0)
    }
}

impl serde::Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A pubsub message id: the publishing node plus its per-incarnation sequence number.
///
/// The sequence starts at a random 63-bit value drawn from the state's RNG at construction
/// and counts up by one per publish, so ids are unique per publisher without hashing the
/// payload, and a restarted publisher (fresh random start) does not collide with the ids of
/// its previous run still held in dedupe caches. Two publishes of equal payloads are two
/// messages.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct MessageId {
    /// The node that published the message.
    pub origin: NodeId,
    /// The origin's sequence number for this message.
    pub seq: u64,
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.origin.short(), self.seq)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// A protocol message exchanged on the control stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// HyParView membership (HyParView §4).
    Membership(MembershipMessage),
    /// PlumTree pubsub (PlumTree §3).
    Gossip(GossipMessage),
}

impl Message {
    /// The message kind, for counters.
    pub fn kind(&self) -> MessageKind {
        match self {
            Self::Membership(m) => m.kind(),
            Self::Gossip(m) => m.kind(),
        }
    }
}

/// What the shell may do with a frame when the peer's outbound queue is full
/// (design.md, The mesh: explicit overload policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SendClass {
    /// Gossip payloads, IHAVE and IWANT: may be dropped (and counted) under overload; the
    /// lazy-push repair path (IHAVE → GRAFT/IWANT) recovers them.
    Gossip,
    /// Membership, GRAFT and PRUNE: must be back-pressured, never dropped, because they
    /// change view or tree state on both ends.
    Control,
}

/// A timer the state asks the shell to arm with [`Command::SetTimer`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The periodic housekeeping tick ([`Config::tick_interval`]): view repair, lost-peer
    /// probes, shuffles, score decay, cache expiry, demotion, opportunistic grafting.
    Tick,
    /// Flush the batched lazy-push IHAVE announcements (PlumTree §3.1 "lazy push").
    IHaveFlush,
    /// A missing message was announced but not received in time (PlumTree §3.2 timers).
    Graft(MessageId),
}

/// An input to [`State::handle`].
#[derive(Clone, Debug)]
pub enum Event {
    /// Bootstrap addresses from configuration: join the overlay through them
    /// (HyParView §4.1). Kept for re-joins when the active view empties.
    Join(Vec<PeerAddr>),
    /// A decoded message arrived on the control stream from a verified peer.
    Message {
        /// The sending peer (from the TLS-verified connection, not from the message).
        from: NodeId,
        /// The message.
        message: Message,
    },
    /// A connection to the peer is up (dial answered or inbound accepted).
    PeerUp(NodeId),
    /// The last connection to the peer closed, or a dial to it failed.
    PeerDown(NodeId),
    /// A timer set by [`Command::SetTimer`] fired.
    TimerFired(Timer),
    /// Publish a payload (at most [`wire::MAX_PAYLOAD_LEN`] bytes) on a topic. The publisher
    /// does not get its own message back as a `Deliver`.
    Publish {
        /// The topic.
        topic: Topic,
        /// The application payload.
        payload: Bytes,
    },
    /// Deliver messages of this topic locally from now on. Relaying never depends on it.
    Subscribe(Topic),
    /// Stop delivering messages of this topic locally; the node keeps relaying it.
    Unsubscribe(Topic),
    /// A send to the peer did not complete within the shell's per-peer send timeout.
    SendTimedOut(NodeId),
    /// The transport's current view of the path to a connected peer. Reported periodically;
    /// the graft timers follow `rtt`, lossy-link pushes follow `loss`.
    Path {
        /// The peer.
        peer: NodeId,
        /// Smoothed round-trip time (QUIC, RFC 9002 §5.3).
        rtt: Duration,
        /// Share of the packets sent to the peer that were declared lost, in [0, 1].
        loss: f64,
    },
    /// A send to the peer completed.
    SendSucceeded {
        /// The peer.
        peer: NodeId,
        /// Time from enqueue to completion.
        latency: Duration,
    },
}

/// An output of [`State::handle`] for the shell to execute, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Send a message to a connected peer.
    Send {
        /// The destination.
        to: NodeId,
        /// The message.
        message: Message,
        /// Whether the frame may be dropped under overload.
        class: SendClass,
    },
    /// Open (or reuse) a connection; answered by `PeerUp` or `PeerDown`.
    Connect(PeerAddr),
    /// Close the connections to the peer after flushing the frames queued for it, or abandon
    /// a dial in progress; answered by `PeerDown`.
    Disconnect(NodeId),
    /// Arm a one-shot timer.
    SetTimer {
        /// Delay from the `now` of the event that produced this command.
        after: Duration,
        /// The timer to fire.
        timer: Timer,
    },
    /// A new message for a subscribed topic: hand it to the application.
    Deliver {
        /// The topic.
        topic: Topic,
        /// The message id (origin + sequence).
        message_id: MessageId,
        /// The payload.
        payload: Bytes,
        /// Links the message travelled from its origin to this node (1 = direct).
        hops: u16,
        /// The neighbour it arrived from.
        from: NodeId,
    },
    /// The peer joined the active view (membership roster event).
    NeighborUp(NodeId),
    /// The peer left the active view (membership roster event).
    NeighborDown(NodeId),
}

/// The command queue the protocol parts push into; drained by [`State::handle`].
#[derive(Debug, Default)]
pub(crate) struct Outbox(std::collections::VecDeque<Command>);

impl Outbox {
    fn push(&mut self, command: Command) {
        self.0.push_back(command);
    }

    fn send_membership(&mut self, to: NodeId, message: MembershipMessage) {
        self.push(Command::Send {
            to,
            message: Message::Membership(message),
            class: SendClass::Control,
        });
    }

    fn send_gossip(&mut self, to: NodeId, message: GossipMessage) {
        let class = message.class();
        self.push(Command::Send {
            to,
            message: Message::Gossip(message),
            class,
        });
    }

    fn timer(&mut self, after: Duration, timer: Timer) {
        self.push(Command::SetTimer { after, timer });
    }
}
