//! Templates written to take the server down, against a real `taskloom`
//! process on SQLite and PostgreSQL: runaway loops, huge outputs and memory
//! bombs fail their task with TEMPLATE_LIMIT, and while abusive templates
//! render (four at a time: two runs looping through a heavy template, two
//! callers starting runs whose first template runs out of fuel), every other
//! call keeps answering and other runs keep finishing.

mod common;

use common::chains::goto;

use std::time::{Duration, Instant};

use common::TestServer;
use taskloom_server::proto::taskloom::v1 as pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

api_tests!(
    runaway_templates_fail_their_task,
    abusive_renders_leave_the_server_responsive,
);

/// Two nested `range(100000)` loops: 10^10 iterations without fuel.
const NESTED_LOOPS: &str =
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}";
/// A string doubled 60 times: 2^60 bytes without a memory limit.
const MEMORY_BOMB: &str = "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}";
/// About 1.8 million template instructions: within the default fuel, and
/// a few hundred milliseconds of CPU per render.
const HEAVY: &str =
    "{% for i in range(600) %}{% for j in range(1000) %}{% endfor %}{% endfor %}{{ input }}";

fn text(value: &str) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::Text(value.to_string())),
    }
}

fn start_input(value: &str) -> Option<pb::start_run_request::RunInput> {
    Some(pb::start_run_request::RunInput::TypedInput(text(value)))
}

fn execute_input(value: &str) -> Option<pb::execute_chain_request::RunInput> {
    Some(pb::execute_chain_request::RunInput::TypedInput(text(value)))
}

