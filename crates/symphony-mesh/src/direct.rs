//! Direct messages: one payload to one NodeId with an end-to-end receipt (design.md, The mesh:
//! "a receipt says how it went (loopback, direct, relayed) or why it failed"), as an IO-free
//! router that the node actor drives with events and `now`, like `proto`.
//!
//! Routing, as documented in docs/mesh.md ("Direct messages") and docs/wire.md:
//! - **To this node**: delivered to the local inbox at once; receipt [`Receipt::Loopback`].
//! - **To a connected node** (any live connection, not only the active view): sent on the
//!   direct stream; the addressee answers with a wire receipt, so [`Receipt::Direct`] means
//!   the addressee's node took the message into its inbox.
//! - **Otherwise**: sent to every active-view neighbour (at most the active view's capacity,
//!   5 by default) with `hops_left = max_hops - 1`. A relay that sees a copy for the first
//!   time forwards it to the addressee if it is connected to it (`hops_left >= 1`), else to
//!   its own neighbours except the previous hop (`hops_left >= 2`), else answers `HopLimit`
//!   or `NoRoute`. Copies are deduplicated by `(sender, id)` at relays and at the addressee;
//!   a copy seen before is answered `NoRoute`, so every branch closes and messages never
//!   loop. The addressee delivers the first copy and answers `Relayed`; relays pass the first
//!   success back along the reverse path, and when every branch they opened has failed they
//!   pass the failure back. The sender reports [`Receipt::Relayed`] with the neighbour whose
//!   branch succeeded, or [`DirectError::Unreachable`] once every branch failed.
//! - Silence never becomes a failure: branch state expires after `timeout` and the sender
//!   reports [`DirectError::Timeout`] (the message may still have arrived).
//!
//! No node is dialled for a direct message: the transport keeps connections alive, so a dial
//! per message would leave connections outside membership's control. Every table is bounded
//! (`max_pending`, `max_relays`, the dedupe cache).
//!
//! The sender's `from` is asserted by the sender; a relayed message is only as trustworthy as
//! the (allowlisted) relays it crossed. Only a [`Receipt::Direct`] arrival proves `from` by
//! TLS.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::NodeId;
use crate::proto::cache::{ExpiringCache, Limits};
use crate::proto::wire::{self, DirectMessage, ReceiptStatus, WireMessage};

/// Direct-message settings. Durations are wall-clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectConfig {
    /// How long a sender waits for a receipt, and how long relays keep branch state.
    /// Default 5 s.
    pub timeout: Duration,
    /// Longest path in links, sender to addressee (1 = direct only, 2 = one relay...).
    /// Default 3.
    pub max_hops: u8,
    /// This node's own messages awaiting a receipt; more are refused with
    /// [`DirectError::TooManyPending`]. Default 1024.
    pub max_pending: usize,
    /// Relayed messages awaiting their branches' answers; further copies are answered
    /// `NoRoute` and counted. Default 4096.
    pub max_relays: usize,
    /// How long `(sender, id)` pairs are remembered for dedupe. Default 120 s.
    pub dedupe_ttl: Duration,
    /// Dedupe entries kept at most. Default 65 536.
    pub dedupe_max: usize,
}

impl Default for DirectConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_hops: 3,
            max_pending: 1024,
            max_relays: 4096,
            dedupe_ttl: Duration::from_secs(120),
            dedupe_max: 65_536,
        }
    }
}

/// How a direct message reached its addressee (design.md, The mesh).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Receipt {
    /// Addressed to this node: short-circuited locally.
    Loopback,
    /// Over a direct connection between sender and addressee.
    Direct,
    /// Through at least one relay; `via` is the sender's neighbour whose branch delivered it
    /// (for an arrival: the neighbour it arrived from).
    Relayed {
        /// The first relay (sender side) or the last relay (addressee side).
        via: NodeId,
    },
}

/// Why a branch of the relay flood could not reach the addressee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnreachableReason {
    /// This node has no connection to the addressee and no neighbours to relay through.
    NoNeighbours,
    /// Every branch ended at relays with no connection to the addressee.
    NoRoute,
    /// Some branch ran out of hops (`max_hops`); a longer budget might reach it.
    HopLimit,
}

impl fmt::Display for UnreachableReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoNeighbours => "no connection and no neighbours to relay through",
            Self::NoRoute => "no relay is connected to it",
            Self::HopLimit => "not within the hop limit",
        })
    }
}

