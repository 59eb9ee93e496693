//! Prometheus metrics: the one place that names every family, owns the
//! recorder and serves `--metrics-listen` (`/metrics`, `/healthz`,
//! `/readyz`).
//!
//! The owning places call the small hooks below (the kernel on committed
//! transitions and claims, the resolver around each provider call, the
//! store where a database error is classified, ...). Without
//! `--metrics-listen` no recorder is installed and every hook returns at
//! once. Label values that callers or operators choose (chains, queues,
//! backends, models) are capped per label ([`MAX_LABEL_VALUES`]); values past
//! the cap are reported as `other`, so a flood of new names cannot grow the
//! exposition without bound. Run and attempt ids are never labels.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::server::{HealthReporter, HealthService};

use crate::chain::CompiledChain;
use crate::dispatch::Dispatcher;
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptRecord, DynStore, EventRecord, RunRecord};

/// The metric families, one name each.
pub mod names {
    pub const BUILD_INFO: &str = "taskloom_build_info";
    pub const RUNS_STARTED: &str = "taskloom_runs_started_total";
    pub const RUNS_FINISHED: &str = "taskloom_runs_finished_total";
    pub const RUN_DURATION: &str = "taskloom_run_duration_seconds";
    pub const ATTEMPTS: &str = "taskloom_attempts_total";
    pub const QUEUE_DEPTH: &str = "taskloom_queue_depth";
    pub const QUEUE_OLDEST_READY_AGE: &str = "taskloom_queue_oldest_ready_age_seconds";
    pub const DISPATCH_LATENCY: &str = "taskloom_dispatch_latency_seconds";
    pub const LEASE_EXPIRIES: &str = "taskloom_lease_expiries_total";
    pub const FENCING_REJECTIONS: &str = "taskloom_fencing_rejections_total";
    pub const THROTTLED: &str = "taskloom_throttled_total";
    pub const WORKER_SESSIONS: &str = "taskloom_worker_sessions";
    pub const WORKER_FREE_SLOTS: &str = "taskloom_worker_free_slots";
    pub const PROVIDER_REQUESTS: &str = "taskloom_provider_requests_total";
    pub const PROVIDER_ERRORS: &str = "taskloom_provider_errors_total";
    pub const PROVIDER_DURATION: &str = "taskloom_provider_request_duration_seconds";
    pub const PROVIDER_INPUT_TOKENS: &str = "taskloom_provider_input_tokens_total";
    pub const PROVIDER_OUTPUT_TOKENS: &str = "taskloom_provider_output_tokens_total";
    pub const STORE_DURATION: &str = "taskloom_store_transaction_duration_seconds";
    pub const STORE_ERRORS: &str = "taskloom_store_errors_total";
    pub const EVENTS_DELIVERED: &str = "taskloom_events_delivered_total";
}

/// Distinct values one label keeps before reporting `other`.
pub const MAX_LABEL_VALUES: usize = 200;

/// The value reported for a label past its cap.
pub const OTHER: &str = "other";

/// Buckets of the latency histograms, in seconds: 1 ms to 5 minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];
/// Buckets of run durations, in seconds: 10 ms to a day.
const RUN_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
    21600.0, 86400.0,
];
/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Whether a recorder is installed (`--metrics-listen`); the hooks do
/// nothing otherwise.
pub fn enabled() -> bool {
    RECORDER.get().is_some()
}

/// Installs the process's recorder (once; later calls reuse it) and
/// describes every family.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = RECORDER.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .and_then(|builder| {
            builder.set_buckets_for_metric(Matcher::Full(names::RUN_DURATION.into()), RUN_BUCKETS)
        })
        .context("configure the metric buckets")?
        .install_recorder()
        .context("install the metrics recorder")?;
    describe();
    gauge!(names::BUILD_INFO, "version" => crate::VERSION).set(1.0);
    Ok(RECORDER.get_or_init(|| handle).clone())
}

