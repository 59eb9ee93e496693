//! [`PoolStore`] for the embedded store: pools and their members.

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use super::backends::BACKEND_COLUMNS;
use super::models::MODEL_COLUMNS;
use super::{
    SqliteStore, Table, delete_existing, fetch_page, micros, now, require, require_absent,
    unique_as_already_exists,
};
use crate::store::codec::{backend_from_row, model_from_row, pool_from_row, refuse_builtin_pool};
use crate::store::{
    BackendRecord, Created, IdempotencyKey, ModelRecord, Page, PageQuery, PoolRecord, PoolStore,
    StoreResult,
};

/// Columns of a pool row, selected from the alias `p`.
pub(super) const POOL_COLUMNS: &str = "p.id, p.description, p.purpose, p.created_at";
const POOL_EXISTS: &str = "SELECT 1 FROM pools WHERE id = ?";
const BACKEND_EXISTS: &str = "SELECT 1 FROM backends WHERE id = ?";
const MODEL_EXISTS: &str = "SELECT 1 FROM models WHERE name = ?";

const POOLS: Table<PoolRecord> = Table {
    resource: "pool",
    columns: POOL_COLUMNS,
    from: "pools p",
    key: "p.id",
    order: "p.id",
    decode: |row, _| pool_from_row(row),
    page_key: |pool| pool.id.clone(),
};

