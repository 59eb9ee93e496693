//! [`BackendStore`] for PostgreSQL.

use async_trait::async_trait;
use chrono::SubsecRound;
use sqlx::PgConnection;
use sqlx::types::Json;

use super::{PostgresStore, Table, now, on_unique_violation, revision_mismatch};
use crate::store::codec::{backend_from_row, not_found};
use crate::store::sealed;
use crate::store::{
    BackendRecord, BackendState, BackendStore, Created, IdempotencyKey, Page, PageQuery,
    StoreResult,
};

/// Columns of a backend row, selected from the alias `b`.
macro_rules! backend_columns {
    () => {
        "b.id, b.name, b.backend_type, b.base_url, b.api_key, b.priority, b.max_concurrency, \
         b.request_timeout_ms, b.labels, b.health, b.models, b.last_error, b.last_sync_at, \
         b.latency_ms, b.revision, b.created_at, b.updated_at"
    };
}
pub(super) use backend_columns;

const REVISION: &str = "SELECT revision FROM backends WHERE id = $1";

const BACKENDS: Table<BackendRecord> = Table {
    resource: "backend",
    columns: backend_columns!(),
    from: "backends b",
    key: "b.id",
    order: "b.name",
    decode: backend_from_row,
    page_key: |backend| backend.name.clone(),
};

#[async_trait]
impl BackendStore for PostgresStore {
    async fn create_backend(
        &self,
        backend: BackendRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<BackendRecord>> {
        let fetch =
            async |conn: &mut PgConnection, key: &str| self.fetch(conn, &BACKENDS, key).await;
        let insert = async |tx: &mut PgConnection| {
            let created_at = now();
            let row = sqlx::query(concat!(
                "INSERT INTO backends AS b (id, name, backend_type, base_url, api_key, priority, \
                 max_concurrency, request_timeout_ms, labels, health, models, last_error, \
                 last_sync_at, latency_ms, revision, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15, $15) \
                 RETURNING ",
                backend_columns!()
            ))
            .bind(&backend.id)
            .bind(&backend.name)
            .bind(&backend.backend_type)
            .bind(&backend.base_url)
            .bind(sealed::seal_api_key(
                &self.secrets,
                &backend.id,
                backend.api_key.as_deref(),
            ))
            .bind(backend.priority)
            .bind(backend.max_concurrency)
            .bind(backend.request_timeout_ms)
            .bind(Json(&backend.labels))
            .bind(&backend.state.health)
            .bind(&backend.state.models)
            .bind(&backend.state.last_error)
            .bind(backend.state.last_sync_at.map(|at| at.trunc_subsecs(6)))
            .bind(backend.state.latency_ms)
            .bind(created_at)
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| {
                on_unique_violation(err, "backend", |constraint| {
                    if constraint == Some("backends_name_key") {
                        backend.name.clone()
                    } else {
                        backend.id.clone()
                    }
                })
            })?;
            backend_from_row(&row, &self.secrets)
        };
        let key = (idempotency.as_ref(), backend.id.as_str());
        self.create_once(key, fetch, insert).await
    }

    async fn get_backend(&self, id: &str) -> StoreResult<BackendRecord> {
        self.get(&BACKENDS, id).await
    }

    async fn list_backends(&self, page: PageQuery) -> StoreResult<Page<BackendRecord>> {
        self.list(&BACKENDS, page).await
    }

    async fn update_backend(&self, backend: BackendRecord) -> StoreResult<BackendRecord> {
        let mut tx = self.pool.begin().await?;
        // A concurrent update of the same row makes this wait, then re-check
        // the revision against the committed row.
        let row = sqlx::query(concat!(
            "UPDATE backends AS b SET name = $3, backend_type = $4, base_url = $5, api_key = $6, \
             priority = $7, max_concurrency = $8, request_timeout_ms = $9, labels = $10, \
             revision = b.revision + 1, updated_at = $11 \
             WHERE b.id = $1 AND b.revision = $2 RETURNING ",
            backend_columns!()
        ))
        .bind(&backend.id)
        .bind(backend.revision)
        .bind(&backend.name)
        .bind(&backend.backend_type)
        .bind(&backend.base_url)
        .bind(sealed::seal_api_key(
            &self.secrets,
            &backend.id,
            backend.api_key.as_deref(),
        ))
        .bind(backend.priority)
        .bind(backend.max_concurrency)
        .bind(backend.request_timeout_ms)
        .bind(Json(&backend.labels))
        .bind(now())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| on_unique_violation(err, "backend", |_| backend.name.clone()))?;
        let Some(row) = row else {
            let key = ("backend", backend.id.as_str());
            return Err(revision_mismatch(&mut tx, REVISION, key, backend.revision).await);
        };
        let record = backend_from_row(&row, &self.secrets)?;
        tx.commit().await?;
        Ok(record)
    }

    async fn set_backend_state(&self, id: &str, state: BackendState) -> StoreResult<()> {
        let updated = sqlx::query(
            "UPDATE backends SET health = $2, models = $3, last_error = $4, last_sync_at = $5, \
             latency_ms = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(&state.health)
        .bind(&state.models)
        .bind(&state.last_error)
        .bind(state.last_sync_at.map(|at| at.trunc_subsecs(6)))
        .bind(state.latency_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(not_found("backend", id));
        }
        Ok(())
    }

    async fn delete_backend(&self, id: &str, expected_revision: Option<i64>) -> StoreResult<()> {
        // Pool memberships go with it (ON DELETE CASCADE).
        let delete = "DELETE FROM backends WHERE id = $1 AND ($2::BIGINT IS NULL OR revision = $2)";
        self.delete_revision(delete, REVISION, ("backend", id), expected_revision)
            .await
    }
}
