//! Workers as real processes (`taskloom-test-worker`) against real server
//! processes, killed with SIGKILL: a task outlives its worker, 1,000 tasks
//! survive random worker restarts exactly once, and workers of a killed
//! replica finish their work on the survivor; a busy worker answers the
//! server's pings and keeps its session.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use taskloom_proto::taskloom::v1 as pb;
use taskloom_testkit::ServerProcess;
use tonic::transport::Channel;

const SERVER_ARGS: &[&str] = &[
    "--lease-duration=2s",
    "--worker-heartbeat-interval=300ms",
    "--worker-heartbeat-timeout=1s",
];

fn worker_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_taskloom-test-worker"))
}

/// The server binary of the same build (the workspace builds both).
fn server_binary() -> PathBuf {
    let path = worker_binary().with_file_name("taskloom");
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo build --workspace) first",
        path.display()
    );
    path
}

async fn server(url: Option<&str>) -> (ServerProcess, Channel) {
    let url = url.map(str::to_string);
    let process = tokio::task::spawn_blocking(move || {
        ServerProcess::start(&server_binary(), url.as_deref(), SERVER_ARGS).expect("start taskloom")
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

/// A `taskloom-test-worker` process and the lines it printed.
struct WorkerProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl WorkerProcess {
    fn start(addrs: &[&str], worker_id: &str, queue: &str, slots: u32, delay_ms: u64) -> Self {
        let mut command = Command::new(worker_binary());
        for addr in addrs {
            command.arg("--addr").arg(addr);
        }
        let mut child = command
            .args(["--worker-id", worker_id, "--queue", queue])
            .args([
                "--slots",
                &slots.to_string(),
                "--delay-ms",
                &delay_ms.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the test worker");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        WorkerProcess { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// SIGKILL, then reap.
    fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

fn text(value: &str) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::Text(value.into())),
    }
}

fn worker_chain(queue: &str) -> pb::Chain {
    pb::Chain {
        id: format!("on-{queue}"),
        tasks: vec![pb::Task {
            id: "remote".into(),
            handler: "worker".into(),
            queue: queue.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn start_runs(channel: &Channel, queue: &str, count: usize) -> Vec<String> {
    pb::chain_service_client::ChainServiceClient::new(channel.clone())
        .create_chain(pb::CreateChainRequest {
            chain: Some(worker_chain(queue)),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let mut starts = tokio::task::JoinSet::new();
    for shard in 0..8 {
        let channel = channel.clone();
        let queue = queue.to_string();
        starts.spawn(async move {
            let mut runs = pb::run_service_client::RunServiceClient::new(channel);
            let mut ids = Vec::new();
            for i in (shard..count).step_by(8) {
                let run = runs
                    .start_run(pb::StartRunRequest {
                        chain_id: format!("on-{queue}"),
                        run_input: Some(pb::start_run_request::RunInput::TypedInput(text(
                            &format!("task {i}"),
                        ))),
                        request_id: format!("{queue}-{i}"),
                        ..Default::default()
                    })
                    .await
                    .expect("start run");
                ids.push(run.into_inner().id);
            }
            ids
        });
    }
    let mut ids = Vec::new();
    while let Some(shard) = starts.join_next().await {
        ids.extend(shard.unwrap());
    }
    ids
}

async fn status_counts(channel: &Channel) -> HashMap<i32, usize> {
    let mut runs = pb::run_service_client::RunServiceClient::new(channel.clone());
    let mut counts = HashMap::new();
    let mut token = String::new();
    loop {
        let page = runs
            .list_runs(pb::ListRunsRequest {
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for run in &page.runs {
            *counts.entry(run.status).or_default() += 1;
        }
        if page.next_page_token.is_empty() {
            return counts;
        }
        token = page.next_page_token;
    }
}

async fn wait_all_succeeded(channel: &Channel, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let counts = status_counts(channel).await;
        let succeeded = counts
            .get(&(pb::RunStatus::Succeeded as i32))
            .copied()
            .unwrap_or(0);
        if succeeded == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{succeeded} of {count} runs succeeded in {within:?}: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every run: one task that succeeded exactly once, a gapless event log;
/// no attempt was acknowledged to two workers. Returns the total lease
/// expiries.
async fn check_exactly_once(channel: &Channel, run_ids: &[String], workers: &[Vec<String>]) -> i32 {
    let mut settled: HashMap<String, usize> = HashMap::new();
    for lines in workers {
        for line in lines {
            if let Some(attempt_id) = line.strip_prefix("settled ") {
                *settled.entry(attempt_id.to_string()).or_default() += 1;
            }
        }
    }
    if let Some((attempt, count)) = settled.iter().find(|(_, count)| **count > 1) {
        panic!("attempt {attempt} was completed {count} times");
    }
    let mut runs = pb::run_service_client::RunServiceClient::new(channel.clone());
    let mut expiries = 0;
    for run_id in run_ids {
        let events = runs
            .list_run_events(pb::ListRunEventsRequest {
                run_id: run_id.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        let count =
            |kind: pb::RunEventType| events.iter().filter(|e| e.r#type == kind as i32).count();
        assert_eq!(count(pb::RunEventType::TaskSucceeded), 1, "run {run_id}");
        assert_eq!(count(pb::RunEventType::RunSucceeded), 1, "run {run_id}");
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
        let attempts = runs
            .list_run_attempts(pb::ListRunAttemptsRequest {
                run_id: run_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .attempts;
        assert_eq!(attempts.len(), 1, "no retry spent on lost leases: {run_id}");
        assert_eq!(attempts[0].status, pb::AttemptStatus::Succeeded as i32);
        expiries += attempts[0].lease_expiries;
    }
    expiries
}

async fn wait_for_line(worker: &WorkerProcess, prefix: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(line) = worker.lines().into_iter().find(|l| l.starts_with(prefix)) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never printed {prefix:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_task_finishes_on_another() {
    for url in [
        None,
        Some(taskloom_testkit::fresh_postgres_database().unwrap()),
    ] {
        let (server, channel) = server(url.as_deref()).await;
        let addr = server.addr.clone();
        let mut doomed = WorkerProcess::start(&[&addr], "doomed", "slow", 1, 60_000);
        wait_for_line(&doomed, "connected", Duration::from_secs(10)).await;
        let run_ids = start_runs(&channel, "slow", 1).await;
        let offered = wait_for_line(&doomed, "offered ", Duration::from_secs(10)).await;
        doomed.kill_9();
        let rescuer = WorkerProcess::start(&[&addr], "rescuer", "slow", 1, 0);
        wait_all_succeeded(&channel, 1, Duration::from_secs(20)).await;
        let run = pb::run_service_client::RunServiceClient::new(channel.clone())
            .get_run(pb::GetRunRequest {
                id: run_ids[0].clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(run.output, Some(text("done by rescuer")));
        let attempt_id = offered.trim_start_matches("offered ");
        assert!(
            rescuer.lines().contains(&format!("settled {attempt_id}")),
            "the same attempt, re-leased: {:?}",
            rescuer.lines()
        );
        let expiries =
            check_exactly_once(&channel, &run_ids, &[doomed.lines(), rescuer.lines()]).await;
        assert_eq!(expiries, 1, "the lease expired once");
    }
}

/// The server closes a session that leaves a ping unanswered past the
/// heartbeat timeout (1 s) and ends its leases: a worker busy with a task
/// three times as long answers them and keeps its session and lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_longer_than_the_heartbeat_timeout_keeps_its_session() {
    let (server, channel) = server(None).await;
    let worker = WorkerProcess::start(&[&server.addr], "patient", "long", 1, 3_000);
    wait_for_line(&worker, "connected", Duration::from_secs(10)).await;
    let run_ids = start_runs(&channel, "long", 1).await;
    wait_all_succeeded(&channel, 1, Duration::from_secs(20)).await;
    let lines = worker.lines();
    let sessions = lines.iter().filter(|l| l.starts_with("connected ")).count();
    assert_eq!(sessions, 1, "one session throughout: {lines:?}");
    assert!(!lines.iter().any(|l| l == "disconnected"), "{lines:?}");
    let expiries = check_exactly_once(&channel, &run_ids, &[lines]).await;
    assert_eq!(expiries, 0, "the lease never expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_survive_random_worker_restarts_exactly_once() {
    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let (server, channel) = server(Some(&url)).await;
    let addr = server.addr.clone();
    let mut workers = [
        WorkerProcess::start(&[&addr], "alpha", "bulk", 16, 20),
        WorkerProcess::start(&[&addr], "beta", "bulk", 16, 20),
    ];
    let mut retired: Vec<Vec<String>> = Vec::new();
    let starting = {
        let channel = channel.clone();
        tokio::spawn(async move { start_runs(&channel, "bulk", 1000).await })
    };
    // Restart a random worker every 300–800 ms while the runs go through.
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut restarts = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(300 + rand::random::<u64>() % 500)).await;
        let counts = status_counts(&channel).await;
        let succeeded = counts
            .get(&(pb::RunStatus::Succeeded as i32))
            .copied()
            .unwrap_or(0);
        if succeeded == 1000 {
            break;
        }
        assert!(Instant::now() < deadline, "stuck at {counts:?}");
        if restarts < 8 {
            let index = rand::random::<u32>() as usize % 2;
            let name = ["alpha", "beta"][index];
            workers[index].kill_9();
            retired.push(workers[index].lines());
            workers[index] = WorkerProcess::start(&[&addr], name, "bulk", 16, 20);
            restarts += 1;
        }
    }
    let run_ids = starting.await.unwrap();
    assert_eq!(run_ids.len(), 1000);
    retired.extend(workers.iter().map(WorkerProcess::lines));
    check_exactly_once(&channel, &run_ids, &retired).await;
    assert!(restarts >= 2, "workers were restarted mid-way");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_of_a_killed_replica_finish_on_the_survivor() {
    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let (doomed, _doomed_channel) = server(Some(&url)).await;
    let (survivor, channel) = server(Some(&url)).await;
    let (a, b) = (doomed.addr.clone(), survivor.addr.clone());
    // Each worker prefers one replica and fails over to the other.
    let on_doomed = WorkerProcess::start(&[&a, &b], "on-doomed", "shared", 4, 100);
    let on_survivor = WorkerProcess::start(&[&b, &a], "on-survivor", "shared", 4, 100);
    wait_for_line(&on_doomed, "connected", Duration::from_secs(10)).await;
    wait_for_line(&on_survivor, "connected", Duration::from_secs(10)).await;
    let run_ids = start_runs(&channel, "shared", 200).await;
    // Kill the replica once its worker has settled some work.
    wait_for_line(&on_doomed, "settled ", Duration::from_secs(20)).await;
    std::process::Command::new("kill")
        .args(["-KILL", &doomed.pid().to_string()])
        .status()
        .unwrap();
    wait_all_succeeded(&channel, 200, Duration::from_secs(60)).await;
    let reconnected = on_doomed
        .lines()
        .iter()
        .filter(|l| l.starts_with("connected "))
        .count();
    assert!(
        reconnected >= 2,
        "the worker reconnected: {:?}",
        on_doomed.lines()
    );
    check_exactly_once(
        &channel,
        &run_ids,
        &[on_doomed.lines(), on_survivor.lines()],
    )
    .await;
    drop(doomed);
}
