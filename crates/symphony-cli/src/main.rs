//! `symphony`: the git-backed issue tracker, agent orchestrator and mesh node.
//!
//! Exit codes: 0 success, 1 a check found problems or an operation failed, 2 usage or I/O
//! error (clap's own usage errors also exit 2).

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "symphony",
    version,
    about = "Git-backed issue tracker, agent orchestrator and mesh node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The embedded mesh node: identity, serve, status, peers.
    Mesh(commands::mesh::MeshArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mesh(args) => commands::mesh::run(args),
    };
    result.unwrap_or_else(|err| {
        eprintln!("error: {err:#}");
        ExitCode::from(2)
    })
}
