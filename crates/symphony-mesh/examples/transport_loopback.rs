//! Transport figures on loopback, two nodes in one process: control-frame round-trip latency
//! and one-way throughput. Prints figures; asserts nothing.
//!
//! `cargo run --release -p symphony-mesh --example transport_loopback`

use std::error::Error;
use std::time::{Duration, Instant};

use bytes::Bytes;
use symphony_mesh::{
    Event, Events, Identity, NodeId, Purpose, SendError, Transport, TransportConfig, TrustPolicy,
};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const ROUND_TRIPS: usize = 5_000;
const SMALL: usize = 200;
const SMALL_FRAMES: usize = 200_000;
const LARGE: usize = 64 * 1024;
const LARGE_FRAMES: usize = 4_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let (a_id, b_id) = (Identity::generate()?, Identity::generate()?);
    let config = || {
        let mut c = TransportConfig::new(([127, 0, 0, 1], 0).into());
        c.trust = TrustPolicy::Open;
        c
    };
    let (a, mut a_events) = Transport::start(config(), &a_id).await?;
    let (b, b_events) = Transport::start(config(), &b_id).await?;
    a.connect(b.local_addr()).await?;
    let echo = tokio::spawn(echo(b.clone(), b_events));

    let cpu_before = cpu_seconds();
    let mut rtts = Vec::with_capacity(ROUND_TRIPS);
    let payload = Bytes::from(vec![7u8; SMALL]);
    for _ in 0..ROUND_TRIPS {
        let sent = Instant::now();
        a.send(&b.node_id(), Purpose::Control, payload.clone(), false)?;
        next_frame(&mut a_events).await?;
        rtts.push(sent.elapsed());
    }
    rtts.sort();
    let pct = |p: usize| rtts[(rtts.len() * p / 100).min(rtts.len() - 1)];
    println!(
        "control round trip, {SMALL} B, {ROUND_TRIPS} samples: p50 {:?}  p99 {:?}  max {:?}",
        pct(50),
        pct(99),
        rtts[rtts.len() - 1]
    );

    for (purpose, size, count) in [
        (Purpose::Control, SMALL, SMALL_FRAMES),
        (Purpose::Sync, LARGE, LARGE_FRAMES),
    ] {
        let (elapsed, full) = one_way(&a, b.node_id(), &mut a_events, purpose, size, count).await?;
        let secs = elapsed.as_secs_f64();
        println!(
            "one way {purpose}, {size} B x {count}: {:.0} frames/s, {:.1} MB/s, {full} QueueFull retries",
            count as f64 / secs,
            (size * count) as f64 / secs / 1e6,
        );
    }
    if let (Some(before), Some(after)) = (cpu_before, cpu_seconds()) {
        println!("process CPU for all of the above: {:.2} s", after - before);
    }
    let stats = a.stats();
    println!("sender stats: {}", serde_json::to_string(&stats.totals)?);
    a.shutdown().await;
    b.shutdown().await;
    echo.abort();
    Ok(())
}

/// Node b: echoes ping frames (first byte 7), counts bulk frames, and answers a done marker
/// (first byte 0xff) with the number of frames received since the last marker.
async fn echo(b: Transport, mut events: Events) {
    let mut received: u64 = 0;
    while let Some(event) = events.recv().await {
        let Event::Frame { peer, payload, .. } = event else {
            continue;
        };
        match payload.first() {
            Some(7) => {
                let _ = b.send(&peer, Purpose::Control, payload, false);
            }
            Some(0xff) => {
                received += 1;
                let count = Bytes::from(received.to_be_bytes().to_vec());
                let _ = b.send(&peer, Purpose::Direct, count, false);
                received = 0;
            }
            _ => received += 1,
        }
    }
}

async fn next_frame(events: &mut Events) -> Result<Bytes> {
    loop {
        match events.recv().await.ok_or("event queue closed")? {
            Event::Frame { payload, .. } => return Ok(payload),
            _ => continue,
        }
    }
}

/// Sends `count` frames (the last one a done marker), retrying on QueueFull, and waits for
/// b's count. Returns the time to b's acknowledgement and the number of retries.
async fn one_way(
    a: &Transport,
    b: NodeId,
    events: &mut Events,
    purpose: Purpose,
    size: usize,
    count: usize,
) -> Result<(Duration, u64)> {
    let body = Bytes::from(vec![1u8; size]);
    let done = Bytes::from(vec![0xffu8; size]);
    let started = Instant::now();
    let mut full = 0u64;
    for i in 0..count {
        let frame = if i + 1 == count {
            done.clone()
        } else {
            body.clone()
        };
        loop {
            match a.send(&b, purpose, frame.clone(), false) {
                Ok(()) => break,
                Err(SendError::QueueFull { .. }) => {
                    full += 1;
                    // Back off rather than spin, so the CPU figure is the transport's own.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
    let reply = next_frame(events).await?;
    let elapsed = started.elapsed();
    let got = u64::from_be_bytes(reply.get(..8).ok_or("short count")?.try_into()?);
    if got != count as u64 {
        return Err(format!("b received {got} of {count} frames").into());
    }
    Ok((elapsed, full))
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`, 100 Hz ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
