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
use crate::json_style::JsonStyle;
use crate::model::IssueHead;

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

/// The issues file, read whole and split into lines.
#[derive(Debug, Clone)]
pub struct Document {
    path: PathBuf,
    text: String,
    lines: Vec<Line>,
    /// Detected on first use: reads never need it, and detection scans the whole text.
    style: OnceLock<JsonStyle>,
    stamp: Option<FileStamp>,
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
        let bytes = read_whole(&mut file, metadata.len()).map_err(|e| TrackerError::io(path, e))?;
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
        };
        document.check_lines(max_record_bytes)?;
        Ok(document)
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

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every physical line, blank ones included.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// Content of the line at `index` (0-based), terminator excluded.
    pub fn line_text(&self, index: usize) -> &str {
        self.lines
            .get(index)
            .map_or("", |line| &self.text[line.start..line.end])
    }

    /// The file's detected serialization style.
    pub fn style(&self) -> JsonStyle {
        *self
            .style
            .get_or_init(|| JsonStyle::detect_file(&self.text))
    }

    /// `(index, content)` of every line holding a record; blank lines are skipped.
    pub fn record_lines(&self) -> impl Iterator<Item = (usize, &str)> {
        self.lines.iter().enumerate().filter_map(|(index, line)| {
            let content = &self.text[line.start..line.end];
            (!content.trim().is_empty()).then_some((index, content))
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
        parse_record(&self.path, index + 1, self.line_text(index))
    }

    /// Parses the scheduling fields of the record on line `index`.
    pub fn head(&self, index: usize) -> Result<IssueHead<'_>> {
        parse_head(&self.path, index + 1, self.line_text(index))
    }

    /// The scheduling fields of every record, in file order. Large files are parsed by
    /// several threads, each over a contiguous run of lines.
    ///
    /// Errors: the first line (in file order) that is not a record of the right shape.
    pub fn heads(&self) -> Result<Vec<IssueHead<'_>>> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        if self.lines.len() < PARALLEL_PARSE_LINES || threads < 2 {
            return self.heads_of(0..self.lines.len());
        }
        let slice = self.lines.len().div_ceil(threads);
        let parts: Vec<Result<Vec<IssueHead<'_>>>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..self.lines.len())
                .step_by(slice)
                .map(|start| {
                    let end = (start + slice).min(self.lines.len());
                    scope.spawn(move || self.heads_of(start..end))
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| {
                    worker
                        .join()
                        .unwrap_or_else(|e| std::panic::resume_unwind(e))
                })
                .collect()
        });
        let mut heads = Vec::with_capacity(self.lines.len());
        for part in parts {
            heads.extend(part?);
        }
        Ok(heads)
    }

    fn heads_of(&self, lines: std::ops::Range<usize>) -> Result<Vec<IssueHead<'_>>> {
        let mut heads = Vec::with_capacity(lines.len());
        for index in lines {
            let content = self.line_text(index);
            if !content.trim().is_empty() {
                heads.push(parse_head(&self.path, index + 1, content)?);
            }
        }
        Ok(heads)
    }

    /// The id of the record on line `index`, read without parsing the whole record when the
    /// line starts with `{"id": "..."` (every tool we know writes `id` first).
    pub fn id_of(&self, index: usize) -> Result<Cow<'_, str>> {
        let content = self.line_text(index);
        if let Some(id) = leading_id(content) {
            return Ok(Cow::Borrowed(id));
        }
        #[derive(serde::Deserialize)]
        struct IdOnly<'a> {
            #[serde(borrow)]
            id: Cow<'a, str>,
        }
        let parsed: IdOnly<'_> = serde_json::from_str(content)
            .map_err(|e| json_error(&self.path, index + 1, content, &e))?;
        Ok(parsed.id)
    }

    /// Line index of the record with `id`, if any.
    pub fn find(&self, id: &str) -> Result<Option<usize>> {
        for (index, _) in self.record_lines() {
            if self.id_of(index)? == id {
                return Ok(Some(index));
            }
        }
        Ok(None)
    }
}

/// Files with at least this many lines have their heads parsed by several threads.
const PARALLEL_PARSE_LINES: usize = 2048;

/// Files at least this large are read by several threads at once.
const PARALLEL_READ_BYTES: u64 = 4 << 20;

/// The whole content of `file`, whose length was `len` when opened.
///
/// Large files are read in parallel slices with positioned reads: on a small VM most of the
/// cost of reading a 10 MB file is faulting in the fresh buffer's pages, which proceeds on
/// every core at once. A file that grew meanwhile is read again sequentially, to its end.
fn read_whole(file: &mut std::fs::File, len: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let Ok(size) = usize::try_from(len) else {
        return Err(std::io::ErrorKind::FileTooLarge.into());
    };
    if len < PARALLEL_READ_BYTES || threads < 2 {
        let mut bytes = Vec::with_capacity(size);
        std::io::Read::read_to_end(file, &mut bytes)?;
        return Ok(bytes);
    }
    let mut bytes = vec![0u8; size];
    let slice = size.div_ceil(threads);
    let file = &*file;
    std::thread::scope(|scope| {
        let readers: Vec<_> = bytes
            .chunks_mut(slice)
            .enumerate()
            .map(|(i, chunk)| scope.spawn(move || file.read_exact_at(chunk, (i * slice) as u64)))
            .collect();
        readers.into_iter().try_for_each(|reader| {
            reader
                .join()
                .unwrap_or(Err(std::io::ErrorKind::Other.into()))
        })
    })?;
    let mut probe = [0u8; 1];
    if file.read_at(&mut probe, len)? != 0 {
        let mut file = file;
        std::io::Seek::rewind(&mut file)?;
        bytes.clear();
        std::io::Read::read_to_end(&mut file, &mut bytes)?;
    }
    Ok(bytes)
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

/// The checks every line passes before any record is parsed: no git conflict marker, no more
/// than `max_record_bytes`. `index` is 0-based.
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

/// `{"id": "X"` or `{"id":"X"` at the start of a line, with no escapes in `X`.
fn leading_id(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("{\"id\"")?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let end = rest.find(['"', '\\'])?;
    (rest.as_bytes()[end] == b'"').then(|| &rest[..end])
}

/// Parses one line as a JSON object, mapping errors to `path:line:column`.
pub fn parse_record(path: &Path, line: usize, content: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(content) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(TrackerError::Json {
            path: path.to_path_buf(),
            line,
            column: 1,
            message: format!(
                "expected a JSON object (one issue per line), found {}",
                json_kind(&other)
            ),
        }),
        Err(e) => Err(json_error(path, line, content, &e)),
    }
}

/// Parses the scheduling fields of one line.
pub fn parse_head<'a>(path: &Path, line: usize, content: &'a str) -> Result<IssueHead<'a>> {
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
            "issues.jsonl:1:1: expected a JSON object (one issue per line), found an array"
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
