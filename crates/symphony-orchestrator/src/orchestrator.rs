//! The orchestrator task (Symphony SPEC §7, §8, §16): ONE task owns all scheduling state and
//! runs one `tokio::select!` loop over its inputs — the poll tick, retry timers, the claim
//! heartbeat, agent events, worker exits, workflow reloads, HTTP API requests and shutdown.
//! Every decision comes from the IO-free [`Scheduler`]; this module carries them out (tracker
//! reads and writes on blocking threads, workers as tasks) and feeds the results back.
//!
//! Start-up ([`start`]): preflight the workflow, read the tracker, remove the workspaces of
//! terminal issues (SPEC §8.6), finish handoffs a killed run left unrecorded or uncommitted,
//! release this node's stale claims and resume its live ones (restart recovery), bind the HTTP API, watch the workflow file, tick at once.
//!
//! Tick: re-check the workflow file (missed watch events), reconcile (stalls, then tracker
//! states: terminal → stop and clean the workspace, non-active → stop and keep it), preflight,
//! fetch candidates, dispatch within the global and per-state slots. Dispatch = claim in the
//! tracker (`todo → in_progress`, no commit) + spawn a worker ([`crate::worker`]). Every
//! worker exit releases this node's claim; normal exits are re-checked after 1 s, failures
//! back off `min(10 s × 2^(n-1), max_retry_backoff_ms)`.
//!
//! `--once` ([`RunOptions::once`]): one dispatching tick, then only reconciliation until the
//! dispatched workers have ended (retries are not fired); [`RunSummary`] says how each ended.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use symphony_tracker::TrackerError;
use symphony_tracker::claims::{ClaimDecision, heartbeat_interval};
use symphony_tracker::model::format_timestamp;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use crate::config::{PreflightError, ServiceConfig, preflight};
use crate::git_issues::{CandidateFetch, GitIssues, TrackerSettings, Unclaimable};
use crate::http::{self, HttpError};
use crate::proofs::AttemptProofs;
use crate::reload::{ReloadOutcome, WorkflowStore, WorkflowWatcher, watch_workflow};
use crate::runner::{AgentEvent, AgentEventKind};
use crate::scheduler::{
    AgentUpdate, Candidate, Ended, Limits, Observed, RetryDecision, Scheduler, Stop, Tokens,
};
use crate::status::{
    ApiRequest, AttemptRow, RECENT_ATTEMPTS, RefreshAck, StatusView, Tracked, TrackerHealth,
    WorkflowHealth,
};
use crate::worker::{AttemptOutcome, AttemptReport, WorkerSpec, run_attempt};
use crate::workflow::{Workflow, WorkflowError};
use crate::workspace::WorkspaceManager;

/// Agent events buffered between runners and the orchestrator task.
const EVENT_QUEUE: usize = 1024;
/// API requests buffered for the orchestrator task.
const API_QUEUE: usize = 64;
/// How long the workflow file must be left alone before it is re-read: a change is applied
/// this long after the last write event, so a file caught between truncation and the end of
/// a write is never taken for the new workflow (an empty file is a valid one).
pub const RELOAD_SETTLE: Duration = Duration::from_millis(100);

/// How to run the service.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// This node's id (hex NodeId): claims are written in its name.
    pub node_id: String,
    /// `--once`: one dispatching tick, wait for the workers, stop.
    pub once: bool,
    /// `--port`: overrides `server.port` (SPEC §13.7); `0` binds an ephemeral port.
    pub port: Option<u16>,
    /// The running `symphony` binary: given to hooks and agents as `SYMPHONY_BIN`, and its
    /// directory put first on their `PATH`, so agents can run `symphony issues handoff`.
    /// (`bash -lc` login shells may reset `PATH` from the system profile; `$SYMPHONY_BIN`
    /// always works.)
    pub symphony_bin: Option<PathBuf>,
}

/// Why the service did not start. [`StartError::kind`] gives the stable class.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The workflow file cannot be read or parsed (SPEC §5.5).
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// The workflow cannot dispatch work (SPEC §6.3).
    #[error("{path}: {error}")]
    Preflight {
        /// The workflow file.
        path: PathBuf,
        /// The first problem found.
        error: PreflightError,
    },
    /// The issues file cannot be read.
    #[error("{0}")]
    Tracker(TrackerError),
    /// The HTTP API cannot listen.
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl StartError {
    /// The workflow error's SPEC §5.5 class, the preflight class, `tracker_unavailable` or
    /// `http_bind_failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            StartError::Workflow(e) => e.kind(),
            StartError::Preflight { error, .. } => error.kind(),
            StartError::Tracker(_) => "tracker_unavailable",
            StartError::Http(_) => "http_bind_failed",
        }
    }
}

/// How a run went: every ended attempt, oldest first.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Ended attempts (in daemon mode, the latest [`RECENT_ATTEMPTS`]).
    pub attempts: Vec<AttemptRow>,
    /// Whether the run ended because shutdown was requested.
    pub interrupted: bool,
    /// Ready issues this node could not claim at the last candidate fetch, and why.
    pub unclaimable: Vec<Unclaimable>,
    /// Why the last candidate fetch failed, if it did (`--once`: why nothing ran).
    pub fetch_error: Option<String>,
    /// Why the orchestrator task itself failed (a panic, with its message), if it did: the
    /// run ended abnormally (SPEC §17.7) and the CLI exits non-zero.
    pub failure: Option<String>,
}

