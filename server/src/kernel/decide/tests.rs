//! Table tests of the kernel's decisions, on runs held in memory (see
//! [`fixture`]): no store, no server, no clock. Each test names the
//! behaviour it pins; a change to that behaviour fails it.

mod fixture;

use std::time::Duration;

use chrono::TimeDelta;

use self::fixture::*;
use super::*;
use crate::proto::taskloom::v1::RunEventType as E;
use crate::store::{AttemptStatus, RunStatus, Verdict};

fn boom(retryable: bool) -> TaskFailure {
    TaskFailure::new("boom", retryable)
}

fn ms(millis: i64) -> TimeDelta {
    TimeDelta::milliseconds(millis)
}

// ---------------------------------------------------------------------------
// start

#[test]
fn start_schedules_the_entry_task() {
    // (entry task, attempt status, queue, run status, events)
    let table = [
        (
            task("a", "noop"),
            AttemptStatus::Ready,
            INTERNAL_QUEUE,
            RunStatus::Queued,
            vec![E::RunCreated, E::TaskReady],
        ),
        (
            worker("a"),
            AttemptStatus::Ready,
            // The queue's key in the run's namespace.
            "default/jobs",
            RunStatus::Queued,
            vec![E::RunCreated, E::TaskReady],
        ),
        (
            task("a", "human_input"),
            AttemptStatus::Waiting,
            INTERNAL_QUEUE,
            RunStatus::WaitingInput,
            vec![E::RunCreated, E::TaskReady, E::InputRequested],
        ),
    ];
    for (entry, attempt_status, queue, run_status, expected_events) in table {
        let handler = entry.handler.clone();
        let chain = compile(&chain(vec![entry.clone()]));
        let new = NewRun {
            id: "run-1".into(),
            namespace: "default".into(),
            chain_id: "chain".into(),
            chain_version: 3,
            input: value::text("hello"),
            labels: Default::default(),
            priority: 7,
            tenant: "acme".into(),
            request_id: Some("req-1".into()),
        };
        let (run, attempts, events) = start(&chain, new, &Renders::default(), epoch());
        assert_eq!(run.status, run_status, "{handler}");
        assert_eq!(run.request_id.as_deref(), Some("req-1"));
        assert_eq!((run.steps, run.executions), (1, 1), "{handler}");
        assert_eq!(attempts.len(), 1, "{handler}");
        let attempt = &attempts[0];
        assert_eq!(attempt.task_id, "a");
        assert_eq!(attempt.status, attempt_status, "{handler}");
        assert_eq!(attempt.queue, queue, "{handler}");
        assert_eq!((attempt.attempt, attempt.step, attempt.priority), (1, 1, 7));
        assert_eq!(attempt.available_at, epoch());
        assert_eq!(text_of(&attempt.input), "hello");
        assert_eq!(run.heads, Some(vec![attempt.id.clone()]));
        let plan = Plan {
            events,
            ..Plan::apply()
        };
        assert_eq!(event_types(&plan), expected_events, "{handler}");
    }
}

#[test]
fn start_renders_the_entry_prompt_and_defers_until_rendered() {
    let chain = compile(&chain(vec![worker("a").prompt("look up {{ input }}")]));
    let new = NewRun {
        id: "run-1".into(),
        namespace: "default".into(),
        chain_id: "chain".into(),
        chain_version: 1,
        input: value::text("cats"),
        labels: Default::default(),
        priority: 0,
        tenant: String::new(),
        request_id: None,
    };
    let renders = Renders::default();
    start(&chain, new, &renders, epoch());
    let missing = renders.take_missing();
    assert_eq!(missing.len(), 1, "the first decision asks for the prompt");
    assert_eq!(missing[0].template, "look up {{ input }}");

    let run = TestRun::start(chain_of(worker("a").prompt("look up {{ input }}")), "cats");
    assert_eq!(run.latest("a").prompt.as_deref(), Some("look up cats"));
}

fn chain_of(task: pb::Task) -> pb::Chain {
    chain(vec![task])
}

// ---------------------------------------------------------------------------
// claimed

#[test]
fn claimed_starts_the_run_once_and_sets_deadlines() {
    let mut run = TestRun::start(chain_of(worker("a").timeout("5s")), "x");
    assert_eq!(run.status(), RunStatus::Queued);
    run.advance(Duration::from_secs(1));
    let lease = run.lease("a");
    assert_eq!(run.status(), RunStatus::Running);
    assert_eq!(run.run().started_at, Some(run.now));
    let attempt = run.latest("a");
    assert_eq!(attempt.deadline, Some(run.now + TimeDelta::seconds(5)));
    assert_eq!(attempt.id, lease.attempt_id);

    // A run already running gets no second RunStarted.
    let plan = claimed(
        Some(&run.chain),
        run.run(),
        std::slice::from_ref(attempt),
        run.now,
    );
    assert_eq!(event_types(&plan), vec![E::TaskStarted]);
    // Without the chain (or without a timeout) no deadline is set.
    let plan = claimed(None, run.run(), std::slice::from_ref(attempt), run.now);
    assert!(plan.attempt_updates.is_empty());
}

