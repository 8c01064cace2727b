//! `symphony init` and `symphony merge-driver` in real git repositories: two branches that
//! both changed issues.jsonl merge through `git merge` without conflict markers or losses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{COMPACT, Project, git, record, run_in};

/// `git` with the directory of the built `symphony` first on PATH, as a user's shell would
/// have it, so the driver configured by `symphony init` runs.
fn git_with_symphony(dir: &Path, args: &[&str]) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_symphony")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .output()
        .unwrap()
}

fn repository() -> Project {
    let project = Project::fixture(COMPACT);
    std::fs::write(
        project.root().join("WORKFLOW.md"),
        common::workflow_fixture(),
    )
    .unwrap();
    git(project.root(), &["init", "-q", "-b", "main"]);
    git(project.root(), &["config", "user.name", "Test User"]);
    git(
        project.root(),
        &["config", "user.email", "test@example.com"],
    );
    project.run(&["init"]).expect(0);
    git(project.root(), &["add", "-A"]);
    git(project.root(), &["commit", "-q", "-m", "initial"]);
    project
}

#[test]
fn init_scaffolds_once_and_enables_the_merge_driver() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    let first = run_in(dir.path(), &["init", "--prefix", "ABC"])
        .expect(0)
        .stdout();
    for line in [
        "created WORKFLOW.md",
        "created issues/schema.json",
        "created issues/schema.md",
        "created issues/README.md",
        "created issues/issues.jsonl",
        "added `.symphony/` to .gitignore",
        "added `issues/issues.jsonl merge=symphony` to .gitattributes",
        "enabled the merge driver: merge.symphony.driver = symphony merge-driver %O %A %B %P",
    ] {
        assert!(first.contains(line), "missing {line:?} in\n{first}");
    }
    let second = run_in(dir.path(), &["init"]).expect(0).stdout();
    assert!(
        second.contains("kept WORKFLOW.md") && !second.contains("added"),
        "{second}"
    );
    assert_eq!(
        git(dir.path(), &["config", "merge.symphony.driver"]),
        "symphony merge-driver %O %A %B %P\n"
    );
    let schema = std::fs::read_to_string(dir.path().join("issues/schema.json")).unwrap();
    let repo_schema = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../issues/schema.json"),
    )
    .unwrap();
    assert_eq!(schema, repo_schema);
    // The scaffold works: the prefix is used and the empty file validates.
    assert_eq!(
        run_in(dir.path(), &["issues", "create", "--title", "first"])
            .expect(0)
            .stdout(),
        "ABC-0001\n"
    );
    run_in(dir.path(), &["validate", "--workflow", "WORKFLOW.md"]).expect(0);
}

