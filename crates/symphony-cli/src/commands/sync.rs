//! `symphony sync status [--json]`: this clone's tracker document as persisted under
//! `.symphony/sync/` (docs/sync.md). Without a running sync task there are no live peers:
//! the peers listed are those whose sync state is persisted.
//!
//! Exit codes: 0 ok (also when there is no document yet), 2 when the document is refused
//! (corrupt, another tracker's) or on I/O errors.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use symphony_sync::LocalTracker;
use symphony_tracker::Store;

use super::Outcome;
use crate::workflow_tracker;

/// Arguments of `symphony sync`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SyncCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SyncCommand {
    /// Heads, change count, document size, persisted peers.
    Status {
        /// One JSON document (schema in docs/cli.md).
        #[arg(long)]
        json: bool,
        /// The tracker name (default: `git:<root commit>` of the repository).
        #[arg(long)]
        tracker: Option<String>,
    },
}

/// `sync status --json`.
#[derive(Debug, Serialize)]
struct Status {
    tracker: String,
    /// `false` when `.symphony/sync/` does not exist yet; the other figures are then empty.
    document: bool,
    heads: Vec<String>,
    changes: u64,
    issues: usize,
    snapshot_bytes: u64,
    log_bytes: u64,
    /// Whether the issues file last matched the current heads.
    file_in_step: bool,
    peers: Vec<String>,
    warnings: Vec<String>,
}

/// Runs `symphony sync`.
pub fn run(args: Args, workflow: Option<&Path>) -> anyhow::Result<Outcome> {
    let SyncCommand::Status { json, tracker } = args.command;
    let settings = workflow_tracker::load(workflow)?;
    let tracker = match tracker {
        Some(name) => name,
        None => symphony_sync::tracker_name(&settings.path)?,
    };
    let store = Store::new(&settings.path);
    let dir = store.state_dir().join(symphony_sync::persist::SYNC_DIR);
    let mut status = Status {
        tracker: tracker.clone(),
        document: dir.exists(),
        heads: Vec::new(),
        changes: 0,
        issues: 0,
        snapshot_bytes: size(&dir.join("snapshot")),
        log_bytes: size(&dir.join("changes.log")),
        file_in_step: false,
        peers: peers(&dir.join("peers"))?,
        warnings: Vec::new(),
    };
    if status.document {
        let local = LocalTracker::open(store, &tracker)?;
        let doc = local.replica().doc();
        let heads = doc.get_heads();
        status.heads = heads.iter().map(ToString::to_string).collect();
        status.changes = automerge::ReadDoc::stats(doc).num_changes;
        status.issues = local.replica().ids().len();
        status.file_in_step = local.replica().file_heads() == heads.as_slice();
        status.warnings = local.warnings.clone();
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &status)?;
        writeln!(out)?;
    } else if !status.document {
        writeln!(
            out,
            "tracker {}: no document yet ({} does not exist)",
            status.tracker,
            dir.display()
        )?;
    } else {
        writeln!(out, "tracker   {}", status.tracker)?;
        writeln!(out, "heads     {}", status.heads.join(" "))?;
        writeln!(
            out,
            "changes   {}   issues {}",
            status.changes, status.issues
        )?;
        writeln!(
            out,
            "on disk   snapshot {} B, log {} B",
            status.snapshot_bytes, status.log_bytes
        )?;
        writeln!(
            out,
            "file      {}",
            if status.file_in_step {
                "in step with the document"
            } else {
                "behind the document (the next sync projects it)"
            }
        )?;
        writeln!(
            out,
            "peers     {}",
            if status.peers.is_empty() {
                "none persisted".to_string()
            } else {
                status.peers.join(" ")
            }
        )?;
        for warning in &status.warnings {
            writeln!(out, "warning: {warning}")?;
        }
    }
    out.flush()?;
    Ok(Outcome::Success)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn peers(dir: &PathBuf) -> anyhow::Result<Vec<String>> {
    let mut peers = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.with_context(|| dir.display().to_string())?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".tmp") {
                    peers.push(name);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| dir.display().to_string()),
    }
    peers.sort();
    Ok(peers)
}
