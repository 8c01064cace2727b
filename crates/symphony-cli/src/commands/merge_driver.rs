//! `symphony merge-driver %O %A %B [%P]`: git's custom merge driver for issues.jsonl
//! (symphony_tracker::merge; docs/merge.md). Writes the merged file over `%A` and exits 0;
//! on an input it cannot merge (conflict markers, malformed lines, duplicate ids) it leaves
//! `%A` alone and exits non-zero, so git reports a conflict.
//!
//! Field conflicts it resolved, records it renumbered and deletions it applied are listed on
//! standard error, where `git merge` shows them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use symphony_tracker::Document;
use symphony_tracker::document::DEFAULT_MAX_RECORD_BYTES;
use symphony_tracker::merge::{MergeRules, merge};

use super::Outcome;
use crate::workflow_tracker;

/// Arguments git passes (`%O %A %B %P`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `%O`: the common ancestor's version.
    base: PathBuf,
    /// `%A`: our version; receives the result.
    ours: PathBuf,
    /// `%B`: their version.
    theirs: PathBuf,
    /// `%P`: the file's path in the repository, for messages.
    path: Option<PathBuf>,
}

/// Merges and writes the result over `%A`. Git runs drivers at the top of the work tree, so
/// `./WORKFLOW.md` supplies the id prefix and states.
pub fn run(args: Args, workflow: Option<&Path>) -> anyhow::Result<Outcome> {
    let settings = workflow_tracker::load(workflow)?;
    let name = args
        .path
        .unwrap_or_else(|| PathBuf::from("issues/issues.jsonl"));
    let read = |file: &Path, side: &str| -> anyhow::Result<Document> {
        let bytes = std::fs::read(file).with_context(|| file.display().to_string())?;
        let label = PathBuf::from(format!("{} ({side})", name.display()));
        Ok(Document::parse(&label, bytes, DEFAULT_MAX_RECORD_BYTES)?)
    };
    let (base, ours, theirs) = (
        read(&args.base, "base")?,
        read(&args.ours, "ours")?,
        read(&args.theirs, "theirs")?,
    );
    let rules = MergeRules {
        ids: &settings.ids,
        states: &settings.states,
    };
    let merged = merge(&base, &ours, &theirs, &rules)?;
    std::fs::write(&args.ours, &merged.bytes).with_context(|| args.ours.display().to_string())?;
    let report = merged.report.to_string();
    if !report.is_empty() {
        eprint!("symphony merge-driver: {}:\n{report}", name.display());
    }
    Ok(Outcome::Success)
}
