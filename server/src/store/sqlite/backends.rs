//! [`BackendStore`] for the embedded store.

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;

use super::{
    SqliteStore, Table, check_stored_revision, micros, now, require_absent,
    unique_as_already_exists,
};
use crate::store::codec::{
    already_exists, backend_from_row, not_found, to_json, truncate_to_micros,
};
use crate::store::sealed;
use crate::store::{
    BackendRecord, BackendState, BackendStore, Created, IdempotencyKey, Page, PageQuery,
    StoreResult,
};

/// Columns of a backend row, selected from the alias `b`.
pub(super) const BACKEND_COLUMNS: &str = "b.id, b.name, b.backend_type, b.base_url, b.api_key, \
     b.priority, b.max_concurrency, b.request_timeout_ms, b.labels, b.health, b.models, \
     b.last_error, b.last_sync_at, b.latency_ms, b.revision, b.created_at, b.updated_at";
const REVISION: &str = "SELECT revision FROM backends WHERE id = ?";

const BACKENDS: Table<BackendRecord> = Table {
    resource: "backend",
    columns: BACKEND_COLUMNS,
    from: "backends b",
    key: "b.id",
    order: "b.name",
    decode: backend_from_row,
    page_key: |backend| backend.name.clone(),
};

#[async_trait]
impl BackendStore for SqliteStore {
    async fn create_backend(
        &self,
        backend: BackendRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<BackendRecord>> {
        let fetch =
            async |conn: &mut SqliteConnection, key: &str| self.fetch(conn, &BACKENDS, key).await;
        let insert = async |tx: &mut SqliteConnection| {
            let unique_id = "SELECT 1 FROM backends WHERE id = ?";
            require_absent(&mut *tx, unique_id, ("backend", &backend.id)).await?;
            let unique_name = "SELECT 1 FROM backends WHERE name = ?";
            require_absent(&mut *tx, unique_name, ("backend", &backend.name)).await?;
            let created_at = now();
            let record = BackendRecord {
                revision: 1,
                created_at,
                updated_at: created_at,
                state: BackendState {
                    last_sync_at: backend.state.last_sync_at.map(truncate_to_micros),
                    ..backend.state
                },
                ..backend
            };
            sqlx::query(
                "INSERT INTO backends (id, name, backend_type, base_url, api_key, priority, \
                 max_concurrency, request_timeout_ms, labels, health, models, last_error, \
                 last_sync_at, latency_ms, revision, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&record.id)
            .bind(&record.name)
            .bind(&record.backend_type)
            .bind(&record.base_url)
            .bind(sealed::seal_api_key(
                &self.secrets,
                &record.id,
                record.api_key.as_deref(),
            ))
            .bind(record.priority)
            .bind(record.max_concurrency)
            .bind(record.request_timeout_ms)
            .bind(to_json(&record.labels, "backend labels")?)
            .bind(&record.state.health)
            .bind(to_json(&record.state.models, "backend models")?)
            .bind(&record.state.last_error)
            .bind(record.state.last_sync_at.map(micros))
            .bind(record.state.latency_ms)
            .bind(record.revision)
            .bind(micros(record.created_at))
            .bind(micros(record.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(unique_as_already_exists("backend", &record.id))?;
            let key = record.id.clone();
            Ok((record, key))
        };
        self.create_once(idempotency.as_ref(), fetch, insert).await
    }

    async fn get_backend(&self, id: &str) -> StoreResult<BackendRecord> {
        self.get(&BACKENDS, id).await
    }

    async fn list_backends(&self, page: PageQuery) -> StoreResult<Page<BackendRecord>> {
        self.list(&BACKENDS, page).await
    }

    async fn update_backend(&self, backend: BackendRecord) -> StoreResult<BackendRecord> {
        let mut tx = self.write_tx().await?;
        let key = ("backend", backend.id.as_str());
        check_stored_revision(&mut tx, REVISION, key, Some(backend.revision)).await?;
        let name_taken = sqlx::query("SELECT 1 FROM backends WHERE name = ? AND id <> ?")
            .bind(&backend.name)
            .bind(&backend.id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if name_taken {
            return Err(already_exists("backend", backend.name));
        }
        sqlx::query(
            "UPDATE backends SET name = ?, backend_type = ?, base_url = ?, api_key = ?, \
             priority = ?, max_concurrency = ?, request_timeout_ms = ?, labels = ?, \
             revision = revision + 1, updated_at = ? WHERE id = ?",
        )
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
        .bind(to_json(&backend.labels, "backend labels")?)
        .bind(micros(now()))
        .bind(&backend.id)
        .execute(&mut *tx)
        .await
        .map_err(unique_as_already_exists("backend", &backend.name))?;
        let record = self.fetch(&mut tx, &BACKENDS, &backend.id).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn set_backend_state(&self, id: &str, state: BackendState) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(
            "UPDATE backends SET health = ?, models = ?, last_error = ?, last_sync_at = ?, \
             latency_ms = ? WHERE id = ?",
        )
        .bind(&state.health)
        .bind(to_json(&state.models, "backend models")?)
        .bind(&state.last_error)
        .bind(state.last_sync_at.map(micros))
        .bind(state.latency_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(not_found("backend", id));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_backend(&self, id: &str, expected_revision: Option<i64>) -> StoreResult<()> {
        // Pool memberships go with it (ON DELETE CASCADE).
        let delete = "DELETE FROM backends WHERE id = ?";
        self.delete_revision(delete, REVISION, ("backend", id), expected_revision)
            .await
    }
}
