//! Three-way merge of issues files, per record and per field: the engine of
//! `symphony merge-driver %O %A %B` (docs/merge.md).
//!
//! Records are matched by id. With `base` the common ancestor, `ours` the current branch and
//! `theirs` the branch being merged in:
//!
//! - a record changed on one side only takes that side's version;
//! - a record changed on both sides is merged field by field: a field changed on one side
//!   takes that change; a field changed on both sides is resolved by [`Rule`] and reported;
//! - a record added on one side is kept; the same id added on both sides is one record when
//!   both have the same `title` and `created_at` (a cherry-pick; merged field by field),
//!   otherwise two different issues: ours keeps the id, theirs is renumbered to the next free
//!   id with `renumbered_from` naming its old id, and refs to it that theirs introduced follow;
//! - a record deleted on one side and unchanged on the other is deleted; deleted on one side
//!   and changed on the other, it is kept (changes are never thrown away) and reported.
//!
//! The result is rendered over `ours` with [`Transaction`], so unchanged lines keep their
//! bytes and changed ones their style. Before returning, the result is parsed back and its
//! records counted: a merge that would lose a record fails instead
//! ([`TrackerError::WouldDropRecords`]).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::claims;
use crate::document::Document;
use crate::error::{Result, TrackerError};
use crate::ids::{self, IdConfig};
use crate::model::{Claim, parse_timestamp};
use crate::states::StateConfig;
use crate::store::Transaction;

/// Field a renumbered record records its old id in.
pub const RENUMBERED_FROM: &str = "renumbered_from";

/// What the merge needs besides the three files.
#[derive(Debug, Clone, Copy)]
pub struct MergeRules<'a> {
    /// How renumbered records get their new id (the scheme is resolved over every id of the
    /// three inputs, so an unconfigured prefix is inferred).
    pub ids: &'a IdConfig,
    /// State lists, for [`Rule::FurthestState`].
    pub states: &'a StateConfig,
}

/// How a field changed on both sides was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `state`: the state furthest along the workflow wins — terminal over review over
    /// blocked over active states (later active states over earlier ones). Humans write
    /// terminal states and agents hand off to review; neither is undone by a stale edit.
    FurthestState,
    /// `claim`: of two claims the one [`claims::reunion_winner`] keeps (lower slot, then
    /// earlier claim, then lower node id).
    ReunionWinner,
    /// Any other field: the side whose record has the later `updated_at`; on a tie the
    /// greater value in JSON text order, so the result does not depend on merge direction.
    LaterUpdate,
}

/// Which side's value a conflict kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The current branch (`%A`).
    Ours,
    /// The branch merged in (`%B`).
    Theirs,
}

impl Side {
    fn ours_if(ours: bool) -> Side {
        if ours { Side::Ours } else { Side::Theirs }
    }
}

/// A field both sides changed differently.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldConflict {
    /// The issue.
    pub id: String,
    /// The top-level field.
    pub field: String,
    /// Our value (`None`: we removed the field).
    pub ours: Option<Value>,
    /// Their value.
    pub theirs: Option<Value>,
    /// The value kept.
    pub kept: Side,
    /// Why.
    pub rule: Rule,
}

/// Everything the merge decided that a human may want to look at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeReport {
    /// Fields changed on both sides, and how each was resolved.
    pub conflicts: Vec<FieldConflict>,
    /// `(old id, new id)` of incoming records renumbered because ours has a different issue
    /// with the same id.
    pub renumbered: Vec<(String, String)>,
    /// Ids deleted on one side but changed on the other, and therefore kept.
    pub kept_despite_deletion: Vec<String>,
    /// Ids deleted on one side and unchanged on the other, and therefore deleted.
    pub deleted: Vec<String>,
}

