//! One run attempt (Symphony SPEC §16.5, §7.2): prepare the workspace → `before_run` → agent
//! turns, re-checking the issue between turns → `after_run`, then the handoff is recorded and
//! committed, and everything lands in the attempt's proofs ([`crate::proofs`]).
//!
//! Between turns (and after the last) the worker re-reads the issue:
//! - in a review state with a handoff written since the attempt started: the agent handed off
//!   through `symphony issues handoff`; the attempt ends ([`HandoffVia::Cli`]);
//! - `.symphony/handoff.json` in the workspace: validated ([`crate::handoff`]) and recorded,
//!   moving the issue to review ([`HandoffVia::File`]); a malformed file is renamed to
//!   `handoff.rejected.json` and the attempt fails with the error (so it is retried). The file
//!   is removed only once the tracker holds the handoff, and one an earlier attempt left
//!   unrecorded (a killed orchestrator) is recorded at the start of the next attempt;
//! - no longer active (a human moved it): the attempt ends;
//! - still active: the next turn gets [`continuation_prompt`], up to `agent.max_turns`.
//!
//! The attempt holds the workspace lock ([`crate::workspace_lock`]) from preparation to the
//! handoff record: a workspace a live process of an earlier run still holds is not worked in.
//!
//! The orchestrator stops a worker through its stop channel (reconciliation, stall,
//! shutdown): the running turn is dropped — its process group is killed — and `after_run`
//! still runs. The worker never touches scheduling state; it reports an [`AttemptReport`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use symphony_tracker::Handoff;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::git_issues::{GitIssues, TrackerSettings, is_handed_off, string_field};
use crate::handoff;
use crate::hooks::{HookKind, HookOutcome, run_configured_hook};
use crate::prompt::{continuation_prompt, render_prompt};
use crate::proofs::{AttemptProofs, Manifest, ManifestError, ProofsError, utc_stamp};
use crate::runner::codex::TrackerTools;
use crate::runner::{AgentEvent, AgentLaunch, AgentSession, TokenUsage};
use crate::scheduler::{Exit, Stop};
use crate::workflow::Workflow;
use crate::workspace::{WorkspaceError, WorkspaceManager};
use crate::workspace_lock::{HELD_WAIT, WorkspaceLock};

/// Everything one attempt needs.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Tracker id.
    pub issue_id: String,
    /// Human identifier.
    pub identifier: String,
    /// `None` on the first run, else the retry/continuation attempt (SPEC §4.1.5).
    pub attempt: Option<u32>,
    /// When the attempt started (proofs directory name; handoffs at or after it count).
    pub started_at: OffsetDateTime,
    /// The workflow in force at dispatch.
    pub workflow: Arc<Workflow>,
    /// The tracker.
    pub tracker: Arc<GitIssues>,
    /// Tracker settings at dispatch.
    pub settings: TrackerSettings,
    /// The attempt's proofs directory, created by the orchestrator at dispatch (an error
    /// fails the attempt with `proofs_unavailable`).
    pub proofs: Result<AttemptProofs, ProofsError>,
    /// Environment added for hooks and the agent (`SYMPHONY_ISSUES_FILE`, `PATH`, ...).
    pub env: Vec<(String, String)>,
    /// Where agent events go.
    pub events: mpsc::Sender<AgentEvent>,
}

/// How a handoff reached the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffVia {
    /// The agent ran `symphony issues handoff`.
    Cli,
    /// The agent wrote `.symphony/handoff.json`.
    File,
}

impl HandoffVia {
    /// `cli` or `file`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffVia::Cli => "cli",
            HandoffVia::File => "file",
        }
    }
}

