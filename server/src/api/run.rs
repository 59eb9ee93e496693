//! RunService: start, observe and steer durable runs. Decoding and
//! validation happen here; every state change is a kernel transition.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::request::{
    Violations, duration_millis, encode_page, idempotency_key, page_query, require, timestamp,
};
use super::run_watch::Watcher;
use super::{ApiContext, ApiError, ApiResult, respond};
use crate::chain::{self, CompiledChain, Goto};
use crate::kernel::events::LiveEvent;
use crate::kernel::{ChainSource, Kernel, StartRun, replay, value};
use crate::proto::taskloom::v1::{self as pb, run_service_server::RunService};
use crate::store::{
    AttemptRecord, AttemptStatus, EventRecord, Page, PageQuery, RunFilter, RunRecord, RunStatus,
};

/// Largest accepted run input or human answer (encoded).
const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Default and maximum ExecuteChain wait.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(3600);

pub struct RunApi {
    context: ApiContext,
}

impl RunApi {
    pub fn new(context: ApiContext) -> Self {
        RunApi { context }
    }

    fn kernel(&self) -> &Kernel {
        self.context.kernel()
    }
}

pub fn status_value(status: RunStatus) -> pb::RunStatus {
    match status {
        RunStatus::Queued => pb::RunStatus::Queued,
        RunStatus::Running => pb::RunStatus::Running,
        RunStatus::WaitingInput => pb::RunStatus::WaitingInput,
        RunStatus::Paused => pb::RunStatus::Paused,
        RunStatus::Succeeded => pb::RunStatus::Succeeded,
        RunStatus::Failed => pb::RunStatus::Failed,
        RunStatus::Cancelled => pb::RunStatus::Cancelled,
    }
}

fn status_from_value(value: i32) -> Option<RunStatus> {
    Some(match pb::RunStatus::try_from(value).ok()? {
        pb::RunStatus::Unspecified => return None,
        pb::RunStatus::Queued => RunStatus::Queued,
        pb::RunStatus::Running => RunStatus::Running,
        pb::RunStatus::WaitingInput => RunStatus::WaitingInput,
        pb::RunStatus::Paused => RunStatus::Paused,
        pb::RunStatus::Succeeded => RunStatus::Succeeded,
        pb::RunStatus::Failed => RunStatus::Failed,
        pb::RunStatus::Cancelled => RunStatus::Cancelled,
    })
}

fn attempt_status_value(status: AttemptStatus) -> pb::AttemptStatus {
    match status {
        AttemptStatus::Ready | AttemptStatus::Waiting => pb::AttemptStatus::Ready,
        AttemptStatus::Leased => pb::AttemptStatus::Leased,
        AttemptStatus::Succeeded => pb::AttemptStatus::Succeeded,
        AttemptStatus::Failed => pb::AttemptStatus::Failed,
        AttemptStatus::Cancelled => pb::AttemptStatus::Cancelled,
        AttemptStatus::TimedOut => pb::AttemptStatus::TimedOut,
    }
}

fn decode_value(bytes: &[u8]) -> ApiResult<pb::Value> {
    value::decode(bytes).map_err(ApiError::Internal)
}

