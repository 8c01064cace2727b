//! Reading app-server payloads leniently (SPEC §10.3, §13.5): ids and texts by JSON pointer,
//! how a turn ended, absolute token totals. Unknown fields are ignored; only the results the
//! session depends on are typed ([`super::protocol`]).

use serde_json::Value;

use crate::runner::RunnerError;
use crate::runner::events::TokenUsage;

/// How a turn ended according to the app-server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TurnEnd {
    Completed,
    Failed(String),
    Cancelled(String),
}

/// For the codex runner a missing command is `codex_not_found` (SPEC §10.6).
pub(super) fn codex_not_found(e: RunnerError) -> RunnerError {
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

pub(super) fn is_response(message: &Value) -> bool {
    message.get("method").is_none()
        && message.get("id").is_some()
        && (message.get("result").is_some() || message.get("error").is_some())
}

pub(super) fn first_str(value: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| match value.pointer(p)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// A compact, bounded rendering of a JSON value for messages.
pub(super) fn clip(value: &Value) -> String {
    crate::runner::events::summarize(&value.to_string())
}

pub(super) fn turn_end(method: &str, params: &Value) -> TurnEnd {
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
pub(super) fn absolute_usage(params: &Value) -> Option<TokenUsage> {
    let totals = [
        "/tokenUsage/total",
        "/token_usage/total",
        "/info/total_token_usage",
        "/msg/info/total_token_usage",
        "/msg/payload/info/total_token_usage",
        "/total_token_usage",
    ]
    .iter()
    .find_map(|p| params.pointer(p).filter(|v| v.is_object()))?;
    Some(token_counts(totals))
}

/// The reference client's fallback: a `usage` map of integer counts on `turn/completed`
/// (`params.usage`), taken as the session's totals. codex 0.171 sends none, so this applies
/// only to app-servers that do.
pub(super) fn turn_completed_usage(method: &str, params: &Value) -> Option<TokenUsage> {
    if method != "turn/completed" {
        return None;
    }
    let usage = params.get("usage").filter(|u| {
        u.as_object()
            .is_some_and(|m| !m.is_empty() && m.values().all(|v| v.is_u64() || v.is_object()))
    })?;
    Some(token_counts(usage))
}

/// Input, output and total counts from common field names; total defaults to their sum.
fn token_counts(totals: &Value) -> TokenUsage {
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| totals.get(*n).and_then(Value::as_u64))
    };
    let input = field(&["inputTokens", "input_tokens", "prompt_tokens"]).unwrap_or(0);
    let output = field(&["outputTokens", "output_tokens", "completion_tokens"]).unwrap_or(0);
    let total = field(&["totalTokens", "total_tokens"]).unwrap_or(input + output);
    TokenUsage {
        input,
        output,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let completed =
            json!({"turn": {"id": "t"}, "usage": {"input_tokens": 7, "output_tokens": 3}});
        assert_eq!(
            turn_completed_usage("turn/completed", &completed),
            Some(TokenUsage {
                input: 7,
                output: 3,
                total: 10
            })
        );
        assert_eq!(turn_completed_usage("item/completed", &completed), None);
        assert_eq!(
            turn_completed_usage("turn/completed", &json!({"usage": {"note": "x"}})),
            None,
            "not a map of counts"
        );
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
