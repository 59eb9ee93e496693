//! PostgreSQL transitions: lock the run, read the attempts its decision
//! needs, decide, write the plan in one statement. One try each; the trait
//! methods retry them.

use std::collections::{HashMap, HashSet};

use sqlx::{PgConnection, Postgres, Transaction};

use super::idempotency::{Reservation, reserve};
use super::not_found;
use super::writes::Writes;
use crate::store::codec::{attempt_from_row, decode_all, outside_run, run_from_row};
use crate::store::{
    AttemptRecord, AttemptStatus, Decision, Plan, PostgresStore, RunRecord, RunSnapshot,
    StoreResult, TransitionOutcome, Verdict,
};

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

const ATTEMPTS_BY_ID: &str = concat!(
    "SELECT ",
    attempt_columns!(),
    " FROM attempts a WHERE a.id = ANY($1)"
);
const ATTEMPTS_OF_RUNS: &str = concat!(
    "SELECT ",
    attempt_columns!(),
    " FROM attempts a WHERE a.run_id = ANY($1)"
);

/// Locks the runs `ids` (sorted) and reads them, in id order: claims and
/// batched transitions that want the same runs queue up rather than
/// deadlock.
pub(super) async fn lock_runs(
    conn: &mut PgConnection,
    ids: &[&str],
) -> StoreResult<Vec<RunRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs r WHERE r.id = ANY($1) ORDER BY r.id FOR UPDATE"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    decode_all(&rows, run_from_row)
}

/// The attempts each run's decision needs (see [`RunSnapshot`]), by run id,
/// each ordered by `(step, id)`: one statement for the runs that keep heads,
/// one for those that do not (written before heads were kept).
async fn snapshot_attempts(
    conn: &mut PgConnection,
    wanted: &[(&RunRecord, &Decision)],
) -> StoreResult<HashMap<String, Vec<AttemptRecord>>> {
    let mut ids: Vec<String> = Vec::new();
    let mut whole_runs: Vec<String> = Vec::new();
    for (run, decision) in wanted {
        match decision.attempt_ids(run) {
            Some(heads) => ids.extend(heads),
            None => whole_runs.push(run.id.clone()),
        }
    }
    let mut rows = Vec::new();
    for (sql, keys) in [(ATTEMPTS_BY_ID, ids), (ATTEMPTS_OF_RUNS, whole_runs)] {
        if !keys.is_empty() {
            rows.extend(sqlx::query(sql).bind(&keys).fetch_all(&mut *conn).await?);
        }
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

/// The ready attempts of `snapshot` that `plan` rewrites. `Corrupt` if the
/// plan updates an attempt that is not one of the run's.
fn ready_rewritten(snapshot: &RunSnapshot, plan: &Plan) -> StoreResult<Vec<String>> {
    let own: HashMap<&str, &AttemptRecord> = snapshot
        .attempts
        .iter()
        .map(|attempt| (attempt.id.as_str(), attempt))
        .collect();
    let mut ready = Vec::new();
    for update in &plan.attempt_updates {
        match own.get(update.id.as_str()) {
            None => {
                return Err(outside_run(
                    &snapshot.run.id,
                    format!(
                        "updates attempt {:?}, which is not one of its attempts",
                        update.id
                    ),
                ));
            }
            Some(attempt) if attempt.status == AttemptStatus::Ready => {
                ready.push(attempt.id.clone());
            }
            Some(_) => {}
        }
    }
    Ok(ready)
}

/// Locks the `ready` attempts a transition rewrites without waiting: a
/// claim holding one of them waits for the run lock the transition holds,
/// so waiting for the attempt would deadlock. If a claim has one, this
/// fails and the transaction gives way and retries.
async fn lock_ready_nowait(conn: &mut PgConnection, ready: &[String]) -> StoreResult<()> {
    if !ready.is_empty() {
        sqlx::query("SELECT 1 FROM attempts WHERE id = ANY($1) FOR NO KEY UPDATE NOWAIT")
            .bind(ready)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl PostgresStore {
    pub(super) async fn begin_hot(&self) -> StoreResult<Transaction<'static, Postgres>> {
        Ok(self.pool().begin_with(BEGIN_HOT).await?)
    }

    pub(super) async fn try_transition(
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
        let ready = ready_rewritten(&snapshot, &plan)?;
        lock_ready_nowait(&mut tx, &ready).await?;
        let audit = plan.audited(decide.audit.as_ref());
        let mut writes = Writes::default();
        let (run, events) = writes.stage(&snapshot.run, plan)?;
        writes.apply(&mut tx).await?;
        if let Some(audit) = audit {
            super::audit::insert(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(TransitionOutcome::Applied { run, events })
    }

    pub(super) async fn try_transition_many(
        &self,
        items: &[(String, Decision)],
    ) -> StoreResult<Vec<StoreResult<TransitionOutcome>>> {
        let mut tx = self.begin_hot().await?;
        let mut ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        // Runs in id order (as claims lock them), then their attempts in a
        // separate statement, so its snapshot follows the locks.
        let mut runs: HashMap<String, RunRecord> = HashMap::new();
        for run in lock_runs(&mut tx, &ids).await? {
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
            ready.extend(ready_rewritten(&snapshot, &plan)?);
            let (run, events) = writes.stage(&snapshot.run, plan)?;
            results.push(Ok(TransitionOutcome::Applied { run, events }));
        }
        lock_ready_nowait(&mut tx, &ready).await?;
        writes.apply(&mut tx).await?;
        tx.commit().await?;
        Ok(results)
    }
}
