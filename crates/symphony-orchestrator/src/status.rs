//! What the orchestrator shows about itself (Symphony SPEC §13.3, §13.7.2): the state
//! snapshot and per-issue details served by the HTTP API, the requests the API sends the
//! orchestrator task, and the per-issue history the task keeps for them. Built from scheduling
//! state only; nothing here decides anything.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde::Serialize;
use symphony_tracker::model::format_timestamp;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::git_issues::{RecordFinding, Unclaimable};
use crate::runner::AgentEvent;
use crate::scheduler::{Retry, RetryKind, Running, Scheduler, Tokens};

/// Agent events kept per issue for `recent_events`.
pub const RECENT_EVENTS: usize = 20;
/// Ended attempts listed in the snapshot's `recent_attempts`.
pub const RECENT_ATTEMPTS: usize = 50;

/// A request from the HTTP API to the orchestrator task (answered over the oneshot).
#[derive(Debug)]
pub enum ApiRequest {
    /// `GET /api/v1/state`.
    State(oneshot::Sender<StateSnapshot>),
    /// `GET /api/v1/<identifier>`: `None` when the issue is unknown to the in-memory state.
    Issue(String, oneshot::Sender<Option<IssueDetail>>),
    /// `POST /api/v1/refresh`: queue an immediate poll and reconciliation.
    Refresh(oneshot::Sender<RefreshAck>),
}

/// The answer to a refresh request (SPEC §13.7.2).
#[derive(Debug, Clone, Serialize)]
pub struct RefreshAck {
    /// Always true: the tick is queued.
    pub queued: bool,
    /// True when a refresh was already pending and this one merged into it.
    pub coalesced: bool,
    /// When the request arrived (RFC 3339 UTC).
    pub requested_at: String,
    /// `["poll", "reconcile"]`.
    pub operations: [&'static str; 2],
}

/// Token totals in the SPEC's field names.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TokenTotals {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Total tokens.
    pub total_tokens: u64,
    /// Agent runtime in seconds, live runs included (aggregate rows only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_running: Option<f64>,
}

impl TokenTotals {
    fn of(tokens: Tokens, seconds: Option<f64>) -> Self {
        TokenTotals {
            input_tokens: tokens.input_tokens,
            output_tokens: tokens.output_tokens,
            total_tokens: tokens.total_tokens,
            seconds_running: seconds,
        }
    }
}

/// `GET /api/v1/state` (SPEC §13.7.2 shape plus `node`, `workflow`, `tracker`,
/// `recent_attempts`).
#[derive(Debug, Clone, Serialize)]
pub struct StateSnapshot {
    /// When the snapshot was taken.
    pub generated_at: String,
    /// This node's id.
    pub node: String,
    /// `{running, retrying}`.
    pub counts: Counts,
    /// Running sessions.
    pub running: Vec<RunningRow>,
    /// Queued retries.
    pub retrying: Vec<RetryRow>,
    /// Issues blocked on an approval or user input the policy does not grant unattended; not
    /// retried until an operator changes the issue's state (extension of SPEC §13.7.2).
    pub waiting: Vec<WaitingRow>,
    /// Aggregate tokens and runtime.
    pub codex_totals: TokenTotals,
    /// Latest rate-limit payload an agent reported.
    pub rate_limits: Option<serde_json::Value>,
    /// Workflow health: path, last reload error, last preflight error.
    pub workflow: WorkflowHealth,
    /// Tracker health: the last candidate fetch's error and findings.
    pub tracker: TrackerHealth,
    /// The latest ended attempts, newest first.
    pub recent_attempts: Vec<AttemptRow>,
    /// Ready issues this node may not claim, with the reason (as of the last candidate
    /// fetch; extension of SPEC §13.7.2).
    pub unclaimable: Vec<Unclaimable>,
}

