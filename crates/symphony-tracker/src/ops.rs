//! Typed operations on issues, each applied inside one [`Transaction`]: what
//! `symphony issues …` and the orchestrator do to the file.
//!
//! Every operation changes only the fields it names; [`Transaction::modify`] bumps
//! `updated_at` only when something changed, so repeating an operation is a no-op that writes
//! nothing. Rules enforced here (design.md, The tracker file; Sharded TTL claims):
//!
//! - agents move work `todo → in_progress → review`; only [`close`] writes terminal states
//!   (`done`, `cancelled`, `duplicate`), and it is meant for humans;
//! - a blocker is an issue of this file or an external `project:slug` ref; a ref that would
//!   close a cycle is refused;
//! - claims follow [`crate::claims`]: the slate is frozen on the record the first time it is
//!   needed, a live claim is never taken, heartbeats refresh only `claim.heartbeat_at`.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::claims::{self, ClaimDecision};
use crate::error::{Result, TrackerError};
use crate::ids::IdConfig;
use crate::model::{Claim, Handoff, Shard, format_timestamp, parse_timestamp};
use crate::states::StateConfig;
use crate::store::Transaction;
use crate::validate::is_external;

/// The fields of a new issue; everything else gets the schema's empty value.
#[derive(Debug, Clone, Default)]
pub struct NewIssue {
    /// One-line title (required, not blank).
    pub title: String,
    /// Markdown description.
    pub description: Option<String>,
    /// 1 (urgent) .. 4 (low), 0 none.
    pub priority: Option<i64>,
    /// Initial state; the workflow's initial state (`todo`) when `None`.
    pub state: Option<String>,
    /// Labels.
    pub labels: Vec<String>,
    /// Ids of blocking issues (of this file, or `project:slug`).
    pub blocked_by: Vec<String>,
    /// Branch name.
    pub branch_name: Option<String>,
    /// URL.
    pub url: Option<String>,
    /// Assignee; the field is written only when set.
    pub assignee: Option<String>,
    /// Acceptance criteria; the field is written only when non-empty.
    pub acceptance: Vec<String>,
    /// Validation steps; the field is written only when non-empty.
    pub validation: Vec<String>,
}

/// A change to an existing issue. `None` leaves a field alone; `Some(None)` writes `null`.
#[derive(Debug, Clone, Default)]
pub struct IssueUpdate {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<Option<String>>,
    /// New priority.
    pub priority: Option<Option<i64>>,
    /// New state: known and not terminal (terminal states go through [`close`]).
    pub state: Option<String>,
    /// New branch name.
    pub branch_name: Option<Option<String>>,
    /// New URL.
    pub url: Option<Option<String>>,
    /// New assignee.
    pub assignee: Option<Option<String>>,
    /// Labels to add (kept once, in order).
    pub add_labels: Vec<String>,
    /// Labels to remove.
    pub remove_labels: Vec<String>,
}

