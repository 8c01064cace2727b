//! Streaming the issues file line by line without holding it in memory: the reading behind
//! [`crate::heads`] and behind the skeleton documents transactions run on.
//!
//! On this class of VM a page fault costs several microseconds, so reading a 10 MB file
//! whole into a fresh buffer (2,800 faults) costs more than parsing it. A scan reads 64 KiB
//! at a time into one buffer per thread, refilled in place (a larger buffer only costs more
//! faults; a smaller file gets a smaller one). Files over 2 MB are split into byte ranges
//! scanned in parallel: a line belongs to the range it starts in, and the last line of a range
//! is read to its end.
//!
//! Every line gets the checks [`crate::Document`] applies — record size, conflict markers,
//! UTF-8 — before the visitor sees it, and the error returned is the first bad line's in
//! file order, with its absolute line number.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::document::{Terminator, check_line, invalid_utf8};
use crate::durable::FileStamp;
use crate::error::{Result, TrackerError};

/// Bytes read at a time (at most; the buffer grows for a longer line).
const BATCH_BYTES: usize = 64 * 1024;

/// Files at least this large are scanned by several threads, each over a byte range.
const PARALLEL_SCAN_BYTES: u64 = 2 << 20;

/// One checked line, as a visitor sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScannedLine<'b> {
    /// 0-based line number within the range (see [`Scan::parts`]).
    pub index: usize,
    /// File offset of the line's first byte.
    pub start: u64,
    /// The line without its terminator.
    pub content: &'b str,
    /// How the line ends.
    pub terminator: Terminator,
}

/// What a scan produced.
#[derive(Debug)]
pub(crate) struct Scan<T> {
    /// The version of the file that was scanned (taken when it was opened).
    pub stamp: FileStamp,
    /// Each range's visitor state, in file order, with the absolute 0-based number of the
    /// range's first line.
    pub parts: Vec<(usize, T)>,
    /// Number of lines in the file.
    pub lines: usize,
}

