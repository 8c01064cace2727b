//! The issues file as text: its lines with their terminators, its style, and the checks every
//! command runs before trusting it (UTF-8, conflict markers, record size).
//!
//! A [`Document`] is never modified in place; edits are rendered into new bytes by
//! [`crate::store`], reusing the original bytes of every untouched line.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::durable::FileStamp;
use crate::error::{Result, TrackerError};
use crate::json_style::{JsonStyle, StyleEvidence};
use crate::model::IssueHead;
use crate::scan::ScannedLine;

/// Default limit on one record's line, in bytes. The largest record in the fixtures is 18 KB;
/// 8 MiB leaves room for any real handoff while refusing runaway lines with a clear error.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

/// How a line ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminator {
    /// The last line of a file without a trailing newline.
    None,
    /// `\n`.
    Lf,
    /// `\r\n`.
    CrLf,
}

impl Terminator {
    /// The terminator's bytes.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Terminator::None => b"",
            Terminator::Lf => b"\n",
            Terminator::CrLf => b"\r\n",
        }
    }
}

/// One physical line: byte range of its content (terminator excluded) and its terminator.
#[derive(Debug, Clone, Copy)]
pub struct Line {
    /// Byte offset of the first content byte.
    pub start: usize,
    /// Byte offset one past the last content byte.
    pub end: usize,
    /// How the line ends.
    pub terminator: Terminator,
}

/// The issues file split into lines: read whole ([`Document::read`], [`Document::parse`]), or
/// as a skeleton ([`Document::scan`]) that knows every line's position and record id and
/// reads a record's line only when it is asked for.
///
/// Line offsets ([`Line::start`], [`Line::end`]) are offsets into the file in both cases.
#[derive(Debug, Clone)]
pub struct Document {
    path: PathBuf,
    /// The whole file; empty for a skeleton.
    text: String,
    lines: Vec<Line>,
    /// Detected on first use: reads never need it, and detection scans the whole text.
    style: OnceLock<JsonStyle>,
    stamp: Option<FileStamp>,
    skeleton: Option<Skeleton>,
}

/// The record id of each line of a skeleton, kept in one string (a skeleton of 100k lines
/// would otherwise cost 100k allocations).
#[derive(Debug, Clone, Default)]
pub(crate) struct IdTable {
    text: String,
    /// Per line: the id's byte range in `text`; `None` for blank lines.
    spans: Vec<Option<(usize, usize)>>,
}

impl IdTable {
    /// An empty table with room for `lines` lines.
    pub(crate) fn with_capacity(lines: usize) -> IdTable {
        IdTable {
            text: String::with_capacity(lines * 12),
            spans: Vec::with_capacity(lines),
        }
    }

    /// Adds the next line's id (`None`: a blank line).
    pub(crate) fn push(&mut self, id: Option<&str>) {
        self.spans.push(id.map(|id| {
            let start = self.text.len();
            self.text.push_str(id);
            (start, self.text.len())
        }));
    }

    /// A table over `text`, each line's id being the given byte range of it; `None` if a
    /// range is not within `text` on character boundaries.
    pub(crate) fn over(text: String, spans: Vec<Option<(usize, usize)>>) -> Option<IdTable> {
        let valid = spans
            .iter()
            .flatten()
            .all(|&(start, end)| text.get(start..end).is_some());
        valid.then_some(IdTable { text, spans })
    }

    /// Adds every line of `other` after these.
    pub(crate) fn append(&mut self, other: &IdTable) {
        for index in 0..other.len() {
            self.push(other.get(index));
        }
    }

    /// The id of line `index`.
    pub(crate) fn get(&self, index: usize) -> Option<&str> {
        let (start, end) = (*self.spans.get(index)?)?;
        self.text.get(start..end)
    }

    /// Number of lines.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }
}

/// What a skeleton holds instead of the text.
#[derive(Debug, Clone)]
struct Skeleton {
    ids: IdTable,
    /// The lines read so far, one slot per line, allocated when the first line is read (an
    /// append reads none).
    loaded: OnceLock<Vec<OnceLock<String>>>,
    /// The file, opened when the first line is read.
    file: OnceLock<std::sync::Arc<std::fs::File>>,
}

