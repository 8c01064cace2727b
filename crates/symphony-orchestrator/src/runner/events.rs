//! Events a runner streams to the orchestrator while an agent works (SPEC §10.4): the scheduler
//! uses their timestamps for stall detection (SPEC §8.5) and their usage for token accounting
//! (SPEC §13.5).

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;

/// Longest `message` an event carries, in characters (SPEC §13.1: no large raw payloads).
pub const MAX_EVENT_MESSAGE_CHARS: usize = 240;

/// What happened (SPEC §10.4 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentEventKind {
    /// A session (and, for codex, a turn) started; `session_id` is set.
    SessionStarted,
    /// The agent could not be started or the handshake failed.
    StartupFailed,
    /// A turn finished successfully.
    TurnCompleted,
    /// A turn failed.
    TurnFailed,
    /// A turn was cancelled or interrupted.
    TurnCancelled,
    /// The agent reported an error that ends the turn.
    TurnEndedWithError,
    /// The agent asked for user input (a hard failure by policy).
    TurnInputRequired,
    /// An approval request was approved automatically (high-trust policy, `docs/runners.md`).
    ApprovalAutoApproved,
    /// The agent asked for an approval the policy does not grant unattended; the attempt ends.
    ApprovalRequired,
    /// A host-side tool call succeeded.
    ToolCallCompleted,
    /// A host-side tool call failed; the model got the reason.
    ToolCallFailed,
    /// The agent called a tool this client does not implement; it was answered with a failure.
    UnsupportedToolCall,
    /// Progress: a message, a tool use, a usage or rate-limit update, a plain output line.
    Notification,
    /// A well-formed message of a type this client does not interpret.
    OtherMessage,
    /// A line that is not valid JSON (or too long) where JSON was expected.
    Malformed,
}

impl AgentEventKind {
    /// The snake_case name (`turn_completed`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionStarted => "session_started",
            Self::StartupFailed => "startup_failed",
            Self::TurnCompleted => "turn_completed",
            Self::TurnFailed => "turn_failed",
            Self::TurnCancelled => "turn_cancelled",
            Self::TurnEndedWithError => "turn_ended_with_error",
            Self::TurnInputRequired => "turn_input_required",
            Self::ApprovalAutoApproved => "approval_auto_approved",
            Self::ApprovalRequired => "approval_required",
            Self::ToolCallCompleted => "tool_call_completed",
            Self::ToolCallFailed => "tool_call_failed",
            Self::UnsupportedToolCall => "unsupported_tool_call",
            Self::Notification => "notification",
            Self::OtherMessage => "other_message",
            Self::Malformed => "malformed",
        }
    }
}

/// Token counts. In an [`AgentEvent`] they are absolute totals for the whole runner session so
/// far (all turns), never deltas: the scheduler diffs them against the last reported totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenUsage {
    /// Input (prompt) tokens, cached ones included.
    pub input: u64,
    /// Output (completion) tokens.
    pub output: u64,
    /// Total tokens as reported, else `input + output`.
    pub total: u64,
}

impl TokenUsage {
    /// Component-wise sum (saturating).
    pub fn plus(self, other: Self) -> Self {
        Self {
            input: self.input.saturating_add(other.input),
            output: self.output.saturating_add(other.output),
            total: self.total.saturating_add(other.total),
        }
    }
}

/// One runner event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentEvent {
    /// The issue the runner works on.
    pub issue_id: String,
    /// What happened.
    pub kind: AgentEventKind,
    /// When the runner observed it (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The agent session (`<thread_id>-<turn_id>` for codex) when known.
    pub session_id: Option<String>,
    /// PID of the agent process when known.
    pub pid: Option<u32>,
    /// Absolute session token totals, when this event carried usage.
    pub usage: Option<TokenUsage>,
    /// The latest rate-limit payload, when this event carried one.
    pub rate_limits: Option<serde_json::Value>,
    /// Short human summary, at most [`MAX_EVENT_MESSAGE_CHARS`] characters.
    pub message: Option<String>,
}

/// Cuts `text` to one line of at most [`MAX_EVENT_MESSAGE_CHARS`] characters.
pub(crate) fn summarize(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= MAX_EVENT_MESSAGE_CHARS {
        return flat;
    }
    let mut cut: String = flat.chars().take(MAX_EVENT_MESSAGE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Builds and sends events for one runner session.
#[derive(Debug, Clone)]
pub(crate) struct EventSink {
    pub issue_id: String,
    pub pid: Option<u32>,
    pub session_id: Option<String>,
    tx: mpsc::Sender<AgentEvent>,
}

/// The parts of an event a parser fills in.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EventBody {
    pub usage: Option<TokenUsage>,
    pub rate_limits: Option<serde_json::Value>,
    pub message: Option<String>,
}

impl EventSink {
    pub(crate) fn new(issue_id: String, tx: mpsc::Sender<AgentEvent>) -> Self {
        Self {
            issue_id,
            pid: None,
            session_id: None,
            tx,
        }
    }

    /// Sends an event; waits when the orchestrator is behind, and drops it when the receiver is
    /// gone (the run is being torn down).
    pub(crate) async fn emit(&self, kind: AgentEventKind, body: EventBody) {
        let event = AgentEvent {
            issue_id: self.issue_id.clone(),
            kind,
            at: OffsetDateTime::now_utc(),
            session_id: self.session_id.clone(),
            pid: self.pid,
            usage: body.usage,
            rate_limits: body.rate_limits,
            message: body.message.map(|m| summarize(&m)),
        };
        let _ = self.tx.send(event).await;
    }

    pub(crate) async fn emit_message(&self, kind: AgentEventKind, message: impl Into<String>) {
        let body = EventBody {
            message: Some(message.into()),
            ..EventBody::default()
        };
        self.emit(kind, body).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_one_bounded_line() {
        assert_eq!(summarize("a\n  b\tc"), "a b c");
        let long = "x".repeat(1000);
        let s = summarize(&long);
        assert_eq!(s.chars().count(), MAX_EVENT_MESSAGE_CHARS);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn kinds_serialize_as_their_names() {
        let json = serde_json::to_string(&AgentEventKind::TurnInputRequired).unwrap();
        assert_eq!(
            json,
            format!("\"{}\"", AgentEventKind::TurnInputRequired.as_str())
        );
    }
}
