//! The `throttling` scenario (docs/limits.md): runs over three fake
//! providers on loopback, one limited to 5 concurrent calls and 60 a
//! minute, served by every replica given (two on PostgreSQL). Each run is
//! `prepare` → `limited` → `finish`; only the limited provider serves the
//! model of `limited`, so it is the bottleneck. Prints runs/s, the limited
//! provider's calls per minute and most calls at once (as the provider
//! counted them), and the throttled events the runs recorded.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use taskloom_proto::taskloom::v1 as pb;
use taskloom_testkit::fake_llm::{FakeLlm, Reply};
use tokio::time::Instant;
use tonic::transport::Channel;

/// The limited provider's limits and call duration.
const MAX_CONCURRENCY: i32 = 5;
const REQUESTS_PER_MINUTE: i32 = 60;
const LIMITED_CALL: Duration = Duration::from_secs(1);
const FREE_CALL: Duration = Duration::from_millis(50);

pub struct ThrottlingPlan<'a> {
    /// One channel per replica; runs are started round-robin over them.
    pub replicas: &'a [Channel],
    pub tag: &'a str,
    pub runs: usize,
    pub deadline: Instant,
}

pub struct ThrottlingReport {
    pub replicas: usize,
    pub runs: usize,
    pub wall: Duration,
    pub limited_calls: usize,
    /// The most calls the limited provider received within any minute.
    pub busiest_minute: usize,
    /// Calls a minute at the limited provider once its first minute's
    /// calls left the window (from the 61st call to the last).
    pub steady_per_minute: f64,
    pub max_concurrency: usize,
    pub throttled_events: usize,
    pub failed_attempts: usize,
}

