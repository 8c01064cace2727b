//! The git-backed issue tracker: `issues/issues.jsonl`, one JSON object per line, shared by
//! humans, agents, CI and other nodes.
//!
//! - [`document`]: the file as text — lines, terminators, style, the checks every command runs.
//! - [`store`]: minimal-diff, crash-safe, locked read-modify-write transactions.
//! - [`heads`]: the scheduling fields of every record, streamed (`list`, `ready`, dispatch).
//! - [`model`]: the typed issue model of the x0x schema.
//! - [`states`], [`ready`]: state lists, readiness and dispatch order (SPEC §8.2).
//! - [`claims`]: sharded TTL claim rules as pure functions.
//! - [`schema`], [`validate`]: the JSON Schema and every check of `symphony validate`.
//! - [`ids`], [`ops`]: id allocation and the typed operations commands and the orchestrator
//!   run inside a transaction (create, update, close, deps, handoff, claim/heartbeat/release).
//! - [`merge`]: the three-way, per-field merge behind `symphony merge-driver`.
//! - [`git`]: committing just the issues file.
//!
//! See `docs/tracker.md` and `issues/schema.md` for the file contract.

pub mod claims;
pub mod document;
pub mod durable;
pub mod error;
pub mod git;
pub mod heads;
pub mod ids;
pub(crate) mod index;
pub mod json_style;
pub mod lock;
pub mod merge;
pub mod model;
pub mod ops;
pub mod ready;
pub(crate) mod scan;
pub mod schema;
pub mod states;
pub mod store;
pub mod validate;

pub use document::Document;
pub use error::{Result, TrackerError};
pub use json_style::JsonStyle;
pub use model::{BlockerRef, Claim, Handoff, Issue, IssueHead, Link, Shard, ValidationRun};
pub use ready::{Readiness, ReadyIndex, ready, sort_for_dispatch};
pub use schema::Schema;
pub use states::StateConfig;
pub use store::{Store, StoreOptions, Transaction, WriteReport};