// ---------------------------------------------------------------------------
// complete: transitions

#[test]
fn complete_follows_the_transition() {
    let mut run = TestRun::start(then_b(task("a", "noop")), "x");
    let plan = run.complete("a", "out-a");
    assert_eq!(
        event_types(&plan),
        vec![E::TaskSucceeded, E::Transition, E::TaskReady]
    );
    assert_eq!(run.status(), RunStatus::Running);
    assert_eq!(run.latest("a").status, AttemptStatus::Succeeded);
    assert_eq!(text_of(run.latest("a").output.as_ref().unwrap()), "out-a");
    assert_eq!(
        text_of(&run.latest("b").input),
        "out-a",
        "b gets a's output"
    );
    assert_eq!((run.run().steps, run.run().executions), (2, 2));

    let plan = run.complete("b", "out-b");
    assert_eq!(
        event_types(&plan),
        vec![E::TaskSucceeded, E::Transition, E::RunSucceeded]
    );
    assert_eq!(run.status(), RunStatus::Succeeded);
    assert_eq!(text_of(run.run().output.as_ref().unwrap()), "out-b");
    assert_eq!(run.run().ended_at, Some(run.now));
}

#[test]
fn branches_route_on_the_output() {
    let route = || {
        task("route", "noop")
            .when("equals", "yes", "y")
            .when("starts_with", "no", "n")
            .on_failure("fallback")
    };
    let chain = || {
        chain(vec![
            route(),
            task("y", "noop"),
            task("n", "noop"),
            task("fallback", "noop"),
        ])
    };
    // (output, next task scheduled)
    let table = [("yes", "y"), ("nope", "n"), ("maybe", "fallback")];
    for (output, next) in table {
        let mut run = TestRun::start(chain(), "x");
        run.complete("route", output);
        let ready: Vec<&str> = run
            .snapshot
            .attempts
            .iter()
            .filter(|a| a.status == AttemptStatus::Ready)
            .map(|a| a.task_id.as_str())
            .collect();
        assert_eq!(ready, vec![next], "output {output:?}");
    }
    // With no branch matching, the handler gets the error as its input.
    let mut run = TestRun::start(chain(), "x");
    run.complete("route", "maybe");
    assert!(text_of(&run.latest("fallback").input).contains("no branch of task route matched"));
}

#[test]
fn no_branch_matched_fails_the_run_without_on_failure() {
    let mut run = TestRun::start(
        chain(vec![
            task("route", "noop").when("equals", "yes", "y"),
            task("y", "noop"),
        ]),
        "x",
    );
    let plan = run.complete("route", "no");
    assert_eq!(run.status(), RunStatus::Failed);
    let error = run.run().error.clone().unwrap();
    assert_eq!(error.reason, reason::NO_BRANCH_MATCHED);
    assert_eq!(error.task_id, "route");
    assert_eq!(event_types(&plan).last(), Some(&E::RunFailed));
}

#[test]
fn fan_out_runs_every_target_and_ends_with_all_outputs_in_declared_order() {
    let mut run = TestRun::start(
        chain(vec![
            task("a", "noop").fan_out("default", &["c", "b"]),
            task("b", "noop"),
            task("c", "noop"),
        ]),
        "x",
    );
    run.complete("a", "go");
    assert_eq!(run.latest("b").status, AttemptStatus::Ready);
    assert_eq!(run.latest("c").status, AttemptStatus::Ready);
    run.complete("c", "from-c");
    assert_eq!(run.status(), RunStatus::Running, "b is still active");
    run.complete("b", "from-b");
    assert_eq!(run.status(), RunStatus::Succeeded);
    let output = value::decode(run.run().output.as_ref().unwrap()).unwrap();
    assert_eq!(
        value::template_json(&output),
        serde_json::json!(["from-b", "from-c"]),
        "outputs in declared task order, not completion order"
    );
}

#[test]
fn a_join_waits_for_every_task_it_waits_for() {
    let mut run = TestRun::start(
        chain(vec![
            task("a", "noop").fan_out("default", &["b", "c"]),
            task("b", "noop").then("j"),
            task("c", "noop").then("j"),
            task("j", "noop").wait_for(&["b", "c"]),
        ]),
        "x",
    );
    run.complete("a", "go");
    run.complete("c", "from-c");
    assert!(run.attempts_of("j").is_empty(), "j waits for b");
    run.complete("b", "from-b");
    assert_eq!(run.attempts_of("j").len(), 1, "j starts once");
    let input = value::decode(&run.latest("j").input).unwrap();
    assert_eq!(
        value::template_json(&input),
        serde_json::json!(["from-b", "from-c"])
    );
}

