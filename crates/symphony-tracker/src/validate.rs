//! `symphony validate`: every problem of an issues file, each located by file, line and JSON
//! pointer (design.md, The tracker file).
//!
//! Unlike the commands, which stop at the first problem, validation looks at every line on
//! its own and keeps going: a line with invalid UTF-8, a conflict marker, an oversized record
//! or malformed JSON is reported and the other lines are still checked. Checks:
//!
//! - per line: UTF-8, git conflict markers, record size, JSON syntax (line and column);
//! - per record: the JSON Schema ([`crate::schema`]), `identifier` = `id`, RFC 3339
//!   timestamps, `updated_at >= created_at`, state names against the configured lists;
//! - across records: duplicate ids, dangling and cyclic `blocked_by`.
//!
//! Warnings do not make a file invalid: CRLF line endings (kept by every command), and a
//! blocker ref whose `state` snapshot disagrees with the blocker's live state (readiness uses
//! the live state). A blocker id containing `:` (`project:slug`) names an issue of another
//! tracker: never dangling, never terminal.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::document::{self, DEFAULT_MAX_RECORD_BYTES, Terminator};
use crate::error::{Result, TrackerError};
use crate::model::parse_timestamp;
use crate::schema::Schema;
use crate::states::StateConfig;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The file is invalid.
    Error,
    /// Worth fixing; the file is still valid.
    Warning,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding.
///
/// Displays as `path:line: /pointer: message` (`path:line:column: message` for syntax
/// problems, which have a column and no pointer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The issues file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based byte column, for problems below the JSON level (UTF-8, syntax).
    pub column: Option<usize>,
    /// JSON pointer within the record (`/blocked_by/0/id`); empty for the whole record or line.
    pub pointer: String,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and, when known, how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.path.display(), self.line)?;
        if let Some(column) = self.column {
            write!(f, "{column}:")?;
        }
        if !self.pointer.is_empty() {
            write!(f, " {}:", self.pointer)?;
        }
        write!(f, " {}", self.message)
    }
}

/// Everything validation found in one file.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Number of record lines (non-blank lines), valid or not.
    pub records: usize,
    /// Findings, ordered by line.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.count(Severity::Error)
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.count(Severity::Warning)
    }

    /// Whether the file has no errors (warnings allowed).
    pub fn is_valid(&self) -> bool {
        self.error_count() == 0
    }

    fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }
}

/// What a file is validated against.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The compiled record schema.
    pub schema: &'a Schema,
    /// The configured state lists (WORKFLOW.md `tracker.*_states`).
    pub states: &'a StateConfig,
    /// Longest accepted line, in bytes.
    pub max_record_bytes: usize,
}

impl<'a> Rules<'a> {
    /// Rules with the default record size limit ([`DEFAULT_MAX_RECORD_BYTES`]).
    pub fn new(schema: &'a Schema, states: &'a StateConfig) -> Rules<'a> {
        Rules {
            schema,
            states,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// Validates the file at `path`.
///
/// Errors only when the file cannot be read ([`TrackerError::Missing`],
/// [`TrackerError::Io`]); every problem of its content is a diagnostic in the report.
pub fn validate_file(path: &Path, rules: &Rules<'_>) -> Result<Report> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TrackerError::Missing {
            path: path.to_path_buf(),
        },
        _ => TrackerError::io(path, e),
    })?;
    Ok(validate_bytes(path, &bytes, rules))
}

/// Validates `bytes` as the content of the issues file at `path`.
pub fn validate_bytes(path: &Path, bytes: &[u8], rules: &Rules<'_>) -> Report {
    let mut check = Check {
        path,
        rules,
        diagnostics: Vec::new(),
        records: Vec::new(),
    };
    let mut record_lines = 0;
    let mut crlf = (0usize, None);
    for (index, line) in document::split_lines(bytes).iter().enumerate() {
        let content = &bytes[line.start..line.end];
        if content.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        record_lines += 1;
        if line.terminator == Terminator::CrLf {
            crlf.0 += 1;
            crlf.1.get_or_insert(index);
        }
        check.line(index, content);
    }
    if let (count, Some(first)) = crlf {
        check.warn(
            first,
            "",
            format!(
                "{count} line(s) end in CRLF; commands keep them, but LF is the convention \
                 (check git's core.autocrlf)"
            ),
        );
    }
    check.across_records();
    let mut diagnostics = check.diagnostics;
    diagnostics.sort_by_key(|d| d.line);
    Report {
        records: record_lines,
        diagnostics,
    }
}

