//! The serialization style of an issues file, detected from its own lines, so a changed record
//! is written back the way the tool that made the file would have written it.
//!
//! Two families exist in the wild (see `../shared/fixtures/`): Python's `json.dumps` default
//! (`", "` and `": "` separators, non-ASCII escaped as `\uXXXX` unless `ensure_ascii=False`) and
//! compact JSON (`,` and `:`, raw UTF-8) from JavaScript, Rust and `jq -c`.

use std::io::{self, Write};

use serde_json::{Map, Value};

/// How records are serialized: separators and escaping of non-ASCII text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonStyle {
    /// `", "` between items instead of `","`.
    pub item_space: bool,
    /// `": "` between a key and its value instead of `":"`.
    pub key_space: bool,
    /// Non-ASCII characters (and DEL) written as `\uXXXX` escapes (UTF-16 surrogate pairs above
    /// U+FFFF), as Python's `ensure_ascii=True` does.
    pub ascii: bool,
}

impl JsonStyle {
    /// Compact separators, raw UTF-8: the style of new files.
    pub const COMPACT: JsonStyle = JsonStyle {
        item_space: false,
        key_space: false,
        ascii: false,
    };

    /// Detects the style of a whole file from its text.
    ///
    /// Separators come from the first record line that has any; escaping from the file's
    /// evidence (raw non-ASCII text means raw, a `\uXXXX` escape of a non-ASCII character
    /// means escaped). Without evidence either way, spaced files are taken to be Python's
    /// default (escaped) and compact ones raw.
    pub fn detect_file(text: &str) -> JsonStyle {
        let separators = text
            .lines()
            .find_map(detect_separators)
            .unwrap_or((false, false));
        let ascii = detect_ascii(text).unwrap_or(separators.0 && separators.1);
        JsonStyle {
            item_space: separators.0,
            key_space: separators.1,
            ascii,
        }
    }

    /// The style of one existing line: its own separators and escaping where the line shows
    /// them, the file's style where it does not.
    pub fn detect_line(line: &str, file: JsonStyle) -> JsonStyle {
        let (item_space, key_space) =
            detect_separators(line).unwrap_or((file.item_space, file.key_space));
        JsonStyle {
            item_space,
            key_space,
            ascii: detect_ascii(line).unwrap_or(file.ascii),
        }
    }

    /// Serializes one record on one line (no terminator) in this style, keeping key order.
    ///
    /// Fails only if a string is not valid UTF-8 after escaping, which cannot happen for a
    /// `Value` built by serde_json; the error is still surfaced rather than writing a bad line.
    pub fn to_line(&self, record: &Map<String, Value>) -> Result<String, serde_json::Error> {
        let mut out = Vec::with_capacity(256);
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, *self);
        serde::Serialize::serialize(record, &mut serializer)?;
        String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
    }
}

/// What a file's lines show of its style, gathered line by line for files that are streamed
/// rather than held whole. [`StyleEvidence::style`] is what [`JsonStyle::detect_file`] gives
/// for the same lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StyleEvidence {
    separators: Option<(bool, bool)>,
    ascii: Option<bool>,
}

impl StyleEvidence {
    /// Adds the evidence of the next line.
    pub fn add_line(&mut self, line: &str) {
        if self.separators.is_none() {
            self.separators = detect_separators(line);
        }
        if self.ascii != Some(false) {
            self.ascii = detect_ascii(line).or(self.ascii);
        }
    }

    /// The evidence of this run of lines followed by `later`.
    pub fn then(self, later: StyleEvidence) -> StyleEvidence {
        let ascii = match (self.ascii, later.ascii) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (first, second) => first.or(second),
        };
        StyleEvidence {
            separators: self.separators.or(later.separators),
            ascii,
        }
    }

    /// The style the evidence shows, with [`JsonStyle::detect_file`]'s defaults.
    pub fn style(self) -> JsonStyle {
        let (item_space, key_space) = self.separators.unwrap_or((false, false));
        JsonStyle {
            item_space,
            key_space,
            ascii: self.ascii.unwrap_or(item_space && key_space),
        }
    }
}

/// `(item_space, key_space)` of the first `,` and `:` outside strings, if the line has one.
fn detect_separators(line: &str) -> Option<(bool, bool)> {
    let bytes = line.as_bytes();
    let (mut item, mut key) = (None, None);
    let (mut in_string, mut escaped) = (false, false);
    for (i, &c) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        let spaced = bytes.get(i + 1) == Some(&b' ');
        match c {
            b'"' => in_string = true,
            b',' if item.is_none() => item = Some(spaced),
            b':' if key.is_none() => key = Some(spaced),
            _ => {}
        }
        if let (Some(item), Some(key)) = (item, key) {
            return Some((item, key));
        }
    }
    match (item, key) {
        (None, None) => None,
        (item, key) => Some((item.or(key).unwrap_or(false), key.or(item).unwrap_or(false))),
    }
}

