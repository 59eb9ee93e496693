//! Traces: W3C trace context for runs, attempts, hooks and workers, and,
//! with `--otlp-endpoint`, spans exported over OTLP (docs/operations.md,
//! "Traces").
//!
//! A run outlives the process that started it and moves between replicas,
//! so its span context is derived, never remembered: the trace id is the
//! one of the `traceparent` the run was started with (stored with the run)
//! or else the run id's 16 bytes; the run's and each attempt's span ids are
//! hashes of their ids. Any replica names the same spans, and a worker's
//! lease offer names its attempt's span before that span is exported.
//!
//! Run and attempt spans are exported when they end, with the times the
//! store recorded; RPC, provider and hook spans as they happen. Without an
//! endpoint no span is built: every export function returns at once.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler, SdkTracer,
    SdkTracerProvider,
};
use sha2::{Digest, Sha256};
use tower::{Layer, Service};

use crate::store::{AttemptRecord, AttemptStatus, RunRecord, RunStatus};

/// The header (and gRPC metadata key) of W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Spans waiting for export; more are dropped (and counted by the SDK)
/// rather than slowing the work they describe.
const EXPORT_QUEUE: usize = 4096;
/// How long one export may take before it is abandoned.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the last spans to leave.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether spans are exported (`--otlp-endpoint` given).
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The exporter of this process; [`Exporting::shutdown`] flushes it.
pub struct Exporting {
    provider: SdkTracerProvider,
}

/// Starts exporting spans to the OTLP/gRPC collector at `endpoint` (e.g.
/// `http://127.0.0.1:4317`). Spans are batched on the SDK's own thread with
/// a bounded queue: a slow or unreachable collector costs dropped spans,
/// never slower runs. Must be called inside the Tokio runtime.
pub fn init(endpoint: &str) -> anyhow::Result<Exporting> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    // The defaults (and the OTEL_BSP_* variables) decide the delay and the
    // batch size; the queue is bounded here.
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(EXPORT_QUEUE)
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_sampler(Sampler::AlwaysOn)
        .with_id_generator(DerivedIds)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("taskloom")
                .with_attribute(KeyValue::new("service.version", crate::VERSION))
                .build(),
        )
        .build();
    let tracer = provider.tracer("taskloom");
    if TRACER.set(tracer).is_err() {
        anyhow::bail!("traces are exported already");
    }
    Ok(Exporting { provider })
}

impl Exporting {
    /// Exports the spans still queued (waiting at most a few seconds).
    pub async fn shutdown(self) {
        let provider = self.provider;
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(SHUTDOWN_WAIT, flushed).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(error = %error, "exporting the last spans failed"),
            _ => tracing::warn!("the last spans were not exported in time"),
        }
    }
}

// ---------------------------------------------------------------------------
// Trace context

/// A parsed W3C `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a `traceparent` value; anything the W3C rules refuse (bad
    /// format, all-zero ids, version `ff`) is `None`.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let text = text.trim();
        // The propagator pads short ids; the W3C fields have fixed widths
        // (version 00 has exactly four).
        let fields: Vec<&str> = text.split('-').collect();
        let widths_fit = fields.len() >= 4
            && fields.iter().take(4).map(|f| f.len()).eq([2, 32, 16, 2])
            && (fields[0] != "00" || fields.len() == 4);
        if !widths_fit {
            return None;
        }
        let carrier = HashMap::from([(TRACEPARENT.to_string(), text.to_string())]);
        let context = TraceContextPropagator::new().extract(&carrier);
        let span = context.span();
        let found = span.span_context();
        found.is_valid().then(|| TraceParent {
            trace_id: found.trace_id(),
            span_id: found.span_id(),
            sampled: found.is_sampled(),
        })
    }

    /// The normalised header value (version 00, lowercase).
    pub fn header(&self) -> String {
        let flags = if self.sampled { 1 } else { 0 };
        format!("00-{}-{}-{flags:02x}", self.trace_id, self.span_id)
    }

    fn remote_context(&self) -> Context {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        Context::new().with_remote_span_context(SpanContext::new(
            self.trace_id,
            self.span_id,
            flags,
            true,
            TraceState::default(),
        ))
    }
}

/// `text` as a normalised `traceparent`, or `None` if it is not a valid
/// one (garbage is never stored).
pub fn normalise(text: &str) -> Option<String> {
    TraceParent::parse(text).map(|parent| parent.header())
}

