//! The statements of every [`Resource`] on PostgreSQL: create, get, list,
//! update and delete, built from the resource's description; backend state
//! and pool memberships.

use async_trait::async_trait;
use chrono::SubsecRound;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres};

use super::{
    PostgresStore, audit, fetch_one, fetch_page, now, on_foreign_key_violation,
    on_unique_violation, require, revision_mismatch,
};
use crate::store::codec::not_found;
use crate::store::resource::{
    Link, Membership, Parent, Resource, Resources, Value, qualified, select_list, select_where,
    taken_key, text_of, updated_values,
};
use crate::store::{
    AuditRecord, BackendState, Created, IdempotencyKey, Page, PageQuery, PoolRecord, StoreError,
    StoreResult,
};

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// Binds `value` as PostgreSQL keeps it: times as TIMESTAMPTZ, JSON
/// documents as JSONB, lists as TEXT[].
fn bind(query: PgQuery<'_>, value: Value) -> PgQuery<'_> {
    match value {
        Value::Text(text) => query.bind(text),
        Value::OptionalText(text) => query.bind(text),
        Value::Int(int) => query.bind(int),
        Value::OptionalInt(int) => query.bind(int),
        Value::Int32(int) => query.bind(int),
        Value::Time(at) => query.bind(at),
        Value::OptionalTime(at) => query.bind(at),
        Value::Json(document) => query.bind(Json(document)),
        Value::Strings(list) => query.bind(list),
    }
}

/// `query` with `values` bound in order.
fn bind_all(query: PgQuery<'_>, values: Vec<Value>) -> PgQuery<'_> {
    values.into_iter().fold(query, bind)
}

/// Inserts the row of an `R` that writes `values`; `suffix` ends the
/// statement (a conflict clause or a RETURNING clause, whose row it
/// returns).
pub(super) async fn insert_row<R: Resource>(
    conn: &mut PgConnection,
    (values, suffix): (Vec<Value>, &str),
    on_error: impl FnOnce(sqlx::Error) -> StoreError,
) -> StoreResult<Option<PgRow>> {
    let parameters = parameters(1, R::COLUMNS.len()).join(", ");
    let (table, alias, columns) = (R::TABLE, R::ALIAS, R::COLUMNS.join(", "));
    let sql = format!("INSERT INTO {table} AS {alias} ({columns}) VALUES ({parameters}) {suffix}");
    let query = bind_all(sqlx::query(&sql), values);
    query.fetch_optional(conn).await.map_err(on_error)
}

/// `SELECT <column> FROM <table> WHERE <key> = $1`.
fn select_by_key<R: Resource>(column: &str) -> String {
    format!("SELECT {column} FROM {} WHERE {} = $1", R::TABLE, R::KEY)
}

/// `$from, $from+1, ...`: `count` numbered parameters.
fn parameters(from: usize, count: usize) -> Vec<String> {
    (from..from + count).map(|n| format!("${n}")).collect()
}

/// The column a unique constraint named `<table>_<column>_key` keeps
/// unique; `None` for the primary key.
fn constrained_column<R: Resource>(constraint: Option<&str>) -> Option<&str> {
    constraint?
        .strip_prefix(R::TABLE)?
        .strip_prefix('_')?
        .strip_suffix("_key")
}

impl PostgresStore {
    /// The `R` keyed `key`, read on `conn`; `NotFound` if none.
    pub(super) async fn fetch<R: Resource>(
        &self,
        conn: &mut PgConnection,
        key: &str,
    ) -> StoreResult<R> {
        let sql = select_where::<R>(&format!("{} = $1", qualified::<R>(R::KEY)));
        fetch_one(conn, &sql, (R::NAME, key), self.decoder()).await
    }

    /// Decodes a row of `R`, secrets opened.
    fn decoder<R: Resource>(&self) -> impl Fn(&PgRow) -> StoreResult<R> + '_ {
        |row| R::decode(row, &self.secrets)
    }
}

#[async_trait]
impl Resources for PostgresStore {
    async fn create<R: Resource>(
        &self,
        record: R,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<R>> {
        let resource_key = record.key();
        let fetch =
            async |conn: &mut PgConnection, (key, _): (String, _)| self.fetch(conn, &key).await;
        let insert = async |tx: &mut PgConnection| {
            let record = record.created(now());
            let returning = format!("RETURNING {}", select_list::<R>());
            let values = record.values(&self.secrets)?;
            let taken = |err| {
                on_unique_violation(err, R::NAME, |constraint| {
                    constrained_column::<R>(constraint)
                        .and_then(|column| text_of(&record, &self.secrets, column))
                        .unwrap_or_else(|| record.key())
                })
            };
            let row = insert_row::<R>(tx, (values, &returning), taken).await?;
            let row = row.ok_or(sqlx::Error::RowNotFound)?;
            R::decode(&row, &self.secrets)
        };
        let key = (idempotency.as_ref(), resource_key.as_str());
        self.create_once(key, audit, fetch, insert).await
    }

    async fn list<R: Resource>(&self, namespace: &str, page: PageQuery) -> StoreResult<Page<R>> {
        let order = qualified::<R>(R::ORDER);
        let mut conn = self.pool.acquire().await?;
        let Some(column) = R::NAMESPACE else {
            let sql = select_where::<R>(&format!("{order} > $1 ORDER BY {order} LIMIT $2"));
            return fetch_page(&mut conn, &sql, None, &page, self.decoder(), R::page_key).await;
        };
        let sql = select_where::<R>(&format!(
            "{} = $1 AND {order} > $2 ORDER BY {order} LIMIT $3",
            qualified::<R>(column)
        ));
        let decode = self.decoder();
        fetch_page(&mut conn, &sql, Some(namespace), &page, decode, R::page_key).await
    }

    async fn get<R: Resource>(&self, key: &str) -> StoreResult<R> {
        self.fetch(&mut *self.pool.acquire().await?, key).await
    }

    async fn update<R: Resource>(
        &self,
        record: R,
        revision: i64,
        audit: &AuditRecord,
    ) -> StoreResult<R> {
        let values = updated_values(&record, &self.secrets)?;
        let set: Vec<String> = values
            .iter()
            .zip(parameters(3, values.len()))
            .map(|((column, _), parameter)| format!("{column} = {parameter}"))
            .collect();
        let alias = R::ALIAS;
        // A concurrent update of the same row makes this wait, then re-check
        // the revision against the committed row.
        let sql = format!(
            "UPDATE {} AS {alias} SET {}, revision = {alias}.revision + 1, updated_at = ${} \
             WHERE {alias}.{} = $1 AND {alias}.revision = $2 RETURNING {}",
            R::TABLE,
            set.join(", "),
            values.len() + 3,
            R::KEY,
            select_list::<R>()
        );
        let key = &record.key();
        let query = sqlx::query(&sql).bind(key).bind(revision);
        let query = bind_all(query, values.into_iter().map(|(_, v)| v).collect());
        let mut tx = self.pool.begin().await?;
        let row = query
            .bind(now())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|err| {
                on_unique_violation(err, R::NAME, |_| taken_key(&record, &self.secrets))
            })?;
        let Some(row) = row else {
            let revision_sql = select_by_key::<R>("revision");
            return Err(revision_mismatch(&mut tx, &revision_sql, (R::NAME, key), revision).await);
        };
        let stored = R::decode(&row, &self.secrets)?;
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
        let delete = format!(
            "DELETE FROM {} WHERE {} = $1 AND ($2::BIGINT IS NULL OR revision = $2)",
            R::TABLE,
            R::KEY
        );
        let revision = select_by_key::<R>("revision");
        self.delete_revision(&delete, &revision, (R::NAME, key), expected, audit)
            .await
    }

    async fn remove<R: Resource>(&self, key: &str, audit: &AuditRecord) -> StoreResult<()> {
        let delete = format!("DELETE FROM {} WHERE {} = $1", R::TABLE, R::KEY);
        self.delete_found(&delete, &[key], (R::NAME, key.to_string()), audit)
            .await
    }

    async fn write_backend_state(&self, id: &str, state: BackendState) -> StoreResult<()> {
        let updated = sqlx::query(
            "UPDATE backends SET health = $2, models = $3, last_error = $4, last_sync_at = $5, \
             latency_ms = $6, observed_models = $7, models_at = $8 WHERE id = $1",
        )
        .bind(id)
        .bind(&state.health)
        .bind(&state.models)
        .bind(&state.last_error)
        .bind(state.last_sync_at.map(|at| at.trunc_subsecs(6)))
        .bind(state.latency_ms)
        .bind(Json(&state.observed_models))
        .bind(state.models_at.map(|at| at.trunc_subsecs(6)))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(not_found("backend", id));
        }
        Ok(())
    }

    /// The foreign keys catch an end deleted since the checks.
    async fn add_member<M: Resource>(
        &self,
        link: Link<'_>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let (of, pool_id, member) = (link.of, link.pool_id, link.member);
        let insert = format!(
            "INSERT INTO {} (pool_id, {}) VALUES ($1, $2) ON CONFLICT (pool_id, {}) DO NOTHING",
            of.table, of.member, of.member
        );
        let mut tx = self.pool.begin().await?;
        let pool_exists = select_by_key::<PoolRecord>("1");
        require(&mut tx, &pool_exists, ("pool", pool_id)).await?;
        require(&mut tx, &select_by_key::<M>("1"), (M::NAME, member)).await?;
        sqlx::query(&insert)
            .bind(pool_id)
            .bind(member)
            .execute(&mut *tx)
            .await
            .map_err(|err| {
                on_foreign_key_violation(err, of.name, &format!("{pool_id}/{member}"))
            })?;
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_member(&self, link: Link<'_>, audit: &AuditRecord) -> StoreResult<()> {
        let (of, pool_id, member) = (link.of, link.pool_id, link.member);
        let delete = format!(
            "DELETE FROM {} WHERE pool_id = $1 AND {} = $2",
            of.table, of.member
        );
        let membership = (of.name, format!("{pool_id}/{member}"));
        self.delete_found(&delete, &[pool_id, member], membership, audit)
            .await
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
            "SELECT {} FROM {} l JOIN {} {alias} ON {alias}.{} = l.{listed_column} \
             WHERE l.{parent_column} = $1 AND {order} > $2 ORDER BY {order} LIMIT $3",
            select_list::<T>(),
            of.table,
            T::TABLE,
            T::KEY
        );
        let mut tx = self.pool.begin().await?;
        require(&mut tx, &select_by_key::<P>("1"), (P::NAME, key)).await?;
        let page = fetch_page(&mut tx, &sql, Some(key), &page, self.decoder(), T::page_key).await?;
        tx.commit().await?;
        Ok(page)
    }
}
