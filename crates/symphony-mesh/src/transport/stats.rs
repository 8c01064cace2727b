//! Transport counters (lock-free, updated by the stream tasks) and the serde snapshot the
//! diagnostics endpoint serves (design.md, The mesh: "Diagnostics").

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::stream::Purpose;
use crate::NodeId;
use crate::frame::Violation;

/// One value per stream purpose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PerPurpose<T> {
    /// Membership and pubsub.
    pub control: T,
    /// Document sync.
    pub sync: T,
    /// Direct messages.
    pub direct: T,
}

impl<T> PerPurpose<T> {
    /// The value for `purpose`.
    pub fn get(&self, purpose: Purpose) -> &T {
        match purpose {
            Purpose::Control => &self.control,
            Purpose::Sync => &self.sync,
            Purpose::Direct => &self.direct,
        }
    }

    fn from_fn(mut f: impl FnMut(Purpose) -> T) -> Self {
        Self {
            control: f(Purpose::Control),
            sync: f(Purpose::Sync),
            direct: f(Purpose::Direct),
        }
    }
}

/// Traffic on one purpose, in frames and payload bytes (headers excluded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurposeStats {
    /// Frames written to the stream.
    pub frames_out: u64,
    /// Payload bytes written.
    pub bytes_out: u64,
    /// Frames read from the stream (before the receive overload policy).
    pub frames_in: u64,
    /// Payload bytes read.
    pub bytes_in: u64,
    /// `send` calls refused because the outbound budget (frames or bytes) was exhausted.
    pub dropped_queue_full: u64,
    /// Droppable frames discarded because the receive queue was full.
    pub dropped_overload: u64,
    /// Queued outbound frames discarded because the stream or connection closed first.
    pub dropped_on_close: u64,
    /// Writes that exceeded the send timeout (each also reported as `SendTimedOut`).
    pub send_timeouts: u64,
}

/// Streams closed because the peer broke the wire format, by reason (docs/wire.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ViolationCounts {
    /// Frame version byte not 1.
    pub bad_version: u64,
    /// Reserved flag bits set.
    pub bad_flags: u64,
    /// Declared length over the maximum.
    pub oversized: u64,
    /// Stream ended inside a frame.
    pub truncated: u64,
    /// Unknown purpose byte at the start of a stream.
    pub bad_purpose: u64,
    /// Second stream for the same purpose on one connection.
    pub duplicate_purpose: u64,
}

impl ViolationCounts {
    /// The count for `violation`.
    pub fn get(&self, violation: Violation) -> u64 {
        match violation {
            Violation::BadVersion => self.bad_version,
            Violation::BadFlags => self.bad_flags,
            Violation::Oversized => self.oversized,
            Violation::Truncated => self.truncated,
            Violation::BadPurpose => self.bad_purpose,
            Violation::DuplicatePurpose => self.duplicate_purpose,
        }
    }
}

/// Traffic and violations, per purpose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TrafficStats {
    /// Per-purpose traffic and drops.
    pub purposes: PerPurpose<PurposeStats>,
    /// Streams closed for wire-format violations.
    pub violations: ViolationCounts,
}

/// Depth of one outbound queue (the per-peer outbound budget in use).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Frames waiting for the writer.
    pub frames: usize,
    /// Payload bytes waiting for the writer.
    pub bytes: usize,
    /// Whether the stream still accepts frames (false once closed for a violation or error).
    pub open: bool,
}

/// One connected peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerStats {
    /// The peer.
    pub node_id: NodeId,
    /// Remote address of the newest connection.
    pub addr: SocketAddr,
    /// Generations of the live connections, oldest first; sends use the newest.
    pub generations: Vec<u64>,
    /// Outbound queues of the newest connection.
    pub queues: PerPurpose<QueueStats>,
    /// Traffic since the peer came up (reset when it goes down).
    pub traffic: TrafficStats,
    /// QUIC path figures of the newest connection.
    pub path: PathStats,
}

/// QUIC's view of the path to a peer (newest connection), from `quinn::Connection::rtt` and
/// `quinn::Connection::stats().path`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PathStats {
    /// Smoothed round-trip time (RFC 9002 §5.3), microseconds.
    pub rtt_us: u64,
    /// UDP packets sent on the path.
    pub sent_packets: u64,
    /// Packets declared lost (RFC 9002 §6.1) and retransmitted.
    pub lost_packets: u64,
    /// Congestion window, bytes.
    pub cwnd: u64,
}