fn noop(id: &str, template: &str, next: Option<&str>) -> pb::Task {
    pb::Task {
        id: id.into(),
        handler: "noop".into(),
        prompt_template: template.into(),
        transition: next.map(|next| pb::Transition {
            branches: vec![pb::Branch {
                operator: "default".into(),
                goto: goto(next),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn execute(server: &TestServer, chain: pb::Chain) -> pb::Run {
    server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(chain),
            run_input: execute_input("hi"),
            wait_timeout: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .expect("ExecuteChain")
        .into_inner()
        .run
        .expect("run")
}

async fn assert_serving(server: &TestServer) {
    let status = HealthClient::new(server.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health check")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
}

async fn runaway_templates_fail_their_task(server: TestServer) {
    let cases = [
        (NESTED_LOOPS, "ran out of fuel"),
        ("{{ 'x' * 100000000 }}", "rendered more than 1048576 bytes"),
        (
            "{% for i in range(100000) %}{{ 'x' * 100000000 }}{% endfor %}",
            "rendered more than 1048576 bytes",
        ),
        (MEMORY_BOMB, "MiB of memory"),
    ];
    for (index, (template, limit)) in cases.into_iter().enumerate() {
        // Once on the entry task (rendered when the run starts), once on a
        // later one (rendered when the task before it completes).
        for entry in [true, false] {
            let tasks = if entry {
                vec![noop("bomb", template, None)]
            } else {
                vec![
                    noop("first", "{{ input }}", Some("bomb")),
                    noop("bomb", template, None),
                ]
            };
            let chain = pb::Chain {
                id: format!("runaway-{index}-{entry}"),
                tasks,
                ..Default::default()
            };
            let started = Instant::now();
            let run = execute(&server, chain).await;
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{template}: took {:?}",
                started.elapsed()
            );
            assert_eq!(run.status, pb::RunStatus::Failed as i32, "{template}");
            let error = run.error.expect("run error");
            assert_eq!(error.reason, "TEMPLATE_LIMIT", "{template}: {error:?}");
            assert_eq!(error.task_id, "bomb");
            assert!(
                error
                    .message
                    .starts_with("task bomb: prompt_template: template limit exceeded: ")
                    && error.message.contains(limit),
                "{template}: {}",
                error.message
            );
        }
    }
    // A task whose template never renders, with `on_failure` pointing back
    // at itself, ends the run instead of going round inside one decision.
    let mut looping = noop("again", "{{ nothing.here }}", None);
    looping.transition = Some(pb::Transition {
        on_failure: "again".into(),
        ..Default::default()
    });
    let run = execute(
        &server,
        pb::Chain {
            id: "self-failing".into(),
            max_steps: 100_000,
            tasks: vec![noop("first", "{{ input }}", Some("again")), looping],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(run.status, pb::RunStatus::Failed as i32);
    let error = run.error.expect("run error");
    assert_eq!(error.reason, "TEMPLATE_ERROR");
    assert!(
        error.message.contains("16 tasks failed to render in a row"),
        "{}",
        error.message
    );
    // A broken template is still a TEMPLATE_ERROR, not a limit.
    let run = execute(
        &server,
        pb::Chain {
            id: "undefined".into(),
            tasks: vec![noop("bad", "{{ nothing.here }}", None)],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(run.error.expect("error").reason, "TEMPLATE_ERROR");
    assert_serving(&server).await;
}

async fn abusive_renders_leave_the_server_responsive(server: TestServer) {
    let mut chains = server.chains();
    // Each step of `spin` renders a heavy template, then goes round again;
    // every `burn` run's first task runs its template out of fuel.
    for (id, task) in [
        ("spin", noop("spin", HEAVY, Some("spin"))),
        ("burn", noop("burn", NESTED_LOOPS, None)),
    ] {
        chains
            .create_chain(pb::CreateChainRequest {
                chain: Some(pb::Chain {
                    id: id.into(),
                    max_steps: 100_000,
                    tasks: vec![task],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("create abusive chain");
    }
    chains
        .create_chain(pb::CreateChainRequest {
            chain: Some(pb::Chain {
                id: "quick".into(),
                tasks: vec![
                    noop("one", "{{ input }}", Some("two")),
                    noop("two", "{% if input %}{{ input | upper }}{% endif %}", None),
                ],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create quick");
    let mut runs = server.runs();
    let mut spinning = Vec::new();
    for _ in 0..2 {
        let run = runs
            .start_run(pb::StartRunRequest {
                chain_id: "spin".into(),
                run_input: start_input("go"),
                ..Default::default()
            })
            .await
            .expect("start spin")
            .into_inner();
        spinning.push(run.id);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut burners = Vec::new();
    for _ in 0..2 {
        let (mut runs, stop) = (server.runs(), stop.clone());
        burners.push(tokio::spawn(async move {
            let mut burnt = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let run = runs
                    .start_run(pb::StartRunRequest {
                        chain_id: "burn".into(),
                        run_input: start_input("go"),
                        ..Default::default()
                    })
                    .await
                    .expect("start burn")
                    .into_inner();
                assert_eq!(run.status, pb::RunStatus::Failed as i32);
                assert_eq!(run.error.expect("error").reason, "TEMPLATE_LIMIT");
                burnt += 1;
            }
            burnt
        }));
    }
    // Let the renders pile up before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut health = HealthClient::new(server.channel.clone());
    let mut info = server.info();
    let mut latencies = Vec::new();
    let mut finished = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let started = Instant::now();
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("health");
        latencies.push(started.elapsed());
        let started = Instant::now();
        info.get_version(pb::GetVersionRequest::default())
            .await
            .expect("version");
        latencies.push(started.elapsed());
        let started = Instant::now();
        runs.get_run(pb::GetRunRequest {
            id: spinning[0].clone(),
        })
        .await
        .expect("get run");
        latencies.push(started.elapsed());
        let started = Instant::now();
        runs.list_runs(pb::ListRunsRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .expect("list runs");
        latencies.push(started.elapsed());
        // Other runs (with templates of their own) keep finishing.
        let started = Instant::now();
        let quick = runs
            .execute_chain(pb::ExecuteChainRequest {
                chain_id: "quick".into(),
                run_input: execute_input("quick"),
                wait_timeout: Some(prost_types::Duration {
                    seconds: 10,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await
            .expect("execute quick")
            .into_inner();
        let run = quick.run.expect("run");
        assert_eq!(run.status, pb::RunStatus::Succeeded as i32, "{run:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a quick run took {:?} beside the abusive renders",
            started.elapsed()
        );
        finished += 1;
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(
        p99 < Duration::from_millis(100),
        "RPC p99 {p99:?} over {} calls while 4 abusive runs rendered",
        latencies.len()
    );
    assert!(finished >= 3, "only {finished} quick runs finished");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for burner in burners {
        let burnt = burner.await.expect("burner");
        assert!(burnt >= 3, "a burner started only {burnt} runs");
    }
    // The abusive runs did render all along.
    for id in &spinning {
        let run = runs
            .get_run(pb::GetRunRequest { id: id.clone() })
            .await
            .expect("get spin")
            .into_inner();
        assert!(run.steps >= 3, "spin run made {} steps", run.steps);
        runs.cancel_run(pb::CancelRunRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("cancel spin");
    }
    let error = runs
        .get_run(pb::GetRunRequest {
            id: "missing".into(),
        })
        .await
        .expect_err("missing run");
    assert_eq!(error.code(), Code::NotFound);
}

/// A server killed while runs render abusive templates comes back serving:
/// their renders happen outside the store, so recovery is not held up.
async fn restart_amid_abusive_renders(database_url: String) {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_taskloom"));
    let start = |url: String| async move {
        let process = tokio::task::spawn_blocking(move || {
            taskloom_testkit::ServerProcess::start(binary, Some(&url), &["--lease-duration", "2s"])
                .expect("start taskloom")
        })
        .await
        .expect("join");
        let channel = tonic::transport::Channel::from_shared(process.addr.clone())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        common::TestServer { process, channel }
    };
    let server = start(database_url.clone()).await;
    server
        .chains()
        .create_chain(pb::CreateChainRequest {
            chain: Some(pb::Chain {
                id: "spin".into(),
                max_steps: 100_000,
                tasks: vec![noop("spin", HEAVY, Some("spin"))],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create spin");
    for _ in 0..4 {
        server
            .runs()
            .start_run(pb::StartRunRequest {
                chain_id: "spin".into(),
                run_input: start_input("go"),
                ..Default::default()
            })
            .await
            .expect("start spin");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(server); // SIGKILL
    let server = start(database_url).await;
    let started = Instant::now();
    assert_serving(&server).await;
    let run = execute(
        &server,
        pb::Chain {
            id: "quick".into(),
            tasks: vec![noop("one", "{% if input %}{{ input }}{% endif %}", None)],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(run.status, pb::RunStatus::Succeeded as i32);
    // Well within the 2 s lease the killed replica's attempts hold.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "serving after a restart took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restart_amid_abusive_renders() {
    let dir = taskloom_testkit::tempfile_dir::TempDir::new().expect("temp dir");
    let url = dir.path().join("taskloom.db").display().to_string();
    restart_amid_abusive_renders(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_amid_abusive_renders() {
    let url = taskloom_testkit::fresh_postgres_database().expect("fresh postgres database");
    restart_amid_abusive_renders(url).await;
}
