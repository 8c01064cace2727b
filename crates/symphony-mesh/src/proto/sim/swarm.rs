//! Swarm figures on the simulator, as iroh-gossip's CI reports them for 20–1000 nodes:
//! delivery (missed messages), RMR, last delivery hop, and whether the overlay converges
//! after churn. Run by `mesh-bench --sim` and, bounded to 200 nodes, by a unit test.
//!
//! A run ([`run`]): `nodes` nodes subscribe and join 10 ms apart through nodes 0–2; the
//! swarm runs until the overlay is connected and then `settle` more; `warmup` unmeasured
//! messages build the trees (an origin's first message floods); then `messages` are
//! published `interval` apart and the swarm drains for 10 s. Churn: `churn` of the nodes
//! (never the single publisher) crash at once; the report says when the live overlay was
//! connected again (checked every second, for at most 120 s) and the figures of `messages`
//! more published after that. Virtual time and one seed: the figures do not depend on the
//! machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::{Sim, SimConfig};
use crate::proto::{ConfigError, Event, Topic};

/// Who publishes the measured messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Publishers {
    /// Node 0 publishes everything.
    Single,
    /// Each message from a uniformly random live node (seeded).
    Random,
}

/// One simulated swarm run; see the module docs.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Nodes in the swarm.
    pub nodes: usize,
    /// Network model and protocol configuration (seed, latency, jitter, loss).
    pub network: SimConfig,
    /// Who publishes.
    pub publishers: Publishers,
    /// Measured messages, before and again after churn.
    pub messages: usize,
    /// Time between two published messages.
    pub interval: Duration,
    /// Unmeasured messages first (from every publisher's side, the same rule as measured).
    pub warmup: usize,
    /// Run this long after the overlay first connects, before the warm-up.
    pub settle: Duration,
    /// Share of the nodes crashed at once after the measurement, in [0, 1); 0: no churn.
    pub churn: f64,
}

impl Scenario {
    /// `nodes` nodes on the default network of [`SimConfig::new`]: 100 messages 100 ms
    /// apart after 10 warm-up messages, 20% churn.
    pub fn new(nodes: usize, seed: u64, publishers: Publishers) -> Self {
        Self {
            nodes,
            network: SimConfig::new(seed),
            publishers,
            messages: 100,
            interval: Duration::from_millis(100),
            warmup: 10,
            settle: Duration::from_secs(20),
            churn: 0.2,
        }
    }
}

/// Delivery figures of one batch of published messages.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Messages published.
    pub messages: usize,
    /// (message, live node other than its publisher) pairs.
    pub expected: usize,
    /// Pairs without a delivery at the end of the run.
    pub missed: usize,
    /// Relative message redundancy (PlumTree §4.1): payload frames received / (live nodes −
    /// 1) / messages − 1.
    pub rmr: f64,
    /// Largest hop count of a message's last delivery.
    pub last_hop_max: u16,
    /// Mean over messages of the hop count of its last delivery.
    pub last_hop_mean: f64,
    /// Delivery latency, publish to delivery, median, ms.
    pub latency_p50_ms: f64,
    /// Delivery latency, 99th percentile, ms.
    pub latency_p99_ms: f64,
    /// Share of deliveries within 2 × path delay + 50 ms, the path delay being the
    /// delivered copy's hops × the longest link latency (the goal of issue 14).
    pub within_bound: f64,
}

/// What happened after the churn.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Churn {
    /// Nodes crashed.
    pub killed: usize,
    /// Time from the crash until the live nodes' active views formed one overlay again, ms;
    /// `None`: not within 120 s.
    pub connected_after_ms: Option<u64>,
    /// Time from the crash until no live node's active view held a crashed node (failures
    /// detected and views refilled from the passive view), ms; `None`: not within 120 s.
    pub repaired_after_ms: Option<u64>,
    /// Figures of the messages published after the overlay re-formed (or after 120 s).
    pub after: Figures,
}

/// The report of one [`run`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Nodes in the swarm.
    pub nodes: usize,
    /// Who published.
    pub publishers: Publishers,
    /// Virtual time from the first join until the overlay was connected, ms; `None`: not
    /// within 120 s of the last join.
    pub connected_after_ms: Option<u64>,
    /// Figures of the measured messages.
    pub before: Figures,
    /// The churn phase, when `churn > 0`.
    pub churn: Option<Churn>,
    /// Packets lost on the wire and retransmitted, whole run.
    pub packets_lost: u64,
}

const TOPIC: &str = "sim";
const SECOND: Duration = Duration::from_secs(1);
const DRAIN: Duration = Duration::from_secs(10);
const CONVERGE_LIMIT: u64 = 120;

fn topic() -> Topic {
    // A constant, valid name: built directly rather than through the fallible `Topic::new`.
    Topic(std::sync::Arc::from(TOPIC))
}