impl Document {
    /// Reads and checks the file at `path`.
    ///
    /// Errors: [`TrackerError::Missing`], [`TrackerError::Io`], and everything
    /// [`Document::parse`] reports.
    pub fn read(path: &Path, max_record_bytes: usize) -> Result<Document> {
        let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TrackerError::Missing {
                path: path.to_path_buf(),
            },
            _ => TrackerError::io(path, e),
        })?;
        let metadata = file.metadata().map_err(|e| TrackerError::io(path, e))?;
        let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| TrackerError::io(path, e))?;
        let mut document = Document::parse(path, bytes, max_record_bytes)?;
        document.stamp = Some(FileStamp::of(&metadata));
        Ok(document)
    }

    /// Checks `bytes` as the content of `path`: UTF-8, no conflict markers, no line over
    /// `max_record_bytes`. Records themselves are parsed lazily by their users.
    pub fn parse(path: &Path, bytes: Vec<u8>, max_record_bytes: usize) -> Result<Document> {
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = memchr::memchr_iter(b'\n', valid).count();
            let line_start = memchr::memrchr(b'\n', valid).map_or(0, |i| i + 1);
            invalid_utf8(path, line, &valid[line_start..])
        })?;
        let lines = split_lines(text.as_bytes());
        let document = Document {
            path: path.to_path_buf(),
            style: OnceLock::new(),
            text,
            lines,
            stamp: None,
            skeleton: None,
        };
        document.check_lines(max_record_bytes)?;
        Ok(document)
    }

    /// The skeleton of the file at `path`: streamed once ([`crate::scan`]) to check every
    /// line as [`Document::parse`] does and to note each line's position, terminator and
    /// record id, and the file's style; record lines are read again only when asked for. For
    /// transactions over a large file that touch a few records, this avoids holding the file
    /// in memory at all: unchanged lines are copied file to file when it is rewritten.
    ///
    /// [`Document::text`] is empty and [`Document::line_text`] is empty for lines not yet
    /// read; [`Document::record`], [`Document::head`] and [`Document::heads`] read what they
    /// need. Errors: as [`Document::read`].
    pub fn scan(path: &Path, max_record_bytes: usize) -> Result<Document> {
        #[derive(Default)]
        struct Part {
            lines: Vec<Line>,
            ids: IdTable,
            evidence: StyleEvidence,
        }
        let visit = |part: &mut Part, line: ScannedLine<'_>| {
            let start = usize::try_from(line.start).unwrap_or(usize::MAX);
            part.lines.push(Line {
                start,
                end: start + line.content.len(),
                terminator: line.terminator,
            });
            if line.content.trim().is_empty() {
                part.ids.push(None);
            } else {
                part.evidence.add_line(line.content);
                // A damaged line whose id cannot be read is nobody's record: writes keep it
                // byte for byte and never address it (`docs/tracker.md`, "Damaged files").
                part.ids
                    .push(id_in(path, line.index, line.content).ok().as_deref());
            }
            Ok(())
        };
        let scanned = crate::scan::scan(path, max_record_bytes, |_| Part::default(), visit)?;
        let mut whole = Part {
            lines: Vec::with_capacity(scanned.lines),
            ids: IdTable::with_capacity(scanned.lines),
            evidence: StyleEvidence::default(),
        };
        for (_, part) in scanned.parts {
            whole.lines.extend(part.lines);
            whole.ids.append(&part.ids);
            whole.evidence = whole.evidence.then(part.evidence);
        }
        Ok(Document::from_skeleton(
            path,
            whole.lines,
            whole.ids,
            whole.evidence.style(),
            scanned.stamp,
        ))
    }

    /// Whether this is a skeleton ([`Document::scan`]): the text is not held.
    pub fn is_skeleton(&self) -> bool {
        self.skeleton.is_some()
    }

    /// A skeleton from its parts (as [`crate::index`] stores them): each line's position and
    /// terminator, each record line's id, the file's style and the version they describe.
    pub(crate) fn from_skeleton(
        path: &Path,
        lines: Vec<Line>,
        ids: IdTable,
        style: JsonStyle,
        stamp: FileStamp,
    ) -> Document {
        let loaded = OnceLock::new();
        Document {
            path: path.to_path_buf(),
            text: String::new(),
            lines,
            style: OnceLock::from(style),
            stamp: Some(stamp),
            skeleton: Some(Skeleton {
                ids,
                loaded,
                file: OnceLock::new(),
            }),
        }
    }

    /// The record id of each line of a skeleton (`None` for blank lines).
    pub(crate) fn skeleton_ids(&self) -> Option<&IdTable> {
        self.skeleton.as_ref().map(|skeleton| &skeleton.ids)
    }

    /// The content of line `index`, read from the file first for a skeleton.
    fn content(&self, index: usize) -> Result<&str> {
        let Some(skeleton) = &self.skeleton else {
            return Ok(self.line_text(index));
        };
        let slots = skeleton
            .loaded
            .get_or_init(|| (0..self.lines.len()).map(|_| OnceLock::new()).collect());
        let (Some(line), Some(slot)) = (self.lines.get(index), slots.get(index)) else {
            return Ok("");
        };
        if let Some(text) = slot.get() {
            return Ok(text);
        }
        // The terminator is read too: with the id, it shows the line is still where the
        // skeleton says, even after an in-place edit that kept the file's length and time.
        let terminator = line.terminator.as_bytes();
        let mut bytes = vec![0u8; line.end - line.start + terminator.len()];
        let file = match skeleton.file.get() {
            Some(file) => file,
            None => {
                let file =
                    std::fs::File::open(&self.path).map_err(|e| TrackerError::io(&self.path, e))?;
                skeleton.file.get_or_init(|| std::sync::Arc::new(file))
            }
        };
        std::os::unix::fs::FileExt::read_exact_at(&**file, &mut bytes, line.start as u64)
            .map_err(|e| TrackerError::io(&self.path, e))?;
        let moved = || TrackerError::ConcurrentModification {
            path: self.path.clone(),
        };
        if !bytes.ends_with(terminator) {
            return Err(moved());
        }
        bytes.truncate(line.end - line.start);
        let text = String::from_utf8(bytes).map_err(|e| {
            invalid_utf8(
                &self.path,
                index,
                &e.as_bytes()[..e.utf8_error().valid_up_to()],
            )
        })?;
        let expected = skeleton.ids.get(index);
        if id_in(&self.path, index, &text).ok().as_deref() != expected {
            return Err(moved());
        }
        Ok(slot.get_or_init(|| text))
    }

    fn check_lines(&self, max_record_bytes: usize) -> Result<()> {
        for (index, line) in self.lines.iter().enumerate() {
            check_line(
                &self.path,
                index,
                &self.text.as_bytes()[line.start..line.end],
                max_record_bytes,
            )?;
        }
        Ok(())
    }

    /// The file this document was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Identity of the file version that was read; `None` for parsed-from-memory documents.
    pub fn stamp(&self) -> Option<FileStamp> {
        self.stamp
    }

    /// The whole text; empty for a skeleton ([`Document::scan`]).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every physical line, blank ones included.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// Content of the line at `index` (0-based), terminator excluded; for a skeleton, empty
    /// until the line was read (by [`Document::record`] or [`Document::head`]).
    pub fn line_text(&self, index: usize) -> &str {
        match &self.skeleton {
            Some(skeleton) => skeleton
                .loaded
                .get()
                .and_then(|slots| slots.get(index))
                .and_then(OnceLock::get)
                .map_or("", String::as_str),
            None => self
                .lines
                .get(index)
                .map_or("", |line| &self.text[line.start..line.end]),
        }
    }

    /// The file's detected serialization style.
    pub fn style(&self) -> JsonStyle {
        *self
            .style
            .get_or_init(|| JsonStyle::detect_file(&self.text))
    }

    /// `(index, content)` of every line holding a record; blank lines are skipped. For a
    /// skeleton the content is [`Document::line_text`]'s.
    pub fn record_lines(&self) -> impl Iterator<Item = (usize, &str)> {
        (0..self.lines.len()).filter_map(|index| {
            let is_record = match &self.skeleton {
                Some(skeleton) => skeleton.ids.get(index).is_some(),
                None => !self.line_text(index).trim().is_empty(),
            };
            is_record.then(|| (index, self.line_text(index)))
        })
    }

    /// Number of record lines.
    pub fn record_count(&self) -> usize {
        self.record_lines().count()
    }

    /// Whether the last line ends with a newline (true for an empty file, the POSIX default
    /// new records follow).
    pub fn ends_with_newline(&self) -> bool {
        self.lines
            .last()
            .is_none_or(|line| line.terminator != Terminator::None)
    }

    /// The terminator new lines get: the first line's, `\n` for an empty file.
    pub fn newline(&self) -> Terminator {
        match self.lines.first().map(|line| line.terminator) {
            Some(Terminator::CrLf) => Terminator::CrLf,
            _ => Terminator::Lf,
        }
    }

    /// Parses the record on line `index` into its JSON map.
    pub fn record(&self, index: usize) -> Result<Map<String, Value>> {
        parse_record(&self.path, index + 1, self.content(index)?)
    }

    /// Parses the scheduling fields of the record on line `index`.
    pub fn head(&self, index: usize) -> Result<IssueHead<'_>> {
        parse_head(&self.path, index + 1, self.content(index)?)
    }

    /// The scheduling fields of every record, in file order.
    pub fn heads(&self) -> Result<Vec<IssueHead<'_>>> {
        self.record_lines()
            .map(|(index, _)| self.head(index))
            .collect()
    }

    /// The id of the record on line `index`, read without parsing the whole record when the
    /// line starts with `{"id": "..."` (every tool we know writes `id` first).
    pub fn id_of(&self, index: usize) -> Result<Cow<'_, str>> {
        match &self.skeleton {
            Some(skeleton) => match skeleton.ids.get(index) {
                Some(id) => Ok(Cow::Borrowed(id)),
                None => id_in(&self.path, index, ""),
            },
            None => id_in(&self.path, index, self.line_text(index)),
        }
    }

    /// Line index of the record with `id`, if any. Lines whose id cannot be read are not
    /// records of any id (they are damaged; `docs/tracker.md`, "Damaged files").
    ///
    /// Errors: [`TrackerError::DuplicateId`] when `id` is defined on two lines (which one is
    /// meant is unknowable).
    pub fn find(&self, id: &str) -> Result<Option<usize>> {
        let mut found = None;
        for (index, _) in self.record_lines() {
            if self.id_of(index).is_ok_and(|candidate| candidate == id) {
                if let Some(first) = found {
                    return Err(TrackerError::DuplicateId {
                        path: self.path.clone(),
                        line: index + 1,
                        first_line: first + 1,
                        id: id.to_string(),
                    });
                }
                found = Some(index);
            }
        }
        Ok(found)
    }
}

