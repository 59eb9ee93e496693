//! WorkerService: lease streams and the unary calls for callers outside a
//! stream. Thin: validates messages and hands them to the dispatcher
//! (`crate::dispatch`), which owns the sessions.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;
use tokio_stream::StreamExt;

use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::run::attempt_message;
use super::convert::worker::worker_message;
use super::error::Refusal;
use super::request::{Violations, encode_page, page_query, timestamp};
use super::{ApiContext, ApiError, ApiResult, respond};
use crate::dispatch::{Dispatcher, Hello, ServerMsg, SessionEnd};
use crate::kernel::{INTERNAL_QUEUE, TaskFailure};
use crate::proto::google::rpc::Code as RpcCode;
use crate::proto::taskloom::v1::{self as pb, worker_service_server::WorkerService};

/// Largest completion output accepted, encoded (as run inputs).
const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Most queues one worker serves.
const MAX_QUEUES: usize = 64;
/// Most slots one worker offers.
const MAX_SLOTS: i32 = 10_000;
/// Most pings awaiting an answer; none is sent beyond them (the oldest
/// closes the session when its time is up).
const MAX_UNANSWERED_PINGS: usize = 64;

pub struct WorkerApi {
    context: ApiContext,
}

impl WorkerApi {
    pub fn new(context: ApiContext) -> Self {
        WorkerApi { context }
    }

    fn dispatcher(&self) -> &Dispatcher {
        self.context.dispatcher()
    }
}

/// Checks a `Hello`, every problem with its field path.
fn validate_hello(hello: pb::Hello) -> ApiResult<Hello> {
    let mut violations = Violations::new();
    if hello.worker_id.is_empty() {
        violations.add("hello.worker_id", "is required");
    } else {
        violations.check_text("hello.worker_id", &hello.worker_id, 128);
    }
    violations.check_text("hello.name", &hello.name, 256);
    violations.check_text("hello.sdk_version", &hello.sdk_version, 256);
    if hello.queues.is_empty() {
        violations.add("hello.queues", "name at least one queue");
    }
    if hello.queues.len() > MAX_QUEUES {
        violations.add("hello.queues", format!("at most {MAX_QUEUES} queues"));
    }
    for (index, queue) in hello.queues.iter().enumerate() {
        let field = format!("hello.queues[{index}]");
        if queue == INTERNAL_QUEUE {
            violations.add(
                field,
                "the queue `internal` is reserved for built-in handlers",
            );
        } else {
            violations.check_id(&field, queue);
        }
    }
    if hello.slots <= 0 {
        violations.add(
            "hello.slots",
            "must be positive (send SetSlots 0 later to stop offers)",
        );
    } else if hello.slots > MAX_SLOTS {
        violations.add("hello.slots", format!("at most {MAX_SLOTS}"));
    }
    violations.check_labels("hello.labels", &hello.labels);
    for (index, lease) in hello.held_leases.iter().enumerate() {
        if lease.attempt_id.is_empty() || lease.lease_token.is_empty() {
            violations.add(
                format!("hello.held_leases[{index}]"),
                "needs attempt_id and lease_token",
            );
        }
    }
    violations.finish()?;
    let mut queues = hello.queues;
    queues.sort();
    queues.dedup();
    Ok(Hello {
        worker_id: hello.worker_id,
        name: hello.name,
        queues,
        slots: hello.slots as u32,
        labels: hello.labels.into_iter().collect::<BTreeMap<_, _>>(),
        sdk_version: hello.sdk_version,
        held_leases: hello.held_leases,
    })
}

/// Violations of a unary call's `(attempt_id, lease_token)`.
fn lease_violations(attempt_id: &str, lease_token: &str) -> Violations {
    let mut violations = Violations::new();
    if attempt_id.is_empty() {
        violations.add("attempt_id", "is required");
    }
    if lease_token.is_empty() {
        violations.add("lease_token", "is required");
    }
    violations
}

fn lease_ref(lease: Option<pb::LeaseRef>, field: &str) -> ApiResult<pb::LeaseRef> {
    let lease = lease.unwrap_or_default();
    let mut violations = Violations::new();
    if lease.attempt_id.is_empty() {
        violations.add(format!("{field}.attempt_id"), "is required");
    }
    if lease.lease_token.is_empty() {
        violations.add(format!("{field}.lease_token"), "is required");
    }
    violations.finish()?;
    Ok(lease)
}

