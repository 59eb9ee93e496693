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
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, QueryBuilder, Transaction};

use super::{
    Reservation, column, database_error, fetch_limit, into_page, not_found, reserve,
};
use crate::store::{
    AttemptRecord, AttemptStatus, ChainCheck, ClaimFn, ClaimRequest, Claimed, Created, CreatedRun,
    Decision, DueAttempt, EventRecord, IdempotencyKey, NewRun, Page, PageQuery, Plan,
    PostgresStore, RunFailure, RunFilter, RunRecord, RunSnapshot, RunStatus, RunStore, StoreError,
    StoreResult, TransitionOutcome, Verdict,
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

/// How often a transaction is tried when Postgres reports a deadlock or a
/// serialization failure.
const MAX_TRIES: u32 = 5;

/// Ready attempts to lease, in claim order, locked; `SKIP LOCKED` passes
/// over attempts another claim holds, so this never waits. One ordered scan
/// of the partial ready index per queue: a plain `queue = ANY($1)` would
/// read and sort every ready attempt of those queues. Up to `limit` rows per
/// queue are locked; the unused ones are released at commit.
const CLAIM_CANDIDATES: &str = concat!(
    "SELECT c.* FROM UNNEST($1::text[], $3::int8[]) AS q(queue, quota) CROSS JOIN LATERAL (SELECT ",
    attempt_columns!(),
    ", r.tenant AS run_tenant FROM attempts a JOIN runs r ON r.id = a.run_id \
     WHERE a.status = 'ready' AND a.queue = q.queue AND a.available_at <= $2 \
     AND r.status IN ('queued', 'running') AND r.tenant <> ALL($5::text[]) \
     AND a.id <> ALL($6::text[]) \
     ORDER BY a.priority DESC, a.available_at, a.id LIMIT q.quota \
     FOR UPDATE OF a SKIP LOCKED) AS c \
     ORDER BY c.priority DESC, c.available_at, c.id LIMIT $4"
);

/// Serializes the claims of capped queues or tenants across replicas (one
/// transaction-scoped advisory lock per name, taken in name order) so two
/// claims cannot both see room under a cap.
const LOCK_CAPS: &str = "SELECT pg_advisory_xact_lock(hashtextextended(k, 7)) \
     FROM UNNEST($1::text[]) AS k ORDER BY k";

/// Attempts leased now, per capped queue.
const LEASED_PER_QUEUE: &str = "SELECT queue AS name, count(*) AS leased FROM attempts \
     WHERE status = 'leased' AND queue = ANY($1::text[]) GROUP BY queue";

/// Attempts leased now, per capped tenant.
const LEASED_PER_TENANT: &str = "SELECT r.tenant AS name, count(*) AS leased \
     FROM attempts a JOIN runs r ON r.id = a.run_id \
     WHERE a.status = 'leased' AND r.tenant = ANY($1::text[]) GROUP BY r.tenant";

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
// Encoding

/// A timestamp at the precision TIMESTAMPTZ keeps.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

fn optional_micros(at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    at.map(micros)
}

/// `run` with its timestamps as the table keeps them.
fn run_as_stored(run: RunRecord) -> RunRecord {
    RunRecord {
        created_at: micros(run.created_at),
        started_at: optional_micros(run.started_at),
        ended_at: optional_micros(run.ended_at),
        updated_at: micros(run.updated_at),
        ..run
    }
}

/// `attempt` with its timestamps as the table keeps them.
fn attempt_as_stored(attempt: AttemptRecord) -> AttemptRecord {
    AttemptRecord {
        available_at: micros(attempt.available_at),
        deadline: optional_micros(attempt.deadline),
        lease_expires_at: optional_micros(attempt.lease_expires_at),
        created_at: micros(attempt.created_at),
        started_at: optional_micros(attempt.started_at),
        ended_at: optional_micros(attempt.ended_at),
        ..attempt
    }
}

/// `stored` with the mutable columns of `update` (already as stored):
/// what an attempt update leaves in the row.
fn attempt_updated(stored: &AttemptRecord, update: &AttemptRecord) -> AttemptRecord {
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
fn run_updated(stored: &RunRecord, update: &RunRecord, last_seq: i64) -> RunRecord {
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

/// `now + lease_ms`, refusing durations that leave the representable range.
fn lease_expiry(now: DateTime<Utc>, lease_ms: i64) -> StoreResult<DateTime<Utc>> {
    TimeDelta::try_milliseconds(lease_ms)
        .and_then(|lease| now.checked_add_signed(lease))
        .ok_or_else(|| {
            StoreError::FailedPrecondition(format!("lease of {lease_ms} ms is out of range"))
        })
}

/// A fresh fencing token: 128 bits from the thread's CSPRNG, in hex.
fn new_lease_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn outside_run(run_id: &str, what: String) -> StoreError {
    StoreError::Corrupt(format!("a plan for run {run_id:?} {what}"))
}

/// A deadlock (40P01), serialization failure (40001) or a row lock taken
/// with `NOWAIT` that another transaction holds (55P03): the transaction
/// failed as a whole and may simply run again.
fn is_retryable(err: &StoreError) -> bool {
    match err {
        StoreError::Database(err) => database_error(err)
            .and_then(|db| db.code())
            .is_some_and(|code| matches!(code.as_ref(), "40P01" | "40001" | "55P03")),
        _ => false,
    }
}

/// Sleeps before try `tries + 1`: a jittered, doubling delay, so the
/// transactions that collided do not collide again in lockstep.
async fn back_off(tries: u32) {
    let ceiling_us = 1_000u64 << tries.min(6);
    let delay_us = rand::random_range(ceiling_us / 4..=ceiling_us);
    tokio::time::sleep(Duration::from_micros(delay_us)).await;
}

// ---------------------------------------------------------------------------
// Row decoding

fn run_from_row(row: &PgRow) -> StoreResult<RunRecord> {
    let id: String = column(row, "id")?;
    let status: String = column(row, "status")?;
    let status = RunStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("run {id:?} has unknown status {status:?}")))?;
    let error = match (
        text_column(row, "error_message")?,
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
    let labels: Json<BTreeMap<String, String>> = column(row, "labels")?;
    Ok(RunRecord {
        chain_id: column(row, "chain_id")?,
        chain_version: column(row, "chain_version")?,
        status,
        input: column(row, "input")?,
        output: column(row, "output")?,
        error,
        labels: labels.0,
        priority: column(row, "priority")?,
        tenant: column(row, "tenant")?,
        request_id: column(row, "request_id")?,
        steps: column(row, "steps")?,
        executions: column(row, "executions")?,
        heads: column::<Option<String>>(row, "heads")?
            .map(|heads| {
                serde_json::from_str(&heads)
                    .map_err(|e| StoreError::Corrupt(format!("run {id:?} has bad heads: {e}")))
            })
            .transpose()?,
        input_tokens: column(row, "input_tokens")?,
        output_tokens: column(row, "output_tokens")?,
        last_seq: column(row, "last_seq")?,
        created_at: column(row, "created_at")?,
        started_at: column(row, "started_at")?,
        ended_at: column(row, "ended_at")?,
        updated_at: column(row, "updated_at")?,
        id,
    })
}

fn attempt_from_row(row: &PgRow) -> StoreResult<AttemptRecord> {
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
        available_at: column(row, "available_at")?,
        deadline: column(row, "deadline")?,
        lease_owner: column(row, "lease_owner")?,
        lease_token: column(row, "lease_token")?,
        lease_expires_at: column(row, "lease_expires_at")?,
        lease_expiries: column(row, "lease_expiries")?,
        input: column(row, "input")?,
        prompt: text_column(row, "prompt")?,
        output: column(row, "output")?,
        error: text_column(row, "error")?,
        dead_lettered: column(row, "dead_lettered")?,
        backend_id: column(row, "backend_id")?,
        model: column(row, "model")?,
        input_tokens: column(row, "input_tokens")?,
        output_tokens: column(row, "output_tokens")?,
        created_at: column(row, "created_at")?,
        started_at: column(row, "started_at")?,
        ended_at: column(row, "ended_at")?,
        id,
    })
}

