//! Deleting runs in PostgreSQL. A delete locks its run rows first (as
//! transitions do), so it never interleaves with a transition of the same
//! run; retention batches skip rows another transaction holds, so replicas
//! running retention at once split the work instead of queueing on it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::idempotency::{Reservation, reserve};
use super::not_found;
use super::retry::retrying;
use crate::store::codec::{decode_all, run_from_row, truncate_to_micros};
use crate::store::retention::{RUN_KEY_SCOPES, ids_created_before};
use crate::store::{
    AuditRecord, DeleteCheck, IdempotencyKey, PostgresStore, RetentionStore, RunDeletion,
    RunStatus, StoreResult,
};

/// Deletes the runs `$1` and every row that belongs to them, in one
/// statement.
const DELETE_RUNS: &str = "WITH events AS (DELETE FROM run_events WHERE run_id = ANY($1)), \
     attempts AS (DELETE FROM attempts WHERE run_id = ANY($1)), \
     keys AS (DELETE FROM idempotency_keys WHERE resource_key = ANY($1) \
     AND substr(scope, strpos(scope, '/') + 1) = ANY($2)) \
     DELETE FROM runs WHERE id = ANY($1)";

pub(super) async fn delete_runs(conn: &mut PgConnection, ids: &[String]) -> StoreResult<()> {
    sqlx::query(DELETE_RUNS)
        .bind(ids)
        .bind(RUN_KEY_SCOPES.as_slice())
        .execute(&mut *conn)
        .await?;
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

impl PostgresStore {
    async fn try_delete_run(
        &self,
        run_id: &str,
        check: &DeleteCheck,
        idempotency: Option<&IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<RunDeletion> {
        let mut tx = self.pool().begin().await?;
        // Reserved before the run is looked up: a retry of a delete that
        // succeeded finds no run, and answers as the delete did.
        if let Some(key) = idempotency
            && let Reservation::Replay { .. } = reserve(&mut tx, key, run_id).await?
        {
            tx.rollback().await?;
            return Ok(RunDeletion::Replayed);
        }
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
        if let Some(rejection) = check(&run) {
            tx.rollback().await?;
            return Ok(RunDeletion::Rejected(rejection));
        }
        delete_runs(&mut tx, &[run.id]).await?;
        super::audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(RunDeletion::Deleted)
    }

    async fn try_delete_ended_runs(
        &self,
        (namespace, chain_id): (&str, &str),
        ended_before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let mut tx = self.pool().begin().await?;
        let rows = sqlx::query(
            "SELECT r.id FROM runs r WHERE r.namespace = $6 AND r.chain_id = $1 AND r.id < $2 \
             AND r.ended_at < $3 AND r.status = ANY($4) \
             ORDER BY r.id LIMIT $5 FOR UPDATE SKIP LOCKED",
        )
        .bind(chain_id)
        .bind(ids_created_before(ended_before))
        .bind(truncate_to_micros(ended_before))
        .bind(ended_statuses())
        .bind(i64::from(limit))
        .bind(namespace)
        .fetch_all(&mut *tx)
        .await?;
        let ids = decode_all(&rows, |row| Ok(sqlx::Row::try_get::<String, _>(row, "id")?))?;
        if ids.is_empty() {
            tx.rollback().await?;
            return Ok(ids);
        }
        delete_runs(&mut tx, &ids).await?;
        tx.commit().await?;
        Ok(ids)
    }
}

#[async_trait]
impl RetentionStore for PostgresStore {
    async fn delete_run(
        &self,
        run_id: &str,
        check: &DeleteCheck,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<RunDeletion> {
        retrying(|| self.try_delete_run(run_id, check, idempotency.as_ref(), audit)).await
    }

    async fn delete_ended_runs(
        &self,
        chain: (&str, &str),
        ended_before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        retrying(|| self.try_delete_ended_runs(chain, ended_before, limit)).await
    }

    async fn all_chains(&self) -> StoreResult<Vec<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT namespace, id FROM chain_heads ORDER BY namespace, id")
                .fetch_all(self.pool())
                .await?,
        )
    }
}
