//! One rule for every command and every kind of damage (`docs/tracker.md`, "Damaged
//! files"), case by case on copies of the real compact fixture:
//!
//! - a damaged record (not a JSON object, a scheduling field of the wrong type, an id defined
//!   twice): reads go ahead, leave it out and name its line on stderr; writes go ahead and
//!   keep it byte for byte; a command that names that record fails (exit 1) naming the line;
//!   `validate` reports it (exit 1);
//! - damage to the file as a whole (a byte order mark, conflict markers): every command
//!   refuses (exit 1) and nothing is written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{COMPACT, Project, fixture};

/// The compact fixture with line `line` (1-based) replaced by `edit(line's text)`.
fn damaged(line: usize, edit: impl Fn(&str) -> String) -> Vec<u8> {
    let text = String::from_utf8(fixture(COMPACT)).unwrap();
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    lines[line - 1] = edit(&lines[line - 1]);
    lines.join("\n").into_bytes()
}

/// The lines of `after` that differ from `before`, 1-based; lines appended are counted too.
fn changed(before: &[u8], after: &[u8]) -> Vec<usize> {
    let (a, b) = (
        String::from_utf8_lossy(before).into_owned(),
        String::from_utf8_lossy(after).into_owned(),
    );
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('\n').collect(), b.split('\n').collect());
    (0..a.len().max(b.len()))
        .filter(|&i| a.get(i) != b.get(i))
        .map(|i| i + 1)
        .collect()
}

/// Every command over a file whose record `bad_id` on `line` is damaged.
fn record_damage_is_left_out_by_reads_and_kept_by_writes(
    case: &str,
    content: &[u8],
    line: usize,
    bad_id: &str,
) {
    let project = Project::with(content);
    let at = format!("issues/issues.jsonl:{line}");
    for read in [&["issues", "list"][..], &["issues", "ready"]] {
        let run = project.run(read).expect(0);
        assert!(
            run.stderr().contains(&format!("warning: {at}")),
            "{case}: {read:?} names the line: {}",
            run.stderr()
        );
        assert!(
            run.stdout().contains("XSY-0003"),
            "{case}: {read:?} lists the rest"
        );
        assert!(
            !run.stdout().contains(bad_id),
            "{case}: {read:?} leaves {bad_id} out"
        );
    }
    project.run(&["issues", "show", "XSY-0003"]).expect(0);
    let run = project.run(&["issues", "show", bad_id]).expect(1);
    assert!(
        run.stderr().contains(&at),
        "{case}: show {bad_id}: {}",
        run.stderr()
    );
    let run = project.run(&["validate"]).expect(1);
    assert!(run.stdout().contains(&at), "{case}: {}", run.stdout());

    let before = project.content();
    project
        .run(&["issues", "update", "XSY-0004", "--priority", "1"])
        .expect(0);
    assert_eq!(changed(&before, &project.content()), [4], "{case}: update");
    let before = project.content();
    let run = project
        .run(&["issues", "handoff", "XSY-0011", "--summary", "done"])
        .expect(0);
    assert_eq!(
        changed(&before, &project.content()),
        [11],
        "{case}: handoff {}",
        run.stderr()
    );
    let before = project.content();
    project
        .run(&["issues", "create", "--title", "new"])
        .expect(0);
    let after = project.content();
    assert!(after.starts_with(&before), "{case}: create only appends");
    let run = project
        .run(&["issues", "update", bad_id, "--priority", "1"])
        .expect(1);
    assert!(run.stderr().contains(&at), "{case}: {}", run.stderr());
    assert_eq!(
        project.content(),
        after,
        "{case}: a refused write writes nothing"
    );
}

#[test]
fn a_truncated_line_is_left_out_by_reads_and_kept_by_writes() {
    let content = damaged(6, |l| l[..60].to_string());
    record_damage_is_left_out_by_reads_and_kept_by_writes("truncated", &content, 6, "XSY-0006");
}

#[test]
fn trailing_garbage_is_left_out_by_reads_and_kept_by_writes() {
    let content = damaged(6, |l| format!("{l} garbage"));
    record_damage_is_left_out_by_reads_and_kept_by_writes("garbage", &content, 6, "XSY-0006");
}

#[test]
fn a_raw_nul_is_left_out_by_reads_and_kept_by_writes() {
    let content = damaged(6, |l| l.replacen("\"title\":\"", "\"title\":\"\0", 1));
    record_damage_is_left_out_by_reads_and_kept_by_writes("NUL", &content, 6, "XSY-0006");
}

