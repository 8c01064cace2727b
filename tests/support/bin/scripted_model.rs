//! `symphony-scripted-model`: a scripted Responses-API model endpoint for the real `codex`
//! binary, on 127.0.0.1 (the module is shared with the orchestrator's real-binary tests).
//!
//! Usage: `symphony-scripted-model SCRIPT.json LOG_DIR [PORT]`. SCRIPT.json is a JSON array of
//! steps, one per model request: `{"call": NAME, "arguments": {...}}`, `{"message": TEXT}` or
//! `{"hang": true}`. Prints `http://127.0.0.1:PORT/v1` (the provider's `base_url`) on stdout,
//! then serves until killed. Exit 2 on bad arguments or an unreadable script.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../../../crates/symphony-orchestrator/tests/support/scripted_model.rs"]
mod scripted_model;

use std::io::Write;
use std::path::Path;

use scripted_model::{ScriptedModel, Step};

fn main() {
    if let Err(message) = run() {
        eprintln!("symphony-scripted-model: {message}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [script, log_dir, rest @ ..] = args.as_slice() else {
        return Err("usage: symphony-scripted-model SCRIPT.json LOG_DIR [PORT]".into());
    };
    let port = rest.first().map_or("0", String::as_str);
    let text = std::fs::read_to_string(script).map_err(|e| format!("{script}: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{script}: not JSON: {e}"))?;
    let steps = value
        .as_array()
        .ok_or_else(|| format!("{script}: expected a JSON array of steps"))?
        .iter()
        .enumerate()
        .map(|(i, s)| Step::from_json(s).map_err(|e| format!("{script}: /{i}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let model = ScriptedModel::start_on(&format!("127.0.0.1:{port}"), steps, Path::new(log_dir))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    println!("{}", model.base_url);
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    loop {
        std::thread::park();
    }
}
