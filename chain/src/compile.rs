//! Validation and compilation of chain definitions.
//!
//! Every check runs even after a failure, so one call reports every problem
//! of a definition. Checks are written so that one mistake yields one
//! violation: a task with a broken id is still known by that id for
//! references, an invalid goto still counts as an edge for reachability,
//! and so on.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use prost_types::value::Kind;

use super::duration::parse_duration;
use super::model::{
    CompiledBranch, CompiledChain, CompiledTask, CompiledTransition, Goto, Handler, HookCall,
    InputSource, ModelPreference, Operator,
};
use super::number::{parse_range_operand, parse_strict};
use super::retry::{Backoff, RetryPolicy};
use super::template::check_syntax;
use taskloom_proto::taskloom::v1 as pb;

/// One problem with a chain definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path of the field at fault, relative to the chain message, with proto
    /// field names: `tasks[2].handler`, `tasks[0].transition.branches[1].goto`.
    pub field: String,
    /// What is wrong, for humans.
    pub description: String,
    /// Machine-readable code, one of [`reason`].
    pub reason: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.field, self.description, self.reason)
    }
}

/// The machine-readable codes of [`Violation::reason`].
pub mod reason {
    /// An id is empty.
    pub const EMPTY_ID: &str = "EMPTY_ID";
    /// An id does not match `[A-Za-z0-9_.-]{1,128}`.
    pub const INVALID_ID: &str = "INVALID_ID";
    /// A task is named `end`.
    pub const RESERVED_ID: &str = "RESERVED_ID";
    /// A task id is used twice (reported at the later task).
    pub const DUPLICATE_ID: &str = "DUPLICATE_ID";
    /// The chain has no tasks.
    pub const NO_TASKS: &str = "NO_TASKS";
    /// The handler is missing or unknown.
    pub const UNKNOWN_HANDLER: &str = "UNKNOWN_HANDLER";
    /// A branch operator is missing or unknown.
    pub const UNKNOWN_OPERATOR: &str = "UNKNOWN_OPERATOR";
    /// A goto is missing or malformed.
    pub const INVALID_GOTO: &str = "INVALID_GOTO";
    /// A reference names no task of the chain.
    pub const UNKNOWN_TASK: &str = "UNKNOWN_TASK";
    /// A transition has more than one `default` branch.
    pub const DUPLICATE_DEFAULT: &str = "DUPLICATE_DEFAULT";
    /// A branch operand cannot be used with its operator.
    pub const INVALID_OPERAND: &str = "INVALID_OPERAND";
    /// No path leads from the entry task to a task.
    pub const UNREACHABLE_TASK: &str = "UNREACHABLE_TASK";
    /// A duration is malformed, zero or longer than 24h.
    pub const INVALID_DURATION: &str = "INVALID_DURATION";
    /// A retry setting is out of range.
    pub const INVALID_RETRY: &str = "INVALID_RETRY";
    /// A template does not parse.
    pub const TEMPLATE_SYNTAX: &str = "TEMPLATE_SYNTAX";
    /// A `condition_key` task has no valid condition set to true.
    pub const MISSING_VALID_CONDITIONS: &str = "MISSING_VALID_CONDITIONS";
    /// A `worker` task has no queue.
    pub const MISSING_QUEUE: &str = "MISSING_QUEUE";
    /// A `hook` task names no hook.
    pub const MISSING_HOOK: &str = "MISSING_HOOK";
    /// A text, list or map exceeds its size bound.
    pub const TOO_LARGE: &str = "TOO_LARGE";
    /// A value is out of range or malformed.
    pub const INVALID_VALUE: &str = "INVALID_VALUE";
    /// A task waits for itself or twice for the same task.
    pub const INVALID_WAIT_FOR: &str = "INVALID_WAIT_FOR";
    /// Only the first 1000 problems are listed; this last violation (at
    /// `tasks`) counts the rest.
    pub const TOO_MANY_VIOLATIONS: &str = "TOO_MANY_VIOLATIONS";
}

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

    fn index_task_ids<'c>(&mut self, tasks: &'c [pb::Task]) -> TaskIds<'c> {
        let mut ids = TaskIds::new();
        for (position, task) in tasks.iter().enumerate() {
            let field = format!("tasks[{position}].id");
            if task.id == END {
                self.report(
                    field,
                    reason::RESERVED_ID,
                    "`end` is reserved for ending the run; rename the task",
                );
                continue;
            }
            // An id with bad characters is still indexed, so references to
            // it do not add violations on top of its own; an empty one cannot
            // be referenced.
            let valid = self.check_identifier(&field, &task.id, "task id", reason::INVALID_ID);
            if !valid && task.id.is_empty() {
                continue;
            }
            match ids.entry(task.id.as_str()) {
                Entry::Occupied(first) => self.report(
                    field,
                    reason::DUPLICATE_ID,
                    format!(
                        "task id {} is already used by tasks[{}]",
                        quote(&task.id),
                        first.get()
                    ),
                ),
                Entry::Vacant(slot) => {
                    slot.insert(position);
                }
            }
        }
        ids
    }

    /// The position of the entry task, if it can be determined.
    fn entry(&mut self, chain: &pb::Chain, ids: &TaskIds<'_>) -> Option<usize> {
        if chain.entry.is_empty() {
            // The first task; if its id is broken that is already reported.
            let first = chain.tasks.first()?;
            return (ids.get(first.id.as_str()) == Some(&0)).then_some(0);
        }
        let position = ids.get(chain.entry.as_str()).copied();
        if position.is_none() {
            self.report(
                "entry",
                reason::UNKNOWN_TASK,
                format!("entry {} names no task of the chain", quote(&chain.entry)),
            );
        }
        position
    }

    fn task(&mut self, position: usize, task: &pb::Task, ids: &TaskIds<'_>) -> CompiledTask {
        let prefix = format!("tasks[{position}]");
        let field = |name: &str| format!("{prefix}.{name}");

        self.check_size(&field("description"), &task.description, MAX_TEXT_BYTES);
        self.check_size(
            &field("system_instruction"),
            &task.system_instruction,
            MAX_TEXT_BYTES,
        );
        self.check_template(&field("prompt_template"), &task.prompt_template);
        self.check_template(&field("print"), &task.print);
        self.check_template(&field("error_message"), &task.error_message);

        let handler = Handler::from_name(&task.handler);
        if handler.is_none() {
            let problem = if task.handler.is_empty() {
                "a handler is required".to_string()
            } else {
                format!("unknown handler {}", quote(&task.handler))
            };
            let names: Vec<&str> = Handler::ALL.iter().map(|handler| handler.name()).collect();
            self.report(
                field("handler"),
                reason::UNKNOWN_HANDLER,
                format!("{problem}; expected one of: {}", names.join(", ")),
            );
        }

        let input = self.input_source(&field("input_var"), task, ids);
        let valid_conditions = self.valid_conditions(&field("valid_conditions"), task, handler);
        let model = self.model_preference(&field("execute_config"), task.execute_config.as_ref());
        let hook = self.hook(&field("hook"), task, handler);
        let queue = self.queue(&field("queue"), task, handler);
        let timeout = self.duration(&field("timeout"), &task.timeout);
        let retry = self.retry(&prefix, task);
        let transition = self.transition(&field("transition"), task, ids);
        let wait_for = self.wait_for(&field("wait_for"), task, ids);

        CompiledTask {
            id: task.id.clone(),
            description: task.description.clone(),
            // A placeholder when the handler is unknown: the violation above
            // keeps this task from ever being returned.
            handler: handler.unwrap_or(Handler::Noop),
            system_instruction: non_empty(&task.system_instruction),
            prompt_template: non_empty(&task.prompt_template),
            input,
            valid_conditions,
            model,
            hook,
            queue,
            timeout,
            retry,
            transition,
            wait_for,
            print: non_empty(&task.print),
            error_message: non_empty(&task.error_message),
        }
    }

    fn input_source(&mut self, field: &str, task: &pb::Task, ids: &TaskIds<'_>) -> InputSource {
        match task.input_var.as_str() {
            "" => InputSource::PreviousOutput,
            RUN_INPUT => InputSource::RunInput,
            own if own == task.id => {
                self.report(
                    field,
                    reason::INVALID_VALUE,
                    "a task cannot take its own output as input",
                );
                InputSource::PreviousOutput
            }
            id if ids.contains_key(id) => InputSource::TaskOutput(id.to_string()),
            other => {
                self.report(
                    field,
                    reason::UNKNOWN_TASK,
                    format!(
                        "input_var {} names no task of the chain (`input` is the run's input)",
                        quote(other)
                    ),
                );
                InputSource::PreviousOutput
            }
        }
    }

    fn valid_conditions(
        &mut self,
        field: &str,
        task: &pb::Task,
        handler: Option<Handler>,
    ) -> Vec<String> {
        if task.valid_conditions.len() > MAX_VALID_CONDITIONS {
            self.report(
                field,
                reason::TOO_LARGE,
                format!(
                    "{} valid conditions; at most {MAX_VALID_CONDITIONS} are allowed",
                    task.valid_conditions.len()
                ),
            );
            return Vec::new();
        }
        let mut keys: Vec<(&String, bool)> = task
            .valid_conditions
            .iter()
            .map(|(key, &valid)| (key, valid))
            .collect();
        keys.sort();
        for (key, _) in &keys {
            let key_field = map_field(field, key);
            if self.check_size(&key_field, key, MAX_NAME_BYTES)
                && (key.is_empty() || key.trim() != key.as_str())
            {
                self.report(
                    key_field,
                    reason::INVALID_VALUE,
                    "condition keys must be non-empty without surrounding whitespace",
                );
            }
        }
        let enabled: Vec<String> = keys
            .into_iter()
            .filter(|(_, valid)| *valid)
            .map(|(key, _)| key.clone())
            .collect();
        if handler == Some(Handler::ConditionKey) && enabled.is_empty() {
            self.report(
                field,
                reason::MISSING_VALID_CONDITIONS,
                "a condition_key task needs at least one valid condition set to true",
            );
        }
        enabled
    }

    fn model_preference(
        &mut self,
        field: &str,
        config: Option<&pb::ExecuteConfig>,
    ) -> ModelPreference {
        let Some(config) = config else {
            return ModelPreference::default();
        };
        let models =
            self.preference_list(field, ("model", &config.model), ("models", &config.models));
        let providers = self.preference_list(
            field,
            ("provider", &config.provider),
            ("providers", &config.providers),
        );
        self.check_size(&format!("{field}.pool"), &config.pool, MAX_NAME_BYTES);
        let temperature = config.temperature.filter(|temperature| {
            let valid = (0.0..=MAX_TEMPERATURE).contains(temperature);
            if !valid {
                self.report(
                    format!("{field}.temperature"),
                    reason::INVALID_VALUE,
                    format!(
                        "temperature must be between 0 and {MAX_TEMPERATURE}, got {temperature}"
                    ),
                );
            }
            valid
        });
        let max_tokens = match u32::try_from(config.max_tokens) {
            Ok(0) => None,
            Ok(tokens) => Some(tokens),
            Err(_) => {
                self.report(
                    format!("{field}.max_tokens"),
                    reason::INVALID_VALUE,
                    format!("max_tokens must not be negative, got {}", config.max_tokens),
                );
                None
            }
        };
        ModelPreference {
            models,
            providers,
            pool: non_empty(&config.pool),
            temperature,
            max_tokens,
        }
    }

    /// Merges a shorthand (`model`) and its list (`models`): shorthand
    /// first, duplicates dropped, order kept.
    fn preference_list(
        &mut self,
        field: &str,
        single: (&str, &str),
        list: (&str, &[String]),
    ) -> Vec<String> {
        let (single_name, single_value) = single;
        let (list_name, list_values) = list;
        if list_values.len() > MAX_MODEL_LIST {
            self.report(
                format!("{field}.{list_name}"),
                reason::TOO_LARGE,
                format!(
                    "{} entries; at most {MAX_MODEL_LIST} are allowed",
                    list_values.len()
                ),
            );
            return Vec::new();
        }
        let mut merged: Vec<String> = Vec::new();
        let mut consider = |compiler: &mut Compiler, entry_field: String, value: &str| {
            if !compiler.check_size(&entry_field, value, MAX_NAME_BYTES) {
                return;
            }
            if value.trim().is_empty() {
                compiler.report(
                    entry_field,
                    reason::INVALID_VALUE,
                    "names must not be empty",
                );
            } else if !merged.iter().any(|known| known == value) {
                merged.push(value.to_string());
            }
        };
        if !single_value.is_empty() {
            consider(self, format!("{field}.{single_name}"), single_value);
        }
        for (position, value) in list_values.iter().enumerate() {
            consider(self, format!("{field}.{list_name}[{position}]"), value);
        }
        merged
    }

    fn hook(&mut self, field: &str, task: &pb::Task, handler: Option<Handler>) -> Option<HookCall> {
        let name_field = format!("{field}.name");
        let declared = task.hook.as_ref();
        let name = declared.map_or("", |hook| hook.name.as_str());
        if name.is_empty() {
            if handler == Some(Handler::Hook) {
                self.report(
                    name_field,
                    reason::MISSING_HOOK,
                    "a hook task needs hook.name, the registered hook to call",
                );
            }
        } else {
            self.check_identifier(&name_field, name, "hook name", reason::INVALID_VALUE);
        }
        let declared = declared?;

        let args_field = format!("{field}.args");
        if declared.args.len() > MAX_HOOK_ARGS {
            self.report(
                &args_field,
                reason::TOO_LARGE,
                format!(
                    "{} hook arguments; at most {MAX_HOOK_ARGS} are allowed",
                    declared.args.len()
                ),
            );
        } else {
            let mut args: Vec<(&String, &String)> = declared.args.iter().collect();
            args.sort();
            for (key, value) in args {
                let arg_field = map_field(&args_field, key);
                if self.check_size(&arg_field, key, MAX_NAME_BYTES) && key.is_empty() {
                    self.report(
                        &arg_field,
                        reason::INVALID_VALUE,
                        "hook argument names must not be empty",
                    );
                }
                self.check_template(&arg_field, value);
            }
        }
        let args: BTreeMap<String, String> = declared
            .args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (!name.is_empty()).then(|| HookCall {
            name: name.to_string(),
            args,
        })
    }

    fn queue(&mut self, field: &str, task: &pb::Task, handler: Option<Handler>) -> Option<String> {
        if task.queue.is_empty() {
            if handler == Some(Handler::Worker) {
                self.report(
                    field,
                    reason::MISSING_QUEUE,
                    "a worker task needs the queue its workers serve",
                );
            }
            return None;
        }
        if task.queue == INTERNAL_QUEUE {
            self.report(
                field,
                reason::INVALID_VALUE,
                "the queue `internal` is reserved for built-in handlers",
            );
        } else {
            self.check_identifier(field, &task.queue, "queue", reason::INVALID_VALUE);
        }
        Some(task.queue.clone())
    }

    /// An optional duration (empty = none) that must be in `(0, 24h]`.
    fn duration(&mut self, field: &str, text: &str) -> Option<Duration> {
        if text.is_empty() {
            return None;
        }
        let problem = match parse_duration(text) {
            Ok(duration) if duration.is_zero() => "must be more than 0".to_string(),
            Ok(duration) if duration > MAX_DURATION => {
                format!("{} is longer than the maximum 24h", quote(text))
            }
            Ok(duration) => return Some(duration),
            Err(problem) => {
                format!("{problem}; expected a duration such as `500ms`, `30s` or `1m30s`")
            }
        };
        self.report(field, reason::INVALID_DURATION, problem);
        None
    }

    fn retry(&mut self, prefix: &str, task: &pb::Task) -> RetryPolicy {
        let retries = match u32::try_from(task.retry_on_failure) {
            Ok(retries) if task.retry_on_failure <= MAX_RETRY_ON_FAILURE => retries,
            _ => {
                self.report(
                    format!("{prefix}.retry_on_failure"),
                    reason::INVALID_RETRY,
                    format!(
                        "retry_on_failure must be between 0 and {MAX_RETRY_ON_FAILURE}, got {}",
                        task.retry_on_failure
                    ),
                );
                0
            }
        };
        let Some(retry) = &task.retry else {
            return RetryPolicy::contenox(retries);
        };
        let field = |name: &str| format!("{prefix}.retry.{name}");

        let max_attempts = match u32::try_from(retry.max_attempts) {
            // Unset: contenox's retry_on_failure still counts.
            Ok(0) => retries.saturating_add(1),
            Ok(attempts) if retry.max_attempts <= MAX_ATTEMPTS => attempts,
            _ => {
                self.report(
                    field("max_attempts"),
                    reason::INVALID_RETRY,
                    format!(
                        "max_attempts must be between 1 and {MAX_ATTEMPTS} (0 = default), got {}",
                        retry.max_attempts
                    ),
                );
                1
            }
        };

        let multiplier = if retry.multiplier == 0.0 {
            DEFAULT_MULTIPLIER
        } else {
            retry.multiplier
        };
        let backoff = match retry.backoff.as_str() {
            "" | "fixed" => Backoff::Fixed,
            "exponential" => Backoff::Exponential { multiplier },
            other => {
                self.report(
                    field("backoff"),
                    reason::INVALID_RETRY,
                    format!(
                        "unknown backoff {}; expected `fixed` or `exponential`",
                        quote(other)
                    ),
                );
                Backoff::Fixed
            }
        };
        let multiplier_valid = multiplier.is_finite()
            && (!matches!(backoff, Backoff::Exponential { .. }) || multiplier >= 1.0);
        if !multiplier_valid {
            self.report(
                field("multiplier"),
                reason::INVALID_RETRY,
                format!(
                    "multiplier must be a finite number of at least 1 (0 = default 2), got {}",
                    retry.multiplier
                ),
            );
        }
        if !(0.0..=1.0).contains(&retry.jitter) {
            self.report(
                field("jitter"),
                reason::INVALID_RETRY,
                format!("jitter must be between 0 and 1, got {}", retry.jitter),
            );
        }

        let initial_delay = self
            .duration(&field("initial_delay"), &retry.initial_delay)
            .unwrap_or(DEFAULT_INITIAL_DELAY);
        let max_delay = match self.duration(&field("max_delay"), &retry.max_delay) {
            Some(max_delay) => {
                if max_delay < initial_delay {
                    self.report(
                        field("max_delay"),
                        reason::INVALID_RETRY,
                        format!(
                            "max_delay {} is shorter than initial_delay",
                            quote(&retry.max_delay)
                        ),
                    );
                }
                max_delay
            }
            None => match backoff {
                Backoff::Fixed => initial_delay,
                Backoff::Exponential { .. } => initial_delay
                    .saturating_mul(DEFAULT_MAX_DELAY_FACTOR)
                    .min(MAX_DURATION),
            },
        };

        RetryPolicy {
            max_attempts,
            backoff,
            initial_delay,
            max_delay,
            jitter: retry.jitter,
        }
    }

    fn transition(
        &mut self,
        field: &str,
        task: &pb::Task,
        ids: &TaskIds<'_>,
    ) -> CompiledTransition {
        let Some(transition) = &task.transition else {
            return CompiledTransition::default();
        };

        let on_failure = match transition.on_failure.as_str() {
            "" => None,
            END => {
                self.report(
                    format!("{field}.on_failure"),
                    reason::UNKNOWN_TASK,
                    "on_failure must name a task; `end` is not one (leave it empty to fail the run)",
                );
                None
            }
            id if ids.contains_key(id) => Some(id.to_string()),
            other => {
                self.report(
                    format!("{field}.on_failure"),
                    reason::UNKNOWN_TASK,
                    format!("on_failure {} names no task of the chain", quote(other)),
                );
                None
            }
        };

        let branches_field = format!("{field}.branches");
        if transition.branches.len() > MAX_BRANCHES {
            self.report(
                branches_field,
                reason::TOO_LARGE,
                format!(
                    "{} branches; at most {MAX_BRANCHES} are allowed",
                    transition.branches.len()
                ),
            );
            return CompiledTransition {
                on_failure,
                branches: Vec::new(),
            };
        }
        let mut first_default: Option<usize> = None;
        let mut branches = Vec::with_capacity(transition.branches.len());
        for (position, branch) in transition.branches.iter().enumerate() {
            let branch_field = format!("{branches_field}[{position}]");
            let operator = self.operator(&branch_field, branch);
            if operator == Some(Operator::Default) {
                match first_default {
                    Some(first) => self.report(
                        format!("{branch_field}.operator"),
                        reason::DUPLICATE_DEFAULT,
                        format!("only one default branch is allowed; branches[{first}] is already the default"),
                    ),
                    None => first_default = Some(position),
                }
            }
            let goto = self.goto(&format!("{branch_field}.goto"), branch.goto.as_ref(), ids);
            self.check_size(
                &format!("{branch_field}.alert_on_match"),
                &branch.alert_on_match,
                MAX_TEXT_BYTES,
            );
            // The placeholder for an invalid operator is never returned: its
            // violation fails the compilation.
            let operator = operator.unwrap_or(Operator::Equals(String::new()));
            branches.push(CompiledBranch {
                operator,
                goto,
                alert_on_match: non_empty(&branch.alert_on_match),
            });
        }
        CompiledTransition {
            on_failure,
            branches,
        }
    }

    /// The branch's operator with its parsed operand; `None` when invalid.
    fn operator(&mut self, field: &str, branch: &pb::Branch) -> Option<Operator> {
        let when_field = format!("{field}.when");
        if !self.check_size(&when_field, &branch.when, MAX_TEXT_BYTES) {
            return None;
        }
        let when = branch.when.clone();
        let operator = branch.operator.as_str();
        let invalid_operand = |compiler: &mut Compiler, problem: String| {
            compiler.report(&when_field, reason::INVALID_OPERAND, problem);
            None
        };
        let text_operator = |compiler: &mut Compiler, make: fn(String) -> Operator| {
            if when.is_empty() {
                // An empty operand matches every output: a `default` in
                // disguise that would shadow the real one.
                compiler.report(
                    &when_field,
                    reason::INVALID_OPERAND,
                    format!("`{operator}` with an empty `when` matches everything; use `default`"),
                );
                return None;
            }
            Some(make(when.clone()))
        };
        match operator {
            "equals" => Some(Operator::Equals(when.clone())),
            "contains" => text_operator(self, Operator::Contains),
            "starts_with" => text_operator(self, Operator::StartsWith),
            "ends_with" => text_operator(self, Operator::EndsWith),
            "gt" | ">" | "lt" | "<" => match parse_strict(&when) {
                Some(value) if matches!(operator, "gt" | ">") => Some(Operator::GreaterThan(value)),
                Some(value) => Some(Operator::LessThan(value)),
                None => invalid_operand(
                    self,
                    format!(
                        "`{operator}` needs a number in `when`, got {}",
                        quote(&when)
                    ),
                ),
            },
            "in_range" => match parse_range_operand(&when) {
                Ok((low, high)) => Some(Operator::InRange { low, high }),
                Err(problem) => {
                    invalid_operand(self, format!("invalid range {}: {problem}", quote(&when)))
                }
            },
            "default" => Some(Operator::Default),
            other => {
                let problem = if other.is_empty() {
                    "an operator is required".to_string()
                } else {
                    format!("unknown operator {}", quote(other))
                };
                self.report(
                    format!("{field}.operator"),
                    reason::UNKNOWN_OPERATOR,
                    format!("{problem}; expected one of: {OPERATOR_NAMES}"),
                );
                None
            }
        }
    }

    fn goto(&mut self, field: &str, goto: Option<&prost_types::Value>, ids: &TaskIds<'_>) -> Goto {
        match goto.and_then(|value| value.kind.as_ref()) {
            None | Some(Kind::NullValue(_)) => {
                self.report(
                    field,
                    reason::INVALID_GOTO,
                    "goto is required: a task id, `end`, or a list of task ids",
                );
                Goto::End
            }
            Some(Kind::StringValue(target)) => match target.as_str() {
                "" => {
                    self.report(
                        field,
                        reason::INVALID_GOTO,
                        "goto is empty; name a task or `end`",
                    );
                    Goto::End
                }
                END => Goto::End,
                id if ids.contains_key(id) => Goto::Task(id.to_string()),
                other => {
                    self.report(
                        field,
                        reason::UNKNOWN_TASK,
                        format!("goto {} names no task of the chain", quote(other)),
                    );
                    Goto::End
                }
            },
            Some(Kind::ListValue(list)) => self.fan_out(field, &list.values, ids),
            Some(Kind::NumberValue(_) | Kind::BoolValue(_) | Kind::StructValue(_)) => {
                self.report(
                    field,
                    reason::INVALID_GOTO,
                    "goto must be a task id, `end`, or a list of task ids",
                );
                Goto::End
            }
        }
    }

    fn fan_out(&mut self, field: &str, values: &[prost_types::Value], ids: &TaskIds<'_>) -> Goto {
        if values.is_empty() {
            self.report(
                field,
                reason::INVALID_GOTO,
                "an empty goto list starts nothing; name at least one task",
            );
            return Goto::End;
        }
        if values.len() > MAX_TASK_LIST {
            self.report(
                field,
                reason::TOO_LARGE,
                format!(
                    "{} fan-out targets; at most {MAX_TASK_LIST} are allowed",
                    values.len()
                ),
            );
            return Goto::End;
        }
        let mut targets: Vec<String> = Vec::with_capacity(values.len());
        for (position, value) in values.iter().enumerate() {
            let item_field = format!("{field}[{position}]");
            let Some(Kind::StringValue(target)) = &value.kind else {
                self.report(
                    item_field,
                    reason::INVALID_GOTO,
                    "fan-out entries must be task ids (strings)",
                );
                continue;
            };
            if target.is_empty() {
                self.report(
                    item_field,
                    reason::INVALID_GOTO,
                    "fan-out entries must not be empty",
                );
            } else if target == END {
                self.report(
                    item_field,
                    reason::INVALID_GOTO,
                    "`end` cannot be part of a fan-out list",
                );
            } else if targets.contains(target) {
                self.report(
                    item_field,
                    reason::INVALID_GOTO,
                    format!("{} appears twice in the fan-out list", quote(target)),
                );
            } else if !ids.contains_key(target.as_str()) {
                self.report(
                    item_field,
                    reason::UNKNOWN_TASK,
                    format!("goto {} names no task of the chain", quote(target)),
                );
            } else {
                targets.push(target.clone());
            }
        }
        // A one-element list is a plain goto.
        match <[String; 1]>::try_from(targets) {
            Ok([single]) => Goto::Task(single),
            Err(targets) => Goto::FanOut(targets),
        }
    }

    fn wait_for(&mut self, field: &str, task: &pb::Task, ids: &TaskIds<'_>) -> Vec<String> {
        if task.wait_for.len() > MAX_TASK_LIST {
            self.report(
                field,
                reason::TOO_LARGE,
                format!(
                    "{} wait_for entries; at most {MAX_TASK_LIST} are allowed",
                    task.wait_for.len()
                ),
            );
            return Vec::new();
        }
        let mut waits: Vec<String> = Vec::with_capacity(task.wait_for.len());
        for (position, id) in task.wait_for.iter().enumerate() {
            let item_field = format!("{field}[{position}]");
            if !id.is_empty() && *id == task.id {
                self.report(
                    item_field,
                    reason::INVALID_WAIT_FOR,
                    "a task cannot wait for itself",
                );
            } else if waits.contains(id) {
                self.report(
                    item_field,
                    reason::INVALID_WAIT_FOR,
                    format!("{} is listed twice", quote(id)),
                );
            } else if !ids.contains_key(id.as_str()) {
                self.report(
                    item_field,
                    reason::UNKNOWN_TASK,
                    format!("wait_for {} names no task of the chain", quote(id)),
                );
            } else {
                waits.push(id.clone());
            }
        }
        waits
    }

    /// Reports tasks no path of gotos, fan-outs and on_failure leads to from
    /// the entry. Edges are read from the definition as written, so a branch
    /// with another problem still counts.
    fn check_reachability(&mut self, tasks: &[pb::Task], entry: usize, ids: &TaskIds<'_>) {
        let mut reached = vec![false; tasks.len()];
        let mut pending = vec![entry];
        if let Some(flag) = reached.get_mut(entry) {
            *flag = true;
        }
        while let Some(position) = pending.pop() {
            let Some(task) = tasks.get(position) else {
                continue;
            };
            for target in edges(task) {
                if let Some(&next) = ids.get(target)
                    && let Some(flag) = reached.get_mut(next)
                    && !*flag
                {
                    *flag = true;
                    pending.push(next);
                }
            }
        }
        let entry_id = tasks.get(entry).map_or("", |task| task.id.as_str());
        for (position, task) in tasks.iter().enumerate() {
            // Tasks with a missing, reserved or duplicate id are reported as such.
            if !reached[position] && ids.get(task.id.as_str()) == Some(&position) {
                self.report(
                    format!("tasks[{position}]"),
                    reason::UNREACHABLE_TASK,
                    format!(
                        "task {} cannot be reached from the entry task {}",
                        quote(&task.id),
                        quote(entry_id)
                    ),
                );
            }
        }
    }
}

