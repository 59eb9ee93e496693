//! Tests of chain validation and compilation.

use prost_types::value::Kind;
use prost_types::{ListValue, Value};
use serde_json::json;

use super::*;
use crate::model::{CompiledTransition, Goto, Handler, InputSource, Operator};
use crate::retry::{Backoff, RetryPolicy};

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
        move |c: &mut pb::Chain| c.tasks[1].transition.as_mut().unwrap().on_failure = target.into()
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
        move |c: &mut pb::Chain| c.tasks[1].wait_for = waits.iter().map(|w| w.to_string()).collect()
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
    let set =
        |retry: pb::RetryPolicy| move |c: &mut pb::Chain| c.tasks[1].retry = Some(retry.clone());
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
                c.tasks[2].hook =
                    hook_with_args((0..=MAX_HOOK_ARGS).map(|n| (format!("a{n}"), String::new())))
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
