//! How one JSON record lives in the Automerge document (docs/sync.md, "Document layout").
//!
//! - A JSON object is an Automerge map: one register per key, plus [`ORDER_KEY`], a scalar
//!   holding the object's key order as a JSON array of strings (Automerge maps iterate in
//!   sorted order; projection needs the line's own order back).
//! - A JSON array is an Automerge list; strings, numbers, booleans and `null` are scalars.
//! - A long-text field ([`LONG_TEXT_FIELDS`]: `description`) is a map holding only
//!   [`TEXT_KEY`]: a list of paragraphs, each a scalar string ending with the blank line(s)
//!   that close it. Concurrent edits to different paragraphs merge; the text is the
//!   concatenation. Automerge text was measured at 5.5 s / 1.6 GB to load 10k issues.
//!
//! Keys starting with NUL are reserved for the layout: a record using one is refused
//! ([`reserved_key`]) rather than stored ambiguously.
//!
//! Writes diff against what the document holds, so a change touches only the registers,
//! list elements and paragraphs that differ: a concurrent edit elsewhere survives.

use automerge::transaction::Transactable;
use std::collections::HashMap;

use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value as AmValue, hydrate};
use serde_json::{Map, Number, Value};

use crate::error::{Result, SyncError};

/// The reserved key of a map holding its JSON object's key order (a JSON array of strings).
pub const ORDER_KEY: &str = "\u{0}order";
/// The reserved key of a long-text map holding its list of paragraphs.
pub const TEXT_KEY: &str = "\u{0}text";
/// Top-level string fields stored as paragraph lists rather than one register.
pub const LONG_TEXT_FIELDS: &[&str] = &["description"];

/// The JSON pointer of the first key in `record` that starts with NUL (reserved for the
/// layout), if any.
pub fn reserved_key(record: &Map<String, Value>) -> Option<String> {
    fn walk(value: &Value, pointer: &mut String) -> bool {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let at = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    if key.starts_with('\u{0}') || walk(child, pointer) {
                        return true;
                    }
                    pointer.truncate(at);
                }
                false
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    let at = pointer.len();
                    pointer.push_str(&format!("/{index}"));
                    if walk(child, pointer) {
                        return true;
                    }
                    pointer.truncate(at);
                }
                false
            }
            _ => false,
        }
    }
    let mut pointer = String::new();
    record
        .iter()
        .any(|(key, child)| {
            pointer = format!("/{}", key.replace('~', "~0").replace('/', "~1"));
            key.starts_with('\u{0}') || walk(child, &mut pointer)
        })
        .then_some(pointer)
}

/// Splits `text` into paragraphs: each ends after a run of two or more `\n` (the run is
/// kept), the last one wherever the text ends. Concatenating them gives `text` back; the
/// empty text is one empty paragraph.
pub fn paragraphs(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at + 1 < bytes.len() {
        if bytes[at] == b'\n' && bytes[at + 1] == b'\n' {
            let mut end = at + 2;
            while end < bytes.len() && bytes[end] == b'\n' {
                end += 1;
            }
            out.push(&text[start..end]);
            start = end;
            at = end;
        } else {
            at += 1;
        }
    }
    if start < bytes.len() || out.is_empty() {
        out.push(&text[start..]);
    }
    out
}

/// Reads the record stored in map `obj` as JSON, keys in their stored order (keys the order
/// does not list, e.g. added concurrently, follow in sorted order).
pub fn read_record<R: ReadDoc>(doc: &R, obj: &ObjId) -> Map<String, Value> {
    let mut fields: Vec<(String, Value)> = Vec::new();
    let mut order: Option<Vec<String>> = None;
    for item in doc.map_range(obj, ..) {
        let key = item.key.to_string();
        if key == ORDER_KEY {
            if let automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(text)) = &item.value {
                order = serde_json::from_str(text).ok();
            }
            continue;
        }
        if key.starts_with('\u{0}') {
            continue;
        }
        let value = match &item.value {
            automerge::ValueRef::Object(kind) => read_object(doc, &item.id(), *kind),
            automerge::ValueRef::Scalar(scalar) => scalar_ref_to_json(scalar),
        };
        fields.push((key, value));
    }
    let mut map = Map::with_capacity(fields.len());
    if let Some(order) = order {
        for key in order {
            if let Some(at) = fields.iter().position(|(k, _)| *k == key) {
                let (key, value) = fields.swap_remove(at);
                map.insert(key, value);
            }
        }
        // swap_remove scrambled the rest; sorted is what every node computes alike.
        fields.sort_by(|a, b| a.0.cmp(&b.0));
    }
    for (key, value) in fields {
        map.insert(key, value);
    }
    map
}

