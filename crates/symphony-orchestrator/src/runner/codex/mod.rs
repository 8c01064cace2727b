//! The codex runner: the Codex app-server JSON-RPC protocol over stdio (SPEC §10.2–10.6),
//! written against `@openai/codex` [`TARGET_CODEX_VERSION`] ([`protocol`]).
//!
//! One app-server process lives for the whole session: `initialize` (opting into the
//! experimental API for `dynamicTools`) → `initialized` → `thread/start` (approval policy,
//! thread sandbox, cwd, host-side [`tools`]) → `thread/name/set` (`<identifier>: <title>`), then
//! one `turn/start` per turn on the same thread (turn sandbox policy), each read until
//! `turn/completed`. `session_id` is `<thread_id>-<turn_id>`. Only stdout carries protocol;
//! stderr is logged, never parsed.
//!
//! Timeouts (SPEC §10.6): `read_timeout_ms` bounds each request's response; `turn_timeout_ms`
//! is the longest silence while a turn is active (every app-server line resets it, it is not a
//! cap on the turn's total time); `stall_timeout_ms` is the same silence measure the
//! orchestrator also applies to events. Approvals and user input follow [`policy`]; tool calls
//! run through [`tools`]; any other server request gets JSON-RPC "method not found".

mod payloads;
mod policy;
pub mod protocol;
mod server_requests;
pub mod tools;

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, sleep_until};

use super::agent_process::{AgentProcess, write_file};
use super::events::{AgentEventKind, EventBody, EventSink, TokenUsage};
use super::lines::Line;
use super::{AgentLaunch, RunnerError, TurnOutcome};
use crate::config::RunnerConfig;
use payloads::{
    TurnEnd, absolute_usage, clip, codex_not_found, first_str, is_response, turn_completed_usage,
    turn_end,
};
use policy::SessionPolicy;
pub use policy::{DEFAULT_APPROVAL_POLICY, DEFAULT_THREAD_SANDBOX};
pub use protocol::TARGET_CODEX_VERSION;
use protocol::{
    ClientInfo, InitializeCapabilities, InitializeParams, InitializeResponse, ThreadSetNameParams,
    ThreadStartParams, ThreadStartResponse, TurnStartParams, TurnStartResponse, UserInput,
};
pub use tools::TrackerTools;

/// JSON-RPC "method not found".
const METHOD_NOT_FOUND: i64 = -32601;

/// What a wait is bounded by, to name the error when the deadline passes.
#[derive(Debug, Clone, Copy)]
enum Wait<'a> {
    /// A response, by a fixed deadline.
    Response { method: &'a str, timeout_ms: u64 },
    /// Turn stream output, by `last_output + timeout_ms` (a silence interval).
    Turn { timeout_ms: u64 },
}

/// A live codex app-server session.
#[derive(Debug)]
pub struct CodexSession {
    process: AgentProcess,
    launch: AgentLaunch,
    sink: EventSink,
    read_timeout_ms: u64,
    turn_timeout_ms: u64,
    stall_timeout_ms: u64,
    policy: SessionPolicy,
    codex_version: Option<String>,
    thread_id: String,
    turn_id: Option<String>,
    turn: u32,
    next_id: u64,
    usage: Option<TokenUsage>,
    last_message: Option<String>,
    pending_end: Option<TurnEnd>,
    last_output: Instant,
}

impl CodexSession {
    pub(crate) async fn start(
        config: &RunnerConfig,
        launch: AgentLaunch,
    ) -> Result<Self, RunnerError> {
        let command = config
            .command
            .clone()
            .filter(|c| !c.trim().is_empty())
            .unwrap_or_else(|| crate::config::DEFAULT_CODEX_COMMAND.to_owned());
        let env = launch.symphony_env();
        let process = AgentProcess::spawn(&command, &launch, &config.env_allowlist, &env)
            .await
            .map_err(codex_not_found)?;
        let mut sink = launch.sink();
        sink.pid = process.pid;
        let mut session = Self {
            process,
            sink,
            read_timeout_ms: config.read_timeout_ms,
            turn_timeout_ms: config.turn_timeout_ms,
            stall_timeout_ms: config.stall_timeout_ms,
            policy: SessionPolicy::resolve(config, &launch.workspace_path),
            codex_version: None,
            launch,
            thread_id: String::new(),
            turn_id: None,
            turn: 0,
            next_id: 1,
            usage: None,
            last_message: None,
            pending_end: None,
            last_output: Instant::now(),
        };
        if let Err(e) = session.handshake().await {
            session
                .sink
                .emit_message(AgentEventKind::StartupFailed, e.to_string())
                .await;
            session.process.shut_down().await;
            return Err(e);
        }
        Ok(session)
    }

