//! One serializable snapshot of a node (design.md, The mesh: "Diagnostics: one snapshot with
//! per-peer and per-kind counters, queue depths, drops, timeouts, cooled peers, scores, view
//! sizes"), merging the protocol's [`ProtoStats`], the transport's [`TransportStats`] and the
//! node actor's own counters. docs/mesh.md ("Diagnostics") says what each counter means and
//! what to do when it moves. Served as JSON by `symphony mesh serve`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

use crate::NodeId;
use crate::direct::DirectCounters;
use crate::mesh::PeerView;
use crate::proto::{CooledStats, KindCounters, MessageKind, ProtoStats, Topic};
use crate::transport::{
    EventQueueStats, PathStats, PerPurpose, QueueStats, TrafficStats, TransportStats,
    ViolationCounts,
};

/// The whole snapshot. Counters count since the node started; depths are current.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostics {
    /// This node.
    pub node_id: NodeId,
    /// The bound UDP address.
    pub local_addr: SocketAddr,
    /// The address other nodes are told to dial.
    pub advertised_addr: SocketAddr,
    /// Milliseconds since the node started.
    pub uptime_ms: u64,
    /// View sizes and roster churn.
    pub views: Views,
    /// Every peer in a view or connected, by NodeId.
    pub peers: Vec<PeerDiagnostics>,
    /// Messages per kind, all peers.
    pub messages: Traffic,
    /// Everything dropped, by reason.
    pub drops: Drops,
    /// Everything that timed out, by kind.
    pub timeouts: Timeouts,
    /// Queue depths and dwell times.
    pub queues: Queues,
    /// Slow peers currently cooled, with the end of their period and their backoff.
    pub cooled: Vec<CooledStats>,
    /// Local subscriptions per topic.
    pub subscriptions: Vec<SubscriptionStats>,
    /// Direct messages.
    pub direct: DirectStats,
    /// The node actor's own counters.
    pub node: NodeCounters,
    /// The protocol's full snapshot (trees, caches, membership and pubsub counters).
    pub proto: ProtoStats,
    /// The transport's full snapshot (connections, per-peer traffic per stream).
    pub transport: TransportStats,
}

/// View sizes (HyParView §3) and roster churn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Views {
    /// Active view size.
    pub active: usize,
    /// Passive view size.
    pub passive: usize,
    /// Lost list size (failed peers probed for partition re-merge).
    pub lost: usize,
    /// Peers with a live connection.
    pub connected: usize,
    /// Membership dials and requests in flight.
    pub pending_requests: usize,
    /// Neighbours that joined the active view since start.
    pub neighbor_up: u64,
    /// Neighbours that left it since start.
    pub neighbor_down: u64,
}

/// Messages of each kind, as the diagnostics group them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    /// PlumTree payloads (eager pushes and answers to GRAFT/IWANT).
    pub eager: u64,
    /// IHAVE announcements.
    pub ihave: u64,
    /// IWANT requests.
    pub iwant: u64,
    /// GRAFT requests.
    pub graft: u64,
    /// PRUNE requests.
    pub prune: u64,
    /// HyParView messages (join, forward join, neighbour, shuffle, disconnect).
    pub membership: u64,
    /// Frames on the direct stream (direct messages and receipts).
    pub direct: u64,
}

impl KindCounts {
    fn from_kinds(kinds: &BTreeMap<MessageKind, u64>, direct: u64) -> Self {
        let get = |kind| kinds.get(&kind).copied().unwrap_or(0);
        let membership = kinds
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k,
                    MessageKind::Gossip
                        | MessageKind::IHave
                        | MessageKind::IWant
                        | MessageKind::Graft
                        | MessageKind::Prune
                )
            })
            .map(|(_, n)| n)
            .sum();
        Self {
            eager: get(MessageKind::Gossip),
            ihave: get(MessageKind::IHave),
            iwant: get(MessageKind::IWant),
            graft: get(MessageKind::Graft),
            prune: get(MessageKind::Prune),
            membership,
            direct,
        }
    }
}

