//! The scheduling fields of every record, streamed: what `list`, `ready` and the
//! orchestrator's candidate fetch read.
//!
//! The file is streamed ([`crate::scan`]), never held whole, and what is kept of a record is
//! small and costs no allocation: its scheduling strings are copied into one buffer per
//! scanned range, and the record keeps their offsets. Why: on this class of VM a page fault
//! costs ~9 µs, and an owned head per record (a 380-byte struct and a dozen allocations,
//! ~1 KB) made faulting in the kept memory cost more than parsing the file. Every line gets
//! the checks [`crate::Document`] applies, and errors name the first bad line in file order.
//!
//! A record that cannot be read — a line that is not a JSON object, a missing or mistyped
//! scheduling field, an id defined twice — is left out and listed in [`Heads::omitted`]
//! with its line (Symphony SPEC §11.1: a state-list read omits a malformed record and says
//! so; `docs/tracker.md`, "Damaged files"). Damage to the file as a whole (conflict
//! markers, invalid UTF-8, a byte order mark, an oversized line) still fails the scan.

use std::hash::BuildHasher;
use std::path::Path;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::document::parse_head;
use crate::error::{Result, TrackerError};
use crate::model::{Claim, IssueHead, Shard};
use crate::scan::ScannedLine;

/// A record a read left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Omitted {
    /// 1-based line in the file.
    pub line: usize,
    /// The record's id, when it could be read from the line.
    pub id: Option<String>,
    /// Why, located (`FILE:LINE[:COLUMN]: ...`).
    pub reason: String,
}

/// The heads of a file, in file order, with a table of their ids.
pub struct Heads {
    parts: Vec<Part>,
    /// Records left out, in file order.
    omitted: Vec<Omitted>,
    /// The position (in file order) of the record defining each id; the last one for an id
    /// defined twice.
    ids: HashTable<usize>,
    hasher: DefaultHashBuilder,
}

/// One scanned range's records.
struct Part {
    /// 0-based number of the range's first line in the file.
    first_line: usize,
    /// Position of the range's first record among all records.
    first_record: usize,
    /// The strings of every record, back to back.
    text: String,
    records: Vec<Record>,
    /// Each record's label and blocker id spans, labels first.
    lists: Vec<Span>,
    /// Lines (range-local) that are not records, with the error.
    damaged: Vec<(usize, Option<String>, TrackerError)>,
}

/// A string of a record: its byte range in the part's text, relative to the record's first
/// byte there (a record's strings come from one line, so `u32` holds them).
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

struct Record {
    /// 0-based line within the range.
    line: usize,
    /// Where the record's strings start in the part's text, and its spans in the part's lists.
    text_at: usize,
    lists_at: usize,
    id: Span,
    identifier: Span,
    title: Span,
    state: Span,
    created_at: Span,
    updated_at: Span,
    assignee: Option<Span>,
    priority: Option<i64>,
    labels: u32,
    blockers: u32,
    /// Whether a `blocked_by` entry is a bare id string.
    bare_blocker: bool,
    /// Left out of every read: its id is defined on another line too.
    duplicate: bool,
    /// Shard and claim, boxed: most records have neither.
    coordination: Option<Box<Coordination>>,
}

struct Coordination {
    shard: Option<Shard>,
    claim: Option<Claim>,
}

/// One record's scheduling fields, borrowed from [`Heads`].
#[derive(Clone, Copy)]
pub struct HeadRef<'h> {
    part: &'h Part,
    record: &'h Record,
}

