//! minijinja templates in chains (`prompt_template`, `print`,
//! `error_message`, hook arguments).
//!
//! Templates see `input` (the run's input), `previous_output` (the output of
//! the task that ran before) and `tasks.<id>.output` (every finished task's
//! output; `tasks["my-task"].output` for ids that are not identifiers).
//! Undefined variables are errors, so a typo fails the task instead of
//! silently rendering an empty string.

use std::sync::LazyLock;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

/// A template failed to render (syntax error, undefined variable, bad
/// filter call, ...). The message is minijinja's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template error: {message}")]
pub struct TemplateError {
    message: String,
}

impl TemplateError {
    /// minijinja's description of the problem, with its line number.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// One shared environment: building one registers every builtin filter, and
/// rendering only needs `&Environment`.
static RENDER_ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(environment);

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Prompts are sent as written, including a final newline.
    env.set_keep_trailing_newline(true);
    env
}

/// Renders `template` with `context` (normally built by [`context`]).
pub fn render(template: &str, context: &Value) -> Result<String, TemplateError> {
    RENDER_ENVIRONMENT
        .render_str(template, context)
        .map_err(|error| TemplateError {
            message: error.to_string(),
        })
}

/// Checks that `template` parses, without rendering it. The error is
/// minijinja's message, e.g. `syntax error: unexpected end of input,
/// expected end of variable block (in <string>:1)`.
pub fn check_syntax(template: &str) -> Result<(), String> {
    // Every minijinja construct starts with `{` (line statements are off),
    // and most chain texts have none: skip building an environment.
    if !template.contains('{') {
        return Ok(());
    }
    // `template_from_str` ties the source's lifetime to the environment's,
    // so a short-lived environment is needed for a borrowed source.
    let env = environment();
    env.template_from_str(template)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Builds the context templates see: `input`, `previous_output` and
/// `tasks.<id>.output` for each `(id, output)` of `task_outputs` (a later
/// output of the same task replaces an earlier one, as in a loop).
pub fn context(
    input: Value,
    previous_output: Value,
    task_outputs: impl IntoIterator<Item = (String, Value)>,
) -> Value {
    let mut tasks = Map::new();
    for (id, output) in task_outputs {
        let mut task = Map::new();
        task.insert("output".to_string(), output);
        tasks.insert(id, Value::Object(task));
    }
    let mut root = Map::new();
    root.insert("input".to_string(), input);
    root.insert("previous_output".to_string(), previous_output);
    root.insert("tasks".to_string(), Value::Object(tasks));
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample_context() -> Value {
        context(
            json!("What is Rust?"),
            json!("yes"),
            [
                ("classify".to_string(), json!("technical")),
                ("score-it".to_string(), json!(7.5)),
                ("classify".to_string(), json!("general")),
            ],
        )
    }

    #[test]
    fn renders_input_previous_output_and_task_outputs() {
        let rendered = render(
            "Q: {{ input }} / prev: {{ previous_output }} / class: {{ tasks.classify.output }} / score: {{ tasks[\"score-it\"].output }}",
            &sample_context(),
        )
        .unwrap();
        assert_eq!(
            rendered,
            "Q: What is Rust? / prev: yes / class: general / score: 7.5"
        );
    }

    #[test]
    fn keeps_text_verbatim() {
        let text = "Answer briefly.\n";
        assert_eq!(render(text, &sample_context()).unwrap(), text);
        assert_eq!(
            render("<b>&</b>", &sample_context()).unwrap(),
            "<b>&</b>",
            "no HTML escaping"
        );
    }

    #[test]
    fn undefined_variables_are_errors() {
        let error = render("{{ inptu }}", &sample_context()).unwrap_err();
        assert!(error.message().contains("undefined"), "{error}");
        let error = render("{{ tasks.missing.output }}", &sample_context()).unwrap_err();
        assert!(error.to_string().starts_with("template error: "), "{error}");
    }

    #[test]
    fn defined_tests_and_defaults_still_work() {
        let rendered = render(
            "{% if tasks.missing is defined %}x{% else %}none{% endif %}",
            &sample_context(),
        )
        .unwrap();
        assert_eq!(rendered, "none");
    }

    #[test]
    fn syntax_check_accepts_valid_templates() {
        for template in [
            "",
            "plain text",
            "{{ input }}",
            "{% for t in [1, 2] %}{{ t }}{% endfor %}",
            "{{ input | upper }}",
        ] {
            assert_eq!(check_syntax(template), Ok(()), "{template:?}");
        }
    }

    #[test]
    fn syntax_check_reports_minijinja_message() {
        let error = check_syntax("Hello {{ input").unwrap_err();
        assert!(error.contains("syntax error"), "{error}");
        assert!(error.contains("line") || error.contains(":1"), "{error}");
        assert!(check_syntax("{% if input %}open").is_err());
        assert!(check_syntax("{% endfor %}").is_err());
    }

    #[test]
    fn render_reports_syntax_errors_too() {
        assert!(
            render("{{ input", &sample_context())
                .unwrap_err()
                .message()
                .contains("syntax error")
        );
    }
}
