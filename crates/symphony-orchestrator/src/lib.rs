//! The Symphony orchestrator (OpenAI Symphony SPEC, revision 1f3219b) over the git issue tracker.
//!
//! Execution layer: [`workflow`] loading and [`reload`], typed [`config`] with
//! [`config::preflight`], strict [`prompt`] rendering, per-issue [`workspace`]s (held through a [`workspace_lock`]), lifecycle
//! [`hooks`], and agent [`runner`]s. Scheduling: the IO-free [`scheduler`] state machine,
//! driven by the [`orchestrator`] task over the [`git_issues`] tracker adapter and its
//! normalized [`issue`]s; one run
//! attempt is a [`worker`], which records [`handoff`]s and keeps [`proofs`]. Observability:
//! [`status`] snapshots served by [`http`]. `docs/orchestrator.md`, `docs/operations.md`,
//! `docs/workflow.md` and `docs/runners.md` are the operator references.

pub mod config;
pub mod git_issues;
pub mod handoff;
pub mod hooks;
pub mod http;
pub mod issue;
pub mod orchestrator;
mod process_group;
pub mod prompt;
pub mod proofs;
pub mod reload;
pub mod runner;
pub mod scheduler;
pub mod status;
pub mod worker;
pub mod workflow;
pub mod workspace;
pub mod workspace_lock;

pub use process_group::{CapturedOutput, TERMINATE_GRACE};