/// The API view of a run. `attempts`, when given, fills `active_tasks` and
/// `input_request`.
fn run_message(record: &RunRecord, attempts: Option<&[AttemptRecord]>) -> ApiResult<pb::Run> {
    let mut run = pb::Run {
        id: record.id.clone(),
        chain_id: record.chain_id.clone(),
        chain_version: record.chain_version,
        status: status_value(record.status) as i32,
        input: Some(decode_value(&record.input)?),
        output: record.output.as_deref().map(decode_value).transpose()?,
        error: record.error.as_ref().map(|error| pb::RunError {
            message: error.message.clone(),
            task_id: error.task_id.clone(),
            reason: error.reason.clone(),
        }),
        labels: record.labels.clone(),
        priority: record.priority,
        tenant: record.tenant.clone(),
        active_tasks: Vec::new(),
        input_request: None,
        usage: Some(pb::TokenUsage {
            input_tokens: record.input_tokens,
            output_tokens: record.output_tokens,
        }),
        steps: record.steps,
        last_event_seq: record.last_seq,
        request_id: record.request_id.clone().unwrap_or_default(),
        create_time: Some(timestamp(record.created_at)),
        start_time: record.started_at.map(timestamp),
        end_time: record.ended_at.map(timestamp),
        update_time: Some(timestamp(record.updated_at)),
    };
    if let Some(attempts) = attempts {
        for attempt in attempts.iter().filter(|a| a.status.is_active()) {
            if !run.active_tasks.contains(&attempt.task_id) {
                run.active_tasks.push(attempt.task_id.clone());
            }
            if attempt.status == AttemptStatus::Waiting && run.input_request.is_none() {
                run.input_request = Some(pb::InputRequest {
                    task_id: attempt.task_id.clone(),
                    prompt: match &attempt.prompt {
                        Some(prompt) => prompt.clone(),
                        None => value::as_text(&decode_value(&attempt.input)?),
                    },
                });
            }
        }
    }
    Ok(run)
}

pub(super) fn attempt_message(record: &AttemptRecord) -> ApiResult<pb::TaskAttempt> {
    Ok(pb::TaskAttempt {
        id: record.id.clone(),
        run_id: record.run_id.clone(),
        task_id: record.task_id.clone(),
        attempt: record.attempt,
        status: attempt_status_value(record.status) as i32,
        queue: record.queue.clone(),
        available_time: Some(timestamp(record.available_at)),
        lease_owner: record.lease_owner.clone().unwrap_or_default(),
        lease_expire_time: record.lease_expires_at.map(timestamp),
        lease_expiries: record.lease_expiries,
        output: record.output.as_deref().map(decode_value).transpose()?,
        error: record.error.clone().unwrap_or_default(),
        dead_lettered: record.dead_lettered,
        backend_id: record.backend_id.clone().unwrap_or_default(),
        model: record.model.clone().unwrap_or_default(),
        usage: Some(pb::TokenUsage {
            input_tokens: record.input_tokens,
            output_tokens: record.output_tokens,
        }),
        create_time: Some(timestamp(record.created_at)),
        start_time: record.started_at.map(timestamp),
        end_time: record.ended_at.map(timestamp),
    })
}

/// A stored event as sent to clients (its sequence number from the row).
pub fn event_message(record: &EventRecord) -> ApiResult<pb::RunEvent> {
    let mut event = pb::RunEvent::decode(record.payload.as_slice())
        .map_err(|error| ApiError::Internal(format!("stored event does not decode: {error}")))?;
    event.seq = record.seq;
    event.run_id = record.run_id.clone();
    Ok(event)
}

pub(super) fn is_terminal_event(event: &pb::RunEvent) -> bool {
    matches!(
        pb::RunEventType::try_from(event.r#type),
        Ok(pb::RunEventType::RunSucceeded
            | pb::RunEventType::RunFailed
            | pb::RunEventType::RunCancelled)
    )
}

/// Everything a run needs to start, decoded and validated.
struct RunRequest<'a> {
    chain_id: &'a str,
    chain_version: i64,
    chain: Option<&'a pb::Chain>,
    input: Option<&'a pb::execute_chain_request::RunInput>,
    input_type: &'a str,
    request_id: &'a str,
    labels: &'a BTreeMap<String, String>,
    priority: i32,
    tenant: &'a str,
}

