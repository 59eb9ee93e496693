//! Deleting runs in the embedded store. The single writer is every run's
//! lock, so a batch is one short write transaction: the callers keep
//! batches small, since every other write waits for it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnection;

use super::idempotency::{prior_result, remember_result};
use super::runs::fetch_runs;
use super::{SqliteStore, audit, micros, to_json};
use crate::store::codec::not_found;
use crate::store::retention::{RUN_KEY_SCOPES, ids_created_before};
use crate::store::{
    AuditRecord, DeleteCheck, IdempotencyKey, RetentionStore, RunDeletion, RunStatus, StoreResult,
};

/// Deletes the runs `ids` and every row that belongs to them.
pub(super) async fn delete_runs(conn: &mut SqliteConnection, ids: &[String]) -> StoreResult<()> {
    let ids = to_json(&ids, "run ids")?;
    let scopes = to_json(&RUN_KEY_SCOPES, "idempotency scopes")?;
    for sql in [
        "DELETE FROM run_events WHERE run_id IN (SELECT value FROM json_each(?1))",
        "DELETE FROM attempts WHERE run_id IN (SELECT value FROM json_each(?1))",
        "DELETE FROM idempotency_keys WHERE resource_key IN (SELECT value FROM json_each(?1)) \
         AND substr(scope, instr(scope, '/') + 1) IN (SELECT value FROM json_each(?2))",
        "DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?1))",
    ] {
        sqlx::query(sql)
            .bind(&ids)
            .bind(&scopes)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The stored spellings of the statuses of runs that ended.
fn ended_statuses() -> Vec<&'static str> {
    RunStatus::ALL
        .into_iter()
        .filter(|status| status.is_terminal())
        .map(RunStatus::as_str)
        .collect()
}

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn delete_run(
        &self,
        run_id: &str,
        check: &DeleteCheck,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<RunDeletion> {
        let mut tx = self.write_tx().await?;
        // Before the run is looked up: a retry of a delete that succeeded
        // finds no run, and answers as the delete did.
        if prior_result(&mut tx, idempotency.as_ref()).await?.is_some() {
            return Ok(RunDeletion::Replayed);
        }
        let runs = fetch_runs(&mut tx, &[run_id]).await?;
        let run = runs.get(run_id).ok_or_else(|| not_found("run", run_id))?;
        if let Some(rejection) = check(run) {
            return Ok(RunDeletion::Rejected(rejection));
        }
        delete_runs(&mut tx, &[run_id.to_string()]).await?;
        remember_result(&mut tx, idempotency.as_ref(), run_id, None).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(RunDeletion::Deleted)
    }

    async fn delete_ended_runs(
        &self,
        (namespace, chain_id): (&str, &str),
        ended_before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let mut tx = self.write_tx().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM runs INDEXED BY runs_by_chain \
             WHERE namespace = ? AND chain_id = ? AND id < ? AND ended_at < ? \
             AND status IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT ?",
        )
        .bind(namespace)
        .bind(chain_id)
        .bind(ids_created_before(ended_before))
        .bind(micros(ended_before))
        .bind(to_json(&ended_statuses(), "ended statuses")?)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            return Ok(ids);
        }
        delete_runs(&mut tx, &ids).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn all_chains(&self) -> StoreResult<Vec<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT namespace, id FROM chain_heads ORDER BY namespace, id")
                .fetch_all(&self.reader)
                .await?,
        )
    }
}
