//! Fault injection on the tracker's writers (issue 8): SIGKILL at random points of committing
//! CLI writes, parallel writers with `--commit`, and git lock files left by a killed commit.
//! Real binary, real git repositories, real processes; every wait is bounded.
//!
//! The default run is sized for CI (a few seconds each). `SYMPHONY_FAULTS_LONG=1` runs the
//! full versions of issue 8's acceptance: 200 kills, 8 × 50 parallel writers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use symphony_tests::{IssueSpec, Repo, issues_text, run_bounded, text, workflow};

/// `default`, or `long` when `SYMPHONY_FAULTS_LONG` is set.
fn sized(default: usize, long: usize) -> usize {
    if std::env::var_os("SYMPHONY_FAULTS_LONG").is_some() {
        long
    } else {
        default
    }
}

/// A small xorshift generator; the seed is printed so a failing run can be replayed with
/// `SYMPHONY_FAULTS_SEED`.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("SYMPHONY_FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("SYMPHONY_FAULTS_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn tracker_repo(issues: usize) -> Repo {
    let specs: Vec<IssueSpec> = (1..=issues)
        .map(|n| IssueSpec::todo(&format!("SYM-{n:04}")))
        .collect();
    Repo::new(&issues_text(&specs), &workflow("  id_prefix: SYM"))
}

/// Records of a JSONL text by id; panics on a torn (unparsable) line or a duplicate id.
fn records(text: &str, what: &str) -> BTreeMap<String, Value> {
    let mut by_id = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let record: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{what}: line {} is torn ({e}): {line}", n + 1));
        let id = record["id"].as_str().unwrap().to_string();
        assert!(
            by_id.insert(id.clone(), record).is_none(),
            "{what}: duplicate id {id}"
        );
    }
    by_id
}

fn head_records(repo: &Repo) -> BTreeMap<String, Value> {
    records(&repo.git(&["show", "HEAD:issues/issues.jsonl"]), "HEAD")
}

/// Git's lock files, our commit marker and a pending append journal: none may outlive a
/// successful command.
fn leftover_locks(repo: &Repo) -> Vec<String> {
    let mut left: Vec<String> = [
        ".git/index.lock",
        ".git/HEAD.lock",
        ".git/refs/heads/main.lock",
        ".git/symphony-commit.pid",
    ]
    .iter()
    .filter(|p| repo.path(p).exists())
    .map(|p| p.to_string())
    .collect();
    if symphony_tracker::durable::has_pending_append(&repo.path(".symphony")).unwrap() {
        left.push(".symphony/append.journal (pending)".into());
    }
    left
}

/// One write command with `--commit`, and what HEAD must show once it exited 0.
#[derive(Debug, Clone)]
enum Write {
    Create(String),
    Update(String, i64),
    Handoff(String, String),
    Close(String),
}

impl Write {
    fn args(&self) -> Vec<String> {
        let v = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            Write::Create(title) => v(&["issues", "create", "--title", title, "--commit"]),
            Write::Update(id, p) => v(&[
                "issues",
                "update",
                id,
                "--priority",
                &p.to_string(),
                "--commit",
            ]),
            Write::Handoff(id, summary) => {
                v(&["issues", "handoff", id, "--summary", summary, "--commit"])
            }
            Write::Close(id) => v(&["issues", "close", id, "--commit"]),
        }
    }

    /// Whether `head` holds this write's change (`created` is the id a create printed).
    fn committed_in(&self, head: &BTreeMap<String, Value>, created: &str) -> bool {
        match self {
            Write::Create(title) => head.get(created).is_some_and(|r| r["title"] == *title),
            Write::Update(id, p) => head[id]["priority"] == *p,
            Write::Handoff(id, summary) => {
                head[id]["state"] == "review" && head[id]["handoff"]["summary"] == *summary
            }
            Write::Close(id) => head[id]["state"] == "done",
        }
    }
}

