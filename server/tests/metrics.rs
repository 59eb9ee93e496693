//! `--metrics-listen`, black box: a real server process serves Prometheus
//! text on its own HTTP port, and the families move with the runs, attempts
//! and provider calls a test makes over gRPC (with the fake
//! OpenAI-compatible provider). `/healthz` is 200 while the process is up;
//! `/readyz` is 200 only while the store can write and the server is not
//! draining. When `promtool` is installed (the `metrics` stage of
//! `tests/run` installs it), each scrape must also pass `promtool check
//! metrics`.

mod common;

use common::chains::{task, text_value};

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::TestServer;
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::fake_llm::{FakeLlm, Reply};
use taskloom_testkit::{PostgresServer, ServerProcess};

api_tests!(
    METRICS_ARGS; sqlite, postgres;
    families_move_with_runs_attempts_and_provider_calls,
    readyz_turns_503_when_draining_begins,
);

const METRICS_ARGS: &[&str] = &["--metrics-listen", "127.0.0.1:0"];

api_tests!(
    SHORT_LEASE_ARGS; sqlite_short_leases, postgres_short_leases;
    worker_sessions_lease_expiries_and_fencing_are_counted,
);

api_tests!(
    METRICS_ARGS; sqlite_queues, postgres_queues;
    queue_gauges_follow_ready_work,
);

/// Leases that expire within a test.
const SHORT_LEASE_ARGS: &[&str] = &["--metrics-listen", "127.0.0.1:0", "--lease-duration", "1s"];

const ANNOUNCEMENT: &str = "taskloom metrics listening on ";
const MODEL: &str = "metered-model";
const BROKEN_MODEL: &str = "broken-model";
const PATIENT_MODEL: &str = "patient-model";

/// The metrics endpoint's base URL, as the server announced it.
async fn metrics_url(process: &ServerProcess) -> String {
    let addr =
        tokio::task::block_in_place(|| process.printed(ANNOUNCEMENT, Duration::from_secs(10)))
            .expect("the server announces its metrics address");
    format!("http://{}", addr.trim())
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the metrics port answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// A scrape of `/metrics`, checked by promtool when it is installed.
async fn scrape(base: &str) -> Exposition {
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    promtool_check(&text);
    Exposition::parse(&text)
}

/// `promtool check metrics` on `text`: a real consumer of the exposition.
/// Skipped when promtool is not installed, unless `TASKLOOM_REQUIRE_PROMTOOL`
/// is set (the `metrics` stage of `tests/run` sets it).
fn promtool_check(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            assert!(
                std::env::var_os("TASKLOOM_REQUIRE_PROMTOOL").is_none(),
                "promtool is required: {error}"
            );
            eprintln!("promtool not installed: the scrape is not checked by it");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The samples of a scrape, with the type of each family.
struct Exposition {
    text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(declaration) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declaration.split_once(' ').unwrap();
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap();
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').unwrap();
                    let labels = body
                        .split("\",")
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (key, value) = pair.split_once("=\"").unwrap();
                            (key.to_string(), value.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            samples.push((name, labels, value));
        }
        Exposition {
            text: text.to_string(),
            samples,
            types,
        }
    }

    /// The sum of the samples of `name` carrying every label of `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(sample, have, _)| {
                sample == name
                    && labels
                        .iter()
                        .all(|(key, value)| have.get(*key).map(String::as_str) == Some(*value))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|(sample, have, _)| {
            sample == name
                && labels
                    .iter()
                    .all(|(key, value)| have.get(*key).map(String::as_str) == Some(*value))
        })
    }

    fn kind(&self, family: &str) -> &str {
        self.types
            .get(family)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no TYPE for {family}:\n{}", self.text))
    }
}

fn prompt_task(model: &str) -> pb::Task {
    let mut say = task("say", "raw_string", vec![]);
    say.prompt_template = "Say something.".into();
    say.execute_config = Some(pb::ExecuteConfig {
        model: model.into(),
        ..Default::default()
    });
    say
}

