//! Child processes in their own process group, so a timeout, a finished run or a cancelled task
//! kills every descendant and not only the shell (SPEC §9.4 hook timeouts, §10.6 turn timeouts).
//! Also the bounded capture of a child's output.
//!
//! A child also dies with the orchestrator: on Linux it gets `PR_SET_PDEATHSIG` = SIGKILL, so
//! `kill -9` of `symphony run` takes its hooks and agents along instead of leaving them to work
//! on (the signal follows the thread that spawned the child; children are spawned from the
//! runtime's worker threads, which live as long as the process). A child started in a
//! workspace takes a shared [`crate::workspace_lock`] before it executes, so a descendant that
//! outlives it still marks the workspace as held.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};

/// How long to wait for output readers after the process group is gone. A descendant that left
/// the group (`setsid`) may keep a pipe open; its output is abandoned after this.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long a process group gets between SIGTERM and SIGKILL: enough for shells to run their
/// EXIT traps (lock files, temp files) and agents to flush their state.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(2);
/// How often [`ProcessGroup::terminate`] checks whether the group is gone.
const TERMINATE_POLL: Duration = Duration::from_millis(20);

/// Which environment a child gets.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EnvPolicy<'a> {
    /// The orchestrator's whole environment (hooks: fully trusted config, SPEC §15.4).
    Inherit,
    /// Only the named variables that are set (agents).
    Allowlist(&'a [String]),
}

/// `bash -lc <script>` in `cwd`, leader of a new process group, with piped stdout/stderr and
/// the given stdin. `extra` is added after the policy's variables.
pub(crate) fn bash(
    script: &str,
    cwd: &Path,
    env: EnvPolicy<'_>,
    extra: &[(String, String)],
    stdin: Stdio,
) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg("-lc")
        .arg(script)
        .current_dir(cwd)
        .process_group(0)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let EnvPolicy::Allowlist(names) = env {
        cmd.env_clear();
        for name in names {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
    }
    for (name, value) in extra {
        cmd.env(name, value);
    }
    let lock = cwd.join(crate::workspace_lock::WORKSPACE_LOCK_FILE);
    let lock = lock
        .is_file()
        .then(|| CString::new(lock.as_os_str().as_bytes()).ok())
        .flatten();
    tie_to_orchestrator(&mut cmd, lock);
    cmd
}

