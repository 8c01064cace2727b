//! Per-issue workspaces (Symphony SPEC §9): deterministic directories under the workspace root,
//! reused across attempts, never allowed to resolve outside the root.
//!
//! Key format: the identifier with every character outside `[A-Za-z0-9._-]` replaced by `_`; when
//! that changed anything (or the identifier is longer than [`MAX_KEY_PREFIX`] bytes), `-` and the
//! first 16 hex digits (64 bits) of the identifier's SHA-256 are appended, so `a/b` (`a_b-…`) and
//! `a_b` (`a_b`) never share a directory. `""`, `.` and `..` are refused.
//!
//! Policies: an existing non-directory at the workspace path is refused (never deleted); a symlink
//! at the workspace path is refused whatever it points to; a workspace whose `after_create` hook
//! fails is removed so the next attempt creates it afresh, and so is one whose `after_create`
//! was cut off (a `.<key>.creating` marker beside it, [`CREATING_SUFFIX`]). A reused workspace
//! is otherwise left exactly as the last attempt left it: the current SPEC (1f3219b, §9.2) no
//! longer removes `tmp/` or `.elixir_ls/`, and a repository may track a `tmp/` directory.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::HooksConfig;
use crate::hooks::{HookError, HookKind, HookOutcome, run_configured_hook};

/// Longest sanitized identifier kept before the hash suffix takes over (bytes).
pub const MAX_KEY_PREFIX: usize = 128;
/// Suffix of `<root>/.<key>.creating`, which exists while a new workspace's `after_create`
/// runs: a workspace found with it was cut off mid-creation (a killed orchestrator) and is
/// created afresh instead of being used half-made.
pub const CREATING_SUFFIX: &str = ".creating";

/// A workspace failure. [`WorkspaceError::kind`] gives the stable class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceError {
    /// The identifier cannot name a directory (`""`, `.`, `..`).
    #[error("issue identifier {identifier:?} cannot name a workspace directory")]
    InvalidKey {
        /// The identifier.
        identifier: String,
    },
    /// The workspace path resolves somewhere other than its own directory under the root
    /// (a symlink, or a path outside the root) — SPEC §9.5 invariant 2.
    #[error(
        "{path}: workspace resolves to {resolved}, not to a directory of its own under the workspace root {root}"
    )]
    OutsideRoot {
        /// The workspace path.
        path: PathBuf,
        /// Where it actually resolves.
        resolved: PathBuf,
        /// The canonical workspace root.
        root: PathBuf,
    },
    /// Something other than a directory sits at the workspace path; it is left untouched.
    #[error("{path}: exists and is not a directory; move it away to let the workspace be created")]
    NotADirectory {
        /// The workspace path.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("{path}: cannot {op}: {reason}")]
    Io {
        /// The path operated on.
        path: PathBuf,
        /// What was being done (`create directory`...).
        op: &'static str,
        /// The OS error.
        reason: String,
    },
    /// The `after_create` hook failed; the new directory was removed.
    #[error("{path}: workspace creation aborted: {error}")]
    AfterCreateFailed {
        /// The workspace path.
        path: PathBuf,
        /// The hook failure.
        error: HookError,
        /// The hook run, with its output.
        outcome: Box<HookOutcome>,
    },
}

impl WorkspaceError {
    /// Stable class: `invalid_workspace_key`, `workspace_outside_root`,
    /// `workspace_not_a_directory`, `workspace_io`, `after_create_failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidKey { .. } => "invalid_workspace_key",
            Self::OutsideRoot { .. } => "workspace_outside_root",
            Self::NotADirectory { .. } => "workspace_not_a_directory",
            Self::Io { .. } => "workspace_io",
            Self::AfterCreateFailed { .. } => "after_create_failed",
        }
    }
}

fn io_error(path: &Path, op: &'static str, e: &std::io::Error) -> WorkspaceError {
    WorkspaceError::Io {
        path: path.to_path_buf(),
        op,
        reason: e.to_string(),
    }
}

/// The workspace directory name for `identifier` (see the module docs for the format).
///
/// # Errors
/// `invalid_workspace_key` for `""`, `.` and `..`.
pub fn workspace_key(identifier: &str) -> Result<String, WorkspaceError> {
    if matches!(identifier, "" | "." | "..") {
        return Err(WorkspaceError::InvalidKey {
            identifier: identifier.to_owned(),
        });
    }
    let sanitized: String = identifier
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if sanitized == identifier && sanitized.len() <= MAX_KEY_PREFIX {
        return Ok(sanitized);
    }
    let digest = Sha256::digest(identifier.as_bytes());
    let prefix = &sanitized[..sanitized.len().min(MAX_KEY_PREFIX)];
    Ok(format!("{prefix}-{}", hex::encode(&digest[..8])))
}

/// A prepared workspace (SPEC §4.1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// Canonical absolute path; the agent's working directory.
    pub path: PathBuf,
    /// The directory name ([`workspace_key`]).
    pub key: String,
    /// True when this preparation created the directory.
    pub created_now: bool,
}

