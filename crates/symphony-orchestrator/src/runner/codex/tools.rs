//! Host-side tools offered to a Codex thread (`dynamicTools` on `thread/start`) and run by the
//! orchestrator on `item/tool/call` (Symphony SPEC §10.5, "provider-native agent tool
//! extension"). The agent never sees the issues file path or any tracker credential: the tools
//! act through the orchestrator's own tracker handle.
//!
//! | tool | arguments | mutates | result |
//! |---|---|---|---|
//! | `symphony_handoff` | the handoff object of `.symphony/handoff.json` ([`crate::handoff`]): `summary` (required), `files_changed`, `validation`, `follow_up`, `proofs_dir` | yes: writes the handoff and moves the issue to review, like `symphony issues handoff` | `{"recorded": true, "state": "<review state>"}`, or a failure naming the JSON pointer |
//! | `symphony_issue` | none | no | the issue's record, with `blockers`: each `blocked_by` entry's current `identifier`, `title`, `state` |
//!
//! Scope: only the session's own issue. A failure (bad arguments, closed issue, file error) is a
//! `success: false` result the model can read and act on; the session goes on. Unknown tools get
//! `unsupported_tool_call` (SPEC §10.5). Re-sending a handoff overwrites the previous one.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::protocol::{DynamicToolCallResponse, DynamicToolSpec};
use crate::git_issues::{GitIssues, TrackerSettings, string_field};
use crate::handoff;

/// Name of the handoff tool.
pub const HANDOFF_TOOL: &str = "symphony_handoff";
/// Name of the issue-read tool.
pub const ISSUE_TOOL: &str = "symphony_issue";

/// The tracker the tools act on, bound to one session (SPEC §10.5: one snapshot per session).
#[derive(Debug, Clone)]
pub struct TrackerTools {
    /// The tracker handle of the orchestrator.
    pub tracker: Arc<GitIssues>,
    /// Tracker settings at dispatch.
    pub settings: TrackerSettings,
    /// The attempt's proofs directory relative to the repository root; linked from the handoff
    /// unless the agent names one.
    pub proofs_dir: String,
}

/// How a tool call went, for the event stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToolOutcome {
    /// The tool ran and succeeded.
    Completed(DynamicToolCallResponse),
    /// The tool ran and failed; the model gets the reason.
    Failed(DynamicToolCallResponse),
    /// No such tool.
    Unsupported(DynamicToolCallResponse),
}

/// The specs advertised on `thread/start`; empty without a tracker.
pub(crate) fn specs(tools: Option<&TrackerTools>) -> Vec<DynamicToolSpec> {
    if tools.is_none() {
        return Vec::new();
    }
    vec![
        DynamicToolSpec {
            kind: "function",
            name: HANDOFF_TOOL,
            description: "Hand the current issue off for review: records the summary, changed \
                          files, validation runs and follow-ups on the issue and moves it to \
                          review. Call it once the work is done.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "summary": {"type": "string", "description": "What was done (required)."},
                    "files_changed": {"type": "array", "items": {"type": "string"}},
                    "validation": {"type": "array", "items": {
                        "type": "object",
                        "properties": {
                            "command": {"type": "string"},
                            "status": {"type": "string", "enum": ["passed", "failed", "skipped"]},
                            "note": {"type": "string"},
                            "exit_code": {"type": "integer"}
                        },
                        "required": ["command", "status"]
                    }},
                    "follow_up": {"type": "array", "items": {"type": "string"}},
                    "proofs_dir": {"type": "string"}
                },
                "required": ["summary"],
                "additionalProperties": false
            }),
        },
        DynamicToolSpec {
            kind: "function",
            name: ISSUE_TOOL,
            description: "Read the current issue: its full record and the current state of \
                          each issue it is blocked by.",
            input_schema: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        },
    ]
}

