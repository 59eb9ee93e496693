//! Crash safety: `kill -9` of a server mid-way loses nothing acknowledged,
//! runs finish exactly once, completed tasks are not executed again, and
//! the dead replica's leases are picked up after they expire. On Postgres
//! with two replicas sharing the database; on SQLite with a restart.

mod common;

use std::path::Path;
use std::time::Duration;

use common::HookServer;
use common::slow_runs::{
    check_exactly_once, prepare, start_runs, wait_all_succeeded, wait_for_hook_calls,
};
use taskloom_testkit::ServerProcess;
use tonic::transport::Channel;

const LEASE: &str = "2s";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_taskloom"))
}

async fn start(url: String) -> ServerProcess {
    tokio::task::spawn_blocking(move || {
        ServerProcess::start(binary(), Some(&url), &["--lease-duration", LEASE])
            .expect("start taskloom")
    })
    .await
    .unwrap()
}

async fn channel(server: &ServerProcess) -> Channel {
    Channel::from_shared(server.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn kill_9(server: &ServerProcess) {
    std::process::Command::new("kill")
        .args(["-KILL", &server.pid().to_string()])
        .status()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replica_killed_mid_way() {
    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let hook = HookServer::start(200, r#"{"ok": true}"#, Duration::from_millis(300)).await;
    let doomed = start(url.clone()).await;
    let survivor = start(url.clone()).await;
    let doomed_channel = channel(&doomed).await;
    let survivor_channel = channel(&survivor).await;
    prepare(survivor_channel.clone(), &hook.url).await;
    // Runs are started through both replicas, and each replica runs the
    // tasks of the runs it started (eager dispatch) and claims others; one
    // replica dies mid-way, holding leases.
    let starting = {
        let channels = [survivor_channel.clone(), doomed_channel];
        tokio::spawn(async move { start_runs(&channels, 300).await })
    };
    wait_for_hook_calls(&hook, 150).await;
    kill_9(&doomed);
    drop(doomed);
    let run_ids = starting.await.unwrap();
    assert_eq!(
        run_ids.len(),
        300,
        "every start acknowledged by one replica"
    );
    wait_all_succeeded(&survivor_channel, &run_ids, Duration::from_secs(90)).await;
    let expired = check_exactly_once(&survivor_channel, &run_ids, &hook).await;
    assert!(
        expired > 0,
        "the survivor took over the dead replica's leases"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restart_after_kill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db").display().to_string();
    let hook = HookServer::start(200, r#"{"ok": true}"#, Duration::from_millis(100)).await;
    let first = start(path.clone()).await;
    let first_channel = channel(&first).await;
    prepare(first_channel.clone(), &hook.url).await;
    let starting = {
        let channels = [first_channel.clone()];
        tokio::spawn(async move { start_runs(&channels, 100).await })
    };
    wait_for_hook_calls(&hook, 60).await;
    kill_9(&first);
    drop(first);
    // Runs whose start was not acknowledged before the crash do not count.
    let run_ids = starting.await.unwrap();
    assert!(
        run_ids.len() > 10,
        "runs were acknowledged before the crash"
    );
    let second = start(path).await;
    let second_channel = channel(&second).await;
    wait_all_succeeded(&second_channel, &run_ids, Duration::from_secs(60)).await;
    let expired = check_exactly_once(&second_channel, &run_ids, &hook).await;
    assert!(
        expired > 0,
        "the restarted server recovered the leases of the killed one"
    );
}