    pub(crate) fn sink(&self) -> &EventSink {
        &self.sink
    }

    pub(crate) fn launch(&self) -> &AgentLaunch {
        &self.launch
    }

    async fn handshake(&mut self) -> Result<(), RunnerError> {
        let init = InitializeParams {
            client_info: ClientInfo {
                name: "symphony".into(),
                title: "Symphony".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            capabilities: InitializeCapabilities {
                experimental_api: true,
            },
        };
        let init: InitializeResponse = self.typed_request("initialize", &init).await?;
        self.codex_version = init.codex_version().map(str::to_owned);
        if self.codex_version.as_deref() != Some(TARGET_CODEX_VERSION) {
            tracing::warn!(
                installed = ?self.codex_version,
                targeted = TARGET_CODEX_VERSION,
                "the installed codex is not the version this client was written against"
            );
        }
        self.send(json!({"method": "initialized", "params": {}}))
            .await?;
        let workspace = self.launch.workspace_path.display().to_string();
        let params = ThreadStartParams {
            approval_policy: self.policy.approval_policy.clone(),
            sandbox: self.policy.thread_sandbox.clone(),
            cwd: workspace,
            dynamic_tools: tools::specs(self.launch.tracker_tools.as_ref()),
        };
        let thread: ThreadStartResponse = self.typed_request("thread/start", &params).await?;
        self.thread_id = thread.thread.id;
        tracing::info!(thread_id = %self.thread_id, codex_version = ?self.codex_version, "codex thread started");
        let name = ThreadSetNameParams {
            thread_id: self.thread_id.clone(),
            name: format!(
                "{}: {}",
                self.launch.issue_identifier, self.launch.issue_title
            ),
        };
        // The title is metadata (SPEC §10.2 "when supported"): a refusal is not fatal.
        if let Err(e) = self.typed_request::<Value>("thread/name/set", &name).await {
            match e {
                RunnerError::ResponseError { .. } => {
                    tracing::warn!(error = %e, "codex refused the thread name")
                }
                other => return Err(other),
            }
        }
        Ok(())
    }

    /// Sends `method` with `params` and reads the result as `T`; a result that does not fit is
    /// [`RunnerError::ProtocolMismatch`].
    async fn typed_request<T: DeserializeOwned>(
        &mut self,
        method: &str,
        params: &impl Serialize,
    ) -> Result<T, RunnerError> {
        let params = serde_json::to_value(params).map_err(|e| self.mismatch(method, &e))?;
        let result = self.request(method, params).await?;
        serde_json::from_value(result.clone())
            .map_err(|e| self.mismatch(method, &format!("{e} in {}", clip(&result))))
    }

    fn mismatch(&self, method: &str, detail: &dyn std::fmt::Display) -> RunnerError {
        RunnerError::ProtocolMismatch {
            method: method.to_owned(),
            installed: self
                .codex_version
                .clone()
                .unwrap_or_else(|| "unknown".into()),
            targeted: TARGET_CODEX_VERSION.into(),
            detail: detail.to_string(),
        }
    }

    pub(crate) async fn run_turn(&mut self, prompt: &str) -> Result<TurnOutcome, RunnerError> {
        self.turn += 1;
        self.pending_end = None;
        self.last_message = None;
        let started = Instant::now();
        write_file(&self.launch.logs.prompt, prompt).await?;
        let params = TurnStartParams {
            thread_id: self.thread_id.clone(),
            input: vec![UserInput {
                kind: "text",
                text: prompt.to_owned(),
            }],
            cwd: self.launch.workspace_path.display().to_string(),
            approval_policy: self.policy.approval_policy.clone(),
            sandbox_policy: self.policy.turn_sandbox_policy.clone(),
        };
        let turn: TurnStartResponse = self.typed_request("turn/start", &params).await?;
        let turn_id = turn.turn.id;
        self.sink.session_id = Some(format!("{}-{turn_id}", self.thread_id));
        self.turn_id = Some(turn_id);
        self.sink
            .emit_message(
                AgentEventKind::SessionStarted,
                format!("turn {}", self.turn),
            )
            .await;
        let wait = Wait::Turn {
            timeout_ms: self.turn_timeout_ms,
        };
        let end = loop {
            if let Some(end) = self.pending_end.take() {
                break end;
            }
            let message = self.next_message(wait).await?;
            self.handle(message).await?;
        };
        match end {
            TurnEnd::Completed => Ok(TurnOutcome {
                turn: self.turn,
                session_id: self.sink.session_id.clone(),
                usage: self.usage,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                last_message: self.last_message.clone(),
            }),
            TurnEnd::Failed(message) => Err(RunnerError::TurnFailed { message }),
            TurnEnd::Cancelled(message) => Err(RunnerError::TurnCancelled { message }),
        }
    }

    pub(crate) async fn stop(mut self) {
        drop(self.process.stdin.take());
        self.process.shut_down().await;
        tracing::info!(session_id = ?self.sink.session_id, "codex session stopped");
    }

    async fn send(&mut self, message: Value) -> Result<(), RunnerError> {
        let mut line = message.to_string();
        line.push('\n');
        let timeout = Duration::from_millis(self.read_timeout_ms);
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("response")
            .to_owned();
        let Some(stdin) = self.process.stdin.as_mut() else {
            return Err(self.exited().await);
        };
        let written = tokio::time::timeout(timeout, async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.exited().await),
            Err(_) => Err(RunnerError::ResponseTimeout {
                method,
                timeout_ms: self.read_timeout_ms,
            }),
        }
    }