/// Why a direct message (or a request) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectError {
    /// The payload exceeds [`wire::MAX_PAYLOAD_LEN`].
    #[error("direct message of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Payload length in bytes.
        len: usize,
        /// The maximum in bytes.
        max: usize,
    },
    /// Every route tried failed.
    #[error("node {node} is unreachable: {reason}")]
    Unreachable {
        /// The addressee.
        node: NodeId,
        /// Why.
        reason: UnreachableReason,
    },
    /// The addressee's inbound queue was full; it dropped the message and said so.
    #[error("node {node} refused the direct message: its inbound queue is full")]
    Overloaded {
        /// The addressee.
        node: NodeId,
    },
    /// No receipt (or, for a request, no response) within the timeout.
    #[error("no answer from node {node} within {after_ms} ms")]
    Timeout {
        /// The addressee.
        node: NodeId,
        /// The timeout in milliseconds.
        after_ms: u64,
    },
    /// `max_pending` messages already await receipts.
    #[error("{max} direct messages already await receipts")]
    TooManyPending {
        /// The configured bound.
        max: usize,
    },
    /// The node is shutting down (or has shut down).
    #[error("the mesh node is shutting down")]
    ShuttingDown,
}

/// Direct-message counters since start (diagnostics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirectCounters {
    /// Messages this node sent (loopback included).
    pub sent: u64,
    /// Own messages delivered to this node's inbox (loopback).
    pub loopback: u64,
    /// Own messages confirmed by a `Direct` receipt.
    pub receipts_direct: u64,
    /// Own messages confirmed by a `Relayed` receipt.
    pub receipts_relayed: u64,
    /// Own messages every route failed for.
    pub unreachable: u64,
    /// Own messages the addressee refused with a full inbound queue.
    pub overloaded: u64,
    /// Own messages without a receipt within `timeout`.
    pub timeouts: u64,
    /// Sends refused before leaving: payload too large or too many pending.
    pub refused: u64,
    /// Messages addressed to this node and delivered to its inbox.
    pub received: u64,
    /// Messages addressed to this node refused because its inbox was full.
    pub inbox_full: u64,
    /// Copies seen before (at a relay or the addressee), answered `NoRoute`.
    pub duplicates: u64,
    /// Copies this node forwarded as a relay.
    pub forwarded: u64,
    /// Copies not relayed because `hops_left` was exhausted.
    pub hop_limit: u64,
    /// Copies not relayed because `max_relays` branches were open.
    pub relay_table_full: u64,
    /// Branch sends the transport refused (queue full, stream closed), counted as failed
    /// branches.
    pub send_failures: u64,
    /// Receipts that matched nothing pending (late, or from a peer not on the branch).
    pub stray_receipts: u64,
}

/// A direct message that reached this node's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Arrival {
    pub from: NodeId,
    pub id: u64,
    pub in_reply_to: Option<u64>,
    pub payload: Bytes,
    pub receipt: Receipt,
}

/// What the router asks the actor to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send on the direct stream of a connected peer.
    Send { to: NodeId, message: WireMessage },
    /// One of this node's messages has its outcome.
    Complete {
        id: u64,
        result: Result<Receipt, DirectError>,
    },
}

/// What the router needs to know about the node's connections.
pub(crate) trait Links {
    /// Whether a live connection to `peer` exists.
    fn is_connected(&self, peer: &NodeId) -> bool;
    /// The active view.
    fn neighbours(&self) -> Vec<NodeId>;
}

