//! PlumTree pubsub: epidemic broadcast trees (Leitão, Pereira, Rodrigues, SRDS 2007) over
//! the HyParView active view, one tree per (topic, origin), steered by peer scores and
//! slow-peer cooling.
//!
//! - **Eager and lazy peers** (§3.1): in every tree, each neighbour is either *eager* (gets
//!   full payloads pushed) or *lazy* (gets batched IHAVE announcements). A tree starts with
//!   every neighbour eager, so an origin's first message floods and its tree forms by pruning.
//! - **One tree per origin** (§3.7, multiple senders): see the `trees` submodule. A tree shared by all
//!   senders is cut in several places by concurrent messages from different origins and never
//!   settles under load; per-origin trees settle like a single sender's.
//! - **PRUNE on duplicates** (§3.1): a payload that arrives twice is a cycle; the receiver
//!   makes the link lazy in that origin's tree on both ends with PRUNE.
//! - **GRAFT on missing messages** (§3.2): an IHAVE for a message not received starts a timer
//!   (`timeout1`); when it fires the node sends GRAFT (or IWANT, below) to one announcer
//!   — best score first, then fewest hops — and retries the next one after `timeout2`. Both
//!   follow the measured path RTT of the peer concerned ([`Event::Path`](super::Event)),
//!   within the floors and ceilings of [`PubsubConfig`]; without a sample they are
//!   `graft_timeout` and `graft_retry`.
//! - **Lossy links** (not in the paper): a lazy neighbour whose link loses at least
//!   `lossy_link_loss` of its packets gets the payload pushed besides the IHAVE, at most
//!   `lossy_push_peers` of them per message. On a lossy network every node then receives
//!   copies over several links, and a lost packet costs no QUIC retransmission or graft
//!   round trip; the trees are unchanged (receiving a payload never changes a link), and a
//!   duplicate from a lazy link neither prunes nor lowers the sender's score.
//! - **Symmetric links**: both ends of a link agree on eager/lazy per tree. PRUNE makes the
//!   link lazy on both ends, GRAFT eager on both ends; a node that will not take a graft (the
//!   requester is cooled or scores too low) answers PRUNE. Receiving a payload never changes
//!   a link, so an IWANT answer does not create a one-sided eager link.
//! - **Scores and cooling**: peers scoring below `demote_below` are pruned from every tree
//!   (PRUNE without origin) on the tick; cooled peers get IHAVE instead of pushes (one
//!   recovery probe when the period ends) and are asked with IWANT rather than grafted;
//!   opportunistic grafting (Gossipsub v1.1) grafts the best lazy peer of an active tree whose
//!   eager set is empty or whose median eager score is below `opportunistic_graft_below`,
//!   every `opportunistic_graft_ticks` ticks.
//! - Every node relays every topic; a subscription only decides local delivery.
//!
//! Hop counts: the `hops` carried by a payload or an IHAVE entry is the number of links from
//! the origin to the receiver if the receiver takes this copy (1 = straight from the origin).

pub(crate) mod trees;

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;

use self::trees::{Tree, TreeEvictions, Trees};
use super::cache::{self, ExpiringCache};
use super::cooling::{self, CooledPeer, Cooling};
use super::score::{self, Observation, PeerScore, ScoreParams};
use super::{
    Command, Config, MessageId, MessageKind, Outbox, PubsubConfig, SendClass, Timer, Topic, wire,
};
use crate::NodeId;

/// A PlumTree message (PlumTree §3, Algorithms 1–2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipMessage {
    /// A payload pushed eagerly or sent in answer to GRAFT/IWANT (GOSSIP in the paper).
    Gossip {
        /// Origin and sequence; the origin also names the tree the payload travels.
        id: MessageId,
        /// The topic.
        topic: Topic,
        /// Links from the origin to the receiver (1 = direct).
        hops: u16,
        /// The application payload, at most [`wire::MAX_PAYLOAD_LEN`] bytes.
        payload: Bytes,
    },
    /// Lazy-push announcements of messages the sender has (IHAVE).
    IHave {
        /// The topic of every entry.
        topic: Topic,
        /// At most [`wire::MAX_IHAVE_ENTRIES`] announcements.
        entries: Vec<IHaveEntry>,
    },
    /// Ask for payloads without changing any link (answered from the payload cache).
    IWant {
        /// At most [`wire::MAX_IWANT_IDS`] ids.
        ids: Vec<MessageId>,
    },
    /// Make the link eager on both ends in `origin`'s tree and send these payloads (GRAFT).
    Graft {
        /// The topic.
        topic: Topic,
        /// The origin whose tree the link joins.
        origin: NodeId,
        /// At most [`wire::MAX_GRAFT_IDS`] sequence numbers of `origin` to send back; empty
        /// for an opportunistic graft.
        seqs: Vec<u64>,
    },
    /// Make the link lazy on both ends (PRUNE), in one origin's tree or in all of the topic's.
    Prune {
        /// The topic.
        topic: Topic,
        /// The tree; `None` for every tree of the topic (score demotion).
        origin: Option<NodeId>,
    },
}

