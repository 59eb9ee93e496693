//! [`RunStore`] for the embedded [`SqliteStore`]: runs, task attempts and
//! run events.
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

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{QueryBuilder, Sqlite};

use super::{
    column, exists, from_json, from_micros, micros, not_found, page_limits, prior_result,
    remember_result, to_json, unique_as_already_exists,
};
use crate::store::codec::{
    error_columns, fold_claim_plan, lease_refused, outside_run, run_as_stored, run_updated,
    sort_in_claim_order,
};
use crate::store::{
    AttemptRecord, AttemptStatus, ClaimFn, ClaimPolicy, Claimed, Created, CreatedRun, Decision,
    DueAttempt, EventRecord, IdempotencyKey, NewRun, Page, PageQuery, Plan, RunFailure, RunFilter,
    RunRecord, RunSnapshot, RunStatus, RunStore, SqliteStore, StoreError, StoreResult,
    TransitionOutcome, Verdict,
};

const RUN_COLUMNS: &str = "r.id, r.chain_id, r.chain_version, r.status, r.input, r.output, \
     r.error_message, r.error_task_id, r.error_reason, r.labels, r.priority, r.tenant, \
     r.request_id, r.steps, r.executions, r.heads, r.input_tokens, r.output_tokens, r.last_seq, \
     r.created_at, r.started_at, r.ended_at, r.updated_at";
const ATTEMPT_COLUMNS: &str = "a.id, a.run_id, a.task_id, a.attempt, a.step, a.status, a.queue, \
     a.priority, a.available_at, a.deadline, a.lease_owner, a.lease_token, a.lease_expires_at, \
     a.lease_expiries, a.input, a.prompt, a.output, a.error, a.dead_lettered, a.backend_id, \
     a.model, a.input_tokens, a.output_tokens, a.created_at, a.started_at, a.ended_at";

// ---------------------------------------------------------------------------
// Encoding

fn optional_micros(at: Option<DateTime<Utc>>) -> Option<i64> {
    at.map(micros)
}

fn optional_time(value: Option<i64>) -> StoreResult<Option<DateTime<Utc>>> {
    value.map(from_micros).transpose()
}

/// The run statuses whose ready attempts may be claimed, as a JSON array
/// for `json_each`.
fn dispatchable_statuses() -> StoreResult<String> {
    let statuses: Vec<&str> = RunStatus::ALL
        .into_iter()
        .filter(|status| status.is_dispatchable())
        .map(RunStatus::as_str)
        .collect();
    to_json(&statuses, "dispatchable run statuses")
}

/// The count a `SELECT count(*)` for `key` returns.
async fn count_leased(conn: &mut SqliteConnection, sql: &str, key: &str) -> StoreResult<u32> {
    let (leased,): (i64,) = sqlx::query_as(sql).bind(key).fetch_one(&mut *conn).await?;
    Ok(leased.max(0) as u32)
}

// ---------------------------------------------------------------------------
// Row decoding

fn run_from_row(row: &SqliteRow) -> StoreResult<RunRecord> {
    let id: String = column(row, "id")?;
    let status: String = column(row, "status")?;
    let status = RunStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("run {id:?} has unknown status {status:?}")))?;
    let error = match (
        column(row, "error_message")?,
        column(row, "error_task_id")?,
        column(row, "error_reason")?,
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
        chain_id: column(row, "chain_id")?,
        chain_version: column(row, "chain_version")?,
        status,
        input: column(row, "input")?,
        output: column(row, "output")?,
        error,
        labels: from_json(column(row, "labels")?, "run labels")?,
        priority: column(row, "priority")?,
        tenant: column(row, "tenant")?,
        request_id: column(row, "request_id")?,
        steps: column(row, "steps")?,
        executions: column(row, "executions")?,
        heads: column::<Option<String>>(row, "heads")?
            .map(|heads| from_json(&heads, "run heads"))
            .transpose()?,
        input_tokens: column(row, "input_tokens")?,
        output_tokens: column(row, "output_tokens")?,
        last_seq: column(row, "last_seq")?,
        created_at: from_micros(column(row, "created_at")?)?,
        started_at: optional_time(column(row, "started_at")?)?,
        ended_at: optional_time(column(row, "ended_at")?)?,
        updated_at: from_micros(column(row, "updated_at")?)?,
        id,
    })
}