/// The result of [`WorkspaceManager::prepare`].
#[derive(Debug, Clone)]
pub struct PreparedWorkspace {
    /// The workspace.
    pub workspace: Workspace,
    /// The `after_create` run, when the directory was new and the hook is configured.
    pub after_create: Option<HookOutcome>,
}

/// The result of [`WorkspaceManager::remove`].
#[derive(Debug, Clone)]
pub struct RemovedWorkspace {
    /// True when a directory was deleted.
    pub removed: bool,
    /// The `before_remove` run, when the directory existed and the hook is configured.
    pub before_remove: Option<HookOutcome>,
}

/// Creates, reuses and removes workspaces under one root (SPEC §9.2). Cheap to construct:
/// build one per operation from the current config so `workspace.root` reloads apply.
#[derive(Debug, Clone)]
pub struct WorkspaceManager {
    root: PathBuf,
}

impl WorkspaceManager {
    /// A manager for `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The configured root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/key` as configured, without touching the filesystem (for status surfaces).
    ///
    /// # Errors
    /// `invalid_workspace_key`.
    pub fn path_for(&self, identifier: &str) -> Result<PathBuf, WorkspaceError> {
        Ok(self.root.join(workspace_key(identifier)?))
    }

    async fn created_root(&self) -> Result<PathBuf, WorkspaceError> {
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|e| io_error(&self.root, "create the workspace root", &e))?;
        tokio::fs::canonicalize(&self.root)
            .await
            .map_err(|e| io_error(&self.root, "resolve the workspace root", &e))
    }

    async fn existing_root(&self) -> Result<Option<PathBuf>, WorkspaceError> {
        match tokio::fs::canonicalize(&self.root).await {
            Ok(root) => Ok(Some(root)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&self.root, "resolve the workspace root", &e)),
        }
    }

    /// Ensures the workspace for `identifier` exists as a directory inside the root, removes
    /// temporary artefacts, and runs `after_create` when the directory is new (SPEC §9.2).
    /// `env` is added to the hook's environment.
    ///
    /// # Errors
    /// `invalid_workspace_key`, `workspace_outside_root` (for example a planted symlink),
    /// `workspace_not_a_directory`, `workspace_io`, `after_create_failed`.
    pub async fn prepare(
        &self,
        identifier: &str,
        hooks: &HooksConfig,
        env: &[(String, String)],
    ) -> Result<PreparedWorkspace, WorkspaceError> {
        let key = workspace_key(identifier)?;
        let root = self.created_root().await?;
        let path = root.join(&key);
        let creating = root.join(format!(".{key}{CREATING_SUFFIX}"));
        let created_now = match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(outside_root(&path, &root).await);
            }
            Ok(meta) if meta.is_dir() => false,
            Ok(_) => return Err(WorkspaceError::NotADirectory { path }),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Marked before the directory exists: a kill at any point after leaves the mark.
                tokio::fs::write(&creating, b"")
                    .await
                    .map_err(|e| io_error(&creating, "mark the workspace as being created", &e))?;
                match tokio::fs::create_dir(&path).await {
                    Ok(()) => true,
                    // Another preparation won the race; re-check what is there now.
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        return Box::pin(self.prepare(identifier, hooks, env)).await;
                    }
                    Err(e) => return Err(io_error(&path, "create the workspace directory", &e)),
                }
            }
            Err(e) => return Err(io_error(&path, "inspect the workspace path", &e)),
        };
        ensure_inside_root(&root, &path).await?;
        let mut created_now = created_now;
        if !created_now && creating.exists() {
            tracing::warn!(path = %path.display(), "the workspace's creation was interrupted (after_create never finished); creating it afresh");
            tokio::fs::remove_dir_all(&path)
                .await
                .map_err(|e| io_error(&path, "remove a half-created workspace", &e))?;
            tokio::fs::create_dir(&path)
                .await
                .map_err(|e| io_error(&path, "create the workspace directory", &e))?;
            created_now = true;
        }
        let mut after_create = None;
        if created_now {
            after_create = run_configured_hook(HookKind::AfterCreate, hooks, &path, env).await;
            if let Some(outcome) = &after_create
                && let Err(error) = outcome.check()
            {
                if let Err(e) = tokio::fs::remove_dir_all(&path).await {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove the workspace after a failed after_create hook");
                }
                let _ = tokio::fs::remove_file(&creating).await;
                return Err(WorkspaceError::AfterCreateFailed {
                    path,
                    error,
                    outcome: Box::new(outcome.clone()),
                });
            }
            tokio::fs::remove_file(&creating)
                .await
                .map_err(|e| io_error(&creating, "mark the workspace as created", &e))?;
        }
        Ok(PreparedWorkspace {
            workspace: Workspace {
                path,
                key,
                created_now,
            },
            after_create,
        })
    }

    /// Deletes the workspace for `identifier` if it exists, running `before_remove` first
    /// (its failure is logged and ignored, SPEC §9.4).
    ///
    /// # Errors
    /// `invalid_workspace_key`, `workspace_outside_root` (a symlink is never followed or
    /// deleted), `workspace_not_a_directory`, `workspace_io`.
    pub async fn remove(
        &self,
        identifier: &str,
        hooks: &HooksConfig,
        env: &[(String, String)],
    ) -> Result<RemovedWorkspace, WorkspaceError> {
        let key = workspace_key(identifier)?;
        let nothing = RemovedWorkspace {
            removed: false,
            before_remove: None,
        };
        let Some(root) = self.existing_root().await? else {
            return Ok(nothing);
        };
        let path = root.join(&key);
        match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(outside_root(&path, &root).await);
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(WorkspaceError::NotADirectory { path }),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(nothing),
            Err(e) => return Err(io_error(&path, "inspect the workspace path", &e)),
        }
        ensure_inside_root(&root, &path).await?;
        let before_remove = run_configured_hook(HookKind::BeforeRemove, hooks, &path, env).await;
        tokio::fs::remove_dir_all(&path)
            .await
            .map_err(|e| io_error(&path, "remove the workspace", &e))?;
        tracing::info!(path = %path.display(), "workspace removed");
        Ok(RemovedWorkspace {
            removed: true,
            before_remove,
        })
    }
}

