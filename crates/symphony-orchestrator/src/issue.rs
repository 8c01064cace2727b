//! The normalized issue (Symphony SPEC §4.1.1, §11.3) as the `git_issues` adapter produces it
//! from a record of the issues file: what refresh by id returns, and what the prompt's `issue`
//! is built from.

use serde_json::{Map, Value};
use symphony_tracker::model::{IssueHead, parse_timestamp};
use time::OffsetDateTime;

/// A blocker ref of a normalized issue (SPEC §4.1.1): best-effort metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlockerRef {
    /// The blocker's id.
    pub id: String,
    /// Its identifier, as the ref wrote it.
    pub identifier: Option<String>,
    /// Its state snapshot, as the ref wrote it (readiness uses the live state).
    pub state: Option<String>,
}

/// A normalized issue (SPEC §4.1.1). `native_ref` is always null here: the tracker id is the
/// record's own id, and no other provider identifier exists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    /// Dispatch identity: the record's `id`.
    pub id: String,
    /// Always `None` for `git_issues` (serialized as `null`).
    pub native_ref: Option<Value>,
    /// The record's `identifier`.
    pub identifier: String,
    /// Title.
    pub title: String,
    /// Description, `None` when absent or not a string.
    pub description: Option<String>,
    /// Priority as written (`None` when absent); the scheduler ranks only 1–4.
    pub priority: Option<i64>,
    /// State, provider spelling kept.
    pub state: String,
    /// `branch_name`, `None` when absent or not a string.
    pub branch_name: Option<String>,
    /// `url`, `None` when absent or not a string.
    pub url: Option<String>,
    /// `assignee`, `None` when absent.
    pub assignee_id: Option<String>,
    /// Labels trimmed and lowercased, blanks dropped, duplicates removed, in record order.
    pub labels: Vec<String>,
    /// Blocker refs (a bare id string becomes a ref with only the id).
    pub blocked_by: Vec<BlockerRef>,
    /// Adapter-derived eligibility (SPEC §4.1.1): see `GitIssues::fetch_candidate_issues`.
    pub dispatchable: bool,
    /// `created_at` as written (RFC 3339).
    pub created_at: Option<String>,
    /// `updated_at` as written (RFC 3339).
    pub updated_at: Option<String>,
    /// `handoff.updated_at`, parsed (not a SPEC field: reconciliation uses it).
    #[serde(skip)]
    pub handoff_updated_at: Option<OffsetDateTime>,
}

impl Issue {
    /// The normalized view of a record whose scheduling fields `head` were read from `record`.
    pub fn normalize(
        head: &IssueHead<'_>,
        record: &Map<String, Value>,
        dispatchable: bool,
    ) -> Issue {
        let text = |field: &str| {
            record
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let blocked_by = record
            .get("blocked_by")
            .and_then(Value::as_array)
            .map(|refs| refs.iter().filter_map(blocker_ref).collect())
            .unwrap_or_default();
        Issue {
            id: head.id.to_string(),
            native_ref: None,
            identifier: head.identifier.to_string(),
            title: head.title.to_string(),
            description: text("description"),
            priority: head.priority,
            state: head.state.to_string(),
            branch_name: text("branch_name"),
            url: text("url"),
            assignee_id: head.assignee.as_deref().map(str::to_string),
            labels: normalize_labels(head.labels.iter().map(|label| label.as_ref())),
            blocked_by,
            dispatchable,
            created_at: Some(head.created_at.to_string()),
            updated_at: Some(head.updated_at.to_string()),
            handoff_updated_at: record
                .get("handoff")
                .and_then(|handoff| handoff.get("updated_at"))
                .and_then(Value::as_str)
                .and_then(|at| parse_timestamp(at).ok()),
        }
    }
}

/// SPEC §11.3: labels trimmed and lowercased, blank ones dropped, duplicates removed (first
/// occurrence kept).
pub fn normalize_labels<'l>(labels: impl Iterator<Item = &'l str>) -> Vec<String> {
    let mut normalized: Vec<String> = Vec::new();
    for label in labels {
        let label = label.trim().to_lowercase();
        if !label.is_empty() && !normalized.contains(&label) {
            normalized.push(label);
        }
    }
    normalized
}

/// The prompt's `issue` (SPEC §12.1): the stored record with its labels normalized
/// ([`normalize_labels`]) and the SPEC's `dispatchable` and `native_ref` added when absent.
/// Every other field is kept as stored, so templates can use the record's own fields.
pub fn prompt_issue(record: &Value) -> Value {
    let mut issue = record.clone();
    if let Some(map) = issue.as_object_mut() {
        if let Some(Value::Array(labels)) = map.get("labels") {
            let labels = normalize_labels(labels.iter().filter_map(Value::as_str));
            map.insert("labels".into(), labels.into());
        }
        map.entry("native_ref").or_insert(Value::Null);
        // The prompt is rendered for an issue that was dispatched.
        map.entry("dispatchable").or_insert(Value::Bool(true));
    }
    issue
}

fn blocker_ref(entry: &Value) -> Option<BlockerRef> {
    if let Some(id) = entry.as_str() {
        return Some(BlockerRef {
            id: id.to_string(),
            identifier: None,
            state: None,
        });
    }
    let text = |field: &str| entry.get(field).and_then(Value::as_str).map(str::to_string);
    Some(BlockerRef {
        id: text("id")?,
        identifier: text("identifier"),
        state: text("state"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_11_3_labels_are_trimmed_lowercased_deduplicated_and_blanks_dropped() {
        assert_eq!(
            normalize_labels([" Bug", "bug", "", "  ", "UI "].into_iter()),
            ["bug", "ui"]
        );
    }

    #[test]
    fn spec_17_3_unusable_optional_metadata_normalizes_to_null_and_required_fields_stay() {
        let line = r#"{"id":"A-1","identifier":"A-1","title":"t","description":7,"priority":2,"state":"Todo","branch_name":["x"],"url":{},"labels":["Bug"],"blocked_by":["B-1",{"id":"C-1","state":"done"}],"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}"#;
        let head =
            symphony_tracker::document::parse_head(std::path::Path::new("f"), 1, line).unwrap();
        let record =
            symphony_tracker::document::parse_record(std::path::Path::new("f"), 1, line).unwrap();
        let issue = Issue::normalize(&head, &record, true);
        assert_eq!(
            (&issue.description, &issue.branch_name, &issue.url),
            (&None, &None, &None)
        );
        assert_eq!(issue.state, "Todo", "provider spelling kept");
        assert_eq!(issue.labels, ["bug"]);
        let blockers: Vec<&str> = issue.blocked_by.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(
            blockers,
            ["B-1", "C-1"],
            "an entry without an id is dropped"
        );
        let json = serde_json::to_value(&issue).unwrap();
        assert_eq!(json["native_ref"], Value::Null);
        assert_eq!(json["dispatchable"], true);
    }

    #[test]
    fn the_prompt_issue_has_normalized_labels_and_the_spec_fields() {
        let record = serde_json::json!({"id": "A-1", "labels": ["Bug", " UI"], "extra": 1});
        let issue = prompt_issue(&record);
        assert_eq!(issue["labels"], serde_json::json!(["bug", "ui"]));
        assert_eq!(issue["native_ref"], Value::Null);
        assert_eq!(issue["dispatchable"], true);
        assert_eq!(issue["extra"], 1, "the record's own fields stay");
    }
}
