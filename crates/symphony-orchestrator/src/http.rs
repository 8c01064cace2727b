//! The optional HTTP server (Symphony SPEC §13.7): a server-rendered dashboard at `/` and the
//! JSON API under `/api/v1/`, bound to 127.0.0.1 only.
//!
//! | route | method | answer |
//! |---|---|---|
//! | `/` | GET | HTML dashboard from the state snapshot |
//! | `/api/v1/state` | GET | [`StateSnapshot`] |
//! | `/api/v1/refresh` | POST | 202 [`crate::status::RefreshAck`] (body ignored) |
//! | `/api/v1/<identifier>` | GET | [`crate::status::IssueDetail`], 404 `issue_not_found` |
//!
//! Errors use the envelope `{"error":{"code":"...","message":"..."}}`: `method_not_allowed`
//! (405, with `Allow`), `not_found` (404), `issue_not_found` (404), `timeout` (504, the
//! orchestrator did not answer within [`ANSWER_TIMEOUT`]) and `unavailable` (503, it has
//! stopped). The API only reads, except `refresh`; it never changes scheduling state itself.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use crate::status::{ApiRequest, StateSnapshot};

/// Longest wait for the orchestrator task to answer one request.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A failure to start the server.
#[derive(Debug, thiserror::Error)]
#[error("127.0.0.1:{port}: cannot listen for the HTTP API: {reason}")]
pub struct HttpError {
    /// The requested port.
    pub port: u16,
    /// The OS error.
    pub reason: String,
}

/// Binds 127.0.0.1:`port` (`0`: an ephemeral port) and serves the API until `shutdown`
/// turns true. Returns the bound address.
///
/// # Errors
/// [`HttpError`] when the port cannot be bound.
pub async fn serve(
    port: u16,
    api: mpsc::Sender<ApiRequest>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<SocketAddr, HttpError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| HttpError {
            port,
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| HttpError {
        port,
        reason: e.to_string(),
    })?;
    let app = router(api);
    tokio::spawn(async move {
        let stopped = async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(error = %e, "HTTP API stopped");
        }
    });
    Ok(addr)
}

/// The routes, over the orchestrator's request channel.
pub fn router(api: mpsc::Sender<ApiRequest>) -> Router {
    routes(Api {
        tx: api,
        answer_timeout: ANSWER_TIMEOUT,
    })
}

/// The state of every handler: the request channel and how long to wait for an answer.
#[derive(Debug, Clone)]
struct Api {
    tx: mpsc::Sender<ApiRequest>,
    answer_timeout: Duration,
}

fn routes(api: Api) -> Router {
    Router::new()
        .route("/", get(dashboard).fallback(method_not_allowed_get))
        .route("/api/v1/state", get(state).fallback(method_not_allowed_get))
        .route(
            "/api/v1/refresh",
            post(refresh).fallback(method_not_allowed_post),
        )
        .route(
            "/api/v1/{identifier}",
            get(issue).fallback(method_not_allowed_get),
        )
        .fallback(not_found)
        .with_state(api)
}