/// Creates an issue with the next id under `id_config` and returns that id.
///
/// The record is written in schema order with `created_at` = `updated_at` = `now`.
/// Errors: [`TrackerError::Rejected`] for a blank title, a priority outside 0..=4, an unknown
/// or terminal state, or a blocker that is neither in the file nor external;
/// [`TrackerError::DuplicateId`] when the new id exists;
/// [`TrackerError::NoIdPrefix`] when no prefix is configured or inferable.
pub fn create(
    tx: &mut Transaction<'_>,
    issue: &NewIssue,
    id_config: &IdConfig,
    states: &StateConfig,
    now: OffsetDateTime,
) -> Result<String> {
    let document = tx.document();
    // Read once: the scheme, the next number and the collision check each pass over them.
    let ids: Vec<Cow<'_, str>> = document
        .record_lines()
        .filter_map(|(index, _)| document.id_of(index).ok())
        .chain(tx.appended_ids().map(Cow::Borrowed))
        .collect();
    // An id defined twice is refused when a transaction touches it; the new id is checked
    // against every id by the append itself.
    let id = id_config
        .scheme(&ids)?
        .next(&ids, |candidate| ids.iter().any(|id| id == candidate));
    let reject = |message: String| rejected(&id, message);
    if issue.title.trim().is_empty() {
        return Err(reject("a title is required".into()));
    }
    check_priority(&id, issue.priority)?;
    let state = issue.state.as_deref().unwrap_or(states.initial());
    check_agent_state(&id, state, states)?;
    let mut blocked_by = Vec::with_capacity(issue.blocked_by.len());
    for blocker in &issue.blocked_by {
        blocked_by.push(Value::Object(blocker_ref(tx, &id, blocker)?));
    }
    let now = format_timestamp(now);
    let mut record = Map::new();
    record.insert("id".into(), id.clone().into());
    record.insert("identifier".into(), id.clone().into());
    record.insert("title".into(), issue.title.clone().into());
    record.insert("description".into(), issue.description.clone().into());
    record.insert("priority".into(), issue.priority.into());
    record.insert("state".into(), state.into());
    record.insert("branch_name".into(), issue.branch_name.clone().into());
    record.insert("url".into(), issue.url.clone().into());
    record.insert("labels".into(), dedup(&issue.labels).into());
    record.insert("blocked_by".into(), Value::Array(blocked_by));
    record.insert("created_at".into(), now.clone().into());
    record.insert("updated_at".into(), now.into());
    if !issue.acceptance.is_empty() {
        record.insert("acceptance".into(), issue.acceptance.clone().into());
    }
    if !issue.validation.is_empty() {
        record.insert("validation".into(), issue.validation.clone().into());
    }
    if let Some(assignee) = &issue.assignee {
        record.insert("assignee".into(), assignee.clone().into());
    }
    tx.append(record)?;
    Ok(id)
}

/// Applies `change` to issue `id` and returns the names of the fields that changed (empty:
/// nothing was written). `updated_at` is bumped only when the list is not empty.
///
/// Errors: [`TrackerError::NotFound`]; [`TrackerError::Rejected`] for a blank title, a
/// priority outside 0..=4, an unknown state, or a terminal one (use [`close`]).
pub fn update(
    tx: &mut Transaction<'_>,
    id: &str,
    change: &IssueUpdate,
    states: &StateConfig,
) -> Result<Vec<String>> {
    if let Some(state) = &change.state {
        check_agent_state(id, state, states)?;
    }
    if let Some(priority) = change.priority {
        check_priority(id, priority)?;
    }
    if change.title.as_ref().is_some_and(|t| t.trim().is_empty()) {
        return Err(rejected(id, "a title cannot be blank".into()));
    }
    let mut changed = Vec::new();
    tx.modify(id, |record| {
        let before = record.clone();
        // Clearing a field the record does not have is no change, not a new `null`.
        let mut set = |field: &str, value: Option<Value>| match value {
            Some(Value::Null) if !record.contains_key(field) => {}
            Some(value) => {
                record.insert(field.into(), value);
            }
            None => {}
        };
        set("title", change.title.clone().map(Value::from));
        set("description", change.description.clone().map(Value::from));
        set("priority", change.priority.map(Value::from));
        set("state", change.state.clone().map(Value::from));
        set("branch_name", change.branch_name.clone().map(Value::from));
        set("url", change.url.clone().map(Value::from));
        set("assignee", change.assignee.clone().map(Value::from));
        if !change.add_labels.is_empty() || !change.remove_labels.is_empty() {
            let labels = string_list(record, "labels", id)?;
            let kept = labels
                .into_iter()
                .filter(|l| !change.remove_labels.contains(l))
                .chain(change.add_labels.iter().cloned());
            record.insert("labels".into(), dedup(&kept.collect::<Vec<_>>()).into());
        }
        changed = record
            .iter()
            .filter(|(field, value)| before.get(*field) != Some(value))
            .map(|(field, _)| field.clone())
            .collect();
        Ok(())
    })?;
    Ok(changed)
}

/// Moves issue `id` to the terminal `state` (default: the first terminal state, `done`).
/// Returns whether anything changed.
///
/// Terminal states are human decisions (design.md): agents hand off to review instead.
/// Errors: [`TrackerError::NotFound`]; [`TrackerError::Rejected`] when `state` is not terminal.
pub fn close(
    tx: &mut Transaction<'_>,
    id: &str,
    state: Option<&str>,
    states: &StateConfig,
) -> Result<bool> {
    let state = match state {
        Some(state) => state,
        None => states
            .terminal
            .first()
            .map(String::as_str)
            .ok_or_else(|| rejected(id, "the workflow defines no terminal state".into()))?,
    };
    if !states.is_terminal(state) {
        return Err(rejected(
            id,
            format!(
                "{state:?} is not a terminal state (terminal: {})",
                states.terminal.join(", ")
            ),
        ));
    }
    tx.modify(id, |record| {
        record.insert("state".into(), state.into());
        Ok(())
    })
}