fn event_from_row(row: &PgRow) -> StoreResult<EventRecord> {
    Ok(EventRecord {
        run_id: column(row, "run_id")?,
        seq: column(row, "seq")?,
        payload: column(row, "payload")?,
    })
}

fn decode_all<T>(rows: &[PgRow], decode: impl Fn(&PgRow) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(decode).collect()
}

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

/// Leased attempts per name, from [`LEASED_PER_QUEUE`] or [`LEASED_PER_TENANT`].
async fn leased_counts(
    conn: &mut PgConnection,
    query: &str,
    names: &[&str],
) -> StoreResult<HashMap<String, u32>> {
    let rows = sqlx::query(query).bind(names).fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            let name: String = column(row, "name")?;
            let leased: i64 = column(row, "leased")?;
            Ok((name, leased.max(0) as u32))
        })
        .collect()
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
        let attempts_updated: i64 = column(&row, "attempts_updated")?;
        let runs_updated: i64 = column(&row, "runs_updated")?;
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

/// A text column stored as UTF-8 bytes: PostgreSQL's `text` refuses U+0000,
/// which run data (prompts, model and hook errors) may hold.
fn text_column(row: &PgRow, name: &str) -> StoreResult<Option<String>> {
    column::<Option<Vec<u8>>>(row, name)?
        .map(|bytes| {
            String::from_utf8(bytes)
                .map_err(|_| StoreError::Corrupt(format!("column {name} is not UTF-8")))
        })
        .transpose()
}