/// Sent and received, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Handed to the transport.
    pub sent: KindCounts,
    /// Received and decoded.
    pub received: KindCounts,
}

impl Traffic {
    fn new(kinds: &KindCounters, traffic: &TrafficStats) -> Self {
        let direct = traffic.purposes.direct;
        Self {
            sent: KindCounts::from_kinds(&kinds.sent, direct.frames_out),
            received: KindCounts::from_kinds(&kinds.received, direct.frames_in),
        }
    }
}

/// One peer: membership, score, cooling, traffic per kind, queues and drops.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerDiagnostics {
    /// The peer.
    pub node_id: NodeId,
    /// Its advertised address, from membership.
    pub addr: Option<SocketAddr>,
    /// The address of its newest connection, as the transport sees it.
    pub remote_addr: Option<SocketAddr>,
    /// Active, passive or only connected.
    pub view: PeerView,
    /// Whether a connection is live.
    pub connected: bool,
    /// Decayed score; eager links need at least `score.demote_below` (-4 by default).
    pub score: f64,
    /// Cooling state, when cooled.
    pub cooled: Option<CooledStats>,
    /// Messages per kind.
    pub messages: Traffic,
    /// Payloads from this peer that were already seen.
    pub duplicates: u64,
    /// Writes to this peer slower than the send timeout.
    pub send_timeouts: u64,
    /// Mean time from enqueue to write for sampled sends, ms.
    pub send_latency_ms: f64,
    /// QUIC path of its newest connection: smoothed RTT (µs; the graft timers follow it),
    /// packets sent and declared lost, congestion window.
    pub path: PathStats,
    /// Outbound queue depths of its newest connection, per stream.
    pub queues: PerPurpose<QueueStats>,
    /// Frames this node's control backlog holds for the peer (outbound queue was full).
    pub control_backlog: usize,
    /// Sends refused because the outbound budget was full, all streams.
    pub dropped_queue_full: u64,
    /// Droppable frames from it dropped because the receive queue was full.
    pub dropped_overload: u64,
    /// Queued frames lost because a stream or connection closed.
    pub dropped_on_close: u64,
    /// Payload bytes written to it and read from it, all streams.
    pub bytes_out: u64,
    /// Payload bytes read from it.
    pub bytes_in: u64,
    /// Streams closed because it broke the frame format.
    pub violations: ViolationCounts,
}

/// Everything dropped, by reason (docs/mesh.md, "Drops").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Drops {
    /// Droppable sends refused because a peer's outbound budget was full (gossip, IHAVE,
    /// IWANT): the peer is slow; the lazy path repairs.
    pub gossip_queue_full: u64,
    /// Sends refused by a full outbound budget, every stream (transport count).
    pub outbound_queue_full: u64,
    /// Droppable frames dropped because this node's receive queue was full: this node is
    /// overloaded.
    pub inbound_overload: u64,
    /// Queued frames lost when a stream or connection closed.
    pub on_close: u64,
    /// Deliveries dropped because a subscription's queue was full: the application is slow.
    pub subscriber_queue_full: u64,
    /// IHAVE entries dropped because a peer's lazy queue was full.
    pub lazy_queue_full: u64,
    /// IHAVE entries ignored because the missing-message table was full.
    pub missing_table_full: u64,
    /// Send-latency samples dropped because the receive queue was full.
    pub latency_samples: u64,
    /// Frames that were not a valid message (or arrived on the wrong stream).
    pub undecodable: u64,
    /// Frames on the sync stream, which this node does not serve yet.
    pub sync_unhandled: u64,
    /// Peers disconnected because their control backlog overflowed.
    pub control_backlog_overflow: u64,
    /// Membership events a slow listener missed.
    pub membership_events_lagged: u64,
    /// Direct messages refused because the inbox was full.
    pub direct_inbox_full: u64,
    /// Responses that arrived after their request gave up.
    pub late_responses: u64,
    /// Streams closed for frame-format violations, by reason.
    pub stream_violations: ViolationCounts,
}