/// Running and retrying counts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Counts {
    /// Running workers.
    pub running: usize,
    /// Queued retries.
    pub retrying: usize,
    /// Issues waiting for an operator.
    pub waiting: usize,
}

/// One issue waiting for an operator ([`crate::scheduler::Waiting`]).
#[derive(Debug, Clone, Serialize)]
pub struct WaitingRow {
    /// Tracker id.
    pub issue_id: String,
    /// Human identifier.
    pub issue_identifier: String,
    /// The tracker state it waits in; changing it releases the issue.
    pub state: String,
    /// `approval_required: <request>` or `turn_input_required: <request>`.
    pub reason: String,
    /// Since when.
    pub since: String,
}

/// One running session (SPEC §13.7.2 `running[]`).
#[derive(Debug, Clone, Serialize)]
pub struct RunningRow {
    /// Tracker id.
    pub issue_id: String,
    /// Human identifier.
    pub issue_identifier: String,
    /// Tracker state as last seen.
    pub state: String,
    /// Agent session id.
    pub session_id: Option<String>,
    /// Turns started.
    pub turn_count: u32,
    /// Retry attempt served (`null` on the first run).
    pub attempt: Option<u32>,
    /// Last agent event name.
    pub last_event: Option<String>,
    /// Last agent message.
    pub last_message: Option<String>,
    /// When the worker started.
    pub started_at: String,
    /// When the last agent event arrived.
    pub last_event_at: Option<String>,
    /// Why it is stopping, once asked to.
    pub stopping: Option<&'static str>,
    /// Tokens of this run.
    pub tokens: TokenTotals,
}

/// One queued retry (SPEC §13.7.2 `retrying[]`).
#[derive(Debug, Clone, Serialize)]
pub struct RetryRow {
    /// Tracker id.
    pub issue_id: String,
    /// Human identifier.
    pub issue_identifier: String,
    /// 1-based retry attempt.
    pub attempt: u32,
    /// When it fires.
    pub due_at: String,
    /// Why the previous run ended.
    pub error: Option<String>,
    /// `continuation` or `failure`.
    pub kind: &'static str,
}

/// Whether the workflow in force is the file on disk.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowHealth {
    /// The workflow file.
    pub path: String,
    /// Why the file on disk was rejected (the last good version is in force), if it was.
    pub reload_error: Option<String>,
    /// Why the last tick skipped dispatch, if it did.
    pub preflight_error: Option<String>,
}

/// What the last candidate fetch saw of the issues file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrackerHealth {
    /// The issues file.
    pub path: String,
    /// Why the last candidate fetch failed (no dispatch that tick), if it did.
    pub fetch_error: Option<String>,
    /// Records the last successful fetch left out or read with a fallback, with their lines
    /// (`RecordFinding`: `line`, `issue_id`, `omitted`, `message`).
    pub findings: Vec<RecordFinding>,
}

/// One ended attempt.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRow {
    /// Tracker id.
    pub issue_id: String,
    /// Human identifier.
    pub issue_identifier: String,
    /// `handed_off`, `continuation`, `left_active_states`, `failed`, `stopped`.
    pub outcome: String,
    /// Error or stop reason.
    pub error: Option<String>,
    /// The issue's state after the attempt.
    pub state: Option<String>,
    /// The attempt's proofs directory.
    pub proofs_dir: Option<String>,
    /// The handoff commit.
    pub commit: Option<String>,
    /// When it ended.
    pub ended_at: String,
    /// Whether it ended as designed (handed off, or stopped because the issue left the
    /// active states).
    pub as_designed: bool,
}

