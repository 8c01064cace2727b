//! `mesh-bench`: starts N mesh nodes in this process on 127.0.0.1, optionally behind the UDP
//! impairment relay (delay, jitter, loss, rate limit), publishes at a given rate from one or
//! random publishers, and prints delivery ratio, latency percentiles, redundancy, hops, bytes
//! on the wire, CPU and memory. Figures only; it asserts nothing.
//!
//! ```text
//! cargo run --release -p symphony-mesh --bin mesh-bench -- --nodes 20 --rate 10
//! cargo run --release -p symphony-mesh --bin mesh-bench -- --rate 25 --delay-ms 100 --rate-kbit 256
//! cargo run --release -p symphony-mesh --bin mesh-bench -- --suite   # every scenario of docs/mesh.md
//! cargo run --release -p symphony-mesh --bin mesh-bench -- --sim --nodes 1000   # simulator
//! cargo run --release -p symphony-mesh --bin mesh-bench -- --sim --suite        # 20–1000 nodes
//! ```
//!
//! `--sim` runs the protocol on the deterministic simulator instead of real nodes (see
//! `sim.rs` and `symphony_mesh::proto::sim::swarm`): delivery, RMR, last delivery hop and
//! convergence after churn for swarms of up to thousands of nodes, in virtual time.
//!
//! Method (docs/mesh.md, "Benchmark"): nodes join through the first three; once the overlay is
//! connected every node publishes one unmeasured message (so each origin's tree exists, since
//! PlumTree floods an origin's first message) and the swarm idles for `--warmup` seconds.
//! Then `rate × duration` messages are published; each carries its index and send time.
//! Latency is delivery time minus send time (one clock, one process). Redundancy is
//! duplicates received per delivered message (RMR as the PlumTree paper defines it is also
//! printed: payload messages sent / deliveries − 1). CPU is the process's user+system time
//! while publishing; frame bytes are mesh frames written (payload + 6-byte header, QUIC and
//! UDP overhead excluded); UDP bytes are counted by the relay when one is used. RSS is the
//! process's resident set at the end of the scenario (with `--suite`, memory the allocator
//! kept from earlier scenarios is included: run one scenario per process for RSS figures).

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use rand::Rng;
use serde::Serialize;
use symphony_mesh::diagnostics::Diagnostics;
use symphony_mesh::relay::{LinkConditions, Relay};
use symphony_mesh::{BootstrapPeer, Identity, Mesh, MeshConfig, PeerView, TrustConfig};

mod churn;
mod sim;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

const TOPIC: &str = "bench";
/// Marks warm-up messages, which are not measured.
const WARMUP_INDEX: u32 = u32::MAX;
const HEADER: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum Publishers {
    /// Node 0 publishes everything.
    Single,
    /// Each message from a uniformly random node.
    Random,
}

/// Bench settings; see the module docs.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mesh-bench",
    about = "Figures for N symphony-mesh nodes on loopback"
)]
struct Args {
    /// Nodes in the swarm.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Messages per second, whole swarm.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Publishing time in seconds.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Payload bytes per message (at least 12: index and send time).
    #[arg(long, default_value_t = 200)]
    payload: usize,
    /// Who publishes.
    #[arg(long, value_enum, default_value_t = Publishers::Random)]
    publishers: Publishers,
    /// One-way delay per link through the relay, ms.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Extra per-packet delay drawn from [0, jitter), ms.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Packet loss per link, percent.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Rate limit per link direction, kbit/s.
    #[arg(long)]
    rate_kbit: Option<u32>,
    /// Relay queue per link before tail drop, KiB (with --rate-kbit).
    #[arg(long, default_value_t = 16)]
    queue_kib: usize,
    /// Seconds without any active-view change before the warm-up messages (at most 120 s).
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// Idle seconds after the warm-up messages, before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Run the standard scenarios (docs/mesh.md) and print one table.
    #[arg(long)]
    suite: bool,
    /// Print JSON lines instead of the table.
    #[arg(long)]
    json: bool,
    /// Run on the deterministic simulator instead of real nodes (`--delay-ms 0`: links of
    /// 5–40 ms; `--loss`: packets lost and retransmitted by QUIC).
    #[arg(long)]
    sim: bool,
    /// Simulator: percent of the nodes crashed at once after the measurement (0: none).
    /// Real nodes (with --churn-every): percent restarted each time.
    #[arg(long, default_value_t = 20.0)]
    churn: f64,
    /// Real nodes: every this many seconds while publishing, restart --churn percent of
    /// the nodes (same key, new port; loopback only). 0: no churn.
    #[arg(long, default_value_t = 0)]
    churn_every: u64,
    /// Simulator: the seed that fixes every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Override `proto.lossy_push_peers` (0 disables lossy-link pushes), to compare.
    #[arg(long)]
    lossy_push_peers: Option<usize>,
}

