//! `symphony issues create --title T [...] [--commit]`: appends an issue with the next id
//! (symphony_tracker::ops::create) and prints the id.

use std::io::Write as _;
use symphony_tracker::ops::{self, NewIssue};
use time::OffsetDateTime;

use super::{CommitArg, Tracker};

/// Arguments of `symphony issues create`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One-line title.
    #[arg(long)]
    title: String,
    /// Markdown description.
    #[arg(long)]
    description: Option<String>,
    /// 1 urgent .. 4 low, 0 none.
    #[arg(long)]
    priority: Option<i64>,
    /// Initial state (default: the workflow's first active state, `todo`).
    #[arg(long)]
    state: Option<String>,
    /// A label (repeatable).
    #[arg(long = "label", value_name = "LABEL")]
    labels: Vec<String>,
    /// A blocking issue id, or project:slug for another tracker's issue (repeatable).
    #[arg(long = "blocked-by", value_name = "ID")]
    blocked_by: Vec<String>,
    /// Who holds the issue.
    #[arg(long)]
    assignee: Option<String>,
    /// Branch the work lives on.
    #[arg(long)]
    branch: Option<String>,
    /// Pull request or source URL.
    #[arg(long)]
    url: Option<String>,
    /// An acceptance criterion (repeatable).
    #[arg(long = "acceptance", value_name = "TEXT")]
    acceptance: Vec<String>,
    /// A check reviewers should run (repeatable).
    #[arg(long = "validation", value_name = "TEXT")]
    validation: Vec<String>,
    #[command(flatten)]
    commit: CommitArg,
}

/// Creates the issue and prints its id.
pub fn run(tracker: &Tracker, args: Args) -> anyhow::Result<()> {
    let issue = NewIssue {
        title: args.title,
        description: args.description,
        priority: args.priority,
        state: args.state,
        labels: args.labels,
        blocked_by: args.blocked_by,
        branch_name: args.branch,
        url: args.url,
        assignee: args.assignee,
        acceptance: args.acceptance,
        validation: args.validation,
    };
    let settings = &tracker.settings;
    let now = OffsetDateTime::now_utc();
    let id = args.commit.transact(
        tracker,
        |tx| ops::create(tx, &issue, &settings.ids, &settings.states, now),
        |id| format!("issues: create {id}: {}", issue.title),
    )?;
    writeln!(std::io::stdout().lock(), "{id}")?;
    Ok(())
}
