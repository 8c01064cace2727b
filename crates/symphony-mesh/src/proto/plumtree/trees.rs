//! Eager/lazy link sets per topic and per origin: one broadcast tree per sender
//! (PlumTree §3.7, "multiple senders"), each formed and repaired as in §3.1–3.2.
//!
//! A single tree shared by all senders does not survive concurrent senders: two messages
//! from different origins crossing the same cycle meet at different nodes, each meeting point
//! prunes its own edge, and the cycle is cut twice. With one tree per origin, every message of
//! a tree travels from the same root, meeting points agree, and each cycle loses one edge.
//! The cost is one flood per new origin (its tree starts with every neighbour eager) and a
//! few link sets per (topic, origin), bounded by `max_trees` with least-recently-used
//! eviction.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::NodeId;
use crate::proto::Topic;

/// The links of one (topic, origin) tree.
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    pub eager: BTreeSet<NodeId>,
    pub lazy: BTreeSet<NodeId>,
    last_used: Instant,
    /// Carried a new message since the last opportunistic-graft round.
    pub active: bool,
    /// The eager neighbour that last brought a new message: this node's parent in the tree.
    pub parent: Option<NodeId>,
}

/// The trees of one topic.
#[derive(Clone, Debug)]
pub(crate) struct TopicTrees {
    pub subscribed: bool,
    pub trees: BTreeMap<NodeId, Tree>,
    last_used: Instant,
}

/// What `ensure_*` evicted or refused, for counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TreeEvictions {
    /// Unsubscribed topics evicted at `max_topics`.
    pub topics: u64,
    /// Origin trees evicted at `max_trees` per topic.
    pub trees: u64,
    /// Topics refused because `max_topics` subscribed topics exist.
    pub refused_topics: u64,
}

#[derive(Debug)]
pub(crate) struct Trees {
    max_topics: usize,
    max_trees: usize,
    topics: BTreeMap<Topic, TopicTrees>,
    evictions: TreeEvictions,
}

impl Trees {
    pub fn new(max_topics: usize, max_trees: usize) -> Self {
        Self {
            max_topics,
            max_trees,
            topics: BTreeMap::new(),
            evictions: TreeEvictions::default(),
        }
    }