/// `Some(false)` when the text holds raw non-ASCII, `Some(true)` when it escapes a non-ASCII
/// character as `\uXXXX`, `None` when it shows neither.
fn detect_ascii(text: &str) -> Option<bool> {
    if !text.is_ascii() {
        return Some(false);
    }
    let bytes = text.as_bytes();
    for at in memchr::memmem::find_iter(bytes, b"\\u") {
        let preceding = bytes[..at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if preceding % 2 == 1 {
            continue; // `\\u`: an escaped backslash followed by a plain `u`
        }
        let code = bytes
            .get(at + 2..at + 6)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u16::from_str_radix(hex, 16).ok());
        if code.is_some_and(|code| code >= 0x80) {
            return Some(true);
        }
    }
    None
}

impl serde_json::ser::Formatter for JsonStyle {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.item_separator(w, first)
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.item_separator(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(if self.key_space { b": " } else { b":" })
    }

    fn write_string_fragment<W: ?Sized + Write>(&mut self, w: &mut W, s: &str) -> io::Result<()> {
        if !self.ascii || s.bytes().all(|b| b < 0x7f) {
            return w.write_all(s.as_bytes());
        }
        for c in s.chars() {
            if (c as u32) < 0x7f {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

impl JsonStyle {
    fn item_separator<W: ?Sized + Write>(&self, w: &mut W, first: bool) -> io::Result<()> {
        match (first, self.item_space) {
            (true, _) => Ok(()),
            (false, true) => w.write_all(b", "),
            (false, false) => w.write_all(b","),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(line: &str) -> String {
        let style = JsonStyle::detect_file(line);
        let map: Map<String, Value> = serde_json::from_str(line).unwrap();
        style.to_line(&map).unwrap()
    }

    #[test]
    fn python_default_style_round_trips_byte_for_byte() {
        let line = r#"{"id": "X-1", "title": "caf\u00e9 \ud83d\ude00", "n": [1, 2], "o": {}}"#;
        assert_eq!(round_trip(line), line);
    }

    #[test]
    fn python_spaced_raw_utf8_round_trips() {
        let line = r#"{"id": "X-1", "title": "café → ok", "e": [], "ctl": "a\nb\u0001"}"#;
        assert_eq!(round_trip(line), line);
    }

    #[test]
    fn compact_style_round_trips() {
        let line = r#"{"id":"X-1","labels":["a","b"],"nested":{"k":null,"t":true}}"#;
        assert_eq!(round_trip(line), line);
    }

    #[test]
    fn escaped_backslash_before_u_is_not_an_escape() {
        assert_eq!(detect_ascii(r#"{"p": "C:\\u00e9"}"#), None);
        assert_eq!(detect_ascii(r#"{"p": "\u00e9"}"#), Some(true));
    }

    #[test]
    fn separators_inside_strings_are_ignored() {
        assert_eq!(
            detect_separators(r#"{"a:b, c":"x","d":1}"#),
            Some((false, false))
        );
    }

    #[test]
    fn ascii_mode_escapes_del_and_astral_characters() {
        let style = JsonStyle {
            item_space: false,
            key_space: false,
            ascii: true,
        };
        let mut map = Map::new();
        map.insert("t".into(), Value::String("\u{7f}é😀".into()));
        assert_eq!(
            style.to_line(&map).unwrap(),
            r#"{"t":"\u007f\u00e9\ud83d\ude00"}"#
        );
    }

    #[test]
    fn line_by_line_evidence_agrees_with_whole_file_detection() {
        let fixtures = [
            include_str!("../tests/fixtures/x0x.jsonl"),
            include_str!("../tests/fixtures/x0x-symphony.jsonl"),
            "{\"id\": \"X-1\", \"t\": \"\\u00e9\"}\n{\"id\": \"X-2\"}",
            "\n{\"id\": \"X-1\"}\n{\"id\":\"X-2\",\"t\":\"é\"}",
            "",
        ];
        for text in fixtures {
            let mut halves = [StyleEvidence::default(), StyleEvidence::default()];
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                halves[usize::from(i >= lines.len() / 2)].add_line(line);
            }
            let evidence = halves[0].then(halves[1]);
            assert_eq!(evidence.style(), JsonStyle::detect_file(text), "{text:.40}");
        }
    }

    #[test]
    fn without_evidence_spaced_files_are_python_ascii() {
        assert!(JsonStyle::detect_file(r#"{"id": "X-1"}"#).ascii);
        assert!(!JsonStyle::detect_file(r#"{"id":"X-1"}"#).ascii);
    }
}