/// `GET /api/v1/<identifier>` (SPEC §13.7.2 shape).
#[derive(Debug, Clone, Serialize)]
pub struct IssueDetail {
    /// Human identifier.
    pub issue_identifier: String,
    /// Tracker id.
    pub issue_id: String,
    /// `running`, `retrying`, `waiting` (for an operator) or `idle`.
    pub status: &'static str,
    /// `{path}` of the workspace, when known.
    pub workspace: Option<WorkspaceRef>,
    /// `{restart_count, current_retry_attempt}`.
    pub attempts: AttemptCounts,
    /// The running session, if any.
    pub running: Option<RunningRow>,
    /// The queued retry, if any.
    pub retry: Option<RetryRow>,
    /// `{codex_session_logs: [...]}`: the agent logs of the latest attempt.
    pub logs: Logs,
    /// The latest agent events, oldest first.
    pub recent_events: Vec<EventRow>,
    /// The latest error.
    pub last_error: Option<String>,
    /// `{last_outcome, proofs_dir, commit}` of the latest ended attempt.
    pub tracked: Option<AttemptRow>,
}

/// A workspace path.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceRef {
    /// Absolute path.
    pub path: String,
}

/// Attempt counters of an issue.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AttemptCounts {
    /// Attempts dispatched beyond the first.
    pub restart_count: u32,
    /// The retry attempt running or queued, if any.
    pub current_retry_attempt: Option<u32>,
}

/// Agent log files.
#[derive(Debug, Clone, Serialize)]
pub struct Logs {
    /// `[{label, path, url}]`.
    pub codex_session_logs: Vec<LogRef>,
}

/// One log file.
#[derive(Debug, Clone, Serialize)]
pub struct LogRef {
    /// `stdout`, `stderr` or `prompt`.
    pub label: &'static str,
    /// Path relative to the repository root.
    pub path: String,
    /// Always `null` (no log server).
    pub url: Option<String>,
}

/// One agent event.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    /// When (RFC 3339 UTC).
    pub at: String,
    /// Event name.
    pub event: &'static str,
    /// Its message.
    pub message: Option<String>,
}

/// What the orchestrator remembers about an issue it has touched.
#[derive(Debug, Clone, Default)]
pub struct Tracked {
    /// Human identifier.
    pub identifier: String,
    /// Attempts dispatched.
    pub dispatches: u32,
    /// Workspace path, once prepared.
    pub workspace: Option<String>,
    /// Proofs directory of the running or latest attempt.
    pub proofs_dir: Option<String>,
    /// The latest ended attempt.
    pub last: Option<AttemptRow>,
    /// The latest error (failure, stop, rejected handoff).
    pub last_error: Option<String>,
    /// Recent agent events, oldest first, at most [`RECENT_EVENTS`].
    pub events: VecDeque<EventRow>,
}

impl Tracked {
    /// Remembers an agent event.
    pub fn push_event(&mut self, event: &AgentEvent) {
        if self.events.len() == RECENT_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(EventRow {
            at: format_timestamp(event.at),
            event: event.kind.as_str(),
            message: event.message.clone(),
        });
    }
}

/// Wall-clock time of monotonic `at`, given the pair (`now`, `now_utc`).
fn wall(at: Instant, now: Instant, now_utc: OffsetDateTime) -> String {
    let at = if at >= now {
        now_utc + (at - now)
    } else {
        now_utc - (now - at)
    };
    format_timestamp(at)
}

fn running_row(id: &str, run: &Running, now: Instant, now_utc: OffsetDateTime) -> RunningRow {
    RunningRow {
        issue_id: id.to_string(),
        issue_identifier: run.identifier.clone(),
        state: run.state.clone(),
        session_id: run.session_id.clone(),
        turn_count: run.turn_count,
        attempt: run.attempt,
        last_event: run.last_event.clone(),
        last_message: run.last_message.clone(),
        started_at: wall(run.started_at, now, now_utc),
        last_event_at: run.last_event_at.map(|at| wall(at, now, now_utc)),
        stopping: run.stopping.map(|s| s.as_str()),
        tokens: TokenTotals::of(run.tokens, None),
    }
}

