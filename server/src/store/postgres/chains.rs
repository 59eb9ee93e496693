//! [`ChainStore`] for PostgreSQL: immutable versions under a head that
//! names the latest one and whether the chain is deleted.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::idempotency::record_idempotent_version;
use super::{PostgresStore, audit, fetch_page, now};
use crate::store::codec::{
    PlainColumns, already_exists, chain_from_row, conflict, decode_all, into_page, not_found,
    page_limits, versions_before,
};
use crate::store::{
    AuditRecord, ChainRecord, ChainStore, Created, IdempotencyKey, Page, PageQuery, StoreError,
    StoreResult,
};

/// Columns of a chain version joined with its head (`v` and `h`).
macro_rules! chain_columns {
    () => {
        "v.id, v.version, v.definition, h.created_at AS chain_created_at, \
         v.created_at AS version_created_at"
    };
}

/// A chain version, live or deleted.
async fn fetch_chain_version(
    conn: &mut PgConnection,
    namespace: &str,
    id: &str,
    version: i64,
) -> StoreResult<ChainRecord> {
    let row = sqlx::query(concat!(
        "SELECT ",
        chain_columns!(),
        " FROM chain_versions v JOIN chain_heads h ON h.namespace = v.namespace AND h.id = v.id \
         WHERE v.namespace = $3 AND v.id = $1 AND v.version = $2"
    ))
    .bind(id)
    .bind(version)
    .bind(namespace)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found("chain version", format!("{id}@{version}")))?;
    chain_from_row(&row)
}

/// The version an earlier request wrote, given its chain id and version.
async fn replayed_version(
    conn: &mut PgConnection,
    namespace: &str,
    (id, version): (String, Option<i64>),
) -> StoreResult<ChainRecord> {
    let version = version.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "chain {id:?} has no recorded version for a request"
        ))
    })?;
    fetch_chain_version(conn, namespace, &id, version).await
}

/// The latest version of a live chain, its head locked for the rest of the
/// transaction; `NotFound` for a missing or deleted chain, `Conflict` when
/// it is not `expected`.
async fn lock_live_head(
    conn: &mut PgConnection,
    namespace: &str,
    id: &str,
    expected: Option<i64>,
) -> StoreResult<i64> {
    let row = sqlx::query(
        "SELECT latest_version, deleted FROM chain_heads \
         WHERE namespace = $1 AND id = $2 FOR UPDATE",
    )
    .bind(namespace)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    let latest = match row {
        Some(row) if !row.flag("deleted")? => row.int("latest_version")?,
        _ => return Err(not_found("chain", id)),
    };
    match expected {
        Some(expected) if expected != latest => Err(conflict("chain", id, expected, latest)),
        _ => Ok(latest),
    }
}

