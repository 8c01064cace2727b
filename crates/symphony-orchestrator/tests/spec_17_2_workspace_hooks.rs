//! SPEC §17.2 (workspace manager and safety) with real directories, symlinks and bash hooks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use symphony_orchestrator::config::HooksConfig;
use symphony_orchestrator::hooks::{HookKind, HookStatus, run_configured_hook, run_hook};
use symphony_orchestrator::runner::{AgentSession, RunnerError};
use symphony_orchestrator::workspace::{WorkspaceManager, workspace_key};

fn hooks(timeout_ms: u64) -> HooksConfig {
    HooksConfig {
        timeout_ms,
        ..HooksConfig::default()
    }
}

#[tokio::test]
async fn spec_17_2_deterministic_workspace_path_per_identifier() {
    let dir = tempfile::tempdir().unwrap();
    let manager = WorkspaceManager::new(dir.path());
    let a = manager
        .prepare("XSY-0003", &hooks(5_000), &[])
        .await
        .unwrap();
    let b = manager
        .prepare("XSY-0003", &hooks(5_000), &[])
        .await
        .unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(a.workspace.path, root.join("XSY-0003"));
    assert_eq!(a.workspace.path, b.workspace.path);
    assert_eq!(
        manager.path_for("XSY-0003").unwrap(),
        dir.path().join("XSY-0003")
    );
}

#[tokio::test]
async fn spec_17_2_missing_workspace_directory_is_created_with_a_missing_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("not/yet/there");
    let prepared = WorkspaceManager::new(&root)
        .prepare("XSY-1", &hooks(5_000), &[])
        .await
        .unwrap();
    assert!(prepared.workspace.created_now);
    assert!(prepared.workspace.path.is_dir());
}

#[tokio::test]
async fn spec_17_2_existing_workspace_directory_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let manager = WorkspaceManager::new(dir.path());
    let first = manager.prepare("XSY-1", &hooks(5_000), &[]).await.unwrap();
    std::fs::write(first.workspace.path.join("keep.txt"), "work in progress").unwrap();
    let second = manager.prepare("XSY-1", &hooks(5_000), &[]).await.unwrap();
    assert!(first.workspace.created_now);
    assert!(!second.workspace.created_now);
    assert_eq!(
        std::fs::read_to_string(second.workspace.path.join("keep.txt")).unwrap(),
        "work in progress"
    );
}

#[tokio::test]
async fn spec_17_2_existing_non_directory_at_workspace_path_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("XSY-1"), "not a directory").unwrap();
    let err = WorkspaceManager::new(dir.path())
        .prepare("XSY-1", &hooks(5_000), &[])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "workspace_not_a_directory");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("XSY-1")).unwrap(),
        "not a directory"
    );
}

#[tokio::test]
async fn spec_17_2_population_errors_are_surfaced_and_the_new_workspace_removed() {
    let dir = tempfile::tempdir().unwrap();
    let manager = WorkspaceManager::new(dir.path());
    let failing = HooksConfig {
        after_create: Some("echo cloning; echo 'fatal: repository not found' >&2; exit 128".into()),
        ..hooks(5_000)
    };
    let err = manager.prepare("XSY-1", &failing, &[]).await.unwrap_err();
    assert_eq!(err.kind(), "after_create_failed");
    assert!(err.to_string().contains("repository not found"), "{err}");
    let symphony_orchestrator::workspace::WorkspaceError::AfterCreateFailed { outcome, .. } = err
    else {
        panic!("unexpected error");
    };
    assert_eq!(outcome.stdout.text, "cloning\n");
    assert!(
        !dir.path().join("XSY-1").exists(),
        "a half-created workspace is removed"
    );

    let retry = manager.prepare("XSY-1", &hooks(5_000), &[]).await.unwrap();
    assert!(
        retry.workspace.created_now,
        "the next attempt creates it afresh"
    );
}

#[tokio::test]
async fn spec_9_2_a_reused_workspace_keeps_tmp_and_elixir_ls() {
    // An old SPEC rule removed `tmp/` and `.elixir_ls/` on every preparation, destroying
    // tracked `tmp/` directories of real repositories; the current SPEC has no such rule.
    let dir = tempfile::tempdir().unwrap();
    let manager = WorkspaceManager::new(dir.path());
    let ws = manager
        .prepare("XSY-1", &hooks(5_000), &[])
        .await
        .unwrap()
        .workspace
        .path;
    std::fs::create_dir_all(ws.join("tmp/nested")).unwrap();
    std::fs::write(ws.join("tmp/nested/f"), "tracked").unwrap();
    std::fs::create_dir_all(ws.join(".elixir_ls")).unwrap();
    let reused = manager.prepare("XSY-1", &hooks(5_000), &[]).await.unwrap();
    assert!(!reused.workspace.created_now);
    assert_eq!(
        std::fs::read_to_string(ws.join("tmp/nested/f")).unwrap(),
        "tracked"
    );
    assert!(ws.join(".elixir_ls").is_dir());
}

