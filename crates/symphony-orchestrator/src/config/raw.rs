//! The front matter as written: serde shapes accepting the value forms SPEC §5.3 allows
//! (integers as strings, lists as comma-separated strings). Unknown keys are ignored (SPEC §5.3).
//! Deserializing straight from the YAML text lets serde_yaml report the key path and line of any
//! value of the wrong shape.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::{IdScheme, OutputFormat, RunnerKind};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawFrontMatter {
    pub tracker: Option<RawTracker>,
    pub polling: Option<RawPolling>,
    pub workspace: Option<RawWorkspace>,
    pub hooks: Option<RawHooks>,
    pub agent: Option<RawAgent>,
    pub runner: Option<RawRunner>,
    pub codex: Option<RawCodex>,
    pub claims: Option<RawClaims>,
    pub server: Option<RawServer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawTracker {
    pub kind: Option<String>,
    pub path: Option<String>,
    /// SPEC §5.3.1 `tracker.provider`: adapter-owned, kept as written.
    pub provider: Option<serde_yaml::Value>,
    pub active_states: Option<StrList>,
    pub terminal_states: Option<StrList>,
    pub review_states: Option<StrList>,
    pub blocked_states: Option<StrList>,
    pub id_prefix: Option<String>,
    pub id_scheme: Option<IdScheme>,
    pub required_labels: Option<StrList>,
    pub commit: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawPolling {
    pub interval_ms: Option<PosInt>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawWorkspace {
    pub root: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawHooks {
    pub after_create: Option<String>,
    pub before_run: Option<String>,
    pub after_run: Option<String>,
    pub before_remove: Option<String>,
    /// SPEC §5.3.4: an invalid value fails configuration validation.
    pub timeout_ms: Option<PosInt>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawAgent {
    pub max_concurrent_agents: Option<PosInt>,
    pub max_turns: Option<PosInt>,
    pub max_retry_backoff_ms: Option<PosInt>,
    pub max_concurrent_agents_by_state: Option<serde_yaml::Mapping>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawRunner {
    pub kind: Option<RunnerKind>,
    pub preset: Option<String>,
    pub command: Option<String>,
    pub continuation_command: Option<String>,
    pub output_format: Option<OutputFormat>,
    pub env: Option<StrList>,
    pub turn_timeout_ms: Option<PosInt>,
    pub read_timeout_ms: Option<PosInt>,
    pub stall_timeout_ms: Option<Int>,
    pub approval_policy: Option<serde_yaml::Value>,
    /// SPEC §5.3.6 `thread_sandbox`; `sandbox` is the older spelling.
    #[serde(alias = "sandbox")]
    pub thread_sandbox: Option<String>,
    pub turn_sandbox_policy: Option<serde_yaml::Value>,
}

/// The SPEC §5.3.6 `codex:` block, mapped onto the codex runner when no `runner:` block exists.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawCodex {
    pub command: Option<String>,
    pub turn_timeout_ms: Option<PosInt>,
    pub read_timeout_ms: Option<PosInt>,
    pub stall_timeout_ms: Option<Int>,
    pub approval_policy: Option<serde_yaml::Value>,
    /// SPEC §5.3.6 `thread_sandbox`; `sandbox` is the older spelling.
    #[serde(alias = "sandbox")]
    pub thread_sandbox: Option<String>,
    pub turn_sandbox_policy: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawClaims {
    pub ttl_ms: Option<PosInt>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawServer {
    pub port: Option<u16>,
}

/// An integer written as a YAML integer or as a string holding one (SPEC §5.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Int(pub i64);

/// A strictly positive [`Int`]; zero or negative is rejected with the key's location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PosInt(pub u64);

/// A list of strings written as a YAML list or a comma-separated string (SPEC §5.3.1). Items are
/// trimmed; empty items are dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct StrList(pub Vec<String>);

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = Int;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer or a string holding an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
        Ok(Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
        i64::try_from(v)
            .map(Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
        v.trim()
            .parse::<i64>()
            .map(Int)
            .map_err(|_| E::custom(format!("expected an integer, found \"{v}\"")))
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntVisitor)
    }
}

impl<'de> Deserialize<'de> for PosInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Int(v) = Int::deserialize(d)?;
        u64::try_from(v)
            .ok()
            .filter(|v| *v > 0)
            .map(PosInt)
            .ok_or_else(|| de::Error::custom(format!("expected a positive integer, found {v}")))
    }
}

struct StrListVisitor;

impl<'de> Visitor<'de> for StrListVisitor {
    type Value = StrList;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of strings or a comma-separated string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<StrList, E> {
        Ok(StrList(clean(v.split(','))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrList, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<String>()? {
            items.push(item);
        }
        Ok(StrList(clean(items.iter().map(String::as_str))))
    }
}

fn clean<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    items
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl<'de> Deserialize<'de> for StrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrListVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_accept_strings() {
        let v: Int = serde_yaml::from_str("\"42\"").unwrap();
        assert_eq!(v, Int(42));
        let v: Int = serde_yaml::from_str("-3").unwrap();
        assert_eq!(v, Int(-3));
        assert!(serde_yaml::from_str::<Int>("\"4x\"").is_err());
    }

    #[test]
    fn positive_integers_reject_zero() {
        let err = serde_yaml::from_str::<PosInt>("0").unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
    }

    #[test]
    fn lists_accept_comma_strings() {
        let v: StrList = serde_yaml::from_str("\"todo, In Progress ,\"").unwrap();
        assert_eq!(v.0, vec!["todo", "In Progress"]);
        let v: StrList = serde_yaml::from_str("[a, ' b ']").unwrap();
        assert_eq!(v.0, vec!["a", "b"]);
    }
}
