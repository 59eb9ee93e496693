//! The writes of the SQLite run store. Every statement is a round trip to
//! the single writer's thread, and that thread is the embedded store's
//! bottleneck; so a write transaction gathers what its plans and new runs
//! write ([`Writes`]) and writes it at the end in a few multi-row
//! statements: a batch of thirty transitions costs the statements of one.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::query_builder::Separated;
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Sqlite};

use super::{micros, to_json, unique_as_already_exists};
use crate::store::codec::{error_columns, outside_run, run_as_stored, run_updated};
use crate::store::{AttemptRecord, EventRecord, Plan, RunRecord, StoreError, StoreResult};

/// Rows one statement writes at most: an attempt binds 26 parameters, so a
/// thousand stay within SQLite's limit of 32,766 a statement.
const ROWS_PER_STATEMENT: usize = 1000;

fn optional_micros(at: Option<DateTime<Utc>>) -> Option<i64> {
    at.map(micros)
}

fn heads_column(run: &RunRecord) -> StoreResult<Option<String>> {
    run.heads
        .as_ref()
        .map(|heads| to_json(heads, "run heads"))
        .transpose()
}

/// What one write transaction writes, gathered from its plans and new runs
/// and written by [`Writes::write`] in the documented order: runs, attempt
/// updates, new attempts, events.
#[derive(Default)]
pub(super) struct Writes {
    new_runs: Vec<RunRecord>,
    updated_runs: Vec<RunRecord>,
    /// Attempt updates, each with the run whose plan made it.
    updated_attempts: Vec<(String, AttemptRecord)>,
    new_attempts: Vec<AttemptRecord>,
    events: Vec<EventRecord>,
}

impl Writes {
    /// Adds a new run with its first attempts and events; returns the run
    /// and the events as they will be stored.
    pub(super) fn new_run(
        &mut self,
        run: RunRecord,
        attempts: Vec<AttemptRecord>,
        events: Vec<Vec<u8>>,
    ) -> StoreResult<(RunRecord, Vec<EventRecord>)> {
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
        let events = self.events_after(&record.id, 0, events);
        self.new_runs.push(record.clone());
        self.new_attempts.extend(attempts);
        Ok((record, events))
    }

    /// Adds an accepted plan for `run` (as read in this transaction);
    /// returns the run and the events as they will be stored.
    pub(super) fn plan(
        &mut self,
        run: &RunRecord,
        plan: Plan,
    ) -> StoreResult<(RunRecord, Vec<EventRecord>)> {
        if let Some(update) = &plan.run
            && update.id != run.id
        {
            return Err(outside_run(&run.id, format!("updates run {:?}", update.id)));
        }
        if let Some(stray) = plan.new_attempts.iter().find(|a| a.run_id != run.id) {
            return Err(outside_run(
                &run.id,
                format!("creates attempt {:?} of run {:?}", stray.id, stray.run_id),
            ));
        }
        let last_seq = run.last_seq + plan.events.len() as i64;
        let stored = match plan.run {
            Some(update) => run_updated(run, &run_as_stored(update), last_seq),
            None => RunRecord {
                last_seq,
                ..run.clone()
            },
        };
        if stored != *run {
            self.updated_runs.push(stored.clone());
        }
        self.updated_attempts.extend(
            plan.attempt_updates
                .into_iter()
                .map(|attempt| (run.id.clone(), attempt)),
        );
        self.new_attempts.extend(plan.new_attempts);
        let events = self.events_after(&run.id, run.last_seq, plan.events);
        Ok((stored, events))
    }

    /// Adds updates of attempts of `run_id` (a claim's leases).
    pub(super) fn update_attempts(
        &mut self,
        run_id: &str,
        attempts: impl IntoIterator<Item = AttemptRecord>,
    ) {
        self.updated_attempts
            .extend(attempts.into_iter().map(|a| (run_id.to_string(), a)));
    }

    /// `payloads` as the events of `run_id` after `last_seq`.
    fn events_after(
        &mut self,
        run_id: &str,
        last_seq: i64,
        payloads: Vec<Vec<u8>>,
    ) -> Vec<EventRecord> {
        let events: Vec<EventRecord> = (last_seq + 1..)
            .zip(payloads)
            .map(|(seq, payload)| EventRecord {
                run_id: run_id.to_string(),
                seq,
                payload,
            })
            .collect();
        self.events.extend(events.iter().cloned());
        events
    }

    /// Writes everything gathered. A new run whose id is taken already is
    /// not written, nor are its attempts and events: returns those ids.
    pub(super) async fn write(
        mut self,
        conn: &mut SqliteConnection,
    ) -> StoreResult<HashSet<String>> {
        let taken = insert_runs(conn, &self.new_runs).await?;
        if !taken.is_empty() {
            self.new_attempts
                .retain(|attempt| !taken.contains(&attempt.run_id));
            self.events.retain(|event| !taken.contains(&event.run_id));
        }
        update_runs(conn, &self.updated_runs).await?;
        update_attempts(conn, self.updated_attempts).await?;
        insert_attempts(conn, &self.new_attempts).await?;
        insert_events(conn, &self.events).await?;
        Ok(taken)
    }
}

