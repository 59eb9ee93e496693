//! The statements of every [`Resource`] on SQLite: create, get, list,
//! update and delete, built from the resource's description; backend state
//! and pool memberships.

use async_trait::async_trait;
use sqlx::Sqlite;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};

use super::idempotency::PriorResult;
use super::{
    SqliteStore, audit, check_stored_revision, delete_existing, fetch_one, fetch_page, micros, now,
    require, require_absent, unique_as_already_exists,
};
use crate::store::codec::{already_exists, not_found, to_json};
use crate::store::resource::{
    Link, Membership, Parent, Resource, Resources, Value, qualified, select_list, select_where,
    taken_key, updated_values,
};
use crate::store::{
    AuditRecord, BackendState, Created, IdempotencyKey, Page, PageQuery, PoolRecord, StoreError,
    StoreResult,
};

type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments<'q>>;

/// Binds `value` as SQLite keeps it: times as unix microseconds, JSON
/// documents and lists as JSON text.
fn bind(query: SqliteQuery<'_>, value: Value) -> SqliteQuery<'_> {
    match value {
        Value::Text(text) => query.bind(text),
        Value::OptionalText(text) => query.bind(text),
        Value::Int(int) => query.bind(int),
        Value::OptionalInt(int) => query.bind(int),
        Value::Int32(int) => query.bind(int),
        Value::Time(at) => query.bind(micros(at)),
        Value::OptionalTime(at) => query.bind(at.map(micros)),
        Value::Json(document) => query.bind(document.to_string()),
        Value::Strings(list) => query.bind(serde_json::Value::from(list).to_string()),
    }
}

/// `query` with `values` bound in order.
fn bind_all(query: SqliteQuery<'_>, values: Vec<Value>) -> SqliteQuery<'_> {
    values.into_iter().fold(query, bind)
}

/// Inserts the row of an `R` that writes `values`; `suffix` ends the
/// statement (a conflict clause, or nothing).
pub(super) async fn insert_row<R: Resource>(
    conn: &mut SqliteConnection,
    (values, suffix): (Vec<Value>, &str),
    on_error: impl FnOnce(sqlx::Error) -> StoreError,
) -> StoreResult<()> {
    let placeholders = vec!["?"; R::COLUMNS.len()].join(", ");
    let columns = R::COLUMNS.join(", ");
    let sql = format!(
        "INSERT INTO {} ({columns}) VALUES ({placeholders}) {suffix}",
        R::TABLE
    );
    let query = bind_all(sqlx::query(&sql), values);
    query.execute(conn).await.map_err(on_error)?;
    Ok(())
}

/// `SELECT <column> FROM <table> WHERE <key> = ?`.
fn select_by_key<R: Resource>(column: &str) -> String {
    format!("SELECT {column} FROM {} WHERE {} = ?", R::TABLE, R::KEY)
}

impl SqliteStore {
    /// The `R` keyed `key`, read on `conn`; `NotFound` if none.
    pub(super) async fn fetch<R: Resource>(
        &self,
        conn: &mut SqliteConnection,
        key: &str,
    ) -> StoreResult<R> {
        let sql = select_where::<R>(&format!("{} = ?", qualified::<R>(R::KEY)));
        fetch_one(conn, &sql, (R::NAME, key), self.decoder()).await
    }

    /// Decodes a row of `R`, secrets opened.
    fn decoder<R: Resource>(&self) -> impl Fn(&SqliteRow) -> StoreResult<R> + '_ {
        |row| R::decode(row, &self.secrets)
    }
}

#[async_trait]
impl Resources for SqliteStore {
    async fn list<R: Resource>(&self, namespace: &str, page: PageQuery) -> StoreResult<Page<R>> {
        let order = qualified::<R>(R::ORDER);
        let mut conn = self.reader.acquire().await?;
        let Some(column) = R::NAMESPACE else {
            let sql = select_where::<R>(&format!(
                "(?1 IS NULL OR {order} > ?1) ORDER BY {order} LIMIT ?2"
            ));
            return fetch_page(&mut conn, &sql, None, &page, self.decoder(), R::page_key).await;
        };
        let sql = select_where::<R>(&format!(
            "{} = ?1 AND (?2 IS NULL OR {order} > ?2) ORDER BY {order} LIMIT ?3",
            qualified::<R>(column)
        ));
        let decode = self.decoder();
        fetch_page(&mut conn, &sql, Some(namespace), &page, decode, R::page_key).await
    }

    async fn get<R: Resource>(&self, key: &str) -> StoreResult<R> {
        self.fetch(&mut *self.reader.acquire().await?, key).await
    }

    async fn create<R: Resource>(
        &self,
        record: R,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<R>> {
        let fetch = async |conn: &mut SqliteConnection, prior: PriorResult| {
            self.fetch(conn, &prior.resource_key).await
        };
        let insert = async |tx: &mut SqliteConnection| {
            let record = record.created(now());
            let key = record.key();
            let unique = select_by_key::<R>("1");
            require_absent(&mut *tx, &unique, (R::NAME, &key)).await?;
            let values = record.values(&self.secrets)?;
            for (column, value) in R::COLUMNS.iter().zip(&values) {
                if R::UNIQUE.contains(column) {
                    let unique = format!("SELECT 1 FROM {} WHERE {column} = ?", R::TABLE);
                    let taken = value.as_text().unwrap_or_default();
                    require_absent(&mut *tx, &unique, (R::NAME, taken)).await?;
                }
            }
            let taken = unique_as_already_exists(R::NAME, &key);
            insert_row::<R>(tx, (values, ""), taken).await?;
            Ok((record, (key, None)))
        };
        self.create_once((idempotency.as_ref(), audit), fetch, insert)
            .await
    }

    async fn update<R: Resource>(
        &self,
        record: R,
        revision: i64,
        audit: &AuditRecord,
    ) -> StoreResult<R> {
        let mut tx = self.write_tx().await?;
        let key = &record.key();
        check_stored_revision(
            &mut tx,
            &select_by_key::<R>("revision"),
            (R::NAME, key),
            Some(revision),
        )
        .await?;
        let values = updated_values(&record, &self.secrets)?;
        for (column, value) in values.iter().filter(|(c, _)| R::UNIQUE.contains(c)) {
            let sql = format!(
                "SELECT 1 FROM {} WHERE {column} = ? AND {} <> ?",
                R::TABLE,
                R::KEY
            );
            let taken = value.as_text().unwrap_or_default();
            let found = sqlx::query(&sql).bind(taken).bind(key);
            if found.fetch_optional(&mut *tx).await?.is_some() {
                return Err(already_exists(R::NAME, taken));
            }
        }
        let set: Vec<String> = values.iter().map(|(c, _)| format!("{c} = ?")).collect();
        let sql = format!(
            "UPDATE {} SET {}, revision = revision + 1, updated_at = ? WHERE {} = ?",
            R::TABLE,
            set.join(", "),
            R::KEY
        );
        let query = bind_all(
            sqlx::query(&sql),
            values.into_iter().map(|(_, v)| v).collect(),
        );
        query
            .bind(micros(now()))
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(|err| {
                unique_as_already_exists(R::NAME, &taken_key(&record, &self.secrets))(err)
            })?;
        let stored = self.fetch(&mut tx, key).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn delete<R: Resource>(
        &self,
        key: &str,
        expected: Option<i64>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        check_stored_revision(
            &mut tx,
            &select_by_key::<R>("revision"),
            (R::NAME, key),
            expected,
        )
        .await?;
        let delete = format!("DELETE FROM {} WHERE {} = ?", R::TABLE, R::KEY);
        sqlx::query(&delete).bind(key).execute(&mut *tx).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove<R: Resource>(&self, key: &str, audit: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let delete = format!("DELETE FROM {} WHERE {} = ?", R::TABLE, R::KEY);
        delete_existing(&mut tx, &delete, &[key], (R::NAME, key.to_string())).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn write_backend_state(&self, id: &str, state: BackendState) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(
            "UPDATE backends SET health = ?, models = ?, observed_models = ?, models_at = ?, \
             last_error = ?, last_sync_at = ?, latency_ms = ? WHERE id = ?",
        )
        .bind(&state.health)
        .bind(to_json(&state.models, "backend models")?)
        .bind(to_json(&state.observed_models, "backend observed models")?)
        .bind(state.models_at.map(micros))
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

    async fn add_member<M: Resource>(
        &self,
        link: Link<'_>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let (of, pool_id, member) = (link.of, link.pool_id, link.member);
        let mut tx = self.write_tx().await?;
        let pool_exists = select_by_key::<PoolRecord>("1");
        require(&mut tx, &pool_exists, ("pool", pool_id)).await?;
        require(&mut tx, &select_by_key::<M>("1"), (M::NAME, member)).await?;
        let insert = format!(
            "INSERT INTO {} (pool_id, {}) VALUES (?, ?) ON CONFLICT DO NOTHING",
            of.table, of.member
        );
        sqlx::query(&insert)
            .bind(pool_id)
            .bind(member)
            .execute(&mut *tx)
            .await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_member(&self, link: Link<'_>, audit: &AuditRecord) -> StoreResult<()> {
        let (of, pool_id, member) = (link.of, link.pool_id, link.member);
        let mut tx = self.write_tx().await?;
        let delete = format!(
            "DELETE FROM {} WHERE pool_id = ? AND {} = ?",
            of.table, of.member
        );
        let membership = ("pool membership", format!("{member} in {pool_id}"));
        delete_existing(&mut tx, &delete, &[pool_id, member], membership).await?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_members<P: Resource, T: Resource>(
        &self,
        (key, parent): (&str, Parent),
        of: &Membership,
        page: PageQuery,
    ) -> StoreResult<Page<T>> {
        let (parent_column, listed_column) = of.columns(&parent);
        let (alias, order) = (T::ALIAS, format!("{}.{}", T::ALIAS, T::ORDER));
        let sql = format!(
            "SELECT {} FROM {} {alias} JOIN {} l ON l.{listed_column} = {alias}.{} \
             WHERE l.{parent_column} = ?1 AND (?2 IS NULL OR {order} > ?2) \
             ORDER BY {order} LIMIT ?3",
            select_list::<T>(),
            T::TABLE,
            of.table,
            T::KEY
        );
        let mut tx = self.read_tx().await?;
        require(&mut tx, &select_by_key::<P>("1"), (P::NAME, key)).await?;
        let page = fetch_page(&mut tx, &sql, Some(key), &page, self.decoder(), T::page_key).await?;
        tx.commit().await?;
        Ok(page)
    }
}
