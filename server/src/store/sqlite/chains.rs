//! [`ChainStore`] for the embedded store: immutable versions under a head
//! that names the latest one and whether the chain is deleted.

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;

use super::idempotency::PriorResult;
use super::{
    SqliteStore, audit, check_revision, fetch_page, from_micros, micros, now,
    unique_as_already_exists,
};
use crate::store::codec::{
    PlainColumns, already_exists, chain_from_row, decode_all, into_page, not_found, page_limits,
    versions_before,
};
use crate::store::{
    AuditRecord, ChainRecord, ChainStore, Created, IdempotencyKey, Page, PageQuery, StoreError,
    StoreResult,
};

/// Columns of a chain version joined with its head (`h` = chain_heads,
/// `v` = chain_versions).
const CHAIN_COLUMNS: &str = "v.id, v.version, v.definition, h.created_at AS chain_created_at, \
     v.created_at AS version_created_at, h.deleted";

/// The given version (or the latest) of a chain, deleted or not, with its
/// deleted flag.
async fn fetch_chain(
    conn: &mut SqliteConnection,
    namespace: &str,
    id: &str,
    version: Option<i64>,
) -> StoreResult<(ChainRecord, bool)> {
    let row = sqlx::query(&format!(
        "SELECT {CHAIN_COLUMNS} FROM chain_heads h \
         JOIN chain_versions v ON v.namespace = h.namespace AND v.id = h.id \
         WHERE h.namespace = ? AND h.id = ? AND v.version = COALESCE(?, h.latest_version)"
    ))
    .bind(namespace)
    .bind(id)
    .bind(version)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Ok((chain_from_row(&row)?, row.flag("deleted")?)),
        None => Err(match version {
            Some(version) => not_found("chain version", format!("{id}@{version}")),
            None => not_found("chain", id),
        }),
    }
}

/// The head of a chain: `(latest_version, deleted)`.
async fn chain_head(
    conn: &mut SqliteConnection,
    namespace: &str,
    id: &str,
) -> StoreResult<Option<(i64, bool)>> {
    Ok(sqlx::query_as(
        "SELECT latest_version, deleted FROM chain_heads WHERE namespace = ? AND id = ?",
    )
    .bind(namespace)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The latest version of a live chain; `NotFound` if missing or deleted.
async fn live_chain_version(
    conn: &mut SqliteConnection,
    namespace: &str,
    id: &str,
) -> StoreResult<i64> {
    match chain_head(conn, namespace, id).await? {
        Some((latest, false)) => Ok(latest),
        _ => Err(not_found("chain", id)),
    }
}

/// The chain version a repeated chain write created.
async fn replayed_chain(
    conn: &mut SqliteConnection,
    namespace: &str,
    prior: PriorResult,
) -> StoreResult<ChainRecord> {
    let version = prior.resource_version.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "idempotency record of chain {:?} has no version",
            prior.resource_key
        ))
    })?;
    let (record, _deleted) =
        fetch_chain(conn, namespace, &prior.resource_key, Some(version)).await?;
    Ok(record)
}

