//! RunService against a real server process, on SQLite and Postgres: the
//! kernel's state machines through built-in handlers that need no model
//! (`noop`, `raise_error`, `human_input`, and `worker` tasks left waiting on
//! their queue).

mod common;

use common::chains::{branch, chain, fan_out, goto, task, text_value};

use std::collections::BTreeMap;
use std::time::Duration;

use common::{HookServer, TestServer, assert_invalid, error_reason};
use taskloom_server::proto::taskloom::v1 as pb;
use tonic::Code;

api_tests!(
    noop_run_streams_every_event,
    execute_chain_returns_output_and_trace,
    branches_default_last_and_no_match,
    failures_on_failure_and_retry_run,
    max_steps_stops_a_loop,
    fan_out_and_join_merge_in_declared_order,
    human_input_waits_and_answers_once,
    pause_resume_cancel,
    start_run_is_idempotent_under_concurrency,
    replay_is_stable,
    list_runs_filters_and_pages,
    watch_resumes_after_a_sequence_number,
    bad_input_is_rejected_and_writes_nothing,
    execute_chain_caller_leaving_cancels_the_run,
    stored_chains_start_their_latest_version,
    a_paused_run_starts_no_next_task,
);

fn text(value: &str) -> Option<pb::start_run_request::RunInput> {
    Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
        kind: Some(pb::value::Kind::Text(value.into())),
    }))
}

async fn start(server: &TestServer, chain: pb::Chain, input: &str) -> pb::Run {
    server
        .runs()
        .start_run(pb::StartRunRequest {
            chain: Some(chain),
            run_input: text(input),
            ..Default::default()
        })
        .await
        .expect("start run")
        .into_inner()
}