/// Packets sent before a path's loss share is reported: fewer say little. Not more: a quiet
/// link sends about one keep-alive per second, and at 100 its loss showed only after
/// half a minute (bench, 1 msg/s with 5% loss).
const LOSS_MIN_PACKETS: u64 = 20;

impl PathStats {
    /// The smoothed RTT.
    pub fn rtt(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.rtt_us)
    }

    /// Lost / sent packets over the connection's life, in [0, 1]; 0 before 20 packets.
    pub fn loss(&self) -> f64 {
        if self.sent_packets < LOSS_MIN_PACKETS {
            0.0
        } else {
            (self.lost_packets as f64 / self.sent_packets as f64).min(1.0)
        }
    }
}

/// Time frames spent in the receive queue, from enqueue by the reader to `Events::recv`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DwellStats {
    /// Frames measured.
    pub samples: u64,
    /// Mean dwell time in microseconds.
    pub mean_us: u64,
    /// Longest dwell time in microseconds.
    pub max_us: u64,
}

/// The receive (event) queue shared by all peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventQueueStats {
    /// Events waiting for `Events::recv`.
    pub depth: usize,
    /// Capacity in events.
    pub capacity: usize,
    /// `SendSucceeded` latency samples discarded because the queue was full.
    pub dropped_latency_samples: u64,
    /// Frame dwell time per purpose.
    pub dwell: PerPurpose<DwellStats>,
}

/// Connection lifecycle counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionStats {
    /// Connections currently registered (all peers, all generations).
    pub open: usize,
    /// Outbound connections established.
    pub dialed: u64,
    /// Inbound connections established.
    pub accepted: u64,
    /// Outbound attempts that failed (handshake, timeout, refusal, stream setup).
    pub dial_failures: u64,
    /// Inbound attempts that failed after the first packet.
    pub accept_failures: u64,
    /// Handshakes refused by this node's verifier (untrusted or unusable certificate).
    pub refused_untrusted: u64,
    /// Inbound attempts refused because too many handshakes were in progress.
    pub refused_busy: u64,
    /// Connections closed because a peer had more than two live connections.
    pub superseded: u64,
}

/// A snapshot of the whole transport, served as JSON by diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransportStats {
    /// This node.
    pub node_id: NodeId,
    /// The bound UDP address.
    pub local_addr: SocketAddr,
    /// Connection lifecycle counters.
    pub connections: ConnectionStats,
    /// The receive queue.
    pub events: EventQueueStats,
    /// Traffic and violations since start, all peers.
    pub totals: TrafficStats,
    /// Connected peers, ordered by NodeId.
    pub peers: Vec<PeerStats>,
}

#[derive(Default)]
pub(super) struct PurposeCounters {
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_overload: AtomicU64,
    dropped_on_close: AtomicU64,
    send_timeouts: AtomicU64,
}

impl PurposeCounters {
    fn snapshot(&self) -> PurposeStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PurposeStats {
            frames_out: get(&self.frames_out),
            bytes_out: get(&self.bytes_out),
            frames_in: get(&self.frames_in),
            bytes_in: get(&self.bytes_in),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_overload: get(&self.dropped_overload),
            dropped_on_close: get(&self.dropped_on_close),
            send_timeouts: get(&self.send_timeouts),
        }
    }
}

/// Why frames were dropped, for [`TrafficCounters::dropped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DropReason {
    QueueFull,
    Overload,
    OnClose,
}

/// Traffic counters of one peer, or of the whole transport.
#[derive(Default)]
pub(super) struct TrafficCounters {
    purposes: [PurposeCounters; 3],
    violations: [AtomicU64; Violation::ALL.len()],
}