/// Runs `tool` for `issue_id`. Never fails the session: errors become failure results.
pub(crate) async fn call(
    tools: Option<&TrackerTools>,
    issue_id: &str,
    tool: &str,
    arguments: Value,
) -> ToolOutcome {
    let known = matches!(tool, HANDOFF_TOOL | ISSUE_TOOL);
    let Some(tools) = tools.filter(|_| known) else {
        return ToolOutcome::Unsupported(DynamicToolCallResponse::text(
            false,
            format!("unsupported_tool_call: symphony does not implement the tool `{tool}`"),
        ));
    };
    let result = match tool {
        HANDOFF_TOOL => handoff_tool(tools, issue_id, arguments).await,
        _ => issue_tool(tools, issue_id).await,
    };
    match result {
        Ok(value) => ToolOutcome::Completed(DynamicToolCallResponse::text(true, value.to_string())),
        Err(message) => ToolOutcome::Failed(DynamicToolCallResponse::text(
            false,
            format!("{tool}: {message}"),
        )),
    }
}

async fn handoff_tool(
    tools: &TrackerTools,
    issue_id: &str,
    arguments: Value,
) -> Result<Value, String> {
    // The same validation as `.symphony/handoff.json`, with errors naming the tool's arguments.
    let source = Path::new("symphony_handoff arguments");
    let handoff = handoff::from_value(source, arguments).map_err(|e| e.to_string())?;
    let settings = tools.settings.clone();
    let review = settings.states.review.first().cloned().unwrap_or_default();
    let id = issue_id.to_owned();
    let proofs_dir = tools.proofs_dir.clone();
    tools
        .tracker
        .blocking(move |t| {
            t.record_handoff(
                &settings,
                &id,
                Some(&handoff),
                &proofs_dir,
                OffsetDateTime::now_utc(),
            )
        })
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        issue_id,
        "handoff recorded through the symphony_handoff tool"
    );
    Ok(json!({"recorded": true, "state": review}))
}

async fn issue_tool(tools: &TrackerTools, issue_id: &str) -> Result<Value, String> {
    let id = issue_id.to_owned();
    let (record, blockers) = tools
        .tracker
        .blocking(move |t| {
            let Some(record) = t.fetch_issue(&id)? else {
                return Ok((None, Vec::new()));
            };
            let mut blockers = Vec::new();
            for blocker in blocker_ids(&record) {
                let current = t.fetch_issue(&blocker)?;
                blockers.push(blocker_view(&blocker, current.as_ref()));
            }
            Ok((Some(record), blockers))
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut record =
        record.ok_or_else(|| format!("issue {issue_id} is no longer in the tracker"))?;
    record.insert("blockers".into(), Value::Array(blockers));
    Ok(Value::Object(record))
}

/// Ids in `blocked_by`: entries are `{"id": ...}` objects or bare id strings.
fn blocker_ids(record: &Map<String, Value>) -> Vec<String> {
    let Some(Value::Array(entries)) = record.get("blocked_by") else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| match e {
            Value::String(id) => Some(id.clone()),
            Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        })
        .collect()
}

fn blocker_view(id: &str, current: Option<&Map<String, Value>>) -> Value {
    match current {
        Some(r) => json!({
            "id": id,
            "identifier": string_field(r, "identifier"),
            "title": string_field(r, "title"),
            "state": string_field(r, "state"),
        }),
        None => json!({"id": id, "state": "<missing>"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocker_ids_accept_objects_and_strings() {
        let record = json!({"blocked_by": [{"id": "A-1", "state": "done"}, "A-2", 3]});
        let Value::Object(record) = record else {
            unreachable!()
        };
        assert_eq!(blocker_ids(&record), ["A-1", "A-2"]);
    }

    #[tokio::test]
    async fn unknown_tools_and_tools_without_a_tracker_are_unsupported() {
        let outcome = call(None, "A-1", "symphony_handoff", json!({})).await;
        assert!(matches!(outcome, ToolOutcome::Unsupported(r) if !r.success));
        assert!(specs(None).is_empty());
    }
}
