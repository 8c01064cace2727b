//! The per-node protocol state: membership and pubsub behind one event/command interface.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cooling::CooledPeer;
use super::hyparview::Membership;
use super::plumtree::{PlumTree, Received};
use super::stats::{CooledStats, PeerStats, PeerTally, Tally};
use super::{
    Command, Config, ConfigError, Event, Message, Outbox, PeerAddr, ProtoStats, Timer, TopicStats,
};
use crate::NodeId;

/// One node's protocol state (HyParView + PlumTree), driven by [`State::handle`].
///
/// Deterministic: the same seed, configuration and event sequence (with the same `now`
/// values) produce the same commands.
#[derive(Debug)]
pub struct State {
    me: PeerAddr,
    config: Config,
    membership: Membership,
    pubsub: PlumTree,
    out: Outbox,
    started: bool,
    tally: Tally,
    peers: BTreeMap<NodeId, PeerTally>,
    neighbor_up: u64,
    neighbor_down: u64,
}

impl State {
    /// A node that advertises `me` (its identity and listen address). `seed` feeds the
    /// state's only randomness (a `StdRng`): pass OS randomness in production, a fixed value
    /// in simulations.
    ///
    /// # Errors
    /// [`ConfigError`] when `config` fails [`Config::validate`].
    pub fn new(me: PeerAddr, config: Config, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let membership = Membership::new(me, config.membership.clone(), rng.random());
        let first_seq = rng.random::<u64>() >> 1;
        let pubsub = PlumTree::new(me.id, &config, first_seq);
        Ok(Self {
            me,
            config,
            membership,
            pubsub,
            out: Outbox::default(),
            started: false,
            tally: Tally::default(),
            peers: BTreeMap::new(),
            neighbor_up: 0,
            neighbor_down: 0,
        })
    }

    /// This node's advertised address.
    pub fn me(&self) -> PeerAddr {
        self.me
    }

    /// The active view, in join order.
    pub fn active_view(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.membership.active().iter().map(|a| a.id)
    }

    /// The active view with the neighbours' advertised addresses, in join order.
    pub fn active_peers(&self) -> &[PeerAddr] {
        self.membership.active()
    }

    /// The passive view: known addresses used to repair the active view (HyParView §3).
    pub fn passive_peers(&self) -> &[PeerAddr] {
        self.membership.passive()
    }

    /// The peer's current decayed score (`score` module); 0 for a peer never observed.
    pub fn score(&self, peer: &NodeId) -> f64 {
        self.pubsub.score(peer)
    }

    /// The id of the most recent message this node published, if any. An
    /// [`Event::Publish`] that the state refused (payload over [`super::wire::MAX_PAYLOAD_LEN`],
    /// topic limit reached) leaves it unchanged.
    pub fn last_published(&self) -> Option<super::MessageId> {
        self.pubsub.last_published()
    }

    /// Whether messages of `topic` are delivered locally ([`Event::Subscribe`] was accepted
    /// and not undone).
    pub fn is_subscribed(&self, topic: &super::Topic) -> bool {
        self.pubsub
            .trees()
            .topic(topic)
            .is_some_and(|t| t.subscribed)
    }

