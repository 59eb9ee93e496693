//! [`HookStore`] for PostgreSQL.

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::types::Json;

use super::{PostgresStore, Table, now, on_unique_violation, revision_mismatch};
use crate::store::codec::hook_from_row;
use crate::store::sealed;
use crate::store::{Created, HookRecord, HookStore, IdempotencyKey, Page, PageQuery, StoreResult};

/// Columns of a hook row, selected from the alias `h`.
macro_rules! hook_columns {
    () => {
        "h.name, h.description, h.url, h.method, h.timeout_ms, h.headers, h.secret_headers, \
         h.queue, h.revision, h.created_at, h.updated_at"
    };
}

const REVISION: &str = "SELECT revision FROM hooks WHERE name = $1";

const HOOKS: Table<HookRecord> = Table {
    resource: "hook",
    columns: hook_columns!(),
    from: "hooks h",
    key: "h.name",
    order: "h.name",
    decode: hook_from_row,
    page_key: |hook| hook.name.clone(),
};

impl PostgresStore {
    /// The secret headers of `hook`, sealed, as the column keeps them.
    fn sealed_headers(&self, hook: &HookRecord) -> StoreResult<Json<serde_json::Value>> {
        let sealed = sealed::seal_headers(&self.secrets, &hook.name, &hook.secret_headers)?;
        Ok(Json(sealed))
    }
}

#[async_trait]
impl HookStore for PostgresStore {
    async fn create_hook(
        &self,
        hook: HookRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<HookRecord>> {
        let fetch = async |conn: &mut PgConnection, key: &str| self.fetch(conn, &HOOKS, key).await;
        let insert = async |tx: &mut PgConnection| {
            let row = sqlx::query(concat!(
                "INSERT INTO hooks AS h (name, description, url, method, timeout_ms, headers, \
                 secret_headers, queue, revision, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9) RETURNING ",
                hook_columns!()
            ))
            .bind(&hook.name)
            .bind(&hook.description)
            .bind(&hook.url)
            .bind(&hook.method)
            .bind(hook.timeout_ms)
            .bind(Json(&hook.headers))
            .bind(self.sealed_headers(&hook)?)
            .bind(&hook.queue)
            .bind(now())
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| on_unique_violation(err, "hook", |_| hook.name.clone()))?;
            hook_from_row(&row, &self.secrets)
        };
        let key = (idempotency.as_ref(), hook.name.as_str());
        self.create_once(key, fetch, insert).await
    }

    async fn get_hook(&self, name: &str) -> StoreResult<HookRecord> {
        self.get(&HOOKS, name).await
    }

    async fn list_hooks(&self, page: PageQuery) -> StoreResult<Page<HookRecord>> {
        self.list(&HOOKS, page).await
    }

    async fn update_hook(&self, hook: HookRecord) -> StoreResult<HookRecord> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(concat!(
            "UPDATE hooks AS h SET description = $3, url = $4, method = $5, timeout_ms = $6, \
             headers = $7, secret_headers = $8, queue = $9, revision = h.revision + 1, \
             updated_at = $10 WHERE h.name = $1 AND h.revision = $2 RETURNING ",
            hook_columns!()
        ))
        .bind(&hook.name)
        .bind(hook.revision)
        .bind(&hook.description)
        .bind(&hook.url)
        .bind(&hook.method)
        .bind(hook.timeout_ms)
        .bind(Json(&hook.headers))
        .bind(self.sealed_headers(&hook)?)
        .bind(&hook.queue)
        .bind(now())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let key = ("hook", hook.name.as_str());
            return Err(revision_mismatch(&mut tx, REVISION, key, hook.revision).await);
        };
        let record = hook_from_row(&row, &self.secrets)?;
        tx.commit().await?;
        Ok(record)
    }

    async fn delete_hook(&self, name: &str, expected_revision: Option<i64>) -> StoreResult<()> {
        let delete = "DELETE FROM hooks WHERE name = $1 AND ($2::BIGINT IS NULL OR revision = $2)";
        self.delete_revision(delete, REVISION, ("hook", name), expected_revision)
            .await
    }
}
