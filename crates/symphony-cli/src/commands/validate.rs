//! `symphony validate [PATH] [--format text|json|github]`: every problem of an issues file
//! (symphony_tracker::validate), printed for humans, machines or GitHub Actions.
//!
//! Exit codes: 0 valid (warnings allowed), 1 invalid, 2 usage or I/O error.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use symphony_tracker::Schema;
use symphony_tracker::validate::{Diagnostic, Report, Rules, Severity, validate_file};

use super::Outcome;
use crate::workflow_tracker;

/// Arguments of `symphony validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The issues file (default: `tracker.path` of WORKFLOW.md, else issues/issues.jsonl).
    path: Option<PathBuf>,
    /// `text`: one `path:line: /pointer: message` per finding; `json`: one document (see
    /// docs/cli.md); `github`: workflow-command annotations.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Github,
}

/// Runs `symphony validate`. The schema is `schema.json` beside the file when present.
pub fn run(args: Args, workflow: Option<&Path>) -> anyhow::Result<Outcome> {
    let settings = workflow_tracker::load(workflow)?;
    let path = args.path.unwrap_or(settings.path);
    let schema = Schema::for_issues_file(&path)?;
    let report = validate_file(&path, &Rules::new(&schema, &settings.states))?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Text => write_text(&mut out, &report)?,
        Format::Json => write_json(&mut out, &path, &report)?,
        Format::Github => write_github(&mut out, &report)?,
    }
    out.flush()?;
    Ok(if report.is_valid() {
        Outcome::Success
    } else {
        Outcome::Findings
    })
}

fn write_text(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    for diagnostic in &report.diagnostics {
        match diagnostic.severity {
            Severity::Error => writeln!(out, "{diagnostic}")?,
            Severity::Warning => writeln!(out, "warning: {diagnostic}")?,
        }
    }
    if !report.diagnostics.is_empty() {
        let _ = writeln!(
            std::io::stderr().lock(),
            "{} record(s): {} error(s), {} warning(s)",
            report.records,
            report.error_count(),
            report.warning_count()
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonReport<'a> {
    path: String,
    valid: bool,
    records: usize,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<JsonDiagnostic<'a>>,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    path: String,
    line: usize,
    column: Option<usize>,
    pointer: &'a str,
    severity: &'static str,
    message: &'a str,
}

fn write_json(out: &mut impl Write, path: &Path, report: &Report) -> anyhow::Result<()> {
    let document = JsonReport {
        path: path.display().to_string(),
        valid: report.is_valid(),
        records: report.records,
        errors: report.error_count(),
        warnings: report.warning_count(),
        diagnostics: report
            .diagnostics
            .iter()
            .map(|d| JsonDiagnostic {
                path: d.path.display().to_string(),
                line: d.line,
                column: d.column,
                pointer: &d.pointer,
                severity: d.severity.as_str(),
                message: &d.message,
            })
            .collect(),
    };
    serde_json::to_writer_pretty(&mut *out, &document)?;
    writeln!(out)?;
    Ok(())
}

/// GitHub Actions workflow commands: `::error file=…,line=…,col=…,title=…::message`.
fn write_github(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    for d in &report.diagnostics {
        let mut properties = format!(
            "file={},line={}",
            escape_property(&d.path.display().to_string()),
            d.line
        );
        if let Some(column) = d.column {
            properties.push_str(&format!(",col={column}"));
        }
        properties.push_str(",title=symphony validate");
        writeln!(
            out,
            "::{} {properties}::{}",
            d.severity.as_str(),
            escape_data(&message_of(d))
        )?;
    }
    Ok(())
}

fn message_of(d: &Diagnostic) -> String {
    if d.pointer.is_empty() {
        d.message.clone()
    } else {
        format!("{}: {}", d.pointer, d.message)
    }
}

fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_annotations_escape_their_separators() {
        let report = Report {
            records: 1,
            diagnostics: vec![Diagnostic {
                path: "a,b:c.jsonl".into(),
                line: 3,
                column: Some(7),
                pointer: "/state".into(),
                severity: Severity::Warning,
                message: "100% odd\nvalue".into(),
            }],
        };
        let mut out = Vec::new();
        write_github(&mut out, &report).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "::warning file=a%2Cb%3Ac.jsonl,line=3,col=7,title=symphony validate::/state: 100%25 odd%0Avalue\n"
        );
    }
}
