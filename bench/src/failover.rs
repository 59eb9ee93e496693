//! The `failover` scenario: two replicas on one PostgreSQL, runs of three
//! slow model tasks (a fake provider on loopback answers after
//! [`CALL`]) started over both, then `kill -9` of one replica mid-load.
//! For each run the dead replica held, how long it waited from the kill
//! until another replica leased its task again; before replicas
//! heartbeated, that was until the lease expired (up to the 30 s lease).

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use taskloom_proto::taskloom::v1 as pb;
use taskloom_testkit::fake_llm::{FakeLlm, Reply};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::drive::Connections;
use crate::server::BenchServer;
use crate::stats::{Latencies, millis};
use crate::throttling::add_backend;

/// How long each model call takes.
const CALL: Duration = Duration::from_millis(500);
/// Model calls in flight before the kill.
const IN_FLIGHT_AT_KILL: usize = 40;

pub struct FailoverPlan<'a> {
    /// The replica that survives (the bench's server).
    pub survivor: Channel,
    pub binary: &'a Path,
    pub database_url: &'a str,
    pub server_args: &'a [String],
    pub tag: &'a str,
    pub runs: usize,
    pub deadline: Instant,
}

pub struct FailoverReport {
    pub runs: usize,
    /// Per run the dead replica held: kill → leased again elsewhere.
    pub waits: Latencies,
    pub held_runs: usize,
    /// Kill → every run succeeded.
    pub all_done: Duration,
}

pub async fn drive(plan: FailoverPlan<'_>) -> Result<FailoverReport> {
    let fake = FakeLlm::start().await;
    fake.set_default_reply(Reply::text("ok").usage(5, 5).delay(CALL));
    let tag = plan.tag;
    add_backend(
        &plan.survivor,
        &format!("failover-{tag}"),
        &fake,
        (0, 0),
        &format!("failover-{tag}"),
    )
    .await?;
    let doomed = {
        let binary = plan.binary.to_path_buf();
        let url = plan.database_url.to_string();
        let args = plan.server_args.to_vec();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            BenchServer::start(&binary, Some(&url), &args, false)
        })
        .await??
    };
    let doomed_channel = Connections::open(&doomed.addr, 1).await?.channel(0);
    let replicas = [plan.survivor.clone(), doomed_channel];
    let task = |id: &str, next: Option<&str>| pb::Task {
        id: id.into(),
        handler: "raw_string".into(),
        prompt_template: format!("task {id}"),
        execute_config: Some(pb::ExecuteConfig {
            models: vec!["m".into()],
            pool: format!("failover-{tag}"),
            max_tokens: 10,
            ..Default::default()
        }),
        transition: next.map(|target| pb::Transition {
            branches: vec![pb::Branch {
                operator: "default".into(),
                goto: Some(prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue(target.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let chain = pb::Chain {
        id: format!("failover-{tag}"),
        tasks: vec![task("a", Some("b")), task("b", Some("c")), task("c", None)],
        ..Default::default()
    };
    eprintln!(
        "bench: failover: {} runs on 2 replicas, kill -9 of one with {IN_FLIGHT_AT_KILL}+ calls in flight…",
        plan.runs
    );
    let mut run_ids = Vec::with_capacity(plan.runs);
    for i in 0..plan.runs {
        let run = pb::run_service_client::RunServiceClient::new(replicas[i % 2].clone())
            .start_run(pb::StartRunRequest {
                chain: Some(chain.clone()),
                run_input: Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
                    kind: Some(pb::value::Kind::Text(format!("run {i}"))),
                })),
                ..Default::default()
            })
            .await
            .context("start a run")?
            .into_inner();
        run_ids.push(run.id);
    }
    while fake.in_flight() < IN_FLIGHT_AT_KILL {
        ensure!(Instant::now() < plan.deadline, "the load never built up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::process::Command::new("kill")
        .args(["-KILL", &doomed.pid().to_string()])
        .status()
        .context("kill -9 the replica")?;
    let killed_at = SystemTime::now();
    let killed = Instant::now();
    drop(doomed);

    crate::throttling::wait_all_succeeded(
        &plan.survivor,
        &run_ids,
        plan.deadline,
        Duration::from_millis(100),
    )
    .await?;
    let mut runs = pb::run_service_client::RunServiceClient::new(plan.survivor.clone());
    let all_done = killed.elapsed();

    let mut waits = Vec::new();
    for id in &run_ids {
        let events = runs
            .list_run_events(pb::ListRunEventsRequest {
                run_id: id.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await?
            .into_inner()
            .events;
        // A lease the dead replica held ends as expired (released early
        // when its heartbeat stops, else when the lease runs out); the
        // run resumes when the task is leased again.
        let Some(expiry) = events
            .iter()
            .position(|e| e.r#type == pb::RunEventType::LeaseExpired as i32)
        else {
            continue;
        };
        let Some(resumed) = events[expiry..]
            .iter()
            .find(|e| e.r#type == pb::RunEventType::TaskStarted as i32)
            .and_then(|e| e.time)
        else {
            continue;
        };
        let resumed_at = SystemTime::UNIX_EPOCH
            + Duration::new(resumed.seconds.max(0) as u64, resumed.nanos.max(0) as u32);
        waits.push(resumed_at.duration_since(killed_at).unwrap_or_default());
    }
    Ok(FailoverReport {
        runs: run_ids.len(),
        held_runs: waits.len(),
        waits: Latencies::new(waits),
        all_done,
    })
}

pub fn print(report: &FailoverReport) {
    println!(
        "\nfailover: {} runs on 2 PostgreSQL replicas, kill -9 of one; {} runs it held",
        report.runs, report.held_runs
    );
    println!(
        "  kill → resumed elsewhere: p50 {} ms, p95 {} ms, max {} ms; every run done {:.1} s after the kill",
        millis(report.waits.percentile(50.0)),
        millis(report.waits.percentile(95.0)),
        millis(report.waits.max()),
        report.all_done.as_secs_f64()
    );
}