#[test]
fn loops_stop_at_max_steps() {
    let mut definition = chain(vec![task("a", "noop").when("equals", "again", "a")]);
    definition.max_steps = 3;
    let mut run = TestRun::start(definition, "x");
    run.complete("a", "again");
    run.complete("a", "again");
    assert_eq!(run.attempts_of("a").len(), 3);
    let plan = run.complete("a", "again");
    assert_eq!(run.status(), RunStatus::Failed);
    let error = run.run().error.clone().unwrap();
    assert_eq!(error.reason, reason::MAX_STEPS_EXCEEDED);
    assert_eq!(run.attempts_of("a").len(), 3, "no fourth execution");
    assert_eq!(event_types(&plan).last(), Some(&E::RunFailed));

    // The budget counts the whole run: RetryRun cannot spend it again.
    let plan = run.step(retry_run);
    assert_eq!(event_types(&plan), vec![E::RunRetried, E::RunFailed]);
    assert_eq!(run.status(), RunStatus::Failed);
}

#[test]
fn retry_run_after_a_failure_outside_any_attempt_starts_from_the_entry() {
    let mut definition = then_b(task("a", "noop"));
    definition.token_limit = 10;
    let mut run = TestRun::start(definition, "x");
    let lease = run.lease("a");
    run.step(|given| {
        let mut success = TaskSuccess::output(value::text("out"));
        success.output_tokens = 11;
        complete(given, &lease.attempt_id, &lease.token, success)
    });
    assert_eq!(run.status(), RunStatus::Failed);
    let plan = run.step(retry_run);
    assert_eq!(event_types(&plan), vec![E::RunRetried, E::TaskReady]);
    assert_eq!(run.status(), RunStatus::Running);
    assert_eq!(run.run().error, None);
    let again = run.latest("a");
    assert_eq!((again.attempt, again.status), (1, AttemptStatus::Ready));
    assert_eq!(text_of(&again.input), "x", "the run's input");
    assert!(run.attempts_of("b").is_empty());
}

#[test]
fn heads_keep_active_latest_and_latest_successful_attempts() {
    let mut run = TestRun::start(
        chain(vec![
            task("a", "noop").when("equals", "again", "a").then("b"),
            worker("b").retry(fixed_retry(3, "1s")),
        ]),
        "x",
    );
    run.complete("a", "again");
    let first_a = run.attempts_of("a")[0].id.clone();
    let looping_a = run.attempts_of("a")[1].id.clone();
    assert_eq!(
        run.run().heads.clone().unwrap(),
        vec![first_a.clone(), looping_a],
        "a's output is needed while a runs again"
    );
    run.complete("a", "on");
    run.fail("b", boom(true), 0.0);
    let heads = run.run().heads.clone().unwrap();
    let second_a = run.attempts_of("a")[1].id.clone();
    let failed_b = run.attempts_of("b")[0].id.clone();
    let retry_b = run.attempts_of("b")[1].id.clone();
    assert!(!heads.contains(&first_a), "superseded success of a");
    assert!(!heads.contains(&failed_b), "superseded failure of b");
    assert_eq!(heads, vec![second_a, retry_b]);
}

#[test]
fn token_limit_fails_the_run() {
    let mut definition = then_b(task("a", "noop"));
    definition.token_limit = 100;
    // (tokens spent, run status afterwards)
    for (spent, status) in [(100, RunStatus::Running), (101, RunStatus::Failed)] {
        let mut run = TestRun::start(definition.clone(), "x");
        let lease = run.lease("a");
        run.step(|given| {
            let mut success = TaskSuccess::output(value::text("out"));
            success.input_tokens = spent - 1;
            success.output_tokens = 1;
            complete(given, &lease.attempt_id, &lease.token, success)
        });
        assert_eq!(run.status(), status, "{spent} tokens");
        assert_eq!(run.run().input_tokens + run.run().output_tokens, spent);
        if status == RunStatus::Failed {
            assert_eq!(
                run.run().error.clone().unwrap().reason,
                reason::TOKEN_LIMIT_EXCEEDED
            );
        }
    }
}

