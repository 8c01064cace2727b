//! `symphony mesh …` as a real child process: key creation, a served node found through
//! `.symphony/mesh.endpoint`, two nodes joining over 127.0.0.1, the WORKFLOW.md `mesh:`
//! block, and the errors a user sees. Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn symphony(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    dir
}

/// A `symphony mesh serve` child, stopped with SIGTERM when dropped.
struct Served {
    child: Option<Child>,
    dir: PathBuf,
}

impl Served {
    fn start(dir: &Path, args: &[&str]) -> Served {
        let child = Command::new(env!("CARGO_BIN_EXE_symphony"))
            .args(["mesh", "serve"])
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let served = Served {
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        wait_until(Duration::from_secs(20), || {
            served.dir.join(".symphony/mesh.endpoint").exists()
        });
        served
    }

    fn status(&self) -> Value {
        let out = symphony(&self.dir, &["mesh", "status", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn stop(mut self) -> Output {
        let mut child = self.child.take().unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "serve did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn mesh_id_creates_a_0600_key_once_and_prints_the_same_id() {
    let dir = repo();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let first = symphony(&dir.path().join("sub"), &["mesh", "id"]);
    assert!(first.status.success());
    let id = String::from_utf8(first.stdout).unwrap();
    assert_eq!(id.trim().len(), 64);
    assert!(String::from_utf8_lossy(&first.stderr).contains("created node key"));
    let key = dir.path().join(".symphony/node.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key at the repository root, private");

    let second = symphony(dir.path(), &["mesh", "id"]);
    assert_eq!(String::from_utf8(second.stdout).unwrap(), id);
    assert!(second.stderr.is_empty(), "quiet when the key exists");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = symphony(dir.path(), &["mesh", "id"]);
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("node.key"), "{message}");
}

#[test]
fn two_served_nodes_join_and_status_and_peers_read_the_recorded_endpoint() {
    let (a_dir, b_dir) = (repo(), repo());
    let a = Served::start(
        a_dir.path(),
        &["--listen", "127.0.0.1:0", "--trust", "open"],
    );
    let a_status = a.status();
    let a_id = a_status["node_id"].as_str().unwrap().to_string();
    let a_addr = a_status["advertised_addr"].as_str().unwrap().to_string();
    let bootstrap = format!("{a_id}@{a_addr}");
    let b = Served::start(
        b_dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--trust",
            "open",
            "--bootstrap",
            &bootstrap,
        ],
    );
    let b_id = b.status()["node_id"].as_str().unwrap().to_string();
    wait_until(Duration::from_secs(20), || {
        a.status()["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["node_id"] == b_id.as_str() && p["view"] == "active")
    });

    let text = symphony(a_dir.path(), &["mesh", "status"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains(&format!("node      {a_id}")), "{text}");
    assert!(text.contains("active 1"), "{text}");
    let table = symphony(a_dir.path(), &["mesh", "peers"]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("NODE"));
    assert!(
        table.contains(&b_id[..16]) && table.contains("active"),
        "{table}"
    );
    let json = symphony(a_dir.path(), &["mesh", "peers", "--json"]);
    let peers: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(peers[0]["node_id"], b_id.as_str());
    // --api reads another node's API from anywhere.
    let endpoint = std::fs::read_to_string(b_dir.path().join(".symphony/mesh.endpoint")).unwrap();
    let other = symphony(
        a_dir.path(),
        &["mesh", "status", "--json", "--api", endpoint.trim()],
    );
    let other: Value = serde_json::from_slice(&other.stdout).unwrap();
    assert_eq!(other["node_id"], b_id.as_str());

    let out = b.stop();
    assert!(out.status.success());
    assert!(
        !b_dir.path().join(".symphony/mesh.endpoint").exists(),
        "endpoint removed"
    );
    a.stop();
}

#[test]
fn serve_takes_the_mesh_block_of_workflow_md() {
    let dir = repo();
    let workflow = dir.path().join("WORKFLOW.md");
    std::fs::write(
        &workflow,
        "---\nmesh:\n  listen: 127.0.0.1:0\n  trust: open\n  key_path: keys/node.key\n  \
         transport:\n    idle_timeout_ms: 3000\n---\nWork on {{ issue.identifier }}.\n",
    )
    .unwrap();
    let node = Served::start(dir.path(), &["--config", "WORKFLOW.md"]);
    let status = node.status();
    let id = symphony(dir.path(), &["mesh", "id", "--key", "keys/node.key"]);
    assert_eq!(
        String::from_utf8(id.stdout).unwrap().trim(),
        status["node_id"].as_str().unwrap(),
        "the node uses the key named by mesh.key_path"
    );
    assert!(node.stop().status.success());

    std::fs::write(&workflow, "---\nmesh:\n  lisen: 127.0.0.1:0\n---\nprompt\n").unwrap();
    let bad = symphony(dir.path(), &["mesh", "serve", "--config", "WORKFLOW.md"]);
    assert_eq!(bad.status.code(), Some(2));
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(
        message.contains("WORKFLOW.md") && message.contains("mesh") && message.contains("lisen"),
        "{message}"
    );
}

#[test]
fn status_without_a_running_node_says_how_to_start_one() {
    let dir = repo();
    let out = symphony(dir.path(), &["mesh", "status"]);
    assert_eq!(out.status.code(), Some(2));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("mesh.endpoint"), "{message}");
    assert!(message.contains("symphony mesh serve"), "{message}");
    let unreachable = symphony(
        dir.path(),
        &["mesh", "peers", "--api", "http://127.0.0.1:9"],
    );
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the node"));
}