/// One IHAVE announcement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IHaveEntry {
    /// The announced message.
    pub id: MessageId,
    /// Hops from the origin the receiver would have if it took the announcer's copy.
    pub hops: u16,
}

impl GossipMessage {
    /// The message kind, for counters.
    pub fn kind(&self) -> MessageKind {
        match self {
            Self::Gossip { .. } => MessageKind::Gossip,
            Self::IHave { .. } => MessageKind::IHave,
            Self::IWant { .. } => MessageKind::IWant,
            Self::Graft { .. } => MessageKind::Graft,
            Self::Prune { .. } => MessageKind::Prune,
        }
    }

    /// Payloads, IHAVE and IWANT may be dropped under overload (the lazy path repairs
    /// them); GRAFT and PRUNE change link state on both ends and must not be.
    pub fn class(&self) -> SendClass {
        match self {
            Self::Gossip { .. } | Self::IHave { .. } | Self::IWant { .. } => SendClass::Gossip,
            Self::Graft { .. } | Self::Prune { .. } => SendClass::Control,
        }
    }
}

/// Pubsub events counted since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PubsubCounters {
    /// Messages published by this node.
    pub published: u64,
    /// Publishes refused because the payload exceeded [`wire::MAX_PAYLOAD_LEN`].
    pub oversized_publishes: u64,
    /// First receptions of messages (whether delivered locally or only relayed).
    pub received_new: u64,
    /// Messages handed to the application.
    pub delivered: u64,
    /// Payloads received again.
    pub duplicates: u64,
    /// Eager pushes replaced by IHAVE because the peer was cooled.
    pub pushes_withheld: u64,
    /// Payloads pushed to lazy neighbours over lossy links instead of an IHAVE.
    pub lossy_pushes: u64,
    /// IHAVE entries dropped because the peer's lazy queue was full.
    pub lazy_queue_drops: u64,
    /// IHAVE entries ignored because the missing-message table was full.
    pub missing_overflow: u64,
    /// Missing messages given up after every announcer was tried.
    pub graft_exhausted: u64,
    /// IWANT/GRAFT ids answered from the payload cache.
    pub served: u64,
    /// Cached messages announced to new neighbours (anti-entropy on link up).
    pub catch_up_announcements: u64,
    /// Duplicates from the eager parent not answered with PRUNE, because the first copy was
    /// a push from an already pruned peer that crossed the PRUNE.
    pub parents_kept: u64,
    /// IWANT/GRAFT ids no longer in the payload cache.
    pub unserved: u64,
    /// Peers pruned from a topic's trees for a low score.
    pub demotions: u64,
    /// Opportunistic grafts sent.
    pub opportunistic_grafts: u64,
    /// Peers cooled after a send timeout.
    pub coolings: u64,
    /// Recovery probes that timed out.
    pub probe_failures: u64,
    /// Cooled peers whose probe succeeded.
    pub recoveries: u64,
    /// Topic and tree evictions and refusals.
    pub trees: TreeEvictions,
}

/// What a received pubsub message was, for the caller's bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// A payload seen for the first time, published by this origin.
    New(NodeId),
    /// A payload already seen.
    Duplicate,
    /// Anything else.
    Other,
}

#[derive(Clone, Debug)]
struct Cached {
    topic: Topic,
    payload: Bytes,
    hops: u16,
    /// The neighbour whose copy was taken (this node for its own messages): the parent in
    /// the origin's tree for this message.
    from: NodeId,
}

#[derive(Clone, Debug)]
struct Missing {
    topic: Topic,
    /// Announcers not asked yet, with the hops they offered.
    announcers: Vec<(NodeId, u16)>,
    asked: Option<NodeId>,
    /// Every peer that announced it (bounded by `max_announcers`): they have the message.
    announced: Vec<NodeId>,
}

