//! API keys for PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{PostgresStore, audit};
use crate::store::codec::{PlainColumns, decode_all, not_found, to_json, truncate_to_micros};
use crate::store::keys::{KEY_COLUMNS, key_from_row};
use crate::store::{ApiKeyRecord, AuditRecord, KeyStore, StoreError, StoreResult};

pub(super) async fn bump_revision(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("UPDATE api_key_revision SET revision = revision + 1 WHERE id = 1")
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn create_api_key(&self, key: &ApiKeyRecord, audit: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, name, role, namespace, queues, prefix, secret_hash, \
             created_at, created_by, last_used_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.role)
        .bind(&key.namespace)
        .bind(to_json(&key.queues, "api key queues")?)
        .bind(&key.prefix)
        .bind(&key.secret_hash)
        .bind(truncate_to_micros(key.created_at))
        .bind(&key.created_by)
        .bind(key.last_used_at.map(truncate_to_micros))
        .bind(key.expires_at.map(truncate_to_micros))
        .bind(key.revoked_at.map(truncate_to_micros))
        .execute(&mut *tx)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists {
                resource: "api key",
                id: key.id.clone(),
            },
            _ => error.into(),
        })?;
        bump_revision(&mut tx).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
        ))
        .fetch_all(self.pool())
        .await?;
        decode_all(&rows, key_from_row)
    }

    async fn find_api_key(&self, secret_hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE secret_hash = $1"
        ))
        .bind(secret_hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn revoke_api_key(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<ApiKeyRecord> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(truncate_to_micros(at))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let key = row
            .as_ref()
            .map(key_from_row)
            .transpose()?
            .ok_or_else(|| not_found("api key", id))?;
        bump_revision(&mut tx).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn api_key_revision(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT revision FROM api_key_revision WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        row.int("revision")
    }

    async fn touch_api_keys(&self, used: &[(String, DateTime<Utc>)]) -> StoreResult<()> {
        if used.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = used.iter().map(|(id, _)| id.clone()).collect();
        let times: Vec<DateTime<Utc>> =
            used.iter().map(|(_, at)| truncate_to_micros(*at)).collect();
        sqlx::query(
            "UPDATE api_keys AS k SET last_used_at = GREATEST(k.last_used_at, u.at) \
             FROM UNNEST($1::text[], $2::timestamptz[]) AS u(id, at) WHERE k.id = u.id",
        )
        .bind(&ids)
        .bind(&times)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