    /// Cooled peers with the end of their period and their backoff.
    pub fn cooled_peers(&self) -> impl Iterator<Item = CooledPeer> + '_ {
        self.pubsub.cooled()
    }

    /// Processes one event at time `now` and returns the commands to execute, in order.
    /// The first event also arms the periodic [`Timer::Tick`]. Drain the iterator: commands
    /// it still holds when dropped are discarded.
    pub fn handle(&mut self, event: Event, now: Instant) -> impl Iterator<Item = Command> + '_ {
        if !self.started {
            self.started = true;
            self.out.timer(self.config.tick_interval, Timer::Tick);
        }
        self.dispatch(event, now);
        self.sync_neighbors();
        self.count_outgoing();
        self.out.0.drain(..)
    }

    fn dispatch(&mut self, event: Event, now: Instant) {
        let out = &mut self.out;
        match event {
            Event::Join(peers) => self.membership.join(peers, now, out),
            Event::Message { from, message } => {
                self.tally.received(&message);
                let peer = self.peers.entry(from).or_default();
                peer.messages.received(&message);
                match message {
                    Message::Membership(m) => self.membership.on_message(from, m, now, out),
                    Message::Gossip(m) => match self.pubsub.on_message(from, m, now, out) {
                        Received::New(origin) => self.membership.revive(origin, now),
                        Received::Duplicate => peer.duplicates += 1,
                        Received::Other => {}
                    },
                }
            }
            Event::PeerUp(peer) => self.membership.on_peer_up(peer, now, out),
            Event::PeerDown(peer) => self.membership.on_peer_down(peer, now, out),
            Event::TimerFired(Timer::Tick) => {
                self.membership.on_tick(now, out);
                self.pubsub.on_tick(now, out);
                out.timer(self.config.tick_interval, Timer::Tick);
                self.trim_peer_stats();
            }
            Event::TimerFired(Timer::IHaveFlush) => self.pubsub.flush_ihave(out),
            Event::TimerFired(Timer::Graft(id)) => self.pubsub.on_graft_timer(id, now, out),
            Event::Publish { topic, payload } => self.pubsub.publish(topic, payload, now, out),
            Event::Subscribe(topic) => {
                self.pubsub.subscribe(&topic, now);
            }
            Event::Unsubscribe(topic) => self.pubsub.unsubscribe(&topic),
            Event::SendTimedOut(peer) => {
                self.peers.entry(peer).or_default().send_timeouts += 1;
                self.pubsub.on_send_timeout(peer, now);
            }
            Event::Path { peer, rtt, loss } => {
                if let Some(tally) = self.peers.get_mut(&peer) {
                    tally.rtt_ms = rtt.as_secs_f64() * 1000.0;
                    tally.loss = loss;
                }
                self.pubsub.set_path(peer, rtt, loss);
            }
            Event::SendSucceeded { peer, latency } => {
                self.peers.entry(peer).or_default().send_succeeded(latency);
                self.pubsub.on_send_success(peer);
            }
        }
    }

    /// Mirrors the roster events membership emitted into the pubsub trees.
    fn sync_neighbors(&mut self) {
        let changes: Vec<(NodeId, bool)> = self
            .out
            .0
            .iter()
            .filter_map(|c| match c {
                Command::NeighborUp(p) => Some((*p, true)),
                Command::NeighborDown(p) => Some((*p, false)),
                _ => None,
            })
            .collect();
        for (peer, up) in changes {
            if up {
                self.neighbor_up += 1;
                self.pubsub.neighbor_up(peer, &mut self.out);
            } else {
                self.neighbor_down += 1;
                self.pubsub.neighbor_down(peer);
            }
        }
    }

    fn count_outgoing(&mut self) {
        for command in &self.out.0 {
            if let Command::Send { to, message, .. } = command {
                self.tally.sent(message);
                self.peers.entry(*to).or_default().messages.sent(message);
            }
        }
    }

    fn trim_peer_stats(&mut self) {
        let limit = self.config.pubsub.max_peer_stats + self.config.membership.active_capacity;
        if self.peers.len() > limit {
            let active: Vec<NodeId> = self.active_view().collect();
            self.peers.retain(|id, _| active.contains(id));
        }
    }

    /// A serializable snapshot of views, trees, counters, caches, scores and cooled peers;
    /// cooling deadlines are expressed relative to `now`.
    pub fn stats(&self, now: Instant) -> ProtoStats {
        let active_view: Vec<NodeId> = self.active_view().collect();
        let peers = self
            .peers
            .iter()
            .map(|(id, t)| {
                let stats = PeerStats {
                    active: active_view.contains(id),
                    messages: t.messages.snapshot(),
                    duplicates: t.duplicates,
                    send_successes: t.send_successes,
                    send_timeouts: t.send_timeouts,
                    send_latency_ms: t.send_latency_ms,
                    rtt_ms: t.rtt_ms,
                    loss: t.loss,
                    score: self.pubsub.score(id),
                };
                (*id, stats)
            })
            .collect();
        let topics = self
            .pubsub
            .trees()
            .topics()
            .map(|(topic, t)| {
                let mut eager_in = BTreeMap::new();
                let mut lazy_in = BTreeMap::new();
                for tree in t.trees.values() {
                    for peer in &tree.eager {
                        *eager_in.entry(*peer).or_default() += 1;
                    }
                    for peer in &tree.lazy {
                        *lazy_in.entry(*peer).or_default() += 1;
                    }
                }
                TopicStats {
                    topic: topic.clone(),
                    subscribed: t.subscribed,
                    trees: t.trees.len(),
                    eager_in,
                    lazy_in,
                }
            })
            .collect();
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let cooled = self
            .pubsub
            .cooled()
            .map(|c| CooledStats {
                peer: c.peer,
                until_in_ms: millis(c.until.saturating_duration_since(now)),
                backoff_ms: millis(c.backoff),
                probe_in_flight: c.probe_in_flight,
            })
            .collect();
        ProtoStats {
            node: self.me.id,
            active_view,
            passive_len: self.membership.passive_len(),
            lost_len: self.membership.lost_len(),
            pending_requests: self.membership.pending_len(),
            neighbor_up: self.neighbor_up,
            neighbor_down: self.neighbor_down,
            membership: self.membership.counters(),
            pubsub: self.pubsub.counters(),
            messages: self.tally.snapshot(),
            peers,
            topics,
            cache: self.pubsub.cache_stats(),
            cooled,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::proto::{GossipMessage, MembershipMessage, MessageKind, Topic};

    fn addr(n: u8) -> PeerAddr {
        let id = NodeId::from_bytes([n; 32]);
        PeerAddr::new(id, SocketAddr::from(([127, 0, 0, n], 4433)))
    }

    #[test]
    fn invalid_config_is_refused() {
        let mut config = Config::default();
        config.membership.prwl = 9;
        assert!(matches!(
            State::new(addr(1), config, 0),
            Err(ConfigError::PrwlAboveArwl { prwl: 9, arwl: 6 })
        ));
    }

    #[test]
    fn first_event_arms_the_tick_and_the_tick_rearms() {
        let mut state = State::new(addr(1), Config::default(), 0).unwrap();
        let now = Instant::now();
        let tick = Command::SetTimer {
            after: Duration::from_secs(1),
            timer: Timer::Tick,
        };
        let first: Vec<Command> = state.handle(Event::Join(vec![addr(2)]), now).collect();
        assert_eq!(first, vec![tick.clone(), Command::Connect(addr(2))]);
        let again: Vec<Command> = state.handle(Event::TimerFired(Timer::Tick), now).collect();
        assert!(again.contains(&tick));
    }

    #[test]
    fn neighbours_enter_the_trees_and_the_stats_snapshot() {
        let mut state = State::new(addr(1), Config::default(), 0).unwrap();
        let now = Instant::now();
        let topic = Topic::new("t").unwrap();
        let peer = addr(2).id;
        let _ = state.handle(Event::Subscribe(topic.clone()), now).count();
        let _ = state.handle(Event::PeerUp(peer), now).count();
        let request = MembershipMessage::Neighbor {
            addr: addr(2).addr,
            priority: crate::proto::Priority::Low,
        };
        let message = Message::Membership(request);
        let commands: Vec<Command> = state
            .handle(
                Event::Message {
                    from: peer,
                    message,
                },
                now,
            )
            .collect();
        assert!(commands.contains(&Command::NeighborUp(peer)));
        let payload = Bytes::from_static(b"hello");
        let commands: Vec<Command> = state
            .handle(Event::Publish { topic, payload }, now)
            .collect();
        assert!(commands.iter().any(|c| matches!(
            c,
            Command::Send { to, message: Message::Gossip(GossipMessage::Gossip { .. }), .. } if *to == peer
        )));
        let _ = state.handle(Event::SendTimedOut(peer), now).count();
        for ms in [10, 20] {
            let latency = Duration::from_millis(ms);
            let _ = state
                .handle(Event::SendSucceeded { peer, latency }, now)
                .count();
        }

        let stats = state.stats(now);
        assert_eq!(stats.active_view, vec![peer]);
        assert_eq!(stats.neighbor_up, 1);
        assert_eq!(stats.messages.sent[&MessageKind::Gossip], 1);
        assert_eq!(stats.messages.received[&MessageKind::Neighbor], 1);
        assert_eq!(stats.peers[&peer].send_timeouts, 1);
        assert!((stats.peers[&peer].send_latency_ms - 11.0).abs() < 1e-9);
        assert_eq!(stats.cooled.len(), 1);
        assert_eq!(stats.topics[0].eager_in[&peer], 1);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["messages"]["sent"]["gossip"], 1);
        assert_eq!(json["cooled"][0]["backoff_ms"], 2000);
        assert!(json["peers"][peer.to_string()]["score"].as_f64().unwrap() < 0.0);
    }
}
