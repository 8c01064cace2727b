//! Dials: the protocol's `Connect`s (each answered by exactly one `PeerUp` or `PeerDown`,
//! also when `Disconnect` abandons it), and bootstrap addresses given without a NodeId, which
//! are dialled to learn it and retried with backoff until they answer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Node;
use crate::NodeId;
use crate::config::BootstrapPeer;
use crate::proto::{self, PeerAddr};
use crate::transport::ConnectError;

/// First retry delay of an unreachable bootstrap address, doubled per failure.
const BOOTSTRAP_BACKOFF: Duration = Duration::from_secs(1);
/// Cap of that delay.
const BOOTSTRAP_BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(super) enum DialTarget {
    /// A protocol `Connect`.
    Peer(NodeId),
    /// A bootstrap address whose NodeId is not configured.
    Resolve(SocketAddr),
}

#[derive(Debug)]
pub(super) enum DialResult {
    Connected(NodeId),
    Failed(ConnectError),
    Abandoned,
}

#[derive(Debug)]
pub(super) struct DialOutcome {
    target: DialTarget,
    result: DialResult,
}

/// A bootstrap address still to be resolved.
pub(super) struct PendingBootstrap {
    addr: SocketAddr,
    failures: u32,
    next_try: Instant,
    dialing: bool,
}

impl Node {
    /// Hands the bootstrap addresses with a NodeId to the protocol (which also arms its
    /// tick) and starts resolving the others.
    pub(super) fn join(&mut self, bootstrap: &[BootstrapPeer], now: Instant) {
        let known: Vec<PeerAddr> = bootstrap
            .iter()
            .filter_map(|b| b.id.map(|id| PeerAddr::new(id, b.addr)))
            .collect();
        self.bootstrap = bootstrap
            .iter()
            .filter(|b| b.id.is_none())
            .map(|b| PendingBootstrap {
                addr: b.addr,
                failures: 0,
                next_try: now,
                dialing: false,
            })
            .collect();
        self.feed(proto::Event::Join(known));
        self.retry_bootstrap(now);
    }

    pub(super) fn retry_bootstrap(&mut self, now: Instant) {
        for pending in &mut self.bootstrap {
            if pending.dialing || pending.next_try > now {
                continue;
            }
            pending.dialing = true;
            let (addr, transport) = (pending.addr, self.transport.clone());
            self.dials.spawn(async move {
                let result = match transport.connect(addr).await {
                    Ok(peer) => DialResult::Connected(peer),
                    Err(err) => DialResult::Failed(err),
                };
                DialOutcome {
                    target: DialTarget::Resolve(addr),
                    result,
                }
            });
        }
    }

    /// Executes `Connect(addr)`.
    pub(super) fn connect(&mut self, addr: PeerAddr) {
        if self.up.contains(&addr.id) {
            self.queue.push_back(proto::Event::PeerUp(addr.id));
            return;
        }
        if self.dialing.contains_key(&addr.id) {
            return;
        }
        let (cancel, cancelled) = oneshot::channel::<()>();
        self.dialing.insert(addr.id, cancel);
        let transport = self.transport.clone();
        self.dials.spawn(async move {
            let result = tokio::select! {
                dialed = transport.connect_expect(addr.addr, addr.id) => match dialed {
                    Ok(peer) => DialResult::Connected(peer),
                    Err(err) => DialResult::Failed(err),
                },
                _ = cancelled => DialResult::Abandoned,
            };
            DialOutcome {
                target: DialTarget::Peer(addr.id),
                result,
            }
        });
    }

    /// Abandons a dial in progress for `peer`; its outcome still answers the protocol.
    /// False when no dial is in progress.
    pub(super) fn abandon_dial(&mut self, peer: NodeId) -> bool {
        let Some(cancel) = self.dialing.remove(&peer) else {
            return false;
        };
        self.abandoned.insert(peer);
        // The dial may have finished already; its outcome is then handled as abandoned.
        let _ = cancel.send(());
        true
    }

    pub(super) fn on_dial(&mut self, outcome: DialOutcome) {
        match outcome.target {
            DialTarget::Peer(peer) => self.on_peer_dial(peer, outcome.result),
            DialTarget::Resolve(addr) => self.on_resolve(addr, outcome.result),
        }
    }

    fn on_peer_dial(&mut self, peer: NodeId, result: DialResult) {
        self.dialing.remove(&peer);
        let abandoned = self.abandoned.remove(&peer);
        let connected = self.transport.is_connected(&peer);
        let up = self.up.contains(&peer);
        match result {
            DialResult::Connected(_) | DialResult::Abandoned if abandoned => {
                if connected {
                    // Its PeerDown answers the abandoned Connect.
                    self.disconnect(peer);
                } else if !up {
                    self.feed(proto::Event::PeerDown(peer));
                }
            }
            DialResult::Connected(_) if up => {}
            DialResult::Connected(_) if connected => {
                self.up.insert(peer);
                self.feed(proto::Event::PeerUp(peer));
            }
            DialResult::Connected(_) | DialResult::Abandoned => {
                if !up {
                    self.feed(proto::Event::PeerDown(peer));
                }
            }
            DialResult::Failed(err) => {
                tracing::debug!(peer = %peer.short(), error = %err, "dial failed");
                // Up means an inbound connection from the peer already answered the Connect.
                if !up {
                    self.feed(proto::Event::PeerDown(peer));
                }
            }
        }
    }

    fn on_resolve(&mut self, addr: SocketAddr, result: DialResult) {
        let Some(pos) = self.bootstrap.iter().position(|b| b.addr == addr) else {
            return;
        };
        match result {
            DialResult::Connected(peer) => {
                self.bootstrap.remove(pos);
                tracing::info!(%addr, peer = %peer.short(), "bootstrap address answered");
                self.feed(proto::Event::Join(vec![PeerAddr::new(peer, addr)]));
            }
            DialResult::Failed(ConnectError::SelfConnection { .. }) => {
                self.bootstrap.remove(pos);
                tracing::debug!(%addr, "bootstrap address is this node; skipped");
            }
            DialResult::Failed(err) => {
                self.counters.bootstrap_failures += 1;
                let pending = &mut self.bootstrap[pos];
                pending.dialing = false;
                pending.failures = pending.failures.saturating_add(1);
                let delay = BOOTSTRAP_BACKOFF
                    .saturating_mul(1 << pending.failures.min(16))
                    .min(BOOTSTRAP_BACKOFF_MAX);
                pending.next_try = Instant::now() + delay;
                tracing::warn!(%addr, error = %err, retry_in_ms = delay.as_millis() as u64,
                    "bootstrap address unreachable");
            }
            DialResult::Abandoned => self.bootstrap[pos].dialing = false,
        }
    }
}
