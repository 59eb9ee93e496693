//! Idempotency keys (AIP-155) for the embedded store: looked up and
//! recorded in the write transaction of the creation they guard.

use chrono::Utc;
use sqlx::sqlite::SqliteConnection;

use super::{SqliteStore, audit, micros};
use crate::store::codec::commit_created;
use crate::store::{AuditRecord, Created, IdempotencyKey, StoreError, StoreResult};

/// The resource an earlier request with the same id created.
pub(super) struct PriorResult {
    pub(super) resource_key: String,
    pub(super) resource_version: Option<i64>,
}

/// Looks up `key`: `None` for a new request id, the earlier result for a
/// repeat with the same payload, `IdempotencyMismatch` for another payload.
pub(super) async fn prior_result(
    conn: &mut SqliteConnection,
    key: Option<&IdempotencyKey>,
) -> StoreResult<Option<PriorResult>> {
    let Some(key) = key else {
        return Ok(None);
    };
    let row: Option<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT request_hash, resource_key, resource_version FROM idempotency_keys \
         WHERE scope = ? AND request_id = ?",
    )
    .bind(&key.scope)
    .bind(&key.request_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Ok(None),
        Some((hash, _, _)) if hash != key.request_hash => Err(StoreError::IdempotencyMismatch {
            request_id: key.request_id.clone(),
        }),
        Some((_, resource_key, resource_version)) => Ok(Some(PriorResult {
            resource_key,
            resource_version,
        })),
    }
}

/// Records the request id in the transaction of the creation it guards.
pub(super) async fn remember_result(
    conn: &mut SqliteConnection,
    key: Option<&IdempotencyKey>,
    resource_key: &str,
    resource_version: Option<i64>,
) -> StoreResult<()> {
    let Some(key) = key else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO idempotency_keys \
         (scope, request_id, request_hash, resource_key, resource_version, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&key.scope)
    .bind(&key.request_id)
    .bind(&key.request_hash)
    .bind(resource_key)
    .bind(resource_version)
    .bind(micros(Utc::now()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl SqliteStore {
    /// Creates a record in one write transaction: for a request seen
    /// before, the record it created (read by `fetch`; no audit row);
    /// otherwise what `insert` writes, remembered under the key and version
    /// it returns, with `audit`'s row.
    pub(super) async fn create_once<T>(
        &self,
        (idempotency, audit): (Option<&IdempotencyKey>, &AuditRecord),
        fetch: impl AsyncFnOnce(&mut SqliteConnection, PriorResult) -> StoreResult<T>,
        insert: impl AsyncFnOnce(&mut SqliteConnection) -> StoreResult<(T, (String, Option<i64>))>,
    ) -> StoreResult<Created<T>> {
        let mut tx = self.write_tx().await?;
        if let Some(prior) = prior_result(&mut tx, idempotency).await? {
            let record = fetch(&mut tx, prior).await?;
            return commit_created(tx, record, true).await;
        }
        let (record, (key, version)) = insert(&mut tx).await?;
        remember_result(&mut tx, idempotency, &key, version).await?;
        audit::insert(&mut tx, audit).await?;
        commit_created(tx, record, false).await
    }
}
