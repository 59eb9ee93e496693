//! The writes of the PostgreSQL run store: any number of accepted plans
//! in one statement ([`APPLY_WRITES`]: data-modifying CTEs over `UNNEST`ed
//! column arrays), so a plan of any size costs one round trip.

use std::collections::HashSet;

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};

use super::database_error;
use crate::store::codec::{
    PlainColumns, attempt_as_stored, error_columns, outside_run, run_as_stored, run_updated,
};
use crate::store::{AttemptRecord, EventRecord, Plan, RunRecord, StoreError, StoreResult};

/// Every write of one or more plans in one statement: new attempts and
/// events, attempt updates (`$30`..`$47`), run updates (`$48`..`$62`). Each
/// part works on column arrays, so a plan costs one round trip whatever its
/// size, and empty arrays make a part a no-op. The counts let the caller
/// check that every attempt update matched an attempt of the named run; the
/// update joins on the primary key alone (a generic plan joining on the run
/// too may walk the run's index, every attempt of a long run), and a count
/// short of the plan rolls the whole statement back.
const APPLY_WRITES: &str = concat!(
    "WITH ",
    insert_attempts_and_events!(),
    ", attempt_updates AS (\
     UPDATE attempts AS a SET status = u.status, available_at = u.available_at, \
     deadline = u.deadline, lease_owner = u.lease_owner, lease_token = u.lease_token, \
     lease_expires_at = u.lease_expires_at, lease_expiries = u.lease_expiries, \
     output = u.output, error = u.error, dead_lettered = u.dead_lettered, \
     backend_id = u.backend_id, model = u.model, input_tokens = u.input_tokens, \
     output_tokens = u.output_tokens, started_at = u.started_at, ended_at = u.ended_at \
     FROM UNNEST($30::text[], $31::text[], $32::text[], $33::timestamptz[], \
     $34::timestamptz[], $35::text[], $36::text[], $37::timestamptz[], $38::int4[], \
     $39::bytea[], $40::bytea[], $41::bool[], $42::text[], $43::text[], $44::int8[], \
     $45::int8[], $46::timestamptz[], $47::timestamptz[]) \
     AS u(id, run_id, status, available_at, deadline, lease_owner, lease_token, \
     lease_expires_at, lease_expiries, output, error, dead_lettered, backend_id, model, \
     input_tokens, output_tokens, started_at, ended_at) \
     WHERE a.id = u.id RETURNING a.run_id = u.run_id AS own), \
     run_updates AS (\
     UPDATE runs AS r SET status = u.status, output = u.output, \
     error_message = u.error_message, error_task_id = u.error_task_id, \
     error_reason = u.error_reason, steps = u.steps, input_tokens = u.input_tokens, \
     output_tokens = u.output_tokens, started_at = u.started_at, ended_at = u.ended_at, \
     updated_at = u.updated_at, last_seq = u.last_seq, executions = u.executions, \
     heads = u.heads \
     FROM UNNEST($48::text[], $49::text[], $50::bytea[], $51::bytea[], $52::text[], \
     $53::text[], $54::int4[], $55::int8[], $56::int8[], $57::timestamptz[], \
     $58::timestamptz[], $59::timestamptz[], $60::int8[], $61::int4[], $62::text[]) \
     AS u(id, status, output, error_message, error_task_id, error_reason, steps, \
     input_tokens, output_tokens, started_at, ended_at, updated_at, last_seq, executions, \
     heads) \
     WHERE r.id = u.id RETURNING 1) \
     SELECT (SELECT count(*) FROM attempt_updates WHERE own) AS attempts_updated, \
     (SELECT count(*) FROM run_updates) AS runs_updated"
);

/// The writes of one or more accepted plans, gathered so they reach the
/// database as one statement. Records are as stored (timestamps truncated).
#[derive(Default)]
pub(super) struct Writes {
    /// Mutable columns of existing attempts; `run_id` names the run the
    /// attempt must belong to.
    pub(super) attempt_updates: Vec<AttemptRecord>,
    new_attempts: Vec<AttemptRecord>,
    events: Vec<EventRecord>,
    /// Mutable columns and `last_seq` of locked runs.
    runs: Vec<RunRecord>,
}

impl Writes {
    fn is_empty(&self) -> bool {
        self.attempt_updates.is_empty()
            && self.new_attempts.is_empty()
            && self.events.is_empty()
            && self.runs.is_empty()
    }