/// The columns of an attempt that change after its insert, in the order
/// [`bind_attempt_state`] binds them.
const ATTEMPT_STATE: &str = "status, available_at, deadline, lease_owner, lease_token, \
     lease_expires_at, lease_expiries, output, error, dead_lettered, backend_id, model, \
     input_tokens, output_tokens, started_at, ended_at";

/// Binds [`ATTEMPT_STATE`] of `attempt`: inserts and updates write the same
/// columns the same way.
fn bind_attempt_state<'args>(
    row: &mut Separated<'_, 'args, Sqlite, &'static str>,
    attempt: &'args AttemptRecord,
) {
    row.push_bind(attempt.status.as_str())
        .push_bind(micros(attempt.available_at))
        .push_bind(optional_micros(attempt.deadline))
        .push_bind(&attempt.lease_owner)
        .push_bind(&attempt.lease_token)
        .push_bind(optional_micros(attempt.lease_expires_at))
        .push_bind(attempt.lease_expiries)
        .push_bind(&attempt.output)
        .push_bind(&attempt.error)
        .push_bind(attempt.dead_lettered)
        .push_bind(&attempt.backend_id)
        .push_bind(&attempt.model)
        .push_bind(attempt.input_tokens)
        .push_bind(attempt.output_tokens)
        .push_bind(optional_micros(attempt.started_at))
        .push_bind(optional_micros(attempt.ended_at));
}

/// Inserts `runs`, but none whose id is taken; returns those ids.
async fn insert_runs(
    conn: &mut SqliteConnection,
    runs: &[RunRecord],
) -> StoreResult<HashSet<String>> {
    let mut taken = HashSet::new();
    for chunk in runs.chunks(ROWS_PER_STATEMENT) {
        let heads = chunk
            .iter()
            .map(heads_column)
            .collect::<StoreResult<Vec<_>>>()?;
        let labels = chunk
            .iter()
            .map(|run| to_json(&run.labels, "run labels"))
            .collect::<StoreResult<Vec<_>>>()?;
        let rows = chunk.iter().zip(heads).zip(labels);
        let inserted = QueryBuilder::<Sqlite>::new(
            "INSERT INTO runs (id, namespace, chain_id, chain_version, status, input, output, \
             error_message, error_task_id, error_reason, labels, priority, tenant, request_id, \
             steps, executions, heads, input_tokens, output_tokens, last_seq, created_at, \
             started_at, ended_at, updated_at, traceparent) ",
        )
        .push_values(rows, |mut row, ((run, heads), labels)| {
            let [error_message, error_task_id, error_reason] = error_columns(run.error.as_ref());
            row.push_bind(&run.id)
                .push_bind(&run.namespace)
                .push_bind(&run.chain_id)
                .push_bind(run.chain_version)
                .push_bind(run.status.as_str())
                .push_bind(&run.input)
                .push_bind(&run.output)
                .push_bind(error_message.map(str::to_string))
                .push_bind(error_task_id.map(str::to_string))
                .push_bind(error_reason.map(str::to_string))
                .push_bind(labels)
                .push_bind(run.priority)
                .push_bind(&run.tenant)
                .push_bind(&run.request_id)
                .push_bind(run.steps)
                .push_bind(run.executions)
                .push_bind(heads)
                .push_bind(run.input_tokens)
                .push_bind(run.output_tokens)
                .push_bind(run.last_seq)
                .push_bind(micros(run.created_at))
                .push_bind(optional_micros(run.started_at))
                .push_bind(optional_micros(run.ended_at))
                .push_bind(micros(run.updated_at))
                .push_bind(&run.traceparent);
        })
        .push(" ON CONFLICT (id) DO NOTHING RETURNING id")
        .build_query_scalar::<String>()
        .fetch_all(&mut *conn)
        .await?;
        let inserted: HashSet<String> = inserted.into_iter().collect();
        taken.extend(
            chunk
                .iter()
                .filter(|run| !inserted.contains(&run.id))
                .map(|run| run.id.clone()),
        );
    }
    Ok(taken)
}

