//! [`RunStore`] for [`PostgresStore`]: the hot path of the runtime.
//!
//! Every method is one transaction at READ COMMITTED, with
//! `synchronous_commit` left on: these commits acknowledge starts and
//! completions to clients. Round trips are what a 2-core box runs out of
//! first (see docs/postgres.md), so a plan of any size is written by one
//! statement ([`APPLY_WRITES`]: data-modifying CTEs over `UNNEST`ed arrays),
//! and a transition costs five round trips: BEGIN, lock the run, read its
//! attempts, apply, COMMIT. A claim costs the same for a whole batch, and
//! creating a batch of runs one: [`CREATE_RUNS`] is a single statement
//! (atomic without an explicit transaction), plus a read per idempotency
//! key that turns out to be a replay.
//!
//! Locking: a transition locks its run row, then writes the run's
//! attempts. A claim locks ready attempts, skipping those another claim
//! holds (`SKIP LOCKED`), then waits for the rows of their runs, in id
//! order. The two orders would deadlock when a transition rewrites a ready
//! attempt (a cancel, say) that a claim holds while the claim waits for the
//! transition's run: Postgres would break that only after
//! `deadlock_timeout` (a second by default). So a transition takes the
//! ready attempts it rewrites with `NOWAIT` and, if a claim has one, rolls
//! back and tries again once the claim is through. Deadlocks, serialization
//! failures and such lock conflicts are retried a few times with a jittered
//! back-off, so `decide` may run more than once.
//!
//! Timestamps are truncated to microseconds (what TIMESTAMPTZ keeps) before
//! they are written, so the records built in memory from the snapshot and
//! the plan equal what a later read returns without reading them back.
//!
//! A plan that reaches outside its run — a run update for another id, an
//! update of an attempt that does not exist or belongs to another run, a new
//! attempt of another run — is a kernel bug: the transaction rolls back with
//! [`StoreError::Corrupt`]. So does a claim decision that rejects.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, QueryBuilder, Transaction};

use super::retry::retrying;
use super::{Reservation, database_error, into_page, not_found, page_limits, reserve};
use crate::store::codec::{
    PlainColumns, attempt_as_stored, attempt_from_row, decode_all, error_columns, event_from_row,
    fold_claim_plan, lease_refused, outside_run, run_as_stored, run_from_row, run_updated,
    sort_in_claim_order, truncate_to_micros,
};
use crate::store::{
    AttemptRecord, AttemptStatus, ChainCheck, ClaimFn, ClaimPolicy, Claimed, Created, CreatedRun,
    Decision, DueAttempt, EventRecord, IdempotencyKey, NewRun, Page, PageQuery, Plan,
    PostgresStore, RunFilter, RunRecord, RunSnapshot, RunStore, StoreError, StoreResult,
    TransitionOutcome, Verdict,
};

/// Columns of a run row, selected from the alias `r`.
macro_rules! run_columns {
    () => {
        "r.id, r.chain_id, r.chain_version, r.status, r.input, r.output, r.error_message, \
         r.error_task_id, r.error_reason, r.labels, r.priority, r.tenant, r.request_id, r.steps, \
         r.executions, r.heads, r.input_tokens, r.output_tokens, r.last_seq, r.created_at, \
         r.started_at, r.ended_at, r.updated_at"
    };
}

/// Columns of an attempt row, selected from the alias `a`.
macro_rules! attempt_columns {
    () => {
        "a.id, a.run_id, a.task_id, a.attempt, a.step, a.status, a.queue, a.priority, \
         a.available_at, a.deadline, a.lease_owner, a.lease_token, a.lease_expires_at, \
         a.lease_expiries, a.input, a.prompt, a.output, a.error, a.dead_lettered, a.backend_id, \
         a.model, a.input_tokens, a.output_tokens, a.created_at, a.started_at, a.ended_at"
    };
}

/// Opens the transactions of the hot path. Their statements are prepared
/// once per connection, and with arrays as parameters the planner's custom
/// plans never look cheaper than re-planning, so Postgres would plan the
/// larger ones on every execution (about as long as running them). A
/// generic plan is planned once per connection; `SET LOCAL` rides along
/// with BEGIN, in the same round trip, and ends with the transaction.
///
/// A generic plan made while the tables are still small (a fresh database)
/// would scan them whole, and the connection would keep that plan as they
/// grow: every statement here is a keyed lookup, so sequential scans are
/// ruled out for these transactions.
const BEGIN_HOT: &str =
    "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off";