/// Estimated memory of one seen-id entry: the id in the map and in the expiry queue plus
/// the insertion time and container overhead.
const SEEN_ENTRY_BYTES: usize = 2 * 40 + 16 + 32;
/// Bookkeeping bytes of one payload-cache entry besides payload and topic.
const PAYLOAD_ENTRY_OVERHEAD: usize = 160;

/// The pubsub state of one node.
#[derive(Debug)]
pub(crate) struct PlumTree {
    me: NodeId,
    config: PubsubConfig,
    score_params: ScoreParams,
    next_seq: u64,
    last_published: Option<MessageId>,
    neighbors: Vec<NodeId>,
    trees: Trees,
    seen: ExpiringCache<MessageId, ()>,
    payloads: ExpiringCache<MessageId, Cached>,
    missing: BTreeMap<MessageId, Missing>,
    lazy_queue: BTreeMap<NodeId, Vec<(Topic, IHaveEntry)>>,
    ihave_armed: bool,
    scores: BTreeMap<NodeId, PeerScore>,
    /// Latest path RTT and loss share per neighbour, from the transport.
    rtts: BTreeMap<NodeId, std::time::Duration>,
    losses: BTreeMap<NodeId, f64>,
    cooling: Cooling,
    last_decay: Option<Instant>,
    ticks: u32,
    counters: PubsubCounters,
}

impl PlumTree {
    pub fn new(me: NodeId, config: &Config, first_seq: u64) -> Self {
        let p = &config.pubsub;
        Self {
            me,
            config: p.clone(),
            score_params: config.score.clone(),
            next_seq: first_seq,
            last_published: None,
            neighbors: Vec::new(),
            trees: Trees::new(p.max_topics, p.max_trees_per_topic),
            seen: ExpiringCache::new(cache::Limits {
                ttl: p.seen_ttl,
                max_entries: p.seen_max_entries,
                max_bytes: p.seen_max_bytes,
            }),
            payloads: ExpiringCache::new(cache::Limits {
                ttl: p.payload_ttl,
                max_entries: p.payload_max_entries,
                max_bytes: p.payload_max_bytes,
            }),
            missing: BTreeMap::new(),
            lazy_queue: BTreeMap::new(),
            ihave_armed: false,
            scores: BTreeMap::new(),
            rtts: BTreeMap::new(),
            losses: BTreeMap::new(),
            cooling: Cooling::new(config.cooling.clone()),
            last_decay: None,
            ticks: 0,
            counters: PubsubCounters::default(),
        }
    }

    pub fn publish(&mut self, topic: Topic, payload: Bytes, now: Instant, out: &mut Outbox) {
        if payload.len() > wire::MAX_PAYLOAD_LEN {
            self.counters.oversized_publishes += 1;
            tracing::warn!(
                topic = %topic,
                len = payload.len(),
                max = wire::MAX_PAYLOAD_LEN,
                "publish refused: payload too large"
            );
            return;
        }
        if !self.ensure_tree(&topic, self.me, now, out) {
            return;
        }
        let id = MessageId {
            origin: self.me,
            seq: self.next_seq,
        };
        self.next_seq = self.next_seq.wrapping_add(1);
        self.last_published = Some(id);
        self.counters.published += 1;
        self.remember(id, &topic, &payload, 0, self.me, now);
        self.forward(&topic, id, &payload, 0, &[], now, out);
    }

    /// Subscribes; returns false when the topic limit refused it.
    pub fn subscribe(&mut self, topic: &Topic, now: Instant) -> bool {
        if !self.trees.ensure_topic(topic, now) {
            tracing::warn!(topic = %topic, max = self.config.max_topics, "subscription refused: topic limit reached");
            return false;
        }
        self.trees.set_subscribed(topic, true);
        true
    }

    pub fn unsubscribe(&mut self, topic: &Topic) {
        self.trees.set_subscribed(topic, false);
    }

    pub fn on_message(
        &mut self,
        from: NodeId,
        message: GossipMessage,
        now: Instant,
        out: &mut Outbox,
    ) -> Received {
        match message {
            GossipMessage::Gossip {
                id,
                topic,
                hops,
                payload,
            } => return self.on_gossip(from, id, &topic, hops, &payload, now, out),
            GossipMessage::IHave { topic, entries } => self.on_ihave(from, &topic, &entries, out),
            GossipMessage::IWant { ids } => self.serve(from, &ids, out),
            GossipMessage::Graft {
                topic,
                origin,
                seqs,
            } => self.on_graft(from, &topic, origin, &seqs, now, out),
            GossipMessage::Prune { topic, origin } => {
                if !self.neighbors.contains(&from) {
                    return Received::Other;
                }
                if let Some(origin) = origin
                    && !self.ensure_tree(&topic, origin, now, out)
                {
                    return Received::Other;
                }
                self.trees.set_link(&topic, origin, from, false);
            }
        }
        Received::Other
    }

