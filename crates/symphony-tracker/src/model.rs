//! The issue model of the x0x issue schema (`issues/schema.json`), typed where the schema
//! defines a field and preserving every unknown field.
//!
//! Two views exist. [`Issue`] owns every field and is what commands build and show.
//! [`IssueHead`] borrows the few fields scheduling needs straight from a line, skipping the
//! long ones (descriptions, handoffs) without allocating, so `ready` over 10k records stays
//! fast. The record as written — key order and unknown fields — always lives in the record's
//! JSON map; these views never replace it on disk.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One issue, every schema field typed (x0x issue schema; Symphony SPEC §4.1.1).
///
/// Timestamps are kept as the RFC 3339 strings the file holds so re-serialization never
/// reformats them; [`parse_timestamp`] interprets them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    /// Stable id, e.g. `XSY-0037` (or a hash id `sym-3f9a2c1d`).
    pub id: String,
    /// Human-readable key; equal to `id` in this tracker.
    pub identifier: String,
    /// One-line title.
    pub title: String,
    /// Markdown description.
    pub description: Option<String>,
    /// 1 (urgent) .. 4 (low); 0 or null means none and sorts last (SPEC §8.2).
    pub priority: Option<i64>,
    /// Workflow state name (`todo`, `in_progress`, `review`, `blocked`, `done`, ...).
    pub state: String,
    /// Branch the work lives on, if any.
    pub branch_name: Option<String>,
    /// Pull request or source URL, if any.
    pub url: Option<String>,
    /// Labels, as written.
    pub labels: Vec<String>,
    /// Issues that must reach a terminal state first.
    pub blocked_by: Vec<BlockerRef>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
    /// Acceptance criteria.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<Vec<String>>,
    /// Checks a reviewer should run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Vec<String>>,
    /// Who (human or agent) holds the issue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// Free-form size estimate (number or string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Value>,
    /// Related documents and pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<Link>>,
    /// The agent's handoff, written when work moves to review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<Handoff>,
    /// The frozen shard slate (design.md, Sharded TTL claims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The live claim of a node working the issue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    /// Every field the schema does not name, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `blocked_by` entry (SPEC §4.1.1 blocker ref). `state` is a snapshot taken when the ref
/// was written; readiness always uses the blocker's live state from the file.
///
/// A bare id string (`"blocked_by": ["X-1"]`, written by some tools) reads as the ref
/// `{"id": "X-1"}`; `symphony validate` warns about it and names the fix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockerRef {
    /// Id of the blocking issue; `project:slug` names an issue of another tracker.
    pub id: String,
    /// Identifier of the blocking issue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// State of the blocker when the ref was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for BlockerRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The ref object, as the schema writes it.
        #[derive(Deserialize)]
        struct Fields {
            id: String,
            #[serde(default)]
            identifier: Option<String>,
            #[serde(default)]
            state: Option<String>,
            #[serde(flatten)]
            extra: Map<String, Value>,
        }
        match Value::deserialize(deserializer)? {
            Value::String(id) => Ok(BlockerRef {
                id,
                identifier: None,
                state: None,
                extra: Map::new(),
            }),
            other => {
                let f = Fields::deserialize(other).map_err(serde::de::Error::custom)?;
                Ok(BlockerRef {
                    id: f.id,
                    identifier: f.identifier,
                    state: f.state,
                    extra: f.extra,
                })
            }
        }
    }
}

/// A link to a related document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// What the link is (`design`, `adr`, `pr`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Where it points (URL or repository path).
    pub url: String,
    /// A short note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What an agent hands back when it moves an issue to review.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    /// What was done, in a few sentences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Repository paths the work changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files_changed: Vec<String>,
    /// Checks that were run and how they went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<ValidationRun>,
    /// Work left for later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follow_up: Vec<String>,
    /// Directory of large artefacts, `proofs/<identifier>/<utc>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proofs_dir: Option<String>,
    /// RFC 3339 time the handoff was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One check run as part of a handoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationRun {
    /// The command line that was run.
    pub command: String,
    /// `passed`, `failed`, `skipped` or `not_run`, optionally followed by detail
    /// (`passed (51/51)`): other tools write free text here.
    pub status: String,
    /// Why it was skipped, what failed, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The command's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The shard slate frozen on a record (design.md, Sharded TTL claims).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// NodeId (hex) of the slot-0 node.
    pub primary: String,
    /// NodeIds of backups 1 and 2, in slot order.
    #[serde(default)]
    pub backups: Vec<String>,
    /// A claim whose heartbeat is older than this is stale, in milliseconds.
    pub claim_ttl_ms: u64,
    /// Membership view epoch the slate was computed from.
    #[serde(default)]
    pub created_view_epoch: u64,
}

/// A node's claim on an issue; refreshed by heartbeats while its agent runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// NodeId (hex) of the claiming node.
    pub node: String,
    /// Slate slot the node claimed from: 0 primary, 1.. backups.
    pub slot: u32,
    /// RFC 3339 time of the claim.
    pub claimed_at: String,
    /// RFC 3339 time of the last heartbeat.
    pub heartbeat_at: String,
}