fn retry_row(id: &str, retry: &Retry, now: Instant, now_utc: OffsetDateTime) -> RetryRow {
    RetryRow {
        issue_id: id.to_string(),
        issue_identifier: retry.identifier.clone(),
        attempt: retry.attempt,
        due_at: wall(retry.due_at, now, now_utc),
        error: retry.error.clone(),
        kind: match retry.kind {
            RetryKind::Continuation => "continuation",
            RetryKind::Failure => "failure",
        },
    }
}

/// Everything the status surfaces read, borrowed from the orchestrator task.
pub struct StatusView<'a> {
    /// Scheduling state.
    pub scheduler: &'a Scheduler,
    /// Per-issue history by issue id.
    pub tracked: &'a BTreeMap<String, Tracked>,
    /// Ended attempts, newest last.
    pub recent: &'a VecDeque<AttemptRow>,
    /// This node.
    pub node: &'a str,
    /// Latest rate limits.
    pub rate_limits: Option<&'a serde_json::Value>,
    /// Workflow health.
    pub workflow: WorkflowHealth,
    /// Ready issues this node may not claim (last candidate fetch).
    pub unclaimable: &'a [Unclaimable],
    /// Tracker health.
    pub tracker: &'a TrackerHealth,
}

impl StatusView<'_> {
    /// The `GET /api/v1/state` snapshot at `now`.
    pub fn snapshot(&self, now: Instant) -> StateSnapshot {
        let now_utc = OffsetDateTime::now_utc();
        let running: Vec<RunningRow> = self
            .scheduler
            .running()
            .iter()
            .map(|(id, run)| running_row(id, run, now, now_utc))
            .collect();
        let retrying: Vec<RetryRow> = self
            .scheduler
            .retries()
            .iter()
            .map(|(id, retry)| retry_row(id, retry, now, now_utc))
            .collect();
        let waiting: Vec<WaitingRow> = self
            .scheduler
            .waiting()
            .iter()
            .map(|(id, w)| WaitingRow {
                issue_id: id.clone(),
                issue_identifier: w.identifier.clone(),
                state: w.state.clone(),
                reason: w.reason.clone(),
                since: wall(w.since, now, now_utc),
            })
            .collect();
        let (tokens, runtime) = self.scheduler.totals(now);
        StateSnapshot {
            generated_at: format_timestamp(now_utc),
            node: self.node.to_string(),
            counts: Counts {
                running: running.len(),
                retrying: retrying.len(),
                waiting: waiting.len(),
            },
            running,
            retrying,
            waiting,
            codex_totals: TokenTotals::of(tokens, Some(runtime.as_secs_f64())),
            rate_limits: self.rate_limits.cloned(),
            workflow: self.workflow.clone(),
            tracker: self.tracker.clone(),
            recent_attempts: self
                .recent
                .iter()
                .rev()
                .take(RECENT_ATTEMPTS)
                .cloned()
                .collect(),
            unclaimable: self.unclaimable.to_vec(),
        }
    }

    /// Details of the issue with `identifier` (or id), `None` when this process has not
    /// touched it.
    pub fn issue(&self, identifier: &str, now: Instant) -> Option<IssueDetail> {
        let now_utc = OffsetDateTime::now_utc();
        let (id, tracked) = self
            .tracked
            .iter()
            .find(|(id, t)| t.identifier == identifier || id.as_str() == identifier)?;
        let running = self
            .scheduler
            .running()
            .get(id)
            .map(|run| running_row(id, run, now, now_utc));
        let retry = self
            .scheduler
            .retries()
            .get(id)
            .map(|retry| retry_row(id, retry, now, now_utc));
        let status = match (&running, &retry) {
            (Some(_), _) => "running",
            (None, Some(_)) => "retrying",
            (None, None) if self.scheduler.waiting().contains_key(id) => "waiting",
            (None, None) => "idle",
        };
        let logs = tracked.proofs_dir.iter().flat_map(|dir| {
            [
                ("stdout", "agent.stdout.log"),
                ("stderr", "agent.stderr.log"),
                ("prompt", "prompt.md"),
            ]
            .map(|(label, file)| LogRef {
                label,
                path: format!("{dir}/{file}"),
                url: None,
            })
        });
        Some(IssueDetail {
            issue_identifier: tracked.identifier.clone(),
            issue_id: id.clone(),
            status,
            workspace: tracked.workspace.clone().map(|path| WorkspaceRef { path }),
            attempts: AttemptCounts {
                restart_count: tracked.dispatches.saturating_sub(1),
                current_retry_attempt: running
                    .as_ref()
                    .and_then(|r| r.attempt)
                    .or(retry.as_ref().map(|r| r.attempt)),
            },
            running,
            retry,
            logs: Logs {
                codex_session_logs: logs.collect(),
            },
            recent_events: tracked.events.iter().cloned().collect(),
            last_error: tracked.last_error.clone(),
            tracked: tracked.last.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{AgentUpdate, Candidate, Exit, Limits};
    use std::time::Duration;

    #[test]
    fn spec_13_7_snapshot_has_running_rows_retry_rows_and_totals() {
        let t0 = Instant::now();
        let mut scheduler = Scheduler::new(Limits {
            max_concurrent_agents: 2,
            max_concurrent_agents_by_state: Default::default(),
            max_retry_backoff: Duration::from_secs(300),
        });
        let candidate = |id: &str| Candidate {
            id: id.into(),
            identifier: format!("{id}-ident"),
            state: "in_progress".into(),
            dispatchable: true,
        };
        scheduler.dispatched(&candidate("A"), None, t0);
        scheduler.dispatched(&candidate("B"), None, t0);
        scheduler.agent_event(
            "A",
            AgentUpdate {
                name: "notification".into(),
                session_id: Some("s-1".into()),
                new_turn: true,
                usage: Some(Tokens {
                    input_tokens: 10,
                    output_tokens: 5,
                    total_tokens: 15,
                }),
                ..AgentUpdate::default()
            },
            t0,
        );
        scheduler.exited("B", Exit::Failed("agent_crashed: x".into()), t0);
        let mut tracked = BTreeMap::new();
        tracked.insert(
            "A".to_string(),
            Tracked {
                identifier: "A-ident".into(),
                dispatches: 2,
                proofs_dir: Some("proofs/A-ident/t".into()),
                ..Tracked::default()
            },
        );
        let recent = VecDeque::new();
        let view = StatusView {
            scheduler: &scheduler,
            tracked: &tracked,
            recent: &recent,
            node: "n",
            rate_limits: None,
            unclaimable: &[],
            workflow: WorkflowHealth {
                path: "/w".into(),
                reload_error: None,
                preflight_error: None,
            },
            tracker: &TrackerHealth::default(),
        };
        let snapshot = serde_json::to_value(view.snapshot(t0 + Duration::from_secs(2))).unwrap();
        assert_eq!(
            snapshot["counts"],
            serde_json::json!({"running": 1, "retrying": 1, "waiting": 0})
        );
        assert_eq!(snapshot["running"][0]["session_id"], "s-1");
        assert_eq!(snapshot["running"][0]["turn_count"], 1);
        assert_eq!(snapshot["retrying"][0]["attempt"], 1);
        assert_eq!(snapshot["retrying"][0]["error"], "agent_crashed: x");
        assert_eq!(snapshot["codex_totals"]["total_tokens"], 15);
        assert_eq!(snapshot["codex_totals"]["seconds_running"], 2.0);
        let detail = serde_json::to_value(view.issue("A-ident", t0).unwrap()).unwrap();
        assert_eq!(detail["status"], "running");
        assert_eq!(detail["attempts"]["restart_count"], 1);
        assert_eq!(
            detail["logs"]["codex_session_logs"][0]["path"],
            "proofs/A-ident/t/agent.stdout.log"
        );
        assert!(view.issue("nope", t0).is_none());
    }
}
