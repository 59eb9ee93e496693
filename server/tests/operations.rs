//! OperationsService against real server processes: queue figures, pausing
//! and resuming queues (on one server and across two PostgreSQL replicas),
//! the replica registry, draining a replica (DrainReplica and SIGTERM) and
//! failover after `kill -9`, where no run may wait for a lease to expire.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::slow_runs::{
    check_exactly_once, prepare, start_runs, wait_all_succeeded, wait_for_hook_calls,
};
use common::{Backend, HookServer, TestServer};
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::ServerProcess;
use tonic::Code;
use tonic::transport::Channel;

type Operations = pb::operations_service_client::OperationsServiceClient<Channel>;

/// Leases long enough that a run which waited for one to expire cannot
/// finish within the test's deadlines.
const LONG_LEASE: &str = "60s";

fn operations(channel: &Channel) -> Operations {
    pb::operations_service_client::OperationsServiceClient::new(channel.clone())
}

async fn replica(url: &str, args: &[&str]) -> (ServerProcess, Channel) {
    let url = url.to_string();
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let process = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ServerProcess::start(Path::new(env!("CARGO_BIN_EXE_taskloom")), Some(&url), &args)
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

async fn instance_id(channel: &Channel) -> String {
    pb::info_service_client::InfoServiceClient::new(channel.clone())
        .get_version(pb::GetVersionRequest {})
        .await
        .unwrap()
        .into_inner()
        .instance_id
}

async fn queue(channel: &Channel, name: &str) -> Option<pb::Queue> {
    operations(channel)
        .list_queues(pb::ListQueuesRequest {})
        .await
        .unwrap()
        .into_inner()
        .queues
        .into_iter()
        .find(|queue| queue.name == name)
}

async fn pause(channel: &Channel, name: &str) -> pb::Queue {
    operations(channel)
        .pause_queue(pb::PauseQueueRequest {
            name: name.into(),
            request_id: format!("pause-{name}"),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn resume(channel: &Channel, name: &str) -> pb::Queue {
    operations(channel)
        .resume_queue(pb::ResumeQueueRequest {
            name: name.into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn replicas(channel: &Channel) -> Vec<pb::Replica> {
    operations(channel)
        .list_replicas(pb::ListReplicasRequest {})
        .await
        .unwrap()
        .into_inner()
        .replicas
}

async fn run_events(channel: &Channel, run_id: &str) -> Vec<pb::RunEvent> {
    pb::run_service_client::RunServiceClient::new(channel.clone())
        .list_run_events(pb::ListRunEventsRequest {
            run_id: run_id.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

fn count(events: &[pb::RunEvent], kind: pb::RunEventType) -> usize {
    events.iter().filter(|e| e.r#type == kind as i32).count()
}

/// Whether the process has exited (it stays a zombie until reaped).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_show_their_figures_and_a_paused_queue_offers_nothing() {
    let hook = HookServer::start(200, r#"{"ok": true}"#, Duration::from_millis(50)).await;
    let server = TestServer::start_with(Backend::Sqlite, &["--queue-concurrency", "jobs=3"]).await;
    let channel = server.channel.clone();
    prepare(channel.clone(), &hook.url).await;

    // A capped queue is listed before it has work.
    let jobs = queue(&channel, "jobs").await.expect("capped queue listed");
    assert_eq!(jobs.concurrency_cap, 3);
    assert_eq!((jobs.ready, jobs.leased, jobs.paused), (0, 0, false));

    let paused = pause(&channel, "internal").await;
    assert!(paused.paused);
    assert_eq!(paused.paused_by, "local");
    assert!(paused.pause_time.is_some());
    // Idempotent: the first pause stays in force.
    let again = pause(&channel, "internal").await;
    assert_eq!(again.pause_time, paused.pause_time);

    let run_ids = start_runs(std::slice::from_ref(&channel), 5).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(hook.requests().is_empty(), "a paused queue offers nothing");
    let internal = queue(&channel, "internal").await.expect("internal listed");
    assert_eq!(internal.ready, 5, "{internal:?}");
    assert_eq!(internal.leased, 0);
    assert!(internal.paused);
    let age = internal.oldest_ready_age.expect("oldest ready age");
    assert!(age.seconds >= 1, "{age:?}");

    let resumed = resume(&channel, "internal").await;
    assert!(!resumed.paused);
    assert!(resumed.paused_by.is_empty() && resumed.pause_time.is_none());
    // Resuming again changes nothing.
    assert!(!resume(&channel, "internal").await.paused);
    wait_all_succeeded(&channel, &run_ids, Duration::from_secs(30)).await;
    let internal = queue(&channel, "internal").await;
    assert!(
        internal
            .as_ref()
            .is_none_or(|q| q.ready == 0 && q.leased == 0 && !q.paused),
        "{internal:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_operations_requests_are_refused() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut ops = operations(&server.channel);
    for name in ["", "no spaces", "x/y"] {
        let status = ops
            .pause_queue(pb::PauseQueueRequest {
                name: name.into(),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        common::assert_invalid(status, &["name"]);
    }
    let status = ops
        .resume_queue(pb::ResumeQueueRequest {
            name: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    common::assert_invalid(status, &["name"]);
    let status = ops
        .drain_replica(pb::DrainReplicaRequest {
            id: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    common::assert_invalid(status, &["id"]);
    let status = ops
        .drain_replica(pb::DrainReplicaRequest {
            id: "no-such-replica".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // A queue nobody has used may be paused ahead of its work.
    let queue = pause(&server.channel, "not-used-yet").await;
    assert!(queue.paused);
    assert_eq!((queue.ready, queue.leased), (0, 0));
    // The one replica lists itself.
    let listed = replicas(&server.channel).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, instance_id(&server.channel).await);
    assert_eq!(listed[0].state, pb::ReplicaState::Active as i32);
}

/// Pausing on one PostgreSQL replica stops offers on both; the lease in
/// flight finishes; resuming on the other lets the work flow; both actions
/// are in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pause_holds_both_replicas_and_is_audited() {
    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let hook = HookServer::start(200, r#"{"ok": true}"#, Duration::from_millis(2500)).await;
    let (_a, channel_a) = replica(&url, &[]).await;
    let (_b, channel_b) = replica(&url, &[]).await;
    prepare(channel_a.clone(), &hook.url).await;

    // One run in flight: its first task is at the hook when the queue is
    // paused.
    let first = start_runs(std::slice::from_ref(&channel_b), 1).await;
    wait_for_hook_calls(&hook, 1).await;
    pause(&channel_a, "internal").await;
    let paused_on_b = queue(&channel_b, "internal").await.expect("listed on B");
    assert!(
        paused_on_b.paused && paused_on_b.leased == 1,
        "{paused_on_b:?}"
    );

    // Let every replica's copy of the paused queues refresh (eager dispatch
    // follows it; claims read the store).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let more = {
        let mut ids = Vec::new();
        for (i, channel) in [&channel_a, &channel_b]
            .into_iter()
            .cycle()
            .take(10)
            .enumerate()
        {
            let run = pb::run_service_client::RunServiceClient::new(channel.clone())
                .start_run(pb::StartRunRequest {
                    chain_id: "three-steps".into(),
                    run_input: Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
                        kind: Some(pb::value::Kind::Text(format!("paused {i}"))),
                    })),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            ids.push(run.id);
        }
        ids
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hook.requests().len(), 1, "nothing offered while paused");
    let events = run_events(&channel_a, &first[0]).await;
    assert_eq!(
        count(&events, pb::RunEventType::TaskSucceeded),
        1,
        "the lease in flight finished"
    );
    let held = queue(&channel_a, "internal").await.expect("listed");
    assert_eq!((held.ready, held.leased), (11, 0), "{held:?}");

    resume(&channel_b, "internal").await;
    let mut all = first.clone();
    all.extend(more);
    wait_all_succeeded(&channel_a, &all, Duration::from_secs(60)).await;

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let actions: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT action, resource_type, resource_id, actor, outcome FROM audit_events \
         WHERE resource_type = 'queue' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected = |action: &str| {
        (
            action.to_string(),
            "queue".to_string(),
            "internal".to_string(),
            "local".to_string(),
            "OK".to_string(),
        )
    };
    assert_eq!(
        actions,
        vec![expected("PauseQueue"), expected("ResumeQueue")]
    );
    pool.close().await;
}

/// Drains one of two PostgreSQL replicas mid-load, by `DrainReplica` sent
/// to the other one or by SIGTERM: every run finishes, none waited for a
/// lease to expire (leases last a minute), and the drained replica is
/// listed gone.
async fn drain_mid_load(by_signal: bool) {
    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let hook = HookServer::start(200, r#"{"ok": true}"#, Duration::from_millis(300)).await;
    let args = ["--lease-duration", LONG_LEASE, "--shutdown-grace", "5s"];
    let (mut drained, drained_channel) = replica(&url, &args).await;
    let (_survivor, survivor_channel) = replica(&url, &args).await;
    prepare(survivor_channel.clone(), &hook.url).await;
    let drained_id = instance_id(&drained_channel).await;
    let listed = replicas(&survivor_channel).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|r| r.state == pb::ReplicaState::Active as i32)
    );
    let me = listed.iter().find(|r| r.id == drained_id).expect("listed");
    assert_eq!(me.listen_address, format!("127.0.0.1:{}", drained.port));
    assert!(me.start_time.is_some() && me.heartbeat_time.is_some());

    let started = Instant::now();
    let starting = {
        let channels = [survivor_channel.clone(), drained_channel.clone()];
        tokio::spawn(async move { start_runs(&channels, 120).await })
    };
    wait_for_hook_calls(&hook, 60).await;
    if by_signal {
        let pid = drained.pid();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
    } else {
        let replica = operations(&survivor_channel)
            .drain_replica(pb::DrainReplicaRequest {
                id: drained_id.clone(),
                request_id: "drain-1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(replica.state, pb::ReplicaState::Draining as i32);
    }
    let run_ids = starting.await.unwrap();
    assert_eq!(run_ids.len(), 120);
    wait_all_succeeded(&survivor_channel, &run_ids, Duration::from_secs(40)).await;
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "no run waited for a {LONG_LEASE} lease"
    );
    let expired = check_exactly_once(&survivor_channel, &run_ids, &hook).await;
    assert_eq!(expired, 0, "no lease expired");

    // The drained replica stops by itself and is listed gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exited(drained.pid()) {
        assert!(
            Instant::now() < deadline,
            "the drained replica did not exit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = replicas(&survivor_channel)
        .await
        .into_iter()
        .find(|r| r.id == drained_id)
        .expect("a stopped replica stays listed");
    assert_eq!(gone.state, pb::ReplicaState::Gone as i32, "{gone:?}");
    assert!(gone.stop_time.is_some());
    assert_eq!(gone.leases_held, 0);
    if !by_signal {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let (count,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM audit_events WHERE action = 'DrainReplica' \
             AND resource_id = $1 AND request_id = 'drain-1' AND outcome = 'OK'",
        )
        .bind(&drained_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(count, 1, "the drain is audited");
        pool.close().await;
    }
    let _ = drained.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drain_replica_mid_load_hands_everything_over() {
    drain_mid_load(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigterm_mid_load_hands_everything_over() {
    drain_mid_load(true).await;
}

/// `kill -9` of one of two PostgreSQL replicas: the other declares it gone
/// once its heartbeat is older than the replica timeout and releases its
/// leases; its runs resume at once, long before their leases would expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_replica_runs_resume_within_the_replica_timeout() {
    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let hook = HookServer::start(200, r#"{"ok": true}"#, Duration::from_millis(300)).await;
    let args = ["--lease-duration", LONG_LEASE, "--replica-timeout", "3s"];
    let (doomed, doomed_channel) = replica(&url, &args).await;
    let (_survivor, survivor_channel) = replica(&url, &args).await;
    prepare(survivor_channel.clone(), &hook.url).await;
    let doomed_id = instance_id(&doomed_channel).await;
    let starting = {
        let channels = [survivor_channel.clone(), doomed_channel];
        tokio::spawn(async move { start_runs(&channels, 120).await })
    };
    wait_for_hook_calls(&hook, 60).await;
    std::process::Command::new("kill")
        .args(["-KILL", &doomed.pid().to_string()])
        .status()
        .unwrap();
    let killed_at = Instant::now();
    drop(doomed);
    let run_ids = starting.await.unwrap();
    wait_all_succeeded(&survivor_channel, &run_ids, Duration::from_secs(40)).await;
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(30), "runs waited {took:?}");
    let expired = check_exactly_once(&survivor_channel, &run_ids, &hook).await;
    assert!(
        expired > 0,
        "the dead replica held leases, released as expired"
    );
    let gone = replicas(&survivor_channel)
        .await
        .into_iter()
        .find(|r| r.id == doomed_id)
        .expect("the dead replica stays listed");
    assert_eq!(gone.state, pb::ReplicaState::Gone as i32);
    assert_eq!(gone.leases_held, 0);
    // Each run the dead replica held resumed within the replica timeout
    // (plus a heartbeat interval and the check).
    let mut runs = pb::run_service_client::RunServiceClient::new(survivor_channel.clone());
    for run_id in &run_ids {
        let events = run_events(&survivor_channel, run_id).await;
        let Some(expiry) = events
            .iter()
            .position(|e| e.r#type == pb::RunEventType::LeaseExpired as i32)
        else {
            continue;
        };
        let resumed = events[expiry..]
            .iter()
            .find(|e| e.r#type == pb::RunEventType::TaskStarted as i32)
            .expect("resumed");
        let expired_at = events[expiry].time.unwrap();
        let resumed_at = resumed.time.unwrap();
        let waited = (resumed_at.seconds - expired_at.seconds) as f64
            + f64::from(resumed_at.nanos - expired_at.nanos) / 1e9;
        assert!(waited < 2.0, "run {run_id} resumed {waited}s after release");
        let run = runs
            .get_run(pb::GetRunRequest { id: run_id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(run.status, pb::RunStatus::Succeeded as i32);
    }
}

/// A task still running when the grace period ends is handed back (fenced)
/// and run again on the other replica at once: with minute-long leases,
/// every run finishes seconds after the drain, and no lease expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drain_hands_back_what_outlasts_the_grace_period() {
    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let hook = HookServer::start(200, r#"{"ok": true}"#, Duration::from_secs(3)).await;
    let args = ["--lease-duration", LONG_LEASE, "--shutdown-grace", "1s"];
    let (mut drained, drained_channel) = replica(&url, &args).await;
    let (_survivor, survivor_channel) = replica(&url, &args).await;
    prepare(survivor_channel.clone(), &hook.url).await;
    // Started on the replica that drains: it runs their first tasks.
    let run_ids = start_runs(std::slice::from_ref(&drained_channel), 4).await;
    wait_for_hook_calls(&hook, 4).await;
    let drained_at = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &drained.pid().to_string()])
        .status()
        .unwrap();
    wait_all_succeeded(&survivor_channel, &run_ids, Duration::from_secs(40)).await;
    assert!(
        drained_at.elapsed() < Duration::from_secs(25),
        "no run waited for its {LONG_LEASE} lease: {:?}",
        drained_at.elapsed()
    );
    let mut runs = pb::run_service_client::RunServiceClient::new(survivor_channel.clone());
    for run_id in &run_ids {
        let attempts = runs
            .list_run_attempts(pb::ListRunAttemptsRequest {
                run_id: run_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .attempts;
        assert_eq!(attempts.len(), 3, "{attempts:?}");
        assert!(
            attempts.iter().all(|a| a.lease_expiries == 0),
            "handed back, not expired: {attempts:?}"
        );
        let events = run_events(&survivor_channel, run_id).await;
        assert_eq!(count(&events, pb::RunEventType::LeaseExpired), 0);
    }
    // The first task of each run was called twice: on the drained replica
    // (cut at the end of the grace period) and again on the survivor.
    assert_eq!(hook.requests().len(), 4 * 3 + 4);
    let _ = drained.terminate();
}
