//! What both backends share beyond SQL: records as a row keeps them,
//! paging, JSON columns, error constructors, and the folding of a claim's
//! plan into the leases it writes.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{
    AttemptRecord, AttemptStatus, BackendRecord, BackendState, ChainRecord, EventRecord,
    HookRecord, ModelRecord, Page, PageQuery, Plan, PoolRecord, Rejection, RunFailure, RunRecord,
    RunStatus, StoreError, StoreResult, Verdict, WorkerSessionRecord, sealed,
};
use crate::secrets::SecretBox;

/// Drops sub-microsecond precision, which neither database keeps.
pub(super) fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

fn optional_micros(at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    at.map(truncate_to_micros)
}

/// `run` with its timestamps as the table keeps them.
pub(super) fn run_as_stored(run: RunRecord) -> RunRecord {
    RunRecord {
        created_at: truncate_to_micros(run.created_at),
        started_at: optional_micros(run.started_at),
        ended_at: optional_micros(run.ended_at),
        updated_at: truncate_to_micros(run.updated_at),
        ..run
    }
}

/// `attempt` with its timestamps as the table keeps them.
pub(super) fn attempt_as_stored(attempt: AttemptRecord) -> AttemptRecord {
    AttemptRecord {
        available_at: truncate_to_micros(attempt.available_at),
        deadline: optional_micros(attempt.deadline),
        lease_expires_at: optional_micros(attempt.lease_expires_at),
        created_at: truncate_to_micros(attempt.created_at),
        started_at: optional_micros(attempt.started_at),
        ended_at: optional_micros(attempt.ended_at),
        ..attempt
    }
}

/// `stored` with the mutable columns of `update` (already as stored):
/// what an attempt update leaves in the row.
pub(super) fn attempt_updated(stored: &AttemptRecord, update: &AttemptRecord) -> AttemptRecord {
    AttemptRecord {
        id: stored.id.clone(),
        run_id: stored.run_id.clone(),
        task_id: stored.task_id.clone(),
        attempt: stored.attempt,
        step: stored.step,
        queue: stored.queue.clone(),
        priority: stored.priority,
        input: stored.input.clone(),
        prompt: stored.prompt.clone(),
        created_at: stored.created_at,
        ..update.clone()
    }
}

/// `stored` with the mutable columns of `update` (already as stored) and
/// `last_seq`: what a run update leaves in the row.
pub(super) fn run_updated(stored: &RunRecord, update: &RunRecord, last_seq: i64) -> RunRecord {
    RunRecord {
        id: stored.id.clone(),
        chain_id: stored.chain_id.clone(),
        chain_version: stored.chain_version,
        input: stored.input.clone(),
        labels: stored.labels.clone(),
        priority: stored.priority,
        tenant: stored.tenant.clone(),
        request_id: stored.request_id.clone(),
        traceparent: stored.traceparent.clone(),
        created_at: stored.created_at,
        last_seq,
        ..update.clone()
    }
}

/// The three error columns of a run: all set or all NULL.
pub(super) fn error_columns(error: Option<&RunFailure>) -> [Option<&str>; 3] {
    match error {
        Some(failure) => [
            Some(failure.message.as_str()),
            Some(failure.task_id.as_str()),
            Some(failure.reason.as_str()),
        ],
        None => [None, None, None],
    }
}