impl fmt::Display for MergeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.conflicts {
            let show = |v: &Option<Value>| v.as_ref().map_or("(removed)".into(), Value::to_string);
            let (kept, rule) = (
                match c.kept {
                    Side::Ours => "ours",
                    Side::Theirs => "theirs",
                },
                match c.rule {
                    Rule::FurthestState => "state furthest along the workflow",
                    Rule::ReunionWinner => "claim reunion rule",
                    Rule::LaterUpdate => "later updated_at",
                },
            );
            writeln!(
                f,
                "{}: /{} changed on both sides (ours {}, theirs {}); kept {kept} ({rule})",
                c.id,
                c.field,
                truncate(&show(&c.ours)),
                truncate(&show(&c.theirs)),
            )?;
        }
        for (from, to) in &self.renumbered {
            writeln!(
                f,
                "{from}: both branches created a different issue with this id; the incoming \
                 one is now {to} ({RENUMBERED_FROM}: {from:?})"
            )?;
        }
        for id in &self.kept_despite_deletion {
            writeln!(
                f,
                "{id}: deleted on one side but changed on the other; kept"
            )?;
        }
        for id in &self.deleted {
            writeln!(f, "{id}: deleted")?;
        }
        Ok(())
    }
}

fn truncate(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The merged file and what the merge decided.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The merged file content, in `ours`' style and line conventions.
    pub bytes: Vec<u8>,
    /// Conflicts resolved, records renumbered, kept or deleted.
    pub report: MergeReport,
}

/// Merges `theirs` into `ours` with `base` as the common ancestor.
///
/// Errors: a line of any input that does not parse (with its file, line and column), an id
/// defined twice in one input ([`TrackerError::DuplicateId`]), [`TrackerError::NoIdPrefix`]
/// when a record must be renumbered and no id prefix is configured or inferable, and
/// [`TrackerError::WouldDropRecords`] if the result would hold fewer records than the merge
/// decided to keep (a bug guard: nothing is returned rather than a smaller file).
pub fn merge(
    base: &Document,
    ours: &Document,
    theirs: &Document,
    rules: &MergeRules<'_>,
) -> Result<Merged> {
    let (b, o, t) = (Records::of(base)?, Records::of(ours)?, Records::of(theirs)?);
    let mut report = MergeReport::default();
    let mut replaced: Vec<(String, Map<String, Value>)> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    let mut appended: Vec<Map<String, Value>> = Vec::new();
    let mut clashes: Vec<String> = Vec::new();

    for id in o.order() {
        let Some(their_line) = t.line(id) else {
            match b.line(id) {
                Some(_) if same(&b, &o, id)? => {
                    removed.push(id.to_string());
                    report.deleted.push(id.to_string());
                }
                Some(_) => report.kept_despite_deletion.push(id.to_string()),
                None => {}
            }
            continue;
        };
        if o.line(id) == Some(their_line) {
            continue;
        }
        let (ours_map, theirs_map) = (o.record(id)?, t.record(id)?);
        if ours_map == theirs_map {
            continue;
        }
        let base_map = b.record_opt(id)?;
        match &base_map {
            Some(base_map) if *base_map == theirs_map => {}
            Some(base_map) if *base_map == ours_map => replaced.push((id.to_string(), theirs_map)),
            None if !same_issue(&ours_map, &theirs_map) => clashes.push(id.to_string()),
            _ => {
                let versions = Versions {
                    base: base_map.as_ref(),
                    ours: &ours_map,
                    theirs: &theirs_map,
                };
                let merged = merge_record(id, &versions, rules, &mut report);
                replaced.push((id.to_string(), merged));
            }
        }
    }
    for id in t.order() {
        if o.line(id).is_some() {
            continue;
        }
        match b.line(id) {
            Some(_) if same(&b, &t, id)? => {
                report.deleted.push(id.to_string());
            }
            Some(_) => {
                report.kept_despite_deletion.push(id.to_string());
                appended.push(t.record(id)?);
            }
            None => appended.push(t.record(id)?),
        }
    }
    let renames = renumber(&clashes, [&b, &o, &t], &t, rules.ids, &mut appended)?;
    report.renumbered = renames
        .iter()
        .map(|(a, b)| (a.clone(), b.clone()))
        .collect();
    if !renames.is_empty() {
        follow_renames(&renames, &b, &o, &t, &mut replaced, &mut appended)?;
    }

    let mut tx = Transaction::new(ours);
    for (id, record) in replaced {
        *tx.get_mut(&id)? = record;
    }
    for id in &removed {
        tx.remove(id)?;
    }
    let expected = o.len() - removed.len() + appended.len();
    for record in appended {
        tx.append(record)?;
    }
    let (bytes, _) = tx.render()?;
    let result = Document::parse(ours.path(), bytes, usize::MAX)?;
    let written = ids::unique_ids(&result)?.len();
    if written != expected {
        return Err(TrackerError::WouldDropRecords {
            path: ours.path().to_path_buf(),
            existing: expected,
            written,
        });
    }
    Ok(Merged {
        bytes: result.text().as_bytes().to_vec(),
        report,
    })
}