/// The span ids of a run and its attempts: a hash of `kind` and `id`.
fn derived_span_id(kind: &str, id: &str) -> SpanId {
    let digest = Sha256::new()
        .chain_update(kind.as_bytes())
        .chain_update([0])
        .chain_update(id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    if bytes == [0; 8] {
        bytes[7] = 1;
    }
    SpanId::from_bytes(bytes)
}

/// The trace of a run without a `traceparent`: its UUID's bytes (or a hash
/// of an id that is no UUID).
fn derived_trace_id(run_id: &str) -> TraceId {
    match uuid::Uuid::parse_str(run_id) {
        Ok(uuid) if !uuid.is_nil() => TraceId::from_bytes(*uuid.as_bytes()),
        _ => {
            let digest = Sha256::digest(run_id.as_bytes());
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            bytes[15] |= 1;
            TraceId::from_bytes(bytes)
        }
    }
}

/// The span context of a run: its trace, its span and its parent (the
/// `traceparent` it was started with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTrace {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<TraceParent>,
}

impl RunTrace {
    /// The run `run_id` started with `traceparent` (as stored).
    pub fn of(run_id: &str, traceparent: Option<&str>) -> RunTrace {
        let parent = traceparent.and_then(TraceParent::parse);
        RunTrace {
            trace_id: parent.map_or_else(|| derived_trace_id(run_id), |p| p.trace_id),
            span_id: derived_span_id("run", run_id),
            parent,
        }
    }

    pub fn of_run(run: &RunRecord) -> RunTrace {
        RunTrace::of(&run.id, run.traceparent.as_deref())
    }

    /// The span context of one of the run's attempts.
    pub fn attempt(&self, attempt_id: &str) -> AttemptTrace {
        AttemptTrace {
            trace_id: self.trace_id,
            span_id: derived_span_id("attempt", attempt_id),
            run_span_id: self.span_id,
        }
    }

    fn context(&self) -> Context {
        TraceParent {
            trace_id: self.trace_id,
            span_id: self.span_id,
            sampled: true,
        }
        .remote_context()
    }
}

/// The span context of an attempt (a child of its run's span).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTrace {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub run_span_id: SpanId,
}

impl AttemptTrace {
    /// The `traceparent` naming the attempt's span: what hooks and workers
    /// continue.
    pub fn traceparent(&self) -> String {
        self.as_parent().header()
    }

    fn as_parent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            span_id: self.span_id,
            sampled: true,
        }
    }
}

// ---------------------------------------------------------------------------
// Deterministic ids

