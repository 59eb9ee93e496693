//! The audit log against a real server process, on SQLite and PostgreSQL:
//! every control-plane call made through gRPC shows in `ListAuditEvents`
//! with its actor, action, resource, request id and outcome; a failed call
//! with its gRPC code; a replayed request id adds nothing; filters and pages
//! work and bad ones are INVALID_ARGUMENT naming the field.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::chains::{branch, chain, goto, task, text_value, worker_chain};
use common::{TestServer, assert_invalid};
use sha2::{Digest, Sha256};
use taskloom_server::proto::taskloom::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

use pb::audit_service_client::AuditServiceClient;

api_tests!(
    every_control_action_is_logged,
    failures_are_logged_with_their_code,
    replayed_requests_add_no_row,
    filters_and_pages,
    bad_filters_are_invalid_arguments,
);

fn audit(server: &TestServer) -> AuditServiceClient<Channel> {
    AuditServiceClient::new(server.channel.clone())
}

/// Every event `request` selects, newest first, across pages of `page_size`.
async fn all_events(
    client: &mut AuditServiceClient<Channel>,
    request: pb::ListAuditEventsRequest,
    page_size: i32,
) -> Vec<pb::AuditEvent> {
    let mut events = Vec::new();
    let mut token = String::new();
    for _ in 0..1000 {
        let page = client
            .list_audit_events(pb::ListAuditEventsRequest {
                page_size,
                page_token: token.clone(),
                ..request.clone()
            })
            .await
            .expect("list audit events")
            .into_inner();
        assert!(page.events.len() <= page_size.max(1) as usize);
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        token = page.next_page_token;
    }
    panic!("pages never end");
}

/// The control-plane events (StartRun's inline chain writes left out) as
/// `(action, resource_type, resource_id, request_id, outcome)`, oldest
/// first.
async fn logged(server: &TestServer) -> Vec<(String, String, String, String, String)> {
    let events = all_events(&mut audit(server), Default::default(), 1000).await;
    let mut rows: Vec<_> = events
        .into_iter()
        .filter(|event| event.action != "StartRun")
        .map(|event| {
            (
                event.action,
                event.resource_type,
                event.resource_id,
                event.request_id,
                event.outcome,
            )
        })
        .collect();
    rows.reverse();
    rows
}

fn row(
    action: &str,
    kind: &str,
    id: &str,
    request_id: &str,
    outcome: &str,
) -> (String, String, String, String, String) {
    (
        action.into(),
        kind.into(),
        id.into(),
        request_id.into(),
        outcome.into(),
    )
}

fn text(value: &str) -> Option<pb::start_run_request::RunInput> {
    Some(pb::start_run_request::RunInput::TypedInput(text_value(
        value,
    )))
}

async fn start(server: &TestServer, definition: pb::Chain) -> pb::Run {
    server
        .runs()
        .start_run(pb::StartRunRequest {
            chain: Some(definition),
            run_input: text("x"),
            ..Default::default()
        })
        .await
        .expect("start run")
        .into_inner()
}

async fn wait_status(server: &TestServer, run_id: &str, status: pb::RunStatus) {
    for _ in 0..600 {
        let run = server
            .runs()
            .get_run(pb::GetRunRequest { id: run_id.into() })
            .await
            .unwrap()
            .into_inner();
        if run.status == status as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run_id} never reached {status:?}");
}

fn ollama(name: &str) -> pb::Backend {
    pb::Backend {
        name: name.into(),
        r#type: pb::BackendType::Ollama as i32,
        base_url: "http://127.0.0.1:9".into(),
        ..Default::default()
    }
}

fn hook(name: &str) -> pb::Hook {
    pb::Hook {
        name: name.into(),
        url: "http://127.0.0.1:9/hook".into(),
        method: "post".into(),
        timeout: Some(prost_types::Duration {
            seconds: 5,
            nanos: 0,
        }),
        headers: BTreeMap::new(),
        ..Default::default()
    }
}

fn answer(run_id: &str, request_id: &str) -> pb::SubmitInputRequest {
    pb::SubmitInputRequest {
        run_id: run_id.into(),
        task_id: "ask".into(),
        answer: Some(pb::submit_input_request::Answer::TypedInput(text_value(
            "yes",
        ))),
        request_id: request_id.into(),
    }
}

fn human_chain() -> pb::Chain {
    let mut ask = task(
        "ask",
        "human_input",
        vec![branch("default", "", goto("end"))],
    );
    ask.prompt_template = "Approve?".into();
    chain("approval", vec![ask])
}