    #[allow(clippy::too_many_arguments)]
    fn on_gossip(
        &mut self,
        from: NodeId,
        id: MessageId,
        topic: &Topic,
        hops: u16,
        payload: &Bytes,
        now: Instant,
        out: &mut Outbox,
    ) -> Received {
        if id.origin == self.me || self.seen.contains(&id) {
            self.counters.duplicates += 1;
            let eager = self
                .trees
                .tree(topic, &id.origin)
                .is_some_and(|tree| tree.eager.contains(&from));
            // A copy from a lazy link is a lossy-link push or crossed a PRUNE: the sender
            // did nothing wrong.
            if eager {
                self.observe(from, Observation::Duplicate);
            }
            let tree = self.trees.tree(topic, &id.origin);
            // The first copy came from a peer this node had already pruned (a push that
            // crossed the PRUNE): `from` is the parent that stays. Pruning it too would leave
            // the tree without a parent here until a graft repairs it.
            let stale_first = self.payloads.get(&id).is_some_and(|c| {
                c.from != from
                    && c.from != self.me
                    && tree.is_some_and(|tree| !tree.eager.contains(&c.from))
            });
            if eager && stale_first {
                self.counters.parents_kept += 1;
            }
            if eager && !stale_first {
                self.trees.set_link(topic, Some(id.origin), from, false);
                let prune = GossipMessage::Prune {
                    topic: topic.clone(),
                    origin: Some(id.origin),
                };
                out.send_gossip(from, prune);
            }
            return Received::Duplicate;
        }
        if !self.ensure_tree(topic, id.origin, now, out) {
            return Received::Other;
        }
        self.counters.received_new += 1;
        self.remember(id, topic, payload, hops, from, now);
        self.observe(from, Observation::FirstDelivery);
        // Peers that announced the message have it: a push would only be a duplicate that
        // makes them PRUNE this link. This matters for repaired messages, which arrive late,
        // when every neighbour has long had them.
        let mut holders = vec![from];
        let mut tell_parent = None;
        if let Some(missing) = self.missing.remove(&id) {
            if missing.asked == Some(from) {
                self.observe(from, Observation::IwantFulfilled);
            }
            holders.extend(missing.announced);
        }
        if let Some(tree) = self.trees.tree_mut(topic, &id.origin) {
            tree.active = true;
            if tree.eager.contains(&from) {
                tree.parent = Some(from);
            } else if let Some(parent) = tree.parent.filter(|p| tree.eager.contains(p)) {
                // A push from a lazy link (crossing a PRUNE, or a lossy-link push) arrived
                // before the parent's copy. The parent most likely has the message; pushing
                // it there would be a duplicate that makes the parent PRUNE this node and
                // cut it off the tree. It gets an IHAVE instead: a parent that was itself cut
                // off (its own parent crashed) then grafts rather than missing the message.
                holders.push(parent);
                tell_parent = Some(parent);
            }
        }
        if self.trees.topic(topic).is_some_and(|t| t.subscribed) {
            self.counters.delivered += 1;
            out.push(Command::Deliver {
                topic: topic.clone(),
                message_id: id,
                payload: payload.clone(),
                hops,
                from,
            });
        }
        self.forward(topic, id, payload, hops, &holders, now, out);
        if let Some(parent) = tell_parent {
            let hops = hops.saturating_add(1);
            self.announce(parent, topic, IHaveEntry { id, hops }, out);
        }
        Received::New(id.origin)
    }

    fn on_ihave(&mut self, from: NodeId, topic: &Topic, entries: &[IHaveEntry], out: &mut Outbox) {
        if !self.neighbors.contains(&from) {
            return;
        }
        for entry in entries {
            if self.seen.contains(&entry.id) {
                continue;
            }
            if let Some(missing) = self.missing.get_mut(&entry.id) {
                let known = missing.announced.contains(&from);
                if !known && missing.announced.len() < self.config.max_announcers {
                    missing.announcers.push((from, entry.hops));
                    missing.announced.push(from);
                }
                continue;
            }
            if self.missing.len() >= self.config.max_missing {
                self.counters.missing_overflow += 1;
                continue;
            }
            self.missing.insert(
                entry.id,
                Missing {
                    topic: topic.clone(),
                    announcers: vec![(from, entry.hops)],
                    asked: None,
                    announced: vec![from],
                },
            );
            out.timer(self.graft_timeout(&from), Timer::Graft(entry.id));
        }
    }

