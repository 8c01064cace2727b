//! The orchestrator's scheduling state as an IO-free state machine (Symphony SPEC §7, §8,
//! §16). The async actor feeds it facts (candidates, worker exits, agent events, tracker
//! states, the time) and carries out what it decides; nothing here touches a process, a
//! file or a clock, so every rule is tested with virtual time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Delay before re-checking an issue whose worker exited normally (SPEC §8.4).
pub const CONTINUATION_DELAY: Duration = Duration::from_millis(1000);
/// Base of the failure backoff: `min(10 s × 2^(attempt-1), max_retry_backoff)` (SPEC §8.4).
pub const FAILURE_BASE: Duration = Duration::from_millis(10_000);

/// Concurrency and retry limits, re-read from the workflow on every reload (SPEC §5.3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Global cap on running agents.
    pub max_concurrent_agents: usize,
    /// Per-state caps; keys trimmed and lowercased.
    pub max_concurrent_agents_by_state: HashMap<String, usize>,
    /// Cap on the failure backoff.
    pub max_retry_backoff: Duration,
}

/// An issue offered for dispatch: ready per the tracker, in dispatch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Tracker id.
    pub id: String,
    /// Human identifier.
    pub identifier: String,
    /// Current tracker state.
    pub state: String,
    /// SPEC §4.1.1 `dispatchable`, derived by the tracker adapter: `false` candidates are
    /// never dispatched.
    pub dispatchable: bool,
}

/// Token counts as reported by agents (SPEC §13.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tokens {
    /// Input (prompt) tokens.
    pub input_tokens: u64,
    /// Output (completion) tokens.
    pub output_tokens: u64,
    /// Total tokens.
    pub total_tokens: u64,
}

/// A running worker's live entry (SPEC §4.1.6, §16.4).
#[derive(Debug, Clone)]
pub struct Running {
    /// Human identifier.
    pub identifier: String,
    /// Tracker state when dispatched or last reconciled.
    pub state: String,
    /// Retry attempt this run serves (`None` on the first run).
    pub attempt: Option<u32>,
    /// When the worker started.
    pub started_at: Instant,
    /// Last agent event, if any.
    pub last_event_at: Option<Instant>,
    /// Name of the last agent event.
    pub last_event: Option<String>,
    /// Short message of the last agent event.
    pub last_message: Option<String>,
    /// Agent session id (`<thread>-<turn>` or runner-defined).
    pub session_id: Option<String>,
    /// Turns started in this worker.
    pub turn_count: u32,
    /// Tokens attributed to this run.
    pub tokens: Tokens,
    /// Why the orchestrator asked this run to stop, once it has ([`Scheduler::stop`]).
    pub stopping: Option<Stop>,
    last_reported: Tokens,
}

/// Why a retry is queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryKind {
    /// The worker exited normally; re-check shortly (SPEC §7.1).
    Continuation,
    /// The worker failed, stalled or found no slot; back off.
    Failure,
}

/// A queued retry (SPEC §4.1.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Human identifier.
    pub identifier: String,
    /// 1-based retry attempt.
    pub attempt: u32,
    /// When it fires.
    pub due_at: Instant,
    /// Why the previous run ended, when it failed.
    pub error: Option<String>,
    /// What kind of retry.
    pub kind: RetryKind,
}

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It finished its turns (or the issue left the active states).
    Normal,
    /// It failed: the reason is kept on the retry entry.
    Failed(String),
    /// The agent asked for an approval or input the policy does not give unattended: no
    /// retry; the issue waits for an operator ([`Waiting`]).
    NeedsOperator(String),
}

/// An issue whose last attempt ended waiting for an operator (approval or user input). It is
/// not retried; it stays claimed on this node until the operator changes its state (any
/// change, for example back to `todo`, releases it) or the service restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// Human identifier.
    pub identifier: String,
    /// The tracker state when it started waiting.
    pub state: String,
    /// What the agent asked for (`approval_required: ...`, `turn_input_required: ...`).
    pub reason: String,
    /// Since when.
    pub since: Instant,
}

