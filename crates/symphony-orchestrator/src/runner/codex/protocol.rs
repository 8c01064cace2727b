//! Typed Codex app-server messages for what this client sends and reads, written against the
//! schema of the targeted Codex version: `codex app-server generate-json-schema --experimental
//! --out DIR` of `@openai/codex` [`TARGET_CODEX_VERSION`] (`v1/InitializeParams.json`,
//! `v2/ThreadStartParams.json`, `v2/TurnStartParams.json`, `DynamicToolCallParams.json`, ...).
//! The experimental surface is needed for `dynamicTools`, so `initialize` opts into it.
//!
//! Requests are serialized from these types; responses the session depends on (`thread/start`,
//! `turn/start`, `initialize`) are deserialized into them, and a result that does not fit is a
//! [`super::super::RunnerError::ProtocolMismatch`] naming the installed and the targeted version.
//! Notifications are read leniently (unknown fields and methods are fine).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `@openai/codex` version whose schema these types follow (checked by the real-binary tests,
/// installed by `.ci/install-codex.sh`).
pub const TARGET_CODEX_VERSION: &str = "0.171.0";

/// `initialize` params (`v1/InitializeParams.json`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    /// Who is connecting.
    pub client_info: ClientInfo,
    /// What the client opts into.
    pub capabilities: InitializeCapabilities,
}

/// `ClientInfo`.
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    /// Client name (appears in Codex's user agent).
    pub name: String,
    /// Display title.
    pub title: String,
    /// Client version.
    pub version: String,
}

/// `InitializeCapabilities`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeCapabilities {
    /// Opt into experimental methods and fields (`dynamicTools` is one).
    pub experimental_api: bool,
}

/// `initialize` result (`v1/InitializeResponse.json`); `userAgent` is
/// `<client name>/<codex version> (...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResponse {
    /// Codex's user agent, carrying its version.
    pub user_agent: String,
}

impl InitializeResponse {
    /// The Codex version from the user agent (`symphony/0.171.0 (Debian ...)` → `0.171.0`).
    pub fn codex_version(&self) -> Option<&str> {
        let (_, rest) = self.user_agent.split_once('/')?;
        let version = rest.split_whitespace().next()?;
        (!version.is_empty()).then_some(version)
    }
}

/// A host-side tool offered to the thread (`DynamicToolSpec`, function form).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamicToolSpec {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Tool name the model calls.
    pub name: &'static str,
    /// What the tool does, for the model.
    pub description: &'static str,
    /// JSON Schema of the arguments.
    pub input_schema: Value,
}

/// `thread/start` params (`v2/ThreadStartParams.json`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadStartParams {
    /// `AskForApproval`: a string or the granular object, passed through from the config.
    pub approval_policy: Value,
    /// `SandboxMode` (`read-only`, `workspace-write`, `danger-full-access`).
    pub sandbox: String,
    /// Absolute workspace path.
    pub cwd: String,
    /// Host-side tools.
    pub dynamic_tools: Vec<DynamicToolSpec>,
}

/// `thread/start` result (`v2/ThreadStartResponse.json`), the part used.
#[derive(Debug, Clone, Deserialize)]
pub struct ThreadStartResponse {
    /// The new thread.
    pub thread: IdOnly,
}

/// `thread/name/set` params: the session title `<identifier>: <title>` (SPEC §10.2), since
/// `turn/start` has no title field in the targeted version.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadSetNameParams {
    /// The thread.
    pub thread_id: String,
    /// Its name.
    pub name: String,
}

/// `turn/start` params (`v2/TurnStartParams.json`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnStartParams {
    /// The thread.
    pub thread_id: String,
    /// The prompt as one text input.
    pub input: Vec<UserInput>,
    /// Absolute workspace path.
    pub cwd: String,
    /// `AskForApproval`, as on the thread.
    pub approval_policy: Value,
    /// `SandboxPolicy` object (`{"type": "workspaceWrite", "writableRoots": [...], ...}`).
    pub sandbox_policy: Value,
}

/// `UserInput`, text form.
#[derive(Debug, Clone, Serialize)]
pub struct UserInput {
    /// Always `text`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The text.
    pub text: String,
}

/// `turn/start` result (`v2/TurnStartResponse.json`), the part used.
#[derive(Debug, Clone, Deserialize)]
pub struct TurnStartResponse {
    /// The new turn.
    pub turn: IdOnly,
}

/// An object of which only `id` is read.
#[derive(Debug, Clone, Deserialize)]
pub struct IdOnly {
    /// The id.
    pub id: String,
}

/// `item/tool/call` params (`DynamicToolCallParams.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamicToolCallParams {
    /// The tool called.
    pub tool: String,
    /// Its arguments, as the model wrote them.
    #[serde(default)]
    pub arguments: Value,
    /// The call id.
    #[serde(default)]
    pub call_id: String,
}

/// `item/tool/call` result (`DynamicToolCallResponse.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamicToolCallResponse {
    /// Whether the tool succeeded.
    pub success: bool,
    /// What the model reads: one `inputText` item.
    pub content_items: Vec<ContentItem>,
}

/// `DynamicToolCallOutputContentItem`, text form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContentItem {
    /// Always `inputText`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The text.
    pub text: String,
}

impl DynamicToolCallResponse {
    /// A result with one text item.
    pub fn text(success: bool, text: String) -> Self {
        Self {
            success,
            content_items: vec![ContentItem {
                kind: "inputText",
                text,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codex_version_comes_from_the_user_agent() {
        let r = InitializeResponse {
            user_agent: "symphony/0.171.0 (Debian 12.0.0; x86_64) xterm (symphony; 0.1)".into(),
        };
        assert_eq!(r.codex_version(), Some("0.171.0"));
        let r = InitializeResponse {
            user_agent: "garbage".into(),
        };
        assert_eq!(r.codex_version(), None);
    }
}