/// Records that `id` is blocked by `blocker`, with `identifier` and a `state` snapshot of the
/// blocker. An existing ref keeps its place and other keys; its snapshot is refreshed.
/// Returns whether anything changed (false when the ref exists with a current snapshot).
///
/// Errors: [`TrackerError::NotFound`] for `id` or an in-file `blocker`;
/// [`TrackerError::Rejected`] for a self-reference or a ref that would close a cycle (the
/// message shows it).
pub fn dep_add(tx: &mut Transaction<'_>, id: &str, blocker: &str) -> Result<bool> {
    if blocker == id {
        return Err(rejected(id, "an issue cannot block itself".into()));
    }
    tx.get_mut(id)?;
    if !is_external(blocker)
        && let Some(path) = blocker_path(tx, blocker, id)?
    {
        return Err(rejected(
            id,
            format!(
                "blocking it on {blocker} would close a cycle: {id} → {}",
                path.join(" → ")
            ),
        ));
    }
    let reference = blocker_ref(tx, id, blocker)?;
    tx.modify(id, |record| {
        let refs = blocked_by_mut(record, id)?;
        // A bare id string becomes the ref object it stands for (the fix `validate` names).
        if let Some(bare) = refs.iter_mut().find(|r| r.as_str() == Some(blocker)) {
            *bare = Value::Object(reference);
            return Ok(());
        }
        match refs
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .find(|r| r.get("id").and_then(Value::as_str) == Some(blocker))
        {
            Some(existing) => existing.extend(reference),
            None => refs.push(Value::Object(reference)),
        }
        Ok(())
    })
}

/// Removes every ref to `blocker` from `id`'s `blocked_by`. Returns whether any was there.
///
/// Errors: [`TrackerError::NotFound`] for `id`.
pub fn dep_rm(tx: &mut Transaction<'_>, id: &str, blocker: &str) -> Result<bool> {
    tx.modify(id, |record| {
        blocked_by_mut(record, id)?.retain(|r| ref_id(r) != Some(blocker));
        Ok(())
    })
}

/// Writes an agent's handoff onto `id` and moves it to the workflow's review state
/// (design.md: agents hand off to `review`, never `done`). The handoff replaces any earlier
/// one; its `updated_at` becomes `now` unless set.
///
/// Errors: [`TrackerError::NotFound`]; [`TrackerError::Rejected`] when the issue is in a
/// terminal state or the handoff has no summary.
pub fn handoff(
    tx: &mut Transaction<'_>,
    id: &str,
    handoff: &Handoff,
    states: &StateConfig,
    now: OffsetDateTime,
) -> Result<bool> {
    if handoff
        .summary
        .as_deref()
        .is_none_or(|s| s.trim().is_empty())
    {
        return Err(rejected(id, "a handoff needs a summary".into()));
    }
    let mut handoff = handoff.clone();
    handoff
        .updated_at
        .get_or_insert_with(|| format_timestamp(now));
    let value = serde_json::to_value(&handoff).map_err(|e| rejected(id, e.to_string()))?;
    tx.modify(id, |record| {
        let state = record.get("state").and_then(Value::as_str).unwrap_or("");
        if states.is_terminal(state) {
            return Err(rejected(
                id,
                format!("the issue is {state}; a closed issue takes no handoff"),
            ));
        }
        record.insert("handoff".into(), value);
        record.insert("state".into(), states.handoff().into());
        record.insert("updated_at".into(), format_timestamp(now).into());
        Ok(())
    })
}

