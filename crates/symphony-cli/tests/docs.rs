//! The command examples of README.md, docs/ and issues/README.md run as written (issue 15).
//!
//! `console` blocks are executed by trycmd: each `$ ` line is a command, the lines after it are
//! its expected standard output and error (`[..]` elides within a line, `...` elides lines,
//! `[CWD]` is the sandbox directory), `? N` an expected exit code. Each file runs as one
//! sequence in a fresh copy of its fixture directory under `tests/docs/` (`NAME.in/`), so a
//! walkthrough's commands see each other's effects. `TRYCMD=overwrite cargo test -p
//! symphony-cli --test docs` rewrites the expected output in the documents themselves
//! (`tests/docs/NAME.md` are symlinks to them).
//!
//! Every `sh`/`bash` block of those documents is either such an executed example or carries
//! `<!-- not run: REASON -->` right above it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The documents whose `console` blocks run, as `(document, its case under tests/docs/)`.
const EXECUTED: [(&str, &str); 3] = [
    ("README.md", "tests/docs/README.md"),
    ("docs/cli.md", "tests/docs/cli.md"),
    ("issues/README.md", "tests/docs/issues-README.md"),
];

/// Fence languages, besides `console`, that read as shell commands to a user.
const SHELL_LANGUAGES: [&str; 4] = ["sh", "bash", "shell", "zsh"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `git` as found on PATH, for examples that make the repository they work in.
fn git_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("git"))
        .find(|candidate| candidate.is_file())
        .expect("git on PATH")
}

#[test]
fn documented_examples_run_as_written() {
    let cases = trycmd::TestCases::new();
    cases
        .register_bin("symphony", PathBuf::from(env!("CARGO_BIN_EXE_symphony")))
        .register_bin("git", git_path())
        // No user or system git config: `git init` output and the default branch do not
        // depend on the machine.
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Docs Example")
        .env("GIT_AUTHOR_EMAIL", "docs@example.invalid")
        .env("GIT_COMMITTER_NAME", "Docs Example")
        .env("GIT_COMMITTER_EMAIL", "docs@example.invalid")
        .env("RUST_LOG", "off")
        .timeout(Duration::from_secs(60));
    for (document, case) in EXECUTED {
        assert!(
            Path::new(case).is_symlink(),
            "{case} must be a symlink to {document}"
        );
        cases.case(case);
    }
    cases.run();
}

/// A fenced block: its language (the info string's first word) and 1-based opening line.
struct Fence {
    language: String,
    line: usize,
    /// The HTML comments on the lines right above the fence.
    comments: Vec<String>,
}

fn fences(text: &str) -> Vec<Fence> {
    let lines: Vec<&str> = text.lines().collect();
    let mut fences = Vec::new();
    let mut open: Option<&str> = None;
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let ticks = trimmed.chars().take_while(|&c| c == '`').count();
        if let Some(marker) = open {
            if trimmed.starts_with(marker) && trimmed.trim_end().len() == marker.len() {
                open = None;
            }
            continue;
        }
        if ticks < 3 {
            continue;
        }
        open = Some(&trimmed[..ticks]);
        let info = trimmed[ticks..].trim();
        let language = info.split([',', ' ']).next().unwrap_or("").to_string();
        let comments = lines[..index]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with("<!--"))
            .map(|l| l.trim().to_string())
            .collect();
        fences.push(Fence {
            language,
            line: index + 1,
            comments,
        });
    }
    fences
}

fn documents() -> Vec<String> {
    let mut documents = vec!["README.md".to_string(), "issues/README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(repo_root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    documents.extend(docs);
    documents
}

#[test]
fn every_shell_block_is_run_or_says_why_not() {
    let mut problems = Vec::new();
    for document in documents() {
        let text = std::fs::read_to_string(repo_root().join(&document)).unwrap();
        let executed = EXECUTED.iter().any(|(d, _)| *d == document);
        for fence in fences(&text) {
            let at = format!("{document}:{}", fence.line);
            let reason = fence.comments.iter().find_map(|c| {
                c.strip_prefix("<!-- not run:")
                    .and_then(|rest| rest.strip_suffix("-->"))
                    .map(str::trim)
            });
            match (fence.language.as_str(), reason) {
                ("console", Some(_)) => problems.push(format!(
                    "{at}: a `console` block is executed; mark a block that is not run as `sh`"
                )),
                ("console", None) if !executed => problems.push(format!(
                    "{at}: a `console` block in a document tests/docs.rs does not execute \
                     (add it to EXECUTED)"
                )),
                // trycmd runs unlabelled blocks as commands too.
                ("", _) if executed => problems.push(format!(
                    "{at}: label the block (`text`, `json`, …) or trycmd runs it as commands"
                )),
                (language, None)
                    if SHELL_LANGUAGES.contains(&language) && language != "console" =>
                {
                    problems.push(format!(
                        "{at}: a `{language}` block is neither executed (make it a `console` \
                         block with `$ ` prompts) nor marked `<!-- not run: REASON -->` above it"
                    ));
                }
                (_, Some("")) => problems.push(format!("{at}: `<!-- not run: -->` needs a reason")),
                _ => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn fences_are_found_with_their_markers() {
    let text = "intro\n\n<!-- not run: needs a network -->\n```sh\ncurl x\n```\n\n```console\n$ a\n```\n````text\n```sh\n````\n";
    let found = fences(text);
    let summary: Vec<(&str, usize, usize)> = found
        .iter()
        .map(|f| (f.language.as_str(), f.line, f.comments.len()))
        .collect();
    assert_eq!(
        summary,
        vec![("sh", 4, 1), ("console", 8, 0), ("text", 11, 0)]
    );
    assert_eq!(found[0].comments[0], "<!-- not run: needs a network -->");
}
