//! Issue ids (design.md, The tracker file).
//!
//! - Sequential (default): `PREFIX-NNNN`, the highest number in the file plus one, zero-padded
//!   to the file's width (`XSY-0037`). Allocated under the tracker lock, so local writers never
//!   collide; two branches that each create the next id are reconciled by the merge driver,
//!   which renumbers the incoming record ([`crate::merge`]).
//! - Hash (`tracker.id_scheme: hash`): `PREFIX-` and 10 random hex digits (40 bits), for teams
//!   creating issues on many machines at once. Two machines creating 10,000 issues each
//!   collide with probability ~1e-4; a collision inside one file is retried, one across
//!   branches is renumbered by the merge driver like a sequential one.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::document::Document;
use crate::error::{Result, TrackerError};

/// Digits of a sequential id when the file shows no width (`XSY-0001`).
pub const DEFAULT_WIDTH: usize = 4;

/// Hex digits of a hash id.
pub const HASH_DIGITS: usize = 10;

/// Which kind of ids a tracker allocates (WORKFLOW.md `tracker.id_scheme`: `sequential` or
/// `hash`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemeKind {
    /// `PREFIX-NNNN`, counting up.
    #[default]
    Sequential,
    /// `PREFIX-<10 hex digits>`, random.
    Hash,
}

impl std::str::FromStr for SchemeKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "sequential" => Ok(SchemeKind::Sequential),
            "hash" => Ok(SchemeKind::Hash),
            other => Err(format!(
                "unknown id scheme {other:?} (expected `sequential` or `hash`)"
            )),
        }
    }
}

/// How a tracker allocates ids: WORKFLOW.md `tracker.id_scheme` and `tracker.id_prefix`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdConfig {
    /// Sequential or hash ids.
    pub kind: SchemeKind,
    /// The configured prefix; inferred from the file when `None`.
    pub prefix: Option<String>,
}

impl IdConfig {
    /// The scheme for a file holding `existing` ids ([`IdScheme::resolve`]).
    pub fn scheme(&self, existing: impl IntoIterator<Item = impl AsRef<str>>) -> Result<IdScheme> {
        IdScheme::resolve(self.kind, self.prefix.as_deref(), existing)
    }
}

/// How new ids are made for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdScheme {
    /// `PREFIX-NNNN`.
    Sequential {
        /// The project prefix (`XSY`).
        prefix: String,
        /// Minimum number of digits (`4` gives `XSY-0037`).
        width: usize,
    },
    /// `PREFIX-<hex>`.
    Hash {
        /// The project prefix.
        prefix: String,
    },
}