/// Asks to claim `id` for `node` at `now` under the sharded TTL rules ([`claims::decide`]).
///
/// The record's frozen `shard` is used; a record without one gets the slate of `roster`
/// frozen onto it with `claim_ttl_ms` (design.md: the slate is frozen when a node first sees
/// the issue). A frozen slate none of whose members is in `roster`, whose holder is gone past
/// its TTL, is replaced by the roster's ([`claims::reshard_orphaned`]). On
/// [`ClaimDecision::Grant`] the claim is written (`claimed_at` kept when the node re-claims)
/// and an issue in the initial state moves to the working state (`todo → in_progress`).
///
/// Errors: [`TrackerError::NotFound`]; [`TrackerError::Rejected`] when the issue is not in
/// an active state, or has no shard and `roster` is empty, or its shard/claim is malformed.
pub fn claim(
    tx: &mut Transaction<'_>,
    id: &str,
    node: &str,
    roster: &[&str],
    claim_ttl_ms: u64,
    states: &StateConfig,
    now: OffsetDateTime,
) -> Result<ClaimDecision> {
    let record = tx.get_mut(id)?;
    let state = record.get("state").and_then(Value::as_str).unwrap_or("");
    if !states.is_active(state) {
        return Err(rejected(
            id,
            format!("only issues in an active state can be claimed (it is {state:?})"),
        ));
    }
    let frozen = typed_field::<Shard>(record, "shard", id)?;
    let current = typed_field::<Claim>(record, "claim", id)?;
    let last_activity = record
        .get("updated_at")
        .and_then(Value::as_str)
        .and_then(|t| parse_timestamp(t).ok())
        .unwrap_or(now);
    let resharded = frozen.as_ref().and_then(|frozen| {
        claims::reshard_orphaned(frozen, roster, id, current.as_ref(), last_activity, now)
    });
    if let (Some(old), Some(new)) = (&frozen, &resharded) {
        tracing::warn!(
            issue_id = %id,
            previous_primary = %old.primary,
            primary = %new.primary,
            "shard slate resharded: none of its nodes is in the roster and its holder is past the TTL"
        );
    }
    let write_shard = frozen.is_none() || resharded.is_some();
    let shard = match resharded.or(frozen) {
        Some(shard) => shard,
        None => claims::freeze(roster, id, claim_ttl_ms, 0)
            .ok_or_else(|| rejected(id, "the issue has no shard slate".into()))?,
    };
    let decision = claims::decide(node, &shard, current.as_ref(), last_activity, now);
    let working = states.working().to_string();
    let initial = states.initial().to_string();
    let shard_value = to_value(id, &shard)?;
    let claim_value = match &decision {
        ClaimDecision::Grant { slot } => {
            let claimed_at = match &current {
                Some(held) if held.node == node => held.claimed_at.clone(),
                _ => format_timestamp(now),
            };
            Some(to_value(
                id,
                &Claim {
                    node: node.to_string(),
                    slot: *slot,
                    claimed_at,
                    heartbeat_at: format_timestamp(now),
                },
            )?)
        }
        _ => None,
    };
    let now_text = format_timestamp(now);
    tx.modify(id, |record| {
        let before = record.clone();
        if write_shard {
            record.insert("shard".into(), shard_value);
        }
        if let Some(claim) = claim_value {
            record.insert("claim".into(), claim);
            let state = record.get("state").and_then(Value::as_str).unwrap_or("");
            if state.trim().eq_ignore_ascii_case(&initial) {
                record.insert("state".into(), working.into());
            }
        }
        if *record != before {
            record.insert("updated_at".into(), now_text.into());
        }
        Ok(())
    })?;
    Ok(decision)
}

/// Refreshes `node`'s claim on `id`: only `claim.heartbeat_at` changes, and `updated_at` is
/// left alone (a heartbeat is liveness, not a change to the issue).
///
/// Errors: [`TrackerError::NotFound`]; [`TrackerError::Rejected`] when `node` does not hold
/// the claim — the caller has lost it and must stop its run.
pub fn heartbeat(
    tx: &mut Transaction<'_>,
    id: &str,
    node: &str,
    now: OffsetDateTime,
) -> Result<()> {
    let record = tx.get_mut(id)?;
    let holder = record
        .get("claim")
        .and_then(|c| c.get("node"))
        .and_then(Value::as_str);
    if holder != Some(node) {
        return Err(rejected(id, lost_claim(node, holder)));
    }
    if let Some(Value::Object(claim)) = record.get_mut("claim") {
        claim.insert("heartbeat_at".into(), format_timestamp(now).into());
    }
    Ok(())
}