fn pick_write(rng: &mut Rng, current: &BTreeMap<String, Value>, n: usize) -> Write {
    let open: Vec<&String> = current
        .iter()
        .filter(|(_, r)| r["state"] != "done")
        .map(|(id, _)| id)
        .collect();
    let any = |rng: &mut Rng| open[rng.below(open.len() as u64) as usize].clone();
    match rng.below(if open.len() > 3 { 4 } else { 1 }) {
        0 => Write::Create(format!("Created by write {n}")),
        1 => Write::Update(any(rng), rng.below(5) as i64),
        2 => Write::Handoff(any(rng), format!("Handoff of write {n}")),
        _ => Write::Close(any(rng)),
    }
}

/// How long an uninterrupted committing write takes here (median of 5), to spread the kills
/// over a command's whole life.
fn typical_write(repo: &Repo) -> Duration {
    let mut took: Vec<Duration> = (0..5)
        .map(|n| {
            let started = Instant::now();
            let out = run_bounded(
                repo.symphony(&[
                    "issues",
                    "update",
                    "SYM-0001",
                    "--priority",
                    &n.to_string(),
                    "--commit",
                ]),
                Duration::from_secs(30),
            );
            assert!(out.status.success(), "{}", text(&out.stderr));
            started.elapsed()
        })
        .collect();
    took.sort();
    took[2]
}

#[test]
fn sigkill_at_random_points_of_committing_writes_loses_nothing_and_leaves_no_stale_lock() {
    let kills = sized(30, 200);
    let repo = tracker_repo(6);
    let mut rng = Rng::seeded();
    let typical = typical_write(&repo);
    let mut seen: BTreeSet<String> = records(&repo.issues(), "start").into_keys().collect();
    let (mut finished, mut killed, mut verified) = (0, 0, 0);
    let (mut markers_left, mut git_locks_left) = (0, 0);
    for n in 0..kills {
        let current = records(&repo.issues(), "before the write");
        let write = pick_write(&mut rng, &current, n);
        let mut child = repo
            .symphony(&write.args().iter().map(String::as_str).collect::<Vec<_>>())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Every third kill is aimed inside the git commit: as soon as the commit marker
        // exists (libgit2's lock files come and go within it); the others at a random point
        // of the command's life.
        let started = Instant::now();
        if n % 3 == 2 {
            let marker = repo.path(".git/symphony-commit.pid");
            while !marker.exists()
                && matches!(child.try_wait(), Ok(None))
                && started.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_micros(100));
            }
        } else {
            std::thread::sleep(typical.mul_f64(rng.below(1000) as f64 / 1000.0));
        }
        let delay = started.elapsed();
        let ran_to_the_end = matches!(child.try_wait(), Ok(Some(_)));
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        if ran_to_the_end && out.status.success() {
            finished += 1;
            let created = text(&out.stdout).trim().to_string();
            assert!(
                write.committed_in(&head_records(&repo), &created),
                "write {n} {write:?} exited 0 but HEAD does not hold it"
            );
        } else {
            killed += 1;
            markers_left += usize::from(repo.path(".git/symphony-commit.pid").exists());
            git_locks_left += [".git/index.lock", ".git/refs/heads/main.lock"]
                .iter()
                .filter(|p| repo.path(p).exists())
                .count();
        }
        // 0 torn files, 0 duplicate ids, 0 lost records.
        let now = records(&repo.issues(), &format!("after write {n} {write:?}"));
        for id in &seen {
            assert!(now.contains_key(id), "write {n} {write:?} lost {id}");
        }
        seen.extend(now.keys().cloned());
        // The next command always works, and commits.
        let next = Write::Update("SYM-0001".into(), (n % 5) as i64);
        let probe: Vec<String> = Write::Update("SYM-0001".into(), ((n + 1) % 5) as i64).args();
        for args in [next.args(), probe] {
            let out = run_bounded(
                repo.symphony(&args.iter().map(String::as_str).collect::<Vec<_>>()),
                Duration::from_secs(30),
            );
            assert!(
                out.status.success(),
                "after write {n} {write:?} (killed after {delay:?}), {args:?} failed: {}",
                text(&out.stderr)
            );
        }
        assert_eq!(
            repo.git(&["show", "HEAD:issues/issues.jsonl"]),
            repo.issues(),
            "after write {n}: every change is committed once a committing write succeeds"
        );
        verified += 1;
        assert!(
            leftover_locks(&repo).is_empty(),
            "{:?}",
            leftover_locks(&repo)
        );
    }
    let validate = run_bounded(
        repo.symphony(&[
            "validate",
            "issues/issues.jsonl",
            "--workflow",
            "WORKFLOW.md",
        ]),
        Duration::from_secs(30),
    );
    assert!(validate.status.success(), "{}", text(&validate.stdout));
    eprintln!(
        "faults: {kills} writes with --commit ({killed} killed, {finished} finished), {verified} \
         recoveries verified; kills left {markers_left} commit markers and {git_locks_left} git \
         lock files; {} records, typical write {typical:?}",
        seen.len()
    );
}