    async fn request(&mut self, method: &str, params: Value) -> Result<Value, RunnerError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"id": id, "method": method, "params": params}))
            .await?;
        let wait = Wait::Response {
            method,
            timeout_ms: self.read_timeout_ms,
        };
        let deadline = Instant::now() + Duration::from_millis(self.read_timeout_ms);
        loop {
            let message = self.next_message_by(deadline, wait).await?;
            if is_response(&message) && message.get("id") == Some(&json!(id)) {
                if let Some(error) = message.get("error") {
                    return Err(RunnerError::ResponseError {
                        method: method.to_owned(),
                        code: error.get("code").and_then(Value::as_i64),
                        message: error
                            .get("message")
                            .and_then(Value::as_str)
                            .map_or_else(|| clip(error), str::to_owned),
                    });
                }
                return Ok(message.get("result").cloned().unwrap_or(Value::Null));
            }
            self.handle(message).await?;
        }
    }

    /// The next message of an active turn: the deadline is `turn_timeout_ms` after the last
    /// output line, so it moves with every line (SPEC §10.6).
    async fn next_message(&mut self, wait: Wait<'_>) -> Result<Value, RunnerError> {
        self.next_message_by(
            self.last_output + Duration::from_millis(self.turn_timeout_ms),
            wait,
        )
        .await
    }

    /// The next JSON message from stdout. Malformed and oversized lines become `malformed`
    /// events; EOF means the app-server exited. For [`Wait::Turn`] the deadline is recomputed
    /// after every line, malformed ones included.
    async fn next_message_by(
        &mut self,
        mut deadline: Instant,
        wait: Wait<'_>,
    ) -> Result<Value, RunnerError> {
        loop {
            if let Wait::Turn { timeout_ms } = wait {
                deadline = self.last_output + Duration::from_millis(timeout_ms);
            }
            let stall = (self.stall_timeout_ms > 0)
                .then(|| self.last_output + Duration::from_millis(self.stall_timeout_ms));
            let line = tokio::select! {
                line = self.process.stdout.next_line() => line,
                () = sleep_until(deadline) => {
                    self.process.terminate().await;
                    return Err(match wait {
                        Wait::Response { method, timeout_ms } => RunnerError::ResponseTimeout {
                            method: method.to_owned(),
                            timeout_ms,
                        },
                        Wait::Turn { timeout_ms } => RunnerError::TurnTimeout { timeout_ms },
                    });
                }
                () = sleep_until(stall.unwrap_or(deadline)), if stall.is_some() => {
                    self.process.terminate().await;
                    return Err(RunnerError::Stalled { idle_ms: self.stall_timeout_ms });
                }
            };
            let line = match line {
                Ok(Some(line)) => line,
                Ok(None) | Err(_) => return Err(self.exited().await),
            };
            self.last_output = Instant::now();
            let bytes = match line {
                Line::Complete(bytes) => bytes,
                Line::Oversized { len } => {
                    self.sink
                        .emit_message(
                            AgentEventKind::Malformed,
                            format!("protocol line of {len} bytes exceeds the line limit; dropped"),
                        )
                        .await;
                    continue;
                }
            };
            self.process.log_stdout(&bytes).await;
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(value) if value.is_object() => return Ok(value),
                _ => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    if !text.trim().is_empty() {
                        self.sink
                            .emit_message(AgentEventKind::Malformed, text)
                            .await;
                    }
                }
            }
        }
    }

    /// The error for an app-server that went away (EOF or broken pipe).
    async fn exited(&mut self) -> RunnerError {
        let status =
            tokio::time::timeout(crate::process_group::DRAIN_GRACE, self.process.child.wait())
                .await
                .ok()
                .and_then(Result::ok);
        let stderr_tail = self.process.shut_down().await;
        codex_not_found(self.process.exit_error(
            status,
            stderr_tail,
            |exit_code, signal, stderr_tail| RunnerError::PortExit {
                exit_code,
                signal,
                stderr_tail,
            },
        ))
    }

    /// Handles a notification or server request; records a turn end in `pending_end`.
    async fn handle(&mut self, message: Value) -> Result<(), RunnerError> {
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let id = message.get("id").cloned();
        match (method, id) {
            (Some(method), Some(id)) => self.server_request(&method, id, &message).await,
            (Some(method), None) => {
                self.notification(&method, message.get("params").unwrap_or(&Value::Null))
                    .await;
                Ok(())
            }
            (None, _) => {
                self.sink
                    .emit_message(
                        AgentEventKind::OtherMessage,
                        format!("unexpected message {}", clip(&message)),
                    )
                    .await;
                Ok(())
            }
        }
    }

    fn is_current_turn(&self, params: &Value) -> bool {
        match first_str(params, &["/turn/id", "/turnId", "/turn_id"]) {
            Some(id) => self.turn_id.as_deref().is_none_or(|current| current == id),
            None => true,
        }
    }

    async fn notification(&mut self, method: &str, params: &Value) {
        let mut body = EventBody {
            // SPEC §13.5: the latest rate-limit payload from whichever update carries one.
            rate_limits: ["/rateLimits", "/rate_limits", "/msg/rate_limits"]
                .iter()
                .find_map(|p| params.pointer(p).filter(|v| v.is_object()))
                .cloned(),
            ..EventBody::default()
        };
        let kind = match method {
            "turn/completed" | "turn/failed" | "turn/cancelled" if self.is_current_turn(params) => {
                if let Some(usage) = turn_completed_usage(method, params) {
                    self.usage = Some(usage);
                }
                let end = turn_end(method, params);
                self.pending_end = Some(end);
                return;
            }
            "thread/tokenUsage/updated" | "codex/event/token_count" => {
                match absolute_usage(params) {
                    Some(usage) => {
                        self.usage = Some(usage);
                        body.usage = Some(usage);
                        body.message = Some("token usage updated".into());
                    }
                    None => body.message = Some(method.to_owned()),
                }
                AgentEventKind::Notification
            }
            "account/rateLimits/updated" => {
                body.message = Some("rate limits updated".into());
                AgentEventKind::Notification
            }
            "error" => {
                let will_retry = params
                    .get("willRetry")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let text = first_str(params, &["/error/message", "/error", "/message"])
                    .unwrap_or_else(|| clip(params));
                body.message = Some(text);
                if will_retry {
                    AgentEventKind::Notification
                } else {
                    AgentEventKind::TurnEndedWithError
                }
            }
            _ => {
                let detail = first_str(params, &["/item/text", "/delta", "/msg/message"]);
                if method == "item/completed"
                    && let Some(text) = first_str(params, &["/item/text"])
                {
                    self.last_message = Some(super::events::summarize(&text));
                }
                body.message = Some(match detail {
                    Some(d) => format!("{method}: {d}"),
                    None => method.to_owned(),
                });
                AgentEventKind::Notification
            }
        };
        self.sink.emit(kind, body).await;
    }
}
