//! Prompt rendering (Symphony SPEC §5.4, §12): the workflow body is a strict Liquid template over
//! `issue` (the tracker record, every field, keys as strings, nested lists and maps iterable) and
//! `attempt` (nil on the first run, an integer on retries and continuations).
//!
//! Strictness with liquid 0.26: unknown filters fail at parse time, unknown variables and unknown
//! object keys fail at render time. One deliberate exception, inherited from Liquid: a bare
//! existence test such as `{% if issue.acceptance %}` treats a missing key as false, so optional
//! record fields can be tested; comparing or printing a missing key still fails.

use std::sync::OnceLock;

use crate::workflow::{WorkflowDefinition, WorkflowError};

/// The prompt used when the workflow body is empty (SPEC §5.4, adapted to this tracker).
pub const DEFAULT_PROMPT: &str = "You are working on an issue from the git issue tracker.";

fn parser() -> Result<&'static liquid::Parser, String> {
    static PARSER: OnceLock<Result<liquid::Parser, String>> = OnceLock::new();
    PARSER
        .get_or_init(|| {
            liquid::ParserBuilder::with_stdlib()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn compile(definition: &WorkflowDefinition) -> Result<Option<liquid::Template>, WorkflowError> {
    if definition.prompt_template.is_empty() {
        return Ok(None);
    }
    let parse_error = |message: String| {
        let line = liquid_line(&message)
            .map_or(definition.prompt_line, |l| definition.prompt_line + l - 1);
        WorkflowError::TemplateParseError {
            path: definition.path.clone(),
            line,
            message: one_line(&message),
        }
    };
    let parser = parser().map_err(parse_error)?;
    parser
        .parse(&definition.prompt_template)
        .map(Some)
        .map_err(|e| parse_error(e.to_string()))
}

/// Checks that the prompt template parses (for `symphony validate` and reload warnings).
///
/// # Errors
/// `template_parse_error` with the file line Liquid points at.
pub fn check_template(definition: &WorkflowDefinition) -> Result<(), WorkflowError> {
    compile(definition).map(|_| ())
}

/// Renders the prompt for one run attempt (SPEC §12). `issue` must be a JSON object (the record
/// as stored in `issues/issues.jsonl`); `attempt` is `None` on the first run. An empty template
/// renders [`DEFAULT_PROMPT`].
///
/// # Errors
/// `template_parse_error` for a bad template or unknown filter; `template_render_error` for an
/// unknown variable or key, or an `issue` that is not an object.
pub fn render_prompt(
    definition: &WorkflowDefinition,
    issue: &serde_json::Value,
    attempt: Option<u32>,
) -> Result<String, WorkflowError> {
    let render_error = |message: String| WorkflowError::TemplateRenderError {
        path: definition.path.clone(),
        line: definition.prompt_line,
        message,
    };
    if !issue.is_object() {
        return Err(render_error("the issue record is not a JSON object".into()));
    }
    let Some(template) = compile(definition)? else {
        return Ok(DEFAULT_PROMPT.to_owned());
    };
    let issue = crate::issue::prompt_issue(issue);
    let globals = serde_json::json!({ "issue": issue, "attempt": attempt });
    let globals =
        liquid::model::to_object(&globals).map_err(|e| render_error(one_line(&e.to_string())))?;
    template
        .render(&globals)
        .map_err(|e| render_error(one_line(&e.to_string())))
}

/// Guidance sent as the prompt of continuation turn `turn` (2..=`max_turns`) on the same agent
/// thread (SPEC §7.1): the original task is already in the thread history, so it is not resent.
pub fn continuation_prompt(turn: u32, max_turns: u32) -> String {
    format!(
        "Continue working on the same issue (turn {turn} of at most {max_turns}). The issue is \
         still in an active state. Review what is left, continue the work, run the validation, \
         and hand the issue off for review when it is done."
    )
}

/// Liquid (pest) parse errors carry ` --> LINE:COL`; returns LINE (1-based, in the template).
fn liquid_line(message: &str) -> Option<usize> {
    let after = message.split("--> ").nth(1)?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Collapses Liquid's multi-line diagnostics into one line for logs and error messages.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;

    fn definition(template: &str) -> WorkflowDefinition {
        WorkflowDefinition {
            path: PathBuf::from("/repo/WORKFLOW.md"),
            config: serde_yaml::Mapping::new(),
            prompt_template: template.to_owned(),
            prompt_line: 10,
        }
    }

    fn issue() -> serde_json::Value {
        json!({
            "id": "XSY-0001",
            "identifier": "XSY-0001",
            "title": "Fix it",
            "priority": 2,
            "labels": ["a", "b"],
            "blocked_by": [{"id": "XSY-0000", "state": "done"}],
            "handoff": {"summary": "s"},
            "assignee": null
        })
    }

    fn render(template: &str, attempt: Option<u32>) -> Result<String, WorkflowError> {
        render_prompt(&definition(template), &issue(), attempt)
    }

    #[test]
    fn renders_issue_fields_and_nested_values() {
        let out = render(
            "{{ issue.identifier }} p{{ issue.priority }} {% for l in issue.labels %}[{{ l }}]{% endfor %} {{ issue.blocked_by[0].state }} {{ issue.handoff.summary }}",
            None,
        )
        .unwrap();
        assert_eq!(out, "XSY-0001 p2 [a][b] done s");
    }

    #[test]
    fn attempt_is_nil_first_then_an_integer() {
        let t = "{% if attempt %}retry {{ attempt | plus: 1 }}{% else %}first{% endif %}[{{ attempt }}]";
        assert_eq!(render(t, None).unwrap(), "first[]");
        assert_eq!(render(t, Some(2)).unwrap(), "retry 3[2]");
    }

    #[test]
    fn unknown_variable_fails_rendering() {
        let err = render("{{ isue.title }}", None).unwrap_err();
        assert_eq!(err.kind(), "template_render_error");
        assert!(err.to_string().contains("isue"), "{err}");
    }

    #[test]
    fn unknown_issue_key_fails_rendering() {
        let err = render("{{ issue.no_such_field }}", None).unwrap_err();
        assert_eq!(err.kind(), "template_render_error");
        assert!(
            err.to_string().starts_with("/repo/WORKFLOW.md:10:"),
            "{err}"
        );
    }

    #[test]
    fn unknown_filter_fails_at_parse() {
        let err = render("{{ issue.title | shout }}", None).unwrap_err();
        assert_eq!(err.kind(), "template_parse_error");
    }

    #[test]
    fn syntax_error_points_at_the_file_line() {
        let err = render("line one\nline two {% if %}", None).unwrap_err();
        let WorkflowError::TemplateParseError { line, .. } = err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(line, 11);
    }

    #[test]
    fn existence_checks_on_missing_keys_are_false() {
        assert_eq!(
            render("{% if issue.acceptance %}y{% else %}n{% endif %}", None).unwrap(),
            "n"
        );
    }

    #[test]
    fn empty_template_uses_the_default_prompt() {
        assert_eq!(render("", Some(1)).unwrap(), DEFAULT_PROMPT);
    }

    #[test]
    fn non_object_issue_is_a_render_error() {
        let err = render_prompt(&definition("x"), &json!([1]), None).unwrap_err();
        assert_eq!(err.kind(), "template_render_error");
    }
}