#[tokio::test]
async fn spec_17_2_after_create_hook_runs_only_on_new_workspace_creation() {
    let dir = tempfile::tempdir().unwrap();
    let manager = WorkspaceManager::new(dir.path().join("root"));
    let counter = dir.path().join("after_create.count");
    let config = HooksConfig {
        after_create: Some(format!(
            "echo run >> '{}'; pwd > created_in",
            counter.display()
        )),
        ..hooks(5_000)
    };
    let env = [("SYMPHONY_ISSUE_IDENTIFIER".to_owned(), "XSY-1".to_owned())];
    let first = manager.prepare("XSY-1", &config, &env).await.unwrap();
    assert!(first.after_create.as_ref().unwrap().succeeded());
    let second = manager.prepare("XSY-1", &config, &env).await.unwrap();
    assert!(second.after_create.is_none());
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "run\n");
    let cwd = std::fs::read_to_string(first.workspace.path.join("created_in")).unwrap();
    assert_eq!(Path::new(cwd.trim()), first.workspace.path);
}

#[tokio::test]
async fn spec_17_2_before_run_failure_and_timeout_abort_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let failing = HooksConfig {
        before_run: Some("test -f x0x-symphony/CLAUDE.md".into()),
        ..hooks(5_000)
    };
    let outcome = run_configured_hook(HookKind::BeforeRun, &failing, dir.path(), &[])
        .await
        .unwrap();
    assert_eq!(
        outcome.status,
        HookStatus::Failed {
            exit_code: Some(1),
            signal: None
        }
    );
    assert!(HookKind::BeforeRun.is_fatal());
    assert_eq!(outcome.check().unwrap_err().kind(), "hook_failed");

    let slow = HooksConfig {
        before_run: Some("sleep 30".into()),
        ..hooks(300)
    };
    let started = std::time::Instant::now();
    let outcome = run_configured_hook(HookKind::BeforeRun, &slow, dir.path(), &[])
        .await
        .unwrap();
    assert_eq!(outcome.status, HookStatus::TimedOut { timeout_ms: 300 });
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(outcome.check().unwrap_err().kind(), "hook_timeout");
}

#[tokio::test]
async fn spec_17_2_after_run_failure_is_reported_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let config = HooksConfig {
        after_run: Some("echo lint failed >&2; exit 2".into()),
        ..hooks(5_000)
    };
    let outcome = run_configured_hook(HookKind::AfterRun, &config, dir.path(), &[])
        .await
        .unwrap();
    assert!(!outcome.succeeded());
    assert_eq!(outcome.stderr.text, "lint failed\n");
    // What the worker does with it: tests/spec_17_2_workspaces_and_hooks.rs.
    assert!(
        run_configured_hook(HookKind::AfterRun, &hooks(5_000), dir.path(), &[])
            .await
            .is_none()
    );
}

#[tokio::test]
async fn spec_17_2_before_remove_runs_on_cleanup_and_its_failure_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let manager = WorkspaceManager::new(dir.path().join("root"));
    let marker = dir.path().join("before_remove.ran");
    let config = HooksConfig {
        before_remove: Some(format!("ls > '{}'; exit 9", marker.display())),
        ..hooks(5_000)
    };
    let ws = manager
        .prepare("XSY-1", &config, &[])
        .await
        .unwrap()
        .workspace
        .path;
    std::fs::write(ws.join("artifact.txt"), "x").unwrap();
    let removed = manager.remove("XSY-1", &config, &[]).await.unwrap();
    assert!(removed.removed);
    assert!(!removed.before_remove.unwrap().succeeded());
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "artifact.txt\n");
    assert!(!ws.exists());
    let again = manager.remove("XSY-1", &config, &[]).await.unwrap();
    assert!(
        !again.removed && again.before_remove.is_none(),
        "absent workspace: no hook"
    );
}

