//! [`ModelStore`] for PostgreSQL.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::{PostgresStore, Table, now, on_unique_violation};
use crate::store::codec::model_from_row;
use crate::store::{
    Created, IdempotencyKey, ModelRecord, ModelStore, Page, PageQuery, StoreResult,
};

/// Columns of a model row, selected from the alias `m`.
macro_rules! model_columns {
    () => {
        "m.id, m.name, m.context_length, m.capabilities, m.created_at"
    };
}
pub(super) use model_columns;

const MODELS: Table<ModelRecord> = Table {
    resource: "model",
    columns: model_columns!(),
    from: "models m",
    key: "m.name",
    order: "m.name",
    decode: |row, _| model_from_row(row),
    page_key: |model| model.name.clone(),
};

#[async_trait]
impl ModelStore for PostgresStore {
    async fn create_model(
        &self,
        model: ModelRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<ModelRecord>> {
        let fetch = async |conn: &mut PgConnection, key: &str| self.fetch(conn, &MODELS, key).await;
        let insert = async |tx: &mut PgConnection| {
            let row = sqlx::query(concat!(
                "INSERT INTO models AS m (id, name, context_length, capabilities, created_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING ",
                model_columns!()
            ))
            .bind(&model.id)
            .bind(&model.name)
            .bind(model.context_length)
            .bind(&model.capabilities)
            .bind(now())
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| {
                on_unique_violation(err, "model", |constraint| {
                    if constraint == Some("models_id_key") {
                        model.id.clone()
                    } else {
                        model.name.clone()
                    }
                })
            })?;
            model_from_row(&row)
        };
        let key = (idempotency.as_ref(), model.name.as_str());
        self.create_once(key, fetch, insert).await
    }

    async fn get_model(&self, name: &str) -> StoreResult<ModelRecord> {
        self.get(&MODELS, name).await
    }

    async fn list_models(&self, page: PageQuery) -> StoreResult<Page<ModelRecord>> {
        self.list(&MODELS, page).await
    }

    async fn delete_model(&self, name: &str) -> StoreResult<()> {
        // Pool memberships go with it (ON DELETE CASCADE).
        let delete = "DELETE FROM models WHERE name = $1";
        self.delete_found(delete, &[name], ("model", name.to_string()))
            .await
    }
}
