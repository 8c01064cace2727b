//! A cache of the issues file's skeleton under `.symphony/`: every line's length,
//! terminator and record id, the file's style, and the version (stamp) they describe.
//!
//! A transaction over a large file otherwise starts by scanning all of it
//! ([`Document::scan`]) to learn where the records are; with a current index it starts from
//! this file instead (tens of bytes per record). The index is only a cache: it is used when
//! its stamp equals the file's current one and its path is the file's; it is written after a
//! scan, extended in place after an append, rewritten from the transaction's own layout after
//! a rewrite (and only if that layout adds up to the new file's length); any doubt (a missing,
//! torn or foreign index) means a scan. Lines read through a skeleton are checked against it
//! (id and terminator), so an in-place edit that kept the file's length and time is caught.

use std::path::Path;

use crate::document::{Document, IdTable, Line, Terminator};
use crate::durable::FileStamp;
use crate::json_style::JsonStyle;

/// File name of the index inside the state directory.
pub const INDEX_FILE: &str = "index";

const HEADER: &str = "symphony-index 1";

/// The skeleton of the file at `path` from the index in `state_dir`, if the index describes
/// the file as it is now.
pub(crate) fn load(state_dir: &Path, path: &Path) -> Option<Document> {
    let text = std::fs::read_to_string(state_dir.join(INDEX_FILE)).ok()?;
    let current = FileStamp::current(path).ok()??;
    let mut rows = text.split_terminator('\n');
    let (header, key_row) = (rows.next()?, rows.next()?);
    if header != HEADER || key_row != key(path)? {
        return None;
    }
    let (stamp, style, count) = trailer(rows.next_back()?)?;
    if stamp != current {
        return None;
    }
    let mut lines = Vec::with_capacity(count);
    let mut spans = Vec::with_capacity(count);
    // Ids stay where they are in the index text: the table is built over it, not copied.
    let mut offset = header.len() + key_row.len() + 2;
    let mut start = 0;
    for row in rows {
        let space = memchr::memchr(b' ', row.as_bytes())?;
        let length: usize = row[..space].parse().ok()?;
        let terminator = match row.as_bytes().get(space + 1..space + 3)? {
            b"n " => Terminator::Lf,
            b"r " => Terminator::CrLf,
            b"- " => Terminator::None,
            _ => return None,
        };
        let id = (space + 3, row.len());
        spans.push((&row[id.0..] != "-").then_some((offset + id.0, offset + id.1)));
        lines.push(Line {
            start,
            end: start + length,
            terminator,
        });
        start += length + terminator.as_bytes().len();
        offset += row.len() + 1;
    }
    if lines.len() != count || start as u64 != stamp.len() {
        return None;
    }
    let ids = IdTable::over(text, spans)?;
    Some(Document::from_skeleton(path, lines, ids, style, stamp))
}

/// Writes the index of `document` (a skeleton with a stamp) into `state_dir`. Best effort:
/// a cache that cannot be written is dropped, and the next transaction scans.
pub(crate) fn save(state_dir: &Path, document: &Document) {
    let written = render(document).map(|text| {
        let temp = state_dir.join(format!("{INDEX_FILE}.tmp.{}", std::process::id()));
        std::fs::write(&temp, text)
            .and_then(|()| std::fs::rename(&temp, state_dir.join(INDEX_FILE)))
    });
    if !matches!(written, Some(Ok(()))) {
        discard(state_dir);
    }
}

/// Brings the index in `state_dir` — which describes `document` — up to date after `tail`
/// (records `ids`, in order) was appended to the file, now at `stamp`: the new rows and
/// trailer replace the old trailer, so an append costs the index tens of bytes, not a
/// rewrite. Any mismatch drops the index instead.
pub(crate) fn extend(
    state_dir: &Path,
    document: &Document,
    tail: &[u8],
    ids: &[String],
    stamp: FileStamp,
) {
    if extend_in_place(state_dir, document, tail, ids, stamp).is_none() {
        discard(state_dir);
    }
}