impl<'h> HeadRef<'h> {
    fn text(&self, span: Span) -> &'h str {
        let at = self.record.text_at;
        &self.part.text[at + span.start as usize..at + span.end as usize]
    }

    fn list(&self, skip: u32, take: u32) -> impl Iterator<Item = &'h str> + use<'h> {
        let at = self.record.lists_at + skip as usize;
        let this = *self;
        self.part.lists[at..at + take as usize]
            .iter()
            .map(move |&span| this.text(span))
    }

    /// 1-based line of the record in the file.
    pub fn line(&self) -> usize {
        self.part.first_line + self.record.line + 1
    }

    /// See [`crate::Issue::id`].
    pub fn id(&self) -> &'h str {
        self.text(self.record.id)
    }

    /// See [`crate::Issue::identifier`].
    pub fn identifier(&self) -> &'h str {
        self.text(self.record.identifier)
    }

    /// See [`crate::Issue::title`].
    pub fn title(&self) -> &'h str {
        self.text(self.record.title)
    }

    /// See [`crate::Issue::state`].
    pub fn state(&self) -> &'h str {
        self.text(self.record.state)
    }

    /// See [`crate::Issue::priority`].
    pub fn priority(&self) -> Option<i64> {
        self.record.priority
    }

    /// See [`crate::Issue::created_at`].
    pub fn created_at(&self) -> &'h str {
        self.text(self.record.created_at)
    }

    /// See [`crate::Issue::updated_at`].
    pub fn updated_at(&self) -> &'h str {
        self.text(self.record.updated_at)
    }

    /// See [`crate::Issue::assignee`].
    pub fn assignee(&self) -> Option<&'h str> {
        self.record.assignee.map(|span| self.text(span))
    }

    /// See [`crate::Issue::labels`].
    pub fn labels(&self) -> impl Iterator<Item = &'h str> + use<'h> {
        self.list(0, self.record.labels)
    }

    /// The ids of [`crate::Issue::blocked_by`], in ref order.
    pub fn blocker_ids(&self) -> impl Iterator<Item = &'h str> + use<'h> {
        self.list(self.record.labels, self.record.blockers)
    }

    /// See [`crate::Issue::shard`].
    pub fn shard(&self) -> Option<&'h Shard> {
        self.record.coordination.as_ref()?.shard.as_ref()
    }

    /// See [`crate::Issue::claim`].
    pub fn claim(&self) -> Option<&'h Claim> {
        self.record.coordination.as_ref()?.claim.as_ref()
    }

    /// Whether some `blocked_by` entry is a bare id string (read as the ref it names).
    pub fn has_bare_blocker(&self) -> bool {
        self.record.bare_blocker
    }
}

impl Heads {
    fn new(path: &Path, mut parts: Vec<Part>, mut omitted: Vec<Omitted>) -> Heads {
        let hasher = DefaultHashBuilder::default();
        let total = parts.iter().map(|part| part.records.len()).sum();
        let mut ids = HashTable::with_capacity(total);
        // (position, position of the record defining the id first), for every repeat.
        let mut repeats = Vec::new();
        let id_at = |position: usize| at(&parts, position).id();
        for (position, head) in all(&parts).enumerate() {
            let id = head.id();
            let hash = hasher.hash_one(id);
            match ids.find(hash, |&other| id_at(other) == id) {
                Some(&first) => repeats.push((position, first)),
                None => {
                    ids.insert_unique(hash, position, |&other| hasher.hash_one(id_at(other)));
                }
            }
        }
        // Which record would be meant is unknowable: every record of a repeated id is left
        // out, and the id is found nowhere.
        let mut firsts = Vec::new();
        for &(position, first) in &repeats {
            let (head, first_head) = (at(&parts, position), at(&parts, first));
            omitted.push(Omitted {
                line: head.line(),
                id: Some(head.id().to_string()),
                reason: TrackerError::DuplicateId {
                    path: path.to_path_buf(),
                    line: head.line(),
                    first_line: first_head.line(),
                    id: head.id().to_string(),
                }
                .to_string(),
            });
            if !firsts.contains(&first) {
                firsts.push(first);
                omitted.push(Omitted {
                    line: first_head.line(),
                    id: Some(first_head.id().to_string()),
                    reason: format!(
                        "{}:{}: id {:?} is defined again on line {} (which record is meant is unknowable)",
                        path.display(),
                        first_head.line(),
                        first_head.id(),
                        head.line()
                    ),
                });
            }
        }
        for position in repeats.iter().map(|&(p, _)| p).chain(firsts) {
            let k = parts.partition_point(|part| part.first_record <= position) - 1;
            let part = &mut parts[k];
            part.records[position - part.first_record].duplicate = true;
        }
        omitted.sort_by_key(|o| o.line);
        Heads {
            parts,
            omitted,
            ids,
            hasher,
        }
    }

    /// Number of records served (left-out ones not counted).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// The records left out of this read, in file order.
    pub fn omitted(&self) -> &[Omitted] {
        &self.omitted
    }

    /// Whether the file holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every record, in file order, left-out ones skipped.
    pub fn iter(&self) -> impl Iterator<Item = HeadRef<'_>> {
        all(&self.parts).filter(|head| !head.record.duplicate)
    }

    /// The record with `id`; `None` also for an id defined twice (see [`Heads::omitted`]).
    pub fn get(&self, id: &str) -> Option<HeadRef<'_>> {
        let position = self.ids.find(self.hasher.hash_one(id), |&position| {
            at(&self.parts, position).id() == id
        })?;
        Some(at(&self.parts, *position)).filter(|head| !head.record.duplicate)
    }
}

