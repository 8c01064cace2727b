//! The summary of an issue shared by `list` and `ready`: a table for humans, a stable JSON
//! array for machines (docs/cli.md, "Issue summary").

use std::io::Write;

use serde::Serialize;
use symphony_tracker::IssueHead;

/// One issue in `list`/`ready --json`. Field names and types are a stable interface.
#[derive(Serialize)]
struct Summary<'h> {
    id: &'h str,
    identifier: &'h str,
    title: &'h str,
    state: &'h str,
    priority: Option<i64>,
    labels: &'h [String],
    blocked_by: Vec<&'h str>,
    assignee: Option<&'h str>,
    created_at: &'h str,
    updated_at: &'h str,
}

/// Writes `heads` as a JSON array of summaries, or as an aligned table.
pub fn write(heads: &[&IssueHead<'_>], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        let summaries: Vec<Summary<'_>> = heads
            .iter()
            .map(|h| Summary {
                id: &h.id,
                identifier: &h.identifier,
                title: &h.title,
                state: &h.state,
                priority: h.priority,
                labels: &h.labels,
                blocked_by: h.blocked_by.iter().map(|b| b.id.as_str()).collect(),
                assignee: h.assignee.as_deref(),
                created_at: &h.created_at,
                updated_at: &h.updated_at,
            })
            .collect();
        serde_json::to_writer(&mut out, &summaries)?;
        writeln!(out)?;
    } else {
        let id_width = heads.iter().map(|h| h.id.len()).max().unwrap_or(2).max(2);
        let state_width = heads
            .iter()
            .map(|h| h.state.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(
            out,
            "{:id_width$}  {:state_width$}  PRI  TITLE",
            "ID", "STATE"
        )?;
        for h in heads {
            let priority = h.priority.map_or("-".to_string(), |p| p.to_string());
            writeln!(
                out,
                "{:id_width$}  {:state_width$}  {priority:3}  {}",
                h.id, h.state, h.title
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
