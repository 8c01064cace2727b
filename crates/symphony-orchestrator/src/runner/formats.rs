//! Reading a shell agent's stdout lines into events, per `runner.output_format`:
//!
//! - `plain`: every non-empty line is a `notification`.
//! - `claude_stream_json`: Claude Code `--output-format stream-json --verbose` lines
//!   (`system`/`init`, `assistant`, `user`, `result` with `usage` and `is_error`).
//! - `codex_exec_jsonl`: `codex exec --json` events (`thread.started`, `turn.started`,
//!   `item.*`, `turn.completed` with `usage`, `turn.failed`, `error`).
//!
//! Usage read here is the process's own total; the shell session adds earlier turns' totals.
//! Lines that end the turn (`result`, `turn.completed`, `turn.failed`) yield a verdict; the
//! session turns it into the turn's single terminal event.

use serde_json::Value;

use super::events::{AgentEventKind, EventBody, TokenUsage};
use crate::config::OutputFormat;

/// How the agent itself said the turn ended, when it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamVerdict {
    Completed,
    Failed(String),
}

/// One stdout line, interpreted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedLine {
    pub kind: AgentEventKind,
    pub body: EventBody,
    pub session_id: Option<String>,
    pub verdict: Option<StreamVerdict>,
}

impl ParsedLine {
    fn new(kind: AgentEventKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            body: EventBody {
                message: Some(message.into()),
                ..EventBody::default()
            },
            session_id: None,
            verdict: None,
        }
    }
}