impl IdScheme {
    /// The scheme for a file holding `existing` ids: `prefix` when configured, else the most
    /// common prefix of the file's `PREFIX-NNNN` ids; the width is the file's most common
    /// digit count (at least [`DEFAULT_WIDTH`] digits for a file without sequential ids).
    ///
    /// Errors: [`TrackerError::NoIdPrefix`] when no prefix is configured and none can be
    /// inferred (an empty file without `tracker.id_prefix`).
    pub fn resolve(
        kind: SchemeKind,
        prefix: Option<&str>,
        existing: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<IdScheme> {
        let inferred = infer(existing, prefix, kind);
        let prefix = match (prefix, &inferred) {
            (Some(prefix), _) => prefix.to_string(),
            (None, Some((prefix, _))) => prefix.clone(),
            (None, None) => return Err(TrackerError::NoIdPrefix),
        };
        Ok(match kind {
            SchemeKind::Sequential => IdScheme::Sequential {
                prefix,
                width: inferred.map_or(DEFAULT_WIDTH, |(_, width)| width),
            },
            SchemeKind::Hash => IdScheme::Hash { prefix },
        })
    }

    /// A new id for which `taken` is false: for a sequential scheme one past the highest
    /// number among `existing` (ids of the file with this prefix); for a hash scheme a random
    /// one.
    pub fn next(
        &self,
        existing: impl IntoIterator<Item = impl AsRef<str>>,
        taken: impl Fn(&str) -> bool,
    ) -> String {
        match self {
            IdScheme::Sequential { prefix, width } => {
                let highest = existing
                    .into_iter()
                    .filter_map(|id| sequence_number(id.as_ref(), prefix))
                    .max()
                    .unwrap_or(0);
                let mut number = highest.saturating_add(1);
                loop {
                    let id = format!("{prefix}-{number:0width$}");
                    if !taken(&id) {
                        return id;
                    }
                    number = number.saturating_add(1);
                }
            }
            IdScheme::Hash { prefix } => loop {
                let bits = rand::random::<u64>() >> (64 - 4 * HASH_DIGITS);
                let id = format!("{prefix}-{bits:0HASH_DIGITS$x}");
                if !taken(&id) {
                    return id;
                }
            },
        }
    }
}

/// The number of a `prefix-NNNN` id.
fn sequence_number(id: &str, prefix: &str) -> Option<u64> {
    let digits = id.strip_prefix(prefix)?.strip_prefix('-')?;
    if digits.is_empty() {
        return None;
    }
    // One pass; `str::parse` would also take a leading `+`.
    digits.bytes().try_fold(0u64, |number, byte| {
        let digit = byte.is_ascii_digit().then(|| u64::from(byte - b'0'))?;
        number.checked_mul(10)?.checked_add(digit)
    })
}

/// The most common `PREFIX` of the file's ids of this `kind` (`PREFIX-NNNN`, or
/// `PREFIX-<hex>`), or `prefix` itself when given, and the most common suffix length among
/// its ids. Ties go to the lexicographically smaller prefix and the wider width, so the answer
/// never depends on record order.
fn infer(
    ids: impl IntoIterator<Item = impl AsRef<str>>,
    prefix: Option<&str>,
    kind: SchemeKind,
) -> Option<(String, usize)> {
    let suffix_byte: fn(&u8) -> bool = match kind {
        SchemeKind::Sequential => u8::is_ascii_digit,
        SchemeKind::Hash => u8::is_ascii_hexdigit,
    };
    let mut tally = Tally::default();
    for id in ids {
        let id = id.as_ref();
        let split = match prefix {
            // With the prefix known, no search for the last `-` is needed.
            Some(prefix) => id
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('-'))
                .map(|suffix| (prefix, suffix)),
            None => id.rsplit_once('-'),
        };
        let Some((head, suffix)) = split else {
            continue;
        };
        if head.is_empty() || suffix.is_empty() || !suffix.bytes().all(|b| suffix_byte(&b)) {
            continue;
        }
        tally.add(head, suffix.len());
    }
    tally.most_common()
}

/// How many ids have each (prefix, suffix length). A file's ids come in long runs of one
/// prefix and width, so a run is counted in place and hashed once when it ends.
#[derive(Default)]
struct Tally {
    counts: HashMap<(String, usize), usize>,
    run: Option<((String, usize), usize)>,
}

impl Tally {
    fn add(&mut self, prefix: &str, width: usize) {
        if let Some(((run_prefix, run_width), count)) = &mut self.run
            && run_prefix == prefix
            && *run_width == width
        {
            *count += 1;
            return;
        }
        self.end_run();
        self.run = Some(((prefix.to_string(), width), 1));
    }

    fn end_run(&mut self) {
        if let Some((key, count)) = self.run.take() {
            *self.counts.entry(key).or_default() += count;
        }
    }

    /// The most common prefix (ties: the smaller) and its most common width (ties: the wider).
    fn most_common(mut self) -> Option<(String, usize)> {
        self.end_run();
        let mut per_prefix: HashMap<&str, usize> = HashMap::new();
        for ((prefix, _), count) in &self.counts {
            *per_prefix.entry(prefix).or_default() += count;
        }
        let (&prefix, _) = per_prefix
            .iter()
            .max_by(|(a, na), (b, nb)| na.cmp(nb).then_with(|| b.cmp(a)))?;
        let width = self
            .counts
            .iter()
            .filter(|((p, _), _)| p == prefix)
            .max_by_key(|&(&(_, width), &count)| (count, width))
            .map(|((_, width), _)| *width)?;
        Some((prefix.to_string(), width))
    }
}

