//! The codex runner: the Codex app-server JSON-RPC protocol over stdio (SPEC §10.2–10.6).
//!
//! One app-server process lives for the whole session: `initialize` → `initialized` →
//! `thread/start` at start, then one `turn/start` per turn on the same thread, each read until
//! `turn/completed` (or `turn/failed`, `turn/cancelled`). `session_id` is
//! `<thread_id>-<turn_id>`. Only stdout carries protocol; stderr is logged, never parsed.
//!
//! High-trust policy (documented in `docs/runners.md`): command and file-change approval
//! requests are approved for the session; dynamic tool calls are answered with a failure
//! (`unsupported_tool_call`) and the turn continues; a request for user input fails the attempt
//! (`turn_input_required`); any other server request gets a JSON-RPC "method not found" error.
//! Defaults: `approvalPolicy: never`, `sandbox: workspace-write`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, sleep_until};

use super::agent_process::{AgentProcess, write_file};
use super::events::{AgentEventKind, EventBody, EventSink, TokenUsage};
use super::lines::Line;
use super::{AgentLaunch, RunnerError, TurnOutcome};
use crate::config::RunnerConfig;

/// `approvalPolicy` sent when the config sets none.
pub const DEFAULT_APPROVAL_POLICY: &str = "never";
/// `sandbox` sent when the config sets none.
pub const DEFAULT_SANDBOX: &str = "workspace-write";
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
    Response { method: &'a str, timeout_ms: u64 },
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
    approval_policy: Value,
    sandbox: String,
    thread_id: String,
    turn_id: Option<String>,
    turn: u32,
    next_id: u64,
    usage: Option<TokenUsage>,
    last_message: Option<String>,
    pending_end: Option<TurnEnd>,
    last_output: Instant,
}