/// Scans the file at `path`: `init(reserve_bytes)` makes each range's state (the first
/// range is told the whole file's length, so its vectors can be reserved once and the others
/// appended without moving them); `visit` sees every line of the range in order, with a
/// range-local index. Errors from checks or from `visit` are reported with absolute lines.
///
/// Errors: [`TrackerError::Missing`], [`TrackerError::Io`], the first bad line's
/// [`TrackerError::RecordTooLarge`], [`TrackerError::ConflictMarkers`] or
/// [`TrackerError::InvalidUtf8`], and whatever `visit` returns.
pub(crate) fn scan<T: Send>(
    path: &Path,
    max_record_bytes: usize,
    init: impl Fn(u64) -> T + Sync,
    visit: impl Fn(&mut T, ScannedLine<'_>) -> Result<()> + Sync,
) -> Result<Scan<T>> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TrackerError::Missing {
            path: path.to_path_buf(),
        },
        _ => TrackerError::io(path, e),
    })?;
    let metadata = file.metadata().map_err(|e| TrackerError::io(path, e))?;
    let len = metadata.len();
    let workers = if len >= PARALLEL_SCAN_BYTES {
        std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
    } else {
        1
    };
    let slice = len.div_ceil(workers).max(1);
    let ranges: Vec<(u64, u64)> = (0..workers)
        .map(|k| (k * slice, ((k + 1) * slice).min(len)))
        .filter(|&(start, end)| start < end || start == 0)
        .collect();
    let scanner = Scanner {
        path,
        file: &file,
        max_record_bytes,
    };
    let results: Vec<Result<(T, usize)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = ranges
            .iter()
            .enumerate()
            .map(|(k, &(start, end))| {
                let (scanner, init, visit) = (&scanner, &init, &visit);
                let reserve = if k == 0 { len } else { end - start };
                scope.spawn(move || {
                    let mut state = init(reserve);
                    let lines = scanner.range(start, end, &mut state, visit)?;
                    Ok((state, lines))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut parts = Vec::with_capacity(results.len());
    let mut lines = 0;
    for result in results {
        let (state, count) = result.map_err(|e| relocate(e, lines))?;
        parts.push((lines, state));
        lines += count;
    }
    Ok(Scan {
        stamp: FileStamp::of(&metadata),
        parts,
        lines,
    })
}

struct Scanner<'s> {
    path: &'s Path,
    file: &'s std::fs::File,
    max_record_bytes: usize,
}

impl Scanner<'_> {
    /// Visits the lines that start in `start..end`; returns how many there were.
    fn range<T>(
        &self,
        start: u64,
        end: u64,
        state: &mut T,
        visit: &impl Fn(&mut T, ScannedLine<'_>) -> Result<()>,
    ) -> Result<usize> {
        let io = |e| TrackerError::io(self.path, e);
        // Zeroed once and refilled in place, so only its pages are ever faulted in; it grows
        // only for a line longer than itself.
        let size = usize::try_from(end - start).map_or(BATCH_BYTES, |len| len + 1);
        let mut buffer = vec![0u8; size.clamp(4096, BATCH_BYTES)];
        // buffer[..filled] holds the file's bytes from offset `at`; whether buffer[0] starts
        // a line of this range.
        let mut filled = 0;
        let mut at = start;
        let mut aligned = start == 0;
        if !aligned {
            let mut previous = [0u8; 1];
            self.file
                .read_exact_at(&mut previous, start - 1)
                .map_err(io)?;
            aligned = previous[0] == b'\n';
        }
        let mut index = 0;
        loop {
            if filled == buffer.len() {
                buffer.resize(2 * buffer.len(), 0);
            }
            let read = self
                .file
                .read_at(&mut buffer[filled..], at + filled as u64)
                .map_err(io)?;
            filled += read;
            if !aligned {
                // The rest of a line the previous range owns.
                match memchr::memchr(b'\n', &buffer[..filled]) {
                    Some(newline) => {
                        buffer.copy_within(newline + 1..filled, 0);
                        filled -= newline + 1;
                        at += newline as u64 + 1;
                        aligned = true;
                        if at >= end {
                            return Ok(index);
                        }
                    }
                    None if read == 0 => return Ok(index),
                    None => {
                        at += filled as u64;
                        filled = 0;
                        continue;
                    }
                }
            }
            let mut complete = match memchr::memrchr(b'\n', &buffer[..filled]) {
                Some(newline) => newline + 1,
                None if read == 0 => filled,
                None if filled > self.max_record_bytes + 1 => {
                    let rest = ReadAt {
                        file: self.file,
                        at: at + filled as u64,
                    };
                    return Err(self.too_large(rest, index, filled));
                }
                None => continue,
            };
            let beyond = usize::try_from(end.saturating_sub(at)).unwrap_or(usize::MAX);
            let finished = read == 0 || complete > beyond;
            if complete > beyond {
                // The line holding the range's last byte is its last line.
                let last = beyond.saturating_sub(1);
                complete = memchr::memchr(b'\n', &buffer[last..filled])
                    .map_or(filled, |newline| last + newline + 1);
            }
            index = self.lines(&buffer[..complete], at, index, state, visit)?;
            buffer.copy_within(complete..filled, 0);
            filled -= complete;
            at += complete as u64;
            if finished || at >= end {
                return Ok(index);
            }
        }
    }

    /// Checks and visits the whole lines in `bytes` (file offset `at`), the first being
    /// range-local line `index`; returns the index after them.
    fn lines<T>(
        &self,
        bytes: &[u8],
        at: u64,
        mut index: usize,
        state: &mut T,
        visit: &impl Fn(&mut T, ScannedLine<'_>) -> Result<()>,
    ) -> Result<usize> {
        let mut start = 0;
        while start < bytes.len() {
            let newline = memchr::memchr(b'\n', &bytes[start..]).map(|at| start + at);
            let end = newline.unwrap_or(bytes.len());
            let (content, terminator) = match (newline, bytes[start..end].strip_suffix(b"\r")) {
                (None, _) => (&bytes[start..end], Terminator::None),
                (Some(_), Some(stripped)) => (stripped, Terminator::CrLf),
                (Some(_), None) => (&bytes[start..end], Terminator::Lf),
            };
            check_line(self.path, index, content, self.max_record_bytes)?;
            let content = std::str::from_utf8(content)
                .map_err(|e| invalid_utf8(self.path, index, &content[..e.valid_up_to()]))?;
            visit(
                state,
                ScannedLine {
                    index,
                    start: at + start as u64,
                    content,
                    terminator,
                },
            )?;
            start = end + 1;
            index += 1;
        }
        Ok(index)
    }

    /// The error for line `index` longer than the limit, of which `bytes` were read: the
    /// rest of it is counted, not kept.
    fn too_large(&self, mut rest: impl Read, index: usize, mut bytes: usize) -> TrackerError {
        let mut chunk = vec![0u8; BATCH_BYTES];
        let mut carriage_return = false;
        loop {
            match rest.read(&mut chunk) {
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
            path: self.path.to_path_buf(),
            line: index + 1,
            bytes: bytes - usize::from(carriage_return),
            limit: self.max_record_bytes,
        }
    }
}

/// Sequential reads through positioned reads.
struct ReadAt<'f> {
    file: &'f std::fs::File,
    at: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.file.read_at(buffer, self.at)?;
        self.at += read as u64;
        Ok(read)
    }
}

/// `error`, from a range whose first line is file line `offset + 1`, with its line made
/// absolute.
pub(crate) fn relocate(mut error: TrackerError, offset: usize) -> TrackerError {
    match &mut error {
        TrackerError::InvalidUtf8 { line, .. }
        | TrackerError::Json { line, .. }
        | TrackerError::Record { line, .. }
        | TrackerError::RecordTooLarge { line, .. }
        | TrackerError::ConflictMarkers { line, .. }
        | TrackerError::ByteOrderMark { line, .. } => *line += offset,
        _ => {}
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{DEFAULT_MAX_RECORD_BYTES, Document};

    const COMPACT: &str = include_str!("../tests/fixtures/x0x-symphony.jsonl");

    /// Every line's absolute number, file offset, content and terminator.
    fn lines_of(path: &Path, max: usize) -> Result<Vec<(usize, u64, String, Terminator)>> {
        let scan = scan(
            path,
            max,
            |_| Vec::new(),
            |lines, line| {
                lines.push((
                    line.index,
                    line.start,
                    line.content.to_string(),
                    line.terminator,
                ));
                Ok(())
            },
        )?;
        Ok(scan
            .parts
            .into_iter()
            .flat_map(|(first, lines)| {
                lines
                    .into_iter()
                    .map(move |(index, start, content, end)| (first + index, start, content, end))
            })
            .collect())
    }

    fn expected(text: &str) -> Vec<(usize, u64, String, Terminator)> {
        let doc = Document::parse(Path::new("f"), text.into(), DEFAULT_MAX_RECORD_BYTES).unwrap();
        doc.lines()
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    i,
                    l.start as u64,
                    doc.line_text(i).to_string(),
                    l.terminator,
                )
            })
            .collect()
    }

    #[test]
    fn a_parallel_scan_sees_exactly_the_documents_lines() {
        let mut text = String::new();
        for round in 0..70 {
            for (i, line) in COMPACT.lines().enumerate() {
                text.push_str(&line.replacen("XSY-", &format!("R{round}-"), 1));
                text.push_str(if i % 5 == 0 { "\r\n" } else { "\n" });
                if i % 9 == 0 {
                    text.push('\n');
                }
            }
        }
        text.push_str(COMPACT.lines().next().unwrap());
        assert!(text.len() as u64 > PARALLEL_SCAN_BYTES);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues.jsonl");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(
            lines_of(&path, DEFAULT_MAX_RECORD_BYTES).unwrap(),
            expected(&text)
        );
    }

    #[test]
    fn every_split_point_gives_each_line_to_exactly_one_range() {
        let mut text: String = COMPACT
            .lines()
            .take(6)
            .map(|l| format!("{l}\r\n\n"))
            .collect();
        // Longer than the smallest read buffer.
        text.push_str(&format!(
            "{{\"id\":\"L\",\"d\":\"{}\"}}\n",
            "x".repeat(9000)
        ));
        text.push_str(COMPACT.lines().nth(7).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues.jsonl");
        std::fs::write(&path, &text).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let scanner = Scanner {
            path: &path,
            file: &file,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        };
        let visit = |starts: &mut Vec<u64>, line: ScannedLine<'_>| {
            starts.push(line.start);
            Ok(())
        };
        let len = text.len() as u64;
        let mut whole = Vec::new();
        scanner.range(0, len, &mut whole, &visit).unwrap();
        assert_eq!(whole.len(), 14);
        // Around every line boundary (where the cases are), and in the middle of lines.
        let splits = text
            .match_indices('\n')
            .flat_map(|(at, _)| at.saturating_sub(2)..at + 3)
            .chain((1..text.len()).step_by(97))
            .filter(|&at| at > 0 && at < text.len())
            .map(|at| at as u64);
        for split in splits {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let first = scanner.range(0, split, &mut a, &visit).unwrap();
            let second = scanner.range(split, len, &mut b, &visit).unwrap();
            a.extend(b);
            assert_eq!(a, whole, "split at {split}");
            assert_eq!(first + second, 14, "split at {split}");
        }
    }

    #[test]
    fn the_first_bad_line_is_reported_with_its_absolute_number() {
        let mut text = String::new();
        while text.len() < 3 << 20 {
            text.push_str(COMPACT);
        }
        let good_lines = text.lines().count();
        text.push_str("{\"id\":\"Z\",\"description\":\"");
        text.push_str(&"a".repeat(5000));
        text.push_str("\"}\r\n<<<<<<< HEAD\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues.jsonl");
        std::fs::write(&path, &text).unwrap();
        let err = lines_of(&path, 4096).unwrap_err();
        assert!(
            matches!(err, TrackerError::RecordTooLarge { line, bytes: 5027, .. } if line == good_lines + 1),
            "{err}"
        );
        let err = lines_of(&path, 100).unwrap_err();
        assert!(
            matches!(err, TrackerError::RecordTooLarge { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_runaway_line_longer_than_a_read_is_measured_whole() {
        let mut text = COMPACT.to_string();
        text.push_str(&"x".repeat(3 * BATCH_BYTES));
        text.push_str("\r\n{}\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues.jsonl");
        std::fs::write(&path, &text).unwrap();
        let err = lines_of(&path, BATCH_BYTES).unwrap_err();
        assert!(
            matches!(err, TrackerError::RecordTooLarge { line: 37, bytes, .. } if bytes == 3 * BATCH_BYTES),
            "{err}"
        );
    }
}