/// The parts of a write statement that insert attempts (`$1`..`$26`) and
/// events (`$27`..`$29`), each an `INSERT … SELECT` over `UNNEST`ed column
/// arrays (rows named `u`, filtered by the optional `WHERE` clause given).
/// Bound by [`bind_inserts`].
macro_rules! insert_attempts_and_events {
    () => {
        insert_attempts_and_events!("")
    };
    ($filter:literal) => {
        concat!(
            "attempt_inserts AS (\
             INSERT INTO attempts (id, run_id, task_id, attempt, step, status, queue, priority, \
             available_at, deadline, lease_owner, lease_token, lease_expires_at, lease_expiries, \
             input, prompt, output, error, dead_lettered, backend_id, model, input_tokens, \
             output_tokens, created_at, started_at, ended_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::int4[], \
             $6::text[], $7::text[], $8::int4[], $9::timestamptz[], $10::timestamptz[], \
             $11::text[], $12::text[], $13::timestamptz[], $14::int4[], $15::bytea[], \
             $16::bytea[], $17::bytea[], $18::bytea[], $19::bool[], $20::text[], $21::text[], \
             $22::int8[], $23::int8[], $24::timestamptz[], $25::timestamptz[], \
             $26::timestamptz[]) AS u(id, run_id, task_id, attempt, step, status, queue, \
             priority, available_at, deadline, lease_owner, lease_token, lease_expires_at, \
             lease_expiries, input, prompt, output, error, dead_lettered, backend_id, model, \
             input_tokens, output_tokens, created_at, started_at, ended_at) ",
            $filter,
            "), event_inserts AS (\
             INSERT INTO run_events (run_id, seq, payload) \
             SELECT * FROM UNNEST($27::text[], $28::int8[], $29::bytea[]) \
             AS u(run_id, seq, payload) ",
            $filter,
            ")"
        )
    };
}

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

/// New runs (`$30`..`$50` and `$58`..`$59`, one array element per run) with their first
/// attempts and events, their idempotency keys (`$54` run ids, `$55`
/// scopes, `$56` request ids, `$57` hashes) and their chain checks (`$51`
/// run ids, `$52` chain ids, `$53` expected latest versions or NULL): one
/// statement, so one round trip and, outside a transaction, one commit for
/// a whole batch of starts. A run whose chain check fails, or whose key
/// exists already, is skipped entirely and returned with the reason
/// (`chain` or `key`). An uncommitted insert of the same key makes the
/// statement wait for it, so a key is never taken twice.
const CREATE_RUNS: &str = concat!(
    "WITH failed_checks AS (\
     SELECT c.run_id FROM UNNEST($51::text[], $52::text[], $53::int8[]) \
     AS c(run_id, chain_id, latest) LEFT JOIN chain_heads h ON h.id = c.chain_id \
     WHERE h.id IS NULL OR h.deleted \
     OR (c.latest IS NOT NULL AND c.latest <> h.latest_version)), \
     key_inserts AS (\
     INSERT INTO idempotency_keys (scope, request_id, request_hash, resource_key) \
     SELECT k.scope, k.request_id, k.request_hash, k.run_id \
     FROM UNNEST($54::text[], $55::text[], $56::text[], $57::text[]) \
     AS k(run_id, scope, request_id, request_hash) \
     WHERE k.run_id NOT IN (SELECT run_id FROM failed_checks) \
     ON CONFLICT (scope, request_id) DO NOTHING RETURNING resource_key), \
     taken_keys AS (\
     SELECT k.run_id FROM UNNEST($54::text[]) AS k(run_id) \
     WHERE k.run_id NOT IN (SELECT run_id FROM failed_checks) \
     AND k.run_id NOT IN (SELECT resource_key FROM key_inserts)), \
     skipped AS (SELECT run_id FROM failed_checks UNION ALL SELECT run_id FROM taken_keys), ",
    insert_attempts_and_events!("WHERE u.run_id NOT IN (SELECT run_id FROM skipped)"),
    ", run_inserts AS (\
     INSERT INTO runs (id, chain_id, chain_version, status, input, output, error_message, \
     error_task_id, error_reason, labels, priority, tenant, request_id, steps, input_tokens, \
     output_tokens, last_seq, created_at, started_at, ended_at, updated_at, executions, heads) \
     SELECT id, chain_id, chain_version, status, input, output, error_message, error_task_id, \
     error_reason, labels::jsonb, priority, tenant, request_id, steps, input_tokens, \
     output_tokens, last_seq, created_at, started_at, ended_at, updated_at, executions, heads \
     FROM UNNEST($30::text[], $31::text[], $32::int8[], $33::text[], $34::bytea[], \
     $35::bytea[], $36::bytea[], $37::text[], $38::text[], $39::text[], $40::int4[], \
     $41::text[], $42::text[], $43::int4[], $44::int8[], $45::int8[], $46::int8[], \
     $47::timestamptz[], $48::timestamptz[], $49::timestamptz[], $50::timestamptz[], \
     $58::int4[], $59::text[]) \
     AS u(id, chain_id, chain_version, status, input, output, error_message, error_task_id, \
     error_reason, labels, priority, tenant, request_id, steps, input_tokens, output_tokens, \
     last_seq, created_at, started_at, ended_at, updated_at, executions, heads) \
     WHERE u.id NOT IN (SELECT run_id FROM skipped) RETURNING 1) \
     SELECT run_id, 'chain' AS reason FROM failed_checks \
     UNION ALL SELECT run_id, 'key' AS reason FROM taken_keys"
);

