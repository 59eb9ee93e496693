//! Validation and compilation of chain definitions.
//!
//! Every check runs even after a failure, so one call reports every problem
//! of a definition. Checks are written so that one mistake yields one
//! violation: a task with a broken id is still known by that id for
//! references, an invalid goto still counts as an edge for reachability,
//! and so on.

use std::collections::HashMap;
use std::time::Duration;

use taskloom_proto::taskloom::v1 as pb;

use crate::model::{CompiledChain, CompiledTask};
use crate::template::check_syntax;

mod graph;
pub mod reason;
mod retry;
mod task;
#[cfg(test)]
mod tests;
mod transition;
mod violation;

pub use violation::Violation;

/// The goto target that ends the run; never a task id.
const END: &str = "end";
/// `input_var` value naming the run's input.
const RUN_INPUT: &str = "input";
/// The queue built-in handlers are dispatched on.
const INTERNAL_QUEUE: &str = "internal";

const MAX_TASKS: usize = 1000;
const MAX_ID_BYTES: usize = 128;
/// Templates, instructions, descriptions and branch operands.
const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Model, provider and pool names, condition keys, hook argument names.
const MAX_NAME_BYTES: usize = 256;
const MAX_BRANCHES: usize = 100;
/// Fan-out lists and `wait_for`.
const MAX_TASK_LIST: usize = 100;
const MAX_VALID_CONDITIONS: usize = 100;
const MAX_HOOK_ARGS: usize = 64;
const MAX_MODEL_LIST: usize = 32;
const DEFAULT_MAX_STEPS: u32 = 1000;
const MAX_STEPS: i32 = 1_000_000;
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
const MAX_ATTEMPTS: i32 = 100;
const MAX_RETRY_ON_FAILURE: i32 = 100;
const MAX_TEMPERATURE: f32 = 2.0;
const DEFAULT_INITIAL_DELAY: Duration = Duration::from_secs(1);
/// Default `max_delay` of exponential backoff, as a multiple of
/// `initial_delay` (Temporal's default).
const DEFAULT_MAX_DELAY_FACTOR: u32 = 100;
const DEFAULT_MULTIPLIER: f64 = 2.0;
/// How much of a user-supplied value descriptions quote.
const QUOTE_CHARS: usize = 64;
/// Bounds the answer: a small definition can hold many cheap mistakes (a
/// fan-out list of unknown ids), each costing a long description.
const MAX_VIOLATIONS: usize = 1000;

const OPERATOR_NAMES: &str =
    "equals, contains, starts_with, ends_with, gt (>), lt (<), in_range, default";

/// Checks a chain definition and returns every problem found; empty means
/// valid. Same checks as [`compile`].
pub fn validate(chain: &pb::Chain) -> Vec<Violation> {
    compile(chain).err().unwrap_or_default()
}

/// Validates a chain definition and compiles it into the form the kernel
/// executes, or returns every problem found.
///
/// Besides the structural rules (ids, handlers, operators, gotos, reachable
/// tasks, durations, retry ranges, template syntax, handler requirements),
/// every input is bounded: at most 1000 tasks, 100 branches per transition,
/// 100 entries per fan-out or `wait_for`, 100 valid conditions, 64 hook
/// arguments, 32 models or providers, 64 KiB per text and 256 bytes per name.
pub fn compile(chain: &pb::Chain) -> Result<CompiledChain, Vec<Violation>> {
    let mut compiler = Compiler::default();
    compiler.check_identifier("id", &chain.id, "chain id", reason::INVALID_ID);
    compiler.check_size("description", &chain.description, MAX_TEXT_BYTES);
    let max_steps = compiler.max_steps(chain.max_steps);
    let token_limit = compiler.token_limit(chain.token_limit);
    compiler.run_retention(&chain.run_retention);

    if chain.tasks.is_empty() {
        compiler.report("tasks", reason::NO_TASKS, "a chain needs at least one task");
    }
    if chain.tasks.len() > MAX_TASKS {
        // Checking each of an unbounded number of tasks would make the answer
        // unbounded too.
        compiler.report(
            "tasks",
            reason::TOO_LARGE,
            format!(
                "the chain has {} tasks; at most {MAX_TASKS} are allowed",
                chain.tasks.len()
            ),
        );
        return Err(compiler.finish());
    }

    let ids = compiler.index_task_ids(&chain.tasks);
    let entry = compiler.entry(chain, &ids);
    let tasks: Vec<CompiledTask> = chain
        .tasks
        .iter()
        .enumerate()
        .map(|(position, task)| compiler.task(position, task, &ids))
        .collect();
    if let Some(entry) = entry {
        compiler.check_reachability(&chain.tasks, entry, &ids);
    }

    if !compiler.violations.is_empty() {
        return Err(compiler.finish());
    }
    let entry = entry
        .and_then(|position| chain.tasks.get(position))
        .map(|task| task.id.clone())
        .unwrap_or_default();
    let index = tasks
        .iter()
        .enumerate()
        .map(|(position, task)| (task.id.clone(), position))
        .collect();
    Ok(CompiledChain {
        id: chain.id.clone(),
        description: chain.description.clone(),
        entry,
        tasks,
        index,
        max_steps,
        token_limit,
    })
}