impl RunSummary {
    /// True when every attempt ended as designed (handed off, or stopped because its issue
    /// left the active states) and the run itself did not fail.
    pub fn as_designed(&self) -> bool {
        self.failure.is_none() && self.attempts.iter().all(|a| a.as_designed)
    }
}

/// The running service: its HTTP address and the handles to stop and await it.
#[derive(Debug)]
pub struct Service {
    http_addr: Option<SocketAddr>,
    api: mpsc::Sender<ApiRequest>,
    shutdown: ShutdownHandle,
    task: tokio::task::JoinHandle<RunSummary>,
}

/// Asks a [`Service`] to stop; cheap to clone and send to a signal handler.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    /// Asks the service to stop: workers are stopped (their `after_run` hooks run, their
    /// claims are released) and [`Service::wait`] then returns. Idempotent.
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

impl Service {
    /// Where the HTTP API listens (127.0.0.1), when enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The request channel the HTTP API uses (for in-process status surfaces).
    pub fn api(&self) -> mpsc::Sender<ApiRequest> {
        self.api.clone()
    }

    /// Asks the service to stop ([`ShutdownHandle::shutdown`]).
    pub fn shutdown(&self) {
        self.shutdown.shutdown();
    }

    /// A handle that stops the service from elsewhere (a signal handler).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Waits for the service to end (`--once` done, or shut down). A panic of the
    /// orchestrator task comes back as [`RunSummary::failure`] with the panic's message.
    pub async fn wait(&mut self) -> RunSummary {
        match (&mut self.task).await {
            Ok(summary) => summary,
            Err(e) => {
                let failure = task_failure(e);
                tracing::error!(error = %failure, "the orchestrator task failed");
                RunSummary {
                    interrupted: true,
                    failure: Some(failure),
                    ..RunSummary::default()
                }
            }
        }
    }
}

/// What a failed task's [`tokio::task::JoinError`] says: the panic's message when it
/// panicked.
fn task_failure(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return error.to_string();
    }
    let payload = error.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    format!("the orchestrator task panicked: {message}")
}

