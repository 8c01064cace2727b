//! The tracker adapter for `tracker.kind: git_issues` (Symphony SPEC §11, profile in
//! `docs/orchestrator.md`): the three SPEC read operations over the JSONL [`Store`], and the
//! writes this product adds — claims, heartbeats, releases, handoffs — through the tracker's
//! typed [`ops`], with handoff commits through [`git::commit_paths`].
//!
//! Every method is blocking file I/O under the tracker lock; the orchestrator calls them from
//! `spawn_blocking` ([`GitIssues::blocking`]). Reads never write; claims and heartbeats write
//! the file but never commit (design.md, Sharded TTL claims).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};
use symphony_tracker::claims::{self, ClaimDecision};
use symphony_tracker::model::{format_timestamp, parse_timestamp};
use symphony_tracker::{
    Document, Handoff, Readiness, ReadyIndex, StateConfig, Store, TrackerError, Transaction, git,
    ops, sort_for_dispatch,
};
use time::OffsetDateTime;

use crate::config::ServiceConfig;
use crate::issue::Issue;
use crate::scheduler::{Candidate, Observed};
use symphony_tracker::heads::HeadRef;

/// The tracker settings a call needs, taken from the current (reloadable) workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerSettings {
    /// What each state means.
    pub states: StateConfig,
    /// `claims.ttl_ms`: TTL frozen onto new shard slates, and the staleness bound of claims
    /// on records without a slate.
    pub claim_ttl_ms: u64,
    /// Labels (lowercase) a candidate must all carry ([`carries_required_labels`]).
    pub required_labels: Vec<String>,
    /// `tracker.commit`: whether handoffs are committed.
    pub commit: bool,
}

impl TrackerSettings {
    /// The settings of `config`.
    pub fn of(config: &ServiceConfig) -> Self {
        TrackerSettings {
            states: config.tracker.states.clone(),
            claim_ttl_ms: config.claims.ttl_ms,
            required_labels: config.tracker.required_labels.clone(),
            commit: config.tracker.commit,
        }
    }
}

/// An issue in the requested states (SPEC §11.1 `fetch_issues_by_states`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRef {
    /// Tracker id.
    pub id: String,
    /// Human identifier.
    pub identifier: String,
    /// Current state.
    pub state: String,
}

/// A handoff an earlier run left unrecorded or uncommitted ([`GitIssues::unfinished_handoffs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedHandoff {
    /// Tracker id.
    pub id: String,
    /// Human identifier.
    pub identifier: String,
    /// `handoff.proofs_dir`, when linked.
    pub proofs_dir: Option<String>,
}

/// A claim this node holds, found at start-up (restart recovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnClaim {
    /// Tracker id.
    pub id: String,
    /// Human identifier.
    pub identifier: String,
    /// Whether the heartbeat is older than the TTL.
    pub stale: bool,
}

/// A ready issue this node may not claim, and why (log and `/api/v1/state`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unclaimable {
    /// Tracker id.
    pub issue_id: String,
    /// Human identifier.
    pub issue_identifier: String,
    /// Why, e.g. `this node is not on its shard slate (primary 0a1b2c…)`.
    pub reason: String,
}

/// The reason of a refused claim, for logs and the API.
fn refusal(decision: &ClaimDecision, shard: Option<&symphony_tracker::Shard>) -> String {
    let short = |node: &str| node.chars().take(16).collect::<String>();
    let primary = shard.map_or_else(String::new, |s| short(&s.primary));
    match decision {
        ClaimDecision::NotInSlate => format!(
            "this node is not on its shard slate (primary {primary}; the slate is resharded \
             once none of its nodes is on the roster and its holder is a TTL past)"
        ),
        ClaimDecision::Held { holder } => format!(
            "live claim of node {} (taken over by the claim rules once its heartbeat is a TTL old)",
            short(holder)
        ),
        ClaimDecision::Wait { until } => format!(
            "a lower slot of the slate has its turn until {}",
            format_timestamp(*until)
        ),
        ClaimDecision::Grant { .. } => String::new(),
    }
}

/// Whether this node may dispatch an active issue now ([`GitIssues::fetch_candidate_issues`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Claimability {
    /// Not ready: an open blocker, or not in an active state.
    NotReady,
    /// Ready, and this node may claim it now.
    Claimable,
    /// Ready, but this node may not claim it: why.
    Refused(String),
}

/// The `git_issues` tracker of one node.
#[derive(Debug)]
pub struct GitIssues {
    store: Store,
    node: String,
}

impl GitIssues {
    /// The tracker over the issues file at `path`, acting as `node` (the NodeId in hex).
    pub fn new(path: &Path, node: impl Into<String>) -> Self {
        GitIssues {
            store: Store::new(path),
            node: node.into(),
        }
    }