#[test]
fn print_emits_a_message() {
    let mut run = TestRun::start(
        chain_of(task("a", "noop").print("said {{ previous_output }} to {{ input }}")),
        "x",
    );
    let plan = run.complete("a", "hi");
    let message = events(&plan)
        .into_iter()
        .find(|event| event.r#type() == E::Message)
        .expect("a message event");
    assert_eq!(message.message, "said hi to x");
}

#[test]
fn a_prompt_that_fails_to_render_fails_the_task_for_good() {
    let mut run = TestRun::start(
        chain(vec![
            task("a", "noop").then("b"),
            task("b", "noop").prompt("{{ input.missing.deeper }}"),
        ]),
        "x",
    );
    let plan = run.complete("a", "out");
    assert_eq!(run.status(), RunStatus::Failed);
    let b = run.latest("b");
    assert_eq!(b.status, AttemptStatus::Failed);
    assert!(b.dead_lettered);
    assert_eq!(
        run.run().error.clone().unwrap().reason,
        reason::TEMPLATE_ERROR
    );
    assert!(event_types(&plan).contains(&E::TaskFailed));
}

// ---------------------------------------------------------------------------
// Fencing: results only from the current lease of a live run

#[test]
fn results_need_the_current_lease_of_a_live_run() {
    type Decision = fn(&Given, &str, &str) -> Plan;
    let decisions: [(&str, Decision); 6] = [
        ("complete", |g, a, t| {
            complete(g, a, t, TaskSuccess::output(value::text("x")))
        }),
        ("fail", |g, a, t| fail(g, a, t, boom(true), 0.0)),
        ("release", release),
        ("progress", |g, a, t| progress(g, a, t, "half way", None)),
        ("extend", |g, a, t| extend(g, a, t, g.now)),
        ("throttle", |g, a, t| throttle(g, a, t, "limit", g.now)),
    ];
    for (name, decision) in decisions {
        // (case, attempt id, token, expected rejection)
        let mut run = TestRun::start(chain_of(worker("a")), "x");
        let lease = run.lease("a");
        let cases = [
            (
                "unknown attempt",
                "nope".to_string(),
                lease.token.clone(),
                RejectionKind::NotFound,
            ),
            (
                "stale token",
                lease.attempt_id.clone(),
                "token-0".to_string(),
                RejectionKind::LeaseFenced,
            ),
        ];
        for (case, attempt_id, token, kind) in cases {
            let plan = run.decide(|given| decision(given, &attempt_id, &token));
            assert_eq!(rejection(&plan).0, kind, "{name}: {case}");
        }
        let plan = run.decide(|given| decision(given, &lease.attempt_id, &lease.token));
        assert_eq!(plan.verdict, Verdict::Apply, "{name} with the lease");

        // A cancelled run accepts no results, even with the token.
        let mut cancelled = TestRun::start(chain_of(worker("a")), "x");
        let lease = cancelled.lease("a");
        let mut snapshot = cancelled.snapshot.clone();
        snapshot.run.status = RunStatus::Cancelled;
        cancelled.snapshot = snapshot;
        let plan = cancelled.decide(|given| decision(given, &lease.attempt_id, &lease.token));
        let (kind, message) = rejection(&plan);
        assert_eq!(kind, RejectionKind::RunNotActive, "{name}");
        assert!(message.contains("already ended"), "{name}: {message}");

        // A completed attempt's lease is spent.
        let mut done = TestRun::start(chain_of(worker("a")), "x");
        let lease = done.lease("a");
        done.step(|given| {
            complete(
                given,
                &lease.attempt_id,
                &lease.token,
                TaskSuccess::output(value::text("x")),
            )
        });
        let plan = done.decide(|given| decision(given, &lease.attempt_id, &lease.token));
        assert!(rejection(&plan).1.contains("stale lease"), "{name}");
    }
}

// ---------------------------------------------------------------------------
// fail: retries and backoff

#[test]
fn failures_retry_per_policy() {
    struct Row {
        name: &'static str,
        retry: Option<pb::RetryPolicy>,
        retryable: bool,
        retry_delay: Option<Duration>,
        random_unit: f64,
        /// Delay of the retry, or None when the run fails.
        retry_in: Option<i64>,
    }
    let table = [
        Row {
            name: "fixed backoff",
            retry: Some(fixed_retry(3, "250ms")),
            retryable: true,
            retry_delay: None,
            random_unit: 0.9,
            retry_in: Some(250),
        },
        Row {
            name: "jitter scales with the random unit",
            retry: Some(pb::RetryPolicy {
                jitter: 1.0,
                ..fixed_retry(3, "200ms")
            }),
            retryable: true,
            retry_delay: None,
            random_unit: 0.5,
            retry_in: Some(300),
        },
        Row {
            name: "the failure's own delay wins",
            retry: Some(fixed_retry(3, "250ms")),
            retryable: true,
            retry_delay: Some(Duration::from_secs(5)),
            random_unit: 0.0,
            retry_in: Some(5000),
        },
        Row {
            name: "not retryable",
            retry: Some(fixed_retry(3, "250ms")),
            retryable: false,
            retry_delay: None,
            random_unit: 0.0,
            retry_in: None,
        },
        Row {
            name: "no retry policy",
            retry: None,
            retryable: true,
            retry_delay: None,
            random_unit: 0.0,
            retry_in: None,
        },
    ];
    for row in table {
        let mut spec = worker("a");
        spec.retry = row.retry.clone();
        let mut run = TestRun::start(chain_of(spec), "in");
        run.advance(Duration::from_secs(10));
        let failure = TaskFailure {
            retry_delay: row.retry_delay,
            ..boom(row.retryable)
        };
        let plan = run.fail("a", failure, row.random_unit);
        let failed = run.attempts_of("a")[0].clone();
        assert_eq!(failed.status, AttemptStatus::Failed, "{}", row.name);
        assert_eq!(failed.error.as_deref(), Some("boom"), "{}", row.name);
        assert_eq!(failed.dead_lettered, row.retry_in.is_none(), "{}", row.name);
        match row.retry_in {
            Some(delay) => {
                assert_eq!(run.status(), RunStatus::Running, "{}", row.name);
                let retry = run.latest("a");
                assert_eq!(retry.attempt, 2, "{}", row.name);
                assert_eq!(retry.status, AttemptStatus::Ready);
                assert_eq!(retry.available_at, run.now + ms(delay), "{}", row.name);
                assert_eq!(retry.input, failed.input, "the same input");
                assert_eq!(
                    (run.run().steps, run.run().executions),
                    (2, 1),
                    "a retry is a step, not an execution"
                );
                assert_eq!(
                    event_types(&plan),
                    vec![E::TaskFailed, E::TaskRetryScheduled, E::TaskReady],
                    "{}",
                    row.name
                );
                let scheduled = &events(&plan)[1];
                assert_eq!(scheduled.message, format!("retry in {delay} ms"));
            }
            None => {
                assert_eq!(run.status(), RunStatus::Failed, "{}", row.name);
                assert_eq!(run.attempts_of("a").len(), 1, "{}", row.name);
                let error = run.run().error.clone().unwrap();
                assert_eq!(error.reason, reason::TASK_FAILED);
                assert_eq!(error.message, "boom");
                assert_eq!(
                    event_types(&plan),
                    vec![E::TaskFailed, E::RunFailed],
                    "{}",
                    row.name
                );
            }
        }
    }
}

#[test]
fn exponential_backoff_grows_until_out_of_retries() {
    let policy = pb::RetryPolicy {
        max_attempts: 4,
        backoff: "exponential".into(),
        initial_delay: "100ms".into(),
        max_delay: "300ms".into(),
        multiplier: 2.0,
        ..Default::default()
    };
    let mut run = TestRun::start(chain_of(worker("a").retry(policy)), "x");
    for (attempt, delay) in [(1, 100), (2, 200), (3, 300)] {
        run.fail("a", boom(true), 0.0);
        let retry = run.latest("a");
        assert_eq!(retry.attempt, attempt + 1);
        assert_eq!(
            retry.available_at,
            run.now + ms(delay),
            "after attempt {attempt}"
        );
        run.advance(Duration::from_millis(delay as u64));
    }
    run.fail("a", boom(true), 0.0);
    assert_eq!(run.status(), RunStatus::Failed);
    assert_eq!(
        run.run().error.clone().unwrap().message,
        "failed after 4 attempts: boom"
    );
    assert!(run.latest("a").dead_lettered);
}

#[test]
fn a_task_that_fails_for_good_follows_on_failure() {
    let mut run = TestRun::start(
        chain(vec![
            worker("a").on_failure("handle").then("next"),
            task("next", "noop"),
            task("handle", "noop"),
        ]),
        "x",
    );
    let plan = run.fail("a", boom(false), 0.0);
    assert_eq!(run.status(), RunStatus::Running);
    assert_eq!(
        event_types(&plan),
        vec![E::TaskFailed, E::Transition, E::TaskReady]
    );
    assert_eq!(text_of(&run.latest("handle").input), "boom");
    assert!(run.attempts_of("next").is_empty());
    run.complete("handle", "handled");
    assert_eq!(run.status(), RunStatus::Succeeded);
}

#[test]
fn usage_of_failed_attempts_is_counted() {
    let mut run = TestRun::start(chain_of(worker("a").retry(fixed_retry(2, "1s"))), "x");
    let failure = TaskFailure {
        input_tokens: 5,
        output_tokens: 3,
        ..boom(true)
    };
    run.fail("a", failure, 0.0);
    assert_eq!((run.run().input_tokens, run.run().output_tokens), (5, 3));
    assert_eq!(run.attempts_of("a")[0].input_tokens, 5);
}

// ---------------------------------------------------------------------------
// expire: lease expiry and timeouts

#[test]
fn expiry_releases_lost_leases_and_times_out_deadlines() {
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Nothing,
        Released,
        Failed(&'static str),
        Retried,
    }
    // (case, task, seconds later, lease expiries so far, outcome)
    let table = [
        ("lease still valid", worker("a"), 29, 0, Outcome::Nothing),
        ("lease expired", worker("a"), 30, 0, Outcome::Released),
        ("lease expired again", worker("a"), 31, 2, Outcome::Released),
        (
            "lease expired too often",
            worker("a"),
            31,
            3,
            Outcome::Failed(reason::TASK_FAILED),
        ),
        (
            "lost lease with retries left",
            worker("a").retry(fixed_retry(2, "1s")),
            31,
            3,
            Outcome::Retried,
        ),
        (
            "deadline passed",
            worker("a").timeout("10s"),
            10,
            0,
            Outcome::Failed(reason::TIMEOUT),
        ),
        (
            "deadline ahead",
            worker("a").timeout("10s"),
            9,
            0,
            Outcome::Nothing,
        ),
    ];
    for (case, spec, later, expiries, outcome) in table {
        let mut run = TestRun::start(chain_of(spec), "x");
        run.lease("a");
        let id = run.latest("a").id.clone();
        run.snapshot.attempts[0].lease_expiries = expiries;
        run.advance(Duration::from_secs(later));
        let plan = run.step(|given| expire(given, &id, 3, 0.0));
        let got = if is_noop(&plan) {
            Outcome::Nothing
        } else if run.attempts_of("a").len() == 2 {
            Outcome::Retried
        } else if run.status() == RunStatus::Failed {
            Outcome::Failed(match run.run().error.clone().unwrap().reason.as_str() {
                r if r == reason::TIMEOUT => reason::TIMEOUT,
                _ => reason::TASK_FAILED,
            })
        } else {
            Outcome::Released
        };
        assert_eq!(got, outcome, "{case}");
        let attempt = run.attempts_of("a")[0].clone();
        match outcome {
            Outcome::Released => {
                assert_eq!(attempt.status, AttemptStatus::Ready, "{case}");
                assert_eq!(attempt.attempt, 1, "no retry spent");
                assert_eq!(attempt.lease_expiries, expiries + 1, "{case}");
                assert_eq!(attempt.lease_token, None);
                assert_eq!(attempt.lease_expires_at, None);
                assert_eq!(attempt.available_at, run.now);
                assert_eq!(event_types(&plan), vec![E::LeaseExpired], "{case}");
            }
            Outcome::Failed(why) if why == reason::TIMEOUT => {
                assert_eq!(attempt.status, AttemptStatus::TimedOut, "{case}");
                assert_eq!(event_types(&plan)[0], E::TaskTimedOut, "{case}");
            }
            Outcome::Failed(_) | Outcome::Retried => {
                assert_eq!(attempt.status, AttemptStatus::Failed, "{case}");
                assert!(
                    attempt
                        .error
                        .clone()
                        .unwrap()
                        .contains("the attempt is lost")
                );
            }
            Outcome::Nothing => {}
        }
    }
}

#[test]
fn expiry_ignores_what_is_not_a_live_lease() {
    let mut run = TestRun::start(chain_of(worker("a")), "x");
    let ready = run.latest("a").id.clone();
    run.advance(Duration::from_secs(3600));
    assert!(
        is_noop(&run.decide(|g| expire(g, &ready, 3, 0.0))),
        "not leased"
    );
    assert!(
        is_noop(&run.decide(|g| expire(g, "nope", 3, 0.0))),
        "unknown"
    );
    run.lease("a");
    run.step(|g| cancel(g, ""));
    run.advance(Duration::from_secs(3600));
    assert!(
        is_noop(&run.decide(|g| expire(g, &ready, 3, 0.0))),
        "run ended"
    );
}

// ---------------------------------------------------------------------------
// release, progress, extend

#[test]
fn release_progress_and_extend_touch_only_the_lease() {
    let mut run = TestRun::start(chain_of(worker("a")), "x");
    let lease = run.lease("a");
    let until = run.now + TimeDelta::minutes(5);
    let plan = run.step(|g| extend(g, &lease.attempt_id, &lease.token, until));
    assert!(plan.events.is_empty());
    assert_eq!(run.latest("a").lease_expires_at, Some(until));

    let plan = run.step(|g| progress(g, &lease.attempt_id, &lease.token, "half way", None));
    assert_eq!(event_types(&plan), vec![E::TaskProgress]);
    assert_eq!(events(&plan)[0].message, "half way");
    assert!(plan.attempt_updates.is_empty());

    run.advance(Duration::from_secs(1));
    let plan = run.step(|g| release(g, &lease.attempt_id, &lease.token));
    assert!(plan.events.is_empty());
    let released = run.latest("a");
    assert_eq!(released.status, AttemptStatus::Ready);
    assert_eq!((released.attempt, released.lease_expiries), (1, 0));
    assert_eq!(released.available_at, run.now);
    assert_eq!(released.lease_token, None);
    assert_eq!(released.lease_owner, None);
    assert_eq!(run.attempts_of("a").len(), 1, "no retry spent");
}

// ---------------------------------------------------------------------------
// throttle

#[test]
fn throttled_attempts_wait_ready_and_report_each_limit_once() {
    const CONCURRENCY: &str = "backend \"b\": 5 calls in flight (max_concurrency 5)";
    const RPM: &str = "backend \"b\": 60 calls in the last minute (requests_per_minute 60)";
    // (case, limit, retry in, expected events)
    let table = [
        (
            "first throttle",
            CONCURRENCY,
            ms(500),
            vec![E::TaskThrottled],
        ),
        ("same limit again", CONCURRENCY, ms(700), vec![]),
        ("another limit", RPM, ms(30_000), vec![E::TaskThrottled]),
        (
            "back to the first",
            CONCURRENCY,
            ms(200),
            vec![E::TaskThrottled],
        ),
        // A retry time already passed waits no time at all.
        ("retry time passed", CONCURRENCY, ms(-5_000), vec![]),
    ];
    let mut run = TestRun::start(chain_of(worker("a").retry(fixed_retry(1, "1s"))), "x");
    for (case, limit, retry_in, expected) in table {
        let before = run.run().last_seq;
        let lease = run.lease("a");
        // Only the first claim is a start; rechecks are not.
        let started = run.run().last_seq - before;
        let starts = if case == "first throttle" { 2 } else { 0 };
        assert_eq!(started, starts, "{case}: RUN_STARTED, TASK_STARTED once");
        run.advance(Duration::from_secs(1));
        let retry_at = run.now + retry_in;
        let plan = run.step(|g| throttle(g, &lease.attempt_id, &lease.token, limit, retry_at));
        assert_eq!(event_types(&plan), expected, "{case}");
        if let Some(event) = events(&plan).first() {
            assert_eq!(event.message, limit, "{case}: the event names the limit");
        }
        let waiting = run.latest("a");
        assert_eq!(waiting.status, AttemptStatus::Ready, "{case}");
        assert_eq!(waiting.available_at, retry_at.max(run.now), "{case}");
        assert_eq!(waiting.lease_token, None, "{case}");
        assert_eq!(
            waiting.error.as_deref(),
            Some(format!("throttled: {limit}").as_str()),
            "{case}"
        );
        assert_eq!(
            (waiting.attempt, waiting.lease_expiries),
            (1, 0),
            "{case}: no retry spent, no lease counted as lost"
        );
        assert_eq!(run.attempts_of("a").len(), 1, "{case}");
        assert_eq!(run.status(), RunStatus::Running, "{case}");
    }
    // Once it runs, the throttle note goes.
    run.complete("a", "done");
    let done = run.latest("a");
    assert_eq!(done.status, AttemptStatus::Succeeded);
    assert_eq!(done.error, None);
}

// ---------------------------------------------------------------------------
// cancel, pause, resume

/// A run of a worker task in `status`, its attempt leased.
fn run_in(status: RunStatus) -> TestRun {
    let mut run = TestRun::start(then_b(worker("a")), "x");
    run.lease("a");
    run.snapshot.run.status = status;
    run
}

#[derive(Debug, PartialEq)]
enum Answer {
    Applied(RunStatus),
    NoOp,
    /// Rejected: the run already ended.
    Ended,
    /// Rejected: the run is not in the state the call needs.
    WrongState,
}

fn answer(run: &mut TestRun, decision: impl Fn(&Given) -> Plan) -> Answer {
    let plan = run.step(decision);
    if is_noop(&plan) {
        Answer::NoOp
    } else if plan.verdict == Verdict::Apply {
        Answer::Applied(run.status())
    } else {
        match rejection(&plan).0 {
            RejectionKind::RunNotActive => Answer::Ended,
            RejectionKind::FailedPrecondition => Answer::WrongState,
            other => panic!("unexpected rejection {other:?}"),
        }
    }
}

#[test]
fn run_controls_by_run_status() {
    use Answer::*;
    use RunStatus::*;
    // (status, cancel, pause, resume, retry_run)
    let table = [
        (
            Queued,
            Applied(Cancelled),
            Applied(Paused),
            NoOp,
            WrongState,
        ),
        (
            Running,
            Applied(Cancelled),
            Applied(Paused),
            NoOp,
            WrongState,
        ),
        (
            WaitingInput,
            Applied(Cancelled),
            Applied(Paused),
            NoOp,
            WrongState,
        ),
        (
            Paused,
            Applied(Cancelled),
            NoOp,
            Applied(Running),
            WrongState,
        ),
        (Succeeded, Ended, Ended, Ended, WrongState),
        (Failed, Ended, Ended, Ended, Applied(Running)),
        (Cancelled, NoOp, Ended, Ended, WrongState),
    ];
    for (status, on_cancel, on_pause, on_resume, on_retry) in table {
        assert_eq!(
            answer(&mut run_in(status), |g| cancel(g, "")),
            on_cancel,
            "cancel {status:?}"
        );
        assert_eq!(
            answer(&mut run_in(status), |g| pause(g, false)),
            on_pause,
            "pause {status:?}"
        );
        assert_eq!(
            answer(&mut run_in(status), resume),
            on_resume,
            "resume {status:?}"
        );
        assert_eq!(
            answer(&mut run_in(status), retry_run),
            on_retry,
            "retry_run {status:?}"
        );
    }
}

#[test]
fn cancel_ends_every_active_attempt() {
    // (why, event message)
    for (why, message) in [("", "cancelled"), ("user asked", "user asked")] {
        let mut run = TestRun::start(
            chain(vec![
                task("a", "noop").fan_out("default", &["b", "c"]),
                worker("b"),
                worker("c"),
            ]),
            "x",
        );
        run.complete("a", "go");
        run.lease("b");
        let plan = run.step(|g| cancel(g, why));
        assert_eq!(run.status(), RunStatus::Cancelled);
        assert_eq!(run.run().ended_at, Some(run.now));
        for id in ["b", "c"] {
            assert_eq!(run.latest(id).status, AttemptStatus::Cancelled, "{id}");
        }
        assert_eq!(run.latest("a").status, AttemptStatus::Succeeded);
        assert_eq!(event_types(&plan), vec![E::RunCancelled]);
        assert_eq!(events(&plan)[0].message, message);
    }
}

#[test]
fn pause_keeps_or_requeues_running_work_and_stops_what_follows() {
    // Without cancel_running the lease is kept; what it leads to is
    // scheduled but the run stays paused.
    let mut run = run_in(RunStatus::Running);
    let lease_token = run.latest("a").lease_token.clone().unwrap();
    let attempt_id = run.latest("a").id.clone();
    let plan = run.step(|g| pause(g, false));
    assert_eq!(event_types(&plan), vec![E::RunPaused]);
    assert_eq!(run.latest("a").status, AttemptStatus::Leased);
    run.step(|g| {
        complete(
            g,
            &attempt_id,
            &lease_token,
            TaskSuccess::output(value::text("x")),
        )
    });
    assert_eq!(run.status(), RunStatus::Paused);
    assert_eq!(run.latest("b").status, AttemptStatus::Ready);
    let plan = run.step(resume);
    assert_eq!(event_types(&plan), vec![E::RunResumed]);
    assert_eq!(run.status(), RunStatus::Running);

    // With cancel_running the leased attempt is cancelled and queued again.
    let mut run = run_in(RunStatus::Running);
    run.step(|g| pause(g, true));
    let attempts = run.attempts_of("a");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, AttemptStatus::Cancelled);
    assert_eq!(attempts[0].error.as_deref(), Some("cancelled by PauseRun"));
    assert_eq!(
        (attempts[1].status, attempts[1].attempt),
        (AttemptStatus::Ready, 2)
    );
    assert_eq!(attempts[1].input, attempts[0].input);
}