fn describe() {
    use names::*;
    describe_gauge!(BUILD_INFO, "Always 1; the server version is its label.");
    describe_counter!(RUNS_STARTED, "Runs created, by chain.");
    describe_counter!(
        RUNS_FINISHED,
        "Runs that reached a terminal state, by chain and status (succeeded, failed, cancelled)."
    );
    describe_histogram!(
        RUN_DURATION,
        metrics::Unit::Seconds,
        "Time from a run's creation to its terminal state, by chain and status."
    );
    describe_counter!(
        ATTEMPTS,
        "Task attempts that ended, by handler and outcome (succeeded, failed, timed_out)."
    );
    describe_gauge!(QUEUE_DEPTH, "Attempts ready and due now, by queue.");
    describe_gauge!(
        QUEUE_OLDEST_READY_AGE,
        metrics::Unit::Seconds,
        "How long the oldest ready attempt of a queue has waited, by queue."
    );
    describe_histogram!(
        DISPATCH_LATENCY,
        metrics::Unit::Seconds,
        "Time from an attempt becoming ready to its lease, by queue."
    );
    describe_counter!(
        LEASE_EXPIRIES,
        "Leases that expired (or were ended for a lost holder), by handler."
    );
    describe_counter!(
        FENCING_REJECTIONS,
        "Lease operations refused because the lease is no longer held under the token given."
    );
    describe_counter!(
        THROTTLED,
        "Calls or claims held back by a limit, by reason (max_concurrency, requests_per_minute, \
         tokens_per_minute, backoff, retry_after, store_unavailable, queue_cap, tenant_cap)."
    );
    describe_gauge!(
        WORKER_SESSIONS,
        "Remote worker sessions open on this replica."
    );
    describe_gauge!(
        WORKER_FREE_SLOTS,
        "Free slots of the worker sessions open on this replica."
    );
    describe_counter!(
        PROVIDER_REQUESTS,
        "Model provider calls, by backend and model."
    );
    describe_counter!(
        PROVIDER_ERRORS,
        "Model provider calls that failed, by backend, model and HTTP status (`none` when the \
         provider did not answer)."
    );
    describe_histogram!(
        PROVIDER_DURATION,
        metrics::Unit::Seconds,
        "Duration of model provider calls, by backend and model."
    );
    describe_counter!(
        PROVIDER_INPUT_TOKENS,
        "Input tokens model providers reported, by backend and model."
    );
    describe_counter!(
        PROVIDER_OUTPUT_TOKENS,
        "Output tokens model providers reported, by backend and model."
    );
    describe_histogram!(
        STORE_DURATION,
        metrics::Unit::Seconds,
        "Duration of the store transactions of the execution path, by operation and outcome."
    );
    describe_counter!(
        STORE_ERRORS,
        "Database errors, by kind (unavailable, storage_full, conflict, constraint, database)."
    );
    describe_counter!(
        EVENTS_DELIVERED,
        "Run events sent to WatchRun streams, by event type."
    );
}

/// Label values of one kind, capped at [`MAX_LABEL_VALUES`].
struct LabelCap {
    seen: Mutex<std::collections::BTreeSet<String>>,
}