#[test]
fn parallel_writers_with_commit_all_exit_0_and_no_commit_drops_an_earlier_one() {
    let writers = 8;
    let per_writer = sized(6, 50);
    let repo = tracker_repo(1);
    let bin = symphony_tests::symphony_bin();
    let started = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (root, home, bin) = (
                repo.root.clone(),
                repo.home.path().to_path_buf(),
                bin.clone(),
            );
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for n in 0..per_writer {
                    let title = format!("writer {w} issue {n}");
                    let mut cmd = Command::new(&bin);
                    cmd.args(["issues", "create", "--title", &title, "--commit"])
                        .current_dir(&root)
                        .env("HOME", &home);
                    let out = run_bounded(cmd, Duration::from_secs(60));
                    if !out.status.success() {
                        failures.push(format!("{title}: {}", text(&out.stderr)));
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let took = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} of {} commands failed: {failures:#?}",
        failures.len(),
        writers * per_writer
    );
    // Every change in history, each commit adding exactly one issue to its parent's file.
    let log = repo.git(&["log", "--format=%H", "--reverse"]);
    let commits: Vec<&str> = log.lines().skip(1).collect();
    assert_eq!(commits.len(), writers * per_writer, "one commit per create");
    let mut previous: BTreeSet<String> = BTreeSet::from(["SYM-0001".to_string()]);
    for commit in &commits {
        let file = repo.git(&["show", &format!("{commit}:issues/issues.jsonl")]);
        let ids: BTreeSet<String> = records(&file, commit).into_keys().collect();
        assert!(
            ids.is_superset(&previous),
            "{commit} dropped {:?}",
            &previous - &ids
        );
        assert_eq!(ids.len(), previous.len() + 1, "{commit} adds one issue");
        previous = ids;
    }
    let titles: BTreeSet<String> = head_records(&repo)
        .values()
        .map(|r| r["title"].as_str().unwrap().to_string())
        .collect();
    for w in 0..writers {
        for n in 0..per_writer {
            assert!(titles.contains(&format!("writer {w} issue {n}")));
        }
    }
    assert_eq!(repo.git(&["status", "--porcelain", "issues"]), "");
    eprintln!(
        "faults: {writers} x {per_writer} parallel creates with --commit, all exit 0, {} commits in {took:?}",
        commits.len()
    );
}

/// A pid that is certainly not running (a child that has been reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_git_lock_left_by_a_killed_commit_is_recovered_and_a_foreign_one_is_named() {
    let repo = tracker_repo(1);
    let update = |p: &str| {
        run_bounded(
            repo.symphony(&["issues", "update", "SYM-0001", "--priority", p, "--commit"]),
            Duration::from_secs(30),
        )
    };
    // What a commit killed inside libgit2 leaves: the branch lock and our marker.
    repo.write(".git/refs/heads/main.lock", "");
    repo.write(".git/symphony-commit.pid", &format!("{}\n", dead_pid()));
    let out = update("3");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(head_records(&repo)["SYM-0001"]["priority"], 3);
    assert!(
        leftover_locks(&repo).is_empty(),
        "{:?}",
        leftover_locks(&repo)
    );
    // A lock nobody recorded (a user's git, killed): left alone, and the error names it.
    repo.write(".git/refs/heads/main.lock", "");
    let out = update("4");
    assert_eq!(out.status.code(), Some(2));
    let lock = repo.path(".git/refs/heads/main.lock");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("remove {}", lock.display())),
        "{stderr}"
    );
    assert!(lock.exists(), "someone else's lock is not ours to remove");
    std::fs::remove_file(&lock).unwrap();
    assert!(update("4").status.success());
    assert!(Path::new(&repo.path(".git")).is_dir());
}
