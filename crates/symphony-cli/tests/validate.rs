//! `symphony validate` on the real fixtures and on bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;

use common::{COMPACT, Project, SPACED, fixture};

#[test]
fn both_fixtures_validate() {
    let spaced = Project::fixture(SPACED);
    let run = spaced.run(&["validate"]).expect(0);
    assert_eq!(
        run.stdout(),
        "",
        "the spaced fixture has no findings at all"
    );

    let compact = Project::fixture(COMPACT);
    std::fs::write(
        compact.root().join("WORKFLOW.md"),
        common::workflow_fixture(),
    )
    .unwrap();
    let run = compact.run(&["validate", "issues/issues.jsonl"]).expect(0);
    // Its genuine problems are stale blocker snapshots: warnings, precisely located.
    let first = run.stdout().lines().next().unwrap().to_string();
    assert_eq!(
        first,
        "warning: issues/issues.jsonl:3: /blocked_by/0/state: snapshot \"todo\" differs from \
         XSY-0002's live state \"done\" (readiness uses the live state; `symphony issues dep add \
         XSY-0003 XSY-0002` refreshes it)"
    );
    assert!(run.stdout().lines().all(|l| l.starts_with("warning: ")));
    assert!(
        run.stderr().contains("36 record(s): 0 error(s)"),
        "{}",
        run.stderr()
    );
}

#[test]
fn json_and_github_formats() {
    let project = Project::fixture(COMPACT);
    let run = project.run(&["validate", "--format", "json"]).expect(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["records"], 36);
    assert_eq!(report["errors"], 0);
    let first = &report["diagnostics"][0];
    assert_eq!(first["line"], 3);
    assert_eq!(first["pointer"], "/blocked_by/0/state");
    assert_eq!(first["severity"], "warning");

    let bad = Project::with(b"{\"id\": 1}\n");
    let run = bad.run(&["validate", "--format", "github"]).expect(1);
    assert!(
        run.stdout()
            .starts_with("::error file=issues/issues.jsonl,line=1,title=symphony validate::"),
        "{}",
        run.stdout()
    );
}

#[test]
fn malformed_json_is_reported_with_line_and_column() {
    let mut content = fixture(COMPACT);
    content.extend_from_slice(b"{\"id\":\"XSY-0099\",\"title\" \"no colon\"}\n");
    let project = Project::with(&content);
    let run = project.run(&["validate"]).expect(1);
    assert!(
        run.stdout()
            .contains("issues/issues.jsonl:37:26: expected `:`"),
        "{}",
        run.stdout()
    );
    // The same file through a read command: the line is left out, named with its column,
    // and the other records are listed.
    let run = project.run(&["issues", "list"]).expect(0);
    assert!(
        run.stderr()
            .contains("warning: issues/issues.jsonl:37:26: expected `:`"),
        "{}",
        run.stderr()
    );
    assert!(run.stdout().contains("XSY-0003") && !run.stdout().contains("XSY-0099"));
}

#[test]
fn duplicate_ids_unknown_states_and_cycles_are_all_reported() {
    let text = String::from_utf8(fixture(COMPACT)).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.push(lines[10].clone()); // XSY-0011 again
    lines[11] = lines[11].replace("\"state\":\"todo\"", "\"state\":\"wontfix\"");
    lines[2] = lines[2].replace(
        "\"blocked_by\":[{\"id\":\"XSY-0002\"",
        "\"blocked_by\":[{\"id\":\"XSY-0006\"",
    );
    let project = Project::with((lines.join("\n") + "\n").as_bytes());
    let run = project.run(&["validate"]).expect(1);
    let out = run.stdout();
    assert!(
        out.contains(
            "issues/issues.jsonl:37: /id: duplicate id \"XSY-0011\" (first defined on line 11)"
        ),
        "{out}"
    );
    assert!(
        out.contains("issues/issues.jsonl:12: /state: unknown state \"wontfix\""),
        "{out}"
    );
    assert!(
        out.contains("blocked_by cycle: XSY-0003 → XSY-0006 → XSY-0003"),
        "{out}"
    );
    // Commands refuse to guess which duplicate is meant, and write nothing.
    let before = project.content();
    let run = project
        .run(&["issues", "update", "XSY-0011", "--priority", "1"])
        .expect(1);
    assert!(
        run.stderr().contains(":37: duplicate id \"XSY-0011\""),
        "{}",
        run.stderr()
    );
    assert_eq!(project.content(), before);
    let run = project.run(&["issues", "show", "XSY-0011"]).expect(1);
    assert!(
        run.stderr()
            .contains(":37: duplicate id \"XSY-0011\" (first defined on line 11)"),
        "{}",
        run.stderr()
    );
}