/// Writes the mutable columns of runs and their `last_seq` (the store's
/// own, as [`Writes::plan`] counts it).
async fn update_runs(conn: &mut SqliteConnection, runs: &[RunRecord]) -> StoreResult<()> {
    for chunk in runs.chunks(ROWS_PER_STATEMENT) {
        let heads = chunk
            .iter()
            .map(heads_column)
            .collect::<StoreResult<Vec<_>>>()?;
        let mut query = QueryBuilder::<Sqlite>::new(
            "WITH v(id, status, output, error_message, error_task_id, error_reason, steps, \
             executions, heads, input_tokens, output_tokens, started_at, ended_at, updated_at, \
             last_seq) AS (",
        );
        query.push_values(chunk.iter().zip(heads), |mut row, (run, heads)| {
            let [error_message, error_task_id, error_reason] = error_columns(run.error.as_ref());
            row.push_bind(&run.id)
                .push_bind(run.status.as_str())
                .push_bind(&run.output)
                .push_bind(error_message.map(str::to_string))
                .push_bind(error_task_id.map(str::to_string))
                .push_bind(error_reason.map(str::to_string))
                .push_bind(run.steps)
                .push_bind(run.executions)
                .push_bind(heads)
                .push_bind(run.input_tokens)
                .push_bind(run.output_tokens)
                .push_bind(optional_micros(run.started_at))
                .push_bind(optional_micros(run.ended_at))
                .push_bind(micros(run.updated_at))
                .push_bind(run.last_seq);
        });
        query.push(
            ") UPDATE runs SET status = v.status, output = v.output, \
             error_message = v.error_message, error_task_id = v.error_task_id, \
             error_reason = v.error_reason, steps = v.steps, executions = v.executions, \
             heads = v.heads, input_tokens = v.input_tokens, output_tokens = v.output_tokens, \
             started_at = v.started_at, ended_at = v.ended_at, updated_at = v.updated_at, \
             last_seq = v.last_seq FROM v WHERE runs.id = v.id",
        );
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes the mutable columns of attempts, each of the run named with it;
/// input, prompt, identity and creation time stay as inserted. An attempt
/// that is not one of that run's is a kernel bug: `Corrupt`.
async fn update_attempts(
    conn: &mut SqliteConnection,
    updates: Vec<(String, AttemptRecord)>,
) -> StoreResult<()> {
    // The last update of an attempt wins, as if written one after another.
    let mut seen = HashSet::new();
    let mut updates: Vec<(String, AttemptRecord)> = updates
        .into_iter()
        .rev()
        .filter(|(_, attempt)| seen.insert(attempt.id.clone()))
        .collect();
    updates.reverse();
    let mut updated = 0;
    for chunk in updates.chunks(ROWS_PER_STATEMENT) {
        let mut query =
            QueryBuilder::<Sqlite>::new(format!("WITH v(id, run_id, {ATTEMPT_STATE}) AS ("));
        query.push_values(chunk, |mut row, (run_id, attempt)| {
            row.push_bind(&attempt.id).push_bind(run_id);
            bind_attempt_state(&mut row, attempt);
        });
        query.push(
            ") UPDATE attempts SET status = v.status, available_at = v.available_at, \
             deadline = v.deadline, lease_owner = v.lease_owner, lease_token = v.lease_token, \
             lease_expires_at = v.lease_expires_at, lease_expiries = v.lease_expiries, \
             output = v.output, error = v.error, dead_lettered = v.dead_lettered, \
             backend_id = v.backend_id, model = v.model, input_tokens = v.input_tokens, \
             output_tokens = v.output_tokens, started_at = v.started_at, ended_at = v.ended_at \
             FROM v WHERE attempts.id = v.id AND attempts.run_id = v.run_id",
        );
        updated += query.build().execute(&mut *conn).await?.rows_affected();
    }
    if updated == updates.len() as u64 {
        return Ok(());
    }
    for (run_id, attempt) in &updates {
        let sql = "SELECT 1 FROM attempts WHERE id = ? AND run_id = ?";
        let found = sqlx::query(sql)
            .bind(&attempt.id)
            .bind(run_id)
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_none() {
            return Err(outside_run(
                run_id,
                format!(
                    "updates attempt {:?}, which is not one of its attempts",
                    attempt.id
                ),
            ));
        }
    }
    Err(StoreError::Corrupt(format!(
        "{updated} of {} attempt updates were written",
        updates.len()
    )))
}

async fn insert_attempts(
    conn: &mut SqliteConnection,
    attempts: &[AttemptRecord],
) -> StoreResult<()> {
    for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
        QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO attempts (id, run_id, task_id, attempt, step, queue, priority, input, \
             prompt, created_at, {ATTEMPT_STATE}) ",
        ))
        .push_values(chunk, |mut row, attempt| {
            row.push_bind(&attempt.id)
                .push_bind(&attempt.run_id)
                .push_bind(&attempt.task_id)
                .push_bind(attempt.attempt)
                .push_bind(attempt.step)
                .push_bind(&attempt.queue)
                .push_bind(attempt.priority)
                .push_bind(&attempt.input)
                .push_bind(&attempt.prompt)
                .push_bind(micros(attempt.created_at));
            bind_attempt_state(&mut row, attempt);
        })
        .build()
        .execute(&mut *conn)
        .await
        .map_err(unique_as_already_exists("attempt", &chunk[0].id))?;
    }
    Ok(())
}

async fn insert_events(conn: &mut SqliteConnection, events: &[EventRecord]) -> StoreResult<()> {
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
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
    Ok(())
}