/// Why the orchestrator stops a running worker (SPEC §8.5, §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Terminal state: stop the worker and remove the workspace.
    Terminal,
    /// Neither active nor terminal (e.g. moved to review or blocked): stop, keep workspace.
    Inactive,
    /// The issue is gone from the tracker: stop, keep workspace.
    Missing,
    /// No agent activity for longer than the stall timeout: stop and retry.
    Stalled,
    /// Another node holds the claim now (a heartbeat was refused): stop, keep workspace.
    ClaimLost,
    /// The service is shutting down: stop, keep workspace, no retry.
    Shutdown,
}

impl Stop {
    /// Stable snake_case name for logs and the API (`terminal`, `inactive`, `missing`,
    /// `stalled`, `claim_lost`, `shutdown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::Terminal => "terminal",
            Stop::Inactive => "inactive",
            Stop::Missing => "missing",
            Stop::Stalled => "stalled",
            Stop::ClaimLost => "claim_lost",
            Stop::Shutdown => "shutdown",
        }
    }
}

/// What the tracker says now about a running issue (SPEC §8.5 part B); an issue absent from
/// the tracker is [`Stop::Missing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Active, in this state: keep running, refresh the state.
    Active(String),
    /// In a terminal state.
    Terminal,
    /// Neither active nor terminal, and not handed off by this run.
    Inactive,
    /// In a review state with a handoff newer than the run's start: this run's agent handed
    /// off, and the worker ends on its own once the turn is over.
    HandedOff,
}

/// What became of a run whose worker exited ([`Scheduler::exited`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A retry is queued (continuation or failure backoff).
    Retry(Retry),
    /// The orchestrator had stopped it for this reason: its claim is released, no retry.
    Released(Stop),
    /// It waits for an operator ([`Exit::NeedsOperator`]).
    Waiting(Waiting),
}

/// Decision on a retry whose timer fired (SPEC §16.6 `on_retry_timer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryDecision {
    /// Dispatch it again with this attempt number.
    Dispatch {
        /// The retry attempt.
        attempt: u32,
    },
    /// No slot free: requeued with the error `no available orchestrator slots`.
    Requeued,
    /// No longer a candidate: claim released.
    Released,
}

/// The single authoritative scheduling state (SPEC §4.1.8).
#[derive(Debug)]
pub struct Scheduler {
    limits: Limits,
    running: BTreeMap<String, Running>,
    retries: BTreeMap<String, Retry>,
    waiting: BTreeMap<String, Waiting>,
    claimed: HashSet<String>,
    completed: HashSet<String>,
    totals: Tokens,
    ended_runtime: Duration,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(limits: Limits) -> Self {
        Scheduler {
            limits,
            running: BTreeMap::new(),
            retries: BTreeMap::new(),
            waiting: BTreeMap::new(),
            claimed: HashSet::new(),
            completed: HashSet::new(),
            totals: Tokens::default(),
            ended_runtime: Duration::ZERO,
        }
    }

    /// Applies reloaded limits to future decisions (SPEC §6.2).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Running workers by issue id.
    pub fn running(&self) -> &BTreeMap<String, Running> {
        &self.running
    }

    /// Issues waiting for an operator, by issue id.
    pub fn waiting(&self) -> &BTreeMap<String, Waiting> {
        &self.waiting
    }

    /// Queued retries by issue id.
    pub fn retries(&self) -> &BTreeMap<String, Retry> {
        &self.retries
    }

    /// Whether the issue is running or waiting for a retry.
    pub fn is_claimed(&self, id: &str) -> bool {
        self.claimed.contains(id)
    }

    /// Ids of issues whose worker exited normally at least once (bookkeeping only).
    pub fn completed(&self) -> &HashSet<String> {
        &self.completed
    }

    /// Aggregate tokens, and runtime including live runs at `now` (SPEC §13.5).
    pub fn totals(&self, now: Instant) -> (Tokens, Duration) {
        let live: Duration = self
            .running
            .values()
            .map(|r| now.saturating_duration_since(r.started_at))
            .sum();
        (self.totals, self.ended_runtime + live)
    }

    /// Free global slots.
    pub fn available_slots(&self) -> usize {
        self.limits
            .max_concurrent_agents
            .saturating_sub(self.running.len())
    }

