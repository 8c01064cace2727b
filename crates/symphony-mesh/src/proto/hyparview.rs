//! HyParView membership (Leitão, Pereira, Rodrigues, DSN 2007), with two production rules the
//! paper leaves open: re-joins that settle, and re-merging an overlay split by a partition.
//!
//! - **Views** (§3): a small *active view* of connected neighbours that gossip flows over and
//!   a larger *passive view* of addresses used to repair it.
//! - **Join** (§4.1, Algorithm 1): the contact adds the joiner to its active view and sends
//!   `ForwardJoin` random walks of length ARWL to its other neighbours; a walk adds the joiner
//!   to the passive view at hop PRWL and to the active view where it ends.
//! - **Active view repair** (§4.3): a neighbour that goes down is replaced from the passive
//!   view with a `Neighbor` request, high priority (always accepted) when the active view is
//!   empty, low priority (accepted only with a free slot) otherwise.
//! - **Passive view maintenance** (§4.4): periodic `Shuffle` random walks exchange samples of
//!   both views; the receiver answers with a sample of its passive view.
//!
//! **Settling re-joins.** Every failed dial, unanswered request or rejection backs the
//! address off exponentially (`backoff_base` doubling to `backoff_max`, ×[1, 1.5) jitter).
//! Requests in flight count against free slots, so a node never asks more peers than it has
//! room for and never has to drop a neighbour that accepted it; only high-priority requests
//! (empty view, joins, merges) evict. A node with a full active view sends no requests, so in
//! steady state the active views do not change.
//!
//! **Re-merge after a partition.** A neighbour or passive entry that fails is not forgotten:
//! it moves to the bounded *lost list* (bootstrap addresses included) and is probed with the
//! same backoff — one probe in flight per node, at most one per tick. A lost peer that answers
//! is reachable again, which after a partition longer than the idle timeout means the halves
//! can see each other again: the node sends it a high-priority `Neighbor` that it must accept
//! — a *merge link* across the healed cut — at most once per `merge_cooldown` (high even with
//! free slots: the far side's views are full and would refuse a low-priority request, which
//! would strand a small island). Within the cooldown, a lost peer that answers gets a
//! low-priority request if there is room, else returns to the passive view. Lost peers heard
//! from through the overlay (they contacted us, or their
//! shuffle, join or gossip reached us) are back in our component and return to the passive
//! view without a probe, which keeps merge links few. Lost entries are not expired by age —
//! a partition may last longer than any retention, and an island that forgot the other side
//! could never re-merge — but bounded by `lost_capacity` (the oldest non-bootstrap entry
//! goes first) and probed with a backoff capped at `lost_backoff_max`. With no failures there
//! are no lost entries, no probes and no merge links.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use super::{Command, MembershipConfig, MessageKind, Outbox, PeerAddr};
use crate::NodeId;

/// How strongly a `Neighbor` request asks to be added (HyParView §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Accepted only if the receiver's active view has a free slot.
    Low,
    /// Always accepted, evicting a random neighbour if needed: the requester has no
    /// neighbours, ends a join walk, or is making a merge link.
    High,
}

/// A membership message (HyParView §4). The sender's identity comes from the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipMessage {
    /// Join the overlay through the receiver (§4.1). Carries the joiner's listen address.
    Join {
        /// The joiner's advertised listen address.
        addr: SocketAddr,
    },
    /// A join random walk (§4.1).
    ForwardJoin {
        /// The joining node.
        joiner: PeerAddr,
        /// Remaining hops; clamped to ARWL by the receiver.
        ttl: u8,
    },
    /// Ask to become neighbours (§4.3).
    Neighbor {
        /// The requester's advertised listen address.
        addr: SocketAddr,
        /// How strongly it asks.
        priority: Priority,
    },
    /// Answer to `Neighbor` or `Join`: whether the receiver is now in the sender's active
    /// view.
    NeighborReply {
        /// True when accepted.
        accepted: bool,
    },
    /// A shuffle random walk carrying a sample of the origin's views (§4.4).
    Shuffle {
        /// The node that started the shuffle.
        origin: PeerAddr,
        /// Remaining hops; clamped to ARWL by the receiver.
        ttl: u8,
        /// Sample of the origin's active and passive views (origin excluded).
        nodes: Vec<PeerAddr>,
    },
    /// Answer to a shuffle: a sample of the receiver's passive view (§4.4).
    ShuffleReply {
        /// The sample.
        nodes: Vec<PeerAddr>,
    },
    /// The sender removed the receiver from its active view (§4.1, §4.3).
    Disconnect,
}

