//! The load itself: chains the scenarios run, and pools of concurrent gRPC
//! clients that start, watch and cancel runs until a count or a deadline is
//! reached.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use taskloom_proto::taskloom::v1 as pb;
use tokio::time::Instant;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use pb::chain_service_client::ChainServiceClient;
use pb::run_service_client::RunServiceClient;

/// How long to wait for a server to close a watch stream after the terminal
/// event before dropping it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends `authorization: Bearer <key>` on every call when the bench runs
/// with an API key (`--api-key`), nothing otherwise.
#[derive(Clone, Default)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connection whose calls carry the bench's key, if any.
pub type Authed = InterceptedService<Channel, Bearer>;

/// A few HTTP/2 connections to the server; the clients share them the way an
/// application's gRPC clients would, multiplexing streams.
#[derive(Clone)]
pub struct Connections {
    channels: Vec<Channel>,
    bearer: Bearer,
}

impl Connections {
    pub async fn open(addr: &str, count: usize) -> Result<Connections> {
        let mut channels = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let channel = Endpoint::from_shared(addr.to_string())
                .context("server address")?
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(10))
                .connect()
                .await
                .with_context(|| format!("connect to {addr}"))?;
            channels.push(channel);
        }
        Ok(Connections {
            channels,
            bearer: Bearer::default(),
        })
    }

    /// These connections with `authorization: Bearer <key>` on the RunService
    /// and ChainService calls of the run scenarios.
    pub fn with_key(mut self, key: &str) -> Result<Connections> {
        let value = format!("Bearer {key}")
            .parse()
            .context("the API key is not valid header text")?;
        self.bearer = Bearer(Some(value));
        Ok(self)
    }

    /// A RunService client on connection `index` (modulo their number).
    pub fn runs(&self, index: usize) -> RunServiceClient<Authed> {
        let channel = self.channels[index % self.channels.len()].clone();
        RunServiceClient::with_interceptor(channel, self.bearer.clone())
            .max_decoding_message_size(16 * 1024 * 1024)
            .max_encoding_message_size(16 * 1024 * 1024)
    }

    /// Connection `index` (modulo their number).
    pub fn channel(&self, index: usize) -> Channel {
        self.channels[index % self.channels.len()].clone()
    }

    pub fn chains(&self) -> ChainServiceClient<Authed> {
        ChainServiceClient::with_interceptor(self.channels[0].clone(), self.bearer.clone())
    }
}

/// The shape of a benchmark chain.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// One `noop` task.
    Single,
    /// `noop` tasks a → b → c.
    Chain3,
    /// One `worker` task on a queue no one serves, so runs stay in flight.
    Unserved,
}

fn goto(target: &str) -> pb::Transition {
    pb::Transition {
        on_failure: String::new(),
        branches: vec![pb::Branch {
            operator: "default".into(),
            goto: Some(prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue(target.into())),
            }),
            ..Default::default()
        }],
    }
}

fn task(id: &str, handler: &str, next: &str) -> pb::Task {
    pb::Task {
        id: id.into(),
        handler: handler.into(),
        transition: Some(goto(next)),
        ..Default::default()
    }
}

