//! Support for the cross-crate integration tests: locating the `symphony` binary, building
//! scratch git repositories with an issues file and a workflow, running `symphony run` as a
//! real process (once, or as a daemon stopped by SIGTERM), a minimal HTTP/1.1 client for the
//! API on 127.0.0.1, and bounded waits. Every wait has a deadline and fails with what it was
//! waiting for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `symphony` binary next to the test executable's directory (`target/<profile>/`).
///
/// # Panics
/// When it is missing, with the command that builds it.
pub fn symphony_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps");
    let bin = profile_dir.join("symphony");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p symphony-cli` (or run `cargo test --workspace`, \
         which builds it for the CLI's own tests)",
        bin.display()
    );
    bin
}

/// Waits up to `timeout` for `check` to return `Some`, polling every 50 ms.
///
/// # Panics
/// After the timeout, naming `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One issue line in the compact style of the x0x-symphony fixture.
#[derive(Debug, Clone)]
pub struct IssueSpec {
    /// Id and identifier.
    pub id: String,
    /// State.
    pub state: String,
    /// Priority (`None`: null).
    pub priority: Option<i64>,
    /// `created_at`.
    pub created_at: String,
    /// Blocker ids.
    pub blocked_by: Vec<String>,
    /// Extra fields appended verbatim (`,"claim":{...}`).
    pub extra: String,
}

impl IssueSpec {
    /// A `todo` issue of priority 2 created at 2026-01-01.
    pub fn todo(id: &str) -> Self {
        IssueSpec {
            id: id.to_string(),
            state: "todo".into(),
            priority: Some(2),
            created_at: "2026-01-01T00:00:00Z".into(),
            blocked_by: Vec::new(),
            extra: String::new(),
        }
    }

    /// The same issue in `state`.
    pub fn state(mut self, state: &str) -> Self {
        self.state = state.into();
        self
    }

    /// The same issue with priority `p`.
    pub fn priority(mut self, p: Option<i64>) -> Self {
        self.priority = p;
        self
    }

    /// The same issue created at `at`.
    pub fn created(mut self, at: &str) -> Self {
        self.created_at = at.into();
        self
    }

    /// The same issue blocked by `ids`.
    pub fn blocked_by(mut self, ids: &[&str]) -> Self {
        self.blocked_by = ids.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The same issue with `extra` appended to the record (starting with a comma).
    pub fn with(mut self, extra: &str) -> Self {
        self.extra = extra.into();
        self
    }

    /// The JSONL line, without the newline.
    pub fn line(&self) -> String {
        let blockers: Vec<String> = self
            .blocked_by
            .iter()
            .map(|b| format!("{{\"id\":\"{b}\",\"identifier\":\"{b}\"}}"))
            .collect();
        let priority = self
            .priority
            .map_or_else(|| "null".to_string(), |p| p.to_string());
        format!(
            "{{\"id\":\"{id}\",\"identifier\":\"{id}\",\"title\":\"Work on {id}\",\"description\":\"Do the thing for {id}.\",\
             \"priority\":{priority},\"state\":\"{state}\",\"branch_name\":null,\"url\":null,\"labels\":[\"test\"],\
             \"blocked_by\":[{blockers}],\"created_at\":\"{created}\",\"updated_at\":\"{created}\"{extra}}}",
            id = self.id,
            state = self.state,
            blockers = blockers.join(","),
            created = self.created_at,
            extra = self.extra,
        )
    }
}

/// The issues file text of `issues`.
pub fn issues_text(issues: &[IssueSpec]) -> String {
    issues.iter().map(|i| format!("{}\n", i.line())).collect()
}

/// A workflow: the given front matter after `tracker: {kind: git_issues}`, and a prompt.
pub fn workflow(front_matter: &str) -> String {
    format!(
        "---\ntracker:\n  kind: git_issues\n{front_matter}\n---\nWork on {{{{ issue.identifier }}}}: {{{{ issue.title }}}} (attempt {{{{ attempt }}}}).\n"
    )
}

/// A scratch git repository: `issues/issues.jsonl`, `WORKFLOW.md`, a `.gitignore` for
/// `.symphony/`, committed; and an empty home directory for the processes it runs.
pub struct Repo {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The repository root (canonical).
    pub root: PathBuf,
    /// `HOME` of every `symphony` process the tests start: hooks and agents run in
    /// `bash -lc` login shells, and the host user's profile (version managers, shims with
    /// lock files) must neither slow them down nor be left locked by a killed agent.
    pub home: tempfile::TempDir,
}

impl Repo {
    /// Creates and commits the repository.
    pub fn new(issues: &str, workflow: &str) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let repo = Repo {
            dir,
            root,
            home: tempfile::tempdir().unwrap(),
        };
        repo.write("issues/issues.jsonl", issues);
        repo.write("WORKFLOW.md", workflow);
        repo.write(".gitignore", ".symphony/\nworkspaces/\nmarkers/\n");
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.name", "Test"]);
        repo.git(&["config", "user.email", "test@example.invalid"]);
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-qm", "initial"]);
        repo
    }

