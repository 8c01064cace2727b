//! The git-backed issue tracker: `issues/issues.jsonl`, one JSON object per line.
//!
//! See `docs/tracker.md` and `issues/schema.md` for the file contract.