fn decode_start(
    request: &RunRequest<'_>,
    violations: &mut Violations,
) -> Option<(ChainSource, pb::Value)> {
    violations.check_request_id("request_id", request.request_id);
    violations.check_labels("labels", request.labels);
    if !(-100..=100).contains(&request.priority) {
        violations.add("priority", "must be between -100 and 100");
    }
    if !request.tenant.is_empty() {
        violations.check_id("tenant", request.tenant);
    }
    if request.chain_version < 0 {
        violations.add("chain_version", "must be positive, or 0 for the latest");
    }
    let source = match (request.chain_id.is_empty(), request.chain) {
        (true, None) => {
            violations.add("chain_id", "is required (or give an inline chain)");
            None
        }
        (false, Some(chain)) if chain.id != request.chain_id => {
            violations.add(
                "chain_id",
                "must be empty or equal chain.id when an inline chain is given",
            );
            None
        }
        (_, Some(chain)) => {
            if request.chain_version != 0 {
                violations.add("chain_version", "cannot pin a version of an inline chain");
            }
            if chain.encoded_len() > 1024 * 1024 {
                violations.add("chain", "is larger than 1 MiB encoded");
            } else {
                for violation in chain::validate(chain) {
                    violations.add_with_reason(
                        format!("chain.{}", violation.field),
                        violation.description,
                        violation.reason,
                    );
                }
            }
            Some(ChainSource::Inline(chain.clone()))
        }
        (false, None) => Some(ChainSource::Stored {
            id: request.chain_id.to_string(),
            version: (request.chain_version > 0).then_some(request.chain_version),
        }),
    };
    let input = match request.input {
        None => Some(value::text("")),
        Some(pb::execute_chain_request::RunInput::Input(json)) => {
            match value::from_json_input(Some(json), request.input_type) {
                Ok(value) => Some(value),
                Err(message) => {
                    let field = if message.contains("input_type") && message.starts_with("unknown")
                    {
                        "input_type"
                    } else {
                        "input"
                    };
                    violations.add(field, message);
                    None
                }
            }
        }
        Some(pb::execute_chain_request::RunInput::TypedInput(typed)) => {
            if !request.input_type.is_empty() {
                violations.add(
                    "input_type",
                    "applies to `input` only, not to `typed_input`",
                );
            }
            match value::check_typed(typed) {
                Ok(()) => Some(typed.clone()),
                Err(message) => {
                    violations.add("typed_input", message);
                    None
                }
            }
        }
    };
    if let Some(input) = &input
        && input.encoded_len() > MAX_INPUT_BYTES
    {
        violations.add(
            "input",
            format!("is larger than {MAX_INPUT_BYTES} bytes encoded"),
        );
    }
    Some((source?, input?))
}

fn kernel_start(
    source: ChainSource,
    input: pb::Value,
    request: &RunRequest<'_>,
    idempotency: Option<crate::store::IdempotencyKey>,
) -> StartRun {
    StartRun {
        chain: source,
        input,
        labels: request.labels.clone(),
        priority: request.priority,
        tenant: request.tenant.to_string(),
        idempotency,
    }
}

/// `StartRunRequest.run_input` and `ExecuteChainRequest.run_input` are the
/// same oneof; the kernel uses the ExecuteChain spelling.
fn start_input(
    input: &Option<pb::start_run_request::RunInput>,
) -> Option<pb::execute_chain_request::RunInput> {
    input.as_ref().map(|input| match input {
        pb::start_run_request::RunInput::Input(json) => {
            pb::execute_chain_request::RunInput::Input(json.clone())
        }
        pb::start_run_request::RunInput::TypedInput(typed) => {
            pb::execute_chain_request::RunInput::TypedInput(typed.clone())
        }
    })
}

/// Cancels the run if the ExecuteChain call is dropped (the client went
/// away) before the run ended: a synchronous caller that leaves takes its
/// work with it.
struct CancelOnDrop {
    kernel: Kernel,
    run_id: Option<String>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(run_id) = self.run_id.take() {
            let kernel = self.kernel.clone();
            tokio::spawn(async move {
                if let Err(error) = kernel
                    .cancel_run(&run_id, "ExecuteChain caller disconnected", None)
                    .await
                {
                    tracing::debug!(run_id = %run_id, error = %error, "cancel after disconnect");
                }
            });
        }
    }
}