    /// Creates the topic if needed, evicting the least recently used unsubscribed topic at
    /// the limit. Returns false when only subscribed topics fill the limit.
    pub fn ensure_topic(&mut self, topic: &Topic, now: Instant) -> bool {
        if let Some(state) = self.topics.get_mut(topic) {
            state.last_used = now;
            return true;
        }
        if self.topics.len() >= self.max_topics {
            let victim = self
                .topics
                .iter()
                .filter(|(_, s)| !s.subscribed)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(t, _)| t.clone());
            let Some(victim) = victim else {
                self.evictions.refused_topics += 1;
                return false;
            };
            self.topics.remove(&victim);
            self.evictions.topics += 1;
        }
        let state = TopicTrees {
            subscribed: false,
            trees: BTreeMap::new(),
            last_used: now,
        };
        self.topics.insert(topic.clone(), state);
        true
    }

    /// Creates the (topic, origin) tree if needed with every neighbour eager, except those
    /// marked unhealthy, which start lazy and are returned so the caller can PRUNE them.
    /// `None` when the topic was refused.
    pub fn ensure_tree(
        &mut self,
        topic: &Topic,
        origin: NodeId,
        now: Instant,
        neighbors: &[(NodeId, bool)],
    ) -> Option<Vec<NodeId>> {
        if !self.ensure_topic(topic, now) {
            return None;
        }
        let state = self.topics.get_mut(topic)?;
        if let Some(tree) = state.trees.get_mut(&origin) {
            tree.last_used = now;
            return Some(Vec::new());
        }
        if state.trees.len() >= self.max_trees {
            let victim = state
                .trees
                .iter()
                .min_by_key(|(_, t)| t.last_used)
                .map(|(o, _)| *o);
            if let Some(victim) = victim {
                state.trees.remove(&victim);
                self.evictions.trees += 1;
            }
        }
        let mut tree = Tree {
            eager: BTreeSet::new(),
            lazy: BTreeSet::new(),
            last_used: now,
            active: false,
            parent: None,
        };
        let mut pruned = Vec::new();
        for (peer, healthy) in neighbors {
            if *healthy {
                tree.eager.insert(*peer);
            } else {
                tree.lazy.insert(*peer);
                pruned.push(*peer);
            }
        }
        state.trees.insert(origin, tree);
        Some(pruned)
    }

    pub fn topic(&self, topic: &Topic) -> Option<&TopicTrees> {
        self.topics.get(topic)
    }

    pub fn tree(&self, topic: &Topic, origin: &NodeId) -> Option<&Tree> {
        self.topics.get(topic)?.trees.get(origin)
    }

    pub fn tree_mut(&mut self, topic: &Topic, origin: &NodeId) -> Option<&mut Tree> {
        self.topics.get_mut(topic)?.trees.get_mut(origin)
    }

    pub fn set_subscribed(&mut self, topic: &Topic, subscribed: bool) {
        if let Some(state) = self.topics.get_mut(topic) {
            state.subscribed = subscribed;
        }
    }

    /// Moves `peer` to eager or lazy in one origin's tree, or in every tree of the topic.
    pub fn set_link(&mut self, topic: &Topic, origin: Option<NodeId>, peer: NodeId, eager: bool) {
        let Some(state) = self.topics.get_mut(topic) else {
            return;
        };
        let trees: Vec<&mut Tree> = match origin {
            Some(origin) => state.trees.get_mut(&origin).into_iter().collect(),
            None => state.trees.values_mut().collect(),
        };
        for tree in trees {
            let (from, to) = if eager {
                (&mut tree.lazy, &mut tree.eager)
            } else {
                (&mut tree.eager, &mut tree.lazy)
            };
            from.remove(&peer);
            to.insert(peer);
        }
    }

    /// A new neighbour joins every tree, eager or lazy.
    pub fn add_neighbor(&mut self, peer: NodeId, eager: bool) {
        for tree in self.topics.values_mut().flat_map(|s| s.trees.values_mut()) {
            if eager {
                tree.eager.insert(peer);
            } else {
                tree.lazy.insert(peer);
            }
        }
    }

    pub fn remove_neighbor(&mut self, peer: &NodeId) {
        for tree in self.topics.values_mut().flat_map(|s| s.trees.values_mut()) {
            tree.eager.remove(peer);
            tree.lazy.remove(peer);
        }
    }

    pub fn topics(&self) -> impl Iterator<Item = (&Topic, &TopicTrees)> {
        self.topics.iter()
    }

    pub fn topic_names(&self) -> Vec<Topic> {
        self.topics.keys().cloned().collect()
    }

    pub fn trees_mut(&mut self) -> impl Iterator<Item = (&Topic, &NodeId, &mut Tree)> {
        self.topics
            .iter_mut()
            .flat_map(|(t, s)| s.trees.iter_mut().map(move |(o, tree)| (t, o, tree)))
    }

    pub fn evictions(&self) -> TreeEvictions {
        self.evictions
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    fn topic(name: &str) -> Topic {
        Topic::new(name).unwrap()
    }

    #[test]
    fn new_tree_starts_eager_except_unhealthy() {
        let mut trees = Trees::new(4, 4);
        let now = Instant::now();
        let pruned = trees
            .ensure_tree(&topic("t"), id(9), now, &[(id(1), true), (id(2), false)])
            .unwrap();
        assert_eq!(pruned, vec![id(2)]);
        let tree = trees.tree(&topic("t"), &id(9)).unwrap();
        assert!(tree.eager.contains(&id(1)) && tree.lazy.contains(&id(2)));
    }

    #[test]
    fn links_are_per_origin_and_prune_all_covers_every_tree() {
        let mut trees = Trees::new(4, 4);
        let now = Instant::now();
        let t = topic("t");
        let neighbors = [(id(1), true)];
        trees.ensure_tree(&t, id(8), now, &neighbors);
        trees.ensure_tree(&t, id(9), now, &neighbors);
        trees.set_link(&t, Some(id(8)), id(1), false);
        assert!(trees.tree(&t, &id(8)).unwrap().lazy.contains(&id(1)));
        assert!(trees.tree(&t, &id(9)).unwrap().eager.contains(&id(1)));
        trees.set_link(&t, None, id(1), false);
        assert!(trees.tree(&t, &id(9)).unwrap().lazy.contains(&id(1)));
    }

    #[test]
    fn least_recently_used_unsubscribed_topic_and_tree_are_evicted() {
        let mut trees = Trees::new(2, 2);
        let t0 = Instant::now();
        let later = |s| t0 + Duration::from_secs(s);
        assert!(trees.ensure_topic(&topic("a"), t0));
        trees.set_subscribed(&topic("a"), true);
        assert!(trees.ensure_topic(&topic("b"), later(1)));
        assert!(trees.ensure_topic(&topic("c"), later(2)));
        assert!(trees.topic(&topic("a")).is_some(), "subscribed topic kept");
        assert!(trees.topic(&topic("b")).is_none());
        trees.set_subscribed(&topic("c"), true);
        assert!(!trees.ensure_topic(&topic("d"), later(3)));
        assert_eq!(trees.evictions().refused_topics, 1);

        for (origin, at) in [(1, 4), (2, 5), (3, 6)] {
            trees.ensure_tree(&topic("a"), id(origin), later(at), &[]);
        }
        assert!(trees.tree(&topic("a"), &id(1)).is_none());
        assert!(trees.tree(&topic("a"), &id(3)).is_some());
        assert_eq!(trees.evictions().trees, 1);
    }
}
