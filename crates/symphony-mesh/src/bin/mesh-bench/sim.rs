//! `mesh-bench --sim`: the protocol on the deterministic simulator
//! (`symphony_mesh::proto::sim::swarm`), for swarms too large for one process of real nodes.
//! Virtual time: the figures depend on the seed, not on the machine's load.

use std::time::Duration;

use symphony_mesh::proto::sim::SimConfig;
use symphony_mesh::proto::sim::swarm::{self, Figures, Publishers as SimPublishers, Scenario};

use super::{Args, Publishers, Result};

/// The scenario `args` describe: `--nodes`, `--publishers`, `--rate` × `--duration`
/// messages, `--delay-ms` (0: links of 5–40 ms), `--jitter-ms`, `--loss` (packet loss),
/// `--churn`, `--seed`.
fn scenario(args: &Args) -> Scenario {
    let publishers = match args.publishers {
        Publishers::Single => SimPublishers::Single,
        Publishers::Random => SimPublishers::Random,
    };
    let mut s = Scenario::new(args.nodes, args.seed, publishers);
    let mut network = SimConfig::new(args.seed);
    if args.delay_ms > 0 {
        let delay = Duration::from_millis(args.delay_ms);
        network.latency = (delay, delay);
        network.jitter = Duration::from_millis(args.jitter_ms);
    }
    network.packet_loss = args.loss / 100.0;
    if let Some(peers) = args.lossy_push_peers {
        network.proto.pubsub.lossy_push_peers = peers;
    }
    s.network = network;
    s.messages = (args.rate * args.duration as f64).round() as usize;
    s.interval = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    s.churn = args.churn / 100.0;
    s
}

/// The simulated suite: 20–1000 nodes, single and random publishers, on the default
/// network, and the lossy networks of the real-node suite at 1000 nodes.
fn suite(base: &Args) -> Vec<Args> {
    let with = |nodes, publishers, delay_ms, loss| Args {
        nodes,
        publishers,
        delay_ms,
        loss,
        suite: false,
        ..base.clone()
    };
    let mut all = Vec::new();
    for nodes in [20, 100, 200, 500, 1000] {
        for publishers in [Publishers::Single, Publishers::Random] {
            all.push(with(nodes, publishers, 0, 0.0));
        }
    }
    all.push(with(1000, Publishers::Random, 0, 5.0));
    all.push(with(1000, Publishers::Random, 100, 5.0));
    all
}

fn label(args: &Args) -> String {
    let mut label = format!("{} nodes, {:?}", args.nodes, args.publishers);
    if args.delay_ms > 0 {
        label.push_str(&format!(", {} ms links", args.delay_ms));
    }
    if args.loss > 0.0 {
        label.push_str(&format!(", {}% loss", args.loss));
    }
    label
}

fn cells(f: &Figures) -> String {
    format!(
        "{}/{} | {:.3} | {}/{:.2} | {:.0} | {:.0} | {:.4}",
        f.missed,
        f.expected,
        f.rmr,
        f.last_hop_max,
        f.last_hop_mean,
        f.latency_p50_ms,
        f.latency_p99_ms,
        f.within_bound
    )
}

/// Runs the simulated scenario(s) of `args` and prints a table or JSON lines.
pub fn main(args: &Args) -> Result<()> {
    let runs = if args.suite {
        suite(args)
    } else {
        vec![args.clone()]
    };
    if !args.json {
        println!(
            "| sim scenario | msgs | connected s | missed | RMR | last hop max/mean | p50 ms | p99 ms | ≤2×path+50 | churn killed | reconnected s | views repaired s | missed after | RMR after | last hop after | p50 after | p99 after | ≤2×path+50 after | lost pkts | wall s |"
        );
        println!(
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
    }
    for run in runs {
        let started = std::time::Instant::now();
        let report = swarm::run(&scenario(&run))?;
        let wall = started.elapsed().as_secs_f64();
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
            continue;
        }
        let secs =
            |ms: Option<u64>| ms.map_or("never".into(), |ms| format!("{:.0}", ms as f64 / 1000.0));
        let churn =
            report
                .churn
                .as_ref()
                .map_or("- | - | - | - | - | - | - | - | - | -".into(), |c| {
                    format!(
                        "{} | {} | {} | {}",
                        c.killed,
                        secs(c.connected_after_ms),
                        secs(c.repaired_after_ms),
                        cells(&c.after)
                    )
                });
        println!(
            "| {} | {} | {} | {} | {churn} | {} | {wall:.1} |",
            label(&run),
            report.before.messages,
            secs(report.connected_after_ms),
            cells(&report.before),
            report.packets_lost,
        );
    }
    Ok(())
}
