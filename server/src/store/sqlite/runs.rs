//! [`RunStore`] for the embedded [`SqliteStore`]: runs, task attempts and
//! run events. This file holds the trait and the reads; `create.rs` creates
//! runs, `transitions.rs` applies decisions, `claim.rs` leases ready
//! attempts and `writes.rs` writes what they decided, in a few multi-row
//! statements per transaction; each the same concern as the PostgreSQL file
//! of the same name.
//!
//! Every write runs on the store's single writer connection inside
//! `BEGIN IMMEDIATE`, so a transaction holds the database's only write lock
//! from its first statement: a transition's snapshot cannot change under it,
//! two claimers cannot lease the same attempt, and nothing ever has to be
//! retried — `decide` closures are called exactly once.
//!
//! The kernel owns time: the timestamps of runs and attempts are the
//! caller's (claims use `ClaimRequest::now`), stored as INTEGER microseconds,
//! so a record returned by a write equals what a later read returns.
//!
//! A plan that reaches outside its run — a run update for another id, an
//! update of an attempt that does not exist or belongs to another run, a new
//! attempt of another run — is a kernel bug, not a state the caller can fix:
//! the whole transaction rolls back with [`StoreError::Corrupt`]. So does a
//! claim decision that rejects, which [`ClaimFn`] must never do.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Sqlite};

use super::idempotency::prior_result;
use super::{fetch_one, from_micros, micros, page_limits, require, to_json};
use crate::store::codec::{attempt_from_row, decode_all, event_from_row, run_from_row};
use crate::store::{
    AttemptRecord, ClaimFn, ClaimPolicy, Claimed, CreatedRun, Decision, DueAttempt, EventRecord,
    IdempotencyKey, NewRun, Page, PageQuery, RunFilter, RunRecord, RunStore, SqliteStore,
    StoreError, StoreResult, TransitionOutcome,
};

pub(super) const RUN_COLUMNS: &str = "r.id, r.namespace, r.chain_id, r.chain_version, r.status, r.input, r.output, \
     r.error_message, r.error_task_id, r.error_reason, r.labels, r.priority, r.tenant, \
     r.request_id, r.steps, r.executions, r.heads, r.input_tokens, r.output_tokens, r.last_seq, \
     r.created_at, r.started_at, r.ended_at, r.updated_at, r.traceparent";
pub(super) const ATTEMPT_COLUMNS: &str = "a.id, a.run_id, a.task_id, a.attempt, a.step, a.status, a.queue, \
     a.priority, a.available_at, a.deadline, a.lease_owner, a.lease_token, a.lease_expires_at, \
     a.lease_expiries, a.input, a.prompt, a.output, a.error, a.dead_lettered, a.backend_id, \
     a.model, a.input_tokens, a.output_tokens, a.created_at, a.started_at, a.ended_at";

// ---------------------------------------------------------------------------
// Reads shared by several methods

pub(super) async fn fetch_run(conn: &mut SqliteConnection, id: &str) -> StoreResult<RunRecord> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.id = ?");
    fetch_one(conn, &sql, ("run", id), run_from_row).await
}

/// The runs of `ids` that exist, by id, in one read.
pub(super) async fn fetch_runs(
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> StoreResult<HashMap<String, RunRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs r WHERE r.id IN (SELECT value FROM json_each(?))"
    ))
    .bind(to_json(&ids, "run ids")?)
    .fetch_all(&mut *conn)
    .await?;
    Ok(decode_all(&rows, run_from_row)?
        .into_iter()
        .map(|run| (run.id.clone(), run))
        .collect())
}

async fn fetch_attempt(conn: &mut SqliteConnection, id: &str) -> StoreResult<AttemptRecord> {
    let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM attempts a WHERE a.id = ?");
    fetch_one(conn, &sql, ("attempt", id), attempt_from_row).await
}

