//! Counters and the serializable diagnostics snapshot (design.md, The mesh: "one snapshot
//! with per-peer and per-kind counters, ... timeouts, cooled peers, scores, view sizes").

use std::collections::BTreeMap;

use super::cache::Evictions;
use super::hyparview::MembershipCounters;
use super::plumtree::PubsubCounters;
use super::{Message, Topic};
use crate::NodeId;

/// Every protocol message kind, for counters (names as in the papers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// HyParView JOIN.
    Join,
    /// HyParView FORWARDJOIN.
    ForwardJoin,
    /// HyParView NEIGHBOR.
    Neighbor,
    /// HyParView NEIGHBOR reply.
    NeighborReply,
    /// HyParView SHUFFLE.
    Shuffle,
    /// HyParView SHUFFLEREPLY.
    ShuffleReply,
    /// HyParView DISCONNECT.
    Disconnect,
    /// PlumTree GOSSIP (a payload, eager push or pull answer).
    Gossip,
    /// PlumTree IHAVE.
    #[serde(rename = "ihave")]
    IHave,
    /// IWANT (pull without grafting).
    #[serde(rename = "iwant")]
    IWant,
    /// PlumTree GRAFT.
    Graft,
    /// PlumTree PRUNE.
    Prune,
}

impl MessageKind {
    /// Every kind, in counter order.
    pub const ALL: [Self; 12] = [
        Self::Join,
        Self::ForwardJoin,
        Self::Neighbor,
        Self::NeighborReply,
        Self::Shuffle,
        Self::ShuffleReply,
        Self::Disconnect,
        Self::Gossip,
        Self::IHave,
        Self::IWant,
        Self::Graft,
        Self::Prune,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Messages sent and received, per kind. Kinds never seen are omitted.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KindCounters {
    /// Messages handed to the shell for sending.
    pub sent: BTreeMap<MessageKind, u64>,
    /// Messages received.
    pub received: BTreeMap<MessageKind, u64>,
}

/// One peer's counters.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PeerStats {
    /// Whether the peer is in the active view.
    pub active: bool,
    /// Messages per kind.
    pub messages: KindCounters,
    /// Payloads received from the peer that were already seen.
    pub duplicates: u64,
    /// Sends reported completed.
    pub send_successes: u64,
    /// Sends reported timed out.
    pub send_timeouts: u64,
    /// Exponentially weighted mean of reported send latencies (weight 0.1 per sample), in
    /// milliseconds; 0 before the first sample.
    pub send_latency_ms: f64,
    /// Latest path RTT the transport reported (QUIC smoothed RTT), in milliseconds; 0
    /// before the first report. The graft timers follow it.
    pub rtt_ms: f64,
    /// Latest packet loss share the transport reported, in [0, 1]; at or above
    /// `pubsub.lossy_link_loss` the link gets payloads even when lazy.
    pub loss: f64,
    /// Current decayed score (`score` module).
    pub score: f64,
}

/// One topic's trees (one per origin seen recently).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TopicStats {
    /// The topic.
    pub topic: Topic,
    /// Whether messages are delivered locally.
    pub subscribed: bool,
    /// Origin trees held.
    pub trees: usize,
    /// Per neighbour: in how many of the topic's trees the link is eager.
    pub eager_in: BTreeMap<NodeId, usize>,
    /// Per neighbour: in how many of the topic's trees the link is lazy.
    pub lazy_in: BTreeMap<NodeId, usize>,
}

/// Dedupe and payload caches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Message ids remembered for dedupe.
    pub seen_entries: usize,
    /// Estimated bytes of the seen-id cache.
    pub seen_bytes: usize,
    /// Seen-id evictions by reason.
    pub seen_evictions: Evictions,
    /// Payloads kept to answer IWANT/GRAFT.
    pub payload_entries: usize,
    /// Bytes of the payload cache.
    pub payload_bytes: usize,
    /// Payload evictions by reason.
    pub payload_evictions: Evictions,
    /// Announced messages awaiting a graft.
    pub missing: usize,
}

/// A cooled peer in the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CooledStats {
    /// The peer.
    pub peer: NodeId,
    /// Milliseconds until the recovery probe may go out (0 when it may go now).
    pub until_in_ms: u64,
    /// Length of the current cooling period in milliseconds.
    pub backoff_ms: u64,
    /// Whether the probe is out awaiting its outcome.
    pub probe_in_flight: bool,
}

/// A point-in-time snapshot of one node's protocol state, serializable for the HTTP API.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProtoStats {
    /// This node.
    pub node: NodeId,
    /// Active view, in join order.
    pub active_view: Vec<NodeId>,
    /// Passive view size.
    pub passive_len: usize,
    /// Lost list size (failed addresses probed for re-merge).
    pub lost_len: usize,
    /// Dials and requests in flight.
    pub pending_requests: usize,
    /// `NeighborUp` events emitted since start.
    pub neighbor_up: u64,
    /// `NeighborDown` events emitted since start.
    pub neighbor_down: u64,
    /// Membership event counters.
    pub membership: MembershipCounters,
    /// Pubsub event counters.
    pub pubsub: PubsubCounters,
    /// Messages per kind, all peers.
    pub messages: KindCounters,
    /// Per-peer counters: active peers and up to `max_peer_stats` others.
    pub peers: BTreeMap<NodeId, PeerStats>,
    /// Topic trees.
    pub topics: Vec<TopicStats>,
    /// Caches.
    pub cache: CacheStats,
    /// Cooled peers.
    pub cooled: Vec<CooledStats>,
}

/// Per-kind sent/received tallies, compact.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    sent: [u64; MessageKind::ALL.len()],
    received: [u64; MessageKind::ALL.len()],
}

impl Tally {
    pub fn sent(&mut self, message: &Message) {
        self.sent[message.kind().index()] += 1;
    }

    pub fn received(&mut self, message: &Message) {
        self.received[message.kind().index()] += 1;
    }

    pub fn snapshot(&self) -> KindCounters {
        let nonzero = |counts: &[u64; MessageKind::ALL.len()]| {
            MessageKind::ALL
                .iter()
                .filter(|k| counts[k.index()] > 0)
                .map(|k| (*k, counts[k.index()]))
                .collect()
        };
        KindCounters {
            sent: nonzero(&self.sent),
            received: nonzero(&self.received),
        }
    }
}

/// Per-peer tallies kept by the state.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerTally {
    pub messages: Tally,
    pub duplicates: u64,
    pub send_successes: u64,
    pub send_timeouts: u64,
    pub send_latency_ms: f64,
    pub rtt_ms: f64,
    pub loss: f64,
}

impl PeerTally {
    pub fn send_succeeded(&mut self, latency: std::time::Duration) {
        let sample = latency.as_secs_f64() * 1000.0;
        self.send_latency_ms = if self.send_successes == 0 {
            sample
        } else {
            0.9 * self.send_latency_ms + 0.1 * sample
        };
        self.send_successes += 1;
    }
}