fn check_output(output: Option<pb::Value>, field: &str) -> ApiResult<pb::Value> {
    let Some(output) = output else {
        return Err(ApiError::invalid(field, "is required"));
    };
    if output.kind.is_none() {
        return Err(ApiError::invalid(field, "has no value"));
    }
    if prost::Message::encoded_len(&output) > MAX_OUTPUT_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("is larger than {MAX_OUTPUT_BYTES} bytes encoded"),
        ));
    }
    Ok(output)
}

fn retry_delay(delay: Option<prost_types::Duration>, field: &str) -> ApiResult<Option<Duration>> {
    match delay {
        None => Ok(None),
        Some(delay) if delay.seconds < 0 || delay.nanos < 0 => {
            Err(ApiError::invalid(field, "must not be negative"))
        }
        Some(delay) => Ok(Some(Duration::new(
            delay.seconds as u64,
            delay.nanos as u32,
        ))),
    }
}

fn failure(message: String, retryable: bool, delay: Option<Duration>) -> TaskFailure {
    TaskFailure {
        retry_delay: delay,
        ..TaskFailure::new(message, retryable)
    }
}

/// The `Ack` of a stream message naming `lease`.
fn ack(lease: pb::LeaseRef, result: ApiResult<()>) -> ServerMsg {
    let mut ack = pb::Ack {
        lease: Some(lease),
        accepted: result.is_ok(),
        ..Default::default()
    };
    if let Err(error) = result {
        let refusal = Refusal::from(error);
        let code = RpcCode::try_from(refusal.code as i32).unwrap_or(RpcCode::Unknown);
        ack.code = code.as_str_name().to_string();
        ack.set_status_code(code);
        ack.reason = refusal.reason.to_string();
        ack.message = refusal.message;
    }
    ServerMsg::Ack(ack)
}