/// Drops `node`'s claim on `id`, optionally moving the issue to `state` (an active or review
/// state; not terminal). Returns whether anything changed (false when there was no claim).
///
/// Errors: [`TrackerError::NotFound`]; [`TrackerError::Rejected`] when another node holds
/// the claim, or `state` is unknown or terminal.
pub fn release(
    tx: &mut Transaction<'_>,
    id: &str,
    node: &str,
    state: Option<&str>,
    states: &StateConfig,
) -> Result<bool> {
    if let Some(state) = state {
        check_agent_state(id, state, states)?;
    }
    tx.modify(id, |record| {
        let holder = record
            .get("claim")
            .and_then(|c| c.get("node"))
            .and_then(Value::as_str);
        match holder {
            None => {}
            Some(holder) if holder == node => {
                record.remove("claim");
            }
            Some(holder) => return Err(rejected(id, lost_claim(node, Some(holder)))),
        }
        if let Some(state) = state {
            record.insert("state".into(), state.into());
        }
        Ok(())
    })
}

fn lost_claim(node: &str, holder: Option<&str>) -> String {
    match holder {
        Some(holder) => format!("{node} does not hold the claim ({holder} does)"),
        None => format!("{node} does not hold the claim (nobody does)"),
    }
}

fn rejected(id: &str, message: String) -> TrackerError {
    TrackerError::Rejected {
        id: id.to_string(),
        message,
    }
}

fn check_priority(id: &str, priority: Option<i64>) -> Result<()> {
    match priority {
        Some(p) if !(0..=4).contains(&p) => Err(rejected(
            id,
            format!("priority {p} is outside 0..=4 (1 urgent .. 4 low, 0 none)"),
        )),
        _ => Ok(()),
    }
}

/// A state agents and `update` may write: known and not terminal.
fn check_agent_state(id: &str, state: &str, states: &StateConfig) -> Result<()> {
    if !states.is_known(state) {
        let known: Vec<&str> = states.all().collect();
        return Err(rejected(
            id,
            format!("unknown state {state:?} (known: {})", known.join(", ")),
        ));
    }
    if states.is_terminal(state) {
        return Err(rejected(
            id,
            format!("{state:?} is a terminal state, written only by `symphony issues close`"),
        ));
    }
    Ok(())
}

/// A `blocked_by` entry for `blocker` as seen from `id`: `{id, identifier, state}` with the
/// blocker's live state, or `{id, identifier}` for an external ref.
fn blocker_ref(tx: &mut Transaction<'_>, id: &str, blocker: &str) -> Result<Map<String, Value>> {
    let mut reference = Map::new();
    reference.insert("id".into(), blocker.into());
    if is_external(blocker) {
        reference.insert("identifier".into(), blocker.into());
        return Ok(reference);
    }
    let Some(record) = tx.get(blocker)? else {
        return Err(rejected(
            id,
            format!(
                "blocker {blocker:?} is not an issue in this file (an issue of another \
                 tracker is written project:slug)"
            ),
        ));
    };
    for field in ["identifier", "state"] {
        if let Some(value) = record.get(field) {
            reference.insert(field.into(), value.clone());
        }
    }
    Ok(reference)
}

/// The chain of `blocked_by` refs leading from `from` to `to`, if any (breadth first, so the
/// shortest; only in-file blockers are followed).
fn blocker_path(tx: &mut Transaction<'_>, from: &str, to: &str) -> Result<Option<Vec<String>>> {
    let mut parent: std::collections::HashMap<String, String> = Default::default();
    let mut queue = VecDeque::from([from.to_string()]);
    let mut seen = HashSet::from([from.to_string()]);
    while let Some(current) = queue.pop_front() {
        if current == to {
            let mut path = vec![current.clone()];
            let mut at = current;
            while let Some(previous) = parent.get(&at) {
                path.push(previous.clone());
                at = previous.clone();
            }
            path.reverse();
            return Ok(Some(path));
        }
        let Some(record) = tx.get(&current)? else {
            continue;
        };
        let next: Vec<String> = record
            .get("blocked_by")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(ref_id)
            .map(str::to_string)
            .collect();
        for blocker in next {
            if seen.insert(blocker.clone()) {
                parent.insert(blocker.clone(), current.clone());
                queue.push_back(blocker);
            }
        }
    }
    Ok(None)
}