/// `workspace-write` → `workspaceWrite` (the object-form sandbox policy type).
fn sandbox_policy_type(sandbox: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in sandbox.chars() {
        if c == '-' || c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
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
        let process = AgentProcess::spawn(&command, &launch, &config.env_allowlist, &env).await?;
        let mut sink = launch.sink();
        sink.pid = process.pid;
        let mut session = Self {
            process,
            sink,
            read_timeout_ms: config.read_timeout_ms,
            turn_timeout_ms: config.turn_timeout_ms,
            stall_timeout_ms: config.stall_timeout_ms,
            approval_policy: config
                .approval_policy
                .clone()
                .unwrap_or_else(|| json!(DEFAULT_APPROVAL_POLICY)),
            sandbox: config
                .sandbox
                .clone()
                .unwrap_or_else(|| DEFAULT_SANDBOX.to_owned()),
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
        let client_info = json!({"name": "symphony", "version": env!("CARGO_PKG_VERSION")});
        self.request(
            "initialize",
            json!({"clientInfo": client_info, "capabilities": {}}),
        )
        .await?;
        self.send(json!({"method": "initialized", "params": {}}))
            .await?;
        let workspace = self.launch.workspace_path.display().to_string();
        let params = json!({
            "approvalPolicy": self.approval_policy,
            "sandbox": self.sandbox,
            "cwd": workspace,
        });
        let result = self.request("thread/start", params).await?;
        self.thread_id = first_str(&result, &["/thread/id", "/threadId", "/thread_id"])
            .ok_or_else(|| RunnerError::ResponseError {
                method: "thread/start".into(),
                code: None,
                message: format!("result has no thread id: {}", clip(&result)),
            })?;
        tracing::info!(thread_id = %self.thread_id, "codex thread started");
        Ok(())
    }

    pub(crate) async fn run_turn(&mut self, prompt: &str) -> Result<TurnOutcome, RunnerError> {
        self.turn += 1;
        self.pending_end = None;
        self.last_message = None;
        let started = Instant::now();
        write_file(&self.launch.logs.prompt, prompt).await?;
        let workspace = self.launch.workspace_path.display().to_string();
        let params = json!({
            "threadId": self.thread_id,
            "input": [{"type": "text", "text": prompt}],
            "cwd": workspace,
            "title": format!("{}: {}", self.launch.issue_identifier, self.launch.issue_title),
            "approvalPolicy": self.approval_policy,
            "sandboxPolicy": {"type": sandbox_policy_type(&self.sandbox)},
        });
        let result = self.request("turn/start", params).await?;
        let turn_id =
            first_str(&result, &["/turn/id", "/turnId", "/turn_id"]).ok_or_else(|| {
                RunnerError::ResponseError {
                    method: "turn/start".into(),
                    code: None,
                    message: format!("result has no turn id: {}", clip(&result)),
                }
            })?;
        self.sink.session_id = Some(format!("{}-{turn_id}", self.thread_id));
        self.turn_id = Some(turn_id);
        self.sink
            .emit_message(
                AgentEventKind::SessionStarted,
                format!("turn {}", self.turn),
            )
            .await;
        let deadline = started + Duration::from_millis(self.turn_timeout_ms);
        let wait = Wait::Turn {
            timeout_ms: self.turn_timeout_ms,
        };
        let end = loop {
            if let Some(end) = self.pending_end.take() {
                break end;
            }
            let message = self.next_message(deadline, wait).await?;
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
        let deadline = Instant::now() + Duration::from_millis(self.read_timeout_ms);
        let wait = Wait::Response {
            method,
            timeout_ms: self.read_timeout_ms,
        };
        loop {
            let message = self.next_message(deadline, wait).await?;
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

    /// The next JSON message from stdout. Malformed and oversized lines become `malformed`
    /// events; EOF means the app-server exited.
    async fn next_message(
        &mut self,
        deadline: Instant,
        wait: Wait<'_>,
    ) -> Result<Value, RunnerError> {
        loop {
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
        self.process
            .exit_error(status, stderr_tail, |exit_code, signal, stderr_tail| {
                RunnerError::PortExit {
                    exit_code,
                    signal,
                    stderr_tail,
                }
            })
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
            "item/commandExecution/requestApproval" | "item/fileChange/requestApproval" => {
                self.respond(id, json!({"decision": "acceptForSession"}))
                    .await?;
                self.sink
                    .emit_message(AgentEventKind::ApprovalAutoApproved, method)
                    .await;
            }
            "execCommandApproval" | "applyPatchApproval" => {
                self.respond(id, json!({"decision": "approved_for_session"}))
                    .await?;
                self.sink
                    .emit_message(AgentEventKind::ApprovalAutoApproved, method)
                    .await;
            }
            "item/tool/call" => {
                let tool = params
                    .get("tool")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned();
                let text =
                    format!("unsupported_tool_call: symphony does not implement the tool `{tool}`");
                self.respond(
                    id,
                    json!({"success": false, "contentItems": [{"type": "inputText", "text": text}]}),
                )
                .await?;
                self.sink
                    .emit_message(AgentEventKind::UnsupportedToolCall, format!("tool {tool}"))
                    .await;
            }
            "item/tool/requestUserInput" | "mcpServer/elicitation/request" => {
                let _ = self
                    .respond_error(
                        id,
                        "symphony runs unattended and cannot provide user input".into(),
                    )
                    .await;
                self.process.terminate().await;
                return Err(RunnerError::TurnInputRequired {
                    method: method.to_owned(),
                });
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
            }
        }
        Ok(())
    }

    fn is_current_turn(&self, params: &Value) -> bool {
        match first_str(params, &["/turn/id", "/turnId", "/turn_id"]) {
            Some(id) => self.turn_id.as_deref().is_none_or(|current| current == id),
            None => true,
        }
    }

    async fn notification(&mut self, method: &str, params: &Value) {
        let mut body = EventBody::default();
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
                body.rate_limits = params
                    .get("rateLimits")
                    .or_else(|| params.get("rate_limits"))
                    .cloned();
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

    #[test]
    fn sandbox_modes_map_to_policy_types() {
        assert_eq!(sandbox_policy_type("workspace-write"), "workspaceWrite");
        assert_eq!(
            sandbox_policy_type("danger-full-access"),
            "dangerFullAccess"
        );
        assert_eq!(sandbox_policy_type("read-only"), "readOnly");
    }
}