    /// Adds an accepted plan for `current`, the run as read under its lock
    /// in this transaction. Returns the run as it will be stored and the
    /// events the plan writes.
    pub(super) fn stage(
        &mut self,
        current: &RunRecord,
        plan: Plan,
    ) -> StoreResult<(RunRecord, Vec<EventRecord>)> {
        let Plan {
            run,
            attempt_updates,
            new_attempts,
            events,
            ..
        } = plan;
        if let Some(update) = &run
            && update.id != current.id
        {
            return Err(outside_run(
                &current.id,
                format!("updates run {:?}", update.id),
            ));
        }
        if let Some(stray) = attempt_updates.iter().find(|a| a.run_id != current.id) {
            return Err(outside_run(
                &current.id,
                format!("updates attempt {:?} of run {:?}", stray.id, stray.run_id),
            ));
        }
        if let Some(stray) = new_attempts.iter().find(|a| a.run_id != current.id) {
            return Err(outside_run(
                &current.id,
                format!("creates attempt {:?} of run {:?}", stray.id, stray.run_id),
            ));
        }
        let events: Vec<EventRecord> = (current.last_seq + 1..)
            .zip(events)
            .map(|(seq, payload)| EventRecord {
                run_id: current.id.clone(),
                seq,
                payload,
            })
            .collect();
        let last_seq = events.last().map_or(current.last_seq, |event| event.seq);
        let wrote_run = run.is_some() || !events.is_empty();
        let stored = match run {
            Some(update) => run_updated(current, &run_as_stored(update), last_seq),
            None => RunRecord {
                last_seq,
                ..current.clone()
            },
        };
        if wrote_run {
            self.runs.push(stored.clone());
        }
        self.attempt_updates
            .extend(attempt_updates.into_iter().map(attempt_as_stored));
        self.new_attempts
            .extend(new_attempts.into_iter().map(attempt_as_stored));
        self.events.extend(events.iter().cloned());
        Ok((stored, events))
    }

    /// Writes everything in one statement. The caller's transaction rolls
    /// back on any error.
    pub(super) async fn apply(&self, conn: &mut PgConnection) -> StoreResult<()> {
        if self.is_empty() {
            return Ok(());
        }
        let mut updated_ids = HashSet::with_capacity(self.attempt_updates.len());
        if let Some(twice) = self
            .attempt_updates
            .iter()
            .find(|a| !updated_ids.insert(a.id.as_str()))
        {
            return Err(outside_run(
                &twice.run_id,
                format!("updates attempt {:?} twice", twice.id),
            ));
        }

        let updates = &self.attempt_updates;
        let news = &self.new_attempts;
        let events = &self.events;
        let runs = &self.runs;
        let run_errors: Vec<[Option<&str>; 3]> = runs
            .iter()
            .map(|r| error_columns(r.error.as_ref()))
            .collect();
        let run_heads = heads_column(runs)?;
        let row = bind_inserts(sqlx::query(APPLY_WRITES), news, events)
            // attempt updates
            .bind(col(updates, |a| a.id.as_str()))
            .bind(col(updates, |a| a.run_id.as_str()))
            .bind(col(updates, |a| a.status.as_str()))
            .bind(col(updates, |a| a.available_at))
            .bind(col(updates, |a| a.deadline))
            .bind(col(updates, |a| a.lease_owner.as_deref()))
            .bind(col(updates, |a| a.lease_token.as_deref()))
            .bind(col(updates, |a| a.lease_expires_at))
            .bind(col(updates, |a| a.lease_expiries))
            .bind(col(updates, |a| a.output.as_deref()))
            .bind(col(updates, |a| a.error.as_deref().map(str::as_bytes)))
            .bind(col(updates, |a| a.dead_lettered))
            .bind(col(updates, |a| a.backend_id.as_deref()))
            .bind(col(updates, |a| a.model.as_deref()))
            .bind(col(updates, |a| a.input_tokens))
            .bind(col(updates, |a| a.output_tokens))
            .bind(col(updates, |a| a.started_at))
            .bind(col(updates, |a| a.ended_at))
            // runs
            .bind(col(runs, |r| r.id.as_str()))
            .bind(col(runs, |r| r.status.as_str()))
            .bind(col(runs, |r| r.output.as_deref()))
            .bind(col(&run_errors, |e| e[0].map(str::as_bytes)))
            .bind(col(&run_errors, |e| e[1]))
            .bind(col(&run_errors, |e| e[2]))
            .bind(col(runs, |r| r.steps))
            .bind(col(runs, |r| r.input_tokens))
            .bind(col(runs, |r| r.output_tokens))
            .bind(col(runs, |r| r.started_at))
            .bind(col(runs, |r| r.ended_at))
            .bind(col(runs, |r| r.updated_at))
            .bind(col(runs, |r| r.last_seq))
            .bind(col(runs, |r| r.executions))
            .bind(&run_heads)
            .fetch_one(&mut *conn)
            .await
            .map_err(|err| write_error(err, news))?;
        let attempts_updated = row.int("attempts_updated")?;
        let runs_updated = row.int("runs_updated")?;
        if usize::try_from(attempts_updated).ok() != Some(updates.len()) {
            return Err(StoreError::Corrupt(format!(
                "a plan updates attempts that do not exist or belong to another run (of {:?})",
                updates.iter().map(|a| a.id.as_str()).collect::<Vec<_>>()
            )));
        }
        if usize::try_from(runs_updated).ok() != Some(runs.len()) {
            return Err(StoreError::Corrupt(format!(
                "a plan updates runs that do not exist (of {:?})",
                runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>()
            )));
        }
        Ok(())
    }
}

