//! `symphony run`'s command line: the options it documents and its usage errors. (The
//! orchestration itself is tested end to end in the workspace's top-level `tests/`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn symphony(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_help_lists_the_workflow_argument_and_every_option() {
    let out = symphony(&["run", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "[WORKFLOW.md]",
        "--once",
        "--port <PORT>",
        "--log-format <LOG_FORMAT>",
        "--log-level <FILTER>",
        "--log-file <PATH>",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

#[test]
fn an_invalid_log_filter_is_a_usage_error_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(["run", "--once", "--log-level", "info,[unclosed"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: --log-level \"info,[unclosed\" is not a valid log filter"),
        "{stderr}"
    );
}