async fn require_run(conn: &mut SqliteConnection, run_id: &str) -> StoreResult<()> {
    require(conn, "SELECT 1 FROM runs WHERE id = ?", ("run", run_id)).await
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create_runs(&self, runs: Vec<NewRun>) -> StoreResult<Vec<StoreResult<CreatedRun>>> {
        self.write_runs(runs).await
    }

    async fn find_request(&self, key: &IdempotencyKey) -> StoreResult<Option<String>> {
        let mut conn = self.reader.acquire().await?;
        Ok(prior_result(&mut conn, Some(key))
            .await?
            .map(|prior| prior.resource_key))
    }

    async fn get_run(&self, id: &str) -> StoreResult<RunRecord> {
        let mut conn = self.reader.acquire().await?;
        fetch_run(&mut conn, id).await
    }

    async fn list_runs(&self, filter: &RunFilter, page: PageQuery) -> StoreResult<Page<RunRecord>> {
        let (limit, fetch) = page_limits(&page);
        // Only the filters in use become SQL, so the planner can pick the
        // index of the one that narrows.
        let mut query =
            QueryBuilder::<Sqlite>::new(format!("SELECT {RUN_COLUMNS} FROM runs r WHERE "));
        query
            .push("r.namespace = ")
            .push_bind(filter.namespace.as_str());
        if !filter.statuses.is_empty() {
            query.push(" AND r.status IN (");
            let mut statuses = query.separated(", ");
            for status in &filter.statuses {
                statuses.push_bind(status.as_str());
            }
            statuses.push_unseparated(")");
        }
        if let Some(chain_id) = &filter.chain_id {
            query
                .push(" AND r.chain_id = ")
                .push_bind(chain_id.as_str());
        }
        for (key, value) in &filter.labels {
            query
                .push(" AND EXISTS (SELECT 1 FROM json_each(r.labels) l WHERE l.key = ")
                .push_bind(key.as_str())
                .push(" AND l.value = ")
                .push_bind(value.as_str())
                .push(")");
        }
        if let Some(tenant) = &filter.tenant {
            query.push(" AND r.tenant = ").push_bind(tenant.as_str());
        }
        if let Some(after) = filter.created_after {
            query.push(" AND r.created_at >= ").push_bind(micros(after));
        }
        if let Some(before) = filter.created_before {
            query.push(" AND r.created_at < ").push_bind(micros(before));
        }
        if let Some(after) = &page.after {
            query.push(" AND r.id < ").push_bind(after.as_str());
        }
        query.push(" ORDER BY r.id DESC LIMIT ").push_bind(fetch);
        let rows = query.build().fetch_all(&self.reader).await?;
        let items = decode_all(&rows, run_from_row)?;
        Ok(Page::new(items, limit, |run| run.id.clone()))
    }

    async fn get_attempt(&self, id: &str) -> StoreResult<AttemptRecord> {
        let mut conn = self.reader.acquire().await?;
        fetch_attempt(&mut conn, id).await
    }

    async fn active_attempts(&self, run_ids: &[&str]) -> StoreResult<Vec<AttemptRecord>> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts a \
             WHERE a.status IN ('ready', 'waiting', 'leased') AND a.run_id IN ("
        ));
        let mut ids = query.separated(", ");
        for id in run_ids {
            ids.push_bind(*id);
        }
        ids.push_unseparated(")");
        let rows = query.build().fetch_all(&self.reader).await?;
        decode_all(&rows, attempt_from_row)
    }

    async fn list_attempts(
        &self,
        run_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<AttemptRecord>> {
        let (limit, fetch) = page_limits(&page);
        let after_step = match page.after.as_deref() {
            None => None,
            Some(after) => Some(after.parse::<i64>().map_err(|_| {
                StoreError::FailedPrecondition(format!("page key {after:?} is not a step number"))
            })?),
        };
        let mut tx = self.read_tx().await?;
        require_run(&mut tx, run_id).await?;
        let rows = sqlx::query(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts a \
             WHERE a.run_id = ?1 AND (?2 IS NULL OR a.step > ?2) \
             ORDER BY a.step, a.id LIMIT ?3"
        ))
        .bind(run_id)
        .bind(after_step)
        .bind(fetch)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = decode_all(&rows, attempt_from_row)?;
        Ok(Page::new(items, limit, |attempt| attempt.step.to_string()))
    }

    async fn list_events(
        &self,
        run_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>> {
        let mut conn = self.reader.acquire().await?;
        let rows = sqlx::query(
            "SELECT run_id, seq, payload FROM run_events \
             WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(run_id)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        // Events are never deleted before their run: only an empty page
        // needs to tell an unknown run from one with nothing new.
        if rows.is_empty() {
            require_run(&mut conn, run_id).await?;
        }
        decode_all(&rows, event_from_row)
    }

    async fn transition_many(
        &self,
        items: Vec<(String, Decision)>,
    ) -> StoreResult<Vec<StoreResult<TransitionOutcome>>> {
        self.write_transitions(items).await
    }

    async fn transition(&self, run_id: &str, decide: Decision) -> StoreResult<TransitionOutcome> {
        self.write_transition(run_id, decide).await
    }

    async fn claim(&self, policy: &dyn ClaimPolicy, decide: &ClaimFn) -> StoreResult<Claimed> {
        self.write_claim(policy, decide).await
    }

    async fn due_attempts(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<DueAttempt>> {
        // Oldest first = the one that became due earliest: the earlier of
        // its lease expiry and its deadline.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.run_id, a.id FROM attempts a \
             WHERE a.status = 'leased' AND (a.lease_expires_at <= ?1 OR a.deadline <= ?1) \
             ORDER BY CASE WHEN a.deadline IS NULL OR a.lease_expires_at <= a.deadline \
                      THEN a.lease_expires_at ELSE a.deadline END, a.id \
             LIMIT ?2",
        )
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(DueAttempt::from).collect())
    }

    async fn list_dead_letters(
        &self,
        namespace: &str,
        queue: Option<&str>,
        page: PageQuery,
    ) -> StoreResult<Page<AttemptRecord>> {
        let (limit, fetch) = page_limits(&page);
        // Two statements rather than `(?1 IS NULL OR a.queue = ?1)`, so each
        // can use its own partial index.
        let of_namespace =
            "EXISTS (SELECT 1 FROM runs r WHERE r.id = a.run_id AND r.namespace = ?)";
        let rows = match queue {
            Some(queue) => {
                sqlx::query(&format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM attempts a \
                     WHERE a.dead_lettered = 1 AND a.queue = ? AND (? IS NULL OR a.id < ?) \
                       AND {of_namespace} ORDER BY a.id DESC LIMIT ?"
                ))
                .bind(queue)
                .bind(&page.after)
                .bind(&page.after)
                .bind(namespace)
                .bind(fetch)
                .fetch_all(&self.reader)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM attempts a \
                     WHERE a.dead_lettered = 1 AND (? IS NULL OR a.id < ?) \
                       AND {of_namespace} ORDER BY a.id DESC LIMIT ?"
                ))
                .bind(&page.after)
                .bind(&page.after)
                .bind(namespace)
                .bind(fetch)
                .fetch_all(&self.reader)
                .await?
            }
        };
        let items = decode_all(&rows, attempt_from_row)?;
        Ok(Page::new(items, limit, |attempt| attempt.id.clone()))
    }

    async fn next_ready_at(
        &self,
        queues: &[String],
        after: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let mut earliest: Option<i64> = None;
        for queue in queues {
            let (next,): (Option<i64>,) = sqlx::query_as(NEXT_READY_AT)
                .bind(queue)
                .bind(micros(after))
                .bind(crate::store::runs::NEXT_READY_PRIORITIES)
                .fetch_one(&self.reader)
                .await?;
            if let Some(next) = next {
                earliest = Some(earliest.map_or(next, |known: i64| known.min(next)));
            }
        }
        earliest.map(from_micros).transpose()
    }
}

/// `next_ready_at` of one queue: the ready index is ordered by priority
/// first, so a plain `min(available_at)` would read every ready attempt of
/// the queue; instead walk its distinct priorities (each a seek) and take
/// the first due time after `?2` of each (a seek too).
const NEXT_READY_AT: &str = "WITH RECURSIVE levels(priority, n) AS ( \
     SELECT (SELECT priority FROM attempts WHERE status = 'ready' AND queue = ?1 \
             ORDER BY priority DESC LIMIT 1), 1 \
     UNION ALL \
     SELECT (SELECT a.priority FROM attempts a WHERE a.status = 'ready' AND a.queue = ?1 \
             AND a.priority < l.priority ORDER BY a.priority DESC LIMIT 1), l.n + 1 \
     FROM levels l WHERE l.priority IS NOT NULL AND l.n < ?3) \
     SELECT min((SELECT a.available_at FROM attempts a WHERE a.status = 'ready' \
             AND a.queue = ?1 AND a.priority = l.priority AND a.available_at > ?2 \
             ORDER BY a.available_at LIMIT 1)) \
     FROM levels l WHERE l.priority IS NOT NULL";
