//! The text agents act on names only commands that work (issue 15): the prompt `symphony init`
//! scaffolds and the prompts of `examples/*/WORKFLOW.md`, rendered for a real issue as
//! `symphony run` renders them (Symphony SPEC §12), and the example `symphony issues handoff
//! --help` shows. Every `symphony …` command they show must parse (`--help` appended); the
//! handoffs shown in full must also record a handoff when run in a scaffolded repository.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::{git, run_in};
use serde_json::Value;
use symphony_orchestrator::prompt::render_prompt;
use symphony_orchestrator::workflow::load_workflow;

/// The `symphony …` commands shown in `text`: lines that start with `symphony ` (code blocks)
/// and inline code spans that do, with `\`-newline continuations joined, split into arguments
/// as a shell would (the leading `symphony` dropped). A trailing unquoted `...` or `…` means
/// "and further arguments" and is dropped; a quoted one (`--summary "…"`) is a placeholder
/// value and stays.
fn shown_commands(text: &str) -> Vec<Vec<String>> {
    let joined = text.replace("\\\n", " ");
    let mut commands = Vec::new();
    for line in joined.lines() {
        let trimmed = line.trim();
        let spans: Vec<&str> = if trimmed.starts_with("symphony ") {
            vec![trimmed]
        } else {
            trimmed.split('`').skip(1).step_by(2).collect()
        };
        for span in spans {
            let Some(rest) = span.strip_prefix("symphony ") else {
                continue;
            };
            let mut rest = rest.trim_end();
            while let Some(shorter) = rest.strip_suffix(" ...").or(rest.strip_suffix(" …")) {
                rest = shorter.trim_end();
            }
            let args = shlex::split(rest)
                .unwrap_or_else(|| panic!("unbalanced quotes in shown command {span:?}"));
            commands.push(args);
        }
    }
    commands
}

fn shown(args: &[String]) -> String {
    shlex::try_join(args.iter().map(String::as_str)).unwrap_or_else(|_| args.join(" "))
}

/// Runs `symphony ARGS --help` in `dir`; clap rejects unknown flags and bad values first.
fn assert_parses(dir: &Path, source: &str, args: &[String]) {
    let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
    with_help.push("--help");
    let run = run_in(dir, &with_help);
    assert_eq!(
        run.code(),
        0,
        "{source} shows `symphony {}`, which does not parse:\n{}",
        shown(args),
        run.stderr()
    );
}

/// A git repository scaffolded by `symphony init --prefix SYM` with one issue, SYM-0001.
fn scaffold() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    run_in(dir.path(), &["init", "--prefix", "SYM"]).expect(0);
    let id = run_in(
        dir.path(),
        &[
            "issues",
            "create",
            "--title",
            "Parse the config",
            "--description",
            "Read WORKFLOW.md's front matter into typed settings.",
        ],
    )
    .expect(0)
    .stdout();
    assert_eq!(id, "SYM-0001\n");
    dir
}

fn record(dir: &Path, id: &str) -> Value {
    let shown = run_in(dir, &["issues", "show", id, "--json"])
        .expect(0)
        .stdout();
    serde_json::from_str(&shown).unwrap()
}

/// The prompt the workflow at `workflow` renders for `issue`, on a first attempt.
fn rendered(workflow: &Path, issue: &Value) -> String {
    let loaded = load_workflow(workflow).unwrap_or_else(|e| panic!("{}: {e}", workflow.display()));
    render_prompt(&loaded.definition, issue, None)
        .unwrap_or_else(|e| panic!("{}: {e}", workflow.display()))
}

