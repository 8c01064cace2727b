//! Agent runners (Symphony SPEC §10): run turns of a coding agent for one issue in its workspace
//! and stream [`AgentEvent`]s to the orchestrator.
//!
//! The scheduler starts an [`AgentSession`] per worker run, calls [`AgentSession::run_turn`]
//! with the rendered prompt for turn 1 and continuation guidance for later turns (it decides
//! whether to continue, SPEC §7.1), then [`AgentSession::stop`]. Each turn ends with exactly one
//! terminal event (`turn_completed`, `turn_failed`, `turn_cancelled` or `turn_input_required`).
//! Two runners: [`shell`] (any harness as a process per turn, `docs/runners.md`) and [`codex`]
//! (the Codex app-server protocol over stdio).

mod agent_process;
pub mod codex;
pub mod events;
mod formats;
mod lines;
pub mod presets;
pub mod shell;

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tracing::Instrument;

use crate::config::{RunnerConfig, RunnerKind};
pub use agent_process::STDERR_TAIL_BYTES;
pub use events::{AgentEvent, AgentEventKind, MAX_EVENT_MESSAGE_CHARS, TokenUsage};
use events::{EventBody, EventSink};
pub use lines::MAX_LINE_BYTES;

/// Files a session writes for the attempt's proofs. Logs are appended to across turns; the
/// prompt file holds the latest turn's prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLogs {
    /// Raw agent stdout, one line per line read (protocol messages for codex).
    pub stdout: PathBuf,
    /// Raw agent stderr.
    pub stderr: PathBuf,
    /// The prompt of the current turn; its path is `$SYMPHONY_PROMPT_FILE` for shell agents.
    pub prompt: PathBuf,
}

/// Everything a runner needs to start a session for one run attempt.
#[derive(Debug, Clone)]
pub struct AgentLaunch {
    /// Tracker id of the issue (`SYMPHONY_ISSUE_ID`).
    pub issue_id: String,
    /// Human identifier (`SYMPHONY_ISSUE_IDENTIFIER`).
    pub issue_identifier: String,
    /// Issue title (codex turn title `<identifier>: <title>`).
    pub issue_title: String,
    /// `None` on the first run, else the retry/continuation attempt (`SYMPHONY_ATTEMPT`, `0` when
    /// `None`).
    pub attempt: Option<u32>,
    /// The configured workspace root; the workspace must resolve strictly inside it.
    pub workspace_root: PathBuf,
    /// The workspace ([`crate::workspace::Workspace::path`]); the agent's working directory.
    pub workspace_path: PathBuf,
    /// Extra environment for the agent (for example `SYMPHONY_ISSUES_FILE`); never logged.
    pub env: Vec<(String, String)>,
    /// Where stdout, stderr and the prompt go.
    pub logs: AgentLogs,
    /// Where events go.
    pub events: mpsc::Sender<AgentEvent>,
    /// The tracker the codex runner's host-side tools act on (`symphony_handoff`,
    /// `symphony_issue`); `None` offers no tools.
    pub tracker_tools: Option<codex::TrackerTools>,
}

impl AgentLaunch {
    /// `SYMPHONY_ISSUE_ID`, `SYMPHONY_ISSUE_IDENTIFIER`, `SYMPHONY_ATTEMPT`,
    /// `SYMPHONY_WORKSPACE`, then the caller's variables.
    fn symphony_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("SYMPHONY_ISSUE_ID".to_owned(), self.issue_id.clone()),
            (
                "SYMPHONY_ISSUE_IDENTIFIER".to_owned(),
                self.issue_identifier.clone(),
            ),
            (
                "SYMPHONY_ATTEMPT".to_owned(),
                self.attempt.unwrap_or(0).to_string(),
            ),
            (
                "SYMPHONY_WORKSPACE".to_owned(),
                self.workspace_path.display().to_string(),
            ),
        ];
        env.extend(self.env.iter().cloned());
        env
    }

    fn sink(&self) -> EventSink {
        EventSink::new(self.issue_id.clone(), self.events.clone())
    }
}

/// A successfully completed turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnOutcome {
    /// 1-based turn number within the session.
    pub turn: u32,
    /// The agent's session id, when it reported one (`<thread_id>-<turn_id>` for codex).
    pub session_id: Option<String>,
    /// Absolute token totals of the session after this turn, when the agent reported usage.
    pub usage: Option<TokenUsage>,
    /// Wall time of the turn in milliseconds.
    pub duration_ms: u64,
    /// The agent's last message of the turn, summarized.
    pub last_message: Option<String>,
}

