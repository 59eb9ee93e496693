//! WorkerService: lease streams and the unary calls for callers outside a
//! stream. Thin: decodes and checks messages and hands them to the
//! dispatcher (`crate::dispatch`), which owns the sessions and their
//! stream loops, and encodes what it sends back.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::codegen::BoxStream;
use tonic::{Status, Streaming};

use super::convert::run::attempt_message;
use super::convert::worker::worker_message;
use super::error::Refusal;
use super::page::{encode_page, infallible, list_page, request_query};
use super::request::{MAX_WORKER_MESSAGE_BYTES, Violations, check_text, timestamp};
use super::{ApiContext, ApiError, ApiResult, call_namespace, caller};
use crate::dispatch::{
    Dispatcher, Hello, Inbound, LeaseMessage, LeaseOp, Outgoing, ServerMsg, StreamBroken,
};
use crate::kernel::{INTERNAL_QUEUE, TaskFailure};
use crate::namespace::queue_key;
use crate::proto::google::rpc::Code as RpcCode;
use crate::proto::taskloom::v1::{self as pb, worker_service_server::WorkerService};

/// Largest completion output accepted, encoded (as run inputs).
const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Most queues one worker serves.
const MAX_QUEUES: usize = 64;
/// Most slots one worker offers.
const MAX_SLOTS: i32 = 10_000;

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
fn ack(lease: pb::LeaseRef, result: ApiResult<()>) -> pb::Ack {
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
    ack
}

/// A stream message as the dispatcher takes it: checked, or refused with
/// its `Ack` when it names a lease.
fn decode_message(message: pb::WorkerMessage) -> Inbound {
    use pb::worker_message::Msg;
    match message.msg {
        None => Inbound::Ignored(None),
        Some(Msg::Hello(_)) => Inbound::Ignored(Some("a second hello on a stream; ignored".into())),
        Some(Msg::Heartbeat(heartbeat)) => Inbound::Heartbeat(heartbeat.active),
        Some(Msg::Pong(pong)) => Inbound::Pong(pong.nonce),
        Some(Msg::SetSlots(set)) if set.slots < 0 || set.slots > MAX_SLOTS => {
            Inbound::Ignored(Some(format!("bad SetSlots {}; ignored", set.slots)))
        }
        Some(Msg::SetSlots(set)) => Inbound::SetSlots(set.slots as u32),
        Some(Msg::Complete(complete)) => lease_message(complete.lease, "complete.lease", || {
            let output = check_output(complete.output, "complete.output")?;
            Ok(LeaseOp::Complete(output))
        }),
        Some(Msg::Fail(fail)) => lease_message(fail.lease, "fail.lease", || {
            let delay = retry_delay(fail.retry_delay, "fail.retry_delay")?;
            check_text("fail.message", &fail.message, MAX_WORKER_MESSAGE_BYTES)?;
            Ok(LeaseOp::Fail(failure(fail.message, fail.retryable, delay)))
        }),
        Some(Msg::Release(release)) => {
            lease_message(release.lease, "release.lease", || Ok(LeaseOp::Release))
        }
        Some(Msg::Progress(progress)) => lease_message(progress.lease, "progress.lease", || {
            check_text(
                "progress.message",
                &progress.message,
                MAX_WORKER_MESSAGE_BYTES,
            )?;
            Ok(LeaseOp::Progress {
                message: progress.message,
                data: progress.payload,
            })
        }),
    }
}

/// A message naming `lease` (checked as `field`), with the operation
/// `decode` makes of the rest of it.
fn lease_message(
    lease: Option<pb::LeaseRef>,
    field: &str,
    decode: impl FnOnce() -> ApiResult<LeaseOp>,
) -> Inbound {
    let named = lease.clone().unwrap_or_default();
    let op = lease_ref(lease, field)
        .and_then(|_| decode())
        .unwrap_or_else(|error| LeaseOp::Refused(ack(named.clone(), Err(error))));
    Inbound::Lease(LeaseMessage { lease: named, op })
}

service! {
    impl WorkerService for WorkerApi {
        fn connect(Streaming<pb::WorkerMessage>) -> BoxStream<pb::ServerMessage> = WorkerServe;
        fn complete_task(pb::CompleteTaskRequest) -> pb::CompleteTaskResponse = WorkerServe;
        fn fail_task(pb::FailTaskRequest) -> pb::FailTaskResponse = WorkerServe;
        fn extend_lease(pb::ExtendLeaseRequest) -> pb::ExtendLeaseResponse = WorkerServe;
        fn list_workers(pb::ListWorkersRequest) -> pb::ListWorkersResponse = WorkersRead;
        fn list_dead_letters(pb::ListDeadLettersRequest) -> pb::ListDeadLettersResponse = RunsRead;
    }
}