/// What the cross-record checks need of one record.
struct Facts {
    index: usize,
    id: Option<String>,
    state: Option<String>,
    blockers: Vec<BlockerFacts>,
}

struct BlockerFacts {
    position: usize,
    id: String,
    state: Option<String>,
}

struct Check<'p, 'r> {
    path: &'p Path,
    rules: &'r Rules<'r>,
    diagnostics: Vec<Diagnostic>,
    records: Vec<Facts>,
}

impl Check<'_, '_> {
    fn push(&mut self, index: usize, pointer: &str, severity: Severity, message: String) {
        self.diagnostics.push(Diagnostic {
            path: self.path.to_path_buf(),
            line: index + 1,
            column: None,
            pointer: pointer.to_string(),
            severity,
            message,
        });
    }

    fn error(&mut self, index: usize, pointer: &str, message: String) {
        self.push(index, pointer, Severity::Error, message);
    }

    fn warn(&mut self, index: usize, pointer: &str, message: String) {
        self.push(index, pointer, Severity::Warning, message);
    }

    fn line(&mut self, index: usize, content: &[u8]) {
        let checked = document::check_line(self.path, index, content, self.rules.max_record_bytes)
            .and_then(|()| {
                std::str::from_utf8(content).map_err(|e| {
                    document::invalid_utf8(self.path, index, &content[..e.valid_up_to()])
                })
            })
            .and_then(|text| document::parse_record(self.path, index + 1, text));
        match checked {
            Ok(record) => self.record(index, Value::Object(record)),
            Err(error) => self.diagnostics.push(diagnostic_of(self.path, &error)),
        }
    }

    fn record(&mut self, index: usize, record: Value) {
        let id = record.get("id").and_then(Value::as_str).unwrap_or("ID");
        for violation in self.rules.schema.check(&record) {
            match bare_blocker(&record, &violation.pointer) {
                // Read as the ref it names (`BlockerRef`); a warning with the fix.
                Some(blocker) => self.warn(
                    index,
                    &violation.pointer,
                    format!(
                        "bare id {blocker:?} is read as the ref {{\"id\": {blocker:?}}}; write the \
                         ref object with `symphony issues dep add {id} {blocker}`"
                    ),
                ),
                None => self.error(index, &violation.pointer, violation.message),
            }
        }
        let Value::Object(record) = record else {
            return;
        };
        let id = record.get("id").and_then(Value::as_str);
        if let (Some(id), Some(identifier)) = (id, record.get("identifier").and_then(Value::as_str))
            && id != identifier
        {
            self.error(
                index,
                "/identifier",
                format!("identifier {identifier:?} differs from id {id:?}; they must be equal"),
            );
        }
        let state = record.get("state").and_then(Value::as_str);
        if let Some(state) = state
            && !self.rules.states.is_known(state)
        {
            let known: Vec<&str> = self.rules.states.all().collect();
            self.error(
                index,
                "/state",
                format!(
                    "unknown state {state:?} (configured states: {}; see WORKFLOW.md \
                     tracker.*_states)",
                    known.join(", ")
                ),
            );
        }
        self.timestamps(index, &record);
        let blockers = self.blockers(index, &record);
        self.records.push(Facts {
            index,
            id: id.map(str::to_string),
            state: state.map(str::to_string),
            blockers,
        });
    }

