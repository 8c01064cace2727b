//! A scripted model endpoint for the real `codex` binary: the OpenAI Responses API as Codex
//! calls it (`POST <base_url>/responses`, answered as a `text/event-stream` of
//! `response.created`, `response.output_item.done`, `response.completed`), served on
//! 127.0.0.1 with std only. Each request gets the next [`Step`] of the script; every request
//! body is appended to `requests.jsonl` in the log directory so tests can see what Codex sent.
//!
//! Found by experiment with codex 0.171.0 (`-c model_provider=scripted`,
//! `model_providers.scripted.base_url=http://127.0.0.1:PORT/v1`, `wire_api="responses"`,
//! `env_key`): Codex posts JSON (`model`, `input`, `tools`, `stream: true`, ...), offers the
//! tools `exec_command`, `request_user_input`, the thread's dynamic tools and others, and sends
//! each tool result back as a `function_call_output` item of the next request.
//!
//! Shared by the orchestrator's real-binary tests and the `symphony-scripted-model` binary
//! (`examples/codex/`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// Largest request body read, in bytes (Codex sends the whole conversation each time).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What the model answers one request with.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A function call: `name` with JSON `arguments`.
    Call { name: String, arguments: Value },
    /// A final assistant message (ends the turn).
    Message(String),
    /// Accept the request and never answer (the connection stays open).
    Hang,
}

impl Step {
    /// `{"call": NAME, "arguments": {...}}`, `{"message": TEXT}` or `{"hang": true}`.
    pub fn from_json(value: &Value) -> Result<Step, String> {
        if let Some(name) = value.get("call").and_then(Value::as_str) {
            let arguments = value.get("arguments").cloned().unwrap_or_else(|| json!({}));
            return Ok(Step::Call {
                name: name.to_owned(),
                arguments,
            });
        }
        if let Some(text) = value.get("message").and_then(Value::as_str) {
            return Ok(Step::Message(text.to_owned()));
        }
        if value.get("hang").and_then(Value::as_bool) == Some(true) {
            return Ok(Step::Hang);
        }
        Err(format!(
            "step {value}: expected {{\"call\": ...}}, {{\"message\": ...}} or {{\"hang\": true}}"
        ))
    }
}

/// A running scripted model.
pub struct ScriptedModel {
    /// `http://127.0.0.1:PORT/v1`, the provider's `base_url`.
    pub base_url: String,
    log: PathBuf,
    served: Arc<Mutex<usize>>,
}

impl ScriptedModel {
    /// Serves `steps` on an ephemeral port from a background thread; requests past the script
    /// get [`Step::Message`] `"done"`. Request bodies go to `<log_dir>/requests.jsonl`.
    pub fn start(steps: Vec<Step>, log_dir: &Path) -> std::io::Result<ScriptedModel> {
        Self::start_on("127.0.0.1:0", steps, log_dir)
    }

    /// Like [`ScriptedModel::start`] on a given address.
    pub fn start_on(
        addr: &str,
        steps: Vec<Step>,
        log_dir: &Path,
    ) -> std::io::Result<ScriptedModel> {
        std::fs::create_dir_all(log_dir)?;
        let listener = TcpListener::bind(addr)?;
        let port = listener.local_addr()?.port();
        let log = log_dir.join("requests.jsonl");
        let served = Arc::new(Mutex::new(0));
        let state = Arc::new(Mutex::new((steps, 0usize)));
        let (log_path, count) = (log.clone(), Arc::clone(&served));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, log, count) =
                    (Arc::clone(&state), log_path.clone(), Arc::clone(&count));
                std::thread::spawn(move || {
                    let _ = serve(stream, &state, &log, &count);
                });
            }
        });
        Ok(ScriptedModel {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            log,
            served,
        })
    }

    /// Request bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// How many model requests arrived.
    pub fn served(&self) -> usize {
        self.served.lock().map_or(0, |n| *n)
    }
}

type Script = Mutex<(Vec<Step>, usize)>;

fn serve(
    stream: TcpStream,
    state: &Script,
    log: &Path,
    count: &Mutex<usize>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let (request_line, headers) = read_head(&mut reader)?;
    let body = read_body(&mut reader, &headers)?;
    if !request_line.starts_with("POST ") || !request_line.contains("/responses") {
        let text = b"{\"error\": \"the scripted model serves POST /v1/responses only\"}";
        write!(
            writer,
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            text.len()
        )?;
        return writer.write_all(text);
    }
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let compact = serde_json::from_slice::<Value>(&body)
            .unwrap_or_else(|_| json!({"unparsed": String::from_utf8_lossy(&body)}));
        let _ = writeln!(file, "{compact}");
    }
    let (step, n) = {
        let mut s = state
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        let n = s.1;
        s.1 += 1;
        (
            s.0.get(n).cloned().unwrap_or(Step::Message("done".into())),
            n,
        )
    };
    if let Ok(mut c) = count.lock() {
        *c += 1;
    }
    if step == Step::Hang {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let sse = events(&step, n);
    write!(
        writer,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        sse.len()
    )?;
    writer.write_all(sse.as_bytes())?;
    writer.flush()
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if headers.len() > 200 {
            return Err(std::io::Error::other("too many headers"));
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    Ok((request_line, headers))
}

fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> std::io::Result<Vec<u8>> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(std::io::Error::other)?;
            if size == 0 || body.len() + size > MAX_BODY_BYTES {
                let mut end = String::new();
                reader.read_line(&mut end)?;
                return Ok(body);
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len.min(MAX_BODY_BYTES)];
    reader.read_exact(&mut body)?;
    Ok(body)
}

/// The SSE stream for `step`, the `n`-th response (0-based): usage grows with `n` so absolute
/// totals are distinguishable from deltas.
fn events(step: &Step, n: usize) -> String {
    let id = format!("resp_{n}");
    let item = match step {
        Step::Call { name, arguments } => json!({
            "type": "function_call", "id": format!("fc_{n}"), "call_id": format!("call_{n}"),
            "name": name, "arguments": arguments.to_string(),
        }),
        Step::Message(text) => json!({
            "type": "message", "role": "assistant", "id": format!("msg_{n}"),
            "content": [{"type": "output_text", "text": text}],
        }),
        Step::Hang => json!({}),
    };
    let input = 100 * (n as u64 + 1);
    let usage = json!({
        "input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 10, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + 10,
    });
    let frames = [
        ("response.created", json!({"response": {"id": id}})),
        (
            "response.output_item.done",
            json!({"output_index": 0, "item": item}),
        ),
        (
            "response.completed",
            json!({"response": {"id": id, "usage": usage}}),
        ),
    ];
    frames
        .into_iter()
        .map(|(kind, mut data)| {
            data["type"] = json!(kind);
            format!("event: {kind}\ndata: {data}\n\n")
        })
        .collect()
}

/// `-c` overrides that point Codex at `base_url` with an API key read from `env_key`.
pub fn codex_overrides(base_url: &str, env_key: &str) -> Vec<String> {
    vec![
        "model_provider=\"scripted\"".into(),
        "model_providers.scripted.name=\"scripted\"".into(),
        format!("model_providers.scripted.base_url=\"{base_url}\""),
        "model_providers.scripted.wire_api=\"responses\"".into(),
        format!("model_providers.scripted.env_key=\"{env_key}\""),
        "model=\"scripted-model\"".into(),
    ]
}
