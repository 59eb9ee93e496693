//! minijinja templates in chains (`prompt_template`, `print`,
//! `error_message`, hook arguments).
//!
//! Templates see `input` (the run's input), `previous_output` (the output of
//! the task that ran before) and `tasks.<id>.output` (every finished task's
//! output; `tasks["my-task"].output` for ids that are not identifiers).
//! Undefined variables are errors, so a typo fails the task instead of
//! silently rendering an empty string.
//!
//! A template is code its author runs on the server, so every render is
//! bounded: by fuel (minijinja counts the instructions it executes) and by
//! the size of its output. Neither bounds the memory a template can build
//! up in variables (a string doubled in a loop); the kernel renders
//! templates that can do that in a separate, memory-limited process, and
//! [`is_plain`] tells which templates cannot.

use std::io;
use std::sync::LazyLock;

use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value};

/// Bounds of one render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateLimits {
    /// minijinja fuel: about one unit per instruction executed.
    pub fuel: u64,
    /// Largest rendered text, in bytes.
    pub max_output_bytes: usize,
}

impl TemplateLimits {
    /// Enough for any prompt that formats its inputs (a loop over a
    /// thousand items uses tens of thousands); a runaway loop runs out of it
    /// within a few hundred milliseconds.
    pub const DEFAULT_FUEL: u64 = 2_000_000;
    /// The size of the largest input a caller may send.
    pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;
}

impl Default for TemplateLimits {
    fn default() -> Self {
        TemplateLimits {
            fuel: TemplateLimits::DEFAULT_FUEL,
            max_output_bytes: TemplateLimits::DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// A bound a render exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Ran out of fuel (the limit, in instructions).
    Fuel(u64),
    /// Rendered more than this many bytes.
    Output(usize),
    /// Used more memory than this many bytes (enforced by the render
    /// sandbox, not here).
    Memory(u64),
    /// Took longer than this many milliseconds (the sandbox's last resort).
    Time(u64),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Fuel(fuel) => write!(
                f,
                "ran out of fuel: it executed more than {fuel} template instructions (--template-fuel)"
            ),
            Limit::Output(bytes) => write!(
                f,
                "rendered more than {bytes} bytes (--template-max-output)"
            ),
            Limit::Memory(bytes) => write!(
                f,
                "used more than {} MiB of memory (--template-memory)",
                bytes / (1024 * 1024)
            ),
            Limit::Time(millis) => write!(f, "ran for more than {millis} ms"),
        }
    }
}

/// Why a template did not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Syntax error, undefined variable, bad filter call, ...: minijinja's
    /// message, with its line number.
    #[error("template error: {0}")]
    Invalid(String),
    /// The render exceeded one of its bounds.
    #[error("template limit exceeded: {0}")]
    Limit(Limit),
}

/// One template render: the template and the context it sees. The
/// kernel's decisions ask for renders by value and the server renders them
/// outside every transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderJob {
    pub template: String,
    pub context: Value,
}

/// Renders templates within [`TemplateLimits`]. Building one registers
/// every builtin filter, so the kernel keeps one; rendering only needs
/// `&self`.
pub struct TemplateEngine {
    env: Environment<'static>,
    limits: TemplateLimits,
}

impl TemplateEngine {
    pub fn new(limits: TemplateLimits) -> TemplateEngine {
        let mut env = environment();
        env.set_fuel(Some(limits.fuel));
        TemplateEngine { env, limits }
    }

    pub fn limits(&self) -> TemplateLimits {
        self.limits
    }

    /// Renders `template` with `context` (normally built by [`context`]).
    pub fn render(&self, template: &str, context: &Value) -> Result<String, TemplateError> {
        let compiled = self
            .env
            .template_from_str(template)
            .map_err(|error| TemplateError::Invalid(error.to_string()))?;
        let mut output = BoundedOutput {
            bytes: Vec::new(),
            limit: self.limits.max_output_bytes,
            exceeded: false,
        };
        let rendered = compiled.render_captured_to(context, &mut output);
        if output.exceeded {
            return Err(TemplateError::Limit(Limit::Output(
                self.limits.max_output_bytes,
            )));
        }
        match rendered {
            Ok(_) => String::from_utf8(output.bytes).map_err(|_| {
                TemplateError::Invalid("the template rendered invalid UTF-8".to_string())
            }),
            Err(error) if error.kind() == ErrorKind::OutOfFuel => {
                Err(TemplateError::Limit(Limit::Fuel(self.limits.fuel)))
            }
            Err(error) => Err(TemplateError::Invalid(error.to_string())),
        }
    }
}