    fn timestamps(&mut self, index: usize, record: &Map<String, Value>) {
        let mut parsed = |pointer: &str| {
            let text = record.pointer_str(pointer)?;
            match parse_timestamp(text) {
                Ok(at) => Some(at),
                Err(e) => {
                    self.error(
                        index,
                        pointer,
                        format!(
                            "{text:?} is not an RFC 3339 timestamp ({e}); write e.g. \
                             2026-04-28T00:00:00Z"
                        ),
                    );
                    None
                }
            }
        };
        let created = parsed("/created_at");
        let updated = parsed("/updated_at");
        for nested in [
            "/handoff/updated_at",
            "/claim/claimed_at",
            "/claim/heartbeat_at",
        ] {
            parsed(nested);
        }
        if let (Some(created), Some(updated)) = (created, updated)
            && updated < created
        {
            self.error(
                index,
                "/updated_at",
                "updated_at is earlier than created_at".to_string(),
            );
        }
    }

    fn blockers(&mut self, index: usize, record: &Map<String, Value>) -> Vec<BlockerFacts> {
        let Some(refs) = record.get("blocked_by").and_then(Value::as_array) else {
            return Vec::new();
        };
        let mut blockers = Vec::with_capacity(refs.len());
        for (position, blocker) in refs.iter().enumerate() {
            let Some(id) = blocker
                .as_str()
                .or_else(|| blocker.get("id").and_then(Value::as_str))
            else {
                continue; // the schema reported it
            };
            if let Some(identifier) = blocker.get("identifier").and_then(Value::as_str)
                && identifier != id
            {
                self.error(
                    index,
                    &format!("/blocked_by/{position}/identifier"),
                    format!("identifier {identifier:?} differs from id {id:?}"),
                );
            }
            blockers.push(BlockerFacts {
                position,
                id: id.to_string(),
                state: blocker
                    .get("state")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        }
        blockers
    }

    fn across_records(&mut self) {
        let mut by_id: HashMap<&str, usize> = HashMap::with_capacity(self.records.len());
        let mut findings = Vec::new();
        for (at, facts) in self.records.iter().enumerate() {
            let Some(id) = facts.id.as_deref() else {
                continue;
            };
            if let Some(&first) = by_id.get(id) {
                findings.push((
                    facts.index,
                    "/id".to_string(),
                    Severity::Error,
                    format!(
                        "duplicate id {id:?} (first defined on line {}); give one of them a new id \
                         with `symphony issues create` and remove the other",
                        self.records[first].index + 1
                    ),
                ));
            } else {
                by_id.insert(id, at);
            }
        }
        for facts in &self.records {
            for blocker in &facts.blockers {
                let pointer = format!("/blocked_by/{}", blocker.position);
                match by_id.get(blocker.id.as_str()) {
                    None if is_external(&blocker.id) => {}
                    None => findings.push((
                        facts.index,
                        format!("{pointer}/id"),
                        Severity::Error,
                        format!(
                            "blocker {:?} is not an issue in this file (an issue of another \
                             tracker is written project:slug)",
                            blocker.id
                        ),
                    )),
                    Some(&at) => {
                        let live = self.records[at].state.as_deref();
                        if let (Some(snapshot), Some(live)) = (blocker.state.as_deref(), live)
                            && !snapshot.trim().eq_ignore_ascii_case(live.trim())
                        {
                            findings.push((
                                facts.index,
                                format!("{pointer}/state"),
                                Severity::Warning,
                                format!(
                                    "snapshot {snapshot:?} differs from {}'s live state {live:?} \
                                     (readiness uses the live state; `symphony issues dep add \
                                     {} {}` refreshes it)",
                                    blocker.id,
                                    facts.id.as_deref().unwrap_or("ID"),
                                    blocker.id
                                ),
                            ));
                        }
                    }
                }
            }
        }
        findings.extend(cycles(&self.records, &by_id));
        for (index, pointer, severity, message) in findings {
            self.push(index, &pointer, severity, message);
        }
    }
}

/// The id of the bare-string `blocked_by` entry at `pointer` (`/blocked_by/N`), if it is one.
fn bare_blocker<'r>(record: &'r Value, pointer: &str) -> Option<&'r str> {
    let position = pointer.strip_prefix("/blocked_by/")?;
    if !position.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    record.pointer(pointer)?.as_str()
}

