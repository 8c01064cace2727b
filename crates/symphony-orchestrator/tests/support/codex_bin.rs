//! Where the real-binary tests find the codex that `.ci/install-codex.sh` installed. Shared by
//! this crate's tests and the top-level ones (`#[path]`), since both target the same install.

use std::path::{Path, PathBuf};

/// The installed codex of `version` (`$SYMPHONY_CODEX_BIN`, else the install script's cache
/// under `~/.cache/symphony/`), or `None` after a loud skip message naming `test`.
pub fn installed_codex(test: &str, version: &str) -> Option<PathBuf> {
    let from_env = std::env::var_os("SYMPHONY_CODEX_BIN").filter(|v| !v.is_empty());
    let cached = std::env::var_os("HOME").map(|home| {
        Path::new(&home).join(format!(
            ".cache/symphony/codex-{version}/node_modules/.bin/codex"
        ))
    });
    let bin = from_env
        .map(PathBuf::from)
        .or(cached)
        .filter(|p| p.is_file());
    if bin.is_none() {
        eprintln!(
            "\n!!!!! SKIPPED {test}: no codex binary (run .ci/install-codex.sh, or set \
             SYMPHONY_CODEX_BIN) !!!!!\n"
        );
    }
    bin
}
