//! Tests of chain validation and compilation, and the chain builders they
//! share.

use prost_types::value::Kind;
use prost_types::{ListValue, Value};
use serde_json::json;

use super::*;
use crate::model::{CompiledTransition, Goto, Handler, InputSource, Operator};
use crate::retry::{Backoff, RetryPolicy};

mod all_at_once;
mod valid;
mod violations;

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
        serde_json::Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
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
        stream: field(config, "stream")
            .and_then(|s| s.as_bool())
            .unwrap_or_default(),
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
