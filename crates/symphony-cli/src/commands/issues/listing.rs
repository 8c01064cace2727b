//! The summary of an issue shared by `list` and `ready`: a table for humans, a stable JSON
//! array for machines (docs/cli.md, "Issue summary").

use std::io::Write;

use serde::Serialize;
use symphony_tracker::heads::HeadRef;

/// One issue in `list`/`ready --json`. Field names and types are a stable interface.
#[derive(Serialize)]
struct Summary<'h> {
    id: &'h str,
    identifier: &'h str,
    title: &'h str,
    state: &'h str,
    priority: Option<i64>,
    labels: Vec<&'h str>,
    blocked_by: Vec<&'h str>,
    assignee: Option<&'h str>,
    created_at: &'h str,
    updated_at: &'h str,
}

/// Writes `heads` as a JSON array of summaries, or as an aligned table.
pub fn write(heads: &[HeadRef<'_>], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        // One summary at a time: the array is never held in memory.
        out.write_all(b"[")?;
        for (n, h) in heads.iter().enumerate() {
            if n > 0 {
                out.write_all(b",")?;
            }
            let summary = Summary {
                id: h.id(),
                identifier: h.identifier(),
                title: h.title(),
                state: h.state(),
                priority: h.priority(),
                labels: h.labels().collect(),
                blocked_by: h.blocker_ids().collect(),
                assignee: h.assignee(),
                created_at: h.created_at(),
                updated_at: h.updated_at(),
            };
            serde_json::to_writer(&mut out, &summary)?;
        }
        out.write_all(b"]\n")?;
    } else {
        let id_width = heads.iter().map(|h| h.id().len()).max().unwrap_or(2).max(2);
        let state_width = heads
            .iter()
            .map(|h| h.state().len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(
            out,
            "{:id_width$}  {:state_width$}  PRI  TITLE",
            "ID", "STATE"
        )?;
        for h in heads {
            let priority = h.priority().map_or("-".to_string(), |p| p.to_string());
            writeln!(
                out,
                "{:id_width$}  {:state_width$}  {priority:3}  {}",
                h.id(),
                h.state(),
                h.title()
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