/// Claim order: highest priority first, then oldest `available_at`, then
/// id.
pub(super) fn sort_in_claim_order<T>(items: &mut [T], attempt: impl Fn(&T) -> &AttemptRecord) {
    items.sort_by(|a, b| {
        let (a, b) = (attempt(a), attempt(b));
        b.priority
            .cmp(&a.priority)
            .then(a.available_at.cmp(&b.available_at))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// The attempts of `run` a claim leased, as stored once the run's claim
/// plan is applied: updates the plan makes to them fold into their lease
/// write (one row write per claimed attempt, not two) and leave the plan.
/// `Corrupt` if the plan rejects, which claim decisions must not do.
pub(super) fn fold_claim_plan(
    run: &RunRecord,
    leased: Vec<AttemptRecord>,
    plan: &mut Plan,
) -> StoreResult<HashMap<String, AttemptRecord>> {
    if let Verdict::Reject(rejection) = &plan.verdict {
        return Err(outside_run(
            &run.id,
            format!(
                "rejected a claim, which claim decisions must not do: {}",
                rejection.message
            ),
        ));
    }
    let mut leased: HashMap<String, AttemptRecord> = leased
        .into_iter()
        .map(|attempt| (attempt.id.clone(), attempt_as_stored(attempt)))
        .collect();
    let mut other_updates = Vec::new();
    for update in std::mem::take(&mut plan.attempt_updates) {
        match leased.get_mut(&update.id) {
            Some(attempt) if update.run_id == run.id => {
                *attempt = attempt_updated(attempt, &attempt_as_stored(update));
            }
            _ => other_updates.push(update),
        }
    }
    plan.attempt_updates = other_updates;
    Ok(leased)
}

/// A lease the kernel refused: the claim fails as a whole.
pub(super) fn lease_refused(rejection: Rejection) -> StoreError {
    StoreError::FailedPrecondition(rejection.message)
}

/// A plan that reaches outside its run: a kernel bug, the transaction rolls
/// back.
pub(super) fn outside_run(run_id: &str, what: String) -> StoreError {
    StoreError::Corrupt(format!("a plan for run {run_id:?} {what}"))
}

pub(super) fn not_found(resource: &'static str, id: impl Into<String>) -> StoreError {
    StoreError::NotFound {
        resource,
        id: id.into(),
    }
}

pub(super) fn already_exists(resource: &'static str, id: impl Into<String>) -> StoreError {
    StoreError::AlreadyExists {
        resource,
        id: id.into(),
    }
}

pub(super) fn conflict(resource: &'static str, id: &str, expected: i64, actual: i64) -> StoreError {
    StoreError::Conflict {
        resource,
        id: id.to_string(),
        expected,
        actual,
    }
}

pub(super) fn to_json<T: Serialize>(value: &T, what: &str) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("encode {what}: {e}")))
}

pub(super) fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("decode {what}: {e}")))
}

/// `limit` clamped to at least 1, and the SQL LIMIT that fetches one extra
/// row to learn whether another page exists.
pub(super) fn page_limits(page: &PageQuery) -> (usize, i64) {
    let limit = page.limit.max(1);
    (limit as usize, i64::from(limit) + 1)
}

/// The version a page of chain versions (newest first) starts below: the
/// page key is the last version returned.
pub(super) fn versions_before(page: &PageQuery) -> StoreResult<Option<i64>> {
    let Some(after) = page.after.as_deref() else {
        return Ok(None);
    };
    let version = after.parse::<i64>().map_err(|_| {
        StoreError::FailedPrecondition(format!("page key {after:?} is not a chain version number"))
    })?;
    Ok(Some(version))
}

/// A page of `items` fetched with [`page_limits`].
pub(super) fn into_page<T>(items: Vec<T>, page: &PageQuery, key: impl Fn(&T) -> String) -> Page<T> {
    Page::new(items, page.limit.max(1) as usize, key)
}

// ---------------------------------------------------------------------------
// Row decoding, shared by both backends

/// Reads a column, reporting undecodable values as corrupt data.
pub(super) fn column<'r, R, T>(row: &'r R, name: &str) -> StoreResult<T>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(name).map_err(|error| match error {
        sqlx::Error::ColumnDecode { .. } => StoreError::Corrupt(error.to_string()),
        other => other.into(),
    })
}

/// The columns both databases decode alike.
pub(super) trait PlainColumns {
    fn text(&self, name: &str) -> StoreResult<String>;
    fn optional_text(&self, name: &str) -> StoreResult<Option<String>>;
    fn int(&self, name: &str) -> StoreResult<i64>;
    fn optional_int(&self, name: &str) -> StoreResult<Option<i64>>;
    fn int32(&self, name: &str) -> StoreResult<i32>;
    fn flag(&self, name: &str) -> StoreResult<bool>;
    fn bytes(&self, name: &str) -> StoreResult<Vec<u8>>;
    fn optional_bytes(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
}

impl<R> PlainColumns for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, name: &str) -> StoreResult<String> {
        column(self, name)
    }
    fn optional_text(&self, name: &str) -> StoreResult<Option<String>> {
        column(self, name)
    }
    fn int(&self, name: &str) -> StoreResult<i64> {
        column(self, name)
    }
    fn optional_int(&self, name: &str) -> StoreResult<Option<i64>> {
        column(self, name)
    }
    fn int32(&self, name: &str) -> StoreResult<i32> {
        column(self, name)
    }
    fn flag(&self, name: &str) -> StoreResult<bool> {
        column(self, name)
    }
    fn bytes(&self, name: &str) -> StoreResult<Vec<u8>> {
        column(self, name)
    }
    fn optional_bytes(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        column(self, name)
    }
}

