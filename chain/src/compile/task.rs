//! One task: its handler and everything that depends on it (input,
//! valid conditions, model preference, hook call, queue).

use std::collections::BTreeMap;

use taskloom_proto::taskloom::v1 as pb;

use super::{
    Compiler, INTERNAL_QUEUE, MAX_HOOK_ARGS, MAX_MODEL_LIST, MAX_NAME_BYTES, MAX_TEMPERATURE,
    MAX_TEXT_BYTES, MAX_VALID_CONDITIONS, RUN_INPUT, TaskIds, map_field, non_empty, quote, reason,
};
use crate::model::{CompiledTask, Handler, HookCall, InputSource, ModelPreference};

impl Compiler {
    pub(super) fn task(
        &mut self,
        position: usize,
        task: &pb::Task,
        ids: &TaskIds<'_>,
    ) -> CompiledTask {
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

    pub(super) fn input_source(
        &mut self,
        field: &str,
        task: &pb::Task,
        ids: &TaskIds<'_>,
    ) -> InputSource {
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

    pub(super) fn valid_conditions(
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

    pub(super) fn model_preference(
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
            stream: config.stream,
        }
    }

    /// Merges a shorthand (`model`) and its list (`models`): shorthand
    /// first, duplicates dropped, order kept.
    pub(super) fn preference_list(
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

    pub(super) fn hook(
        &mut self,
        field: &str,
        task: &pb::Task,
        handler: Option<Handler>,
    ) -> Option<HookCall> {
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

    pub(super) fn queue(
        &mut self,
        field: &str,
        task: &pb::Task,
        handler: Option<Handler>,
    ) -> Option<String> {
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
}