/// Inserts version `version` of chain `id`.
async fn insert_version(
    conn: &mut SqliteConnection,
    namespace: &str,
    id: &str,
    version: i64,
    definition: &[u8],
    created_at: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO chain_versions (namespace, id, version, definition, created_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(namespace)
    .bind(id)
    .bind(version)
    .bind(definition)
    .bind(created_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl ChainStore for SqliteStore {
    async fn create_chain(
        &self,
        namespace: &str,
        id: &str,
        definition: Vec<u8>,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<ChainRecord>> {
        let insert = async |tx: &mut SqliteConnection| {
            let created_at = now();
            let version = match chain_head(&mut *tx, namespace, id).await? {
                Some((_, false)) => return Err(already_exists("chain", id)),
                // A deleted chain's id is reused: numbering continues so that a
                // run pinned to an old version never sees a different definition
                // under the same number. The chain itself is new, so is its
                // creation time.
                Some((latest, true)) => {
                    let version = latest + 1;
                    sqlx::query(
                        "UPDATE chain_heads SET latest_version = ?, created_at = ?, deleted = 0 \
                         WHERE namespace = ? AND id = ?",
                    )
                    .bind(version)
                    .bind(micros(created_at))
                    .bind(namespace)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    version
                }
                None => {
                    sqlx::query(
                        "INSERT INTO chain_heads (namespace, id, latest_version, created_at, deleted) \
                         VALUES (?, ?, 1, ?, 0)",
                    )
                    .bind(namespace)
                    .bind(id)
                    .bind(micros(created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(unique_as_already_exists("chain", id))?;
                    1
                }
            };
            insert_version(
                &mut *tx,
                namespace,
                id,
                version,
                &definition,
                micros(created_at),
            )
            .await?;
            let record = ChainRecord {
                id: id.to_string(),
                version,
                definition,
                created_at,
                updated_at: created_at,
            };
            Ok((record, (id.to_string(), Some(version))))
        };
        let replayed =
            async |tx: &mut SqliteConnection, prior| replayed_chain(tx, namespace, prior).await;
        self.create_once((idempotency.as_ref(), audit), replayed, insert)
            .await
    }

    async fn get_chain(
        &self,
        namespace: &str,
        id: &str,
        version: Option<i64>,
        include_deleted: bool,
    ) -> StoreResult<ChainRecord> {
        let mut conn = self.reader.acquire().await?;
        match fetch_chain(&mut conn, namespace, id, version).await? {
            (_, true) if !include_deleted => Err(not_found("chain", id)),
            (record, _) => Ok(record),
        }
    }

    async fn list_chains(
        &self,
        namespace: &str,
        page: PageQuery,
    ) -> StoreResult<Page<ChainRecord>> {
        let mut conn = self.reader.acquire().await?;
        let sql = format!(
            "SELECT {CHAIN_COLUMNS} FROM chain_heads h \
             JOIN chain_versions v \
               ON v.namespace = h.namespace AND v.id = h.id AND v.version = h.latest_version \
             WHERE h.namespace = ?1 AND h.deleted = 0 AND (?2 IS NULL OR h.id > ?2) \
             ORDER BY h.id LIMIT ?3"
        );
        fetch_page(
            &mut conn,
            &sql,
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
        let before_version = versions_before(&page)?;
        let mut tx = self.read_tx().await?;
        live_chain_version(&mut tx, namespace, id).await?;
        let rows = sqlx::query(&format!(
            "SELECT {CHAIN_COLUMNS} FROM chain_heads h \
             JOIN chain_versions v ON v.namespace = h.namespace AND v.id = h.id \
             WHERE h.namespace = ?1 AND h.id = ?2 AND (?3 IS NULL OR v.version < ?3) \
             ORDER BY v.version DESC LIMIT ?4"
        ))
        .bind(namespace)
        .bind(id)
        .bind(before_version)
        .bind(page_limits(&page).1)
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
        let insert = async |tx: &mut SqliteConnection| {
            let latest = live_chain_version(&mut *tx, namespace, id).await?;
            check_revision("chain", id, expected_version, latest)?;
            let version = latest + 1;
            let updated_at = now();
            let chain_created_at: i64 = sqlx::query_scalar(
                "UPDATE chain_heads SET latest_version = ? WHERE namespace = ? AND id = ? \
                 RETURNING created_at",
            )
            .bind(version)
            .bind(namespace)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            insert_version(
                &mut *tx,
                namespace,
                id,
                version,
                &definition,
                micros(updated_at),
            )
            .await?;
            let record = ChainRecord {
                id: id.to_string(),
                version,
                definition,
                created_at: from_micros(chain_created_at)?,
                updated_at,
            };
            Ok((record, (id.to_string(), Some(version))))
        };
        let replayed =
            async |tx: &mut SqliteConnection, prior| replayed_chain(tx, namespace, prior).await;
        self.create_once((idempotency.as_ref(), audit), replayed, insert)
            .await
    }

    async fn delete_chain(
        &self,
        namespace: &str,
        id: &str,
        expected_version: Option<i64>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let latest = live_chain_version(&mut tx, namespace, id).await?;
        check_revision("chain", id, expected_version, latest)?;
        sqlx::query("UPDATE chain_heads SET deleted = 1 WHERE namespace = ? AND id = ?")
            .bind(namespace)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
