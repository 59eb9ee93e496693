//! Idempotency keys (AIP-155) for PostgreSQL: reserved first in the
//! creating transaction, so a concurrent duplicate waits for it.

use sqlx::PgConnection;

use crate::store::codec::{PlainColumns, commit_created};
use crate::store::{AuditRecord, Created, IdempotencyKey, PostgresStore, StoreError, StoreResult};

/// What an idempotency key says about a create.
pub(super) enum Reservation {
    /// First use: the key is now reserved by this transaction.
    Fresh,
    /// Seen before with the same payload: the resource it created.
    Replay {
        resource_key: String,
        resource_version: Option<i64>,
    },
}

/// Reserves `key` for a creation of `resource_key` in `conn`'s transaction,
/// or reports the earlier creation it guarded.
pub(super) async fn reserve(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    resource_key: &str,
) -> StoreResult<Reservation> {
    // A sweeper may delete the key between the insert and the read; a few
    // rounds settle that.
    for _ in 0..3 {
        // An uncommitted duplicate makes this wait; once it commits this is a
        // no-op, once it rolls back this inserts.
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, request_id, request_hash, resource_key) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (scope, request_id) DO NOTHING",
        )
        .bind(&key.scope)
        .bind(&key.request_id)
        .bind(&key.request_hash)
        .bind(resource_key)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Reservation::Fresh);
        }
        // READ COMMITTED: this statement's snapshot sees the committed key.
        let existing = sqlx::query(
            "SELECT request_hash, resource_key, resource_version FROM idempotency_keys \
             WHERE scope = $1 AND request_id = $2",
        )
        .bind(&key.scope)
        .bind(&key.request_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = existing {
            let request_hash = row.text("request_hash")?;
            if request_hash != key.request_hash {
                return Err(StoreError::IdempotencyMismatch {
                    request_id: key.request_id.clone(),
                });
            }
            return Ok(Reservation::Replay {
                resource_key: row.text("resource_key")?,
                resource_version: row.optional_int("resource_version")?,
            });
        }
    }
    Err(StoreError::FailedPrecondition(format!(
        "request_id {:?} is being expired concurrently; retry",
        key.request_id
    )))
}

/// Records which chain version the request guarded by `key` created.
pub(super) async fn record_idempotent_version(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    version: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET resource_version = $3 WHERE scope = $1 AND request_id = $2",
    )
    .bind(&key.scope)
    .bind(&key.request_id)
    .bind(version)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The resource (key and version) an earlier request with `key`'s id
/// created, or `None` (the key now reserved for `resource_key`) for a first
/// request.
pub(super) async fn replayed(
    conn: &mut PgConnection,
    key: Option<&IdempotencyKey>,
    resource_key: &str,
) -> StoreResult<Option<(String, Option<i64>)>> {
    let Some(key) = key else {
        return Ok(None);
    };
    Ok(match reserve(conn, key, resource_key).await? {
        Reservation::Fresh => None,
        Reservation::Replay {
            resource_key,
            resource_version,
        } => Some((resource_key, resource_version)),
    })
}

impl PostgresStore {
    /// Creates a record in one transaction: for a request seen before, the
    /// record it created (read by `fetch` from its key and version);
    /// otherwise what `insert` writes, its key (`resource_key`) reserved
    /// first, with `audit`'s row (a replay writes none).
    pub(super) async fn create_once<T>(
        &self,
        (idempotency, resource_key): (Option<&IdempotencyKey>, &str),
        audit: &AuditRecord,
        fetch: impl AsyncFnOnce(&mut PgConnection, (String, Option<i64>)) -> StoreResult<T>,
        insert: impl AsyncFnOnce(&mut PgConnection) -> StoreResult<T>,
    ) -> StoreResult<Created<T>> {
        let mut tx = self.pool.begin().await?;
        if let Some(prior) = replayed(&mut tx, idempotency, resource_key).await? {
            let record = fetch(&mut tx, prior).await?;
            return Ok(Created {
                record,
                replayed: true,
            });
        }
        let record = insert(&mut tx).await?;
        super::audit::insert(&mut tx, audit).await?;
        commit_created(tx, record, false).await
    }
}
