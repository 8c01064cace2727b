//! `symphony issues …` on copies of the real fixtures: minimal diffs, ids, every command's
//! output, `--commit`, crashes mid-write and concurrent writers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;

use common::{COMPACT, Project, SPACED, changed_lines, fixture, git, git_init, record, record_on};

#[test]
fn a_no_op_update_leaves_both_fixtures_byte_identical() {
    for (name, id) in [(SPACED, "X0X-0003"), (COMPACT, "XSY-0003")] {
        let project = Project::fixture(name);
        let before = project.content();
        let current = record(&project.text(), id);
        let (priority, state) = (
            current["priority"].to_string(),
            current["state"].as_str().unwrap(),
        );
        let label = current["labels"][0].as_str().unwrap();
        project
            .run(&[
                "issues",
                "update",
                id,
                "--priority",
                &priority,
                "--state",
                state,
                "--add-label",
                label,
            ])
            .expect(0);
        project
            .run(&["issues", "dep", "rm", id, "NOT-A-BLOCKER"])
            .expect(0);
        assert_eq!(project.content(), before, "{name}");
    }
}

#[test]
fn priority_update_changes_exactly_one_line_priority_and_updated_at_only() {
    for (name, id, line) in [(SPACED, "X0X-0003", 3), (COMPACT, "XSY-0003", 3)] {
        let project = Project::fixture(name);
        let before = project.text();
        project
            .run(&["issues", "update", id, "--priority", "1"])
            .expect(0);
        let after = project.text();
        assert_eq!(changed_lines(&before, &after), [line], "{name}");
        let (old, new) = (record_on(&before, line), record_on(&after, line));
        let differing: Vec<&String> = old.keys().filter(|k| old[*k] != new[*k]).collect();
        assert_eq!(differing, ["priority", "updated_at"], "{name}");
        assert!(old.keys().eq(new.keys()), "{name}: key order kept");
        assert_eq!(new["priority"], 1);
        assert_eq!(before.ends_with('\n'), after.ends_with('\n'), "{name}");
    }
    // The spaced fixture keeps its separators and raw UTF-8 on the rewritten line.
    let project = Project::fixture(SPACED);
    project
        .run(&["issues", "update", "X0X-0004", "--priority", "1"])
        .expect(0);
    let line = project.text().split('\n').nth(3).unwrap().to_string();
    assert!(
        line.starts_with("{\"id\": \"X0X-0004\", \"identifier\": "),
        "{}",
        &line[..60]
    );
    assert!(line.contains("Structural recv_pubsub_tx saturation on VPS bootstrap nodes — 10×"));
}

#[test]
fn create_assigns_the_next_id_with_the_workflow_prefix_and_inferred_width() {
    let project = Project::fixture(COMPACT);
    let run = project
        .run(&[
            "issues",
            "create",
            "--title",
            "Écrire la doc",
            "--priority",
            "2",
            "--label",
            "docs",
            "--blocked-by",
            "XSY-0002",
            "--blocked-by",
            "x0x:agent-sign-endpoint",
        ])
        .expect(0);
    assert_eq!(run.stdout(), "XSY-0037\n");
    let created = record(&project.text(), "XSY-0037");
    assert_eq!(created["identifier"], "XSY-0037");
    assert_eq!(created["state"], "todo");
    assert_eq!(created["title"], "Écrire la doc");
    assert_eq!(created["blocked_by"][0]["state"], "done");
    assert!(
        project.text().ends_with("\n"),
        "trailing newline convention kept"
    );
    project.run(&["validate"]).expect(0);

    // The spaced fixture has no trailing newline, writes raw UTF-8, and uses X0X.
    let project = Project::fixture(SPACED);
    std::fs::write(
        project.root().join("WORKFLOW.md"),
        "---\ntracker:\n  id_prefix: X0X\n---\n",
    )
    .unwrap();
    let before = project.text();
    project
        .run(&["issues", "create", "--title", "Écrire"])
        .expect(0);
    let after = project.text();
    assert!(after.starts_with(&before));
    assert!(after[before.len()..].starts_with(
        "\n{\"id\": \"X0X-0016\", \"identifier\": \"X0X-0016\", \"title\": \"Écrire\""
    ));
    assert!(!after.ends_with('\n'));
}

#[test]
fn hash_ids_when_the_workflow_asks_for_them() {
    let project = Project::fixture(COMPACT);
    std::fs::write(
        project.root().join("WORKFLOW.md"),
        "---\ntracker:\n  id_prefix: XSY\n  id_scheme: hash\n---\n",
    )
    .unwrap();
    let id = project
        .run(&["issues", "create", "--title", "t"])
        .expect(0)
        .stdout();
    let hex = id.trim().strip_prefix("XSY-").unwrap();
    assert_eq!(hex.len(), 10);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
}

