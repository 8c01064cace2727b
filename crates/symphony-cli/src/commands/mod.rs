//! One module per subcommand. Each exposes clap `Args` and a `run` returning an [`Outcome`];
//! errors carry their context and `main` maps them to exit codes.

pub mod init;
pub mod issues;
pub mod merge_driver;
pub mod mesh;
pub mod run;
pub mod sync;
pub mod validate;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the command ran and found problems (an invalid file).
    Findings,
}
