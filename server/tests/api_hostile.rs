//! Hostile input against a real `taskloom serve` process, on SQLite and
//! PostgreSQL: bytes that do not decode, text the stores cannot hold, inputs
//! large enough to bloat errors or pages past what clients accept, watches
//! of runs that already ended, and connections that never speak HTTP/2.

mod common;

use common::chains::{noop_chain, worker_chain};

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bytes::{Buf, BufMut};
use common::{HookServer, TestServer, assert_invalid, error_reason};
use prost::Message;
use taskloom_server::proto::taskloom::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_types::StatusExt;

use pb::server_message::Msg as ServerMsg;
use pb::worker_message::Msg as WorkerMsg;

api_tests!(
    oversized_inputs_do_not_bloat_errors,
    nul_in_caller_text_is_invalid_argument,
    malformed_requests_are_invalid_argument,
    list_pages_stay_under_the_client_limit,
    watching_a_finished_run_ends_at_once,
    failure_messages_say_the_cause,
);

/// What default gRPC clients accept in trailers: grpc-java and gRPC core
/// (Python) refuse more than 8 KiB of metadata. `grpc-message` is
/// percent-encoded (at most 3 bytes per byte) and the details base64 (4 per
/// 3): both must fit with room to spare.
#[track_caller]
fn assert_fits_default_metadata_limits(status: &tonic::Status) {
    assert!(
        status.message().len() <= 512,
        "message of {} bytes: {:.200}",
        status.message().len(),
        status.message()
    );
    let encoded = status.message().len() * 3 + status.details().len() * 4 / 3;
    assert!(
        encoded < 6 * 1024,
        "trailers of ~{encoded} bytes (details {})",
        status.details().len()
    );
}

fn text_input(text: String) -> Option<pb::start_run_request::RunInput> {
    Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
        kind: Some(pb::value::Kind::Text(text)),
    }))
}