thread_local! {
    /// Ids the next span built on this thread must take (run and attempt
    /// spans), set just before it is built.
    static NEXT_IDS: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Random ids, except for a span whose ids are derived ([`NEXT_IDS`]).
#[derive(Debug)]
struct DerivedIds;

impl IdGenerator for DerivedIds {
    fn new_trace_id(&self) -> TraceId {
        match NEXT_IDS.with(Cell::get) {
            Some((trace_id, _)) => trace_id,
            None => RandomIdGenerator::default().new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        match NEXT_IDS.with(Cell::get) {
            Some((_, span_id)) => span_id,
            None => RandomIdGenerator::default().new_span_id(),
        }
    }
}

/// Builds a span with the given ids (the SDK asks the id generator, on this
/// thread, while building).
fn build_with_ids(
    tracer: &SdkTracer,
    builder: opentelemetry::trace::SpanBuilder,
    parent: &Context,
    ids: (TraceId, SpanId),
) -> opentelemetry_sdk::trace::Span {
    NEXT_IDS.with(|next| next.set(Some(ids)));
    let span = tracer.build_with_context(builder, parent);
    NEXT_IDS.with(|next| next.set(None));
    span
}

fn system_time(at: DateTime<Utc>) -> SystemTime {
    SystemTime::from(at)
}

// ---------------------------------------------------------------------------
// Run and attempt spans (exported when they end)

/// Exports the span of a run that just ended.
pub fn run_ended(run: &RunRecord) {
    let Some(tracer) = TRACER.get() else {
        return;
    };
    let trace = RunTrace::of_run(run);
    let parent = trace
        .parent
        .map_or_else(Context::new, |parent| parent.remote_context());
    let mut attributes = vec![
        KeyValue::new("taskloom.run.id", run.id.clone()),
        KeyValue::new("taskloom.chain.id", run.chain_id.clone()),
        KeyValue::new("taskloom.chain.version", run.chain_version),
        KeyValue::new("taskloom.run.status", run.status.as_str()),
        KeyValue::new("taskloom.run.steps", i64::from(run.steps)),
        KeyValue::new("gen_ai.usage.input_tokens", run.input_tokens),
        KeyValue::new("gen_ai.usage.output_tokens", run.output_tokens),
    ];
    if !run.tenant.is_empty() {
        attributes.push(KeyValue::new("taskloom.tenant", run.tenant.clone()));
    }
    let builder = tracer
        .span_builder("run")
        .with_kind(SpanKind::Internal)
        .with_start_time(system_time(run.created_at))
        .with_attributes(attributes);
    let mut span = build_with_ids(tracer, builder, &parent, (trace.trace_id, trace.span_id));
    match (&run.error, run.status) {
        (Some(error), _) => span.set_status(Status::error(error.message.clone())),
        (None, RunStatus::Succeeded) => span.set_status(Status::Ok),
        _ => {}
    }
    span.end_with_timestamp(system_time(run.ended_at.unwrap_or(run.updated_at)));
}

/// Exports the span of an attempt that just ended (succeeded, failed,
/// timed out or was cancelled), a child of its run's span.
pub fn attempt_ended(run: &RunRecord, attempt: &AttemptRecord) {
    let Some(tracer) = TRACER.get() else {
        return;
    };
    let run_trace = RunTrace::of_run(run);
    let trace = run_trace.attempt(&attempt.id);
    let mut attributes = vec![
        KeyValue::new("taskloom.run.id", attempt.run_id.clone()),
        KeyValue::new("taskloom.task.id", attempt.task_id.clone()),
        KeyValue::new("taskloom.attempt.id", attempt.id.clone()),
        KeyValue::new("taskloom.attempt.number", i64::from(attempt.attempt)),
        KeyValue::new("taskloom.attempt.status", attempt.status.as_str()),
        KeyValue::new("taskloom.queue", attempt.queue.clone()),
    ];
    if let Some(backend) = &attempt.backend_id {
        attributes.push(KeyValue::new("taskloom.backend", backend.clone()));
    }
    if let Some(model) = &attempt.model {
        attributes.push(KeyValue::new("gen_ai.request.model", model.clone()));
    }
    if attempt.input_tokens > 0 || attempt.output_tokens > 0 {
        attributes.push(KeyValue::new(
            "gen_ai.usage.input_tokens",
            attempt.input_tokens,
        ));
        attributes.push(KeyValue::new(
            "gen_ai.usage.output_tokens",
            attempt.output_tokens,
        ));
    }
    let builder = tracer
        .span_builder("attempt")
        .with_kind(SpanKind::Internal)
        .with_start_time(system_time(
            attempt.started_at.unwrap_or(attempt.created_at),
        ))
        .with_attributes(attributes);
    let mut span = build_with_ids(
        tracer,
        builder,
        &run_trace.context(),
        (trace.trace_id, trace.span_id),
    );
    match attempt.status {
        AttemptStatus::Succeeded => span.set_status(Status::Ok),
        _ => span.set_status(Status::error(
            attempt
                .error
                .clone()
                .unwrap_or_else(|| format!("attempt {}", attempt.status.as_str())),
        )),
    }
    span.end_with_timestamp(system_time(attempt.ended_at.unwrap_or_else(Utc::now)));
}

/// Whether an attempt in `status` has ended for good (its span can go).
pub fn attempt_has_ended(status: AttemptStatus) -> bool {
    matches!(
        status,
        AttemptStatus::Succeeded
            | AttemptStatus::Failed
            | AttemptStatus::Cancelled
            | AttemptStatus::TimedOut
    )
}

// ---------------------------------------------------------------------------
// Calls made by an attempt (exported as they happen)

/// A provider (model) or hook call in progress: a child span of its
/// attempt, ended (and exported) by [`Call::end`] or when dropped (the call
/// was cancelled).
pub struct Call {
    span: Option<opentelemetry_sdk::trace::Span>,
    /// An error answer was recorded: the span ends failed.
    failed: bool,
}

impl Call {
    fn start(attempt: &AttemptTrace, name: &'static str, attributes: Vec<KeyValue>) -> Call {
        let Some(tracer) = TRACER.get() else {
            return Call {
                span: None,
                failed: false,
            };
        };
        let builder = tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes);
        let span = tracer.build_with_context(builder, &attempt.as_parent().remote_context());
        Call {
            span: Some(span),
            failed: false,
        }
    }

    /// A model call of `attempt` (`operation`: `chat` or `embeddings`).
    pub fn provider(attempt: &AttemptTrace, operation: &'static str) -> Call {
        Call::start(
            attempt,
            "provider",
            vec![KeyValue::new("gen_ai.operation.name", operation)],
        )
    }

    /// A call of the hook `name` by `attempt`.
    pub fn hook(attempt: &AttemptTrace, name: &str, method: &str) -> Call {
        Call::start(
            attempt,
            "hook",
            vec![
                KeyValue::new("taskloom.hook", name.to_string()),
                KeyValue::new("http.request.method", method.to_string()),
            ],
        )
    }

    /// Records which backend and model served a model call and its tokens.
    pub fn served(&mut self, backend: &str, model: &str, input_tokens: u64, output_tokens: u64) {
        if let Some(span) = &mut self.span {
            span.set_attributes([
                KeyValue::new("taskloom.backend", backend.to_string()),
                KeyValue::new("gen_ai.request.model", model.to_string()),
                KeyValue::new("gen_ai.usage.input_tokens", input_tokens as i64),
                KeyValue::new("gen_ai.usage.output_tokens", output_tokens as i64),
            ]);
        }
    }

    /// Records an HTTP answer's status (an error status fails the span).
    pub fn http_status(&mut self, status: u16) {
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 400 {
                span.set_status(Status::error(format!("HTTP {status}")));
                self.failed = true;
            }
        }
    }

    /// Ends the call: `Err` marks the span failed with the message.
    pub fn end<T, E: std::fmt::Display>(mut self, result: &Result<T, E>) {
        if let Some(span) = &mut self.span {
            match result {
                Ok(_) if self.failed => {}
                Ok(_) => span.set_status(Status::Ok),
                Err(error) => span.set_status(Status::error(error.to_string())),
            }
            span.end();
        }
    }
}