/// Whether a blocker id names an issue of another tracker (`project:slug`).
pub fn is_external(id: &str) -> bool {
    id.contains(':')
}

type Finding = (usize, String, Severity, String);

/// One finding per back edge of a depth-first walk over the `blocked_by` graph: every cycle
/// is reported at least once, with its path. Iterative, so a 100k-long chain cannot overflow
/// the stack.
fn cycles(records: &[Facts], by_id: &HashMap<&str, usize>) -> Vec<Finding> {
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Gray,
        Black,
    }
    let edges: Vec<Vec<(usize, usize)>> = records
        .iter()
        .map(|facts| {
            facts
                .blockers
                .iter()
                .filter_map(|b| by_id.get(b.id.as_str()).map(|&to| (b.position, to)))
                .collect()
        })
        .collect();
    let id = |at: usize| records[at].id.as_deref().unwrap_or("?");
    let mut color = vec![Color::White; records.len()];
    let mut findings = Vec::new();
    for start in 0..records.len() {
        if color[start] != Color::White {
            continue;
        }
        color[start] = Color::Gray;
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some((node, next)) = stack.last().copied() {
            let Some(&(position, to)) = edges[node].get(next) else {
                color[node] = Color::Black;
                stack.pop();
                continue;
            };
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            match color[to] {
                Color::White => {
                    color[to] = Color::Gray;
                    stack.push((to, 0));
                }
                Color::Gray => {
                    let from = stack.iter().position(|&(n, _)| n == to).unwrap_or(0);
                    let mut path: Vec<&str> = stack[from..].iter().map(|&(n, _)| id(n)).collect();
                    path.push(id(to));
                    findings.push((
                        records[node].index,
                        format!("/blocked_by/{position}"),
                        Severity::Error,
                        format!(
                            "blocked_by cycle: {} (each waits for the next, so none can \
                             become ready); remove one link with `symphony issues dep rm`",
                            path.join(" → ")
                        ),
                    ));
                }
                Color::Black => {}
            }
        }
    }
    findings
}

/// The diagnostic of a line-level error from [`crate::document`].
fn diagnostic_of(path: &Path, error: &TrackerError) -> Diagnostic {
    let (line, column, pointer) = match error {
        TrackerError::InvalidUtf8 { line, column, .. }
        | TrackerError::Json { line, column, .. } => (*line, Some(*column), ""),
        TrackerError::Record { line, pointer, .. } => (*line, None, pointer.as_str()),
        TrackerError::RecordTooLarge { line, .. } | TrackerError::ConflictMarkers { line, .. } => {
            (*line, None, "")
        }
        _ => (0, None, ""),
    };
    // The error's own text leads with the same location; keep only what follows it.
    let text = error.to_string();
    let mut location = format!("{}:{line}:", path.display());
    if let Some(column) = column {
        location.push_str(&format!("{column}:"));
    }
    if !pointer.is_empty() {
        location.push_str(&format!(" {pointer}:"));
    }
    let message = text.strip_prefix(&location).unwrap_or(&text).trim_start();
    Diagnostic {
        path: path.to_path_buf(),
        line,
        column,
        pointer: pointer.to_string(),
        severity: Severity::Error,
        message: message.to_string(),
    }
}

trait PointerStr {
    fn pointer_str(&self, pointer: &str) -> Option<&str>;
}

