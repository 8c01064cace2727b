//! `symphony`: the git-backed issue tracker, agent orchestrator and mesh node.
//!
//! Exit codes (docs/cli.md): 0 success; 1 findings (an invalid file) or a refused or failed
//! operation; 2 usage, configuration or I/O errors.

mod commands;
mod workflow_tracker;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use symphony_tracker::TrackerError;

use commands::Outcome;

/// A git-backed issue tracker and agent orchestrator over one repository.
#[derive(Debug, Parser)]
#[command(name = "symphony", version, propagate_version = true)]
struct Cli {
    /// WORKFLOW.md whose `tracker:` settings apply (default: ./WORKFLOW.md when it exists).
    #[arg(long, global = true, value_name = "WORKFLOW")]
    workflow: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the orchestrator: poll the tracker, dispatch agents, record their handoffs.
    Run(commands::run::RunArgs),
    /// Check an issues file: schema, ids, blockers, timestamps, states.
    Validate(commands::validate::Args),
    /// Read and change issues.
    Issues(commands::issues::Args),
    /// Scaffold WORKFLOW.md, issues/, .gitignore and .gitattributes in a repository.
    Init(commands::init::Args),
    /// Git merge driver for issues.jsonl: `symphony merge-driver %O %A %B %P`.
    MergeDriver(commands::merge_driver::Args),
    /// The embedded mesh node: identity, serve, status, peers.
    Mesh(commands::mesh::MeshArgs),
    /// The tracker as a synced document: `sync status`.
    Sync(commands::sync::Args),
}

/// An invocation or configuration problem: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let workflow = cli.workflow.as_deref();
    let result = match cli.command {
        // `run` and `mesh serve` install their own log sinks.
        Command::Run(args) => return exit_status(commands::run::run(args)),
        Command::Mesh(args) => return exit_status(commands::mesh::run(args)),
        Command::Validate(args) => with_logging(|| commands::validate::run(args, workflow)),
        Command::Issues(args) => with_logging(|| commands::issues::run(args, workflow)),
        Command::Init(args) => with_logging(|| commands::init::run(args)),
        Command::MergeDriver(args) => with_logging(|| commands::merge_driver::run(args, workflow)),
        Command::Sync(args) => with_logging(|| commands::sync::run(args, workflow)),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::from(exit_code(&err))
        }
    }
}

/// Runs a short-lived command with warnings (or `RUST_LOG`) logged to stderr.
fn with_logging<T>(command: impl FnOnce() -> T) -> T {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    command()
}

/// The exit code of a command that chose its own, or 2 with the error printed.
fn exit_status(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|err| {
        report(&err);
        ExitCode::from(2)
    })
}

/// Prints an error chain to stderr; a closed stderr is not worth failing over.
fn report(err: &anyhow::Error) {
    let _ = writeln!(std::io::stderr().lock(), "error: {err:#}");
}

/// 2 for usage, configuration and I/O problems; 1 for everything else (the file's content,
/// a refused operation).
fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<UsageError>() || cause.is::<std::io::Error>() {
            return 2;
        }
        if let Some(sync) = cause.downcast_ref::<symphony_sync::SyncError>() {
            // A refused document or its files: I/O, like the tracker's own.
            if !matches!(sync, symphony_sync::SyncError::Tracker(_)) {
                return 2;
            }
        }
        if let Some(tracker) = cause.downcast_ref::<TrackerError>() {
            return match tracker {
                TrackerError::Io { .. }
                | TrackerError::Missing { .. }
                | TrackerError::LockTimeout { .. }
                | TrackerError::Schema { .. }
                | TrackerError::NoIdPrefix
                | TrackerError::Git { .. } => 2,
                _ => 1,
            };
        }
    }
    1
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