/// Before the child executes: SIGKILL when this process dies, and a shared lock on the
/// workspace lock file (inherited by its descendants).
#[allow(unsafe_code)]
fn tie_to_orchestrator(cmd: &mut Command, workspace_lock: Option<CString>) {
    let parent = rustix::process::getpid();
    let child_setup = move || -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The orchestrator died between fork and prctl: the signal will never come.
            if rustix::process::getppid() != Some(parent) {
                return Err(rustix::io::Errno::SRCH.into());
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = parent;
        if let Some(path) = &workspace_lock {
            // Without O_CLOEXEC: the descriptor, and so the lock, passes to the program and
            // its descendants. A lock that cannot be taken only weakens the restart check.
            if let Ok(fd) = rustix::fs::open(
                path.as_c_str(),
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::APPEND,
                rustix::fs::Mode::empty(),
            ) {
                let _ = rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockShared);
                let mut line = [0u8; 24];
                let len = holder_line(&mut line, rustix::process::getpid(), parent);
                let _ = rustix::io::write(&fd, &line[..len]);
                std::mem::forget(fd);
            }
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // (prctl, getppid, open, flock) on data prepared before the fork: no allocation, no locks.
    unsafe {
        cmd.pre_exec(child_setup);
    }
}

/// Writes `<pgid> <parent pid>\n` into `buf` without allocating (it runs between fork and
/// exec) and returns its length: the line a child appends to the workspace lock file
/// ([`crate::workspace_lock`]). The child leads its own group, so its pid is the pgid.
fn holder_line(buf: &mut [u8; 24], pgid: Pid, parent: Pid) -> usize {
    fn digits(out: &mut [u8], mut n: u32) -> usize {
        let mut tmp = [0u8; 10];
        let mut len = 0;
        loop {
            tmp[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for (i, d) in tmp[..len].iter().rev().enumerate() {
            out[i] = *d;
        }
        len
    }
    let mut at = digits(&mut buf[..], pgid.as_raw_nonzero().get().unsigned_abs());
    buf[at] = b' ';
    at += 1;
    at += digits(&mut buf[at..], parent.as_raw_nonzero().get().unsigned_abs());
    buf[at] = b'\n';
    at + 1
}

/// Owns a child's process group: [`ProcessGroup::terminate`] stops every member gracefully,
/// [`ProcessGroup::kill`] (and drop, e.g. a cancelled task) sends SIGKILL at once.
#[derive(Debug)]
pub(crate) struct ProcessGroup {
    pgid: Option<Pid>,
}

impl ProcessGroup {
    /// The group led by `child` (spawned with `process_group(0)`, so pgid == pid).
    pub(crate) fn of(child: &Child) -> Self {
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        Self { pgid }
    }

    /// Sends SIGTERM to the group, waits up to [`TERMINATE_GRACE`] for every member to exit
    /// (reaping `leader` meanwhile), then SIGKILLs whatever is left and reaps the leader.
    pub(crate) async fn terminate(&mut self, leader: &mut Child) {
        if let Some(pgid) = self.pgid
            && kill_process_group(pgid, Signal::TERM).is_ok()
        {
            let deadline = tokio::time::Instant::now() + TERMINATE_GRACE;
            loop {
                // A zombie leader would keep the group alive.
                let _ = leader.try_wait();
                if test_kill_process_group(pgid).is_err() || tokio::time::Instant::now() >= deadline
                {
                    break;
                }
                tokio::time::sleep(TERMINATE_POLL).await;
            }
        }
        self.kill();
        let _ = tokio::time::timeout(TERMINATE_GRACE, leader.wait()).await;
    }

    /// SIGKILLs every process still in the group. Idempotent; a group already gone is fine.
    pub(crate) fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (nobody left) is the normal case after a clean exit.
            let _ = kill_process_group(pgid, Signal::KILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `capacity` bytes of a stream and how many earlier bytes were dropped.
#[derive(Debug)]
pub(crate) struct Tail {
    bytes: Vec<u8>,
    capacity: usize,
    dropped: u64,
}

impl Tail {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            bytes: Vec::new(),
            capacity,
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > self.capacity {
            let excess = self.bytes.len() - self.capacity;
            self.bytes.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    pub(crate) fn into_output(self) -> CapturedOutput {
        CapturedOutput {
            text: String::from_utf8_lossy(&self.bytes).into_owned(),
            dropped_bytes: self.dropped,
        }
    }
}

/// The captured tail of one output stream (invalid UTF-8 replaced).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CapturedOutput {
    /// The last bytes of the stream as text.
    pub text: String,
    /// Bytes before `text` that were not kept.
    pub dropped_bytes: u64,
}

impl CapturedOutput {
    /// At most the last `max_chars` characters of `text`, prefixed with `…` when cut (for logs,
    /// SPEC §15.4).
    pub fn truncated(&self, max_chars: usize) -> String {
        let count = self.text.chars().count();
        if count <= max_chars && self.dropped_bytes == 0 {
            return self.text.clone();
        }
        let tail: String = self
            .text
            .chars()
            .skip(count.saturating_sub(max_chars))
            .collect();
        format!("…{tail}")
    }
}

/// Reads `reader` to EOF keeping the last `capacity` bytes, copying everything to `tee` when
/// given (a tee write error stops the copy, not the capture).
pub(crate) async fn capture<R, W>(mut reader: R, capacity: usize, mut tee: Option<W>) -> Tail
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut tail = Tail::new(capacity);
    let mut chunk = vec![0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.push(&chunk[..n]);
                if let Some(w) = tee.as_mut()
                    && w.write_all(&chunk[..n]).await.is_err()
                {
                    tee = None;
                }
            }
        }
    }
    if let Some(w) = tee.as_mut() {
        let _ = w.flush().await;
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_lines_are_decimal_pgid_and_parent() {
        let mut buf = [0u8; 24];
        let pid = |n| Pid::from_raw(n).unwrap();
        let len = holder_line(&mut buf, pid(4_194_304), pid(7));
        assert_eq!(&buf[..len], b"4194304 7\n");
        let len = holder_line(&mut buf, pid(i32::MAX), pid(i32::MAX));
        assert_eq!(&buf[..len], b"2147483647 2147483647\n");
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut tail = Tail::new(4);
        tail.push(b"abc");
        tail.push(b"defg");
        let out = tail.into_output();
        assert_eq!(out.text, "defg");
        assert_eq!(out.dropped_bytes, 3);
        assert_eq!(out.truncated(2), "…fg");
    }
}