impl TrafficCounters {
    pub(super) fn frame_out(&self, purpose: Purpose, bytes: usize) {
        let c = &self.purposes[purpose.index()];
        c.frames_out.fetch_add(1, Ordering::Relaxed);
        c.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn frame_in(&self, purpose: Purpose, bytes: usize) {
        let c = &self.purposes[purpose.index()];
        c.frames_in.fetch_add(1, Ordering::Relaxed);
        c.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn dropped(&self, purpose: Purpose, why: DropReason, frames: u64) {
        let c = &self.purposes[purpose.index()];
        let counter = match why {
            DropReason::QueueFull => &c.dropped_queue_full,
            DropReason::Overload => &c.dropped_overload,
            DropReason::OnClose => &c.dropped_on_close,
        };
        counter.fetch_add(frames, Ordering::Relaxed);
    }

    pub(super) fn send_timeout(&self, purpose: Purpose) {
        self.purposes[purpose.index()]
            .send_timeouts
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn violation(&self, violation: Violation) {
        self.violations[violation.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> TrafficStats {
        let v = |violation: Violation| self.violations[violation.index()].load(Ordering::Relaxed);
        TrafficStats {
            purposes: PerPurpose::from_fn(|p| self.purposes[p.index()].snapshot()),
            violations: ViolationCounts {
                bad_version: v(Violation::BadVersion),
                bad_flags: v(Violation::BadFlags),
                oversized: v(Violation::Oversized),
                truncated: v(Violation::Truncated),
                bad_purpose: v(Violation::BadPurpose),
                duplicate_purpose: v(Violation::DuplicatePurpose),
            },
        }
    }
}

/// Counts one peer's traffic in both its own counters and the transport totals.
#[derive(Clone)]
pub(super) struct Tally {
    pub(super) peer: std::sync::Arc<TrafficCounters>,
    pub(super) total: std::sync::Arc<Counters>,
}

impl Tally {
    pub(super) fn frame_out(&self, purpose: Purpose, bytes: usize) {
        self.peer.frame_out(purpose, bytes);
        self.total.traffic.frame_out(purpose, bytes);
    }

    pub(super) fn frame_in(&self, purpose: Purpose, bytes: usize) {
        self.peer.frame_in(purpose, bytes);
        self.total.traffic.frame_in(purpose, bytes);
    }

    pub(super) fn dropped(&self, purpose: Purpose, why: DropReason, frames: u64) {
        if frames > 0 {
            self.peer.dropped(purpose, why, frames);
            self.total.traffic.dropped(purpose, why, frames);
        }
    }

    pub(super) fn send_timeout(&self, purpose: Purpose) {
        self.peer.send_timeout(purpose);
        self.total.traffic.send_timeout(purpose);
    }

    pub(super) fn violation(&self, violation: Violation) {
        self.peer.violation(violation);
        self.total.traffic.violation(violation);
    }
}

#[derive(Default)]
pub(super) struct DwellCounter {
    samples: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
}

impl DwellCounter {
    pub(super) fn record(&self, dwell: Duration) {
        let us = u64::try_from(dwell.as_micros()).unwrap_or(u64::MAX);
        self.samples.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    fn snapshot(&self) -> DwellStats {
        let samples = self.samples.load(Ordering::Relaxed);
        let total = self.total_us.load(Ordering::Relaxed);
        DwellStats {
            samples,
            mean_us: total.checked_div(samples).unwrap_or(0),
            max_us: self.max_us.load(Ordering::Relaxed),
        }
    }
}

/// Transport-wide counters.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) traffic: TrafficCounters,
    pub(super) dwell: [DwellCounter; 3],
    pub(super) dialed: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) dial_failures: AtomicU64,
    pub(super) accept_failures: AtomicU64,
    pub(super) refused_busy: AtomicU64,
    pub(super) superseded: AtomicU64,
    pub(super) dropped_latency_samples: AtomicU64,
}

impl Counters {
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn connections(&self, open: usize, refused_untrusted: u64) -> ConnectionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConnectionStats {
            open,
            dialed: get(&self.dialed),
            accepted: get(&self.accepted),
            dial_failures: get(&self.dial_failures),
            accept_failures: get(&self.accept_failures),
            refused_untrusted,
            refused_busy: get(&self.refused_busy),
            superseded: get(&self.superseded),
        }
    }

    pub(super) fn events(&self, depth: usize, capacity: usize) -> EventQueueStats {
        EventQueueStats {
            depth,
            capacity,
            dropped_latency_samples: self.dropped_latency_samples.load(Ordering::Relaxed),
            dwell: PerPurpose::from_fn(|p| self.dwell[p.index()].snapshot()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PathStats;

    #[test]
    fn path_loss_is_reported_after_twenty_packets_and_bounded() {
        let path = |sent_packets, lost_packets| PathStats {
            sent_packets,
            lost_packets,
            ..PathStats::default()
        };
        assert_eq!(path(19, 5).loss(), 0.0, "too few packets to say");
        assert!((path(200, 10).loss() - 0.05).abs() < 1e-12);
        assert_eq!(path(20, 40).loss(), 1.0);
        assert_eq!(path(0, 0).loss(), 0.0);
    }
}