    /// The graft timer of a missing message fired (PlumTree §3.2, Algorithm 2 `Timer`).
    pub fn on_graft_timer(&mut self, id: MessageId, now: Instant, out: &mut Outbox) {
        let Some(mut missing) = self.missing.remove(&id) else {
            return;
        };
        if self.seen.contains(&id) {
            return;
        }
        if let Some(asked) = missing.asked.take() {
            self.observe(asked, Observation::IwantFailed);
        }
        missing
            .announcers
            .retain(|(p, _)| self.neighbors.contains(p));
        let best = missing
            .announcers
            .iter()
            .enumerate()
            .max_by(|(ia, (a, ha)), (ib, (b, hb))| {
                let by_score = self.score(a).total_cmp(&self.score(b));
                // Then fewer hops, then the earlier announcer.
                by_score.then(hb.cmp(ha)).then(ib.cmp(ia))
            })
            .map(|(i, _)| i);
        let Some(best) = best else {
            self.counters.graft_exhausted += 1;
            return;
        };
        let (peer, _) = missing.announcers.remove(best);
        missing.asked = Some(peer);
        let topic = missing.topic.clone();
        self.missing.insert(id, missing);
        if self.is_healthy(&peer) && self.ensure_tree(&topic, id.origin, now, out) {
            self.trees.set_link(&topic, Some(id.origin), peer, true);
            let graft = GossipMessage::Graft {
                topic,
                origin: id.origin,
                seqs: vec![id.seq],
            };
            out.send_gossip(peer, graft);
        } else {
            out.send_gossip(peer, GossipMessage::IWant { ids: vec![id] });
        }
        out.timer(self.graft_retry(&peer), Timer::Graft(id));
    }

    fn on_graft(
        &mut self,
        from: NodeId,
        topic: &Topic,
        origin: NodeId,
        seqs: &[u64],
        now: Instant,
        out: &mut Outbox,
    ) {
        if !self.neighbors.contains(&from) || !self.ensure_tree(topic, origin, now, out) {
            return;
        }
        let accept = self.is_healthy(&from);
        self.trees.set_link(topic, Some(origin), from, accept);
        if !accept {
            let prune = GossipMessage::Prune {
                topic: topic.clone(),
                origin: Some(origin),
            };
            out.send_gossip(from, prune);
        }
        let ids: Vec<MessageId> = seqs
            .iter()
            .map(|seq| MessageId { origin, seq: *seq })
            .collect();
        self.serve(from, &ids, out);
    }

    fn serve(&mut self, peer: NodeId, ids: &[MessageId], out: &mut Outbox) {
        for id in ids {
            match self.payloads.get(id) {
                Some(cached) => {
                    self.counters.served += 1;
                    let message = GossipMessage::Gossip {
                        id: *id,
                        topic: cached.topic.clone(),
                        hops: cached.hops.saturating_add(1),
                        payload: cached.payload.clone(),
                    };
                    out.send_gossip(peer, message);
                }
                None => self.counters.unserved += 1,
            }
        }
    }

    /// Sends batched IHAVEs, at most [`wire::MAX_IHAVE_ENTRIES`] per message.
    pub fn flush_ihave(&mut self, out: &mut Outbox) {
        self.ihave_armed = false;
        for (peer, queued) in std::mem::take(&mut self.lazy_queue) {
            if !self.neighbors.contains(&peer) {
                continue;
            }
            let mut by_topic: BTreeMap<Topic, Vec<IHaveEntry>> = BTreeMap::new();
            for (topic, entry) in queued {
                by_topic.entry(topic).or_default().push(entry);
            }
            for (topic, entries) in by_topic {
                for chunk in entries.chunks(wire::MAX_IHAVE_ENTRIES) {
                    let message = GossipMessage::IHave {
                        topic: topic.clone(),
                        entries: chunk.to_vec(),
                    };
                    out.send_gossip(peer, message);
                }
            }
        }
    }

    pub fn neighbor_up(&mut self, peer: NodeId, out: &mut Outbox) {
        if self.neighbors.contains(&peer) {
            return;
        }
        self.neighbors.push(peer);
        let healthy = self.is_healthy_score(&peer);
        self.trees.add_neighbor(peer, healthy);
        if !healthy {
            for topic in self.trees.topic_names() {
                out.send_gossip(
                    peer,
                    GossipMessage::Prune {
                        topic,
                        origin: None,
                    },
                );
            }
        }
        self.catch_up(peer, out);
    }