/// Runs `scenario` to the end.
///
/// # Errors
/// The protocol configuration in `scenario.network.proto` is invalid.
pub fn run(scenario: &Scenario) -> Result<Report, ConfigError> {
    let topic = topic();
    let n = scenario.nodes.max(2);
    let mut sim = Sim::new(scenario.network.clone(), n)?;
    for i in 0..n {
        sim.input(i, Event::Subscribe(topic.clone()));
        let via: Vec<usize> = (0..3).filter(|b| *b != i && *b < n).collect();
        sim.join(i, &via, Duration::from_millis(10 * i as u64));
    }
    sim.run_for(Duration::from_millis(10 * n as u64));
    let connected_after_ms = run_until(&mut sim, overlay_connected).map(|d| {
        u64::try_from((d + Duration::from_millis(10 * n as u64)).as_millis()).unwrap_or(u64::MAX)
    });
    sim.run_for(scenario.settle);
    let mut rng = StdRng::seed_from_u64(scenario.network.seed ^ 0x5eed);
    let mut batch = Batch::new(&topic, scenario);
    batch.publish(&mut sim, &mut rng, scenario.warmup, "warmup");
    sim.run_for(SECOND);
    let mut measured = Batch::new(&topic, scenario);
    measured.publish(&mut sim, &mut rng, scenario.messages, "measured");
    sim.run_for(DRAIN);
    let before = measured.figures(&sim);
    let churn = (scenario.churn > 0.0).then(|| {
        let killed = kill(&mut sim, &mut rng, scenario);
        let crashed = sim.now();
        let connected_after_ms = run_until(&mut sim, overlay_connected)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let repaired_after_ms = run_until(&mut sim, views_repaired)
            .map(|_| u64::try_from((sim.now() - crashed).as_millis()).unwrap_or(u64::MAX));
        let mut after = Batch::new(&topic, scenario);
        after.publish(&mut sim, &mut rng, scenario.warmup, "rewarm");
        sim.run_for(SECOND);
        let mut after = Batch::new(&topic, scenario);
        after.publish(&mut sim, &mut rng, scenario.messages, "after");
        sim.run_for(DRAIN);
        Churn {
            killed,
            connected_after_ms,
            repaired_after_ms,
            after: after.figures(&sim),
        }
    });
    Ok(Report {
        nodes: n,
        publishers: scenario.publishers,
        connected_after_ms,
        before,
        churn,
        packets_lost: sim.packets_lost,
    })
}

/// Runs in 1 s steps until `done`; the time it took, or `None` after [`CONVERGE_LIMIT`]
/// seconds.
fn run_until(sim: &mut Sim, done: fn(&Sim) -> bool) -> Option<Duration> {
    let start = sim.now();
    for _ in 0..=CONVERGE_LIMIT {
        if done(sim) {
            return Some(sim.now() - start);
        }
        sim.run_for(SECOND);
    }
    None
}

fn kill(sim: &mut Sim, rng: &mut StdRng, scenario: &Scenario) -> usize {
    let protected = usize::from(scenario.publishers == Publishers::Single);
    let mut candidates: Vec<usize> = (protected..sim.len()).collect();
    candidates.shuffle(rng);
    let count = ((sim.len() as f64 * scenario.churn).round() as usize).min(candidates.len());
    for victim in &candidates[..count] {
        sim.kill(*victim);
    }
    count
}

/// Whether no live node's active view holds a dead node.
fn views_repaired(sim: &Sim) -> bool {
    sim.alive().all(|node| {
        sim.nodes[node]
            .state
            .active_view()
            .all(|peer| sim.index.get(&peer).is_some_and(|&p| sim.nodes[p].alive))
    })
}

/// Whether the live nodes' active views form one connected overlay.
pub fn overlay_connected(sim: &Sim) -> bool {
    let alive: Vec<usize> = sim.alive().collect();
    let Some(&start) = alive.first() else {
        return true;
    };
    let mut seen = BTreeSet::from([start]);
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for peer in sim.nodes[node].state.active_view() {
            let Some(&peer) = sim.index.get(&peer) else {
                continue;
            };
            if sim.nodes[peer].alive && seen.insert(peer) {
                queue.push_back(peer);
            }
        }
    }
    seen.len() == alive.len()
}

/// Messages published by one phase: who and when, by payload.
struct Batch<'a> {
    topic: &'a Topic,
    publishers: Publishers,
    interval: Duration,
    sent: Vec<(Bytes, usize, Duration)>,
}

impl<'a> Batch<'a> {
    fn new(topic: &'a Topic, scenario: &Scenario) -> Self {
        Self {
            topic,
            publishers: scenario.publishers,
            interval: scenario.interval,
            sent: Vec::new(),
        }
    }

