//! Which issues are ready for an agent, and in which order (Symphony SPEC §8.2).
//!
//! Ready: the state is active, every blocker is in a terminal state (looked up live in the
//! file — the `state` snapshot inside a blocker ref is ignored), and no live claim exists.
//! A blocker that is not in the file (an external `project:slug` ref) never counts as
//! terminal. Stricter than the SPEC, which checks blockers only for `Todo`: an in-progress
//! issue whose blocker was reopened waits too.

use std::borrow::Cow;

use time::OffsetDateTime;

use crate::claims;
use crate::heads::{HeadRef, Heads};
use crate::model::{Shard, parse_timestamp};
use crate::states::StateConfig;

/// Why an issue is or is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready for an agent.
    Ready,
    /// Its state is not active.
    Inactive,
    /// Some blockers are not terminal (their ids, in ref order).
    Blocked(Vec<String>),
    /// A node holds a live claim.
    Claimed(String),
}

/// Readiness of every issue of a file, with blockers resolved against the file itself.
pub struct ReadyIndex<'h> {
    heads: &'h Heads,
    states: &'h StateConfig,
    claim_ttl_ms: u64,
    now: OffsetDateTime,
}

impl<'h> ReadyIndex<'h> {
    /// Readiness over `heads`. `claim_ttl_ms` applies to claims on records without a shard.
    pub fn new(
        heads: &'h Heads,
        states: &'h StateConfig,
        claim_ttl_ms: u64,
        now: OffsetDateTime,
    ) -> Self {
        ReadyIndex {
            heads,
            states,
            claim_ttl_ms,
            now,
        }
    }

    /// Why `head` is or is not ready.
    pub fn readiness(&self, head: HeadRef<'_>) -> Readiness {
        if !self.states.is_active(head.state()) {
            return Readiness::Inactive;
        }
        let open: Vec<String> = head
            .blocker_ids()
            .filter(|id| {
                self.heads
                    .get(id)
                    .is_none_or(|blocker| !self.states.is_terminal(blocker.state()))
            })
            .map(str::to_string)
            .collect();
        if !open.is_empty() {
            return Readiness::Blocked(open);
        }
        match head.claim() {
            Some(claim) if !claims::is_stale(claim, &self.shard_of(head), self.now) => {
                Readiness::Claimed(claim.node.clone())
            }
            _ => Readiness::Ready,
        }
    }

    fn shard_of<'s>(&self, head: HeadRef<'s>) -> Cow<'s, Shard> {
        match head.shard() {
            Some(shard) => Cow::Borrowed(shard),
            None => Cow::Owned(Shard {
                primary: String::new(),
                backups: Vec::new(),
                claim_ttl_ms: self.claim_ttl_ms,
                created_view_epoch: 0,
            }),
        }
    }
}

/// The ready issues of `heads`, in dispatch order.
pub fn ready<'h>(
    heads: &'h Heads,
    states: &StateConfig,
    claim_ttl_ms: u64,
    now: OffsetDateTime,
) -> Vec<HeadRef<'h>> {
    let index = ReadyIndex::new(heads, states, claim_ttl_ms, now);
    let mut ready: Vec<_> = heads
        .iter()
        .filter(|&head| index.readiness(head) == Readiness::Ready)
        .collect();
    sort_for_dispatch(&mut ready);
    ready
}

/// Sorts by SPEC §8.2: priority 1..4 ascending (0, null and others last), then oldest
/// `created_at` (unparseable last), then identifier.
pub fn sort_for_dispatch(issues: &mut [HeadRef<'_>]) {
    issues.sort_by_cached_key(|head| {
        let priority = head
            .priority()
            .filter(|p| (1..=4).contains(p))
            .unwrap_or(i64::MAX);
        let created = parse_timestamp(head.created_at()).ok();
        (priority, created.is_none(), created, head.identifier())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::DEFAULT_MAX_RECORD_BYTES;

    const COMPACT: &str = include_str!("../tests/fixtures/x0x-symphony.jsonl");

    fn heads(text: &str) -> Heads {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues.jsonl");
        std::fs::write(&path, text).unwrap();
        crate::heads::scan(&path, DEFAULT_MAX_RECORD_BYTES).unwrap()
    }

    fn line(id: &str, state: &str, priority: &str, created: &str, blocked_by: &[&str]) -> String {
        let blockers: Vec<String> = blocked_by
            .iter()
            .map(|b| format!("{{\"id\":\"{b}\"}}"))
            .collect();
        format!(
            "{{\"id\":\"{id}\",\"identifier\":\"{id}\",\"title\":\"t\",\"state\":\"{state}\",\"priority\":{priority},\"created_at\":\"{created}\",\"updated_at\":\"{created}\",\"blocked_by\":[{}]}}\n",
            blockers.join(",")
        )
    }

    #[test]
    fn fixture_ready_set_uses_live_blocker_states() {
        let heads = heads(COMPACT);
        let ready: Vec<&str> = ready(
            &heads,
            &StateConfig::default(),
            600_000,
            OffsetDateTime::now_utc(),
        )
        .iter()
        .map(|h| h.id())
        .collect();
        // XSY-0003..5 are blocked by XSY-0002, which is `done` in the file although their
        // refs still say `todo`. XSY-0020 is blocked by an external ref, so not ready.
        assert_eq!(
            ready,
            [
                "XSY-0027", "XSY-0003", "XSY-0004", "XSY-0005", "XSY-0011", "XSY-0012", "XSY-0030"
            ]
        );
    }

    #[test]
    fn sort_is_priority_then_age_then_identifier() {
        let text = [
            line("A-3", "todo", "null", "2026-01-01T00:00:00Z", &[]),
            line("A-2", "todo", "2", "2026-01-02T00:00:00Z", &[]),
            line("A-1", "todo", "2", "2026-01-02T00:00:00Z", &[]),
            line("A-4", "todo", "2", "2026-01-01T00:00:00Z", &[]),
            line("A-5", "todo", "0", "2025-01-01T00:00:00Z", &[]),
            line("A-6", "todo", "1", "2026-06-01T00:00:00+09:00", &[]),
        ]
        .concat();
        let heads = heads(&text);
        let order: Vec<&str> = ready(
            &heads,
            &StateConfig::default(),
            1,
            OffsetDateTime::now_utc(),
        )
        .iter()
        .map(|h| h.id())
        .collect();
        assert_eq!(order, ["A-6", "A-4", "A-1", "A-2", "A-5", "A-3"]);
    }

    #[test]
    fn live_claims_hide_issues_and_stale_ones_do_not() {
        let mut claimed = line("A-1", "in_progress", "1", "2026-01-01T00:00:00Z", &[]);
        claimed.truncate(claimed.len() - 2);
        claimed.push_str(",\"claim\":{\"node\":\"n1\",\"slot\":0,\"claimed_at\":\"2026-01-01T00:00:00Z\",\"heartbeat_at\":\"2026-01-01T00:00:00Z\"}}\n");
        let heads = heads(&claimed);
        let head = heads.iter().next().unwrap();
        let states = StateConfig::default();
        let at = |s| parse_timestamp(s).unwrap();
        let index = ReadyIndex::new(&heads, &states, 60_000, at("2026-01-01T00:00:30Z"));
        assert_eq!(index.readiness(head), Readiness::Claimed("n1".into()));
        let index = ReadyIndex::new(&heads, &states, 60_000, at("2026-01-01T00:05:00Z"));
        assert_eq!(index.readiness(head), Readiness::Ready);
    }
}