/// How an attempt ended (SPEC §7.2 terminal phases, plus the handoff).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The agent handed off; the issue is in review.
    HandedOff {
        /// How.
        via: HandoffVia,
    },
    /// `agent.max_turns` turns ran and the issue is still active (a continuation retry
    /// follows, SPEC §7.1).
    Continuation,
    /// The issue left the active states without a handoff from this attempt.
    LeftActiveStates {
        /// Its state now (`<missing>` when it left the file).
        state: String,
    },
    /// The attempt failed; it is retried with backoff.
    Failed {
        /// Stable class (`agent_not_found`, `hook_timeout`, `handoff_invalid`, ...).
        kind: String,
        /// What happened.
        message: String,
    },
    /// The orchestrator stopped it.
    Stopped(Stop),
}

impl AttemptOutcome {
    /// `handed_off`, `continuation`, `left_active_states`, `failed` or `stopped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptOutcome::HandedOff { .. } => "handed_off",
            AttemptOutcome::Continuation => "continuation",
            AttemptOutcome::LeftActiveStates { .. } => "left_active_states",
            AttemptOutcome::Failed { .. } => "failed",
            AttemptOutcome::Stopped(_) => "stopped",
        }
    }

    fn failed(kind: impl Into<String>, message: impl ToString) -> Self {
        AttemptOutcome::Failed {
            kind: kind.into(),
            message: message.to_string(),
        }
    }
}

/// What an attempt reports to the orchestrator.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The proofs directory relative to the repository root, when it could be created.
    pub proofs_dir: Option<String>,
    /// The workspace, once prepared.
    pub workspace: Option<PathBuf>,
    /// The agent session id, when known.
    pub session_id: Option<String>,
    /// Turns run.
    pub turns: u32,
    /// Session token totals, when reported.
    pub tokens: Option<TokenUsage>,
    /// The handoff commit, when one was made.
    pub commit: Option<String>,
}

impl AttemptReport {
    /// The scheduler's view (SPEC §16.6): failures back off, an agent waiting for an approval
    /// or input the policy does not grant waits for an operator instead of retrying, everything
    /// else is normal (a stopped run is then released or, when stalled, retried).
    pub fn exit(&self) -> Exit {
        match &self.outcome {
            AttemptOutcome::Failed { kind, message }
                if kind == "approval_required" || kind == "turn_input_required" =>
            {
                Exit::NeedsOperator(format!("{kind}: {message}"))
            }
            AttemptOutcome::Failed { kind, message } => Exit::Failed(format!("{kind}: {message}")),
            _ => Exit::Normal,
        }
    }

    /// A report for an attempt that never ran (the worker task itself failed).
    pub fn lost(kind: &str, message: impl ToString) -> Self {
        AttemptReport {
            outcome: AttemptOutcome::failed(kind, message),
            proofs_dir: None,
            workspace: None,
            session_id: None,
            turns: 0,
            tokens: None,
            commit: None,
        }
    }
}

/// What the turns ended with, before `after_run`.
enum TurnsEnd {
    HandedOff(HandoffVia, Option<Handoff>),
    Done(AttemptOutcome),
}

/// Runs one attempt to its end; never panics on bad input, always reports.
pub async fn run_attempt(spec: WorkerSpec, stop: watch::Receiver<Option<Stop>>) -> AttemptReport {
    let span = tracing::info_span!(
        "attempt",
        issue_id = %spec.issue_id,
        issue_identifier = %spec.identifier,
        attempt = ?spec.attempt,
        session_id = tracing::field::Empty,
    );
    Worker::new(spec, stop).run().instrument(span).await
}

struct Worker {
    spec: WorkerSpec,
    stop: watch::Receiver<Option<Stop>>,
    report: AttemptReport,
}

impl Worker {
    fn new(spec: WorkerSpec, stop: watch::Receiver<Option<Stop>>) -> Self {
        Worker {
            spec,
            stop,
            report: AttemptReport::lost("not_started", "the attempt has not started"),
        }
    }

    async fn run(mut self) -> AttemptReport {
        tracing::info!("attempt started");
        let proofs = match self.spec.proofs.clone() {
            Ok(proofs) => proofs,
            Err(e) => {
                tracing::error!(error = %e, "attempt failed: no proofs directory");
                self.report.outcome = AttemptOutcome::failed("proofs_unavailable", e);
                return self.report;
            }
        };
        self.report.proofs_dir = Some(proofs.relative().to_string());
        let outcome = self.execute(&proofs).await;
        self.report.outcome = outcome;
        self.finish(&proofs).await;
        self.report
    }