/// Starts the service over the workflow in `store` (SPEC §16.1).
///
/// # Errors
/// [`StartError`]: preflight failure, unreadable issues file, HTTP port unavailable.
pub async fn start(store: WorkflowStore, options: RunOptions) -> Result<Service, StartError> {
    let workflow = store.current();
    preflight(&workflow.config).map_err(|error| StartError::Preflight {
        path: store.path().to_path_buf(),
        error,
    })?;
    let tracker_path = workflow.config.tracker.path.display().to_string();
    let tracker = Arc::new(GitIssues::new(
        &workflow.config.tracker.path,
        options.node_id.clone(),
    ));
    tracker
        .blocking(|t| t.read().map(|_| ()))
        .await
        .map_err(StartError::Tracker)?;
    tracing::info!(
        workflow = %store.path().display(),
        issues = %tracker.path().display(),
        node = %options.node_id,
        "symphony starting"
    );
    startup_cleanup(&tracker, &workflow, &options).await;
    recover_handoffs(&tracker, &workflow).await;
    recover_claims(&tracker, &TrackerSettings::of(&workflow.config)).await;
    let (api_tx, api_rx) = mpsc::channel(API_QUEUE);
    let (http_stop, http_stop_rx) = watch::channel(false);
    let http_addr = match options.port.or(workflow.config.server.port) {
        Some(port) => {
            let addr = http::serve(port, api_tx.clone(), http_stop_rx).await?;
            tracing::info!(%addr, "HTTP API listening");
            Some(addr)
        }
        None => None,
    };
    let (watcher, reload_rx) = match watch_workflow(store.path()) {
        Ok((watcher, rx)) => (Some(watcher), Some(rx)),
        Err(e) => {
            tracing::warn!(error = %e, "workflow file not watched; changes are picked up at each tick");
            (None, None)
        }
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let now = Instant::now();
    let actor = Actor {
        scheduler: Scheduler::new(limits(&workflow.config)),
        next_heartbeat: now + heartbeat_interval(workflow.config.claims.ttl_ms),
        workflow,
        store,
        tracker,
        options,
        workers: HashMap::new(),
        tasks: JoinSet::new(),
        task_ids: HashMap::new(),
        cleanups: JoinSet::new(),
        events_tx,
        events_rx,
        api_rx,
        reload_rx,
        _watcher: watcher,
        reload_due: None,
        shutdown_rx,
        http_stop,
        next_tick: now,
        refresh_pending: false,
        ticked: false,
        stopping_all: false,
        tracked: BTreeMap::new(),
        recent: VecDeque::new(),
        rate_limits: None,
        preflight_error: None,
        unclaimable: Vec::new(),
        tracker_health: TrackerHealth {
            path: tracker_path,
            ..TrackerHealth::default()
        },
    };
    Ok(Service {
        http_addr,
        api: api_tx,
        shutdown: ShutdownHandle(Arc::new(shutdown)),
        task: tokio::spawn(actor.run()),
    })
}

/// Environment added for hooks and agents (docs/runners.md): `SYMPHONY_ISSUES_FILE`,
/// `SYMPHONY_REPO_ROOT`, `SYMPHONY_WORKFLOW`, and with a known binary `SYMPHONY_BIN` and
/// `PATH` with its directory first.
fn worker_env(
    workflow: &Workflow,
    tracker: &GitIssues,
    options: &RunOptions,
) -> Vec<(String, String)> {
    let definition = &workflow.definition;
    let mut env = vec![
        (
            "SYMPHONY_ISSUES_FILE".to_string(),
            tracker.path().display().to_string(),
        ),
        (
            "SYMPHONY_REPO_ROOT".to_string(),
            definition.dir().display().to_string(),
        ),
        (
            "SYMPHONY_WORKFLOW".to_string(),
            definition.path.display().to_string(),
        ),
    ];
    if let Some(bin) = &options.symphony_bin {
        env.push(("SYMPHONY_BIN".to_string(), bin.display().to_string()));
        if let Some(dir) = bin.parent() {
            let path = std::env::var("PATH").unwrap_or_default();
            env.push(("PATH".to_string(), format!("{}:{path}", dir.display())));
        }
    }
    env
}

/// SPEC §8.6: removes the workspaces of terminal issues; failures are warnings.
async fn startup_cleanup(tracker: &Arc<GitIssues>, workflow: &Workflow, options: &RunOptions) {
    let terminal = workflow.config.tracker.states.terminal.clone();
    let issues = match tracker
        .blocking(move |t| t.fetch_issues_by_states(&terminal))
        .await
    {
        Ok(issues) => issues,
        Err(e) => {
            tracing::warn!(error = %e, "startup cleanup skipped: terminal issues not readable");
            return;
        }
    };
    let config = &workflow.config;
    let manager = WorkspaceManager::new(&config.workspace.root);
    if !manager.root().is_dir() {
        return;
    }
    let env = worker_env(workflow, tracker, options);
    for issue in issues {
        match manager.remove(&issue.identifier, &config.hooks, &env).await {
            Ok(removed) if removed.removed => tracing::info!(
                issue_id = %issue.id,
                issue_identifier = %issue.identifier,
                "startup cleanup: removed the workspace of a terminal issue"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                issue_id = %issue.id,
                issue_identifier = %issue.identifier,
                error = %e,
                "startup cleanup: workspace not removed"
            ),
        }
    }
}

/// Restart recovery of handoffs a killed run left half done ([`GitIssues::unfinished_handoffs`]):
/// each is linked to its proofs (the newest attempt directory of the issue when the agent
/// named none), its claim is dropped and, with `tracker.commit`, it is committed — so every
/// handoff ends recorded and committed exactly once. Failures are warnings.
async fn recover_handoffs(tracker: &Arc<GitIssues>, workflow: &Workflow) {
    let settings = TrackerSettings::of(&workflow.config);
    let lookup = settings.clone();
    let unfinished = match tracker
        .blocking(move |t| t.unfinished_handoffs(&lookup))
        .await
    {
        Ok(unfinished) => unfinished,
        Err(e) => {
            tracing::warn!(error = %e, "restart recovery of handoffs skipped: issues not readable");
            return;
        }
    };
    let repo_root = workflow.definition.dir().to_path_buf();
    for pending in unfinished {
        let proofs = pending
            .proofs_dir
            .clone()
            .or_else(|| AttemptProofs::latest(&repo_root, &pending.identifier));
        let Some(proofs) = proofs else {
            tracing::warn!(issue_id = %pending.id, issue_identifier = %pending.identifier, "handoff of an earlier run has no proofs directory; left as it is");
            continue;
        };
        let message = format!(
            "{}: handoff → {} ({proofs})",
            pending.identifier,
            settings.states.handoff()
        );
        let (settings, root, id) = (settings.clone(), repo_root.clone(), pending.id.clone());
        let finished = tracker
            .blocking(move |t| {
                t.record_handoff(&settings, &id, None, &proofs, OffsetDateTime::now_utc())?;
                if !settings.commit {
                    return Ok(None);
                }
                t.commit_record(&id, &root.join(&proofs), &message)
                    .map(Some)
            })
            .await;
        match finished {
            Ok(commit) => tracing::info!(
                issue_id = %pending.id,
                issue_identifier = %pending.identifier,
                commit = commit.as_deref().unwrap_or(""),
                "finished the handoff an earlier run left unrecorded or uncommitted"
            ),
            Err(e) => tracing::warn!(
                issue_id = %pending.id,
                issue_identifier = %pending.identifier,
                error = %e,
                "handoff of an earlier run not finished"
            ),
        }
    }
}

/// Restart recovery: releases this node's stale claims; live ones are resumed by the first
/// tick (they stay candidates of this node).
async fn recover_claims(tracker: &Arc<GitIssues>, settings: &TrackerSettings) {
    let own_settings = settings.clone();
    let claims = tracker
        .blocking(move |t| t.own_claims(&own_settings, OffsetDateTime::now_utc()))
        .await;
    let claims = match claims {
        Ok(claims) => claims,
        Err(e) => {
            tracing::warn!(error = %e, "restart recovery skipped: claims not readable");
            return;
        }
    };
    for claim in claims {
        if claim.stale {
            let id = claim.id.clone();
            let settings = settings.clone();
            match tracker.blocking(move |t| t.release(&settings, &id)).await {
                Ok(_) => tracing::info!(
                    issue_id = %claim.id,
                    issue_identifier = %claim.identifier,
                    "released a stale claim this node held before restart"
                ),
                Err(e) => {
                    tracing::warn!(issue_id = %claim.id, error = %e, "stale claim not released")
                }
            }
        } else {
            tracing::info!(
                issue_id = %claim.id,
                issue_identifier = %claim.identifier,
                "resuming an issue this node claimed before restart"
            );
        }
    }
}

/// The scheduler limits of `config` (SPEC §5.3.5).
pub fn limits(config: &ServiceConfig) -> Limits {
    Limits {
        max_concurrent_agents: config.agent.max_concurrent_agents,
        max_concurrent_agents_by_state: config
            .agent
            .max_concurrent_agents_by_state
            .iter()
            .map(|(state, limit)| (state.clone(), *limit))
            .collect(),
        max_retry_backoff: Duration::from_millis(config.agent.max_retry_backoff_ms),
    }
}

/// A running worker's handles.
struct WorkerSlot {
    stop: watch::Sender<Option<Stop>>,
    started_utc: OffsetDateTime,
}

/// The one owner of scheduling state.
struct Actor {
    store: WorkflowStore,
    workflow: Arc<Workflow>,
    tracker: Arc<GitIssues>,
    options: RunOptions,
    scheduler: Scheduler,
    workers: HashMap<String, WorkerSlot>,
    tasks: JoinSet<(String, AttemptReport)>,
    task_ids: HashMap<tokio::task::Id, String>,
    cleanups: JoinSet<()>,
    events_tx: mpsc::Sender<AgentEvent>,
    events_rx: mpsc::Receiver<AgentEvent>,
    api_rx: mpsc::Receiver<ApiRequest>,
    reload_rx: Option<mpsc::Receiver<()>>,
    _watcher: Option<WorkflowWatcher>,
    reload_due: Option<Instant>,
    shutdown_rx: watch::Receiver<bool>,
    http_stop: watch::Sender<bool>,
    next_tick: Instant,
    next_heartbeat: Instant,
    refresh_pending: bool,
    ticked: bool,
    stopping_all: bool,
    tracked: BTreeMap<String, Tracked>,
    recent: VecDeque<AttemptRow>,
    rate_limits: Option<Value>,
    preflight_error: Option<String>,
    unclaimable: Vec<Unclaimable>,
    tracker_health: TrackerHealth,
}

async fn reload_signal(rx: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Actor {
    async fn run(mut self) -> RunSummary {
        while !self.finished() {
            let retry_at = (!self.options.once && !self.stopping_all)
                .then(|| self.scheduler.next_retry_at())
                .flatten()
                .map(Instant::from_std);
            tokio::select! {
                () = sleep_until(self.next_tick) => self.tick().await,
                () = sleep_until(retry_at.unwrap_or(self.next_tick)), if retry_at.is_some() => {
                    self.fire_retries().await;
                }
                () = sleep_until(self.next_heartbeat) => self.heartbeat().await,
                Some(event) = self.events_rx.recv() => self.on_event(event),
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.on_exit(joined).await;
                }
                Some(_) = self.cleanups.join_next(), if !self.cleanups.is_empty() => {}
                Some(()) = reload_signal(&mut self.reload_rx) => {
                    self.reload_due = Some(Instant::now() + RELOAD_SETTLE);
                }
                () = sleep_until(self.reload_due.unwrap_or(self.next_tick)), if self.reload_due.is_some() => {
                    self.reload_due = None;
                    self.reload();
                }
                Some(request) = self.api_rx.recv() => self.on_api(request),
                Ok(()) = self.shutdown_rx.changed(), if !self.stopping_all => {
                    if *self.shutdown_rx.borrow_and_update() {
                        self.stop_all();
                    }
                }
            }
        }
        // Events still queued belong to finished runs; nothing waits for them.
        let _ = self.http_stop.send(true);
        tracing::info!(
            attempts = self.recent.len(),
            interrupted = self.stopping_all,
            "symphony stopped"
        );
        RunSummary {
            attempts: self.recent.into_iter().collect(),
            interrupted: self.stopping_all,
            unclaimable: self.unclaimable,
            fetch_error: self.tracker_health.fetch_error,
            failure: None,
        }
    }

    fn finished(&self) -> bool {
        let idle = self.tasks.is_empty() && self.cleanups.is_empty();
        idle && (self.stopping_all || (self.options.once && self.ticked))
    }

    fn settings(&self) -> TrackerSettings {
        TrackerSettings::of(&self.workflow.config)
    }

    /// SPEC §16.2.
    async fn tick(&mut self) {
        self.refresh_pending = false;
        // The defensive re-check (SPEC §6.2: watch events can be missed), unless a change is
        // being written right now: the watch or the next tick applies it once it settles.
        if self.reload_due.is_none() && self.workflow_settled() {
            self.reload();
        }
        self.reconcile().await;
        let once_done = self.options.once && self.ticked;
        let dispatch = !(self.stopping_all || once_done);
        if dispatch {
            match preflight(&self.workflow.config) {
                Err(e) => {
                    tracing::error!(error_kind = e.kind(), error = %e, "dispatch preflight failed; no dispatch this tick");
                    self.preflight_error = Some(e.to_string());
                }
                Ok(()) => {
                    self.preflight_error = None;
                    self.dispatch_ready().await;
                }
            }
        }
        self.ticked = true;
        self.next_tick =
            Instant::now() + Duration::from_millis(self.workflow.config.polling.interval_ms);
    }

    /// Whether the workflow file was last modified at least [`RELOAD_SETTLE`] ago (or its
    /// age is unknown).
    fn workflow_settled(&self) -> bool {
        std::fs::metadata(self.store.path())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_none_or(|age| age >= RELOAD_SETTLE)
    }

    /// Applies a changed workflow file, or keeps the last good one (SPEC §6.2).
    fn reload(&mut self) {
        match self.store.reload_if_changed() {
            ReloadOutcome::Reloaded(workflow) => {
                if workflow.config.tracker.path != self.workflow.config.tracker.path {
                    tracing::warn!(
                        path = %workflow.config.tracker.path.display(),
                        "tracker.path changed; the new issues file is used after a restart"
                    );
                }
                self.scheduler.set_limits(limits(&workflow.config));
                self.workflow = workflow;
                let interval = Duration::from_millis(self.workflow.config.polling.interval_ms);
                self.next_tick = self.next_tick.min(Instant::now() + interval);
            }
            ReloadOutcome::Rejected(_) | ReloadOutcome::Unchanged => {}
        }
    }

    /// SPEC §16.3: stalls first, then the tracker's view of every running issue.
    async fn reconcile(&mut self) {
        let stall = match self.workflow.config.runner.stall_timeout_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
        for id in self.scheduler.stalled(std::time::Instant::now(), stall) {
            self.stop(&id, Stop::Stalled);
        }
        let mut runs: Vec<(String, OffsetDateTime)> = self
            .scheduler
            .running()
            .iter()
            .filter(|(_, run)| run.stopping.is_none())
            .filter_map(|(id, _)| Some((id.clone(), self.workers.get(id)?.started_utc)))
            .collect();
        let waiting = self.scheduler.waiting().keys().cloned();
        runs.extend(waiting.map(|id| (id, OffsetDateTime::now_utc())));
        if runs.is_empty() {
            return;
        }
        let settings = self.settings();
        let observed = self
            .tracker
            .blocking(move |t| t.fetch_issue_states_by_ids(&settings, &runs))
            .await;
        match observed {
            Ok(observed) => {
                for (id, reason) in self.scheduler.reconcile(&observed) {
                    self.stop(&id, reason);
                }
                for id in self.scheduler.reconcile_waiting(&observed) {
                    tracing::info!(issue_id = %id, issue_identifier = %self.identifier(&id), "the operator changed a waiting issue; it is a candidate again");
                }
            }
            Err(e) => {
                tracing::warn!(error_kind = crate::git_issues::error_category(&e), error = %e, "reconciliation: tracker states not readable; workers keep running");
            }
        }
    }

    fn stop(&mut self, id: &str, reason: Stop) {
        if !self.scheduler.stop(id, reason) {
            return;
        }
        let identifier = self.identifier(id);
        tracing::info!(issue_id = %id, issue_identifier = %identifier, reason = reason.as_str(), "stopping worker");
        if let Some(slot) = self.workers.get(id) {
            let _ = slot.stop.send(Some(reason));
        }
    }

    fn stop_all(&mut self) {
        tracing::info!(
            running = self.workers.len(),
            "shutting down: stopping workers"
        );
        self.stopping_all = true;
        let ids: Vec<String> = self.scheduler.running().keys().cloned().collect();
        for id in ids {
            self.stop(&id, Stop::Shutdown);
        }
    }

    fn identifier(&self, id: &str) -> String {
        self.tracked
            .get(id)
            .map_or_else(|| id.to_string(), |t| t.identifier.clone())
    }

    /// SPEC §11.4: a failed fetch is logged and kept for the API and `--once`; findings
    /// (records left out or read with a fallback) are logged when they change and kept, and
    /// so are ready issues this node may not claim (an issue no run picks up says why).
    async fn fetch_candidates(&mut self) -> Result<Vec<Candidate>, TrackerError> {
        let settings = self.settings();
        let fetched = self
            .tracker
            .blocking(move |t| t.fetch_candidate_issues(&settings, OffsetDateTime::now_utc()))
            .await;
        match fetched {
            Ok(CandidateFetch {
                candidates,
                findings,
                unclaimable,
            }) => {
                self.tracker_health.fetch_error = None;
                if findings != self.tracker_health.findings {
                    for finding in &findings {
                        tracing::warn!(
                            line = finding.line,
                            issue_id = finding.issue_id.as_deref().unwrap_or(""),
                            omitted = finding.omitted,
                            error = %finding.message,
                            "{}",
                            if finding.omitted {
                                "tracker record left out: it cannot be normalized"
                            } else {
                                "tracker record read with a fallback"
                            }
                        );
                    }
                    self.tracker_health.findings = findings;
                }
                self.note_unclaimable(unclaimable);
                Ok(candidates)
            }
            Err(e) => {
                self.tracker_health.fetch_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Keeps the ready issues this node may not claim for the API and `--once`, logging them
    /// when the set or a reason changes.
    fn note_unclaimable(&mut self, unclaimable: Vec<Unclaimable>) {
        if unclaimable == self.unclaimable {
            return;
        }
        for blocked in &unclaimable {
            tracing::warn!(
                issue_id = %blocked.issue_id,
                issue_identifier = %blocked.issue_identifier,
                reason = %blocked.reason,
                "ready issue not claimable by this node"
            );
        }
        self.unclaimable = unclaimable;
    }

    async fn dispatch_ready(&mut self) {
        let candidates = match self.fetch_candidates().await {
            Ok(candidates) => candidates,
            Err(e) => {
                tracing::warn!(error_kind = crate::git_issues::error_category(&e), error = %e, "candidate fetch failed; no dispatch this tick");
                return;
            }
        };
        let chosen: Vec<Candidate> = self
            .scheduler
            .select(&candidates)
            .into_iter()
            .cloned()
            .collect();
        for candidate in chosen {
            self.dispatch(candidate, None).await;
        }
    }

    /// SPEC §16.6 `on_retry_timer` for every due retry.
    async fn fire_retries(&mut self) {
        let now = std::time::Instant::now();
        let due = self.scheduler.due_retries(now);
        if due.is_empty() {
            return;
        }
        let candidates = match self.fetch_candidates().await {
            Ok(candidates) => candidates,
            Err(e) => {
                tracing::warn!(error = %e, "retry poll failed; retries requeued");
                for id in &due {
                    self.scheduler.retry_poll_failed(id, now);
                }
                return;
            }
        };
        let mut released = Vec::new();
        for id in due {
            let candidate = candidates.iter().find(|c| c.id == id && c.dispatchable);
            match self.scheduler.retry_fired(&id, candidate, now) {
                RetryDecision::Dispatch { attempt } => {
                    if let Some(candidate) = candidate {
                        self.dispatch(candidate.clone(), Some(attempt)).await;
                    }
                }
                RetryDecision::Requeued => tracing::info!(
                    issue_id = %id,
                    issue_identifier = %self.identifier(&id),
                    "retry requeued: no available orchestrator slots"
                ),
                RetryDecision::Released => {
                    tracing::info!(
                        issue_id = %id,
                        issue_identifier = %self.identifier(&id),
                        "retry released: the issue is no longer a candidate"
                    );
                    released.push(id);
                }
            }
        }
        self.clean_released_terminal(released).await;
    }

    /// SPEC §8.4 / §16.6: a released retry whose issue is terminal has its workspace removed,
    /// as a terminal state seen by reconciliation does.
    async fn clean_released_terminal(&mut self, released: Vec<String>) {
        if released.is_empty() {
            return;
        }
        let settings = self.settings();
        let runs: Vec<(String, OffsetDateTime)> = released
            .iter()
            .map(|id| (id.clone(), OffsetDateTime::now_utc()))
            .collect();
        let observed = self
            .tracker
            .blocking(move |t| t.fetch_issue_states_by_ids(&settings, &runs))
            .await;
        match observed {
            Ok(observed) => {
                for id in released {
                    if observed.get(&id) == Some(&Observed::Terminal) {
                        let identifier = self.identifier(&id);
                        self.clean_workspace(&id, &identifier);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "released retries: tracker states not readable; workspaces kept")
            }
        }
    }

    /// SPEC §16.4: claim in the tracker, then spawn the worker.
    async fn dispatch(&mut self, candidate: Candidate, attempt: Option<u32>) {
        let settings = self.settings();
        let id = candidate.id.clone();
        let now_utc = OffsetDateTime::now_utc();
        let claim_settings = settings.clone();
        let decision = self
            .tracker
            .blocking(move |t| t.claim(&claim_settings, &id, now_utc))
            .await;
        match decision {
            Ok(ClaimDecision::Grant { .. }) => {}
            Ok(refused) => {
                tracing::info!(issue_id = %candidate.id, issue_identifier = %candidate.identifier, decision = ?refused, "claim not granted; not dispatched");
                self.scheduler.release(&candidate.id);
                return;
            }
            Err(e) => {
                tracing::warn!(issue_id = %candidate.id, issue_identifier = %candidate.identifier, error = %e, "claim failed; not dispatched");
                self.scheduler.release(&candidate.id);
                return;
            }
        }
        let states = &settings.states;
        let state = if candidate
            .state
            .trim()
            .eq_ignore_ascii_case(states.initial())
        {
            states.working().to_string()
        } else {
            candidate.state.clone()
        };
        let repo_root = self.workflow.definition.dir().to_path_buf();
        let proofs = AttemptProofs::create(&repo_root, &candidate.identifier, now_utc);
        let tracked = self.tracked.entry(candidate.id.clone()).or_default();
        tracked.identifier = candidate.identifier.clone();
        tracked.dispatches += 1;
        tracked.proofs_dir = proofs.as_ref().ok().map(|p| p.relative().to_string());
        tracked.events.clear();
        let (stop, stop_rx) = watch::channel(None);
        let spec = WorkerSpec {
            issue_id: candidate.id.clone(),
            identifier: candidate.identifier.clone(),
            attempt,
            started_at: now_utc,
            workflow: Arc::clone(&self.workflow),
            tracker: Arc::clone(&self.tracker),
            settings,
            proofs,
            env: self.worker_env(),
            events: self.events_tx.clone(),
        };
        let worker_id = candidate.id.clone();
        let handle = self
            .tasks
            .spawn(async move { (worker_id, run_attempt(spec, stop_rx).await) });
        self.task_ids.insert(handle.id(), candidate.id.clone());
        self.workers.insert(
            candidate.id.clone(),
            WorkerSlot {
                stop,
                started_utc: now_utc,
            },
        );
        let running = Candidate { state, ..candidate };
        self.scheduler
            .dispatched(&running, attempt, std::time::Instant::now());
        tracing::info!(
            issue_id = %running.id,
            issue_identifier = %running.identifier,
            attempt = ?attempt,
            "dispatched"
        );
    }

    fn worker_env(&self) -> Vec<(String, String)> {
        worker_env(&self.workflow, &self.tracker, &self.options)
    }

    /// Refreshes the heartbeat of every running claim; a claim another node took stops its
    /// worker.
    async fn heartbeat(&mut self) {
        self.next_heartbeat =
            Instant::now() + heartbeat_interval(self.workflow.config.claims.ttl_ms);
        let ids: Vec<String> = self
            .scheduler
            .running()
            .iter()
            .filter(|(_, run)| run.stopping.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        let now = OffsetDateTime::now_utc();
        match self.tracker.blocking(move |t| t.heartbeat(&ids, now)).await {
            Ok(lost) => {
                for (id, holder) in lost {
                    tracing::warn!(issue_id = %id, issue_identifier = %self.identifier(&id), holder = %holder, "claim lost to another node");
                    self.stop(&id, Stop::ClaimLost);
                }
            }
            Err(e) => tracing::warn!(error = %e, "claim heartbeat failed"),
        }
    }

    fn on_event(&mut self, event: AgentEvent) {
        let update = AgentUpdate {
            name: event.kind.as_str().to_string(),
            message: event.message.clone(),
            session_id: event.session_id.clone(),
            new_turn: event.kind == AgentEventKind::SessionStarted,
            usage: event.usage.map(|u| Tokens {
                input_tokens: u.input,
                output_tokens: u.output,
                total_tokens: u.total,
            }),
        };
        self.scheduler
            .agent_event(&event.issue_id, update, std::time::Instant::now());
        if let Some(limits) = &event.rate_limits {
            self.rate_limits = Some(limits.clone());
        }
        if let Some(tracked) = self.tracked.get_mut(&event.issue_id) {
            tracked.push_event(&event);
        }
    }

    async fn on_exit(
        &mut self,
        joined: Result<(tokio::task::Id, (String, AttemptReport)), tokio::task::JoinError>,
    ) {
        let (id, report) = match joined {
            Ok((task, (id, report))) => {
                self.task_ids.remove(&task);
                (id, report)
            }
            Err(e) => {
                let Some(id) = self.task_ids.remove(&e.id()) else {
                    return;
                };
                tracing::error!(issue_id = %id, error = %e, "worker task failed");
                (id, AttemptReport::lost("worker_panicked", e))
            }
        };
        self.workers.remove(&id);
        let identifier = self.identifier(&id);
        let ended = self
            .scheduler
            .exited(&id, report.exit(), std::time::Instant::now());
        let settings = self.settings();
        let release_id = id.clone();
        let state = self
            .tracker
            .blocking(move |t| {
                t.release(&settings, &release_id)?;
                Ok(t.fetch_issue(&release_id)?.and_then(|record| {
                    record
                        .get("state")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                }))
            })
            .await;
        let state = state.unwrap_or_else(|e| {
            tracing::warn!(issue_id = %id, issue_identifier = %identifier, error = %e, "claim not released after the attempt");
            None
        });
        let stopped = match &ended {
            Some(Ended::Released(reason)) => Some(*reason),
            _ => None,
        };
        match &ended {
            Some(Ended::Released(Stop::Terminal)) => self.clean_workspace(&id, &identifier),
            Some(Ended::Waiting(waiting)) => {
                tracing::warn!(
                    issue_id = %id,
                    issue_identifier = %identifier,
                    reason = %waiting.reason,
                    "the agent waits for an operator; not retried until the issue's state changes"
                );
            }
            Some(Ended::Retry(retry)) if !self.options.once && !self.stopping_all => {
                tracing::info!(
                    issue_id = %id,
                    issue_identifier = %identifier,
                    attempt = retry.attempt,
                    delay_ms = u64::try_from(retry.due_at.saturating_duration_since(std::time::Instant::now()).as_millis()).unwrap_or(u64::MAX),
                    error = retry.error.as_deref().unwrap_or(""),
                    "retry queued"
                );
            }
            _ => {}
        }
        self.remember(&id, identifier, report, stopped, state);
    }

    /// Records the ended attempt for the API and the summary.
    fn remember(
        &mut self,
        id: &str,
        identifier: String,
        report: AttemptReport,
        stopped: Option<Stop>,
        state: Option<String>,
    ) {
        let error = match (&report.outcome, stopped) {
            (AttemptOutcome::Failed { kind, message }, _) => Some(format!("{kind}: {message}")),
            (AttemptOutcome::Stopped(reason), _) => Some(format!("stopped: {}", reason.as_str())),
            (_, Some(reason)) => Some(format!("stopped: {}", reason.as_str())),
            _ => None,
        };
        let as_designed = match &report.outcome {
            AttemptOutcome::HandedOff { .. } | AttemptOutcome::LeftActiveStates { .. } => true,
            AttemptOutcome::Stopped(reason) => {
                matches!(reason, Stop::Terminal | Stop::Inactive | Stop::Missing)
            }
            AttemptOutcome::Continuation | AttemptOutcome::Failed { .. } => false,
        };
        let row = AttemptRow {
            issue_id: id.to_string(),
            issue_identifier: identifier.clone(),
            outcome: report.outcome.as_str().to_string(),
            error: error.clone(),
            state,
            proofs_dir: report.proofs_dir.clone(),
            commit: report.commit.clone(),
            ended_at: format_timestamp(OffsetDateTime::now_utc()),
            as_designed,
        };
        if !self.options.once && self.recent.len() >= RECENT_ATTEMPTS {
            self.recent.pop_front();
        }
        self.recent.push_back(row.clone());
        let tracked = self.tracked.entry(id.to_string()).or_default();
        tracked.identifier = identifier;
        tracked.workspace = report
            .workspace
            .map(|w| w.display().to_string())
            .or(tracked.workspace.take());
        if error.is_some() {
            tracked.last_error = error;
        }
        tracked.last = Some(row);
    }

    /// Removes a terminal issue's workspace (SPEC §8.5) on a cleanup task.
    fn clean_workspace(&mut self, id: &str, identifier: &str) {
        let config = &self.workflow.config;
        let manager = WorkspaceManager::new(&config.workspace.root);
        let hooks = config.hooks.clone();
        let env = self.worker_env();
        let (id, identifier) = (id.to_string(), identifier.to_string());
        self.cleanups.spawn(async move {
            match manager.remove(&identifier, &hooks, &env).await {
                Ok(removed) => tracing::info!(
                    issue_id = %id,
                    issue_identifier = %identifier,
                    removed = removed.removed,
                    "workspace of a terminal issue cleaned"
                ),
                Err(e) => tracing::warn!(
                    issue_id = %id,
                    issue_identifier = %identifier,
                    error = %e,
                    "workspace of a terminal issue not removed"
                ),
            }
        });
    }

    fn on_api(&mut self, request: ApiRequest) {
        let now = std::time::Instant::now();
        match request {
            ApiRequest::State(answer) => {
                let _ = answer.send(self.view().snapshot(now));
            }
            ApiRequest::Issue(identifier, answer) => {
                let _ = answer.send(self.view().issue(&identifier, now));
            }
            ApiRequest::Refresh(answer) => {
                let coalesced = self.refresh_pending;
                self.refresh_pending = true;
                self.next_tick = Instant::now();
                let _ = answer.send(RefreshAck {
                    queued: true,
                    coalesced,
                    requested_at: format_timestamp(OffsetDateTime::now_utc()),
                    operations: ["poll", "reconcile"],
                });
            }
        }
    }

    fn view(&self) -> StatusView<'_> {
        StatusView {
            scheduler: &self.scheduler,
            tracked: &self.tracked,
            recent: &self.recent,
            node: self.tracker.node(),
            rate_limits: self.rate_limits.as_ref(),
            unclaimable: &self.unclaimable,
            workflow: WorkflowHealth {
                path: self.store.path().display().to_string(),
                reload_error: self.store.last_error().map(ToString::to_string),
                preflight_error: self.preflight_error.clone(),
            },
            tracker: &self.tracker_health,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spec_17_7_a_panic_in_the_orchestrator_task_is_a_failure_with_its_message() {
        let (api, _api_rx) = mpsc::channel(1);
        let (shutdown, _) = watch::channel(false);
        let mut service = Service {
            http_addr: None,
            api,
            shutdown: ShutdownHandle(Arc::new(shutdown)),
            task: tokio::spawn(async {
                let dispatched: Vec<u32> = Vec::new();
                // An index out of bounds, as a bug in the task would panic.
                let first = dispatched.get(3).copied();
                #[allow(clippy::panic)]
                if first.is_none() {
                    panic!("index 3 out of range");
                }
                RunSummary::default()
            }),
        };
        let summary = service.wait().await;
        assert_eq!(
            summary.failure.as_deref(),
            Some("the orchestrator task panicked: index 3 out of range")
        );
        assert!(!summary.as_designed());
    }
}