/// Task ids by position of their first occurrence. Holds every non-empty id
/// other than `end`, even one with bad characters, so that references to it
/// do not add violations on top of the id's own.
type TaskIds<'c> = HashMap<&'c str, usize>;

#[derive(Default)]
struct Compiler {
    violations: Vec<Violation>,
    /// Problems found after [`MAX_VIOLATIONS`] were recorded.
    unlisted: usize,
}

impl Compiler {
    fn report(
        &mut self,
        field: impl Into<String>,
        reason: &'static str,
        description: impl Into<String>,
    ) {
        if self.violations.len() >= MAX_VIOLATIONS {
            self.unlisted += 1;
            return;
        }
        self.violations.push(Violation {
            field: field.into(),
            description: description.into(),
            reason,
        });
    }

    /// The violations found, with a last one counting those beyond
    /// [`MAX_VIOLATIONS`].
    fn finish(mut self) -> Vec<Violation> {
        if self.unlisted > 0 {
            self.violations.push(Violation {
                field: "tasks".to_string(),
                description: format!(
                    "{} more problems are not listed; fix the ones above and validate again",
                    self.unlisted
                ),
                reason: reason::TOO_MANY_VIOLATIONS,
            });
        }
        self.violations
    }

    /// Reports an empty or malformed identifier; true when it is valid.
    fn check_identifier(
        &mut self,
        field: &str,
        value: &str,
        what: &str,
        invalid_reason: &'static str,
    ) -> bool {
        if value.is_empty() {
            self.report(field, reason::EMPTY_ID, format!("the {what} is required"));
            return false;
        }
        if !is_identifier(value) {
            self.report(
                field,
                invalid_reason,
                format!(
                    "the {what} {} must match [A-Za-z0-9_.-]{{1,{MAX_ID_BYTES}}}",
                    quote(value)
                ),
            );
            return false;
        }
        true
    }

    /// Reports a value longer than `limit` bytes; true when it fits.
    fn check_size(&mut self, field: &str, value: &str, limit: usize) -> bool {
        if value.len() > limit {
            self.report(
                field,
                reason::TOO_LARGE,
                format!("{} bytes; at most {limit} are allowed", value.len()),
            );
            return false;
        }
        true
    }

    fn check_template(&mut self, field: &str, template: &str) {
        if !self.check_size(field, template, MAX_TEXT_BYTES) {
            return;
        }
        if let Err(message) = check_syntax(template) {
            self.report(
                field,
                reason::TEMPLATE_SYNTAX,
                format!("invalid template: {message}"),
            );
        }
    }

    fn max_steps(&mut self, max_steps: i32) -> u32 {
        match u32::try_from(max_steps) {
            Ok(0) => DEFAULT_MAX_STEPS,
            Ok(steps) if max_steps <= MAX_STEPS => steps,
            _ => {
                self.report(
                    "max_steps",
                    reason::INVALID_VALUE,
                    format!("max_steps must be between 0 (default {DEFAULT_MAX_STEPS}) and {MAX_STEPS}, got {max_steps}"),
                );
                DEFAULT_MAX_STEPS
            }
        }
    }

    /// Checks the retention period (empty: the server's default).
    fn run_retention(&mut self, run_retention: &str) {
        if run_retention.is_empty() {
            return;
        }
        if let Err(problem) = crate::duration::parse_retention(run_retention) {
            self.report(
                "run_retention",
                reason::INVALID_DURATION,
                format!(
                    "run_retention must be a duration such as `72h` or `30d` (`0s` keeps runs forever): {problem}"
                ),
            );
        }
    }

    fn token_limit(&mut self, token_limit: i64) -> Option<u64> {
        match u64::try_from(token_limit) {
            Ok(0) => None,
            Ok(limit) => Some(limit),
            Err(_) => {
                self.report(
                    "token_limit",
                    reason::INVALID_VALUE,
                    format!(
                        "token_limit must not be negative (0 means no limit), got {token_limit}"
                    ),
                );
                None
            }
        }
    }
}

fn is_identifier(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_ID_BYTES
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// A user-supplied value for a description: quoted, escaped, and cut short.
fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// The path of a map entry: `field["key"]`, with long keys cut short.
fn map_field(field: &str, key: &str) -> String {
    format!("{field}[{}]", quote(key))
}