/// The records of one input, by id, in file order.
struct Records<'d> {
    document: &'d Document,
    order: Vec<(String, usize)>,
    by_id: HashMap<String, usize>,
}

impl<'d> Records<'d> {
    fn of(document: &'d Document) -> Result<Records<'d>> {
        let by_id: HashMap<String, usize> = ids::unique_ids(document)?
            .into_iter()
            .map(|(id, index)| (id.into_owned(), index))
            .collect();
        let mut order: Vec<(String, usize)> = by_id
            .iter()
            .map(|(id, &index)| (id.clone(), index))
            .collect();
        order.sort_by_key(|&(_, index)| index);
        Ok(Records {
            document,
            order,
            by_id,
        })
    }

    fn order(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|(id, _)| id.as_str())
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    fn line(&self, id: &str) -> Option<&'d str> {
        self.by_id
            .get(id)
            .map(|&index| self.document.line_text(index))
    }

    fn record(&self, id: &str) -> Result<Map<String, Value>> {
        match self.by_id.get(id) {
            Some(&index) => self.document.record(index),
            None => Ok(Map::new()),
        }
    }

    fn record_opt(&self, id: &str) -> Result<Option<Map<String, Value>>> {
        self.by_id
            .get(id)
            .map(|&index| self.document.record(index))
            .transpose()
    }

    fn refs(&self, id: &str) -> Result<HashSet<String>> {
        Ok(ref_ids(&self.record(id)?).into_iter().collect())
    }
}

/// Whether `a` and `b` hold the same record `id`: equal text, or equal once parsed (a
/// restyled line is not a change).
fn same(a: &Records<'_>, b: &Records<'_>, id: &str) -> Result<bool> {
    Ok(a.line(id) == b.line(id) || a.record(id)? == b.record(id)?)
}

/// Two records added under one id on both sides are the same issue when they agree on
/// `title` and `created_at`.
fn same_issue(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    ["title", "created_at"]
        .iter()
        .all(|field| a.get(*field).is_some() && a.get(*field) == b.get(*field))
}

/// The three versions of one record (no base: added on both sides).
struct Versions<'a> {
    base: Option<&'a Map<String, Value>>,
    ours: &'a Map<String, Value>,
    theirs: &'a Map<String, Value>,
}

impl<'a> Versions<'a> {
    fn field(&self, key: &str) -> (Option<&'a Value>, Option<&'a Value>, Option<&'a Value>) {
        (
            self.base.and_then(|m| m.get(key)),
            self.ours.get(key),
            self.theirs.get(key),
        )
    }
}

fn merge_record(
    id: &str,
    versions: &Versions<'_>,
    rules: &MergeRules<'_>,
    report: &mut MergeReport,
) -> Map<String, Value> {
    let (ours, theirs) = (versions.ours, versions.theirs);
    let keys = ours
        .keys()
        .chain(theirs.keys().filter(|k| !ours.contains_key(*k)));
    let mut merged = Map::new();
    for key in keys {
        let (b, o, t) = versions.field(key);
        let value = if o == t || b == t {
            o.cloned()
        } else if b == o {
            t.cloned()
        } else {
            resolve(id, key, versions, rules, report)
        };
        if let Some(value) = value {
            merged.insert(key.clone(), value);
        }
    }
    merged
}