/// Known limit: the scheduling read skips unknown fields without a depth limit, so a record
/// nested deeper than the JSON parser's 128 levels in a field scheduling does not read is
/// listed; every command that parses it whole (`show`, writes to it, `validate`) refuses it
/// naming the line, and writes to other records keep it byte for byte.
#[test]
fn nesting_10k_deep_is_refused_where_the_record_is_parsed_whole() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let content = damaged(6, |l| {
        l.replacen("\"labels\":[", &format!("\"x\":{deep},\"labels\":["), 1)
    });
    let project = Project::with(&content);
    project.run(&["issues", "list"]).expect(0);
    let run = project.run(&["issues", "show", "XSY-0006"]).expect(1);
    assert!(
        run.stderr().contains("issues/issues.jsonl:6:"),
        "{}",
        run.stderr()
    );
    let run = project.run(&["validate"]).expect(1);
    assert!(
        run.stdout().contains("issues/issues.jsonl:6:"),
        "{}",
        run.stdout()
    );
    project
        .run(&["issues", "update", "XSY-0006", "--priority", "1"])
        .expect(1);
    project
        .run(&["issues", "update", "XSY-0004", "--priority", "1"])
        .expect(0);
    assert_eq!(changed(&content, &project.content()), [4]);
}

#[test]
fn two_packed_objects_are_left_out_by_reads_and_kept_by_writes() {
    let text = String::from_utf8(fixture(COMPACT)).unwrap();
    let seventh = text.split('\n').nth(6).unwrap().to_string();
    let content = damaged(6, |l| format!("{l}{seventh}"));
    record_damage_is_left_out_by_reads_and_kept_by_writes("packed", &content, 6, "XSY-0006");
}

#[test]
fn a_string_where_a_list_is_expected_is_left_out_by_reads_and_kept_by_writes() {
    let content = damaged(6, |l| {
        let start = l.find("\"labels\":[").unwrap();
        let end = start + l[start..].find(']').unwrap() + 1;
        format!("{}\"labels\":\"bug\"{}", &l[..start], &l[end..])
    });
    record_damage_is_left_out_by_reads_and_kept_by_writes("labels", &content, 6, "XSY-0006");
}

#[test]
fn an_id_defined_twice_is_left_out_by_reads_and_kept_by_writes() {
    let text = String::from_utf8(fixture(COMPACT)).unwrap();
    let seventh = text.split('\n').nth(6).unwrap().to_string();
    let content = format!("{text}{seventh}\n");
    // Both records of XSY-0007 are left out; the second is line 37.
    record_damage_is_left_out_by_reads_and_kept_by_writes(
        "duplicate",
        content.as_bytes(),
        37,
        "XSY-0007",
    );
}

#[test]
fn a_file_that_is_one_json_array_says_so() {
    let text = String::from_utf8(fixture(COMPACT)).unwrap();
    let array = format!("[{}]\n", text.trim_end().replace('\n', ","));
    let project = Project::with(array.as_bytes());
    let run = project.run(&["issues", "list"]).expect(0);
    assert!(
        run.stderr().contains(
            "issues/issues.jsonl:1:1: expected a JSON object (one issue per line), found an array"
        ),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("jq -c '.[]'"), "{}", run.stderr());
}

#[test]
fn whole_file_damage_is_refused_by_every_command_and_nothing_is_written() {
    let bom = {
        let mut content = b"\xEF\xBB\xBF".to_vec();
        content.extend(fixture(COMPACT));
        content
    };
    let conflict = damaged(6, |l| {
        format!("<<<<<<< HEAD\n{l}\n=======\n{l}\n>>>>>>> theirs")
    });
    for (case, content, expected) in [
        (
            "bom",
            bom,
            "issues/issues.jsonl:1:1: the line starts with a UTF-8 byte order mark",
        ),
        (
            "conflict",
            conflict,
            "issues/issues.jsonl:6: unresolved git conflict marker",
        ),
    ] {
        let project = Project::with(&content);
        for args in [
            &["issues", "list"][..],
            &["issues", "ready"],
            &["issues", "show", "XSY-0003"],
            &["issues", "update", "XSY-0004", "--priority", "1"],
            &["issues", "create", "--title", "new"],
            &["issues", "handoff", "XSY-0011", "--summary", "done"],
        ] {
            let run = project.run(args).expect(1);
            assert!(
                run.stderr().contains(expected),
                "{case}: {args:?}: {}",
                run.stderr()
            );
        }
        let run = project.run(&["validate"]).expect(1);
        assert!(run.stdout().contains(expected), "{case}: {}", run.stdout());
        assert_eq!(project.content(), content, "{case}: nothing written");
    }
}
