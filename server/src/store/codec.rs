//! What both backends share beyond SQL: records as a row keeps them,
//! paging, JSON columns, error constructors, and the folding of a claim's
//! plan into the leases it writes.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    AttemptRecord, Page, PageQuery, Plan, Rejection, RunFailure, RunRecord, StoreError,
    StoreResult, Verdict,
};

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

/// A page of `items` fetched with [`page_limits`].
pub(super) fn into_page<T>(items: Vec<T>, page: &PageQuery, key: impl Fn(&T) -> String) -> Page<T> {
    Page::new(items, page.limit.max(1) as usize, key)
}
