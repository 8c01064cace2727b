//! The QUIC transport: one quinn endpoint per node, one connection per peer, one persistent
//! bidirectional stream per [`Purpose`], bounded queues both ways (design.md, The mesh;
//! docs/wire.md). Payloads are opaque bytes; the protocol layer above gives them meaning.
//!
//! `send` never blocks on the network: it enqueues on the peer's bounded outbound queue for
//! that purpose, or fails with [`SendError::QueueFull`] when the per-peer budget (frames and
//! bytes) is exhausted. A writer task per stream drains the queue under a per-write timeout.
//! Received frames and lifecycle events arrive through one bounded [`Events`] queue.

mod endpoint;
mod events;
mod peer;
mod stats;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use events::{DownReason, Event, Events, StreamCloseReason};
pub use stats::{
    ConnectionStats, DwellStats, EventQueueStats, PathStats, PeerStats, PerPurpose, PurposeStats,
    QueueStats, TrafficStats, TransportStats, ViolationCounts,
};
pub use stream::{Purpose, StreamSetupError};

use self::endpoint::Shared;
use self::peer::Unroutable;
use self::stats::DropReason;
use self::stream::PushError;
use crate::frame::{DEFAULT_MAX_FRAME_LEN, FrameHeader};
use crate::identity::Identity;
use crate::tls::TlsError;
use crate::{NodeId, TrustPolicy};

/// QUIC application close codes (CONNECTION_CLOSE, RFC 9000 §19.19); docs/wire.md lists them.
/// Stream close codes are the [`crate::frame::Violation`] codes.
pub mod close_code {
    /// The node is shutting down.
    pub const SHUTDOWN: u32 = 0;
    /// The layer above dropped the peer (`Transport::disconnect`).
    pub const DISCONNECT: u32 = 1;
    /// A newer connection to the same peer replaced this one.
    pub const SUPERSEDED: u32 = 2;
    /// The peer broke the protocol during connection setup (identity, ALPN, stream preamble).
    pub const PROTOCOL_VIOLATION: u32 = 3;
    /// The dialer expected a different NodeId at that address.
    pub const UNEXPECTED_PEER: u32 = 4;
    /// The node reached itself.
    pub const SELF_CONNECTION: u32 = 5;
    /// The streams were not set up within the handshake timeout.
    pub const SETUP_TIMEOUT: u32 = 6;
}

/// Smallest accepted [`TransportConfig::stream_window`].
const MIN_STREAM_WINDOW: u32 = 16 << 10;

/// Transport settings. Durations are wall-clock; sizes are bytes unless stated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// UDP address to bind (server and client share this one socket).
    pub bind_addr: SocketAddr,
    /// Which peers may connect, in both directions. Default: empty allowlist.
    pub trust: TrustPolicy,
    /// QUIC keep-alive interval. Default 1 s.
    pub keep_alive: Duration,
    /// Connection closes after this long without hearing from the peer (QUIC max_idle_timeout,
    /// RFC 9000 §10.1); with keep-alives this is the failure-detection time. Default 5 s.
    pub idle_timeout: Duration,
    /// Bound on TLS handshake plus stream setup, per connection attempt. Default 5 s.
    pub handshake_timeout: Duration,
    /// A write taking longer reports `Event::SendTimedOut` (the write continues). Default 2 s.
    pub send_timeout: Duration,
    /// How long a graceful close waits for queued frames to be written and acknowledged.
    /// Default 1 s.
    pub shutdown_grace: Duration,
    /// Largest payload accepted or sent, checked before allocation. Default 1 MiB.
    pub max_frame_len: u32,
    /// Outbound budget per peer and purpose, in frames. Default 1024.
    pub outbound_frames: usize,
    /// Outbound budget per peer and purpose, in payload bytes; at least `max_frame_len`.
    /// Default 4 MiB.
    pub outbound_bytes: usize,
    /// QUIC flow-control credit granted per stream, in bytes; this node also buffers at most
    /// three times this in unacknowledged writes per connection. A peer that falls this far
    /// behind blocks writes to it, which after `send_timeout` reports `SendTimedOut`, so this
    /// bounds how much a slow peer can have queued before it is detected (and cooled).
    /// At least 16 KiB. Default 256 KiB.
    pub stream_window: u32,
    /// Capacity of the receive (event) queue shared by all peers, in events. Default 4096.
    pub event_queue: usize,
    /// Report every n-th successful write per stream as `Event::SendSucceeded`; 0 disables.
    /// Default 16.
    pub latency_sample_every: u32,
    /// Inbound handshakes in progress at once; more are refused. Default 64.
    pub max_pending_handshakes: usize,
}

impl TransportConfig {
    /// Defaults (see each field) bound to `bind_addr`, trusting nobody.
    pub fn new(bind_addr: SocketAddr) -> Self {
        Self {
            bind_addr,
            trust: TrustPolicy::default(),
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(1),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            outbound_frames: 1024,
            outbound_bytes: 4 << 20,
            stream_window: 256 << 10,
            event_queue: 4096,
            latency_sample_every: 16,
            max_pending_handshakes: 64,
        }
    }

