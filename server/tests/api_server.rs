//! Server-level behaviour of a real `taskloom serve` process: health,
//! reflection, version info, UNIMPLEMENTED for later RPCs, compression, and
//! graceful shutdown.

mod common;

use common::TestServer;
use taskloom_server::proto::taskloom::v1 as pb;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

api_tests!(health_version_and_unimplemented, compression_and_shutdown);

async fn health_version_and_unimplemented(server: TestServer) {
    let mut health = HealthClient::new(server.channel.clone());
    for service in [
        "",
        "taskloom.v1.ChainService",
        "taskloom.v1.BackendService",
        "taskloom.v1.RunService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let version = server
        .info()
        .get_version(pb::GetVersionRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.api_version, "v1");
    assert!(!version.version.is_empty());
    assert!(["sqlite", "postgres"].contains(&version.store.as_str()));
    for feature in ["chains", "runs", "workers", "backends", "hooks"] {
        assert!(
            version.features.iter().any(|f| f == feature),
            "{feature} missing from {:?}",
            version.features
        );
    }

    // The backend reconciler is implemented: a request without an id is
    // refused as invalid, not as unimplemented.
    let error = server
        .backends()
        .sync_backend(pb::SyncBackendRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}

async fn compression_and_shutdown(mut server: TestServer) {
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let mut client = server
            .chains()
            .send_compressed(encoding)
            .accept_compressed(encoding);
        let listed = client
            .list_chains(pb::ListChainsRequest::default())
            .await
            .expect("compressed call")
            .into_inner();
        assert!(listed.chains.is_empty());
    }

    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || server.process.terminate())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "SIGTERM exits cleanly: {status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// A stream open at SIGTERM ends with UNAVAILABLE as soon as draining
/// begins (not when the grace period cuts it); the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams_at_once() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_taskloom"));
    let mut process = tokio::task::spawn_blocking(move || {
        taskloom_testkit::ServerProcess::start(binary, None, &["--shutdown-grace", "5s"])
            .expect("start taskloom")
    })
    .await
    .unwrap();
    let channel = tonic::transport::Channel::from_shared(process.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let pid = process.pid();
    let started = std::time::Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    // The stream may first see NOT_SERVING; it then ends with UNAVAILABLE
    // right away, well before the grace period would cut it.
    let end = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(3), watch.message())
            .await
            .expect("the stream ends promptly when draining begins")
        {
            Ok(Some(update)) => {
                assert_eq!(update.status, ServingStatus::NotServing as i32);
            }
            other => break other,
        }
    };
    let status = end.expect_err("the stream ends with an error status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    let status = tokio::task::spawn_blocking(move || process.terminate())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
}

/// Requests over `--max-message-bytes` are refused without reaching a
/// handler, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_taskloom"));
    let process = tokio::task::spawn_blocking(move || {
        taskloom_testkit::ServerProcess::start(binary, None, &["--max-message-bytes", "65536"])
            .expect("start taskloom")
    })
    .await
    .unwrap();
    let channel = tonic::transport::Channel::from_shared(process.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut chains = common::ChainServiceClient::new(channel);
    let chain = pb::Chain {
        id: "big".into(),
        description: "x".repeat(100_000),
        tasks: vec![pb::Task {
            id: "only".into(),
            handler: "noop".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let error = chains
        .create_chain(pb::CreateChainRequest {
            chain: Some(chain),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::OutOfRange, "{error:?}");
    let listed = chains
        .list_chains(pb::ListChainsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.chains.is_empty());
}

/// `--log-format json` writes one JSON object per log line.
#[test]
fn json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let port = taskloom_testkit::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_taskloom"))
        .args(["--log-format", "json", "serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--database-url")
        .arg(dir.path().join("t.db"))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{stderr}");
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert!(
            event.get("level").is_some() && event.get("message").is_some(),
            "{line}"
        );
    }
    assert!(stderr.contains("taskloom serving"));
}

/// `taskloom migrate` prepares a database and is idempotent, on both stores.
#[test]
fn migrate_command() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("m.db").display().to_string();
    let postgres = taskloom_testkit::fresh_postgres_database().unwrap();
    for url in [sqlite, postgres] {
        for _ in 0..2 {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_taskloom"))
                .args(["migrate", "--database-url", &url])
                .output()
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            assert!(String::from_utf8_lossy(&output.stdout).contains("migrated"));
        }
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_taskloom"))
        .args([
            "migrate",
            "--database-url",
            "postgres://nobody@127.0.0.1:99999/none",
        ])
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "an unreachable database is an error"
    );
}

/// With `--api-keys-file`, services need `authorization: Bearer <key>`;
/// health checks do not.
#[tokio::test]
async fn api_keys_gate_the_services() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys_file = dir.path().join("keys");
    std::fs::write(&keys_file, "# operators\nfirst-key\n\nsecond-key\n").expect("write keys");
    let keys_path = keys_file.display().to_string();
    let server = TestServer::start_with(
        common::Backend::Sqlite,
        &["--api-keys-file", keys_path.as_str()],
    )
    .await;

    let version = |key: Option<&str>| {
        let mut info = server.info();
        let mut request = tonic::Request::new(pb::GetVersionRequest {});
        if let Some(key) = key {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {key}").parse().expect("ascii"),
            );
        }
        async move { info.get_version(request).await }
    };
    let missing = version(None).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().contains("API key is required"),
        "{missing:?}"
    );
    let wrong = version(Some("third-key")).await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    for key in ["first-key", "second-key"] {
        assert!(version(Some(key)).await.is_ok(), "{key}");
    }
    let mut health = HealthClient::new(server.channel.clone());
    let status = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health checks need no key")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
}