// ---------------------------------------------------------------------------
// RPC spans and the caller's traceparent

tokio::task_local! {
    /// The valid `traceparent` the call being served was sent with.
    static INCOMING: Option<TraceParent>;
}

/// The normalised `traceparent` the call being served was sent with, if it
/// sent a valid one (an invalid one is ignored).
pub fn incoming_traceparent() -> Option<String> {
    INCOMING
        .try_with(|incoming| incoming.map(|parent| parent.header()))
        .ok()
        .flatten()
}

/// Reads each call's `traceparent` (for [`incoming_traceparent`]) and,
/// when exporting, wraps it in a server span (`rpc.service/rpc.method`)
/// whose parent is that `traceparent`.
#[derive(Clone, Copy, Default)]
pub struct RpcLayer;

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner }
    }
}

#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let incoming = request
            .headers()
            .get(TRACEPARENT)
            .and_then(|value| value.to_str().ok())
            .and_then(TraceParent::parse);
        let span = TRACER
            .get()
            .map(|tracer| rpc_span(tracer, request.uri().path(), incoming));
        let call = INCOMING.scope(incoming, self.inner.call(request));
        Box::pin(async move {
            let result = call.await;
            if let Some(mut span) = span {
                if let Ok(response) = &result {
                    // Set on a trailers-only answer (every error); a
                    // streamed answer's status comes later, unseen here.
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.parse::<i64>().ok())
                        .unwrap_or(0);
                    span.set_attribute(KeyValue::new("rpc.grpc.status_code", code));
                    if code != 0 {
                        span.set_status(Status::error(format!("gRPC status {code}")));
                    }
                }
                span.end();
            }
            result
        })
    }
}

fn rpc_span(
    tracer: &SdkTracer,
    path: &str,
    parent: Option<TraceParent>,
) -> opentelemetry_sdk::trace::Span {
    let name = path.trim_start_matches('/').to_string();
    let (service, method) = name.split_once('/').unwrap_or((name.as_str(), ""));
    let attributes = vec![
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", service.to_string()),
        KeyValue::new("rpc.method", method.to_string()),
    ];
    let builder = tracer
        .span_builder(name.clone())
        .with_kind(SpanKind::Server)
        .with_attributes(attributes);
    let parent = parent.map_or_else(Context::new, |parent| parent.remote_context());
    tracer.build_with_context(builder, &parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_normalised_and_garbage_refused() {
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(normalise(given).as_deref(), Some(given));
        assert_eq!(
            normalise("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
            "not sampled"
        );
        for garbage in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01; drop table runs",
        ] {
            assert_eq!(normalise(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn run_and_attempt_contexts_are_derived_the_same_everywhere() {
        let run_id = "01938f4e-8c1a-7b3e-9f00-123456789abc";
        let own = RunTrace::of(run_id, None);
        assert_eq!(own.trace_id.to_string(), "01938f4e8c1a7b3e9f00123456789abc");
        assert_eq!(own, RunTrace::of(run_id, None));
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let joined = RunTrace::of(run_id, Some(parent));
        assert_eq!(
            joined.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(joined.span_id, own.span_id);
        let attempt = joined.attempt("01938f4e-9999-7b3e-9f00-123456789abc");
        assert_eq!(attempt.run_span_id, joined.span_id);
        assert_ne!(attempt.span_id, joined.span_id);
        let header = attempt.traceparent();
        assert_eq!(
            TraceParent::parse(&header).map(|p| p.span_id),
            Some(attempt.span_id)
        );
        assert!(header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    }
}