/// A runner failure. [`RunnerError::kind`] gives the stable class (SPEC §10.6 names where they
/// exist).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunnerError {
    /// The agent command was not found (bash exit 127).
    #[error("agent command not found: `{command}`: {stderr_tail}")]
    AgentNotFound {
        /// The command.
        command: String,
        /// End of stderr.
        stderr_tail: String,
    },
    /// The workspace failed the cwd/containment check (SPEC §9.5).
    #[error("{path}: refusing to launch the agent here: {reason}")]
    InvalidWorkspaceCwd {
        /// The workspace path.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// `bash` could not be started.
    #[error("cannot start `{command}`: {reason}")]
    Spawn {
        /// The command.
        command: String,
        /// The OS error.
        reason: String,
    },
    /// A log or prompt file could not be written.
    #[error("{path}: cannot {op}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        reason: String,
    },
    /// No response to a protocol request within `read_timeout_ms`.
    #[error("no response to `{method}` within {timeout_ms} ms")]
    ResponseTimeout {
        /// The request method.
        method: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The turn ran past `turn_timeout_ms`; the process group was killed.
    #[error("turn did not finish within {timeout_ms} ms; agent killed")]
    TurnTimeout {
        /// The timeout.
        timeout_ms: u64,
    },
    /// No agent output for `stall_timeout_ms`; the process group was killed.
    #[error("no agent output for {idle_ms} ms; agent killed as stalled")]
    Stalled {
        /// The stall timeout that elapsed.
        idle_ms: u64,
    },
    /// The codex app-server exited while a request or turn was pending.
    #[error("agent app-server exited (code {exit_code:?}, signal {signal:?}): {stderr_tail}")]
    PortExit {
        /// Exit code.
        exit_code: Option<i32>,
        /// Signal.
        signal: Option<i32>,
        /// End of stderr.
        stderr_tail: String,
    },
    /// The shell agent exited non-zero or was killed by a signal.
    #[error("agent exited with code {exit_code:?}, signal {signal:?}: {stderr_tail}")]
    AgentCrashed {
        /// Exit code.
        exit_code: Option<i32>,
        /// Signal.
        signal: Option<i32>,
        /// End of stderr.
        stderr_tail: String,
    },
    /// The app-server answered a request with an error, or with a result missing required ids.
    #[error("`{method}` failed: {message}")]
    ResponseError {
        /// The request method.
        method: String,
        /// JSON-RPC error code, when given.
        code: Option<i64>,
        /// The error message.
        message: String,
    },
    /// The agent reported the turn as failed.
    #[error("turn failed: {message}")]
    TurnFailed {
        /// The agent's reason.
        message: String,
    },
    /// The agent reported the turn as cancelled or interrupted.
    #[error("turn cancelled: {message}")]
    TurnCancelled {
        /// The agent's reason.
        message: String,
    },
    /// The agent asked for user input (hard failure by policy, SPEC §10.5).
    #[error("agent requested user input via `{method}`; failing the attempt")]
    TurnInputRequired {
        /// The request method.
        method: String,
    },
    /// The agent asked for an approval the configured `approval_policy` does not grant
    /// unattended (`runner::codex` policy); the attempt waits for an operator.
    #[error("agent requested approval via `{method}` that the policy does not grant: {reason}")]
    ApprovalRequired {
        /// The request method.
        method: String,
        /// Why it was not granted, with what was asked.
        reason: String,
    },
    /// The codex command was not found (bash exit 127; SPEC §10.6 `codex_not_found`).
    #[error("codex not found: `{command}`: {stderr_tail}")]
    CodexNotFound {
        /// The command.
        command: String,
        /// End of stderr.
        stderr_tail: String,
    },
    /// The app-server's answer does not have the shape of the targeted Codex version.
    #[error(
        "`{method}`: codex {installed} answered in a shape this client (written for codex \
         {targeted}) does not understand: {detail}"
    )]
    ProtocolMismatch {
        /// The request method.
        method: String,
        /// The installed Codex version as it reported it (`unknown` when it did not).
        installed: String,
        /// [`codex::TARGET_CODEX_VERSION`].
        targeted: String,
        /// What did not fit.
        detail: String,
    },
}

