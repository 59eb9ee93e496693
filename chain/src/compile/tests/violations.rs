//! One violation per mistake, with its exact path.

use super::*;

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