/// A field both sides changed differently: see [`Rule`].
fn resolve(
    id: &str,
    key: &str,
    versions: &Versions<'_>,
    rules: &MergeRules<'_>,
    report: &mut MergeReport,
) -> Option<Value> {
    let (base, o, t) = versions.field(key);
    match key {
        "updated_at" => return later_timestamp(o, t).cloned(),
        "labels" => {
            if let Some(merged) = merge_sets(base, o, t, |v| Some(v.to_string())) {
                return Some(merged);
            }
        }
        "blocked_by" => {
            let by_id = |v: &Value| v.get("id").and_then(Value::as_str).map(str::to_string);
            if let Some(merged) = merge_sets(base, o, t, by_id) {
                return Some(merged);
            }
        }
        _ => {}
    }
    let later = || later_record(o, t, versions.ours, versions.theirs);
    let (kept, rule) = match key {
        "state" => match (state_rank(o, rules.states), state_rank(t, rules.states)) {
            (a, b) if a != b => (Side::ours_if(a > b), Rule::FurthestState),
            _ => (later(), Rule::LaterUpdate),
        },
        "claim" => match (as_claim(o), as_claim(t)) {
            (Some(a), Some(b)) => (
                Side::ours_if(*claims::reunion_winner(&a, &b) == a),
                Rule::ReunionWinner,
            ),
            _ => (later(), Rule::LaterUpdate),
        },
        _ => (later(), Rule::LaterUpdate),
    };
    report.conflicts.push(FieldConflict {
        id: id.to_string(),
        field: key.to_string(),
        ours: o.cloned(),
        theirs: t.cloned(),
        kept,
        rule,
    });
    match kept {
        Side::Ours => o.cloned(),
        Side::Theirs => t.cloned(),
    }
}

/// Three-way merge of two lists as sets keyed by `key`: ours' items minus those theirs
/// removed from base, then theirs' additions. `None` when a side is not a list.
fn merge_sets(
    base: Option<&Value>,
    o: Option<&Value>,
    t: Option<&Value>,
    key: impl Fn(&Value) -> Option<String>,
) -> Option<Value> {
    let (b, o, t) = (list(base)?, list(o)?, list(t)?);
    let keys = |items: &[Value]| -> HashSet<String> { items.iter().filter_map(&key).collect() };
    let (bk, ok, tk) = (keys(b), keys(o), keys(t));
    let kept = o
        .iter()
        .filter(|item| key(item).is_none_or(|k| tk.contains(&k) || !bk.contains(&k)));
    let added = t
        .iter()
        .filter(|item| key(item).is_some_and(|k| !ok.contains(&k) && !bk.contains(&k)));
    Some(Value::Array(kept.chain(added).cloned().collect()))
}

/// The items of a list field; a missing or null field is an empty list, anything else `None`.
fn list(value: Option<&Value>) -> Option<&[Value]> {
    match value {
        None | Some(Value::Null) => Some(&[]),
        Some(Value::Array(items)) => Some(items),
        Some(_) => None,
    }
}

fn timestamp(value: Option<&Value>) -> Option<time::OffsetDateTime> {
    value
        .and_then(Value::as_str)
        .and_then(|text| parse_timestamp(text).ok())
}

fn later_timestamp<'v>(o: Option<&'v Value>, t: Option<&'v Value>) -> Option<&'v Value> {
    match timestamp(o).cmp(&timestamp(t)) {
        Ordering::Less => t,
        Ordering::Greater => o,
        Ordering::Equal => max_by_text(o, t),
    }
}