    /// Anti-entropy for a new link: announces every payload still cached, so a neighbour
    /// that was cut off (its links died while messages were in flight, or it just rejoined)
    /// pulls what it lacks through the ordinary IHAVE → GRAFT/IWANT path. A neighbour that
    /// has them ignores the entries. Bounded by `max_lazy_queue` per peer.
    fn catch_up(&mut self, peer: NodeId, out: &mut Outbox) {
        let cached: Vec<(Topic, IHaveEntry)> = self
            .payloads
            .iter()
            .map(|(id, cached)| {
                let entry = IHaveEntry {
                    id: *id,
                    hops: cached.hops.saturating_add(1),
                };
                (cached.topic.clone(), entry)
            })
            .collect();
        self.counters.catch_up_announcements += cached.len() as u64;
        for (topic, entry) in cached {
            self.announce(peer, &topic, entry, out);
        }
    }

    /// The transport measured the path to `peer`: RTT and packet loss share (neighbours
    /// only; forgotten when the link goes down).
    pub fn set_path(&mut self, peer: NodeId, rtt: std::time::Duration, loss: f64) {
        if self.neighbors.contains(&peer) {
            self.rtts.insert(peer, rtt);
            self.losses.insert(peer, loss);
        }
    }

    fn lossy(&self, peer: &NodeId) -> bool {
        self.losses
            .get(peer)
            .is_some_and(|l| *l >= self.config.lossy_link_loss)
    }

    /// The measured path RTT to `peer`, if any.
    pub fn rtt(&self, peer: &NodeId) -> Option<std::time::Duration> {
        self.rtts.get(peer).copied()
    }

    /// PlumTree `timeout1` for a message `announcer` announced: its path RTT within
    /// [`PubsubConfig::graft_timeout_min`, `graft_timeout`], or `graft_timeout` unmeasured.
    fn graft_timeout(&self, announcer: &NodeId) -> std::time::Duration {
        let c = &self.config;
        self.rtt(announcer).map_or(c.graft_timeout, |rtt| {
            rtt.min(c.graft_timeout).max(c.graft_timeout_min)
        })
    }

    /// PlumTree `timeout2` after asking `asked`: 1.25 × its RTT + 5 ms (a round trip plus its
    /// processing) within [`PubsubConfig::graft_timeout_min`, `graft_retry_max`], or
    /// `graft_retry` unmeasured.
    fn graft_retry(&self, asked: &NodeId) -> std::time::Duration {
        let c = &self.config;
        self.rtt(asked).map_or(c.graft_retry, |rtt| {
            let wait = rtt + rtt / 4 + std::time::Duration::from_millis(5);
            wait.min(c.graft_retry_max).max(c.graft_timeout_min)
        })
    }

    pub fn neighbor_down(&mut self, peer: NodeId) {
        self.rtts.remove(&peer);
        self.losses.remove(&peer);
        self.neighbors.retain(|p| *p != peer);
        self.trees.remove_neighbor(&peer);
        self.lazy_queue.remove(&peer);
        self.cooling.forget(&peer);
    }

    pub fn on_send_timeout(&mut self, peer: NodeId, now: Instant) {
        if !self.neighbors.contains(&peer) {
            return;
        }
        self.observe(peer, Observation::SendTimeout);
        match self.cooling.on_timeout(peer, now) {
            cooling::Transition::Cooled => {
                self.counters.coolings += 1;
                tracing::debug!(peer = %peer.short(), "peer cooled after a send timeout");
            }
            cooling::Transition::ProbeFailed => self.counters.probe_failures += 1,
            cooling::Transition::Recovered | cooling::Transition::Unchanged => {}
        }
    }

    pub fn on_send_success(&mut self, peer: NodeId) {
        if !self.neighbors.contains(&peer) {
            return;
        }
        self.observe(peer, Observation::SendSuccess);
        if self.cooling.on_success(peer) == cooling::Transition::Recovered {
            self.counters.recoveries += 1;
            tracing::debug!(peer = %peer.short(), "cooled peer recovered");
        }
    }