/// One column of `items`, as an array parameter.
fn col<'a, T, V>(items: &'a [T], value: impl Fn(&'a T) -> V) -> Vec<V> {
    items.iter().map(value).collect()
}

/// The three error columns of a run: all set or all NULL.
fn error_columns(error: Option<&RunFailure>) -> [Option<&str>; 3] {
    match error {
        Some(failure) => [
            Some(failure.message.as_str()),
            Some(failure.task_id.as_str()),
            Some(failure.reason.as_str()),
        ],
        None => [None, None, None],
    }
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
        let run_id: String = column(row, "run_id")?;
        let reason: String = column(row, "reason")?;
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
    let request_hash: String = column(&row, "request_hash")?;
    if request_hash != key.request_hash {
        return Ok(Some(Err(StoreError::IdempotencyMismatch {
            request_id: key.request_id.clone(),
        })));
    }
    let resource_key: String = column(&row, "resource_key")?;
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

    async fn try_claim(&self, request: &ClaimRequest, decide: &ClaimFn) -> StoreResult<Claimed> {
        let now = micros(request.now);
        let lease_expires_at = lease_expiry(now, request.lease_ms)?;
        let mut queues: Vec<&str> = request.queues.iter().map(String::as_str).collect();
        queues.sort_unstable();
        queues.dedup();

        let mut tx = self.begin_hot().await?;
        let caps = &request.caps;
        let capped_queues: Vec<&str> = queues
            .iter()
            .copied()
            .filter(|queue| caps.queue(queue).is_some())
            .collect();
        let leased_per_queue = if capped_queues.is_empty() {
            HashMap::new()
        } else {
            let locks: Vec<String> = capped_queues.iter().map(|q| format!("queue:{q}")).collect();
            sqlx::query(LOCK_CAPS)
                .bind(&locks)
                .execute(&mut *tx)
                .await?;
            leased_counts(&mut tx, LEASED_PER_QUEUE, &capped_queues).await?
        };
        let quotas = crate::store::runs::queue_quotas(request, &leased_per_queue);
        let quota_queues: Vec<&str> = quotas.iter().map(|(q, _)| q.as_str()).collect();
        let quota_limits: Vec<i64> = quotas.iter().map(|(_, n)| i64::from(*n)).collect();
        // A tenant found without room after a read sends the read round
        // again without it (and without the rows already kept), so its
        // backlog does not hide other tenants' work.
        let quota_map: HashMap<String, u32> = quotas.iter().cloned().collect();
        let mut excluded: Vec<String> = Vec::new();
        let mut locked_tenants: HashSet<String> = HashSet::new();
        let mut leased_per_tenant: HashMap<String, u32> = HashMap::new();
        let mut kept: Vec<(AttemptRecord, String)> = Vec::new();
        for _ in 0..3 {
            if quotas.is_empty() {
                break;
            }
            let kept_ids: Vec<&str> = kept.iter().map(|(a, _)| a.id.as_str()).collect();
            let rows = sqlx::query(CLAIM_CANDIDATES)
                .bind(&quota_queues)
                .bind(now)
                .bind(&quota_limits)
                .bind(i64::from(request.limit))
                .bind(&excluded)
                .bind(&kept_ids)
                .fetch_all(&mut *tx)
                .await?;
            let read = decode_all(&rows, attempt_from_row)?;
            let tenants: Vec<String> = rows
                .iter()
                .map(|row| column::<String>(row, "run_tenant"))
                .collect::<StoreResult<_>>()?;
            let read_count = read.len();
            let mut all: Vec<(AttemptRecord, String)> = std::mem::take(&mut kept);
            all.extend(read.into_iter().zip(tenants));
            all.sort_by(|(a, _), (b, _)| {
                b.priority
                    .cmp(&a.priority)
                    .then(a.available_at.cmp(&b.available_at))
                    .then(a.id.cmp(&b.id))
            });
            let mut new_tenants: Vec<&str> = all
                .iter()
                .map(|(_, t)| t.as_str())
                .filter(|t| caps.tenant(t).is_some() && !locked_tenants.contains(*t))
                .collect();
            new_tenants.sort_unstable();
            new_tenants.dedup();
            if !new_tenants.is_empty() {
                let locks: Vec<String> =
                    new_tenants.iter().map(|t| format!("tenant:{t}")).collect();
                sqlx::query(LOCK_CAPS)
                    .bind(&locks)
                    .execute(&mut *tx)
                    .await?;
                leased_per_tenant
                    .extend(leased_counts(&mut tx, LEASED_PER_TENANT, &new_tenants).await?);
                locked_tenants.extend(new_tenants.iter().map(|t| t.to_string()));
            }
            let order: Vec<(&str, &str)> = all
                .iter()
                .map(|(a, t)| (a.queue.as_str(), t.as_str()))
                .collect();
            let (keep, full) = crate::store::runs::within_caps(
                &order,
                &quota_map,
                caps,
                &leased_per_tenant,
                request.limit as usize,
            );
            let dropped = keep.len() < all.len();
            let mut all: Vec<Option<(AttemptRecord, String)>> = all.into_iter().map(Some).collect();
            kept = keep.into_iter().filter_map(|i| all[i].take()).collect();
            let new_full: Vec<String> =
                full.into_iter().filter(|t| !excluded.contains(t)).collect();
            if read_count == 0
                || !dropped
                || new_full.is_empty()
                || kept.len() == request.limit as usize
            {
                break;
            }
            // Rows locked for full tenants are released at commit.
            excluded.extend(new_full);
        }
        let candidates: Vec<AttemptRecord> = kept.into_iter().map(|(a, _)| a).collect();
        let mut candidates_by_run: BTreeMap<&str, Vec<&AttemptRecord>> = BTreeMap::new();
        for candidate in &candidates {
            candidates_by_run
                .entry(candidate.run_id.as_str())
                .or_default()
                .push(candidate);
        }
        // In id order, so claims that want the same runs queue up rather
        // than deadlock. A run may have been paused or cancelled since the
        // candidates were read: waiting for its lock re-reads it, and only
        // dispatchable runs get their attempts leased.
        let run_ids: Vec<&str> = candidates_by_run.keys().copied().collect();
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs r WHERE r.id = ANY($1) ORDER BY r.id FOR UPDATE"
        ))
        .bind(&run_ids)
        .fetch_all(&mut *tx)
        .await?;
        let runs = decode_all(&rows, run_from_row)?;

        let mut writes = Writes::default();
        let mut leased_by_id: HashMap<String, AttemptRecord> = HashMap::new();
        let mut events = Vec::new();
        for run in runs.iter().filter(|run| run.status.is_dispatchable()) {
            let Some(candidates) = candidates_by_run.get(run.id.as_str()) else {
                continue;
            };
            let leased: Vec<AttemptRecord> = candidates
                .iter()
                .map(|candidate| AttemptRecord {
                    status: AttemptStatus::Leased,
                    lease_owner: Some(request.owner.clone()),
                    lease_token: Some(new_lease_token()),
                    lease_expires_at: Some(lease_expires_at),
                    started_at: Some(now),
                    ..(*candidate).clone()
                })
                .collect();
            let mut plan = decide(run, &leased);
            if let Verdict::Reject(rejection) = &plan.verdict {
                return Err(outside_run(
                    &run.id,
                    format!(
                        "rejected a claim, which claim decisions must not do: {}",
                        rejection.message
                    ),
                ));
            }
            // Updates of the attempts just leased fold into their lease
            // write: one row version per claimed attempt, not two.
            let mut leased: HashMap<String, AttemptRecord> = leased
                .into_iter()
                .map(|attempt| (attempt.id.clone(), attempt))
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
            let (_, run_events) = writes.stage(run, plan)?;
            events.extend(run_events);
            writes.attempt_updates.extend(leased.values().cloned());
            leased_by_id.extend(leased);
        }
        writes.apply(&mut tx).await?;
        tx.commit().await?;

        let attempts = candidates
            .iter()
            .filter_map(|candidate| leased_by_id.remove(&candidate.id))
            .collect();
        Ok(Claimed { attempts, events })
    }
}