#[test]
fn read_commands_print_stable_json() {
    let project = Project::fixture(COMPACT);
    let ready: serde_json::Value = serde_json::from_str(
        &project
            .run(&["issues", "ready", "--json"])
            .expect(0)
            .stdout(),
    )
    .unwrap();
    let ids: Vec<&str> = ready
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "XSY-0027", "XSY-0003", "XSY-0004", "XSY-0005", "XSY-0011", "XSY-0012", "XSY-0030"
        ]
    );
    let first = ready[0].as_object().unwrap();
    let keys: Vec<&String> = first.keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "identifier",
            "title",
            "state",
            "priority",
            "labels",
            "blocked_by",
            "assignee",
            "created_at",
            "updated_at"
        ]
    );
    assert_eq!(ready[1]["blocked_by"], serde_json::json!(["XSY-0002"]));

    let list: serde_json::Value = serde_json::from_str(
        &project
            .run(&["issues", "list", "--json"])
            .expect(0)
            .stdout(),
    )
    .unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        34,
        "done issues hidden without --all"
    );
    let all: serde_json::Value = serde_json::from_str(
        &project
            .run(&["issues", "list", "--all", "--json"])
            .expect(0)
            .stdout(),
    )
    .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 36);
    let blocked = project
        .run(&["issues", "list", "--state", "blocked"])
        .expect(0)
        .stdout();
    assert_eq!(
        blocked.lines().count(),
        3,
        "header and two blocked issues:\n{blocked}"
    );

    let shown = project
        .run(&["issues", "show", "XSY-0008", "--json"])
        .expect(0)
        .stdout();
    let stored = String::from_utf8(fixture(COMPACT))
        .unwrap()
        .lines()
        .nth(7)
        .unwrap()
        .to_string();
    assert_eq!(
        shown.trim_end(),
        stored,
        "show --json prints the record as stored"
    );
    let human = project
        .run(&["issues", "show", "XSY-0003"])
        .expect(0)
        .stdout();
    assert!(
        human.starts_with("XSY-0003  Implement git_jsonl Tracker adapter\nstate: todo"),
        "{human}"
    );
    assert!(human.contains("blocked by: XSY-0002 (done)"), "{human}");
    let missing = project.run(&["issues", "show", "XSY-9999"]).expect(1);
    assert!(missing.stderr().contains("no issue with id \"XSY-9999\""));
}

#[test]
fn close_dep_and_handoff_write_what_they_say() {
    let project = Project::fixture(COMPACT);
    let refused = project
        .run(&["issues", "update", "XSY-0011", "--state", "done"])
        .expect(1);
    assert!(
        refused
            .stderr()
            .contains("written only by `symphony issues close`"),
        "{}",
        refused.stderr()
    );
    project
        .run(&["issues", "close", "XSY-0012", "--as", "duplicate"])
        .expect(0);
    assert_eq!(record(&project.text(), "XSY-0012")["state"], "duplicate");

    project
        .run(&["issues", "dep", "add", "XSY-0011", "XSY-0030"])
        .expect(0);
    let cycle = project
        .run(&["issues", "dep", "add", "XSY-0030", "XSY-0011"])
        .expect(1);
    assert!(
        cycle
            .stderr()
            .contains("would close a cycle: XSY-0030 → XSY-0011 → XSY-0030"),
        "{}",
        cycle.stderr()
    );
    project
        .run(&["issues", "dep", "rm", "XSY-0011", "XSY-0030"])
        .expect(0);
    assert_eq!(
        record(&project.text(), "XSY-0011")["blocked_by"],
        serde_json::json!([])
    );

    let from = project.root().join("handoff.json");
    std::fs::write(&from, r#"{"summary": "from json", "validation": [{"command": "just test", "status": "failed", "exit_code": 101}]}"#).unwrap();
    project
        .run(&[
            "issues",
            "handoff",
            "XSY-0011",
            "--from",
            from.to_str().unwrap(),
            "--changed",
            "src/a.rs",
            "--validation",
            "passed:cargo test -p a",
            "--follow-up",
            "later",
            "--proofs-dir",
            "proofs/XSY-0011/x/",
        ])
        .expect(0);
    let issue = record(&project.text(), "XSY-0011");
    assert_eq!(issue["state"], "review");
    let handoff = &issue["handoff"];
    assert_eq!(handoff["summary"], "from json");
    assert_eq!(handoff["files_changed"], serde_json::json!(["src/a.rs"]));
    assert_eq!(handoff["validation"][0]["exit_code"], 101);
    assert_eq!(
        handoff["validation"][1],
        serde_json::json!({"command": "cargo test -p a", "status": "passed"})
    );
    assert_eq!(handoff["follow_up"], serde_json::json!(["later"]));
    let bad = project
        .run(&[
            "issues",
            "handoff",
            "XSY-0012",
            "--summary",
            "s",
            "--validation",
            "cargo test",
        ])
        .expect(2);
    assert!(
        bad.stderr().contains("expected STATUS:COMMAND"),
        "{}",
        bad.stderr()
    );
    project.run(&["validate"]).expect(0);
}

#[test]
fn commit_records_only_the_issues_file_with_a_message_naming_the_change() {
    let project = Project::fixture(COMPACT);
    std::fs::write(project.root().join("notes.txt"), "a\n").unwrap();
    git_init(project.root());
    std::fs::write(project.root().join("notes.txt"), "b\n").unwrap();
    git(project.root(), &["add", "notes.txt"]);
    let update = [
        "issues",
        "update",
        "XSY-0003",
        "--priority",
        "1",
        "--commit",
    ];
    project.run(&update).expect(0);
    assert_eq!(
        git(project.root(), &["log", "-1", "--format=%s", "--name-only"]),
        "issues: update XSY-0003 (priority)\n\nissues/issues.jsonl\n"
    );
    assert_eq!(
        git(project.root(), &["status", "--porcelain"]),
        "M  notes.txt\n"
    );
    // A no-op makes no commit.
    let head = git(project.root(), &["rev-parse", "HEAD"]);
    project.run(&update).expect(0);
    assert_eq!(git(project.root(), &["rev-parse", "HEAD"]), head);
    let id = project
        .run(&["issues", "create", "--title", "New", "--commit"])
        .expect(0)
        .stdout();
    assert_eq!(id, "XSY-0037\n");
    assert_eq!(
        git(project.root(), &["log", "-1", "--format=%s"]),
        "issues: create XSY-0037: New\n"
    );
}

#[test]
fn commit_falls_back_to_the_symphony_signature_without_git_identity() {
    let project = Project::fixture(COMPACT);
    let home = tempfile::tempdir().unwrap();
    git(project.root(), &["init", "-q", "-b", "main"]);
    let run = common::symphony()
        .args(["issues", "close", "XSY-0011", "--commit"])
        .current_dir(project.root())
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        git(project.root(), &["log", "-1", "--format=%an <%ae>|%s"]),
        "Symphony <symphony@localhost>|issues: close XSY-0011 as done\n"
    );
}