    /// The periodic tick: decay scores, expire caches, demote low scorers, and every
    /// `opportunistic_graft_ticks` ticks graft opportunistically.
    pub fn on_tick(&mut self, now: Instant, out: &mut Outbox) {
        let elapsed = self.last_decay.map_or(std::time::Duration::ZERO, |t| {
            now.saturating_duration_since(t)
        });
        self.last_decay = Some(now);
        let factor = score::decay_factor(elapsed, self.score_params.half_life);
        for s in self.scores.values_mut() {
            s.decay(factor);
        }
        let neighbors = &self.neighbors;
        self.scores
            .retain(|id, s| neighbors.contains(id) || !s.is_negligible());
        if self.scores.len() > self.neighbors.len() + self.config.max_peer_stats {
            self.scores.retain(|id, _| neighbors.contains(id));
        }
        self.seen.expire(now);
        self.payloads.expire(now);
        self.demote(out);
        self.ticks = self.ticks.wrapping_add(1);
        if self
            .ticks
            .is_multiple_of(self.config.opportunistic_graft_ticks)
        {
            self.opportunistic_graft(out);
        }
    }

    fn demote(&mut self, out: &mut Outbox) {
        let low: Vec<NodeId> = self
            .neighbors
            .iter()
            .filter(|p| !self.is_healthy_score(p))
            .copied()
            .collect();
        for peer in low {
            for topic in self.trees.topic_names() {
                let eager_somewhere = self
                    .trees
                    .topic(&topic)
                    .is_some_and(|t| t.trees.values().any(|tree| tree.eager.contains(&peer)));
                if eager_somewhere {
                    self.counters.demotions += 1;
                    self.trees.set_link(&topic, None, peer, false);
                    out.send_gossip(
                        peer,
                        GossipMessage::Prune {
                            topic,
                            origin: None,
                        },
                    );
                }
            }
        }
    }