    /// The issues file.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs `f` on a blocking thread (file I/O under the tracker lock).
    ///
    /// Errors: `f`'s error; a panic in `f` becomes [`TrackerError::Io`] naming the file.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&GitIssues) -> Result<T, TrackerError> + Send + 'static,
    ) -> Result<T, TrackerError> {
        let tracker = Arc::clone(self);
        let path = tracker.path().to_path_buf();
        tokio::task::spawn_blocking(move || f(&tracker))
            .await
            .unwrap_or_else(|e| {
                Err(TrackerError::io(
                    path,
                    std::io::Error::other(format!("tracker task failed: {e}")),
                ))
            })
    }

    /// Reads the file (for checks at start-up).
    ///
    /// Errors: everything [`Store::read`] reports.
    pub fn read(&self) -> Result<Document, TrackerError> {
        self.store.read()
    }

    /// SPEC §11.1 `fetch_issues_by_states(active_states)` for candidate polling: every active,
    /// non-terminal issue carrying the required labels ([`carries_required_labels`]), in
    /// dispatch order (SPEC §8.2), each with `dispatchable` (SPEC §4.1.1) derived from this
    /// adapter's rules — every blocker (looked up live in the file) terminal, no live claim of
    /// another node ([`symphony_tracker::ready`]), and this node may claim it now under the
    /// sharded TTL rules with roster `[this node]`. Issues this node holds a live claim on are
    /// dispatchable (restart recovery resumes them; the scheduler skips the ones it runs).
    /// A slate of nodes that are all gone, past the TTL, counts as this node's
    /// ([`claims::reshard_orphaned`]; the claim writes the new slate). Ready issues this node
    /// may not claim come back in [`CandidateFetch::unclaimable`] with the reason, so an issue
    /// that `symphony issues ready` lists but no run picks up says why.
    ///
    /// Records that cannot be normalized are left out; they and records read with a fallback
    /// (bare-id blockers, unknown states, priorities out of range) come back as
    /// [`CandidateFetch::findings`], each with its line.
    ///
    /// Errors: the file cannot be read or is damaged as a whole (the tick skips dispatch).
    pub fn fetch_candidate_issues(
        &self,
        settings: &TrackerSettings,
        now: OffsetDateTime,
    ) -> Result<CandidateFetch, TrackerError> {
        let heads = self.store.read_heads()?;
        let index = ReadyIndex::new(&heads, &settings.states, settings.claim_ttl_ms, now);
        let mut findings: Vec<RecordFinding> = heads
            .omitted()
            .iter()
            .map(|omitted| RecordFinding {
                line: omitted.line,
                issue_id: omitted.id.clone(),
                omitted: true,
                message: omitted.reason.clone(),
            })
            .collect();
        findings.extend(
            heads
                .iter()
                .flat_map(|head| fallbacks(self.path(), head, &settings.states)),
        );
        findings.sort_by_key(|finding| finding.line);
        let mut active: Vec<_> = heads
            .iter()
            .filter(|head| {
                settings.states.is_active(head.state())
                    && !settings.states.is_terminal(head.state())
            })
            .filter(|head| {
                let labels: Vec<&str> = head.labels().collect();
                carries_required_labels(&labels, &settings.required_labels)
            })
            .collect();
        sort_for_dispatch(&mut active);
        let mut unclaimable = Vec::new();
        let candidates = active
            .into_iter()
            .map(|head| {
                let claimability = self.claimability(head, &index, settings, now);
                if let Claimability::Refused(reason) = claimability.clone() {
                    unclaimable.push(Unclaimable {
                        issue_id: head.id().to_string(),
                        issue_identifier: head.identifier().to_string(),
                        reason,
                    });
                }
                Candidate {
                    id: head.id().to_string(),
                    identifier: head.identifier().to_string(),
                    state: head.state().to_string(),
                    dispatchable: claimability == Claimability::Claimable,
                }
            })
            .collect();
        Ok(CandidateFetch {
            candidates,
            findings,
            unclaimable,
        })
    }

    /// This adapter's `dispatchable` rule for an active issue (see
    /// [`GitIssues::fetch_candidate_issues`]): ready, and claimable by this node now.
    fn claimability(
        &self,
        head: HeadRef<'_>,
        index: &ReadyIndex<'_>,
        settings: &TrackerSettings,
        now: OffsetDateTime,
    ) -> Claimability {
        match index.readiness(head) {
            Readiness::Ready => {}
            Readiness::Claimed(holder) if holder == self.node => {}
            Readiness::Claimed(holder) => {
                let held = ClaimDecision::Held {
                    holder: holder.to_string(),
                };
                return Claimability::Refused(refusal(&held, head.shard()));
            }
            _ => return Claimability::NotReady,
        }
        let roster = [self.node.as_str()];
        let last_activity = parse_timestamp(head.updated_at()).unwrap_or(now);
        let shard = match head.shard() {
            Some(frozen) => claims::reshard_orphaned(
                frozen,
                &roster,
                head.id(),
                head.claim(),
                last_activity,
                now,
            )
            .unwrap_or_else(|| frozen.clone()),
            None => match claims::freeze(&roster, head.id(), settings.claim_ttl_ms, 0) {
                Some(shard) => shard,
                None => return Claimability::NotReady,
            },
        };
        match claims::decide(&self.node, &shard, head.claim(), last_activity, now) {
            ClaimDecision::Grant { .. } => Claimability::Claimable,
            refused => Claimability::Refused(refusal(&refused, Some(&shard))),
        }
    }

    /// SPEC §11.1 `fetch_issues_by_ids`: the current normalized snapshot of every requested
    /// issue still in the file (absent ones are omitted; ids are a set). `[]` reads nothing.
    ///
    /// Errors: the file cannot be read, or a requested record cannot be normalized (SPEC
    /// §11.1: an ID refresh fails rather than omit a malformed requested record), or a
    /// requested id is defined twice.
    pub fn fetch_issues_by_ids(
        &self,
        settings: &TrackerSettings,
        ids: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<Issue>, TrackerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Blockers and claims decide `dispatchable`: they are read the way the candidate
        // fetch reads them; the requested records are then read whole.
        let heads = self.store.read_heads()?;
        let index = ReadyIndex::new(&heads, &settings.states, settings.claim_ttl_ms, now);
        self.snapshots(ids, |id| {
            heads.get(id).is_some_and(|head| {
                self.claimability(head, &index, settings, now) == Claimability::Claimable
            })
        })
    }

    /// The normalized snapshots of `ids` (a set; absent ones omitted), with `dispatchable`
    /// from `dispatchable(id)`. Errors: as [`GitIssues::fetch_issues_by_ids`].
    fn snapshots(
        &self,
        ids: &[String],
        mut dispatchable: impl FnMut(&str) -> bool,
    ) -> Result<Vec<Issue>, TrackerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let document = self.store.read()?;
        let mut seen = std::collections::HashSet::new();
        let mut issues = Vec::new();
        for id in ids {
            if !seen.insert(id.as_str()) {
                continue;
            }
            let Some(line) = document.find(id)? else {
                continue;
            };
            let head = document.head(line)?;
            let record = document.record(line)?;
            issues.push(Issue::normalize(&head, &record, dispatchable(id)));
        }
        Ok(issues)
    }

    /// Reconciliation (SPEC §16.3) over the snapshots of [`GitIssues::fetch_issues_by_ids`]: what the tracker
    /// says now about each running issue. `runs` pairs each id with the start of its run; an
    /// issue in a review state whose handoff is at least that recent was handed off by that
    /// run ([`Observed::HandedOff`]); an active issue that lost a required label is
    /// [`Observed::Inactive`], like a state change. Ids not in the file are absent.
    ///
    /// Errors: as [`GitIssues::fetch_issues_by_ids`].
    pub fn fetch_issue_states_by_ids(
        &self,
        settings: &TrackerSettings,
        runs: &[(String, OffsetDateTime)],
    ) -> Result<HashMap<String, Observed>, TrackerError> {
        let ids: Vec<String> = runs.iter().map(|(id, _)| id.clone()).collect();
        let since: HashMap<&str, OffsetDateTime> =
            runs.iter().map(|(id, at)| (id.as_str(), *at)).collect();
        // Reconciliation classifies by state, labels and handoff, never by `dispatchable`, so
        // it skips the scan of every record's blockers that `dispatchable` needs.
        let issues = self.snapshots(&ids, |_| false)?;
        Ok(issues
            .into_iter()
            .map(|issue| {
                let started = since
                    .get(issue.id.as_str())
                    .copied()
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                let seen = observe(&issue, settings, started);
                (issue.id, seen)
            })
            .collect())
    }

    /// SPEC §11.1 `fetch_issues_by_states`, for start-up cleanup. An empty list reads nothing;
    /// malformed records are left out (the candidate fetch names them).
    ///
    /// Errors: the file cannot be read or is damaged as a whole.
    pub fn fetch_issues_by_states(&self, states: &[String]) -> Result<Vec<IssueRef>, TrackerError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = StateConfig {
            active: states.to_vec(),
            terminal: Vec::new(),
            review: Vec::new(),
            blocked: Vec::new(),
        };
        let heads = self.store.read_heads()?;
        Ok(heads
            .iter()
            .filter(|head| wanted.is_active(head.state()))
            .map(|head| IssueRef {
                id: head.id().to_string(),
                identifier: head.identifier().to_string(),
                state: head.state().to_string(),
            })
            .collect())
    }

    /// The full record of `id` as stored (the prompt's `issue`), `None` when absent.
    ///
    /// Errors: the file cannot be read or the line is not a record.
    pub fn fetch_issue(&self, id: &str) -> Result<Option<Map<String, Value>>, TrackerError> {
        let document = self.store.read()?;
        match document.find(id)? {
            Some(index) => document.record(index).map(Some),
            None => Ok(None),
        }
    }

    /// Claims this node holds, each marked stale or live (restart recovery, design.md).
    /// Malformed records are left out.
    ///
    /// Errors: the file cannot be read or is damaged as a whole.
    pub fn own_claims(
        &self,
        settings: &TrackerSettings,
        now: OffsetDateTime,
    ) -> Result<Vec<OwnClaim>, TrackerError> {
        let heads = self.store.read_heads()?;
        Ok(heads
            .iter()
            .filter_map(|head| {
                let claim = head.claim().filter(|c| c.node == self.node)?;
                let shard = head.shard().cloned().unwrap_or(symphony_tracker::Shard {
                    primary: self.node.clone(),
                    backups: Vec::new(),
                    claim_ttl_ms: settings.claim_ttl_ms,
                    created_view_epoch: 0,
                });
                Some(OwnClaim {
                    stale: claims::is_stale(claim, &shard, now),
                    id: head.id().to_string(),
                    identifier: head.identifier().to_string(),
                })
            })
            .collect())
    }

    /// Handoffs an earlier run of this node left half done (restart recovery): issues in a
    /// review state with a handoff that still carry this node's claim (the agent ran
    /// `symphony issues handoff`, the orchestrator died before recording it), and — with
    /// `tracker.commit` — handoffs linked to proofs under `proofs/` whose record differs from
    /// HEAD's (the orchestrator died before the commit). Finish each with
    /// [`GitIssues::record_handoff`] (`None`) and [`GitIssues::commit_record`].
    ///
    /// Errors: the file cannot be read or a line is not a record; HEAD's file is not readable.
    pub fn unfinished_handoffs(
        &self,
        settings: &TrackerSettings,
    ) -> Result<Vec<UnfinishedHandoff>, TrackerError> {
        let document = self.store.read()?;
        let head = match git::head_content(self.path()) {
            Ok(Some(bytes)) => Document::parse(self.path(), bytes, usize::MAX).ok(),
            Ok(None) | Err(TrackerError::Git { .. }) => None,
            Err(e) => return Err(e),
        };
        let mut unfinished = Vec::new();
        for (index, _) in document.record_lines() {
            let record = document.record(index)?;
            let Some(Value::Object(handoff)) = record.get("handoff") else {
                continue;
            };
            if !settings.states.is_review(&string_field(&record, "state")) {
                continue;
            }
            let id = string_field(&record, "id");
            let claimed = record
                .get("claim")
                .and_then(|c| c.get("node"))
                .and_then(Value::as_str)
                == Some(self.node.as_str());
            let proofs_dir = handoff
                .get("proofs_dir")
                .and_then(Value::as_str)
                .map(str::to_string);
            let ours = proofs_dir
                .as_deref()
                .is_some_and(|dir| dir.starts_with(crate::proofs::PROOFS_DIR));
            let uncommitted = settings.commit
                && ours
                && head.as_ref().is_some_and(|head| {
                    let committed = head
                        .find(&id)
                        .ok()
                        .flatten()
                        .and_then(|at| head.record(at).ok());
                    committed.and_then(|r| r.get("handoff").cloned())
                        != Some(Value::Object(handoff.clone()))
                });
            if claimed || uncommitted {
                unfinished.push(UnfinishedHandoff {
                    identifier: string_field(&record, "identifier"),
                    id,
                    proofs_dir,
                });
            }
        }
        Ok(unfinished)
    }

    /// Claims `id` for this node ([`ops::claim`]) with roster `[this node]`: freezes that
    /// slate when the record has none (or its nodes are all gone past the TTL), writes the
    /// claim and moves `todo → in_progress`. No commit.
    ///
    /// Errors: [`TrackerError::NotFound`], [`TrackerError::Rejected`] (not active, malformed
    /// shard or claim), and file errors.
    pub fn claim(
        &self,
        settings: &TrackerSettings,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<ClaimDecision, TrackerError> {
        let roster = [self.node.as_str()];
        let (decision, _) = self.store.transact(|tx| {
            let ttl = settings.claim_ttl_ms;
            ops::claim(tx, id, &self.node, &roster, ttl, &settings.states, now)
        })?;
        Ok(decision)
    }

    /// Refreshes `claim.heartbeat_at` of every id this node still holds, in one write (no
    /// commit, `updated_at` untouched). Returns the ids whose claim another node holds now,
    /// with that node; ids without a claim (released, handed off) or gone from the file are
    /// skipped — reconciliation deals with those.
    ///
    /// Errors: the file cannot be read or written, or a record is malformed (nothing is
    /// refreshed then).
    pub fn heartbeat(
        &self,
        ids: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<(String, String)>, TrackerError> {
        let (lost, _) = self.store.transact(|tx| {
            let mut lost = Vec::new();
            for id in ids {
                let holder = match tx.get(id)? {
                    None => continue,
                    Some(record) => record
                        .get("claim")
                        .and_then(|c| c.get("node"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                };
                match holder {
                    Some(holder) if holder == self.node => {
                        ops::heartbeat(tx, id, &self.node, now)?;
                    }
                    Some(holder) => lost.push((id.clone(), holder)),
                    None => {}
                }
            }
            Ok(lost)
        })?;
        Ok(lost)
    }

    /// Drops this node's claim on `id`, keeping its state. Returns whether a claim was
    /// dropped; an issue gone from the file or claimed by another node is left alone (false).
    ///
    /// Errors: file errors, and a malformed record.
    pub fn release(&self, settings: &TrackerSettings, id: &str) -> Result<bool, TrackerError> {
        let released = self
            .store
            .transact(|tx| ops::release(tx, id, &self.node, None, &settings.states));
        match released {
            Ok((released, _)) => Ok(released),
            Err(TrackerError::NotFound { .. } | TrackerError::Rejected { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records a handoff on `id` in one write: `handoff` (from `.symphony/handoff.json`) is
    /// written and the issue moves to review ([`ops::handoff`]); with `None` the handoff the
    /// agent recorded through `symphony issues handoff` stays. Either way `handoff.proofs_dir`
    /// becomes `proofs_dir` unless the agent named one, and this node's claim is dropped.
    ///
    /// Errors: [`TrackerError::Rejected`] (closed issue, missing summary, no handoff
    /// recorded), [`TrackerError::NotFound`], file errors. Nothing is written on error.
    pub fn record_handoff(
        &self,
        settings: &TrackerSettings,
        id: &str,
        handoff: Option<&Handoff>,
        proofs_dir: &str,
        now: OffsetDateTime,
    ) -> Result<(), TrackerError> {
        let states = &settings.states;
        self.store.transact(|tx| {
            if let Some(handoff) = handoff {
                let mut handoff = handoff.clone();
                handoff
                    .proofs_dir
                    .get_or_insert_with(|| proofs_dir.to_string());
                ops::handoff(tx, id, &handoff, states, now)?;
            } else {
                link_proofs(tx, id, proofs_dir)?;
            }
            ops::release(tx, id, &self.node, None, states)?;
            Ok(())
        })?;
        Ok(())
    }

    /// Commits `id`'s record and the proofs directory, and nothing else: the committed issues
    /// file is HEAD's with only this record replaced by its current line (other issues'
    /// uncommitted claims and states stay out of the commit). The commit is made under the
    /// tracker lock, so it never races a CLI `--commit` or another worker for the branch tip.
    /// Returns the commit id.
    ///
    /// Errors: [`TrackerError::Git`] (not a work tree, a merge in progress, a git lock file
    /// another process holds), and file errors.
    pub fn commit_record(
        &self,
        id: &str,
        proofs_dir: &Path,
        message: &str,
    ) -> Result<String, TrackerError> {
        self.store.exclusive(|current| {
            let bytes = self.record_commit_bytes(current, id)?;
            let mut staged = vec![git::Staged::Bytes(self.path(), &bytes)];
            // A run killed before its proofs directory was made has none to commit.
            if proofs_dir.exists() {
                staged.push(git::Staged::Current(proofs_dir));
            }
            git::commit_paths(&staged, message)
        })
    }

    /// HEAD's issues file with `id`'s record replaced by (or appended as) its version in
    /// `current`. Without a HEAD version (unborn branch, new file), or when HEAD's version
    /// does not parse, the whole current file.
    fn record_commit_bytes(&self, current: &Document, id: &str) -> Result<Vec<u8>, TrackerError> {
        let whole = || current.text().as_bytes().to_vec();
        let Some(head) = git::head_content(self.path())? else {
            return Ok(whole());
        };
        let Some(index) = current.find(id)? else {
            return Ok(whole());
        };
        let record = current.record(index)?;
        let Ok(base) = Document::parse(self.path(), head, usize::MAX) else {
            tracing::warn!(path = %self.path().display(), "HEAD's issues file does not parse; committing the whole file");
            return Ok(whole());
        };
        let mut tx = Transaction::new(&base);
        if tx.get(id)?.is_some() {
            *tx.get_mut(id)? = record;
        } else {
            tx.append(record)?;
        }
        Ok(tx.render()?.0)
    }
}

/// Sets `handoff.proofs_dir` of `id` unless the agent named one. Errors when the record has
/// no handoff object (the agent did not hand off after all).
fn link_proofs(tx: &mut Transaction<'_>, id: &str, proofs_dir: &str) -> Result<(), TrackerError> {
    let record = tx.get_mut(id)?;
    match record.get_mut("handoff") {
        Some(Value::Object(handoff)) => {
            if !handoff.get("proofs_dir").is_some_and(Value::is_string) {
                handoff.insert("proofs_dir".into(), proofs_dir.into());
            }
            Ok(())
        }
        _ => Err(TrackerError::Rejected {
            id: id.to_string(),
            message: "the issue is in review but carries no handoff object".into(),
        }),
    }
}

/// The SPEC §11.4 category of a tracker error (the adapter profile in `docs/orchestrator.md`
/// lists the mapping): an unreadable file or a timed-out lock is `tracker_request` (the
/// transport of a file tracker), a file damaged as a whole or a malformed requested record is
/// `tracker_response`, a refused write or an absent id is `tracker_status`, a failed commit
/// is `tracker_request`, an unusable schema or a missing id prefix is `invalid_tracker_config`.
/// `tracker_pagination` and `tracker_rate_limited` cannot occur (one
/// local file, no pages, no quota).
pub fn error_category(error: &TrackerError) -> &'static str {
    match error {
        TrackerError::Io { .. }
        | TrackerError::Missing { .. }
        | TrackerError::LockTimeout { .. }
        | TrackerError::ConcurrentModification { .. }
        | TrackerError::Git { .. } => "tracker_request",
        TrackerError::InvalidUtf8 { .. }
        | TrackerError::Json { .. }
        | TrackerError::Record { .. }
        | TrackerError::RecordTooLarge { .. }
        | TrackerError::ConflictMarkers { .. }
        | TrackerError::ByteOrderMark { .. }
        | TrackerError::DuplicateId { .. }
        | TrackerError::WouldDropRecords { .. } => "tracker_response",
        TrackerError::NotFound { .. } | TrackerError::Rejected { .. } => "tracker_status",
        TrackerError::Schema { .. } | TrackerError::NoIdPrefix => "invalid_tracker_config",
    }
}

/// What a candidate fetch found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CandidateFetch {
    /// Active issues carrying the required labels, in dispatch order, each marked
    /// dispatchable or not.
    pub candidates: Vec<Candidate>,
    /// Records left out or read with a fallback, in file order.
    pub findings: Vec<RecordFinding>,
    /// Ready issues this node may not claim, and why, in dispatch order.
    pub unclaimable: Vec<Unclaimable>,
}

/// A record of the issues file that a read left out (it cannot be normalized: SPEC §11.1) or
/// read with a fallback (SPEC §11.3), with its line. Shown in the log and `/api/v1/state`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordFinding {
    /// 1-based line in the issues file.
    pub line: usize,
    /// The record's id, when it could be read.
    pub issue_id: Option<String>,
    /// Whether the record was left out (never dispatched) rather than read with a fallback.
    pub omitted: bool,
    /// What is wrong, located (`FILE:LINE[:COLUMN]: ...`), with the fallback taken.
    pub message: String,
}

/// Records of `head` read with a fallback: bare-id blockers, an unknown state, a priority
/// outside 0–4.
fn fallbacks(path: &Path, head: HeadRef<'_>, states: &StateConfig) -> Vec<RecordFinding> {
    let mut found = Vec::new();
    let mut note = |message: String| {
        found.push(RecordFinding {
            line: head.line(),
            issue_id: Some(head.id().to_string()),
            omitted: false,
            message: format!("{}:{}: {message}", path.display(), head.line()),
        });
    };
    if head.has_bare_blocker() {
        note("/blocked_by: a bare id string is read as the ref it names (`symphony validate` shows the fix)".into());
    }
    if !states.is_known(head.state()) {
        let known: Vec<&str> = states.all().collect();
        note(format!(
            "/state: unknown state {:?} (configured: {}); never dispatched",
            head.state(),
            known.join(", ")
        ));
    }
    if let Some(priority) = head.priority().filter(|p| !(0..=4).contains(p)) {
        note(format!(
            "/priority: {priority} is outside 0–4; sorted as no priority"
        ));
    }
    found
}

/// SPEC §5.3.1 `required_labels`: whether `labels` holds every required label, ignoring case
/// and surrounding whitespace. A blank required label matches no issue; no required label
/// matches every issue.
pub fn carries_required_labels(labels: &[&str], required: &[String]) -> bool {
    required.iter().all(|required| {
        let required = required.trim();
        !required.is_empty()
            && labels
                .iter()
                .any(|label| label.trim().eq_ignore_ascii_case(required))
    })
}

/// What reconciliation makes of `issue` for a run that started at `since`.
fn observe(issue: &Issue, settings: &TrackerSettings, since: OffsetDateTime) -> Observed {
    let states = &settings.states;
    let labels: Vec<&str> = issue.labels.iter().map(String::as_str).collect();
    let labelled = carries_required_labels(&labels, &settings.required_labels);
    if states.is_terminal(&issue.state) {
        Observed::Terminal
    } else if states.is_active(&issue.state) && labelled {
        Observed::Active(issue.state.clone())
    } else if states.is_review(&issue.state)
        && issue
            .handoff_updated_at
            .is_some_and(|at| at >= whole_seconds(since))
    {
        Observed::HandedOff
    } else {
        Observed::Inactive
    }
}

/// `at` truncated to whole seconds (the file keeps timestamps to the second).
fn whole_seconds(at: OffsetDateTime) -> OffsetDateTime {
    parse_timestamp(&format_timestamp(at)).unwrap_or(at)
}

/// The string value of `field` in a record, empty when absent or not a string.
pub(crate) fn string_field(record: &Map<String, Value>, field: &str) -> String {
    record
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Whether the record's handoff was written at or after `since` (whole seconds: the file
/// keeps timestamps to the second).
fn handed_off_since(record: &Map<String, Value>, since: OffsetDateTime) -> bool {
    let since = whole_seconds(since);
    record
        .get("handoff")
        .and_then(|h| h.get("updated_at"))
        .and_then(Value::as_str)
        .and_then(|at| parse_timestamp(at).ok())
        .is_some_and(|at| at >= since)
}

/// Whether the issue `record` was handed off at or after `since` and now sits in a review
/// state — the check a worker makes between turns to see a `symphony issues handoff`.
pub fn is_handed_off(
    record: &Map<String, Value>,
    states: &StateConfig,
    since: OffsetDateTime,
) -> bool {
    states.is_review(&string_field(record, "state")) && handed_off_since(record, since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use symphony_tracker::model::ValidationRun;

    const FIXTURE: &str = include_str!("../../symphony-tracker/tests/fixtures/x0x-symphony.jsonl");
    const NODE: &str = "0a1b2c";

    fn settings() -> TrackerSettings {
        TrackerSettings {
            states: StateConfig::default(),
            claim_ttl_ms: 60_000,
            required_labels: Vec::new(),
            commit: false,
        }
    }

    fn at(text: &str) -> OffsetDateTime {
        parse_timestamp(text).unwrap()
    }

    fn tracker(text: &str) -> (tempfile::TempDir, GitIssues) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues/issues.jsonl");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        (dir, GitIssues::new(&path, NODE))
    }

    /// The dispatchable candidates' ids, in order.
    fn ids(fetch: &CandidateFetch) -> Vec<&str> {
        fetch
            .candidates
            .iter()
            .filter(|c| c.dispatchable)
            .map(|c| c.id.as_str())
            .collect()
    }

    fn labelled(labels: &[&str]) -> TrackerSettings {
        TrackerSettings {
            required_labels: labels.iter().map(|l| l.to_string()).collect(),
            ..settings()
        }
    }

    #[test]
    fn spec_11_candidates_are_the_ready_issues_in_dispatch_order() {
        let (_dir, t) = tracker(FIXTURE);
        let now = at("2026-05-01T00:00:00Z");
        let fetch = t.fetch_candidate_issues(&settings(), now).unwrap();
        assert_eq!(
            ids(&fetch),
            [
                "XSY-0027", "XSY-0003", "XSY-0004", "XSY-0005", "XSY-0011", "XSY-0012", "XSY-0030"
            ]
        );
        assert!(fetch.findings.is_empty());
        // SPEC §11.1: active issues that are not dispatchable (open blockers) are returned
        // too, marked; the scheduler owns the final filter.
        let blocked: Vec<&str> = fetch
            .candidates
            .iter()
            .filter(|c| !c.dispatchable)
            .map(|c| c.id.as_str())
            .collect();
        assert!(blocked.contains(&"XSY-0006"), "{blocked:?}");
    }

    #[test]
    fn spec_17_4_required_labels_are_case_insensitive_and_all_must_match() {
        // " Security " and "CROSS-CUTTING" in the file match the configured lowercase labels.
        let text = FIXTURE
            .replace("\"security\"", "\" Security \"")
            .replace("\"cross-cutting\"", "\"CROSS-CUTTING\"");
        let (_dir, t) = tracker(&text);
        let now = at("2026-05-01T00:00:00Z");
        let fetch = t
            .fetch_candidate_issues(&labelled(&["security"]), now)
            .unwrap();
        assert_eq!(ids(&fetch), ["XSY-0027", "XSY-0012"]);
        let both = labelled(&["security", "cross-cutting"]);
        assert_eq!(
            ids(&t.fetch_candidate_issues(&both, now).unwrap()),
            ["XSY-0012"]
        );
    }

    #[test]
    fn spec_5_3_1_a_blank_required_label_matches_no_issue() {
        // XSY-0003 carries a blank label: a blank required label must still match nothing.
        let text = FIXTURE.replacen(
            "\"labels\":[\"x0x-symphony\"",
            "\"labels\":[\"\",\"x0x-symphony\"",
            3,
        );
        let (_dir, t) = tracker(&text);
        let now = at("2026-05-01T00:00:00Z");
        for blank in ["", "  "] {
            let fetch = t.fetch_candidate_issues(&labelled(&[blank]), now).unwrap();
            assert_eq!(fetch.candidates, [], "{blank:?}");
        }
    }

    #[test]
    fn spec_17_4_removing_a_required_label_stops_a_running_issue_like_a_state_change() {
        let (_dir, t) = tracker(FIXTURE);
        let start = at("2026-05-01T00:00:00Z");
        let runs = [("XSY-0012".to_string(), start)];
        let s = labelled(&["security"]);
        let seen = t.fetch_issue_states_by_ids(&s, &runs).unwrap();
        assert_eq!(seen["XSY-0012"], Observed::Active("todo".into()));
        let text = std::fs::read_to_string(t.path()).unwrap();
        let line = text.lines().nth(11).unwrap();
        std::fs::write(
            t.path(),
            text.replace(line, &line.replace("\"security\",", "")),
        )
        .unwrap();
        let seen = t.fetch_issue_states_by_ids(&s, &runs).unwrap();
        assert_eq!(seen["XSY-0012"], Observed::Inactive);
    }

    #[test]
    fn spec_17_3_refresh_by_id_returns_full_normalized_snapshots_and_empty_reads_nothing() {
        let text = FIXTURE.replacen("\"x0x-symphony\"", "\" X0X-Symphony \"", 1);
        let (_dir, t) = tracker(&text);
        let now = at("2026-05-01T00:00:00Z");
        let ids = [
            "XSY-0001".to_string(),
            "XSY-0006".into(),
            "XSY-0001".into(),
            "XSY-9999".into(),
        ];
        let issues = t.fetch_issues_by_ids(&settings(), &ids, now).unwrap();
        let got: Vec<(&str, bool)> = issues
            .iter()
            .map(|i| (i.id.as_str(), i.dispatchable))
            .collect();
        assert_eq!(got, [("XSY-0001", false), ("XSY-0006", false)]);
        let first = &issues[0];
        assert_eq!(
            first.labels[0], "x0x-symphony",
            "labels are lowercased and trimmed"
        );
        assert!(first.description.as_deref().is_some_and(|d| !d.is_empty()));
        assert_eq!(first.native_ref, None);
        assert_eq!(issues[1].blocked_by.len(), 3);
        let ready = t
            .fetch_issues_by_ids(&settings(), &["XSY-0003".into()], now)
            .unwrap();
        assert!(ready[0].dispatchable);
        let missing = GitIssues::new(Path::new("/nonexistent/issues.jsonl"), NODE);
        assert!(
            missing
                .fetch_issues_by_ids(&settings(), &[], now)
                .unwrap()
                .is_empty()
        );
        assert!(missing.fetch_issues_by_ids(&settings(), &ids, now).is_err());
    }

    #[test]
    fn spec_11_4_tracker_errors_map_to_the_spec_categories() {
        let path = std::path::PathBuf::from("f");
        let missing = TrackerError::Missing { path: path.clone() };
        assert_eq!(error_category(&missing), "tracker_request");
        let bom = TrackerError::ByteOrderMark {
            path: path.clone(),
            line: 1,
        };
        assert_eq!(error_category(&bom), "tracker_response");
        let absent = TrackerError::NotFound {
            path,
            id: "A-1".into(),
        };
        assert_eq!(error_category(&absent), "tracker_status");
    }

    #[test]
    fn spec_11_1_records_that_cannot_be_normalized_are_left_out_and_named_others_dispatched() {
        let mut lines: Vec<String> = FIXTURE.lines().map(str::to_string).collect();
        lines[3].truncate(50); // XSY-0004: not JSON
        lines[4] = lines[4].replacen("\"state\":\"todo\"", "\"state\":\"wontfix\"", 1);
        lines[10] = lines[10].replacen("\"priority\":3", "\"priority\":9", 1);
        let text = lines.join("\n") + "\n";
        let (_dir, t) = tracker(&text);
        let now = at("2026-05-01T00:00:00Z");
        let fetch = t.fetch_candidate_issues(&settings(), now).unwrap();
        assert_eq!(
            ids(&fetch),
            ["XSY-0027", "XSY-0003", "XSY-0012", "XSY-0030", "XSY-0011"]
        );
        let found: Vec<(usize, bool)> =
            fetch.findings.iter().map(|f| (f.line, f.omitted)).collect();
        assert_eq!(found, [(4, true), (5, false), (11, false)]);
        assert!(
            fetch.findings[1]
                .message
                .contains("unknown state \"wontfix\"")
        );
        assert!(fetch.findings[2].message.contains("9 is outside 0–4"));
        // SPEC §11.1: a refresh by id of the damaged record fails rather than omit it.
        let err = t
            .fetch_issues_by_ids(&settings(), &["XSY-0004".into()], now)
            .unwrap_err();
        assert!(err.to_string().contains("issues.jsonl:4:"), "{err}");
    }

    #[test]
    fn claims_of_other_nodes_and_foreign_slates_are_skipped_own_claims_are_kept() {
        let (_dir, t) = tracker(FIXTURE);
        let now = at("2026-05-01T00:00:00Z");
        let s = settings();
        assert_eq!(
            t.claim(&s, "XSY-0003", now).unwrap(),
            ClaimDecision::Grant { slot: 0 }
        );
        let other = GitIssues::new(t.path(), "ffff");
        let theirs = other.fetch_candidate_issues(&s, now).unwrap();
        assert!(
            !ids(&theirs).contains(&"XSY-0003"),
            "live claim of another node"
        );
        assert!(
            !ids(&theirs).is_empty(),
            "slates are frozen only when claimed"
        );
        let mine = t.fetch_candidate_issues(&s, now).unwrap();
        let mine: Vec<&Candidate> = mine.candidates.iter().filter(|c| c.dispatchable).collect();
        assert_eq!(mine[1].id, "XSY-0003");
        assert_eq!(mine[1].state, "in_progress", "the claim moved it");
        // A released issue keeps the slate [this node]: another node is not on it.
        assert!(t.release(&s, "XSY-0003").unwrap());
        let theirs = other.fetch_candidate_issues(&s, now).unwrap();
        assert!(!ids(&theirs).contains(&"XSY-0003"), "not in its slate");
    }

    #[test]
    fn own_claims_are_found_live_or_stale_and_heartbeats_refresh_them() {
        let (_dir, t) = tracker(FIXTURE);
        let s = settings();
        let t0 = at("2026-05-01T00:00:00Z");
        t.claim(&s, "XSY-0011", t0).unwrap();
        let live = t.own_claims(&s, t0).unwrap();
        assert_eq!(live.len(), 1);
        assert!(!live[0].stale);
        let later = at("2026-05-01T00:05:00Z");
        assert!(t.own_claims(&s, later).unwrap()[0].stale);
        let other = GitIssues::new(t.path(), "ffff");
        other
            .store
            .transact(|tx| ops::claim(tx, "XSY-0012", "ffff", &["ffff"], 60_000, &s.states, t0))
            .unwrap();
        let lost = t
            .heartbeat(
                &["XSY-0011".into(), "XSY-0012".into(), "XSY-0013".into()],
                later,
            )
            .unwrap();
        assert_eq!(lost, [("XSY-0012".to_string(), "ffff".to_string())]);
        assert!(!t.own_claims(&s, later).unwrap()[0].stale);
    }

    #[test]
    fn reconciliation_classifies_states_and_recognises_fresh_handoffs() {
        let (_dir, t) = tracker(FIXTURE);
        let s = settings();
        let start = at("2026-05-01T00:00:00Z");
        let runs: Vec<(String, OffsetDateTime)> = ["XSY-0002", "XSY-0003", "XSY-0008", "XSY-9999"]
            .iter()
            .map(|id| (id.to_string(), start))
            .collect();
        let seen = t.fetch_issue_states_by_ids(&s, &runs).unwrap();
        assert_eq!(seen["XSY-0002"], Observed::Terminal);
        assert_eq!(seen["XSY-0003"], Observed::Active("todo".into()));
        assert_eq!(seen["XSY-0008"], Observed::Inactive, "blocked");
        assert!(!seen.contains_key("XSY-9999"));
        t.claim(&s, "XSY-0003", start).unwrap();
        let handoff = Handoff {
            summary: Some("done".into()),
            ..Handoff::default()
        };
        t.record_handoff(&s, "XSY-0003", Some(&handoff), "proofs/XSY-0003/x", start)
            .unwrap();
        let seen = t.fetch_issue_states_by_ids(&s, &runs).unwrap();
        assert_eq!(seen["XSY-0003"], Observed::HandedOff);
        let older_run = [("XSY-0003".to_string(), at("2026-05-01T00:00:01Z"))];
        let seen = t.fetch_issue_states_by_ids(&s, &older_run).unwrap();
        assert_eq!(
            seen["XSY-0003"],
            Observed::Inactive,
            "handoff predates the run"
        );
        let record = t.fetch_issue("XSY-0003").unwrap().unwrap();
        assert_eq!(record["handoff"]["proofs_dir"], "proofs/XSY-0003/x");
        assert!(!record.contains_key("claim"), "released with the handoff");
    }

    #[test]
    fn cli_handoffs_get_the_proofs_link_and_a_missing_handoff_is_refused() {
        let (_dir, t) = tracker(FIXTURE);
        let s = settings();
        let now = at("2026-05-01T00:00:00Z");
        t.claim(&s, "XSY-0004", now).unwrap();
        let err = t
            .record_handoff(&s, "XSY-0004", None, "proofs/p", now)
            .unwrap_err();
        assert!(err.to_string().contains("no handoff object"), "{err}");
        let agent = Handoff {
            summary: Some("by the CLI".into()),
            validation: vec![ValidationRun {
                command: "true".into(),
                status: "passed".into(),
                note: None,
                exit_code: Some(0),
                extra: Map::new(),
            }],
            ..Handoff::default()
        };
        t.store
            .transact(|tx| ops::handoff(tx, "XSY-0004", &agent, &s.states, now))
            .unwrap();
        t.record_handoff(&s, "XSY-0004", None, "proofs/p", now)
            .unwrap();
        let record = t.fetch_issue("XSY-0004").unwrap().unwrap();
        assert_eq!(record["handoff"]["proofs_dir"], "proofs/p");
        assert_eq!(record["handoff"]["summary"], "by the CLI");
        assert!(is_handed_off(&record, &s.states, now));
    }

    #[test]
    fn startup_cleanup_reads_terminal_issues_and_empty_lists_read_nothing() {
        let (_dir, t) = tracker(FIXTURE);
        let done = t
            .fetch_issues_by_states(&["done".into(), "cancelled".into()])
            .unwrap();
        assert!(done.iter().any(|i| i.id == "XSY-0002"));
        assert!(
            done.iter()
                .all(|i| i.state == "done" || i.state == "cancelled")
        );
        let missing = GitIssues::new(Path::new("/nonexistent/issues.jsonl"), NODE);
        assert!(missing.fetch_issues_by_states(&[]).unwrap().is_empty());
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn handoff_commits_hold_only_that_record_and_its_proofs() {
        let (dir, t) = tracker(FIXTURE);
        git(dir.path(), &["init", "-q", "-b", "main"]);
        git(dir.path(), &["config", "user.name", "T"]);
        git(dir.path(), &["config", "user.email", "t@example.com"]);
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-qm", "init"]);
        let s = settings();
        let now = at("2026-05-01T00:00:00Z");
        t.claim(&s, "XSY-0003", now).unwrap();
        t.claim(&s, "XSY-0004", now).unwrap();
        let handoff = Handoff {
            summary: Some("done".into()),
            ..Handoff::default()
        };
        t.record_handoff(&s, "XSY-0003", Some(&handoff), "proofs/XSY-0003/t", now)
            .unwrap();
        let proofs = dir.path().join("proofs/XSY-0003/t");
        std::fs::create_dir_all(&proofs).unwrap();
        std::fs::write(proofs.join("manifest.json"), "{}").unwrap();
        t.commit_record("XSY-0003", &proofs, "XSY-0003: handoff")
            .unwrap();
        let committed = git(dir.path(), &["show", "HEAD:issues/issues.jsonl"]);
        let current = std::fs::read_to_string(t.path()).unwrap();
        let differs = |a: &str, b: &str| -> Vec<usize> {
            a.lines()
                .zip(b.lines())
                .enumerate()
                .filter(|(_, (x, y))| x != y)
                .map(|(i, _)| i + 1)
                .collect()
        };
        assert_eq!(differs(FIXTURE, &committed), [3], "only XSY-0003 committed");
        assert_eq!(
            differs(&committed, &current),
            [4],
            "XSY-0004's claim stays local"
        );
        assert_eq!(
            git(dir.path(), &["show", "--name-only", "--format=", "HEAD"]),
            "issues/issues.jsonl\nproofs/XSY-0003/t/manifest.json\n"
        );
    }
}
