//! Two replicas on one PostgreSQL database: a watcher connected to one
//! replica sees, promptly, what a request to the other replica changed.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::ServerProcess;
use tonic::transport::Channel;

async fn replica(url: &str) -> (ServerProcess, Channel) {
    let url = url.to_string();
    let process = tokio::task::spawn_blocking(move || {
        ServerProcess::start(Path::new(env!("CARGO_BIN_EXE_taskloom")), Some(&url), &[])
            .expect("start taskloom")
    })
    .await
    .unwrap();
    let channel = Channel::from_shared(process.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    (process, channel)
}

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
        // hear of it well before its one-second safety poll.
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