fn read_object<R: ReadDoc>(doc: &R, obj: &ObjId, kind: ObjType) -> Value {
    match kind {
        ObjType::Map | ObjType::Table => {
            if let Ok(Some((AmValue::Object(ObjType::List), list))) = doc.get(obj, TEXT_KEY) {
                let mut text = String::new();
                for item in doc.list_range(&list, ..) {
                    if let automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(piece)) =
                        &item.value
                    {
                        text.push_str(piece);
                    }
                }
                return Value::String(text);
            }
            Value::Object(read_record(doc, obj))
        }
        ObjType::List => Value::Array(
            doc.list_range(obj, ..)
                .map(|item| match &item.value {
                    automerge::ValueRef::Object(kind) => read_object(doc, &item.id(), *kind),
                    automerge::ValueRef::Scalar(scalar) => scalar_ref_to_json(scalar),
                })
                .collect(),
        ),
        ObjType::Text => Value::String(doc.text(obj).unwrap_or_default()),
    }
}

/// A peer may write any scalar; the ones JSON lacks are mapped, never refused, so a hostile
/// document can always be projected.
fn scalar_ref_to_json(scalar: &automerge::ScalarValueRef<'_>) -> Value {
    use automerge::ScalarValueRef as S;
    match scalar {
        S::Str(text) => Value::String(text.to_string()),
        S::Int(n) | S::Counter(n) | S::Timestamp(n) => Value::Number((*n).into()),
        S::Uint(n) => Value::Number((*n).into()),
        S::F64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        S::Boolean(b) => Value::Bool(*b),
        S::Bytes(bytes) => Value::String(hex::encode(bytes)),
        S::Unknown { .. } | S::Null => Value::Null,
    }
}

fn scalar(value: &Value) -> Option<ScalarValue> {
    Some(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::String(s) => ScalarValue::Str(s.as_str().into()),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => ScalarValue::Int(i),
            (None, Some(u), _) => ScalarValue::Uint(u),
            (None, None, Some(f)) => ScalarValue::F64(f),
            (None, None, None) => ScalarValue::Null,
        },
        Value::Array(_) | Value::Object(_) => return None,
    })
}

fn order_of(map: &Map<String, Value>) -> Result<String> {
    serde_json::to_string(&map.keys().collect::<Vec<_>>()).map_err(SyncError::json)
}

/// Writes `record` as a new map at `key` of `parent`, in one batch (Automerge's
/// `batch_create_object`, which writes keys in sorted order: the same ops on every node).
pub fn create_record<T: Transactable>(
    tx: &mut T,
    parent: &ObjId,
    key: &str,
    record: &Map<String, Value>,
) -> Result<ObjId> {
    Ok(tx.batch_create_object(parent, key, &hydrate_map(record, true)?, false)?)
}

fn hydrate_map(map: &Map<String, Value>, top: bool) -> Result<hydrate::Value> {
    let mut fields: HashMap<String, hydrate::Value> = HashMap::with_capacity(map.len() + 1);
    fields.insert(ORDER_KEY.into(), hydrate::Value::scalar(order_of(map)?));
    for (key, value) in map {
        let child = match value {
            Value::String(text) if top && is_long_text(key, value) => {
                let pieces: Vec<hydrate::Value> = paragraphs(text)
                    .into_iter()
                    .map(hydrate::Value::from)
                    .collect();
                let mut text_map = HashMap::with_capacity(1);
                text_map.insert(TEXT_KEY.to_string(), hydrate::Value::from(pieces));
                hydrate::Value::from(hydrate::Map::from(text_map))
            }
            other => hydrate_value(other)?,
        };
        fields.insert(key.clone(), child);
    }
    Ok(hydrate::Value::from(hydrate::Map::from(fields)))
}

fn hydrate_value(value: &Value) -> Result<hydrate::Value> {
    Ok(match value {
        Value::Object(map) => hydrate_map(map, false)?,
        Value::Array(items) => hydrate::Value::from(
            items
                .iter()
                .map(hydrate_value)
                .collect::<Result<Vec<_>>>()?,
        ),
        other => hydrate::Value::scalar(scalar(other).unwrap_or(ScalarValue::Null)),
    })
}