/// The task ids a task may lead to: its on_failure and every goto target.
fn edges(task: &pb::Task) -> Vec<&str> {
    let Some(transition) = &task.transition else {
        return Vec::new();
    };
    let mut targets = vec![transition.on_failure.as_str()];
    for branch in &transition.branches {
        match branch.goto.as_ref().and_then(|value| value.kind.as_ref()) {
            Some(Kind::StringValue(target)) => targets.push(target),
            Some(Kind::ListValue(list)) => {
                targets.extend(list.values.iter().filter_map(|value| match &value.kind {
                    Some(Kind::StringValue(target)) => Some(target.as_str()),
                    _ => None,
                }))
            }
            _ => {}
        }
    }
    targets
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

#[cfg(test)]
mod tests {
    use prost_types::{ListValue, Value};
    use serde_json::json;

    use super::*;

    // ---- building chains ----------------------------------------------

    fn goto(target: &str) -> Option<Value> {
        Some(Value {
            kind: Some(Kind::StringValue(target.to_string())),
        })
    }

    fn goto_list(targets: &[&str]) -> Option<Value> {
        let values = targets
            .iter()
            .map(|target| Value {
                kind: Some(Kind::StringValue(target.to_string())),
            })
            .collect();
        Some(Value {
            kind: Some(Kind::ListValue(ListValue { values })),
        })
    }

    fn branch(operator: &str, when: &str, target: Option<Value>) -> pb::Branch {
        pb::Branch {
            operator: operator.to_string(),
            when: when.to_string(),
            goto: target,
            alert_on_match: String::new(),
        }
    }

    fn task(id: &str, handler: &str, branches: Vec<pb::Branch>) -> pb::Task {
        pb::Task {
            id: id.to_string(),
            handler: handler.to_string(),
            transition: Some(pb::Transition {
                on_failure: String::new(),
                branches,
            }),
            ..Default::default()
        }
    }

    /// `classify` (entry) -> `answer` on "yes", else `refuse`; both end.
    fn base_chain() -> pb::Chain {
        let mut classify = task(
            "classify",
            "condition_key",
            vec![
                branch("equals", "yes", goto("answer")),
                branch("default", "", goto("refuse")),
            ],
        );
        classify.valid_conditions.insert("yes".to_string(), true);
        classify.valid_conditions.insert("no".to_string(), true);
        pb::Chain {
            id: "support-bot".to_string(),
            tasks: vec![
                classify,
                task(
                    "answer",
                    "raw_string",
                    vec![branch("default", "", goto("end"))],
                ),
                task("refuse", "noop", vec![]),
            ],
            ..Default::default()
        }
    }

    /// The violations as `(field, reason)` pairs.
    fn problems(chain: &pb::Chain) -> Vec<(String, &'static str)> {
        validate(chain)
            .into_iter()
            .map(|violation| (violation.field, violation.reason))
            .collect()
    }

    /// Asserts that a mutation of the base chain yields exactly one violation.
    #[track_caller]
    fn assert_single(mutate: impl FnOnce(&mut pb::Chain), field: &str, reason: &'static str) {
        let mut chain = base_chain();
        mutate(&mut chain);
        assert_eq!(problems(&chain), vec![(field.to_string(), reason)]);
    }

    // ---- JSON -> Chain, for contenox-style files -----------------------

    /// Reads `snake_case` or its camelCase spelling.
    fn field<'j>(object: &'j serde_json::Value, snake: &str) -> Option<&'j serde_json::Value> {
        let camel: String = snake
            .split('_')
            .enumerate()
            .map(|(index, part)| {
                if index == 0 {
                    return part.to_string();
                }
                let mut chars = part.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_uppercase().chain(chars).collect()
                })
            })
            .collect();
        object.get(snake).or_else(|| object.get(&camel))
    }

    fn text(object: &serde_json::Value, snake: &str) -> String {
        field(object, snake)
            .and_then(|value| value.as_str())
            .unwrap_or_default()
            .to_string()
    }

    fn int(object: &serde_json::Value, snake: &str) -> i64 {
        field(object, snake)
            .and_then(|value| value.as_i64())
            .unwrap_or_default()
    }

    fn strings(object: &serde_json::Value, snake: &str) -> Vec<String> {
        field(object, snake)
            .and_then(|value| value.as_array())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn protobuf_value(value: &serde_json::Value) -> Value {
        let kind = match value {
            serde_json::Value::Null => Kind::NullValue(0),
            serde_json::Value::Bool(flag) => Kind::BoolValue(*flag),
            serde_json::Value::Number(number) => {
                Kind::NumberValue(number.as_f64().unwrap_or_default())
            }
            serde_json::Value::String(text) => Kind::StringValue(text.clone()),
            serde_json::Value::Array(items) => Kind::ListValue(ListValue {
                values: items.iter().map(protobuf_value).collect(),
            }),
            serde_json::Value::Object(_) => Kind::StructValue(prost_types::Struct::default()),
        };
        Value { kind: Some(kind) }
    }

    fn chain_from_json(chain: &serde_json::Value) -> pb::Chain {
        let tasks = field(chain, "tasks")
            .and_then(|tasks| tasks.as_array())
            .cloned()
            .unwrap_or_default();
        pb::Chain {
            id: text(chain, "id"),
            description: text(chain, "description"),
            entry: text(chain, "entry"),
            max_steps: int(chain, "max_steps") as i32,
            token_limit: int(chain, "token_limit"),
            tasks: tasks.iter().map(task_from_json).collect(),
            ..Default::default()
        }
    }

    fn task_from_json(task: &serde_json::Value) -> pb::Task {
        let valid_conditions = field(task, "valid_conditions")
            .and_then(|map| map.as_object())
            .map(|map| {
                map.iter()
                    .map(|(key, valid)| (key.clone(), valid.as_bool().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let execute_config = field(task, "execute_config").map(|config| pb::ExecuteConfig {
            model: text(config, "model"),
            models: strings(config, "models"),
            provider: text(config, "provider"),
            providers: strings(config, "providers"),
            pool: text(config, "pool"),
            temperature: field(config, "temperature")
                .and_then(|t| t.as_f64())
                .map(|t| t as f32),
            max_tokens: int(config, "max_tokens") as i32,
        });
        let hook = field(task, "hook").map(|hook| pb::HookCall {
            name: text(hook, "name"),
            args: field(hook, "args")
                .and_then(|args| args.as_object())
                .map(|args| {
                    args.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        });
        let retry = field(task, "retry").map(|retry| pb::RetryPolicy {
            max_attempts: int(retry, "max_attempts") as i32,
            backoff: text(retry, "backoff"),
            initial_delay: text(retry, "initial_delay"),
            max_delay: text(retry, "max_delay"),
            multiplier: field(retry, "multiplier")
                .and_then(|m| m.as_f64())
                .unwrap_or_default(),
            jitter: field(retry, "jitter")
                .and_then(|j| j.as_f64())
                .unwrap_or_default(),
        });
        let transition = field(task, "transition").map(|transition| pb::Transition {
            on_failure: text(transition, "on_failure"),
            branches: field(transition, "branches")
                .and_then(|branches| branches.as_array())
                .map(|branches| {
                    branches
                        .iter()
                        .map(|branch| pb::Branch {
                            operator: text(branch, "operator"),
                            when: text(branch, "when"),
                            goto: field(branch, "goto").map(protobuf_value),
                            alert_on_match: text(branch, "alert_on_match"),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        });
        pb::Task {
            id: text(task, "id"),
            description: text(task, "description"),
            handler: text(task, "handler"),
            system_instruction: text(task, "system_instruction"),
            prompt_template: text(task, "prompt_template"),
            input_var: text(task, "input_var"),
            valid_conditions,
            execute_config,
            hook,
            queue: text(task, "queue"),
            timeout: text(task, "timeout"),
            retry,
            retry_on_failure: int(task, "retry_on_failure") as i32,
            transition,
            wait_for: strings(task, "wait_for"),
            print: text(task, "print"),
            error_message: text(task, "error_message"),
        }
    }

    // ---- valid chains ----------------------------------------------------

    #[test]
    fn qa_example_compiles() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/qa.json");
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let chain = chain_from_json(&file["chain"]);
        let compiled = compile(&chain).unwrap();

        assert_eq!(compiled.id(), "smart-query-assistant");
        assert_eq!(compiled.description(), "Handles technical questions");
        assert_eq!(compiled.entry(), "generate_response");
        assert_eq!(compiled.max_steps(), 1000);
        assert_eq!(compiled.token_limit(), None);
        let task = compiled.task("generate_response").unwrap();
        assert_eq!(task.handler, Handler::RawString);
        assert!(
            task.system_instruction
                .as_deref()
                .unwrap()
                .starts_with("You're a senior engineer.")
        );
        assert_eq!(task.retry, RetryPolicy::NO_RETRY);
        assert_eq!(task.input, InputSource::PreviousOutput);
        assert_eq!(task.transition.next("any answer"), Some(&Goto::End));
    }

    #[test]
    fn contenox_style_json_with_every_feature_compiles() {
        let chain = chain_from_json(&json!({
            "id": "triage",
            "entry": "classify",
            "maxSteps": 50,
            "tokenLimit": 20000,
            "tasks": [
                {
                    "id": "classify",
                    "handler": "condition_key",
                    "promptTemplate": "Is this technical? {{ input }}",
                    "validConditions": {"technical": true, "general": true, "disabled": false},
                    "executeConfig": {"model": "qwen3:4b", "models": ["llama3.2", "qwen3:4b"], "providers": ["ollama"], "temperature": 0.2, "max_tokens": 64},
                    "retryOnFailure": 2,
                    "transition": {"branches": [
                        {"operator": "default", "goto": "general"},
                        {"operator": "equals", "when": "technical", "goto": ["score", "lookup"]}
                    ]}
                },
                {
                    "id": "score", "handler": "parse_score", "timeout": "30s",
                    "retry": {"max_attempts": 4, "backoff": "exponential", "initial_delay": "500ms", "jitter": 0.25},
                    "transition": {"branches": [{"operator": "approximately", "goto": "end"}]}
                },
                {"id": "lookup", "handler": "hook", "hook": {"name": "kb-search", "args": {"q": "{{ input }}"}},
                 "transition": {"on_failure": "general", "branches": [{"operator": "default", "goto": "join"}]}},
                {"id": "join", "handler": "worker", "queue": "reports", "waitFor": ["score", "lookup"], "inputVar": "lookup"},
                {"id": "general", "handler": "raw_string", "inputVar": "input", "print": "{{ previous_output }}",
                 "transition": {"branches": [{"operator": "in_range", "when": "-10--5", "goto": "end"}, {"operator": "default", "goto": "end"}]}}
            ]
        }));
        // One deliberate mistake shows the mapping reaches the validator.
        assert_eq!(
            problems(&chain),
            vec![(
                "tasks[1].transition.branches[0].operator".to_string(),
                reason::UNKNOWN_OPERATOR
            )]
        );
        let mut chain = chain;
        chain.tasks[1].transition.as_mut().unwrap().branches[0].operator = "default".to_string();
        // Both sides of the fan-out meet again at the join.
        chain.tasks[1].transition.as_mut().unwrap().branches[0].goto = goto("join");
        let compiled = compile(&chain).unwrap();

        assert_eq!(compiled.max_steps(), 50);
        assert_eq!(compiled.token_limit(), Some(20000));
        assert_eq!(compiled.position("join"), Some(3));
        let ids: Vec<&str> = compiled
            .tasks()
            .iter()
            .map(|task| task.id.as_str())
            .collect();
        assert_eq!(ids, ["classify", "score", "lookup", "join", "general"]);

        let classify = compiled.task("classify").unwrap();
        assert_eq!(classify.valid_conditions, ["general", "technical"]);
        assert_eq!(classify.model.models, ["qwen3:4b", "llama3.2"]);
        assert_eq!(classify.model.providers, ["ollama"]);
        assert_eq!(classify.model.temperature, Some(0.2));
        assert_eq!(classify.model.max_tokens, Some(64));
        assert_eq!(classify.model.pool, None);
        assert_eq!(classify.retry, RetryPolicy::contenox(2));
        assert_eq!(
            classify.prompt_template.as_deref(),
            Some("Is this technical? {{ input }}")
        );
        assert_eq!(
            classify.transition.next("technical"),
            Some(&Goto::FanOut(vec!["score".into(), "lookup".into()]))
        );
        assert_eq!(
            classify.transition.next("general"),
            Some(&Goto::Task("general".into()))
        );

        let score = compiled.task("score").unwrap();
        assert_eq!(score.timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            score.retry,
            RetryPolicy {
                max_attempts: 4,
                backoff: Backoff::Exponential { multiplier: 2.0 },
                initial_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(50),
                jitter: 0.25,
            }
        );

        let lookup = compiled.task("lookup").unwrap();
        let hook = lookup.hook.as_ref().unwrap();
        assert_eq!(hook.name, "kb-search");
        assert_eq!(hook.args.get("q").map(String::as_str), Some("{{ input }}"));
        assert_eq!(lookup.transition.on_failure.as_deref(), Some("general"));

        let join = compiled.task("join").unwrap();
        assert_eq!(join.queue.as_deref(), Some("reports"));
        assert_eq!(join.wait_for, ["score", "lookup"]);
        assert_eq!(join.input, InputSource::TaskOutput("lookup".into()));
        assert_eq!(
            join.transition.next("x"),
            Some(&Goto::End),
            "no transition ends the run"
        );

        let general = compiled.task("general").unwrap();
        assert_eq!(general.input, InputSource::RunInput);
        assert_eq!(general.print.as_deref(), Some("{{ previous_output }}"));
        assert_eq!(
            general.transition.branches[0].operator,
            Operator::InRange {
                low: -10.0,
                high: -5.0
            }
        );
    }

    #[test]
    fn base_chain_is_valid() {
        assert_eq!(validate(&base_chain()), Vec::<Violation>::new());
        let compiled = compile(&base_chain()).unwrap();
        assert_eq!(compiled.entry(), "classify");
        assert_eq!(
            compiled.task("refuse").unwrap().transition,
            CompiledTransition::default()
        );
        assert_eq!(compiled.task("nope"), None);
    }

    #[test]
    fn explicit_entry_is_used() {
        let mut chain = base_chain();
        chain.tasks.rotate_left(1);
        chain.entry = "classify".to_string();
        assert_eq!(compile(&chain).unwrap().entry(), "classify");
    }

    #[test]
    fn negative_ranges_compile() {
        for (when, low, high) in [
            ("-10..-5", -10.0, -5.0),
            ("-10--5", -10.0, -5.0),
            ("-3-7", -3.0, 7.0),
            ("1..1", 1.0, 1.0),
        ] {
            let mut chain = base_chain();
            chain.tasks[0].transition.as_mut().unwrap().branches[0] =
                branch("in_range", when, goto("answer"));
            let compiled = compile(&chain).unwrap();
            let operator = &compiled.task("classify").unwrap().transition.branches[0].operator;
            assert_eq!(*operator, Operator::InRange { low, high }, "{when}");
        }
    }

    #[test]
    fn operator_aliases_compile() {
        let mut chain = base_chain();
        chain.tasks[0].transition.as_mut().unwrap().branches = vec![
            branch(">", "2.5", goto("answer")),
            branch("lt", "-1", goto("refuse")),
            branch("gt", "10", goto("refuse")),
            branch("<", "0", goto("refuse")),
            branch("contains", "x", goto("refuse")),
            branch("starts_with", "x", goto("refuse")),
            branch("ends_with", "x", goto("refuse")),
            branch("equals", "", goto("refuse")),
        ];
        let compiled = compile(&chain).unwrap();
        let operators: Vec<&str> = compiled.tasks()[0]
            .transition
            .branches
            .iter()
            .map(|branch| branch.operator.name())
            .collect();
        assert_eq!(
            operators,
            [
                "gt",
                "lt",
                "gt",
                "lt",
                "contains",
                "starts_with",
                "ends_with",
                "equals"
            ]
        );
        assert_eq!(
            compiled.tasks()[0].transition.branches[0].operator,
            Operator::GreaterThan(2.5)
        );
    }

    #[test]
    fn single_element_fan_out_is_a_plain_goto() {
        let mut chain = base_chain();
        chain.tasks[0].transition.as_mut().unwrap().branches[0].goto = goto_list(&["answer"]);
        let compiled = compile(&chain).unwrap();
        assert_eq!(
            compiled.tasks()[0].transition.branches[0].goto,
            Goto::Task("answer".into())
        );
    }

    #[test]
    fn loops_are_allowed() {
        let mut chain = base_chain();
        chain.tasks[1].transition.as_mut().unwrap().branches = vec![
            branch("equals", "again", goto("classify")),
            branch("contains", "self", goto("answer")),
            branch("default", "", goto("end")),
        ];
        assert_eq!(validate(&chain), Vec::<Violation>::new());
    }

    #[test]
    fn retry_defaults_and_fallbacks() {
        let mut chain = base_chain();
        chain.tasks[1].retry = Some(pb::RetryPolicy {
            max_attempts: 3,
            ..Default::default()
        });
        chain.tasks[2].retry_on_failure = 2;
        chain.tasks[2].retry = Some(pb::RetryPolicy {
            backoff: "fixed".into(),
            initial_delay: "2s".into(),
            max_delay: "5s".into(),
            ..Default::default()
        });
        let compiled = compile(&chain).unwrap();
        assert_eq!(compiled.tasks()[0].retry, RetryPolicy::NO_RETRY);
        assert_eq!(
            compiled.tasks()[1].retry,
            RetryPolicy {
                max_attempts: 3,
                ..RetryPolicy::NO_RETRY
            }
        );
        assert_eq!(
            compiled.tasks()[2].retry,
            RetryPolicy {
                max_attempts: 3,
                backoff: Backoff::Fixed,
                initial_delay: Duration::from_secs(2),
                max_delay: Duration::from_secs(5),
                jitter: 0.0,
            },
            "max_attempts 0 falls back to retry_on_failure + 1"
        );
    }

    #[test]
    fn exponential_default_max_delay_is_capped_at_a_day() {
        let mut chain = base_chain();
        chain.tasks[1].retry = Some(pb::RetryPolicy {
            backoff: "exponential".into(),
            initial_delay: "1h".into(),
            multiplier: 1.5,
            ..Default::default()
        });
        let compiled = compile(&chain).unwrap();
        let retry = &compiled.tasks()[1].retry;
        assert_eq!(retry.max_delay, MAX_DURATION);
        assert_eq!(retry.backoff, Backoff::Exponential { multiplier: 1.5 });
    }

    #[test]
    fn model_preference_merges_and_deduplicates() {
        let mut chain = base_chain();
        chain.tasks[1].execute_config = Some(pb::ExecuteConfig {
            model: "b".into(),
            models: vec!["a".into(), "b".into(), "c".into(), "a".into()],
            provider: String::new(),
            providers: vec!["openai".into(), "ollama".into(), "openai".into()],
            pool: "internal_chat_pool".into(),
            temperature: None,
            max_tokens: 0,
        });
        let compiled = compile(&chain).unwrap();
        let model = &compiled.tasks()[1].model;
        assert_eq!(model.models, ["b", "a", "c"]);
        assert_eq!(model.providers, ["openai", "ollama"]);
        assert_eq!(model.pool.as_deref(), Some("internal_chat_pool"));
        assert_eq!(model.temperature, None);
        assert_eq!(model.max_tokens, None);
    }

    // ---- one violation per mistake, with its exact path ------------------

    #[test]
    fn chain_id_violations() {
        assert_single(|c| c.id.clear(), "id", reason::EMPTY_ID);
        assert_single(|c| c.id = "has space".into(), "id", reason::INVALID_ID);
        assert_single(|c| c.id = "x".repeat(129), "id", reason::INVALID_ID);
        assert_single(|c| c.id = "é".into(), "id", reason::INVALID_ID);
        assert_eq!(
            problems(&pb::Chain {
                id: "a".repeat(128),
                ..base_chain()
            }),
            vec![]
        );
    }

    #[test]
    fn task_count_violations() {
        assert_single(|c| c.tasks.clear(), "tasks", reason::NO_TASKS);
        let mut chain = base_chain();
        chain.tasks = (0..=MAX_TASKS)
            .map(|n| task(&format!("t{n}"), "noop", vec![]))
            .collect();
        chain.id.clear();
        assert_eq!(
            problems(&chain),
            vec![
                ("id".to_string(), reason::EMPTY_ID),
                ("tasks".to_string(), reason::TOO_LARGE)
            ]
        );
    }

    #[test]
    fn a_thousand_tasks_are_allowed() {
        let mut chain = base_chain();
        chain.tasks = (0..MAX_TASKS)
            .map(|n| {
                let next = if n + 1 == MAX_TASKS {
                    "end".to_string()
                } else {
                    format!("t{}", n + 1)
                };
                task(
                    &format!("t{n}"),
                    "noop",
                    vec![branch("default", "", goto(&next))],
                )
            })
            .collect();
        assert_eq!(compile(&chain).unwrap().tasks().len(), MAX_TASKS);
    }

    #[test]
    fn task_id_violations() {
        // The answer task is referenced by the classify task, so a broken id
        // there also breaks that reference; use the refuse task (tasks[2])
        // and keep a reference with the new id.
        let rename = |id: &str| {
            let id = id.to_string();
            move |c: &mut pb::Chain| {
                c.tasks[2].id = id.clone();
                c.tasks[0].transition.as_mut().unwrap().branches[1].goto = goto(&id);
            }
        };
        assert_single(rename("bad id!"), "tasks[2].id", reason::INVALID_ID);
        assert_single(rename(&"t".repeat(129)), "tasks[2].id", reason::INVALID_ID);
        assert_single(rename("answer"), "tasks[2].id", reason::DUPLICATE_ID);
        assert_single(
            |c| {
                c.tasks[2].id.clear();
                c.tasks[0].transition.as_mut().unwrap().branches.pop();
            },
            "tasks[2].id",
            reason::EMPTY_ID,
        );
        assert_single(
            |c| {
                c.tasks[2].id = "end".into();
                c.tasks[0].transition.as_mut().unwrap().branches.pop();
            },
            "tasks[2].id",
            reason::RESERVED_ID,
        );
    }

    #[test]
    fn duplicate_is_reported_at_the_later_task_only() {
        let mut chain = base_chain();
        chain.tasks.push(task("classify", "noop", vec![]));
        let violations = validate(&chain);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "tasks[3].id");
        assert_eq!(violations[0].reason, reason::DUPLICATE_ID);
        assert!(
            violations[0].description.contains("tasks[0]"),
            "{}",
            violations[0]
        );
    }

    #[test]
    fn handler_violations() {
        assert_single(
            |c| c.tasks[2].handler = "llm".into(),
            "tasks[2].handler",
            reason::UNKNOWN_HANDLER,
        );
        assert_single(
            |c| c.tasks[2].handler.clear(),
            "tasks[2].handler",
            reason::UNKNOWN_HANDLER,
        );
        let mut chain = base_chain();
        chain.tasks[2].handler = "Noop".into();
        let violation = &validate(&chain)[0];
        assert!(
            violation.description.contains("raw_string, condition_key"),
            "{violation}"
        );
    }

    #[test]
    fn operator_violations() {
        let set = |operator: &'static str, when: &'static str| {
            move |c: &mut pb::Chain| {
                let branch = &mut c.tasks[0].transition.as_mut().unwrap().branches[0];
                branch.operator = operator.into();
                branch.when = when.into();
            }
        };
        let operator_field = "tasks[0].transition.branches[0].operator";
        let when_field = "tasks[0].transition.branches[0].when";
        assert_single(set("eq", "yes"), operator_field, reason::UNKNOWN_OPERATOR);
        assert_single(set("", "yes"), operator_field, reason::UNKNOWN_OPERATOR);
        assert_single(set(">=", "1"), operator_field, reason::UNKNOWN_OPERATOR);
        assert_single(set("gt", "high"), when_field, reason::INVALID_OPERAND);
        assert_single(set(">", ""), when_field, reason::INVALID_OPERAND);
        assert_single(set("lt", "inf"), when_field, reason::INVALID_OPERAND);
        assert_single(set("<", "1 2"), when_field, reason::INVALID_OPERAND);
        assert_single(set("in_range", "5"), when_field, reason::INVALID_OPERAND);
        assert_single(
            set("in_range", "1 to 5"),
            when_field,
            reason::INVALID_OPERAND,
        );
        assert_single(set("in_range", "7-3"), when_field, reason::INVALID_OPERAND);
        assert_single(
            set("in_range", "-5--10"),
            when_field,
            reason::INVALID_OPERAND,
        );
        assert_single(set("contains", ""), when_field, reason::INVALID_OPERAND);
        assert_single(set("starts_with", ""), when_field, reason::INVALID_OPERAND);
        assert_single(set("ends_with", ""), when_field, reason::INVALID_OPERAND);
    }

    #[test]
    fn duplicate_default_is_reported_at_the_second() {
        assert_single(
            |c| {
                c.tasks[0]
                    .transition
                    .as_mut()
                    .unwrap()
                    .branches
                    .push(branch("default", "", goto("end")))
            },
            "tasks[0].transition.branches[2].operator",
            reason::DUPLICATE_DEFAULT,
        );
    }

    #[test]
    fn goto_violations() {
        let set = |target: Option<Value>| {
            move |c: &mut pb::Chain| {
                c.tasks[0].transition.as_mut().unwrap().branches[1].goto = target.clone();
                // Keep `refuse` reachable whatever the goto.
                c.tasks[1].transition.as_mut().unwrap().branches[0].goto = goto("refuse");
            }
        };
        let field = "tasks[0].transition.branches[1].goto";
        let value = |kind: Kind| Some(Value { kind: Some(kind) });
        assert_single(set(None), field, reason::INVALID_GOTO);
        assert_single(set(Some(Value { kind: None })), field, reason::INVALID_GOTO);
        assert_single(set(value(Kind::NullValue(0))), field, reason::INVALID_GOTO);
        assert_single(
            set(value(Kind::NumberValue(1.0))),
            field,
            reason::INVALID_GOTO,
        );
        assert_single(
            set(value(Kind::BoolValue(true))),
            field,
            reason::INVALID_GOTO,
        );
        assert_single(
            set(value(Kind::StructValue(Default::default()))),
            field,
            reason::INVALID_GOTO,
        );
        assert_single(set(goto("")), field, reason::INVALID_GOTO);
        assert_single(set(goto("missing")), field, reason::UNKNOWN_TASK);
        assert_single(set(goto("End")), field, reason::UNKNOWN_TASK);
        assert_single(set(goto_list(&[])), field, reason::INVALID_GOTO);
        assert_single(
            set(goto_list(&["answer", "end"])),
            &format!("{field}[1]"),
            reason::INVALID_GOTO,
        );
        assert_single(
            set(goto_list(&["answer", "answer"])),
            &format!("{field}[1]"),
            reason::INVALID_GOTO,
        );
        assert_single(
            set(goto_list(&["answer", ""])),
            &format!("{field}[1]"),
            reason::INVALID_GOTO,
        );
        assert_single(
            set(goto_list(&["answer", "ghost"])),
            &format!("{field}[1]"),
            reason::UNKNOWN_TASK,
        );
        let mixed = value(Kind::ListValue(ListValue {
            values: vec![
                Value {
                    kind: Some(Kind::StringValue("answer".into())),
                },
                Value {
                    kind: Some(Kind::NumberValue(2.0)),
                },
            ],
        }));
        assert_single(set(mixed), &format!("{field}[1]"), reason::INVALID_GOTO);
        let too_many: Vec<String> = (0..=MAX_TASK_LIST).map(|n| format!("t{n}")).collect();
        let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
        assert_single(set(goto_list(&too_many)), field, reason::TOO_LARGE);
    }

    #[test]
    fn on_failure_violations() {
        let set = |target: &'static str| {
            move |c: &mut pb::Chain| {
                c.tasks[1].transition.as_mut().unwrap().on_failure = target.into()
            }
        };
        assert_single(
            set("missing"),
            "tasks[1].transition.on_failure",
            reason::UNKNOWN_TASK,
        );
        assert_single(
            set("end"),
            "tasks[1].transition.on_failure",
            reason::UNKNOWN_TASK,
        );
    }

    #[test]
    fn entry_violation() {
        assert_single(
            |c| c.entry = "missing".into(),
            "entry",
            reason::UNKNOWN_TASK,
        );
    }

    #[test]
    fn wait_for_violations() {
        let set = |waits: &'static [&'static str]| {
            move |c: &mut pb::Chain| {
                c.tasks[1].wait_for = waits.iter().map(|w| w.to_string()).collect()
            }
        };
        assert_single(
            set(&["answer"]),
            "tasks[1].wait_for[0]",
            reason::INVALID_WAIT_FOR,
        );
        assert_single(
            set(&["classify", "classify"]),
            "tasks[1].wait_for[1]",
            reason::INVALID_WAIT_FOR,
        );
        assert_single(
            set(&["classify", "ghost"]),
            "tasks[1].wait_for[1]",
            reason::UNKNOWN_TASK,
        );
        assert_single(set(&[""]), "tasks[1].wait_for[0]", reason::UNKNOWN_TASK);
        assert_eq!(
            problems(&{
                let mut chain = base_chain();
                set(&["classify", "refuse"])(&mut chain);
                chain
            }),
            vec![]
        );
    }

    #[test]
    fn input_var_violations() {
        assert_single(
            |c| c.tasks[1].input_var = "ghost".into(),
            "tasks[1].input_var",
            reason::UNKNOWN_TASK,
        );
        assert_single(
            |c| c.tasks[1].input_var = "answer".into(),
            "tasks[1].input_var",
            reason::INVALID_VALUE,
        );
    }

    #[test]
    fn unreachable_tasks() {
        assert_single(
            |c| c.tasks.push(task("orphan", "noop", vec![])),
            "tasks[3]",
            reason::UNREACHABLE_TASK,
        );
        // Reachable through on_failure only.
        assert_single(
            |c| {
                c.tasks.push(task("recover", "noop", vec![]));
                c.tasks[1].transition.as_mut().unwrap().on_failure = "recover".into();
                c.tasks.push(task(
                    "orphan",
                    "noop",
                    vec![branch("default", "", goto("recover"))],
                ));
            },
            "tasks[4]",
            reason::UNREACHABLE_TASK,
        );
        // Reachable through a fan-out only.
        assert_eq!(
            problems(&{
                let mut chain = base_chain();
                chain.tasks.push(task("side", "noop", vec![]));
                chain.tasks[1].transition.as_mut().unwrap().branches[0].goto =
                    goto_list(&["refuse", "side"]);
                chain
            }),
            vec![]
        );
        // Reachability follows the explicit entry.
        assert_single(
            |c| {
                c.entry = "answer".into();
                c.tasks[1].transition.as_mut().unwrap().branches[0].goto = goto("refuse");
            },
            "tasks[0]",
            reason::UNREACHABLE_TASK,
        );
    }

    #[test]
    fn wait_for_is_not_an_edge() {
        let mut chain = base_chain();
        chain.tasks.push(task("orphan", "noop", vec![]));
        chain.tasks[1].wait_for = vec!["orphan".into()];
        assert_eq!(
            problems(&chain),
            vec![("tasks[3]".to_string(), reason::UNREACHABLE_TASK)]
        );
    }

    #[test]
    fn duration_violations() {
        let cases = [
            ("soon", "timeout"),
            ("0s", "timeout"),
            ("25h", "timeout"),
            ("-1s", "timeout"),
            ("30", "timeout"),
        ];
        for (text, _) in cases {
            assert_single(
                |c| c.tasks[1].timeout = text.into(),
                "tasks[1].timeout",
                reason::INVALID_DURATION,
            );
        }
        assert_single(
            |c| {
                c.tasks[1].retry = Some(pb::RetryPolicy {
                    initial_delay: "1x".into(),
                    ..Default::default()
                })
            },
            "tasks[1].retry.initial_delay",
            reason::INVALID_DURATION,
        );
        assert_single(
            |c| {
                c.tasks[1].retry = Some(pb::RetryPolicy {
                    max_delay: "0ms".into(),
                    ..Default::default()
                })
            },
            "tasks[1].retry.max_delay",
            reason::INVALID_DURATION,
        );
        assert_eq!(
            problems(&{
                let mut chain = base_chain();
                chain.tasks[1].timeout = "24h".into();
                chain
            }),
            vec![]
        );
    }

    #[test]
    fn retry_violations() {
        let set = |retry: pb::RetryPolicy| {
            move |c: &mut pb::Chain| c.tasks[1].retry = Some(retry.clone())
        };
        let field = |name: &str| format!("tasks[1].retry.{name}");
        let base = pb::RetryPolicy::default();
        assert_single(
            set(pb::RetryPolicy {
                max_attempts: -1,
                ..base.clone()
            }),
            &field("max_attempts"),
            reason::INVALID_RETRY,
        );
        assert_single(
            set(pb::RetryPolicy {
                max_attempts: 101,
                ..base.clone()
            }),
            &field("max_attempts"),
            reason::INVALID_RETRY,
        );
        assert_single(
            set(pb::RetryPolicy {
                backoff: "linear".into(),
                ..base.clone()
            }),
            &field("backoff"),
            reason::INVALID_RETRY,
        );
        assert_single(
            set(pb::RetryPolicy {
                jitter: 1.5,
                ..base.clone()
            }),
            &field("jitter"),
            reason::INVALID_RETRY,
        );
        assert_single(
            set(pb::RetryPolicy {
                jitter: -0.1,
                ..base.clone()
            }),
            &field("jitter"),
            reason::INVALID_RETRY,
        );
        assert_single(
            set(pb::RetryPolicy {
                jitter: f64::NAN,
                ..base.clone()
            }),
            &field("jitter"),
            reason::INVALID_RETRY,
        );
        assert_single(
            set(pb::RetryPolicy {
                backoff: "exponential".into(),
                multiplier: 0.5,
                ..base.clone()
            }),
            &field("multiplier"),
            reason::INVALID_RETRY,
        );
        assert_single(
            set(pb::RetryPolicy {
                multiplier: f64::INFINITY,
                ..base.clone()
            }),
            &field("multiplier"),
            reason::INVALID_RETRY,
        );
        assert_single(
            set(pb::RetryPolicy {
                initial_delay: "10s".into(),
                max_delay: "5s".into(),
                ..base.clone()
            }),
            &field("max_delay"),
            reason::INVALID_RETRY,
        );
        assert_single(
            |c| c.tasks[1].retry_on_failure = -1,
            "tasks[1].retry_on_failure",
            reason::INVALID_RETRY,
        );
        assert_single(
            |c| c.tasks[1].retry_on_failure = 101,
            "tasks[1].retry_on_failure",
            reason::INVALID_RETRY,
        );
        // Boundaries are accepted.
        let mut chain = base_chain();
        chain.tasks[1].retry = Some(pb::RetryPolicy {
            max_attempts: 100,
            jitter: 1.0,
            backoff: "exponential".into(),
            multiplier: 1.0,
            ..base
        });
        chain.tasks[2].retry_on_failure = 100;
        assert_eq!(problems(&chain), vec![]);
    }

    #[test]
    fn template_violations() {
        assert_single(
            |c| c.tasks[1].prompt_template = "{{ input".into(),
            "tasks[1].prompt_template",
            reason::TEMPLATE_SYNTAX,
        );
        assert_single(
            |c| c.tasks[1].print = "{% if %}".into(),
            "tasks[1].print",
            reason::TEMPLATE_SYNTAX,
        );
        assert_single(
            |c| c.tasks[2].error_message = "{% for x in y %}".into(),
            "tasks[2].error_message",
            reason::TEMPLATE_SYNTAX,
        );
        assert_single(
            |c| {
                c.tasks[2].handler = "hook".into();
                c.tasks[2].hook = Some(pb::HookCall {
                    name: "notify".into(),
                    args: [("body".to_string(), "{{ x }".to_string())].into(),
                });
            },
            "tasks[2].hook.args[\"body\"]",
            reason::TEMPLATE_SYNTAX,
        );
        let mut chain = base_chain();
        chain.tasks[1].prompt_template = "Hi {{ input".into();
        let violation = &validate(&chain)[0];
        assert!(
            violation.description.contains("syntax error"),
            "minijinja's message is included: {violation}"
        );
    }

    #[test]
    fn handler_requirement_violations() {
        assert_single(
            |c| c.tasks[0].valid_conditions.clear(),
            "tasks[0].valid_conditions",
            reason::MISSING_VALID_CONDITIONS,
        );
        assert_single(
            |c| {
                c.tasks[0]
                    .valid_conditions
                    .values_mut()
                    .for_each(|valid| *valid = false)
            },
            "tasks[0].valid_conditions",
            reason::MISSING_VALID_CONDITIONS,
        );
        assert_single(
            |c| c.tasks[2].handler = "worker".into(),
            "tasks[2].queue",
            reason::MISSING_QUEUE,
        );
        assert_single(
            |c| c.tasks[2].handler = "hook".into(),
            "tasks[2].hook.name",
            reason::MISSING_HOOK,
        );
        assert_single(
            |c| {
                c.tasks[2].handler = "hook".into();
                c.tasks[2].hook = Some(pb::HookCall::default());
            },
            "tasks[2].hook.name",
            reason::MISSING_HOOK,
        );
    }

    #[test]
    fn name_violations() {
        assert_single(
            |c| {
                c.tasks[2].handler = "worker".into();
                c.tasks[2].queue = "internal".into();
            },
            "tasks[2].queue",
            reason::INVALID_VALUE,
        );
        assert_single(
            |c| c.tasks[2].queue = "my queue".into(),
            "tasks[2].queue",
            reason::INVALID_VALUE,
        );
        assert_single(
            |c| {
                c.tasks[2].hook = Some(pb::HookCall {
                    name: "bad/name".into(),
                    args: Default::default(),
                })
            },
            "tasks[2].hook.name",
            reason::INVALID_VALUE,
        );
        assert_single(
            |c| {
                c.tasks[2].hook = Some(pb::HookCall {
                    name: "ok".into(),
                    args: [(String::new(), "v".to_string())].into(),
                })
            },
            "tasks[2].hook.args[\"\"]",
            reason::INVALID_VALUE,
        );
        assert_single(
            |c| {
                c.tasks[0].valid_conditions.insert(" maybe".into(), true);
            },
            "tasks[0].valid_conditions[\" maybe\"]",
            reason::INVALID_VALUE,
        );
        assert_single(
            |c| {
                c.tasks[0].valid_conditions.insert(String::new(), false);
            },
            "tasks[0].valid_conditions[\"\"]",
            reason::INVALID_VALUE,
        );
    }

    #[test]
    fn value_violations() {
        assert_single(|c| c.max_steps = -1, "max_steps", reason::INVALID_VALUE);
        assert_single(
            |c| c.max_steps = MAX_STEPS + 1,
            "max_steps",
            reason::INVALID_VALUE,
        );
        assert_single(|c| c.token_limit = -5, "token_limit", reason::INVALID_VALUE);
        let config = |config: pb::ExecuteConfig| {
            move |c: &mut pb::Chain| c.tasks[1].execute_config = Some(config.clone())
        };
        let base = pb::ExecuteConfig::default();
        assert_single(
            config(pb::ExecuteConfig {
                max_tokens: -1,
                ..base.clone()
            }),
            "tasks[1].execute_config.max_tokens",
            reason::INVALID_VALUE,
        );
        assert_single(
            config(pb::ExecuteConfig {
                temperature: Some(2.5),
                ..base.clone()
            }),
            "tasks[1].execute_config.temperature",
            reason::INVALID_VALUE,
        );
        assert_single(
            config(pb::ExecuteConfig {
                temperature: Some(f32::NAN),
                ..base.clone()
            }),
            "tasks[1].execute_config.temperature",
            reason::INVALID_VALUE,
        );
        assert_single(
            config(pb::ExecuteConfig {
                models: vec!["a".into(), " ".into()],
                ..base.clone()
            }),
            "tasks[1].execute_config.models[1]",
            reason::INVALID_VALUE,
        );
        assert_single(
            config(pb::ExecuteConfig {
                providers: vec![String::new()],
                ..base.clone()
            }),
            "tasks[1].execute_config.providers[0]",
            reason::INVALID_VALUE,
        );
        let mut chain = base_chain();
        chain.max_steps = MAX_STEPS;
        chain.token_limit = i64::MAX;
        let compiled = compile(&chain).unwrap();
        assert_eq!(compiled.max_steps(), MAX_STEPS as u32);
        assert_eq!(compiled.token_limit(), Some(i64::MAX as u64));
    }

    fn big_text() -> String {
        "x".repeat(MAX_TEXT_BYTES + 1)
    }

    fn big_name() -> String {
        "m".repeat(MAX_NAME_BYTES + 1)
    }

    fn hook_with_args(args: impl IntoIterator<Item = (String, String)>) -> Option<pb::HookCall> {
        Some(pb::HookCall {
            name: "h".into(),
            args: args.into_iter().collect(),
        })
    }

    fn first_branch(chain: &mut pb::Chain) -> &mut pb::Branch {
        &mut chain.tasks[0].transition.as_mut().unwrap().branches[0]
    }

    #[test]
    fn size_violations() {
        type Mutation = fn(&mut pb::Chain);
        let cases: [(Mutation, &str); 16] = [
            (|c| c.description = big_text(), "description"),
            (
                |c| c.tasks[1].description = big_text(),
                "tasks[1].description",
            ),
            (
                |c| c.tasks[1].system_instruction = big_text(),
                "tasks[1].system_instruction",
            ),
            (
                |c| c.tasks[1].prompt_template = big_text(),
                "tasks[1].prompt_template",
            ),
            (|c| c.tasks[1].print = big_text(), "tasks[1].print"),
            (
                |c| c.tasks[1].error_message = big_text(),
                "tasks[1].error_message",
            ),
            (
                |c| first_branch(c).when = big_text(),
                "tasks[0].transition.branches[0].when",
            ),
            (
                |c| first_branch(c).alert_on_match = big_text(),
                "tasks[0].transition.branches[0].alert_on_match",
            ),
            (
                |c| c.tasks[2].hook = hook_with_args([("a".to_string(), big_text())]),
                "tasks[2].hook.args[\"a\"]",
            ),
            (
                |c| {
                    c.tasks[2].hook = hook_with_args(
                        (0..=MAX_HOOK_ARGS).map(|n| (format!("a{n}"), String::new())),
                    )
                },
                "tasks[2].hook.args",
            ),
            (
                |c| {
                    let config = pb::ExecuteConfig {
                        model: big_name(),
                        ..Default::default()
                    };
                    c.tasks[1].execute_config = Some(config);
                },
                "tasks[1].execute_config.model",
            ),
            (
                |c| {
                    let config = pb::ExecuteConfig {
                        pool: big_name(),
                        ..Default::default()
                    };
                    c.tasks[1].execute_config = Some(config);
                },
                "tasks[1].execute_config.pool",
            ),
            (
                |c| {
                    let models = vec!["m".to_string(); MAX_MODEL_LIST + 1];
                    c.tasks[1].execute_config = Some(pb::ExecuteConfig {
                        models,
                        ..Default::default()
                    });
                },
                "tasks[1].execute_config.models",
            ),
            (
                |c| {
                    let extra = (0..MAX_BRANCHES).map(|_| branch("equals", "x", goto("end")));
                    c.tasks[0]
                        .transition
                        .as_mut()
                        .unwrap()
                        .branches
                        .extend(extra);
                },
                "tasks[0].transition.branches",
            ),
            (
                |c| c.tasks[1].wait_for = (0..=MAX_TASK_LIST).map(|n| format!("w{n}")).collect(),
                "tasks[1].wait_for",
            ),
            (
                |c| {
                    c.tasks[0].valid_conditions = (0..=MAX_VALID_CONDITIONS)
                        .map(|n| (format!("k{n}"), true))
                        .collect()
                },
                "tasks[0].valid_conditions",
            ),
        ];
        for (mutate, field) in cases {
            let mut chain = base_chain();
            mutate(&mut chain);
            assert_eq!(
                problems(&chain),
                vec![(field.to_string(), reason::TOO_LARGE)],
                "{field}"
            );
        }
        // At the bound is fine.
        let mut chain = base_chain();
        chain.tasks[1].prompt_template = "x".repeat(MAX_TEXT_BYTES);
        chain.tasks[1].execute_config = Some(pb::ExecuteConfig {
            model: "m".repeat(MAX_NAME_BYTES),
            ..Default::default()
        });
        assert_eq!(problems(&chain), vec![]);
    }

    #[test]
    fn long_values_are_quoted_short() {
        let mut chain = base_chain();
        chain.tasks[2].handler = "h".repeat(10_000);
        let violation = &validate(&chain)[0];
        assert!(
            violation.description.len() < 400,
            "{}",
            violation.description.len()
        );
        assert!(violation.description.contains('…'));
    }

    // ---- every problem at once -------------------------------------------

    #[test]
    fn five_distinct_errors_yield_five_violations() {
        let mut chain = base_chain();
        chain.id = "bad id".into();
        chain.tasks[1].handler = "llm".into();
        chain.tasks[1].timeout = "forever".into();
        chain.tasks[0].transition.as_mut().unwrap().branches[0].operator = "approx".into();
        chain.tasks.push(task("orphan", "noop", vec![]));
        let violations = validate(&chain);
        let found: Vec<(&str, &str)> = violations
            .iter()
            .map(|v| (v.field.as_str(), v.reason))
            .collect();
        assert_eq!(
            found,
            [
                ("id", reason::INVALID_ID),
                (
                    "tasks[0].transition.branches[0].operator",
                    reason::UNKNOWN_OPERATOR
                ),
                ("tasks[1].handler", reason::UNKNOWN_HANDLER),
                ("tasks[1].timeout", reason::INVALID_DURATION),
                ("tasks[3]", reason::UNREACHABLE_TASK),
            ]
        );
        assert!(violations.iter().all(|v| !v.description.is_empty()));
        assert_eq!(compile(&chain).unwrap_err(), violations);
    }

    #[test]
    fn many_problems_in_one_task_are_all_reported() {
        let mut chain = base_chain();
        chain.tasks[2] = pb::Task {
            id: "refuse".into(),
            handler: "worker".into(),
            prompt_template: "{{".into(),
            timeout: "1d".into(),
            retry_on_failure: -2,
            wait_for: vec!["refuse".into()],
            input_var: "nobody".into(),
            transition: Some(pb::Transition {
                on_failure: "ghost".into(),
                branches: vec![
                    branch("default", "", goto("x")),
                    branch("default", "", None),
                ],
            }),
            ..Default::default()
        };
        let reasons: Vec<&str> = validate(&chain).into_iter().map(|v| v.reason).collect();
        assert_eq!(
            reasons,
            [
                reason::TEMPLATE_SYNTAX,
                reason::UNKNOWN_TASK, // input_var
                reason::MISSING_QUEUE,
                reason::INVALID_DURATION,
                reason::INVALID_RETRY,
                reason::UNKNOWN_TASK, // on_failure
                reason::UNKNOWN_TASK, // goto x
                reason::DUPLICATE_DEFAULT,
                reason::INVALID_GOTO, // missing goto
                reason::INVALID_WAIT_FOR,
            ]
        );
    }

    #[test]
    fn violations_are_capped() {
        let mut chain = base_chain();
        let ghosts: Vec<String> = (0..MAX_TASK_LIST).map(|n| format!("ghost{n}")).collect();
        let ghosts: Vec<&str> = ghosts.iter().map(String::as_str).collect();
        chain.tasks[0].transition.as_mut().unwrap().branches = (0..MAX_BRANCHES)
            .map(|n| branch("equals", &n.to_string(), goto_list(&ghosts)))
            .collect();
        let violations = validate(&chain);
        assert_eq!(violations.len(), MAX_VIOLATIONS + 1);
        assert!(
            violations[..MAX_VIOLATIONS]
                .iter()
                .all(|v| v.reason == reason::UNKNOWN_TASK)
        );
        let last = &violations[MAX_VIOLATIONS];
        assert_eq!(
            (last.field.as_str(), last.reason),
            ("tasks", reason::TOO_MANY_VIOLATIONS)
        );
        // 100 * 100 unknown ids, plus `answer` and `refuse` now unreachable.
        let unlisted = MAX_BRANCHES * MAX_TASK_LIST + 2 - MAX_VIOLATIONS;
        assert!(
            last.description
                .starts_with(&format!("{unlisted} more problems")),
            "{last}"
        );
    }

    #[test]
    fn violation_display() {
        let violation = Violation {
            field: "tasks[0].handler".into(),
            description: "unknown handler".into(),
            reason: reason::UNKNOWN_HANDLER,
        };
        assert_eq!(
            violation.to_string(),
            "tasks[0].handler: unknown handler (UNKNOWN_HANDLER)"
        );
    }

    #[test]
    fn quote_cuts_on_char_boundaries() {
        assert_eq!(quote("abc"), "\"abc\"");
        assert_eq!(
            quote(&"é".repeat(100)),
            format!("{:?}…", "é".repeat(QUOTE_CHARS))
        );
    }
}