impl RunApi {
    async fn start(&self, request: pb::StartRunRequest) -> ApiResult<pb::Run> {
        let input = start_input(&request.run_input);
        let decoded = RunRequest {
            chain_id: &request.chain_id,
            chain_version: request.chain_version,
            chain: request.chain.as_ref(),
            input: input.as_ref(),
            input_type: &request.input_type,
            request_id: &request.request_id,
            labels: &request.labels,
            priority: request.priority,
            tenant: &request.tenant,
        };
        let mut violations = Violations::new();
        let parts = decode_start(&decoded, &mut violations);
        violations.finish()?;
        let Some((source, value)) = parts else {
            return Err(ApiError::invalid("input", "is invalid"));
        };
        let idempotency = idempotency_key("StartRun", &request.request_id, &request, |r| {
            r.request_id.clear()
        });
        let start = kernel_start(source, value, &decoded, idempotency);
        let started = self.kernel().start_run(start).await?;
        match &started.attempts {
            Some(attempts) => {
                tracing::debug!(run_id = %started.run.id, chain_id = %started.run.chain_id, version = started.run.chain_version, "run started");
                run_message(&started.run, Some(attempts))
            }
            None => self.run_view(&started.run).await,
        }
    }

    async fn execute(
        &self,
        request: pb::ExecuteChainRequest,
    ) -> ApiResult<pb::ExecuteChainResponse> {
        let decoded = RunRequest {
            chain_id: &request.chain_id,
            chain_version: request.chain_version,
            chain: request.chain.as_ref(),
            input: request.run_input.as_ref(),
            input_type: &request.input_type,
            request_id: &request.request_id,
            labels: &request.labels,
            priority: request.priority,
            tenant: &request.tenant,
        };
        let mut violations = Violations::new();
        let parts = decode_start(&decoded, &mut violations);
        let wait = match &request.wait_timeout {
            None => DEFAULT_WAIT,
            Some(duration) => match duration_millis(duration) {
                Some(ms) if ms > 0 && Duration::from_millis(ms as u64) <= MAX_WAIT => {
                    Duration::from_millis(ms as u64)
                }
                _ => {
                    violations.add("wait_timeout", "must be positive and at most 1 hour");
                    DEFAULT_WAIT
                }
            },
        };
        violations.finish()?;
        let Some((source, value)) = parts else {
            return Err(ApiError::invalid("input", "is invalid"));
        };
        let idempotency = idempotency_key("ExecuteChain", &request.request_id, &request, |r| {
            r.request_id.clear()
        });
        let kernel = self.kernel().clone();
        let run = kernel
            .start_run(kernel_start(source, value, &decoded, idempotency))
            .await?
            .run;
        let mut guard = CancelOnDrop {
            kernel: kernel.clone(),
            run_id: Some(run.id.clone()),
        };
        let ended = tokio::select! {
            ended = tokio::time::timeout(wait, wait_for_end(&kernel, &run.id)) => match ended {
                Ok(result) => result?,
                Err(_) => {
                    guard.run_id = None;
                    return Err(ApiError::DeadlineExceeded {
                        run_id: run.id.clone(),
                        waited: wait,
                    });
                }
            },
            // The run goes on (another replica, or this one restarted, takes
            // it up); a retry with the same request_id finds it.
            () = self.context.drained() => {
                guard.run_id = None;
                return Err(ApiError::ShuttingDown);
            }
        };
        guard.run_id = None;
        let attempts = all_attempts(&kernel, &ended.id).await?;
        let chain = kernel.chain(&ended.chain_id, ended.chain_version).await?;
        let output = ended.output.as_deref().map(decode_value).transpose()?;
        Ok(pb::ExecuteChainResponse {
            run: Some(run_message(&ended, Some(&attempts))?),
            output_type: output
                .as_ref()
                .map(|output| value::value_type(output) as i32)
                .unwrap_or_default(),
            output,
            trace: trace(&chain, &attempts)?,
        })
    }

    /// The run with its active tasks and input request.
    async fn run_view(&self, run: &RunRecord) -> ApiResult<pb::Run> {
        let attempts = all_attempts(self.kernel(), &run.id).await?;
        run_message(run, Some(&attempts))
    }
}

/// Every attempt of a run, in step order.
async fn all_attempts(kernel: &Kernel, run_id: &str) -> ApiResult<Vec<AttemptRecord>> {
    let mut attempts = Vec::new();
    let mut after = None;
    loop {
        let page = kernel
            .store()
            .list_attempts(run_id, PageQuery { limit: 1000, after })
            .await?;
        attempts.extend(page.items);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(attempts),
        }
    }
}