/// Serves one session's inbound messages until the stream ends, a ping
/// goes unanswered past the heartbeat timeout, or the server drains.
async fn serve_session(
    context: ApiContext,
    session_id: String,
    mut inbound: Streaming<pb::WorkerMessage>,
) {
    use pb::worker_message::Msg;
    let dispatcher = context.dispatcher().clone();
    let interval = dispatcher.config().heartbeat_interval;
    let timeout = dispatcher.config().heartbeat_timeout;
    let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
    // Pings not answered yet, oldest first: (nonce, sent). Liveness is a
    // worker that reads its stream: a heartbeat proves only that it writes.
    let mut unanswered: VecDeque<(i64, Instant)> = VecDeque::new();
    // Messages about one lease are applied in stream order (progress before
    // the completion that follows it); different leases go in parallel.
    let mut pending = LeaseOrder::default();
    loop {
        let answer_due = unanswered.front().map(|(_, sent)| *sent + timeout);
        let message = tokio::select! {
            message = inbound.message() => message,
            _ = ping.tick() => {
                if unanswered.len() < MAX_UNANSWERED_PINGS {
                    // Unguessable, so only a worker that read the ping can
                    // answer it. A ping the outbox has no room for stays
                    // unanswered.
                    let nonce = rand::random::<i64>();
                    unanswered.push_back((nonce, Instant::now()));
                    dispatcher.send(&session_id, ServerMsg::Ping(pb::Ping { nonce }));
                }
                continue;
            }
            () = sleep_until(answer_due) => {
                tracing::info!(session_id = %session_id, "worker session left a ping unanswered past the heartbeat timeout; closing it and ending its leases");
                dispatcher.end(&session_id, SessionEnd::Silent);
                dispatcher.abandon(&session_id);
                return;
            }
            () = context.drained() => {
                dispatcher.end(&session_id, SessionEnd::ShuttingDown);
                break;
            }
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(status) => {
                tracing::info!(session_id = %session_id, error = %status, "worker stream broke");
                break;
            }
        };
        dispatcher.alive(&session_id);
        match message.msg {
            Some(Msg::Heartbeat(heartbeat)) => {
                let dispatcher = dispatcher.clone();
                let session_id = session_id.clone();
                tokio::spawn(
                    async move { dispatcher.heartbeat(&session_id, heartbeat.active).await },
                );
            }
            Some(Msg::Pong(pong)) => {
                // Answers this ping and every earlier one (stream order).
                if let Some(index) = unanswered
                    .iter()
                    .position(|(nonce, _)| *nonce == pong.nonce)
                {
                    unanswered.drain(..=index);
                }
            }
            None => {}
            Some(Msg::SetSlots(set)) => {
                if set.slots < 0 || set.slots > MAX_SLOTS {
                    tracing::info!(session_id = %session_id, slots = set.slots, "bad SetSlots; ignored");
                    continue;
                }
                dispatcher.set_slots(&session_id, set.slots as u32);
            }
            Some(Msg::Hello(_)) => {
                tracing::info!(session_id = %session_id, "a second hello on a stream; ignored");
            }
            Some(Msg::Complete(completion)) => {
                spawn_lease_op(
                    &mut pending,
                    &dispatcher,
                    &session_id,
                    completion.lease.clone(),
                    "complete.lease",
                    move |dispatcher, lease| async move {
                        let output = check_output(completion.output, "complete.output")?;
                        dispatcher
                            .complete(&lease.attempt_id, &lease.lease_token, output)
                            .await
                            .map_err(ApiError::from)
                    },
                );
            }
            Some(Msg::Fail(fail)) => {
                spawn_lease_op(
                    &mut pending,
                    &dispatcher,
                    &session_id,
                    fail.lease.clone(),
                    "fail.lease",
                    move |dispatcher, lease| async move {
                        let delay = retry_delay(fail.retry_delay, "fail.retry_delay")?;
                        super::request::check_text(
                            "fail.message",
                            &fail.message,
                            super::request::MAX_WORKER_MESSAGE_BYTES,
                        )?;
                        dispatcher
                            .fail(
                                &lease.attempt_id,
                                &lease.lease_token,
                                failure(fail.message, fail.retryable, delay),
                            )
                            .await
                            .map(|_| ())
                            .map_err(ApiError::from)
                    },
                );
            }
            Some(Msg::Release(release)) => {
                spawn_lease_op(
                    &mut pending,
                    &dispatcher,
                    &session_id,
                    release.lease.clone(),
                    "release.lease",
                    move |dispatcher, lease| async move {
                        dispatcher
                            .release(&lease.attempt_id, &lease.lease_token)
                            .await
                            .map_err(ApiError::from)
                    },
                );
            }
            Some(Msg::Progress(progress)) => {
                let lease = progress.lease.clone();
                let op = move |dispatcher: Dispatcher, lease: pb::LeaseRef| async move {
                    super::request::check_text(
                        "progress.message",
                        &progress.message,
                        super::request::MAX_WORKER_MESSAGE_BYTES,
                    )?;
                    dispatcher
                        .progress(
                            &lease.attempt_id,
                            &lease.lease_token,
                            progress.message,
                            progress.payload,
                        )
                        .await
                        .map_err(ApiError::from)
                };
                // Progress is acknowledged only when refused.
                spawn_ordered(
                    &mut pending,
                    &dispatcher,
                    &session_id,
                    lease,
                    "progress.lease",
                    op,
                    false,
                );
            }
        }
    }
    dispatcher.close(&session_id);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The last operation started on each lease of a session.
#[derive(Default)]
struct LeaseOrder(std::collections::HashMap<String, tokio::task::JoinHandle<()>>);

/// Runs an operation on a lease in the background, after the previous one
/// on the same lease, and acknowledges it on the session's stream.
fn spawn_lease_op<F, Fut>(
    pending: &mut LeaseOrder,
    dispatcher: &Dispatcher,
    session_id: &str,
    lease: Option<pb::LeaseRef>,
    field: &'static str,
    op: F,
) where
    F: FnOnce(Dispatcher, pb::LeaseRef) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ApiResult<()>> + Send,
{
    spawn_ordered(pending, dispatcher, session_id, lease, field, op, true);
}

fn spawn_ordered<F, Fut>(
    pending: &mut LeaseOrder,
    dispatcher: &Dispatcher,
    session_id: &str,
    lease: Option<pb::LeaseRef>,
    field: &'static str,
    op: F,
    ack_success: bool,
) where
    F: FnOnce(Dispatcher, pb::LeaseRef) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ApiResult<()>> + Send,
{
    let dispatcher = dispatcher.clone();
    let session_id = session_id.to_string();
    let key = lease
        .as_ref()
        .map(|l| l.attempt_id.clone())
        .unwrap_or_default();
    let previous = pending.0.remove(&key);
    let task = tokio::spawn(async move {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        let (lease, result) = match lease_ref(lease.clone(), field) {
            Ok(lease) => (lease.clone(), op(dispatcher.clone(), lease).await),
            Err(error) => (lease.unwrap_or_default(), Err(error)),
        };
        if let Err(ApiError::FailedPrecondition { .. }) = &result {
            dispatcher.fenced(&session_id);
        }
        if ack_success || result.is_err() {
            dispatcher.send(&session_id, ack(lease, result));
        }
    });
    pending.0.retain(|_, task| !task.is_finished());
    pending.0.insert(key, task);
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn connect(
        &self,
        request: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<BoxStream<pb::ServerMessage>>, Status> {
        let mut inbound = request.into_inner();
        let timeout = self.dispatcher().config().heartbeat_timeout;
        let first = match tokio::time::timeout(timeout, inbound.message()).await {
            Err(_) => {
                return Err(Status::from(ApiError::invalid(
                    "hello",
                    "the first message must arrive within the heartbeat timeout",
                )));
            }
            Ok(Err(status)) => return Err(status),
            Ok(Ok(None)) => {
                return Err(Status::from(ApiError::invalid(
                    "hello",
                    "the stream ended before a hello",
                )));
            }
            Ok(Ok(Some(first))) => first,
        };
        let hello = match first.msg {
            Some(pb::worker_message::Msg::Hello(hello)) => hello,
            _ => {
                return Err(Status::from(ApiError::invalid(
                    "hello",
                    "the first message on a stream must be a hello",
                )));
            }
        };
        let hello = validate_hello(hello).map_err(Status::from)?;
        let (session_id, outbound) = self.dispatcher().open(hello).await;
        tokio::spawn(serve_session(self.context.clone(), session_id, inbound));
        let outbound = outbound.map(|item| item.map_err(|end| Status::from(ApiError::from(end))));
        Ok(Response::new(Box::pin(outbound)))
    }

    async fn complete_task(
        &self,
        request: Request<pb::CompleteTaskRequest>,
    ) -> Result<Response<pb::CompleteTaskResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                let violations = lease_violations(&request.attempt_id, &request.lease_token);
                violations.finish()?;
                let output = check_output(request.output, "output")?;
                self.dispatcher()
                    .complete(&request.attempt_id, &request.lease_token, output)
                    .await?;
                Ok(pb::CompleteTaskResponse {})
            }
            .await,
        )
    }

    async fn fail_task(
        &self,
        request: Request<pb::FailTaskRequest>,
    ) -> Result<Response<pb::FailTaskResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                let violations = lease_violations(&request.attempt_id, &request.lease_token);
                violations.finish()?;
                let delay = retry_delay(request.retry_delay, "retry_delay")?;
                super::request::check_text(
                    "message",
                    &request.message,
                    super::request::MAX_WORKER_MESSAGE_BYTES,
                )?;
                let will_retry = self
                    .dispatcher()
                    .fail(
                        &request.attempt_id,
                        &request.lease_token,
                        failure(request.message, request.retryable, delay),
                    )
                    .await?;
                Ok(pb::FailTaskResponse { will_retry })
            }
            .await,
        )
    }

    async fn extend_lease(
        &self,
        request: Request<pb::ExtendLeaseRequest>,
    ) -> Result<Response<pb::ExtendLeaseResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                let mut violations = lease_violations(&request.attempt_id, &request.lease_token);
                let extension = match request.extension {
                    None => self.dispatcher().config().lease,
                    Some(d) if d.seconds < 0 || d.nanos < 0 || (d.seconds == 0 && d.nanos == 0) => {
                        violations.add("extension", "must be positive");
                        Duration::ZERO
                    }
                    Some(d) if d.seconds > 24 * 3600 => {
                        violations.add("extension", "at most 24h");
                        Duration::ZERO
                    }
                    Some(d) => Duration::new(d.seconds as u64, d.nanos as u32),
                };
                violations.finish()?;
                let until = self
                    .dispatcher()
                    .extend(&request.attempt_id, &request.lease_token, extension)
                    .await?;
                Ok(pb::ExtendLeaseResponse {
                    lease_expire_time: Some(timestamp(until)),
                })
            }
            .await,
        )
    }

    async fn list_workers(
        &self,
        request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                let query = page_query(request.page_size, &request.page_token, "ListWorkers")?;
                let queue = (!request.queue.is_empty()).then_some(request.queue.as_str());
                let page = self.dispatcher().list_workers(queue, query).await?;
                let (workers, next_page_token) =
                    encode_page(page, "ListWorkers", |s| Ok(worker_message(s)))?;
                Ok(pb::ListWorkersResponse {
                    workers,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                if !request.queue.is_empty() {
                    let mut violations = Violations::new();
                    violations.check_id("queue", &request.queue);
                    violations.finish()?;
                }
                let scope = format!("ListDeadLetters/{}", request.queue);
                let query = page_query(request.page_size, &request.page_token, &scope)?;
                let queue = (!request.queue.is_empty()).then_some(request.queue.as_str());
                let page = self.context.store().list_dead_letters(queue, query).await?;
                let (attempts, next_page_token) =
                    super::request::encode_page(page, &scope, |a| attempt_message(&a))?;
                Ok(pb::ListDeadLettersResponse {
                    attempts,
                    next_page_token,
                })
            }
            .await,
        )
    }
}
