//! Runs, their attempts and events, and what an executed run did.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;

use crate::api::request::{
    Violations, duration_millis, idempotency_key, millis_duration, timestamp,
};
use crate::api::{ApiError, ApiResult};
use crate::chain;
use crate::kernel::watch::TaskExecution;
use crate::kernel::{ChainSource, StartRun, value};
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptRecord, AttemptStatus, IdempotencyKey, RunFilter, RunRecord, RunStatus};

/// Largest accepted run input or human answer (encoded).
const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Default and maximum ExecuteChain wait.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(3600);

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
pub fn run_message(record: &RunRecord, attempts: Option<&[AttemptRecord]>) -> ApiResult<pb::Run> {
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
        traceparent: record.traceparent.clone().unwrap_or_default(),
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

pub fn attempt_message(record: &AttemptRecord) -> ApiResult<pb::TaskAttempt> {
    Ok(pb::TaskAttempt {
        id: record.id.clone(),
        run_id: record.run_id.clone(),
        task_id: record.task_id.clone(),
        attempt: record.attempt,
        status: attempt_status_value(record.status) as i32,
        queue: crate::namespace::unqualified(&record.queue).to_string(),
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
        input: Some(decode_value(&record.input)?),
        prompt: record.prompt.clone().unwrap_or_default(),
    })
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

/// The [`RunRequest`] of a `StartRun` or an `ExecuteChain` (which name
/// the same fields), with its input.
macro_rules! run_request {
    ($request:ident, $input:expr) => {
        RunRequest {
            chain_id: &$request.chain_id,
            chain_version: $request.chain_version,
            chain: $request.chain.as_ref(),
            input: $input,
            input_type: &$request.input_type,
            request_id: &$request.request_id,
            labels: &$request.labels,
            priority: $request.priority,
            tenant: &$request.tenant,
        }
    };
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
            checked_typed(typed, violations)
        }
    };
    check_input_size(input.as_ref(), violations);
    Some((source?, input?))
}

/// A `StartRun` as the kernel takes it.
pub fn start_run(request: &pb::StartRunRequest) -> ApiResult<StartRun> {
    let input = start_input(&request.run_input);
    let decoded = run_request!(request, input.as_ref());
    let mut violations = Violations::new();
    let parts = decode_start(&decoded, &mut violations);
    finish_start(&decoded, parts, violations, || idempotency_key(request))
}

/// An `ExecuteChain`: the run to start and how long to wait for its end.
pub fn execute_chain(request: &pb::ExecuteChainRequest) -> ApiResult<(StartRun, Duration)> {
    let decoded = run_request!(request, request.run_input.as_ref());
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
    let start = finish_start(&decoded, parts, violations, || idempotency_key(request))?;
    Ok((start, wait))
}

fn finish_start(
    request: &RunRequest<'_>,
    parts: Option<(ChainSource, pb::Value)>,
    violations: Violations,
    idempotency: impl FnOnce() -> Option<IdempotencyKey>,
) -> ApiResult<StartRun> {
    violations.finish()?;
    let Some((chain, input)) = parts else {
        return Err(ApiError::invalid("input", "is invalid"));
    };
    Ok(StartRun {
        namespace: crate::api::call_namespace(),
        chain,
        input,
        labels: request.labels.clone(),
        priority: request.priority,
        tenant: request.tenant.to_string(),
        idempotency: idempotency(),
        // Sent as metadata, not in the message; an invalid one is ignored.
        traceparent: crate::traces::incoming_traceparent(),
    })
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

/// One trace entry per task execution, as the kernel folded and routed it.
pub fn trace(executions: &[TaskExecution]) -> ApiResult<Vec<pb::TaskTrace>> {
    executions.iter().map(trace_entry).collect()
}

fn trace_entry(execution: &TaskExecution) -> ApiResult<pb::TaskTrace> {
    let mut entry = pb::TaskTrace {
        task_id: execution.task_id.clone(),
        handler: execution.handler.clone(),
        next: execution.next.clone(),
        ..Default::default()
    };
    if let Some(first) = execution.attempts.first() {
        entry.input_type = value::value_type(&decode_value(&first.input)?) as i32;
        entry.start_time = first.started_at.map(timestamp);
    }
    let usage = entry.usage.get_or_insert_with(Default::default);
    for attempt in &execution.attempts {
        entry.attempts += 1;
        if let Some(error) = &attempt.error {
            entry.errors.push(error.clone());
        }
        if let (Some(start), Some(end)) = (attempt.started_at, attempt.ended_at) {
            let millis = (end - start).num_milliseconds().max(0);
            entry.duration = Some(millis_duration(millis));
        }
        entry.backend_id = attempt.backend_id.clone().unwrap_or_default();
        entry.model = attempt.model.clone().unwrap_or_default();
        usage.input_tokens += attempt.input_tokens;
        usage.output_tokens += attempt.output_tokens;
        if let Some(output) = attempt.output.as_deref() {
            entry.output_type = value::value_type(&decode_value(output)?) as i32;
        }
    }
    Ok(entry)
}

pub fn run_filter(request: &pb::ListRunsRequest, violations: &mut Violations) -> RunFilter {
    let mut filter = RunFilter {
        namespace: crate::api::call_namespace(),
        ..RunFilter::default()
    };
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

/// A `ListRuns` page token's scope: the request's filters.
pub fn list_runs_scope(request: &pb::ListRunsRequest) -> String {
    use sha2::{Digest, Sha256};
    let mut scope_source = request.clone();
    scope_source.page_size = 0;
    scope_source.page_token.clear();
    format!(
        "ListRuns/{:x}",
        Sha256::digest(scope_source.encode_to_vec())
    )
}

/// A typed value as given, if it is well formed.
fn checked_typed(typed: &pb::Value, violations: &mut Violations) -> Option<pb::Value> {
    match value::check_typed(typed) {
        Ok(()) => Some(typed.clone()),
        Err(message) => {
            violations.add("typed_input", message);
            None
        }
    }
}

/// Refuses a run input or answer over [`MAX_INPUT_BYTES`].
fn check_input_size(input: Option<&pb::Value>, violations: &mut Violations) {
    if let Some(input) = input
        && input.encoded_len() > MAX_INPUT_BYTES
    {
        violations.add(
            "input",
            format!("is larger than {MAX_INPUT_BYTES} bytes encoded"),
        );
    }
}

/// A `SubmitInput`: the answer and the request's idempotency key.
pub fn submitted_input(request: &pb::SubmitInputRequest) -> ApiResult<(pb::Value, Option<String>)> {
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
            checked_typed(typed, &mut violations)
        }
    };
    check_input_size(answer.as_ref(), &mut violations);
    violations.finish()?;
    let Some(answer) = answer else {
        return Err(ApiError::invalid("input", "is required"));
    };
    let request_key =
        idempotency_key(request).map(|key| format!("{}:{}", key.request_id, key.request_hash));
    Ok((answer, request_key))
}
