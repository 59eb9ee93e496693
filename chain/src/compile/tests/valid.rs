//! Chains that compile, and what they compile to.

use super::*;

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
        stream: true,
    });
    let compiled = compile(&chain).unwrap();
    let model = &compiled.tasks()[1].model;
    assert!(model.stream, "the task asks its call to stream");
    assert_eq!(model.models, ["b", "a", "c"]);
    assert_eq!(model.providers, ["openai", "ollama"]);
    assert_eq!(model.pool.as_deref(), Some("internal_chat_pool"));
    assert_eq!(model.temperature, None);
    assert_eq!(model.max_tokens, None);
}
