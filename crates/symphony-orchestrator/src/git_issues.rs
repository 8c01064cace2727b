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
use crate::scheduler::{Candidate, Observed};

/// The tracker settings a call needs, taken from the current (reloadable) workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerSettings {
    /// What each state means.
    pub states: StateConfig,
    /// `claims.ttl_ms`: TTL frozen onto new shard slates, and the staleness bound of claims
    /// on records without a slate.
    pub claim_ttl_ms: u64,
    /// Labels (lowercase) a candidate must all carry; empty means no filter.
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

/// What [`GitIssues::fetch_candidate_issues`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidates {
    /// Issues this node may claim now, in dispatch order.
    pub ready: Vec<Candidate>,
    /// Ready issues this node may not claim, in file order.
    pub unclaimable: Vec<Unclaimable>,
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

    /// SPEC §11.1 `fetch_candidate_issues`: ready issues (active, blockers terminal, no live
    /// claim of another node — [`symphony_tracker::ready`]) carrying the required labels
    /// that this node may claim now under the sharded TTL rules with roster `[this node]`,
    /// in dispatch order (SPEC §8.2). Issues this node holds a live claim on are included
    /// (restart recovery resumes them; the scheduler skips the ones it runs). A slate of
    /// nodes that are all gone, past the TTL, counts as this node's
    /// ([`claims::reshard_orphaned`]; the claim writes the new slate).
    ///
    /// Ready issues this node may not claim are returned in [`Candidates::unclaimable`] with
    /// the reason, so an issue that `symphony issues ready` lists but no run picks up says why.
    ///
    /// Errors: the file cannot be read or a line is not a record (the tick skips dispatch).
    pub fn fetch_candidate_issues(
        &self,
        settings: &TrackerSettings,
        now: OffsetDateTime,
    ) -> Result<Candidates, TrackerError> {
        let heads = self.store.read_heads()?;
        let index = ReadyIndex::new(&heads, &settings.states, settings.claim_ttl_ms, now);
        let roster = [self.node.as_str()];
        let mut eligible = Vec::new();
        let mut unclaimable = Vec::new();
        let labelled: Vec<_> = heads
            .iter()
            .filter(|head| {
                settings.required_labels.iter().all(|required| {
                    head.labels()
                        .any(|label| label.trim().eq_ignore_ascii_case(required))
                })
            })
            .filter(|&head| match index.readiness(head) {
                Readiness::Ready => true,
                Readiness::Claimed(holder) if holder == self.node => true,
                Readiness::Claimed(holder) => {
                    let held = ClaimDecision::Held {
                        holder: holder.to_string(),
                    };
                    unclaimable.push(Unclaimable {
                        issue_id: head.id().to_string(),
                        issue_identifier: head.identifier().to_string(),
                        reason: refusal(&held, head.shard()),
                    });
                    false
                }
                _ => false,
            })
            .collect();
        for head in labelled {
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
                    None => continue,
                },
            };
            match claims::decide(&self.node, &shard, head.claim(), last_activity, now) {
                ClaimDecision::Grant { .. } => eligible.push(head),
                refused => unclaimable.push(Unclaimable {
                    issue_id: head.id().to_string(),
                    issue_identifier: head.identifier().to_string(),
                    reason: refusal(&refused, Some(&shard)),
                }),
            }
        }
        sort_for_dispatch(&mut eligible);
        Ok(Candidates {
            ready: eligible
                .into_iter()
                .map(|head| Candidate {
                    id: head.id().to_string(),
                    identifier: head.identifier().to_string(),
                    state: head.state().to_string(),
                })
                .collect(),
            unclaimable,
        })
    }

    /// SPEC §11.1 `fetch_issue_states_by_ids`, for reconciliation: what the tracker says now
    /// about each running issue. `runs` pairs each id with the start of its run; an issue in
    /// a review state whose handoff is at least that recent was handed off by that run
    /// ([`Observed::HandedOff`]). Ids not in the file are absent from the result.
    ///
    /// Errors: the file cannot be read, or a running issue's line is not a record.
    pub fn fetch_issue_states_by_ids(
        &self,
        settings: &TrackerSettings,
        runs: &[(String, OffsetDateTime)],
    ) -> Result<HashMap<String, Observed>, TrackerError> {
        let document = self.store.read()?;
        let wanted: HashMap<&str, OffsetDateTime> =
            runs.iter().map(|(id, at)| (id.as_str(), *at)).collect();
        let mut observed = HashMap::new();
        for (index, _) in document.record_lines() {
            let id = document.id_of(index)?;
            let Some(&since) = wanted.get(id.as_ref()) else {
                continue;
            };
            let record = document.record(index)?;
            let state = string_field(&record, "state");
            let states = &settings.states;
            let seen = if states.is_terminal(&state) {
                Observed::Terminal
            } else if states.is_active(&state) {
                Observed::Active(state)
            } else if states.is_review(&state) && handed_off_since(&record, since) {
                Observed::HandedOff
            } else {
                Observed::Inactive
            };
            observed.insert(id.into_owned(), seen);
        }
        Ok(observed)
    }

    /// SPEC §11.1 `fetch_issues_by_states`, for start-up cleanup. An empty list reads nothing.
    ///
    /// Errors: the file cannot be read or a line is not a record.
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
        let document = self.store.read()?;
        Ok(document
            .heads()?
            .into_iter()
            .filter(|head| wanted.is_active(&head.state))
            .map(|head| IssueRef {
                id: head.id.into_owned(),
                identifier: head.identifier.into_owned(),
                state: head.state.into_owned(),
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
    ///
    /// Errors: the file cannot be read or a line is not a record.
    pub fn own_claims(
        &self,
        settings: &TrackerSettings,
        now: OffsetDateTime,
    ) -> Result<Vec<OwnClaim>, TrackerError> {
        let document = self.store.read()?;
        Ok(document
            .heads()?
            .into_iter()
            .filter_map(|head| {
                let claim = head.claim.as_ref().filter(|c| c.node == self.node)?;
                let shard = head.shard.clone().unwrap_or(symphony_tracker::Shard {
                    primary: self.node.clone(),
                    backups: Vec::new(),
                    claim_ttl_ms: settings.claim_ttl_ms,
                    created_view_epoch: 0,
                });
                Some(OwnClaim {
                    stale: claims::is_stale(claim, &shard, now),
                    id: head.id.into_owned(),
                    identifier: head.identifier.into_owned(),
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
    let since = parse_timestamp(&format_timestamp(since)).unwrap_or(since);
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

    fn ids(candidates: &[Candidate]) -> Vec<&str> {
        candidates.iter().map(|c| c.id.as_str()).collect()
    }

    #[test]
    fn spec_11_candidates_are_the_ready_issues_in_dispatch_order() {
        let (_dir, t) = tracker(FIXTURE);
        let now = at("2026-05-01T00:00:00Z");
        let candidates = t.fetch_candidate_issues(&settings(), now).unwrap().ready;
        assert_eq!(
            ids(&candidates),
            [
                "XSY-0027", "XSY-0003", "XSY-0004", "XSY-0005", "XSY-0011", "XSY-0012", "XSY-0030"
            ]
        );
        let labelled = TrackerSettings {
            required_labels: vec!["ci".into()],
            ..settings()
        };
        let with_label = t.fetch_candidate_issues(&labelled, now).unwrap().ready;
        assert!(with_label.len() < candidates.len());
        assert!(with_label.iter().all(|c| candidates.contains(c)));
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
        let theirs = other.fetch_candidate_issues(&s, now).unwrap().ready;
        assert!(
            !ids(&theirs).contains(&"XSY-0003"),
            "live claim of another node"
        );
        assert!(!theirs.is_empty(), "slates are frozen only when claimed");
        let mine = t.fetch_candidate_issues(&s, now).unwrap().ready;
        assert_eq!(mine[1].id, "XSY-0003");
        assert_eq!(mine[1].state, "in_progress", "the claim moved it");
        // A released issue keeps the slate [this node]: another node is not on it.
        assert!(t.release(&s, "XSY-0003").unwrap());
        let theirs = other.fetch_candidate_issues(&s, now).unwrap().ready;
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
