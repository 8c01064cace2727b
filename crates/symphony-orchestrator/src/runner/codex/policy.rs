//! The codex runner's approval, sandbox and user-input posture (Symphony SPEC §10.5, §5.3.6;
//! documented in `docs/runners.md`).
//!
//! - `approval_policy` (Codex `AskForApproval`, passed through; default `never`). Under `never`
//!   the operator has said "do not ask": an approval request that still arrives is approved for
//!   the session when it stays inside the workspace (command `cwd`, file-change `grantRoot`), and
//!   refused otherwise. Under any other policy the operator asked to be consulted, which an
//!   unattended run cannot do: the attempt ends `approval_required` and is surfaced, not retried.
//! - `thread_sandbox` (Codex `SandboxMode`; default `workspace-write`) on `thread/start`.
//! - `turn_sandbox_policy` (Codex `SandboxPolicy`; passed through) on every `turn/start`; when
//!   unset it follows the thread sandbox, and for `workspace-write` it is
//!   `{"type": "workspaceWrite", "writableRoots": [<workspace>], "networkAccess": false}`.
//! - `item/tool/requestUserInput`: under `never`, questions that are MCP tool-approval prompts
//!   (`mcp_tool_call_approval_*` ids, as the reference client does) are answered with their
//!   approve option; anything else ends the attempt `turn_input_required`.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::config::RunnerConfig;

/// `approvalPolicy` sent when the config sets none.
pub const DEFAULT_APPROVAL_POLICY: &str = "never";
/// `sandbox` (thread) sent when the config sets none.
pub const DEFAULT_THREAD_SANDBOX: &str = "workspace-write";

/// The policies of one session, resolved against its workspace.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SessionPolicy {
    pub approval_policy: Value,
    pub thread_sandbox: String,
    pub turn_sandbox_policy: Value,
}

/// What to answer an approval request with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Approve; the value is the response's `decision`.
    Approve(&'static str),
    /// Refuse; the attempt ends `approval_required` with this reason.
    Refuse(String),
}

impl SessionPolicy {
    pub(crate) fn resolve(config: &RunnerConfig, workspace: &Path) -> Self {
        let thread_sandbox = config
            .thread_sandbox
            .clone()
            .unwrap_or_else(|| DEFAULT_THREAD_SANDBOX.to_owned());
        let turn_sandbox_policy = config
            .turn_sandbox_policy
            .clone()
            .unwrap_or_else(|| default_turn_sandbox(&thread_sandbox, workspace));
        Self {
            approval_policy: config
                .approval_policy
                .clone()
                .unwrap_or_else(|| json!(DEFAULT_APPROVAL_POLICY)),
            thread_sandbox,
            turn_sandbox_policy,
        }
    }

    fn never_ask(&self) -> bool {
        self.approval_policy == json!("never")
    }

    /// The answer to the approval request `method` with `params`.
    pub(crate) fn approval(&self, method: &str, params: &Value, workspace: &Path) -> Decision {
        if !self.never_ask() {
            return Decision::Refuse(format!(
                "approval policy {} asks an operator to approve `{method}`",
                self.approval_policy
            ));
        }
        let (pointer, v2) = match method {
            "item/commandExecution/requestApproval" => ("/cwd", true),
            "item/fileChange/requestApproval" => ("/grantRoot", true),
            "execCommandApproval" => ("/cwd", false),
            _ => ("/grantRoot", false),
        };
        if let Some(path) = params.pointer(pointer).and_then(Value::as_str)
            && !inside(Path::new(path), workspace)
        {
            return Decision::Refuse(format!(
                "`{method}` asks for {path}, outside the workspace {}",
                workspace.display()
            ));
        }
        Decision::Approve(if v2 {
            "acceptForSession"
        } else {
            "approved_for_session"
        })
    }