/// Interprets one complete stdout line; `None` for blank lines.
pub(crate) fn parse_line(format: OutputFormat, line: &[u8]) -> Option<ParsedLine> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if format == OutputFormat::Plain {
        return Some(ParsedLine::new(AgentEventKind::Notification, text));
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Some(ParsedLine::new(AgentEventKind::Malformed, text));
    };
    Some(match format {
        OutputFormat::ClaudeStreamJson => claude_line(&value),
        _ => codex_exec_line(&value),
    })
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn u64_at(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn claude_line(v: &Value) -> ParsedLine {
    let kind = str_at(v, "/type").unwrap_or("");
    let session_id = str_at(v, "/session_id").map(str::to_owned);
    let mut parsed = match kind {
        "system" if str_at(v, "/subtype") == Some("init") => ParsedLine::new(
            AgentEventKind::Notification,
            format!(
                "session initialized, model={}",
                str_at(v, "/model").unwrap_or("?")
            ),
        ),
        "assistant" => ParsedLine::new(AgentEventKind::Notification, claude_content(v)),
        "user" => ParsedLine::new(AgentEventKind::Notification, "tool result"),
        "result" => claude_result(v),
        other => ParsedLine::new(AgentEventKind::OtherMessage, other),
    };
    parsed.session_id = session_id;
    parsed
}

fn claude_content(v: &Value) -> String {
    let blocks = v
        .pointer("/message/content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let parts: Vec<String> = blocks
        .iter()
        .filter_map(|b| match str_at(b, "/type")? {
            "text" => str_at(b, "/text").map(str::to_owned),
            "tool_use" => Some(format!("tool_use {}", str_at(b, "/name").unwrap_or("?"))),
            "thinking" => Some("thinking".to_owned()),
            _ => None,
        })
        .collect();
    if parts.is_empty() {
        "assistant message".to_owned()
    } else {
        parts.join(" | ")
    }
}

fn claude_result(v: &Value) -> ParsedLine {
    let subtype = str_at(v, "/subtype").unwrap_or("");
    let is_error = v.get("is_error").and_then(Value::as_bool).unwrap_or(false);
    let text = str_at(v, "/result").unwrap_or(subtype).to_owned();
    let mut parsed = if is_error || (subtype != "success" && !subtype.is_empty()) {
        let reason = if text.is_empty() {
            subtype.to_owned()
        } else {
            text
        };
        let mut p = ParsedLine::new(AgentEventKind::TurnFailed, reason.clone());
        p.verdict = Some(StreamVerdict::Failed(reason));
        p
    } else {
        let mut p = ParsedLine::new(AgentEventKind::TurnCompleted, text);
        p.verdict = Some(StreamVerdict::Completed);
        p
    };
    if let Some(usage) = v.get("usage") {
        let input = u64_at(usage, "input_tokens")
            + u64_at(usage, "cache_creation_input_tokens")
            + u64_at(usage, "cache_read_input_tokens");
        let output = u64_at(usage, "output_tokens");
        parsed.body.usage = Some(TokenUsage {
            input,
            output,
            total: input + output,
        });
    }
    parsed
}

fn codex_exec_line(v: &Value) -> ParsedLine {
    let kind = str_at(v, "/type").unwrap_or("");
    match kind {
        "thread.started" => {
            let mut p = ParsedLine::new(AgentEventKind::Notification, "thread started");
            p.session_id = str_at(v, "/thread_id").map(str::to_owned);
            p
        }
        "turn.started" => ParsedLine::new(AgentEventKind::Notification, "turn started"),
        "item.started" | "item.updated" | "item.completed" => {
            let item_type = str_at(v, "/item/type").unwrap_or("item");
            let detail = str_at(v, "/item/text")
                .or_else(|| str_at(v, "/item/command"))
                .unwrap_or("");
            ParsedLine::new(
                AgentEventKind::Notification,
                format!("{kind} {item_type} {detail}"),
            )
        }
        "turn.completed" => {
            let mut p = ParsedLine::new(AgentEventKind::TurnCompleted, "turn completed");
            p.verdict = Some(StreamVerdict::Completed);
            if let Some(usage) = v.get("usage") {
                let input = u64_at(usage, "input_tokens");
                let output = u64_at(usage, "output_tokens");
                p.body.usage = Some(TokenUsage {
                    input,
                    output,
                    total: input + output,
                });
            }
            p
        }
        "turn.failed" => {
            let reason = str_at(v, "/error/message")
                .unwrap_or("turn failed")
                .to_owned();
            let mut p = ParsedLine::new(AgentEventKind::TurnFailed, reason.clone());
            p.verdict = Some(StreamVerdict::Failed(reason));
            p
        }
        "error" => ParsedLine::new(
            AgentEventKind::TurnEndedWithError,
            str_at(v, "/message").unwrap_or("error"),
        ),
        other => ParsedLine::new(AgentEventKind::OtherMessage, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(format: OutputFormat, line: &str) -> ParsedLine {
        parse_line(format, line.as_bytes()).unwrap()
    }

    #[test]
    fn plain_lines_are_notifications_and_blank_lines_are_skipped() {
        let p = parse(OutputFormat::Plain, "  working on it ");
        assert_eq!(p.kind, AgentEventKind::Notification);
        assert_eq!(p.body.message.as_deref(), Some("working on it"));
        assert!(parse_line(OutputFormat::Plain, b"   ").is_none());
    }

    #[test]
    fn claude_stream_json_is_interpreted() {
        let f = OutputFormat::ClaudeStreamJson;
        let init = parse(
            f,
            r#"{"type":"system","subtype":"init","session_id":"s1","model":"m","tools":[]}"#,
        );
        assert_eq!(init.kind, AgentEventKind::Notification);
        assert_eq!(init.session_id.as_deref(), Some("s1"));
        let msg = parse(
            f,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi"},{"type":"tool_use","name":"Bash","input":{}}]},"session_id":"s1"}"#,
        );
        assert_eq!(msg.body.message.as_deref(), Some("hi | tool_use Bash"));
        let done = parse(
            f,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"s1","usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":7}}"#,
        );
        assert_eq!(done.kind, AgentEventKind::TurnCompleted);
        assert_eq!(done.verdict, Some(StreamVerdict::Completed));
        assert_eq!(
            done.body.usage,
            Some(TokenUsage {
                input: 115,
                output: 7,
                total: 122
            })
        );
        let failed = parse(
            f,
            r#"{"type":"result","subtype":"error_max_turns","is_error":true}"#,
        );
        assert_eq!(
            failed.verdict,
            Some(StreamVerdict::Failed("error_max_turns".into()))
        );
        assert_eq!(parse(f, "not json").kind, AgentEventKind::Malformed);
    }

    #[test]
    fn codex_exec_jsonl_is_interpreted() {
        let f = OutputFormat::CodexExecJsonl;
        let started = parse(f, r#"{"type":"thread.started","thread_id":"th_1"}"#);
        assert_eq!(started.session_id.as_deref(), Some("th_1"));
        let item = parse(
            f,
            r#"{"type":"item.completed","item":{"id":"i","type":"command_execution","command":"ls"}}"#,
        );
        assert_eq!(
            item.body.message.as_deref(),
            Some("item.completed command_execution ls")
        );
        let done = parse(
            f,
            r#"{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":80,"output_tokens":9}}"#,
        );
        assert_eq!(
            done.body.usage,
            Some(TokenUsage {
                input: 100,
                output: 9,
                total: 109
            })
        );
        let failed = parse(f, r#"{"type":"turn.failed","error":{"message":"quota"}}"#);
        assert_eq!(failed.verdict, Some(StreamVerdict::Failed("quota".into())));
        assert_eq!(
            parse(f, r#"{"type":"new.thing"}"#).kind,
            AgentEventKind::OtherMessage
        );
    }
}