/// Runs a shown handoff for real and checks it recorded one: the issue is in review with the
/// summary and changed files the command gave.
fn assert_handoff_records(dir: &Path, source: &str, args: &[String]) {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_in(dir, &argv);
    assert_eq!(
        run.code(),
        0,
        "{source} shows `symphony {}`, which fails when an agent runs it:\n{}",
        shown(args),
        run.stderr()
    );
    let issue = record(dir, &args[2]);
    assert_eq!(issue["state"], "review", "{source}: {issue}");
    let changed: Vec<&str> = args
        .windows(2)
        .filter(|pair| pair[0] == "--changed")
        .map(|pair| pair[1].as_str())
        .collect();
    assert!(
        !changed.is_empty(),
        "{source}: the handoff names no changed file"
    );
    assert_eq!(
        issue["handoff"]["files_changed"],
        serde_json::json!(changed)
    );
    assert!(issue["handoff"]["summary"].is_string(), "{source}: {issue}");
}

/// A handoff shown in full: the issue and a summary, so an agent could run it as it stands.
fn is_handoff(args: &[String]) -> bool {
    args.len() > 2
        && args[0] == "issues"
        && args[1] == "handoff"
        && args.iter().any(|a| a == "--summary")
}

#[test]
fn scaffolded_prompt_names_only_commands_that_work() {
    let dir = scaffold();
    let prompt = rendered(
        &dir.path().join("WORKFLOW.md"),
        &record(dir.path(), "SYM-0001"),
    );
    let commands = shown_commands(&prompt);
    assert!(
        commands.iter().any(|c| is_handoff(c)),
        "the scaffolded prompt shows no handoff command:\n{prompt}"
    );
    for args in &commands {
        assert_parses(dir.path(), "the scaffolded prompt", args);
    }
    for args in commands.iter().filter(|c| is_handoff(c)) {
        assert_handoff_records(dir.path(), "the scaffolded prompt", args);
    }
}

#[test]
fn example_prompts_name_only_commands_that_parse() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut workflows: Vec<PathBuf> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|entry| entry.unwrap().path().join("WORKFLOW.md"))
        .filter(|path| path.is_file())
        .collect();
    workflows.sort();
    assert!(!workflows.is_empty(), "no examples/*/WORKFLOW.md");
    let dir = scaffold();
    let mut checked = 0;
    for workflow in workflows {
        let issues = workflow.with_file_name("issues/issues.jsonl");
        let text = std::fs::read_to_string(&issues).unwrap();
        let first = text.lines().next().expect("an issue in the example");
        let issue: Value = serde_json::from_str(first).unwrap();
        let prompt = rendered(&workflow, &issue);
        let commands = shown_commands(&prompt);
        let source = workflow.display().to_string();
        // A codex-runner prompt may hand off through the host-side tool instead of the CLI.
        assert!(
            !commands.is_empty() || prompt.contains("symphony_handoff"),
            "{source}: the prompt shows neither a symphony command nor the symphony_handoff tool:\n{prompt}"
        );
        checked += commands.len();
        for args in &commands {
            assert_parses(dir.path(), &source, args);
        }
    }
    assert!(checked > 0, "no example prompt shows a symphony command");
}

#[test]
fn handoff_help_shows_an_example_that_works() {
    let dir = scaffold();
    let help = run_in(dir.path(), &["issues", "handoff", "--help"])
        .expect(0)
        .stdout();
    let example = help
        .split_once("Example")
        .map(|(_, example)| example)
        .unwrap_or_else(|| panic!("`symphony issues handoff --help` shows no example:\n{help}"));
    let commands = shown_commands(example);
    assert_eq!(commands.len(), 1, "one example command in\n{example}");
    assert_handoff_records(dir.path(), "`issues handoff --help`", &commands[0]);
}

#[test]
fn shown_commands_are_split_as_a_shell_would() {
    let text = "Run `symphony issues ready` first.\n\n    symphony issues handoff SYM-1 \
                --summary \"a b\" \\\n      --changed x.rs --follow-up \"…\" ...\nthen `git push` and \
                `symphony run --once` (not `symphonyx`).\n";
    let expected: Vec<Vec<&str>> = vec![
        vec!["issues", "ready"],
        vec![
            "issues",
            "handoff",
            "SYM-1",
            "--summary",
            "a b",
            "--changed",
            "x.rs",
            "--follow-up",
            "…",
        ],
        vec!["run", "--once"],
    ];
    assert_eq!(shown_commands(text), expected);
}
