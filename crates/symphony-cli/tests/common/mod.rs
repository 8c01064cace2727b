//! Shared by the CLI integration tests: the real binary, copies of the real fixtures in
//! temporary directories, and scratch git repositories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The spaced, `\uXXXX`-escaped fixture without a trailing newline (x0x).
pub const SPACED: &str = "x0x.jsonl";
/// The compact fixture (x0x-symphony).
pub const COMPACT: &str = "x0x-symphony.jsonl";

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../symphony-tracker/tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn workflow_fixture() -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/x0x-symphony-WORKFLOW.md");
    std::fs::read_to_string(path).unwrap()
}

/// A project directory holding `issues/issues.jsonl` with `content`.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn with(content: &[u8]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("issues")).unwrap();
        std::fs::write(dir.path().join("issues/issues.jsonl"), content).unwrap();
        Project { dir }
    }

    pub fn fixture(name: &str) -> Project {
        Project::with(&fixture(name))
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn issues(&self) -> PathBuf {
        self.root().join("issues/issues.jsonl")
    }

    pub fn content(&self) -> Vec<u8> {
        std::fs::read(self.issues()).unwrap()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.content()).unwrap()
    }

    /// Runs `symphony args…` in the project directory.
    pub fn run(&self, args: &[&str]) -> Run {
        run_in(self.root(), args)
    }
}

pub fn symphony() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_symphony"));
    command.env_remove("RUST_LOG");
    command
}

pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    let output = symphony().args(args).current_dir(dir).output().unwrap();
    Run(output)
}

/// A finished run of the binary.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts exit code `code` and returns self.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Runs git in `dir`, asserting success; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Makes `dir` a git repository with a test identity and commits everything in it.
pub fn git_init(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Test User"]);
    git(dir, &["config", "user.email", "test@example.com"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "initial"]);
}

/// 1-based numbers of the lines that differ between two texts of equal line count.
pub fn changed_lines(before: &str, after: &str) -> Vec<usize> {
    let (a, b): (Vec<&str>, Vec<&str>) =
        (before.split('\n').collect(), after.split('\n').collect());
    assert_eq!(a.len(), b.len(), "line count changed");
    (0..a.len())
        .filter(|&i| a[i] != b[i])
        .map(|i| i + 1)
        .collect()
}

/// The record on 1-based `line` of `text`.
pub fn record_on(text: &str, line: usize) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(text.split('\n').nth(line - 1).unwrap()).unwrap()
}

/// The record with `id` in `text`.
pub fn record(text: &str, id: &str) -> serde_json::Map<String, serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(l).unwrap())
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no record {id}"))
}