    /// Workspace → `before_run` → turns → `after_run` → handoff record.
    async fn execute(&mut self, proofs: &AttemptProofs) -> AttemptOutcome {
        let workflow = Arc::clone(&self.spec.workflow);
        let config = &workflow.config;
        let hook_env = self.hook_env();
        let manager = WorkspaceManager::new(&config.workspace.root);
        let prepared = manager
            .prepare(&self.spec.identifier, &config.hooks, &hook_env)
            .await;
        let workspace = match prepared {
            Ok(prepared) => {
                if let Some(outcome) = &prepared.after_create {
                    self.keep_hook(proofs, outcome);
                }
                prepared.workspace.path
            }
            Err(e) => {
                if let WorkspaceError::AfterCreateFailed { outcome, .. } = &e {
                    self.keep_hook(proofs, outcome);
                }
                return AttemptOutcome::failed(e.kind(), e);
            }
        };
        self.report.workspace = Some(workspace.clone());
        // Held until the handoff is recorded; hooks and the agent share it (workspace_lock).
        let _held = match WorkspaceLock::acquire(&workspace, HELD_WAIT).await {
            Ok(lock) => lock,
            Err(e) => return AttemptOutcome::failed(e.kind(), e),
        };
        let ended = match self.stop_requested() {
            Some(reason) => TurnsEnd::Done(AttemptOutcome::Stopped(reason)),
            None => match self.unrecorded_handoff(proofs, &workspace).await {
                Some(ended) => ended,
                None => {
                    self.before_run_and_turns(proofs, &workspace, &hook_env)
                        .await
                }
            },
        };
        if let Some(outcome) =
            run_configured_hook(HookKind::AfterRun, &config.hooks, &workspace, &hook_env).await
        {
            self.keep_hook(proofs, &outcome);
        }
        match ended {
            TurnsEnd::Done(outcome) => outcome,
            TurnsEnd::HandedOff(via, handoff) => {
                let outcome = self.record_handoff(proofs, via, handoff.clone()).await;
                if handoff.is_some() && matches!(outcome, AttemptOutcome::HandedOff { .. }) {
                    // Only now: until the tracker holds it, the file is the handoff's only copy.
                    let file = workspace.join(handoff::HANDOFF_FILE);
                    if let Err(e) = std::fs::remove_file(&file) {
                        tracing::warn!(path = %file.display(), error = %e, "could not remove the recorded handoff file");
                    }
                }
                outcome
            }
        }
    }