/// Everything that timed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    /// Writes slower than `send_timeout`, every stream (each cools the peer).
    pub send: u64,
    /// Membership dials and requests without an answer within `request_timeout`.
    pub membership_requests: u64,
    /// Missing messages given up after every announcer was asked.
    pub graft_exhausted: u64,
    /// Cooled peers whose recovery probe timed out again.
    pub cooling_probe_failures: u64,
    /// Own direct messages without a receipt in time.
    pub direct: u64,
}

/// Queue depths and the receive queue's dwell times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Queues {
    /// The transport's receive queue: depth, capacity, dwell per stream.
    pub events: EventQueueStats,
    /// API requests waiting for the actor.
    pub api: usize,
    /// Direct messages waiting in the inbox.
    pub direct_inbox: usize,
    /// Protocol timers armed.
    pub timers: usize,
    /// Control frames held back for peers with a full outbound queue, all peers.
    pub control_backlog: usize,
}

/// One subscribed topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionStats {
    /// The topic.
    pub topic: Topic,
    /// Live subscriptions.
    pub subscribers: usize,
    /// Deliveries handed to subscriptions.
    pub delivered: u64,
    /// Deliveries dropped because a subscription's queue was full.
    pub dropped_full: u64,
    /// Deepest subscription queue now.
    pub queue_depth: usize,
}

/// Direct messages: counters and table sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirectStats {
    /// Router counters.
    #[serde(flatten)]
    pub counters: DirectCounters,
    /// Own messages awaiting a receipt.
    pub pending: usize,
    /// Relayed messages awaiting their branches.
    pub relay_entries: usize,
    /// Dedupe entries.
    pub dedupe_entries: usize,
    /// Requests awaiting a response.
    pub requests_waiting: usize,
    /// Responses matched to a waiting request.
    pub responses: u64,
}

/// Counters of the node actor itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NodeCounters {
    /// Frames that did not decode as a message, or arrived on the wrong stream.
    pub undecodable: u64,
    /// Peers disconnected because their control stream closed (a violation or reset).
    pub control_stream_closed: u64,
    /// Control frames that had to wait in the backlog.
    pub control_backlogged: u64,
    /// Peers disconnected because their control backlog overflowed.
    pub control_backlog_overflow: u64,
    /// Droppable control-stream sends refused by a full outbound queue.
    pub gossip_queue_full: u64,
    /// Sends to peers without a connection (the protocol learns of it by `PeerDown`).
    pub sends_not_connected: u64,
    /// Frames on the sync stream, unserved.
    pub sync_unhandled: u64,
    /// Deliveries dropped on full subscription queues.
    pub subscriber_queue_full: u64,
    /// Bootstrap addresses that could not be reached (retried with backoff).
    pub bootstrap_failures: u64,
    /// Responses that arrived after their request gave up.
    pub late_responses: u64,
}

/// What the actor passes to [`build`].
pub(crate) struct Parts {
    pub local_addr: SocketAddr,
    pub advertised_addr: SocketAddr,
    pub uptime_ms: u64,
    pub proto: ProtoStats,
    pub transport: TransportStats,
    pub peers: Vec<crate::mesh::PeerInfo>,
    pub backlog: BTreeMap<NodeId, usize>,
    pub subscriptions: Vec<SubscriptionStats>,
    pub direct: DirectStats,
    pub node: NodeCounters,
    pub membership_lagged: u64,
    pub queues: Queues,
}

