//! Workspace lifecycle hooks (Symphony SPEC §9.4, §15.4): `bash -lc <script>` in the workspace,
//! bounded by `hooks.timeout_ms`, in its own process group so a timeout stops every descendant
//! (SIGTERM, then SIGKILL after [`crate::TERMINATE_GRACE`]).
//!
//! Failure semantics (SPEC §9.4): `after_create` failure or timeout is fatal to workspace creation,
//! `before_run` to the attempt; `after_run` and `before_remove` failures are logged and ignored.
//! [`run_hook`] always returns a [`HookOutcome`] (kept with the attempt's proofs);
//! [`HookOutcome::check`] turns a failed one into a [`HookError`] where the caller treats it as
//! fatal. Hooks inherit the orchestrator's environment: they are fully trusted configuration.
//! Background processes a hook starts are stopped when it exits; detach with `setsid` to keep one.
//! Logs carry whatever span the caller is in (`issue_id`, `issue_identifier`).

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::io::AsyncRead;
use tokio::task::JoinHandle;

use crate::config::HooksConfig;
use crate::process_group::{
    self, CapturedOutput, DRAIN_GRACE, EnvPolicy, ProcessGroup, Tail, capture,
};

/// Bytes of stdout and of stderr kept per hook run (the last ones).
pub const HOOK_OUTPUT_CAPACITY: usize = 64 * 1024;
/// Characters of hook output put in a log line.
const LOG_OUTPUT_CHARS: usize = 2_000;

/// The four hooks of SPEC §5.3.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// `hooks.after_create`.
    AfterCreate,
    /// `hooks.before_run`.
    BeforeRun,
    /// `hooks.after_run`.
    AfterRun,
    /// `hooks.before_remove`.
    BeforeRemove,
}

impl HookKind {
    /// The config key name (`after_create`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AfterCreate => "after_create",
            Self::BeforeRun => "before_run",
            Self::AfterRun => "after_run",
            Self::BeforeRemove => "before_remove",
        }
    }

    /// Whether a failure or timeout aborts the surrounding operation (SPEC §9.4).
    pub fn is_fatal(self) -> bool {
        matches!(self, Self::AfterCreate | Self::BeforeRun)
    }

    /// The configured script for this hook, if any.
    pub fn script(self, hooks: &HooksConfig) -> Option<&str> {
        match self {
            Self::AfterCreate => hooks.after_create.as_deref(),
            Self::BeforeRun => hooks.before_run.as_deref(),
            Self::AfterRun => hooks.after_run.as_deref(),
            Self::BeforeRemove => hooks.before_remove.as_deref(),
        }
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a hook run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HookStatus {
    /// Exit status 0.
    Succeeded,
    /// Non-zero exit or killed by a signal.
    Failed {
        /// Exit code, when the shell exited.
        exit_code: Option<i32>,
        /// Signal number, when it was killed.
        signal: Option<i32>,
    },
    /// Ran longer than the timeout; the whole process group was killed.
    TimedOut {
        /// The timeout in milliseconds.
        timeout_ms: u64,
    },
    /// `bash` could not be started.
    SpawnFailed {
        /// The OS error.
        message: String,
    },
}

/// One hook run: how it ended and the tail of its output (for the attempt's proofs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookOutcome {
    /// Which hook.
    pub kind: HookKind,
    /// How it ended.
    #[serde(flatten)]
    pub status: HookStatus,
    /// When it started (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Last [`HOOK_OUTPUT_CAPACITY`] bytes of stdout.
    pub stdout: CapturedOutput,
    /// Last [`HOOK_OUTPUT_CAPACITY`] bytes of stderr.
    pub stderr: CapturedOutput,
}

impl HookOutcome {
    /// True when the hook exited 0.
    pub fn succeeded(&self) -> bool {
        self.status == HookStatus::Succeeded
    }