impl RunnerError {
    /// Stable class: `agent_not_found`, `invalid_workspace_cwd`, `agent_spawn_failed`,
    /// `agent_io`, `response_timeout`, `turn_timeout`, `stalled`, `port_exit`, `agent_crashed`,
    /// `response_error`, `turn_failed`, `turn_cancelled`, `turn_input_required`,
    /// `approval_required`, `codex_not_found`, `protocol_mismatch`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AgentNotFound { .. } => "agent_not_found",
            Self::InvalidWorkspaceCwd { .. } => "invalid_workspace_cwd",
            Self::Spawn { .. } => "agent_spawn_failed",
            Self::Io { .. } => "agent_io",
            Self::ResponseTimeout { .. } => "response_timeout",
            Self::TurnTimeout { .. } => "turn_timeout",
            Self::Stalled { .. } => "stalled",
            Self::PortExit { .. } => "port_exit",
            Self::AgentCrashed { .. } => "agent_crashed",
            Self::ResponseError { .. } => "response_error",
            Self::TurnFailed { .. } => "turn_failed",
            Self::TurnCancelled { .. } => "turn_cancelled",
            Self::TurnInputRequired { .. } => "turn_input_required",
            Self::ApprovalRequired { .. } => "approval_required",
            Self::CodexNotFound { .. } => "codex_not_found",
            Self::ProtocolMismatch { .. } => "protocol_mismatch",
        }
    }

    pub(crate) fn io(path: &Path, op: &'static str, e: &std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            op,
            reason: e.to_string(),
        }
    }

    /// The terminal event kind a turn ending with this error emits.
    fn event_kind(&self) -> AgentEventKind {
        match self {
            Self::TurnCancelled { .. } => AgentEventKind::TurnCancelled,
            Self::TurnInputRequired { .. } => AgentEventKind::TurnInputRequired,
            Self::ApprovalRequired { .. } => AgentEventKind::ApprovalRequired,
            _ => AgentEventKind::TurnFailed,
        }
    }
}

/// A live agent session for one run attempt.
#[derive(Debug)]
pub enum AgentSession {
    /// A shell runner session.
    Shell(Box<shell::ShellSession>),
    /// A codex app-server session.
    Codex(Box<codex::CodexSession>),
}

impl AgentSession {
    /// Starts a session per `config.kind`. The shell runner starts no process until the first
    /// turn; the codex runner launches the app-server and completes the startup handshake
    /// (SPEC §10.2).
    ///
    /// # Errors
    /// `invalid_workspace_cwd`, `agent_spawn_failed`, `agent_io`; for codex also
    /// `agent_not_found`, `response_timeout`, `response_error`, `port_exit`. A `startup_failed`
    /// event is emitted for failures after launch.
    pub async fn start(config: &RunnerConfig, launch: AgentLaunch) -> Result<Self, RunnerError> {
        let span = tracing::info_span!(
            "agent_session",
            issue_id = %launch.issue_id,
            issue_identifier = %launch.issue_identifier,
        );
        let started = async {
            match config.kind {
                RunnerKind::Shell => shell::ShellSession::start(config, launch)
                    .await
                    .map(|s| Self::Shell(Box::new(s))),
                RunnerKind::Codex => codex::CodexSession::start(config, launch)
                    .await
                    .map(|s| Self::Codex(Box::new(s))),
            }
        };
        started.instrument(span).await
    }

    fn parts(&self) -> (&AgentLaunch, &EventSink) {
        match self {
            Self::Shell(s) => (s.launch(), s.sink()),
            Self::Codex(s) => (s.launch(), s.sink()),
        }
    }

    /// Runs one turn with `prompt` and waits for it to end, emitting its events and then exactly
    /// one terminal event.
    ///
    /// # Errors
    /// Any [`RunnerError`]; after `turn_timeout`, `stalled`, `port_exit` or `agent_crashed` the
    /// session's process is gone and the caller should [`AgentSession::stop`] it.
    pub async fn run_turn(&mut self, prompt: &str) -> Result<TurnOutcome, RunnerError> {
        let (launch, _) = self.parts();
        let span = tracing::info_span!(
            "agent_turn",
            issue_id = %launch.issue_id,
            issue_identifier = %launch.issue_identifier,
        );
        let result = match self {
            Self::Shell(s) => s.run_turn(prompt).instrument(span.clone()).await,
            Self::Codex(s) => s.run_turn(prompt).instrument(span.clone()).await,
        };
        let (_, sink) = self.parts();
        Self::report(sink, &result).instrument(span).await;
        result
    }

    /// Emits the turn's terminal event and logs its outcome.
    async fn report(sink: &EventSink, result: &Result<TurnOutcome, RunnerError>) {
        match result {
            Ok(outcome) => {
                let body = EventBody {
                    usage: outcome.usage,
                    message: outcome.last_message.clone(),
                    ..EventBody::default()
                };
                sink.emit(AgentEventKind::TurnCompleted, body).await;
                tracing::info!(
                    session_id = ?sink.session_id,
                    turn = outcome.turn,
                    duration_ms = outcome.duration_ms,
                    "agent turn completed"
                );
            }
            Err(e) => {
                sink.emit_message(e.event_kind(), e.to_string()).await;
                tracing::warn!(
                    session_id = ?sink.session_id,
                    error_kind = e.kind(),
                    error = %e,
                    "agent turn failed"
                );
            }
        }
    }

    /// The agent's session id, when known.
    pub fn session_id(&self) -> Option<&str> {
        self.parts().1.session_id.as_deref()
    }

    /// Ends the session: stops the agent's process group (codex app-server; SIGTERM, SIGKILL
    /// after the grace period).
    pub async fn stop(self) {
        match self {
            Self::Shell(_) => {}
            Self::Codex(s) => (*s).stop().await,
        }
    }
}
