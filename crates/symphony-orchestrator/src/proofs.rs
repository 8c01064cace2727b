//! The proofs of one run attempt: `proofs/<identifier>/<utc>/` under the repository root (the
//! workflow file's directory), linked from the handoff as `handoff.proofs_dir` and committed
//! with it (design.md, Orchestrator).
//!
//! Layout of an attempt directory:
//!
//! | file | content |
//! |---|---|
//! | `agent.stdout.log`, `agent.stderr.log` | the agent's raw output, all turns |
//! | `prompt.md` | the prompt of the last turn |
//! | `hooks/<hook>.json` | each hook run: status, timing, output tails ([`HookOutcome`]) |
//! | `handoff.json` / `handoff.rejected.json` | the agent's handoff file, when it wrote one |
//! | `manifest.json` | [`Manifest`]: issue, attempt, timestamps, outcome, session, tokens, files |
//!
//! `<utc>` is the attempt's start, `YYYYMMDDTHHMMSSZ`; a second attempt in the same second
//! gets `-2`, `-3`, ... appended. `<identifier>` is the workspace key of the identifier, so
//! it is always one safe path component.

use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use crate::hooks::HookOutcome;
use crate::runner::{AgentLogs, TokenUsage};
use crate::workspace::workspace_key;

/// The directory holding every issue's proofs, relative to the repository root.
pub const PROOFS_DIR: &str = "proofs";
/// The manifest file name.
pub const MANIFEST_FILE: &str = "manifest.json";

/// A proofs failure: the path and what could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: cannot {op}: {reason}")]
pub struct ProofsError {
    /// The file or directory.
    pub path: PathBuf,
    /// What was being done.
    pub op: &'static str,
    /// The OS or serializer error.
    pub reason: String,
}

/// The proofs directory of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptProofs {
    dir: PathBuf,
    relative: String,
}

/// What the manifest says about the attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// Tracker id.
    pub issue_id: String,
    /// Human identifier.
    pub issue_identifier: String,
    /// `None` on the first run, else the retry/continuation attempt.
    pub attempt: Option<u32>,
    /// This node's id.
    pub node: String,
    /// When the attempt started (UTC, RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it ended.
    #[serde(with = "time::serde::rfc3339")]
    pub ended_at: OffsetDateTime,
    /// `handed_off`, `continuation`, `left_active_states`, `failed` or `stopped`.
    pub outcome: String,
    /// How the handoff arrived (`cli` or `file`), for handed-off attempts.
    pub handoff_via: Option<String>,
    /// Why the attempt failed or stopped: a stable kind and a message.
    pub error: Option<ManifestError>,
    /// The agent session id, when known.
    pub session_id: Option<String>,
    /// Agent turns run.
    pub turns: u32,
    /// Session token totals, when the agent reported usage.
    pub tokens: Option<TokenUsage>,
    /// The workspace the agent ran in.
    pub workspace: Option<String>,
    /// Files of this directory (relative, sorted), the manifest excluded.
    pub files: Vec<String>,
}

/// The error of a failed or stopped attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestError {
    /// Stable class (`agent_crashed`, `hook_timeout`, `handoff_invalid`, `stalled`...).
    pub kind: String,
    /// What happened.
    pub message: String,
}

fn proofs_error(path: &Path, op: &'static str, reason: impl ToString) -> ProofsError {
    ProofsError {
        path: path.to_path_buf(),
        op,
        reason: reason.to_string(),
    }
}

/// `YYYYMMDDTHHMMSSZ` of `at` in UTC.
pub fn utc_stamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

