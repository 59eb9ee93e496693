//! [`PoolStore`] for PostgreSQL: pools and their members.

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use super::backends::backend_columns;
use super::models::model_columns;
use super::{
    PostgresStore, Table, fetch_page, now, on_foreign_key_violation, on_unique_violation, require,
};
use crate::store::codec::{backend_from_row, model_from_row, pool_from_row, refuse_builtin_pool};
use crate::store::{
    BackendRecord, Created, IdempotencyKey, ModelRecord, Page, PageQuery, PoolRecord, PoolStore,
    StoreResult,
};

/// Columns of a pool row, selected from the alias `p`.
macro_rules! pool_columns {
    () => {
        "p.id, p.description, p.purpose, p.created_at"
    };
}

const POOL_EXISTS: &str = "SELECT 1 FROM pools WHERE id = $1";
const BACKEND_EXISTS: &str = "SELECT 1 FROM backends WHERE id = $1";
const MODEL_EXISTS: &str = "SELECT 1 FROM models WHERE name = $1";

const POOLS: Table<PoolRecord> = Table {
    resource: "pool",
    columns: pool_columns!(),
    from: "pools p",
    key: "p.id",
    order: "p.id",
    decode: |row, _| pool_from_row(row),
    page_key: |pool| pool.id.clone(),
};