#[tokio::test]
async fn spec_17_2_sanitized_keys_do_not_collide() {
    let dir = tempfile::tempdir().unwrap();
    let manager = WorkspaceManager::new(dir.path());
    let ids = ["a/b", "a_b", "a b", "a:b", "../a_b"];
    let mut paths = Vec::new();
    for id in ids {
        let ws = manager
            .prepare(id, &hooks(5_000), &[])
            .await
            .unwrap()
            .workspace;
        assert!(ws.created_now, "{id} got a fresh directory");
        assert!(
            ws.key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        );
        assert_eq!(
            ws.path.parent().unwrap(),
            std::fs::canonicalize(dir.path()).unwrap()
        );
        paths.push(ws.path);
    }
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), ids.len());
    assert_eq!(workspace_key("a_b").unwrap(), "a_b");
    for bad in ["..", "."] {
        let err = manager.prepare(bad, &hooks(5_000), &[]).await.unwrap_err();
        assert_eq!(err.kind(), "invalid_workspace_key");
    }
}

#[tokio::test]
async fn spec_17_2_symlink_planted_at_workspace_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let outside = dir.path().join("elsewhere");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("precious"), "x").unwrap();
    symlink(&outside, root.join("XSY-1")).unwrap();
    let manager = WorkspaceManager::new(&root);
    let config = HooksConfig {
        before_remove: Some("rm -f precious".into()),
        ..hooks(5_000)
    };
    let err = manager.prepare("XSY-1", &config, &[]).await.unwrap_err();
    assert_eq!(err.kind(), "workspace_outside_root");
    assert!(err.to_string().contains("elsewhere"), "{err}");
    let err = manager.remove("XSY-1", &config, &[]).await.unwrap_err();
    assert_eq!(err.kind(), "workspace_outside_root");
    assert!(
        outside.join("precious").exists(),
        "nothing outside the root was touched"
    );
}

#[tokio::test]
async fn spec_17_2_agent_launch_uses_workspace_cwd_and_rejects_out_of_root_paths() {
    let mut h = support::Harness::new("XSY-7").await;
    let config = support::runner_config("runner:\n  command: pwd");
    let mut session = AgentSession::start(&config, h.launch.clone())
        .await
        .unwrap();
    session.run_turn("go").await.unwrap();
    assert_eq!(h.stdout_log().trim(), h.workspace.display().to_string());
    h.drain();

    let outside = h.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let mut launch = h.launch.clone();
    launch.workspace_path = outside;
    let err = AgentSession::start(&config, launch).await.unwrap_err();
    assert!(
        matches!(err, RunnerError::InvalidWorkspaceCwd { .. }),
        "{err:?}"
    );

    let mut launch = h.launch.clone();
    launch.workspace_path = h.root.clone();
    let err = AgentSession::start(&config, launch).await.unwrap_err();
    assert_eq!(
        err.kind(),
        "invalid_workspace_cwd",
        "the root itself is not a workspace"
    );

    let link = h.root.join("XSY-link");
    symlink(&h.workspace, &link).unwrap();
    let mut launch = h.launch.clone();
    launch.workspace_path = link;
    let err = AgentSession::start(&config, launch).await.unwrap_err();
    assert_eq!(
        err.kind(),
        "invalid_workspace_cwd",
        "cwd must be the canonical workspace"
    );
}

#[tokio::test]
async fn hook_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let script = "sleep 1000 & echo $! > bg.pid; sleep 1000";
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        run_hook(HookKind::BeforeRun, script, dir.path(), 2_500, &[]),
    )
    .await
    .expect("the hook is bounded by its timeout");
    assert_eq!(outcome.status, HookStatus::TimedOut { timeout_ms: 2_500 });
    let pid = support::read_pid(&dir.path().join("bg.pid")).await;
    assert!(
        support::dies(pid).await,
        "background child {pid} survived the timeout"
    );
}

#[tokio::test]
async fn hook_background_children_do_not_outlive_a_clean_exit() {
    let dir = tempfile::tempdir().unwrap();
    let script = "sleep 1000 & echo $! > bg.pid; echo done";
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        run_hook(HookKind::AfterCreate, script, dir.path(), 10_000, &[]),
    )
    .await
    .expect("a background child holding stdout must not hang the hook");
    assert!(outcome.succeeded());
    assert_eq!(outcome.stdout.text, "done\n");
    let pid = support::read_pid(&dir.path().join("bg.pid")).await;
    assert!(support::dies(pid).await, "background child {pid} survived");
}