impl PointerStr for Map<String, Value> {
    /// The string at a `/a/b` pointer into a record map, if there is one.
    fn pointer_str(&self, pointer: &str) -> Option<&str> {
        let mut parts = pointer.trim_start_matches('/').split('/');
        let first = self.get(parts.next()?)?;
        parts
            .try_fold(first, |value, key| value.get(key))
            .and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACED: &str = include_str!("../tests/fixtures/x0x.jsonl");
    const COMPACT: &str = include_str!("../tests/fixtures/x0x-symphony.jsonl");

    fn validate(text: &str) -> Report {
        let schema = Schema::builtin().unwrap();
        let states = StateConfig::default();
        validate_bytes(
            Path::new("issues.jsonl"),
            text.as_bytes(),
            &Rules::new(&schema, &states),
        )
    }

    fn rendered(report: &Report) -> Vec<String> {
        report.diagnostics.iter().map(|d| d.to_string()).collect()
    }

    fn record(id: &str, state: &str, blocked_by: &str) -> String {
        format!(
            r#"{{"id":"{id}","identifier":"{id}","title":"t","description":null,"priority":2,"state":"{state}","branch_name":null,"url":null,"labels":[],"blocked_by":[{blocked_by}],"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-02T00:00:00Z"}}"#
        )
    }

    #[test]
    fn a_bare_id_blocker_is_a_warning_with_the_fix_and_still_a_blocker() {
        let text = [
            record("A-1", "todo", r#""A-2""#),
            record("A-2", "todo", r#""A-1""#),
        ]
        .join("\n");
        let report = validate(&text);
        let rendered = rendered(&report);
        assert!(
            rendered[0]
                .starts_with("issues.jsonl:1: /blocked_by/0: bare id \"A-2\" is read as the ref"),
            "{rendered:?}"
        );
        assert!(
            rendered[0].ends_with("`symphony issues dep add A-1 A-2`"),
            "{rendered:?}"
        );
        assert_eq!(report.diagnostics[0].severity, Severity::Warning);
        assert_eq!(report.warning_count(), 2);
        assert_eq!(
            report.error_count(),
            1,
            "the cycle A-1 → A-2 → A-1: {rendered:?}"
        );
    }

    #[test]
    fn spaced_fixture_is_valid_without_findings() {
        let report = validate(SPACED);
        assert_eq!(report.records, 15);
        assert_eq!(rendered(&report), Vec::<String>::new());
    }

    #[test]
    fn compact_fixture_is_valid_and_its_stale_blocker_snapshots_are_warnings() {
        let report = validate(COMPACT);
        assert!(report.is_valid(), "{:#?}", rendered(&report));
        assert_eq!(report.records, 36);
        assert!(report.warning_count() > 0);
        let first = &report.diagnostics[0];
        assert_eq!(
            first.to_string(),
            "issues.jsonl:3: /blocked_by/0/state: snapshot \"todo\" differs from XSY-0002's \
             live state \"done\" (readiness uses the live state; `symphony issues dep add XSY-0003 \
             XSY-0002` refreshes it)"
        );
        assert_eq!(first.severity, Severity::Warning);
    }

    #[test]
    fn every_line_problem_is_reported_and_the_rest_still_checked() {
        let mut text = Vec::new();
        text.extend(record("A-1", "todo", "").as_bytes());
        text.extend(b"\n{\"id\": \"A-2\" \"title\": 1}\n");
        text.extend(b"<<<<<<< HEAD\n");
        text.extend(b"{\"id\":\"A-3\",\"title\":\"caf");
        text.push(0xe9);
        text.extend(b"\"}\n");
        text.extend(record("A-4", "wontfix", "").as_bytes());
        text.push(b'\n');
        let schema = Schema::builtin().unwrap();
        let states = StateConfig::default();
        let report = validate_bytes(
            Path::new("issues.jsonl"),
            &text,
            &Rules::new(&schema, &states),
        );
        let lines = rendered(&report);
        assert_eq!(report.error_count(), 4, "{lines:#?}");
        assert!(
            lines[0].starts_with("issues.jsonl:2:14: expected `,` or `}`"),
            "{lines:#?}"
        );
        assert!(lines[1].starts_with("issues.jsonl:3: unresolved git conflict marker"));
        assert!(lines[1].contains("merge-driver"));
        assert_eq!(
            lines[2],
            "issues.jsonl:4:25: invalid UTF-8 (the issues file must be UTF-8 JSON Lines)"
        );
        assert!(lines[3].starts_with("issues.jsonl:5: /state: unknown state \"wontfix\""));
    }

    #[test]
    fn oversized_lines_are_refused_by_size() {
        let schema = Schema::builtin().unwrap();
        let states = StateConfig::default();
        let rules = Rules {
            max_record_bytes: 100,
            ..Rules::new(&schema, &states)
        };
        let text = format!("{}\n", record("A-1", "todo", ""));
        let report = validate_bytes(Path::new("f"), text.as_bytes(), &rules);
        assert_eq!(
            rendered(&report),
            [format!(
                "f:1: record is {} bytes, larger than the 100-byte limit for one issue",
                text.len() - 1
            )]
        );
    }

    #[test]
    fn duplicates_dangling_refs_and_cycles_are_errors_external_refs_are_not() {
        let blocker = |id: &str| format!(r#"{{"id":"{id}","identifier":"{id}","state":"todo"}}"#);
        let text = [
            record("A-1", "todo", &blocker("A-2")),
            record(
                "A-2",
                "todo",
                &format!("{},{}", blocker("x0x:slug"), blocker("A-3")),
            ),
            record("A-3", "todo", &blocker("A-1")),
            record("A-4", "todo", &blocker("A-9")),
            record("A-1", "done", ""),
            record("A-5", "todo", &blocker("A-5")),
        ]
        .join("\n");
        let lines = rendered(&validate(&text));
        assert_eq!(
            lines,
            [
                "issues.jsonl:3: /blocked_by/0: blocked_by cycle: A-1 → A-2 → A-3 → A-1 (each \
                 waits for the next, so none can become ready); remove one link with `symphony \
                 issues dep rm`",
                "issues.jsonl:4: /blocked_by/0/id: blocker \"A-9\" is not an issue in this file \
                 (an issue of another tracker is written project:slug)",
                "issues.jsonl:5: /id: duplicate id \"A-1\" (first defined on line 1); give one of \
                 them a new id with `symphony issues create` and remove the other",
                "issues.jsonl:6: /blocked_by/0: blocked_by cycle: A-5 → A-5 (each waits for the \
                 next, so none can become ready); remove one link with `symphony issues dep rm`",
            ]
        );
    }

    fn with(line: &str, field: &str, value: &str) -> String {
        let mut map: Map<String, Value> = serde_json::from_str(line).unwrap();
        map.insert(field.into(), value.into());
        serde_json::to_string(&map).unwrap()
    }

    #[test]
    fn identifiers_timestamps_and_their_order_are_checked() {
        let text = [
            with(&record("A-1", "todo", ""), "identifier", "A-one"),
            with(
                &record("A-2", "todo", ""),
                "updated_at",
                "2025-12-31T23:59:59Z",
            ),
            with(&record("A-3", "todo", ""), "created_at", "yesterday"),
        ]
        .join("\n");
        let lines = rendered(&validate(&text));
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert_eq!(
            lines[0],
            "issues.jsonl:1: /identifier: identifier \"A-one\" differs from id \"A-1\"; they \
             must be equal"
        );
        assert_eq!(
            lines[1],
            "issues.jsonl:2: /updated_at: updated_at is earlier than created_at"
        );
        assert!(
            lines[2].starts_with(
                "issues.jsonl:3: /created_at: \"yesterday\" is not an RFC 3339 timestamp"
            ),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn crlf_endings_are_one_warning_and_empty_files_are_valid() {
        let text = format!(
            "{}\r\n{}\r\n",
            record("A-1", "todo", ""),
            record("A-2", "todo", "")
        );
        let report = validate(&text);
        assert!(report.is_valid());
        assert_eq!(report.warning_count(), 1);
        assert!(rendered(&report)[0].starts_with("issues.jsonl:1: 2 line(s) end in CRLF"));
        let empty = validate("");
        assert!(empty.is_valid() && empty.records == 0 && empty.diagnostics.is_empty());
    }

    #[test]
    fn a_missing_file_is_an_error_not_a_report() {
        let schema = Schema::builtin().unwrap();
        let states = StateConfig::default();
        let err = validate_file(
            Path::new("/nonexistent/issues.jsonl"),
            &Rules::new(&schema, &states),
        )
        .unwrap_err();
        assert!(matches!(err, TrackerError::Missing { .. }));
    }
}
