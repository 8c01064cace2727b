//! The Symphony orchestrator (OpenAI Symphony SPEC draft v1) over the git issue tracker.

pub mod scheduler;
