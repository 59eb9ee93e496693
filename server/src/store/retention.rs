//! Deleting runs: one run on request (`DeleteRun`), and the finished runs
//! a retention policy no longer keeps, in small batches. A run is deleted
//! with everything stored about it — its attempts (dead letters included),
//! its events and the idempotency keys of the requests that started or
//! steered it — in one transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{AuditRecord, IdempotencyKey, Rejection, RunRecord, StoreResult};

/// The idempotency scopes (stored after the namespace: `team/StartRun`)
/// whose keys name a run (their `resource_key` is
/// the run id); a deleted run's keys of these scopes go with it. The
/// `DeleteRun` key itself stays, so a retry of the delete still answers.
pub(crate) const RUN_KEY_SCOPES: [&str; 7] = [
    "StartRun",
    "ExecuteChain",
    "CancelRun",
    "PauseRun",
    "ResumeRun",
    "RetryRun",
    "SubmitInput",
];

/// The smallest run id of anything created at or after `at`: run ids are
/// UUIDv7 (their first 48 bits are the creation time in unix milliseconds,
/// in the first 12 hex digits), so every run created before `at` has an id
/// below this. Retention finds old runs by id range on the `(chain_id, id)`
/// index the run listings already keep, rather than on an index of their
/// end time: that index would make the update that ends a run write every
/// index of the table (PostgreSQL could no longer update the row in place,
/// "HOT"), on the hot path, to save the retention loop a few reads.
pub(crate) fn ids_created_before(at: DateTime<Utc>) -> String {
    let millis = format!("{:012x}", at.timestamp_millis().max(0));
    format!("{}-{}", &millis[..8], &millis[8..])
}

/// The kernel's say on a delete: given the run under its lock, `Some`
/// refuses it.
pub type DeleteCheck = dyn Fn(&RunRecord) -> Option<Rejection> + Send + Sync;

/// What [`RetentionStore::delete_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunDeletion {
    Deleted,
    /// The request id was used before by a delete of the same run: that
    /// delete was done, nothing was written now.
    Replayed,
    /// The check refused; nothing was written.
    Rejected(Rejection),
}

#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes the run `run_id` with its attempts, events and run
    /// idempotency keys, if `check` (called under the run's lock) lets it,
    /// and writes `audit` in the same transaction. A request id applied
    /// before is `Replayed` (even though the run is gone); the same id with
    /// another payload is `IdempotencyMismatch`. `NotFound` if the run does
    /// not exist.
    async fn delete_run(
        &self,
        run_id: &str,
        check: &DeleteCheck,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<RunDeletion>;

    /// Deletes, in one short transaction, at most `limit` runs of chain
    /// `(namespace, chain_id)` that ended before `ended_before` (oldest first; ids are
    /// UUIDv7, so a run created later than `ended_before` is not looked at), with
    /// everything [`RetentionStore::delete_run`] deletes. Runs another
    /// transaction holds are skipped, so several replicas may call this at
    /// once. Returns the ids deleted.
    async fn delete_ended_runs(
        &self,
        chain: (&str, &str),
        ended_before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>>;

    /// The namespace and id of every chain ever stored, deleted ones
    /// included (a run's chain is always one of them), ordered.
    async fn all_chains(&self) -> StoreResult<Vec<(String, String)>>;
}
