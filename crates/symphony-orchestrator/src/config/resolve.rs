//! `$VAR` and `~` resolution for config values (SPEC §6.1). Applied only to local filesystem
//! paths (`git_issues` has no secret keys); URIs and shell commands are never rewritten.

use std::path::{Component, Path, PathBuf};

/// Looks up an environment variable; the process environment in production, a map in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment as an [`EnvLookup`]. Non-UTF-8 values count as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Splits `$NAME rest` or `${NAME}rest` into `(NAME, rest)` when `raw` starts with one.
fn env_reference(raw: &str) -> Option<(&str, &str)> {
    let after = raw.strip_prefix('$')?;
    if let Some(braced) = after.strip_prefix('{') {
        let end = braced.find('}')?;
        let name = &braced[..end];
        return is_env_name(name).then(|| (name, &braced[end + 1..]));
    }
    let end = after
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(after.len());
    let name = &after[..end];
    is_env_name(name).then(|| (name, &after[end..]))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The outcome of resolving a path value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PathValue {
    /// An absolute path.
    Resolved(PathBuf),
    /// The value referred to a variable that is unset or empty: treat the key as missing.
    MissingVariable(String),
}

/// Resolves a path value: a leading `$NAME`/`${NAME}` or `~`/`~/` is expanded, then a relative
/// result is joined onto `base` (the workflow file's directory) and `.`/`..` are folded
/// lexically. Returns `None` for an empty value.
pub(super) fn resolve_path(raw: &str, base: &Path, env: EnvLookup<'_>) -> Option<PathValue> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let expanded = if let Some((name, rest)) = env_reference(raw) {
        match env(name).filter(|v| !v.is_empty()) {
            Some(value) => format!("{value}{rest}"),
            None => return Some(PathValue::MissingVariable(name.to_owned())),
        }
    } else if raw == "~" || raw.starts_with("~/") {
        match env("HOME").filter(|v| !v.is_empty()) {
            Some(home) => format!("{home}{}", &raw[1..]),
            None => return Some(PathValue::MissingVariable("HOME".to_owned())),
        }
    } else {
        raw.to_owned()
    };
    let path = Path::new(&expanded);
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    Some(PathValue::Resolved(fold_dots(&joined)))
}

/// Removes `.` components and folds `..` onto their parent without touching the filesystem.
fn fold_dots(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/me".into()),
            "WS" => Some("/srv/ws".into()),
            "KEY" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn paths_expand_home_variables_and_relative_parts() {
        let base = Path::new("/repo");
        let resolve = |raw| resolve_path(raw, base, &env);
        assert_eq!(
            resolve("~/ws"),
            Some(PathValue::Resolved("/home/me/ws".into()))
        );
        assert_eq!(
            resolve("$WS/a"),
            Some(PathValue::Resolved("/srv/ws/a".into()))
        );
        assert_eq!(
            resolve("${WS}"),
            Some(PathValue::Resolved("/srv/ws".into()))
        );
        assert_eq!(resolve("ws"), Some(PathValue::Resolved("/repo/ws".into())));
        assert_eq!(
            resolve("./a/../b"),
            Some(PathValue::Resolved("/repo/b".into()))
        );
        assert_eq!(
            resolve("$NOPE/x"),
            Some(PathValue::MissingVariable("NOPE".into()))
        );
        assert_eq!(resolve("  "), None);
    }
}