/// The scheduling fields of a record, borrowed from its line.
///
/// Deserializing skips every other field without allocating. Strings without escapes borrow
/// from the line.
#[derive(Debug, Clone, Deserialize)]
pub struct IssueHead<'a> {
    /// See [`Issue::id`].
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// See [`Issue::identifier`].
    #[serde(borrow)]
    pub identifier: Cow<'a, str>,
    /// See [`Issue::title`].
    #[serde(borrow)]
    pub title: Cow<'a, str>,
    /// See [`Issue::state`].
    #[serde(borrow)]
    pub state: Cow<'a, str>,
    /// See [`Issue::priority`].
    #[serde(default)]
    pub priority: Option<i64>,
    /// See [`Issue::created_at`].
    #[serde(borrow)]
    pub created_at: Cow<'a, str>,
    /// See [`Issue::updated_at`].
    #[serde(borrow)]
    pub updated_at: Cow<'a, str>,
    /// See [`Issue::labels`].
    #[serde(default, borrow)]
    pub labels: Vec<Text<'a>>,
    /// Ids of the blockers.
    #[serde(default, borrow)]
    pub blocked_by: Vec<BlockerHead<'a>>,
    /// See [`Issue::assignee`].
    #[serde(default, borrow)]
    pub assignee: Option<Cow<'a, str>>,
    /// See [`Issue::shard`].
    #[serde(default)]
    pub shard: Option<Shard>,
    /// See [`Issue::claim`].
    #[serde(default)]
    pub claim: Option<Claim>,
}

/// A string borrowed from the line when it has no escapes (serde borrows a `Cow` only as a
/// field, not as an element of a list).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The part of a blocker ref scheduling needs. A bare id string reads as the ref it names
/// (see [`BlockerRef`]), marked `bare`.
#[derive(Debug, Clone)]
pub struct BlockerHead<'a> {
    /// Id of the blocking issue.
    pub id: Cow<'a, str>,
    /// Whether the entry was a bare id string rather than a ref object.
    pub bare: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for BlockerHead<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Borrows the id from the line when it has no escapes; skips every other field.
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = BlockerHead<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a blocker ref object or an id string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(BlockerHead {
                    id: Cow::Borrowed(v),
                    bare: true,
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BlockerHead {
                    id: Cow::Owned(v.to_string()),
                    bare: true,
                })
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut id = None;
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if key.0 == "id" && id.is_none() {
                        id = Some(map.next_value::<Text<'de>>()?.0);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                let id = id.ok_or_else(|| serde::de::Error::missing_field("id"))?;
                Ok(BlockerHead { id, bare: false })
            }
        }
        deserializer.deserialize_any(Visit(std::marker::PhantomData))
    }
}

impl Issue {
    /// Reads the typed view of a record map. Fails with serde's message (which names the
    /// field) when a field has the wrong type or a required one is missing.
    pub fn from_map(record: &Map<String, Value>) -> Result<Issue, serde_json::Error> {
        Issue::deserialize(record)
    }

    /// The record map of this issue, fields in schema order, unknown fields last.
    ///
    /// Explicit `null`s in optional fields are not reproduced; to change an existing record,
    /// edit its map (see [`crate::store::Transaction::modify`]) rather than writing this back.
    pub fn to_map(&self) -> Result<Map<String, Value>, serde_json::Error> {
        match serde_json::to_value(self)? {
            Value::Object(map) => Ok(map),
            _ => Err(serde::ser::Error::custom(
                "an issue serializes to an object",
            )),
        }
    }
}

/// Parses an RFC 3339 timestamp (`2026-04-28T00:00:00Z`).
pub fn parse_timestamp(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(text, &Rfc3339)
}

/// Formats a time as RFC 3339 UTC with whole seconds (`2026-04-28T11:30:00Z`), the form every
/// record in the fixtures uses.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// The current time as [`format_timestamp`] writes it.
pub fn now_timestamp() -> String {
    format_timestamp(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    const XSY_0008: &str = include_str!("../tests/fixtures/xsy-0008.json");

    #[test]
    fn fixture_record_round_trips_through_the_typed_view() {
        let map: Map<String, Value> = serde_json::from_str(XSY_0008).unwrap();
        let issue = Issue::from_map(&map).unwrap();
        assert_eq!(issue.state, "blocked");
        assert_eq!(issue.blocked_by[0].id, "XSY-0007");
        assert_eq!(issue.handoff.as_ref().unwrap().validation.len(), 4);
        // The typed view is faithful except for explicit nulls in optional fields, which it
        // drops (this record has `"exit_code":null`); edits therefore go through the map.
        let typed = issue.to_map().unwrap();
        assert!(typed.keys().eq(map.keys()), "top-level key order kept");
        assert_eq!(Issue::from_map(&typed).unwrap(), issue);
    }

    #[test]
    fn head_borrows_and_skips_long_fields() {
        let head: IssueHead<'_> = serde_json::from_str(XSY_0008).unwrap();
        assert_eq!(head.id, "XSY-0008");
        assert!(matches!(head.id, Cow::Borrowed(_)));
        assert_eq!(head.blocked_by[0].id, "XSY-0007");
        assert!(matches!(head.blocked_by[0].id, Cow::Borrowed(_)));
        assert!(matches!(head.labels[2].0, Cow::Borrowed("docs")));
        assert_eq!(head.priority, Some(3));
    }

    #[test]
    fn unknown_fields_are_kept() {
        let line = r#"{"id":"A-1","identifier":"A-1","title":"t","description":null,"priority":null,"state":"todo","branch_name":null,"url":null,"labels":[],"blocked_by":[],"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","x_custom":{"k":[1]}}"#;
        let map: Map<String, Value> = serde_json::from_str(line).unwrap();
        let issue = Issue::from_map(&map).unwrap();
        assert_eq!(issue.extra["x_custom"], serde_json::json!({"k": [1]}));
        assert_eq!(issue.to_map().unwrap(), map);
    }

    #[test]
    fn timestamps_format_with_whole_seconds_in_utc() {
        let at = parse_timestamp("2026-04-28T13:30:05.250+02:00").unwrap();
        assert_eq!(format_timestamp(at), "2026-04-28T11:30:05Z");
    }
}
