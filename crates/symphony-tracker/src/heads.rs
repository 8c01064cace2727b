//! The scheduling fields of every record, streamed: what `list` and `ready` read.
//!
//! On this class of VM a page fault costs several microseconds, so reading a 10 MB file whole
//! into a fresh buffer (2,800 faults) costs more than parsing it. The scan reads 256 KiB at
//! a time into one reused buffer and keeps only the parsed heads, in vectors reserved up
//! front so they never move while growing.
//!
//! Every line gets the checks [`crate::Document`] applies — record size, conflict markers,
//! UTF-8 — and errors are reported for the first bad line in file order, with its location.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::document::{check_line, invalid_utf8, parse_head};
use crate::error::{Result, TrackerError};
use crate::model::IssueHead;

/// Bytes read at a time.
const BATCH_BYTES: usize = 256 * 1024;

/// The heads of a file, in file order.
#[derive(Debug, Default)]
pub struct Heads {
    /// One per record line.
    pub heads: Vec<IssueHead<'static>>,
    /// The 1-based line of each head.
    pub lines: Vec<usize>,
}

impl Heads {
    /// Errors with [`TrackerError::DuplicateId`] at the first id defined twice: commands
    /// refuse to guess which record is meant.
    pub fn check_unique_ids(&self, path: &Path) -> Result<()> {
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(self.heads.len());
        for (head, &line) in self.heads.iter().zip(&self.lines) {
            if let Some(&first_line) = seen.get(head.id.as_ref()) {
                return Err(TrackerError::DuplicateId {
                    path: path.to_path_buf(),
                    line,
                    first_line,
                    id: head.id.to_string(),
                });
            }
            seen.insert(&head.id, line);
        }
        Ok(())
    }
}

/// Files at least this large are scanned by several threads, each over a byte range.
const PARALLEL_SCAN_BYTES: u64 = 2 << 20;

