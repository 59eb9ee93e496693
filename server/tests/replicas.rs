//! Two replicas on one PostgreSQL database: a watcher connected to one
//! replica sees, promptly, what a request to the other replica changed.

mod common;
use common::replica;

use std::time::{Duration, Instant};

use taskloom_server::proto::taskloom::v1 as pb;
use tonic::transport::Channel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_on_one_replica_follows_changes_made_on_another() {
    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let (_a, channel_a) = replica(&url).await;
    let (_b, channel_b) = replica(&url).await;
    let mut runs_a = pb::run_service_client::RunServiceClient::new(channel_a);
    let mut runs_b = pb::run_service_client::RunServiceClient::new(channel_b);
    let chain = pb::Chain {
        id: "approve".into(),
        tasks: vec![pb::Task {
            id: "ask".into(),
            handler: "human_input".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let run = runs_a
        .start_run(pb::StartRunRequest {
            chain: Some(chain),
            run_input: Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
                kind: Some(pb::value::Kind::Text("deploy?".into())),
            })),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = runs_b
        .watch_run(pb::WatchRunRequest {
            run_id: run.id.clone(),
            after_seq: 0,
            include_deltas: false,
        })
        .await
        .unwrap()
        .into_inner();
    // History first.
    let mut seen = 0;
    while seen < run.last_event_seq {
        let event = stream.message().await.unwrap().unwrap();
        seen = event.seq;
    }
    let mut latencies = Vec::new();
    for round in 0..3 {
        // Each round: pause and resume on replica A; the watcher on B must
        // hear of it promptly (watchers do not poll: they are poked).
        let started = Instant::now();
        runs_a
            .pause_run(pb::PauseRunRequest {
                id: run.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let event = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            event.r#type,
            pb::RunEventType::RunPaused as i32,
            "round {round}"
        );
        latencies.push(started.elapsed());
        runs_a
            .resume_run(pb::ResumeRunRequest {
                id: run.id.clone(),
                request_id: String::new(),
            })
            .await
            .unwrap();
        let event = stream.message().await.unwrap().unwrap();
        assert_eq!(event.r#type, pb::RunEventType::RunResumed as i32);
    }
    latencies.sort();
    assert!(
        latencies[1] < Duration::from_millis(500),
        "cross-replica delivery is signalled, not polled: {latencies:?}"
    );
    runs_a
        .submit_input(pb::SubmitInputRequest {
            run_id: run.id.clone(),
            task_id: "ask".into(),
            answer: Some(pb::submit_input_request::Answer::TypedInput(pb::Value {
                kind: Some(pb::value::Kind::Text("yes".into())),
            })),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let mut last = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
    {
        last = Some(event.r#type);
    }
    assert_eq!(last, Some(pb::RunEventType::RunSucceeded as i32));
}

/// Token deltas of a model call streaming on one replica reach watchers
/// connected to the other replica, live and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_deltas_reach_watchers_on_every_replica() {
    use taskloom_testkit::fake_llm::{FakeLlm, Reply};

    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let (_a, channel_a) = replica(&url).await;
    let (_b, channel_b) = replica(&url).await;
    let fake = FakeLlm::start().await;
    fake.script(
        "streamer",
        // The delay gives the watchers time to attach before the first token.
        Reply::chunks(["one ", "two ", "three"])
            .usage(3, 3)
            .delay(Duration::from_millis(800))
            .chunk_delay(Duration::from_millis(150)),
    );
    let mut backends = pb::backend_service_client::BackendServiceClient::new(channel_a.clone());
    let backend = backends
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: "fake".into(),
                r#type: pb::BackendType::Ollama as i32,
                base_url: fake.url(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    backends
        .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
            pool_id: "internal_tasks_pool".into(),
            backend_id: backend.id,
        })
        .await
        .unwrap();
    let chain = pb::Chain {
        id: "stream".into(),
        tasks: vec![pb::Task {
            id: "say".into(),
            handler: "raw_string".into(),
            execute_config: Some(pb::ExecuteConfig {
                models: vec!["streamer".into()],
                // Started before anyone watches: the task asks to stream.
                stream: true,
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    // Started on A: A's runner executes it (eager dispatch), so B only
    // hears the deltas through the database.
    let run = pb::run_service_client::RunServiceClient::new(channel_a.clone())
        .start_run(pb::StartRunRequest {
            chain: Some(chain),
            run_input: Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
                kind: Some(pb::value::Kind::Text("count".into())),
            })),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let watch = |channel: Channel| {
        let run_id = run.id.clone();
        tokio::spawn(async move {
            let mut stream = pb::run_service_client::RunServiceClient::new(channel)
                .watch_run(pb::WatchRunRequest {
                    run_id,
                    after_seq: 0,
                    include_deltas: true,
                })
                .await
                .unwrap()
                .into_inner();
            let mut deltas = Vec::new();
            let mut last = None;
            while let Some(event) = tokio::time::timeout(Duration::from_secs(20), stream.message())
                .await
                .expect("the run ends")
                .unwrap()
            {
                if event.r#type == pb::RunEventType::TokenDelta as i32 {
                    deltas.push(event.delta.clone());
                }
                last = Some(event.r#type);
            }
            (deltas, last)
        })
    };
    let on_a = watch(channel_a);
    let on_b = watch(channel_b);
    for (replica, watcher) in [("A", on_a), ("B", on_b)] {
        let (deltas, last) = watcher.await.unwrap();
        assert_eq!(
            deltas.concat(),
            "one two three",
            "deltas on replica {replica}"
        );
        assert!(
            deltas.len() >= 2,
            "streamed in pieces on {replica}: {deltas:?}"
        );
        assert_eq!(last, Some(pb::RunEventType::RunSucceeded as i32));
    }
}

/// A watcher that wants token deltas on replica B makes the call that
/// replica A runs stream: A learns of the watcher through the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_watcher_on_another_replica_makes_the_call_stream() {
    use taskloom_testkit::fake_llm::{FakeLlm, Reply};

    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let (_a, channel_a) = replica(&url).await;
    let (_b, channel_b) = replica(&url).await;
    let fake = FakeLlm::start().await;
    fake.script(
        "streamer",
        Reply::chunks(["one ", "two ", "three"])
            .usage(3, 3)
            .chunk_delay(Duration::from_millis(100)),
    );
    let mut backends = pb::backend_service_client::BackendServiceClient::new(channel_a.clone());
    let backend = backends
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: "fake".into(),
                r#type: pb::BackendType::Ollama as i32,
                base_url: fake.url(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    backends
        .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
            pool_id: "internal_tasks_pool".into(),
            backend_id: backend.id,
        })
        .await
        .unwrap();
    // The gate holds the run until B's watcher is there.
    let chain = pb::Chain {
        id: "gated-stream".into(),
        tasks: vec![
            pb::Task {
                id: "gate".into(),
                handler: "human_input".into(),
                prompt_template: "Go?".into(),
                transition: common::chains::then("say"),
                ..Default::default()
            },
            pb::Task {
                id: "say".into(),
                handler: "raw_string".into(),
                execute_config: Some(pb::ExecuteConfig {
                    models: vec!["streamer".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let mut runs_a = pb::run_service_client::RunServiceClient::new(channel_a);
    let text = |text: &str| pb::Value {
        kind: Some(pb::value::Kind::Text(text.into())),
    };
    let run = runs_a
        .start_run(pb::StartRunRequest {
            chain: Some(chain),
            run_input: Some(pb::start_run_request::RunInput::TypedInput(text("count"))),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = pb::run_service_client::RunServiceClient::new(channel_b)
        .watch_run(pb::WatchRunRequest {
            run_id: run.id.clone(),
            after_seq: 0,
            include_deltas: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut deltas = Vec::new();
    let mut submitted = false;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("the run ends")
        .unwrap()
    {
        if event.r#type == pb::RunEventType::InputRequested as i32 && !submitted {
            submitted = true;
            // B's announcement of its watcher reaches A within tens of
            // milliseconds; the input goes to A, whose runner takes the
            // next task at once.
            tokio::time::sleep(Duration::from_millis(500)).await;
            runs_a
                .submit_input(pb::SubmitInputRequest {
                    run_id: run.id.clone(),
                    task_id: "gate".into(),
                    answer: Some(pb::submit_input_request::Answer::TypedInput(text("go"))),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        if event.r#type == pb::RunEventType::TokenDelta as i32 {
            deltas.push(event.delta.clone());
        }
    }
    assert_eq!(deltas.concat(), "one two three");
    let chats: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|request| request.path == "/api/chat")
        .collect();
    assert_eq!(chats.len(), 1);
    assert_eq!(chats[0].body["stream"], true);
}

/// ListWorkers on either replica shows the workers of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_workers_shows_every_replicas_sessions() {
    use tokio_stream::wrappers::ReceiverStream;

    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let (a, channel_a) = replica(&url).await;
    let (_b, channel_b) = replica(&url).await;
    let mut streams = Vec::new();
    for (channel, worker_id) in [(channel_a.clone(), "on-a"), (channel_b.clone(), "on-b")] {
        let (outbound, receiver) = tokio::sync::mpsc::channel(4);
        outbound
            .send(pb::WorkerMessage {
                msg: Some(pb::worker_message::Msg::Hello(pb::Hello {
                    worker_id: worker_id.into(),
                    queues: vec!["shared".into()],
                    slots: 2,
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
        let stream = pb::worker_service_client::WorkerServiceClient::new(channel)
            .connect(ReceiverStream::new(receiver))
            .await
            .unwrap()
            .into_inner();
        streams.push((outbound, stream));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for channel in [channel_a, channel_b] {
        loop {
            let workers = pb::worker_service_client::WorkerServiceClient::new(channel.clone())
                .list_workers(pb::ListWorkersRequest {
                    queue: "shared".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .workers;
            let mut ids: Vec<&str> = workers.iter().map(|w| w.worker_id.as_str()).collect();
            ids.sort();
            if ids == ["on-a", "on-b"] {
                let replicas: std::collections::HashSet<&str> =
                    workers.iter().map(|w| w.replica.as_str()).collect();
                assert_eq!(replicas.len(), 2, "each session names its replica");
                break;
            }
            assert!(Instant::now() < deadline, "sessions seen: {ids:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(streams);
    drop(a);
}

/// Watchers do not poll: they rely on the other replicas' announcements.
/// When a replica's listening connection is lost, announcements sent until
/// it is back are gone, so the store says so once it listens again (and the
/// kernel then has every watcher re-read the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_asks_for_a_resync() {
    use taskloom_server::store::Signal;
    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let database = url.rsplit('/').next().unwrap().to_string();
    let secrets = taskloom_server::secrets::SecretBox::from_key([7; 32]);
    let store = taskloom_server::store::open(&url, secrets).await.unwrap();
    store.migrate().await.unwrap();
    let mut signals = store.listen().await.unwrap().expect("PostgreSQL signals");
    let status = std::process::Command::new("psql")
        .arg(taskloom_testkit::postgres_admin_url().unwrap())
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{database}' AND query ILIKE 'LISTEN%'"
        ))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let signal = tokio::time::timeout(Duration::from_secs(10), signals.recv())
        .await
        .expect("a signal once listening again");
    assert_eq!(signal, Some(Signal::Resync));
    // Listening again: announcements arrive.
    store
        .announce("elsewhere", &["run-1".to_string()])
        .await
        .unwrap();
    let signal = tokio::time::timeout(Duration::from_secs(10), signals.recv())
        .await
        .expect("an announcement");
    assert!(
        matches!(&signal, Some(Signal::Changed(a)) if a.run_ids == ["run-1"]),
        "{signal:?}"
    );
}