fn attempt_from_row(row: &SqliteRow) -> StoreResult<AttemptRecord> {
    let id: String = column(row, "id")?;
    let status: String = column(row, "status")?;
    let status = AttemptStatus::parse(&status).ok_or_else(|| {
        StoreError::Corrupt(format!("attempt {id:?} has unknown status {status:?}"))
    })?;
    Ok(AttemptRecord {
        run_id: column(row, "run_id")?,
        task_id: column(row, "task_id")?,
        attempt: column(row, "attempt")?,
        step: column(row, "step")?,
        status,
        queue: column(row, "queue")?,
        priority: column(row, "priority")?,
        available_at: from_micros(column(row, "available_at")?)?,
        deadline: optional_time(column(row, "deadline")?)?,
        lease_owner: column(row, "lease_owner")?,
        lease_token: column(row, "lease_token")?,
        lease_expires_at: optional_time(column(row, "lease_expires_at")?)?,
        lease_expiries: column(row, "lease_expiries")?,
        input: column(row, "input")?,
        prompt: column(row, "prompt")?,
        output: column(row, "output")?,
        error: column(row, "error")?,
        dead_lettered: column(row, "dead_lettered")?,
        backend_id: column(row, "backend_id")?,
        model: column(row, "model")?,
        input_tokens: column(row, "input_tokens")?,
        output_tokens: column(row, "output_tokens")?,
        created_at: from_micros(column(row, "created_at")?)?,
        started_at: optional_time(column(row, "started_at")?)?,
        ended_at: optional_time(column(row, "ended_at")?)?,
        id,
    })
}

fn event_from_row(row: &SqliteRow) -> StoreResult<EventRecord> {
    Ok(EventRecord {
        run_id: column(row, "run_id")?,
        seq: column(row, "seq")?,
        payload: column(row, "payload")?,
    })
}

fn decode_all<T>(
    rows: &[SqliteRow],
    decode: impl Fn(&SqliteRow) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    rows.iter().map(decode).collect()
}

// ---------------------------------------------------------------------------
// Reads shared by several methods

async fn fetch_run(conn: &mut SqliteConnection, id: &str) -> StoreResult<RunRecord> {
    let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.id = ?"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => run_from_row(&row),
        None => Err(not_found("run", id)),
    }
}

async fn fetch_attempt(conn: &mut SqliteConnection, id: &str) -> StoreResult<AttemptRecord> {
    let row = sqlx::query(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts a WHERE a.id = ?"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => attempt_from_row(&row),
        None => Err(not_found("attempt", id)),
    }
}

/// All attempts of a run, ordered by `(step, id)`.
async fn fetch_run_attempts(
    conn: &mut SqliteConnection,
    run_id: &str,
) -> StoreResult<Vec<AttemptRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts a WHERE a.run_id = ? ORDER BY a.step, a.id"
    ))
    .bind(run_id)
    .fetch_all(&mut *conn)
    .await?;
    decode_all(&rows, attempt_from_row)
}

/// The snapshot of `run` that `decision` needs (see [`RunSnapshot`]).
async fn fetch_snapshot(
    conn: &mut SqliteConnection,
    run: RunRecord,
    decision: &Decision,
) -> StoreResult<RunSnapshot> {
    let attempts = match decision.attempt_ids(&run) {
        None => fetch_run_attempts(conn, &run.id).await?,
        Some(ids) => {
            // By primary key only: with the run id in the filter SQLite
            // would walk the run's index, every attempt of a long run.
            let rows = sqlx::query(&format!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts a \
                 WHERE a.id IN (SELECT value FROM json_each(?)) ORDER BY a.step, a.id"
            ))
            .bind(to_json(&ids, "attempt ids")?)
            .fetch_all(&mut *conn)
            .await?;
            // A decision may name an attempt of another run: not its own.
            decode_all(&rows, attempt_from_row)?
                .into_iter()
                .filter(|attempt| attempt.run_id == run.id)
                .collect()
        }
    };
    Ok(RunSnapshot { run, attempts })
}

