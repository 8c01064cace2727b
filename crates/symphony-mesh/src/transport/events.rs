//! The bounded receive queue: frames and peer lifecycle events for the layer above, with the
//! overload policy of design.md (The mesh): droppable frames are dropped and counted when the
//! queue is full; everything else waits for space, which pushes back through QUIC flow control.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use super::stats::Counters;
use super::stream::Purpose;
use crate::NodeId;
use crate::frame::Violation;

/// What the transport tells the layer above.
///
/// Ordering per peer: `PeerUp { generation: g }` comes before any frame received on connection
/// `g`; frames of a connection come before the `PeerDown` that follows its close. A second
/// `PeerUp` without a `PeerDown` in between means a newer connection (higher generation) now
/// carries sends. `PeerDown` comes only when the peer's last connection has closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A connection to `peer` was established (handshake and stream setup complete).
    PeerUp {
        /// The peer.
        peer: NodeId,
        /// Remote address of this connection.
        addr: SocketAddr,
        /// This connection's generation; higher than every earlier connection's.
        generation: u64,
    },
    /// The peer's last connection closed; its queues and counters are gone.
    PeerDown {
        /// The peer.
        peer: NodeId,
        /// The newest generation the peer had.
        generation: u64,
        /// Why the last connection closed.
        reason: DownReason,
    },
    /// A frame arrived.
    Frame {
        /// The sender.
        peer: NodeId,
        /// The stream it arrived on.
        purpose: Purpose,
        /// The opaque payload.
        payload: Bytes,
    },
    /// One stream of a connection closed while the connection stays up; sends on that purpose
    /// now fail with `SendError::StreamClosed` until a new connection exists.
    StreamClosed {
        /// The peer.
        peer: NodeId,
        /// The connection the stream belonged to.
        generation: u64,
        /// The stream's purpose.
        purpose: Purpose,
        /// Why it closed.
        reason: StreamCloseReason,
    },
    /// A write to `peer` took longer than the send timeout; the write continues (aborting it
    /// would corrupt the stream), so the peer is slow and should be cooled.
    SendTimedOut {
        /// The slow peer.
        peer: NodeId,
        /// The stream that is slow.
        purpose: Purpose,
    },
    /// A sampled successful write (every `latency_sample_every`-th per stream).
    SendSucceeded {
        /// The peer written to.
        peer: NodeId,
        /// From `send` (enqueue) to the frame being handed to QUIC.
        latency: Duration,
    },
}

/// Why a peer's last connection closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DownReason {
    /// Nothing was heard for the idle timeout despite keep-alives: the peer is gone.
    IdleTimeout,
    /// The peer closed the connection with an application code (docs/wire.md, close codes).
    ClosedByPeer {
        /// The peer's close code.
        code: u64,
        /// The peer's reason text, lossily decoded and cut to 128 characters.
        reason: String,
    },
    /// This node closed it (`disconnect`, `shutdown`, or superseded).
    ClosedLocally,
    /// The peer answered with a stateless reset: it restarted and lost the connection.
    Reset,
    /// A QUIC protocol or crypto failure.
    Failed {
        /// quinn's description.
        detail: String,
    },
}

impl From<&quinn::ConnectionError> for DownReason {
    fn from(err: &quinn::ConnectionError) -> Self {
        use quinn::ConnectionError as E;
        match err {
            E::TimedOut => Self::IdleTimeout,
            E::ApplicationClosed(close) => Self::ClosedByPeer {
                code: close.error_code.into_inner(),
                reason: String::from_utf8_lossy(&close.reason)
                    .chars()
                    .take(128)
                    .collect(),
            },
            E::LocallyClosed => Self::ClosedLocally,
            E::Reset => Self::Reset,
            other => Self::Failed {
                detail: other.to_string(),
            },
        }
    }
}

/// Why a single stream closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StreamCloseReason {
    /// The peer broke the frame format; this node closed the stream with the violation's code.
    Violation {
        /// What the peer did wrong.
        violation: Violation,
    },
    /// The peer reset its half of the stream (with one of our violation codes if it found a
    /// violation in what this node sent).
    ResetByPeer {
        /// The peer's reset code.
        code: u64,
    },
}

struct Queued {
    event: Event,
    at: Instant,
}

/// The queue is full (droppable delivery) or the receiver is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Undelivered {
    Full,
    Closed,
}

/// The transport's side of the receive queue.
#[derive(Clone)]
pub(super) struct EventSender {
    tx: mpsc::Sender<Queued>,
}

