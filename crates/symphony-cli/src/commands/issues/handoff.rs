//! `symphony issues handoff ID --summary … [--changed F]… [--validation STATUS:COMMAND]…
//! [--follow-up TEXT]… [--proofs-dir DIR] [--from FILE|-] [--commit]`: records an agent's
//! handoff and moves the issue to review (symphony_tracker::ops::handoff).
//!
//! `--from` reads a handoff JSON object (`summary`, `files_changed`, `validation` entries
//! `{command, status, exit_code?, note?}`, `follow_up`, `proofs_dir`); flags add to it.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::Map;
use symphony_tracker::{Handoff, ValidationRun, ops};
use time::OffsetDateTime;

use super::{CommitArg, Tracker};
use crate::UsageError;

/// The example `--help` shows. `tests/docs.rs` runs it in a scaffolded repository, so it stays
/// a command that works.
const EXAMPLE: &str = "\
Example (an agent, in its workspace, when the work is ready for review):
  symphony issues handoff SYM-0001 --summary \"Parse the config with serde; reject unknown keys\" \\
    --changed src/config.rs --changed tests/config.rs \\
    --validation \"passed:cargo test\" --follow-up \"Document the new keys\"";

/// Arguments of `symphony issues handoff`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    /// The issue id.
    id: String,
    /// What was done, in a few sentences.
    #[arg(long)]
    summary: Option<String>,
    /// A file the work changed (repeatable).
    #[arg(long = "changed", value_name = "PATH")]
    files: Vec<String>,
    /// A check that was run, as STATUS:COMMAND, e.g. `passed:cargo test` (repeatable).
    #[arg(long = "validation", value_name = "STATUS:COMMAND", value_parser = parse_run)]
    validation: Vec<ValidationRun>,
    /// Work left for later (repeatable).
    #[arg(long = "follow-up", value_name = "TEXT")]
    follow_up: Vec<String>,
    /// Directory of large artefacts (`proofs/<issue>/<utc>/`).
    #[arg(long)]
    proofs_dir: Option<String>,
    /// Read the handoff as a JSON object from FILE (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    #[command(flatten)]
    commit: CommitArg,
}

fn parse_run(text: &str) -> Result<ValidationRun, String> {
    match text.split_once(':') {
        Some((status, command))
            if !status.trim().is_empty()
                && !status.contains(char::is_whitespace)
                && !command.trim().is_empty() =>
        {
            Ok(ValidationRun {
                command: command.trim().to_string(),
                status: status.to_string(),
                note: None,
                exit_code: None,
                extra: Map::new(),
            })
        }
        _ => Err(format!(
            "expected STATUS:COMMAND (e.g. passed:cargo test), got {text:?}"
        )),
    }
}

/// Records the handoff.
pub fn run(tracker: &Tracker, args: Args) -> anyhow::Result<()> {
    let mut handoff = match &args.from {
        None => Handoff::default(),
        Some(path) => read_handoff(path)?,
    };
    if args.summary.is_some() {
        handoff.summary = args.summary;
    }
    handoff.files_changed.extend(args.files);
    handoff.validation.extend(args.validation);
    handoff.follow_up.extend(args.follow_up);
    if args.proofs_dir.is_some() {
        handoff.proofs_dir = args.proofs_dir;
    }
    let states = &tracker.settings.states;
    let now = OffsetDateTime::now_utc();
    let message = format!("issues: handoff {} to {}", args.id, states.handoff());
    args.commit.transact(
        tracker,
        |tx| ops::handoff(tx, &args.id, &handoff, states, now),
        |_| message,
    )?;
    Ok(())
}

fn read_handoff(path: &std::path::Path) -> anyhow::Result<Handoff> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the handoff from standard input")?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    }
    serde_json::from_str(&text)
        .map_err(|e| UsageError(format!("{}: not a handoff object: {e}", path.display())).into())
}