    fn publish(&mut self, sim: &mut Sim, rng: &mut StdRng, count: usize, label: &str) {
        for k in 0..count {
            let node = match self.publishers {
                Publishers::Single => 0,
                Publishers::Random => {
                    let alive: Vec<usize> = sim.alive().collect();
                    alive[rng.random_range(0..alive.len())]
                }
            };
            let payload = Bytes::from(format!("{label}-{k}"));
            self.sent.push((payload.clone(), node, sim.now()));
            sim.publish(node, self.topic, payload);
            sim.run_for(self.interval);
        }
    }

    fn figures(&self, sim: &Sim) -> Figures {
        let index: BTreeMap<&Bytes, usize> = self
            .sent
            .iter()
            .enumerate()
            .map(|(i, (p, _, _))| (p, i))
            .collect();
        let alive: Vec<usize> = sim.alive().collect();
        // Per message: the first delivery to each live node (time, hops).
        let mut got: Vec<BTreeMap<usize, (Duration, u16)>> = vec![BTreeMap::new(); self.sent.len()];
        let mut ids = BTreeSet::new();
        for &node in &alive {
            for d in &sim.nodes[node].deliveries {
                if let Some(&i) = index.get(&d.payload) {
                    got[i].entry(node).or_insert((d.at, d.hops));
                    ids.insert(d.id);
                }
            }
        }
        let mut figures = Figures {
            messages: self.sent.len(),
            ..Figures::default()
        };
        let mut latencies = Vec::new();
        let mut last_hops = Vec::new();
        let link = sim.config.latency.1;
        let mut within = 0usize;
        for ((_, publisher, at), deliveries) in self.sent.iter().zip(&got) {
            let receivers = alive.iter().filter(|n| *n != publisher).count();
            figures.expected += receivers;
            figures.missed += receivers.saturating_sub(deliveries.len());
            latencies.extend(deliveries.values().map(|(t, _)| *t - *at));
            within += deliveries
                .values()
                .filter(|(t, hops)| {
                    *t - *at <= 2 * link * u32::from(*hops) + Duration::from_millis(50)
                })
                .count();
            if let Some((_, hops)) = deliveries.values().max_by_key(|(t, _)| *t) {
                last_hops.push(*hops);
            }
        }
        let received: u64 = ids.iter().filter_map(|id| sim.receptions.get(id)).sum();
        let receivers = alive.len().saturating_sub(1) * ids.len();
        if receivers > 0 {
            figures.rmr = received as f64 / receivers as f64 - 1.0;
        }
        figures.last_hop_max = last_hops.iter().copied().max().unwrap_or(0);
        if !last_hops.is_empty() {
            figures.last_hop_mean =
                last_hops.iter().map(|h| f64::from(*h)).sum::<f64>() / last_hops.len() as f64;
        }
        if !latencies.is_empty() {
            figures.within_bound = within as f64 / latencies.len() as f64;
        }
        latencies.sort();
        figures.latency_p50_ms = percentile_ms(&latencies, 0.5);
        figures.latency_p99_ms = percentile_ms(&latencies, 0.99);
        figures
    }
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
    sorted.get(rank).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_hundred_nodes_deliver_everything_and_reconnect_after_20_percent_churn() {
        let report = run(&Scenario::new(200, 14, Publishers::Single)).unwrap();
        println!("{}", serde_json::to_string(&report).unwrap());
        assert!(report.connected_after_ms.is_some(), "{report:?}");
        assert_eq!(report.before.missed, 0, "{report:?}");
        assert!(report.before.rmr < 0.15, "RMR {}", report.before.rmr);
        assert!(report.before.last_hop_max < 12, "{report:?}");
        let churn = report.churn.unwrap();
        assert_eq!(churn.killed, 40);
        assert!(churn.connected_after_ms.is_some(), "{churn:?}");
        assert!(churn.repaired_after_ms.is_some(), "{churn:?}");
        assert_eq!(churn.after.missed, 0, "{churn:?}");
    }

    #[test]
    fn lost_packets_delay_but_never_lose_a_message() {
        let mut scenario = Scenario::new(30, 15, Publishers::Random);
        scenario.network.packet_loss = 0.05;
        scenario.churn = 0.0;
        let report = run(&scenario).unwrap();
        assert!(report.packets_lost > 0);
        assert_eq!(report.before.missed, 0, "{report:?}");
        assert!(report.churn.is_none());
    }

    #[test]
    fn same_seed_same_figures() {
        let mut scenario = Scenario::new(30, 16, Publishers::Random);
        scenario.network.packet_loss = 0.02;
        scenario.messages = 20;
        assert_eq!(run(&scenario).unwrap(), run(&scenario).unwrap());
    }
}