/// Splits `bytes` at `\n`, recognising `\r\n`; a final line without a newline is kept.
pub(crate) fn split_lines(bytes: &[u8]) -> Vec<Line> {
    let mut lines = Vec::with_capacity(bytes.len() / 512 + 1);
    let mut start = 0;
    for newline in memchr::memchr_iter(b'\n', bytes) {
        let crlf = newline > start && bytes[newline - 1] == b'\r';
        lines.push(Line {
            start,
            end: if crlf { newline - 1 } else { newline },
            terminator: if crlf {
                Terminator::CrLf
            } else {
                Terminator::Lf
            },
        });
        start = newline + 1;
    }
    if start < bytes.len() {
        lines.push(Line {
            start,
            end: bytes.len(),
            terminator: Terminator::None,
        });
    }
    lines
}

/// The checks every line passes before any record is parsed: no git conflict marker, no byte
/// order mark, no more than `max_record_bytes`. `index` is 0-based.
pub(crate) fn check_line(
    path: &Path,
    index: usize,
    content: &[u8],
    max_record_bytes: usize,
) -> Result<()> {
    if content.len() > max_record_bytes {
        return Err(TrackerError::RecordTooLarge {
            path: path.to_path_buf(),
            line: index + 1,
            bytes: content.len(),
            limit: max_record_bytes,
        });
    }
    if content.starts_with(b"\xEF\xBB\xBF") {
        return Err(TrackerError::ByteOrderMark {
            path: path.to_path_buf(),
            line: index + 1,
        });
    }
    if let Some(marker) = conflict_marker(content) {
        return Err(TrackerError::ConflictMarkers {
            path: path.to_path_buf(),
            line: index + 1,
            marker: marker.to_string(),
        });
    }
    Ok(())
}