    /// `Ok` when the hook succeeded, else the [`HookError`] describing the failure.
    ///
    /// # Errors
    /// `hook_failed`, `hook_timeout` or `hook_spawn_failed`.
    pub fn check(&self) -> Result<(), HookError> {
        let kind = self.kind;
        match &self.status {
            HookStatus::Succeeded => Ok(()),
            HookStatus::Failed { exit_code, signal } => Err(HookError::Failed {
                kind,
                exit_code: *exit_code,
                signal: *signal,
                stderr_tail: self.stderr.truncated(LOG_OUTPUT_CHARS),
            }),
            HookStatus::TimedOut { timeout_ms } => Err(HookError::TimedOut {
                kind,
                timeout_ms: *timeout_ms,
            }),
            HookStatus::SpawnFailed { message } => Err(HookError::SpawnFailed {
                kind,
                message: message.clone(),
            }),
        }
    }
}

/// A hook failure where the caller treats it as fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The script exited non-zero or was killed by a signal.
    #[error("{kind} hook failed (exit code {exit_code:?}, signal {signal:?}): {stderr_tail}")]
    Failed {
        /// Which hook.
        kind: HookKind,
        /// Exit code, when it exited.
        exit_code: Option<i32>,
        /// Signal, when killed.
        signal: Option<i32>,
        /// End of its stderr.
        stderr_tail: String,
    },
    /// The script ran past `hooks.timeout_ms`.
    #[error("{kind} hook timed out after {timeout_ms} ms; its process group was killed")]
    TimedOut {
        /// Which hook.
        kind: HookKind,
        /// The timeout in milliseconds.
        timeout_ms: u64,
    },
    /// `bash` could not be started.
    #[error("{kind} hook could not start bash: {message}")]
    SpawnFailed {
        /// Which hook.
        kind: HookKind,
        /// The OS error.
        message: String,
    },
}

impl HookError {
    /// Stable class: `hook_failed`, `hook_timeout`, `hook_spawn_failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Failed { .. } => "hook_failed",
            Self::TimedOut { .. } => "hook_timeout",
            Self::SpawnFailed { .. } => "hook_spawn_failed",
        }
    }
}

/// Runs the configured `kind` hook in `cwd` when one is configured (`None` otherwise).
pub async fn run_configured_hook(
    kind: HookKind,
    hooks: &HooksConfig,
    cwd: &Path,
    env: &[(String, String)],
) -> Option<HookOutcome> {
    let script = kind.script(hooks)?;
    Some(run_hook(kind, script, cwd, hooks.timeout_ms, env).await)
}

/// Runs `script` as `bash -lc <script>` with `cwd` as working directory, the orchestrator's
/// environment plus `env`, and stdin closed. After `timeout_ms` the whole process group is
/// terminated (SIGTERM, then SIGKILL after a grace period); when the shell exits, descendants
/// still in its group are terminated the same way. Logs start,
/// failure and timeout with truncated output (SPEC §9.4, §15.4).
pub async fn run_hook(
    kind: HookKind,
    script: &str,
    cwd: &Path,
    timeout_ms: u64,
    env: &[(String, String)],
) -> HookOutcome {
    let started_at = OffsetDateTime::now_utc();
    let clock = Instant::now();
    tracing::info!(hook = kind.as_str(), cwd = %cwd.display(), timeout_ms, "hook started");
    let mut cmd = process_group::bash(script, cwd, EnvPolicy::Inherit, env, Stdio::null());
    let (status, stdout, stderr) = match cmd.spawn() {
        Err(e) => (
            HookStatus::SpawnFailed {
                message: e.to_string(),
            },
            CapturedOutput::default(),
            CapturedOutput::default(),
        ),
        Ok(mut child) => {
            let mut group = ProcessGroup::of(&child);
            let out = spawn_capture(child.stdout.take());
            let err = spawn_capture(child.stderr.take());
            let waited =
                tokio::time::timeout(Duration::from_millis(timeout_ms), child.wait()).await;
            // After a timeout, and after a clean exit for descendants left in the group.
            group.terminate(&mut child).await;
            let status = match waited {
                Ok(Ok(exit)) if exit.success() => HookStatus::Succeeded,
                Ok(Ok(exit)) => HookStatus::Failed {
                    exit_code: exit.code(),
                    signal: exit.signal(),
                },
                Ok(Err(e)) => HookStatus::SpawnFailed {
                    message: format!("waiting for bash failed: {e}"),
                },
                Err(_) => HookStatus::TimedOut { timeout_ms },
            };
            (status, finish_capture(out).await, finish_capture(err).await)
        }
    };
    let outcome = HookOutcome {
        kind,
        status,
        started_at,
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        stdout,
        stderr,
    };
    log_outcome(&outcome);
    outcome
}

