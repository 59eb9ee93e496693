//! Traces against a real server process: an in-test OTLP/gRPC collector
//! receives the spans of a run started with a W3C `traceparent` and checks
//! the tree (RPC span and run span under the caller's span, attempt spans
//! under the run span, the model call and the hook call under their
//! attempts); the hook and a remote worker receive the attempt's context;
//! without a `traceparent` a run has a trace of its own; an invalid one is
//! ignored; an unreachable collector slows nothing.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::chains::{branch, chain, goto, task, text_value};
use common::{Backend, HookServer, TestServer, raw_header};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::fake_llm::{FakeLlm, Reply};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const MODEL: &str = "traced-model";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const QUEUE: &str = "traced";

// ---------------------------------------------------------------------------
// The collector

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves on a loopback port; returns its endpoint URL.
    async fn start() -> (Collector, String) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        (collector, url)
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (the exporter batches every few seconds) until `done` holds
    /// for the spans received.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: spans received: {:#?}",
                spans.iter().map(describe).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn describe(span: &Span) -> String {
    format!(
        "{} trace={} span={} parent={} {:?}",
        span.name,
        hex(&span.trace_id),
        hex(&span.span_id),
        hex(&span.parent_span_id),
        attributes(span)
    )
}

fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(text)) => text.clone(),
                Some(AnyValue::IntValue(number)) => number.to_string(),
                Some(AnyValue::BoolValue(flag)) => flag.to_string(),
                Some(AnyValue::DoubleValue(number)) => number.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn attribute(span: &Span, key: &str) -> String {
    attributes(span).remove(key).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// The pieces of a run: a model, a hook and a worker

async fn start_server(backend: Backend, otlp: Option<&str>) -> TestServer {
    let mut args = Vec::new();
    if let Some(endpoint) = otlp {
        args.extend(["--otlp-endpoint", endpoint]);
    }
    TestServer::start_with(backend, &args).await
}

async fn add_hook(server: &TestServer, url: &str) {
    server
        .hooks()
        .create_hook(pb::CreateHookRequest {
            hook: Some(pb::Hook {
                name: "enrich".into(),
                url: url.into(),
                method: "post".into(),
                timeout: Some(prost_types::Duration {
                    seconds: 10,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
}

/// `ask` (a model call) → `call` (the hook) → `work` (a remote worker).
fn traced_chain() -> pb::Chain {
    let mut ask = task(
        "ask",
        "raw_string",
        vec![branch("default", "", goto("call"))],
    );
    ask.prompt_template = "Say something.".into();
    ask.execute_config = Some(pb::ExecuteConfig {
        model: MODEL.into(),
        ..Default::default()
    });
    let mut call = task("call", "hook", vec![branch("default", "", goto("work"))]);
    call.hook = Some(pb::HookCall {
        name: "enrich".into(),
        args: Default::default(),
    });
    let mut work = task("work", "worker", vec![branch("default", "", goto("end"))]);
    work.queue = QUEUE.into();
    chain("traced", vec![ask, call, work])
}

/// A worker on [`QUEUE`] that completes the first offer it gets and
/// returns it.
async fn work_one(channel: Channel) -> pb::LeaseOffer {
    use pb::server_message::Msg as ServerMsg;
    use pb::worker_message::Msg as WorkerMsg;
    let (outbound, receiver) = mpsc::channel(16);
    outbound
        .send(pb::WorkerMessage {
            msg: Some(WorkerMsg::Hello(pb::Hello {
                worker_id: "tracer".into(),
                name: "trace test worker".into(),
                queues: vec![QUEUE.into()],
                slots: 1,
                sdk_version: "taskloom-rust-tests/0".into(),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    let mut inbound = pb::worker_service_client::WorkerServiceClient::new(channel)
        .connect(ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline.into(), inbound.message())
            .await
            .expect("a lease offer in time")
            .unwrap()
            .expect("the stream stays open");
        match message.msg {
            Some(ServerMsg::Lease(offer)) => {
                outbound
                    .send(pb::WorkerMessage {
                        msg: Some(WorkerMsg::Complete(pb::Completion {
                            lease: Some(pb::LeaseRef {
                                attempt_id: offer.attempt_id.clone(),
                                lease_token: offer.lease_token.clone(),
                            }),
                            output: Some(text_value("worked")),
                        })),
                    })
                    .await
                    .unwrap();
                // Hold the stream until the completion is acknowledged.
                loop {
                    let message = tokio::time::timeout_at(deadline.into(), inbound.message())
                        .await
                        .expect("an ack in time")
                        .unwrap()
                        .expect("the stream stays open");
                    if let Some(ServerMsg::Ack(_)) = message.msg {
                        return offer;
                    }
                }
            }
            Some(ServerMsg::Ping(ping)) => {
                let _ = outbound
                    .send(pb::WorkerMessage {
                        msg: Some(WorkerMsg::Pong(pb::Pong { nonce: ping.nonce })),
                    })
                    .await;
            }
            _ => {}
        }
    }
}

async fn start_run(server: &TestServer, chain: pb::Chain, traceparent: Option<&str>) -> pb::Run {
    let mut request = tonic::Request::new(pb::StartRunRequest {
        chain: Some(chain),
        run_input: Some(pb::start_run_request::RunInput::TypedInput(text_value(
            "go",
        ))),
        ..Default::default()
    });
    if let Some(traceparent) = traceparent {
        request
            .metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
    }
    server
        .runs()
        .start_run(request)
        .await
        .expect("start run")
        .into_inner()
}

async fn wait_until_ended(server: &TestServer, run_id: &str) -> pb::Run {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = server
            .runs()
            .get_run(pb::GetRunRequest { id: run_id.into() })
            .await
            .unwrap()
            .into_inner();
        if run.end_time.is_some() {
            return run;
        }
        assert!(Instant::now() < deadline, "run did not end: {run:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn one<'a>(spans: &'a [Span], what: &str, pick: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|span| pick(span)).collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one {what} among {:#?}",
        spans.iter().map(describe).collect::<Vec<_>>()
    );
    found[0]
}

// ---------------------------------------------------------------------------
// Tests

async fn a_traced_run_forms_one_tree_under_the_callers_span(backend: Backend) {
    let (collector, endpoint) = Collector::start().await;
    let server = start_server(backend, Some(&endpoint)).await;
    let fake = FakeLlm::start().await;
    fake.script(MODEL, Reply::text("something").usage(11, 3));
    let backend_id = server.add_fake_backend(&fake.url()).await;
    let hook = HookServer::start(200, r#"{"enriched": true}"#, Duration::ZERO).await;
    add_hook(&server, &hook.url).await;
    let worker = tokio::spawn(work_one(server.channel.clone()));

    let given = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let started = start_run(&server, traced_chain(), Some(&given)).await;
    let normalised = given.clone();
    assert_eq!(started.traceparent, normalised);
    let offer = worker.await.unwrap();
    let run = wait_until_ended(&server, &started.id).await;
    assert_eq!(run.status, pb::RunStatus::Succeeded as i32, "{run:?}");
    assert_eq!(run.traceparent, normalised, "stored with the run");

    let spans = collector
        .wait_for("the run's spans", |spans| {
            spans.iter().any(|s| s.name == "run")
                && spans.iter().filter(|s| s.name == "attempt").count() >= 3
                && spans.iter().any(|s| s.name == "provider")
                && spans.iter().any(|s| s.name == "hook")
                && spans
                    .iter()
                    .any(|s| s.name == "taskloom.v1.RunService/StartRun")
        })
        .await;
    let traced: Vec<Span> = spans
        .iter()
        .filter(|span| hex(&span.trace_id) == TRACE_ID)
        .cloned()
        .collect();

    let rpc = one(&traced, "StartRun span", |s| {
        s.name == "taskloom.v1.RunService/StartRun"
    });
    assert_eq!(hex(&rpc.parent_span_id), CALLER_SPAN);
    assert_eq!(attribute(rpc, "rpc.method"), "StartRun");

    let run_span = one(&traced, "run span", |s| s.name == "run");
    assert_eq!(hex(&run_span.parent_span_id), CALLER_SPAN);
    assert_eq!(attribute(run_span, "taskloom.run.id"), run.id);
    assert_eq!(attribute(run_span, "taskloom.run.status"), "succeeded");
    assert!(run_span.end_time_unix_nano >= run_span.start_time_unix_nano);

    let attempt = |task_id: &str| -> Span {
        one(&traced, &format!("attempt span of {task_id}"), |s| {
            s.name == "attempt" && attribute(s, "taskloom.task.id") == task_id
        })
        .clone()
    };
    let (ask, call, work) = (attempt("ask"), attempt("call"), attempt("work"));
    for span in [&ask, &call, &work] {
        assert_eq!(span.parent_span_id, run_span.span_id, "{}", describe(span));
        assert_eq!(attribute(span, "taskloom.attempt.status"), "succeeded");
    }

    let provider = one(&traced, "provider span", |s| s.name == "provider");
    assert_eq!(provider.parent_span_id, ask.span_id);
    assert_eq!(attribute(provider, "gen_ai.request.model"), MODEL);
    assert_eq!(attribute(provider, "taskloom.backend"), backend_id);
    assert_eq!(attribute(provider, "gen_ai.usage.input_tokens"), "11");
    assert_eq!(attribute(provider, "gen_ai.usage.output_tokens"), "3");
    assert_eq!(attribute(&ask, "gen_ai.usage.input_tokens"), "11");

    let hook_span = one(&traced, "hook span", |s| s.name == "hook");
    assert_eq!(hook_span.parent_span_id, call.span_id);
    assert_eq!(attribute(hook_span, "taskloom.hook"), "enrich");
    assert_eq!(attribute(hook_span, "http.response.status_code"), "200");
    let requests = hook.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        raw_header(&requests[0], "traceparent"),
        Some(format!("00-{TRACE_ID}-{}-01", hex(&call.span_id)).as_str()),
        "the hook gets its attempt's span"
    );

    assert_eq!(
        offer.traceparent,
        format!("00-{TRACE_ID}-{}-01", hex(&work.span_id)),
        "the worker gets its attempt's span"
    );
}

async fn a_run_without_a_valid_traceparent_has_its_own_trace(backend: Backend) {
    let (collector, endpoint) = Collector::start().await;
    let server = start_server(backend, Some(&endpoint)).await;
    let noop = chain("own", vec![task("only", "noop", vec![])]);
    let plain = start_run(&server, noop.clone(), None).await;
    // Garbage is ignored, not stored and not refused.
    // W3C: ids are lower case hex, never all zero.
    let invalid = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let ignored = start_run(&server, noop.clone(), Some(invalid)).await;
    let junk = start_run(
        &server,
        noop,
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
    )
    .await;
    for run in [&plain, &ignored, &junk] {
        assert_eq!(run.traceparent, "");
        let ended = wait_until_ended(&server, &run.id).await;
        assert_eq!(ended.traceparent, "");
    }
    let spans = collector
        .wait_for("three run spans", |spans| {
            spans.iter().filter(|s| s.name == "run").count() >= 3
        })
        .await;
    for run in [&plain, &ignored, &junk] {
        let own_trace = run.id.replace('-', "");
        let run_span = one(&spans, "run span", |s| {
            s.name == "run" && attribute(s, "taskloom.run.id") == run.id
        });
        assert_eq!(
            hex(&run_span.trace_id),
            own_trace,
            "the run id is its trace"
        );
        assert!(run_span.parent_span_id.is_empty(), "a root span");
        let attempt = one(&spans, "attempt span", |s| {
            s.name == "attempt" && attribute(s, "taskloom.run.id") == run.id
        });
        assert_eq!(attempt.parent_span_id, run_span.span_id);
        assert_eq!(hex(&attempt.trace_id), own_trace);
    }
}

/// Without `--otlp-endpoint` the run still keeps and hands on its trace
/// context (nothing is exported: there is nowhere to).
async fn without_an_endpoint_the_context_is_still_kept(backend: Backend) {
    let server = start_server(backend, None).await;
    let worker = tokio::spawn(work_one(server.channel.clone()));
    let given = format!("00-{TRACE_ID}-{CALLER_SPAN}-00");
    let run = start_run(
        &server,
        common::chains::worker_chain("untraced", QUEUE),
        Some(&given),
    )
    .await;
    assert_eq!(run.traceparent, given);
    let offer = worker.await.unwrap();
    assert!(
        offer.traceparent.starts_with(&format!("00-{TRACE_ID}-")),
        "{}",
        offer.traceparent
    );
    let ended = wait_until_ended(&server, &run.id).await;
    assert_eq!(ended.status, pb::RunStatus::Succeeded as i32);
    assert_eq!(ended.traceparent, given);

    // ExecuteChain takes it the same way.
    let mut request = tonic::Request::new(pb::ExecuteChainRequest {
        chain: Some(common::chains::noop_chain("executed", 1)),
        run_input: Some(pb::execute_chain_request::RunInput::TypedInput(text_value(
            "x",
        ))),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("traceparent", given.parse().unwrap());
    let executed = server
        .runs()
        .execute_chain(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(executed.run.unwrap().traceparent, given);
}

/// A collector that accepts connections and never answers: runs go at
/// their usual pace, past the exporter's first batches (every 5 s), while
/// its exports hang.
async fn an_unreachable_collector_slows_nothing(backend: Backend) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = silent.accept().await {
            holder.lock().unwrap().push(socket);
        }
    });
    let server = start_server(backend, Some(&endpoint)).await;
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(7) {
        round += 1;
        let call_started = Instant::now();
        let response = server
            .runs()
            .execute_chain(pb::ExecuteChainRequest {
                chain: Some(common::chains::noop_chain("quick", 3)),
                run_input: Some(pb::execute_chain_request::RunInput::TypedInput(text_value(
                    &format!("round {round}"),
                ))),
                ..Default::default()
            })
            .await
            .expect("execute chain")
            .into_inner();
        assert_eq!(
            response.run.unwrap().status,
            pb::RunStatus::Succeeded as i32
        );
        assert!(
            call_started.elapsed() < Duration::from_secs(2),
            "round {round} took {:?}",
            call_started.elapsed()
        );
    }
    assert!(round >= 10, "only {round} runs in {:?}", started.elapsed());
    assert!(
        !held.lock().unwrap().is_empty(),
        "the exporter tried the collector meanwhile"
    );
}

macro_rules! per_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

per_store!(
    a_traced_run_forms_one_tree_under_the_callers_span,
    a_run_without_a_valid_traceparent_has_its_own_trace,
    without_an_endpoint_the_context_is_still_kept,
    an_unreachable_collector_slows_nothing,
);