/// The error for line `index` (0-based) whose first invalid byte follows `valid_prefix`.
pub(crate) fn invalid_utf8(path: &Path, index: usize, valid_prefix: &[u8]) -> TrackerError {
    TrackerError::InvalidUtf8 {
        path: path.to_path_buf(),
        line: index + 1,
        column: valid_prefix.len() + 1,
    }
}

fn conflict_marker(line: &[u8]) -> Option<&'static str> {
    ["<<<<<<<", "=======", ">>>>>>>", "|||||||"]
        .into_iter()
        .find(|marker| {
            line.strip_prefix(marker.as_bytes())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(b" "))
        })
}

/// The id of the record `content` on line `index` (0-based): read from the first bytes when
/// the line starts with `{"id": "..."` (every tool we know writes `id` first), else parsed.
fn id_in<'c>(path: &Path, index: usize, content: &'c str) -> Result<Cow<'c, str>> {
    if let Some(id) = leading_id(content) {
        return Ok(Cow::Borrowed(id));
    }
    #[derive(serde::Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: Cow<'a, str>,
    }
    let parsed: IdOnly<'_> =
        serde_json::from_str(content).map_err(|e| json_error(path, index + 1, content, &e))?;
    Ok(parsed.id)
}

/// `{"id": "X"` or `{"id":"X"` at the start of a line, with no escapes in `X`.
pub(crate) fn leading_id(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("{\"id\"")?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let end = rest.find(['"', '\\'])?;
    (rest.as_bytes()[end] == b'"').then(|| &rest[..end])
}