impl MembershipMessage {
    /// The message kind, for counters.
    pub fn kind(&self) -> MessageKind {
        match self {
            Self::Join { .. } => MessageKind::Join,
            Self::ForwardJoin { .. } => MessageKind::ForwardJoin,
            Self::Neighbor { .. } => MessageKind::Neighbor,
            Self::NeighborReply { .. } => MessageKind::NeighborReply,
            Self::Shuffle { .. } => MessageKind::Shuffle,
            Self::ShuffleReply { .. } => MessageKind::ShuffleReply,
            Self::Disconnect => MessageKind::Disconnect,
        }
    }
}

/// Membership events counted since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MembershipCounters {
    /// Dials that failed or connections that died while a request was pending.
    pub dial_failures: u64,
    /// Requests unanswered within `request_timeout`.
    pub request_timeouts: u64,
    /// Low-priority requests we rejected (active view full).
    pub rejected_requests: u64,
    /// Our requests that peers rejected.
    pub rejected_by_peers: u64,
    /// Neighbours we removed to make room for a high-priority request.
    pub evictions: u64,
    /// Probes of lost peers started.
    pub lost_probes: u64,
    /// Probes of lost peers that connected.
    pub lost_probe_successes: u64,
    /// Merge links (high-priority requests to a lost peer that answered again).
    pub merge_links: u64,
    /// Joins sent through bootstrap addresses.
    pub joins: u64,
    /// Shuffles started.
    pub shuffles: u64,
    /// Dials skipped because `max_pending` requests were in flight.
    pub dials_skipped: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Intent {
    Join,
    Neighbor(Priority),
    Probe,
    Reply(Vec<PeerAddr>),
}

#[derive(Clone, Debug)]
struct Pending {
    addr: PeerAddr,
    intent: Intent,
    since: Instant,
    sent: bool,
}

#[derive(Clone, Copy, Debug)]
struct Backoff {
    failures: u32,
    until: Instant,
}

#[derive(Clone, Copy, Debug)]
struct LostPeer {
    addr: PeerAddr,
    since: Instant,
}

/// The membership state of one node.
#[derive(Debug)]
pub(crate) struct Membership {
    me: PeerAddr,
    config: MembershipConfig,
    rng: StdRng,
    active: Vec<PeerAddr>,
    passive: Vec<PeerAddr>,
    lost: Vec<LostPeer>,
    bootstrap: Vec<PeerAddr>,
    backoff: BTreeMap<NodeId, Backoff>,
    pending: BTreeMap<NodeId, Pending>,
    connected: BTreeSet<NodeId>,
    closing: BTreeSet<NodeId>,
    shuffled: Vec<NodeId>,
    next_shuffle: Option<Instant>,
    last_merge: Option<Instant>,
    counters: MembershipCounters,
}

impl Membership {
    pub fn new(me: PeerAddr, config: MembershipConfig, seed: u64) -> Self {
        Self {
            me,
            config,
            rng: StdRng::seed_from_u64(seed),
            active: Vec::new(),
            passive: Vec::new(),
            lost: Vec::new(),
            bootstrap: Vec::new(),
            backoff: BTreeMap::new(),
            pending: BTreeMap::new(),
            connected: BTreeSet::new(),
            closing: BTreeSet::new(),
            shuffled: Vec::new(),
            next_shuffle: None,
            last_merge: None,
            counters: MembershipCounters::default(),
        }
    }

    pub fn active(&self) -> &[PeerAddr] {
        &self.active
    }

    pub fn passive(&self) -> &[PeerAddr] {
        &self.passive
    }

    pub fn passive_len(&self) -> usize {
        self.passive.len()
    }

