//! Shared helpers for the integration tests: process liveness and agent launches.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod codex_bin;
pub mod scripted_model;

use std::path::{Path, PathBuf};
use std::time::Duration;

use symphony_orchestrator::config::{HooksConfig, RunnerConfig};
use symphony_orchestrator::runner::{AgentEvent, AgentLaunch, AgentLogs};
use symphony_orchestrator::workflow::parse_workflow;
use symphony_orchestrator::workspace::WorkspaceManager;
use tokio::sync::mpsc;

/// True while `pid` exists and is not a zombie (a killed child whose parent has not reaped it).
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Waits up to 5 s for `pid` to die; returns whether it did.
pub async fn dies(pid: u32) -> bool {
    for _ in 0..100 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Reads a PID written by a test script, waiting up to 5 s for the file to appear.
pub async fn read_pid(path: &Path) -> u32 {
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never held a pid", path.display());
}

/// The runner config of a workflow whose front matter is `front_matter`.
pub fn runner_config(front_matter: &str) -> RunnerConfig {
    let text = format!("---\ntracker:\n  kind: git_issues\n{front_matter}\n---\nprompt");
    parse_workflow(Path::new("/test/WORKFLOW.md"), &text)
        .unwrap()
        .config
        .runner
}

/// A prepared workspace for `identifier` under a fresh root, plus a launch with logs in the
/// temp dir and an event channel.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub workspace: PathBuf,
    pub logs: AgentLogs,
    pub events: mpsc::Receiver<AgentEvent>,
    pub launch: AgentLaunch,
}

impl Harness {
    pub async fn new(identifier: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("workspaces");
        let prepared = WorkspaceManager::new(&root)
            .prepare(identifier, &HooksConfig::default(), &[])
            .await
            .unwrap();
        let logs = AgentLogs {
            stdout: dir.path().join("logs/agent.stdout.log"),
            stderr: dir.path().join("logs/agent.stderr.log"),
            prompt: dir.path().join("logs/prompt.md"),
        };
        let (tx, events) = mpsc::channel(1024);
        let launch = AgentLaunch {
            issue_id: format!("id-{identifier}"),
            issue_identifier: identifier.to_owned(),
            issue_title: "Make it work".to_owned(),
            attempt: None,
            workspace_root: root.clone(),
            workspace_path: prepared.workspace.path.clone(),
            env: vec![(
                "SYMPHONY_ISSUES_FILE".to_owned(),
                "/repo/issues/issues.jsonl".to_owned(),
            )],
            logs: logs.clone(),
            events: tx,
            tracker_tools: None,
        };
        Self {
            dir,
            root,
            workspace: prepared.workspace.path,
            logs,
            events,
            launch,
        }
    }

    /// Every event sent so far.
    pub fn drain(&mut self) -> Vec<AgentEvent> {
        let mut out = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            out.push(event);
        }
        out
    }

    pub fn stdout_log(&self) -> String {
        std::fs::read_to_string(&self.logs.stdout).unwrap_or_default()
    }

    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(&self.logs.stderr).unwrap_or_default()
    }
}
