//! Namespaces for the embedded store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnection;

use super::keys::bump_revision;
use super::retention::delete_runs;
use super::{SqliteStore, audit, fetch_one, micros, require, unique_as_already_exists};
use crate::store::codec::{decode_all, to_json, truncate_to_micros};
use crate::store::namespaces::{
    NAMESPACE_COLUMNS, holds_unfinished_runs, namespace_from_row, unfinished_statuses,
};
use crate::store::{AuditRecord, NamespaceRecord, NamespaceStore, StoreResult};

/// Runs deleted per statement when a namespace goes.
const DELETE_CHUNK: usize = 500;

async fn fetch_namespace(conn: &mut SqliteConnection, name: &str) -> StoreResult<NamespaceRecord> {
    let sql = format!("SELECT {NAMESPACE_COLUMNS} FROM namespaces WHERE name = ?");
    fetch_one(conn, &sql, ("namespace", name), namespace_from_row).await
}

/// `NotFound` for the first of `pools` that does not exist.
async fn require_pools(conn: &mut SqliteConnection, pools: &[String]) -> StoreResult<()> {
    for pool in pools {
        require(conn, "SELECT 1 FROM pools WHERE id = ?", ("pool", pool)).await?;
    }
    Ok(())
}

#[async_trait]
impl NamespaceStore for SqliteStore {
    async fn create_namespace(
        &self,
        namespace: &NamespaceRecord,
        audit: &AuditRecord,
    ) -> StoreResult<NamespaceRecord> {
        let mut tx = self.write_tx().await?;
        require_pools(&mut tx, &namespace.pools).await?;
        let created = NamespaceRecord {
            created_at: truncate_to_micros(namespace.created_at),
            ..namespace.clone()
        };
        sqlx::query(
            "INSERT INTO namespaces (name, description, pools, created_at, created_by) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&created.name)
        .bind(&created.description)
        .bind(to_json(&created.pools, "namespace pools")?)
        .bind(micros(created.created_at))
        .bind(&created.created_by)
        .execute(&mut *tx)
        .await
        .map_err(unique_as_already_exists("namespace", &created.name))?;
        bump_revision(&mut tx).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn list_namespaces(&self) -> StoreResult<Vec<NamespaceRecord>> {
        let mut conn = self.reader.acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {NAMESPACE_COLUMNS} FROM namespaces ORDER BY name"
        ))
        .fetch_all(&mut *conn)
        .await?;
        decode_all(&rows, namespace_from_row)
    }

    async fn get_namespace(&self, name: &str) -> StoreResult<NamespaceRecord> {
        fetch_namespace(&mut *self.reader.acquire().await?, name).await
    }

    async fn update_namespace(
        &self,
        name: &str,
        (description, pools): (&str, &[String]),
        audit: &AuditRecord,
    ) -> StoreResult<NamespaceRecord> {
        let mut tx = self.write_tx().await?;
        fetch_namespace(&mut tx, name).await?;
        require_pools(&mut tx, pools).await?;
        sqlx::query("UPDATE namespaces SET description = ?, pools = ? WHERE name = ?")
            .bind(description)
            .bind(to_json(&pools, "namespace pools")?)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let updated = fetch_namespace(&mut tx, name).await?;
        bump_revision(&mut tx).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn delete_namespace(
        &self,
        name: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        fetch_namespace(&mut tx, name).await?;
        let (unfinished,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM runs INDEXED BY runs_by_status \
             WHERE namespace = ? AND status IN (SELECT value FROM json_each(?))",
        )
        .bind(name)
        .bind(to_json(&unfinished_statuses(), "unfinished statuses")?)
        .fetch_one(&mut *tx)
        .await?;
        if unfinished > 0 {
            return Err(holds_unfinished_runs(name, unfinished));
        }
        let runs: Vec<String> = sqlx::query_scalar("SELECT id FROM runs WHERE namespace = ?")
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
        for chunk in runs.chunks(DELETE_CHUNK) {
            delete_runs(&mut tx, chunk).await?;
        }
        // Chains are marked deleted, as DeleteChain does: their version
        // numbers continue if the namespace comes back, so no replica's
        // cache of compiled versions can serve an old definition. Queue keys
        // and idempotency scopes start with `<name>/`.
        for sql in [
            "UPDATE chain_heads SET deleted = 1 WHERE namespace = ?1",
            "DELETE FROM hooks WHERE namespace = ?1",
            "DELETE FROM paused_queues WHERE substr(name, 1, length(?1) + 1) = ?1 || '/'",
            "DELETE FROM idempotency_keys WHERE substr(scope, 1, length(?1) + 1) = ?1 || '/'",
            "DELETE FROM namespaces WHERE name = ?1",
        ] {
            sqlx::query(sql).bind(name).execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE api_keys SET revoked_at = ? WHERE namespace = ? AND revoked_at IS NULL",
        )
        .bind(micros(at))
        .bind(name)
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(runs.len() as u64)
    }
}