fn heads_column(run: &RunRecord) -> StoreResult<Option<String>> {
    run.heads
        .as_ref()
        .map(|heads| to_json(heads, "run heads"))
        .transpose()
}

async fn require_run(conn: &mut SqliteConnection, run_id: &str) -> StoreResult<()> {
    if exists(conn, "SELECT 1 FROM runs WHERE id = ?", run_id).await? {
        Ok(())
    } else {
        Err(not_found("run", run_id))
    }
}

// ---------------------------------------------------------------------------
// Writes

async fn insert_run(conn: &mut SqliteConnection, run: &RunRecord) -> StoreResult<()> {
    let [error_message, error_task_id, error_reason] = error_columns(run.error.as_ref());
    sqlx::query(
        "INSERT INTO runs (id, chain_id, chain_version, status, input, output, error_message, \
         error_task_id, error_reason, labels, priority, tenant, request_id, steps, executions, \
         heads, input_tokens, output_tokens, last_seq, created_at, started_at, ended_at, \
         updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&run.id)
    .bind(&run.chain_id)
    .bind(run.chain_version)
    .bind(run.status.as_str())
    .bind(&run.input)
    .bind(&run.output)
    .bind(error_message)
    .bind(error_task_id)
    .bind(error_reason)
    .bind(to_json(&run.labels, "run labels")?)
    .bind(run.priority)
    .bind(&run.tenant)
    .bind(&run.request_id)
    .bind(run.steps)
    .bind(run.executions)
    .bind(heads_column(run)?)
    .bind(run.input_tokens)
    .bind(run.output_tokens)
    .bind(run.last_seq)
    .bind(micros(run.created_at))
    .bind(optional_micros(run.started_at))
    .bind(optional_micros(run.ended_at))
    .bind(micros(run.updated_at))
    .execute(&mut *conn)
    .await
    .map_err(unique_as_already_exists("run", &run.id))?;
    Ok(())
}

/// Writes the mutable columns of a run and its `last_seq` (the store's own,
/// as [`apply_plan`] counts it).
async fn update_run(conn: &mut SqliteConnection, run: &RunRecord) -> StoreResult<()> {
    let [error_message, error_task_id, error_reason] = error_columns(run.error.as_ref());
    sqlx::query(
        "UPDATE runs SET status = ?, output = ?, error_message = ?, error_task_id = ?, \
         error_reason = ?, steps = ?, executions = ?, heads = ?, input_tokens = ?, \
         output_tokens = ?, started_at = ?, ended_at = ?, updated_at = ?, last_seq = ? \
         WHERE id = ?",
    )
    .bind(run.status.as_str())
    .bind(&run.output)
    .bind(error_message)
    .bind(error_task_id)
    .bind(error_reason)
    .bind(run.steps)
    .bind(run.executions)
    .bind(heads_column(run)?)
    .bind(run.input_tokens)
    .bind(run.output_tokens)
    .bind(optional_micros(run.started_at))
    .bind(optional_micros(run.ended_at))
    .bind(micros(run.updated_at))
    .bind(run.last_seq)
    .bind(&run.id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_attempt(conn: &mut SqliteConnection, attempt: &AttemptRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO attempts (id, run_id, task_id, attempt, step, status, queue, priority, \
         available_at, deadline, lease_owner, lease_token, lease_expires_at, lease_expiries, \
         input, prompt, output, error, dead_lettered, backend_id, model, input_tokens, \
         output_tokens, created_at, started_at, ended_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&attempt.id)
    .bind(&attempt.run_id)
    .bind(&attempt.task_id)
    .bind(attempt.attempt)
    .bind(attempt.step)
    .bind(attempt.status.as_str())
    .bind(&attempt.queue)
    .bind(attempt.priority)
    .bind(micros(attempt.available_at))
    .bind(optional_micros(attempt.deadline))
    .bind(&attempt.lease_owner)
    .bind(&attempt.lease_token)
    .bind(optional_micros(attempt.lease_expires_at))
    .bind(attempt.lease_expiries)
    .bind(&attempt.input)
    .bind(&attempt.prompt)
    .bind(&attempt.output)
    .bind(&attempt.error)
    .bind(attempt.dead_lettered)
    .bind(&attempt.backend_id)
    .bind(&attempt.model)
    .bind(attempt.input_tokens)
    .bind(attempt.output_tokens)
    .bind(micros(attempt.created_at))
    .bind(optional_micros(attempt.started_at))
    .bind(optional_micros(attempt.ended_at))
    .execute(&mut *conn)
    .await
    .map_err(unique_as_already_exists("attempt", &attempt.id))?;
    Ok(())
}

/// Writes the mutable columns of an attempt of `run_id`; input, prompt,
/// identity and creation time stay as inserted.
async fn update_attempt(
    conn: &mut SqliteConnection,
    run_id: &str,
    attempt: &AttemptRecord,
) -> StoreResult<()> {
    let updated = sqlx::query(
        "UPDATE attempts SET status = ?, available_at = ?, deadline = ?, lease_owner = ?, \
         lease_token = ?, lease_expires_at = ?, lease_expiries = ?, output = ?, error = ?, \
         dead_lettered = ?, backend_id = ?, model = ?, input_tokens = ?, output_tokens = ?, \
         started_at = ?, ended_at = ? WHERE id = ? AND run_id = ?",
    )
    .bind(attempt.status.as_str())
    .bind(micros(attempt.available_at))
    .bind(optional_micros(attempt.deadline))
    .bind(&attempt.lease_owner)
    .bind(&attempt.lease_token)
    .bind(optional_micros(attempt.lease_expires_at))
    .bind(attempt.lease_expiries)
    .bind(&attempt.output)
    .bind(&attempt.error)
    .bind(attempt.dead_lettered)
    .bind(&attempt.backend_id)
    .bind(&attempt.model)
    .bind(attempt.input_tokens)
    .bind(attempt.output_tokens)
    .bind(optional_micros(attempt.started_at))
    .bind(optional_micros(attempt.ended_at))
    .bind(&attempt.id)
    .bind(run_id)
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(outside_run(
            run_id,
            format!(
                "updates attempt {:?}, which is not one of its attempts",
                attempt.id
            ),
        ));
    }
    Ok(())
}

/// Inserts `payloads` as the events after `last_seq`, in one statement per
/// [`EVENTS_PER_INSERT`]: each statement is a round trip to the writer's
/// thread. The caller keeps `runs.last_seq` in step.
async fn insert_events(
    conn: &mut SqliteConnection,
    run_id: &str,
    last_seq: i64,
    payloads: Vec<Vec<u8>>,
) -> StoreResult<Vec<EventRecord>> {
    let events: Vec<EventRecord> = (last_seq + 1..)
        .zip(payloads)
        .map(|(seq, payload)| EventRecord {
            run_id: run_id.to_string(),
            seq,
            payload,
        })
        .collect();
    for chunk in events.chunks(EVENTS_PER_INSERT) {
        QueryBuilder::<Sqlite>::new("INSERT INTO run_events (run_id, seq, payload) ")
            .push_values(chunk, |mut row, event| {
                row.push_bind(&event.run_id)
                    .push_bind(event.seq)
                    .push_bind(&event.payload);
            })
            .build()
            .execute(&mut *conn)
            .await?;
    }
    Ok(events)
}

/// Applies an accepted plan to `run` (as read in this transaction) in the
/// documented order: run row, attempt updates, new attempts, events.
/// Returns the run as it is now stored and the events written.
async fn apply_plan(
    conn: &mut SqliteConnection,
    run: &RunRecord,
    plan: Plan,
) -> StoreResult<(RunRecord, Vec<EventRecord>)> {
    let last_seq = run.last_seq + plan.events.len() as i64;
    let stored = match plan.run {
        Some(update) => {
            if update.id != run.id {
                return Err(outside_run(&run.id, format!("updates run {:?}", update.id)));
            }
            let stored = run_updated(run, &run_as_stored(update), last_seq);
            update_run(conn, &stored).await?;
            stored
        }
        None => {
            if last_seq != run.last_seq {
                sqlx::query("UPDATE runs SET last_seq = ? WHERE id = ?")
                    .bind(last_seq)
                    .bind(&run.id)
                    .execute(&mut *conn)
                    .await?;
            }
            RunRecord {
                last_seq,
                ..run.clone()
            }
        }
    };
    for attempt in &plan.attempt_updates {
        update_attempt(conn, &run.id, attempt).await?;
    }
    for attempt in &plan.new_attempts {
        if attempt.run_id != run.id {
            return Err(outside_run(
                &run.id,
                format!(
                    "creates attempt {:?} of run {:?}",
                    attempt.id, attempt.run_id
                ),
            ));
        }
        insert_attempt(conn, attempt).await?;
    }
    let events = insert_events(conn, &run.id, run.last_seq, plan.events).await?;
    Ok((stored, events))
}

// ---------------------------------------------------------------------------

/// One run of a `create_runs` batch, inside its transaction. An error
/// other than a database error (`Database`, `Unavailable`, `StorageFull`)
/// has written nothing.
async fn create_one_run(conn: &mut SqliteConnection, new: NewRun) -> StoreResult<CreatedRun> {
    let NewRun {
        run,
        attempts,
        events,
        idempotency,
        chain_check,
    } = new;
    if let Some(prior) = prior_result(conn, idempotency.as_ref()).await? {
        let record = fetch_run(conn, &prior.resource_key).await?;
        let created = Created {
            record,
            replayed: true,
        };
        return Ok((created, Vec::new()));
    }
    if let Some(check) = &chain_check {
        let head: Option<(bool, i64)> =
            sqlx::query_as("SELECT deleted, latest_version FROM chain_heads WHERE id = ?")
                .bind(&check.chain_id)
                .fetch_optional(&mut *conn)
                .await?;
        let current = match head {
            Some((false, latest)) => check.latest_version.is_none_or(|v| v == latest),
            _ => false,
        };
        if !current {
            return Err(StoreError::ChainChanged {
                chain_id: check.chain_id.clone(),
            });
        }
    }
    // A run id taken already fails the insert (unique key): AlreadyExists.
    if let Some(stray) = attempts.iter().find(|attempt| attempt.run_id != run.id) {
        return Err(outside_run(
            &run.id,
            format!("creates attempt {:?} of run {:?}", stray.id, stray.run_id),
        ));
    }
    let record = RunRecord {
        last_seq: events.len() as i64,
        ..run_as_stored(run)
    };
    insert_run(conn, &record).await?;
    for attempt in &attempts {
        insert_attempt(conn, attempt).await?;
    }
    let events = insert_events(conn, &record.id, 0, events).await?;
    remember_result(conn, idempotency.as_ref(), &record.id, None).await?;
    let created = Created {
        record,
        replayed: false,
    };
    Ok((created, events))
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create_runs(&self, runs: Vec<NewRun>) -> StoreResult<Vec<StoreResult<CreatedRun>>> {
        crate::store::runs::check_distinct_keys(&runs)?;
        let mut tx = self.write_tx().await?;
        let mut results = Vec::with_capacity(runs.len());
        for new in runs {
            results.push(match create_one_run(&mut tx, new).await {
                Err(error @ StoreError::Database(_)) => return Err(error),
                Err(error) if error.is_fault() => return Err(error),
                result => result,
            });
        }
        tx.commit().await?;
        Ok(results)
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
            QueryBuilder::<Sqlite>::new(format!("SELECT {RUN_COLUMNS} FROM runs r WHERE 1 = 1"));
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
        let mut tx = self.read_tx().await?;
        require_run(&mut tx, run_id).await?;
        let rows = sqlx::query(
            "SELECT run_id, seq, payload FROM run_events \
             WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(run_id)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        decode_all(&rows, event_from_row)
    }

    async fn transition_many(
        &self,
        items: Vec<(String, Decision)>,
    ) -> StoreResult<Vec<StoreResult<TransitionOutcome>>> {
        crate::store::runs::check_distinct_runs(&items)?;
        // One write transaction: the single writer is every run's lock.
        let mut tx = self.write_tx().await?;
        let mut results = Vec::with_capacity(items.len());
        for (run_id, decide) in &items {
            let run = match fetch_run(&mut tx, run_id).await {
                Ok(run) => run,
                Err(error @ StoreError::NotFound { .. }) => {
                    results.push(Err(error));
                    continue;
                }
                Err(other) => return Err(other),
            };
            let snapshot = fetch_snapshot(&mut tx, run, decide).await?;
            let plan = decide.decide(&snapshot);
            if let Verdict::Reject(rejection) = &plan.verdict {
                results.push(Ok(TransitionOutcome::Rejected(rejection.clone())));
                continue;
            }
            let (run, events) = apply_plan(&mut tx, &snapshot.run, plan).await?;
            results.push(Ok(TransitionOutcome::Applied { run, events }));
        }
        tx.commit().await?;
        Ok(results)
    }

    async fn transition(&self, run_id: &str, decide: Decision) -> StoreResult<TransitionOutcome> {
        // The writer lock taken by BEGIN IMMEDIATE is the run lock: no other
        // write can interleave between the snapshot and the plan's writes.
        let mut tx = self.write_tx().await?;
        let run = fetch_run(&mut tx, run_id).await?;
        let key = decide.idempotency.as_ref();
        if prior_result(&mut tx, key).await?.is_some() {
            return Ok(TransitionOutcome::Replayed(run));
        }
        let snapshot = fetch_snapshot(&mut tx, run, &decide).await?;
        let plan = decide.decide(&snapshot);
        if let Verdict::Reject(rejection) = &plan.verdict {
            // Dropping the transaction rolls it back; nothing was written.
            return Ok(TransitionOutcome::Rejected(rejection.clone()));
        }
        let (run, events) = apply_plan(&mut tx, &snapshot.run, plan).await?;
        remember_result(&mut tx, key, run_id, None).await?;
        tx.commit().await?;
        Ok(TransitionOutcome::Applied { run, events })
    }

    async fn claim(&self, policy: &dyn ClaimPolicy, decide: &ClaimFn) -> StoreResult<Claimed> {
        let limit = policy.limit();
        if policy.queues().is_empty() || limit == 0 {
            return Ok(Claimed {
                attempts: Vec::new(),
                events: Vec::new(),
            });
        }
        let now = micros(policy.now());
        let dispatchable = dispatchable_statuses()?;
        let mut tx = self.write_tx().await?;
        // Under the single writer no other transaction holds these rows, so
        // there is nothing to skip, and counting what is leased is exact: no
        // other claim runs meanwhile.
        let mut leased_per_queue: HashMap<String, u32> = HashMap::new();
        for queue in policy.queues().iter().filter(|q| policy.queue_capped(q)) {
            let leased = count_leased(
                &mut tx,
                "SELECT count(*) FROM attempts WHERE status = 'leased' AND queue = ?",
                queue,
            )
            .await?;
            leased_per_queue.insert(queue.clone(), leased);
        }
        let quotas: HashMap<String, u32> = policy.quotas(&leased_per_queue).into_iter().collect();
        // One index scan per queue, each already in claim order and cut at
        // the limit, then merged: a single query over several queues would
        // sort every ready attempt they hold.
        let mut candidates: Vec<(AttemptRecord, String)> = Vec::new();
        for queue in quotas.keys() {
            let rows = sqlx::query(&format!(
                "SELECT {ATTEMPT_COLUMNS}, r.tenant AS run_tenant \
                 FROM attempts a CROSS JOIN runs r ON r.id = a.run_id \
                 WHERE a.status = 'ready' AND a.queue = ?1 AND a.available_at <= ?2 \
                   AND r.status IN (SELECT value FROM json_each(?3)) \
                 ORDER BY a.priority DESC, a.available_at, a.id LIMIT ?4"
            ))
            .bind(queue)
            .bind(now)
            .bind(&dispatchable)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
            for row in &rows {
                candidates.push((attempt_from_row(row)?, column(row, "run_tenant")?));
            }
        }
        sort_in_claim_order(&mut candidates, |(attempt, _)| attempt);
        let mut tenants: Vec<&str> = candidates
            .iter()
            .map(|(_, tenant)| tenant.as_str())
            .filter(|tenant| policy.tenant_capped(tenant))
            .collect();
        tenants.sort_unstable();
        tenants.dedup();
        let mut leased_per_tenant: HashMap<String, u32> = HashMap::new();
        for tenant in tenants {
            let leased = count_leased(
                &mut tx,
                "SELECT count(*) FROM attempts a JOIN runs r ON r.id = a.run_id \
                 WHERE a.status = 'leased' AND r.tenant = ?",
                tenant,
            )
            .await?;
            leased_per_tenant.insert(tenant.to_string(), leased);
        }
        let order: Vec<(&str, &str)> = candidates
            .iter()
            .map(|(attempt, tenant)| (attempt.queue.as_str(), tenant.as_str()))
            .collect();
        let (kept, _) = policy.within_caps(&order, &quotas, &leased_per_tenant);

        let mut claimed_ids = Vec::with_capacity(kept.len());
        let mut leased_by_run: BTreeMap<String, Vec<AttemptRecord>> = BTreeMap::new();
        for index in kept {
            let leased = policy.lease(&candidates[index].0).map_err(lease_refused)?;
            claimed_ids.push(leased.id.clone());
            leased_by_run
                .entry(leased.run_id.clone())
                .or_default()
                .push(leased);
        }
        let mut leased_by_id: HashMap<String, AttemptRecord> = HashMap::new();
        let mut events = Vec::new();
        for (run_id, leased) in leased_by_run {
            let run = fetch_run(&mut tx, &run_id).await?;
            let mut plan = decide(&run, &leased);
            let leased = fold_claim_plan(&run, leased, &mut plan)?;
            for attempt in leased.values() {
                update_attempt(&mut tx, &run.id, attempt).await?;
            }
            events.extend(apply_plan(&mut tx, &run, plan).await?.1);
            leased_by_id.extend(leased);
        }
        tx.commit().await?;
        let attempts = claimed_ids
            .iter()
            .filter_map(|id| leased_by_id.remove(id))
            .collect();
        Ok(Claimed { attempts, events })
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
        Ok(rows
            .into_iter()
            .map(|(run_id, attempt_id)| DueAttempt { run_id, attempt_id })
            .collect())
    }

    async fn list_dead_letters(
        &self,
        queue: Option<&str>,
        page: PageQuery,
    ) -> StoreResult<Page<AttemptRecord>> {
        let (limit, fetch) = page_limits(&page);
        // Two statements rather than `(?1 IS NULL OR a.queue = ?1)`, so each
        // can use its own partial index.
        let rows = match queue {
            Some(queue) => {
                sqlx::query(&format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM attempts a \
                     WHERE a.dead_lettered = 1 AND a.queue = ?1 AND (?2 IS NULL OR a.id < ?2) \
                     ORDER BY a.id DESC LIMIT ?3"
                ))
                .bind(queue)
                .bind(&page.after)
                .bind(fetch)
                .fetch_all(&self.reader)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM attempts a \
                     WHERE a.dead_lettered = 1 AND (?1 IS NULL OR a.id < ?1) \
                     ORDER BY a.id DESC LIMIT ?2"
                ))
                .bind(&page.after)
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
/// Events one INSERT writes: three parameters each, well within SQLite's
/// limit of 32,766 parameters a statement.
const EVENTS_PER_INSERT: usize = 1000;

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