    pub fn lost_len(&self) -> usize {
        self.lost.len()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn counters(&self) -> MembershipCounters {
        self.counters
    }

    /// Records bootstrap addresses and joins through one of them if the active view is empty.
    pub fn join(&mut self, peers: Vec<PeerAddr>, now: Instant, out: &mut Outbox) {
        for peer in peers {
            if peer.id != self.me.id && !self.bootstrap.iter().any(|b| b.id == peer.id) {
                self.bootstrap.push(peer);
            }
        }
        self.rejoin(now, out);
    }

    pub fn on_peer_up(&mut self, peer: NodeId, now: Instant, out: &mut Outbox) {
        self.connected.insert(peer);
        self.on_connected(peer, now, out);
        self.revive(peer, now);
    }

    pub fn on_peer_down(&mut self, peer: NodeId, now: Instant, out: &mut Outbox) {
        self.connected.remove(&peer);
        self.closing.remove(&peer);
        if let Some(pending) = self.pending.remove(&peer) {
            self.counters.dial_failures += 1;
            self.fail(peer, now);
            if !matches!(pending.intent, Intent::Reply(_)) {
                self.mark_lost(pending.addr, now);
            }
        }
        if let Some(pos) = self.active.iter().position(|a| a.id == peer) {
            let addr = self.active.remove(pos);
            out.push(Command::NeighborDown(peer));
            tracing::debug!(peer = %peer.short(), "neighbour connection lost");
            self.fail(peer, now);
            self.mark_lost(addr, now);
        }
        self.refill(now, out);
    }

    /// Overlay evidence that `peer` is alive and in our component: a lost entry for it
    /// returns to the passive view without a probe. The evidence also shows that our
    /// component reaches across the failure again, so it starts the merge cooldown as if this
    /// node had made the merge link itself.
    pub fn revive(&mut self, peer: NodeId, now: Instant) {
        if let Some(pos) = self.lost.iter().position(|l| l.addr.id == peer) {
            let lost = self.lost.remove(pos);
            self.backoff.remove(&peer);
            self.add_passive(lost.addr);
            self.last_merge = Some(now);
        }
    }

    pub fn on_message(
        &mut self,
        from: NodeId,
        message: MembershipMessage,
        now: Instant,
        out: &mut Outbox,
    ) {
        self.revive(from, now);
        match message {
            MembershipMessage::Join { addr } => self.on_join(PeerAddr::new(from, addr), out),
            MembershipMessage::ForwardJoin { joiner, ttl } => {
                self.on_forward_join(from, joiner, ttl, now, out);
            }
            MembershipMessage::Neighbor { addr, priority } => {
                self.on_neighbor(PeerAddr::new(from, addr), priority, out);
            }
            MembershipMessage::NeighborReply { accepted } => {
                self.on_neighbor_reply(from, accepted, now, out);
            }
            MembershipMessage::Shuffle { origin, ttl, nodes } => {
                self.on_shuffle(from, origin, ttl, nodes, now, out);
            }
            MembershipMessage::ShuffleReply { nodes } => {
                let prefer = std::mem::take(&mut self.shuffled);
                self.integrate(&nodes, &prefer);
            }
            MembershipMessage::Disconnect => self.on_disconnect(from, now, out),
        }
    }

    /// The periodic tick: expire requests, repair the active view, probe one lost peer,
    /// shuffle when due.
    pub fn on_tick(&mut self, now: Instant, out: &mut Outbox) {
        self.expire_pending(now, out);
        self.refill(now, out);
        self.probe_lost(now, out);
        self.maybe_shuffle(now, out);
        let (passive, lost, bootstrap, pending) =
            (&self.passive, &self.lost, &self.bootstrap, &self.pending);
        self.backoff.retain(|id, _| {
            pending.contains_key(id)
                || passive.iter().any(|p| p.id == *id)
                || lost.iter().any(|l| l.addr.id == *id)
                || bootstrap.iter().any(|b| b.id == *id)
        });
    }

    fn on_join(&mut self, joiner: PeerAddr, out: &mut Outbox) {
        if joiner.id == self.me.id {
            return;
        }
        if self.closing.contains(&joiner.id) {
            out.send_membership(
                joiner.id,
                MembershipMessage::NeighborReply { accepted: false },
            );
            return;
        }
        let already = self.is_active(&joiner.id);
        self.add_active(joiner, out);
        out.send_membership(
            joiner.id,
            MembershipMessage::NeighborReply { accepted: true },
        );
        if already {
            return;
        }
        let ttl = self.config.arwl;
        for peer in self.active.iter().filter(|a| a.id != joiner.id) {
            out.send_membership(peer.id, MembershipMessage::ForwardJoin { joiner, ttl });
        }
    }

    fn on_forward_join(
        &mut self,
        from: NodeId,
        joiner: PeerAddr,
        ttl: u8,
        now: Instant,
        out: &mut Outbox,
    ) {
        if joiner.id == self.me.id || self.is_active(&joiner.id) {
            return;
        }
        self.revive(joiner.id, now);
        let ttl = ttl.min(self.config.arwl);
        let next = self
            .active
            .iter()
            .filter(|a| a.id != from && a.id != joiner.id)
            .copied()
            .collect::<Vec<_>>()
            .choose(&mut self.rng)
            .copied();
        match next {
            Some(next) if ttl > 0 && self.active.len() > 1 => {
                if ttl == self.config.prwl {
                    self.add_passive(joiner);
                }
                let forwarded = MembershipMessage::ForwardJoin {
                    joiner,
                    ttl: ttl - 1,
                };
                out.send_membership(next.id, forwarded);
            }
            _ => self.dial(joiner, Intent::Neighbor(Priority::High), now, out),
        }
    }

    fn on_neighbor(&mut self, peer: PeerAddr, priority: Priority, out: &mut Outbox) {
        let accepted = if self.is_active(&peer.id) {
            true
        } else if self.closing.contains(&peer.id) {
            false
        } else {
            priority == Priority::High || self.free_slots() > 0
        };
        if accepted {
            self.pending.remove(&peer.id);
            self.add_active(peer, out);
        } else {
            self.counters.rejected_requests += 1;
            self.add_passive(peer);
        }
        out.send_membership(peer.id, MembershipMessage::NeighborReply { accepted });
    }

    fn on_neighbor_reply(&mut self, from: NodeId, accepted: bool, now: Instant, out: &mut Outbox) {
        let pending = self.pending.remove(&from);
        if self.is_active(&from) {
            return;
        }
        let Some(pending) = pending else {
            if accepted {
                // An acceptance we did not ask for (or gave up on): undo it on the other end.
                out.send_membership(from, MembershipMessage::Disconnect);
                self.release(from, out);
            }
            return;
        };
        if !accepted {
            self.counters.rejected_by_peers += 1;
            self.fail(from, now);
            self.add_passive(pending.addr);
            self.release(from, out);
            self.refill(now, out);
            return;
        }
        self.backoff.remove(&from);
        let forced = matches!(
            pending.intent,
            Intent::Join | Intent::Neighbor(Priority::High)
        );
        if forced || self.active.len() < self.config.active_capacity {
            self.add_active(pending.addr, out);
        } else {
            out.send_membership(from, MembershipMessage::Disconnect);
            self.add_passive(pending.addr);
            self.release(from, out);
        }
    }

    fn on_shuffle(
        &mut self,
        from: NodeId,
        origin: PeerAddr,
        ttl: u8,
        nodes: Vec<PeerAddr>,
        now: Instant,
        out: &mut Outbox,
    ) {
        if origin.id == self.me.id {
            return;
        }
        self.revive(origin.id, now);
        let ttl = ttl.min(self.config.arwl).saturating_sub(1);
        if ttl > 0 && self.active.len() > 1 {
            let candidates: Vec<NodeId> = self
                .active
                .iter()
                .map(|a| a.id)
                .filter(|id| *id != from && *id != origin.id)
                .collect();
            if let Some(next) = candidates.choose(&mut self.rng) {
                out.send_membership(*next, MembershipMessage::Shuffle { origin, ttl, nodes });
                return;
            }
        }
        let reply: Vec<PeerAddr> = self
            .passive
            .iter()
            .filter(|p| p.id != origin.id)
            .copied()
            .collect::<Vec<_>>()
            .choose_multiple(&mut self.rng, nodes.len() + 1)
            .copied()
            .collect();
        let reply_ids: Vec<NodeId> = reply.iter().map(|p| p.id).collect();
        if self.connected.contains(&origin.id) && !self.closing.contains(&origin.id) {
            out.send_membership(origin.id, MembershipMessage::ShuffleReply { nodes: reply });
        } else {
            self.dial(origin, Intent::Reply(reply), now, out);
        }
        let mut received = nodes;
        received.push(origin);
        self.integrate(&received, &reply_ids);
    }

    fn on_disconnect(&mut self, from: NodeId, now: Instant, out: &mut Outbox) {
        if let Some(pos) = self.active.iter().position(|a| a.id == from) {
            let addr = self.active.remove(pos);
            out.push(Command::NeighborDown(from));
            self.add_passive(addr);
            self.release(from, out);
            self.refill(now, out);
        }
    }

    fn on_connected(&mut self, peer: NodeId, now: Instant, out: &mut Outbox) {
        let Some(pending) = self.pending.get_mut(&peer) else {
            return;
        };
        if pending.sent {
            return;
        }
        pending.sent = true;
        let (addr, intent) = (pending.addr, pending.intent.clone());
        let me = self.me.addr;
        match intent {
            Intent::Join => out.send_membership(peer, MembershipMessage::Join { addr: me }),
            Intent::Neighbor(priority) => {
                out.send_membership(peer, MembershipMessage::Neighbor { addr: me, priority });
            }
            Intent::Reply(nodes) => {
                self.pending.remove(&peer);
                out.send_membership(peer, MembershipMessage::ShuffleReply { nodes });
                self.release(peer, out);
            }
            Intent::Probe => {
                self.pending.remove(&peer);
                self.probe_answered(addr, now, out);
            }
        }
    }

    /// A lost peer is reachable again: make a merge link (high priority) unless this node made
    /// one within `merge_cooldown`; otherwise ask with low priority if there is room, or keep
    /// it as a passive entry. High priority even with free slots, because after a partition
    /// the far side's views are full and would refuse a low-priority request.
    fn probe_answered(&mut self, addr: PeerAddr, now: Instant, out: &mut Outbox) {
        self.counters.lost_probe_successes += 1;
        self.lost.retain(|l| l.addr.id != addr.id);
        self.backoff.remove(&addr.id);
        if self.is_active(&addr.id) {
            return;
        }
        let merge_due = self
            .last_merge
            .is_none_or(|at| now.saturating_duration_since(at) >= self.config.merge_cooldown);
        if merge_due {
            self.last_merge = Some(now);
            self.counters.merge_links += 1;
            tracing::debug!(peer = %addr.id.short(), "lost peer answers again: merge link");
            self.dial(addr, Intent::Neighbor(Priority::High), now, out);
        } else if self.free_slots() > 0 {
            self.dial(addr, Intent::Neighbor(Priority::Low), now, out);
        } else {
            self.add_passive(addr);
            self.release(addr.id, out);
        }
    }

    fn expire_pending(&mut self, now: Instant, out: &mut Outbox) {
        let timeout = self.config.request_timeout;
        let expired: Vec<NodeId> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.since) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(pending) = self.pending.remove(&id) else {
                continue;
            };
            self.counters.request_timeouts += 1;
            self.fail(id, now);
            if pending.sent {
                // Connected but silent: alive, so keep it as a candidate after the backoff.
                if !matches!(pending.intent, Intent::Reply(_)) {
                    self.add_passive(pending.addr);
                }
            } else if !matches!(pending.intent, Intent::Reply(_)) {
                self.mark_lost(pending.addr, now);
            }
            // Also abandons a dial still in progress.
            self.release_or_abandon(id, pending.sent, out);
        }
    }

    fn release_or_abandon(&mut self, peer: NodeId, connected: bool, out: &mut Outbox) {
        if connected {
            self.release(peer, out);
        } else if !self.is_active(&peer) && self.closing.insert(peer) {
            out.push(Command::Disconnect(peer));
        }
    }

    /// Sends requests to passive peers for the free slots; joins through a bootstrap address
    /// when the node has no neighbours and nothing better to try.
    fn refill(&mut self, now: Instant, out: &mut Outbox) {
        let free = self.free_slots();
        if free > 0 {
            let mut candidates: Vec<PeerAddr> = self
                .passive
                .iter()
                .filter(|p| self.dialable(p.id, now))
                .copied()
                .collect();
            candidates.shuffle(&mut self.rng);
            for candidate in candidates.into_iter().take(free) {
                let high_pending = self
                    .pending
                    .values()
                    .any(|p| p.intent == Intent::Neighbor(Priority::High));
                let priority = if self.active.is_empty() && !high_pending {
                    Priority::High
                } else {
                    Priority::Low
                };
                self.dial(candidate, Intent::Neighbor(priority), now, out);
            }
        }
        if self.active.is_empty() {
            self.rejoin(now, out);
        }
    }

    fn rejoin(&mut self, now: Instant, out: &mut Outbox) {
        let requesting = self
            .pending
            .values()
            .any(|p| matches!(p.intent, Intent::Join | Intent::Neighbor(_)));
        if !self.active.is_empty() || requesting {
            return;
        }
        let candidates: Vec<PeerAddr> = self
            .bootstrap
            .iter()
            .filter(|b| self.dialable(b.id, now))
            .copied()
            .collect();
        if let Some(contact) = candidates.choose(&mut self.rng).copied() {
            self.counters.joins += 1;
            self.dial(contact, Intent::Join, now, out);
        }
    }

    fn probe_lost(&mut self, now: Instant, out: &mut Outbox) {
        if self.pending.values().any(|p| p.intent == Intent::Probe) {
            return;
        }
        let due: Vec<PeerAddr> = self
            .lost
            .iter()
            .map(|l| l.addr)
            .filter(|a| self.dialable(a.id, now))
            .collect();
        if let Some(target) = due.choose(&mut self.rng).copied() {
            self.counters.lost_probes += 1;
            self.dial(target, Intent::Probe, now, out);
        }
    }

    fn maybe_shuffle(&mut self, now: Instant, out: &mut Outbox) {
        let interval = self.config.shuffle_interval;
        let next = match self.next_shuffle {
            Some(next) => next,
            None => {
                let first = now + self.jittered(interval);
                self.next_shuffle = Some(first);
                first
            }
        };
        if now < next {
            return;
        }
        self.next_shuffle = Some(now + self.jittered(interval));
        let Some(target) = self.active.choose(&mut self.rng).map(|a| a.id) else {
            return;
        };
        let mut nodes: Vec<PeerAddr> = self
            .active
            .iter()
            .filter(|a| a.id != target)
            .copied()
            .collect::<Vec<_>>()
            .choose_multiple(&mut self.rng, self.config.shuffle_active)
            .copied()
            .collect();
        nodes.extend(
            self.passive
                .choose_multiple(&mut self.rng, self.config.shuffle_passive)
                .copied(),
        );
        self.shuffled = nodes.iter().map(|n| n.id).collect();
        self.counters.shuffles += 1;
        let shuffle = MembershipMessage::Shuffle {
            origin: self.me,
            ttl: self.config.arwl,
            nodes,
        };
        out.send_membership(target, shuffle);
    }

    fn dial(&mut self, addr: PeerAddr, intent: Intent, now: Instant, out: &mut Outbox) {
        if addr.id == self.me.id
            || self.pending.contains_key(&addr.id)
            || self.closing.contains(&addr.id)
        {
            return;
        }
        if self.pending.len() >= self.config.max_pending {
            self.counters.dials_skipped += 1;
            return;
        }
        self.pending.insert(
            addr.id,
            Pending {
                addr,
                intent,
                since: now,
                sent: false,
            },
        );
        if self.connected.contains(&addr.id) {
            self.on_connected(addr.id, now, out);
        } else {
            out.push(Command::Connect(addr));
        }
    }

    fn add_active(&mut self, peer: PeerAddr, out: &mut Outbox) {
        if peer.id == self.me.id {
            return;
        }
        if let Some(existing) = self.active.iter_mut().find(|a| a.id == peer.id) {
            existing.addr = peer.addr;
            return;
        }
        self.passive.retain(|p| p.id != peer.id);
        self.lost.retain(|l| l.addr.id != peer.id);
        self.backoff.remove(&peer.id);
        while self.active.len() >= self.config.active_capacity {
            let evicted = self
                .active
                .remove(self.rng.random_range(0..self.active.len()));
            self.counters.evictions += 1;
            tracing::debug!(peer = %evicted.id.short(), "neighbour evicted for a high-priority request");
            out.send_membership(evicted.id, MembershipMessage::Disconnect);
            out.push(Command::NeighborDown(evicted.id));
            self.add_passive(evicted);
            self.release(evicted.id, out);
        }
        self.active.push(peer);
        out.push(Command::NeighborUp(peer.id));
    }

    /// First-hand knowledge that `peer` is alive at this address.
    fn add_passive(&mut self, peer: PeerAddr) {
        if peer.id == self.me.id || self.is_active(&peer.id) {
            return;
        }
        self.lost.retain(|l| l.addr.id != peer.id);
        if let Some(existing) = self.passive.iter_mut().find(|p| p.id == peer.id) {
            existing.addr = peer.addr;
            return;
        }
        if self.passive.len() >= self.config.passive_capacity {
            self.passive
                .remove(self.rng.random_range(0..self.passive.len()));
        }
        self.passive.push(peer);
    }

    /// Hearsay from a shuffle: fill the passive view, evicting `prefer` entries first
    /// (HyParView §4.4). Lost and known peers are left alone.
    fn integrate(&mut self, nodes: &[PeerAddr], prefer: &[NodeId]) {
        for node in nodes {
            let known = node.id == self.me.id
                || self.is_active(&node.id)
                || self.passive.iter().any(|p| p.id == node.id)
                || self.lost.iter().any(|l| l.addr.id == node.id);
            if known {
                continue;
            }
            if self.passive.len() >= self.config.passive_capacity {
                let victim = self
                    .passive
                    .iter()
                    .position(|p| prefer.contains(&p.id))
                    .unwrap_or_else(|| self.rng.random_range(0..self.passive.len()));
                self.passive.remove(victim);
            }
            self.passive.push(*node);
        }
    }

    fn mark_lost(&mut self, addr: PeerAddr, now: Instant) {
        self.passive.retain(|p| p.id != addr.id);
        if let Some(existing) = self.lost.iter_mut().find(|l| l.addr.id == addr.id) {
            existing.addr = addr;
            return;
        }
        if self.lost.len() >= self.config.lost_capacity {
            let oldest = self
                .lost
                .iter()
                .enumerate()
                .filter(|(_, l)| !self.bootstrap.iter().any(|b| b.id == l.addr.id))
                .min_by_key(|(_, l)| l.since)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => {
                    self.lost.remove(i);
                }
                None => return,
            }
        }
        self.lost.push(LostPeer { addr, since: now });
    }

    /// Closes our connection to a peer we no longer need (not active, nothing pending).
    fn release(&mut self, peer: NodeId, out: &mut Outbox) {
        if !self.is_active(&peer)
            && !self.pending.contains_key(&peer)
            && self.connected.contains(&peer)
            && self.closing.insert(peer)
        {
            out.push(Command::Disconnect(peer));
        }
    }

    /// Backs `peer` off exponentially, capped at `lost_backoff_max` once it is lost.
    fn fail(&mut self, peer: NodeId, now: Instant) {
        let base = self.config.backoff_base;
        let max = if self.lost.iter().any(|l| l.addr.id == peer) {
            self.config.lost_backoff_max
        } else {
            self.config.backoff_max
        };
        let jitter = self.rng.random_range(1.0..1.5);
        let entry = self.backoff.entry(peer).or_insert(Backoff {
            failures: 0,
            until: now,
        });
        entry.failures = entry.failures.saturating_add(1);
        let exponent = entry.failures.saturating_sub(1).min(20);
        let delay = base.saturating_mul(1 << exponent).min(max).mul_f64(jitter);
        entry.until = now + delay;
    }

    fn dialable(&self, peer: NodeId, now: Instant) -> bool {
        peer != self.me.id
            && !self.is_active(&peer)
            && !self.pending.contains_key(&peer)
            && !self.closing.contains(&peer)
            && self.backoff.get(&peer).is_none_or(|b| b.until <= now)
    }

    fn free_slots(&self) -> usize {
        let requested = self
            .pending
            .values()
            .filter(|p| matches!(p.intent, Intent::Join | Intent::Neighbor(_)))
            .count();
        self.config
            .active_capacity
            .saturating_sub(self.active.len() + requested)
    }

    fn is_active(&self, peer: &NodeId) -> bool {
        self.active.iter().any(|a| a.id == *peer)
    }

    fn jittered(&mut self, interval: Duration) -> Duration {
        interval.mul_f64(self.rng.random_range(0.5..1.5))
    }
}

#[cfg(test)]
mod tests;
