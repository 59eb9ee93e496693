//! Run operations a careless or hostile caller repeats or gets wrong,
//! against a real `taskloom` process on SQLite and PostgreSQL: request ids
//! on every run operation (AIP-155), rejected starts that write nothing, run
//! data with U+0000, and error messages that say what happened.

mod common;

use common::chains::chain;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{HookServer, TestServer, error_reason};
use taskloom_server::proto::taskloom::v1 as pb;
use tonic::Code;

api_tests!(
    run_operations_honour_request_ids,
    a_refused_inline_start_writes_nothing,
    run_data_with_nul_round_trips,
    exhausted_retries_say_how_many_attempts,
);

fn text(value: &str) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::Text(value.to_string())),
    }
}

fn typed(value: pb::Value) -> Option<pb::start_run_request::RunInput> {
    Some(pb::start_run_request::RunInput::TypedInput(value))
}

fn task(id: &str, handler: &str) -> pb::Task {
    pb::Task {
        id: id.into(),
        handler: handler.into(),
        ..Default::default()
    }
}

async fn wait_for(server: &TestServer, run_id: &str, status: pb::RunStatus) -> pb::Run {
    for _ in 0..200 {
        let run = server
            .runs()
            .get_run(pb::GetRunRequest { id: run_id.into() })
            .await
            .expect("get run")
            .into_inner();
        if run.status == status as i32 {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run_id} never reached {status:?}");
}

async fn run_operations_honour_request_ids(server: TestServer) {
    let mut runs = server.runs();
    let mut failing = task("boom", "raise_error");
    failing.error_message = "broken".into();
    server
        .chains()
        .create_chain(pb::CreateChainRequest {
            chain: Some(chain("fails", vec![failing])),
            ..Default::default()
        })
        .await
        .expect("create chain");
    let start = |request_id: &str| pb::StartRunRequest {
        chain_id: "fails".into(),
        run_input: typed(text("x")),
        request_id: request_id.into(),
        ..Default::default()
    };
    let run = runs.start_run(start("")).await.expect("start").into_inner();
    wait_for(&server, &run.id, pb::RunStatus::Failed).await;

    // RetryRun: the repeat answers the run instead of FAILED_PRECONDITION
    // (the run is no longer failed), and retries nothing more.
    let retry = pb::RetryRunRequest {
        id: run.id.clone(),
        request_id: "retry-1".into(),
    };
    runs.retry_run(retry.clone()).await.expect("retry");
    wait_for(&server, &run.id, pb::RunStatus::Failed).await;
    let again = runs
        .retry_run(retry.clone())
        .await
        .expect("repeated retry")
        .into_inner();
    assert_eq!(again.id, run.id);
    let attempts = runs
        .list_run_attempts(pb::ListRunAttemptsRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .expect("attempts")
        .into_inner()
        .attempts;
    assert_eq!(attempts.len(), 2, "the repeat retried nothing");
    // A new id retries again; the same id for another run is a reuse.
    runs.retry_run(pb::RetryRunRequest {
        request_id: "retry-2".into(),
        ..retry.clone()
    })
    .await
    .expect("second retry");
    let other = runs.start_run(start("")).await.expect("start").into_inner();
    wait_for(&server, &other.id, pb::RunStatus::Failed).await;
    let reused = runs
        .retry_run(pb::RetryRunRequest {
            id: other.id.clone(),
            request_id: "retry-1".into(),
        })
        .await
        .expect_err("reused request id");
    assert_eq!(reused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&reused), "REQUEST_ID_REUSED");

    // Pause, resume and cancel of a run waiting on an unserved queue.
    let mut waiting = task("wait", "worker");
    waiting.queue = "nobody".into();
    server
        .chains()
        .create_chain(pb::CreateChainRequest {
            chain: Some(chain("waits", vec![waiting])),
            ..Default::default()
        })
        .await
        .expect("create waits");
    let run = runs
        .start_run(pb::StartRunRequest {
            chain_id: "waits".into(),
            run_input: typed(text("x")),
            ..Default::default()
        })
        .await
        .expect("start waits")
        .into_inner();
    let pause = pb::PauseRunRequest {
        id: run.id.clone(),
        cancel_running: false,
        request_id: "pause-1".into(),
    };
    let paused = runs
        .pause_run(pause.clone())
        .await
        .expect("pause")
        .into_inner();
    assert_eq!(paused.status, pb::RunStatus::Paused as i32);
    let resume = pb::ResumeRunRequest {
        id: run.id.clone(),
        request_id: "resume-1".into(),
    };
    runs.resume_run(resume.clone()).await.expect("resume");
    // The repeated pause pauses nothing again: the run stays resumed.
    let repeated = runs
        .pause_run(pause.clone())
        .await
        .expect("repeat")
        .into_inner();
    assert_ne!(repeated.status, pb::RunStatus::Paused as i32);
    runs.resume_run(resume).await.expect("repeated resume");
    let changed = runs
        .pause_run(pb::PauseRunRequest {
            cancel_running: true,
            ..pause
        })
        .await
        .expect_err("same id, other payload");
    assert_eq!(error_reason(&changed), "REQUEST_ID_REUSED");
    let cancel = pb::CancelRunRequest {
        id: run.id.clone(),
        reason: "done".into(),
        request_id: "cancel-1".into(),
    };
    let cancelled = runs
        .cancel_run(cancel.clone())
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(cancelled.status, pb::RunStatus::Cancelled as i32);
    let repeated = runs
        .cancel_run(cancel)
        .await
        .expect("repeated cancel")
        .into_inner();
    assert_eq!(repeated.status, pb::RunStatus::Cancelled as i32);
    let events = runs
        .list_run_events(pb::ListRunEventsRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .expect("events")
        .into_inner()
        .events;
    let count = |kind: pb::RunEventType| events.iter().filter(|e| e.r#type == kind as i32).count();
    assert_eq!(count(pb::RunEventType::RunPaused), 1);
    assert_eq!(count(pb::RunEventType::RunResumed), 1);
    assert_eq!(count(pb::RunEventType::RunCancelled), 1);
}

async fn chain_versions(server: &TestServer, id: &str) -> Vec<i64> {
    match server
        .chains()
        .list_chain_versions(pb::ListChainVersionsRequest {
            id: id.into(),
            ..Default::default()
        })
        .await
    {
        Ok(response) => response
            .into_inner()
            .chains
            .iter()
            .map(|c| c.version)
            .collect(),
        Err(status) if status.code() == Code::NotFound => Vec::new(),
        Err(status) => panic!("list versions: {status:?}"),
    }
}

async fn a_refused_inline_start_writes_nothing(server: TestServer) {
    let mut runs = server.runs();
    // The entry task cannot take a vector: refused, and the inline chain
    // is not stored.
    let inline = chain("inline", vec![task("first", "raw_string")]);
    let refused = runs
        .start_run(pb::StartRunRequest {
            chain: Some(inline.clone()),
            run_input: typed(pb::Value {
                kind: Some(pb::value::Kind::Vector(pb::Vector {
                    values: vec![1.0, 2.0],
                })),
            }),
            ..Default::default()
        })
        .await
        .expect_err("a vector for raw_string");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(chain_versions(&server, "inline").await, Vec::<i64>::new());

    // A request id used with another inline chain is refused before that
    // chain becomes a new version.
    let start = |chain: pb::Chain| pb::StartRunRequest {
        chain: Some(chain),
        run_input: typed(text("x")),
        request_id: "start-1".into(),
        ..Default::default()
    };
    let first = runs
        .start_run(start(inline.clone()))
        .await
        .expect("start")
        .into_inner();
    assert_eq!(chain_versions(&server, "inline").await, vec![1]);
    let mut changed = inline.clone();
    changed.description = "another definition".into();
    let reused = runs
        .start_run(start(changed))
        .await
        .expect_err("reused request id");
    assert_eq!(error_reason(&reused), "REQUEST_ID_REUSED");
    assert_eq!(chain_versions(&server, "inline").await, vec![1]);
    // The same request again is the first run.
    let again = runs
        .start_run(start(inline))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(again.id, first.id);
    assert_eq!(chain_versions(&server, "inline").await, vec![1]);
}

async fn run_data_with_nul_round_trips(server: TestServer) {
    let mut first = task("first", "noop");
    first.prompt_template = "prompt: {{ input }}".into();
    first.transition = Some(pb::Transition {
        branches: vec![pb::Branch {
            operator: "default".into(),
            goto: Some(prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("boom".into())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    let mut boom = task("boom", "raise_error");
    boom.error_message = "failed on {{ input }}".into();
    let response = server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(chain("nul", vec![first, boom])),
            run_input: Some(pb::execute_chain_request::RunInput::TypedInput(text(
                "a\0b",
            ))),
            ..Default::default()
        })
        .await
        .expect("execute")
        .into_inner();
    let run = response.run.expect("run");
    assert_eq!(run.status, pb::RunStatus::Failed as i32, "{run:?}");
    let error = run.error.expect("error");
    assert_eq!(error.reason, "TASK_FAILED");
    assert_eq!(error.message, "failed on a\0b");
    let attempts = server
        .runs()
        .list_run_attempts(pb::ListRunAttemptsRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .expect("attempts")
        .into_inner()
        .attempts;
    // The first task's prompt ("prompt: a\0b") was stored with it.
    assert_eq!(attempts[0].output, Some(text("a\0b")));
    assert_eq!(attempts[1].error, "failed on a\0b");
}

async fn exhausted_retries_say_how_many_attempts(server: TestServer) {
    let hook = HookServer::start(503, "down for maintenance", Duration::ZERO).await;
    server
        .hooks()
        .create_hook(pb::CreateHookRequest {
            hook: Some(pb::Hook {
                name: "flaky".into(),
                url: hook.url.clone(),
                timeout: Some(prost_types::Duration {
                    seconds: 5,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create hook");
    let mut call = task("call", "hook");
    call.hook = Some(pb::HookCall {
        name: "flaky".into(),
        args: BTreeMap::new(),
    });
    call.retry = Some(pb::RetryPolicy {
        max_attempts: 3,
        initial_delay: "10ms".into(),
        ..Default::default()
    });
    let response = server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(chain("retries", vec![call])),
            run_input: Some(pb::execute_chain_request::RunInput::TypedInput(text("x"))),
            ..Default::default()
        })
        .await
        .expect("execute")
        .into_inner();
    let error = response.run.expect("run").error.expect("error");
    assert!(
        error.message.starts_with("failed after 3 attempts: "),
        "{}",
        error.message
    );
    assert!(error.message.contains("503"), "{}", error.message);
    assert_eq!(hook.requests().len(), 3);
}