/// The rendered text, refusing to grow past `limit` bytes.
struct BoundedOutput {
    bytes: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl io::Write for &mut BoundedOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("template output limit exceeded"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Prompts are sent as written, including a final newline.
    env.set_keep_trailing_newline(true);
    env
}

/// Renders with the default limits (tests and tools; the kernel uses its
/// configured [`TemplateEngine`]).
pub fn render(template: &str, context: &Value) -> Result<String, TemplateError> {
    static DEFAULT: LazyLock<TemplateEngine> =
        LazyLock::new(|| TemplateEngine::new(TemplateLimits::default()));
    DEFAULT.render(template, context)
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

/// Whether `template` only substitutes values: text and `{{ name }}`,
/// `{{ name.field }}`, `{{ name["key"] }}` or `{{ name[0] }}` tags, nothing
/// else — no statements, operators, filters or calls. Such a template's
/// memory is bounded by its output, so it can render in the server's own
/// process; anything else may build unbounded values.
pub fn is_plain(template: &str) -> bool {
    if template.contains("{%") || template.contains("{#") {
        return false;
    }
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return false;
        };
        let inner = after[..end].trim_start_matches('-').trim_end_matches('-');
        if !is_lookup(inner.trim()) {
            return false;
        }
        rest = &after[end + 2..];
    }
    true
}

/// `name(.field | [literal])*` with an identifier name, identifier fields
/// and string or integer literals.
fn is_lookup(expression: &str) -> bool {
    let mut chars = expression.chars().peekable();
    let identifier = |chars: &mut std::iter::Peekable<std::str::Chars>| -> bool {
        match chars.next() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
            _ => return false,
        }
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            chars.next();
        }
        true
    };
    if !identifier(&mut chars) {
        return false;
    }
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return true,
            Some('.') => {
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                if !identifier(&mut chars) {
                    return false;
                }
            }
            Some('[') => {
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                match chars.next() {
                    Some(quote @ ('"' | '\'')) => loop {
                        match chars.next() {
                            Some(c) if c == quote => break,
                            Some('\\') | None => return false,
                            Some(_) => {}
                        }
                    },
                    Some(c) if c.is_ascii_digit() => {
                        while chars.peek().is_some_and(char::is_ascii_digit) {
                            chars.next();
                        }
                    }
                    _ => return false,
                }
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                if chars.next() != Some(']') {
                    return false;
                }
            }
            Some(_) => return false,
        }
    }
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

    fn message(error: TemplateError) -> String {
        match error {
            TemplateError::Invalid(message) => message,
            other => panic!("expected an invalid template, got {other:?}"),
        }
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
        assert!(message(error).contains("undefined"));
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
        let error = render("{{ input", &sample_context()).unwrap_err();
        assert!(message(error).contains("syntax error"));
    }

    #[test]
    fn runaway_loops_run_out_of_fuel() {
        let engine = TemplateEngine::new(TemplateLimits {
            fuel: 10_000,
            ..TemplateLimits::default()
        });
        let started = std::time::Instant::now();
        let error = engine
            .render(
                "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
                &sample_context(),
            )
            .unwrap_err();
        assert_eq!(error, TemplateError::Limit(Limit::Fuel(10_000)));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(error.to_string().contains("10000 template instructions"));
        // A normal loop fits.
        let rendered = engine
            .render(
                "{% for i in range(10) %}{{ i }}{% endfor %}",
                &sample_context(),
            )
            .unwrap();
        assert_eq!(rendered, "0123456789");
    }

    #[test]
    fn output_is_capped_without_keeping_it() {
        let engine = TemplateEngine::new(TemplateLimits {
            max_output_bytes: 1000,
            ..TemplateLimits::default()
        });
        for template in [
            "{{ 'x' * 100000000 }}",
            "{% for i in range(100000) %}{{ 'x' * 100000000 }}{% endfor %}",
            "{% for i in range(100000) %}0123456789{% endfor %}",
        ] {
            assert_eq!(
                engine.render(template, &sample_context()),
                Err(TemplateError::Limit(Limit::Output(1000))),
                "{template}"
            );
        }
        assert_eq!(
            engine.render("{{ 'x' * 1000 }}", &sample_context()),
            Ok("x".repeat(1000))
        );
    }

    #[test]
    fn plain_templates_only_substitute() {
        for plain in [
            "",
            "no tags at all",
            "Q: {{ input }}",
            "{{input}}{{- previous_output -}}",
            "{{ tasks.classify.output }} and {{ tasks[\"score-it\"].output }}",
            "{{ tasks['a b'].output }} {{ input[0] }} {{ tasks . x . output }}",
            "a { single brace } and }} alone",
        ] {
            assert!(is_plain(plain), "{plain:?}");
        }
        for complex in [
            "{% for i in range(3) %}{% endfor %}",
            "{# a comment #}",
            "{{ input | upper }}",
            "{{ input ~ input }}",
            "{{ 'x' * 3 }}",
            "{{ input() }}",
            "{{ input.x(1) }}",
            "{{ tasks[input] }}",
            "{{ tasks['a\\'b'] }}",
            "{{ input",
            "{{ 1 }}",
            "{{ input if input else previous_output }}",
        ] {
            assert!(!is_plain(complex), "{complex:?}");
        }
    }
}