/// The blocker id of a `blocked_by` entry: a ref object's `id`, or a bare id string.
fn ref_id(reference: &Value) -> Option<&str> {
    reference
        .as_str()
        .or_else(|| reference.get("id").and_then(Value::as_str))
}

fn blocked_by_mut<'r>(record: &'r mut Map<String, Value>, id: &str) -> Result<&'r mut Vec<Value>> {
    let refs = record
        .entry("blocked_by")
        .or_insert_with(|| Value::Array(Vec::new()));
    match refs {
        Value::Array(refs) => Ok(refs),
        _ => Err(rejected(
            id,
            "blocked_by is not a list; fix the record first".into(),
        )),
    }
}

fn string_list(record: &Map<String, Value>, field: &str, id: &str) -> Result<Vec<String>> {
    match record.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    rejected(
                        id,
                        format!("{field} holds a non-string; fix the record first"),
                    )
                })
            })
            .collect(),
        Some(_) => Err(rejected(
            id,
            format!("{field} is not a list; fix the record first"),
        )),
    }
}

fn dedup(items: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    items
        .iter()
        .filter(|item| seen.insert(item.as_str()))
        .cloned()
        .collect()
}

fn typed_field<T: serde::de::DeserializeOwned>(
    record: &Map<String, Value>,
    field: &str,
    id: &str,
) -> Result<Option<T>> {
    match record.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| rejected(id, format!("malformed {field}: {e}"))),
    }
}