/// Parses one line as a JSON object, mapping errors to `path:line:column`.
pub fn parse_record(path: &Path, line: usize, content: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(content) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(not_an_object(path, line, json_kind(&other))),
        Err(e) => Err(json_error(path, line, content, &e)),
    }
}

fn not_an_object(path: &Path, line: usize, found: &str) -> TrackerError {
    let hint = if found == "an array" {
        " (a file holding one JSON array converts to JSON Lines with `jq -c '.[]'`)"
    } else {
        ""
    };
    TrackerError::Json {
        path: path.to_path_buf(),
        line,
        column: 1,
        message: format!("expected a JSON object (one issue per line), found {found}{hint}"),
    }
}

/// Parses the scheduling fields of one line.
pub fn parse_head<'a>(path: &Path, line: usize, content: &'a str) -> Result<IssueHead<'a>> {
    if content.trim_start().starts_with('[') {
        // Serde would read an array as a struct's fields in order ("invalid type: map, expected
        // a string"), which hides what is wrong: the file is not JSON Lines.
        return Err(not_an_object(path, line, "an array"));
    }
    serde_json::from_str(content).map_err(|e| {
        if e.is_data() {
            TrackerError::Record {
                path: path.to_path_buf(),
                line,
                pointer: String::new(),
                message: format!("{e} (run `symphony validate` for every problem)"),
            }
        } else {
            json_error(path, line, content, &e)
        }
    })
}