    fn validate(&self) -> Result<(), TransportError> {
        let bad = |field: &'static str, reason: &str| {
            Err(TransportError::Config {
                field,
                reason: reason.to_string(),
            })
        };
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return bad("keep_alive", "must be above zero and below idle_timeout");
        }
        for (field, value) in [
            ("handshake_timeout", self.handshake_timeout),
            ("send_timeout", self.send_timeout),
        ] {
            if value.is_zero() {
                return bad(field, "must be above zero");
            }
        }
        for (field, value) in [
            ("outbound_frames", self.outbound_frames),
            ("event_queue", self.event_queue),
            ("max_pending_handshakes", self.max_pending_handshakes),
        ] {
            if value == 0 {
                return bad(field, "must be at least 1");
            }
        }
        if self.outbound_bytes < self.max_frame_len as usize {
            return bad("outbound_bytes", "must be at least max_frame_len");
        }
        if self.stream_window < MIN_STREAM_WINDOW {
            return bad("stream_window", "must be at least 16 KiB");
        }
        Ok(())
    }
}

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A setting is out of range.
    #[error("mesh transport config: {field} {reason}")]
    Config {
        /// The offending field of [`TransportConfig`].
        field: &'static str,
        /// What is expected.
        reason: String,
    },
    /// The UDP socket could not be bound.
    #[error("cannot bind mesh transport to {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS configuration could not be built from the node key.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Why a connection attempt failed. Every variant names the remote address.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// quinn refused to start the attempt (bad address, endpoint stopping).
    #[error("{addr}: cannot start connecting: {source}")]
    Start {
        /// The remote address.
        addr: SocketAddr,
        /// quinn's reason.
        source: quinn::ConnectError,
    },
    /// The QUIC/TLS handshake failed or the peer closed the connection during setup — this is
    /// where an untrusted certificate (on either side) shows up.
    #[error("{addr}: handshake failed: {source}")]
    Handshake {
        /// The remote address.
        addr: SocketAddr,
        /// The connection error.
        source: quinn::ConnectionError,
    },
    /// Handshake plus stream setup did not finish within `handshake_timeout`.
    #[error("{addr}: no complete handshake within {timeout_ms} ms")]
    Timeout {
        /// The remote address.
        addr: SocketAddr,
        /// The configured bound.
        timeout_ms: u64,
    },
    /// The peer's identity could not be read from the handshake.
    #[error("{addr}: {source}")]
    Tls {
        /// The remote address.
        addr: SocketAddr,
        /// What was wrong.
        source: TlsError,
    },
    /// A different node than expected answered.
    #[error("{addr}: expected node {expected}, but {found} answered")]
    UnexpectedPeer {
        /// The remote address.
        addr: SocketAddr,
        /// The NodeId asked for.
        expected: NodeId,
        /// The NodeId that answered.
        found: NodeId,
    },
    /// The address leads back to this node.
    #[error("{addr}: that address is this node")]
    SelfConnection {
        /// The remote address.
        addr: SocketAddr,
    },
    /// The stream preamble exchange failed.
    #[error("{addr}: {source}")]
    Streams {
        /// The remote address.
        addr: SocketAddr,
        /// What went wrong.
        source: StreamSetupError,
    },
    /// `shutdown` was called.
    #[error("mesh transport is shut down")]
    ShutDown,
}

/// Why `send` refused a frame. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No open connection to the peer.
    #[error("not connected to {peer:?}")]
    NotConnected {
        /// The peer.
        peer: NodeId,
    },
    /// The per-peer outbound budget for that purpose (frames or bytes) is exhausted: the peer
    /// is slow. Counted as `dropped_queue_full`.
    #[error("outbound queue to {peer:?} ({purpose}) is full")]
    QueueFull {
        /// The peer.
        peer: NodeId,
        /// The stream.
        purpose: Purpose,
    },
    /// The connection is up but that purpose's stream was closed (a violation or reset).
    #[error("{purpose} stream to {peer:?} is closed")]
    StreamClosed {
        /// The peer.
        peer: NodeId,
        /// The stream.
        purpose: Purpose,
    },
    /// The payload exceeds the maximum frame length.
    #[error("payload of {len} bytes exceeds the maximum frame of {max} bytes")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// `max_frame_len`.
        max: u32,
    },
}

/// Handle to a running transport. Cheap to clone; the endpoint closes when the last handle is
/// dropped (call [`Transport::shutdown`] for a graceful close).
#[derive(Clone)]
pub struct Transport {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.shared.is_shut_down() {
            let code = quinn::VarInt::from_u32(close_code::SHUTDOWN);
            self.shared.endpoint.close(code, b"dropped");
        }
    }
}

impl Transport {
    /// Binds the endpoint and starts accepting connections.
    ///
    /// Logs a warning when `config.trust` is [`TrustPolicy::Open`].
    ///
    /// Errors: [`TransportError::Config`] for out-of-range settings, [`TransportError::Bind`],
    /// [`TransportError::Tls`].
    pub async fn start(
        config: TransportConfig,
        identity: &Identity,
    ) -> Result<(Transport, Events), TransportError> {
        let (shared, events) = endpoint::bind(config, identity)?;
        Ok((
            Transport {
                handle: Arc::new(Handle { shared }),
            },
            events,
        ))
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// This node's identity.
    pub fn node_id(&self) -> NodeId {
        self.shared().node_id
    }

    /// The bound UDP address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared().local_addr
    }

