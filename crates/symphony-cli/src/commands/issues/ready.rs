//! `symphony issues ready [--limit N] [--json]`: issues an agent may start now, in dispatch
//! order (symphony_tracker::ready; Symphony SPEC §8.2).

use time::OffsetDateTime;

use super::{Tracker, listing};

/// TTL of claims on records without a frozen shard (WORKFLOW.md `claims.ttl_ms` default).
const DEFAULT_CLAIM_TTL_MS: u64 = 600_000;

/// Arguments of `symphony issues ready`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// At most this many issues.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Print a JSON array of issue summaries.
    #[arg(long)]
    json: bool,
}

/// Prints the ready issues.
pub fn run(tracker: &Tracker, args: Args) -> anyhow::Result<()> {
    let heads = tracker.read_heads()?;
    let mut ready = symphony_tracker::ready(
        &heads,
        &tracker.settings.states,
        DEFAULT_CLAIM_TTL_MS,
        OffsetDateTime::now_utc(),
    );
    if let Some(limit) = args.limit {
        ready.truncate(limit);
    }
    listing::write(&ready, args.json)
}
