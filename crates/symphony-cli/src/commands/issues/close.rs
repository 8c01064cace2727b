//! `symphony issues close ID [--as done|cancelled|duplicate] [--commit]`: writes a terminal
//! state — a human decision (design.md: agents hand off to review, never close).

use symphony_tracker::ops;

use super::{CommitArg, Tracker};

/// Arguments of `symphony issues close`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The issue id.
    id: String,
    /// The terminal state (default: the workflow's first terminal state, `done`).
    #[arg(long = "as", value_name = "STATE")]
    state: Option<String>,
    #[command(flatten)]
    commit: CommitArg,
}

/// Closes the issue.
pub fn run(tracker: &Tracker, args: Args) -> anyhow::Result<()> {
    let states = &tracker.settings.states;
    let state = args
        .state
        .as_deref()
        .or(states.terminal.first().map(String::as_str))
        .unwrap_or("closed");
    args.commit.transact(
        tracker,
        |tx| ops::close(tx, &args.id, args.state.as_deref(), states),
        |_| format!("issues: close {} as {state}", args.id),
    )?;
    Ok(())
}