impl AttemptProofs {
    /// Creates `proofs/<key of identifier>/<utc of started>/` under `repo_root`.
    ///
    /// # Errors
    /// [`ProofsError`] when the identifier cannot name a directory or the directory cannot
    /// be created.
    pub fn create(
        repo_root: &Path,
        identifier: &str,
        started: OffsetDateTime,
    ) -> Result<Self, ProofsError> {
        let key = workspace_key(identifier)
            .map_err(|e| proofs_error(repo_root, "name the proofs directory", e))?;
        let parent = repo_root.join(PROOFS_DIR).join(&key);
        std::fs::create_dir_all(&parent)
            .map_err(|e| proofs_error(&parent, "create the proofs directory", e))?;
        let stamp = utc_stamp(started);
        for n in 1u32.. {
            let name = if n == 1 {
                stamp.clone()
            } else {
                format!("{stamp}-{n}")
            };
            let dir = parent.join(&name);
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    return Ok(AttemptProofs {
                        relative: format!("{PROOFS_DIR}/{key}/{name}"),
                        dir,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(proofs_error(&dir, "create the proofs directory", e)),
            }
        }
        Err(proofs_error(
            &parent,
            "create the proofs directory",
            "no free name",
        ))
    }

    /// The newest attempt directory of `identifier` under `repo_root`, relative to it
    /// (`proofs/<key>/<utc>[-n]`); `None` when the issue has none. For restart recovery of a
    /// handoff whose attempt was killed before it linked its proofs.
    pub fn latest(repo_root: &Path, identifier: &str) -> Option<String> {
        let key = workspace_key(identifier).ok()?;
        let parent = repo_root.join(PROOFS_DIR).join(&key);
        let order = |name: &str| {
            let (stamp, n) = name.split_once('-').unwrap_or((name, "1"));
            (stamp.to_string(), n.parse::<u32>().unwrap_or(0))
        };
        std::fs::read_dir(&parent)
            .ok()?
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .max_by_key(|name| order(name))
            .map(|name| format!("{PROOFS_DIR}/{key}/{name}"))
    }

    /// The absolute directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory relative to the repository root (`proofs/XSY-0003/20261121T140000Z`),
    /// as written into `handoff.proofs_dir`.
    pub fn relative(&self) -> &str {
        &self.relative
    }

    /// Where the runner writes the agent's stdout, stderr and prompt.
    pub fn agent_logs(&self) -> AgentLogs {
        AgentLogs {
            stdout: self.dir.join("agent.stdout.log"),
            stderr: self.dir.join("agent.stderr.log"),
            prompt: self.dir.join("prompt.md"),
        }
    }

    /// Writes `hooks/<hook>.json`.
    ///
    /// # Errors
    /// [`ProofsError`] when the file cannot be written.
    pub fn record_hook(&self, outcome: &HookOutcome) -> Result<(), ProofsError> {
        let path = self
            .dir
            .join("hooks")
            .join(format!("{}.json", outcome.kind.as_str()));
        write_json(&path, outcome)
    }

    /// Copies `source` into the directory as `name` (the agent's handoff file).
    ///
    /// # Errors
    /// [`ProofsError`] when the copy fails.
    pub fn keep(&self, source: &Path, name: &str) -> Result<(), ProofsError> {
        let target = self.dir.join(name);
        std::fs::copy(source, &target)
            .map(|_| ())
            .map_err(|e| proofs_error(&target, "copy a file into the proofs", e))
    }

    /// Files of the directory, relative and sorted, the manifest excluded.
    pub fn files(&self) -> Vec<String> {
        let mut files = Vec::new();
        list_files(&self.dir, &self.dir, &mut files);
        files.retain(|f| f != MANIFEST_FILE);
        files.sort();
        files
    }

    /// Writes `manifest.json` with [`Manifest::files`] filled in.
    ///
    /// # Errors
    /// [`ProofsError`] when the file cannot be written.
    pub fn write_manifest(&self, mut manifest: Manifest) -> Result<(), ProofsError> {
        manifest.files = self.files();
        write_json(&self.dir.join(MANIFEST_FILE), &manifest)
    }
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            list_files(root, &path, out);
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_string_lossy().into_owned());
        }
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), ProofsError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| proofs_error(parent, "create the proofs directory", e))?;
    }
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| proofs_error(path, "serialize the proofs record", e))?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| proofs_error(path, "write the proofs record", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        symphony_tracker::model::parse_timestamp(text).unwrap()
    }

    #[test]
    fn attempt_directories_are_named_by_utc_start_and_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let t = at("2026-11-21T15:00:00+01:00");
        let first = AttemptProofs::create(dir.path(), "XSY-0003", t).unwrap();
        assert_eq!(first.relative(), "proofs/XSY-0003/20261121T140000Z");
        let second = AttemptProofs::create(dir.path(), "XSY-0003", t).unwrap();
        assert_eq!(second.relative(), "proofs/XSY-0003/20261121T140000Z-2");
        assert!(second.dir().is_dir());
        let odd = AttemptProofs::create(dir.path(), "a/../b", t).unwrap();
        assert!(
            odd.relative().starts_with("proofs/a_.._b-"),
            "{}",
            odd.relative()
        );
    }

    #[test]
    fn the_manifest_lists_the_files_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let t = at("2026-11-21T14:00:00Z");
        let proofs = AttemptProofs::create(dir.path(), "XSY-0003", t).unwrap();
        std::fs::write(proofs.agent_logs().stdout, "out\n").unwrap();
        std::fs::create_dir_all(proofs.dir().join("hooks")).unwrap();
        std::fs::write(proofs.dir().join("hooks/before_run.json"), "{}").unwrap();
        proofs
            .write_manifest(Manifest {
                issue_id: "XSY-0003".into(),
                issue_identifier: "XSY-0003".into(),
                attempt: None,
                node: "n".into(),
                started_at: t,
                ended_at: t,
                outcome: "failed".into(),
                handoff_via: None,
                error: Some(ManifestError {
                    kind: "agent_crashed".into(),
                    message: "exit 1".into(),
                }),
                session_id: None,
                turns: 1,
                tokens: None,
                workspace: None,
                files: Vec::new(),
            })
            .unwrap();
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(proofs.dir().join(MANIFEST_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            manifest["files"],
            serde_json::json!(["agent.stdout.log", "hooks/before_run.json"])
        );
        assert_eq!(manifest["started_at"], "2026-11-21T14:00:00Z");
        assert_eq!(manifest["error"]["kind"], "agent_crashed");
    }
}