impl std::fmt::Debug for Heads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl std::fmt::Debug for HeadRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadRef")
            .field("line", &self.line())
            .field("id", &self.id())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

fn all(parts: &[Part]) -> impl Iterator<Item = HeadRef<'_>> {
    parts.iter().flat_map(|part| {
        part.records
            .iter()
            .map(move |record| HeadRef { part, record })
    })
}

/// The record at `position` in file order (a position [`Heads::new`] handed out).
fn at(parts: &[Part], position: usize) -> HeadRef<'_> {
    let k = parts.partition_point(|part| part.first_record <= position) - 1;
    let part = &parts[k];
    HeadRef {
        part,
        record: &part.records[position - part.first_record],
    }
}

impl Part {
    /// Room for the records of `bytes` of file. Reserved, not touched: only the pages the
    /// records fill are faulted in. A record with the required fields takes over 100 bytes
    /// and real ones 1–20 KB, so the vectors rarely grow (and growing is only slower).
    fn with_capacity(bytes: u64) -> Part {
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        let records = bytes / 512 + 16;
        Part {
            first_line: 0,
            first_record: 0,
            text: String::with_capacity(bytes / 8),
            records: Vec::with_capacity(records),
            lists: Vec::with_capacity(records * 4),
            damaged: Vec::new(),
        }
    }

    /// Keeps `head`, read from range-local line `line`. `None` when its strings do not fit
    /// `u32` offsets (a line over 4 GiB).
    fn push(&mut self, line: usize, head: &IssueHead<'_>) -> Option<()> {
        let text_at = self.text.len();
        let lists_at = self.lists.len();
        let text = &mut self.text;
        let mut put = |value: &str| {
            let start = u32::try_from(text.len() - text_at).ok()?;
            text.push_str(value);
            let end = u32::try_from(text.len() - text_at).ok()?;
            Some(Span { start, end })
        };
        let id = put(&head.id)?;
        let identifier = if head.identifier == head.id {
            id
        } else {
            put(&head.identifier)?
        };
        let title = put(&head.title)?;
        let state = put(&head.state)?;
        let created_at = put(&head.created_at)?;
        let updated_at = put(&head.updated_at)?;
        let assignee = match &head.assignee {
            Some(assignee) => Some(put(assignee)?),
            None => None,
        };
        let labels = head.labels.iter().map(|label| label.as_ref());
        for value in labels.chain(head.blocked_by.iter().map(|blocker| blocker.id.as_ref())) {
            self.lists.push(put(value)?);
        }
        let coordination = (head.shard.is_some() || head.claim.is_some()).then(|| {
            Box::new(Coordination {
                shard: head.shard.clone(),
                claim: head.claim.clone(),
            })
        });
        self.records.push(Record {
            line,
            text_at,
            lists_at,
            id,
            identifier,
            title,
            state,
            created_at,
            updated_at,
            assignee,
            priority: head.priority,
            labels: u32::try_from(head.labels.len()).ok()?,
            blockers: u32::try_from(head.blocked_by.len()).ok()?,
            bare_blocker: head.blocked_by.iter().any(|blocker| blocker.bare),
            duplicate: false,
            coordination,
        });
        Some(())
    }
}