/// Stores a chain of `shape` under a fresh id (so a reused database does not
/// collide) and returns the id.
pub async fn create_chain(
    connections: &Connections,
    shape: Shape,
    run_tag: &str,
) -> Result<String> {
    let (name, tasks) = match shape {
        Shape::Single => ("single", vec![task("only", "noop", "end")]),
        Shape::Chain3 => (
            "chain3",
            vec![
                task("a", "noop", "b"),
                task("b", "noop", "c"),
                task("c", "noop", "end"),
            ],
        ),
        Shape::Unserved => {
            let mut waiting = task("wait", "worker", "end");
            waiting.queue = format!("bench-unserved-{run_tag}");
            ("inflight", vec![waiting])
        }
    };
    let id = format!("bench-{name}-{run_tag}");
    connections
        .chains()
        .create_chain(pb::CreateChainRequest {
            chain: Some(pb::Chain {
                id: id.clone(),
                tasks,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .with_context(|| format!("create chain {id}"))?;
    Ok(id)
}

fn start_request(chain_id: &str) -> pb::StartRunRequest {
    pb::StartRunRequest {
        chain_id: chain_id.into(),
        run_input: Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
            kind: Some(pb::value::Kind::Text("bench".into())),
        })),
        ..Default::default()
    }
}

/// What `count` operations spread over concurrent clients produced before
/// they ran out or the deadline passed.
#[derive(Debug)]
pub struct Batch<T> {
    pub done: Vec<T>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub wall: Duration,
    /// The deadline cut the batch short: `done` is partial.
    pub timed_out: bool,
}

/// Runs `operation(client, index)` for every index in `0..count` on
/// `concurrency` client tasks, each taking the next index when it finishes
/// one (a closed loop). Stops at `deadline`, keeping what finished.
pub async fn for_each_index<T, F, Fut>(
    connections: &Connections,
    concurrency: usize,
    count: usize,
    deadline: Instant,
    operation: F,
) -> Batch<T>
where
    T: Send + 'static,
    F: Fn(RunServiceClient<Authed>, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, tonic::Status>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency.max(1) {
        let client = connections.runs(worker);
        let next = next.clone();
        let operation = operation.clone();
        workers.push(tokio::spawn(async move {
            let mut batch = Batch {
                done: Vec::new(),
                errors: 0,
                first_error: None,
                wall: Duration::ZERO,
                timed_out: false,
            };
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    break;
                }
                match tokio::time::timeout_at(deadline, operation(client.clone(), index)).await {
                    Ok(Ok(value)) => batch.done.push(value),
                    Ok(Err(status)) => {
                        batch.errors += 1;
                        batch.first_error.get_or_insert_with(|| {
                            format!("{}: {}", status.code(), status.message())
                        });
                    }
                    Err(_) => {
                        batch.timed_out = true;
                        break;
                    }
                }
            }
            batch
        }));
    }
    let mut total = Batch {
        done: Vec::with_capacity(count),
        errors: 0,
        first_error: None,
        wall: Duration::ZERO,
        timed_out: false,
    };
    for worker in workers {
        match worker.await {
            Ok(batch) => {
                total.done.extend(batch.done);
                total.errors += batch.errors;
                total.timed_out |= batch.timed_out;
                if total.first_error.is_none() {
                    total.first_error = batch.first_error;
                }
            }
            Err(join_error) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert_with(|| format!("client task: {join_error}"));
            }
        }
    }
    total.wall = started.elapsed();
    total
}

/// One run driven to its end.
#[derive(Debug, Clone, Copy)]
pub struct RunSample {
    /// StartRun sent (or, under `--rate`, its scheduled time) → response.
    pub start_latency: Duration,
    /// StartRun sent (or scheduled) → terminal event received.
    pub latency: Duration,
    /// Scenario start → terminal event received.
    pub finished_at: Duration,
    /// Events received on the run's watch stream.
    pub events: u64,
    /// It ended RUN_SUCCEEDED (rather than failed or cancelled).
    pub succeeded: bool,
}

