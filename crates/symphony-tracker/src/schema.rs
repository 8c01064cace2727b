//! The JSON Schema (draft 2020-12) of one issue record: `issues/schema.json` when the
//! repository has one, otherwise the copy built into this crate (identical to the one
//! `symphony init` writes).
//!
//! The schema is compiled once and then checks each parsed record; what a schema cannot
//! express (uniqueness, references between records, timestamp order, configured state names)
//! is checked by [`crate::validate`].

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Result, TrackerError};

/// The built-in schema text (`crates/symphony-tracker/src/schema.json`, a copy of the
/// repository's `issues/schema.json`).
pub const BUILTIN_SCHEMA: &str = include_str!("schema.json");

/// File name of the schema beside the issues file.
pub const SCHEMA_FILE: &str = "schema.json";

/// One way a record does not match the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the offending value within the record (`/priority`; empty for the
    /// record itself).
    pub pointer: String,
    /// What the schema expected, in jsonschema's words (`"x" is not of type "integer"`).
    pub message: String,
}

/// A compiled issue schema.
#[derive(Debug)]
pub struct Schema {
    validator: jsonschema::Validator,
    source: Option<PathBuf>,
}

impl Schema {
    /// The built-in schema.
    ///
    /// Errors: [`TrackerError::Schema`] if the built-in text does not compile, which a unit
    /// test rules out.
    pub fn builtin() -> Result<Schema> {
        Schema::compile(BUILTIN_SCHEMA, None)
    }

    /// The schema in the file at `path`.
    ///
    /// Errors: [`TrackerError::Io`] when it cannot be read, [`TrackerError::Schema`] when it
    /// is not JSON or not a valid draft 2020-12 schema (remote `$ref`s are not fetched).
    pub fn from_file(path: &Path) -> Result<Schema> {
        let text = std::fs::read_to_string(path).map_err(|e| TrackerError::io(path, e))?;
        Schema::compile(&text, Some(path.to_path_buf()))
    }

    /// The schema for the issues file at `issues_path`: `schema.json` in the same directory
    /// when it exists, the built-in one otherwise.
    pub fn for_issues_file(issues_path: &Path) -> Result<Schema> {
        let beside = issues_path
            .parent()
            .map_or_else(|| PathBuf::from(SCHEMA_FILE), |dir| dir.join(SCHEMA_FILE));
        if beside.is_file() {
            Schema::from_file(&beside)
        } else {
            Schema::builtin()
        }
    }

    /// Where the schema came from: the file, or `None` for the built-in copy.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Every way `record` violates the schema, in jsonschema's order; empty when valid.
    pub fn check(&self, record: &Value) -> Vec<Violation> {
        if self.validator.is_valid(record) {
            return Vec::new();
        }
        self.validator
            .iter_errors(record)
            .map(|error| Violation {
                pointer: error.instance_path().as_str().to_string(),
                message: error.to_string(),
            })
            .collect()
    }

    fn compile(text: &str, source: Option<PathBuf>) -> Result<Schema> {
        let path = source
            .clone()
            .unwrap_or_else(|| PathBuf::from("<built-in schema.json>"));
        let schema_error = |message: String| TrackerError::Schema {
            path: path.clone(),
            message,
        };
        let value: Value =
            serde_json::from_str(text).map_err(|e| schema_error(format!("not JSON: {e}")))?;
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&value)
            .map_err(|e| schema_error(e.to_string()))?;
        Ok(Schema { validator, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPACED: &str = include_str!("../tests/fixtures/x0x.jsonl");
    const COMPACT: &str = include_str!("../tests/fixtures/x0x-symphony.jsonl");

    #[test]
    fn builtin_schema_is_the_repository_schema() {
        let repo_copy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../issues/schema.json");
        let text = std::fs::read_to_string(&repo_copy).unwrap();
        assert_eq!(
            text, BUILTIN_SCHEMA,
            "issues/schema.json and crates/symphony-tracker/src/schema.json differ"
        );
    }

    #[test]
    fn every_fixture_record_matches_the_schema() {
        let schema = Schema::builtin().unwrap();
        for line in SPACED.lines().chain(COMPACT.lines()) {
            let record: Value = serde_json::from_str(line).unwrap();
            assert_eq!(schema.check(&record), [], "{}", &line[..40]);
        }
    }

    #[test]
    fn violations_name_the_pointer_and_the_expectation() {
        let schema = Schema::builtin().unwrap();
        let record = json!({
            "id": "A-1", "identifier": "A-1", "title": "t", "description": null,
            "priority": "high", "state": "todo", "branch_name": null, "url": null,
            "labels": [], "blocked_by": [{"identifier": "A-0"}],
            "created_at": "2026-01-01T00:00:00Z",
            "handoff": {"validation": [{"command": "cargo test", "status": 0}]}
        });
        let mut violations = schema.check(&record);
        violations.sort_by(|a, b| a.pointer.cmp(&b.pointer));
        let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "",
                "/blocked_by/0",
                "/handoff/validation/0/status",
                "/priority"
            ]
        );
        assert!(
            violations[0].message.contains("updated_at"),
            "{violations:?}"
        );
        assert!(violations[3].message.contains("integer"), "{violations:?}");
    }

    #[test]
    fn unknown_fields_and_explicit_nulls_are_allowed() {
        let schema = Schema::builtin().unwrap();
        let record = json!({
            "id": "A-1", "identifier": "A-1", "title": "t", "description": null,
            "priority": null, "state": "todo", "branch_name": null, "url": null,
            "labels": [], "blocked_by": [], "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "handoff": null, "claim": null,
            "x_team": {"anything": [1, 2]}
        });
        assert_eq!(schema.check(&record), []);
    }

    #[test]
    fn a_broken_schema_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema.json");
        std::fs::write(&path, r#"{"type": 12}"#).unwrap();
        let err = Schema::from_file(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: invalid issue schema", path.display())));
        let issues = dir.path().join("issues.jsonl");
        assert!(Schema::for_issues_file(&issues).is_err(), "the file wins");
        std::fs::remove_file(&path).unwrap();
        assert!(Schema::for_issues_file(&issues).unwrap().source().is_none());
    }
}
