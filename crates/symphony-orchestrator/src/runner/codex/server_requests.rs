//! Server requests of the app-server (SPEC §10.5): approvals per [`super::policy`], host-side
//! tool calls per [`super::tools`], user input, and "method not found" for anything else.

use serde_json::{Value, json};

use super::payloads::first_str;
use super::policy::Decision;
use super::protocol::{DynamicToolCallParams, DynamicToolCallResponse};
use super::tools::{self, ToolOutcome};
use super::{CodexSession, METHOD_NOT_FOUND};
use crate::runner::RunnerError;
use crate::runner::events::AgentEventKind;

impl CodexSession {
    async fn respond(&mut self, id: Value, result: Value) -> Result<(), RunnerError> {
        self.send(json!({"id": id, "result": result})).await
    }

    async fn respond_error(&mut self, id: Value, message: String) -> Result<(), RunnerError> {
        self.send(json!({"id": id, "error": {"code": METHOD_NOT_FOUND, "message": message}}))
            .await
    }

    pub(super) async fn server_request(
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
                    .map(|a| format!(" ({})", crate::runner::events::summarize(&a)))
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
                    json!(DynamicToolCallResponse::text(false, detail.clone())),
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
}