/// Streams the heads of the file at `path`.
///
/// Errors: [`TrackerError::Missing`], [`TrackerError::Io`], and for the first bad line
/// [`TrackerError::RecordTooLarge`], [`TrackerError::ConflictMarkers`],
/// [`TrackerError::InvalidUtf8`], [`TrackerError::Json`] or [`TrackerError::Record`].
pub fn scan(path: &Path, max_record_bytes: usize) -> Result<Heads> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TrackerError::Missing {
            path: path.to_path_buf(),
        },
        _ => TrackerError::io(path, e),
    })?;
    let len = file
        .metadata()
        .map_err(|e| TrackerError::io(path, e))?
        .len();
    let workers = if len >= PARALLEL_SCAN_BYTES {
        std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
    } else {
        1
    };
    let slice = len.div_ceil(workers).max(1);
    let ranges: Vec<(u64, u64)> = (0..workers)
        .map(|k| (k * slice, ((k + 1) * slice).min(len)))
        .filter(|(start, end)| start < end || *start == 0)
        .collect();
    let parts: Vec<Result<Part>> = std::thread::scope(|scope| {
        let workers: Vec<_> = ranges
            .iter()
            .enumerate()
            .map(|(k, &(start, end))| {
                // The first part's vectors are reserved for the whole file, so the others
                // are appended to them without moving them.
                let reserve_to = if k == 0 { len } else { end };
                let file = &file;
                scope.spawn(move || {
                    scan_range(path, file, start, end, reserve_to - start, max_record_bytes)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut heads = Heads::default();
    let mut offset = 0;
    for part in parts {
        let part = part.map_err(|e| relocate(e, offset))?;
        if offset == 0 {
            heads = part.heads;
        } else {
            heads.heads.extend(part.heads.heads);
            heads
                .lines
                .extend(part.heads.lines.iter().map(|line| line + offset));
        }
        offset += part.lines;
    }
    Ok(heads)
}

/// The heads of the lines that start in one byte range, numbered from 1 at the range's
/// first line.
struct Part {
    heads: Heads,
    /// Lines that start in the range.
    lines: usize,
}

/// Scans the lines that start in `start..end`: a line that starts before `start` belongs to
/// the previous range, and the last line is read to its end even past `end`.
fn scan_range(
    path: &Path,
    file: &std::fs::File,
    start: u64,
    end: u64,
    reserve_bytes: u64,
    max_record_bytes: usize,
) -> Result<Part> {
    use std::os::unix::fs::FileExt;
    // Reserved, not touched: only the pages the heads fill are ever faulted in, and the
    // vectors never move while growing (one head per 256 bytes of file is more than any
    // real issue file has).
    let expected = usize::try_from(reserve_bytes / 256).unwrap_or(0) + 16;
    let mut part = Part {
        heads: Heads {
            heads: Vec::with_capacity(expected),
            lines: Vec::with_capacity(expected),
        },
        lines: 0,
    };
    let io = |e| TrackerError::io(path, e);
    let mut buffer: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    // File offset of buffer[0], and whether buffer[0] starts a line of this range.
    let mut at = start;
    let mut aligned = start == 0;
    if !aligned {
        let mut previous = [0u8; 1];
        file.read_exact_at(&mut previous, start - 1).map_err(io)?;
        aligned = previous[0] == b'\n';
    }
    loop {
        let filled = buffer.len();
        buffer.resize(filled + BATCH_BYTES, 0);
        let read = file
            .read_at(&mut buffer[filled..], at + filled as u64)
            .map_err(io)?;
        buffer.truncate(filled + read);
        if !aligned {
            // Skip the rest of the line the previous range owns.
            match memchr::memchr(b'\n', &buffer) {
                Some(newline) => {
                    buffer.drain(..=newline);
                    at += newline as u64 + 1;
                    aligned = true;
                    if at >= end {
                        return Ok(part);
                    }
                }
                None if read == 0 => return Ok(part),
                None => {
                    at += buffer.len() as u64;
                    buffer.clear();
                    continue;
                }
            }
        }
        // Whole lines in the buffer, up to the first one that starts at or after `end`.
        let mut complete = match memchr::memrchr(b'\n', &buffer) {
            Some(newline) => newline + 1,
            None if read == 0 => buffer.len(),
            None if buffer.len() > max_record_bytes + 1 => {
                let mut reader = ReadAt {
                    file,
                    at: at + buffer.len() as u64,
                };
                return Err(too_large(
                    path,
                    &mut reader,
                    part.lines,
                    buffer.len(),
                    max_record_bytes,
                ));
            }
            None => continue,
        };
        let beyond = usize::try_from(end.saturating_sub(at)).unwrap_or(usize::MAX);
        let finished = read == 0 || complete > beyond;
        if complete > beyond {
            // The line containing byte `beyond - 1` is the last one of this range.
            complete = memchr::memchr(b'\n', &buffer[beyond.saturating_sub(1)..])
                .map_or(buffer.len(), |newline| {
                    beyond.saturating_sub(1) + newline + 1
                });
        }
        part.lines = parse_lines(
            path,
            max_record_bytes,
            &buffer[..complete],
            part.lines,
            &mut part.heads,
        )?;
        if finished {
            return Ok(part);
        }
        buffer.drain(..complete);
        at += complete as u64;
        if at >= end {
            return Ok(part);
        }
    }
}

/// Sequential reads from a file through positioned reads.
struct ReadAt<'f> {
    file: &'f std::fs::File,
    at: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = std::os::unix::fs::FileExt::read_at(self.file, buffer, self.at)?;
        self.at += read as u64;
        Ok(read)
    }
}

/// `error`, from a range whose first line is file line `offset + 1`, with its line made
/// absolute.
fn relocate(error: TrackerError, offset: usize) -> TrackerError {
    let mut error = error;
    match &mut error {
        TrackerError::InvalidUtf8 { line, .. }
        | TrackerError::Json { line, .. }
        | TrackerError::Record { line, .. }
        | TrackerError::RecordTooLarge { line, .. }
        | TrackerError::ConflictMarkers { line, .. } => *line += offset,
        _ => {}
    }
    error
}

/// Parses the whole lines in `bytes`, the first being line `index` (0-based), onto
/// `heads`; returns the index of the line after them.
fn parse_lines(
    path: &Path,
    max_record_bytes: usize,
    bytes: &[u8],
    mut index: usize,
    heads: &mut Heads,
) -> Result<usize> {
    let mut start = 0;
    while start < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |at| start + at);
        let mut content = &bytes[start..end];
        if let Some(stripped) = content.strip_suffix(b"\r") {
            content = stripped;
        }
        if !content.iter().all(u8::is_ascii_whitespace) {
            check_line(path, index, content, max_record_bytes)?;
            let text = std::str::from_utf8(content)
                .map_err(|e| invalid_utf8(path, index, &content[..e.valid_up_to()]))?;
            heads
                .heads
                .push(parse_head(path, index + 1, text)?.into_owned());
            heads.lines.push(index + 1);
        }
        start = end + 1;
        index += 1;
    }
    Ok(index)
}

/// The error for a line (0-based `index`) longer than the limit, of which `bytes` were read:
/// the rest of it is counted, not kept.
fn too_large(
    path: &Path,
    file: &mut impl Read,
    index: usize,
    mut bytes: usize,
    limit: usize,
) -> TrackerError {
    let mut chunk = vec![0u8; BATCH_BYTES];
    let mut carriage_return = false;
    loop {
        match file.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => match memchr::memchr(b'\n', &chunk[..read]) {
                Some(at) => {
                    bytes += at;
                    carriage_return = at > 0 && chunk[at - 1] == b'\r';
                    break;
                }
                None => {
                    bytes += read;
                    carriage_return = chunk[read - 1] == b'\r';
                }
            },
        }
    }
    TrackerError::RecordTooLarge {
        path: path.to_path_buf(),
        line: index + 1,
        bytes: bytes - usize::from(carriage_return),
        limit,
    }
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

    fn summary(heads: &[IssueHead<'_>]) -> Vec<String> {
        heads
            .iter()
            .map(|h| {
                format!(
                    "{} {} {:?} {:?}",
                    h.id,
                    h.state,
                    h.priority,
                    h.blocked_by.iter().map(|b| &b.id).collect::<Vec<_>>()
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
        for text in [SPACED.to_string(), COMPACT.to_string(), big_text()] {
            let doc = Document::parse(
                Path::new("f"),
                text.clone().into_bytes(),
                DEFAULT_MAX_RECORD_BYTES,
            )
            .unwrap();
            let expected = doc.heads().unwrap();
            let lines: Vec<usize> = doc.record_lines().map(|(i, _)| i + 1).collect();
            let streamed = scan_text(text.as_bytes(), DEFAULT_MAX_RECORD_BYTES).unwrap();
            assert_eq!(summary(&streamed.heads), summary(&expected));
            assert_eq!(streamed.lines, lines);
        }
    }

    #[test]
    fn the_first_bad_line_in_file_order_is_reported() {
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
        let err = scan_text(&text, DEFAULT_MAX_RECORD_BYTES)
            .unwrap_err()
            .to_string();
        let line = memchr::memchr_iter(b'\n', &text[..second_half]).count() + 1;
        assert!(
            err.contains(&format!("f:{line}:8: expected value")),
            "{err}"
        );
    }

    #[test]
    fn an_oversized_line_is_measured_whole_and_named() {
        let mut text = COMPACT.as_bytes().to_vec();
        text.extend_from_slice(b"{\"id\":\"XSY-0037\",\"description\":\"");
        text.extend(std::iter::repeat_n(b'a', 3 * BATCH_BYTES));
        text.extend_from_slice(b"\"}\r\n{\"id\":\"XSY-0038\"}\n");
        let err = scan_text(&text, 100_000).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "f:37: record is {} bytes, larger than the 100000-byte limit",
                3 * BATCH_BYTES + 34
            )),
            "{err}"
        );
        let mut text = COMPACT.as_bytes().to_vec();
        text.extend_from_slice(b"\xff\n");
        let err = scan_text(&text, DEFAULT_MAX_RECORD_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("f:37:1: invalid UTF-8"), "{err}");
    }

    #[test]
    fn every_split_point_gives_each_line_to_exactly_one_range() {
        let mut text: String = COMPACT
            .lines()
            .take(6)
            .map(|l| format!("{l}\r\n\n"))
            .collect();
        text.push_str(COMPACT.lines().nth(7).unwrap()); // no final newline
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues.jsonl");
        std::fs::write(&path, &text).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let len = text.len() as u64;
        let whole = scan_range(&path, &file, 0, len, len, DEFAULT_MAX_RECORD_BYTES).unwrap();
        assert_eq!(whole.heads.lines, [1, 3, 5, 7, 9, 11, 13]);
        // Around every line boundary (where the cases are), and in the middle of lines.
        let splits = text
            .match_indices('\n')
            .flat_map(|(at, _)| at.saturating_sub(2)..at + 3)
            .chain((1..len as usize).step_by(97))
            .filter(|&at| at > 0 && at < len as usize)
            .map(|at| at as u64);
        for split in splits {
            let a = scan_range(&path, &file, 0, split, len, DEFAULT_MAX_RECORD_BYTES).unwrap();
            let b = scan_range(&path, &file, split, len, len, DEFAULT_MAX_RECORD_BYTES).unwrap();
            let lines: Vec<usize> = a
                .heads
                .lines
                .iter()
                .copied()
                .chain(b.heads.lines.iter().map(|l| l + a.lines))
                .collect();
            assert_eq!(lines, whole.heads.lines, "split at {split}");
            assert_eq!(a.lines + b.lines, whole.lines, "split at {split}");
        }
    }

    #[test]
    fn errors_in_a_later_range_name_their_absolute_line() {
        let mut text = big_text();
        text.push_str("\n{\"id\":\"Z\",\"description\":\"");
        text.push_str(&"a".repeat(5000));
        text.push_str("\"}\n");
        let lines = text.lines().count();
        let err = scan_text(text.as_bytes(), 4096).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "f:{lines}: record is 5027 bytes, larger than the 4096-byte limit"
            )),
            "{err}"
        );
    }

    #[test]
    fn empty_and_missing_files() {
        assert!(scan_text(b"", 100).unwrap().heads.is_empty());
        let err = scan(Path::new("/nonexistent/issues.jsonl"), 100).unwrap_err();
        assert!(matches!(err, TrackerError::Missing { .. }));
    }

    #[test]
    fn duplicate_ids_are_refused_with_both_lines() {
        let text = format!("{COMPACT}{}\n", COMPACT.lines().nth(4).unwrap());
        let heads = scan_text(text.as_bytes(), DEFAULT_MAX_RECORD_BYTES).unwrap();
        let err = heads
            .check_unique_ids(Path::new("f"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "f:37: duplicate id \"XSY-0005\" (first defined on line 5)"
        );
    }
}
