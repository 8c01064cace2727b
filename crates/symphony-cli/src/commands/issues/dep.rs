//! `symphony issues dep add|rm ID BLOCKER [--commit]`: edits `blocked_by`
//! (symphony_tracker::ops::{dep_add, dep_rm}); a ref that would close a cycle is refused.

use clap::Subcommand;
use symphony_tracker::ops;

use super::{CommitArg, Tracker};

/// `symphony issues dep …`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// ID is blocked by BLOCKER (an issue id, or project:slug of another tracker); for an
    /// existing ref, refreshes its snapshot of the blocker's state.
    Add(Args),
    /// ID is no longer blocked by BLOCKER.
    Rm(Args),
}

/// Arguments of `dep add` and `dep rm`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The blocked issue.
    id: String,
    /// The blocking issue.
    blocker: String,
    #[command(flatten)]
    commit: CommitArg,
}

/// Adds or removes the blocker.
pub fn run(tracker: &Tracker, command: Command) -> anyhow::Result<()> {
    let (args, add) = match command {
        Command::Add(args) => (args, true),
        Command::Rm(args) => (args, false),
    };
    let message = if add {
        format!("issues: {} blocked by {}", args.id, args.blocker)
    } else {
        format!("issues: {} no longer blocked by {}", args.id, args.blocker)
    };
    args.commit.transact(
        tracker,
        |tx| {
            if add {
                ops::dep_add(tx, &args.id, &args.blocker)
            } else {
                ops::dep_rm(tx, &args.id, &args.blocker)
            }
        },
        |_| message,
    )?;
    Ok(())
}