fn envelope(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

fn not_allowed(allow: &'static str) -> Response {
    let mut response = envelope(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route accepts {allow} only"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

async fn method_not_allowed_get() -> Response {
    not_allowed("GET")
}

async fn method_not_allowed_post() -> Response {
    not_allowed("POST")
}

async fn not_found() -> Response {
    envelope(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Sends a request built around a fresh oneshot and waits (bounded) for the answer.
async fn ask<T>(
    api: &Api,
    request: impl FnOnce(oneshot::Sender<T>) -> ApiRequest,
) -> Result<T, Response> {
    let unavailable = || {
        envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the orchestrator is not running",
        )
    };
    let (tx, rx) = oneshot::channel();
    let limit = api.answer_timeout;
    match tokio::time::timeout(limit, api.tx.send(request(tx))).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(unavailable()),
        Err(_) => return Err(timeout(limit)),
    }
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err(unavailable()),
        Err(_) => Err(timeout(limit)),
    }
}

fn timeout(limit: Duration) -> Response {
    envelope(
        StatusCode::GATEWAY_TIMEOUT,
        "timeout",
        format!(
            "the orchestrator did not answer within {} ms",
            limit.as_millis()
        ),
    )
}

async fn state(State(api): State<Api>) -> Response {
    match ask(&api, ApiRequest::State).await {
        Ok(snapshot) => axum::Json(snapshot).into_response(),
        Err(response) => response,
    }
}

async fn issue(State(api): State<Api>, Path(identifier): Path<String>) -> Response {
    let key = identifier.clone();
    match ask(&api, move |tx| ApiRequest::Issue(key, tx)).await {
        Ok(Some(detail)) => axum::Json(detail).into_response(),
        Ok(None) => envelope(
            StatusCode::NOT_FOUND,
            "issue_not_found",
            format!(
                "issue {identifier:?} is not known to this orchestrator (neither running, retrying nor attempted since start)"
            ),
        ),
        Err(response) => response,
    }
}

async fn refresh(State(api): State<Api>) -> Response {
    match ask(&api, ApiRequest::Refresh).await {
        Ok(ack) => (StatusCode::ACCEPTED, axum::Json(ack)).into_response(),
        Err(response) => response,
    }
}

async fn dashboard(State(api): State<Api>) -> Response {
    match ask(&api, ApiRequest::State).await {
        Ok(snapshot) => Html(render_dashboard(&snapshot)).into_response(),
        Err(response) => response,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn cell(value: Option<&str>) -> String {
    value.map_or_else(|| "–".to_string(), escape)
}

/// The dashboard: health, running sessions, retries, issues waiting for an operator, recent
/// attempts, totals.
pub fn render_dashboard(s: &StateSnapshot) -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Symphony</title>\
         <meta http-equiv=\"refresh\" content=\"5\"><style>body{font-family:sans-serif;margin:2em}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}\
         .bad{color:#b00}</style></head><body>",
    );
    html.push_str(&format!(
        "<h1>Symphony</h1><p>node <code>{}</code> · {} · workflow <code>{}</code></p>",
        escape(&s.node),
        escape(&s.generated_at),
        escape(&s.workflow.path)
    ));
    for problem in [&s.workflow.reload_error, &s.workflow.preflight_error]
        .into_iter()
        .flatten()
    {
        html.push_str(&format!("<p class=\"bad\">{}</p>", escape(problem)));
    }
    html.push_str(&format!(
        "<h2>Running ({})</h2><table><tr><th>issue</th><th>state</th><th>session</th><th>turns</th>\
         <th>last event</th><th>started</th><th>tokens</th></tr>",
        s.counts.running
    ));
    for r in &s.running {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.issue_identifier),
            escape(&r.state),
            cell(r.session_id.as_deref()),
            r.turn_count,
            cell(r.last_event.as_deref()),
            cell(r.last_message.as_deref()),
            escape(&r.started_at),
            r.tokens.total_tokens
        ));
    }
    html.push_str(&format!(
        "</table><h2>Retrying ({})</h2><table><tr><th>issue</th><th>attempt</th><th>due</th><th>error</th></tr>",
        s.counts.retrying
    ));
    for r in &s.retrying {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.issue_identifier),
            r.attempt,
            escape(&r.due_at),
            cell(r.error.as_deref())
        ));
    }
    html.push_str(&format!(
        "</table><h2>Waiting for an operator ({})</h2><table><tr><th>issue</th><th>state</th><th>since</th><th>request</th></tr>",
        s.counts.waiting
    ));
    for w in &s.waiting {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td></tr>",
            escape(&w.issue_identifier),
            escape(&w.state),
            escape(&w.since),
            escape(&w.reason)
        ));
    }
    html.push_str("</table><h2>Recent attempts</h2><table><tr><th>issue</th><th>outcome</th><th>state</th><th>proofs</th><th>error</th></tr>");
    for a in &s.recent_attempts {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&a.issue_identifier),
            escape(&a.outcome),
            cell(a.state.as_deref()),
            cell(a.proofs_dir.as_deref()),
            cell(a.error.as_deref())
        ));
    }
    let t = &s.codex_totals;
    html.push_str(&format!(
        "</table><h2>Totals</h2><p>tokens in {} · out {} · total {} · agent time {:.1} s</p></body></html>",
        t.input_tokens,
        t.output_tokens,
        t.total_tokens,
        t.seconds_running.unwrap_or(0.0)
    ));
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_escapes_what_agents_write() {
        let snapshot: StateSnapshot = StateSnapshot {
            generated_at: "t".into(),
            node: "n".into(),
            counts: crate::status::Counts {
                running: 0,
                retrying: 1,
                waiting: 1,
            },
            running: Vec::new(),
            retrying: vec![crate::status::RetryRow {
                issue_id: "A".into(),
                issue_identifier: "A".into(),
                attempt: 1,
                due_at: "t".into(),
                error: Some("<script>x</script>".into()),
                kind: "failure",
            }],
            waiting: vec![crate::status::WaitingRow {
                issue_id: "B".into(),
                issue_identifier: "B-1".into(),
                state: "in_progress".into(),
                reason: "approval_required: <rm -rf>".into(),
                since: "t".into(),
            }],
            codex_totals: crate::status::TokenTotals {
                input_tokens: 0,
                output_tokens: 0,
                total_tokens: 0,
                seconds_running: Some(0.0),
            },
            rate_limits: None,
            unclaimable: Vec::new(),
            workflow: crate::status::WorkflowHealth {
                path: "/w".into(),
                reload_error: None,
                preflight_error: None,
            },
            tracker: crate::status::TrackerHealth::default(),
            recent_attempts: Vec::new(),
        };
        let html = render_dashboard(&snapshot);
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("Waiting for an operator (1)"));
        assert!(html.contains("approval_required: &lt;rm -rf&gt;"));
    }

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn spec_17_4_snapshot_timeout_and_unavailable_are_surfaced_as_json_errors() {
        // An orchestrator that takes requests but never answers: 504 timeout.
        let (tx, mut rx) = mpsc::channel(4);
        let api = Api {
            tx,
            answer_timeout: Duration::from_millis(50),
        };
        let held = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Some(request) = rx.recv().await {
                kept.push(request);
            }
        });
        let response = ask(&api, ApiRequest::State).await.unwrap_err();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        let error = body(response).await;
        assert_eq!(error["error"]["code"], "timeout");
        assert_eq!(
            error["error"]["message"],
            "the orchestrator did not answer within 50 ms"
        );
        held.abort();

        // An orchestrator that drops the request: 503 unavailable.
        let (tx, mut rx) = mpsc::channel(4);
        let dropper = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let api = Api {
            tx,
            answer_timeout: Duration::from_millis(50),
        };
        let response = ask(&api, ApiRequest::State).await.unwrap_err();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        dropper.abort();

        // An orchestrator that has stopped: 503 unavailable.
        let (tx, rx) = mpsc::channel(4);
        drop(rx);
        let api = Api {
            tx,
            answer_timeout: Duration::from_millis(50),
        };
        let response = ask(&api, ApiRequest::State).await.unwrap_err();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(response).await["error"]["code"], "unavailable");
    }
}