    /// Gossipsub v1.1 §"Opportunistic Grafting", per tree that carried messages since the
    /// last round, one peer per tree.
    fn opportunistic_graft(&mut self, out: &mut Outbox) {
        let mut grafts = Vec::new();
        let scores: BTreeMap<NodeId, (f64, bool)> = self
            .neighbors
            .iter()
            .map(|p| (*p, (self.score(p), self.is_healthy(p))))
            .collect();
        let threshold = self.score_params.opportunistic_graft_below;
        for (topic, origin, tree) in self.trees.trees_mut() {
            if std::mem::take(&mut tree.active)
                && let Some(peer) = graft_candidate(tree, &scores, threshold)
            {
                grafts.push((topic.clone(), *origin, peer));
            }
        }
        for (topic, origin, peer) in grafts {
            self.counters.opportunistic_grafts += 1;
            self.trees.set_link(&topic, Some(origin), peer, true);
            let graft = GossipMessage::Graft {
                topic,
                origin,
                seqs: Vec::new(),
            };
            out.send_gossip(peer, graft);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        topic: &Topic,
        id: MessageId,
        payload: &Bytes,
        hops: u16,
        except: &[NodeId],
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(tree) = self.trees.tree(topic, &id.origin) else {
            return;
        };
        let hops = hops.saturating_add(1);
        let eager: Vec<NodeId> = tree
            .eager
            .iter()
            .filter(|p| !except.contains(p))
            .copied()
            .collect();
        let lazy: Vec<NodeId> = tree
            .lazy
            .iter()
            .filter(|p| !except.contains(p))
            .copied()
            .collect();
        for peer in eager {
            if self.cooling.allow_push(peer, now) {
                let message = GossipMessage::Gossip {
                    id,
                    topic: topic.clone(),
                    hops,
                    payload: payload.clone(),
                };
                out.send_gossip(peer, message);
            } else {
                self.counters.pushes_withheld += 1;
                self.announce(peer, topic, IHaveEntry { id, hops }, out);
            }
        }
        let mut extra = self.config.lossy_push_peers;
        for peer in lazy {
            if extra > 0 && self.lossy(&peer) && self.cooling.allow_push(peer, now) {
                extra -= 1;
                self.counters.lossy_pushes += 1;
                let message = GossipMessage::Gossip {
                    id,
                    topic: topic.clone(),
                    hops,
                    payload: payload.clone(),
                };
                out.send_gossip(peer, message);
            }
            // The IHAVE too: a push dropped on a full queue is then still repaired.
            self.announce(peer, topic, IHaveEntry { id, hops }, out);
        }
    }

    fn announce(&mut self, peer: NodeId, topic: &Topic, entry: IHaveEntry, out: &mut Outbox) {
        let queue = self.lazy_queue.entry(peer).or_default();
        if queue.len() >= self.config.max_lazy_queue {
            self.counters.lazy_queue_drops += 1;
            return;
        }
        queue.push((topic.clone(), entry));
        if !self.ihave_armed {
            self.ihave_armed = true;
            out.timer(self.config.ihave_interval, Timer::IHaveFlush);
        }
    }

    fn remember(
        &mut self,
        id: MessageId,
        topic: &Topic,
        payload: &Bytes,
        hops: u16,
        from: NodeId,
        now: Instant,
    ) {
        self.seen.insert(id, (), SEEN_ENTRY_BYTES, now);
        let size = payload.len() + topic.as_str().len() + PAYLOAD_ENTRY_OVERHEAD;
        let cached = Cached {
            topic: topic.clone(),
            payload: payload.clone(),
            hops,
            from,
        };
        self.payloads.insert(id, cached, size, now);
    }

    /// Creates the (topic, origin) tree if needed and PRUNEs the neighbours it starts lazy.
    /// False when the topic limit refused the topic.
    fn ensure_tree(
        &mut self,
        topic: &Topic,
        origin: NodeId,
        now: Instant,
        out: &mut Outbox,
    ) -> bool {
        let neighbors: Vec<(NodeId, bool)> = if self.trees.tree(topic, &origin).is_some() {
            Vec::new()
        } else {
            self.neighbors
                .iter()
                .map(|p| (*p, self.is_healthy_score(p)))
                .collect()
        };
        let Some(pruned) = self.trees.ensure_tree(topic, origin, now, &neighbors) else {
            tracing::warn!(topic = %topic, max = self.config.max_topics, "topic refused: limit reached");
            return false;
        };
        for peer in pruned {
            let prune = GossipMessage::Prune {
                topic: topic.clone(),
                origin: Some(origin),
            };
            out.send_gossip(peer, prune);
        }
        true
    }

    fn observe(&mut self, peer: NodeId, observation: Observation) {
        if self.neighbors.contains(&peer) || self.scores.contains_key(&peer) {
            self.scores.entry(peer).or_default().observe(observation);
        }
    }

    pub fn last_published(&self) -> Option<MessageId> {
        self.last_published
    }

    pub fn score(&self, peer: &NodeId) -> f64 {
        self.scores
            .get(peer)
            .map_or(0.0, |s| s.value(&self.score_params))
    }

    fn is_healthy_score(&self, peer: &NodeId) -> bool {
        self.score(peer) >= self.score_params.demote_below
    }

    /// May hold an eager link: not cooled and scoring at least `demote_below`.
    fn is_healthy(&self, peer: &NodeId) -> bool {
        !self.cooling.is_cooled(peer) && self.is_healthy_score(peer)
    }

    pub fn trees(&self) -> &Trees {
        &self.trees
    }

    pub fn cooled(&self) -> impl Iterator<Item = CooledPeer> + '_ {
        self.cooling.cooled()
    }

    pub fn counters(&self) -> PubsubCounters {
        PubsubCounters {
            trees: self.trees.evictions(),
            ..self.counters
        }
    }

    pub fn cache_stats(&self) -> super::CacheStats {
        super::CacheStats {
            seen_entries: self.seen.len(),
            seen_bytes: self.seen.bytes(),
            seen_evictions: self.seen.evictions(),
            payload_entries: self.payloads.len(),
            payload_bytes: self.payloads.bytes(),
            payload_evictions: self.payloads.evictions(),
            missing: self.missing.len(),
        }
    }
}

/// The lazy peer to graft opportunistically in `tree`, if its eager set is empty or its
/// median eager score is below `threshold`: the best-scoring healthy lazy peer scoring above
/// that median. `scores` maps neighbours to (score, healthy).
fn graft_candidate(
    tree: &Tree,
    scores: &BTreeMap<NodeId, (f64, bool)>,
    threshold: f64,
) -> Option<NodeId> {
    let score = |p: &NodeId| scores.get(p).copied().unwrap_or((0.0, false));
    let mut eager: Vec<f64> = tree.eager.iter().map(|p| score(p).0).collect();
    let median = score::median(&mut eager);
    if median.is_some_and(|m| m >= threshold) {
        return None;
    }
    let floor = median.unwrap_or(f64::NEG_INFINITY);
    tree.lazy
        .iter()
        .filter(|p| score(p).1 && score(p).0 > floor)
        .max_by(|a, b| score(a).0.total_cmp(&score(b).0))
        .copied()
}

#[cfg(test)]
mod tests;