/// Watches a run to its end and returns every event.
async fn watch_all(server: &TestServer, run_id: &str, after_seq: i64) -> Vec<pb::RunEvent> {
    let mut stream = server
        .runs()
        .watch_run(pb::WatchRunRequest {
            run_id: run_id.into(),
            after_seq,
            include_deltas: false,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("the run ends within 30s")
        .expect("stream ok")
    {
        events.push(event);
    }
    events
}

fn types(events: &[pb::RunEvent]) -> Vec<pb::RunEventType> {
    events
        .iter()
        .map(|e| pb::RunEventType::try_from(e.r#type).unwrap())
        .collect()
}

async fn wait_status(server: &TestServer, run_id: &str, status: pb::RunStatus) -> pb::Run {
    for _ in 0..300 {
        let run = server
            .runs()
            .get_run(pb::GetRunRequest { id: run_id.into() })
            .await
            .unwrap()
            .into_inner();
        if run.status == status as i32 {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run_id} never reached {status:?}");
}

async fn noop_run_streams_every_event(server: TestServer) {
    let run = start(
        &server,
        chain(
            "echo",
            vec![task(
                "only",
                "noop",
                vec![branch("default", "", goto("end"))],
            )],
        ),
        "hello",
    )
    .await;
    assert_eq!(run.chain_id, "echo");
    assert_eq!(run.chain_version, 1);
    let events = watch_all(&server, &run.id, 0).await;
    use pb::RunEventType::*;
    assert_eq!(
        types(&events),
        vec![
            RunCreated,
            TaskReady,
            RunStarted,
            TaskStarted,
            TaskSucceeded,
            Transition,
            RunSucceeded
        ]
    );
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
    assert_eq!(events.last().unwrap().output, Some(text_value("hello")));
    let done = server
        .runs()
        .get_run(pb::GetRunRequest { id: run.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.status, pb::RunStatus::Succeeded as i32);
    assert_eq!(done.output, Some(text_value("hello")));
    assert!(done.end_time.is_some() && done.start_time.is_some());
    assert_eq!(done.last_event_seq, events.len() as i64);
}

async fn execute_chain_returns_output_and_trace(server: TestServer) {
    let response = server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(chain(
                "two-step",
                vec![
                    task("first", "noop", vec![branch("default", "", goto("second"))]),
                    task("second", "noop", vec![branch("default", "", goto("end"))]),
                ],
            )),
            run_input: Some(pb::execute_chain_request::RunInput::Input(
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue("question".into())),
                },
            )),
            input_type: "string".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.output, Some(text_value("question")));
    assert_eq!(response.output_type, pb::ValueType::Text as i32);
    let run = response.run.unwrap();
    assert_eq!(run.status, pb::RunStatus::Succeeded as i32);
    let trace: Vec<(&str, &str, Vec<String>, i32)> = response
        .trace
        .iter()
        .map(|t| {
            (
                t.task_id.as_str(),
                t.handler.as_str(),
                t.next.clone(),
                t.attempts,
            )
        })
        .collect();
    assert_eq!(
        trace,
        vec![
            ("first", "noop", vec!["second".to_string()], 1),
            ("second", "noop", vec!["end".to_string()], 1),
        ]
    );
    assert!(
        response
            .trace
            .iter()
            .all(|t| t.input_type == pb::ValueType::Text as i32
                && t.output_type == pb::ValueType::Text as i32
                && t.duration.is_some())
    );
}

async fn branches_default_last_and_no_match(server: TestServer) {
    // `default` is listed first but only taken when nothing else matches.
    let router = |id: &str| {
        chain(
            id,
            vec![
                task(
                    "route",
                    "noop",
                    vec![
                        branch("default", "", goto("other")),
                        branch("equals", "yes", goto("affirm")),
                        branch("starts_with", "num:", goto("number")),
                    ],
                ),
                task("affirm", "noop", vec![]),
                task("number", "noop", vec![]),
                task("other", "noop", vec![]),
            ],
        )
    };
    for (input, expected) in [("yes", "affirm"), ("num:4", "number"), ("maybe", "other")] {
        let run = start(&server, router("router"), input).await;
        let events = watch_all(&server, &run.id, 0).await;
        let transition = events
            .iter()
            .find(|e| e.r#type == pb::RunEventType::Transition as i32)
            .unwrap();
        assert_eq!(transition.message, expected, "input {input}");
    }

    let strict = chain(
        "strict",
        vec![task(
            "route",
            "noop",
            vec![
                branch("equals", "a", goto("end")),
                branch("gt", "10", goto("end")),
            ],
        )],
    );
    let run = start(&server, strict, "b").await;
    let events = watch_all(&server, &run.id, 0).await;
    assert_eq!(types(&events).last(), Some(&pb::RunEventType::RunFailed));
    let failed = wait_status(&server, &run.id, pb::RunStatus::Failed).await;
    let error = failed.error.unwrap();
    assert_eq!(error.reason, "NO_BRANCH_MATCHED");
    assert_eq!(error.task_id, "route");
}

async fn failures_on_failure_and_retry_run(server: TestServer) {
    let mut failing = task("boom", "raise_error", vec![]);
    failing.error_message = "broken: {{ input }}".into();
    let run = start(&server, chain("fails", vec![failing.clone()]), "x").await;
    watch_all(&server, &run.id, 0).await;
    let failed = wait_status(&server, &run.id, pb::RunStatus::Failed).await;
    let error = failed.error.unwrap();
    assert_eq!(error.message, "broken: x");
    assert_eq!(error.reason, "TASK_FAILED");

    // RetryRun continues from the failed task (which fails again here).
    let retried = server
        .runs()
        .retry_run(pb::RetryRunRequest {
            id: run.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        retried.status == pb::RunStatus::Running as i32
            || retried.status == pb::RunStatus::Failed as i32
    );
    wait_status(&server, &run.id, pb::RunStatus::Failed).await;
    let attempts = server
        .runs()
        .list_run_attempts(pb::ListRunAttemptsRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attempts;
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1].attempt, 2);
    assert!(attempts.iter().all(|a| a.dead_lettered));
    let error = server
        .runs()
        .retry_run(pb::RetryRunRequest {
            id: "nope".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);

    // on_failure routes the error to a handler task; the run succeeds.
    let mut guarded = failing;
    guarded.transition = Some(pb::Transition {
        on_failure: "recover".into(),
        branches: vec![],
    });
    let run = start(
        &server,
        chain("guarded", vec![guarded, task("recover", "noop", vec![])]),
        "y",
    )
    .await;
    watch_all(&server, &run.id, 0).await;
    let done = wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
    assert_eq!(done.output, Some(text_value("broken: y")));
    let error = server
        .runs()
        .retry_run(pb::RetryRunRequest {
            id: run.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
}

async fn max_steps_stops_a_loop(server: TestServer) {
    let mut looping = chain(
        "loop",
        vec![task(
            "again",
            "noop",
            vec![branch("default", "", goto("again"))],
        )],
    );
    looping.max_steps = 5;
    let run = start(&server, looping, "x").await;
    watch_all(&server, &run.id, 0).await;
    let failed = wait_status(&server, &run.id, pb::RunStatus::Failed).await;
    assert_eq!(failed.error.unwrap().reason, "MAX_STEPS_EXCEEDED");
    assert_eq!(failed.steps, 5);
}

async fn fan_out_and_join_merge_in_declared_order(server: TestServer) {
    let mut join = task("join", "noop", vec![]);
    join.wait_for = vec!["left".into(), "right".into()];
    let mut left = task("left", "noop", vec![branch("default", "", goto("join"))]);
    left.prompt_template = "L".into();
    let mut right = task("right", "noop", vec![branch("default", "", goto("join"))]);
    right.input_var = "input".into();
    let definition = chain(
        "diamond",
        vec![
            task(
                "split",
                "noop",
                vec![branch("default", "", fan_out(&["right", "left"]))],
            ),
            left,
            right,
            join,
        ],
    );
    let mut outputs = Vec::new();
    for _ in 0..3 {
        let run = start(&server, definition.clone(), "in").await;
        watch_all(&server, &run.id, 0).await;
        let done = wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
        outputs.push(done.output.unwrap());
    }
    let expected = pb::Value {
        kind: Some(pb::value::Kind::Json(prost_types::Value {
            kind: Some(prost_types::value::Kind::ListValue(
                prost_types::ListValue {
                    values: vec![
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::StringValue("in".into())),
                        },
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::StringValue("in".into())),
                        },
                    ],
                },
            )),
        })),
    };
    assert!(outputs.iter().all(|o| o == &expected), "{outputs:?}");
}

async fn human_input_waits_and_answers_once(server: TestServer) {
    let mut ask = task(
        "ask",
        "human_input",
        vec![branch("default", "", goto("end"))],
    );
    ask.prompt_template = "Approve {{ input }}?".into();
    let run = start(&server, chain("approval", vec![ask]), "deploy").await;
    let waiting = wait_status(&server, &run.id, pb::RunStatus::WaitingInput).await;
    let request = waiting.input_request.clone().unwrap();
    assert_eq!(request.task_id, "ask");
    assert_eq!(request.prompt, "Approve deploy?");
    // A list shows each run as GetRun does: what it waits for, its active
    // tasks; a finished run has neither.
    let done = start(
        &server,
        chain("quick", vec![task("a", "noop", vec![])]),
        "x",
    )
    .await;
    wait_status(&server, &done.id, pb::RunStatus::Succeeded).await;
    let listed = server
        .runs()
        .list_runs(pb::ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .runs;
    let listed_waiting = listed.iter().find(|r| r.id == run.id).unwrap();
    assert_eq!(listed_waiting.input_request, Some(request.clone()));
    assert_eq!(listed_waiting.active_tasks, vec!["ask".to_string()]);
    let listed_done = listed.iter().find(|r| r.id == done.id).unwrap();
    assert_eq!(listed_done.input_request, None);
    assert!(listed_done.active_tasks.is_empty());

    let answer =
        |run_id: &str, task_id: &str, text: &str, request_id: &str| pb::SubmitInputRequest {
            run_id: run_id.into(),
            task_id: task_id.into(),
            answer: Some(pb::submit_input_request::Answer::TypedInput(text_value(
                text,
            ))),
            request_id: request_id.into(),
        };
    let error = server
        .runs()
        .submit_input(answer("missing", "ask", "yes", ""))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    let error = server
        .runs()
        .submit_input(answer(&run.id, "other", "yes", ""))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    let error = server
        .runs()
        .submit_input(pb::SubmitInputRequest {
            run_id: run.id.clone(),
            task_id: "ask".into(),
            answer: None,
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["input"]);

    let first = server
        .runs()
        .submit_input(answer(&run.id, "ask", "approved", "r1"))
        .await
        .unwrap()
        .into_inner();
    let again = server
        .runs()
        .submit_input(answer(&run.id, "ask", "approved", "r1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, again.id);
    let done = wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
    assert_eq!(done.output, Some(text_value("approved")));
    let error = server
        .runs()
        .submit_input(answer(&run.id, "ask", "late", "r2"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    let events = server
        .runs()
        .list_run_events(pb::ListRunEventsRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let received = events
        .iter()
        .filter(|e| e.r#type == pb::RunEventType::InputReceived as i32)
        .count();
    assert_eq!(received, 1, "a duplicate answer changes nothing");
}

async fn pause_resume_cancel(server: TestServer) {
    let mut remote = task("remote", "worker", vec![]);
    remote.queue = "nobody-serves-this".into();
    let run = start(&server, chain("remote", vec![remote]), "x").await;
    let paused = server
        .runs()
        .pause_run(pb::PauseRunRequest {
            id: run.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.status, pb::RunStatus::Paused as i32);
    assert_eq!(paused.active_tasks, vec!["remote".to_string()]);
    let resumed = server
        .runs()
        .resume_run(pb::ResumeRunRequest {
            id: run.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resumed.status,
        pb::RunStatus::Queued as i32,
        "nothing was dispatched yet"
    );
    let cancelled = server
        .runs()
        .cancel_run(pb::CancelRunRequest {
            id: run.id.clone(),
            reason: "no longer needed".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, pb::RunStatus::Cancelled as i32);
    assert!(cancelled.active_tasks.is_empty());
    // Cancelling again is a no-op; pausing an ended run is refused.
    server
        .runs()
        .cancel_run(pb::CancelRunRequest {
            id: run.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let error = server
        .runs()
        .pause_run(pb::PauseRunRequest {
            id: run.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    let events = watch_all(&server, &run.id, 0).await;
    let last = events.last().unwrap();
    assert_eq!(last.r#type, pb::RunEventType::RunCancelled as i32);
    assert_eq!(last.message, "no longer needed");

    let finished = start(
        &server,
        chain("quick", vec![task("t", "noop", vec![])]),
        "x",
    )
    .await;
    wait_status(&server, &finished.id, pb::RunStatus::Succeeded).await;
    let error = server
        .runs()
        .cancel_run(pb::CancelRunRequest {
            id: finished.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
}

async fn start_run_is_idempotent_under_concurrency(server: TestServer) {
    let definition = chain("once", vec![task("t", "noop", vec![])]);
    server
        .chains()
        .create_chain(pb::CreateChainRequest {
            chain: Some(definition),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let mut handles = Vec::new();
    for _ in 0..20 {
        let mut runs = server.runs();
        handles.push(tokio::spawn(async move {
            runs.start_run(pb::StartRunRequest {
                chain_id: "once".into(),
                run_input: text("same"),
                request_id: "start-once".into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().id)
        }));
    }
    let mut ids = Vec::new();
    for handle in handles {
        ids.push(handle.await.unwrap().expect("duplicates succeed"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let listed = server
        .runs()
        .list_runs(pb::ListRunsRequest {
            chain_id: "once".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.runs.len(), 1);
    let error = server
        .runs()
        .start_run(pb::StartRunRequest {
            chain_id: "once".into(),
            run_input: text("different"),
            request_id: "start-once".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&error), "REQUEST_ID_REUSED");
}

async fn replay_is_stable(server: TestServer) {
    let definition = chain(
        "replayed",
        vec![
            task(
                "a",
                "noop",
                vec![
                    branch("equals", "go", goto("b")),
                    branch("default", "", goto("end")),
                ],
            ),
            task("b", "noop", vec![]),
        ],
    );
    let run = start(&server, definition, "go").await;
    wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
    let first = server
        .runs()
        .replay_run(pb::ReplayRunRequest { id: run.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let second = server
        .runs()
        .replay_run(pb::ReplayRunRequest { id: run.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, second);
    assert!(!first.diverged, "{first:?}");
    assert_eq!(first.path, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(first.fingerprint.len(), 64);
}

async fn list_runs_filters_and_pages(server: TestServer) {
    let definition = chain("listed", vec![task("t", "noop", vec![])]);
    let mut ids = Vec::new();
    for i in 0..5 {
        let run = server
            .runs()
            .start_run(pb::StartRunRequest {
                chain: Some(definition.clone()),
                run_input: text("x"),
                labels: BTreeMap::from([("batch".to_string(), (i % 2).to_string())]),
                tenant: if i == 0 { "acme".into() } else { String::new() },
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(run.id);
    }
    for id in &ids {
        wait_status(&server, id, pb::RunStatus::Succeeded).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = server
            .runs()
            .list_runs(pb::ListRunsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.runs.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let labelled = server
        .runs()
        .list_runs(pb::ListRunsRequest {
            labels: BTreeMap::from([("batch".to_string(), "1".to_string())]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(labelled.runs.len(), 2);
    let tenant = server
        .runs()
        .list_runs(pb::ListRunsRequest {
            tenant: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tenant.runs.len(), 1);
    let failed = server
        .runs()
        .list_runs(pb::ListRunsRequest {
            statuses: vec![pb::RunStatus::Failed as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(failed.runs.is_empty());
    let error = server
        .runs()
        .list_runs(pb::ListRunsRequest {
            statuses: vec![99],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["statuses[0]"]);
}

async fn watch_resumes_after_a_sequence_number(server: TestServer) {
    let run = start(
        &server,
        chain(
            "three",
            vec![
                task("a", "noop", vec![branch("default", "", goto("b"))]),
                task("b", "noop", vec![branch("default", "", goto("c"))]),
                task("c", "noop", vec![]),
            ],
        ),
        "x",
    )
    .await;
    let all = watch_all(&server, &run.id, 0).await;
    let tail = watch_all(&server, &run.id, 4).await;
    assert_eq!(tail, all[4..].to_vec());
    let listed = server
        .runs()
        .list_run_events(pb::ListRunEventsRequest {
            run_id: run.id.clone(),
            after_seq: 0,
            page_size: 3,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.events, all[..3].to_vec());
    let next = server
        .runs()
        .list_run_events(pb::ListRunEventsRequest {
            run_id: run.id.clone(),
            after_seq: 0,
            page_size: 3,
            page_token: listed.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.events, all[3..6].to_vec());
    let error = server
        .runs()
        .watch_run(pb::WatchRunRequest {
            run_id: "missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
}

async fn bad_input_is_rejected_and_writes_nothing(server: TestServer) {
    let mut runs = server.runs();
    let error = runs
        .start_run(pb::StartRunRequest::default())
        .await
        .unwrap_err();
    assert_invalid(error, &["chain_id"]);
    let error = runs
        .start_run(pb::StartRunRequest {
            chain_id: "missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    server
        .chains()
        .create_chain(pb::CreateChainRequest {
            chain: Some(chain("stored", vec![task("t", "noop", vec![])])),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let error = runs
        .start_run(pb::StartRunRequest {
            chain_id: "stored".into(),
            chain_version: 9,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    let error = runs
        .start_run(pb::StartRunRequest {
            chain_id: "stored".into(),
            run_input: Some(pb::start_run_request::RunInput::Input(prost_types::Value {
                kind: Some(prost_types::value::Kind::NumberValue(3.0)),
            })),
            input_type: "telepathy".into(),
            priority: 1000,
            labels: BTreeMap::from([("bad key!".to_string(), "v".to_string())]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["input_type", "labels[\"bad key!\"]", "priority"]);
    let error = runs
        .start_run(pb::StartRunRequest {
            chain_id: "stored".into(),
            run_input: Some(pb::start_run_request::RunInput::Input(prost_types::Value {
                kind: Some(prost_types::value::Kind::NumberValue(3.5)),
            })),
            input_type: "integer".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["input"]);
    // The entry task's handler cannot take this input type.
    let embed = chain("embedder", vec![task("e", "embedding", vec![])]);
    let error = runs
        .start_run(pb::StartRunRequest {
            chain: Some(embed),
            run_input: Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
                kind: Some(pb::value::Kind::Vector(pb::Vector { values: vec![1.0] })),
            })),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["input"]);
    let error = runs
        .start_run(pb::StartRunRequest {
            chain_id: "stored".into(),
            run_input: text(&"x".repeat(1024 * 1024 + 10)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["input"]);
    let mut broken = chain("broken", vec![task("t", "telepathy", vec![])]);
    broken.tasks.push(task("end", "noop", vec![]));
    let error = runs
        .start_run(pb::StartRunRequest {
            chain: Some(broken),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(common::violated_fields(&error).contains(&"chain.tasks[0].handler".to_string()));
    let listed = runs
        .list_runs(pb::ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.runs.is_empty(), "rejected starts wrote nothing");
}

async fn execute_chain_caller_leaving_cancels_the_run(server: TestServer) {
    let mut remote = task("remote", "worker", vec![]);
    remote.queue = "nobody-serves-this".into();
    let mut runs = server.runs();
    // The caller gives up after 300 ms (its future is dropped, resetting the
    // stream); the run must not go on without it.
    let call = runs.execute_chain(pb::ExecuteChainRequest {
        chain: Some(chain("abandoned", vec![remote])),
        request_id: "abandoned-call".into(),
        ..Default::default()
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), call)
            .await
            .is_err()
    );
    let listed = server
        .runs()
        .list_runs(pb::ListRunsRequest {
            chain_id: "abandoned".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.runs.len(), 1);
    wait_status(&server, &listed.runs[0].id, pb::RunStatus::Cancelled).await;

    // A caller that waits less than the run takes gets DEADLINE_EXCEEDED with
    // the run id; that run goes on.
    let mut slow = task("remote", "worker", vec![]);
    slow.queue = "nobody-serves-this".into();
    let error = server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(chain("waited", vec![slow])),
            wait_timeout: Some(prost_types::Duration {
                seconds: 0,
                nanos: 200_000_000,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded);
    assert_eq!(error_reason(&error), "RUN_STILL_ACTIVE");
    let listed = server
        .runs()
        .list_runs(pb::ListRunsRequest {
            chain_id: "waited".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.runs[0].status, pb::RunStatus::Queued as i32);
}

/// Starts of a stored chain pin its latest version, including right after
/// an update or a delete made since this server last resolved it.
async fn stored_chains_start_their_latest_version(server: TestServer) {
    let definition = |message: &str| {
        let mut only = task("only", "noop", vec![branch("default", "", goto("end"))]);
        only.description = message.into();
        chain("versioned", vec![only])
    };
    let start_stored = |version: i64| {
        let mut runs = server.runs();
        async move {
            runs.start_run(pb::StartRunRequest {
                chain_id: "versioned".into(),
                chain_version: version,
                run_input: text("hi"),
                ..Default::default()
            })
            .await
        }
    };
    server
        .chains()
        .create_chain(pb::CreateChainRequest {
            chain: Some(definition("first")),
            ..Default::default()
        })
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(start_stored(0).await.unwrap().into_inner().chain_version, 1);
    }
    server
        .chains()
        .update_chain(pb::UpdateChainRequest {
            chain: Some(definition("second")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(start_stored(0).await.unwrap().into_inner().chain_version, 2);
    assert_eq!(start_stored(1).await.unwrap().into_inner().chain_version, 1);
    let missing = start_stored(7).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    server
        .chains()
        .delete_chain(pb::DeleteChainRequest {
            id: "versioned".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    for version in [0, 1] {
        let deleted = start_stored(version).await.unwrap_err();
        assert_eq!(deleted.code(), Code::NotFound, "{deleted:?}");
    }
}

/// A task that finishes while its run is paused leaves the next task ready
/// but not started (eager dispatch included) until the run resumes.
async fn a_paused_run_starts_no_next_task(server: TestServer) {
    let hook = HookServer::start(200, r#"{"ok": true}"#, Duration::from_millis(800)).await;
    server
        .hooks()
        .create_hook(pb::CreateHookRequest {
            hook: Some(pb::Hook {
                name: "slow".into(),
                url: hook.url.clone(),
                timeout: Some(prost_types::Duration {
                    seconds: 30,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let mut call = task("call", "hook", vec![branch("default", "", goto("after"))]);
    call.hook = Some(pb::HookCall {
        name: "slow".into(),
        args: Default::default(),
    });
    let after = task("after", "noop", vec![branch("default", "", goto("end"))]);
    let run = start(&server, chain("pause-between", vec![call, after]), "x").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hook.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the hook was called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
        .runs()
        .pause_run(pb::PauseRunRequest {
            id: run.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    // The hook answers after 800 ms; give the next task time to (wrongly) start.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attempts = server
        .runs()
        .list_run_attempts(pb::ListRunAttemptsRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attempts;
    let status_of = |task_id: &str| {
        attempts
            .iter()
            .find(|a| a.task_id == task_id)
            .map(|a| a.status)
    };
    assert_eq!(status_of("call"), Some(pb::AttemptStatus::Succeeded as i32));
    assert_eq!(status_of("after"), Some(pb::AttemptStatus::Ready as i32));
    let paused = server
        .runs()
        .get_run(pb::GetRunRequest { id: run.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.status, pb::RunStatus::Paused as i32);
    server
        .runs()
        .resume_run(pb::ResumeRunRequest {
            id: run.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let events = watch_all(&server, &run.id, 0).await;
    assert_eq!(
        events.last().map(|e| e.r#type),
        Some(pb::RunEventType::RunSucceeded as i32)
    );
}
