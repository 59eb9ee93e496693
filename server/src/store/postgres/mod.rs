//! The Postgres store: production, shared by any number of server replicas.
//!
//! Every trait method runs in one transaction at READ COMMITTED. Revisions
//! are checked in the `WHERE` clause of the write itself (or under
//! `FOR UPDATE`), so concurrent writers serialize on the row and the loser
//! sees the winner's revision. Idempotency keys are inserted first in the
//! creating transaction: a concurrent duplicate blocks on the key's primary
//! key until the first transaction ends and then finds its row.

/// Columns of a run row, selected from the alias `r`.
macro_rules! run_columns {
    () => {
        "r.id, r.namespace, r.chain_id, r.chain_version, r.status, r.input, r.output, r.error_message, \
         r.error_task_id, r.error_reason, r.labels, r.priority, r.tenant, r.request_id, r.steps, \
         r.executions, r.heads, r.input_tokens, r.output_tokens, r.last_seq, r.created_at, \
         r.started_at, r.ended_at, r.updated_at, r.traceparent"
    };
}

/// Columns of an attempt row, selected from the alias `a`.
macro_rules! attempt_columns {
    () => {
        "a.id, a.run_id, a.task_id, a.attempt, a.step, a.status, a.queue, a.priority, \
         a.available_at, a.deadline, a.lease_owner, a.lease_token, a.lease_expires_at, \
         a.lease_expiries, a.input, a.prompt, a.output, a.error, a.dead_lettered, a.backend_id, \
         a.model, a.input_tokens, a.output_tokens, a.created_at, a.started_at, a.ended_at"
    };
}

/// The parts of a write statement that insert attempts (`$1`..`$26`) and
/// events (`$27`..`$29`), each an `INSERT … SELECT` over `UNNEST`ed column
/// arrays (rows named `u`, filtered by the optional `WHERE` clause given).
/// Bound by [`bind_inserts`].
macro_rules! insert_attempts_and_events {
    () => {
        insert_attempts_and_events!("")
    };
    ($filter:literal) => {
        concat!(
            "attempt_inserts AS (\
             INSERT INTO attempts (id, run_id, task_id, attempt, step, status, queue, priority, \
             available_at, deadline, lease_owner, lease_token, lease_expires_at, lease_expiries, \
             input, prompt, output, error, dead_lettered, backend_id, model, input_tokens, \
             output_tokens, created_at, started_at, ended_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::int4[], \
             $6::text[], $7::text[], $8::int4[], $9::timestamptz[], $10::timestamptz[], \
             $11::text[], $12::text[], $13::timestamptz[], $14::int4[], $15::bytea[], \
             $16::bytea[], $17::bytea[], $18::bytea[], $19::bool[], $20::text[], $21::text[], \
             $22::int8[], $23::int8[], $24::timestamptz[], $25::timestamptz[], \
             $26::timestamptz[]) AS u(id, run_id, task_id, attempt, step, status, queue, \
             priority, available_at, deadline, lease_owner, lease_token, lease_expires_at, \
             lease_expiries, input, prompt, output, error, dead_lettered, backend_id, model, \
             input_tokens, output_tokens, created_at, started_at, ended_at) ",
            $filter,
            "), event_inserts AS (\
             INSERT INTO run_events (run_id, seq, payload) \
             SELECT * FROM UNNEST($27::text[], $28::int8[], $29::bytea[]) \
             AS u(run_id, seq, payload) ",
            $filter,
            ")"
        )
    };
}

mod audit;
mod chains;
mod claim;
mod create;
mod fleet;
mod idempotency;
mod keys;
mod limits;
mod namespaces;
mod operations;
mod resources;
mod retention;
mod retry;
mod runs;
mod sessions;
mod signals;
mod transitions;
mod writes;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Connection, PgConnection};

use crate::secrets::SecretBox;
use crate::store::codec::{
    PlainColumns, StoredRow, column, conflict, decode_all, into_page, not_found, page_limits,
};
use crate::store::resource::{Resource, builtin_pools};
use crate::store::sealed;
use crate::store::{AuditRecord, Page, PageQuery, PoolRecord, Store, StoreError, StoreResult};
use resources::insert_row;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Pool size when the URL does not name one (`?max_connections=N`).
const DEFAULT_MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a pooled connection before failing as
/// unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Session advisory lock held by `migrate()` around migrating and seeding, so
/// replicas starting together take turns. Distinct from the lock sqlx's
/// migrator takes (derived from the database name).
const MIGRATE_LOCK_KEY: i64 = 0x7461_736b_6c6f_6f6d; // "taskloom"
/// The URL query parameter that sets the pool size; removed before the URL
/// reaches sqlx.
const MAX_CONNECTIONS_PARAM: &str = "max_connections";