async fn execute(server: &TestServer, chain_id: &str, only: pb::Task) -> pb::Run {
    server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(pb::Chain {
                id: chain_id.into(),
                tasks: vec![only],
                ..Default::default()
            }),
            run_input: Some(pb::execute_chain_request::RunInput::TypedInput(text_value(
                "go",
            ))),
            ..Default::default()
        })
        .await
        .expect("execute chain")
        .into_inner()
        .run
        .expect("the run")
}

async fn families_move_with_runs_attempts_and_provider_calls(server: TestServer) {
    let base = metrics_url(&server.process).await;
    let fake = FakeLlm::start().await;
    fake.script(MODEL, Reply::text("an answer").usage(11, 3));
    fake.script(BROKEN_MODEL, Reply::error(400, "no such thing"));
    server.add_fake_backend(&fake.url()).await;

    let before = scrape(&base).await;
    assert_eq!(before.value("taskloom_build_info", &[]), 1.0);
    assert_eq!(
        before.value("taskloom_runs_started_total", &[("chain", "metered")]),
        0.0
    );

    let succeeded = execute(&server, "metered", prompt_task(MODEL)).await;
    assert_eq!(succeeded.status, pb::RunStatus::Succeeded as i32);
    let mut boom = task("boom", "raise_error", vec![]);
    boom.error_message = "broken on purpose".into();
    let failed = execute(&server, "failing", boom).await;
    assert_eq!(failed.status, pb::RunStatus::Failed as i32);
    let provider_failed = execute(&server, "unserved", prompt_task(BROKEN_MODEL)).await;
    assert_eq!(provider_failed.status, pb::RunStatus::Failed as i32);
    // Asked to wait once, the call is throttled, then answers.
    fake.script(
        PATIENT_MODEL,
        Reply::error(429, "slow down").retry_after("1"),
    );
    fake.script(PATIENT_MODEL, Reply::text("at last").usage(2, 1));
    let waited = execute(&server, "patient", prompt_task(PATIENT_MODEL)).await;
    assert_eq!(waited.status, pb::RunStatus::Succeeded as i32);
    // Watching the finished run delivers its stored events.
    let mut watch = server
        .runs()
        .watch_run(pb::WatchRunRequest {
            run_id: succeeded.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut watched = 0;
    while let Some(event) = watch.message().await.unwrap() {
        watched += 1;
        if event.r#type == pb::RunEventType::RunSucceeded as i32 {
            break;
        }
    }

    let after = scrape(&base).await;
    let counted = |name: &str, labels: &[(&str, &str)]| after.value(name, labels);
    // Runs, by chain and status.
    assert_eq!(after.kind("taskloom_runs_started_total"), "counter");
    for chain in ["metered", "failing", "unserved", "patient"] {
        assert_eq!(
            counted("taskloom_runs_started_total", &[("chain", chain)]),
            1.0,
            "{chain}:\n{}",
            after.text
        );
    }
    assert_eq!(
        counted(
            "taskloom_runs_finished_total",
            &[("chain", "metered"), ("status", "succeeded")]
        ),
        1.0
    );
    assert_eq!(
        counted(
            "taskloom_runs_finished_total",
            &[("chain", "failing"), ("status", "failed")]
        ),
        1.0
    );
    assert!(!after.has(
        "taskloom_runs_finished_total",
        &[("chain", "failing"), ("status", "succeeded")]
    ));
    assert_eq!(after.kind("taskloom_run_duration_seconds"), "histogram");
    assert_eq!(
        counted(
            "taskloom_run_duration_seconds_count",
            &[("chain", "metered"), ("status", "succeeded")]
        ),
        1.0
    );
    assert_eq!(
        counted(
            "taskloom_run_duration_seconds_bucket",
            &[
                ("chain", "metered"),
                ("status", "succeeded"),
                ("le", "+Inf")
            ]
        ),
        1.0
    );
    // Attempts, by handler and outcome (a throttled attempt waits, it does
    // not fail).
    assert_eq!(
        counted(
            "taskloom_attempts_total",
            &[("handler", "raw_string"), ("outcome", "succeeded")]
        ),
        2.0
    );
    assert!(
        counted(
            "taskloom_attempts_total",
            &[("handler", "raise_error"), ("outcome", "failed")]
        ) >= 1.0
    );
    assert!(
        counted(
            "taskloom_attempts_total",
            &[("handler", "raw_string"), ("outcome", "failed")]
        ) >= 1.0
    );
    // Provider calls, tokens and errors, by backend and model.
    let metered = [("backend", "fake"), ("model", MODEL)];
    assert_eq!(counted("taskloom_provider_requests_total", &metered), 1.0);
    assert_eq!(
        counted("taskloom_provider_input_tokens_total", &metered),
        11.0
    );
    assert_eq!(
        counted("taskloom_provider_output_tokens_total", &metered),
        3.0
    );
    assert_eq!(
        counted("taskloom_provider_request_duration_seconds_count", &metered),
        1.0
    );
    assert_eq!(
        counted("taskloom_provider_errors_total", &metered),
        0.0,
        "no error for the model that answered"
    );
    let broken = [("backend", "fake"), ("model", BROKEN_MODEL)];
    assert!(counted("taskloom_provider_errors_total", &broken) >= 1.0);
    assert!(
        counted(
            "taskloom_provider_errors_total",
            &[("model", BROKEN_MODEL), ("status", "400")]
        ) >= 1.0
    );
    let patient = [("backend", "fake"), ("model", PATIENT_MODEL)];
    assert_eq!(counted("taskloom_provider_requests_total", &patient), 2.0);
    assert_eq!(
        counted(
            "taskloom_provider_errors_total",
            &[("model", PATIENT_MODEL), ("status", "429")]
        ),
        1.0
    );
    assert_eq!(
        counted("taskloom_provider_input_tokens_total", &patient),
        2.0
    );
    assert!(counted("taskloom_throttled_total", &[("reason", "retry_after")]) >= 1.0);
    // Dispatch and the store's transactions.
    assert!(
        counted(
            "taskloom_dispatch_latency_seconds_count",
            &[("queue", "internal")]
        ) >= 3.0,
        "{}",
        after.text
    );
    assert!(
        counted(
            "taskloom_store_transaction_duration_seconds_count",
            &[("outcome", "ok")]
        ) >= 3.0
    );
    // Events sent to the watcher.
    assert!(watched >= 2);
    assert_eq!(
        counted("taskloom_events_delivered_total", &[]),
        f64::from(watched)
    );
    assert_eq!(
        counted(
            "taskloom_events_delivered_total",
            &[("type", "run_succeeded")]
        ),
        1.0
    );
    // Gauges read at the scrape.
    assert_eq!(after.kind("taskloom_worker_sessions"), "gauge");
    assert_eq!(counted("taskloom_worker_sessions", &[]), 0.0);
    assert_eq!(counted("taskloom_worker_free_slots", &[]), 0.0);
    // No run or attempt id is ever a label value.
    for run in [&succeeded, &failed, &provider_failed, &waited] {
        assert!(!after.text.contains(&run.id), "a run id leaked");
    }

    let (status, body) = get(&format!("{base}/healthz")).await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!((status, body.trim()), (200, "ready"));
    for path in ["/", "/metric", "/metrics/x", "/readyz/", "/debug/pprof"] {
        let (status, _) = get(&format!("{base}{path}")).await;
        assert_eq!(status, 404, "{path}");
    }
}

/// SIGTERM starts the drain: `/readyz` turns 503 while a call in flight
/// keeps the process up, and `/healthz` stays 200.
async fn readyz_turns_503_when_draining_begins(server: TestServer) {
    let base = metrics_url(&server.process).await;
    let fake = FakeLlm::start().await;
    fake.script(MODEL, Reply::text("slow").delay(Duration::from_secs(4)));
    server.add_fake_backend(&fake.url()).await;
    assert_eq!(get(&format!("{base}/readyz")).await.0, 200);

    // A unary call in flight holds the drain open (up to the grace period).
    let mut backends = server.backends();
    let in_flight = tokio::spawn(async move {
        backends
            .execute_prompt(pb::ExecutePromptRequest {
                prompt: "hold on".into(),
                models: vec![MODEL.into()],
                ..Default::default()
            })
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.calls_in_flight() == 0 {
        assert!(
            Instant::now() < deadline,
            "the call never reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = server.process.pid().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());

    let deadline = Instant::now() + Duration::from_secs(3);
    let (status, body) = loop {
        let (status, body) = get(&format!("{base}/readyz")).await;
        if status != 200 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(!body.trim().is_empty());
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    assert_eq!(fake.calls_in_flight(), 1, "still draining");
    let answer = in_flight
        .await
        .unwrap()
        .expect("the call in flight finishes");
    assert_eq!(answer.into_inner().text, "slow");
}

/// Without `--metrics-listen` nothing is announced or served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_off_by_default() {
    let binary = Path::new(env!("CARGO_BIN_EXE_taskloom"));
    let plain = tokio::task::spawn_blocking(move || {
        ServerProcess::start(binary, None, &[]).expect("start taskloom")
    })
    .await
    .unwrap();
    let announced =
        tokio::task::block_in_place(|| plain.printed(ANNOUNCEMENT, Duration::from_millis(500)));
    assert!(announced.is_err(), "{announced:?}");
}

/// While PostgreSQL is down the store cannot write: `/readyz` is 503 (and
/// store errors are counted); once it is back, 200 again, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_store() {
    let postgres = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .unwrap()
        .expect("private postgres");
    let url = postgres.url();
    let binary = Path::new(env!("CARGO_BIN_EXE_taskloom"));
    let process = tokio::task::spawn_blocking(move || {
        ServerProcess::start(binary, Some(&url), METRICS_ARGS).expect("start taskloom")
    })
    .await
    .unwrap();
    let base = metrics_url(&process).await;
    assert_eq!(get(&format!("{base}/readyz")).await.0, 200);

    let postgres = tokio::task::spawn_blocking(move || {
        postgres.stop().expect("stop postgres");
        postgres
    })
    .await
    .unwrap();
    // A write meets the fault; the health monitor then probes the store.
    let channel = tonic::transport::Channel::from_shared(process.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut chains = pb::chain_service_client::ChainServiceClient::new(channel);
    let status = chains
        .create_chain(pb::CreateChainRequest {
            chain: Some(common::chains::noop_chain("refused", 1)),
            request_id: String::new(),
        })
        .await
        .expect_err("no database, no write");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    wait_ready(&base, 503, Duration::from_secs(15)).await;
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    let scraped = scrape(&base).await;
    assert!(
        scraped.value("taskloom_store_errors_total", &[("kind", "unavailable")]) >= 1.0,
        "{}",
        scraped.text
    );

    let _postgres = tokio::task::spawn_blocking(move || {
        postgres.start_again().expect("start postgres");
        postgres
    })
    .await
    .unwrap();
    wait_ready(&base, 200, Duration::from_secs(30)).await;
}

async fn wait_ready(base: &str, want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = get(&format!("{base}/readyz")).await;
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status} ({body}), not {want}, for {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A worker session that takes a lease and never renews it: the session
/// and its free slots show, the lease expires, and completing under the
/// expired lease's token is a fencing rejection.
async fn worker_sessions_lease_expiries_and_fencing_are_counted(server: TestServer) {
    use pb::server_message::Msg as ServerMsg;
    use pb::worker_message::Msg as WorkerMsg;
    let base = metrics_url(&server.process).await;
    let idle = scrape(&base).await;
    assert_eq!(idle.value("taskloom_worker_sessions", &[]), 0.0);

    let (outbound, receiver) = tokio::sync::mpsc::channel(16);
    outbound
        .send(pb::WorkerMessage {
            msg: Some(WorkerMsg::Hello(pb::Hello {
                worker_id: "metered-worker".into(),
                name: "metered worker".into(),
                queues: vec!["metered-queue".into()],
                slots: 2,
                sdk_version: "taskloom-rust-tests/0".into(),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    let mut inbound = server
        .workers()
        .connect(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let welcome = inbound.message().await.unwrap().expect("a welcome");
    assert!(matches!(welcome.msg, Some(ServerMsg::Welcome(_))));
    let (offers, mut offered) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(message)) = inbound.message().await {
            match message.msg {
                Some(ServerMsg::Ping(ping)) => {
                    let pong = WorkerMsg::Pong(pb::Pong { nonce: ping.nonce });
                    let _ = outbound.send(pb::WorkerMessage { msg: Some(pong) }).await;
                }
                Some(ServerMsg::Lease(offer)) => {
                    let _ = offers.send(offer);
                }
                _ => {}
            }
        }
    });
    let open = scrape(&base).await;
    assert_eq!(open.value("taskloom_worker_sessions", &[]), 1.0);
    assert_eq!(open.value("taskloom_worker_free_slots", &[]), 2.0);

    server
        .runs()
        .start_run(pb::StartRunRequest {
            chain: Some(pb::Chain {
                id: "remote".into(),
                tasks: vec![pb::Task {
                    id: "work".into(),
                    handler: "worker".into(),
                    queue: "metered-queue".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            run_input: Some(pb::start_run_request::RunInput::TypedInput(text_value("x"))),
            ..Default::default()
        })
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), offered.recv())
        .await
        .expect("an offer in time")
        .expect("an offer");
    let holding = scrape(&base).await;
    assert_eq!(holding.value("taskloom_worker_free_slots", &[]), 1.0);
    assert!(
        holding.value(
            "taskloom_dispatch_latency_seconds_count",
            // Queues are labelled by key: `namespace/queue`.
            &[("queue", "default/metered-queue")]
        ) >= 1.0,
        "{}",
        holding.text
    );

    // Never renewed, the lease expires.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let scraped = scrape(&base).await;
        if scraped.value("taskloom_lease_expiries_total", &[("handler", "worker")]) >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no lease expiry counted:\n{}",
            scraped.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = scrape(&base)
        .await
        .value("taskloom_fencing_rejections_total", &[]);
    let refused = server
        .workers()
        .complete_task(pb::CompleteTaskRequest {
            attempt_id: first.attempt_id.clone(),
            lease_token: first.lease_token.clone(),
            output: Some(text_value("too late")),
        })
        .await
        .expect_err("the expired lease's token is stale");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    let after = scrape(&base)
        .await
        .value("taskloom_fencing_rejections_total", &[]);
    assert!(after >= before + 1.0, "{before} then {after}");
}

/// Work waiting on a queue no worker serves shows in the queue gauges, and
/// they fall back to 0 once it is gone.
async fn queue_gauges_follow_ready_work(server: TestServer) {
    let base = metrics_url(&server.process).await;
    let run = server
        .runs()
        .start_run(pb::StartRunRequest {
            chain: Some(pb::Chain {
                id: "waiting".into(),
                tasks: vec![pb::Task {
                    id: "work".into(),
                    handler: "worker".into(),
                    queue: "unserved-queue".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            run_input: Some(pb::start_run_request::RunInput::TypedInput(text_value("x"))),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let waiting = scrape(&base).await;
    let queue = [("queue", "default/unserved-queue")];
    assert_eq!(waiting.kind("taskloom_queue_depth"), "gauge");
    assert_eq!(
        waiting.value("taskloom_queue_depth", &queue),
        1.0,
        "{}",
        waiting.text
    );
    assert!(
        waiting.value("taskloom_queue_oldest_ready_age_seconds", &queue) >= 1.0,
        "{}",
        waiting.text
    );
    server
        .runs()
        .cancel_run(pb::CancelRunRequest {
            id: run.id,
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scraped = scrape(&base).await;
        if scraped.value("taskloom_queue_depth", &queue) == 0.0 {
            assert_eq!(
                scraped.value("taskloom_queue_oldest_ready_age_seconds", &queue),
                0.0
            );
            break;
        }
        assert!(Instant::now() < deadline, "{}", scraped.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
