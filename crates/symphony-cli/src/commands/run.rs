//! `symphony run [WORKFLOW.md] [--once] [--port N] [--log-format text|json] [--log-level F]
//! [--log-file PATH]`: the orchestrator (Symphony SPEC §16, §17.7; docs/operations.md).
//!
//! Exit codes: 0 after a normal shutdown (Ctrl-C, SIGTERM) and after `--once` when every
//! dispatched issue ended as designed (handed off, or stopped because it left the active
//! states); 1 after `--once` when some did not or a candidate fetch failed and nothing ran,
//! and whenever the orchestrator task fails (a panic: its message is printed, SPEC §17.7); 2
//! when start-up fails (the error's kind and
//! path are printed: `missing_workflow_file`, `workflow_parse_error`, preflight kinds,
//! `tracker_unavailable`, `node_identity_unavailable`, `http_bind_failed`).
//!
//! Nothing here prints with `println!`/`eprintln!`: output goes through writers that ignore
//! errors, so a closed pipe never stops the run.

mod logging;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use symphony_mesh::Identity;
use symphony_orchestrator::orchestrator::{self, RunOptions, RunSummary, StartError};
use symphony_orchestrator::reload::WorkflowStore;
use symphony_orchestrator::workflow::resolve_workflow_path;
use symphony_tracker::Store;

pub use logging::LogFormat;

/// Exit code of a failed start-up.
const STARTUP_FAILURE: u8 = 2;
/// Exit code of `--once` when some issue did not end as designed.
const NOT_AS_DESIGNED: u8 = 1;

/// Arguments of `symphony run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The workflow file (default: ./WORKFLOW.md).
    #[arg(value_name = "WORKFLOW.md")]
    pub path: Option<PathBuf>,
    /// Run one tick, wait for the dispatched agents, print a summary and exit (0: every
    /// dispatched issue ended as designed, 1: some did not).
    #[arg(long)]
    pub once: bool,
    /// Serve the HTTP API on 127.0.0.1:PORT (0: an ephemeral port, printed); overrides
    /// `server.port`.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Log line format on stderr (and in --log-file).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (`info`, `debug`, `symphony_orchestrator=debug,warn`...); default: RUST_LOG,
    /// else `info`.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Also append logs to this file; if it cannot be opened or written, a warning goes to
    /// stderr and the run goes on.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// Runs `symphony run`.
///
/// # Errors
/// An invalid `--log-level` filter or a tokio runtime that cannot start; everything after
/// that is reported through the exit code.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    logging::init(
        args.log_format,
        args.log_level.as_deref(),
        args.log_file.as_deref(),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(serve(args)))
}

async fn serve(args: RunArgs) -> ExitCode {
    let store = match resolve_workflow_path(args.path.as_deref()).and_then(WorkflowStore::open) {
        Ok(store) => store,
        Err(e) => return startup_failure(e.kind(), &e.to_string()),
    };
    let tracker_path = store.current().config.tracker.path.clone();
    let state_dir = Store::new(&tracker_path).state_dir().to_path_buf();
    if let Err(e) = std::fs::create_dir_all(&state_dir) {
        let message = format!(
            "{}: cannot create the state directory: {e}",
            state_dir.display()
        );
        return startup_failure("node_identity_unavailable", &message);
    }
    let identity = match Identity::load_or_create(&state_dir.join("node.key")) {
        Ok(identity) => identity,
        Err(e) => return startup_failure("node_identity_unavailable", &e.to_string()),
    };
    let options = RunOptions {
        node_id: identity.node_id().to_string(),
        once: args.once,
        port: args.port,
        symphony_bin: std::env::current_exe().ok(),
    };
    let mut service = match orchestrator::start(store, options).await {
        Ok(service) => service,
        Err(e) => return startup_error(&e),
    };
    if let Some(addr) = service.http_addr() {
        out(&format!("symphony: HTTP API on http://{addr}/"));
    }
    let shutdown = service.shutdown_handle();
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; shutting down");
        shutdown.shutdown();
    });
    let summary = service.wait().await;
    signals.abort();
    if let Some(failure) = &summary.failure {
        err(&format!("error: orchestrator_failed: {failure}"));
    } else if args.once {
        for line in summary_lines(&summary) {
            out(&line);
        }
    }
    exit_code(&summary, args.once)
}