/// [`Rule::LaterUpdate`]: the side whose record was updated later; ties by value text.
fn later_record(
    o: Option<&Value>,
    t: Option<&Value>,
    ours: &Map<String, Value>,
    theirs: &Map<String, Value>,
) -> Side {
    match timestamp(ours.get("updated_at")).cmp(&timestamp(theirs.get("updated_at"))) {
        Ordering::Less => Side::Theirs,
        Ordering::Greater => Side::Ours,
        Ordering::Equal if as_text(o) >= as_text(t) => Side::Ours,
        Ordering::Equal => Side::Theirs,
    }
}

fn max_by_text<'v>(o: Option<&'v Value>, t: Option<&'v Value>) -> Option<&'v Value> {
    if as_text(o) >= as_text(t) { o } else { t }
}

fn as_text(value: Option<&Value>) -> Option<String> {
    value.map(Value::to_string)
}

/// Position along the workflow: active states in order, then blocked, review, terminal.
fn state_rank(value: Option<&Value>, states: &StateConfig) -> Option<usize> {
    let state = value.and_then(Value::as_str)?;
    let active = states.active.len();
    if states.is_terminal(state) {
        Some(active + 3)
    } else if states.is_review(state) {
        Some(active + 2)
    } else if states
        .blocked
        .iter()
        .any(|s| s.trim().eq_ignore_ascii_case(state.trim()))
    {
        Some(active + 1)
    } else {
        states
            .active
            .iter()
            .position(|s| s.trim().eq_ignore_ascii_case(state.trim()))
    }
}

fn as_claim(value: Option<&Value>) -> Option<Claim> {
    serde_json::from_value(value?.clone()).ok()
}

