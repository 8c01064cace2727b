//! `symphony`: the git-backed issue tracker, agent orchestrator and mesh node.

mod commands;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A git-backed issue tracker and agent orchestrator over one repository.
#[derive(Debug, Parser)]
#[command(name = "symphony", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the orchestrator: poll the tracker, dispatch agents, record their handoffs.
    Run(commands::run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => commands::run::run(args),
    };
    result.unwrap_or_else(|e| {
        let _ = writeln!(std::io::stderr().lock(), "error: {e:#}");
        ExitCode::from(2)
    })
}