async fn outside_root(path: &Path, root: &Path) -> WorkspaceError {
    let resolved = tokio::fs::canonicalize(path)
        .await
        .or_else(|_| std::fs::read_link(path))
        .unwrap_or_else(|_| path.to_path_buf());
    WorkspaceError::OutsideRoot {
        path: path.to_path_buf(),
        resolved,
        root: root.to_path_buf(),
    }
}

/// SPEC §9.5 invariants 1 and 2: `path` must be canonical (no symlink anywhere in it), a
/// directory, strictly inside the canonical `root`. Returns the canonical root.
///
/// # Errors
/// `workspace_outside_root`, `workspace_not_a_directory`, `workspace_io`.
pub async fn ensure_inside_root(root: &Path, path: &Path) -> Result<PathBuf, WorkspaceError> {
    let root = tokio::fs::canonicalize(root)
        .await
        .map_err(|e| io_error(root, "resolve the workspace root", &e))?;
    let resolved = tokio::fs::canonicalize(path)
        .await
        .map_err(|e| io_error(path, "resolve the workspace path", &e))?;
    if resolved != path || resolved == root || !resolved.starts_with(&root) {
        return Err(WorkspaceError::OutsideRoot {
            path: path.to_path_buf(),
            resolved,
            root,
        });
    }
    if !tokio::fs::metadata(&resolved)
        .await
        .is_ok_and(|m| m.is_dir())
    {
        return Err(WorkspaceError::NotADirectory { path: resolved });
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_workspace_whose_after_create_was_cut_off_is_created_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let manager = WorkspaceManager::new(dir.path());
        let hooks = HooksConfig {
            after_create: Some("echo made > made".into()),
            before_run: None,
            after_run: None,
            before_remove: None,
            timeout_ms: 10_000,
        };
        // What a kill during after_create leaves: the mark and a half-made directory.
        std::fs::create_dir_all(dir.path().join("W-1/half")).unwrap();
        std::fs::write(dir.path().join(".W-1.creating"), "").unwrap();
        let prepared = manager.prepare("W-1", &hooks, &[]).await.unwrap();
        assert!(prepared.workspace.created_now);
        assert!(
            !dir.path().join("W-1/half").exists(),
            "half-made content removed"
        );
        assert!(
            dir.path().join("W-1/made").exists(),
            "after_create ran again"
        );
        assert!(!dir.path().join(".W-1.creating").exists());
        // A finished workspace is reused as it is.
        std::fs::write(dir.path().join("W-1/work"), "kept").unwrap();
        let again = manager.prepare("W-1", &hooks, &[]).await.unwrap();
        assert!(!again.workspace.created_now);
        assert!(dir.path().join("W-1/work").exists());
    }

    #[test]
    fn clean_identifiers_are_their_own_key() {
        assert_eq!(workspace_key("XSY-0001").unwrap(), "XSY-0001");
        assert_eq!(workspace_key("a.b_c-D").unwrap(), "a.b_c-D");
    }

    #[test]
    fn sanitized_keys_carry_a_hash_of_the_original() {
        let slash = workspace_key("a/b").unwrap();
        let space = workspace_key("a b").unwrap();
        assert!(slash.starts_with("a_b-"), "{slash}");
        assert_eq!(slash.len(), "a_b-".len() + 16);
        assert_ne!(slash, space);
        assert_ne!(slash, workspace_key("a_b").unwrap());
        assert_eq!(slash, workspace_key("a/b").unwrap(), "deterministic");
        let key = workspace_key("../../etc").unwrap();
        assert!(
            key.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        );
    }

    #[test]
    fn dot_names_and_empty_are_refused() {
        for bad in ["", ".", ".."] {
            assert_eq!(
                workspace_key(bad).unwrap_err().kind(),
                "invalid_workspace_key"
            );
        }
    }

    #[test]
    fn long_identifiers_are_cut_and_hashed() {
        let long = "x".repeat(400);
        let key = workspace_key(&long).unwrap();
        assert_eq!(key.len(), MAX_KEY_PREFIX + 17);
    }
}
