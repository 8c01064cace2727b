//! The shell runner: each turn runs `bash -lc <command>` in the workspace (turn 1 uses
//! `runner.command`, later turns `runner.continuation_command` when set) with the prompt on stdin
//! and in `$SYMPHONY_PROMPT_FILE`. Only allowlisted environment variables reach the agent.
//! Stdout lines become events per `runner.output_format`; stderr is only logged.
//!
//! A turn ends when the process exits. Exit 0 is success unless the agent's stream reported a
//! failed turn; exit 127 is `agent_not_found`; any other non-zero exit or signal is
//! `agent_crashed` with the tail of stderr. `turn_timeout_ms` and `stall_timeout_ms` (no stdout
//! line for that long) kill the whole process group.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, sleep_until};

use super::agent_process::{AgentProcess, write_file};
use super::events::{AgentEventKind, EventBody, EventSink, TokenUsage, summarize};
use super::formats::{ParsedLine, StreamVerdict, parse_line};
use super::lines::Line;
use super::{AgentLaunch, RunnerError, TurnOutcome};
use crate::config::{OutputFormat, RunnerConfig};
use crate::process_group::DRAIN_GRACE;

/// A shell runner session: the launch settings plus token totals across turns.
#[derive(Debug)]
pub struct ShellSession {
    command: String,
    continuation_command: Option<String>,
    output_format: OutputFormat,
    allowlist: Vec<String>,
    turn_timeout_ms: u64,
    stall_timeout_ms: u64,
    launch: AgentLaunch,
    sink: EventSink,
    turn: u32,
    usage: Option<TokenUsage>,
    /// The session id the totals in `usage` were last reported under.
    usage_session: Option<String>,
}

/// What one turn's stdout said.
#[derive(Default)]
struct TurnStream {
    verdict: Option<StreamVerdict>,
    usage: Option<TokenUsage>,
    last_message: Option<String>,
}

