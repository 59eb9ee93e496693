//! Store faults heal: a full disk under SQLite, a PostgreSQL restart and
//! lost PostgreSQL connections. While the store cannot write, writes answer
//! `RESOURCE_EXHAUSTED`/`STORAGE_FULL` or `UNAVAILABLE`/`STORE_UNAVAILABLE`
//! (never `INTERNAL`) and health is `NOT_SERVING`; once the store works
//! again the same server process recovers by itself, and every acknowledged
//! run finishes exactly once.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::slow_runs::{check_exactly_once, prepare, wait_all_succeeded, wait_for_hook_calls};
use common::{HookServer, error_reason};
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::{PostgresServer, ServerProcess};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const LEASE: &str = "2s";

async fn start(url: String) -> (ServerProcess, Channel) {
    let process = tokio::task::spawn_blocking(move || {
        ServerProcess::start(
            Path::new(env!("CARGO_BIN_EXE_taskloom")),
            Some(&url),
            &["--lease-duration", LEASE],
        )
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

/// The overall health status ("" service).
async fn health(channel: &Channel) -> ServingStatus {
    let response = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers even while the store is down")
        .into_inner();
    ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown)
}

async fn wait_health(channel: &Channel, want: ServingStatus, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let status = health(channel).await;
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {status:?}, not {want:?}, for {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts a store fault's status: `UNAVAILABLE`/`STORE_UNAVAILABLE` or
/// `RESOURCE_EXHAUSTED`/`STORAGE_FULL`.
#[track_caller]
fn assert_store_fault(status: &tonic::Status) {
    let reason = error_reason(status);
    match status.code() {
        Code::Unavailable => assert_eq!(reason, "STORE_UNAVAILABLE", "{status:?}"),
        Code::ResourceExhausted => assert_eq!(reason, "STORAGE_FULL", "{status:?}"),
        _ => panic!("a store fault answered {status:?}"),
    }
}

fn start_request(prefix: &str, i: usize) -> pb::StartRunRequest {
    pb::StartRunRequest {
        chain_id: "three-steps".into(),
        run_input: Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
            kind: Some(pb::value::Kind::Text(format!("run {i}"))),
        })),
        request_id: format!("{prefix}-{i}"),
        ..Default::default()
    }
}

/// Starts `count` runs; a start that meets a store fault is retried with
/// the same request id until it is acknowledged. Returns the run ids.
async fn start_runs_through_faults(channel: &Channel, prefix: &str, count: usize) -> Vec<String> {
    let mut runs = pb::run_service_client::RunServiceClient::new(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ids = Vec::new();
    for i in 0..count {
        loop {
            match runs.start_run(start_request(prefix, i)).await {
                Ok(run) => {
                    ids.push(run.into_inner().id);
                    break;
                }
                Err(status) => {
                    assert_store_fault(&status);
                    assert!(Instant::now() < deadline, "run {i} was never started");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    ids
}

fn filler_chain(i: usize) -> pb::CreateChainRequest {
    pb::CreateChainRequest {
        chain: Some(pb::Chain {
            id: format!("filler-{i}"),
            // Incompressible-ish text, so every chain takes real pages.
            description: (0..8 * 1024)
                .map(|n| char::from(b'a' + ((n * 7 + i * 13) % 26) as u8))
                .collect(),
            tasks: vec![pb::Task {
                id: "only".into(),
                handler: "noop".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

/// A small tmpfs the test fills up and frees again. Mounting needs root
/// (CI runs as root); elsewhere the SQLite test is skipped with a note.
struct SmallDisk {
    dir: PathBuf,
    ballast: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = std::env::temp_dir().join(format!("taskloom-full-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            let _ = std::fs::remove_dir(&dir);
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must be able to mount a tmpfs (it runs as root)"
            );
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let ballast = dir.join("ballast");
        Some(SmallDisk { dir, ballast })
    }

    /// Takes every free byte.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(&self.ballast).unwrap();
        let chunk = vec![0x5a_u8; 64 * 1024];
        loop {
            if let Err(error) = file.write_all(&chunk) {
                assert_eq!(error.raw_os_error(), Some(28), "ENOSPC, not {error}");
                break;
            }
        }
        // Any partial page left fits in 4 KiB steps.
        let small = vec![0x5a_u8; 512];
        while file.write_all(&small).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(&self.ballast).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_disk_heals() {
    let Some(disk) = SmallDisk::mount("16m") else {
        return;
    };
    let hook = HookServer::start(200, r#"{"ok": true}"#, Duration::from_millis(300)).await;
    let (_server, channel) = start(disk.dir.join("taskloom.db").display().to_string()).await;
    prepare(channel.clone(), &hook.url).await;
    let before = start_runs_through_faults(&channel, "before", 20).await;
    wait_for_hook_calls(&hook, 10).await;

    disk.fill();
    let mut chains = pb::chain_service_client::ChainServiceClient::new(channel.clone());
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..1000 {
        match chains.create_chain(filler_chain(i)).await {
            Ok(chain) => acknowledged.push(chain.into_inner().id),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("a write failed on the full disk");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_reason(&status), "STORAGE_FULL", "{status:?}");
    // Starting a run is refused the same way, never as INTERNAL.
    let mut runs = pb::run_service_client::RunServiceClient::new(channel.clone());
    let status = runs
        .start_run(start_request("refused", 0))
        .await
        .expect_err("no room for a run");
    assert_store_fault(&status);
    // Reads go on.
    chains
        .get_chain(pb::GetChainRequest {
            id: "three-steps".into(),
            ..Default::default()
        })
        .await
        .expect("reads work on a full disk");
    wait_health(&channel, ServingStatus::NotServing, Duration::from_secs(10)).await;
    // It stays full (the health probe cannot write either).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(health(&channel).await, ServingStatus::NotServing);

    disk.free();
    wait_health(&channel, ServingStatus::Serving, Duration::from_secs(20)).await;
    chains
        .create_chain(filler_chain(100_000))
        .await
        .expect("writes work again without a restart");
    for id in &acknowledged {
        chains
            .get_chain(pb::GetChainRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("acknowledged chain {id} lost: {status:?}"));
    }
    let after = start_runs_through_faults(&channel, "after", 5).await;
    let all: Vec<String> = before.into_iter().chain(after).collect();
    wait_all_succeeded(&channel, &all, Duration::from_secs(60)).await;
    let expired = check_exactly_once(&channel, &all, &hook).await;
    assert_eq!(
        expired, 0,
        "outcomes met during the fault were written later, not re-run"
    );
}

/// Two replicas on a private PostgreSQL that is stopped while runs are in
/// flight and started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_heals() {
    let postgres = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .unwrap()
        .expect("private postgres");
    let hook = HookServer::start(200, r#"{"ok": true}"#, Duration::from_millis(300)).await;
    let (_a, channel_a) = start(postgres.url()).await;
    let (_b, channel_b) = start(postgres.url()).await;
    prepare(channel_a.clone(), &hook.url).await;
    let before = start_runs_through_faults(&channel_a, "before", 30).await;
    wait_for_hook_calls(&hook, 10).await;

    let postgres = tokio::task::spawn_blocking(move || {
        postgres.stop().expect("stop postgres");
        postgres
    })
    .await
    .unwrap();
    let mut runs = pb::run_service_client::RunServiceClient::new(channel_b.clone());
    let status = runs
        .start_run(start_request("refused", 0))
        .await
        .expect_err("no database, no run");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(error_reason(&status), "STORE_UNAVAILABLE", "{status:?}");
    wait_health(
        &channel_a,
        ServingStatus::NotServing,
        Duration::from_secs(15),
    )
    .await;
    wait_health(
        &channel_b,
        ServingStatus::NotServing,
        Duration::from_secs(15),
    )
    .await;

    let postgres = tokio::task::spawn_blocking(move || {
        postgres.start_again().expect("start postgres again");
        postgres
    })
    .await
    .unwrap();
    wait_health(&channel_a, ServingStatus::Serving, Duration::from_secs(20)).await;
    wait_health(&channel_b, ServingStatus::Serving, Duration::from_secs(20)).await;
    let after = start_runs_through_faults(&channel_b, "after", 5).await;
    let all: Vec<String> = before.into_iter().chain(after).collect();
    wait_all_succeeded(&channel_a, &all, Duration::from_secs(90)).await;
    // A replica whose connection attempts outlast the outage sees no
    // fault, so its sweeper may expire the other's leases: a task may run
    // again, but only after its lease expired.
    check_exactly_once(&channel_b, &all, &hook).await;
    assert_signalled_across_replicas(&channel_a, &channel_b).await;
    drop(postgres);
}

/// Every connection of two replicas is terminated (`pg_terminate_backend`)
/// while a read waits on a lock and runs are in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lost_connections_heal() {
    use sqlx::Connection;

    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let hook = HookServer::start(200, r#"{"ok": true}"#, Duration::from_millis(300)).await;
    let (_a, channel_a) = start(url.clone()).await;
    let (_b, channel_b) = start(url.clone()).await;
    prepare(channel_a.clone(), &hook.url).await;
    let before = start_runs_through_faults(&channel_a, "before", 30).await;
    wait_for_hook_calls(&hook, 10).await;

    // A read that is in flight when its connection is terminated: it waits
    // on a lock this test holds.
    let mut dba = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut lock = dba.begin().await.unwrap();
    sqlx::query("LOCK TABLE chain_heads IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let waiting = {
        let mut chains = pb::chain_service_client::ChainServiceClient::new(channel_b.clone());
        tokio::spawn(async move {
            chains
                .list_chains(pb::ListChainsRequest::default())
                .await
                .map(|_| ())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut *lock)
    .await
    .unwrap();
    assert!(
        terminated.len() >= 3,
        "the replicas' connections: {terminated:?}"
    );
    lock.rollback().await.unwrap();
    let status = waiting
        .await
        .unwrap()
        .expect_err("the read lost its connection");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(error_reason(&status), "STORE_UNAVAILABLE", "{status:?}");

    // The same processes go on: new connections, LISTEN again.
    wait_health(&channel_a, ServingStatus::Serving, Duration::from_secs(20)).await;
    wait_health(&channel_b, ServingStatus::Serving, Duration::from_secs(20)).await;
    let after = start_runs_through_faults(&channel_b, "after", 5).await;
    let all: Vec<String> = before.into_iter().chain(after).collect();
    wait_all_succeeded(&channel_a, &all, Duration::from_secs(90)).await;
    // A replica that met no fault itself may expire the other's leases: a
    // task may run again, but only after its lease expired.
    check_exactly_once(&channel_b, &all, &hook).await;
    assert_signalled_across_replicas(&channel_a, &channel_b).await;
}

/// A task whose own read of the store (its hook) meets a fault waits for
/// the store and then runs: an outage delays work, it never fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_read_through_a_lost_connection_waits() {
    use sqlx::Connection;

    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let hook = HookServer::start(200, r#"{"ok": true}"#, Duration::ZERO).await;
    let (_server, channel) = start(url.clone()).await;
    prepare(channel.clone(), &hook.url).await;

    // The first task's read of its hook waits on a lock this test holds;
    // then its connection is terminated.
    let mut dba = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut lock = dba.begin().await.unwrap();
    sqlx::query("LOCK TABLE hooks IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let run = start_runs_through_faults(&channel, "read", 1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let reader: i32 = loop {
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query ILIKE '%hooks%'",
        )
        .fetch_optional(&mut *lock)
        .await
        .unwrap();
        if let Some(pid) = waiting {
            break pid;
        }
        assert!(Instant::now() < deadline, "the task never read its hook");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(reader)
        .fetch_one(&mut *lock)
        .await
        .unwrap();
    assert!(terminated);
    lock.rollback().await.unwrap();

    wait_all_succeeded(&channel, &run, Duration::from_secs(30)).await;
    assert_eq!(hook.requests().len(), 3, "each task called its hook once");
}

/// A change made through replica A reaches a watcher on replica B well
/// before B's one-second safety poll: B listens to PostgreSQL again.
async fn assert_signalled_across_replicas(channel_a: &Channel, channel_b: &Channel) {
    let mut runs_a = pb::run_service_client::RunServiceClient::new(channel_a.clone());
    let mut runs_b = pb::run_service_client::RunServiceClient::new(channel_b.clone());
    let run = runs_a
        .start_run(pb::StartRunRequest {
            chain: Some(pb::Chain {
                id: "approve".into(),
                tasks: vec![pb::Task {
                    id: "ask".into(),
                    handler: "human_input".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            run_input: Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
                kind: Some(pb::value::Kind::Text("ok?".into())),
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
    let mut seen = 0;
    while seen < run.last_event_seq {
        seen = stream.message().await.unwrap().unwrap().seq;
    }
    let mut latencies = Vec::new();
    for _ in 0..3 {
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
        assert_eq!(event.r#type, pb::RunEventType::RunPaused as i32);
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
}
