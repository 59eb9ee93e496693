//! SQLite transitions: the writer lock taken by `BEGIN IMMEDIATE` is every
//! run's lock, so a snapshot cannot change before the plan is written and a
//! decision is made exactly once. A batch reads its runs and the attempts
//! its decisions name in one statement each and writes in a few
//! ([`Writes`]), however many runs it holds.

use std::collections::HashMap;

use sqlx::sqlite::SqliteConnection;

use super::idempotency::{prior_result, remember_result};
use super::runs::{ATTEMPT_COLUMNS, fetch_runs};
use super::to_json;
use super::writes::Writes;
use crate::store::codec::{attempt_from_row, decode_all, not_found};
use crate::store::{
    AttemptRecord, Decision, RunRecord, RunSnapshot, SqliteStore, StoreResult, TransitionOutcome,
    Verdict,
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

/// The attempts of `ids`, by id, in one read by primary key (with a run id
/// in the filter SQLite would walk the run's index, every attempt of a
/// long run).
async fn fetch_attempts(
    conn: &mut SqliteConnection,
    ids: &[String],
) -> StoreResult<HashMap<String, AttemptRecord>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts a WHERE a.id IN (SELECT value FROM json_each(?))"
    ))
    .bind(to_json(&ids, "attempt ids")?)
    .fetch_all(&mut *conn)
    .await?;
    Ok(decode_all(&rows, attempt_from_row)?
        .into_iter()
        .map(|attempt| (attempt.id.clone(), attempt))
        .collect())
}

/// The snapshots the decisions need (see [`RunSnapshot`]), one per item,
/// `None` where the run does not exist.
async fn fetch_snapshots(
    conn: &mut SqliteConnection,
    items: &[(&str, &Decision)],
    mut runs: HashMap<String, RunRecord>,
) -> StoreResult<Vec<Option<RunSnapshot>>> {
    let named: Vec<Option<Vec<String>>> = items
        .iter()
        .map(|(run_id, decision)| runs.get(*run_id).and_then(|run| decision.attempt_ids(run)))
        .collect();
    let wanted: Vec<String> = named.iter().flatten().flatten().cloned().collect();
    let mut found = fetch_attempts(conn, &wanted).await?;
    let mut snapshots = Vec::with_capacity(items.len());
    for ((run_id, _), ids) in items.iter().zip(named) {
        let Some(run) = runs.remove(*run_id) else {
            snapshots.push(None);
            continue;
        };
        let attempts = match ids {
            // Runs stored before heads were kept.
            None => fetch_run_attempts(conn, &run.id).await?,
            Some(ids) => {
                // A decision may name an attempt of another run: not its own.
                let mut attempts = Vec::with_capacity(ids.len());
                for id in &ids {
                    if found.get(id).is_some_and(|a| a.run_id == run.id)
                        && let Some(attempt) = found.remove(id)
                    {
                        attempts.push(attempt);
                    }
                }
                attempts.sort_by(|a, b| (a.step, &a.id).cmp(&(b.step, &b.id)));
                attempts
            }
        };
        snapshots.push(Some(RunSnapshot { run, attempts }));
    }
    Ok(snapshots)
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
        let runs = fetch_runs(&mut tx, &[run_id]).await?;
        let Some(run) = runs.get(run_id).cloned() else {
            return Err(not_found("run", run_id));
        };
        let key = decide.idempotency.as_ref();
        if prior_result(&mut tx, key).await?.is_some() {
            return Ok(TransitionOutcome::Replayed(run));
        }
        let snapshot = fetch_snapshots(&mut tx, &[(run_id, &decide)], runs)
            .await?
            .pop()
            .flatten()
            .ok_or_else(|| not_found("run", run_id))?;
        let plan = decide.decide(&snapshot);
        if let Verdict::Reject(rejection) = &plan.verdict {
            // Dropping the transaction rolls it back; nothing was written.
            return Ok(TransitionOutcome::Rejected(rejection.clone()));
        }
        let audit = plan.audited(decide.audit.as_ref());
        let mut writes = Writes::default();
        let (run, events) = writes.plan(&snapshot.run, plan)?;
        writes.write(&mut tx).await?;
        remember_result(&mut tx, key, run_id, None).await?;
        if let Some(audit) = audit {
            super::audit::insert(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(TransitionOutcome::Applied { run, events })
    }

    pub(super) async fn write_transitions(
        &self,
        items: Vec<(String, Decision)>,
    ) -> StoreResult<Vec<StoreResult<TransitionOutcome>>> {
        crate::store::runs::check_distinct_runs(&items)?;
        let items: Vec<(&str, &Decision)> = items
            .iter()
            .map(|(run_id, decision)| (run_id.as_str(), decision))
            .collect();
        let ids: Vec<&str> = items.iter().map(|(run_id, _)| *run_id).collect();
        // One write transaction: the single writer is every run's lock.
        let mut tx = self.write_tx().await?;
        let runs = fetch_runs(&mut tx, &ids).await?;
        let snapshots = fetch_snapshots(&mut tx, &items, runs).await?;
        let mut writes = Writes::default();
        let mut results = Vec::with_capacity(items.len());
        for ((run_id, decide), snapshot) in items.iter().zip(snapshots) {
            let Some(snapshot) = snapshot else {
                results.push(Err(not_found("run", *run_id)));
                continue;
            };
            let plan = decide.decide(&snapshot);
            if let Verdict::Reject(rejection) = &plan.verdict {
                results.push(Ok(TransitionOutcome::Rejected(rejection.clone())));
                continue;
            }
            let (run, events) = writes.plan(&snapshot.run, plan)?;
            results.push(Ok(TransitionOutcome::Applied { run, events }));
        }
        writes.write(&mut tx).await?;
        tx.commit().await?;
        Ok(results)
    }
}