fn fill_map<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    map: &Map<String, Value>,
    top: bool,
) -> Result<()> {
    tx.put(obj, ORDER_KEY, order_of(map)?)?;
    for (key, value) in map {
        put_new(tx, obj, key, value, top && is_long_text(key, value))?;
    }
    Ok(())
}

fn is_long_text(key: &str, value: &Value) -> bool {
    value.is_string() && LONG_TEXT_FIELDS.contains(&key)
}

fn put_new<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: &Value,
    long_text: bool,
) -> Result<()> {
    if let (true, Value::String(text)) = (long_text, value) {
        let map = tx.put_object(obj, key, ObjType::Map)?;
        let list = tx.put_object(&map, TEXT_KEY, ObjType::List)?;
        for (index, piece) in paragraphs(text).into_iter().enumerate() {
            tx.insert(&list, index, piece)?;
        }
        return Ok(());
    }
    match value {
        Value::Object(map) => {
            let child = tx.put_object(obj, key, ObjType::Map)?;
            fill_map(tx, &child, map, false)
        }
        Value::Array(items) => {
            let child = tx.put_object(obj, key, ObjType::List)?;
            fill_list(tx, &child, items)
        }
        other => {
            tx.put(obj, key, scalar(other).unwrap_or(ScalarValue::Null))?;
            Ok(())
        }
    }
}

fn fill_list<T: Transactable>(tx: &mut T, list: &ObjId, items: &[Value]) -> Result<()> {
    for (index, item) in items.iter().enumerate() {
        insert_new(tx, list, index, item)?;
    }
    Ok(())
}

fn insert_new<T: Transactable>(tx: &mut T, list: &ObjId, index: usize, item: &Value) -> Result<()> {
    match item {
        Value::Object(map) => {
            let child = tx.insert_object(list, index, ObjType::Map)?;
            fill_map(tx, &child, map, false)
        }
        Value::Array(items) => {
            let child = tx.insert_object(list, index, ObjType::List)?;
            fill_list(tx, &child, items)
        }
        other => {
            tx.insert(list, index, scalar(other).unwrap_or(ScalarValue::Null))?;
            Ok(())
        }
    }
}

/// Changes map `obj`, which the transaction reads as `old`, into `new`: only keys whose value
/// differs are written, nested objects, lists and paragraphs are diffed in place, the key
/// order register is written only when the order changed.
pub fn update_record<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
) -> Result<()> {
    update_map(tx, obj, old, new, true)
}

fn update_map<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    top: bool,
) -> Result<()> {
    if !old.keys().eq(new.keys()) {
        tx.put(obj, ORDER_KEY, order_of(new)?)?;
    }
    for key in old.keys() {
        if !new.contains_key(key) {
            tx.delete(obj, key.as_str())?;
        }
    }
    for (key, value) in new {
        let before = old.get(key);
        if before == Some(value) {
            continue;
        }
        let long_text = top && is_long_text(key, value);
        let existing = tx
            .get(obj, key.as_str())?
            .map(|(v, id)| (v.is_object(), id));
        match (before, value, existing) {
            (Some(Value::Object(a)), Value::Object(b), Some((true, child))) => {
                update_map(tx, &child, a, b, false)?;
            }
            (Some(Value::Array(a)), Value::Array(b), Some((true, child))) => {
                update_list(tx, &child, a, b)?;
            }
            (Some(Value::String(a)), Value::String(b), Some((true, child))) if long_text => {
                match tx.get(&child, TEXT_KEY)? {
                    Some((AmValue::Object(ObjType::List), list)) => {
                        update_paragraphs(tx, &list, a, b)?;
                    }
                    _ => put_new(tx, obj, key, value, long_text)?,
                }
            }
            _ => put_new(tx, obj, key, value, long_text)?,
        }
    }
    Ok(())
}

/// The changed middle of two sequences: `(prefix, old_end, new_end)`, after the longest
/// common prefix and the longest common suffix that does not overlap it.
fn middle<T: PartialEq>(old: &[T], new: &[T]) -> (usize, usize, usize) {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let room = old.len().min(new.len()) - prefix;
    let suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .count();
    (prefix, old.len() - suffix, new.len() - suffix)
}

fn update_paragraphs<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    old: &str,
    new: &str,
) -> Result<()> {
    let (old, new) = (paragraphs(old), paragraphs(new));
    let (start, old_end, new_end) = middle(&old, &new);
    let common = (old_end - start).min(new_end - start);
    for offset in 0..common {
        tx.put(list, start + offset, new[start + offset])?;
    }
    for _ in start + common..old_end {
        tx.delete(list, start + common)?;
    }
    for (offset, piece) in new[start + common..new_end].iter().enumerate() {
        tx.insert(list, start + common + offset, *piece)?;
    }
    Ok(())
}