impl PostgresStore {
    /// A page of the members `sql` selects of the `parent` that
    /// `parent_exists` finds (`NotFound` if it does not).
    async fn list_members<T>(
        &self,
        (parent_exists, parent): (&str, (&'static str, &str)),
        sql: &str,
        page: &PageQuery,
        decode: impl Fn(&PgRow) -> StoreResult<T>,
        key: impl Fn(&T) -> String,
    ) -> StoreResult<Page<T>> {
        let mut tx = self.pool.begin().await?;
        require(&mut tx, parent_exists, parent).await?;
        let members = fetch_page(&mut tx, sql, Some(parent.1), page, decode, key).await?;
        tx.commit().await?;
        Ok(members)
    }

    /// Adds a member (idempotent) once both ends are found; the foreign
    /// keys catch an end deleted since the checks.
    async fn add_member(
        &self,
        pool_id: &str,
        (member_exists, member): (&str, (&'static str, &str)),
        (insert, membership): (&str, &'static str),
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        require(&mut tx, POOL_EXISTS, ("pool", pool_id)).await?;
        require(&mut tx, member_exists, member).await?;
        sqlx::query(insert)
            .bind(pool_id)
            .bind(member.1)
            .execute(&mut *tx)
            .await
            .map_err(|err| {
                on_foreign_key_violation(err, membership, &format!("{pool_id}/{}", member.1))
            })?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl PoolStore for PostgresStore {
    async fn create_pool(
        &self,
        pool: PoolRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<PoolRecord>> {
        let fetch = async |conn: &mut PgConnection, key: &str| self.fetch(conn, &POOLS, key).await;
        let insert = async |tx: &mut PgConnection| {
            let row = sqlx::query(concat!(
                "INSERT INTO pools AS p (id, description, purpose, created_at) \
                 VALUES ($1, $2, $3, $4) RETURNING ",
                pool_columns!()
            ))
            .bind(&pool.id)
            .bind(&pool.description)
            .bind(&pool.purpose)
            .bind(now())
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| on_unique_violation(err, "pool", |_| pool.id.clone()))?;
            pool_from_row(&row)
        };
        let key = (idempotency.as_ref(), pool.id.as_str());
        self.create_once(key, fetch, insert).await
    }

    async fn get_pool(&self, id: &str) -> StoreResult<PoolRecord> {
        self.get(&POOLS, id).await
    }

    async fn list_pools(&self, page: PageQuery) -> StoreResult<Page<PoolRecord>> {
        self.list(&POOLS, page).await
    }

    async fn delete_pool(&self, id: &str) -> StoreResult<()> {
        refuse_builtin_pool(id)?;
        // Memberships go with it (ON DELETE CASCADE).
        self.delete_found(
            "DELETE FROM pools WHERE id = $1",
            &[id],
            ("pool", id.to_string()),
        )
        .await
    }

    async fn assign_backend_to_pool(&self, pool_id: &str, backend_id: &str) -> StoreResult<()> {
        let insert = "INSERT INTO pool_backends (pool_id, backend_id) VALUES ($1, $2) \
                      ON CONFLICT (pool_id, backend_id) DO NOTHING";
        let backend = (BACKEND_EXISTS, ("backend", backend_id));
        self.add_member(pool_id, backend, (insert, "pool backend"))
            .await
    }

    async fn remove_backend_from_pool(&self, pool_id: &str, backend_id: &str) -> StoreResult<()> {
        let delete = "DELETE FROM pool_backends WHERE pool_id = $1 AND backend_id = $2";
        let membership = ("pool backend", format!("{pool_id}/{backend_id}"));
        self.delete_found(delete, &[pool_id, backend_id], membership)
            .await
    }

    async fn list_pool_backends(
        &self,
        pool_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<BackendRecord>> {
        let sql = concat!(
            "SELECT ",
            backend_columns!(),
            " FROM pool_backends pb JOIN backends b ON b.id = pb.backend_id \
             WHERE pb.pool_id = $1 AND b.name > $2 ORDER BY b.name LIMIT $3"
        );
        let pool = (POOL_EXISTS, ("pool", pool_id));
        let decode = |row: &_| backend_from_row(row, &self.secrets);
        self.list_members(pool, sql, &page, decode, |b| b.name.clone())
            .await
    }

    async fn list_backend_pools(
        &self,
        backend_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<PoolRecord>> {
        let sql = concat!(
            "SELECT ",
            pool_columns!(),
            " FROM pool_backends pb JOIN pools p ON p.id = pb.pool_id \
             WHERE pb.backend_id = $1 AND p.id > $2 ORDER BY p.id LIMIT $3"
        );
        let backend = (BACKEND_EXISTS, ("backend", backend_id));
        self.list_members(backend, sql, &page, pool_from_row, |p| p.id.clone())
            .await
    }

    async fn assign_model_to_pool(&self, pool_id: &str, model_name: &str) -> StoreResult<()> {
        let insert = "INSERT INTO pool_models (pool_id, model_name) VALUES ($1, $2) \
                      ON CONFLICT (pool_id, model_name) DO NOTHING";
        let model = (MODEL_EXISTS, ("model", model_name));
        self.add_member(pool_id, model, (insert, "pool model"))
            .await
    }

    async fn remove_model_from_pool(&self, pool_id: &str, model_name: &str) -> StoreResult<()> {
        let delete = "DELETE FROM pool_models WHERE pool_id = $1 AND model_name = $2";
        let membership = ("pool model", format!("{pool_id}/{model_name}"));
        self.delete_found(delete, &[pool_id, model_name], membership)
            .await
    }

    async fn list_pool_models(
        &self,
        pool_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<ModelRecord>> {
        let sql = concat!(
            "SELECT ",
            model_columns!(),
            " FROM pool_models pm JOIN models m ON m.name = pm.model_name \
             WHERE pm.pool_id = $1 AND m.name > $2 ORDER BY m.name LIMIT $3"
        );
        let pool = (POOL_EXISTS, ("pool", pool_id));
        self.list_members(pool, sql, &page, model_from_row, |m| m.name.clone())
            .await
    }

    async fn list_model_pools(
        &self,
        model_name: &str,
        page: PageQuery,
    ) -> StoreResult<Page<PoolRecord>> {
        let sql = concat!(
            "SELECT ",
            pool_columns!(),
            " FROM pool_models pm JOIN pools p ON p.id = pm.pool_id \
             WHERE pm.model_name = $1 AND p.id > $2 ORDER BY p.id LIMIT $3"
        );
        let model = (MODEL_EXISTS, ("model", model_name));
        self.list_members(model, sql, &page, pool_from_row, |p| p.id.clone())
            .await
    }
}
