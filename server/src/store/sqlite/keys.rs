//! API keys for the embedded store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnection;

use super::{SqliteStore, audit, micros, unique_as_already_exists};
use crate::store::codec::{PlainColumns, decode_all, not_found, to_json, truncate_to_micros};
use crate::store::keys::{KEY_COLUMNS, key_from_row};
use crate::store::{ApiKeyRecord, AuditRecord, KeyStore, StoreResult};

pub(super) async fn bump_revision(conn: &mut SqliteConnection) -> StoreResult<()> {
    sqlx::query("UPDATE api_key_revision SET revision = revision + 1 WHERE id = 1")
        .execute(conn)
        .await?;
    Ok(())
}

async fn key_by_id(conn: &mut SqliteConnection, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
    let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(key_from_row).transpose()
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_api_key(&self, key: &ApiKeyRecord, audit: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, name, role, namespace, queues, prefix, secret_hash, \
             created_at, created_by, last_used_at, expires_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.role)
        .bind(&key.namespace)
        .bind(to_json(&key.queues, "api key queues")?)
        .bind(&key.prefix)
        .bind(&key.secret_hash)
        .bind(micros(truncate_to_micros(key.created_at)))
        .bind(&key.created_by)
        .bind(key.last_used_at.map(micros))
        .bind(key.expires_at.map(micros))
        .bind(key.revoked_at.map(micros))
        .execute(&mut *tx)
        .await
        .map_err(unique_as_already_exists("api key", &key.id))?;
        bump_revision(&mut tx).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let mut conn = self.reader.acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
        ))
        .fetch_all(&mut *conn)
        .await?;
        decode_all(&rows, key_from_row)
    }

    async fn find_api_key(&self, secret_hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
        let mut conn = self.reader.acquire().await?;
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE secret_hash = ?"
        ))
        .bind(secret_hash)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn revoke_api_key(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<ApiKeyRecord> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(micros(at))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let key = key_by_id(&mut tx, id)
            .await?
            .ok_or_else(|| not_found("api key", id))?;
        bump_revision(&mut tx).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn api_key_revision(&self) -> StoreResult<i64> {
        let mut conn = self.reader.acquire().await?;
        let row = sqlx::query("SELECT revision FROM api_key_revision WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
        row.int("revision")
    }

    async fn touch_api_keys(&self, used: &[(String, DateTime<Utc>)]) -> StoreResult<()> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for (id, at) in used {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?",
            )
            .bind(micros(*at))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
