//! `symphony init [DIR] [--prefix P] [--id-scheme sequential|hash]`: scaffolds a repository
//! for Symphony and reports each step, naming the id prefix it wrote. Existing files are never
//! overwritten; `.gitignore` and `.gitattributes` get their line appended when it is missing.
//! Inside a git repository the merge driver is also enabled in the repository's own config
//! (docs/merge.md).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use symphony_tracker::ids::SchemeKind;
use symphony_tracker::schema::BUILTIN_SCHEMA;

use super::Outcome;
use crate::UsageError;

const WORKFLOW_TEMPLATE: &str = include_str!("../../templates/WORKFLOW.md");
const SCHEMA_MD: &str = include_str!("../../../../issues/schema.md");
const ISSUES_README: &str = include_str!("../../../../issues/README.md");

/// `.gitattributes` line routing the issues file through the merge driver.
pub const GITATTRIBUTES_LINE: &str = "issues/issues.jsonl merge=symphony";
/// Command git runs for the merge driver (`merge.symphony.driver`).
pub const DRIVER_COMMAND: &str = "symphony merge-driver %O %A %B %P";

/// Arguments of `symphony init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository root to scaffold.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Prefix of issue ids (default: the first three letters of the directory name, in
    /// capitals).
    #[arg(long)]
    prefix: Option<String>,
    /// `sequential` (PREFIX-0001) or `hash` (PREFIX-<10 hex digits>).
    #[arg(long, default_value = "sequential", value_parser = parse_scheme)]
    id_scheme: SchemeKind,
}

fn parse_scheme(text: &str) -> Result<SchemeKind, String> {
    text.parse()
}

/// Scaffolds the repository and reports each step on standard output.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let root = std::fs::canonicalize(&args.dir)
        .map_err(|e| UsageError(format!("{}: {e}", args.dir.display())))?;
    let project = root
        .file_name()
        .map_or("project".into(), |n| n.to_string_lossy().into_owned());
    let (prefix, prefix_note) = match args.prefix {
        Some(prefix) if is_prefix(&prefix) => {
            let note = format!("id prefix {prefix}");
            (prefix, note)
        }
        Some(prefix) => {
            return Err(UsageError(format!(
                "--prefix {prefix:?}: use letters and digits, starting with a letter"
            ))
            .into());
        }
        None => {
            let prefix = default_prefix(&project);
            // The inferred prefix decides every id the user will type next; say where it came
            // from and how to choose another, so `PREFIX-0001` is not a surprise.
            let note = format!(
                "id prefix {prefix}, from the directory name {project:?}; --prefix chooses another"
            );
            (prefix, note)
        }
    };
    let scheme = match args.id_scheme {
        SchemeKind::Sequential => "sequential",
        SchemeKind::Hash => "hash",
    };
    let workflow = WORKFLOW_TEMPLATE
        .replace("@PREFIX@", &prefix)
        .replace("@ID_SCHEME@", scheme)
        .replace("@PROJECT@", &project);
    let mut out = std::io::stdout().lock();
    for (path, content) in [
        ("WORKFLOW.md", workflow.as_str()),
        ("issues/schema.json", BUILTIN_SCHEMA),
        ("issues/schema.md", SCHEMA_MD),
        ("issues/README.md", ISSUES_README),
        ("issues/issues.jsonl", ""),
    ] {
        let created = create_new(&root.join(path), content)?;
        if created && path == "WORKFLOW.md" {
            writeln!(out, "created {path} ({prefix_note})")?;
        } else {
            writeln!(out, "{} {path}", if created { "created" } else { "kept" })?;
        }
    }
    for (file, line) in [
        (".gitignore", ".symphony/"),
        (".gitattributes", GITATTRIBUTES_LINE),
    ] {
        if ensure_line(&root.join(file), line)? {
            writeln!(out, "added `{line}` to {file}")?;
        }
    }
    if let Ok(repo) = git2::Repository::open(&root) {
        let mut config = repo
            .config()
            .context("reading the repository's git config")?;
        config
            .set_str("merge.symphony.name", "symphony issues.jsonl merge driver")
            .and_then(|()| config.set_str("merge.symphony.driver", DRIVER_COMMAND))
            .context("enabling the merge driver in the repository's git config")?;
        writeln!(
            out,
            "enabled the merge driver: merge.symphony.driver = {DRIVER_COMMAND}"
        )?;
    }
    Ok(Outcome::Success)
}

fn is_prefix(prefix: &str) -> bool {
    prefix
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && prefix.chars().all(|c| c.is_ascii_alphanumeric())
}

fn default_prefix(project: &str) -> String {
    let letters: String = project
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .skip_while(|c| !c.is_ascii_alphabetic())
        .take(3)
        .collect();
    if letters.is_empty() {
        "ISS".into()
    } else {
        letters.to_ascii_uppercase()
    }
}

/// Writes `content` to `path` unless it exists; returns whether it was created.
fn create_new(path: &Path, content: &str) -> anyhow::Result<bool> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(content.as_bytes())
                .with_context(|| path.display().to_string())?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context(path.display().to_string())),
    }
}

/// Appends `line` to the file at `path` (created if needed) unless a line equals it; returns
/// whether it was added.
fn ensure_line(path: &Path, line: &str) -> anyhow::Result<bool> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(anyhow::Error::new(e).context(path.display().to_string())),
    };
    if text.lines().any(|existing| existing.trim() == line) {
        return Ok(false);
    }
    let separator = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    std::fs::write(path, format!("{text}{separator}{line}\n"))
        .with_context(|| path.display().to_string())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_prefix_takes_three_letters_of_the_project() {
        assert_eq!(default_prefix("symphony"), "SYM");
        assert_eq!(default_prefix("x0x-symphony"), "X0X");
        assert_eq!(default_prefix("42"), "ISS");
    }

    #[test]
    fn lines_are_added_once_and_after_a_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".gitignore");
        std::fs::write(&path, "/target").unwrap();
        assert!(ensure_line(&path, ".symphony/").unwrap());
        assert!(!ensure_line(&path, ".symphony/").unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "/target\n.symphony/\n"
        );
    }
}