impl Args {
    fn conditions(&self) -> Option<LinkConditions> {
        let impaired = self.delay_ms > 0 || self.jitter_ms > 0 || self.loss > 0.0;
        (impaired || self.rate_kbit.is_some()).then(|| LinkConditions {
            delay: Duration::from_millis(self.delay_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            loss: self.loss / 100.0,
            rate_kbit: self.rate_kbit,
            queue_bytes: self.queue_kib << 10,
        })
    }

    fn label(&self) -> String {
        let mut parts = vec![format!(
            "{} nodes, {} msg/s, {:?}",
            self.nodes, self.rate, self.publishers
        )];
        if self.delay_ms > 0 {
            parts.push(format!("{} ms delay", self.delay_ms));
        }
        if self.jitter_ms > 0 {
            parts.push(format!("{} ms jitter", self.jitter_ms));
        }
        if let Some(kbit) = self.rate_kbit {
            parts.push(format!("{kbit} kbit/s"));
        }
        if self.loss > 0.0 {
            parts.push(format!("{}% loss", self.loss));
        }
        if self.churn_every > 0 {
            parts.push(format!(
                "{}% restarted every {} s",
                self.churn, self.churn_every
            ));
        }
        parts.join(", ")
    }
}

/// One delivery as a collector saw it.
#[derive(Debug, Clone, Copy)]
struct Received {
    index: u32,
    latency: Duration,
    hops: u16,
}

type Log = Arc<Mutex<Vec<Received>>>;

#[derive(Debug, Serialize)]
struct Report {
    scenario: String,
    published: usize,
    publish_errors: usize,
    expected: usize,
    delivered: usize,
    delivery_ratio: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    /// Share of deliveries within 2 × path delay + 50 ms, the path delay being the hops the
    /// copy took times the link delay.
    within_goal: f64,
    duplicates_per_delivery: f64,
    rmr: f64,
    last_delivery_hops_max: u16,
    last_delivery_hops_mean: f64,
    frame_bytes: u64,
    udp_bytes: Option<u64>,
    cpu_seconds: f64,
    cpu_seconds_per_20s: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    grafts: u64,
    drops: u64,
    coolings: u64,
    neighbor_changes: u64,
    settle_seconds: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.payload < HEADER {
        return Err(format!("--payload must be at least {HEADER} bytes").into());
    }
    if args.churn_every > 0 && args.conditions().is_some() {
        return Err("--churn-every runs on loopback only (no relay options)".into());
    }
    if args.sim {
        if !(0.0..100.0).contains(&args.churn) || !(0.0..=100.0).contains(&args.loss) {
            return Err("--churn must be in [0, 100) and --loss in [0, 100]".into());
        }
        return sim::main(&args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let scenarios = if args.suite {
        suite(&args)
    } else {
        vec![args.clone()]
    };
    if !args.json {
        println!(
            "| scenario | msgs | delivered | p50 ms | p99 ms | max ms | ≤2×path+50 | dup/msg | RMR | last hop max/mean | frame MB | UDP MB | CPU s/20 s | RSS MiB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    }
    for scenario in scenarios {
        let report = runtime.block_on(run(&scenario))?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print_row(&report);
        }
    }
    Ok(())
}

/// The scenarios of docs/mesh.md: plain loopback, 100 ms + 256 kbit/s links, 5% loss, and
/// the load points where the reference library collapses.
fn suite(base: &Args) -> Vec<Args> {
    let with = |rate: f64, publishers, delay_ms, rate_kbit, loss| Args {
        rate,
        publishers,
        delay_ms,
        rate_kbit,
        loss,
        suite: false,
        ..base.clone()
    };
    let mut all = Vec::new();
    for rate in [1.0, 10.0, 25.0] {
        all.push(with(rate, Publishers::Random, 0, None, 0.0));
    }
    all.push(with(10.0, Publishers::Single, 0, None, 0.0));
    for nodes in [50, 100] {
        all.push(Args {
            nodes,
            ..with(10.0, Publishers::Random, 0, None, 0.0)
        });
    }
    all.push(Args {
        churn: 10.0,
        churn_every: 10,
        duration: 60,
        ..with(10.0, Publishers::Random, 0, None, 0.0)
    });
    for rate in [100.0, 250.0] {
        all.push(with(rate, Publishers::Random, 0, None, 0.0));
    }
    for rate in [1.0, 10.0, 25.0] {
        all.push(with(rate, Publishers::Random, 100, Some(256), 0.0));
    }
    all.push(with(10.0, Publishers::Single, 100, Some(256), 0.0));
    for rate in [1.0, 10.0, 25.0] {
        all.push(with(rate, Publishers::Random, 0, None, 5.0));
    }
    all.push(with(10.0, Publishers::Random, 100, Some(256), 5.0));
    all
}

fn print_row(r: &Report) {
    let udp = r
        .udp_bytes
        .map_or("-".to_string(), |b| format!("{:.2}", b as f64 / 1e6));
    println!(
        "| {} | {} | {:.4} | {:.1} | {:.1} | {:.1} | {:.4} | {:.3} | {:.3} | {}/{:.2} | {:.2} | {} | {:.2} | {:.0} |",
        r.scenario,
        r.published,
        r.delivery_ratio,
        r.latency_p50_ms,
        r.latency_p99_ms,
        r.latency_max_ms,
        r.within_goal,
        r.duplicates_per_delivery,
        r.rmr,
        r.last_delivery_hops_max,
        r.last_delivery_hops_mean,
        r.frame_bytes as f64 / 1e6,
        udp,
        r.cpu_seconds_per_20s,
        r.rss_mib,
    );
}

/// A node's configuration: loopback, open trust, `--lossy-push-peers`.
fn node_config(args: &Args) -> MeshConfig {
    let mut config = MeshConfig {
        listen: "127.0.0.1:0"
            .parse()
            .unwrap_or_else(|_| MeshConfig::default().listen),
        trust: TrustConfig::Open,
        ..MeshConfig::default()
    };
    if let Some(peers) = args.lossy_push_peers {
        config.proto.lossy_push_peers = peers;
    }
    config
}

async fn run(args: &Args) -> Result<Report> {
    let n = args.nodes.max(2);
    let relay = match args.conditions() {
        Some(conditions) => Some(Relay::start(n, conditions).await?),
        None => None,
    };
    let epoch = Instant::now();
    let mut churn = churn::Churn::new(args, n)?;
    let mut nodes: Vec<Mesh> = Vec::with_capacity(n);
    let mut contacts: Vec<BootstrapPeer> = Vec::new();
    let mut logs: Vec<Log> = Vec::with_capacity(n);
    for i in 0..n {
        let identity = match &churn {
            Some(churn) => churn.identity(i)?,
            None => Identity::generate()?,
        };
        let mut config = node_config(args);
        config.advertise = relay.as_ref().map(|r| r.front(i));
        config.bootstrap = contacts.iter().take(3).copied().collect();
        let id = identity.node_id();
        let node = Mesh::start_with_identity(config, identity).await?;
        if let Some(relay) = &relay {
            relay.register(i, node.local_addr());
        }
        contacts.push(BootstrapPeer {
            id: Some(id),
            addr: node.advertised_addr(),
        });
        logs.push(collect(&node, epoch).await?);
        nodes.push(node);
    }
    wait_connected(&nodes).await?;
    let settled = wait_settled(&nodes, Duration::from_secs(args.settle)).await?;
    for node in &nodes {
        node.publish(TOPIC, payload(WARMUP_INDEX, epoch, args.payload))
            .await?;
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;

    let before = totals(&nodes).await?;
    let udp_before = relay.as_ref().map(|r| r.stats().forwarded_bytes);
    let cpu_before = cpu_seconds();
    let count = (args.rate * args.duration as f64).round() as usize;
    let period = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut rng = rand::rng();
    let mut publishers = Vec::with_capacity(count);
    let mut sent_at = Vec::with_capacity(count);
    let mut publish_errors = 0;
    for index in 0..count {
        ticker.tick().await;
        if let Some(churn) = &mut churn {
            churn
                .tick(args, epoch, &mut nodes, &mut contacts, &logs)
                .await?;
        }
        sent_at.push(epoch.elapsed());
        let from = match args.publishers {
            Publishers::Single => 0,
            Publishers::Random => rng.random_range(0..n),
        };
        let index = u32::try_from(index)?;
        match nodes[from]
            .publish(TOPIC, payload(index, epoch, args.payload))
            .await
        {
            Ok(_) => publishers.push(Some(from)),
            Err(_) => {
                publish_errors += 1;
                publishers.push(None);
            }
        }
    }
    let cpu = cpu_seconds().zip(cpu_before).map_or(0.0, |(a, b)| a - b);
    let wanted: Option<BTreeSet<(u32, usize)>> = churn.as_ref().map(|churn| {
        let mut pairs = BTreeSet::new();
        for (index, (from, at)) in publishers.iter().zip(&sent_at).enumerate() {
            let Some(from) = from else { continue };
            for slot in (0..n).filter(|s| s != from && churn.expected(*s, *at)) {
                pairs.insert((index as u32, slot));
            }
        }
        pairs
    });
    let expected = wanted.as_ref().map_or_else(
        || publishers.iter().flatten().count() * (n - 1),
        BTreeSet::len,
    );
    let drain = Duration::from_secs(5) + Duration::from_millis(args.delay_ms * 40);
    let deadline = Instant::now() + drain;
    while delivered(&logs) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut after = totals(&nodes).await?;
    if let Some(churn) = &churn {
        after.add(&churn.retired);
    }
    let udp_bytes = relay
        .as_ref()
        .zip(udp_before)
        .map(|(r, before)| r.stats().forwarded_bytes - before);
    let (rss, peak) = memory_mib();
    futures::future::join_all(nodes.iter().map(Mesh::shutdown)).await;
    Ok(report(
        settled,
        args,
        &logs,
        wanted.as_ref(),
        &publishers,
        publish_errors,
        expected,
        &before,
        &after,
        udp_bytes,
        cpu,
        rss,
        peak,
    ))
}

fn payload(index: u32, epoch: Instant, len: usize) -> Bytes {
    let sent = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(&index.to_be_bytes());
    bytes.extend_from_slice(&sent.to_be_bytes());
    bytes.resize(len, 0x5a);
    Bytes::from(bytes)
}

async fn collect(node: &Mesh, epoch: Instant) -> Result<Log> {
    let log = Log::default();
    collect_into(node, epoch, log.clone()).await?;
    Ok(log)
}

/// Subscribes and appends `node`'s measured deliveries to `sink` until the node stops.
async fn collect_into(node: &Mesh, epoch: Instant, sink: Log) -> Result<()> {
    let mut subscription = node.subscribe(TOPIC).await?;
    tokio::spawn(async move {
        while let Some(delivery) = subscription.recv().await {
            let p = &delivery.payload;
            let (Ok(index), Ok(sent)) = (p[..4].try_into(), p[4..HEADER].try_into()) else {
                continue;
            };
            let index = u32::from_be_bytes(index);
            if index == WARMUP_INDEX {
                continue;
            }
            let sent = Duration::from_nanos(u64::from_be_bytes(sent));
            let received = Received {
                index,
                latency: epoch.elapsed().saturating_sub(sent),
                hops: delivery.hops,
            };
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(received);
        }
    });
    Ok(())
}

fn delivered(logs: &[Log]) -> usize {
    logs.iter()
        .map(|l| l.lock().unwrap_or_else(PoisonError::into_inner).len())
        .sum()
}

/// Waits until every node has a neighbour and the active views form one overlay.
async fn wait_connected(nodes: &[Mesh]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut views = BTreeMap::new();
        for node in nodes {
            let active: Vec<_> = node
                .peers()
                .await?
                .into_iter()
                .filter(|p| p.view == PeerView::Active)
                .map(|p| p.node_id)
                .collect();
            views.insert(node.node_id(), active);
        }
        let mut seen = BTreeSet::new();
        let mut todo: Vec<_> = views.keys().take(1).copied().collect();
        while let Some(id) = todo.pop() {
            if seen.insert(id) {
                todo.extend(views.get(&id).into_iter().flatten().copied());
            }
        }
        if seen.len() == nodes.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the overlay did not connect within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until no active view has changed for `quiet` (at most 120 s); returns how long it
/// took. Views still filling after the overlay connects would otherwise reshape the trees
/// during the measurement.
async fn wait_settled(nodes: &[Mesh], quiet: Duration) -> Result<Duration> {
    let start = Instant::now();
    let mut last = (u64::MAX, Instant::now());
    while start.elapsed() < Duration::from_secs(120) {
        let changes = totals(nodes).await?.neighbor_changes;
        if changes != last.0 {
            last = (changes, Instant::now());
        } else if last.1.elapsed() >= quiet {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(start.elapsed())
}

/// Swarm-wide counters at one instant.
#[derive(Debug, Default)]
pub struct Totals {
    duplicates: u64,
    payloads_sent: u64,
    frame_bytes: u64,
    grafts: u64,
    drops: u64,
    coolings: u64,
    neighbor_changes: u64,
}

impl Totals {
    /// Adds `other`'s counters (of nodes since shut down) to these.
    fn add(&mut self, other: &Totals) {
        self.duplicates += other.duplicates;
        self.payloads_sent += other.payloads_sent;
        self.frame_bytes += other.frame_bytes;
        self.grafts += other.grafts;
        self.drops += other.drops;
        self.coolings += other.coolings;
        self.neighbor_changes += other.neighbor_changes;
    }
}

async fn totals(nodes: &[Mesh]) -> Result<Totals> {
    let mut t = Totals::default();
    for node in nodes {
        let d: Diagnostics = node.diagnostics().await?;
        t.duplicates += d.proto.pubsub.duplicates;
        t.payloads_sent += d.messages.sent.eager;
        t.grafts += d.messages.sent.graft;
        t.coolings += d.proto.pubsub.coolings;
        t.neighbor_changes += d.views.neighbor_up + d.views.neighbor_down;
        t.drops += d.drops.gossip_queue_full
            + d.drops.inbound_overload
            + d.drops.subscriber_queue_full
            + d.drops.lazy_queue_full;
        let p = &d.transport.totals.purposes;
        for purpose in [p.control, p.sync, p.direct] {
            t.frame_bytes += purpose.bytes_out + 6 * purpose.frames_out;
        }
    }
    Ok(t)
}

#[allow(clippy::too_many_arguments)]
fn report(
    settled: Duration,
    args: &Args,
    logs: &[Log],
    wanted: Option<&BTreeSet<(u32, usize)>>,
    publishers: &[Option<usize>],
    publish_errors: usize,
    expected: usize,
    before: &Totals,
    after: &Totals,
    udp_bytes: Option<u64>,
    cpu: f64,
    rss: f64,
    peak: f64,
) -> Report {
    let mut latencies = Vec::new();
    let mut within_goal = 0usize;
    let link_delay = Duration::from_millis(args.delay_ms);
    let mut last: BTreeMap<u32, (Duration, u16)> = BTreeMap::new();
    let mut unique = BTreeSet::new();
    for (node, log) in logs.iter().enumerate() {
        for r in log.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let own = publishers.get(r.index as usize) == Some(&Some(node));
            let unwanted = wanted.is_some_and(|w| !w.contains(&(r.index, node)));
            if own || unwanted || !unique.insert((r.index, node)) {
                continue;
            }
            latencies.push(r.latency);
            let path = link_delay * u32::from(r.hops);
            if r.latency <= 2 * path + Duration::from_millis(50) {
                within_goal += 1;
            }
            let slot = last.entry(r.index).or_insert((Duration::ZERO, 0));
            if r.latency >= slot.0 {
                *slot = (r.latency, r.hops);
            }
        }
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let delivered = latencies.len();
    let hops: Vec<u16> = last.values().map(|(_, h)| *h).collect();
    let per_delivery = |x: u64| {
        if delivered == 0 {
            0.0
        } else {
            x as f64 / delivered as f64
        }
    };
    Report {
        scenario: args.label(),
        published: publishers.len(),
        publish_errors,
        expected,
        delivered,
        delivery_ratio: if expected == 0 {
            0.0
        } else {
            delivered as f64 / expected as f64
        },
        latency_p50_ms: pct(0.5),
        latency_p99_ms: pct(0.99),
        latency_max_ms: pct(1.0),
        within_goal: if delivered == 0 {
            0.0
        } else {
            within_goal as f64 / delivered as f64
        },
        duplicates_per_delivery: per_delivery(after.duplicates - before.duplicates),
        rmr: per_delivery(after.payloads_sent - before.payloads_sent) - 1.0,
        last_delivery_hops_max: hops.iter().copied().max().unwrap_or(0),
        last_delivery_hops_mean: if hops.is_empty() {
            0.0
        } else {
            hops.iter().map(|h| f64::from(*h)).sum::<f64>() / hops.len() as f64
        },
        frame_bytes: after.frame_bytes - before.frame_bytes,
        udp_bytes,
        cpu_seconds: cpu,
        cpu_seconds_per_20s: cpu * 20.0 / args.duration.max(1) as f64,
        rss_mib: rss,
        peak_rss_mib: peak,
        grafts: after.grafts - before.grafts,
        drops: after.drops - before.drops,
        coolings: after.coolings - before.coolings,
        neighbor_changes: after.neighbor_changes - before.neighbor_changes,
        settle_seconds: settled.as_secs_f64(),
    }
}

/// User plus system CPU seconds of this process (`/proc/self/stat` fields 14 and 15).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / rustix::param::clock_ticks_per_second() as f64)
}

/// (current, peak) resident set size in MiB, from `/proc/self/status`.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