type Key = (NodeId, u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Deadline {
    Own(u64),
    Relay(Key),
}

#[derive(Debug)]
struct Branches {
    open: Vec<NodeId>,
    /// The most hopeful failure seen so far: `HopLimit` beats `NoRoute`.
    failure: ReceiptStatus,
}

impl Branches {
    fn new(open: Vec<NodeId>) -> Self {
        Self {
            open,
            failure: ReceiptStatus::NoRoute,
        }
    }

    /// Closes `peer`'s branch with `status`; false when `peer` had no open branch.
    fn fail(&mut self, peer: &NodeId, status: ReceiptStatus) -> bool {
        let Some(pos) = self.open.iter().position(|p| p == peer) else {
            return false;
        };
        self.open.swap_remove(pos);
        if status == ReceiptStatus::HopLimit {
            self.failure = ReceiptStatus::HopLimit;
        }
        true
    }
}

#[derive(Debug)]
struct Own {
    to: NodeId,
    branches: Branches,
}

#[derive(Debug)]
struct Relay {
    prev: NodeId,
    branches: Branches,
}

/// Estimated bytes of one dedupe entry (key in map and queue, timestamps, overhead).
const SEEN_ENTRY_BYTES: usize = 2 * 40 + 16 + 32;

/// The direct-message state of one node.
#[derive(Debug)]
pub(crate) struct Router {
    me: NodeId,
    config: DirectConfig,
    next_id: u64,
    own: HashMap<u64, Own>,
    relays: HashMap<Key, Relay>,
    seen: ExpiringCache<Key, ()>,
    deadlines: BinaryHeap<Reverse<(Instant, Deadline)>>,
    counters: DirectCounters,
}

impl Router {
    /// A router for node `me`; ids start at `first_id` (random per incarnation, so a
    /// restarted node's ids do not collide with its previous run's in dedupe caches).
    pub fn new(me: NodeId, config: DirectConfig, first_id: u64) -> Self {
        let seen = ExpiringCache::new(Limits {
            ttl: config.dedupe_ttl,
            max_entries: config.dedupe_max,
            max_bytes: config.dedupe_max.saturating_mul(SEEN_ENTRY_BYTES),
        });
        Self {
            me,
            config,
            next_id: first_id,
            own: HashMap::new(),
            relays: HashMap::new(),
            seen,
            deadlines: BinaryHeap::new(),
            counters: DirectCounters::default(),
        }
    }

    pub fn counters(&self) -> DirectCounters {
        self.counters
    }

    /// (own messages pending, relay entries open, dedupe entries).
    pub fn depths(&self) -> (usize, usize, usize) {
        (self.own.len(), self.relays.len(), self.seen.len())
    }

    /// When [`Router::on_tick`] next has work, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    /// Sends `payload` to `to`. Returns the message id and the actions; the outcome comes as
    /// an [`Action::Complete`] for that id, possibly among these actions.
    pub fn send(
        &mut self,
        to: NodeId,
        payload: Bytes,
        in_reply_to: Option<u64>,
        now: Instant,
        links: &impl Links,
        inbox: &mut impl FnMut(Arrival) -> bool,
    ) -> (u64, Vec<Action>) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut out = Vec::new();
        let mut complete = |result| out.push(Action::Complete { id, result });
        if payload.len() > wire::MAX_PAYLOAD_LEN {
            self.counters.refused += 1;
            complete(Err(DirectError::TooLarge {
                len: payload.len(),
                max: wire::MAX_PAYLOAD_LEN,
            }));
            return (id, out);
        }
        if self.own.len() >= self.config.max_pending {
            self.counters.refused += 1;
            complete(Err(DirectError::TooManyPending {
                max: self.config.max_pending,
            }));
            return (id, out);
        }
        self.counters.sent += 1;
        self.seen.insert((self.me, id), (), SEEN_ENTRY_BYTES, now);
        if to == self.me {
            let arrival = Arrival {
                from: self.me,
                id,
                in_reply_to,
                payload,
                receipt: Receipt::Loopback,
            };
            if inbox(arrival) {
                self.counters.loopback += 1;
                complete(Ok(Receipt::Loopback));
            } else {
                self.counters.overloaded += 1;
                complete(Err(DirectError::Overloaded { node: to }));
            }
            return (id, out);
        }
        let branches = if links.is_connected(&to) {
            vec![to]
        } else {
            links
                .neighbours()
                .into_iter()
                .filter(|p| *p != to)
                .collect()
        };
        if branches.is_empty() {
            self.counters.unreachable += 1;
            complete(Err(DirectError::Unreachable {
                node: to,
                reason: UnreachableReason::NoNeighbours,
            }));
            return (id, out);
        }
        let message = DirectMessage {
            from: self.me,
            to,
            id,
            hops_left: self.config.max_hops.saturating_sub(1),
            in_reply_to,
            payload,
        };
        for peer in &branches {
            out.push(Action::Send {
                to: *peer,
                message: WireMessage::Direct(message.clone()),
            });
        }
        self.own.insert(
            id,
            Own {
                to,
                branches: Branches::new(branches),
            },
        );
        self.deadlines
            .push(Reverse((now + self.config.timeout, Deadline::Own(id))));
        (id, out)
    }

    /// A `Direct` frame arrived from the connected peer `prev`.
    pub fn on_direct(
        &mut self,
        prev: NodeId,
        message: DirectMessage,
        now: Instant,
        links: &impl Links,
        inbox: &mut impl FnMut(Arrival) -> bool,
    ) -> Vec<Action> {
        let key = (message.from, message.id);
        let answer = |status| Action::Send {
            to: prev,
            message: WireMessage::Receipt(wire::Receipt {
                origin: message.from,
                id: message.id,
                status,
            }),
        };
        if !self.seen.insert(key, (), SEEN_ENTRY_BYTES, now) {
            self.counters.duplicates += 1;
            return vec![answer(ReceiptStatus::NoRoute)];
        }
        if message.to == self.me {
            let (receipt, status) = if prev == message.from {
                (Receipt::Direct, ReceiptStatus::Direct)
            } else {
                (Receipt::Relayed { via: prev }, ReceiptStatus::Relayed)
            };
            let arrival = Arrival {
                from: message.from,
                id: message.id,
                in_reply_to: message.in_reply_to,
                payload: message.payload.clone(),
                receipt,
            };
            if inbox(arrival) {
                self.counters.received += 1;
                return vec![answer(status)];
            }
            self.counters.inbox_full += 1;
            return vec![answer(ReceiptStatus::Overloaded)];
        }
        self.relay(prev, message, now, links)
    }

    fn relay(
        &mut self,
        prev: NodeId,
        message: DirectMessage,
        now: Instant,
        links: &impl Links,
    ) -> Vec<Action> {
        let key = (message.from, message.id);
        let answer = |status| {
            vec![Action::Send {
                to: prev,
                message: WireMessage::Receipt(wire::Receipt {
                    origin: message.from,
                    id: message.id,
                    status,
                }),
            }]
        };
        if self.relays.len() >= self.config.max_relays {
            self.counters.relay_table_full += 1;
            return answer(ReceiptStatus::NoRoute);
        }
        let branches: Vec<NodeId> = if message.hops_left >= 1 && links.is_connected(&message.to) {
            vec![message.to]
        } else if message.hops_left >= 2 {
            links
                .neighbours()
                .into_iter()
                .filter(|p| *p != prev && *p != message.from && *p != message.to)
                .collect()
        } else {
            self.counters.hop_limit += 1;
            return answer(ReceiptStatus::HopLimit);
        };
        if branches.is_empty() {
            return answer(ReceiptStatus::NoRoute);
        }
        let forwarded = DirectMessage {
            hops_left: message.hops_left - 1,
            ..message
        };
        let out = branches
            .iter()
            .map(|peer| Action::Send {
                to: *peer,
                message: WireMessage::Direct(forwarded.clone()),
            })
            .collect();
        self.counters.forwarded += branches.len() as u64;
        self.relays.insert(
            key,
            Relay {
                prev,
                branches: Branches::new(branches),
            },
        );
        self.deadlines
            .push(Reverse((now + self.config.timeout, Deadline::Relay(key))));
        out
    }

    /// A `Receipt` frame arrived from the connected peer `from`.
    pub fn on_receipt(&mut self, from: NodeId, receipt: wire::Receipt) -> Vec<Action> {
        let key = (receipt.origin, receipt.id);
        let success = matches!(
            receipt.status,
            ReceiptStatus::Direct | ReceiptStatus::Relayed | ReceiptStatus::Overloaded
        );
        if receipt.origin == self.me {
            return self.own_answer(from, receipt.id, receipt.status);
        }
        let Some(relay) = self.relays.get_mut(&key) else {
            self.counters.stray_receipts += 1;
            return Vec::new();
        };
        if !relay.branches.open.contains(&from) {
            self.counters.stray_receipts += 1;
            return Vec::new();
        }
        if success {
            let prev = relay.prev;
            self.relays.remove(&key);
            // Past the first relay the message was relayed, whatever the last link was.
            let status = match receipt.status {
                ReceiptStatus::Direct => ReceiptStatus::Relayed,
                other => other,
            };
            return vec![Action::Send {
                to: prev,
                message: WireMessage::Receipt(wire::Receipt { status, ..receipt }),
            }];
        }
        self.relay_branch_failed(key, &from, receipt.status)
    }

    fn own_answer(&mut self, from: NodeId, id: u64, status: ReceiptStatus) -> Vec<Action> {
        let Some(own) = self.own.get_mut(&id) else {
            self.counters.stray_receipts += 1;
            return Vec::new();
        };
        if !own.branches.open.contains(&from) {
            self.counters.stray_receipts += 1;
            return Vec::new();
        }
        let to = own.to;
        let result = match status {
            ReceiptStatus::Direct if from == to => Ok(Receipt::Direct),
            ReceiptStatus::Direct | ReceiptStatus::Relayed => Ok(Receipt::Relayed { via: from }),
            ReceiptStatus::Overloaded => Err(DirectError::Overloaded { node: to }),
            ReceiptStatus::NoRoute | ReceiptStatus::HopLimit | ReceiptStatus::Loopback => {
                own.branches.fail(&from, status);
                if !own.branches.open.is_empty() {
                    return Vec::new();
                }
                let reason = match own.branches.failure {
                    ReceiptStatus::HopLimit => UnreachableReason::HopLimit,
                    _ => UnreachableReason::NoRoute,
                };
                Err(DirectError::Unreachable { node: to, reason })
            }
        };
        self.own.remove(&id);
        match &result {
            Ok(Receipt::Direct) => self.counters.receipts_direct += 1,
            Ok(_) => self.counters.receipts_relayed += 1,
            Err(DirectError::Overloaded { .. }) => self.counters.overloaded += 1,
            Err(_) => self.counters.unreachable += 1,
        }
        vec![Action::Complete { id, result }]
    }

    fn relay_branch_failed(
        &mut self,
        key: Key,
        peer: &NodeId,
        status: ReceiptStatus,
    ) -> Vec<Action> {
        let Some(relay) = self.relays.get_mut(&key) else {
            return Vec::new();
        };
        if !relay.branches.fail(peer, status) || !relay.branches.open.is_empty() {
            return Vec::new();
        }
        let (prev, failure) = (relay.prev, relay.branches.failure);
        self.relays.remove(&key);
        vec![Action::Send {
            to: prev,
            message: WireMessage::Receipt(wire::Receipt {
                origin: key.0,
                id: key.1,
                status: failure,
            }),
        }]
    }

    /// The transport refused a `Direct` frame for `peer` (queue full, not connected, stream
    /// closed): that branch failed.
    pub fn branch_failed(&mut self, peer: NodeId, message: &DirectMessage) -> Vec<Action> {
        self.counters.send_failures += 1;
        if message.from == self.me {
            self.own_answer(peer, message.id, ReceiptStatus::NoRoute)
        } else {
            self.relay_branch_failed((message.from, message.id), &peer, ReceiptStatus::NoRoute)
        }
    }

    /// The last connection to `peer` closed: its open branches failed, and relay entries it
    /// was the previous hop of can no longer be answered.
    pub fn on_peer_down(&mut self, peer: NodeId) -> Vec<Action> {
        self.relays.retain(|_, r| r.prev != peer);
        let own: Vec<u64> = self
            .own
            .iter()
            .filter(|(_, o)| o.branches.open.contains(&peer))
            .map(|(id, _)| *id)
            .collect();
        let relays: Vec<Key> = self
            .relays
            .iter()
            .filter(|(_, r)| r.branches.open.contains(&peer))
            .map(|(key, _)| *key)
            .collect();
        let mut out = Vec::new();
        for id in own {
            out.extend(self.own_answer(peer, id, ReceiptStatus::NoRoute));
        }
        for key in relays {
            out.extend(self.relay_branch_failed(key, &peer, ReceiptStatus::NoRoute));
        }
        out
    }

    /// Expires what is due at `now`: own messages time out, relay entries are forgotten.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        self.seen.expire(now);
        let mut out = Vec::new();
        while let Some(Reverse((at, deadline))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            match deadline {
                Deadline::Own(id) => {
                    if let Some(own) = self.own.remove(&id) {
                        self.counters.timeouts += 1;
                        let after_ms =
                            u64::try_from(self.config.timeout.as_millis()).unwrap_or(u64::MAX);
                        out.push(Action::Complete {
                            id,
                            result: Err(DirectError::Timeout {
                                node: own.to,
                                after_ms,
                            }),
                        });
                    }
                }
                Deadline::Relay(key) => {
                    self.relays.remove(&key);
                }
            }
        }
        out
    }

    /// Fails every pending message with [`DirectError::ShuttingDown`].
    pub fn shut_down(&mut self) -> Vec<Action> {
        self.deadlines.clear();
        self.relays.clear();
        self.own
            .drain()
            .map(|(id, _)| Action::Complete {
                id,
                result: Err(DirectError::ShuttingDown),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