impl LabelCap {
    const fn new() -> LabelCap {
        LabelCap {
            seen: Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    fn bound(&self, value: &str) -> String {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.contains(value) {
            return value.to_string();
        }
        if seen.len() >= MAX_LABEL_VALUES {
            return OTHER.to_string();
        }
        seen.insert(value.to_string());
        value.to_string()
    }
}

static CHAINS: LabelCap = LabelCap::new();
static QUEUES: LabelCap = LabelCap::new();
static BACKENDS: LabelCap = LabelCap::new();
static MODELS: LabelCap = LabelCap::new();

/// The type and task of a stored event, read without decoding the rest
/// (outputs are skipped, not copied).
#[derive(Clone, PartialEq, prost::Message)]
struct EventHead {
    #[prost(int32, tag = "3")]
    kind: i32,
    #[prost(string, tag = "5")]
    task_id: String,
}

/// A transition or a start of `run` was committed with `events`; `chain`
/// is the run's chain version when the caller has it (for the handler of
/// each attempt).
pub fn run_committed(run: &RunRecord, chain: Option<&CompiledChain>, events: &[EventRecord]) {
    if !enabled() {
        return;
    }
    use pb::RunEventType as Type;
    let handler = |task_id: &str| {
        chain
            .and_then(|chain| chain.task(task_id))
            .map_or("unknown", |task| task.handler.name())
    };
    for event in events {
        let Ok(head) = <EventHead as prost::Message>::decode(event.payload.as_slice()) else {
            continue;
        };
        match Type::try_from(head.kind) {
            Ok(Type::RunCreated) => {
                counter!(names::RUNS_STARTED, "chain" => CHAINS.bound(&run.chain_id)).increment(1)
            }
            Ok(kind @ (Type::RunSucceeded | Type::RunFailed | Type::RunCancelled)) => {
                let status = match kind {
                    Type::RunSucceeded => "succeeded",
                    Type::RunFailed => "failed",
                    _ => "cancelled",
                };
                let chain = CHAINS.bound(&run.chain_id);
                counter!(names::RUNS_FINISHED, "chain" => chain.clone(), "status" => status)
                    .increment(1);
                let ended = run.ended_at.unwrap_or_else(Utc::now);
                histogram!(names::RUN_DURATION, "chain" => chain, "status" => status)
                    .record(seconds_between(run.created_at, ended));
            }
            Ok(kind @ (Type::TaskSucceeded | Type::TaskFailed | Type::TaskTimedOut)) => {
                let outcome = match kind {
                    Type::TaskSucceeded => "succeeded",
                    Type::TaskFailed => "failed",
                    _ => "timed_out",
                };
                counter!(names::ATTEMPTS, "handler" => handler(&head.task_id), "outcome" => outcome)
                    .increment(1);
            }
            Ok(Type::LeaseExpired) => {
                counter!(names::LEASE_EXPIRIES, "handler" => handler(&head.task_id)).increment(1)
            }
            _ => {}
        }
    }
}

/// `attempt` was leased (by a claim, or eagerly in the transaction that
/// created it): the time it waited since it became ready.
pub fn leased(attempt: &AttemptRecord) {
    if !enabled() {
        return;
    }
    let leased_at = attempt.started_at.unwrap_or_else(Utc::now);
    histogram!(names::DISPATCH_LATENCY, "queue" => QUEUES.bound(&attempt.queue))
        .record(seconds_between(attempt.available_at, leased_at));
}

/// A lease operation was refused as stale or foreign.
pub fn fencing_rejected() {
    if enabled() {
        counter!(names::FENCING_REJECTIONS).increment(1);
    }
}

/// A call or claim was held back by a limit; `reason` is one of the
/// documented few.
pub fn throttled(reason: &'static str) {
    if enabled() {
        counter!(names::THROTTLED, "reason" => reason).increment(1);
    }
}

/// The reason of a call limit that held a provider call, from its
/// description (see `llm::limits::judge`).
pub fn limit_reason(limit: &str) -> &'static str {
    if limit.contains("(max_concurrency") {
        "max_concurrency"
    } else if limit.contains("(requests_per_minute") {
        "requests_per_minute"
    } else if limit.contains("(tokens_per_minute") {
        "tokens_per_minute"
    } else if limit.contains("backed off until") {
        "backoff"
    } else {
        "store_unavailable"
    }
}

/// One model provider call: how long it took and, if it answered, the
/// tokens it reported (input, output); else the HTTP status it failed
/// with, if any.
pub fn provider_call(
    backend: &str,
    model: &str,
    elapsed: Duration,
    result: Result<(u64, u64), Option<u16>>,
) {
    if !enabled() {
        return;
    }
    let backend = BACKENDS.bound(backend);
    let model = MODELS.bound(model);
    let labels = [("backend", backend), ("model", model)];
    counter!(names::PROVIDER_REQUESTS, &labels).increment(1);
    histogram!(names::PROVIDER_DURATION, &labels).record(elapsed.as_secs_f64());
    match result {
        Ok((input, output)) => {
            counter!(names::PROVIDER_INPUT_TOKENS, &labels).increment(input);
            counter!(names::PROVIDER_OUTPUT_TOKENS, &labels).increment(output);
        }
        Err(status) => {
            let status = status.map_or_else(|| "none".to_string(), |code| code.to_string());
            let [(_, backend), (_, model)] = labels;
            counter!(names::PROVIDER_ERRORS, "backend" => backend, "model" => model, "status" => status)
                .increment(1);
        }
    }
}

/// Times one store transaction of the execution path.
pub async fn store_call<T, E>(
    operation: &'static str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    if !enabled() {
        return call.await;
    }
    let started = Instant::now();
    let result = call.await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    histogram!(names::STORE_DURATION, "operation" => operation, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

/// A database error of `kind` (`unavailable`, `storage_full`, `conflict`,
/// `constraint`, `database`).
pub fn store_error(kind: &'static str) {
    if enabled() {
        counter!(names::STORE_ERRORS, "kind" => kind).increment(1);
    }
}

/// An event was sent to a `WatchRun` stream.
pub fn event_delivered(kind: i32) {
    if !enabled() {
        return;
    }
    let kind = pb::RunEventType::try_from(kind)
        .map(|kind| {
            kind.as_str_name()
                .trim_start_matches("RUN_EVENT_TYPE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unknown".to_string());
    counter!(names::EVENTS_DELIVERED, "type" => kind).increment(1);
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from)
        .to_std()
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// One queue's level for the queue gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueLevel {
    pub queue: String,
    /// Attempts ready and due now.
    pub depth: i64,
    /// When the oldest of them became ready.
    pub oldest_ready_at: Option<DateTime<Utc>>,
}

/// The levels of every queue, read at each scrape; `None` when they cannot
/// be read now (the gauges then keep their last values).
async fn queue_levels(store: &DynStore, now: DateTime<Utc>) -> Option<Vec<QueueLevel>> {
    match store.list_queues(now).await {
        Ok(queues) => Some(
            queues
                .into_iter()
                .map(|queue| QueueLevel {
                    queue: queue.name,
                    depth: queue.ready,
                    oldest_ready_at: queue.oldest_ready_at,
                })
                .collect(),
        ),
        Err(error) => {
            tracing::debug!(error = %error, "cannot read the queues for the scrape");
            None
        }
    }
}

/// What a scrape reads besides the recorded families.
#[derive(Clone)]
pub struct Sources {
    pub store: DynStore,
    pub dispatcher: Dispatcher,
}

/// Sets the gauges read at scrape time.
async fn refresh(sources: &Sources, known_queues: &Mutex<HashSet<String>>) {
    let sessions = sources.dispatcher.sessions(None);
    gauge!(names::WORKER_SESSIONS).set(sessions.len() as f64);
    let free: u64 = sessions
        .iter()
        .map(|session| u64::from(session.slots.saturating_sub(session.leases_held)))
        .sum();
    gauge!(names::WORKER_FREE_SLOTS).set(free as f64);

    let now = Utc::now();
    let Some(levels) = queue_levels(&sources.store, now).await else {
        return;
    };
    let mut reported: HashMap<String, (f64, f64)> = HashMap::new();
    for level in levels {
        let age = level
            .oldest_ready_at
            .map_or(0.0, |at| seconds_between(at, now));
        let entry = reported
            .entry(QUEUES.bound(&level.queue))
            .or_insert((0.0, 0.0));
        entry.0 += level.depth as f64;
        entry.1 = entry.1.max(age);
    }
    // A queue that emptied out reads 0, not its last level.
    let mut known = known_queues
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for queue in known.iter() {
        reported.entry(queue.clone()).or_insert((0.0, 0.0));
    }
    for (queue, (depth, age)) in reported {
        gauge!(names::QUEUE_DEPTH, "queue" => queue.clone()).set(depth);
        gauge!(names::QUEUE_OLDEST_READY_AGE, "queue" => queue.clone()).set(age);
        known.insert(queue);
    }
}

/// Whether this replica should get traffic: its gRPC health (`""`) is
/// `SERVING`, which it is not while the store cannot write or once it
/// drains, and it is not draining.
#[derive(Clone)]
pub struct Readiness {
    health: std::sync::Arc<HealthService>,
    draining: watch::Receiver<bool>,
}

impl Readiness {
    pub fn new(reporter: HealthReporter, draining: watch::Receiver<bool>) -> Readiness {
        Readiness {
            health: std::sync::Arc::new(HealthService::from_health_reporter(reporter)),
            draining,
        }
    }

    /// `Ok` when ready, else why not.
    pub async fn check(&self) -> Result<(), &'static str> {
        if *self.draining.borrow() {
            return Err("draining");
        }
        let request = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        });
        match self.health.check(request).await {
            Ok(response) if response.get_ref().status() == ServingStatus::Serving => Ok(()),
            _ => Err("not serving: the store cannot write or the server is stopping"),
        }
    }
}

