//! `symphony issues …`: read and change issues. Read commands take `--json` (docs/cli.md
//! documents each shape); write commands take `--commit` and print nothing on success except
//! `create`, which prints the new id.

mod close;
mod create;
mod dep;
mod handoff;
mod list;
mod listing;
mod ready;
mod show;
mod update;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use symphony_tracker::heads::Heads;
use symphony_tracker::{Document, Store, Transaction, git};

use super::Outcome;
use crate::workflow_tracker::{self, TrackerSettings};

/// Arguments of `symphony issues`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The issues file (default: `tracker.path` of WORKFLOW.md, else issues/issues.jsonl).
    #[arg(long, short = 'f', global = true, value_name = "PATH")]
    file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List issues (terminal ones only with --all).
    List(list::Args),
    /// Issues ready for an agent, in dispatch order.
    Ready(ready::Args),
    /// One issue in full.
    Show(show::Args),
    /// Create an issue with the next id; prints the id.
    Create(create::Args),
    /// Change fields of an issue; bumps updated_at only when something changed.
    Update(update::Args),
    /// Close an issue as done, cancelled or duplicate (human-only states).
    Close(close::Args),
    /// Add or remove a blocker.
    #[command(subcommand)]
    Dep(dep::Command),
    /// Record an agent's handoff and move the issue to review.
    Handoff(handoff::Args),
}

/// The issues file and the workflow settings every subcommand works with.
pub struct Tracker {
    /// The store of the issues file.
    pub store: Store,
    /// The workflow's tracker settings.
    pub settings: TrackerSettings,
}

impl Tracker {
    /// Reads the file whole for a read command. Damaged lines stay unread: only the
    /// command's own record is parsed, and an id defined twice is refused where it is
    /// looked up (`docs/tracker.md`, "Damaged files").
    pub fn read(&self) -> anyhow::Result<Document> {
        Ok(self.store.read()?)
    }

    /// Streams the scheduling fields of every record. Records left out (not a record, an id
    /// defined twice) and bare-string blockers are named on stderr, one warning each; the
    /// command goes ahead.
    pub fn read_heads(&self) -> anyhow::Result<Heads> {
        let heads = self.store.read_heads()?;
        let mut err = std::io::stderr().lock();
        for omitted in heads.omitted() {
            // A closed stderr must not stop a read.
            let _ = writeln!(err, "warning: {}; the record is left out", omitted.reason);
        }
        for head in heads.iter().filter(|head| head.has_bare_blocker()) {
            let _ = writeln!(
                err,
                "warning: {}:{}: /blocked_by: a bare id string is read as the ref it names \
                 (`symphony validate` shows the fix)",
                self.store.path().display(),
                head.line()
            );
        }
        Ok(heads)
    }
}

/// `--commit` of every write command.
#[derive(Debug, clap::Args)]
pub struct CommitArg {
    /// Commit the issues file, and nothing else, to git after a change.
    #[arg(long)]
    commit: bool,
}

impl CommitArg {
    /// Runs `edit` as one transaction and, when asked and the write changed the file,
    /// commits the file with `message(value)` while the tracker lock is still held: parallel
    /// writers with `--commit` take turns on the branch tip instead of racing for it, and
    /// every commit holds the changes written before it. Exit 0 therefore means committed.
    pub fn transact<T>(
        &self,
        tracker: &Tracker,
        edit: impl FnOnce(&mut Transaction<'_>) -> symphony_tracker::Result<T>,
        message: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<T> {
        let path = tracker.store.path();
        let (value, _, committed) = tracker.store.transact_then(edit, |value, report| {
            let message = message(value);
            if !(self.commit && report.written) {
                return Ok(());
            }
            git::commit_file(path, &message)
                .map(drop)
                .with_context(|| format!("the change is written but not committed ({message})"))
        })?;
        committed?;
        Ok(value)
    }
}

/// Runs `symphony issues …`.
pub fn run(args: Args, workflow: Option<&Path>) -> anyhow::Result<Outcome> {
    let settings = workflow_tracker::load(workflow)?;
    let path = args.file.unwrap_or_else(|| settings.path.clone());
    let tracker = Tracker {
        store: Store::new(path),
        settings,
    };
    match args.command {
        Command::List(args) => list::run(&tracker, args),
        Command::Ready(args) => ready::run(&tracker, args),
        Command::Show(args) => show::run(&tracker, args),
        Command::Create(args) => create::run(&tracker, args),
        Command::Update(args) => update::run(&tracker, args),
        Command::Close(args) => close::run(&tracker, args),
        Command::Dep(command) => dep::run(&tracker, command),
        Command::Handoff(args) => handoff::run(&tracker, args),
    }?;
    Ok(Outcome::Success)
}
