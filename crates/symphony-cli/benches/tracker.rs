//! Tracker CLI benchmark: whole `symphony` processes (startup included) on generated issues
//! files of 1k, 10k and 100k issues in two shapes — ~1 KB records and fixture-sized ~8 KB
//! records with long descriptions and handoffs. For each of `validate`, `list`, `ready`,
//! `create` and a one-record `update` it prints the median and p90 wall time and the child's
//! peak RSS (from `wait4`).
//!
//! Run: `cargo bench -p symphony-cli --bench tracker` (all), or filter by size and shape:
//! `cargo bench -p symphony-cli --bench tracker -- 10000 1kb`.
//!
//! Targets (design.md, Performance bars), ~1 KB records, 10k issues: `ready` < 30 ms,
//! `create` < 5 ms, `update` < 20 ms, linear beyond.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// ~1 KB per record.
    Small,
    /// ~8 KB per record: long description, acceptance, handoff.
    Large,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Small => "1kb",
            Shape::Large => "8kb",
        }
    }
}

/// xorshift64*: deterministic files without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn text(&mut self, bytes: usize) -> String {
        const WORDS: [&str; 16] = [
            "tracker",
            "claim",
            "shard",
            "gossip",
            "handoff",
            "review",
            "agent",
            "workflow",
            "heartbeat",
            "peer",
            "merge",
            "record",
            "state",
            "the",
            "with",
            "fix",
        ];
        let mut out = String::with_capacity(bytes + 12);
        while out.len() < bytes {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(WORDS[self.below(WORDS.len() as u64) as usize]);
        }
        out
    }
}

fn id(n: usize) -> String {
    format!("BEN-{n:06}")
}

fn record(rng: &mut Rng, n: usize, shape: Shape) -> Value {
    let state = match rng.below(20) {
        0..=10 => "todo",
        11..=12 => "in_progress",
        13..=14 => "review",
        15 => "blocked",
        _ => "done",
    };
    let blockers: Vec<Value> = (0..rng.below(3))
        .filter(|_| n > 50)
        .map(|_| {
            let b = id(n - 1 - rng.below(50) as usize);
            json!({"id": b, "identifier": b, "state": "todo"})
        })
        .collect();
    let (description, acceptance) = match shape {
        Shape::Small => (rng.text(520), vec![rng.text(80), rng.text(80)]),
        Shape::Large => (rng.text(3600), (0..5).map(|_| rng.text(120)).collect()),
    };
    let mut record = json!({
        "id": id(n), "identifier": id(n), "title": rng.text(60), "description": description,
        "priority": rng.below(5), "state": state, "branch_name": null, "url": null,
        "labels": ["bench", rng.text(6)], "blocked_by": blockers,
        "created_at": "2026-04-28T00:00:00Z", "updated_at": "2026-04-28T00:00:00Z",
        "acceptance": acceptance, "validation": [rng.text(40)]
    });
    if shape == Shape::Large {
        record["handoff"] = json!({
            "summary": rng.text(1500),
            "files_changed": (0..12).map(|i| format!("crates/bench/src/module_{i}.rs")).collect::<Vec<_>>(),
            "validation": (0..4).map(|_| json!({"command": rng.text(30), "status": "passed", "exit_code": 0})).collect::<Vec<_>>(),
            "follow_up": (0..3).map(|_| rng.text(150)).collect::<Vec<_>>(),
        });
    }
    record
}

fn generate(path: &Path, count: usize, shape: Shape) -> u64 {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ count as u64);
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    for n in 1..=count {
        serde_json::to_writer(&mut out, &record(&mut rng, n, shape)).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// Runs the command to completion; returns wall time and the child's peak RSS in KiB.
#[allow(clippy::zombie_processes)] // reaped by wait4, which also yields its rusage
fn measure(command: &mut Command) -> (Duration, u64) {
    let started = Instant::now();
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped (`Child::wait` is never called on it),
    // and both out-pointers point to live, writable locals of the right types.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(reaped, pid, "wait4 failed");
    let exited_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !exited_ok {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr {
            std::io::Read::read_to_string(&mut pipe, &mut stderr).ok();
        }
        panic!("{command:?} failed (status {status}): {stderr}");
    }
    (elapsed, u64::try_from(usage.ru_maxrss).unwrap_or(0))
}

fn summarize(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p90 = ((times.len() * 9).div_ceil(10)).clamp(1, times.len()) - 1;
    (ms(times[times.len() / 2]), ms(times[p90]))
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (sizes, shapes): (Vec<&String>, Vec<&String>) =
        filters.iter().partition(|f| f.parse::<usize>().is_ok());
    let binary = env!("CARGO_BIN_EXE_symphony");
    println!(
        "{:<5} {:>7} {:>8}  {:<9} {:>10} {:>9} {:>13}",
        "shape", "issues", "file MB", "command", "median ms", "p90 ms", "peak RSS MiB"
    );
    for shape in [Shape::Small, Shape::Large] {
        for count in SIZES {
            let shape_wanted = shapes.is_empty() || shapes.iter().any(|s| *s == shape.name());
            let size_wanted = sizes.is_empty() || sizes.iter().any(|s| **s == count.to_string());
            if shape_wanted && size_wanted {
                run_size(binary, shape, count);
            }
        }
    }
}

fn run_size(binary: &str, shape: Shape, count: usize) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("issues")).unwrap();
    std::fs::write(
        dir.path().join("WORKFLOW.md"),
        "---\ntracker:\n  id_prefix: BEN\n---\n",
    )
    .unwrap();
    let bytes = generate(&dir.path().join("issues/issues.jsonl"), count, shape);
    let runs = if count >= 100_000 { 5 } else { 21 };
    let target = id(count / 2);
    let commands = ["validate", "list", "ready", "create", "update"];
    for name in commands {
        let mut times = Vec::with_capacity(runs);
        let mut peak = 0;
        for run in 0..=runs {
            let priority = (run % 4 + 1).to_string();
            let args: Vec<&str> = match name {
                "validate" => vec!["validate"],
                "list" => vec!["issues", "list", "--json"],
                "ready" => vec!["issues", "ready", "--json"],
                "create" => vec!["issues", "create", "--title", "bench"],
                _ => vec!["issues", "update", &target, "--priority", &priority],
            };
            let mut command = Command::new(binary);
            command.args(args).current_dir(dir.path());
            let (elapsed, rss) = measure(&mut command);
            if run > 0 {
                // The first run warms the page cache.
                times.push(elapsed);
                peak = peak.max(rss);
            }
        }
        let (median, p90) = summarize(times);
        println!(
            "{:<5} {:>7} {:>8.1}  {:<9} {:>10.1} {:>9.1} {:>13.1}",
            shape.name(),
            count,
            bytes as f64 / 1e6,
            name,
            median,
            p90,
            peak as f64 / 1024.0
        );
    }
}