fn log_outcome(outcome: &HookOutcome) {
    let hook = outcome.kind.as_str();
    let fatal = outcome.kind.is_fatal();
    let duration_ms = outcome.duration_ms;
    match &outcome.status {
        HookStatus::Succeeded => tracing::info!(hook, duration_ms, "hook completed"),
        HookStatus::Failed { exit_code, signal } => tracing::warn!(
            hook,
            fatal,
            duration_ms,
            exit_code = ?exit_code,
            signal = ?signal,
            stderr = %outcome.stderr.truncated(LOG_OUTPUT_CHARS),
            stdout = %outcome.stdout.truncated(LOG_OUTPUT_CHARS),
            "hook failed"
        ),
        HookStatus::TimedOut { timeout_ms } => tracing::warn!(
            hook,
            fatal,
            timeout_ms,
            stderr = %outcome.stderr.truncated(LOG_OUTPUT_CHARS),
            "hook timed out; process group killed"
        ),
        HookStatus::SpawnFailed { message } => {
            tracing::warn!(hook, fatal, error = %message, "hook could not start");
        }
    }
}

fn spawn_capture<R>(pipe: Option<R>) -> Option<JoinHandle<Tail>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    pipe.map(|r| tokio::spawn(capture(r, HOOK_OUTPUT_CAPACITY, None::<tokio::fs::File>)))
}

async fn finish_capture(task: Option<JoinHandle<Tail>>) -> CapturedOutput {
    let Some(mut task) = task else {
        return CapturedOutput::default();
    };
    match tokio::time::timeout(DRAIN_GRACE, &mut task).await {
        Ok(Ok(tail)) => tail.into_output(),
        _ => {
            task.abort();
            CapturedOutput::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_output_and_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let ok = run_hook(
            HookKind::AfterRun,
            "echo out; echo err >&2; pwd",
            dir.path(),
            5_000,
            &[],
        )
        .await;
        assert!(ok.succeeded(), "{ok:?}");
        let cwd = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(ok.stdout.text, format!("out\n{}\n", cwd.display()));
        assert_eq!(ok.stderr.text, "err\n");

        let env = [("SYMPHONY_X".to_owned(), "42".to_owned())];
        let failed = run_hook(
            HookKind::BeforeRun,
            "echo $SYMPHONY_X >&2; exit 3",
            dir.path(),
            5_000,
            &env,
        )
        .await;
        assert_eq!(
            failed.status,
            HookStatus::Failed {
                exit_code: Some(3),
                signal: None
            }
        );
        let err = failed.check().unwrap_err();
        assert_eq!(err.kind(), "hook_failed");
        assert!(err.to_string().contains("42"), "{err}");
    }

    #[tokio::test]
    async fn output_is_bounded_to_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let script = "head -c 200000 /dev/zero | tr '\\0' 'a'; printf END";
        let o = run_hook(HookKind::AfterRun, script, dir.path(), 10_000, &[]).await;
        assert_eq!(o.stdout.text.len(), HOOK_OUTPUT_CAPACITY);
        assert!(o.stdout.text.ends_with("aEND"));
        assert_eq!(
            o.stdout.dropped_bytes,
            200_003 - HOOK_OUTPUT_CAPACITY as u64
        );
    }
}
