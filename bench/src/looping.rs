//! The `loop` scenario: one run of a chain whose only task goes round to
//! itself for `--loop-steps` steps, each carrying the run's input as its
//! output. A transition must read what it needs, not the run's whole
//! history: the step rate of the last steps stays that of the first ones,
//! and the server's memory stays flat.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use taskloom_proto::taskloom::v1 as pb;
use tokio::time::Instant;

use crate::drive::Connections;
use crate::procfs;

/// Steps whose rate is compared at each end of the loop.
const WINDOW: usize = 100;

pub struct LoopPlan<'a> {
    pub connections: &'a Connections,
    pub tag: &'a str,
    pub steps: usize,
    pub output_bytes: usize,
    pub server_pid: u32,
    pub deadline: Instant,
}

pub struct LoopReport {
    pub steps: usize,
    pub output_bytes: usize,
    pub wall: Duration,
    /// Steps per second over the first and the last [`WINDOW`] steps.
    pub first_rate: f64,
    pub last_rate: f64,
    /// Server RSS after the first window and at the end, KiB.
    pub early_rss_kib: u64,
    pub end_rss_kib: u64,
    /// Steps per second in each tenth of the steps.
    pub tenths: Vec<f64>,
}

impl LoopReport {
    /// The last steps' rate against the first ones' (1.0: no slower).
    pub fn rate_kept(&self) -> f64 {
        self.last_rate / self.first_rate
    }
}

fn goto_self() -> pb::Transition {
    pb::Transition {
        on_failure: String::new(),
        branches: vec![pb::Branch {
            operator: "default".into(),
            goto: Some(prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("step".into())),
            }),
            ..Default::default()
        }],
    }
}

pub async fn drive(plan: LoopPlan<'_>) -> Result<LoopReport> {
    let chain_id = format!("loop-{}-{}", plan.tag, plan.output_bytes);
    plan.connections
        .chains()
        .create_chain(pb::CreateChainRequest {
            chain: Some(pb::Chain {
                id: chain_id.clone(),
                max_steps: plan.steps as i32,
                tasks: vec![pb::Task {
                    id: "step".into(),
                    handler: "noop".into(),
                    transition: Some(goto_self()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .context("create the loop chain")?;
    let mut runs = plan.connections.runs(0);
    let input = "x".repeat(plan.output_bytes.max(1));
    let started = Instant::now();
    let run = runs
        .start_run(pb::StartRunRequest {
            chain_id,
            run_input: Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
                kind: Some(pb::value::Kind::Text(input)),
            })),
            ..Default::default()
        })
        .await
        .context("start the loop run")?
        .into_inner();
    let mut events = runs
        .watch_run(pb::WatchRunRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .context("watch the loop run")?
        .into_inner();
    // When each step succeeded, as the watcher saw it.
    let mut done: Vec<Instant> = Vec::with_capacity(plan.steps);
    let mut early_rss_kib = 0;
    loop {
        let next = tokio::time::timeout_at(plan.deadline, events.message()).await;
        let Ok(event) = next else {
            bail!(
                "the loop run did not end in time ({} steps done)",
                done.len()
            );
        };
        let Some(event) = event.context("watch the loop run")? else {
            bail!("the watch ended early ({} steps done)", done.len());
        };
        match pb::RunEventType::try_from(event.r#type) {
            Ok(pb::RunEventType::TaskSucceeded) => {
                done.push(Instant::now());
                if done.len() == WINDOW {
                    early_rss_kib = procfs::memory(plan.server_pid).map_or(0, |m| m.rss_kib);
                }
            }
            Ok(
                pb::RunEventType::RunFailed
                | pb::RunEventType::RunSucceeded
                | pb::RunEventType::RunCancelled,
            ) => break,
            _ => {}
        }
    }
    let wall = started.elapsed();
    let end_rss_kib = procfs::memory(plan.server_pid).map_or(0, |m| m.rss_kib);
    if done.len() < 2 * WINDOW + 1 {
        bail!(
            "the loop ran {} steps; it needs more than {}",
            done.len(),
            2 * WINDOW
        );
    }
    let rate = |from: Instant, to: Instant| WINDOW as f64 / (to - from).as_secs_f64();
    let n = done.len();
    let tenths = (0..10)
        .map(|i| {
            let (from, to) = (i * (n - 1) / 10, (i + 1) * (n - 1) / 10);
            (to - from) as f64 / (done[to] - done[from]).as_secs_f64()
        })
        .collect();
    Ok(LoopReport {
        tenths,
        steps: n,
        output_bytes: plan.output_bytes,
        wall,
        first_rate: rate(done[0], done[WINDOW]),
        last_rate: rate(done[n - 1 - WINDOW], done[n - 1]),
        early_rss_kib,
        end_rss_kib,
    })
}

pub fn print(report: &LoopReport) {
    println!(
        "loop ({} B outputs): {} steps in {:.1} s; first {} steps {:.0} steps/s, last {} {:.0} steps/s ({:.0} % kept); server RSS {} MiB after {} steps, {} MiB at the end",
        report.output_bytes,
        report.steps,
        report.wall.as_secs_f64(),
        WINDOW,
        report.first_rate,
        WINDOW,
        report.last_rate,
        report.rate_kept() * 100.0,
        report.early_rss_kib / 1024,
        WINDOW,
        report.end_rss_kib / 1024,
    );
    let tenths: Vec<String> = report.tenths.iter().map(|r| format!("{r:.0}")).collect();
    println!("  steps/s by tenth of the steps: {}", tenths.join(" "));
}