    /// Answers for a `requestUserInput` made only of MCP tool-approval questions, under `never`;
    /// `None` means the attempt needs an operator.
    pub(crate) fn user_input_answers(&self, params: &Value) -> Option<Value> {
        if !self.never_ask() {
            return None;
        }
        let questions = params.get("questions")?.as_array()?;
        let mut answers = Map::new();
        for question in questions {
            let id = question.get("id")?.as_str()?;
            if !id.starts_with("mcp_tool_call_approval_") {
                return None;
            }
            let labels: Vec<&str> = question
                .get("options")?
                .as_array()?
                .iter()
                .filter_map(|o| o.get("label")?.as_str())
                .collect();
            let label = ["Approve this Session", "Approve Once"]
                .into_iter()
                .find(|want| labels.contains(want))
                .or_else(|| {
                    labels.iter().copied().find(|l| {
                        let l = l.trim().to_lowercase();
                        l.starts_with("approve") || l.starts_with("allow")
                    })
                })?;
            answers.insert(id.to_owned(), json!({"answers": [label]}));
        }
        (!answers.is_empty()).then(|| json!({"answers": answers}))
    }
}

fn default_turn_sandbox(thread_sandbox: &str, workspace: &Path) -> Value {
    match thread_sandbox {
        "read-only" => json!({"type": "readOnly", "networkAccess": false}),
        "danger-full-access" => json!({"type": "dangerFullAccess"}),
        _ => json!({
            "type": "workspaceWrite",
            "writableRoots": [workspace.display().to_string()],
            "networkAccess": false,
        }),
    }
}

fn inside(path: &Path, workspace: &Path) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canonical(path).starts_with(canonical(workspace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(approval: Value) -> SessionPolicy {
        SessionPolicy {
            approval_policy: approval,
            thread_sandbox: DEFAULT_THREAD_SANDBOX.into(),
            turn_sandbox_policy: default_turn_sandbox(DEFAULT_THREAD_SANDBOX, Path::new("/w/a")),
        }
    }

    #[test]
    fn the_default_turn_sandbox_writes_only_the_workspace_without_network() {
        let p = policy(json!("never"));
        assert_eq!(
            p.turn_sandbox_policy,
            json!({"type": "workspaceWrite", "writableRoots": ["/w/a"], "networkAccess": false})
        );
        assert_eq!(
            default_turn_sandbox("read-only", Path::new("/w")),
            json!({"type": "readOnly", "networkAccess": false})
        );
    }

    #[test]
    fn only_never_auto_approves_and_only_inside_the_workspace() {
        let ws = Path::new("/w/a");
        let method = "item/commandExecution/requestApproval";
        assert_eq!(
            policy(json!("never")).approval(method, &json!({"cwd": "/w/a/src"}), ws),
            Decision::Approve("acceptForSession")
        );
        assert!(matches!(
            policy(json!("never")).approval(method, &json!({"cwd": "/etc"}), ws),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            policy(json!("untrusted")).approval(method, &json!({"cwd": "/w/a"}), ws),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            policy(json!({"granular": {"rules": true}})).approval(method, &json!({}), ws),
            Decision::Refuse(_)
        ));
        assert_eq!(
            policy(json!("never")).approval("applyPatchApproval", &json!({}), ws),
            Decision::Approve("approved_for_session")
        );
    }

    #[test]
    fn only_mcp_approval_questions_are_answered() {
        let mcp = json!({"questions": [{"id": "mcp_tool_call_approval_1", "header": "h", "question": "q",
            "options": [{"label": "Deny", "description": ""}, {"label": "Approve Once", "description": ""}]}]});
        assert_eq!(
            policy(json!("never")).user_input_answers(&mcp),
            Some(json!({"answers": {"mcp_tool_call_approval_1": {"answers": ["Approve Once"]}}}))
        );
        assert_eq!(policy(json!("on-request")).user_input_answers(&mcp), None);
        let free =
            json!({"questions": [{"id": "color", "header": "h", "question": "Which color?"}]});
        assert_eq!(policy(json!("never")).user_input_answers(&free), None);
    }
}