impl ShellSession {
    pub(crate) async fn start(
        config: &RunnerConfig,
        launch: AgentLaunch,
    ) -> Result<Self, RunnerError> {
        let command = config
            .command
            .clone()
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| RunnerError::Spawn {
                command: String::new(),
                reason: "runner.command is empty".into(),
            })?;
        crate::workspace::ensure_inside_root(&launch.workspace_root, &launch.workspace_path)
            .await
            .map_err(|e| RunnerError::InvalidWorkspaceCwd {
                path: launch.workspace_path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            command,
            continuation_command: config.continuation_command.clone(),
            output_format: config.output_format,
            allowlist: config.env_allowlist.clone(),
            turn_timeout_ms: config.turn_timeout_ms,
            stall_timeout_ms: config.stall_timeout_ms,
            sink: launch.sink(),
            launch,
            turn: 0,
            usage: None,
            usage_session: None,
        })
    }

    pub(crate) fn sink(&self) -> &EventSink {
        &self.sink
    }

    pub(crate) fn launch(&self) -> &AgentLaunch {
        &self.launch
    }

    /// Session totals given this turn's reported usage: earlier turns' totals plus this
    /// process's. `codex exec … resume` is the exception: it reports the resumed thread's
    /// running total (measured with codex 0.171.0), so a turn on the thread the totals came
    /// from replaces them instead of adding to them.
    fn session_usage(&self, turn: Option<TokenUsage>) -> Option<TokenUsage> {
        let resumed = self.output_format == OutputFormat::CodexExecJsonl
            && self.usage_session.is_some()
            && self.usage_session == self.sink.session_id;
        if resumed {
            return turn.or(self.usage);
        }
        match (self.usage, turn) {
            (Some(base), Some(turn)) => Some(base.plus(turn)),
            (base, turn) => base.or(turn),
        }
    }

    pub(crate) async fn run_turn(&mut self, prompt: &str) -> Result<TurnOutcome, RunnerError> {
        self.turn += 1;
        let started = Instant::now();
        let command = match (&self.continuation_command, self.turn) {
            (Some(continuation), turn) if turn > 1 => continuation.clone(),
            _ => self.command.clone(),
        };
        write_file(&self.launch.logs.prompt, prompt).await?;
        let mut env = self.launch.symphony_env();
        env.push((
            "SYMPHONY_PROMPT_FILE".to_owned(),
            self.launch.logs.prompt.display().to_string(),
        ));
        env.push(("SYMPHONY_TURN".to_owned(), self.turn.to_string()));
        let mut process =
            AgentProcess::spawn(&command, &self.launch, &self.allowlist, &env).await?;
        self.sink.pid = process.pid;
        self.sink
            .emit_message(
                AgentEventKind::SessionStarted,
                format!("turn {} pid {}", self.turn, process.pid.unwrap_or(0)),
            )
            .await;
        if let Some(mut stdin) = process.stdin.take() {
            let prompt = prompt.to_owned();
            // A separate task so a large prompt cannot deadlock against unread stdout; an agent
            // that ignores stdin closes the pipe early, which is fine.
            tokio::spawn(async move {
                let _ = stdin.write_all(prompt.as_bytes()).await;
                let _ = stdin.shutdown().await;
            });
        }
        let result = self.stream_turn(&mut process, started).await;
        let stderr_tail = process.shut_down().await;
        let (status, stream) = result?;
        if let Some(turn_usage) = stream.usage {
            self.usage = self.session_usage(Some(turn_usage));
            self.usage_session = self.sink.session_id.clone();
        }
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match (status.success(), stream.verdict) {
            (_, Some(StreamVerdict::Failed(message))) => Err(RunnerError::TurnFailed { message }),
            (true, _) => Ok(TurnOutcome {
                turn: self.turn,
                session_id: self.sink.session_id.clone(),
                usage: self.usage,
                duration_ms,
                last_message: stream.last_message,
            }),
            (false, _) => Err(process.exit_error(
                Some(status),
                stderr_tail,
                |exit_code, signal, stderr_tail| RunnerError::AgentCrashed {
                    exit_code,
                    signal,
                    stderr_tail,
                },
            )),
        }
    }

    /// Reads stdout until the process has exited and stdout is drained, enforcing the turn and
    /// stall timeouts while it runs.
    async fn stream_turn(
        &mut self,
        process: &mut AgentProcess,
        started: Instant,
    ) -> Result<(std::process::ExitStatus, TurnStream), RunnerError> {
        let turn_deadline = started + Duration::from_millis(self.turn_timeout_ms);
        let stall =
            (self.stall_timeout_ms > 0).then(|| Duration::from_millis(self.stall_timeout_ms));
        let mut last_output = Instant::now();
        let mut stream = TurnStream::default();
        let mut exit = None;
        let mut drain_deadline = None;
        let mut stdout_open = true;
        loop {
            if !stdout_open && let Some(status) = exit {
                return Ok((status, stream));
            }
            let stall_deadline = stall.map(|d| last_output + d);
            tokio::select! {
                line = process.stdout.next_line(), if stdout_open => match line {
                    Ok(Some(line)) => {
                        last_output = Instant::now();
                        self.on_line(process, line, &mut stream).await;
                    }
                    Ok(None) | Err(_) => stdout_open = false,
                },
                status = process.child.wait(), if exit.is_none() => {
                    let status = status.map_err(|e| RunnerError::Spawn {
                        command: process.command.clone(),
                        reason: format!("waiting for the agent failed: {e}"),
                    })?;
                    exit = Some(status);
                    // Descendants left in the group would hold stdout open forever.
                    process.group.terminate(&mut process.child).await;
                    drain_deadline = Some(Instant::now() + DRAIN_GRACE);
                }
                () = sleep_until(turn_deadline), if exit.is_none() => {
                    return Err(RunnerError::TurnTimeout { timeout_ms: self.turn_timeout_ms });
                }
                () = sleep_until(stall_deadline.unwrap_or(turn_deadline)), if exit.is_none() && stall_deadline.is_some() => {
                    return Err(RunnerError::Stalled { idle_ms: self.stall_timeout_ms });
                }
                () = sleep_until(drain_deadline.unwrap_or(turn_deadline)), if drain_deadline.is_some() => {
                    stdout_open = false;
                }
            }
        }
    }

    async fn on_line(&mut self, process: &mut AgentProcess, line: Line, stream: &mut TurnStream) {
        let parsed = match line {
            Line::Complete(bytes) => {
                process.log_stdout(&bytes).await;
                parse_line(self.output_format, &bytes)
            }
            Line::Oversized { len } => Some(oversized(len)),
        };
        let Some(parsed) = parsed else { return };
        if let Some(id) = parsed.session_id.clone() {
            self.sink.session_id = Some(id);
        }
        if parsed.body.usage.is_some() {
            stream.usage = parsed.body.usage;
        }
        if let Some(message) = &parsed.body.message
            && parsed.kind != AgentEventKind::Malformed
        {
            stream.last_message = Some(summarize(message));
        }
        if let Some(verdict) = parsed.verdict {
            // The session emits the turn's terminal event; here only record what it said.
            stream.verdict = Some(verdict);
            return;
        }
        let body = EventBody {
            usage: parsed.body.usage.and_then(|u| self.session_usage(Some(u))),
            ..parsed.body
        };
        self.sink.emit(parsed.kind, body).await;
    }
}

fn oversized(len: usize) -> ParsedLine {
    ParsedLine {
        kind: AgentEventKind::Malformed,
        body: EventBody {
            message: Some(format!(
                "stdout line of {len} bytes exceeds the line limit; dropped"
            )),
            ..EventBody::default()
        },
        session_id: None,
        verdict: None,
    }
}
