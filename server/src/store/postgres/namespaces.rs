//! Namespaces for PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::keys::bump_revision;
use super::retention::delete_runs;
use super::{PostgresStore, audit, fetch_one, on_unique_violation, require};
use crate::store::codec::{decode_all, truncate_to_micros};
use crate::store::namespaces::{
    NAMESPACE_COLUMNS, holds_unfinished_runs, namespace_from_row, unfinished_statuses,
};
use crate::store::{AuditRecord, NamespaceRecord, NamespaceStore, StoreResult};

/// Runs deleted per statement when a namespace goes.
const DELETE_CHUNK: usize = 500;

/// The namespace, its row locked for the rest of the transaction when
/// `lock`.
async fn fetch_namespace(
    conn: &mut PgConnection,
    name: &str,
    lock: bool,
) -> StoreResult<NamespaceRecord> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {NAMESPACE_COLUMNS} FROM namespaces WHERE name = $1{lock}");
    fetch_one(conn, &sql, ("namespace", name), namespace_from_row).await
}

/// `NotFound` for the first of `pools` that does not exist.
async fn require_pools(conn: &mut PgConnection, pools: &[String]) -> StoreResult<()> {
    for pool in pools {
        require(
            &mut *conn,
            "SELECT 1 FROM pools WHERE id = $1",
            ("pool", pool),
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl NamespaceStore for PostgresStore {
    async fn create_namespace(
        &self,
        namespace: &NamespaceRecord,
        audit: &AuditRecord,
    ) -> StoreResult<NamespaceRecord> {
        let mut tx = self.pool().begin().await?;
        require_pools(&mut tx, &namespace.pools).await?;
        let created = NamespaceRecord {
            created_at: truncate_to_micros(namespace.created_at),
            ..namespace.clone()
        };
        sqlx::query(
            "INSERT INTO namespaces (name, description, pools, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&created.name)
        .bind(&created.description)
        .bind(&created.pools)
        .bind(created.created_at)
        .bind(&created.created_by)
        .execute(&mut *tx)
        .await
        .map_err(|error| on_unique_violation(error, "namespace", |_| created.name.clone()))?;
        bump_revision(&mut tx).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn list_namespaces(&self) -> StoreResult<Vec<NamespaceRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {NAMESPACE_COLUMNS} FROM namespaces ORDER BY name"
        ))
        .fetch_all(self.pool())
        .await?;
        decode_all(&rows, namespace_from_row)
    }

    async fn get_namespace(&self, name: &str) -> StoreResult<NamespaceRecord> {
        fetch_namespace(&mut *self.pool().acquire().await?, name, false).await
    }

    async fn update_namespace(
        &self,
        name: &str,
        (description, pools): (&str, &[String]),
        audit: &AuditRecord,
    ) -> StoreResult<NamespaceRecord> {
        let mut tx = self.pool().begin().await?;
        fetch_namespace(&mut tx, name, true).await?;
        require_pools(&mut tx, pools).await?;
        sqlx::query("UPDATE namespaces SET description = $2, pools = $3 WHERE name = $1")
            .bind(name)
            .bind(description)
            .bind(pools)
            .execute(&mut *tx)
            .await?;
        let updated = fetch_namespace(&mut tx, name, false).await?;
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
        let mut tx = self.pool().begin().await?;
        fetch_namespace(&mut tx, name, true).await?;
        let unfinished: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM runs WHERE namespace = $1 AND status = ANY($2)",
        )
        .bind(name)
        .bind(unfinished_statuses())
        .fetch_one(&mut *tx)
        .await?;
        if unfinished > 0 {
            return Err(holds_unfinished_runs(name, unfinished));
        }
        let runs: Vec<String> = sqlx::query_scalar("SELECT id FROM runs WHERE namespace = $1")
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
            "UPDATE chain_heads SET deleted = TRUE WHERE namespace = $1",
            "DELETE FROM hooks WHERE namespace = $1",
            "DELETE FROM paused_queues WHERE starts_with(name, $1 || '/')",
            "DELETE FROM idempotency_keys WHERE starts_with(scope, $1 || '/')",
            "DELETE FROM namespaces WHERE name = $1",
        ] {
            sqlx::query(sql).bind(name).execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $2 WHERE namespace = $1 AND revoked_at IS NULL",
        )
        .bind(name)
        .bind(truncate_to_micros(at))
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(runs.len() as u64)
    }
}