    /// The active configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.shared().config
    }

    /// Connects to `addr` and returns the NodeId proven by the peer's certificate. Returns
    /// once the connection is registered, so `send` works immediately; `PeerUp` follows on
    /// the event queue.
    ///
    /// Errors: see [`ConnectError`]; all bounded by `handshake_timeout`.
    pub async fn connect(&self, addr: SocketAddr) -> Result<NodeId, ConnectError> {
        self.shared().dial(addr, None).await
    }

    /// Like [`Transport::connect`], but the peer at `addr` must be `peer`
    /// ([`ConnectError::UnexpectedPeer`] otherwise). Returns at once when `peer` is already
    /// connected.
    pub async fn connect_expect(
        &self,
        addr: SocketAddr,
        peer: NodeId,
    ) -> Result<NodeId, ConnectError> {
        self.shared().dial(addr, Some(peer)).await
    }

    /// Enqueues `payload` for `peer` on the `purpose` stream of its newest connection, without
    /// waiting. `droppable` marks gossip the receiver may drop under overload.
    ///
    /// Errors: [`SendError::TooLarge`], [`SendError::NotConnected`],
    /// [`SendError::StreamClosed`], [`SendError::QueueFull`] (counted per peer and purpose).
    pub fn send(
        &self,
        peer: &NodeId,
        purpose: Purpose,
        payload: Bytes,
        droppable: bool,
    ) -> Result<(), SendError> {
        let shared = self.shared();
        let max = shared.config.max_frame_len;
        if FrameHeader::for_payload(payload.len(), droppable, max).is_err() {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let table = shared.table();
        let handle = table.route(peer, purpose).map_err(|err| match err {
            Unroutable::NotConnected => SendError::NotConnected { peer: *peer },
            Unroutable::StreamClosed => SendError::StreamClosed {
                peer: *peer,
                purpose,
            },
        })?;
        match handle.push(payload, droppable) {
            Ok(()) => Ok(()),
            Err(PushError::Full) => {
                let tally = table.tally(peer, shared.counters.clone());
                if let Some(tally) = tally {
                    tally.dropped(purpose, DropReason::QueueFull, 1);
                }
                Err(SendError::QueueFull {
                    peer: *peer,
                    purpose,
                })
            }
            Err(PushError::Closed) => Err(SendError::NotConnected { peer: *peer }),
        }
    }

    /// Whether `peer` has a live connection.
    pub fn is_connected(&self, peer: &NodeId) -> bool {
        self.shared().table().is_connected(peer)
    }

    /// Peers with a live connection, ordered by NodeId.
    pub fn connected_peers(&self) -> Vec<NodeId> {
        self.shared().table().connected()
    }

    /// Closes every connection to `peer` with [`close_code::DISCONNECT`] after letting queued
    /// frames drain (bounded by `shutdown_grace`). `PeerDown` follows on the event queue.
    pub async fn disconnect(&self, peer: &NodeId) {
        let shared = self.shared();
        let closing = shared.table().close(Some(peer));
        shared
            .close_gracefully(closing, close_code::DISCONNECT, b"disconnect")
            .await;
    }

    /// A snapshot of every counter, queue depth and connection.
    pub fn stats(&self) -> TransportStats {
        let shared = self.shared();
        let (open, peers) = {
            let table = shared.table();
            (table.connection_count(), table.snapshot(path_stats))
        };
        let (depth, capacity) = shared.events.depth();
        TransportStats {
            node_id: shared.node_id,
            local_addr: shared.local_addr,
            connections: shared.counters.connections(open, shared.verifier.refused()),
            events: shared.counters.events(depth, capacity),
            totals: shared.counters.traffic.snapshot(),
            peers,
        }
    }

    /// The QUIC path figures (smoothed RTT, RFC 9002 §5.3; packets sent and lost) of the
    /// newest connection of every connected peer, ordered by NodeId.
    pub fn paths(&self) -> Vec<(NodeId, PathStats)> {
        self.shared().table().newest(path_stats)
    }

    /// Graceful shutdown: stops new connections, lets queued frames drain (bounded by
    /// `shutdown_grace`), closes every connection with [`close_code::SHUTDOWN`], and waits
    /// (bounded again) for the closes to reach the peers. Later calls return at once.
    pub async fn shutdown(&self) {
        self.shared().shutdown().await;
    }
}

fn path_stats(conn: &quinn::Connection) -> PathStats {
    let path = conn.stats().path;
    PathStats {
        rtt_us: u64::try_from(conn.rtt().as_micros()).unwrap_or(u64::MAX),
        sent_packets: path.sent_packets,
        lost_packets: path.lost_packets,
        cwnd: path.cwnd,
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node_id", &self.node_id())
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}