/// Merges the parts into one snapshot.
pub(crate) fn build(parts: Parts) -> Diagnostics {
    let Parts {
        local_addr,
        advertised_addr,
        uptime_ms,
        proto,
        transport,
        peers,
        backlog,
        subscriptions,
        direct,
        node,
        membership_lagged,
        queues,
    } = parts;
    let peers = peers
        .into_iter()
        .map(|info| peer(info, &proto, &transport, &backlog))
        .collect();
    let totals = &transport.totals;
    let sum = |f: fn(&crate::transport::PurposeStats) -> u64| {
        let p = &totals.purposes;
        f(&p.control) + f(&p.sync) + f(&p.direct)
    };
    let drops = Drops {
        gossip_queue_full: node.gossip_queue_full,
        outbound_queue_full: sum(|p| p.dropped_queue_full),
        inbound_overload: sum(|p| p.dropped_overload),
        on_close: sum(|p| p.dropped_on_close),
        subscriber_queue_full: node.subscriber_queue_full,
        lazy_queue_full: proto.pubsub.lazy_queue_drops,
        missing_table_full: proto.pubsub.missing_overflow,
        latency_samples: transport.events.dropped_latency_samples,
        undecodable: node.undecodable,
        sync_unhandled: node.sync_unhandled,
        control_backlog_overflow: node.control_backlog_overflow,
        membership_events_lagged: membership_lagged,
        direct_inbox_full: direct.counters.inbox_full,
        late_responses: node.late_responses,
        stream_violations: totals.violations,
    };
    let timeouts = Timeouts {
        send: sum(|p| p.send_timeouts),
        membership_requests: proto.membership.request_timeouts,
        graft_exhausted: proto.pubsub.graft_exhausted,
        cooling_probe_failures: proto.pubsub.probe_failures,
        direct: direct.counters.timeouts,
    };
    let views = Views {
        active: proto.active_view.len(),
        passive: proto.passive_len,
        lost: proto.lost_len,
        connected: transport.peers.len(),
        pending_requests: proto.pending_requests,
        neighbor_up: proto.neighbor_up,
        neighbor_down: proto.neighbor_down,
    };
    Diagnostics {
        node_id: proto.node,
        local_addr,
        advertised_addr,
        uptime_ms,
        views,
        peers,
        messages: Traffic::new(&proto.messages, totals),
        drops,
        timeouts,
        queues,
        cooled: proto.cooled.clone(),
        subscriptions,
        direct,
        node,
        proto,
        transport,
    }
}

fn peer(
    info: crate::mesh::PeerInfo,
    proto: &ProtoStats,
    transport: &TransportStats,
    backlog: &BTreeMap<NodeId, usize>,
) -> PeerDiagnostics {
    let p = proto.peers.get(&info.node_id);
    let t = transport.peers.iter().find(|t| t.node_id == info.node_id);
    let traffic = t.map(|t| t.traffic).unwrap_or_default();
    let purposes = &traffic.purposes;
    let sum = |f: fn(&crate::transport::PurposeStats) -> u64| {
        f(&purposes.control) + f(&purposes.sync) + f(&purposes.direct)
    };
    PeerDiagnostics {
        node_id: info.node_id,
        addr: info.addr,
        remote_addr: t.map(|t| t.addr),
        view: info.view,
        connected: info.connected,
        score: info.score,
        cooled: info.cooled,
        messages: p.map_or_else(
            || Traffic::new(&KindCounters::default(), &traffic),
            |p| Traffic::new(&p.messages, &traffic),
        ),
        duplicates: p.map_or(0, |p| p.duplicates),
        send_timeouts: sum(|p| p.send_timeouts),
        send_latency_ms: p.map_or(0.0, |p| p.send_latency_ms),
        path: t.map(|t| t.path).unwrap_or_default(),
        queues: t.map(|t| t.queues).unwrap_or_default(),
        control_backlog: backlog.get(&info.node_id).copied().unwrap_or(0),
        dropped_queue_full: sum(|p| p.dropped_queue_full),
        dropped_overload: sum(|p| p.dropped_overload),
        dropped_on_close: sum(|p| p.dropped_on_close),
        bytes_out: sum(|p| p.bytes_out),
        bytes_in: sum(|p| p.bytes_in),
        violations: traffic.violations,
    }
}
