//! The scheduling fields of every record, streamed: what `list` and `ready` read.
//!
//! The file is streamed ([`crate::scan`]), never held whole: only the parsed heads stay in
//! memory. Every line gets the checks [`crate::Document`] applies, and errors name the first
//! bad line in file order.

use std::collections::HashMap;
use std::path::Path;

use crate::document::parse_head;
use crate::error::{Result, TrackerError};
use crate::model::IssueHead;
use crate::scan::ScannedLine;

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

/// Streams the heads of the file at `path` ([`crate::scan`]): only the parsed heads are
/// kept, in vectors reserved up front so they never move while growing.
///
/// Errors: [`TrackerError::Missing`], [`TrackerError::Io`], and for the first bad line
/// [`TrackerError::RecordTooLarge`], [`TrackerError::ConflictMarkers`],
/// [`TrackerError::InvalidUtf8`], [`TrackerError::Json`] or [`TrackerError::Record`].
pub fn scan(path: &Path, max_record_bytes: usize) -> Result<Heads> {
    let reserve = |bytes: u64| {
        // Reserved, not touched: only the pages the heads fill are ever faulted in. A record
        // with the required fields takes over 250 bytes and real ones 1–20 KB, so one head
        // per 512 bytes rarely needs to grow (and growing is only slower).
        let expected = usize::try_from(bytes / 512).unwrap_or(0) + 16;
        Heads {
            heads: Vec::with_capacity(expected),
            lines: Vec::with_capacity(expected),
        }
    };
    let visit = |heads: &mut Heads, line: ScannedLine<'_>| {
        if !line.content.trim().is_empty() {
            let head = parse_head(path, line.index + 1, line.content)?;
            heads.heads.push(head.into_owned());
            heads.lines.push(line.index + 1);
        }
        Ok(())
    };
    let scanned = crate::scan::scan(path, max_record_bytes, reserve, visit)?;
    let mut parts = scanned.parts.into_iter();
    let Some((_, mut heads)) = parts.next() else {
        return Ok(Heads::default());
    };
    for (first, part) in parts {
        heads.heads.extend(part.heads);
        heads
            .lines
            .extend(part.lines.iter().map(|line| line + first));
    }
    Ok(heads)
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
