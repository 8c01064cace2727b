//! Swarm scenarios on the simulator. Figures are printed (`--nocapture`); assertions pin
//! only the requirements: delivery, re-merge, churn, redundancy, cooling.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use super::swarm::overlay_connected;
use super::{Sim, SimConfig};
use crate::proto::{Event, MessageId, MessageKind, Topic};

fn topic() -> Topic {
    Topic::new("tracker").unwrap()
}

const SECOND: Duration = Duration::from_secs(1);

/// `n` nodes subscribed to [`topic`], joining 50 ms apart through nodes 0–2.
fn swarm(config: SimConfig, n: usize) -> Sim {
    let mut sim = Sim::new(config, n).unwrap();
    for i in 0..n {
        sim.input(i, Event::Subscribe(topic()));
        let via: Vec<usize> = (0..3).filter(|b| *b != i && *b < n).collect();
        sim.join(i, &via, Duration::from_millis(50 * i as u64));
    }
    sim
}

/// A published message: who, when, what.
struct Published {
    node: usize,
    at: Duration,
    payload: Bytes,
}

fn publish(sim: &mut Sim, node: usize, label: &str, log: &mut Vec<Published>) {
    let payload = Bytes::from(format!("{label}-{}", log.len()));
    log.push(Published {
        node,
        at: sim.now(),
        payload: payload.clone(),
    });
    sim.publish(node, &topic(), payload);
}

/// `(payload, node)` pairs where a live node other than the publisher lacks the message.
fn undelivered(sim: &Sim, log: &[Published]) -> Vec<(Bytes, usize)> {
    let mut missing = Vec::new();
    for message in log {
        for node in sim.alive().filter(|n| *n != message.node) {
            let got = sim.nodes[node]
                .deliveries
                .iter()
                .any(|d| d.payload == message.payload);
            if !got {
                missing.push((message.payload.clone(), node));
            }
        }
    }
    missing
}

fn ids_of(sim: &Sim, log: &[Published]) -> Vec<MessageId> {
    let by_payload: BTreeMap<&Bytes, MessageId> = sim
        .nodes
        .iter()
        .flat_map(|n| n.deliveries.iter().map(|d| (&d.payload, d.id)))
        .collect();
    log.iter()
        .filter_map(|m| by_payload.get(&m.payload).copied())
        .collect()
}

/// Relative message redundancy (PlumTree §4.1): payload receptions / (N - 1) - 1.
fn rmr(sim: &Sim, log: &[Published]) -> f64 {
    let receivers = sim.alive().count() as f64 - 1.0;
    let ids = ids_of(sim, log);
    let received: u64 = ids.iter().map(|id| sim.receptions[id]).sum();
    received as f64 / (receivers * ids.len() as f64) - 1.0
}

fn hops(sim: &Sim, log: &[Published]) -> (u16, f64) {
    let ids: BTreeSet<MessageId> = ids_of(sim, log).into_iter().collect();
    let all: Vec<u16> = sim
        .nodes
        .iter()
        .flat_map(|n| n.deliveries.iter())
        .filter(|d| ids.contains(&d.id))
        .map(|d| d.hops)
        .collect();
    let max = all.iter().copied().max().unwrap_or(0);
    (
        max,
        all.iter().map(|h| f64::from(*h)).sum::<f64>() / all.len() as f64,
    )
}

fn churn(sim: &Sim) -> (u64, u64) {
    sim.nodes.iter().fold((0, 0), |(up, down), n| {
        (up + n.neighbor_up, down + n.neighbor_down)
    })
}

/// Delivery latencies (publish to `Deliver`) over every receiver of every message, sorted.
fn latencies(sim: &Sim, log: &[Published]) -> Vec<Duration> {
    let mut all: Vec<Duration> = log
        .iter()
        .flat_map(|m| {
            sim.nodes
                .iter()
                .filter_map(|n| n.deliveries.iter().find(|d| d.payload == m.payload))
                .map(move |d| d.at - m.at)
        })
        .collect();
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(rank).copied().unwrap_or_default()
}

