//! `symphony issues show ID [--json]`: one issue in full. `--json` prints the record exactly
//! as stored (every field, unknown ones included, in file order).

use std::io::Write;

use anyhow::Context as _;
use symphony_tracker::{Document, Issue, TrackerError};

use super::Tracker;

/// Arguments of `symphony issues show`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The issue id.
    id: String,
    /// Print the stored record as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Prints one issue.
pub fn run(tracker: &Tracker, args: Args) -> anyhow::Result<()> {
    let document = tracker.read()?;
    let index = document
        .find(&args.id)?
        .ok_or_else(|| TrackerError::NotFound {
            path: document.path().to_path_buf(),
            id: args.id.clone(),
        })?;
    let record = document.record(index)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &record)?;
        writeln!(out)?;
        return Ok(());
    }
    let issue = Issue::from_map(&record).with_context(|| {
        format!(
            "{}:{}: the record does not match the schema (run `symphony validate`)",
            document.path().display(),
            index + 1
        )
    })?;
    write_issue(&mut out, &issue, &document)?;
    Ok(())
}

fn write_issue(out: &mut impl Write, issue: &Issue, document: &Document) -> anyhow::Result<()> {
    let or_dash = |value: Option<&str>| value.unwrap_or("-").to_string();
    writeln!(out, "{}  {}", issue.id, issue.title)?;
    writeln!(
        out,
        "state: {}   priority: {}   assignee: {}",
        issue.state,
        issue.priority.map_or("-".into(), |p| p.to_string()),
        or_dash(issue.assignee.as_deref())
    )?;
    writeln!(out, "labels: {}", issue.labels.join(", "))?;
    if !issue.blocked_by.is_empty() {
        let mut blockers = Vec::new();
        for blocker in &issue.blocked_by {
            let live = match document.find(&blocker.id)? {
                Some(index) => document.head(index)?.state.into_owned(),
                None => "external".to_string(),
            };
            blockers.push(format!("{} ({live})", blocker.id));
        }
        writeln!(out, "blocked by: {}", blockers.join(", "))?;
    }
    writeln!(
        out,
        "branch: {}   url: {}",
        or_dash(issue.branch_name.as_deref()),
        or_dash(issue.url.as_deref())
    )?;
    writeln!(
        out,
        "created: {}   updated: {}",
        issue.created_at, issue.updated_at
    )?;
    if let Some(description) = &issue.description {
        writeln!(out, "\n{}", description.trim_end())?;
    }
    for (title, items) in [
        ("acceptance", issue.acceptance.as_deref()),
        ("validation", issue.validation.as_deref()),
    ] {
        if let Some(items) = items.filter(|i| !i.is_empty()) {
            writeln!(out, "\n{title}:")?;
            for item in items {
                writeln!(out, "  - {item}")?;
            }
        }
    }
    if let Some(handoff) = &issue.handoff {
        writeln!(
            out,
            "\nhandoff ({}):",
            or_dash(handoff.updated_at.as_deref())
        )?;
        if let Some(summary) = &handoff.summary {
            writeln!(out, "  {}", summary.trim_end())?;
        }
        if !handoff.files_changed.is_empty() {
            writeln!(out, "  files changed: {}", handoff.files_changed.join(", "))?;
        }
        for run in &handoff.validation {
            writeln!(out, "  [{}] {}", run.status, run.command)?;
        }
        for item in &handoff.follow_up {
            writeln!(out, "  follow-up: {item}")?;
        }
        if let Some(proofs) = &handoff.proofs_dir {
            writeln!(out, "  proofs: {proofs}")?;
        }
    }
    if let Some(claim) = &issue.claim {
        writeln!(
            out,
            "\nclaimed by {} (slot {}) since {}, heartbeat {}",
            claim.node, claim.slot, claim.claimed_at, claim.heartbeat_at
        )?;
    }
    Ok(())
}