/// Waits until the run is over; returns it as it ended. Wakes on the hub's
/// signals only (any stored event may be the terminal one).
async fn wait_for_end(kernel: &Kernel, run_id: &str) -> ApiResult<RunRecord> {
    let mut live = kernel.subscribe(run_id);
    loop {
        let run = kernel.get_run(run_id).await?;
        if run.status.is_terminal() {
            return Ok(run);
        }
        loop {
            match live.recv().await {
                Ok(LiveEvent::Delta(_)) => continue,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => {
                    live = kernel.subscribe(run_id);
                    break;
                }
            }
        }
    }
}

/// One trace entry per task execution (retries folded in), in order.
fn trace(chain: &CompiledChain, attempts: &[AttemptRecord]) -> ApiResult<Vec<pb::TaskTrace>> {
    let mut entries: Vec<pb::TaskTrace> = Vec::new();
    for attempt in attempts {
        let input = decode_value(&attempt.input)?;
        let output = attempt.output.as_deref().map(decode_value).transpose()?;
        if attempt.attempt == 1 || !entries.iter().any(|e| e.task_id == attempt.task_id) {
            let task = chain.task(&attempt.task_id);
            entries.push(pb::TaskTrace {
                task_id: attempt.task_id.clone(),
                handler: task
                    .map(|t| t.handler.name().to_string())
                    .unwrap_or_default(),
                input_type: value::value_type(&input) as i32,
                start_time: attempt.started_at.map(timestamp),
                ..Default::default()
            });
        }
        let Some(entry) = entries
            .iter_mut()
            .rev()
            .find(|e| e.task_id == attempt.task_id)
        else {
            continue;
        };
        entry.attempts += 1;
        if let Some(error) = &attempt.error {
            entry.errors.push(error.clone());
        }
        if let (Some(start), Some(end)) = (attempt.started_at, attempt.ended_at) {
            let millis = (end - start).num_milliseconds().max(0);
            entry.duration = Some(super::request::millis_duration(millis));
        }
        entry.backend_id = attempt.backend_id.clone().unwrap_or_default();
        entry.model = attempt.model.clone().unwrap_or_default();
        let usage = entry.usage.get_or_insert_with(Default::default);
        usage.input_tokens += attempt.input_tokens;
        usage.output_tokens += attempt.output_tokens;
        if let Some(output) = output {
            entry.output_type = value::value_type(&output) as i32;
            if let Some(task) = chain.task(&attempt.task_id) {
                let text = value::as_text(&output);
                entry.next = match (
                    task.transition.branches.is_empty(),
                    task.transition.next(&text),
                ) {
                    (true, _) | (_, Some(Goto::End)) => vec!["end".to_string()],
                    (_, Some(goto)) => goto.targets().to_vec(),
                    (_, None) => Vec::new(),
                };
            }
        }
    }
    Ok(entries)
}

fn run_filter(request: &pb::ListRunsRequest, violations: &mut Violations) -> RunFilter {
    let mut filter = RunFilter::default();
    for (index, status) in request.statuses.iter().enumerate() {
        match status_from_value(*status) {
            Some(status) => filter.statuses.push(status),
            None => violations.add(format!("statuses[{index}]"), "is not a run status"),
        }
    }
    if !request.chain_id.is_empty() {
        filter.chain_id = Some(request.chain_id.clone());
    }
    violations.check_labels("labels", &request.labels);
    filter.labels = request.labels.clone();
    if !request.tenant.is_empty() {
        filter.tenant = Some(request.tenant.clone());
    }
    let time = |field: &str, ts: &Option<prost_types::Timestamp>, violations: &mut Violations| {
        ts.as_ref().and_then(|ts| {
            let parsed = chrono::DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32);
            if parsed.is_none() {
                violations.add(field, "is not a valid timestamp");
            }
            parsed
        })
    };
    filter.created_after = time("create_time_after", &request.create_time_after, violations);
    filter.created_before = time(
        "create_time_before",
        &request.create_time_before,
        violations,
    );
    filter
}

#[tonic::async_trait]
impl RunService for RunApi {
    async fn start_run(
        &self,
        request: Request<pb::StartRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        respond(self.start(request.into_inner()).await)
    }

