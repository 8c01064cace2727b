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

mod policy;
pub mod protocol;
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
pub use policy::{DEFAULT_APPROVAL_POLICY, DEFAULT_THREAD_SANDBOX};
use policy::{Decision, SessionPolicy};
pub use protocol::TARGET_CODEX_VERSION;
use protocol::{
    ClientInfo, DynamicToolCallParams, InitializeCapabilities, InitializeParams,
    InitializeResponse, ThreadSetNameParams, ThreadStartParams, ThreadStartResponse,
    TurnStartParams, TurnStartResponse, UserInput,
};
use tools::ToolOutcome;
pub use tools::TrackerTools;

/// JSON-RPC "method not found".
const METHOD_NOT_FOUND: i64 = -32601;

/// How a turn ended according to the app-server.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TurnEnd {
    Completed,
    Failed(String),
    Cancelled(String),
}

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

    async fn respond(&mut self, id: Value, result: Value) -> Result<(), RunnerError> {
        self.send(json!({"id": id, "result": result})).await
    }

    async fn respond_error(&mut self, id: Value, message: String) -> Result<(), RunnerError> {
        self.send(json!({"id": id, "error": {"code": METHOD_NOT_FOUND, "message": message}}))
            .await
    }

    async fn server_request(
        &mut self,
        method: &str,
        id: Value,
        message: &Value,
    ) -> Result<(), RunnerError> {
        let params = message.get("params").unwrap_or(&Value::Null);
        match method {
            "item/commandExecution/requestApproval"
            | "item/fileChange/requestApproval"
            | "execCommandApproval"
            | "applyPatchApproval" => self.approval(method, id, params).await,
            "item/tool/call" => self.tool_call(id, params).await,
            "item/tool/requestUserInput" | "mcpServer/elicitation/request" => {
                if method == "item/tool/requestUserInput"
                    && let Some(answers) = self.policy.user_input_answers(params)
                {
                    self.respond(id, answers).await?;
                    self.sink
                        .emit_message(AgentEventKind::ApprovalAutoApproved, method)
                        .await;
                    return Ok(());
                }
                let _ = self
                    .respond_error(
                        id,
                        "symphony runs unattended and cannot provide user input".into(),
                    )
                    .await;
                self.process.terminate().await;
                Err(RunnerError::TurnInputRequired {
                    method: method.to_owned(),
                })
            }
            other => {
                self.respond_error(id, format!("symphony does not support `{other}`"))
                    .await?;
                self.sink
                    .emit_message(
                        AgentEventKind::OtherMessage,
                        format!("unsupported request {other}"),
                    )
                    .await;
                Ok(())
            }
        }
    }

    /// Approves what [`policy`] grants; anything else ends the attempt `approval_required`
    /// after telling Codex the request was cancelled.
    async fn approval(
        &mut self,
        method: &str,
        id: Value,
        params: &Value,
    ) -> Result<(), RunnerError> {
        match self
            .policy
            .approval(method, params, &self.launch.workspace_path)
        {
            Decision::Approve(decision) => {
                self.respond(id, json!({"decision": decision})).await?;
                self.sink
                    .emit_message(AgentEventKind::ApprovalAutoApproved, method)
                    .await;
                Ok(())
            }
            Decision::Refuse(reason) => {
                let cancel = if method.starts_with("item/") {
                    "cancel"
                } else {
                    "abort"
                };
                let _ = self.respond(id, json!({"decision": cancel})).await;
                self.process.terminate().await;
                let asked = first_str(params, &["/command", "/reason", "/grantRoot"])
                    .map(|a| format!(" ({})", super::events::summarize(&a)))
                    .unwrap_or_default();
                Err(RunnerError::ApprovalRequired {
                    method: method.to_owned(),
                    reason: format!("{reason}{asked}"),
                })
            }
        }
    }

    async fn tool_call(&mut self, id: Value, params: &Value) -> Result<(), RunnerError> {
        let call: DynamicToolCallParams = match serde_json::from_value(params.clone()) {
            Ok(call) => call,
            Err(e) => {
                let detail = format!("item/tool/call params: {e}");
                self.respond(
                    id,
                    json!(protocol::DynamicToolCallResponse::text(
                        false,
                        detail.clone()
                    )),
                )
                .await?;
                self.sink
                    .emit_message(AgentEventKind::Malformed, detail)
                    .await;
                return Ok(());
            }
        };
        let outcome = tools::call(
            self.launch.tracker_tools.as_ref(),
            &self.launch.issue_id,
            &call.tool,
            call.arguments,
        )
        .await;
        let (kind, response) = match outcome {
            ToolOutcome::Completed(r) => (AgentEventKind::ToolCallCompleted, r),
            ToolOutcome::Failed(r) => (AgentEventKind::ToolCallFailed, r),
            ToolOutcome::Unsupported(r) => (AgentEventKind::UnsupportedToolCall, r),
        };
        let summary = response
            .content_items
            .first()
            .map(|i| i.text.clone())
            .unwrap_or_default();
        self.respond(id, json!(response)).await?;
        self.sink
            .emit_message(
                kind,
                format!("tool {} ({}): {summary}", call.tool, call.call_id),
            )
            .await;
        Ok(())
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

/// For the codex runner a missing command is `codex_not_found` (SPEC §10.6).
fn codex_not_found(e: RunnerError) -> RunnerError {
    match e {
        RunnerError::AgentNotFound {
            command,
            stderr_tail,
        } => RunnerError::CodexNotFound {
            command,
            stderr_tail,
        },
        other => other,
    }
}

fn is_response(message: &Value) -> bool {
    message.get("method").is_none()
        && message.get("id").is_some()
        && (message.get("result").is_some() || message.get("error").is_some())
}

fn first_str(value: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| match value.pointer(p)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// A compact, bounded rendering of a JSON value for messages.
fn clip(value: &Value) -> String {
    super::events::summarize(&value.to_string())
}

fn turn_end(method: &str, params: &Value) -> TurnEnd {
    let reason = first_str(
        params,
        &["/turn/error/message", "/error/message", "/reason"],
    )
    .unwrap_or_else(|| method.to_owned());
    let status = first_str(params, &["/turn/status", "/status"]);
    match (method, status.as_deref()) {
        ("turn/cancelled", _) | (_, Some("interrupted" | "cancelled" | "canceled")) => {
            TurnEnd::Cancelled(reason)
        }
        ("turn/failed", _) | (_, Some("failed")) => TurnEnd::Failed(reason),
        _ => TurnEnd::Completed,
    }
}

/// Absolute thread totals from a usage notification (SPEC §13.5): `tokenUsage.total` (app-server
/// v2), `info.total_token_usage` / `msg.info.total_token_usage` (token-count wrappers). Delta
/// payloads (`last`, `last_token_usage`) are ignored.
fn absolute_usage(params: &Value) -> Option<TokenUsage> {
    let totals = [
        "/tokenUsage/total",
        "/token_usage/total",
        "/info/total_token_usage",
        "/msg/info/total_token_usage",
        "/total_token_usage",
    ]
    .iter()
    .find_map(|p| params.pointer(p).filter(|v| v.is_object()))?;
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| totals.get(*n).and_then(Value::as_u64))
    };
    let input = field(&["inputTokens", "input_tokens", "prompt_tokens"]).unwrap_or(0);
    let output = field(&["outputTokens", "output_tokens", "completion_tokens"]).unwrap_or(0);
    let total = field(&["totalTokens", "total_tokens"]).unwrap_or(input + output);
    Some(TokenUsage {
        input,
        output,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_absolute_totals_only() {
        let v2 = json!({"threadId": "t", "turnId": "u", "tokenUsage": {
            "total": {"inputTokens": 100, "cachedInputTokens": 40, "outputTokens": 20, "totalTokens": 120},
            "last": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}
        }});
        assert_eq!(
            absolute_usage(&v2),
            Some(TokenUsage {
                input: 100,
                output: 20,
                total: 120
            })
        );
        let wrapper = json!({"msg": {"type": "token_count", "info": {
            "total_token_usage": {"input_tokens": 7, "output_tokens": 3},
            "last_token_usage": {"input_tokens": 1, "output_tokens": 1}
        }}});
        assert_eq!(
            absolute_usage(&wrapper),
            Some(TokenUsage {
                input: 7,
                output: 3,
                total: 10
            })
        );
        assert_eq!(absolute_usage(&json!({"usage": {"input_tokens": 5}})), None);
    }

    #[test]
    fn turn_end_variants_are_recognized() {
        assert_eq!(
            turn_end(
                "turn/completed",
                &json!({"turn": {"id": "1", "status": "completed"}})
            ),
            TurnEnd::Completed
        );
        assert_eq!(
            turn_end(
                "turn/completed",
                &json!({"turn": {"status": "failed", "error": {"message": "boom"}}})
            ),
            TurnEnd::Failed("boom".into())
        );
        assert!(matches!(
            turn_end(
                "turn/completed",
                &json!({"turn": {"status": "interrupted"}})
            ),
            TurnEnd::Cancelled(_)
        ));
        assert!(matches!(
            turn_end("turn/failed", &json!({})),
            TurnEnd::Failed(_)
        ));
        assert!(matches!(
            turn_end("turn/cancelled", &json!({})),
            TurnEnd::Cancelled(_)
        ));
    }
}