/// Inserts one chain version and returns it as stored, recording it for
/// the request's idempotency key.
async fn insert_chain_version(
    conn: &mut PgConnection,
    (namespace, id, version): (&str, &str, i64),
    definition: &[u8],
    created_at: DateTime<Utc>,
    idempotency: Option<&IdempotencyKey>,
) -> StoreResult<ChainRecord> {
    sqlx::query(
        "INSERT INTO chain_versions (namespace, id, version, definition, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(namespace)
    .bind(id)
    .bind(version)
    .bind(definition)
    .bind(created_at)
    .execute(&mut *conn)
    .await?;
    let record = fetch_chain_version(conn, namespace, id, version).await?;
    if let Some(key) = idempotency {
        record_idempotent_version(conn, key, version).await?;
    }
    Ok(record)
}

#[async_trait]
impl ChainStore for PostgresStore {
    async fn create_chain(
        &self,
        namespace: &str,
        id: &str,
        definition: Vec<u8>,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<ChainRecord>> {
        let insert = async |tx: &mut PgConnection| {
            let created_at = now();
            // A new id starts at version 1; a deleted one comes back to life
            // with the next number. A live one matches the WHERE of neither
            // branch, so nothing is returned. Concurrent creators serialize
            // on the row.
            let version: Option<i64> = sqlx::query_scalar(
                "INSERT INTO chain_heads AS h (namespace, id, latest_version, created_at, deleted) \
                 VALUES ($3, $1, 1, $2, FALSE) \
                 ON CONFLICT (namespace, id) DO UPDATE SET latest_version = h.latest_version + 1, \
                 created_at = EXCLUDED.created_at, deleted = FALSE \
                 WHERE h.deleted RETURNING h.latest_version",
            )
            .bind(id)
            .bind(created_at)
            .bind(namespace)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(version) = version else {
                return Err(already_exists("chain", id));
            };
            let key = idempotency.as_ref();
            insert_chain_version(tx, (namespace, id, version), &definition, created_at, key).await
        };
        let key = (idempotency.as_ref(), id);
        let replayed =
            async |tx: &mut PgConnection, prior| replayed_version(tx, namespace, prior).await;
        self.create_once(key, audit, replayed, insert).await
    }

    async fn get_chain(
        &self,
        namespace: &str,
        id: &str,
        version: Option<i64>,
        include_deleted: bool,
    ) -> StoreResult<ChainRecord> {
        let row = sqlx::query(concat!(
            "SELECT h.deleted, h.latest_version, ",
            chain_columns!(),
            " FROM chain_heads h LEFT JOIN chain_versions v \
             ON v.namespace = h.namespace AND v.id = h.id \
               AND v.version = COALESCE($2, h.latest_version) \
             WHERE h.namespace = $3 AND h.id = $1"
        ))
        .bind(id)
        .bind(version)
        .bind(namespace)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("chain", id))?;
        if row.flag("deleted")? && !include_deleted {
            return Err(not_found("chain", id));
        }
        // The LEFT JOIN leaves the version columns NULL for a missing version.
        if row.optional_int("version")?.is_none() {
            let version = version.unwrap_or(row.int("latest_version")?);
            return Err(not_found("chain version", format!("{id}@{version}")));
        }
        chain_from_row(&row)
    }

    async fn list_chains(
        &self,
        namespace: &str,
        page: PageQuery,
    ) -> StoreResult<Page<ChainRecord>> {
        let mut conn = self.pool.acquire().await?;
        let sql = concat!(
            "SELECT ",
            chain_columns!(),
            " FROM chain_heads h JOIN chain_versions v \
             ON v.namespace = h.namespace AND v.id = h.id AND v.version = h.latest_version \
             WHERE h.namespace = $1 AND NOT h.deleted AND h.id > $2 ORDER BY h.id LIMIT $3"
        );
        fetch_page(
            &mut conn,
            sql,
            Some(namespace),
            &page,
            chain_from_row,
            |c| c.id.clone(),
        )
        .await
    }

    async fn list_chain_versions(
        &self,
        namespace: &str,
        id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<ChainRecord>> {
        let before = versions_before(&page)?.unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await?;
        let live = sqlx::query_scalar::<_, bool>(
            "SELECT NOT deleted FROM chain_heads WHERE namespace = $1 AND id = $2",
        )
        .bind(namespace)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or(false);
        if !live {
            return Err(not_found("chain", id));
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            chain_columns!(),
            " FROM chain_versions v JOIN chain_heads h ON h.namespace = v.namespace AND h.id = v.id \
             WHERE v.namespace = $4 AND v.id = $1 AND v.version < $2 \
             ORDER BY v.version DESC LIMIT $3"
        ))
        .bind(id)
        .bind(before)
        .bind(page_limits(&page).1)
        .bind(namespace)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = decode_all(&rows, chain_from_row)?;
        Ok(into_page(items, &page, |c| c.version.to_string()))
    }

    async fn update_chain(
        &self,
        namespace: &str,
        id: &str,
        definition: Vec<u8>,
        expected_version: Option<i64>,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<ChainRecord>> {
        let insert = async |tx: &mut PgConnection| {
            let version = lock_live_head(tx, namespace, id, expected_version).await? + 1;
            sqlx::query(
                "UPDATE chain_heads SET latest_version = $2 WHERE namespace = $3 AND id = $1",
            )
            .bind(id)
            .bind(version)
            .bind(namespace)
            .execute(&mut *tx)
            .await?;
            let key = idempotency.as_ref();
            insert_chain_version(tx, (namespace, id, version), &definition, now(), key).await
        };
        let key = (idempotency.as_ref(), id);
        let replayed =
            async |tx: &mut PgConnection, prior| replayed_version(tx, namespace, prior).await;
        self.create_once(key, audit, replayed, insert).await
    }

    async fn delete_chain(
        &self,
        namespace: &str,
        id: &str,
        expected_version: Option<i64>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        lock_live_head(&mut tx, namespace, id, expected_version).await?;
        sqlx::query("UPDATE chain_heads SET deleted = TRUE WHERE namespace = $1 AND id = $2")
            .bind(namespace)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