    async fn execute_chain(
        &self,
        request: Request<pb::ExecuteChainRequest>,
    ) -> Result<Response<pb::ExecuteChainResponse>, Status> {
        respond(self.execute(request.into_inner()).await)
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("id", &request.id)?;
                let run = self.kernel().get_run(&request.id).await?;
                self.run_view(&run).await
            }
            .await,
        )
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                let mut violations = Violations::new();
                let filter = run_filter(&request, &mut violations);
                violations.finish()?;
                let mut scope_source = request.clone();
                scope_source.page_size = 0;
                scope_source.page_token.clear();
                let scope = format!(
                    "ListRuns/{:x}",
                    Sha256::digest(scope_source.encode_to_vec())
                );
                let query = page_query(request.page_size, &request.page_token, &scope)?;
                let page = self.kernel().store().list_runs(&filter, query).await?;
                let (runs, next_page_token) =
                    encode_page(page, &scope, |run| run_message(&run, None))?;
                Ok(pb::ListRunsResponse {
                    runs,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn watch_run(
        &self,
        request: Request<pb::WatchRunRequest>,
    ) -> Result<Response<BoxStream<pb::RunEvent>>, Status> {
        let request = request.into_inner();
        let result: ApiResult<()> = async {
            require("run_id", &request.run_id)?;
            if request.after_seq < 0 {
                return Err(ApiError::invalid("after_seq", "must not be negative"));
            }
            Ok(())
        }
        .await;
        result.map_err(Status::from)?;
        let watcher = Watcher::open(
            self.kernel().clone(),
            request.run_id,
            request.after_seq,
            request.include_deltas,
        )
        .await
        .map_err(Status::from)?;
        Ok(Response::new(watcher.into_stream()))
    }

    async fn list_run_events(
        &self,
        request: Request<pb::ListRunEventsRequest>,
    ) -> Result<Response<pb::ListRunEventsResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("run_id", &request.run_id)?;
                if request.after_seq < 0 {
                    return Err(ApiError::invalid("after_seq", "must not be negative"));
                }
                let scope = format!("ListRunEvents/{}", request.run_id);
                let query = page_query(request.page_size, &request.page_token, &scope)?;
                let after = match &query.after {
                    Some(after) => after.parse::<i64>().map_err(|_| {
                        ApiError::invalid("page_token", "is not a token of this listing")
                    })?,
                    None => request.after_seq,
                };
                let limit = if request.page_size == 0 {
                    100
                } else {
                    query.limit
                };
                // NOT_FOUND for an unknown run comes from the store.
                let records = self
                    .kernel()
                    .store()
                    .list_events(&request.run_id, after, limit + 1)
                    .await?;
                let page = Page::new(records, limit as usize, |record| record.seq.to_string());
                let (events, next_page_token) =
                    encode_page(page, &scope, |record| event_message(&record))?;
                Ok(pb::ListRunEventsResponse {
                    events,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn list_run_attempts(
        &self,
        request: Request<pb::ListRunAttemptsRequest>,
    ) -> Result<Response<pb::ListRunAttemptsResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("run_id", &request.run_id)?;
                let scope = format!("ListRunAttempts/{}", request.run_id);
                let query = page_query(request.page_size, &request.page_token, &scope)?;
                let page = self
                    .kernel()
                    .store()
                    .list_attempts(&request.run_id, query)
                    .await?;
                let (attempts, next_page_token) =
                    encode_page(page, &scope, |attempt| attempt_message(&attempt))?;
                Ok(pb::ListRunAttemptsResponse {
                    attempts,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("id", &request.id)?;
                let mut violations = Violations::new();
                violations.check_text("reason", &request.reason, 1024);
                violations.check_request_id("request_id", &request.request_id);
                violations.finish()?;
                let idempotency =
                    idempotency_key("CancelRun", &request.request_id, &request, |r| {
                        r.request_id.clear()
                    });
                let run = self
                    .kernel()
                    .cancel_run(&request.id, &request.reason, idempotency)
                    .await?;
                tracing::info!(run_id = %run.id, reason = %request.reason, "run cancelled");
                self.run_view(&run).await
            }
            .await,
        )
    }

    async fn pause_run(
        &self,
        request: Request<pb::PauseRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("id", &request.id)?;
                let mut violations = Violations::new();
                violations.check_request_id("request_id", &request.request_id);
                violations.finish()?;
                let idempotency = idempotency_key("PauseRun", &request.request_id, &request, |r| {
                    r.request_id.clear()
                });
                let run = self
                    .kernel()
                    .pause_run(&request.id, request.cancel_running, idempotency)
                    .await?;
                tracing::info!(run_id = %run.id, "run paused");
                self.run_view(&run).await
            }
            .await,
        )
    }

    async fn resume_run(
        &self,
        request: Request<pb::ResumeRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("id", &request.id)?;
                let mut violations = Violations::new();
                violations.check_request_id("request_id", &request.request_id);
                violations.finish()?;
                let idempotency =
                    idempotency_key("ResumeRun", &request.request_id, &request, |r| {
                        r.request_id.clear()
                    });
                let run = self.kernel().resume_run(&request.id, idempotency).await?;
                tracing::info!(run_id = %run.id, "run resumed");
                self.run_view(&run).await
            }
            .await,
        )
    }

    async fn submit_input(
        &self,
        request: Request<pb::SubmitInputRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let request = request.into_inner();
        respond(
            async {
                let mut violations = Violations::new();
                if request.run_id.is_empty() {
                    violations.add("run_id", "is required");
                }
                if request.task_id.is_empty() {
                    violations.add("task_id", "is required");
                }
                violations.check_request_id("request_id", &request.request_id);
                let answer = match &request.answer {
                    None => {
                        violations.add("input", "is required (input or typed_input)");
                        None
                    }
                    Some(pb::submit_input_request::Answer::Input(json)) => {
                        match value::from_json_input(Some(json), "") {
                            Ok(value) => Some(value),
                            Err(message) => {
                                violations.add("input", message);
                                None
                            }
                        }
                    }
                    Some(pb::submit_input_request::Answer::TypedInput(typed)) => {
                        match value::check_typed(typed) {
                            Ok(()) => Some(typed.clone()),
                            Err(message) => {
                                violations.add("typed_input", message);
                                None
                            }
                        }
                    }
                };
                if let Some(answer) = &answer
                    && answer.encoded_len() > MAX_INPUT_BYTES
                {
                    violations.add(
                        "input",
                        format!("is larger than {MAX_INPUT_BYTES} bytes encoded"),
                    );
                }
                violations.finish()?;
                let Some(answer) = answer else {
                    return Err(ApiError::invalid("input", "is required"));
                };
                let request_key =
                    idempotency_key("SubmitInput", &request.request_id, &request, |r| {
                        r.request_id.clear()
                    })
                    .map(|key| format!("{}:{}", key.request_id, key.request_hash));
                let run = self
                    .kernel()
                    .submit_input(&request.run_id, &request.task_id, answer, request_key)
                    .await?;
                self.run_view(&run).await
            }
            .await,
        )
    }

    async fn retry_run(
        &self,
        request: Request<pb::RetryRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("id", &request.id)?;
                let mut violations = Violations::new();
                violations.check_request_id("request_id", &request.request_id);
                violations.finish()?;
                let idempotency = idempotency_key("RetryRun", &request.request_id, &request, |r| {
                    r.request_id.clear()
                });
                let run = self.kernel().retry_run(&request.id, idempotency).await?;
                tracing::info!(run_id = %run.id, "run retried");
                self.run_view(&run).await
            }
            .await,
        )
    }

    async fn replay_run(
        &self,
        request: Request<pb::ReplayRunRequest>,
    ) -> Result<Response<pb::ReplayRunResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("id", &request.id)?;
                let run = self.kernel().get_run(&request.id).await?;
                let chain = self
                    .kernel()
                    .chain(&run.chain_id, run.chain_version)
                    .await?;
                let attempts = all_attempts(self.kernel(), &run.id).await?;
                Ok(replay::replay(&chain, &run, &attempts)?)
            }
            .await,
        )
    }
}