/// Every record id of `document` with its 0-based line index.
///
/// Errors: [`TrackerError::DuplicateId`] at the first id defined twice (commands refuse to
/// guess which record is meant; `symphony validate` lists every duplicate), and the parse
/// error of a line whose id cannot be read.
pub fn unique_ids(document: &Document) -> Result<HashMap<Cow<'_, str>, usize>> {
    let mut ids = HashMap::with_capacity(document.lines().len());
    for (index, _) in document.record_lines() {
        let id = document.id_of(index)?;
        if let Some(&first) = ids.get(&id) {
            return Err(TrackerError::DuplicateId {
                path: document.path().to_path_buf(),
                line: index + 1,
                first_line: first + 1,
                id: id.into_owned(),
            });
        }
        ids.insert(id, index);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::DEFAULT_MAX_RECORD_BYTES;
    use std::collections::HashSet;
    use std::path::Path;

    const NO_IDS: [&str; 0] = [];

    fn set<'a>(ids: &[&'a str]) -> HashSet<&'a str> {
        ids.iter().copied().collect()
    }

    #[test]
    fn sequential_ids_continue_the_file_with_its_prefix_and_width() {
        let ids = ["XSY-0001", "XSY-0036", "x0x:agent-sign", "XSY-0002"];
        let scheme = IdScheme::resolve(SchemeKind::Sequential, None, ids).unwrap();
        assert_eq!(
            scheme,
            IdScheme::Sequential {
                prefix: "XSY".into(),
                width: 4
            }
        );
        assert_eq!(scheme.next(ids, |id| set(&ids).contains(id)), "XSY-0037");
    }

    #[test]
    fn sequence_numbers_are_plain_digits_that_fit_u64() {
        assert_eq!(sequence_number("XSY-0037", "XSY"), Some(37));
        assert_eq!(
            sequence_number("XSY-18446744073709551615", "XSY"),
            Some(u64::MAX)
        );
        for not_a_number in [
            "XSY-",
            "XSY-+12",
            "XSY-12a",
            "XSY-18446744073709551616",
            "XSY12",
        ] {
            assert_eq!(sequence_number(not_a_number, "XSY"), None, "{not_a_number}");
        }
        assert_eq!(sequence_number("XSYZ-0001", "XSY"), None);
    }

    #[test]
    fn configured_prefix_wins_and_numbers_outgrow_the_width() {
        let ids = ["OLD-0100", "NEW-9999", "NEW-0001"];
        let scheme = IdScheme::resolve(SchemeKind::Sequential, Some("NEW"), ids).unwrap();
        assert_eq!(scheme.next(ids, |_| false), "NEW-10000");
        let fresh = IdScheme::resolve(SchemeKind::Sequential, Some("ABC"), NO_IDS).unwrap();
        assert_eq!(fresh.next(NO_IDS, |_| false), "ABC-0001");
        let taken = ["ABC-0001"];
        assert_eq!(fresh.next(NO_IDS, |id| taken.contains(&id)), "ABC-0002");
    }

    #[test]
    fn an_empty_file_without_a_prefix_is_refused_with_the_fix() {
        let err = IdScheme::resolve(SchemeKind::Sequential, None, NO_IDS)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tracker.id_prefix"), "{err}");
    }

    #[test]
    fn inference_is_independent_of_order() {
        let a = ["A-01", "B-0001", "A-02", "B-0002"];
        let mut b = a;
        b.reverse();
        let seq = SchemeKind::Sequential;
        assert_eq!(infer(a, None, seq), infer(b, None, seq));
        assert_eq!(infer(a, None, seq), Some(("A".into(), 2)));
        let hashed = ["sym-3f9a2c1d0e", "sym-00aa11bb22"];
        let scheme = IdScheme::resolve(SchemeKind::Hash, None, hashed).unwrap();
        assert_eq!(
            scheme,
            IdScheme::Hash {
                prefix: "sym".into()
            }
        );
    }

    #[test]
    fn hash_ids_have_the_prefix_and_ten_hex_digits_and_avoid_taken_ones() {
        let scheme = IdScheme::resolve(SchemeKind::Hash, Some("sym"), NO_IDS).unwrap();
        let mut taken: HashSet<String> = HashSet::new();
        for _ in 0..1000 {
            let id = scheme.next(NO_IDS, |id| taken.contains(id));
            let hex = id.strip_prefix("sym-").unwrap();
            assert_eq!(hex.len(), HASH_DIGITS);
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(taken.insert(id.clone()), "duplicate {id}");
        }
    }

    #[test]
    fn duplicate_ids_are_refused_with_both_lines() {
        let doc = Document::parse(
            Path::new("f"),
            b"{\"id\":\"A-1\"}\n{\"id\":\"A-2\"}\n{\"id\":\"A-1\"}\n".to_vec(),
            DEFAULT_MAX_RECORD_BYTES,
        )
        .unwrap();
        let err = unique_ids(&doc).unwrap_err().to_string();
        assert_eq!(err, "f:3: duplicate id \"A-1\" (first defined on line 1)");
    }
}