fn to_value(id: &str, value: &impl serde::Serialize) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| rejected(id, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ValidationRun;
    use crate::store::Store;

    const COMPACT: &str = include_str!("../tests/fixtures/x0x-symphony.jsonl");

    fn store_with(content: &str) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues/issues.jsonl");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        (dir, Store::new(path))
    }

    fn at(text: &str) -> OffsetDateTime {
        parse_timestamp(text).unwrap()
    }

    fn field(store: &Store, id: &str, field: &str) -> Value {
        let doc = store.read().unwrap();
        let index = doc.find(id).unwrap().unwrap();
        doc.record(index)
            .unwrap()
            .get(field)
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn sequential() -> IdConfig {
        IdConfig::default()
    }

    #[test]
    fn create_appends_a_schema_ordered_record_with_the_next_id() {
        let (_dir, store) = store_with(COMPACT);
        let issue = NewIssue {
            title: "New work".into(),
            priority: Some(2),
            labels: vec!["a".into(), "a".into(), "b".into()],
            blocked_by: vec!["XSY-0002".into(), "x0x:slug".into()],
            ..NewIssue::default()
        };
        let states = StateConfig::default();
        let now = at("2026-05-01T10:00:00Z");
        let (id, _) = store
            .transact(|tx| create(tx, &issue, &sequential(), &states, now))
            .unwrap();
        assert_eq!(id, "XSY-0037");
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(text.starts_with(COMPACT));
        assert_eq!(
            &text[COMPACT.len()..],
            "{\"id\":\"XSY-0037\",\"identifier\":\"XSY-0037\",\"title\":\"New work\",\
             \"description\":null,\"priority\":2,\"state\":\"todo\",\"branch_name\":null,\
             \"url\":null,\"labels\":[\"a\",\"b\"],\"blocked_by\":[{\"id\":\"XSY-0002\",\
             \"identifier\":\"XSY-0002\",\"state\":\"done\"},{\"id\":\"x0x:slug\",\
             \"identifier\":\"x0x:slug\"}],\"created_at\":\"2026-05-01T10:00:00Z\",\
             \"updated_at\":\"2026-05-01T10:00:00Z\"}\n"
        );
    }

    #[test]
    fn create_refuses_bad_input_and_writes_nothing() {
        let (_dir, store) = store_with(COMPACT);
        let states = StateConfig::default();
        let now = at("2026-05-01T10:00:00Z");
        for (issue, expected) in [
            (NewIssue::default(), "a title is required"),
            (
                NewIssue {
                    title: "t".into(),
                    state: Some("done".into()),
                    ..NewIssue::default()
                },
                "terminal state",
            ),
            (
                NewIssue {
                    title: "t".into(),
                    blocked_by: vec!["XSY-9999".into()],
                    ..NewIssue::default()
                },
                "is not an issue in this file",
            ),
            (
                NewIssue {
                    title: "t".into(),
                    priority: Some(7),
                    ..NewIssue::default()
                },
                "outside 0..=4",
            ),
        ] {
            let err = store
                .transact(|tx| create(tx, &issue, &sequential(), &states, now))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err}");
        }
        assert_eq!(std::fs::read_to_string(store.path()).unwrap(), COMPACT);
    }

    #[test]
    fn update_reports_changed_fields_and_a_repeat_changes_nothing() {
        let (_dir, store) = store_with(COMPACT);
        let states = StateConfig::default();
        let change = IssueUpdate {
            priority: Some(Some(1)),
            assignee: Some(None),
            add_labels: vec!["urgent".into(), "tracker".into()],
            remove_labels: vec!["throwaway".into()],
            ..IssueUpdate::default()
        };
        let (changed, report) = store
            .transact(|tx| update(tx, "XSY-0003", &change, &states))
            .unwrap();
        assert_eq!(changed, ["priority", "labels"]);
        assert!(report.written);
        assert_eq!(
            field(&store, "XSY-0003", "labels"),
            serde_json::json!(["x0x-symphony", "milestone-m1", "tracker", "urgent"])
        );
        let before = std::fs::read(store.path()).unwrap();
        let (changed, report) = store
            .transact(|tx| update(tx, "XSY-0003", &change, &states))
            .unwrap();
        assert!(changed.is_empty() && !report.written);
        assert_eq!(std::fs::read(store.path()).unwrap(), before);
    }

    #[test]
    fn update_refuses_terminal_and_unknown_states() {
        let (_dir, store) = store_with(COMPACT);
        let states = StateConfig::default();
        for (state, expected) in [
            ("done", "symphony issues close"),
            ("wontfix", "unknown state"),
        ] {
            let change = IssueUpdate {
                state: Some(state.into()),
                ..IssueUpdate::default()
            };
            let err = store
                .transact(|tx| update(tx, "XSY-0003", &change, &states))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("XSY-0003: ") && err.contains(expected),
                "{err}"
            );
        }
    }

    #[test]
    fn close_writes_only_terminal_states() {
        let (_dir, store) = store_with(COMPACT);
        let states = StateConfig::default();
        let (changed, _) = store
            .transact(|tx| close(tx, "XSY-0003", Some("cancelled"), &states))
            .unwrap();
        assert!(changed);
        assert_eq!(field(&store, "XSY-0003", "state"), "cancelled");
        let err = store
            .transact(|tx| close(tx, "XSY-0004", Some("review"), &states))
            .unwrap_err();
        assert!(err.to_string().contains("not a terminal state"), "{err}");
    }

    #[test]
    fn dependencies_are_added_once_removed_and_never_form_a_cycle() {
        let (_dir, store) = store_with(COMPACT);
        let (added, _) = store
            .transact(|tx| dep_add(tx, "XSY-0011", "XSY-0012"))
            .unwrap();
        assert!(added);
        let (again, report) = store
            .transact(|tx| dep_add(tx, "XSY-0011", "XSY-0012"))
            .unwrap();
        assert!(!again && !report.written);
        assert_eq!(
            field(&store, "XSY-0011", "blocked_by"),
            serde_json::json!([{"id": "XSY-0012", "identifier": "XSY-0012", "state": "todo"}])
        );
        // Adding it again after the blocker moved refreshes the snapshot in place.
        store
            .transact(|tx| {
                tx.modify("XSY-0012", |record| {
                    record.insert("state".into(), "in_progress".into());
                    Ok(())
                })
            })
            .unwrap();
        let (refreshed, _) = store
            .transact(|tx| dep_add(tx, "XSY-0011", "XSY-0012"))
            .unwrap();
        assert!(refreshed);
        assert_eq!(
            field(&store, "XSY-0011", "blocked_by"),
            serde_json::json!([{"id": "XSY-0012", "identifier": "XSY-0012", "state": "in_progress"}])
        );
        // XSY-0007 ← XSY-0006 ← XSY-0003 in the fixture: blocking 3 on 7 closes the loop.
        let err = store
            .transact(|tx| dep_add(tx, "XSY-0003", "XSY-0007"))
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("would close a cycle: XSY-0003 → XSY-0007 → XSY-0006 → XSY-0003"),
            "{err}"
        );
        let (removed, _) = store
            .transact(|tx| dep_rm(tx, "XSY-0011", "XSY-0012"))
            .unwrap();
        assert!(removed);
        assert_eq!(
            field(&store, "XSY-0011", "blocked_by"),
            serde_json::json!([])
        );
    }

    #[test]
    fn handoff_records_the_work_and_moves_to_review() {
        let (_dir, store) = store_with(COMPACT);
        let states = StateConfig::default();
        let handoff = Handoff {
            summary: Some("Implemented".into()),
            files_changed: vec!["src/lib.rs".into()],
            validation: vec![ValidationRun {
                command: "cargo test".into(),
                status: "passed".into(),
                note: None,
                exit_code: Some(0),
                extra: Map::new(),
            }],
            ..Handoff::default()
        };
        let now = at("2026-05-02T00:00:00Z");
        store
            .transact(|tx| super::handoff(tx, "XSY-0011", &handoff, &states, now))
            .unwrap();
        assert_eq!(field(&store, "XSY-0011", "state"), "review");
        assert_eq!(
            field(&store, "XSY-0011", "handoff"),
            serde_json::json!({
                "summary": "Implemented", "files_changed": ["src/lib.rs"],
                "validation": [{"command": "cargo test", "status": "passed", "exit_code": 0}],
                "updated_at": "2026-05-02T00:00:00Z"
            })
        );
        let err = store
            .transact(|tx| super::handoff(tx, "XSY-0002", &handoff, &states, now))
            .unwrap_err();
        assert!(err.to_string().contains("closed issue"), "{err}");
    }

    #[test]
    fn claims_freeze_the_slate_grant_the_primary_and_heartbeat_without_bumping_updated_at() {
        let (_dir, store) = store_with(COMPACT);
        let states = StateConfig::default();
        let roster = ["n-a", "n-b", "n-c"];
        let slate = claims::freeze(&roster, "XSY-0011", 60_000, 0).unwrap();
        let (primary, backup) = (slate.primary.clone(), slate.backups[0].clone());
        // XSY-0011 was last updated at 2026-04-28T00:00:00Z: backup 1's turn comes a TTL later.
        let t0 = at("2026-04-28T00:00:10Z");
        let (decision, _) = store
            .transact(|tx| claim(tx, "XSY-0011", &backup, &roster, 60_000, &states, t0))
            .unwrap();
        assert!(
            matches!(decision, ClaimDecision::Wait { .. }),
            "{decision:?}"
        );
        assert!(
            field(&store, "XSY-0011", "shard").is_object(),
            "slate frozen"
        );
        let (decision, _) = store
            .transact(|tx| claim(tx, "XSY-0011", &primary, &roster, 60_000, &states, t0))
            .unwrap();
        assert_eq!(decision, ClaimDecision::Grant { slot: 0 });
        assert_eq!(field(&store, "XSY-0011", "state"), "in_progress");
        let updated = field(&store, "XSY-0011", "updated_at");
        let t1 = at("2026-04-28T00:00:25Z");
        store
            .transact(|tx| heartbeat(tx, "XSY-0011", &primary, t1))
            .unwrap();
        assert_eq!(field(&store, "XSY-0011", "updated_at"), updated);
        assert_eq!(
            field(&store, "XSY-0011", "claim")["heartbeat_at"],
            "2026-04-28T00:00:25Z"
        );
        let err = store
            .transact(|tx| heartbeat(tx, "XSY-0011", &backup, t1))
            .unwrap_err();
        assert!(err.to_string().contains("does not hold the claim"), "{err}");
        let (released, _) = store
            .transact(|tx| release(tx, "XSY-0011", &primary, Some("todo"), &states))
            .unwrap();
        assert!(released);
        assert_eq!(field(&store, "XSY-0011", "claim"), Value::Null);
        assert_eq!(field(&store, "XSY-0011", "state"), "todo");
    }
}
