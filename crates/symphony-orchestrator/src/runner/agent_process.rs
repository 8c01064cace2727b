//! Launching an agent process: working directory check (SPEC §9.5 invariant 1), allowlisted
//! environment, its own process group, stdout framed into lines and copied to the stdout log,
//! stderr copied to the stderr log (never parsed, SPEC §10.3) with its tail kept for errors.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::JoinHandle;

use super::lines::{LineReader, MAX_LINE_BYTES};
use super::{AgentLaunch, RunnerError};
use crate::process_group::{self, DRAIN_GRACE, EnvPolicy, ProcessGroup, Tail, capture};
use crate::workspace::ensure_inside_root;

/// Bytes of agent stderr kept for error reports.
pub const STDERR_TAIL_BYTES: usize = 16 * 1024;
/// Characters of the stderr tail put into an error message.
const STDERR_TAIL_CHARS: usize = 2_000;
/// Exit status bash uses for "command not found".
const EXIT_COMMAND_NOT_FOUND: i32 = 127;

pub(crate) struct AgentProcess {
    pub command: String,
    pub child: Child,
    pub group: ProcessGroup,
    pub pid: Option<u32>,
    pub stdin: Option<ChildStdin>,
    pub stdout: LineReader<ChildStdout>,
    stdout_log: Option<File>,
    stderr: Option<JoinHandle<Tail>>,
}

impl std::fmt::Debug for AgentProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentProcess")
            .field("command", &self.command)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

async fn open_log(path: &Path) -> Result<File, RunnerError> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| RunnerError::io(parent, "create the log directory", &e))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| RunnerError::io(path, "open the log file", &e))
}

/// Writes `text` to `path`, creating parent directories (the prompt file).
pub(crate) async fn write_file(path: &Path, text: &str) -> Result<(), RunnerError> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| RunnerError::io(parent, "create the directory", &e))?;
    }
    tokio::fs::write(path, text)
        .await
        .map_err(|e| RunnerError::io(path, "write the file", &e))
}

impl AgentProcess {
    /// Verifies the workspace, then starts `bash -lc <command>` there with only the allowlisted
    /// variables plus `env`.
    pub(crate) async fn spawn(
        command: &str,
        launch: &AgentLaunch,
        allowlist: &[String],
        env: &[(String, String)],
    ) -> Result<Self, RunnerError> {
        ensure_inside_root(&launch.workspace_root, &launch.workspace_path)
            .await
            .map_err(|e| RunnerError::InvalidWorkspaceCwd {
                path: launch.workspace_path.clone(),
                reason: e.to_string(),
            })?;
        let stdout_log = open_log(&launch.logs.stdout).await?;
        let stderr_log = open_log(&launch.logs.stderr).await?;
        let mut cmd = process_group::bash(
            command,
            &launch.workspace_path,
            EnvPolicy::Allowlist(allowlist),
            env,
            Stdio::piped(),
        );
        let mut child = cmd.spawn().map_err(|e| RunnerError::Spawn {
            command: command.to_owned(),
            reason: e.to_string(),
        })?;
        let group = ProcessGroup::of(&child);
        let pid = child.id();
        let stdout = child.stdout.take().ok_or_else(|| RunnerError::Spawn {
            command: command.to_owned(),
            reason: "stdout was not captured".into(),
        })?;
        let stderr = child
            .stderr
            .take()
            .map(|r| tokio::spawn(capture(r, STDERR_TAIL_BYTES, Some(stderr_log))));
        tracing::info!(pid = ?pid, cwd = %launch.workspace_path.display(), "agent process started");
        Ok(Self {
            command: command.to_owned(),
            stdin: child.stdin.take(),
            child,
            group,
            pid,
            stdout: LineReader::new(stdout, MAX_LINE_BYTES),
            stdout_log: Some(stdout_log),
            stderr,
        })
    }

    /// SIGTERM to the process group, SIGKILL after the grace period.
    pub(crate) async fn terminate(&mut self) {
        self.group.terminate(&mut self.child).await;
    }

    /// Appends one stdout line to the stdout log (a failing log is dropped, not fatal).
    pub(crate) async fn log_stdout(&mut self, line: &[u8]) {
        if let Some(log) = self.stdout_log.as_mut() {
            let written = async {
                log.write_all(line).await?;
                log.write_all(b"\n").await
            }
            .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "agent stdout log write failed; no longer logging stdout");
                self.stdout_log = None;
            }
        }
    }

    /// Terminates the process group and returns the stderr tail (bounded wait for the reader).
    pub(crate) async fn shut_down(&mut self) -> String {
        self.terminate().await;
        if let Some(log) = self.stdout_log.as_mut() {
            let _ = log.flush().await;
        }
        let Some(mut task) = self.stderr.take() else {
            return String::new();
        };
        match tokio::time::timeout(DRAIN_GRACE, &mut task).await {
            Ok(Ok(tail)) => tail.into_output().truncated(STDERR_TAIL_CHARS),
            _ => {
                task.abort();
                String::new()
            }
        }
    }

    /// The error for a process that ended with `status` while a turn or request was pending.
    /// `crash` builds the error for a non-zero exit that is not "command not found".
    pub(crate) fn exit_error(
        &self,
        status: Option<ExitStatus>,
        stderr_tail: String,
        crash: impl FnOnce(Option<i32>, Option<i32>, String) -> RunnerError,
    ) -> RunnerError {
        let code = status.and_then(|s| s.code());
        if code == Some(EXIT_COMMAND_NOT_FOUND) {
            return RunnerError::AgentNotFound {
                command: self.command.clone(),
                stderr_tail,
            };
        }
        crash(code, status.and_then(|s| s.signal()), stderr_tail)
    }
}