/// Runs `args` under `ulimit -f blocks` (1 KiB blocks): the kernel kills the process with
/// SIGXFSZ when a write crosses the limit.
fn run_with_file_limit(project: &Project, blocks: u32, args: &str) -> std::process::ExitStatus {
    std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -f {blocks}; exec \"$0\" {args}"))
        .arg(env!("CARGO_BIN_EXE_symphony"))
        .current_dir(project.root())
        .stderr(Stdio::null())
        .status()
        .unwrap()
}

#[test]
fn a_write_killed_midway_leaves_the_old_file_intact() {
    // Update rewrites the 124 KB file through a temp file: the kill comes at 50 KB.
    let project = Project::fixture(SPACED);
    let before = project.content();
    let status = run_with_file_limit(&project, 50, "issues update X0X-0003 --priority 1");
    assert!(!status.success(), "the write must have been killed");
    assert_eq!(project.content(), before);
    let temps = || {
        std::fs::read_dir(project.root().join("issues"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".issues.jsonl.tmp."))
            .count()
    };
    assert_eq!(temps(), 1, "the killed rewrite left its temp file");
    project
        .run(&["issues", "update", "X0X-0003", "--priority", "1"])
        .expect(0);
    assert_ne!(project.content(), before);
    assert_eq!(temps(), 0, "the next write removed it");
    project.run(&["validate"]).expect(0);

    // Create appends: the kill comes after part of the record reached the file. The next
    // command undoes the torn tail from the journal before reading.
    let project = Project::fixture(COMPACT);
    let before = project.content();
    let limit_blocks = (before.len() / 1024 + 1) as u32;
    let title = "long-title-".repeat(200); // the 2 KB record crosses the next 1 KiB boundary
    let status = run_with_file_limit(
        &project,
        limit_blocks,
        &format!("issues create --title {title}"),
    );
    assert!(!status.success());
    let torn = project.content();
    assert!(
        torn.len() > before.len() && torn.starts_with(&before),
        "a torn tail was written"
    );
    project.run(&["issues", "list"]).expect(0);
    assert_eq!(project.content(), before, "the torn tail was undone");
    assert_eq!(
        project
            .run(&["issues", "create", "--title", "t"])
            .expect(0)
            .stdout(),
        "XSY-0037\n"
    );
}

#[test]
fn concurrent_creates_all_land_with_unique_ids() {
    let project = Project::fixture(COMPACT);
    let children: Vec<_> = (0..8)
        .map(|i| {
            common::symphony()
                .args(["issues", "create", "--title", &format!("parallel {i}")])
                .current_dir(project.root())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect();
    ids.sort();
    let expected: Vec<String> = (37..45).map(|n| format!("XSY-{n:04}")).collect();
    assert_eq!(ids, expected);
    let text = project.text();
    assert_eq!(text.lines().count(), 44);
    for i in 0..8 {
        assert!(text.contains(&format!("\"title\":\"parallel {i}\"")));
    }
    project.run(&["validate"]).expect(0);
}
