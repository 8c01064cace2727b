//! `--churn-every`: restart a share of the nodes periodically while publishing. A restarted
//! node keeps its key (a file in a per-run temp directory) and gets a new port, as a
//! process restart on another port would; it bootstraps through three other nodes.
//!
//! Delivery under churn: a message is expected at a node that was up from its publication
//! until [`GRACE`] later. Deliveries to nodes that were down in that window (including
//! catch-up of messages published while they were down) are not counted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::seq::index::sample;
use symphony_mesh::{BootstrapPeer, Identity, Mesh};

use super::{Args, Log, Result, Totals, collect_into, node_config, totals};

/// How long a node must stay up after a publication for the message to be expected there.
pub const GRACE: Duration = Duration::from_secs(2);

/// Restart schedule, key files and the nodes' down times.
pub struct Churn {
    every: Duration,
    count: usize,
    next: Instant,
    keys: PathBuf,
    /// Per slot: (down, up) since the bench epoch.
    down: Vec<Vec<(Duration, Duration)>>,
    /// Counters of the nodes shut down so far (a restarted node counts from zero).
    pub retired: Totals,
    /// Restarts done.
    pub restarts: usize,
}

impl Churn {
    /// The schedule `args` ask for (`None` without `--churn-every`), with a fresh key
    /// directory.
    pub fn new(args: &Args, n: usize) -> Result<Option<Self>> {
        if args.churn_every == 0 {
            return Ok(None);
        }
        let keys = std::env::temp_dir().join(format!("mesh-bench-{}", std::process::id()));
        std::fs::create_dir_all(&keys)
            .map_err(|e| format!("cannot create {}: {e}", keys.display()))?;
        let every = Duration::from_secs(args.churn_every);
        Ok(Some(Self {
            every,
            count: ((n as f64 * args.churn / 100.0).round() as usize).clamp(1, n - 1),
            next: Instant::now() + every,
            keys,
            down: vec![Vec::new(); n],
            retired: Totals::default(),
            restarts: 0,
        }))
    }

    /// The key of `slot`, created on first use.
    pub fn identity(&self, slot: usize) -> Result<Identity> {
        let path = self.keys.join(format!("node-{slot}.key"));
        Ok(Identity::load_or_create(&path)?)
    }

    /// Restarts `count` random nodes when the period is over.
    pub async fn tick(
        &mut self,
        args: &Args,
        epoch: Instant,
        nodes: &mut [Mesh],
        contacts: &mut [BootstrapPeer],
        logs: &[Log],
    ) -> Result<()> {
        if Instant::now() < self.next {
            return Ok(());
        }
        self.next += self.every;
        let slots = sample(&mut rand::rng(), nodes.len(), self.count).into_vec();
        let went_down = epoch.elapsed();
        for &slot in &slots {
            self.retired.add(&totals(&nodes[slot..=slot]).await?);
        }
        futures::future::join_all(slots.iter().map(|&s| nodes[s].shutdown())).await;
        for &slot in &slots {
            let mut config = node_config(args);
            config.bootstrap = (0..contacts.len())
                .filter(|c| *c != slot)
                .take(3)
                .map(|c| contacts[c])
                .collect();
            let node = Mesh::start_with_identity(config, self.identity(slot)?).await?;
            contacts[slot].addr = node.advertised_addr();
            collect_into(&node, epoch, logs[slot].clone()).await?;
            nodes[slot] = node;
            self.down[slot].push((went_down, epoch.elapsed()));
            self.restarts += 1;
        }
        Ok(())
    }

    /// Whether a message published at `at` (since the epoch) is expected at `slot`.
    pub fn expected(&self, slot: usize, at: Duration) -> bool {
        self.down[slot]
            .iter()
            .all(|(down, up)| *up < at || *down > at + GRACE)
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        // Best effort: the directory only holds this run's throwaway keys.
        let _ = std::fs::remove_dir_all(&self.keys);
    }
}
