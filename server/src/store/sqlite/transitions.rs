//! SQLite transitions: the writer lock taken by `BEGIN IMMEDIATE` is every
//! run's lock, so a snapshot cannot change before the plan is written and a
//! decision is made exactly once.

use sqlx::sqlite::SqliteConnection;

use super::idempotency::{prior_result, remember_result};
use super::runs::{ATTEMPT_COLUMNS, fetch_run};
use super::to_json;
use super::writes::apply_plan;
use crate::store::codec::{attempt_from_row, decode_all};
use crate::store::{
    AttemptRecord, Decision, RunRecord, RunSnapshot, SqliteStore, StoreError, StoreResult,
    TransitionOutcome, Verdict,
};

/// All attempts of a run, ordered by `(step, id)`.
pub(super) async fn fetch_run_attempts(
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

impl SqliteStore {
    pub(super) async fn write_transition(
        &self,
        run_id: &str,
        decide: Decision,
    ) -> StoreResult<TransitionOutcome> {
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

    pub(super) async fn write_transitions(
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
}
