//! `symphony issues list [--state S]… [--label L]… [--all] [--json]`.

use symphony_tracker::heads::HeadRef;

use super::{Tracker, listing};

/// Arguments of `symphony issues list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only issues in this state (repeatable; any of them matches).
    #[arg(long = "state", value_name = "STATE")]
    states: Vec<String>,
    /// Only issues with this label (repeatable; all must match).
    #[arg(long = "label", value_name = "LABEL")]
    labels: Vec<String>,
    /// Include issues in terminal states.
    #[arg(long)]
    all: bool,
    /// Print a JSON array of issue summaries.
    #[arg(long)]
    json: bool,
}

/// Lists issues in file order.
pub fn run(tracker: &Tracker, args: Args) -> anyhow::Result<()> {
    let heads = tracker.read_heads()?;
    let states = &tracker.settings.states;
    let shown: Vec<HeadRef<'_>> = heads
        .iter()
        .filter(|h| {
            if args.states.is_empty() {
                args.all || !states.is_terminal(h.state())
            } else {
                args.states
                    .iter()
                    .any(|s| s.trim().eq_ignore_ascii_case(h.state().trim()))
            }
        })
        .filter(|h| {
            args.labels
                .iter()
                .all(|l| h.labels().any(|label| label == l))
        })
        .collect();
    listing::write(&shown, args.json)
}