    /// Whether a state has room for `pending` more runs beyond those running.
    fn state_has_room(&self, state: &str, pending: usize) -> bool {
        let key = state.trim().to_ascii_lowercase();
        let Some(&cap) = self.limits.max_concurrent_agents_by_state.get(&key) else {
            return true;
        };
        let running = self
            .running
            .values()
            .filter(|r| r.state.trim().eq_ignore_ascii_case(&key))
            .count();
        running + pending < cap
    }

    /// The candidates to dispatch now, in order, within global and per-state slots, skipping
    /// claimed ones (SPEC §8.2–8.3). The caller dispatches them and reports each with
    /// [`Scheduler::dispatched`].
    pub fn select<'c>(&self, candidates: &'c [Candidate]) -> Vec<&'c Candidate> {
        let mut slots = self.available_slots();
        let mut per_state: HashMap<String, usize> = HashMap::new();
        let mut chosen = Vec::new();
        for candidate in candidates {
            if slots == 0 {
                break;
            }
            if !candidate.dispatchable || self.claimed.contains(&candidate.id) {
                continue;
            }
            let key = candidate.state.trim().to_ascii_lowercase();
            let pending = per_state.get(&key).copied().unwrap_or(0);
            if self.state_has_room(&key, pending) {
                *per_state.entry(key).or_default() += 1;
                slots -= 1;
                chosen.push(candidate);
            }
        }
        chosen
    }

    /// Records that a worker started for `candidate` (SPEC §16.4).
    pub fn dispatched(&mut self, candidate: &Candidate, attempt: Option<u32>, now: Instant) {
        self.retries.remove(&candidate.id);
        self.claimed.insert(candidate.id.clone());
        self.running.insert(
            candidate.id.clone(),
            Running {
                identifier: candidate.identifier.clone(),
                state: candidate.state.clone(),
                attempt,
                started_at: now,
                last_event_at: None,
                last_event: None,
                last_message: None,
                session_id: None,
                turn_count: 0,
                tokens: Tokens::default(),
                stopping: None,
                last_reported: Tokens::default(),
            },
        );
    }

    /// Records an agent event for a running issue. Usage is the session's absolute total (what
    /// every runner reports, `runner::TokenUsage`): its growth since the last report is added
    /// to the run and the aggregate, so repeated reports count once (SPEC §13.5).
    pub fn agent_event(&mut self, id: &str, event: AgentUpdate, now: Instant) {
        let Some(run) = self.running.get_mut(id) else {
            return;
        };
        run.last_event_at = Some(now);
        if event.new_turn {
            run.turn_count += 1;
        }
        if let Some(session) = event.session_id {
            run.session_id = Some(session);
        }
        run.last_event = Some(event.name);
        run.last_message = event.message.or(run.last_message.take());
        if let Some(usage) = event.usage {
            let delta = Tokens {
                input_tokens: usage
                    .input_tokens
                    .saturating_sub(run.last_reported.input_tokens),
                output_tokens: usage
                    .output_tokens
                    .saturating_sub(run.last_reported.output_tokens),
                total_tokens: usage
                    .total_tokens
                    .saturating_sub(run.last_reported.total_tokens),
            };
            run.last_reported = usage;
            for (sum, add) in [(&mut run.tokens, delta), (&mut self.totals, delta)] {
                sum.input_tokens += add.input_tokens;
                sum.output_tokens += add.output_tokens;
                sum.total_tokens += add.total_tokens;
            }
        }
    }

    /// Asks a running worker to stop for `reason`. Returns false when the issue is not
    /// running or already stopping (the first reason stands). A stopping run is skipped by
    /// [`Scheduler::stalled`] and [`Scheduler::reconcile`] until its worker exits.
    pub fn stop(&mut self, id: &str, reason: Stop) -> bool {
        match self.running.get_mut(id) {
            Some(run) if run.stopping.is_none() => {
                run.stopping = Some(reason);
                true
            }
            _ => false,
        }
    }

    /// Records a worker's exit (SPEC §16.6). A run the orchestrator stopped is released
    /// ([`Ended::Released`]) — except a stalled one, which backs off like a failure (SPEC §8.5
    /// part A). Otherwise a continuation retry follows [`CONTINUATION_DELAY`] after a normal
    /// exit and an exponential backoff after a failure. `None` for an issue that was not
    /// running.
    pub fn exited(&mut self, id: &str, exit: Exit, now: Instant) -> Option<Ended> {
        let run = self.running.remove(id)?;
        self.ended_runtime += now.saturating_duration_since(run.started_at);
        let exit = match (run.stopping, exit) {
            (Some(Stop::Stalled), Exit::Failed(reason)) => Exit::Failed(reason),
            (Some(Stop::Stalled), Exit::Normal) => Exit::Failed("stalled".into()),
            (Some(reason), _) => {
                self.release(id);
                return Some(Ended::Released(reason));
            }
            (None, exit) => exit,
        };
        let (attempt, kind, error) = match exit {
            Exit::Normal => {
                self.completed.insert(id.to_string());
                (1, RetryKind::Continuation, None)
            }
            Exit::Failed(reason) => (
                run.attempt.map_or(1, |a| a + 1),
                RetryKind::Failure,
                Some(reason),
            ),
            Exit::NeedsOperator(reason) => {
                let waiting = Waiting {
                    identifier: run.identifier,
                    state: run.state,
                    reason,
                    since: now,
                };
                self.claimed.insert(id.to_string());
                self.waiting.insert(id.to_string(), waiting.clone());
                return Some(Ended::Waiting(waiting));
            }
        };
        let retry = self.queue_retry(id, run.identifier, attempt, kind, error, now);
        Some(Ended::Retry(retry.clone()))
    }

    fn queue_retry(
        &mut self,
        id: &str,
        identifier: String,
        attempt: u32,
        kind: RetryKind,
        error: Option<String>,
        now: Instant,
    ) -> &Retry {
        let delay = match kind {
            RetryKind::Continuation => CONTINUATION_DELAY,
            RetryKind::Failure => failure_backoff(attempt, self.limits.max_retry_backoff),
        };
        self.claimed.insert(id.to_string());
        let retry = Retry {
            identifier,
            attempt,
            due_at: now + delay,
            error,
            kind,
        };
        self.retries.insert(id.to_string(), retry.clone());
        &self.retries[id]
    }

    /// Ids of retries due at `now`, earliest first.
    pub fn due_retries(&self, now: Instant) -> Vec<String> {
        let mut due: Vec<(&Instant, &String)> = self
            .retries
            .iter()
            .filter(|(_, r)| r.due_at <= now)
            .map(|(id, r)| (&r.due_at, id))
            .collect();
        due.sort();
        due.into_iter().map(|(_, id)| id.clone()).collect()
    }

    /// When the next retry fires.
    pub fn next_retry_at(&self) -> Option<Instant> {
        self.retries.values().map(|r| r.due_at).min()
    }

    /// Handles a fired retry given the issue's current candidacy (SPEC §16.6): `None` when
    /// the issue is not among the ready candidates.
    pub fn retry_fired(
        &mut self,
        id: &str,
        candidate: Option<&Candidate>,
        now: Instant,
    ) -> RetryDecision {
        let Some(retry) = self.retries.remove(id) else {
            return RetryDecision::Released;
        };
        let Some(candidate) = candidate else {
            self.claimed.remove(id);
            return RetryDecision::Released;
        };
        if self.available_slots() == 0 || !self.state_has_room(&candidate.state, 0) {
            self.queue_retry(
                id,
                candidate.identifier.clone(),
                retry.attempt + 1,
                RetryKind::Failure,
                Some("no available orchestrator slots".into()),
                now,
            );
            return RetryDecision::Requeued;
        }
        RetryDecision::Dispatch {
            attempt: retry.attempt,
        }
    }

    /// Requeues a due retry whose candidate poll failed: attempt + 1, error
    /// `retry poll failed` (SPEC §16.6). No-op for an issue without a retry.
    pub fn retry_poll_failed(&mut self, id: &str, now: Instant) {
        if let Some(retry) = self.retries.remove(id) {
            self.queue_retry(
                id,
                retry.identifier,
                retry.attempt + 1,
                RetryKind::Failure,
                Some("retry poll failed".into()),
                now,
            );
        }
    }

    /// Releases an issue's claim and any retry (it left the active states, or its run was
    /// stopped for good).
    pub fn release(&mut self, id: &str) {
        self.retries.remove(id);
        self.waiting.remove(id);
        self.claimed.remove(id);
    }

    /// Releases waiting issues whose tracker state is no longer the one they started waiting
    /// in (an operator acted); returns their ids.
    pub fn reconcile_waiting(&mut self, observed: &HashMap<String, Observed>) -> Vec<String> {
        let released: Vec<String> = self
            .waiting
            .iter()
            .filter(|(id, w)| {
                !matches!(observed.get(*id), Some(Observed::Active(state)) if *state == w.state)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &released {
            self.release(id);
        }
        released
    }

    /// Running issues not already stopping with no agent event (or start) for longer than
    /// `stall_timeout`; `None` disables stall detection (SPEC §8.5 part A).
    pub fn stalled(&self, now: Instant, stall_timeout: Option<Duration>) -> Vec<String> {
        let Some(limit) = stall_timeout else {
            return Vec::new();
        };
        self.running
            .iter()
            .filter(|(_, r)| r.stopping.is_none())
            .filter(|(_, r)| {
                let since = r.last_event_at.unwrap_or(r.started_at);
                now.saturating_duration_since(since) > limit
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Decides, from what the tracker says now about running issues, which runs to stop
    /// (SPEC §8.5 part B); active ones get their state refreshed, handed-off ones are left to
    /// finish. A running id absent from `observed` is missing. Runs already stopping are
    /// skipped. The caller stops each returned run with [`Scheduler::stop`].
    pub fn reconcile(&mut self, observed: &HashMap<String, Observed>) -> Vec<(String, Stop)> {
        let mut stops = Vec::new();
        for (id, run) in &mut self.running {
            if run.stopping.is_some() {
                continue;
            }
            match observed.get(id) {
                Some(Observed::Terminal) => stops.push((id.clone(), Stop::Terminal)),
                Some(Observed::Active(state)) => run.state = state.clone(),
                Some(Observed::HandedOff) => {}
                Some(Observed::Inactive) => stops.push((id.clone(), Stop::Inactive)),
                None => stops.push((id.clone(), Stop::Missing)),
            }
        }
        stops
    }
}

/// One agent event as the scheduler needs it.
#[derive(Debug, Clone, Default)]
pub struct AgentUpdate {
    /// Event name (`session_started`, `turn_completed`, `notification`, ...).
    pub name: String,
    /// Short human message.
    pub message: Option<String>,
    /// Session id, when the event reveals one.
    pub session_id: Option<String>,
    /// Whether this event starts a new turn.
    pub new_turn: bool,
    /// The session's absolute token totals, when the event carries usage.
    pub usage: Option<Tokens>,
}

/// `min(10 s × 2^(attempt-1), cap)` (SPEC §8.4); attempt 0 is treated as 1.
pub fn failure_backoff(attempt: u32, cap: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    FAILURE_BASE
        .checked_mul(1u32 << exponent)
        .map_or(cap, |delay| delay.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(global: usize, by_state: &[(&str, usize)]) -> Limits {
        Limits {
            max_concurrent_agents: global,
            max_concurrent_agents_by_state: by_state
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            max_retry_backoff: Duration::from_millis(300_000),
        }
    }

    fn candidate(id: &str, state: &str) -> Candidate {
        Candidate {
            id: id.into(),
            identifier: id.into(),
            state: state.into(),
            dispatchable: true,
        }
    }

    #[test]
    fn spec_8_4_failure_backoff_doubles_from_ten_seconds_up_to_the_cap() {
        let cap = Duration::from_secs(300);
        let delays: Vec<u64> = (1..=7).map(|a| failure_backoff(a, cap).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(failure_backoff(40, cap), cap);
    }

    #[test]
    fn spec_17_4_dispatchable_false_issues_are_not_eligible() {
        let s = Scheduler::new(limits(3, &[]));
        let blocked = Candidate {
            dispatchable: false,
            ..candidate("A", "todo")
        };
        let cands = [blocked, candidate("B", "todo")];
        let ids: Vec<&str> = s.select(&cands).iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["B"]);
    }

    #[test]
    fn spec_8_3_selection_respects_global_and_per_state_slots() {
        let s = Scheduler::new(limits(3, &[("todo", 1)]));
        let cands = [
            candidate("A", "Todo"),
            candidate("B", "todo"),
            candidate("C", "in_progress"),
            candidate("D", "in_progress"),
            candidate("E", "in_progress"),
        ];
        let ids: Vec<&str> = s.select(&cands).iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["A", "C", "D"]);
    }

    #[test]
    fn spec_16_6_normal_exit_continues_after_one_second_failures_back_off() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(limits(2, &[]));
        s.dispatched(&candidate("A", "todo"), None, t0);
        let Some(Ended::Retry(retry)) = s.exited("A", Exit::Normal, t0) else {
            panic!("continuation expected")
        };
        assert_eq!((retry.attempt, retry.due_at - t0), (1, CONTINUATION_DELAY));
        assert!(s.is_claimed("A"));
        assert_eq!(
            s.retry_fired("A", Some(&candidate("A", "todo")), t0),
            RetryDecision::Dispatch { attempt: 1 }
        );
        s.dispatched(&candidate("A", "todo"), Some(1), t0);
        let Some(Ended::Retry(retry)) = s.exited("A", Exit::Failed("crash".into()), t0) else {
            panic!("failure retry expected")
        };
        assert_eq!(
            (retry.attempt, retry.due_at - t0),
            (2, Duration::from_secs(20))
        );
        assert_eq!(retry.error.as_deref(), Some("crash"));
    }

    #[test]
    fn spec_16_6_retry_without_slots_is_requeued_and_gone_issue_released() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(limits(1, &[]));
        s.dispatched(&candidate("A", "todo"), None, t0);
        s.dispatched(&candidate("B", "todo"), None, t0);
        s.exited("B", Exit::Failed("x".into()), t0);
        let due = t0 + Duration::from_secs(10);
        assert_eq!(s.due_retries(due), ["B"]);
        assert_eq!(
            s.retry_fired("B", Some(&candidate("B", "todo")), due),
            RetryDecision::Requeued
        );
        let requeued = &s.retries()["B"];
        assert_eq!(
            requeued.error.as_deref(),
            Some("no available orchestrator slots")
        );
        assert_eq!(requeued.attempt, 2);
        s.retry_poll_failed("B", due);
        assert_eq!(s.retries()["B"].attempt, 3);
        assert_eq!(s.retries()["B"].error.as_deref(), Some("retry poll failed"));
        assert_eq!(s.retry_fired("B", None, due), RetryDecision::Released);
        assert!(!s.is_claimed("B"));
    }

    #[test]
    fn spec_8_5_stalls_are_measured_from_the_last_event_or_the_start() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(limits(2, &[]));
        s.dispatched(&candidate("A", "todo"), None, t0);
        s.dispatched(&candidate("B", "todo"), None, t0);
        s.agent_event(
            "B",
            AgentUpdate {
                name: "notification".into(),
                ..Default::default()
            },
            t0 + Duration::from_secs(50),
        );
        let at = t0 + Duration::from_secs(61);
        assert_eq!(s.stalled(at, Some(Duration::from_secs(60))), ["A"]);
        assert!(s.stalled(at, None).is_empty());
    }

    #[test]
    fn spec_8_5_reconciliation_stops_terminal_inactive_and_missing_runs() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(limits(4, &[]));
        for id in ["A", "B", "C", "D"] {
            s.dispatched(&candidate(id, "todo"), None, t0);
        }
        let observed: HashMap<String, Observed> = [
            ("A", Observed::Terminal),
            ("B", Observed::Inactive),
            ("C", Observed::Active("in_progress".into())),
        ]
        .into_iter()
        .map(|(id, o)| (id.to_string(), o))
        .collect();
        let stops = s.reconcile(&observed);
        assert_eq!(
            stops,
            [
                ("A".into(), Stop::Terminal),
                ("B".into(), Stop::Inactive),
                ("D".into(), Stop::Missing)
            ]
        );
        assert_eq!(s.running()["C"].state, "in_progress");
    }

    #[test]
    fn spec_13_5_absolute_totals_are_counted_once() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(limits(1, &[]));
        s.dispatched(&candidate("A", "todo"), None, t0);
        let total = |n| AgentUpdate {
            name: "token_count".into(),
            usage: Some(Tokens {
                input_tokens: n,
                output_tokens: n / 2,
                total_tokens: n + n / 2,
            }),
            ..Default::default()
        };
        s.agent_event("A", total(100), t0);
        s.agent_event("A", total(100), t0);
        s.agent_event("A", total(150), t0);
        let (tokens, _) = s.totals(t0);
        assert_eq!(
            (
                tokens.input_tokens,
                tokens.output_tokens,
                tokens.total_tokens
            ),
            (150, 75, 225)
        );
    }

    #[test]
    fn runtime_totals_include_live_runs() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(limits(2, &[]));
        s.dispatched(&candidate("A", "todo"), None, t0);
        s.dispatched(&candidate("B", "todo"), None, t0);
        s.exited("A", Exit::Normal, t0 + Duration::from_secs(3));
        let (_, runtime) = s.totals(t0 + Duration::from_secs(5));
        assert_eq!(runtime, Duration::from_secs(8));
    }

    #[test]
    fn spec_8_5_reconciliation_is_a_no_op_without_runs_and_leaves_handed_off_runs_alone() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(limits(2, &[]));
        assert!(s.reconcile(&HashMap::new()).is_empty());
        s.dispatched(&candidate("A", "todo"), None, t0);
        let observed = HashMap::from([("A".to_string(), Observed::HandedOff)]);
        assert!(s.reconcile(&observed).is_empty());
        assert_eq!(s.running()["A"].state, "todo");
    }

    #[test]
    fn stopped_runs_are_released_but_stalled_ones_back_off() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(limits(3, &[]));
        for id in ["A", "B", "C"] {
            s.dispatched(&candidate(id, "todo"), None, t0);
        }
        assert!(s.stop("A", Stop::Terminal));
        assert!(!s.stop("A", Stop::Inactive), "the first reason stands");
        assert!(s.stop("B", Stop::Stalled));
        let later = t0 + Duration::from_secs(600);
        assert_eq!(s.stalled(later, Some(Duration::from_secs(1))), ["C"]);
        assert!(s.reconcile(&HashMap::new()).iter().all(|(id, _)| id == "C"));
        assert_eq!(
            s.exited("A", Exit::Normal, t0),
            Some(Ended::Released(Stop::Terminal))
        );
        assert!(!s.is_claimed("A"));
        let Some(Ended::Retry(retry)) = s.exited("B", Exit::Normal, t0) else {
            panic!("a stalled run retries")
        };
        assert_eq!(retry.kind, RetryKind::Failure);
        assert_eq!(retry.error.as_deref(), Some("stalled"));
        assert_eq!(retry.due_at - t0, FAILURE_BASE);
    }

    #[test]
    fn an_attempt_needing_an_operator_waits_unretried_until_its_state_changes() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(limits(2, &[]));
        s.dispatched(&candidate("A", "in_progress"), None, t0);
        let Some(Ended::Waiting(w)) =
            s.exited("A", Exit::NeedsOperator("approval_required: x".into()), t0)
        else {
            panic!("waits")
        };
        assert_eq!(
            (w.state.as_str(), w.reason.as_str()),
            ("in_progress", "approval_required: x")
        );
        assert!(s.retries().is_empty(), "not retried");
        assert!(s.is_claimed("A"), "not dispatched again");
        let same = HashMap::from([("A".to_string(), Observed::Active("in_progress".into()))]);
        assert!(s.reconcile_waiting(&same).is_empty());
        let moved = HashMap::from([("A".to_string(), Observed::Active("todo".into()))]);
        assert_eq!(s.reconcile_waiting(&moved), ["A"]);
        assert!(!s.is_claimed("A") && s.waiting().is_empty());
    }
}
