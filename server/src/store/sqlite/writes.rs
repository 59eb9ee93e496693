//! The writes of the SQLite run store: rows of runs, attempts and events,
//! and an accepted plan applied in the documented order. Every statement
//! is a round trip to the single writer's thread, so a plan's events go
//! in one INSERT.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Sqlite};

use super::{micros, to_json, unique_as_already_exists};
use crate::store::codec::{error_columns, outside_run, run_as_stored, run_updated};
use crate::store::{AttemptRecord, EventRecord, Plan, RunRecord, StoreResult};

/// Events one INSERT writes: three parameters each, well within SQLite's
/// limit of 32,766 parameters a statement.
const EVENTS_PER_INSERT: usize = 1000;

fn optional_micros(at: Option<DateTime<Utc>>) -> Option<i64> {
    at.map(micros)
}

fn heads_column(run: &RunRecord) -> StoreResult<Option<String>> {
    run.heads
        .as_ref()
        .map(|heads| to_json(heads, "run heads"))
        .transpose()
}

pub(super) async fn insert_run(conn: &mut SqliteConnection, run: &RunRecord) -> StoreResult<()> {
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
pub(super) async fn update_run(conn: &mut SqliteConnection, run: &RunRecord) -> StoreResult<()> {
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

pub(super) async fn insert_attempt(
    conn: &mut SqliteConnection,
    attempt: &AttemptRecord,
) -> StoreResult<()> {
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
pub(super) async fn update_attempt(
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
pub(super) async fn insert_events(
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
pub(super) async fn apply_plan(
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
