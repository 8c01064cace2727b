//! The Symphony orchestrator (OpenAI Symphony SPEC draft v1) over the git issue tracker.
//!
//! Execution layer: [`workflow`] loading and [`reload`], typed [`config`] with
//! [`config::preflight`], strict [`prompt`] rendering, per-issue [`workspace`]s, lifecycle
//! [`hooks`], and agent [`runner`]s. Scheduling: the IO-free [`scheduler`] state machine.
//! `docs/workflow.md` and `docs/runners.md` are the operator references.

pub mod config;
pub mod hooks;
mod process_group;
pub mod prompt;
pub mod reload;
pub mod runner;
pub mod scheduler;
pub mod workflow;
pub mod workspace;

pub use process_group::{CapturedOutput, TERMINATE_GRACE};