impl SqliteStore {
    /// A page of the members `sql` selects of the `parent` that
    /// `parent_exists` finds (`NotFound` if it does not), in one snapshot.
    async fn list_members<T>(
        &self,
        (parent_exists, parent): (&str, (&'static str, &str)),
        sql: &str,
        page: &PageQuery,
        decode: impl Fn(&SqliteRow) -> StoreResult<T>,
        key: impl Fn(&T) -> String,
    ) -> StoreResult<Page<T>> {
        let mut tx = self.read_tx().await?;
        require(&mut tx, parent_exists, parent).await?;
        let members = fetch_page(&mut tx, sql, Some(parent.1), page, decode, key).await?;
        tx.commit().await?;
        Ok(members)
    }

    /// Adds a member (idempotent) once both ends are found.
    async fn add_member(
        &self,
        pool_id: &str,
        (member_exists, member): (&str, (&'static str, &str)),
        insert: &str,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        require(&mut tx, POOL_EXISTS, ("pool", pool_id)).await?;
        require(&mut tx, member_exists, member).await?;
        sqlx::query(insert)
            .bind(pool_id)
            .bind(member.1)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a member; `NotFound` if it was not one.
    async fn remove_member(&self, pool_id: &str, member: &str, delete: &str) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let membership = ("pool membership", format!("{member} in {pool_id}"));
        delete_existing(&mut tx, delete, &[pool_id, member], membership).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl PoolStore for SqliteStore {
    async fn create_pool(
        &self,
        pool: PoolRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<PoolRecord>> {
        let fetch =
            async |conn: &mut SqliteConnection, key: &str| self.fetch(conn, &POOLS, key).await;
        let insert = async |tx: &mut SqliteConnection| {
            require_absent(&mut *tx, POOL_EXISTS, ("pool", &pool.id)).await?;
            let record = PoolRecord {
                created_at: now(),
                ..pool
            };
            sqlx::query(
                "INSERT INTO pools (id, description, purpose, created_at) VALUES (?, ?, ?, ?)",
            )
            .bind(&record.id)
            .bind(&record.description)
            .bind(&record.purpose)
            .bind(micros(record.created_at))
            .execute(&mut *tx)
            .await
            .map_err(unique_as_already_exists("pool", &record.id))?;
            let key = record.id.clone();
            Ok((record, key))
        };
        self.create_once(idempotency.as_ref(), fetch, insert).await
    }

    async fn get_pool(&self, id: &str) -> StoreResult<PoolRecord> {
        self.get(&POOLS, id).await
    }

    async fn list_pools(&self, page: PageQuery) -> StoreResult<Page<PoolRecord>> {
        self.list(&POOLS, page).await
    }

    async fn delete_pool(&self, id: &str) -> StoreResult<()> {
        refuse_builtin_pool(id)?;
        let mut tx = self.write_tx().await?;
        let delete = "DELETE FROM pools WHERE id = ?";
        delete_existing(&mut tx, delete, &[id], ("pool", id.to_string())).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn assign_backend_to_pool(&self, pool_id: &str, backend_id: &str) -> StoreResult<()> {
        let insert = "INSERT INTO pool_backends (pool_id, backend_id) VALUES (?, ?) \
                      ON CONFLICT DO NOTHING";
        let backend = (BACKEND_EXISTS, ("backend", backend_id));
        self.add_member(pool_id, backend, insert).await
    }

    async fn remove_backend_from_pool(&self, pool_id: &str, backend_id: &str) -> StoreResult<()> {
        let delete = "DELETE FROM pool_backends WHERE pool_id = ? AND backend_id = ?";
        self.remove_member(pool_id, backend_id, delete).await
    }

    async fn list_pool_backends(
        &self,
        pool_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<BackendRecord>> {
        let sql = format!(
            "SELECT {BACKEND_COLUMNS} FROM backends b \
             JOIN pool_backends pb ON pb.backend_id = b.id \
             WHERE pb.pool_id = ?1 AND (?2 IS NULL OR b.name > ?2) ORDER BY b.name LIMIT ?3"
        );
        let pool = (POOL_EXISTS, ("pool", pool_id));
        let decode = |row: &_| backend_from_row(row, &self.secrets);
        self.list_members(pool, &sql, &page, decode, |b| b.name.clone())
            .await
    }

    async fn list_backend_pools(
        &self,
        backend_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<PoolRecord>> {
        let sql = format!(
            "SELECT {POOL_COLUMNS} FROM pools p \
             JOIN pool_backends pb ON pb.pool_id = p.id \
             WHERE pb.backend_id = ?1 AND (?2 IS NULL OR p.id > ?2) ORDER BY p.id LIMIT ?3"
        );
        let backend = (BACKEND_EXISTS, ("backend", backend_id));
        self.list_members(backend, &sql, &page, pool_from_row, |p| p.id.clone())
            .await
    }

    async fn assign_model_to_pool(&self, pool_id: &str, model_name: &str) -> StoreResult<()> {
        let insert =
            "INSERT INTO pool_models (pool_id, model_name) VALUES (?, ?) ON CONFLICT DO NOTHING";
        let model = (MODEL_EXISTS, ("model", model_name));
        self.add_member(pool_id, model, insert).await
    }

    async fn remove_model_from_pool(&self, pool_id: &str, model_name: &str) -> StoreResult<()> {
        let delete = "DELETE FROM pool_models WHERE pool_id = ? AND model_name = ?";
        self.remove_member(pool_id, model_name, delete).await
    }

    async fn list_pool_models(
        &self,
        pool_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<ModelRecord>> {
        let sql = format!(
            "SELECT {MODEL_COLUMNS} FROM models m \
             JOIN pool_models pm ON pm.model_name = m.name \
             WHERE pm.pool_id = ?1 AND (?2 IS NULL OR m.name > ?2) ORDER BY m.name LIMIT ?3"
        );
        let pool = (POOL_EXISTS, ("pool", pool_id));
        self.list_members(pool, &sql, &page, model_from_row, |m| m.name.clone())
            .await
    }

    async fn list_model_pools(
        &self,
        model_name: &str,
        page: PageQuery,
    ) -> StoreResult<Page<PoolRecord>> {
        let sql = format!(
            "SELECT {POOL_COLUMNS} FROM pools p \
             JOIN pool_models pm ON pm.pool_id = p.id \
             WHERE pm.model_name = ?1 AND (?2 IS NULL OR p.id > ?2) ORDER BY p.id LIMIT ?3"
        );
        let model = (MODEL_EXISTS, ("model", model_name));
        self.list_members(model, &sql, &page, pool_from_row, |p| p.id.clone())
            .await
    }
}