#[test]
fn retry_run_continues_from_the_task_that_failed() {
    let mut run = TestRun::start(
        chain(vec![
            task("a", "noop").then("b"),
            worker("b").then("c"),
            task("c", "noop"),
        ]),
        "x",
    );
    run.complete("a", "out-a");
    run.fail("b", boom(false), 0.0);
    assert_eq!(run.status(), RunStatus::Failed);
    let plan = run.step(retry_run);
    assert_eq!(event_types(&plan), vec![E::RunRetried, E::TaskReady]);
    assert_eq!(events(&plan)[0].task_id, "b");
    assert_eq!(run.status(), RunStatus::Running);
    assert_eq!((run.run().error.clone(), run.run().ended_at), (None, None));
    let retried = run.latest("b");
    assert_eq!((retried.attempt, retried.status), (2, AttemptStatus::Ready));
    assert_eq!(text_of(&retried.input), "out-a");
    assert_eq!(run.attempts_of("a").len(), 1, "a does not run again");
    run.complete("b", "out-b");
    run.complete("c", "done");
    assert_eq!(run.status(), RunStatus::Succeeded);
}

// ---------------------------------------------------------------------------
// submit_input: human tasks and request-id replays

#[test]
fn input_answers_a_waiting_task_once_per_request() {
    let mut run = TestRun::start(
        chain(vec![
            task("ask", "human_input")
                .prompt("approve {{ input }}?")
                .then("b"),
            worker("b"),
        ]),
        "the plan",
    );
    assert_eq!(run.status(), RunStatus::WaitingInput);
    let plan = run.step(|g| submit_input(g, "ask", value::text("yes"), Some("key-1")));
    assert_eq!(
        event_types(&plan),
        vec![
            E::InputReceived,
            E::TaskSucceeded,
            E::Transition,
            E::TaskReady
        ]
    );
    assert_eq!(run.latest("ask").status, AttemptStatus::Succeeded);
    assert_eq!(text_of(&run.latest("b").input), "yes");
    assert_eq!(run.status(), RunStatus::Running);

    // (case, task, request key, answer)
    let replays = [
        ("same request again", "ask", Some("key-1"), Answer::NoOp),
        ("another request", "ask", Some("key-2"), Answer::WrongState),
        ("no request id", "ask", None, Answer::WrongState),
    ];
    for (case, task_id, key, expected) in replays {
        let got = answer(&mut run, |g| {
            submit_input(g, task_id, value::text("no"), key)
        });
        assert_eq!(got, expected, "{case}");
    }
    let plan = run.decide(|g| submit_input(g, "nope", value::text("no"), None));
    assert_eq!(rejection(&plan).0, RejectionKind::NotFound);
}