async fn oversized_inputs_do_not_bloat_errors(server: TestServer) {
    // A 20 KB id is echoed in the message, ResourceInfo and ErrorInfo.
    let error = server
        .runs()
        .get_run(pb::GetRunRequest {
            id: "x".repeat(20_000),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    assert_fits_default_metadata_limits(&error);
    let info = error.get_details_resource_info().expect("resource info");
    assert!(info.resource_name.starts_with("xxxx"), "{info:?}");
    assert!(info.resource_name.len() <= 300);

    // 64 bad label keys of 1 KB each: one violation per key.
    let labels: BTreeMap<String, String> = (0..64)
        .map(|index| (format!("{index:02}{}", "!".repeat(1000)), "v".to_string()))
        .collect();
    let error = server
        .runs()
        .start_run(pb::StartRunRequest {
            chain: Some(noop_chain("labels", 1)),
            labels,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert_eq!(error_reason(&error), "INVALID_ARGUMENT");
    assert_fits_default_metadata_limits(&error);
    let violations = error.get_details_bad_request().unwrap().field_violations;
    assert!(
        (2..=21).contains(&violations.len()),
        "{} violations",
        violations.len()
    );
    assert!(
        violations[0].field.starts_with("labels[\"00!!!"),
        "{violations:?}"
    );
    let last = violations.last().unwrap();
    assert!(
        last.description.contains("more"),
        "the rest are counted: {last:?}"
    );
    assert!(
        violations
            .iter()
            .all(|v| v.field.len() <= 300 && v.description.len() <= 300)
    );
    // Nothing was written.
    let listed = server
        .runs()
        .list_runs(pb::ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.runs.is_empty());
}

/// A worker holding a `Connect` stream, for lease calls.
struct Worker {
    outbound: mpsc::Sender<pb::WorkerMessage>,
    inbound: tonic::Streaming<pb::ServerMessage>,
}

impl Worker {
    async fn connect(server: &TestServer, queue: &str) -> Worker {
        let (outbound, receiver) = mpsc::channel(16);
        outbound
            .send(pb::WorkerMessage {
                msg: Some(WorkerMsg::Hello(pb::Hello {
                    worker_id: "hostile".into(),
                    queues: vec![queue.into()],
                    slots: 4,
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
        let inbound = server
            .workers()
            .connect(ReceiverStream::new(receiver))
            .await
            .expect("connect")
            .into_inner();
        Worker { outbound, inbound }
    }

    async fn send(&self, msg: WorkerMsg) {
        self.outbound
            .send(pb::WorkerMessage { msg: Some(msg) })
            .await
            .unwrap();
    }

    /// The next message `pick` accepts, within 10 s.
    async fn next<T>(&mut self, pick: impl Fn(ServerMsg) -> Option<T>) -> T {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.inbound.message())
                .await
                .expect("a server message within 10s")
                .expect("stream ok")
                .expect("stream open");
            if let Some(found) = message.msg.and_then(&pick) {
                return found;
            }
        }
    }
}

async fn nul_in_caller_text_is_invalid_argument(server: TestServer) {
    let nul = "a\u{0}b".to_string();
    let labels = BTreeMap::from([("k".to_string(), nul.clone())]);

    let error = server
        .runs()
        .start_run(pb::StartRunRequest {
            chain: Some(noop_chain("nul", 1)),
            labels: labels.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["labels[\"k\"]"]);
    let error = server
        .runs()
        .list_runs(pb::ListRunsRequest {
            labels: labels.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["labels[\"k\"]"]);

    let error = server
        .backends()
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: "b".into(),
                r#type: pb::BackendType::Ollama as i32,
                base_url: "http://127.0.0.1:9/v\u{0}1".into(),
                labels: labels.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["backend.base_url", "backend.labels[\"k\"]"]);
    let error = server
        .backends()
        .create_pool(pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                id: "p".into(),
                description: nul.clone(),
                purpose: nul.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["pool.description", "pool.purpose"]);
    let error = server
        .hooks()
        .create_hook(pb::CreateHookRequest {
            hook: Some(pb::Hook {
                name: "h".into(),
                description: nul.clone(),
                url: "http://127.0.0.1:9/hook".into(),
                method: "POST".into(),
                timeout: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["hook.description"]);

    // A run waiting on a worker: cancel reasons and what workers report.
    let run = server
        .runs()
        .start_run(pb::StartRunRequest {
            chain: Some(worker_chain("nul-worker", "nul")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let error = server
        .runs()
        .cancel_run(pb::CancelRunRequest {
            id: run.id.clone(),
            reason: nul.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["reason"]);

    let mut worker = Worker::connect(&server, "nul").await;
    let lease = worker
        .next(|msg| match msg {
            ServerMsg::Lease(offer) => Some(offer),
            _ => None,
        })
        .await;
    let lease_ref = pb::LeaseRef {
        attempt_id: lease.attempt_id.clone(),
        lease_token: lease.lease_token.clone(),
    };
    let error = server
        .workers()
        .fail_task(pb::FailTaskRequest {
            attempt_id: lease.attempt_id.clone(),
            lease_token: lease.lease_token.clone(),
            message: nul.clone(),
            retryable: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["message"]);
    for msg in [
        WorkerMsg::Progress(pb::Progress {
            lease: Some(lease_ref.clone()),
            message: nul.clone(),
            ..Default::default()
        }),
        WorkerMsg::Fail(pb::Failure {
            lease: Some(lease_ref.clone()),
            message: nul.clone(),
            ..Default::default()
        }),
    ] {
        worker.send(msg).await;
        let ack = worker
            .next(|msg| match msg {
                ServerMsg::Ack(ack) => Some(ack),
                _ => None,
            })
            .await;
        assert!(!ack.accepted, "{ack:?}");
        assert_eq!(ack.code, "INVALID_ARGUMENT", "{ack:?}");
    }
    // Nothing was written: the run still waits on its worker, which still
    // holds the lease, and nothing else exists.
    let current = server
        .runs()
        .get_run(pb::GetRunRequest { id: run.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.status, pb::RunStatus::Running as i32);
    assert!(current.error.is_none());
    let listed = server
        .backends()
        .list_backends(pb::ListBackendsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.backends.is_empty());
    server
        .workers()
        .complete_task(pb::CompleteTaskRequest {
            attempt_id: lease.attempt_id,
            lease_token: lease.lease_token,
            output: Some(pb::Value {
                kind: Some(pb::value::Kind::Text("done".into())),
            }),
        })
        .await
        .expect("the lease is still held");
}

/// Sends request bytes as they are.
#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

async fn raw_call(server: &TestServer, path: &'static str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(server.channel.clone());
    grpc.ready().await.expect("ready");
    grpc.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .expect_err("the request is refused")
}

/// A `json` value (`google.protobuf.Value`) of lists nested `depth` deep.
fn nested_value(depth: usize) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::Json(nested_goto(depth))),
    }
}

fn nested_goto(depth: usize) -> prost_types::Value {
    let mut value = prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue("end".into())),
    };
    for _ in 0..depth {
        value = prost_types::Value {
            kind: Some(prost_types::value::Kind::ListValue(
                prost_types::ListValue {
                    values: vec![value],
                },
            )),
        };
    }
    value
}

async fn malformed_requests_are_invalid_argument(server: TestServer) {
    let deep_input = pb::StartRunRequest {
        chain_id: "x".into(),
        run_input: Some(pb::start_run_request::RunInput::TypedInput(nested_value(
            200,
        ))),
        ..Default::default()
    }
    .encode_to_vec();
    let mut deep_chain = noop_chain("deep", 1);
    deep_chain.tasks[0].transition = Some(pb::Transition {
        on_failure: String::new(),
        branches: vec![pb::Branch {
            operator: "default".into(),
            goto: Some(nested_goto(200)),
            ..Default::default()
        }],
    });
    let deep_chain = pb::CreateChainRequest {
        chain: Some(deep_chain),
        request_id: String::new(),
    }
    .encode_to_vec();
    // `id` (field 1, length 2) holding bytes that are not UTF-8.
    let bad_utf8 = vec![0x0a, 0x02, 0xc3, 0x28];
    // A field header promising more bytes than follow, then garbage.
    let garbage = vec![0x0a, 0x7f, 0xff, 0xff, 0x01];
    let cases: [(&'static str, Vec<u8>); 4] = [
        ("/taskloom.v1.RunService/GetRun", garbage),
        ("/taskloom.v1.RunService/GetRun", bad_utf8),
        ("/taskloom.v1.RunService/StartRun", deep_input),
        ("/taskloom.v1.ChainService/CreateChain", deep_chain),
    ];
    for (path, body) in cases {
        let status = raw_call(&server, path, body).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
        assert_eq!(error_reason(&status), "INVALID_ARGUMENT", "{status:?}");
        assert!(
            status.message().contains("does not decode"),
            "{path}: {:?}",
            status.message()
        );
        assert_fits_default_metadata_limits(&status);
    }
    // The server is fine and wrote nothing.
    let listed = server
        .chains()
        .list_chains(pb::ListChainsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.chains.is_empty());
}

/// A default client's receive limit.
const CLIENT_LIMIT: usize = 4 * 1024 * 1024;
/// Inputs just under the server's 1 MiB bound.
const BIG: usize = 1_000_000;

/// Reads every page of a listing through a client with default limits,
/// checking that each page fits and continues where the last one stopped.
async fn all_pages<T: Message + Clone, F, Fut>(mut fetch: F) -> Vec<T>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    for _ in 0..100 {
        let (page, next) = fetch(token).await.expect("a page fits the client limit");
        let bytes: usize = page.iter().map(Message::encoded_len).sum();
        assert!(bytes < CLIENT_LIMIT, "a page of {bytes} bytes");
        assert!(!page.is_empty() || next.is_empty(), "an empty page goes on");
        items.extend(page);
        if next.is_empty() {
            return items;
        }
        token = next;
    }
    panic!("more than 100 pages");
}

async fn list_pages_stay_under_the_client_limit(server: TestServer) {
    let runs = server.runs();
    // 20 runs with 1 MB inputs, waiting on a worker nobody serves.
    let mut started = Vec::new();
    for index in 0..20 {
        let run = runs
            .clone()
            .start_run(pb::StartRunRequest {
                chain: Some(worker_chain("big-input", "nobody")),
                run_input: text_input(format!("{index:02}{}", "i".repeat(BIG))),
                ..Default::default()
            })
            .await
            .expect("start")
            .into_inner();
        started.push(run.id);
    }
    let listed: Vec<pb::Run> = all_pages(|page_token| {
        let mut runs = runs.clone();
        async move {
            let page = runs
                .list_runs(pb::ListRunsRequest {
                    page_token,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok((page.runs, page.next_page_token))
        }
    })
    .await;
    let mut ids: Vec<String> = listed.iter().map(|run| run.id.clone()).collect();
    assert_eq!(ids.len(), 20, "each run once");
    ids.sort();
    started.sort();
    assert_eq!(ids, started);

    // One run whose five noop tasks each output the 1 MB input.
    let run = runs
        .clone()
        .start_run(pb::StartRunRequest {
            chain: Some(noop_chain("five", 5)),
            run_input: text_input("n".repeat(BIG)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut finished = None;
    for _ in 0..600 {
        let current = runs
            .clone()
            .get_run(pb::GetRunRequest { id: run.id.clone() })
            .await;
        if let Ok(current) = current
            && current.get_ref().status == pb::RunStatus::Succeeded as i32
        {
            finished = Some(current.into_inner());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finished = finished.expect("the run succeeds");
    let events: Vec<pb::RunEvent> = all_pages(|page_token| {
        let mut runs = runs.clone();
        let run_id = run.id.clone();
        async move {
            let page = runs
                .list_run_events(pb::ListRunEventsRequest {
                    run_id,
                    page_token,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok((page.events, page.next_page_token))
        }
    })
    .await;
    let seqs: Vec<i64> = events.iter().map(|event| event.seq).collect();
    assert_eq!(seqs, (1..=finished.last_event_seq).collect::<Vec<_>>());
    let attempts: Vec<pb::TaskAttempt> = all_pages(|page_token| {
        let mut runs = runs.clone();
        let run_id = run.id.clone();
        async move {
            let page = runs
                .list_run_attempts(pb::ListRunAttemptsRequest {
                    run_id,
                    page_token,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok((page.attempts, page.next_page_token))
        }
    })
    .await;
    let tasks: Vec<&str> = attempts.iter().map(|a| a.task_id.as_str()).collect();
    assert_eq!(tasks, ["t0", "t1", "t2", "t3", "t4"]);

    // Chains and chain versions near the 1 MiB definition bound: 15 tasks
    // with 64 KB descriptions.
    let big_chain = |id: &str, text: &str| {
        let mut chain = noop_chain(id, 15);
        for task in &mut chain.tasks {
            task.description = text.repeat(64_000);
        }
        chain
    };
    let chains = server.chains();
    for index in 0..5 {
        let chain = big_chain(&format!("big-{index}"), "d");
        chains
            .clone()
            .create_chain(pb::CreateChainRequest {
                chain: Some(chain),
                request_id: String::new(),
            })
            .await
            .expect("create chain");
    }
    for version in 0..5 {
        let chain = big_chain("big-0", &version.to_string());
        chains
            .clone()
            .update_chain(pb::UpdateChainRequest {
                chain: Some(chain),
                ..Default::default()
            })
            .await
            .expect("update chain");
    }
    let listed: Vec<pb::Chain> = all_pages(|page_token| {
        let mut chains = chains.clone();
        async move {
            let page = chains
                .list_chains(pb::ListChainsRequest {
                    page_token,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok((page.chains, page.next_page_token))
        }
    })
    .await;
    let ids: HashSet<String> = listed.iter().map(|c| c.id.clone()).collect();
    assert_eq!(listed.len(), ids.len(), "each chain once");
    assert!((0..5).all(|i| ids.contains(&format!("big-{i}"))), "{ids:?}");
    let versions: Vec<pb::Chain> = all_pages(|page_token| {
        let mut chains = chains.clone();
        async move {
            let page = chains
                .list_chain_versions(pb::ListChainVersionsRequest {
                    id: "big-0".into(),
                    page_token,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok((page.chains, page.next_page_token))
        }
    })
    .await;
    assert_eq!(versions.len(), 6, "every version once");
}

async fn watching_a_finished_run_ends_at_once(server: TestServer) {
    let run = server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(noop_chain("done", 2)),
            ..Default::default()
        })
        .await
        .expect("execute")
        .into_inner()
        .run
        .unwrap();
    assert_eq!(run.status, pb::RunStatus::Succeeded as i32);
    let terminal = server
        .runs()
        .list_run_events(pb::ListRunEventsRequest {
            run_id: run.id.clone(),
            after_seq: run.last_event_seq - 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
        .pop()
        .expect("the last event");
    assert_eq!(terminal.r#type, pb::RunEventType::RunSucceeded as i32);
    for after_seq in [run.last_event_seq, run.last_event_seq + 100] {
        let events = tokio::time::timeout(Duration::from_secs(5), async {
            let mut stream = server
                .runs()
                .watch_run(pb::WatchRunRequest {
                    run_id: run.id.clone(),
                    after_seq,
                    include_deltas: true,
                })
                .await
                .expect("watch")
                .into_inner();
            let mut events = Vec::new();
            while let Some(event) = stream.message().await.expect("ends OK") {
                events.push(event);
            }
            events
        })
        .await
        .expect("the watch of a finished run ends at once");
        assert_eq!(
            events,
            std::slice::from_ref(&terminal),
            "the terminal event, once more"
        );
    }
}

/// Runs a one-task chain to its end and returns its error message.
async fn run_error(server: &TestServer, task: pb::Task) -> String {
    let response = server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(pb::Chain {
                id: format!("cause-{}", task.id),
                tasks: vec![task],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("execute")
        .into_inner();
    let run = response.run.unwrap();
    assert_eq!(run.status, pb::RunStatus::Failed as i32, "{run:?}");
    run.error.expect("a failed run says why").message
}

async fn failure_messages_say_the_cause(server: TestServer) {
    // A hook answering after 5 s, called with a 300 ms timeout.
    let slow = HookServer::start(200, "{}", Duration::from_secs(5)).await;
    server
        .hooks()
        .create_hook(pb::CreateHookRequest {
            hook: Some(pb::Hook {
                name: "slow".into(),
                url: slow.url.clone(),
                timeout: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 300_000_000,
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let message = run_error(
        &server,
        pb::Task {
            id: "call".into(),
            handler: "hook".into(),
            hook: Some(pb::HookCall {
                name: "slow".into(),
                args: Default::default(),
            }),
            ..Default::default()
        },
    )
    .await;
    assert!(
        message.contains("hook slow timed out after 300ms"),
        "{message}"
    );

    // A model declared with a 16-token context, given a 2,000-character
    // prompt (about 500 tokens).
    let backends = server.backends();
    let backend = backends
        .clone()
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: "unused".into(),
                r#type: pb::BackendType::Ollama as i32,
                base_url: "http://127.0.0.1:9".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    backends
        .clone()
        .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
            pool_id: "internal_tasks_pool".into(),
            backend_id: backend.id,
        })
        .await
        .unwrap();
    backends
        .clone()
        .create_model(pb::CreateModelRequest {
            model: Some(pb::Model {
                name: "tiny:1m".into(),
                context_length: 16,
                capabilities: vec![pb::ModelCapability::Chat as i32],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let message = run_error(
        &server,
        pb::Task {
            id: "ask".into(),
            handler: "parse_number".into(),
            prompt_template: "x".repeat(2000),
            execute_config: Some(pb::ExecuteConfig {
                models: vec!["tiny:1m".into()],
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    assert!(
        message.contains("\"tiny:1m\" has a context of 16 tokens, the prompt needs about 500"),
        "{message}"
    );
}

/// A TCP connection that never sends the HTTP/2 preface is closed after the
/// handshake timeout; working clients are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_handshake_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server =
        TestServer::start_with(common::Backend::Sqlite, &["--handshake-timeout", "1s"]).await;
    let addr = ("127.0.0.1", server.process.port);
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Part of the preface, then nothing.
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let started = std::time::Instant::now();
    for socket in [&mut silent, &mut partial] {
        // The server's SETTINGS may come first; then the connection ends.
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            let mut buffer = [0u8; 256];
            loop {
                match socket.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the server closes a silent connection");
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The channel connected before is idle longer than the timeout, and
    // still works.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server
        .info()
        .get_version(pb::GetVersionRequest {})
        .await
        .expect("a working client is unaffected");
}