impl EventSender {
    /// Waits for space; `Err` only when the receiver is gone.
    pub(super) async fn deliver(&self, event: Event) -> Result<(), Undelivered> {
        let queued = Queued {
            event,
            at: Instant::now(),
        };
        self.tx.send(queued).await.map_err(|_| Undelivered::Closed)
    }

    /// Enqueues only if there is space now.
    pub(super) fn try_deliver(&self, event: Event) -> Result<(), Undelivered> {
        let queued = Queued {
            event,
            at: Instant::now(),
        };
        self.tx.try_send(queued).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => Undelivered::Full,
            mpsc::error::TrySendError::Closed(_) => Undelivered::Closed,
        })
    }

    /// (depth, capacity) in events.
    pub(super) fn depth(&self) -> (usize, usize) {
        let capacity = self.tx.max_capacity();
        (capacity - self.tx.capacity(), capacity)
    }
}

/// The receiving end of the transport's event queue. Exactly one per transport.
pub struct Events {
    rx: mpsc::Receiver<Queued>,
    counters: Arc<Counters>,
    /// Newest `PeerUp` generation delivered per peer, to hold back a `PeerDown` that was
    /// overtaken by the `PeerUp` of a newer connection (they are produced by different tasks).
    up: HashMap<NodeId, u64>,
}

pub(super) fn channel(capacity: usize, counters: Arc<Counters>) -> (EventSender, Events) {
    let (tx, rx) = mpsc::channel(capacity);
    (
        EventSender { tx },
        Events {
            rx,
            counters,
            up: HashMap::new(),
        },
    )
}

impl Events {
    /// The next event; `None` once every `Transport` handle is dropped, all connections have
    /// closed and the queue is drained.
    ///
    /// Records each frame's dwell time (enqueue to here) in the stats.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            let Queued { event, at } = self.rx.recv().await?;
            match &event {
                Event::Frame { purpose, .. } => {
                    self.counters.dwell[purpose.index()].record(at.elapsed());
                }
                Event::PeerUp {
                    peer, generation, ..
                } => {
                    let newest = self.up.entry(*peer).or_insert(*generation);
                    *newest = (*newest).max(*generation);
                }
                Event::PeerDown {
                    peer, generation, ..
                } => match self.up.get(peer) {
                    Some(newest) if newest > generation => continue,
                    _ => {
                        self.up.remove(peer);
                    }
                },
                _ => {}
            }
            return Some(event);
        }
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("queued", &self.rx.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(peer: NodeId, generation: u64) -> Event {
        Event::PeerUp {
            peer,
            addr: "127.0.0.1:1".parse().unwrap(),
            generation,
        }
    }

    fn down(peer: NodeId, generation: u64) -> Event {
        Event::PeerDown {
            peer,
            generation,
            reason: DownReason::IdleTimeout,
        }
    }

    #[tokio::test]
    async fn a_peer_down_overtaken_by_a_newer_peer_up_is_held_back() {
        let (tx, mut events) = channel(16, Arc::default());
        let peer = NodeId::from_bytes([3; 32]);
        for event in [
            up(peer, 1),
            up(peer, 2),
            down(peer, 1),
            down(peer, 2),
            up(peer, 3),
        ] {
            tx.deliver(event).await.unwrap();
        }
        assert_eq!(events.recv().await, Some(up(peer, 1)));
        assert_eq!(events.recv().await, Some(up(peer, 2)));
        assert_eq!(
            events.recv().await,
            Some(down(peer, 2)),
            "down(1) must be skipped"
        );
        assert_eq!(events.recv().await, Some(up(peer, 3)));
    }

    #[tokio::test]
    async fn droppable_delivery_reports_a_full_queue_and_dwell_is_recorded() {
        let counters = Arc::new(Counters::default());
        let (tx, mut events) = channel(1, counters.clone());
        let peer = NodeId::from_bytes([4; 32]);
        let frame = Event::Frame {
            peer,
            purpose: Purpose::Sync,
            payload: Bytes::new(),
        };
        assert_eq!(tx.try_deliver(frame.clone()), Ok(()));
        assert_eq!(tx.try_deliver(frame.clone()), Err(Undelivered::Full));
        assert_eq!(tx.depth(), (1, 1));
        assert_eq!(events.recv().await, Some(frame));
        assert_eq!(counters.events(0, 1).dwell.sync.samples, 1);
        drop(events);
        assert_eq!(tx.try_deliver(up(peer, 1)), Err(Undelivered::Closed));
    }
}
