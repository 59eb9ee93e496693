//! [`ModelStore`] for the embedded store.

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;

use super::{
    SqliteStore, Table, delete_existing, micros, now, require_absent, unique_as_already_exists,
};
use crate::store::codec::{model_from_row, to_json};
use crate::store::{
    Created, IdempotencyKey, ModelRecord, ModelStore, Page, PageQuery, StoreResult,
};

/// Columns of a model row, selected from the alias `m`.
pub(super) const MODEL_COLUMNS: &str =
    "m.id, m.name, m.context_length, m.capabilities, m.created_at";

const MODELS: Table<ModelRecord> = Table {
    resource: "model",
    columns: MODEL_COLUMNS,
    from: "models m",
    key: "m.name",
    order: "m.name",
    decode: |row, _| model_from_row(row),
    page_key: |model| model.name.clone(),
};

#[async_trait]
impl ModelStore for SqliteStore {
    async fn create_model(
        &self,
        model: ModelRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<ModelRecord>> {
        let fetch =
            async |conn: &mut SqliteConnection, key: &str| self.fetch(conn, &MODELS, key).await;
        let insert = async |tx: &mut SqliteConnection| {
            let unique = "SELECT 1 FROM models WHERE name = ?";
            require_absent(&mut *tx, unique, ("model", &model.name)).await?;
            let record = ModelRecord {
                created_at: now(),
                ..model
            };
            sqlx::query(
                "INSERT INTO models (name, id, context_length, capabilities, created_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&record.name)
            .bind(&record.id)
            .bind(record.context_length)
            .bind(to_json(&record.capabilities, "model capabilities")?)
            .bind(micros(record.created_at))
            .execute(&mut *tx)
            .await
            .map_err(unique_as_already_exists("model", &record.name))?;
            let key = record.name.clone();
            Ok((record, key))
        };
        self.create_once(idempotency.as_ref(), fetch, insert).await
    }

    async fn get_model(&self, name: &str) -> StoreResult<ModelRecord> {
        self.get(&MODELS, name).await
    }

    async fn list_models(&self, page: PageQuery) -> StoreResult<Page<ModelRecord>> {
        self.list(&MODELS, page).await
    }

    async fn delete_model(&self, name: &str) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        // Pool memberships go with it (ON DELETE CASCADE).
        let delete = "DELETE FROM models WHERE name = ?";
        delete_existing(&mut tx, delete, &[name], ("model", name.to_string())).await?;
        tx.commit().await?;
        Ok(())
    }
}