// ---------------------------------------------------------------------------
// Reads shared by several methods

async fn fetch_run(conn: &mut PgConnection, id: &str) -> StoreResult<RunRecord> {
    let row = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs r WHERE r.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found("run", id))?;
    run_from_row(&row)
}

/// `NotFound` unless the run exists.
/// The attempts each run's decision needs (see [`RunSnapshot`]), by run id,
/// each ordered by `(step, id)`: one statement for the runs that keep heads,
/// one for those that do not (written before heads were kept).
async fn snapshot_attempts(
    conn: &mut PgConnection,
    wanted: &[(&RunRecord, &Decision)],
) -> StoreResult<HashMap<String, Vec<AttemptRecord>>> {
    let mut ids: Vec<String> = Vec::new();
    let mut whole_runs: Vec<&str> = Vec::new();
    for (run, decision) in wanted {
        match decision.attempt_ids(run) {
            Some(heads) => ids.extend(heads),
            None => whole_runs.push(run.id.as_str()),
        }
    }
    let mut rows = Vec::new();
    if !ids.is_empty() {
        rows.extend(
            sqlx::query(concat!(
                "SELECT ",
                attempt_columns!(),
                " FROM attempts a WHERE a.id = ANY($1)"
            ))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    if !whole_runs.is_empty() {
        rows.extend(
            sqlx::query(concat!(
                "SELECT ",
                attempt_columns!(),
                " FROM attempts a WHERE a.run_id = ANY($1)"
            ))
            .bind(&whole_runs)
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    let runs: HashSet<&str> = wanted.iter().map(|(run, _)| run.id.as_str()).collect();
    let mut seen = HashSet::new();
    let mut attempts: HashMap<String, Vec<AttemptRecord>> = HashMap::new();
    for row in &rows {
        let attempt = attempt_from_row(row)?;
        // A decision may name an attempt of another run: not its own.
        if runs.contains(attempt.run_id.as_str()) && seen.insert(attempt.id.clone()) {
            attempts
                .entry(attempt.run_id.clone())
                .or_default()
                .push(attempt);
        }
    }
    for list in attempts.values_mut() {
        list.sort_by(|a, b| (a.step, &a.id).cmp(&(b.step, &b.id)));
    }
    Ok(attempts)
}

async fn require_run(conn: &mut PgConnection, id: &str) -> StoreResult<()> {
    sqlx::query("SELECT 1 FROM runs WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|_| ())
        .ok_or_else(|| not_found("run", id))
}

// ---------------------------------------------------------------------------
// Writes

/// The writes of one or more accepted plans, gathered so they reach the
/// database as one statement. Records are as stored (timestamps truncated).
#[derive(Default)]
struct Writes {
    /// Mutable columns of existing attempts; `run_id` names the run the
    /// attempt must belong to.
    attempt_updates: Vec<AttemptRecord>,
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
    fn stage(
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
    async fn apply(&self, conn: &mut PgConnection) -> StoreResult<()> {
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
fn write_error(err: sqlx::Error, new_attempts: &[AttemptRecord]) -> StoreError {
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
fn bind_inserts<'q>(
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
fn heads_column(runs: &[RunRecord]) -> StoreResult<Vec<Option<String>>> {
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
fn col<'a, T, V>(items: &'a [T], value: impl Fn(&'a T) -> V) -> Vec<V> {
    items.iter().map(value).collect()
}

/// Why [`CREATE_RUNS`] skipped a run.
enum Skipped {
    /// Its chain check failed.
    Chain,
    /// Its idempotency key exists already.
    Key,
}

/// Inserts `news` (their records, attempts and events as stored) with their
/// keys and checks in one statement; returns the runs it skipped.
async fn insert_runs<'c, E>(
    executor: E,
    news: &[NewRun],
    records: &[RunRecord],
    attempts: &[AttemptRecord],
    events: &[EventRecord],
) -> StoreResult<HashMap<String, Skipped>>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    let errors: Vec<[Option<&str>; 3]> = records
        .iter()
        .map(|r| error_columns(r.error.as_ref()))
        .collect();
    let labels: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(&r.labels).unwrap_or_else(|_| "{}".to_string()))
        .collect();
    let heads = heads_column(records)?;
    let checks: Vec<(&str, &ChainCheck)> = news
        .iter()
        .filter_map(|new| Some((new.run.id.as_str(), new.chain_check.as_ref()?)))
        .collect();
    let keys: Vec<(&str, &IdempotencyKey)> = news
        .iter()
        .filter_map(|new| Some((new.run.id.as_str(), new.idempotency.as_ref()?)))
        .collect();
    let rows = bind_inserts(sqlx::query(CREATE_RUNS), attempts, events)
        .bind(col(records, |r| r.id.as_str()))
        .bind(col(records, |r| r.chain_id.as_str()))
        .bind(col(records, |r| r.chain_version))
        .bind(col(records, |r| r.status.as_str()))
        .bind(col(records, |r| r.input.as_slice()))
        .bind(col(records, |r| r.output.as_deref()))
        .bind(col(&errors, |e| e[0].map(str::as_bytes)))
        .bind(col(&errors, |e| e[1]))
        .bind(col(&errors, |e| e[2]))
        .bind(&labels)
        .bind(col(records, |r| r.priority))
        .bind(col(records, |r| r.tenant.as_str()))
        .bind(col(records, |r| r.request_id.as_deref()))
        .bind(col(records, |r| r.steps))
        .bind(col(records, |r| r.input_tokens))
        .bind(col(records, |r| r.output_tokens))
        .bind(col(records, |r| r.last_seq))
        .bind(col(records, |r| r.created_at))
        .bind(col(records, |r| r.started_at))
        .bind(col(records, |r| r.ended_at))
        .bind(col(records, |r| r.updated_at))
        .bind(col(&checks, |(run_id, _)| *run_id))
        .bind(col(&checks, |(_, c)| c.chain_id.as_str()))
        .bind(col(&checks, |(_, c)| c.latest_version))
        .bind(col(&keys, |(run_id, _)| *run_id))
        .bind(col(&keys, |(_, k)| k.scope.as_str()))
        .bind(col(&keys, |(_, k)| k.request_id.as_str()))
        .bind(col(&keys, |(_, k)| k.request_hash.as_str()))
        .bind(col(records, |r| r.executions))
        .bind(&heads)
        .fetch_all(executor)
        .await
        .map_err(|err| match database_error(&err) {
            Some(db) if db.constraint() == Some("runs_pkey") => StoreError::AlreadyExists {
                resource: "run",
                id: records
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            _ => write_error(err, attempts),
        })?;
    let mut skipped = HashMap::new();
    for row in &rows {
        let run_id = row.text("run_id")?;
        let reason = row.text("reason")?;
        let why = if reason == "chain" {
            Skipped::Chain
        } else {
            Skipped::Key
        };
        skipped.insert(run_id, why);
    }
    Ok(skipped)
}

/// The earlier creation an existing idempotency key guarded: a replay, a
/// mismatch, or `None` if the key expired meanwhile (the caller tries again).
async fn replay_of(
    pool: &sqlx::PgPool,
    key: &IdempotencyKey,
) -> StoreResult<Option<StoreResult<CreatedRun>>> {
    let existing = sqlx::query(
        "SELECT request_hash, resource_key FROM idempotency_keys \
         WHERE scope = $1 AND request_id = $2",
    )
    .bind(&key.scope)
    .bind(&key.request_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = existing else {
        return Ok(None);
    };
    let request_hash = row.text("request_hash")?;
    if request_hash != key.request_hash {
        return Ok(Some(Err(StoreError::IdempotencyMismatch {
            request_id: key.request_id.clone(),
        })));
    }
    let resource_key = row.text("resource_key")?;
    let mut conn = pool.acquire().await?;
    let record = fetch_run(&mut conn, &resource_key).await?;
    let created = Created {
        record,
        replayed: true,
    };
    Ok(Some(Ok((created, Vec::new()))))
}

// ---------------------------------------------------------------------------
// Transactions (one try each; the trait methods retry them)

impl PostgresStore {
    async fn begin_hot(&self) -> StoreResult<Transaction<'static, Postgres>> {
        Ok(self.pool().begin_with(BEGIN_HOT).await?)
    }

    async fn try_create_runs(&self, runs: &[NewRun]) -> StoreResult<Vec<StoreResult<CreatedRun>>> {
        let mut results: Vec<Option<StoreResult<CreatedRun>>> = runs
            .iter()
            .map(|new| {
                new.attempts
                    .iter()
                    .find(|attempt| attempt.run_id != new.run.id)
                    .map(|stray| {
                        Err(outside_run(
                            &new.run.id,
                            format!("creates attempt {:?} of run {:?}", stray.id, stray.run_id),
                        ))
                    })
            })
            .collect();
        // A key that expires between the insert that found it and the read
        // of what it guarded sends its run round again.
        for _ in 0..3 {
            let pending: Vec<usize> = (0..runs.len()).filter(|i| results[*i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            let news: Vec<NewRun> = pending.iter().map(|i| runs[*i].clone()).collect();
            let records: Vec<RunRecord> = news
                .iter()
                .map(|new| RunRecord {
                    last_seq: new.events.len() as i64,
                    ..run_as_stored(new.run.clone())
                })
                .collect();
            let attempts: Vec<AttemptRecord> = news
                .iter()
                .flat_map(|new| new.attempts.iter().cloned().map(attempt_as_stored))
                .collect();
            let events_of = |new: &NewRun| -> Vec<EventRecord> {
                (1..)
                    .zip(&new.events)
                    .map(|(seq, payload)| EventRecord {
                        run_id: new.run.id.clone(),
                        seq,
                        payload: payload.clone(),
                    })
                    .collect()
            };
            let events: Vec<EventRecord> = news.iter().flat_map(events_of).collect();
            // One statement: atomic on its own, so no transaction around it.
            let skipped = insert_runs(self.pool(), &news, &records, &attempts, &events).await?;
            for ((index, new), record) in pending.into_iter().zip(&news).zip(records) {
                results[index] = match skipped.get(&new.run.id) {
                    None => {
                        let created = Created {
                            record,
                            replayed: false,
                        };
                        Some(Ok((created, events_of(new))))
                    }
                    Some(Skipped::Chain) => Some(Err(StoreError::ChainChanged {
                        chain_id: new.run.chain_id.clone(),
                    })),
                    Some(Skipped::Key) => match &new.idempotency {
                        Some(key) => replay_of(self.pool(), key).await?,
                        None => Some(Err(StoreError::Corrupt(format!(
                            "run {:?} was skipped for a key it does not have",
                            new.run.id
                        )))),
                    },
                };
            }
        }
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(StoreError::FailedPrecondition(
                        "the run's request_id is being expired concurrently; retry".into(),
                    ))
                })
            })
            .collect())
    }

    async fn try_transition(
        &self,
        run_id: &str,
        decide: &Decision,
    ) -> StoreResult<TransitionOutcome> {
        let mut tx = self.begin_hot().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs r WHERE r.id = $1 FOR UPDATE"
        ))
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found("run", run_id))?;
        let run = run_from_row(&row)?;
        if let Some(key) = &decide.idempotency {
            // Reserved before deciding; a rejected plan rolls it back.
            if let Reservation::Replay { .. } = reserve(&mut tx, key, run_id).await? {
                tx.rollback().await?;
                return Ok(TransitionOutcome::Replayed(run));
            }
        }
        // A separate statement, so its snapshot is taken after the lock:
        // nothing can change the run's attempts until commit.
        let attempts = snapshot_attempts(&mut tx, &[(&run, decide)])
            .await?
            .remove(run_id)
            .unwrap_or_default();
        let snapshot = RunSnapshot { run, attempts };
        let plan = decide.decide(&snapshot);
        if let Verdict::Reject(rejection) = plan.verdict {
            tx.rollback().await?;
            return Ok(TransitionOutcome::Rejected(rejection));
        }
        let own: HashSet<&str> = snapshot.attempts.iter().map(|a| a.id.as_str()).collect();
        if let Some(stray) = plan
            .attempt_updates
            .iter()
            .find(|a| !own.contains(a.id.as_str()))
        {
            return Err(outside_run(
                run_id,
                format!(
                    "updates attempt {:?}, which is not one of its attempts",
                    stray.id
                ),
            ));
        }
        // A claim holding one of the run's ready attempts is waiting for
        // the run lock this transaction holds; waiting for the attempt would
        // deadlock. Take them without waiting, or give way and retry.
        let rewritten: HashSet<&str> = plan.attempt_updates.iter().map(|a| a.id.as_str()).collect();
        let ready: Vec<&str> = snapshot
            .attempts
            .iter()
            .filter(|a| a.status == AttemptStatus::Ready && rewritten.contains(a.id.as_str()))
            .map(|a| a.id.as_str())
            .collect();
        if !ready.is_empty() {
            sqlx::query("SELECT 1 FROM attempts WHERE id = ANY($1) FOR NO KEY UPDATE NOWAIT")
                .bind(&ready)
                .execute(&mut *tx)
                .await?;
        }
        let mut writes = Writes::default();
        let (run, events) = writes.stage(&snapshot.run, plan)?;
        writes.apply(&mut tx).await?;
        tx.commit().await?;
        Ok(TransitionOutcome::Applied { run, events })
    }

    async fn try_transition_many(
        &self,
        items: &[(String, Decision)],
    ) -> StoreResult<Vec<StoreResult<TransitionOutcome>>> {
        let mut tx = self.begin_hot().await?;
        let mut ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        // Runs in id order (as claims lock them), then their attempts in a
        // separate statement, so its snapshot follows the locks.
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs r WHERE r.id = ANY($1) ORDER BY r.id FOR UPDATE"
        ))
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut runs: HashMap<String, RunRecord> = HashMap::new();
        for row in &rows {
            let run = run_from_row(row)?;
            runs.insert(run.id.clone(), run);
        }
        let wanted: Vec<(&RunRecord, &Decision)> = items
            .iter()
            .filter_map(|(id, decide)| Some((runs.get(id)?, decide)))
            .collect();
        let mut attempts = snapshot_attempts(&mut tx, &wanted).await?;
        let mut writes = Writes::default();
        let mut ready: Vec<String> = Vec::new();
        let mut results = Vec::with_capacity(items.len());
        for (run_id, decide) in items {
            let Some(run) = runs.get(run_id) else {
                results.push(Err(not_found("run", run_id)));
                continue;
            };
            let snapshot = RunSnapshot {
                run: run.clone(),
                attempts: attempts.remove(run_id).unwrap_or_default(),
            };
            let plan = decide.decide(&snapshot);
            if let Verdict::Reject(rejection) = plan.verdict {
                results.push(Ok(TransitionOutcome::Rejected(rejection)));
                continue;
            }
            let own: HashSet<&str> = snapshot.attempts.iter().map(|a| a.id.as_str()).collect();
            if let Some(stray) = plan
                .attempt_updates
                .iter()
                .find(|a| !own.contains(a.id.as_str()))
            {
                return Err(outside_run(
                    run_id,
                    format!(
                        "updates attempt {:?}, which is not one of its attempts",
                        stray.id
                    ),
                ));
            }
            let rewritten: HashSet<&str> =
                plan.attempt_updates.iter().map(|a| a.id.as_str()).collect();
            ready.extend(
                snapshot
                    .attempts
                    .iter()
                    .filter(|a| {
                        a.status == AttemptStatus::Ready && rewritten.contains(a.id.as_str())
                    })
                    .map(|a| a.id.clone()),
            );
            let (run, events) = writes.stage(&snapshot.run, plan)?;
            results.push(Ok(TransitionOutcome::Applied { run, events }));
        }
        // As in `try_transition`: never wait for a ready attempt a claim
        // holds while holding run locks.
        if !ready.is_empty() {
            sqlx::query("SELECT 1 FROM attempts WHERE id = ANY($1) FOR NO KEY UPDATE NOWAIT")
                .bind(&ready)
                .execute(&mut *tx)
                .await?;
        }
        writes.apply(&mut tx).await?;
        tx.commit().await?;
        Ok(results)
    }
}