#[test]
fn invalid_utf8_is_an_error_with_line_and_column_and_commands_refuse_the_file() {
    let mut content = fixture(COMPACT);
    content.extend_from_slice(b"{\"id\":\"XSY-0099\",\"title\":\"caf\xe9\"}\n");
    let project = Project::with(&content);
    let run = project.run(&["validate"]).expect(1);
    assert!(
        run.stdout()
            .contains("issues/issues.jsonl:37:30: invalid UTF-8"),
        "{}",
        run.stdout()
    );
    let run = project
        .run(&["issues", "update", "XSY-0003", "--priority", "1"])
        .expect(1);
    assert!(
        run.stderr()
            .contains("issues/issues.jsonl:37:30: invalid UTF-8"),
        "{}",
        run.stderr()
    );
    assert_eq!(project.content(), content, "nothing written");
}

#[test]
fn crlf_files_validate_with_a_warning_and_keep_their_endings() {
    let text = String::from_utf8(fixture(COMPACT))
        .unwrap()
        .replace('\n', "\r\n");
    let project = Project::with(text.as_bytes());
    let run = project.run(&["validate"]).expect(0);
    assert!(
        run.stdout()
            .contains("warning: issues/issues.jsonl:1: 36 line(s) end in CRLF"),
        "{}",
        run.stdout()
    );
    project
        .run(&["issues", "update", "XSY-0003", "--priority", "1"])
        .expect(0);
    let after = project.text();
    assert_eq!(after.matches("\r\n").count(), 36);
    assert_eq!(after.matches('\n').count(), 36, "no bare LF introduced");
}

#[test]
fn empty_file_is_valid_and_missing_file_is_an_io_error() {
    let project = Project::with(b"");
    project.run(&["validate"]).expect(0);
    project.run(&["issues", "list", "--json"]).expect(0);
    let run = project.run(&["validate", "nowhere.jsonl"]).expect(2);
    assert!(
        run.stderr()
            .contains("nowhere.jsonl: issues file not found"),
        "{}",
        run.stderr()
    );
    let run = project
        .run(&["issues", "-f", "nowhere.jsonl", "ready"])
        .expect(2);
    assert!(
        run.stderr()
            .contains("nowhere.jsonl: issues file not found"),
        "{}",
        run.stderr()
    );
}

#[test]
fn conflict_markers_are_refused_everywhere_with_a_pointer_to_the_merge_driver() {
    let mut content = fixture(COMPACT);
    content.extend_from_slice(
        b"<<<<<<< HEAD\n{\"id\":\"XSY-0037\"}\n=======\n{\"id\":\"XSY-0037\"}\n>>>>>>> other\n",
    );
    let project = Project::with(&content);
    let run = project.run(&["validate"]).expect(1);
    assert!(
        run.stdout()
            .contains("issues/issues.jsonl:37: unresolved git conflict marker `<<<<<<<`")
    );
    for args in [
        &["issues", "list"][..],
        &["issues", "ready"],
        &["issues", "show", "XSY-0001"],
        &["issues", "create", "--title", "t"],
        &["issues", "update", "XSY-0001", "--priority", "1"],
    ] {
        let run = project.run(args).expect(1);
        assert!(
            run.stderr().contains("merge.symphony.driver"),
            "{args:?}: {}",
            run.stderr()
        );
    }
    assert_eq!(project.content(), content);
}

#[test]
fn a_line_of_hundreds_of_megabytes_is_refused_naming_the_line() {
    let project = Project::fixture(COMPACT);
    {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(project.issues())
            .unwrap();
        file.write_all(b"{\"id\":\"XSY-0037\",\"description\":\"")
            .unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..300 {
            file.write_all(&chunk).unwrap();
        }
        file.write_all(b"\"}\n").unwrap();
    }
    let started = std::time::Instant::now();
    let run = project.run(&["validate"]).expect(1);
    let validate_ms = started.elapsed().as_millis();
    assert!(
        run.stdout().contains(
            "issues/issues.jsonl:37: record is 314572834 bytes, larger than the 8388608-byte limit for one issue"
        ),
        "{}",
        run.stdout()
    );
    let started = std::time::Instant::now();
    let run = project.run(&["issues", "ready"]).expect(1);
    eprintln!(
        "300 MB line refused: validate {validate_ms} ms, ready {} ms",
        started.elapsed().as_millis()
    );
    assert!(
        run.stderr()
            .contains("issues/issues.jsonl:37: record is 314572834 bytes"),
        "{}",
        run.stderr()
    );
}