#[test]
fn hundred_nodes_deliver_every_message_from_random_publishers() {
    let n = 100;
    let mut sim = swarm(SimConfig::new(1), n);
    sim.run_for(30 * SECOND);
    assert!(overlay_connected(&sim));
    let mut rng = StdRng::seed_from_u64(11);
    let mut log = Vec::new();
    let mut first_of_origin = Vec::new();
    let mut origins = BTreeSet::new();
    for _ in 0..400 {
        let node = rng.random_range(0..n);
        if origins.insert(node) {
            first_of_origin.push(log.len());
        }
        publish(&mut sim, node, "random", &mut log);
        sim.run_for(Duration::from_millis(50));
    }
    sim.run_for(10 * SECOND);
    let copy = |m: &Published| Published {
        node: m.node,
        at: m.at,
        payload: m.payload.clone(),
    };
    let firsts: Vec<Published> = first_of_origin.iter().map(|i| copy(&log[*i])).collect();
    let repeats: Vec<Published> = (0..log.len())
        .filter(|i| !first_of_origin.contains(i))
        .map(|i| copy(&log[i]))
        .collect();
    let last = &log[300..];
    let (max_hops, mean_hops) = hops(&sim, last);
    let lat = latencies(&sim, last);
    println!(
        "{n} nodes, 400 msgs at 20 msg/s from random publishers: RMR all {:.3}, first message of \
         each origin ({}) {:.3}, later messages {:.3}, last 100 {:.3}; last 100: max hops {max_hops}, \
         mean hops {mean_hops:.2}, latency p50 {:?} p99 {:?} (links 5-40 ms)",
        rmr(&sim, &log),
        firsts.len(),
        rmr(&sim, &firsts),
        rmr(&sim, &repeats),
        rmr(&sim, last),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    );
    assert_eq!(undelivered(&sim, &log), vec![]);
}

#[test]
fn twenty_nodes_at_250_messages_per_second_keep_their_trees() {
    let n = 20;
    let mut sim = swarm(SimConfig::new(9), n);
    sim.run_for(20 * SECOND);
    let mut rng = StdRng::seed_from_u64(99);
    let mut log = Vec::new();
    for _ in 0..2500 {
        publish(&mut sim, rng.random_range(0..n), "load", &mut log);
        sim.run_for(Duration::from_millis(4));
    }
    sim.run_for(5 * SECOND);
    let steady = &log[500..];
    let lat = latencies(&sim, steady);
    let (max_hops, mean_hops) = hops(&sim, steady);
    let grafts: u64 = (0..n)
        .map(|i| {
            let stats = sim.nodes[i].state.stats(sim_now(&sim));
            stats
                .messages
                .sent
                .get(&crate::proto::MessageKind::Graft)
                .copied()
                .unwrap_or(0)
        })
        .sum();
    println!(
        "{n} nodes, 2500 msgs at 250 msg/s from random publishers: RMR first 500 {:.3}, last 2000 \
         {:.3}; last 2000: latency p50 {:?} p99 {:?}, max hops {max_hops}, mean hops {mean_hops:.2}; \
         {grafts} grafts in all",
        rmr(&sim, &log[..500]),
        rmr(&sim, steady),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    );
    assert_eq!(undelivered(&sim, &log), vec![]);
}