// ---------------------------------------------------------------------------

#[async_trait]
impl RunStore for PostgresStore {
    async fn create_runs(&self, runs: Vec<NewRun>) -> StoreResult<Vec<StoreResult<CreatedRun>>> {
        crate::store::runs::check_distinct_keys(&runs)?;
        retrying(|| self.try_create_runs(&runs)).await
    }

    async fn find_request(&self, key: &IdempotencyKey) -> StoreResult<Option<String>> {
        let row = sqlx::query(
            "SELECT request_hash, resource_key FROM idempotency_keys \
             WHERE scope = $1 AND request_id = $2",
        )
        .bind(&key.scope)
        .bind(&key.request_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let request_hash = row.text("request_hash")?;
        if request_hash != key.request_hash {
            return Err(StoreError::IdempotencyMismatch {
                request_id: key.request_id.clone(),
            });
        }
        Ok(Some(row.text("resource_key")?))
    }

    async fn get_run(&self, id: &str) -> StoreResult<RunRecord> {
        let mut conn = self.pool().acquire().await?;
        fetch_run(&mut conn, id).await
    }

    async fn list_runs(&self, filter: &RunFilter, page: PageQuery) -> StoreResult<Page<RunRecord>> {
        // Only the filters in use become SQL, so the planner sees each
        // statement's real shape and picks the index that narrows.
        let mut query = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs r WHERE TRUE"
        ));
        if !filter.statuses.is_empty() {
            let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
            query
                .push(" AND r.status = ANY(")
                .push_bind(statuses)
                .push(")");
        }
        if let Some(chain_id) = &filter.chain_id {
            query
                .push(" AND r.chain_id = ")
                .push_bind(chain_id.as_str());
        }
        if !filter.labels.is_empty() {
            query
                .push(" AND r.labels @> ")
                .push_bind(Json(&filter.labels));
        }
        if let Some(tenant) = &filter.tenant {
            query.push(" AND r.tenant = ").push_bind(tenant.as_str());
        }
        if let Some(after) = filter.created_after {
            query
                .push(" AND r.created_at >= ")
                .push_bind(truncate_to_micros(after));
        }
        if let Some(before) = filter.created_before {
            query
                .push(" AND r.created_at < ")
                .push_bind(truncate_to_micros(before));
        }
        if let Some(after) = &page.after {
            query.push(" AND r.id < ").push_bind(after.as_str());
        }
        query
            .push(" ORDER BY r.id DESC LIMIT ")
            .push_bind(page_limits(&page).1);
        let rows = query.build().fetch_all(self.pool()).await?;
        let items = decode_all(&rows, run_from_row)?;
        Ok(into_page(items, &page, |run| run.id.clone()))
    }

    async fn get_attempt(&self, id: &str) -> StoreResult<AttemptRecord> {
        let row = sqlx::query(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM attempts a WHERE a.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| not_found("attempt", id))?;
        attempt_from_row(&row)
    }

    async fn list_attempts(
        &self,
        run_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<AttemptRecord>> {
        let after_step = match page.after.as_deref() {
            None => None,
            Some(after) => Some(after.parse::<i32>().map_err(|_| {
                StoreError::FailedPrecondition(format!("page key {after:?} is not a step number"))
            })?),
        };
        let mut conn = self.pool().acquire().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM attempts a WHERE a.run_id = $1 AND a.step > $2 ORDER BY a.step, a.id LIMIT $3"
        ))
        .bind(run_id)
        .bind(after_step.unwrap_or(i32::MIN))
        .bind(page_limits(&page).1)
        .fetch_all(&mut *conn)
        .await?;
        // Attempts exist only with their run; only an empty page needs the
        // run looked up.
        if rows.is_empty() {
            require_run(&mut conn, run_id).await?;
        }
        let items = decode_all(&rows, attempt_from_row)?;
        Ok(into_page(items, &page, |attempt| attempt.step.to_string()))
    }

    async fn list_events(
        &self,
        run_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>> {
        let mut conn = self.pool().acquire().await?;
        let rows = sqlx::query(
            "SELECT run_id, seq, payload FROM run_events \
             WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            require_run(&mut conn, run_id).await?;
        }
        decode_all(&rows, event_from_row)
    }

    async fn transition_many(
        &self,
        items: Vec<(String, Decision)>,
    ) -> StoreResult<Vec<StoreResult<TransitionOutcome>>> {
        crate::store::runs::check_distinct_runs(&items)?;
        retrying(|| self.try_transition_many(&items)).await
    }

    async fn transition(&self, run_id: &str, decide: Decision) -> StoreResult<TransitionOutcome> {
        retrying(|| self.try_transition(run_id, &decide)).await
    }

    async fn claim(&self, policy: &dyn ClaimPolicy, decide: &ClaimFn) -> StoreResult<Claimed> {
        if policy.queues().is_empty() || policy.limit() == 0 {
            return Ok(Claimed {
                attempts: Vec::new(),
                events: Vec::new(),
            });
        }
        retrying(|| self.try_claim(policy, decide)).await
    }

    async fn due_attempts(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<DueAttempt>> {
        // Oldest first = the one that fell due earliest: the earlier of its
        // lease expiry and its deadline (LEAST skips NULL). The expression
        // matches attempts_due_idx.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.run_id, a.id FROM attempts a \
             WHERE a.status = 'leased' AND LEAST(a.lease_expires_at, a.deadline) <= $1 \
             ORDER BY LEAST(a.lease_expires_at, a.deadline), a.id LIMIT $2",
        )
        .bind(truncate_to_micros(now))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
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
        let mut query = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM attempts a WHERE a.dead_lettered"
        ));
        if let Some(queue) = queue {
            query.push(" AND a.queue = ").push_bind(queue);
        }
        if let Some(after) = &page.after {
            query.push(" AND a.id < ").push_bind(after.as_str());
        }
        query
            .push(" ORDER BY a.id DESC LIMIT ")
            .push_bind(page_limits(&page).1);
        let rows = query.build().fetch_all(self.pool()).await?;
        let items = decode_all(&rows, attempt_from_row)?;
        Ok(into_page(items, &page, |attempt| attempt.id.clone()))
    }

    async fn next_ready_at(
        &self,
        queues: &[String],
        after: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let mut earliest: Option<DateTime<Utc>> = None;
        for queue in queues {
            let (next,): (Option<DateTime<Utc>>,) = sqlx::query_as(NEXT_READY_AT)
                .bind(queue)
                .bind(truncate_to_micros(after))
                .bind(crate::store::runs::NEXT_READY_PRIORITIES)
                .fetch_one(self.pool())
                .await?;
            if let Some(next) = next {
                earliest = Some(earliest.map_or(next, |known: DateTime<Utc>| known.min(next)));
            }
        }
        Ok(earliest)
    }
}