fn extend_in_place(
    state_dir: &Path,
    document: &Document,
    tail: &[u8],
    ids: &[String],
    stamp: FileStamp,
) -> Option<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(state_dir.join(INDEX_FILE))
        .ok()?;
    let len = file.metadata().ok()?.len();
    let window_start = len.saturating_sub(4096);
    let mut window = vec![0u8; usize::try_from(len - window_start).ok()?];
    file.read_exact_at(&mut window, window_start).ok()?;
    let body = window.strip_suffix(b"\n")?;
    let trailer_start = memchr::memrchr(b'\n', body)? + 1;
    let (indexed, style, count) = trailer(std::str::from_utf8(&body[trailer_start..]).ok()?)?;
    if Some(indexed) != document.stamp() || count != document.lines().len() {
        return None;
    }
    let mut rows = String::new();
    let mut cut = trailer_start;
    let mut added = tail;
    if let Some(last) = document
        .lines()
        .last()
        .filter(|l| l.terminator == Terminator::None)
    {
        // The last line gains the newline that now precedes the appended records.
        let newline = document.newline();
        added = tail.strip_prefix(newline.as_bytes())?;
        cut = body[..trailer_start - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        let id = document.skeleton_ids()?.get(document.lines().len() - 1);
        push_row(&mut rows, last.end - last.start, newline, id)?;
    }
    let lines = crate::document::split_lines(added);
    if lines.len() != ids.len() {
        return None;
    }
    for (line, id) in lines.iter().zip(ids) {
        push_row(&mut rows, line.end - line.start, line.terminator, Some(id))?;
    }
    push_trailer(&mut rows, stamp, style, count + lines.len());
    let at = window_start + cut as u64;
    file.set_len(at).ok()?;
    file.write_all_at(rows.as_bytes(), at).ok()
}

/// Drops the index (before the file is rewritten: a crash must not leave a stale one that
/// could match).
pub(crate) fn discard(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join(INDEX_FILE));
}

/// The index text, or `None` when the document cannot be indexed (not a skeleton, no stamp,
/// or an id with whitespace in it).
fn render(document: &Document) -> Option<String> {
    let ids = document.skeleton_ids()?;
    let stamp = document.stamp()?;
    let mut text = String::with_capacity(document.lines().len() * 24 + 128);
    text.push_str(HEADER);
    text.push('\n');
    text.push_str(&key(document.path())?);
    text.push('\n');
    for (index, line) in document.lines().iter().enumerate() {
        push_row(
            &mut text,
            line.end - line.start,
            line.terminator,
            ids.get(index),
        )?;
    }
    push_trailer(&mut text, stamp, document.style(), document.lines().len());
    Some(text)
}

/// One line's row: `<length> <n|r|-> <id|->`; `None` for an id the format cannot hold.
fn push_row(
    text: &mut String,
    length: usize,
    terminator: Terminator,
    id: Option<&str>,
) -> Option<()> {
    use std::fmt::Write;
    let id = match id {
        Some(id) if id.is_empty() || id == "-" || id.contains(char::is_whitespace) => return None,
        Some(id) => id,
        None => "-",
    };
    let terminator = match terminator {
        Terminator::Lf => "n",
        Terminator::CrLf => "r",
        Terminator::None => "-",
    };
    writeln!(text, "{length} {terminator} {id}").ok()
}

/// The last row: `end <stamp> <item_space> <key_space> <ascii> <lines>`.
fn push_trailer(text: &mut String, stamp: FileStamp, style: JsonStyle, lines: usize) {
    use std::fmt::Write;
    let _ = writeln!(
        text,
        "end {} {} {} {} {lines}",
        stamp.encode(),
        u8::from(style.item_space),
        u8::from(style.key_space),
        u8::from(style.ascii),
    );
}

fn key(path: &Path) -> Option<String> {
    let absolute = std::path::absolute(path).ok()?;
    let key = absolute.to_str()?;
    (!key.contains('\n')).then(|| format!("path {key}"))
}