#[test]
fn input_is_refused_when_nothing_waits_for_it() {
    let mut run = TestRun::start(then_b(task("ask", "human_input")), "x");
    run.step(|g| cancel(g, ""));
    let plan = run.decide(|g| submit_input(g, "b", value::text("x"), None));
    assert!(rejection(&plan).1.contains("not waiting for input"));
    let plan = run.decide(|g| submit_input(g, "ask", value::text("x"), None));
    assert_eq!(rejection(&plan).0, RejectionKind::FailedPrecondition);
}

// ---------------------------------------------------------------------------
// Determinism

#[test]
fn the_same_snapshot_and_time_decide_the_same() {
    let mut run = TestRun::start(then_b(worker("a").retry(fixed_retry(3, "1s"))), "x");
    let lease = run.lease("a");
    let decide_once = |run: &mut TestRun| {
        let mut plan = run.decide(|g| fail(g, &lease.attempt_id, &lease.token, boom(true), 0.25));
        // New attempts get fresh ids; everything else is determined.
        for attempt in &mut plan.new_attempts {
            attempt.id.clear();
        }
        let events: Vec<_> = events(&plan)
            .into_iter()
            .map(|mut event| {
                event.attempt_id.clear();
                event
            })
            .collect();
        plan.run.as_mut().unwrap().heads = None;
        (plan.run, plan.attempt_updates, plan.new_attempts, events)
    };
    assert_eq!(decide_once(&mut run), decide_once(&mut run));
}