/// `next_ready_at` of one queue: `attempts_ready_idx` is ordered by
/// priority first, so a plain `min(available_at)` would read every ready
/// attempt of the queue; instead walk its distinct priorities (each a seek)
/// and take the first due time after `$2` of each (a seek too).
const NEXT_READY_AT: &str = "WITH RECURSIVE levels(priority, n) AS ( \
     SELECT (SELECT priority FROM attempts WHERE status = 'ready' AND queue = $1 \
             ORDER BY priority DESC LIMIT 1), 1 \
     UNION ALL \
     SELECT (SELECT a.priority FROM attempts a WHERE a.status = 'ready' AND a.queue = $1 \
             AND a.priority < l.priority ORDER BY a.priority DESC LIMIT 1), l.n + 1 \
     FROM levels l WHERE l.priority IS NOT NULL AND l.n < $3) \
     SELECT min((SELECT a.available_at FROM attempts a WHERE a.status = 'ready' \
             AND a.queue = $1 AND a.priority = l.priority AND a.available_at > $2 \
             ORDER BY a.available_at LIMIT 1)) \
     FROM levels l WHERE l.priority IS NOT NULL";

#[path = "claim.rs"]
mod claim;

#[cfg(test)]
#[path = "runs_tests.rs"]
mod tests;