/// Streams the heads of the file at `path` ([`crate::scan`]). A line that is not a record
/// ([`TrackerError::Json`], [`TrackerError::Record`]) and every record of an id defined twice
/// are left out and listed in [`Heads::omitted`].
///
/// Errors: [`TrackerError::Missing`], [`TrackerError::Io`], and for the first bad line
/// [`TrackerError::RecordTooLarge`], [`TrackerError::ConflictMarkers`],
/// [`TrackerError::ByteOrderMark`] or [`TrackerError::InvalidUtf8`].
pub fn scan(path: &Path, max_record_bytes: usize) -> Result<Heads> {
    let visit = |part: &mut Part, line: ScannedLine<'_>| {
        if line.content.trim().is_empty() {
            return Ok(());
        }
        let head = match parse_head(path, line.index + 1, line.content) {
            Ok(head) => head,
            Err(e @ (TrackerError::Json { .. } | TrackerError::Record { .. })) => {
                let id = crate::document::leading_id(line.content).map(str::to_string);
                part.damaged.push((line.index, id, e));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        part.push(line.index, &head)
            .ok_or_else(|| TrackerError::RecordTooLarge {
                path: path.to_path_buf(),
                line: line.index + 1,
                bytes: line.content.len(),
                limit: u32::MAX as usize,
            })
    };
    let scanned = crate::scan::scan(path, max_record_bytes, Part::with_capacity, visit)?;
    let mut parts = Vec::with_capacity(scanned.parts.len());
    let mut omitted = Vec::new();
    let mut records = 0;
    for (first_line, mut part) in scanned.parts {
        part.first_line = first_line;
        part.first_record = records;
        records += part.records.len();
        for (line, id, error) in std::mem::take(&mut part.damaged) {
            omitted.push(Omitted {
                line: first_line + line + 1,
                id,
                reason: crate::scan::relocate(error, first_line).to_string(),
            });
        }
        parts.push(part);
    }
    Ok(Heads::new(path, parts, omitted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{DEFAULT_MAX_RECORD_BYTES, Document};

    const SPACED: &str = include_str!("../tests/fixtures/x0x.jsonl");
    const COMPACT: &str = include_str!("../tests/fixtures/x0x-symphony.jsonl");

    fn scan_text(text: &[u8], limit: usize) -> Result<Heads> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues.jsonl");
        std::fs::write(&path, text).unwrap();
        scan(&path, limit).map_err(|e| {
            // Report errors against a stable name.
            let text = e.to_string().replace(&path.display().to_string(), "f");
            TrackerError::Rejected {
                id: String::new(),
                message: text,
            }
        })
    }

    /// Every scheduling field of the document's records, one line each.
    fn expected(doc: &Document) -> Vec<String> {
        doc.record_lines()
            .map(|(index, _)| {
                let h = doc.head(index).unwrap();
                format!(
                    "{} {} {} {} {:?} {} {} {:?} {:?} {:?} {:?} {:?} {}",
                    h.id,
                    h.identifier,
                    h.title,
                    h.state,
                    h.priority,
                    h.created_at,
                    h.updated_at,
                    h.assignee.as_deref(),
                    h.labels.iter().map(|l| l.as_ref()).collect::<Vec<&str>>(),
                    h.blocked_by
                        .iter()
                        .map(|b| b.id.as_ref())
                        .collect::<Vec<_>>(),
                    h.shard,
                    h.claim,
                    index + 1
                )
            })
            .collect()
    }

    fn streamed(heads: &Heads) -> Vec<String> {
        heads
            .iter()
            .map(|h| {
                format!(
                    "{} {} {} {} {:?} {} {} {:?} {:?} {:?} {:?} {:?} {}",
                    h.id(),
                    h.identifier(),
                    h.title(),
                    h.state(),
                    h.priority(),
                    h.created_at(),
                    h.updated_at(),
                    h.assignee(),
                    h.labels().collect::<Vec<_>>(),
                    h.blocker_ids().collect::<Vec<_>>(),
                    h.shard().cloned(),
                    h.claim().cloned(),
                    h.line()
                )
            })
            .collect()
    }

    /// Many batches: ~3 MB of the compact fixture repeated with fresh ids, blank and CRLF
    /// lines mixed in, no final newline.
    fn big_text() -> String {
        let mut text = String::new();
        for round in 0..80 {
            for (i, line) in COMPACT.lines().enumerate() {
                let id = format!("R{round}-{i}");
                text.push_str(&line.replacen("\"id\":\"XSY-", &format!("\"id\":\"{id}-"), 1));
                text.push_str(if i % 7 == 0 { "\r\n" } else { "\n" });
                if i % 11 == 0 {
                    text.push_str("  \n");
                }
            }
        }
        text.pop();
        text
    }

    #[test]
    fn streamed_heads_equal_the_document_heads() {
        let claimed = COMPACT.replacen(
            "\"state\":\"todo\"",
            "\"state\":\"todo\",\"assignee\":\"ann\",\"shard\":{\"primary\":\"n1\",\"claim_ttl_ms\":5},\"claim\":{\"node\":\"n1\",\"slot\":0,\"claimed_at\":\"2026-01-01T00:00:00Z\",\"heartbeat_at\":\"2026-01-01T00:00:00Z\"}",
            1,
        );
        let escaped = COMPACT.replacen("\"title\":\"", "\"title\":\"\\u00e9\\\"q\\\" ", 3);
        for text in [
            SPACED.to_string(),
            COMPACT.to_string(),
            claimed,
            escaped,
            big_text(),
        ] {
            let doc = Document::parse(
                Path::new("f"),
                text.clone().into_bytes(),
                DEFAULT_MAX_RECORD_BYTES,
            )
            .unwrap();
            let heads = scan_text(text.as_bytes(), DEFAULT_MAX_RECORD_BYTES).unwrap();
            assert_eq!(streamed(&heads), expected(&doc));
            assert_eq!(heads.len(), doc.record_count());
        }
    }

    #[test]
    fn ids_are_found_in_every_range() {
        let text = big_text();
        let heads = scan_text(text.as_bytes(), DEFAULT_MAX_RECORD_BYTES).unwrap();
        assert!(heads.parts.len() > 1, "the file is scanned in ranges");
        for head in heads.iter() {
            assert_eq!(heads.get(head.id()).unwrap().line(), head.line());
        }
        assert!(heads.get("XSY-0001").is_none());
        assert!(heads.omitted().is_empty());
    }

    #[test]
    fn conflict_markers_fail_the_scan_and_bad_lines_are_left_out() {
        let mut text = big_text().into_bytes();
        let second_half =
            text.len() / 2 + memchr::memchr(b'\n', &text[text.len() / 2..]).unwrap() + 1;
        text.splice(
            second_half..second_half,
            b"{\"id\": oops}\n".iter().copied(),
        );
        text.splice(0..0, b"<<<<<<< HEAD\n".iter().copied());
        let err = scan_text(&text, DEFAULT_MAX_RECORD_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("f:1: unresolved git conflict marker"), "{err}");
        text.drain(0..13);
        // A line that is not a record is left out and named, not fatal.
        let heads = scan_text(&text, DEFAULT_MAX_RECORD_BYTES).unwrap();
        let line = memchr::memchr_iter(b'\n', &text[..second_half]).count() + 1;
        assert_eq!(heads.omitted().len(), 1);
        assert_eq!(heads.omitted()[0].line, line);
        let reason = &heads.omitted()[0].reason;
        assert!(
            reason.ends_with(&format!("issues.jsonl:{line}:8: expected value")),
            "{reason}"
        );
    }

    #[test]
    fn empty_and_missing_files() {
        assert!(scan_text(b"", 100).unwrap().is_empty());
        let err = scan(Path::new("/nonexistent/issues.jsonl"), 100).unwrap_err();
        assert!(matches!(err, TrackerError::Missing { .. }));
    }

    #[test]
    fn every_record_of_a_duplicate_id_is_left_out_and_named_with_both_lines() {
        let fifth = COMPACT.lines().nth(4).unwrap();
        let text = format!(
            "{COMPACT}{}\n{fifth}\n",
            fifth.replace("\"todo\"", "\"done\"")
        );
        let heads = scan_text(text.as_bytes(), DEFAULT_MAX_RECORD_BYTES).unwrap();
        let lines: Vec<usize> = heads.omitted().iter().map(|o| o.line).collect();
        assert_eq!(lines, [5, 37, 38]);
        let reason = &heads.omitted()[1].reason;
        assert!(
            reason
                .ends_with("issues.jsonl:37: duplicate id \"XSY-0005\" (first defined on line 5)"),
            "{reason}"
        );
        assert!(
            heads.get("XSY-0005").is_none(),
            "which one is meant is unknowable"
        );
        assert!(heads.iter().all(|h| h.id() != "XSY-0005"));
        assert_eq!(heads.len(), 35);
    }

    #[test]
    fn lines_that_are_not_records_are_left_out_and_named_the_rest_is_read() {
        let mut lines: Vec<String> = COMPACT.lines().map(str::to_string).collect();
        lines[1].truncate(40);
        lines[2].push_str("xx");
        lines[3] = "[1, 2]".into();
        lines[4] = lines[4].replacen("\"labels\":[", "\"labels\":\"x\",\"l\":[", 1);
        lines[5] = lines[5].replacen(
            "\"blocked_by\":[{\"id\":\"XSY-0003\"",
            "\"blocked_by\":[\"XSY-0003\",{\"id\":\"XSY-0004\"",
            1,
        );
        let text = lines.join("\n");
        let heads = scan_text(text.as_bytes(), DEFAULT_MAX_RECORD_BYTES).unwrap();
        let omitted: Vec<(usize, Option<&str>)> = heads
            .omitted()
            .iter()
            .map(|o| (o.line, o.id.as_deref()))
            .collect();
        assert_eq!(
            omitted,
            [
                (2, Some("XSY-0002")),
                (3, Some("XSY-0003")),
                (4, None),
                (5, Some("XSY-0005"))
            ]
        );
        assert!(
            heads.omitted()[2].reason.contains("found an array"),
            "{:?}",
            heads.omitted()
        );
        assert_eq!(heads.len(), COMPACT.lines().count() - 4);
        let sixth = heads.get("XSY-0006").unwrap();
        assert!(sixth.has_bare_blocker());
        assert_eq!(sixth.blocker_ids().next(), Some("XSY-0003"));
    }
}