fn json_error(path: &Path, line: usize, content: &str, e: &serde_json::Error) -> TrackerError {
    let column = if e.column() == 0 {
        content.len() + 1
    } else {
        e.column()
    };
    let message = e.to_string();
    // serde_json appends " at line L column C"; the location is already in front.
    let message = match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_string(),
        None => message,
    };
    TrackerError::Json {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Result<Document> {
        Document::parse(
            Path::new("issues.jsonl"),
            text.as_bytes().to_vec(),
            DEFAULT_MAX_RECORD_BYTES,
        )
    }

    #[test]
    fn lines_keep_their_terminators() {
        let d = doc("{\"id\":\"a\"}\r\n\n{\"id\":\"b\"}").unwrap();
        let terminators: Vec<_> = d.lines().iter().map(|l| l.terminator).collect();
        assert_eq!(
            terminators,
            [Terminator::CrLf, Terminator::Lf, Terminator::None]
        );
        assert_eq!(d.line_text(0), "{\"id\":\"a\"}");
        assert_eq!(d.record_count(), 2);
        assert!(!d.ends_with_newline());
        assert_eq!(d.newline(), Terminator::CrLf);
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let d = doc("{\"id\":\"a\"}\n{\"id\": \"b\" \"title\": 1}\n").unwrap();
        let err = d.record(1).unwrap_err().to_string();
        assert!(
            err.starts_with("issues.jsonl:2:12: expected `,` or `}`"),
            "{err}"
        );
    }

    #[test]
    fn non_object_line_is_refused() {
        let err = doc("[1, 2]\n").unwrap().record(0).unwrap_err().to_string();
        assert_eq!(
            err,
            "issues.jsonl:1:1: expected a JSON object (one issue per line), found an array \
             (a file holding one JSON array converts to JSON Lines with `jq -c '.[]'`)"
        );
        let err = doc("\u{feff}{\"id\": \"A-1\"}\n").unwrap_err().to_string();
        assert!(
            err.starts_with("issues.jsonl:1:1: the line starts with a UTF-8 byte order mark"),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_names_line_and_column() {
        let mut bytes = b"{\"id\":\"a\"}\n{\"id\":\"".to_vec();
        bytes.push(0xff);
        let err = Document::parse(Path::new("f.jsonl"), bytes, DEFAULT_MAX_RECORD_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f.jsonl:2:8: invalid UTF-8"), "{err}");
    }

    #[test]
    fn conflict_markers_are_refused_with_a_pointer_to_the_merge_driver() {
        let err = doc("{\"id\":\"a\"}\n<<<<<<< HEAD\n{\"id\":\"b\"}\n=======\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("issues.jsonl:2: unresolved git conflict marker `<<<<<<<`"));
        assert!(err.contains("merge-driver"));
    }

    #[test]
    fn oversized_record_is_refused() {
        let line = format!("{{\"id\":\"{}\"}}\n", "x".repeat(100));
        let err = Document::parse(Path::new("f"), line.into_bytes(), 64).unwrap_err();
        assert!(matches!(
            err,
            TrackerError::RecordTooLarge {
                line: 1,
                bytes: 109,
                limit: 64,
                ..
            }
        ));
    }

    #[test]
    fn ids_are_read_fast_or_parsed() {
        let d = doc(
            "{\"id\": \"A-1\", \"t\": 1}\n{\"t\": 2, \"id\": \"A-2\"}\n{\"id\":\"A\\u002d3\"}\n",
        )
        .unwrap();
        assert!(matches!(d.id_of(0).unwrap(), Cow::Borrowed("A-1")));
        assert_eq!(d.id_of(1).unwrap(), "A-2");
        assert_eq!(d.id_of(2).unwrap(), "A-3");
        assert_eq!(d.find("A-2").unwrap(), Some(1));
        assert_eq!(d.find("nope").unwrap(), None);
    }

    #[test]
    fn empty_file_has_no_records_and_takes_newline_terminated_appends() {
        let d = doc("").unwrap();
        assert_eq!(d.record_count(), 0);
        assert!(d.ends_with_newline());
    }
}