#[test]
fn two_branches_that_changed_the_tracker_merge_through_the_driver() {
    let project = repository();
    let root = project.root();
    let issues = |args: &[&str]| {
        let mut all = vec!["issues"];
        all.extend_from_slice(args);
        all.push("--commit");
        project.run(&all).expect(0).stdout()
    };

    git(root, &["checkout", "-q", "-b", "agent"]);
    issues(&["update", "XSY-0003", "--priority", "1"]);
    assert_eq!(issues(&["create", "--title", "From agent"]), "XSY-0037\n");
    assert_eq!(
        issues(&[
            "create",
            "--title",
            "Agent follow-up",
            "--blocked-by",
            "XSY-0037"
        ]),
        "XSY-0038\n"
    );
    issues(&["update", "XSY-0011", "--title", "agent title"]);
    issues(&["handoff", "XSY-0012", "--summary", "done by the agent"]);

    git(root, &["checkout", "-q", "main"]);
    issues(&[
        "update",
        "XSY-0003",
        "--assignee",
        "alice",
        "--add-label",
        "urgent",
    ]);
    assert_eq!(issues(&["create", "--title", "From main"]), "XSY-0037\n");
    issues(&["update", "XSY-0011", "--title", "main title"]);
    issues(&["close", "XSY-0012", "--as", "cancelled"]);

    let merged = git_with_symphony(root, &["merge", "--no-edit", "agent"]);
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&merged.stdout),
        String::from_utf8_lossy(&merged.stderr)
    );
    assert!(merged.status.success(), "git merge failed:\n{output}");
    assert!(
        output.contains("symphony merge-driver: issues/issues.jsonl:"),
        "{output}"
    );
    assert!(
        output.contains("XSY-0011: /title changed on both sides"),
        "{output}"
    );
    assert!(
        output.contains("XSY-0037: both branches created a different issue"),
        "{output}"
    );

    let text = project.text();
    assert!(!text.contains("<<<<<<<") && !text.contains(">>>>>>>"));
    assert_eq!(text.lines().count(), 39, "36 + 3 created, nothing lost");
    let x3 = record(&text, "XSY-0003");
    assert_eq!(
        (&x3["priority"], &x3["assignee"]),
        (&serde_json::json!(1), &serde_json::json!("alice"))
    );
    assert!(
        x3["labels"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("urgent"))
    );
    assert_eq!(record(&text, "XSY-0037")["title"], "From main");
    let moved = record(&text, "XSY-0039");
    assert_eq!(
        (&moved["title"], &moved["renumbered_from"]),
        (
            &serde_json::json!("From agent"),
            &serde_json::json!("XSY-0037")
        )
    );
    assert_eq!(record(&text, "XSY-0038")["blocked_by"][0]["id"], "XSY-0039");
    let x12 = record(&text, "XSY-0012");
    assert_eq!(
        x12["state"], "cancelled",
        "a human's terminal state beats an agent's review"
    );
    assert_eq!(
        x12["handoff"]["summary"], "done by the agent",
        "the agent's handoff is kept"
    );
    project.run(&["validate"]).expect(0);
    assert_eq!(
        git(root, &["status", "--porcelain"]),
        "",
        "merge committed cleanly"
    );

    // The same merge without the driver leaves conflict markers, which every command refuses.
    git(root, &["reset", "-q", "--hard", "HEAD~1"]);
    std::fs::remove_file(root.join(".gitattributes")).unwrap();
    git(root, &["commit", "-q", "-am", "drop the driver"]);
    let plain = git_with_symphony(root, &["merge", "--no-edit", "agent"]);
    assert!(!plain.status.success());
    let refused = project.run(&["issues", "list"]).expect(1);
    assert!(
        refused.stderr().contains("unresolved git conflict marker"),
        "{}",
        refused.stderr()
    );
    assert!(
        refused
            .stderr()
            .contains("symphony merge-driver %O %A %B %P"),
        "{}",
        refused.stderr()
    );
}

#[test]
fn the_driver_refuses_inputs_it_cannot_merge_and_leaves_ours_alone() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let ours = dir.path().join("ours");
    let theirs = dir.path().join("theirs");
    std::fs::write(&base, "{\"id\":\"A-1\"}\n").unwrap();
    let conflicted = "{\"id\":\"A-1\"}\n<<<<<<< HEAD\n{\"id\":\"A-2\"}\n=======\n>>>>>>> b\n";
    std::fs::write(&ours, conflicted).unwrap();
    std::fs::write(&theirs, "{\"id\":\"A-1\"}\n").unwrap();
    let args = [
        base.to_str().unwrap(),
        ours.to_str().unwrap(),
        theirs.to_str().unwrap(),
        "issues/issues.jsonl",
    ];
    let mut all = vec!["merge-driver"];
    all.extend_from_slice(&args);
    let run = run_in(dir.path(), &all).expect(1);
    assert!(
        run.stderr()
            .contains("issues/issues.jsonl (ours):2: unresolved git conflict marker"),
        "{}",
        run.stderr()
    );
    assert_eq!(std::fs::read_to_string(&ours).unwrap(), conflicted);
}

#[test]
fn init_names_the_prefix_it_inferred_from_the_directory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("widgets");
    std::fs::create_dir(&dir).unwrap();
    let out = run_in(&dir, &["init"]).expect(0).stdout();
    assert!(
        out.contains(
            "created WORKFLOW.md (id prefix WID, from the directory name \"widgets\"; \
             --prefix chooses another)"
        ),
        "{out}"
    );
    assert_eq!(
        run_in(&dir, &["issues", "create", "--title", "first"])
            .expect(0)
            .stdout(),
        "WID-0001\n"
    );
}