/// A row of either database: the columns each keeps its own way (times,
/// JSON documents, lists of strings, run text).
pub(super) trait StoredRow: PlainColumns {
    fn time(&self, name: &str) -> StoreResult<DateTime<Utc>>;
    fn optional_time(&self, name: &str) -> StoreResult<Option<DateTime<Utc>>>;
    fn json<T: DeserializeOwned>(&self, name: &str, what: &str) -> StoreResult<T>;
    fn strings(&self, name: &str, what: &str) -> StoreResult<Vec<String>>;
    /// Run data that may hold U+0000 (prompts, error messages).
    fn run_text(&self, name: &str) -> StoreResult<Option<String>>;
}

pub(super) fn decode_all<R, T>(
    rows: &[R],
    decode: impl Fn(&R) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    rows.iter().map(decode).collect()
}

pub(super) fn backend_from_row(
    row: &impl StoredRow,
    secrets: &SecretBox,
) -> StoreResult<BackendRecord> {
    let id = row.text("id")?;
    Ok(BackendRecord {
        api_key: sealed::open_api_key(secrets, &id, row.optional_text("api_key")?)?,
        id,
        name: row.text("name")?,
        backend_type: row.text("backend_type")?,
        base_url: row.text("base_url")?,
        priority: row.int32("priority")?,
        max_concurrency: row.int32("max_concurrency")?,
        requests_per_minute: row.int32("requests_per_minute")?,
        tokens_per_minute: row.int("tokens_per_minute")?,
        model_limits: row.json("model_limits", "backend model limits")?,
        omit_stream_options: row.int32("omit_stream_options")? != 0,
        request_timeout_ms: row.int("request_timeout_ms")?,
        labels: row.json("labels", "backend labels")?,
        state: BackendState {
            health: row.text("health")?,
            models: row.strings("models", "backend models")?,
            observed_models: row.json("observed_models", "backend observed models")?,
            models_at: row.optional_time("models_at")?,
            last_error: row.text("last_error")?,
            last_sync_at: row.optional_time("last_sync_at")?,
            latency_ms: row.optional_int("latency_ms")?,
        },
        revision: row.int("revision")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(super) fn pool_from_row(row: &impl StoredRow) -> StoreResult<PoolRecord> {
    Ok(PoolRecord {
        id: row.text("id")?,
        description: row.text("description")?,
        purpose: row.text("purpose")?,
        policy: row.text("policy")?,
        discover_models: row.int32("discover_models")? != 0,
        created_at: row.time("created_at")?,
    })
}

pub(super) fn model_from_row(row: &impl StoredRow) -> StoreResult<ModelRecord> {
    Ok(ModelRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        context_length: row.int32("context_length")?,
        capabilities: row.strings("capabilities", "model capabilities")?,
        created_at: row.time("created_at")?,
    })
}

pub(super) fn hook_from_row(row: &impl StoredRow, secrets: &SecretBox) -> StoreResult<HookRecord> {
    let name = row.text("name")?;
    Ok(HookRecord {
        secret_headers: sealed::open_headers(
            secrets,
            &name,
            row.json("secret_headers", "hook secret headers")?,
        )?,
        namespace: row.text("namespace")?,
        name,
        description: row.text("description")?,
        url: row.text("url")?,
        method: row.text("method")?,
        timeout_ms: row.int("timeout_ms")?,
        headers: row.json("headers", "hook headers")?,
        queue: row.text("queue")?,
        revision: row.int("revision")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// A chain version joined with its head (the chain's creation time).
pub(super) fn chain_from_row(row: &impl StoredRow) -> StoreResult<ChainRecord> {
    Ok(ChainRecord {
        id: row.text("id")?,
        version: row.int("version")?,
        definition: row.bytes("definition")?,
        created_at: row.time("chain_created_at")?,
        updated_at: row.time("version_created_at")?,
    })
}

pub(super) fn run_from_row(row: &impl StoredRow) -> StoreResult<RunRecord> {
    let id = row.text("id")?;
    let namespace = row.text("namespace")?;
    let status = row.text("status")?;
    let status = RunStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("run {id:?} has unknown status {status:?}")))?;
    let error = match (
        row.run_text("error_message")?,
        row.optional_text("error_task_id")?,
        row.optional_text("error_reason")?,
    ) {
        (None, None, None) => None,
        (Some(message), Some(task_id), Some(reason)) => Some(RunFailure {
            message,
            task_id,
            reason,
        }),
        _ => {
            return Err(StoreError::Corrupt(format!(
                "run {id:?} has an incomplete error"
            )));
        }
    };
    Ok(RunRecord {
        namespace,
        chain_id: row.text("chain_id")?,
        chain_version: row.int("chain_version")?,
        status,
        input: row.bytes("input")?,
        output: row.optional_bytes("output")?,
        error,
        labels: row.json("labels", "run labels")?,
        priority: row.int32("priority")?,
        tenant: row.text("tenant")?,
        request_id: row.optional_text("request_id")?,
        steps: row.int32("steps")?,
        executions: row.int32("executions")?,
        heads: row
            .optional_text("heads")?
            .map(|heads| from_json(&heads, "run heads"))
            .transpose()?,
        input_tokens: row.int("input_tokens")?,
        output_tokens: row.int("output_tokens")?,
        last_seq: row.int("last_seq")?,
        created_at: row.time("created_at")?,
        started_at: row.optional_time("started_at")?,
        ended_at: row.optional_time("ended_at")?,
        updated_at: row.time("updated_at")?,
        traceparent: row.optional_text("traceparent")?,
        id,
    })
}

pub(super) fn attempt_from_row(row: &impl StoredRow) -> StoreResult<AttemptRecord> {
    let id = row.text("id")?;
    let status = row.text("status")?;
    let status = AttemptStatus::parse(&status).ok_or_else(|| {
        StoreError::Corrupt(format!("attempt {id:?} has unknown status {status:?}"))
    })?;
    Ok(AttemptRecord {
        run_id: row.text("run_id")?,
        task_id: row.text("task_id")?,
        attempt: row.int32("attempt")?,
        step: row.int32("step")?,
        status,
        queue: row.text("queue")?,
        priority: row.int32("priority")?,
        available_at: row.time("available_at")?,
        deadline: row.optional_time("deadline")?,
        lease_owner: row.optional_text("lease_owner")?,
        lease_token: row.optional_text("lease_token")?,
        lease_expires_at: row.optional_time("lease_expires_at")?,
        lease_expiries: row.int32("lease_expiries")?,
        input: row.bytes("input")?,
        prompt: row.run_text("prompt")?,
        output: row.optional_bytes("output")?,
        error: row.run_text("error")?,
        dead_lettered: row.flag("dead_lettered")?,
        backend_id: row.optional_text("backend_id")?,
        model: row.optional_text("model")?,
        input_tokens: row.int("input_tokens")?,
        output_tokens: row.int("output_tokens")?,
        created_at: row.time("created_at")?,
        started_at: row.optional_time("started_at")?,
        ended_at: row.optional_time("ended_at")?,
        id,
    })
}

pub(super) fn event_from_row(row: &impl StoredRow) -> StoreResult<EventRecord> {
    Ok(EventRecord {
        run_id: row.text("run_id")?,
        seq: row.int("seq")?,
        payload: row.bytes("payload")?,
    })
}

pub(super) fn session_from_row(row: &impl StoredRow) -> StoreResult<WorkerSessionRecord> {
    Ok(WorkerSessionRecord {
        session_id: row.text("session_id")?,
        replica: row.text("replica")?,
        worker_id: row.text("worker_id")?,
        name: row.text("name")?,
        queues: row.json("queues", "worker session queues")?,
        slots: row.int32("slots")?.max(0) as u32,
        leases_held: row.int32("leases_held")?.max(0) as u32,
        labels: row.json("labels", "worker session labels")?,
        sdk_version: row.text("sdk_version")?,
        connected_at: row.time("connected_at")?,
        last_heartbeat: row.time("last_heartbeat")?,
        fenced_operations: row.int("fenced_operations")?.max(0) as u64,
    })
}

/// Commits a creation: `record` as written, or as an earlier request with
/// the same id wrote it (`replayed`).
pub(super) async fn commit_created<DB: sqlx::Database, T>(
    tx: sqlx::Transaction<'static, DB>,
    record: T,
    replayed: bool,
) -> StoreResult<super::Created<T>> {
    tx.commit().await?;
    Ok(super::Created { record, replayed })
}