    /// `root/relative`.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Writes `root/relative`, creating directories.
    pub fn write(&self, relative: &str, content: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// Writes an executable script `root/relative`.
    pub fn script(&self, relative: &str, body: &str) -> PathBuf {
        self.write(relative, body);
        let path = self.path(relative);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Runs git in the repository; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(&self.root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The issues file path.
    pub fn issues_path(&self) -> PathBuf {
        self.path("issues/issues.jsonl")
    }

    /// The issues file text.
    pub fn issues(&self) -> String {
        std::fs::read_to_string(self.issues_path()).unwrap()
    }

    /// The record of `id`, parsed.
    pub fn record(&self, id: &str) -> Value {
        let prefix = format!("{{\"id\":\"{id}\"");
        let text = self.issues();
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no record {id}"));
        serde_json::from_str(line).unwrap()
    }

    /// The `state` of `id`.
    pub fn state(&self, id: &str) -> String {
        self.record(id)["state"].as_str().unwrap().to_string()
    }

    /// A command running the `symphony` binary in the repository.
    pub fn symphony(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(symphony_bin());
        cmd.args(args)
            .current_dir(&self.root)
            .env("HOME", self.home.path());
        cmd
    }

    /// Runs `symphony run --once WORKFLOW.md <extra>` to completion (at most `timeout`).
    pub fn run_once(&self, extra: &[&str], timeout: Duration) -> Output {
        let mut args = vec!["run", "--once", "WORKFLOW.md"];
        args.extend_from_slice(extra);
        run_bounded(self.symphony(&args), timeout)
    }

    /// The manifest of the only attempt of `identifier`.
    pub fn manifest(&self, identifier: &str) -> Value {
        let dirs = self.attempt_dirs(identifier);
        assert_eq!(dirs.len(), 1, "attempts of {identifier}: {dirs:?}");
        let text = std::fs::read_to_string(dirs[0].join("manifest.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The proofs directories of `identifier`, oldest first.
    pub fn attempt_dirs(&self, identifier: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.path(&format!("proofs/{identifier}"))) else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        dirs.sort();
        dirs
    }
}

/// Runs `cmd` with piped output, killing it after `timeout`.
///
/// # Panics
/// When it does not finish in time (after killing it), with its output so far.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            terminate(&mut child);
            panic!(
                "{cmd:?} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                stdout.lock().unwrap(),
                stderr.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Readers end when the pipes close; bounded in case a grandchild keeps them open.
    std::thread::sleep(Duration::from_millis(50));
    let out = stdout.lock().unwrap().clone().into_bytes();
    let err = stderr.lock().unwrap().clone().into_bytes();
    Output {
        status,
        stdout: out,
        stderr: err,
    }
}

fn drain(pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let reader = BufReader::new(pipe);
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    text
}

/// The ready issues of the bundled example's backlog (`examples/x0x/`), in id order.
pub const X0X_READY: [&str; 7] = [
    "XSY-0003", "XSY-0004", "XSY-0005", "XSY-0011", "XSY-0012", "XSY-0027", "XSY-0030",
];

/// `git ARGS` in `dir`; its stdout. Panics (the test fails) when git fails, with its stderr.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Text of a process output stream.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `symphony run` running as a daemon with the HTTP API on an ephemeral port.
pub struct Daemon {
    child: Child,
    /// stdout so far.
    pub stdout: Arc<Mutex<String>>,
    /// stderr (logs) so far.
    pub stderr: Arc<Mutex<String>>,
    /// The API port.
    pub port: u16,
}

impl Daemon {
    /// Starts `symphony run WORKFLOW.md --port 0 <extra>` in `repo` and waits (10 s) for the
    /// API address on stdout.
    pub fn start(repo: &Repo, extra: &[&str]) -> Daemon {
        let mut args = vec!["run", "WORKFLOW.md", "--port", "0"];
        args.extend_from_slice(extra);
        Daemon::spawn(repo, &args)
    }

    /// Starts `symphony <args>` in `repo` and waits (10 s) for the API address on stdout.
    pub fn spawn(repo: &Repo, args: &[&str]) -> Daemon {
        let mut child = repo
            .symphony(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        let port = wait_for(Duration::from_secs(10), "the API address on stdout", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "symphony run exited early ({status}): {}",
                    stderr.lock().unwrap()
                );
            }
            let out = stdout.lock().unwrap();
            let rest = out.split("http://127.0.0.1:").nth(1)?;
            rest.split('/').next()?.parse::<u16>().ok()
        });
        Daemon {
            child,
            stdout,
            stderr,
            port,
        }
    }

    /// `GET path` → (status, JSON body or `Value::String` of a non-JSON body).
    pub fn get(&self, path: &str) -> (u16, Value) {
        http(self.port, "GET", path)
    }

    /// `POST path` with an empty body.
    pub fn post(&self, path: &str) -> (u16, Value) {
        http(self.port, "POST", path)
    }

    /// The `/api/v1/state` snapshot.
    pub fn state(&self) -> Value {
        let (status, body) = self.get("/api/v1/state");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The logs so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits (up to 20 s) for the exit status.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let status = wait_for(
            Duration::from_secs(20),
            "symphony run to exit after SIGTERM",
            || self.child.try_wait().unwrap(),
        );
        std::thread::sleep(Duration::from_millis(50));
        let logs = self.logs();
        (status, logs)
    }
}

impl Daemon {
    /// SIGKILLs the daemon (no chance to stop its agents) and returns its logs.
    pub fn kill9(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(50));
        self.logs()
    }
}

/// Pids of live processes whose working directory is `dir` or below it (from `/proc`), the
/// test process excluded.
pub fn processes_in(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id() && alive(pid))
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Stops a `symphony` process that is still running: SIGTERM first, so it stops its agents'
/// process groups (a SIGKILLed orchestrator would orphan them), SIGKILL after 10 s.
fn terminate(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with `Connection: close`; 5 s timeouts.
pub fn http(port: u16, method: &str, path: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// Whether process `pid` is alive and not a zombie.
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}