#[derive(Clone)]
struct Endpoint {
    handle: PrometheusHandle,
    sources: Sources,
    readiness: Readiness,
    known_queues: std::sync::Arc<Mutex<HashSet<String>>>,
}

/// The endpoint's task; dropping it stops the endpoint.
pub struct EndpointTask(tokio::task::JoinHandle<()>);

impl Drop for EndpointTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` there
/// until the returned task is dropped; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    sources: Sources,
    readiness: Readiness,
) -> anyhow::Result<(SocketAddr, EndpointTask)> {
    let handle = install()?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen for metrics on {addr}"))?;
    let local_addr = listener.local_addr()?;
    let endpoint = Endpoint {
        handle: handle.clone(),
        sources,
        readiness,
        known_queues: Default::default(),
    };
    let router = axum::Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(endpoint);
    let server = async move {
        let upkeep = async {
            let mut every = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        };
        let serve = axum::serve(listener, router);
        tokio::select! {
            result = serve => {
                if let Err(error) = result {
                    tracing::error!(error = %error, "the metrics endpoint failed");
                }
            }
            () = upkeep => {}
        }
    };
    Ok((local_addr, EndpointTask(tokio::spawn(server))))
}

async fn scrape(State(endpoint): State<Endpoint>) -> Response {
    refresh(&endpoint.sources, &endpoint.known_queues).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        endpoint.handle.render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(endpoint): State<Endpoint>) -> Response {
    match endpoint.readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_past_its_cap_is_other() {
        let cap = LabelCap::new();
        for index in 0..MAX_LABEL_VALUES {
            assert_eq!(cap.bound(&format!("q{index}")), format!("q{index}"));
        }
        assert_eq!(cap.bound("one-too-many"), OTHER);
        assert_eq!(cap.bound("q0"), "q0");
    }

    #[test]
    fn limit_reasons_follow_the_limit_descriptions() {
        assert_eq!(
            limit_reason(r#"backend "slow": 5 calls in flight (max_concurrency 5)"#),
            "max_concurrency"
        );
        assert_eq!(
            limit_reason("m: 3 calls in the last minute (requests_per_minute 3)"),
            "requests_per_minute"
        );
        assert_eq!(
            limit_reason(
                "m: no room for about 10 more tokens in the last minute (tokens_per_minute 5)"
            ),
            "tokens_per_minute"
        );
        assert_eq!(
            limit_reason("b: backed off until 2026-01-01T00:00:00Z (HTTP 429)"),
            "backoff"
        );
    }

    #[test]
    fn an_event_head_reads_type_and_task_only() {
        let event = pb::RunEvent {
            r#type: pb::RunEventType::TaskFailed as i32,
            task_id: "t1".into(),
            message: "boom".into(),
            output: Some(crate::kernel::value::text("x".repeat(10_000))),
            ..Default::default()
        };
        let head =
            <EventHead as prost::Message>::decode(prost::Message::encode_to_vec(&event).as_slice())
                .unwrap();
        assert_eq!(head.kind, pb::RunEventType::TaskFailed as i32);
        assert_eq!(head.task_id, "t1");
    }
}