fn update_list<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    old: &[Value],
    new: &[Value],
) -> Result<()> {
    let (start, old_end, new_end) = middle(old, new);
    let common = (old_end - start).min(new_end - start);
    for offset in 0..common {
        let index = start + offset;
        let existing = tx.get(list, index)?.map(|(v, id)| (v.is_object(), id));
        match (&old[index], &new[index], existing) {
            (Value::Object(a), Value::Object(b), Some((true, child))) => {
                update_map(tx, &child, a, b, false)?
            }
            (Value::Array(a), Value::Array(b), Some((true, child))) => {
                update_list(tx, &child, a, b)?
            }
            (_, Value::Object(map), _) => {
                let child = tx.put_object(list, index, ObjType::Map)?;
                fill_map(tx, &child, map, false)?;
            }
            (_, Value::Array(items), _) => {
                let child = tx.put_object(list, index, ObjType::List)?;
                fill_list(tx, &child, items)?;
            }
            (_, other, _) => {
                tx.put(list, index, scalar(other).unwrap_or(ScalarValue::Null))?;
            }
        }
    }
    for _ in start + common..old_end {
        tx.delete(list, start + common)?;
    }
    for (offset, item) in new[start + common..new_end].iter().enumerate() {
        insert_new(tx, list, start + common + offset, item)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{AutoCommit, ROOT};

    fn record(text: &str) -> Map<String, Value> {
        match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn paragraphs_concatenate_back_to_the_text() {
        for text in ["", "one", "a\n\nb", "a\n\n\nb\nc\n\n", "\n\n", "x\n"] {
            let parts = paragraphs(text);
            assert_eq!(parts.concat(), text, "{text:?}");
        }
        assert_eq!(paragraphs("a\n\nb\nc\n\nd"), vec!["a\n\n", "b\nc\n\n", "d"]);
    }

    #[test]
    fn a_record_reads_back_in_its_own_key_order() {
        let original = record(
            r#"{"zeta": 1, "id": "X-1", "description": "p1\n\np2", "shard": {"primary": "n", "claim_ttl_ms": 5}, "labels": ["b", "a"], "f": 1.5, "u": 18446744073709551615, "n": null}"#,
        );
        let mut doc = AutoCommit::new();
        let obj = create_record(&mut doc, &ROOT, "X-1", &original);
        let Ok(obj) = obj else {
            panic!("create failed: {obj:?}")
        };
        let back = read_record(&doc, &obj);
        assert_eq!(
            serde_json::to_string(&back).ok(),
            serde_json::to_string(&original).ok()
        );
    }

    #[test]
    fn an_update_touches_only_what_changed_and_keeps_concurrent_edits() {
        let base =
            record(r#"{"id": "X-1", "title": "t", "priority": 1, "description": "a\n\nb\n\nc"}"#);
        let mut left = AutoCommit::new();
        let Ok(obj) = create_record(&mut left, &ROOT, "X-1", &base) else {
            panic!("create failed")
        };
        let mut right = left.fork();
        let mut ours = base.clone();
        ours.insert("title".into(), "T".into());
        ours.insert("description".into(), "A\n\nb\n\nc".into());
        let mut theirs = base.clone();
        theirs.insert("priority".into(), 2.into());
        theirs.insert("description".into(), "a\n\nb\n\nC".into());
        assert!(update_record(&mut left, &obj, &base, &ours).is_ok());
        assert!(update_record(&mut right, &obj, &base, &theirs).is_ok());
        assert!(left.merge(&mut right).is_ok());
        let merged = read_record(&left, &obj);
        assert_eq!(merged["title"], "T");
        assert_eq!(merged["priority"], 2);
        assert_eq!(merged["description"], "A\n\nb\n\nC");
    }

    #[test]
    fn a_reserved_key_is_named_by_its_pointer() {
        let bad = record("{\"id\": \"X\", \"claim\": {\"\\u0000order\": 1}}");
        assert_eq!(reserved_key(&bad).as_deref(), Some("/claim/\u{0}order"));
        assert_eq!(
            reserved_key(&record(r#"{"id": "X", "a": [{"b": 1}]}"#)),
            None
        );
    }
}