// ---------------------------------------------------------------------------

#[async_trait]
impl RunStore for PostgresStore {
    async fn create_runs(&self, runs: Vec<NewRun>) -> StoreResult<Vec<StoreResult<CreatedRun>>> {
        crate::store::runs::check_distinct_keys(&runs)?;
        let mut tries = 1;
        loop {
            match self.try_create_runs(&runs).await {
                Err(err) if tries < MAX_TRIES && is_retryable(&err) => {
                    back_off(tries).await;
                    tries += 1;
                }
                outcome => return outcome,
            }
        }
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
        let request_hash: String = column(&row, "request_hash")?;
        if request_hash != key.request_hash {
            return Err(StoreError::IdempotencyMismatch {
                request_id: key.request_id.clone(),
            });
        }
        Ok(Some(column(&row, "resource_key")?))
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
            query.push(" AND r.created_at >= ").push_bind(micros(after));
        }
        if let Some(before) = filter.created_before {
            query.push(" AND r.created_at < ").push_bind(micros(before));
        }
        if let Some(after) = &page.after {
            query.push(" AND r.id < ").push_bind(after.as_str());
        }
        query
            .push(" ORDER BY r.id DESC LIMIT ")
            .push_bind(fetch_limit(&page));
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
        .bind(fetch_limit(&page))
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
        let mut tries = 1;
        loop {
            match self.try_transition_many(&items).await {
                Err(err) if tries < MAX_TRIES && is_retryable(&err) => {
                    back_off(tries).await;
                    tries += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn transition(&self, run_id: &str, decide: Decision) -> StoreResult<TransitionOutcome> {
        let mut tries = 1;
        loop {
            match self.try_transition(run_id, &decide).await {
                Err(err) if tries < MAX_TRIES && is_retryable(&err) => {
                    back_off(tries).await;
                    tries += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn claim(&self, request: &ClaimRequest, decide: &ClaimFn) -> StoreResult<Claimed> {
        if request.queues.is_empty() || request.limit == 0 {
            return Ok(Claimed {
                attempts: Vec::new(),
                events: Vec::new(),
            });
        }
        let mut tries = 1;
        loop {
            match self.try_claim(request, decide).await {
                Err(err) if tries < MAX_TRIES && is_retryable(&err) => {
                    back_off(tries).await;
                    tries += 1;
                }
                claimed => return claimed,
            }
        }
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
        .bind(micros(now))
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
            .push_bind(fetch_limit(&page));
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
                .bind(micros(after))
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::store::Store;

    async fn fresh_store() -> PostgresStore {
        let url = tokio::task::spawn_blocking(taskloom_testkit::fresh_postgres_database)
            .await
            .unwrap()
            .unwrap();
        let store = PostgresStore::connect(&url, crate::secrets::SecretBox::ephemeral())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000 + seconds, 0).unwrap()
    }

    fn run(id: &str) -> RunRecord {
        RunRecord {
            id: id.to_string(),
            chain_id: "chain".to_string(),
            chain_version: 1,
            status: RunStatus::Queued,
            input: vec![1, 2, 3],
            output: None,
            error: None,
            labels: BTreeMap::new(),
            priority: 0,
            tenant: String::new(),
            request_id: None,
            steps: 0,
            executions: 0,
            heads: None,
            input_tokens: 0,
            output_tokens: 0,
            last_seq: 0,
            created_at: at(0),
            started_at: None,
            ended_at: None,
            updated_at: at(0),
        }
    }

    fn ready_attempt(run_id: &str, step: i32) -> AttemptRecord {
        AttemptRecord {
            id: format!("{run_id}-a{step:02}"),
            run_id: run_id.to_string(),
            task_id: format!("task{step}"),
            attempt: 1,
            step,
            status: AttemptStatus::Ready,
            queue: "work".to_string(),
            priority: 0,
            available_at: at(step.into()),
            deadline: None,
            lease_owner: None,
            lease_token: None,
            lease_expires_at: None,
            lease_expiries: 0,
            input: vec![step as u8],
            prompt: None,
            output: None,
            error: None,
            dead_lettered: false,
            backend_id: None,
            model: None,
            input_tokens: 0,
            output_tokens: 0,
            created_at: at(0),
            started_at: None,
            ended_at: None,
        }
    }

    fn claim_request(owner: &str, limit: u32) -> ClaimRequest {
        ClaimRequest {
            queues: vec!["work".to_string()],
            owner: owner.to_string(),
            limit,
            now: at(3_600),
            lease_ms: 30_000,
            caps: Default::default(),
        }
    }

    /// Marks the run running and writes one event per leased attempt.
    fn start_run(run: &RunRecord, leased: &[AttemptRecord]) -> Plan {
        Plan {
            run: Some(RunRecord {
                status: RunStatus::Running,
                ..run.clone()
            }),
            events: leased.iter().map(|a| a.id.clone().into_bytes()).collect(),
            ..Plan::apply()
        }
    }

    /// Claimers lock ready attempts and then wait for their runs;
    /// transitions hold a run and rewrite its ready attempts. Neither may
    /// fail the other (no deadlock or lock conflict escapes the retries),
    /// and no attempt may be leased twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn claims_racing_transitions_never_fail_or_double_lease() {
        const RUNS: usize = 12;
        const ATTEMPTS_PER_RUN: i32 = 4;
        const TOTAL: usize = RUNS * ATTEMPTS_PER_RUN as usize;
        let store = Arc::new(fresh_store().await);
        let run_ids: Vec<String> = (0..RUNS).map(|i| format!("run{i:02}")).collect();
        for id in &run_ids {
            let attempts = (1..=ATTEMPTS_PER_RUN)
                .map(|s| ready_attempt(id, s))
                .collect();
            store
                .create_run(run(id), attempts, Vec::new(), None)
                .await
                .unwrap();
        }

        let leased = Arc::new(Mutex::new(Vec::<AttemptRecord>::new()));
        let mut claimers = Vec::new();
        for worker in 0..4 {
            let store = store.clone();
            let leased = leased.clone();
            claimers.push(tokio::spawn(async move {
                let owner = format!("worker{worker}");
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while leased.lock().unwrap().len() < TOTAL {
                    assert!(tokio::time::Instant::now() < deadline, "claims stalled");
                    let claimed = store.claim(&claim_request(&owner, 3), &start_run).await?;
                    leased.lock().unwrap().extend(claimed.attempts);
                    tokio::task::yield_now().await;
                }
                StoreResult::Ok(())
            }));
        }
        let decisions = Arc::new(AtomicUsize::new(0));
        let mut touchers = Vec::new();
        for toucher in 0..4 {
            let store = store.clone();
            let run_ids = run_ids.clone();
            let decisions = decisions.clone();
            touchers.push(tokio::spawn(async move {
                let mut applied = BTreeMap::<String, i64>::new();
                for round in 0..6 {
                    for id in run_ids.iter().cycle().skip(toucher * 3 + round).take(RUNS) {
                        let decisions = decisions.clone();
                        // Rewrites every ready attempt as it is: a row lock
                        // on each, in the middle of the claimers' work.
                        let decide = Decision::new(move |snapshot: &RunSnapshot| {
                            decisions.fetch_add(1, Ordering::Relaxed);
                            Plan {
                                attempt_updates: snapshot
                                    .attempts
                                    .iter()
                                    .filter(|a| a.status == AttemptStatus::Ready)
                                    .cloned()
                                    .collect(),
                                events: vec![b"touch".to_vec()],
                                ..Plan::apply()
                            }
                        });
                        match store.transition(id, decide).await? {
                            TransitionOutcome::Applied { .. } => {
                                *applied.entry(id.clone()).or_default() += 1;
                            }
                            other => panic!("nothing rejects or replays here: {other:?}"),
                        }
                    }
                }
                StoreResult::Ok(applied)
            }));
        }
        for claimer in claimers {
            claimer.await.unwrap().unwrap();
        }
        let mut touches = BTreeMap::<String, i64>::new();
        for toucher in touchers {
            for (id, count) in toucher.await.unwrap().unwrap() {
                *touches.entry(id).or_default() += count;
            }
        }

        let leased = leased.lock().unwrap().clone();
        let distinct: HashSet<&str> = leased.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(leased.len(), TOTAL, "every attempt leased once");
        assert_eq!(distinct.len(), TOTAL, "no attempt leased twice");
        for attempt in &leased {
            assert_eq!(store.get_attempt(&attempt.id).await.unwrap(), *attempt);
        }
        for id in &run_ids {
            let stored = store.get_run(id).await.unwrap();
            assert_eq!(stored.status, RunStatus::Running);
            let events = store.list_events(id, 0, 1_000).await.unwrap();
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (1..=stored.last_seq).collect::<Vec<_>>());
            let expected = i64::from(ATTEMPTS_PER_RUN) + touches.get(id).copied().unwrap_or(0);
            assert_eq!(stored.last_seq, expected, "run {id}");
        }
        let transitions: i64 = touches.values().sum();
        eprintln!(
            "{transitions} transitions applied after {} decisions",
            decisions.load(Ordering::Relaxed)
        );
    }

    /// A claim that waited for a run's lock sees the run as the holder left
    /// it: a run paused meanwhile keeps its attempts ready.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_rechecks_a_run_paused_while_it_waited() {
        let store = fresh_store().await;
        for id in ["r", "s"] {
            store
                .create_run(run(id), vec![ready_attempt(id, 1)], Vec::new(), None)
                .await
                .unwrap();
        }
        let mut holder = store.pool().begin().await.unwrap();
        sqlx::query("SELECT 1 FROM runs WHERE id = 'r' FOR UPDATE")
            .execute(&mut *holder)
            .await
            .unwrap();
        let claimer = {
            let store = store.clone();
            tokio::spawn(async move { store.claim(&claim_request("w", 10), &start_run).await })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(store.pool())
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the claim never waited"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sqlx::query("UPDATE runs SET status = 'paused' WHERE id = 'r'")
            .execute(&mut *holder)
            .await
            .unwrap();
        holder.commit().await.unwrap();

        let claimed = claimer.await.unwrap().unwrap();
        let leased: Vec<&str> = claimed.attempts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(leased, ["s-a01"]);
        assert_eq!(
            store.get_attempt("r-a01").await.unwrap(),
            ready_attempt("r", 1)
        );
        let paused = store.get_run("r").await.unwrap();
        assert_eq!((paused.status, paused.last_seq), (RunStatus::Paused, 0));
    }

    #[tokio::test]
    async fn a_taken_attempt_id_is_already_exists_and_creates_nothing() {
        let store = fresh_store().await;
        store
            .create_run(run("r"), vec![ready_attempt("r", 1)], Vec::new(), None)
            .await
            .unwrap();
        let clash = AttemptRecord {
            run_id: "s".to_string(),
            ..ready_attempt("r", 1)
        };
        let created = store
            .create_run(run("s"), vec![clash], vec![b"created".to_vec()], None)
            .await;
        assert!(
            matches!(
                &created,
                Err(StoreError::AlreadyExists { resource: "attempt", id }) if id == "r-a01"
            ),
            "{created:?}"
        );
        assert!(matches!(
            store.get_run("s").await,
            Err(StoreError::NotFound { .. })
        ));
    }

    /// The database guard behind the Rust checks: a claim plan that updates
    /// another run's attempt under its own run id matches no row, and the
    /// whole claim, leases included, rolls back.
    #[tokio::test]
    async fn a_claim_plan_reaching_into_another_run_rolls_back() {
        let store = fresh_store().await;
        store
            .create_run(run("a"), vec![ready_attempt("a", 1)], Vec::new(), None)
            .await
            .unwrap();
        let foreign = AttemptRecord {
            status: AttemptStatus::Waiting,
            ..ready_attempt("b", 1)
        };
        store
            .create_run(run("b"), vec![foreign.clone()], Vec::new(), None)
            .await
            .unwrap();
        let claimed = store
            .claim(&claim_request("w", 10), &move |run, leased| Plan {
                attempt_updates: vec![AttemptRecord {
                    run_id: run.id.clone(),
                    status: AttemptStatus::Cancelled,
                    ..foreign.clone()
                }],
                ..start_run(run, leased)
            })
            .await;
        assert!(
            matches!(claimed, Err(StoreError::Corrupt(_))),
            "{claimed:?}"
        );
        assert_eq!(
            store.get_attempt("a-a01").await.unwrap(),
            ready_attempt("a", 1)
        );
        assert_eq!(
            store.get_attempt("b-a01").await.unwrap().status,
            AttemptStatus::Waiting
        );
        assert_eq!(store.get_run("a").await.unwrap(), run("a"));
    }

    /// Updates of the attempts a claim just leased are folded into the lease
    /// write; what the claim returns is what is stored.
    #[tokio::test]
    async fn claim_plans_may_amend_the_leased_attempts() {
        let store = fresh_store().await;
        let attempts = vec![ready_attempt("r", 1), ready_attempt("r", 2)];
        store
            .create_run(run("r"), attempts, Vec::new(), None)
            .await
            .unwrap();
        let deadline = at(7_200) + TimeDelta::nanoseconds(1_234_567);
        let claimed = store
            .claim(&claim_request("w", 1), &move |run, leased| Plan {
                attempt_updates: leased
                    .iter()
                    .map(|a| AttemptRecord {
                        deadline: Some(deadline),
                        ..a.clone()
                    })
                    .collect(),
                ..start_run(run, leased)
            })
            .await
            .unwrap();
        assert_eq!(claimed.attempts.len(), 1);
        let attempt = &claimed.attempts[0];
        assert_eq!(attempt.id, "r-a01");
        assert_eq!(attempt.status, AttemptStatus::Leased);
        assert_eq!(attempt.deadline, Some(micros(deadline)));
        assert_eq!(attempt.lease_token.as_ref().map(String::len), Some(32));
        assert_eq!(store.get_attempt("r-a01").await.unwrap(), *attempt);
        assert_eq!(claimed.events.len(), 1);
        assert_eq!(store.get_run("r").await.unwrap().last_seq, 1);
    }
}
