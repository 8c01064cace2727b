//! `symphony issues update ID [--title …] [--priority …] [...] [--commit]`: changes only the
//! fields given (symphony_tracker::ops::update). An empty value clears a nullable field
//! (writes `null`); `--priority none` clears the priority. Nothing changed, nothing written.

use symphony_tracker::ops::{self, IssueUpdate};

use super::{CommitArg, Tracker};

/// Arguments of `symphony issues update`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The issue id.
    id: String,
    /// New title.
    #[arg(long)]
    title: Option<String>,
    /// New description (empty: null).
    #[arg(long)]
    description: Option<String>,
    /// New priority: 1 urgent .. 4 low, 0 or `none`.
    #[arg(long, value_parser = parse_priority)]
    priority: Option<Priority>,
    /// New state (terminal states go through `symphony issues close`).
    #[arg(long)]
    state: Option<String>,
    /// New assignee (empty: null).
    #[arg(long)]
    assignee: Option<String>,
    /// New branch name (empty: null).
    #[arg(long)]
    branch: Option<String>,
    /// New URL (empty: null).
    #[arg(long)]
    url: Option<String>,
    /// Add a label (repeatable).
    #[arg(long = "add-label", value_name = "LABEL")]
    add_labels: Vec<String>,
    /// Remove a label (repeatable).
    #[arg(long = "remove-label", value_name = "LABEL")]
    remove_labels: Vec<String>,
    #[command(flatten)]
    commit: CommitArg,
}

/// A parsed `--priority`: `None` clears.
#[derive(Debug, Clone, Copy)]
struct Priority(Option<i64>);

fn parse_priority(text: &str) -> Result<Priority, String> {
    match text.trim() {
        "none" | "null" => Ok(Priority(None)),
        number => number
            .parse()
            .map(|p| Priority(Some(p)))
            .map_err(|_| format!("expected 0..4 or `none`, got {text:?}")),
    }
}

fn nullable(value: Option<String>) -> Option<Option<String>> {
    value.map(|v| Some(v).filter(|v| !v.is_empty()))
}

/// Applies the update.
pub fn run(tracker: &Tracker, args: Args) -> anyhow::Result<()> {
    let change = IssueUpdate {
        title: args.title,
        description: nullable(args.description),
        priority: args.priority.map(|p| p.0),
        state: args.state,
        branch_name: nullable(args.branch),
        url: nullable(args.url),
        assignee: nullable(args.assignee),
        add_labels: args.add_labels,
        remove_labels: args.remove_labels,
    };
    let states = &tracker.settings.states;
    args.commit.transact(
        tracker,
        |tx| ops::update(tx, &args.id, &change, states),
        |changed| format!("issues: update {} ({})", args.id, changed.join(", ")),
    )?;
    Ok(())
}