fn ref_ids(record: &Map<String, Value>) -> Vec<String> {
    record
        .get("blocked_by")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Gives each clashing incoming record a fresh id and appends it; returns old → new.
fn renumber(
    clashes: &[String],
    inputs: [&Records<'_>; 3],
    theirs: &Records<'_>,
    ids: &IdConfig,
    appended: &mut Vec<Map<String, Value>>,
) -> Result<HashMap<String, String>> {
    let mut renames = HashMap::new();
    if clashes.is_empty() {
        return Ok(renames);
    }
    let mut taken: HashSet<String> = inputs
        .iter()
        .flat_map(|records| records.order().map(str::to_string))
        .collect();
    let scheme = ids.scheme(taken.iter())?;
    for old in clashes {
        let new = scheme.next(taken.iter(), |id| taken.contains(id));
        let mut record = theirs.record(old)?;
        record.insert("id".into(), new.clone().into());
        if record.contains_key("identifier") {
            record.insert("identifier".into(), new.clone().into());
        }
        record.insert(RENUMBERED_FROM.into(), old.clone().into());
        appended.push(record);
        taken.insert(new.clone());
        renames.insert(old.clone(), new);
    }
    Ok(renames)
}

/// Points refs that theirs introduced at the renumbered ids: refs of a renumbered record
/// that its base version lacked, and refs of other records that neither base nor ours has.
fn follow_renames(
    renames: &HashMap<String, String>,
    base: &Records<'_>,
    ours: &Records<'_>,
    theirs: &Records<'_>,
    replaced: &mut [(String, Map<String, Value>)],
    appended: &mut [Map<String, Value>],
) -> Result<()> {
    let records = replaced
        .iter_mut()
        .map(|(id, record)| (id.clone(), record))
        .chain(appended.iter_mut().map(|record| {
            let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
            let original = renames
                .iter()
                .find(|(_, new)| new.as_str() == id)
                .map_or(id, |(old, _)| old.as_str());
            (original.to_string(), record)
        }));
    for (original, record) in records {
        let renumbered = record.get("id").and_then(Value::as_str) != Some(original.as_str());
        let mut introduced = theirs.refs(&original)?;
        let mut known = base.refs(&original)?;
        if !renumbered {
            known.extend(ours.refs(&original)?);
        }
        introduced.retain(|r| !known.contains(r));
        let Some(Value::Array(refs)) = record.get_mut("blocked_by") else {
            continue;
        };
        for reference in refs.iter_mut() {
            let Some(Value::String(target)) = reference.get("id") else {
                continue;
            };
            if let (true, Some(new)) = (introduced.contains(target), renames.get(target))
                && let Value::Object(reference) = reference
            {
                let new = Value::String(new.clone());
                if reference.contains_key("identifier") {
                    reference.insert("identifier".into(), new.clone());
                }
                reference.insert("id".into(), new);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::DEFAULT_MAX_RECORD_BYTES;
    use serde_json::json;
    use std::path::Path;

    const COMPACT: &str = include_str!("../tests/fixtures/x0x-symphony.jsonl");

    fn doc(text: &str) -> Document {
        Document::parse(
            Path::new("issues.jsonl"),
            text.into(),
            DEFAULT_MAX_RECORD_BYTES,
        )
        .unwrap()
    }

    /// `text` with record `id` edited by `edit` (re-serialized compactly, like the fixture).
    fn edit(text: &str, id: &str, edit: impl Fn(&mut Map<String, Value>)) -> String {
        let lines = text.lines().map(|line| {
            let mut record: Map<String, Value> = serde_json::from_str(line).unwrap();
            if record["id"] == id {
                edit(&mut record);
                serde_json::to_string(&record).unwrap()
            } else {
                line.to_string()
            }
        });
        lines.map(|l| l + "\n").collect()
    }

    fn set(field: &'static str, value: Value) -> impl Fn(&mut Map<String, Value>) {
        move |record| {
            record.insert(field.into(), value.clone());
        }
    }

    fn append(text: &str, id: &str, title: &str, blocked_by: &[&str]) -> String {
        let refs: Vec<Value> = blocked_by
            .iter()
            .map(|b| json!({"id": b, "identifier": b, "state": "todo"}))
            .collect();
        let record = json!({"id": id, "identifier": id, "title": title, "description": null,
            "priority": 2, "state": "todo", "branch_name": null, "url": null, "labels": [],
            "blocked_by": refs, "created_at": format!("2026-05-01T00:00:00Z"),
            "updated_at": "2026-05-01T00:00:00Z"});
        format!("{text}{record}\n")
    }

    fn run(base: &str, ours: &str, theirs: &str) -> (String, MergeReport) {
        let ids = IdConfig::default();
        let states = StateConfig::default();
        let rules = MergeRules {
            ids: &ids,
            states: &states,
        };
        let merged = merge(&doc(base), &doc(ours), &doc(theirs), &rules).unwrap();
        (String::from_utf8(merged.bytes).unwrap(), merged.report)
    }

    fn record(text: &str, id: &str) -> Map<String, Value> {
        text.lines()
            .map(|line| serde_json::from_str::<Map<String, Value>>(line).unwrap())
            .find(|r| r["id"] == id)
            .unwrap()
    }

    #[test]
    fn different_fields_changed_on_each_side_are_both_kept_without_conflict() {
        let ours = edit(COMPACT, "XSY-0003", |r| {
            r.insert("priority".into(), json!(1));
            r.insert("updated_at".into(), json!("2026-05-01T00:00:00Z"));
        });
        let theirs = edit(COMPACT, "XSY-0003", |r| {
            r.insert("assignee".into(), json!("agent-7"));
            r.insert("updated_at".into(), json!("2026-05-02T00:00:00Z"));
        });
        let (merged, report) = run(COMPACT, &ours, &theirs);
        assert_eq!(report, MergeReport::default());
        let r = record(&merged, "XSY-0003");
        assert_eq!(
            (&r["priority"], &r["assignee"]),
            (&json!(1), &json!("agent-7"))
        );
        assert_eq!(r["updated_at"], "2026-05-02T00:00:00Z");
        let changed: Vec<_> = ours
            .lines()
            .zip(merged.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(
            changed.len(),
            1,
            "only the merged record's line differs from ours"
        );
    }

    #[test]
    fn one_sided_record_changes_are_taken_whole() {
        let theirs = edit(COMPACT, "XSY-0011", set("state", json!("in_progress")));
        let (merged, report) = run(COMPACT, COMPACT, &theirs);
        assert_eq!(merged, theirs);
        assert_eq!(report, MergeReport::default());
        let (merged, _) = run(COMPACT, &theirs, COMPACT);
        assert_eq!(merged, theirs);
    }

    #[test]
    fn the_same_field_changed_on_both_sides_follows_the_documented_rules() {
        let ours = edit(COMPACT, "XSY-0011", |r| {
            r.insert("title".into(), json!("ours"));
            r.insert("state".into(), json!("review"));
            r.insert("updated_at".into(), json!("2026-05-03T00:00:00Z"));
        });
        let theirs = edit(COMPACT, "XSY-0011", |r| {
            r.insert("title".into(), json!("theirs"));
            r.insert("state".into(), json!("cancelled"));
            r.insert("updated_at".into(), json!("2026-05-02T00:00:00Z"));
        });
        let (merged, report) = run(COMPACT, &ours, &theirs);
        let r = record(&merged, "XSY-0011");
        assert_eq!(r["title"], "ours", "later updated_at wins");
        assert_eq!(r["state"], "cancelled", "terminal beats review");
        let rules: Vec<_> = report
            .conflicts
            .iter()
            .map(|c| (c.field.as_str(), c.kept, c.rule))
            .collect();
        assert_eq!(
            rules,
            [
                ("title", Side::Ours, Rule::LaterUpdate),
                ("state", Side::Theirs, Rule::FurthestState)
            ]
        );
        assert!(report.to_string().contains(
            "XSY-0011: /title changed on both sides (ours \"ours\", theirs \"theirs\"); kept ours (later updated_at)"
        ), "{report}");
        // The result does not depend on which branch is merged into which.
        let (swapped, _) = run(COMPACT, &theirs, &ours);
        assert_eq!(record(&swapped, "XSY-0011"), r);
    }

    #[test]
    fn labels_and_blockers_merge_as_sets() {
        let ours = edit(COMPACT, "XSY-0006", |r| {
            r.insert(
                "labels".into(),
                json!(["x0x-symphony", "milestone-m1", "orchestrator", "ours"]),
            );
            r["blocked_by"].as_array_mut().unwrap().remove(0);
        });
        let theirs = edit(COMPACT, "XSY-0006", |r| {
            r.insert(
                "labels".into(),
                json!(["x0x-symphony", "orchestrator", "theirs"]),
            );
            r["blocked_by"]
                .as_array_mut()
                .unwrap()
                .push(json!({"id": "XSY-0011"}));
        });
        let base_labels = record(COMPACT, "XSY-0006")["labels"].clone();
        assert_eq!(
            base_labels,
            json!(["x0x-symphony", "milestone-m1", "orchestrator"])
        );
        let (merged, report) = run(COMPACT, &ours, &theirs);
        let r = record(&merged, "XSY-0006");
        assert_eq!(
            r["labels"],
            json!(["x0x-symphony", "orchestrator", "ours", "theirs"])
        );
        let ids: Vec<_> = r["blocked_by"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].clone())
            .collect();
        assert_eq!(
            ids,
            [json!("XSY-0004"), json!("XSY-0005"), json!("XSY-0011")]
        );
        assert!(report.conflicts.is_empty());
    }

    #[test]
    fn different_issues_created_with_one_id_are_both_kept_and_theirs_renumbered() {
        let ours = append(COMPACT, "XSY-0037", "ours", &[]);
        let theirs = append(
            &append(COMPACT, "XSY-0037", "theirs", &[]),
            "XSY-0038",
            "next",
            &["XSY-0037"],
        );
        let (merged, report) = run(COMPACT, &ours, &theirs);
        assert_eq!(
            report.renumbered,
            [("XSY-0037".to_string(), "XSY-0039".to_string())]
        );
        assert_eq!(record(&merged, "XSY-0037")["title"], "ours");
        let moved = record(&merged, "XSY-0039");
        assert_eq!(
            (&moved["title"], &moved["identifier"]),
            (&json!("theirs"), &json!("XSY-0039"))
        );
        assert_eq!(moved[RENUMBERED_FROM], "XSY-0037");
        let next = record(&merged, "XSY-0038");
        assert_eq!(
            next["blocked_by"][0]["id"], "XSY-0039",
            "their ref follows the renumbering"
        );
        assert_eq!(next["blocked_by"][0]["identifier"], "XSY-0039");
        assert_eq!(merged.lines().count(), 39);
    }

    #[test]
    fn the_same_issue_added_on_both_sides_is_kept_once() {
        let ours = append(COMPACT, "XSY-0037", "same", &[]);
        let theirs = edit(&ours, "XSY-0037", set("priority", json!(4)));
        let (merged, report) = run(COMPACT, &ours, &theirs);
        assert_eq!(merged.lines().count(), 37);
        assert_eq!(
            report.conflicts.len(),
            1,
            "no base: the differing field is a conflict"
        );
        assert!(report.renumbered.is_empty());
    }

    #[test]
    fn deletions_apply_only_to_unchanged_records() {
        let without = |text: &str, id: &str| -> String {
            text.lines()
                .filter(|l| !l.starts_with(&format!("{{\"id\":\"{id}\"")))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let ours = without(COMPACT, "XSY-0012");
        let theirs = edit(
            &without(COMPACT, "XSY-0030"),
            "XSY-0012",
            set("priority", json!(1)),
        );
        let (merged, report) = run(COMPACT, &ours, &theirs);
        assert_eq!(report.deleted, ["XSY-0030"]);
        assert_eq!(report.kept_despite_deletion, ["XSY-0012"]);
        assert_eq!(record(&merged, "XSY-0012")["priority"], 1);
        assert!(
            !merged
                .lines()
                .any(|l| l.starts_with("{\"id\":\"XSY-0030\""))
        );
        assert_eq!(merged.lines().count(), 35);
    }

    #[test]
    fn style_and_trailing_newline_of_ours_are_kept() {
        let spaced = include_str!("../tests/fixtures/x0x.jsonl");
        let theirs: String = {
            let mut lines: Vec<String> = spaced.split('\n').map(str::to_string).collect();
            let mut r: Map<String, Value> = serde_json::from_str(&lines[2]).unwrap();
            r.insert("priority".into(), json!(1));
            lines[2] = serde_json::to_string(&r).unwrap();
            lines.join("\n")
        };
        let ids = IdConfig::default();
        let states = StateConfig::default();
        let rules = MergeRules {
            ids: &ids,
            states: &states,
        };
        let merged = merge(&doc(spaced), &doc(spaced), &doc(&theirs), &rules).unwrap();
        let merged = String::from_utf8(merged.bytes).unwrap();
        assert!(!merged.ends_with('\n'));
        let changed: Vec<usize> = (0..15)
            .filter(|&i| spaced.split('\n').nth(i) != merged.split('\n').nth(i))
            .collect();
        assert_eq!(changed, [2]);
        assert!(
            merged
                .split('\n')
                .nth(2)
                .unwrap()
                .starts_with("{\"id\": \"X0X-0003\", ")
        );
    }

    #[test]
    fn inputs_with_conflict_markers_or_duplicate_ids_are_refused() {
        let doubled = format!("{COMPACT}{}", COMPACT.lines().next().unwrap());
        let ids = IdConfig::default();
        let states = StateConfig::default();
        let rules = MergeRules {
            ids: &ids,
            states: &states,
        };
        let err = merge(&doc(COMPACT), &doc(&doubled), &doc(COMPACT), &rules).unwrap_err();
        assert!(
            matches!(
                err,
                TrackerError::DuplicateId {
                    line: 37,
                    first_line: 1,
                    ..
                }
            ),
            "{err}"
        );
        let marked = Document::parse(
            Path::new("f"),
            format!("{COMPACT}<<<<<<< HEAD\n").into(),
            DEFAULT_MAX_RECORD_BYTES,
        );
        assert!(matches!(marked, Err(TrackerError::ConflictMarkers { .. })));
    }
}
