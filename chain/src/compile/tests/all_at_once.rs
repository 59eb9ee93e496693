//! Every problem of a definition reported at once.

use super::*;

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