    /// Restart recovery: a valid `.symphony/handoff.json` an earlier attempt left unrecorded
    /// (the orchestrator was killed between the agent writing it and the tracker write) is
    /// recorded now instead of running the agent again. A file no newer than the handoff the
    /// record already holds was recorded before, and is removed. A malformed file is moved
    /// aside as usual and the agent runs.
    async fn unrecorded_handoff(
        &mut self,
        proofs: &AttemptProofs,
        workspace: &Path,
    ) -> Option<TurnsEnd> {
        let file = workspace.join(handoff::HANDOFF_FILE);
        let handoff = match handoff::read(workspace) {
            Ok(Some(handoff)) => handoff,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error_kind = e.kind(), error = %e, "an earlier attempt's handoff file is rejected; the agent runs again");
                match handoff::reject(workspace) {
                    Ok(rejected) => self.keep_file(proofs, &rejected, "handoff.rejected.json"),
                    Err(io) => {
                        tracing::warn!(error = %io, "could not move the rejected handoff file aside")
                    }
                }
                return None;
            }
        };
        let record = match self.fetch_record().await {
            Ok(Some(record)) => record,
            Ok(None) => return Some(left("<missing>")),
            Err(outcome) => return Some(TurnsEnd::Done(outcome)),
        };
        if handoff::recorded_already(&file, &record) {
            tracing::info!(path = %file.display(), "removing a handoff file that was recorded before");
            let _ = std::fs::remove_file(&file);
            return None;
        }
        tracing::info!(path = %file.display(), "recording the handoff an earlier attempt left in the workspace");
        self.keep_file(proofs, &file, "handoff.json");
        Some(TurnsEnd::HandedOff(HandoffVia::File, Some(handoff)))
    }

    async fn before_run_and_turns(
        &mut self,
        proofs: &AttemptProofs,
        workspace: &Path,
        hook_env: &[(String, String)],
    ) -> TurnsEnd {
        let workflow = Arc::clone(&self.spec.workflow);
        let hooks = &workflow.config.hooks;
        if let Some(outcome) =
            run_configured_hook(HookKind::BeforeRun, hooks, workspace, hook_env).await
        {
            self.keep_hook(proofs, &outcome);
            if let Err(e) = outcome.check() {
                return TurnsEnd::Done(AttemptOutcome::failed(e.kind(), e));
            }
        }
        self.turns(proofs, workspace).await
    }

    /// Starts the session and runs turns until a handoff, the end of the active states, the
    /// turn limit, a failure or a stop.
    async fn turns(&mut self, proofs: &AttemptProofs, workspace: &Path) -> TurnsEnd {
        let config = Arc::clone(&self.spec.workflow);
        let record = match self.fetch_record().await {
            Ok(Some(record)) => record,
            Ok(None) => return left("<missing>"),
            Err(outcome) => return TurnsEnd::Done(outcome),
        };
        let prompt = match render_prompt(
            &config.definition,
            &Value::Object(record.clone()),
            self.spec.attempt,
        ) {
            Ok(prompt) => prompt,
            Err(e) => return TurnsEnd::Done(AttemptOutcome::failed(e.kind(), e)),
        };
        let launch = AgentLaunch {
            issue_id: self.spec.issue_id.clone(),
            issue_identifier: self.spec.identifier.clone(),
            issue_title: string_field(&record, "title"),
            attempt: self.spec.attempt,
            workspace_root: config.config.workspace.root.clone(),
            workspace_path: workspace.to_path_buf(),
            env: self.spec.env.clone(),
            logs: proofs.agent_logs(),
            events: self.spec.events.clone(),
            tracker_tools: Some(TrackerTools {
                tracker: Arc::clone(&self.spec.tracker),
                settings: self.spec.settings.clone(),
                proofs_dir: proofs.relative().to_string(),
            }),
        };
        let mut session = match AgentSession::start(&config.config.runner, launch).await {
            Ok(session) => session,
            Err(e) => return TurnsEnd::Done(AttemptOutcome::failed(e.kind(), e)),
        };
        self.note_session(session.session_id());
        let max_turns = config.config.agent.max_turns.max(1);
        let mut prompt = prompt;
        let ended = loop {
            let turn = self.report.turns + 1;
            let result = tokio::select! {
                reason = wait_for_stop(&mut self.stop) => Err(reason),
                result = session.run_turn(&prompt) => Ok(result),
            };
            self.report.turns = turn;
            self.note_session(session.session_id());
            let outcome = match result {
                Err(reason) => break TurnsEnd::Done(AttemptOutcome::Stopped(reason)),
                Ok(Err(e)) => break TurnsEnd::Done(AttemptOutcome::failed(e.kind(), e)),
                Ok(Ok(outcome)) => outcome,
            };
            self.report.tokens = outcome.usage.or(self.report.tokens);
            if let Some(end) = self.after_turn(proofs, workspace, turn, max_turns).await {
                break end;
            }
            prompt = continuation_prompt(turn + 1, max_turns);
        };
        session.stop().await;
        ended
    }

    /// The re-check between turns; `None` means run another turn.
    async fn after_turn(
        &mut self,
        proofs: &AttemptProofs,
        workspace: &Path,
        turn: u32,
        max_turns: u32,
    ) -> Option<TurnsEnd> {
        let record = match self.fetch_record().await {
            Ok(Some(record)) => record,
            Ok(None) => return Some(left("<missing>")),
            Err(outcome) => return Some(TurnsEnd::Done(outcome)),
        };
        let states = &self.spec.settings.states;
        if is_handed_off(&record, states, self.spec.started_at) {
            return Some(TurnsEnd::HandedOff(HandoffVia::Cli, None));
        }
        match handoff::read(workspace) {
            Ok(Some(handoff)) => {
                // Kept in the workspace until the tracker holds it (see `execute`).
                let file = workspace.join(handoff::HANDOFF_FILE);
                self.keep_file(proofs, &file, "handoff.json");
                return Some(TurnsEnd::HandedOff(HandoffVia::File, Some(handoff)));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error_kind = e.kind(), error = %e, "handoff file rejected; the attempt will be retried");
                match handoff::reject(workspace) {
                    Ok(rejected) => self.keep_file(proofs, &rejected, "handoff.rejected.json"),
                    Err(io) => {
                        tracing::warn!(error = %io, "could not move the rejected handoff file aside")
                    }
                }
                return Some(TurnsEnd::Done(AttemptOutcome::failed(e.kind(), e)));
            }
        }
        let state = string_field(&record, "state");
        if !states.is_active(&state) {
            return Some(left(&state));
        }
        (turn >= max_turns).then_some(TurnsEnd::Done(AttemptOutcome::Continuation))
    }

    async fn record_handoff(
        &mut self,
        proofs: &AttemptProofs,
        via: HandoffVia,
        handoff: Option<Handoff>,
    ) -> AttemptOutcome {
        let id = self.spec.issue_id.clone();
        let relative = proofs.relative().to_string();
        let settings = self.spec.settings.clone();
        let recorded = self
            .spec
            .tracker
            .blocking(move |t| {
                t.record_handoff(
                    &settings,
                    &id,
                    handoff.as_ref(),
                    &relative,
                    OffsetDateTime::now_utc(),
                )
            })
            .await;
        match recorded {
            Ok(()) => {
                tracing::info!(via = via.as_str(), proofs_dir = %proofs.relative(), "handoff recorded; issue moved to review");
                AttemptOutcome::HandedOff { via }
            }
            Err(e) => {
                tracing::warn!(error = %e, "handoff could not be recorded");
                AttemptOutcome::failed("handoff_rejected", e)
            }
        }
    }

    /// Writes the manifest, then commits a handoff when `tracker.commit` is on.
    async fn finish(&mut self, proofs: &AttemptProofs) {
        let manifest = Manifest {
            issue_id: self.spec.issue_id.clone(),
            issue_identifier: self.spec.identifier.clone(),
            attempt: self.spec.attempt,
            node: self.spec.tracker.node().to_string(),
            started_at: self.spec.started_at,
            ended_at: OffsetDateTime::now_utc(),
            outcome: self.report.outcome.as_str().to_string(),
            handoff_via: match &self.report.outcome {
                AttemptOutcome::HandedOff { via } => Some(via.as_str().to_string()),
                _ => None,
            },
            error: manifest_error(&self.report.outcome),
            session_id: self.report.session_id.clone(),
            turns: self.report.turns,
            tokens: self.report.tokens,
            workspace: self
                .report
                .workspace
                .as_ref()
                .map(|w| w.display().to_string()),
            files: Vec::new(),
        };
        if let Err(e) = proofs.write_manifest(manifest) {
            tracing::warn!(error = %e, "attempt manifest not written");
        }
        self.log_end();
        let handed_off = matches!(self.report.outcome, AttemptOutcome::HandedOff { .. });
        if handed_off && self.spec.settings.commit {
            let id = self.spec.issue_id.clone();
            let dir = proofs.dir().to_path_buf();
            let message = format!(
                "{}: handoff → {} ({})",
                self.spec.identifier,
                self.spec.settings.states.handoff(),
                proofs.relative()
            );
            match self
                .spec
                .tracker
                .blocking(move |t| t.commit_record(&id, &dir, &message))
                .await
            {
                Ok(commit) => {
                    tracing::info!(commit = %commit, "handoff committed");
                    self.report.commit = Some(commit);
                }
                Err(e) => {
                    tracing::error!(error = %e, "handoff recorded but not committed; commit it by hand");
                }
            }
        }
    }

    fn log_end(&self) {
        let outcome = self.report.outcome.as_str();
        let session_id = self.report.session_id.as_deref().unwrap_or("");
        match &self.report.outcome {
            AttemptOutcome::Failed { kind, message } => tracing::warn!(
                session_id = %session_id,
                outcome = %outcome,
                error_kind = %kind,
                error = %message,
                "attempt failed"
            ),
            AttemptOutcome::Stopped(reason) => tracing::info!(
                session_id = %session_id,
                outcome = %outcome,
                reason = %reason.as_str(),
                "attempt stopped"
            ),
            _ => tracing::info!(
                session_id = %session_id,
                outcome = %outcome,
                turns = self.report.turns,
                "attempt completed"
            ),
        }
    }

    /// Records the session id: the runner's, else the attempt's own
    /// `<identifier>-<utc start>` (shell agents with plain output report none), and puts it
    /// on the attempt's log span.
    fn note_session(&mut self, runner_session: Option<&str>) {
        let session = runner_session.map_or_else(
            || {
                format!(
                    "{}-{}",
                    self.spec.identifier,
                    utc_stamp(self.spec.started_at)
                )
            },
            str::to_string,
        );
        if self.report.session_id.as_deref() != Some(session.as_str()) {
            tracing::Span::current().record("session_id", tracing::field::display(&session));
            tracing::info!(session_id = %session, "agent session identified");
            self.report.session_id = Some(session);
        }
    }

    fn stop_requested(&mut self) -> Option<Stop> {
        *self.stop.borrow_and_update()
    }

    fn hook_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("SYMPHONY_ISSUE_ID".to_string(), self.spec.issue_id.clone()),
            (
                "SYMPHONY_ISSUE_IDENTIFIER".to_string(),
                self.spec.identifier.clone(),
            ),
        ];
        env.extend(self.spec.env.iter().cloned());
        env
    }

    async fn fetch_record(&self) -> Result<Option<Map<String, Value>>, AttemptOutcome> {
        let id = self.spec.issue_id.clone();
        self.spec
            .tracker
            .blocking(move |t| t.fetch_issue(&id))
            .await
            .map_err(|e| AttemptOutcome::failed("tracker_error", e))
    }

    fn keep_hook(&self, proofs: &AttemptProofs, outcome: &HookOutcome) {
        if let Err(e) = proofs.record_hook(outcome) {
            tracing::warn!(error = %e, "hook outcome not kept with the proofs");
        }
    }

    fn keep_file(&self, proofs: &AttemptProofs, source: &Path, name: &str) {
        if let Err(e) = proofs.keep(source, name) {
            tracing::warn!(error = %e, "file not kept with the proofs");
        }
    }
}

fn left(state: &str) -> TurnsEnd {
    TurnsEnd::Done(AttemptOutcome::LeftActiveStates {
        state: state.to_string(),
    })
}

fn manifest_error(outcome: &AttemptOutcome) -> Option<ManifestError> {
    match outcome {
        AttemptOutcome::Failed { kind, message } => Some(ManifestError {
            kind: kind.clone(),
            message: message.clone(),
        }),
        // A stall is the same failure whether the runner or the orchestrator noticed it.
        AttemptOutcome::Stopped(reason) => Some(ManifestError {
            kind: match reason {
                Stop::Stalled => "stalled".into(),
                _ => "stopped".into(),
            },
            message: format!("stopped by the orchestrator: {}", reason.as_str()),
        }),
        _ => None,
    }
}

/// Resolves when the orchestrator asks the worker to stop; a vanished orchestrator counts as
/// a shutdown.
async fn wait_for_stop(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    loop {
        if let Some(reason) = *stop.borrow_and_update() {
            return reason;
        }
        if stop.changed().await.is_err() {
            return Stop::Shutdown;
        }
    }
}