pub async fn drive(plan: ThrottlingPlan<'_>) -> Result<ThrottlingReport> {
    ensure!(!plan.replicas.is_empty(), "no replica to drive");
    let limited = FakeLlm::start().await;
    limited.set_default_reply(Reply::text("limited").usage(10, 10).delay(LIMITED_CALL));
    let free = [FakeLlm::start().await, FakeLlm::start().await];
    for fake in &free {
        fake.set_default_reply(Reply::text("free").usage(10, 10).delay(FREE_CALL));
    }
    let channel = &plan.replicas[0];
    let tag = plan.tag;
    let limits = (MAX_CONCURRENCY, REQUESTS_PER_MINUTE);
    add_backend(
        channel,
        &format!("limited-{tag}"),
        &limited,
        limits,
        &format!("limited-{tag}"),
    )
    .await?;
    for (i, fake) in free.iter().enumerate() {
        add_backend(
            channel,
            &format!("free-{i}-{tag}"),
            fake,
            (0, 0),
            &format!("free-{tag}"),
        )
        .await?;
    }
    let task = |id: &str, pool: String, model: &str, next: Option<&str>| pb::Task {
        id: id.into(),
        handler: "raw_string".into(),
        prompt_template: format!("task {id}"),
        execute_config: Some(pb::ExecuteConfig {
            models: vec![model.into()],
            pool,
            max_tokens: 100,
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
        id: format!("throttling-{tag}"),
        tasks: vec![
            task("prepare", format!("free-{tag}"), "m-free", Some("limited")),
            task(
                "limited",
                format!("limited-{tag}"),
                "m-limited",
                Some("finish"),
            ),
            task("finish", format!("free-{tag}"), "m-free", None),
        ],
        ..Default::default()
    };
    eprintln!(
        "bench: throttling: {} runs on {} replica(s), limited provider at {MAX_CONCURRENCY} \
         concurrent and {REQUESTS_PER_MINUTE}/min…",
        plan.runs,
        plan.replicas.len()
    );
    let started = Instant::now();
    let mut run_ids = Vec::with_capacity(plan.runs);
    for i in 0..plan.runs {
        let replica = &plan.replicas[i % plan.replicas.len()];
        let run = pb::run_service_client::RunServiceClient::new(replica.clone())
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
    wait_all_succeeded(channel, &run_ids, plan.deadline, Duration::from_millis(250)).await?;
    let mut runs = pb::run_service_client::RunServiceClient::new(channel.clone());
    let wall = started.elapsed();
    let mut throttled_events = 0;
    let mut failed_attempts = 0;
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
        throttled_events += events
            .iter()
            .filter(|e| e.r#type == pb::RunEventType::TaskThrottled as i32)
            .count();
        let attempts = runs
            .list_run_attempts(pb::ListRunAttemptsRequest {
                run_id: id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .attempts;
        failed_attempts += attempts
            .iter()
            .filter(|a| a.status == pb::AttemptStatus::Failed as i32 || a.attempt > 1)
            .count();
    }
    let times = limited.call_times();
    let window = REQUESTS_PER_MINUTE as usize;
    let steady_per_minute = match times.len() {
        n if n > window + 1 => {
            let span = times[n - 1].duration_since(times[window]).as_secs_f64();
            (n - 1 - window) as f64 * 60.0 / span.max(f64::EPSILON)
        }
        _ => 0.0,
    };
    Ok(ThrottlingReport {
        replicas: plan.replicas.len(),
        runs: plan.runs,
        wall,
        limited_calls: times.len(),
        busiest_minute: limited.max_calls_within(Duration::from_secs(60)),
        steady_per_minute,
        max_concurrency: limited.max_concurrent_calls(),
        throttled_events,
        failed_attempts,
    })
}

pub async fn add_backend(
    channel: &Channel,
    name: &str,
    fake: &FakeLlm,
    (max_concurrency, requests_per_minute): (i32, i32),
    pool: &str,
) -> Result<()> {
    let mut backends = pb::backend_service_client::BackendServiceClient::new(channel.clone());
    // The pool may exist already (the free providers share one).
    let _ = backends
        .create_pool(pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                id: pool.into(),
                purpose: "chat".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let backend = backends
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: name.into(),
                r#type: pb::BackendType::OpenaiCompatible as i32,
                base_url: fake.url(),
                max_concurrency,
                requests_per_minute,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .context("create a backend")?
        .into_inner();
    backends
        .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
            pool_id: pool.into(),
            backend_id: backend.id,
        })
        .await
        .context("assign a backend")?;
    Ok(())
}

pub fn print(report: &ThrottlingReport) {
    println!(
        "\nthrottling: {} runs on {} replica(s) in {:.1} s: {:.2} runs/s",
        report.runs,
        report.replicas,
        report.wall.as_secs_f64(),
        report.runs as f64 / report.wall.as_secs_f64()
    );
    println!(
        "  limited provider ({MAX_CONCURRENCY} concurrent, {REQUESTS_PER_MINUTE}/min): \
         {} calls, busiest minute {}, {:.1}/min after the first minute, at most {} at once",
        report.limited_calls,
        report.busiest_minute,
        report.steady_per_minute,
        report.max_concurrency
    );
    println!(
        "  throttled events {}, failed or retried attempts {}",
        report.throttled_events, report.failed_attempts
    );
}

/// Polls every `poll` until each of `run_ids` succeeded; fails on a run
/// that failed or was cancelled, or at `deadline`.
pub async fn wait_all_succeeded(
    channel: &Channel,
    run_ids: &[String],
    deadline: Instant,
    poll: Duration,
) -> Result<()> {
    let mut runs = pb::run_service_client::RunServiceClient::new(channel.clone());
    let mut left = run_ids.to_vec();
    while !left.is_empty() {
        if Instant::now() > deadline {
            bail!("{} runs not done by the deadline", left.len());
        }
        let mut still = Vec::new();
        for id in left {
            let run = runs
                .get_run(pb::GetRunRequest { id: id.clone() })
                .await?
                .into_inner();
            match pb::RunStatus::try_from(run.status) {
                Ok(pb::RunStatus::Succeeded) => {}
                Ok(pb::RunStatus::Failed | pb::RunStatus::Cancelled) => {
                    bail!("run {id} ended {:?}: {:?}", run.status, run.error)
                }
                _ => still.push(id),
            }
        }
        left = still;
        tokio::time::sleep(poll).await;
    }
    Ok(())
}
