//! Log sinks of `symphony run` (SPEC §13.1–13.2): structured `tracing` lines on stderr, text
//! or JSON, and optionally appended to a file. A sink that fails never stops the run: stderr
//! writes ignore errors (a closed pipe), and a log file that cannot be opened or stops
//! accepting writes produces one warning on stderr while stderr logging goes on.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable `key=value` lines with the span context (`issue_id`, ...).
    Text,
    /// One JSON object per line with `fields` and the enclosing `spans`.
    Json,
}

/// Installs the global subscriber: filter from `level`, else `RUST_LOG`, else `info`.
///
/// # Errors
/// `level` is not a valid filter; a subscriber is already installed.
pub fn init(format: LogFormat, level: Option<&str>, file: Option<&Path>) -> anyhow::Result<()> {
    let filter = match level {
        Some(level) => EnvFilter::try_new(level)
            .with_context(|| format!("--log-level {level:?} is not a valid log filter"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let file_sink =
        file.and_then(
            |path| match File::options().create(true).append(true).open(path) {
                Ok(file) => Some(FileSink::new(path, file)),
                Err(e) => {
                    warn(&format!(
                        "warning: --log-file {}: cannot open ({e}); logging to stderr only",
                        path.display()
                    ));
                    None
                }
            },
        );
    tracing_subscriber::registry()
        .with(filter)
        .with(layer(format, || Quiet(io::stderr())))
        .with(file_sink.map(|sink| layer(format, sink)))
        .try_init()
        .context("a log subscriber is already installed")?;
    Ok(())
}

fn layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
        .log_internal_errors(false);
    match format {
        LogFormat::Text => base.boxed(),
        LogFormat::Json => base
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    }
}

fn warn(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// A writer that reports success whatever happens underneath.
struct Quiet<W>(W);

impl<W: Write> Write for Quiet<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// The log file: shared, and silenced (with one warning) after its first failed write.
#[derive(Clone)]
struct FileSink {
    path: Arc<str>,
    file: Arc<Mutex<File>>,
    failed: Arc<AtomicBool>,
}

impl FileSink {
    fn new(path: &Path, file: File) -> Self {
        FileSink {
            path: path.display().to_string().into(),
            file: Arc::new(Mutex::new(file)),
            failed: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        let written = match self.file.lock() {
            Ok(mut file) => file.write_all(buf),
            Err(_) => Err(io::Error::other("log file lock poisoned")),
        };
        if let Err(e) = written
            && !self.failed.swap(true, Ordering::Relaxed)
        {
            warn(&format!(
                "warning: --log-file {}: write failed ({e}); logging to stderr only from now on",
                self.path
            ));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for FileSink {
    type Writer = FileSink;

    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}