/// The Postgres implementation of [`Store`](super::Store).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Seals the secret columns.
    secrets: SecretBox,
}

impl PostgresStore {
    /// Connects to `url`, sealing secrets with `secrets`. The pool size
    /// comes from the optional `max_connections` query parameter (default
    /// 16).
    pub async fn connect(url: &str, secrets: SecretBox) -> StoreResult<PostgresStore> {
        let (url, max_connections) = split_max_connections(url)?;
        Self::connect_with(&url, max_connections, secrets).await
    }

    /// Connects to `url` with a pool of at most `max_connections`
    /// connections (default 16).
    pub async fn connect_with(
        url: &str,
        max_connections: Option<u32>,
        secrets: SecretBox,
    ) -> StoreResult<PostgresStore> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS).max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(PostgresStore { pool, secrets })
    }

    /// The connection pool, for components that need Postgres directly
    /// (e.g. LISTEN/NOTIFY).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs the migrations and seeds the built-in pools on `conn`, which
    /// holds the migrate lock.
    async fn migrate_locked(&self, conn: &mut PgConnection) -> StoreResult<()> {
        // `run_direct` rather than `run`: `run(&mut PgConnection)` trips the
        // "Acquire is not general enough" error inside `async_trait` futures.
        MIGRATOR.run_direct(&mut *conn).await?;
        let mut tx = conn.begin().await?;
        for pool in builtin_pools(now()) {
            let values = (pool.values(&self.secrets)?, "ON CONFLICT (id) DO NOTHING");
            insert_row::<PoolRecord>(&mut tx, values, StoreError::from).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Removes `max_connections=N` from the URL's query; returns the rest of the
/// URL and N.
fn split_max_connections(url: &str) -> StoreResult<(String, Option<u32>)> {
    let configuration_error =
        |message: String| StoreError::Database(sqlx::Error::Configuration(message.into()));
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut max_connections = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((MAX_CONNECTIONS_PARAM, value)) => {
                let parsed = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        configuration_error(format!(
                            "{MAX_CONNECTIONS_PARAM} must be a positive integer, not {value:?}"
                        ))
                    })?;
                max_connections = Some(parsed);
            }
            _ if pair.is_empty() => {}
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, max_connections))
}

/// The current time at the precision TIMESTAMPTZ stores, so what a write
/// returns equals what a later read returns.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Times are TIMESTAMPTZ, JSON documents JSONB, lists TEXT[], and run text
/// BYTEA (see [`StoredRow::run_text`]).
impl StoredRow for PgRow {
    fn time(&self, name: &str) -> StoreResult<DateTime<Utc>> {
        column(self, name)
    }

    fn optional_time(&self, name: &str) -> StoreResult<Option<DateTime<Utc>>> {
        column(self, name)
    }

    fn json<T: DeserializeOwned>(&self, name: &str, _what: &str) -> StoreResult<T> {
        Ok(column::<_, Json<T>>(self, name)?.0)
    }

    fn strings(&self, name: &str, _what: &str) -> StoreResult<Vec<String>> {
        column(self, name)
    }

    /// Kept as UTF-8 bytes: PostgreSQL's `text` refuses U+0000.
    fn run_text(&self, name: &str) -> StoreResult<Option<String>> {
        self.optional_bytes(name)?
            .map(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| StoreError::Corrupt(format!("column {name} is not UTF-8")))
            })
            .transpose()
    }
}