impl WorkerApi {
    async fn connect(
        &self,
        mut inbound: Streaming<pb::WorkerMessage>,
    ) -> ApiResult<BoxStream<pb::ServerMessage>> {
        let timeout = self.dispatcher().config().heartbeat_timeout;
        let first = match tokio::time::timeout(timeout, inbound.message()).await {
            Err(_) => {
                return Err(ApiError::invalid(
                    "hello",
                    "the first message must arrive within the heartbeat timeout",
                ));
            }
            Ok(Err(status)) => return Err(ApiError::Stream(status)),
            Ok(Ok(None)) => {
                return Err(ApiError::invalid(
                    "hello",
                    "the stream ended before a hello",
                ));
            }
            Ok(Ok(Some(first))) => first,
        };
        let Some(pb::worker_message::Msg::Hello(hello)) = first.msg else {
            return Err(ApiError::invalid(
                "hello",
                "the first message on a stream must be a hello",
            ));
        };
        let mut hello = validate_hello(hello)?;
        // A worker key restricted to queues serves those only.
        let caller = caller();
        caller.require_queues(&hello.queues)?;
        // The dispatcher knows queues by key: a worker serves its
        // namespace's queues only.
        for queue in &mut hello.queues {
            *queue = queue_key(&caller.namespace, queue);
        }
        let inbound = inbound.map(|message| {
            message
                .map(decode_message)
                .map_err(|status| StreamBroken(status.to_string()))
        });
        let context = self.context.clone();
        let drained = async move { context.drained().await };
        let outbound = self.dispatcher().connect(hello, inbound, drained).await;
        Ok(Box::pin(outbound.map(|item| match item {
            Ok(Outgoing::Message(msg)) => Ok(pb::ServerMessage { msg: Some(msg) }),
            Ok(Outgoing::Ack(lease, result)) => Ok(pb::ServerMessage {
                msg: Some(ServerMsg::Ack(ack(lease, result.map_err(ApiError::from)))),
            }),
            Err(end) => Err(Status::from(ApiError::from(end))),
        })))
    }

    async fn complete_task(
        &self,
        request: pb::CompleteTaskRequest,
    ) -> ApiResult<pb::CompleteTaskResponse> {
        lease_violations(&request.attempt_id, &request.lease_token).finish()?;
        let output = check_output(request.output, "output")?;
        let dispatcher = self.dispatcher();
        dispatcher
            .require_in(&call_namespace(), &request.attempt_id)
            .await?;
        dispatcher
            .complete(&request.attempt_id, &request.lease_token, output)
            .await?;
        Ok(pb::CompleteTaskResponse {})
    }

    async fn fail_task(&self, request: pb::FailTaskRequest) -> ApiResult<pb::FailTaskResponse> {
        lease_violations(&request.attempt_id, &request.lease_token).finish()?;
        let delay = retry_delay(request.retry_delay, "retry_delay")?;
        check_text("message", &request.message, MAX_WORKER_MESSAGE_BYTES)?;
        let failure = failure(request.message, request.retryable, delay);
        let dispatcher = self.dispatcher();
        dispatcher
            .require_in(&call_namespace(), &request.attempt_id)
            .await?;
        let will_retry = dispatcher
            .fail(&request.attempt_id, &request.lease_token, failure)
            .await?;
        Ok(pb::FailTaskResponse { will_retry })
    }

    async fn extend_lease(
        &self,
        request: pb::ExtendLeaseRequest,
    ) -> ApiResult<pb::ExtendLeaseResponse> {
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
        let dispatcher = self.dispatcher();
        dispatcher
            .require_in(&call_namespace(), &request.attempt_id)
            .await?;
        let until = dispatcher
            .extend(&request.attempt_id, &request.lease_token, extension)
            .await?;
        Ok(pb::ExtendLeaseResponse {
            lease_expire_time: Some(timestamp(until)),
        })
    }

    async fn list_workers(
        &self,
        request: pb::ListWorkersRequest,
    ) -> ApiResult<pb::ListWorkersResponse> {
        let query = request_query(&request, "ListWorkers")?;
        let namespace = call_namespace();
        let queue = (!request.queue.is_empty()).then(|| queue_key(&namespace, &request.queue));
        let page = self
            .dispatcher()
            .list_workers(&namespace, queue.as_deref(), query)
            .await?;
        encode_page(page, "ListWorkers", infallible(worker_message))
    }

    async fn list_dead_letters(
        &self,
        request: pb::ListDeadLettersRequest,
    ) -> ApiResult<pb::ListDeadLettersResponse> {
        if !request.queue.is_empty() {
            let mut violations = Violations::new();
            violations.check_id("queue", &request.queue);
            violations.finish()?;
        }
        let scope = format!("ListDeadLetters/{}", request.queue);
        let namespace = call_namespace();
        let queue = (!request.queue.is_empty()).then(|| queue_key(&namespace, &request.queue));
        let fetch = |query| {
            self.context
                .store()
                .list_dead_letters(&namespace, queue.as_deref(), query)
        };
        list_page(&request, &scope, fetch, |a| attempt_message(&a)).await
    }
}