async fn every_control_action_is_logged(server: TestServer) {
    let (mut chains, mut backends, mut hooks, mut runs) = (
        server.chains(),
        server.backends(),
        server.hooks(),
        server.runs(),
    );
    let created = chains
        .create_chain(pb::CreateChainRequest {
            chain: Some(worker_chain("flow", "audit-q")),
            request_id: "req-chain".into(),
        })
        .await
        .unwrap()
        .into_inner();
    chains
        .update_chain(pb::UpdateChainRequest {
            chain: Some(worker_chain("flow", "audit-q2")),
            etag: created.etag,
            request_id: String::new(),
        })
        .await
        .unwrap();
    chains
        .delete_chain(pb::DeleteChainRequest {
            id: "flow".into(),
            etag: String::new(),
        })
        .await
        .unwrap();

    let backend = backends
        .create_backend(pb::CreateBackendRequest {
            backend: Some(ollama("local")),
            backend_id: String::new(),
            request_id: "req-backend".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let backend_id = backend.id.clone();
    backends
        .update_backend(pb::UpdateBackendRequest {
            backend: Some(pb::Backend {
                id: backend_id.clone(),
                priority: 3,
                ..Default::default()
            }),
            update_mask: vec!["priority".into()],
            etag: String::new(),
        })
        .await
        .unwrap();
    backends
        .create_pool(pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                id: "gpu".into(),
                purpose: "chat".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    backends
        .create_model(pb::CreateModelRequest {
            model: Some(pb::Model {
                name: "tiny".into(),
                context_length: 2048,
                capabilities: vec![pb::ModelCapability::Chat as i32],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    backends
        .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
            pool_id: "gpu".into(),
            backend_id: backend_id.clone(),
        })
        .await
        .unwrap();
    backends
        .assign_model_to_pool(pb::AssignModelToPoolRequest {
            pool_id: "gpu".into(),
            model: "tiny".into(),
        })
        .await
        .unwrap();
    backends
        .remove_backend_from_pool(pb::RemoveBackendFromPoolRequest {
            pool_id: "gpu".into(),
            backend_id: backend_id.clone(),
        })
        .await
        .unwrap();
    backends
        .remove_model_from_pool(pb::RemoveModelFromPoolRequest {
            pool_id: "gpu".into(),
            model: "tiny".into(),
        })
        .await
        .unwrap();
    backends
        .delete_pool(pb::DeletePoolRequest { id: "gpu".into() })
        .await
        .unwrap();
    backends
        .delete_model(pb::DeleteModelRequest {
            name: "tiny".into(),
        })
        .await
        .unwrap();
    backends
        .delete_backend(pb::DeleteBackendRequest {
            id: backend_id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();

    hooks
        .create_hook(pb::CreateHookRequest {
            hook: Some(hook("notify")),
            request_id: "req-hook".into(),
        })
        .await
        .unwrap();
    hooks
        .update_hook(pb::UpdateHookRequest {
            hook: Some(pb::Hook {
                name: "notify".into(),
                description: "changed".into(),
                ..Default::default()
            }),
            update_mask: vec!["description".into()],
            etag: String::new(),
        })
        .await
        .unwrap();
    hooks
        .delete_hook(pb::DeleteHookRequest {
            name: "notify".into(),
            etag: String::new(),
        })
        .await
        .unwrap();

    // A run left waiting on a queue no worker serves: paused, resumed,
    // cancelled.
    let waiting = start(&server, worker_chain("parked", "nobody-serves-this")).await;
    runs.pause_run(pb::PauseRunRequest {
        id: waiting.id.clone(),
        cancel_running: false,
        request_id: "req-pause".into(),
    })
    .await
    .unwrap();
    runs.resume_run(pb::ResumeRunRequest {
        id: waiting.id.clone(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    runs.cancel_run(pb::CancelRunRequest {
        id: waiting.id.clone(),
        reason: "done with it".into(),
        request_id: "req-cancel".into(),
    })
    .await
    .unwrap();

    // A human_input run answered; a failed run retried; a run replayed.
    let asking = start(&server, human_chain()).await;
    wait_status(&server, &asking.id, pb::RunStatus::WaitingInput).await;
    runs.submit_input(answer(&asking.id, "req-answer"))
        .await
        .unwrap();
    let mut boom = task("boom", "raise_error", vec![]);
    boom.error_message = "broken".into();
    let failing = start(&server, chain("fails", vec![boom])).await;
    wait_status(&server, &failing.id, pb::RunStatus::Failed).await;
    runs.retry_run(pb::RetryRunRequest {
        id: failing.id.clone(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    wait_status(&server, &asking.id, pb::RunStatus::Succeeded).await;
    runs.replay_run(pb::ReplayRunRequest {
        id: asking.id.clone(),
    })
    .await
    .unwrap();

    let b = backend_id.as_str();
    let expected = vec![
        row("CreateChain", "chain", "flow", "req-chain", "OK"),
        row("UpdateChain", "chain", "flow", "", "OK"),
        row("DeleteChain", "chain", "flow", "", "OK"),
        row("CreateBackend", "backend", b, "req-backend", "OK"),
        row("UpdateBackend", "backend", b, "", "OK"),
        row("CreatePool", "pool", "gpu", "", "OK"),
        row("CreateModel", "model", "tiny", "", "OK"),
        row("AssignBackendToPool", "pool", &format!("gpu/{b}"), "", "OK"),
        row("AssignModelToPool", "pool", "gpu/tiny", "", "OK"),
        row(
            "RemoveBackendFromPool",
            "pool",
            &format!("gpu/{b}"),
            "",
            "OK",
        ),
        row("RemoveModelFromPool", "pool", "gpu/tiny", "", "OK"),
        row("DeletePool", "pool", "gpu", "", "OK"),
        row("DeleteModel", "model", "tiny", "", "OK"),
        row("DeleteBackend", "backend", b, "", "OK"),
        row("CreateHook", "hook", "notify", "req-hook", "OK"),
        row("UpdateHook", "hook", "notify", "", "OK"),
        row("DeleteHook", "hook", "notify", "", "OK"),
        row("PauseRun", "run", &waiting.id, "req-pause", "OK"),
        row("ResumeRun", "run", &waiting.id, "", "OK"),
        row("CancelRun", "run", &waiting.id, "req-cancel", "OK"),
        row("SubmitInput", "run", &asking.id, "req-answer", "OK"),
        row("RetryRun", "run", &failing.id, "", "OK"),
        row("ReplayRun", "run", &asking.id, "", "OK"),
    ];
    assert_eq!(logged(&server).await, expected);

    // Each event says who, when and where; StartRun's inline chains are
    // logged as chain writes of the caller.
    let events = all_events(&mut audit(&server), Default::default(), 1000).await;
    let started: Vec<&str> = events
        .iter()
        .filter(|event| event.action == "StartRun")
        .map(|event| event.resource_id.as_str())
        .collect();
    assert_eq!(started, ["fails", "approval", "parked"]);
    for event in &events {
        assert_eq!(event.actor, "local", "{event:?}");
        assert!(!event.replica.is_empty(), "{event:?}");
        assert!(event.error_message.is_empty(), "{event:?}");
        assert!(event.time.is_some(), "{event:?}");
    }
    let ids: Vec<&str> = events.iter().map(|event| event.id.as_str()).collect();
    let mut newest_first = ids.clone();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, newest_first, "newest first");
}

async fn failures_are_logged_with_their_code(server: TestServer) {
    let (mut chains, mut runs) = (server.chains(), server.runs());
    let missing = chains
        .delete_chain(pb::DeleteChainRequest {
            id: "missing".into(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let invalid = chains
        .create_chain(pb::CreateChainRequest {
            chain: Some(chain("bad id!", vec![])),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let builtin = server
        .backends()
        .delete_pool(pb::DeletePoolRequest {
            id: "internal_chat_pool".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(builtin.code(), Code::FailedPrecondition);
    // Cancelling an ended run is refused in the transition: no OK row.
    let done = start(&server, chain("quick", vec![task("t", "noop", vec![])])).await;
    wait_status(&server, &done.id, pb::RunStatus::Succeeded).await;
    let ended = runs
        .cancel_run(pb::CancelRunRequest {
            id: done.id.clone(),
            reason: String::new(),
            request_id: "req-late".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(ended.code(), Code::FailedPrecondition);

    assert_eq!(
        logged(&server).await,
        vec![
            row("DeleteChain", "chain", "missing", "", "NOT_FOUND"),
            row("CreateChain", "chain", "bad id!", "", "INVALID_ARGUMENT"),
            row(
                "DeletePool",
                "pool",
                "internal_chat_pool",
                "",
                "FAILED_PRECONDITION"
            ),
            row(
                "CancelRun",
                "run",
                &done.id,
                "req-late",
                "FAILED_PRECONDITION"
            ),
        ]
    );
    let events = all_events(&mut audit(&server), Default::default(), 1000).await;
    let not_found = events
        .iter()
        .find(|event| event.outcome == "NOT_FOUND")
        .unwrap();
    assert!(not_found.error_message.contains("missing"), "{not_found:?}");
}

async fn replayed_requests_add_no_row(server: TestServer) {
    let (mut backends, mut runs) = (server.backends(), server.runs());
    for _ in 0..2 {
        backends
            .create_pool(pb::CreatePoolRequest {
                pool: Some(pb::Pool {
                    id: "once".into(),
                    purpose: "chat".into(),
                    ..Default::default()
                }),
                request_id: "req-pool".into(),
            })
            .await
            .unwrap();
    }
    for _ in 0..2 {
        server
            .chains()
            .update_chain(pb::UpdateChainRequest {
                chain: Some(worker_chain("once", "q")),
                etag: String::new(),
                request_id: "req-update".into(),
            })
            .await
            .unwrap_err();
    }
    let waiting = start(&server, worker_chain("parked", "nobody-serves-this")).await;
    for _ in 0..2 {
        runs.cancel_run(pb::CancelRunRequest {
            id: waiting.id.clone(),
            reason: String::new(),
            request_id: "req-cancel".into(),
        })
        .await
        .unwrap();
    }
    let asking = start(&server, human_chain()).await;
    wait_status(&server, &asking.id, pb::RunStatus::WaitingInput).await;
    for _ in 0..2 {
        runs.submit_input(answer(&asking.id, "req-answer"))
            .await
            .unwrap();
    }
    assert_eq!(
        logged(&server).await,
        vec![
            row("CreatePool", "pool", "once", "req-pool", "OK"),
            // A failed request is no replay: each attempt is logged.
            row("UpdateChain", "chain", "once", "req-update", "NOT_FOUND"),
            row("UpdateChain", "chain", "once", "req-update", "NOT_FOUND"),
            row("CancelRun", "run", &waiting.id, "req-cancel", "OK"),
            row("SubmitInput", "run", &asking.id, "req-answer", "OK"),
        ]
    );
}

async fn filters_and_pages(server: TestServer) {
    let mut chains = server.chains();
    for index in 0..5 {
        chains
            .create_chain(pb::CreateChainRequest {
                chain: Some(worker_chain(&format!("c{index}"), "q")),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    chains
        .delete_chain(pb::DeleteChainRequest {
            id: "c1".into(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let mut client = audit(&server);
    let everything = all_events(&mut client, Default::default(), 1000).await;
    let resources: Vec<&str> = everything
        .iter()
        .map(|event| event.resource_id.as_str())
        .collect();
    assert_eq!(resources, ["c1", "c4", "c3", "c2", "c1", "c0"]);

    // Pages of two: the same events, in the same order, no repeats.
    let paged = all_events(&mut client, Default::default(), 2).await;
    assert_eq!(paged, everything);

    let select = |request: pb::ListAuditEventsRequest| {
        let mut client = audit(&server);
        async move {
            all_events(&mut client, request, 1)
                .await
                .into_iter()
                .map(|event| (event.action, event.resource_id))
                .collect::<Vec<_>>()
        }
    };
    let deletes = select(pb::ListAuditEventsRequest {
        action: "DeleteChain".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(deletes, [("DeleteChain".to_string(), "c1".to_string())]);
    let c1 = select(pb::ListAuditEventsRequest {
        resource_type: "chain".into(),
        resource_id: "c1".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(c1.len(), 2);
    assert!(c1.iter().all(|(_, id)| id == "c1"));
    let by_local = select(pb::ListAuditEventsRequest {
        actor: "local".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(by_local.len(), 6);
    let by_key = select(pb::ListAuditEventsRequest {
        actor: "key:000000000000".into(),
        ..Default::default()
    })
    .await;
    assert!(by_key.is_empty());
    let runs_only = select(pb::ListAuditEventsRequest {
        resource_type: "run".into(),
        ..Default::default()
    })
    .await;
    assert!(runs_only.is_empty());

    // start_time inclusive, end_time exclusive.
    let time_of = |index: usize| everything[index].time.unwrap();
    let window = select(pb::ListAuditEventsRequest {
        start_time: Some(time_of(4)),
        end_time: Some(time_of(1)),
        ..Default::default()
    })
    .await;
    let expected: Vec<(String, String)> = everything[2..=4]
        .iter()
        .filter(|event| event.time.as_ref() != Some(&time_of(1)))
        .map(|event| (event.action.clone(), event.resource_id.clone()))
        .collect();
    assert_eq!(window, expected);
    assert!(!window.is_empty());
    let after_all = select(pb::ListAuditEventsRequest {
        start_time: Some(prost_types::Timestamp {
            seconds: time_of(0).seconds + 3600,
            nanos: 0,
        }),
        ..Default::default()
    })
    .await;
    assert!(after_all.is_empty());

    // A token is bound to the filters it was issued for.
    let first = client
        .list_audit_events(pb::ListAuditEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.events.len(), 1);
    let error = client
        .list_audit_events(pb::ListAuditEventsRequest {
            action: "CreateChain".into(),
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["page_token"]);
}

async fn bad_filters_are_invalid_arguments(server: TestServer) {
    let mut client = audit(&server);
    let cases: Vec<(pb::ListAuditEventsRequest, &[&str])> = vec![
        (
            pb::ListAuditEventsRequest {
                page_size: -1,
                ..Default::default()
            },
            &["page_size"],
        ),
        (
            pb::ListAuditEventsRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: 2_000_000_000,
                }),
                ..Default::default()
            },
            &["start_time"],
        ),
        (
            pb::ListAuditEventsRequest {
                end_time: Some(prost_types::Timestamp {
                    seconds: i64::MAX,
                    nanos: 0,
                }),
                ..Default::default()
            },
            &["end_time"],
        ),
        (
            pb::ListAuditEventsRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: 200,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: 100,
                    nanos: 0,
                }),
                ..Default::default()
            },
            &["end_time"],
        ),
        (
            pb::ListAuditEventsRequest {
                resource_id: "c1".into(),
                ..Default::default()
            },
            &["resource_type"],
        ),
        (
            pb::ListAuditEventsRequest {
                actor: "x".repeat(300),
                ..Default::default()
            },
            &["actor"],
        ),
        (
            pb::ListAuditEventsRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            &["page_token"],
        ),
    ];
    for (request, fields) in cases {
        let error = client
            .list_audit_events(request.clone())
            .await
            .expect_err(&format!("{request:?} is refused"));
        assert_invalid(error, fields);
    }
    let version = server
        .info()
        .get_version(pb::GetVersionRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(version.features.iter().any(|f| f == "audit"), "{version:?}");
    // A page size over the maximum is served at the maximum.
    client
        .list_audit_events(pb::ListAuditEventsRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// `message` sent with `key`.
fn with_key<M>(key: &str, message: M) -> tonic::Request<M> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

/// With `--api-keys-file`, the actor is `key:` and the first 12 hex digits
/// of the key's SHA-256 digest.
async fn the_actor_is_the_key(backend: common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys");
    std::fs::write(&keys_file, "first-key\nsecond-key\n").unwrap();
    let keys_path = keys_file.display().to_string();
    let server = TestServer::start_with(backend, &["--api-keys-file", keys_path.as_str()]).await;
    let create = |id: &str| pb::CreateChainRequest {
        chain: Some(worker_chain(id, "q")),
        request_id: String::new(),
    };
    let mut chains = server.chains();
    chains
        .create_chain(with_key("first-key", create("one")))
        .await
        .unwrap();
    chains
        .create_chain(with_key("second-key", create("two")))
        .await
        .unwrap();
    let error = chains
        .delete_chain(with_key(
            "second-key",
            pb::DeleteChainRequest {
                id: "missing".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    let actor = |key: &str| {
        let digest = Sha256::digest(key.as_bytes());
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("key:{hex}")
    };
    let mut client = audit(&server);
    let unauthenticated = client
        .list_audit_events(pb::ListAuditEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    let events = client
        .list_audit_events(with_key("first-key", pb::ListAuditEventsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .events;
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e.actor.as_str(), e.resource_id.as_str(), e.outcome.as_str()))
        .collect();
    let (first, second) = (actor("first-key"), actor("second-key"));
    assert_eq!(
        seen,
        [
            (second.as_str(), "missing", "NOT_FOUND"),
            (second.as_str(), "two", "OK"),
            (first.as_str(), "one", "OK"),
        ]
    );
    let filtered = client
        .list_audit_events(with_key(
            "second-key",
            pb::ListAuditEventsRequest {
                actor: first.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].resource_id, "one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_actor_is_the_key() {
    the_actor_is_the_key(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_actor_is_the_key() {
    the_actor_is_the_key(common::Backend::Postgres).await;
}