impl PostgresStore {
    /// Deletes the row `delete` matches by key and, when `expected` is
    /// given, revision (`$1`, `$2`); when it matched nothing, says why
    /// from the revision `revision` reads.
    async fn delete_revision(
        &self,
        delete: &str,
        revision: &str,
        (resource, key): (&'static str, &str),
        expected: Option<i64>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(delete)
            .bind(key)
            .bind(expected)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            let expected = expected.unwrap_or_default();
            return Err(revision_mismatch(&mut tx, revision, (resource, key), expected).await);
        }
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes what `delete` selects by `keys`; `NotFound` names `resource`
    /// and `id` when nothing was there.
    async fn delete_found(
        &self,
        delete: &str,
        keys: &[&str],
        (resource, id): (&'static str, String),
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut query = sqlx::query(delete);
        for key in keys {
            query = query.bind(*key);
        }
        let mut tx = self.pool.begin().await?;
        if query.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(not_found(resource, id));
        }
        audit::insert(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The error the database reported, if `err` is one.
pub(super) fn database_error(err: &sqlx::Error) -> Option<&dyn sqlx::error::DatabaseError> {
    match err {
        sqlx::Error::Database(db) => Some(db.as_ref()),
        _ => None,
    }
}

/// Maps a unique violation (23505) to `AlreadyExists`; `key_of` names the
/// taken key given the violated constraint. Other errors pass through.
fn on_unique_violation(
    err: sqlx::Error,
    resource: &'static str,
    key_of: impl FnOnce(Option<&str>) -> String,
) -> StoreError {
    match database_error(&err) {
        Some(db) if db.is_unique_violation() => StoreError::AlreadyExists {
            resource,
            id: key_of(db.constraint()),
        },
        _ => err.into(),
    }
}

/// Maps a foreign key violation (23503: the referenced row was deleted
/// concurrently) to `NotFound`. Other errors pass through.
fn on_foreign_key_violation(err: sqlx::Error, resource: &'static str, id: &str) -> StoreError {
    match database_error(&err) {
        Some(db) if db.is_foreign_key_violation() => StoreError::NotFound {
            resource,
            id: id.to_string(),
        },
        _ => err.into(),
    }
}

/// The lower bound for string keys: every key is non-empty (the API validates
/// ids and names), so `""` precedes them all.
fn after_key(page: &PageQuery) -> &str {
    page.after.as_deref().unwrap_or("")
}

/// The row `sql` selects by `key`, decoded; `NotFound` names `resource`.
async fn fetch_one<T>(
    conn: &mut PgConnection,
    sql: &str,
    (resource, key): (&'static str, &str),
    decode: impl FnOnce(&PgRow) -> StoreResult<T>,
) -> StoreResult<T> {
    let found = sqlx::query(sql).bind(key).fetch_optional(conn).await?;
    decode(&found.ok_or_else(|| not_found(resource, key))?)
}

/// One page of the rows `sql` selects. Its parameters: the parent's key
/// (when `parent` is given), then the page's lower bound and the row limit.
async fn fetch_page<T>(
    conn: &mut PgConnection,
    sql: &str,
    parent: Option<&str>,
    page: &PageQuery,
    decode: impl Fn(&PgRow) -> StoreResult<T>,
    key: impl Fn(&T) -> String,
) -> StoreResult<Page<T>> {
    let query = match parent {
        Some(parent) => sqlx::query(sql).bind(parent),
        None => sqlx::query(sql),
    };
    let rows = query
        .bind(after_key(page))
        .bind(page_limits(page).1)
        .fetch_all(conn)
        .await?;
    Ok(into_page(decode_all(&rows, decode)?, page, key))
}

/// `NotFound` unless `sql` finds `key`.
async fn require(
    conn: &mut PgConnection,
    sql: &str,
    (resource, key): (&'static str, &str),
) -> StoreResult<()> {
    let found = sqlx::query(sql).bind(key).fetch_optional(conn).await?;
    found.map(drop).ok_or_else(|| not_found(resource, key))
}

/// Why a conditional write of `key` matched nothing, read from the
/// revision `sql` selects: `NotFound` if the row is gone, otherwise
/// `Conflict`.
async fn revision_mismatch(
    conn: &mut PgConnection,
    sql: &str,
    (resource, key): (&'static str, &str),
    expected: i64,
) -> StoreError {
    let actual: Result<Option<i64>, _> =
        sqlx::query_scalar(sql).bind(key).fetch_optional(conn).await;
    match actual {
        Err(error) => error.into(),
        Ok(None) => not_found(resource, key),
        Ok(Some(actual)) => conflict(resource, key, expected, actual),
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> StoreResult<()> {
        // A dedicated connection, not a pooled one: if anything fails, closing
        // it releases the session locks (ours and sqlx's) instead of leaking
        // them into the pool.
        let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATE_LOCK_KEY)
            .execute(&mut conn)
            .await?;
        self.migrate_locked(&mut conn).await?;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATE_LOCK_KEY)
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }

    async fn probe(&self) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO store_probe (id, probed_at) VALUES (1, now()) \
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn seal_stored_secrets(&self) -> StoreResult<usize> {
        // Each plain-text value is replaced only if it is still the one
        // read: replicas starting together (with the same key) each seal a
        // row at most once between them.
        let mut sealed = 0;
        let keys = sqlx::query("SELECT id, api_key FROM backends WHERE api_key IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        for row in &keys {
            let id = row.text("id")?;
            let stored = row.text("api_key")?;
            if let Some(resealed) = sealed::reseal_api_key(&self.secrets, &id, &stored)? {
                sealed +=
                    sqlx::query("UPDATE backends SET api_key = $3 WHERE id = $1 AND api_key = $2")
                        .bind(&id)
                        .bind(&stored)
                        .bind(resealed)
                        .execute(&self.pool)
                        .await?
                        .rows_affected() as usize;
            }
        }
        let hooks = sqlx::query("SELECT hook_key, name, secret_headers FROM hooks")
            .fetch_all(&self.pool)
            .await?;
        for row in &hooks {
            let name = row.text("name")?;
            let stored: Json<serde_json::Value> = column(row, "secret_headers")?;
            if let Some(resealed) = sealed::reseal_headers(&self.secrets, &name, &stored.0)? {
                sealed += sqlx::query(
                    "UPDATE hooks SET secret_headers = $3 \
                     WHERE hook_key = $1 AND secret_headers = $2",
                )
                .bind(row.text("hook_key")?)
                .bind(&stored)
                .bind(Json(resealed))
                .execute(&self.pool)
                .await?
                .rows_affected() as usize;
            }
        }
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PoolStore;

    #[test]
    fn max_connections_is_taken_out_of_the_url() {
        let (url, max) =
            split_max_connections("postgres://u@h/db?sslmode=disable&max_connections=4").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=disable");
        assert_eq!(max, Some(4));

        let (url, max) = split_max_connections("postgres://u@h/db?max_connections=8").unwrap();
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(max, Some(8));

        let (url, max) = split_max_connections("postgres://u@h/db").unwrap();
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(max, None);
    }

    #[test]
    fn invalid_max_connections_is_a_configuration_error() {
        for bad in ["0", "-1", "many", ""] {
            let url = format!("postgres://u@h/db?max_connections={bad}");
            assert!(
                matches!(
                    split_max_connections(&url),
                    Err(StoreError::Database(sqlx::Error::Configuration(_)))
                ),
                "{bad:?} accepted"
            );
        }
    }

    /// Replicas starting together all migrate the same database at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_migrations_all_succeed_and_seed_once() {
        let url = tokio::task::spawn_blocking(taskloom_testkit::fresh_postgres_database)
            .await
            .unwrap()
            .unwrap();
        let replicas: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    let store = PostgresStore::connect(
                        &format!("{url}?max_connections=2"),
                        crate::secrets::SecretBox::ephemeral(),
                    )
                    .await?;
                    store.migrate().await?;
                    store.migrate().await
                })
            })
            .collect();
        for replica in replicas {
            replica.await.unwrap().unwrap();
        }
        let store = PostgresStore::connect(&url, crate::secrets::SecretBox::ephemeral())
            .await
            .unwrap();
        let pools = store
            .list_pools(PageQuery {
                limit: 10,
                after: None,
            })
            .await
            .unwrap();
        let ids: Vec<&str> = pools.items.iter().map(|p| p.id.as_str()).collect();
        let mut builtin: Vec<&str> = crate::store::BUILTIN_POOLS
            .iter()
            .map(|(id, _)| *id)
            .collect();
        builtin.sort();
        assert_eq!(ids, builtin);
        // Neither lock is left behind: another migration does not block.
        tokio::time::timeout(Duration::from_secs(10), store.migrate())
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn pages_report_a_next_key_only_when_more_items_exist() {
        let query = PageQuery {
            limit: 2,
            after: None,
        };
        let page = into_page(vec![1, 2, 3], &query, |n| n.to_string());
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_after.as_deref(), Some("2"));

        let page = into_page(vec![1, 2], &query, |n| n.to_string());
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_after, None);
    }
}