#[test]
fn killing_5_of_20_mid_stream_still_delivers_to_live_nodes() {
    let mut sim = swarm(SimConfig::new(2), 20);
    sim.run_for(20 * SECOND);
    let mut rng = StdRng::seed_from_u64(22);
    let mut log = Vec::new();
    for k in 0..200 {
        if k == 50 {
            let mut victims: Vec<usize> = (0..20).collect();
            victims.sort_by_key(|_| rng.random::<u32>());
            for victim in &victims[..5] {
                sim.kill(*victim);
            }
        }
        let alive: Vec<usize> = sim.alive().collect();
        let node = *alive.choose(&mut rng).unwrap();
        publish(&mut sim, node, "kill", &mut log);
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(10 * SECOND);
    let after_kill = &log[50..];
    println!(
        "20 nodes, 5 killed: RMR after kill {:.3}, hops {:?}, live overlay connected: {}",
        rmr(&sim, after_kill),
        hops(&sim, after_kill),
        overlay_connected(&sim)
    );
    assert!(overlay_connected(&sim));
    assert_eq!(undelivered(&sim, &log), vec![]);
}

#[test]
fn partition_longer_than_idle_timeout_heals_and_delivers_everywhere() {
    let n = 40;
    let mut sim = swarm(SimConfig::new(3), n);
    sim.run_for(30 * SECOND);
    let half = |i: usize| u8::from(i >= n / 2);
    sim.partition((0..n).map(half).collect());
    sim.run_for(60 * SECOND);
    let crossing = (0..n)
        .flat_map(|i| {
            let views: Vec<_> = sim.nodes[i].state.active_view().collect();
            views.into_iter().map(move |p| (i, p))
        })
        .filter(|(i, p)| (0..n).any(|j| sim.id(j) == *p && half(j) != half(*i)))
        .count();
    assert_eq!(crossing, 0, "the halves must have evicted each other");
    let before = churn(&sim);
    sim.heal();
    let healed_at = sim.now();
    let mut merged_after = None;
    for _ in 0..180 {
        sim.run_for(SECOND);
        if merged_after.is_none() && overlay_connected(&sim) {
            merged_after = Some(sim.now() - healed_at);
        }
    }
    let after = churn(&sim);
    let merges: u64 = sim
        .nodes
        .iter()
        .map(|n| n.state.stats(sim_now(&sim)).membership.merge_links)
        .sum();
    let mut rng = StdRng::seed_from_u64(33);
    let mut log = Vec::new();
    for _ in 0..50 {
        publish(&mut sim, rng.random_range(0..n), "healed", &mut log);
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(10 * SECOND);
    let settled = churn(&sim);
    sim.run_for(300 * SECOND);
    let quiet = churn(&sim);
    let lost: usize = (0..n)
        .map(|i| sim.nodes[i].state.stats(sim_now(&sim)).lost_len)
        .sum();
    println!(
        "partition 60 s (idle 10 s): overlay one again after {merged_after:?}, {merges} merge links, \
         NeighborUp/Down during heal {}/{}, RMR {:.3}; 300 s later: {} lost entries, \
         NeighborUp/Down {}/{}",
        after.0 - before.0,
        after.1 - before.1,
        rmr(&sim, &log),
        lost,
        quiet.0 - settled.0,
        quiet.1 - settled.1
    );
    assert!(merged_after.is_some(), "overlay did not re-merge");
    assert_eq!(undelivered(&sim, &log), vec![]);
    assert_eq!(lost, 0);
    assert_eq!(quiet, settled, "the healed overlay keeps changing");
}

#[test]
fn small_island_rejoins_after_a_ten_minute_partition() {
    let n = 20;
    let mut sim = swarm(SimConfig::new(8), n);
    sim.run_for(20 * SECOND);
    let island = |i: usize| u8::from(i == 10 || i == 11);
    sim.partition((0..n).map(island).collect());
    sim.run_for(600 * SECOND);
    let index: BTreeMap<_, _> = (0..n).map(|i| (sim.id(i), i)).collect();
    let crossing = (0..n)
        .flat_map(|i| {
            sim.nodes[i]
                .state
                .active_view()
                .map(move |p| (i, p))
                .collect::<Vec<_>>()
        })
        .filter(|(i, p)| island(*i) != island(index[p]))
        .count();
    assert_eq!(crossing, 0, "the island must have been cut off");
    sim.heal();
    let healed_at = sim.now();
    let mut merged_after = None;
    for _ in 0..600 {
        sim.run_for(SECOND);
        if overlay_connected(&sim) {
            merged_after = Some(sim.now() - healed_at);
            break;
        }
    }
    println!("island of 2 cut off for 600 s: one overlay again after {merged_after:?}");
    assert!(merged_after.is_some(), "island did not rejoin");
    sim.run_for(10 * SECOND);
    let mut log = Vec::new();
    for k in 0..20 {
        publish(
            &mut sim,
            if k % 2 == 0 { 10 } else { 3 },
            "island",
            &mut log,
        );
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(5 * SECOND);
    assert_eq!(undelivered(&sim, &log), vec![]);
}

fn sim_now(sim: &Sim) -> std::time::Instant {
    sim.base + sim.now()
}

#[test]
fn steady_state_churn_is_zero_after_warm_up() {
    let n = 50;
    let mut sim = swarm(SimConfig::new(4), n);
    let mut rng = StdRng::seed_from_u64(44);
    let mut log = Vec::new();
    for _ in 0..120 {
        publish(&mut sim, rng.random_range(0..n), "warm", &mut log);
        sim.run_for(SECOND);
    }
    let warm = churn(&sim);
    let capacity = SimConfig::new(4).proto.membership.active_capacity;
    let free_slots: usize = (0..n)
        .map(|i| capacity.saturating_sub(sim.nodes[i].state.active_view().count()))
        .sum();
    let measure = 600;
    for _ in 0..measure {
        publish(&mut sim, rng.random_range(0..n), "steady", &mut log);
        sim.run_for(SECOND);
    }
    let steady = churn(&sim);
    let views: Vec<usize> = (0..n)
        .map(|i| sim.nodes[i].state.active_view().count())
        .collect();
    println!(
        "{n} nodes: NeighborUp/Down during warm-up {}/{}, during {measure} s steady state {}/{}; \
         active view sizes min {} max {}",
        warm.0,
        warm.1,
        steady.0 - warm.0,
        steady.1 - warm.1,
        views.iter().min().unwrap(),
        views.iter().max().unwrap()
    );
    // Steady state: no neighbour is ever lost or evicted; the only change allowed is a
    // view that was still short at the end of warm-up filling its free slots (one
    // NeighborUp per slot).
    assert_eq!(steady.1, warm.1, "a neighbour was lost in steady state");
    assert!(
        (steady.0 - warm.0) as usize <= free_slots,
        "{} NeighborUp for {free_slots} free slots",
        steady.0 - warm.0
    );
    assert_eq!(undelivered(&sim, &log[120..]), vec![]);
}

#[test]
fn single_publisher_tree_settles_below_rmr_0_2() {
    let n = 100;
    let mut sim = swarm(SimConfig::new(5), n);
    sim.run_for(30 * SECOND);
    let mut log = Vec::new();
    for _ in 0..50 {
        publish(&mut sim, 7, "settle", &mut log);
        sim.run_for(Duration::from_millis(200));
    }
    let settling = rmr(&sim, &log);
    let mut measured = Vec::new();
    for _ in 0..100 {
        publish(&mut sim, 7, "tree", &mut measured);
        sim.run_for(Duration::from_millis(200));
    }
    sim.run_for(5 * SECOND);
    let settled = rmr(&sim, &measured);
    let (max_hops, mean_hops) = hops(&sim, &measured);
    println!(
        "{n} nodes, single publisher: RMR first 50 msgs {settling:.3}, next 100 msgs {settled:.3}, \
         max hops {max_hops}, mean hops {mean_hops:.2}"
    );
    assert_eq!(undelivered(&sim, &measured), vec![]);
    assert!(settled < 0.2, "RMR {settled} after the tree settled");
}

#[test]
fn slow_peer_is_cooled_without_hurting_others() {
    let n = 20;
    let slow = 5;
    let config = SimConfig::new(6);
    let slow_extra = config.slow_extra;
    let mut sim = swarm(config, n);
    sim.run_for(20 * SECOND);
    sim.make_slow(slow);
    let slow_id = sim.id(slow);
    let mut rng = StdRng::seed_from_u64(66);
    let mut log = Vec::new();
    let mut cooled_seen = BTreeSet::new();
    for _ in 0..100 {
        let node = *(0..n)
            .filter(|i| *i != slow)
            .collect::<Vec<_>>()
            .choose(&mut rng)
            .unwrap();
        publish(&mut sim, node, "slow", &mut log);
        sim.run_for(Duration::from_millis(100));
        for i in 0..n {
            if sim.nodes[i].state.cooled_peers().any(|c| c.peer == slow_id) {
                cooled_seen.insert(i);
            }
        }
    }
    sim.run_for(10 * SECOND);
    let withheld: u64 = (0..n)
        .map(|i| {
            sim.nodes[i]
                .state
                .stats(sim_now(&sim))
                .pubsub
                .pushes_withheld
        })
        .sum();
    let mut worst = Duration::ZERO;
    for message in &log {
        for node in (0..n).filter(|i| *i != slow && *i != message.node) {
            if let Some(d) = sim.nodes[node]
                .deliveries
                .iter()
                .find(|d| d.payload == message.payload)
            {
                worst = worst.max(d.at - message.at);
            }
        }
    }
    println!(
        "slow node cooled by {} peers, {withheld} pushes withheld, {} payload frames sent to it \
         for {} messages; worst delivery latency to the others {worst:?}",
        cooled_seen.len(),
        sim.payload_sends_to[slow],
        log.len()
    );
    assert!(!cooled_seen.is_empty(), "no neighbour cooled the slow peer");
    assert!(withheld > 0);
    let others: Vec<(Bytes, usize)> = undelivered(&sim, &log)
        .into_iter()
        .filter(|(_, node)| *node != slow)
        .collect();
    assert_eq!(others, vec![]);
    assert!(
        worst < slow_extra,
        "the slow peer delayed others: {worst:?}"
    );
}

#[test]
fn same_seed_same_run() {
    let run = || {
        let mut sim = swarm(SimConfig::new(7), 15);
        sim.run_for(10 * SECOND);
        let mut log = Vec::new();
        for k in 0..10 {
            publish(&mut sim, k, "det", &mut log);
            sim.run_for(Duration::from_millis(100));
        }
        sim.run_for(5 * SECOND);
        let stats: Vec<String> = (0..15)
            .map(|i| serde_json::to_string(&sim.nodes[i].state.stats(sim_now(&sim))).unwrap())
            .collect();
        (stats, sim.receptions.clone())
    };
    assert_eq!(run(), run());
}

/// Graft messages sent by every node so far.
fn grafts(sim: &Sim) -> u64 {
    (0..sim.len())
        .map(|i| {
            let stats = sim.nodes[i].state.stats(sim_now(sim));
            stats
                .messages
                .sent
                .get(&MessageKind::Graft)
                .copied()
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn equal_wan_links_with_jitter_keep_a_single_publishers_tree() {
    // Every link 100 ms with 5 ms jitter: paths of equal length tie, and the order of
    // arrival flips from message to message. Pushes crossing PRUNEs must not cut nodes off
    // their parents (which shows as grafts and duplicates in steady state).
    let n = 20;
    let mut config = SimConfig::new(11);
    config.latency = (Duration::from_millis(100), Duration::from_millis(100));
    config.jitter = Duration::from_millis(5);
    let mut sim = swarm(config, n);
    sim.run_for(30 * SECOND);
    let mut log = Vec::new();
    for _ in 0..20 {
        publish(&mut sim, 0, "settle", &mut log);
        sim.run_for(Duration::from_millis(100));
    }
    let before = grafts(&sim);
    let mut measured = Vec::new();
    for _ in 0..200 {
        publish(&mut sim, 0, "tree", &mut measured);
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(5 * SECOND);
    let (rmr, grafted) = (rmr(&sim, &measured), grafts(&sim) - before);
    println!(
        "{n} nodes, 100 ms links with 5 ms jitter, 10 msg/s from one publisher: RMR {rmr:.3}, {grafted} grafts"
    );
    assert_eq!(undelivered(&sim, &measured), vec![]);
    assert!(rmr < 0.02, "RMR {rmr}");
    assert_eq!(grafted, 0);
}
