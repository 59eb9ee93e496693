//! [`HookStore`] for the embedded store.

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;

use super::{
    SqliteStore, Table, check_stored_revision, micros, now, require_absent,
    unique_as_already_exists,
};
use crate::store::codec::{hook_from_row, to_json};
use crate::store::sealed;
use crate::store::{Created, HookRecord, HookStore, IdempotencyKey, Page, PageQuery, StoreResult};

/// Columns of a hook row, selected from the alias `h`.
const HOOK_COLUMNS: &str = "h.name, h.description, h.url, h.method, h.timeout_ms, h.headers, \
     h.secret_headers, h.queue, h.revision, h.created_at, h.updated_at";
const REVISION: &str = "SELECT revision FROM hooks WHERE name = ?";

const HOOKS: Table<HookRecord> = Table {
    resource: "hook",
    columns: HOOK_COLUMNS,
    from: "hooks h",
    key: "h.name",
    order: "h.name",
    decode: hook_from_row,
    page_key: |hook| hook.name.clone(),
};

impl SqliteStore {
    /// The secret headers of `hook`, sealed, as the column keeps them.
    fn sealed_headers(&self, hook: &HookRecord) -> StoreResult<String> {
        let sealed = sealed::seal_headers(&self.secrets, &hook.name, &hook.secret_headers)?;
        to_json(&sealed, "hook secret headers")
    }
}

#[async_trait]
impl HookStore for SqliteStore {
    async fn create_hook(
        &self,
        hook: HookRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<HookRecord>> {
        let fetch =
            async |conn: &mut SqliteConnection, key: &str| self.fetch(conn, &HOOKS, key).await;
        let insert = async |tx: &mut SqliteConnection| {
            let unique = "SELECT 1 FROM hooks WHERE name = ?";
            require_absent(&mut *tx, unique, ("hook", &hook.name)).await?;
            let created_at = now();
            let record = HookRecord {
                revision: 1,
                created_at,
                updated_at: created_at,
                ..hook
            };
            sqlx::query(
                "INSERT INTO hooks (name, description, url, method, timeout_ms, headers, \
                 secret_headers, queue, revision, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&record.name)
            .bind(&record.description)
            .bind(&record.url)
            .bind(&record.method)
            .bind(record.timeout_ms)
            .bind(to_json(&record.headers, "hook headers")?)
            .bind(self.sealed_headers(&record)?)
            .bind(&record.queue)
            .bind(record.revision)
            .bind(micros(record.created_at))
            .bind(micros(record.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(unique_as_already_exists("hook", &record.name))?;
            let key = record.name.clone();
            Ok((record, key))
        };
        self.create_once(idempotency.as_ref(), fetch, insert).await
    }

    async fn get_hook(&self, name: &str) -> StoreResult<HookRecord> {
        self.get(&HOOKS, name).await
    }

    async fn list_hooks(&self, page: PageQuery) -> StoreResult<Page<HookRecord>> {
        self.list(&HOOKS, page).await
    }

    async fn update_hook(&self, hook: HookRecord) -> StoreResult<HookRecord> {
        let mut tx = self.write_tx().await?;
        let key = ("hook", hook.name.as_str());
        check_stored_revision(&mut tx, REVISION, key, Some(hook.revision)).await?;
        sqlx::query(
            "UPDATE hooks SET description = ?, url = ?, method = ?, timeout_ms = ?, \
             headers = ?, secret_headers = ?, queue = ?, revision = revision + 1, \
             updated_at = ? WHERE name = ?",
        )
        .bind(&hook.description)
        .bind(&hook.url)
        .bind(&hook.method)
        .bind(hook.timeout_ms)
        .bind(to_json(&hook.headers, "hook headers")?)
        .bind(self.sealed_headers(&hook)?)
        .bind(&hook.queue)
        .bind(micros(now()))
        .bind(&hook.name)
        .execute(&mut *tx)
        .await?;
        let record = self.fetch(&mut tx, &HOOKS, &hook.name).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn delete_hook(&self, name: &str, expected_revision: Option<i64>) -> StoreResult<()> {
        let delete = "DELETE FROM hooks WHERE name = ?";
        self.delete_revision(delete, REVISION, ("hook", name), expected_revision)
            .await
    }
}