/// Starts `runs` runs of `chain_id` on `clients` concurrent clients, each
/// watching its run to the terminal event before starting the next. With a
/// `rate`, run i is scheduled at `i / rate` seconds and its latencies are
/// measured from that schedule, so a server falling behind shows up as
/// latency instead of being hidden by the closed loop.
pub async fn drive_runs(
    connections: &Connections,
    chain_id: &str,
    runs: usize,
    clients: usize,
    rate: Option<f64>,
    deadline: Instant,
) -> Batch<RunSample> {
    let chain_id: Arc<str> = Arc::from(chain_id);
    let schedule_origin = Instant::now();
    for_each_index(
        connections,
        clients,
        runs,
        deadline,
        move |mut client, index| {
            let chain_id = chain_id.clone();
            async move {
                let origin = match rate {
                    Some(rate) => {
                        let scheduled =
                            schedule_origin + Duration::from_secs_f64(index as f64 / rate);
                        tokio::time::sleep_until(scheduled).await;
                        scheduled
                    }
                    None => Instant::now(),
                };
                let run = client
                    .start_run(start_request(&chain_id))
                    .await?
                    .into_inner();
                let start_latency = origin.elapsed();
                let mut stream = client
                    .watch_run(pb::WatchRunRequest {
                        run_id: run.id.clone(),
                        after_seq: 0,
                        include_deltas: false,
                    })
                    .await?
                    .into_inner();
                let mut events = 0;
                while let Some(event) = stream.message().await? {
                    events += 1;
                    let succeeded = match pb::RunEventType::try_from(event.r#type) {
                        Ok(pb::RunEventType::RunSucceeded) => true,
                        Ok(pb::RunEventType::RunFailed | pb::RunEventType::RunCancelled) => false,
                        _ => continue,
                    };
                    let latency = origin.elapsed();
                    let finished_at = schedule_origin.elapsed();
                    // The server ends the stream after the terminal event; read
                    // to its end as an SDK iterating the stream would.
                    if let Ok(Ok(Some(_))) =
                        tokio::time::timeout(DRAIN_TIMEOUT, stream.message()).await
                    {
                        events += 1;
                    }
                    return Ok(RunSample {
                        start_latency,
                        latency,
                        finished_at,
                        events,
                        succeeded,
                    });
                }
                Err(tonic::Status::data_loss(format!(
                    "watch of run {} ended before a terminal event",
                    run.id
                )))
            }
        },
    )
    .await
}

/// A run started and left in flight.
#[derive(Debug, Clone)]
pub struct StartedRun {
    pub id: String,
    pub start_latency: Duration,
}

/// Starts `runs` runs of `chain_id` without watching them.
pub async fn start_runs(
    connections: &Connections,
    chain_id: &str,
    runs: usize,
    clients: usize,
    deadline: Instant,
) -> Batch<StartedRun> {
    let chain_id: Arc<str> = Arc::from(chain_id);
    for_each_index(
        connections,
        clients,
        runs,
        deadline,
        move |mut client, _| {
            let chain_id = chain_id.clone();
            async move {
                let sent = Instant::now();
                let run = client
                    .start_run(start_request(&chain_id))
                    .await?
                    .into_inner();
                Ok(StartedRun {
                    id: run.id,
                    start_latency: sent.elapsed(),
                })
            }
        },
    )
    .await
}

/// Cancels the given runs; each sample is the CancelRun latency.
pub async fn cancel_runs(
    connections: &Connections,
    run_ids: Arc<Vec<String>>,
    clients: usize,
    deadline: Instant,
) -> Batch<Duration> {
    let count = run_ids.len();
    for_each_index(
        connections,
        clients,
        count,
        deadline,
        move |mut client, index| {
            let run_ids = run_ids.clone();
            async move {
                let sent = Instant::now();
                let id = run_ids.get(index).cloned().unwrap_or_default();
                client
                    .cancel_run(pb::CancelRunRequest {
                        id,
                        reason: "bench cleanup".into(),
                        request_id: String::new(),
                    })
                    .await?;
                Ok(sent.elapsed())
            }
        },
    )
    .await
}

/// The statuses of a sample of runs, counted, e.g. `QUEUED×20`.
pub async fn status_census(connections: &Connections, run_ids: &[String]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut client = connections.runs(0);
    for id in run_ids {
        let status = match client.get_run(pb::GetRunRequest { id: id.clone() }).await {
            Ok(run) => pb::RunStatus::try_from(run.into_inner().status)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("RUN_STATUS_")
                        .to_string()
                })
                .unwrap_or_else(|_| "UNKNOWN".into()),
            Err(status) => format!("error {}", status.code()),
        };
        *counts.entry(status).or_default() += 1;
    }
    counts
        .iter()
        .map(|(status, count)| format!("{status}×{count}"))
        .collect::<Vec<_>>()
        .join(" ")
}