fn trailer(row: &str) -> Option<(FileStamp, JsonStyle, usize)> {
    let fields: Vec<&str> = row.strip_prefix("end ")?.split(' ').collect();
    let [dev, ino, len, mtime, item, key, ascii, count] = fields.as_slice() else {
        return None;
    };
    let flag = |text: &str| match text {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    };
    Some((
        FileStamp::decode(&format!("{dev} {ino} {len} {mtime}"))?,
        JsonStyle {
            item_space: flag(item)?,
            key_space: flag(key)?,
            ascii: flag(ascii)?,
        },
        count.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::DEFAULT_MAX_RECORD_BYTES;
    use crate::store::Store;

    const SPACED: &str = include_str!("../tests/fixtures/x0x.jsonl");
    const COMPACT: &str = include_str!("../tests/fixtures/x0x-symphony.jsonl");

    /// Each line's `(start, end, terminator)`, and each line's id.
    type Layout = (Vec<(usize, usize, Terminator)>, Vec<Option<String>>);

    fn summary(document: &Document) -> Layout {
        let lines = document
            .lines()
            .iter()
            .map(|l| (l.start, l.end, l.terminator))
            .collect();
        let ids = (0..document.lines().len())
            .map(|i| document.skeleton_ids().unwrap().get(i).map(str::to_string))
            .collect();
        (lines, ids)
    }

    #[test]
    fn a_saved_index_loads_as_the_same_skeleton_while_the_file_is_unchanged() {
        let crlf = COMPACT.replace('\n', "\r\n");
        for text in [SPACED, COMPACT, crlf.as_str(), "", "\n\n"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("issues.jsonl");
            std::fs::write(&path, text).unwrap();
            let scanned = Document::scan(&path, DEFAULT_MAX_RECORD_BYTES).unwrap();
            save(dir.path(), &scanned);
            let loaded = load(dir.path(), &path).expect("index is current");
            assert_eq!(summary(&loaded), summary(&scanned));
            assert_eq!(loaded.style(), scanned.style());
            assert_eq!(loaded.stamp(), scanned.stamp());
            // Another file, or this one changed: the index is not used.
            assert!(load(dir.path(), &dir.path().join("other.jsonl")).is_none());
            std::fs::write(&path, format!("{text}{{\"id\":\"Z\"}}\n")).unwrap();
            assert!(load(dir.path(), &path).is_none());
        }
    }

    #[test]
    fn a_torn_or_foreign_index_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues.jsonl");
        std::fs::write(&path, COMPACT).unwrap();
        save(
            dir.path(),
            &Document::scan(&path, DEFAULT_MAX_RECORD_BYTES).unwrap(),
        );
        let index = dir.path().join(INDEX_FILE);
        let text = std::fs::read_to_string(&index).unwrap();
        std::fs::write(&index, &text[..text.len() / 2]).unwrap();
        assert!(load(dir.path(), &path).is_none());
        std::fs::write(&index, text.replacen("\n12", "\n13", 1)).unwrap();
        assert!(
            load(dir.path(), &path).is_none(),
            "lengths no longer add up"
        );
    }

    #[test]
    fn an_in_place_edit_that_keeps_length_and_time_is_caught_when_the_line_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues.jsonl");
        std::fs::write(&path, COMPACT).unwrap();
        save(
            dir.path(),
            &Document::scan(&path, DEFAULT_MAX_RECORD_BYTES).unwrap(),
        );
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(
            &file,
            b"XSY-9003",
            7 + COMPACT.find("{\"id\":\"XSY-0003\"").unwrap() as u64,
        )
        .unwrap();
        file.set_modified(modified).unwrap();
        let skeleton = load(dir.path(), &path).expect("the stamp cannot tell");
        let index = skeleton.find("XSY-0003").unwrap().unwrap();
        let err = skeleton.record(index).unwrap_err();
        assert!(
            matches!(err, crate::TrackerError::ConcurrentModification { .. }),
            "{err}"
        );
    }

    #[test]
    fn every_write_leaves_an_index_equal_to_a_fresh_scan() {
        type Step = dyn Fn(&mut crate::store::Transaction<'_>) -> crate::Result<()>;
        // Writes touch only records reads can use: the scheduling fields are there.
        fn record(id: &str) -> serde_json::Map<String, serde_json::Value> {
            let mut map = serde_json::Map::new();
            map.insert("id".into(), id.into());
            map.insert("identifier".into(), id.into());
            map.insert("title".into(), "é".into());
            map.insert("state".into(), "todo".into());
            map.insert("created_at".into(), "2026-01-01T00:00:00Z".into());
            map.insert("updated_at".into(), "2026-01-01T00:00:00Z".into());
            map
        }
        let crlf = COMPACT.replace('\n', "\r\n");
        for (text, first, last) in [
            (SPACED, "X0X-0001", "X0X-0015"),
            (COMPACT, "XSY-0001", "XSY-0036"),
            (crlf.as_str(), "XSY-0001", "XSY-0036"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("issues/issues.jsonl");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            let store = Store::new(&path);
            let steps: [&Step; 6] = [
                &|tx| tx.append(record("N-1")),
                &|tx| {
                    tx.append(record("N-2"))?;
                    tx.append(record("N-3"))
                },
                &|tx| {
                    tx.modify(first, |r| {
                        r.insert("title".into(), "a much longer title than before".into());
                        Ok(())
                    })
                    .map(drop)
                },
                &|tx| tx.remove("N-3"),
                &|tx| {
                    tx.remove("N-2")?;
                    tx.append(record("N-4"))
                },
                &|tx| {
                    tx.remove(last)?;
                    tx.modify("N-1", |r| {
                        r.insert("title".into(), "x".into());
                        Ok(())
                    })
                    .map(drop)
                },
            ];
            for (n, step) in steps.iter().enumerate() {
                store.transact(|tx| step(tx)).unwrap();
                let indexed = load(store.state_dir(), &path)
                    .unwrap_or_else(|| panic!("index current after step {n}"));
                let scanned = Document::scan(&path, DEFAULT_MAX_RECORD_BYTES).unwrap();
                assert_eq!(summary(&indexed), summary(&scanned), "step {n}");
            }
            let written = std::fs::read_to_string(&path).unwrap();
            assert_eq!(written.ends_with('\n'), text.ends_with('\n'));
        }
    }
}