/// 1 when the orchestrator task failed, or after `--once` when an attempt did not end as
/// designed or nothing ran because the candidate fetch failed; else 0.
fn exit_code(summary: &RunSummary, once: bool) -> ExitCode {
    let failed = summary.failure.is_some();
    let once_failed = once
        && !summary.interrupted
        && (!summary.as_designed()
            || (summary.attempts.is_empty() && summary.fetch_error.is_some()));
    if failed || once_failed {
        ExitCode::from(NOT_AS_DESIGNED)
    } else {
        ExitCode::SUCCESS
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn startup_error(e: &StartError) -> ExitCode {
    startup_failure(e.kind(), &e.to_string())
}

fn startup_failure(kind: &str, message: &str) -> ExitCode {
    tracing::error!(error_kind = kind, error = %message, "start-up failed");
    err(&format!("error: {kind}: {message}"));
    ExitCode::from(STARTUP_FAILURE)
}

/// Writes a line to stdout, ignoring a closed pipe.
fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Writes a line to stderr, ignoring a closed pipe.
fn err(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The `--once` report: one row per attempt, then the verdict; without attempts, why.
fn summary_lines(summary: &RunSummary) -> Vec<String> {
    if summary.attempts.is_empty() {
        let mut lines = vec![match &summary.fetch_error {
            Some(error) => {
                format!(
                    "symphony run --once: nothing was dispatched: candidate fetch failed: {error}"
                )
            }
            None => "symphony run --once: no issue was ready to dispatch".to_string(),
        }];
        for blocked in &summary.unclaimable {
            lines.push(format!(
                "  {} is ready but not claimable by this node: {}",
                blocked.issue_identifier, blocked.reason
            ));
        }
        return lines;
    }
    let mut lines = Vec::new();
    let rows: Vec<[String; 5]> = summary
        .attempts
        .iter()
        .map(|a| {
            [
                a.issue_identifier.clone(),
                a.outcome.clone(),
                a.state.clone().unwrap_or_else(|| "-".into()),
                a.proofs_dir.clone().unwrap_or_else(|| "-".into()),
                a.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["ISSUE", "OUTCOME", "STATE", "PROOFS", "ERROR"].map(String::from);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row.iter()) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        line.push_str(&row[4]);
        lines.push(line.trim_end().to_string());
    }
    let designed = summary.attempts.iter().filter(|a| a.as_designed).count();
    let total = summary.attempts.len();
    let verdict = if summary.interrupted {
        "interrupted".to_string()
    } else if designed == total {
        "all as designed".to_string()
    } else {
        format!("{} not as designed", total - designed)
    };
    lines.push(format!(
        "{total} attempt(s): {designed} as designed; {verdict}"
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_says_why_nothing_ran_and_exits_1_when_the_candidate_fetch_failed() {
        let summary = RunSummary {
            fetch_error: Some(
                "issues/issues.jsonl:1:1: the line starts with a UTF-8 byte order mark".into(),
            ),
            ..RunSummary::default()
        };
        assert_eq!(
            summary_lines(&summary),
            [
                "symphony run --once: nothing was dispatched: candidate fetch failed: issues/issues.jsonl:1:1: the line starts with a UTF-8 byte order mark"
            ]
        );
        assert_eq!(exit_code(&summary, true), ExitCode::from(NOT_AS_DESIGNED));
        let idle = RunSummary::default();
        assert_eq!(
            summary_lines(&idle),
            ["symphony run --once: no issue was ready to dispatch"]
        );
        assert_eq!(exit_code(&idle, true), ExitCode::SUCCESS);
    }

    #[test]
    fn spec_17_7_a_failed_orchestrator_task_exits_non_zero() {
        let summary = RunSummary {
            failure: Some("the orchestrator task panicked: boom".into()),
            ..RunSummary::default()
        };
        assert_eq!(exit_code(&summary, false), ExitCode::from(NOT_AS_DESIGNED));
        assert_eq!(exit_code(&summary, true), ExitCode::from(NOT_AS_DESIGNED));
    }
}