/// Names the record behind a unique violation of a write statement.
pub(super) fn write_error(err: sqlx::Error, new_attempts: &[AttemptRecord]) -> StoreError {
    let Some(db) = database_error(&err).filter(|db| db.is_unique_violation()) else {
        return err.into();
    };
    match db.constraint() {
        Some("attempts_pkey") => StoreError::AlreadyExists {
            resource: "attempt",
            id: new_attempts
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        },
        // Sequence numbers come from the locked run's last_seq.
        Some("run_events_pkey") => StoreError::Corrupt(format!(
            "event sequence numbers of a run are taken although last_seq is behind: {}",
            db.message()
        )),
        _ => err.into(),
    }
}

/// Binds the attempt and event inserts of [`insert_attempts_and_events`].
pub(super) fn bind_inserts<'q>(
    query: Query<'q, Postgres, PgArguments>,
    news: &'q [AttemptRecord],
    events: &'q [EventRecord],
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(col(news, |a| a.id.as_str()))
        .bind(col(news, |a| a.run_id.as_str()))
        .bind(col(news, |a| a.task_id.as_str()))
        .bind(col(news, |a| a.attempt))
        .bind(col(news, |a| a.step))
        .bind(col(news, |a| a.status.as_str()))
        .bind(col(news, |a| a.queue.as_str()))
        .bind(col(news, |a| a.priority))
        .bind(col(news, |a| a.available_at))
        .bind(col(news, |a| a.deadline))
        .bind(col(news, |a| a.lease_owner.as_deref()))
        .bind(col(news, |a| a.lease_token.as_deref()))
        .bind(col(news, |a| a.lease_expires_at))
        .bind(col(news, |a| a.lease_expiries))
        .bind(col(news, |a| a.input.as_slice()))
        .bind(col(news, |a| a.prompt.as_deref().map(str::as_bytes)))
        .bind(col(news, |a| a.output.as_deref()))
        .bind(col(news, |a| a.error.as_deref().map(str::as_bytes)))
        .bind(col(news, |a| a.dead_lettered))
        .bind(col(news, |a| a.backend_id.as_deref()))
        .bind(col(news, |a| a.model.as_deref()))
        .bind(col(news, |a| a.input_tokens))
        .bind(col(news, |a| a.output_tokens))
        .bind(col(news, |a| a.created_at))
        .bind(col(news, |a| a.started_at))
        .bind(col(news, |a| a.ended_at))
        .bind(col(events, |e| e.run_id.as_str()))
        .bind(col(events, |e| e.seq))
        .bind(col(events, |e| e.payload.as_slice()))
}

/// The `heads` column of `runs` (JSON arrays, or NULL), as an array
/// parameter.
pub(super) fn heads_column(runs: &[RunRecord]) -> StoreResult<Vec<Option<String>>> {
    runs.iter()
        .map(|run| {
            run.heads
                .as_ref()
                .map(|heads| {
                    serde_json::to_string(heads)
                        .map_err(|e| StoreError::Corrupt(format!("encode run heads: {e}")))
                })
                .transpose()
        })
        .collect()
}

/// One column of `items`, as an array parameter.
pub(super) fn col<'a, T, V>(items: &'a [T], value: impl Fn(&'a T) -> V) -> Vec<V> {
    items.iter().map(value).collect()
}