/// While draining: calls that arrive are refused with UNAVAILABLE
/// (`SHUTTING_DOWN`), a unary call in flight finishes with its own answer,
/// an ExecuteChain waiting for its run answers UNAVAILABLE at once and
/// leaves the run going, and a worker's stream ends with UNAVAILABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_refuses_calls_with_unavailable() {
    use pb::server_message::Msg as ServerMsg;
    use pb::worker_message::Msg as WorkerMsg;
    use std::time::{Duration, Instant};
    use taskloom_testkit::fake_llm::{FakeLlm, Reply};

    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_taskloom"));
    let url = taskloom_testkit::fresh_postgres_database().expect("a database");
    let start = |url: String| async move {
        tokio::task::spawn_blocking(move || {
            taskloom_testkit::ServerProcess::start(binary, Some(&url), &["--shutdown-grace", "10s"])
                .expect("start taskloom")
        })
        .await
        .unwrap()
    };
    let process = start(url.clone()).await;
    let channel = tonic::transport::Channel::from_shared(process.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let runs = pb::run_service_client::RunServiceClient::new(channel.clone());
    let mut backends = pb::backend_service_client::BackendServiceClient::new(channel.clone());

    // A model that takes 3 s to answer.
    let fake = FakeLlm::start().await;
    fake.script(
        "slow",
        Reply::text("late")
            .usage(1, 1)
            .delay(Duration::from_secs(3)),
    );
    let backend = backends
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: "fake".into(),
                r#type: pb::BackendType::OpenaiCompatible as i32,
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

    // A worker holding a lease.
    let worker_chain = |id: &str, queue: &str| pb::Chain {
        id: id.into(),
        tasks: vec![pb::Task {
            id: "work".into(),
            handler: "worker".into(),
            queue: queue.into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let (outbound, receiver) = tokio::sync::mpsc::channel(8);
    outbound
        .send(pb::WorkerMessage {
            msg: Some(WorkerMsg::Hello(pb::Hello {
                worker_id: "w".into(),
                queues: vec!["held".into()],
                slots: 1,
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    let mut stream = pb::worker_service_client::WorkerServiceClient::new(channel.clone())
        .connect(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    runs.clone()
        .start_run(pb::StartRunRequest {
            chain: Some(worker_chain("held", "held")),
            ..Default::default()
        })
        .await
        .unwrap();
    loop {
        let message = stream.message().await.unwrap().unwrap();
        if let Some(ServerMsg::Lease(_)) = message.msg {
            break;
        }
    }

    // In flight at SIGTERM: an ExecuteChain waiting on a queue nobody
    // serves, and a one-shot prompt to the slow model.
    let executing = tokio::spawn({
        let mut runs = runs.clone();
        let chain = worker_chain("waiting", "nobody");
        async move {
            runs.execute_chain(pb::ExecuteChainRequest {
                chain: Some(chain),
                request_id: "exec-1".into(),
                ..Default::default()
            })
            .await
        }
    });
    let prompting = tokio::spawn({
        let mut backends = backends.clone();
        async move {
            backends
                .execute_prompt(pb::ExecutePromptRequest {
                    prompt: "ping".into(),
                    models: vec!["slow".into()],
                    ..Default::default()
                })
                .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.in_flight() == 0 {
        if prompting.is_finished() {
            panic!("the prompt ended early: {:?}", prompting.await);
        }
        assert!(Instant::now() < deadline, "the prompt reached the model");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ExecuteChain's run is started by its own call: wait for it too.
    loop {
        let listed = runs
            .clone()
            .list_runs(pb::ListRunsRequest::default())
            .await
            .unwrap()
            .into_inner();
        if listed.runs.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both runs exist before the drain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let sigterm = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &process.pid().to_string()])
        .status()
        .unwrap();

    // The worker's stream ends with UNAVAILABLE right away.
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(3), stream.message())
            .await
            .expect("the worker stream ends promptly")
        {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    let status = end.expect_err("the worker stream ends with an error");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // ExecuteChain stops waiting with UNAVAILABLE.
    let status = tokio::time::timeout(Duration::from_secs(3), executing)
        .await
        .expect("ExecuteChain answers promptly")
        .unwrap()
        .expect_err("ExecuteChain is cut short");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // New calls on the open connection are refused while the prompt runs.
    let status = runs
        .clone()
        .get_run(pb::GetRunRequest { id: "any".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(common::error_reason(&status), "SHUTTING_DOWN");
    assert!(sigterm.elapsed() < Duration::from_secs(2));
    // The call in flight gets its answer.
    let answer = prompting
        .await
        .unwrap()
        .expect("the call in flight finishes")
        .into_inner();
    assert_eq!(answer.text, "late");
    // Then the process exits, well within the grace period.
    let mut process = process;
    let status = tokio::task::spawn_blocking(move || process.terminate())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        sigterm.elapsed() < Duration::from_secs(7),
        "{:?}",
        sigterm.elapsed()
    );

    // The run ExecuteChain waited for was not cancelled by the drain.
    let process = start(url).await;
    let channel = tonic::transport::Channel::from_shared(process.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let listed = pb::run_service_client::RunServiceClient::new(channel)
        .list_runs(pb::ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.runs.len(), 2);
    assert!(
        listed.runs.iter().all(
            |run| [pb::RunStatus::Queued as i32, pb::RunStatus::Running as i32]
                .contains(&run.status)
        ),
        "{:?}",
        listed.runs
    );
}
