//! The Postgres store: production, shared by any number of server replicas.
//!
//! Every trait method runs in one transaction at READ COMMITTED. Revisions
//! are checked in the `WHERE` clause of the write itself (or under
//! `FOR UPDATE`), so concurrent writers serialize on the row and the loser
//! sees the winner's revision. Idempotency keys are inserted first in the
//! creating transaction: a concurrent duplicate blocks on the key's primary
//! key until the first transaction ends and then finds its row.

mod retry;
mod runs;
mod sessions;
mod signals;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Connection, Decode, PgConnection, Row, Type};

use crate::secrets::SecretBox;
use crate::store::codec::{conflict, into_page, not_found, page_limits};
use crate::store::sealed;

use crate::store::{
    BUILTIN_POOLS, BackendRecord, BackendState, ChainRecord, Created, HookRecord, IdempotencyKey,
    ModelRecord, Page, PageQuery, PoolRecord, Store, StoreError, StoreResult,
};

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

/// Columns of a backend row, selected from the alias `b`.
macro_rules! backend_columns {
    () => {
        "b.id, b.name, b.backend_type, b.base_url, b.api_key, b.priority, b.max_concurrency, \
         b.request_timeout_ms, b.labels, b.health, b.models, b.last_error, b.last_sync_at, \
         b.latency_ms, b.revision, b.created_at, b.updated_at"
    };
}

/// Columns of a pool row, selected from the alias `p`.
macro_rules! pool_columns {
    () => {
        "p.id, p.description, p.purpose, p.created_at"
    };
}

/// Columns of a model row, selected from the alias `m`.
macro_rules! model_columns {
    () => {
        "m.id, m.name, m.context_length, m.capabilities, m.created_at"
    };
}

/// Columns of a hook row, selected from the alias `h`.
macro_rules! hook_columns {
    () => {
        "h.name, h.description, h.url, h.method, h.timeout_ms, h.headers, h.secret_headers, \
         h.queue, h.revision, h.created_at, h.updated_at"
    };
}

/// Columns of a chain version joined with its head (`v` and `h`).
macro_rules! chain_columns {
    () => {
        "v.id, v.version, v.definition, h.created_at AS chain_created_at, \
         v.created_at AS version_created_at"
    };
}

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
    async fn migrate_locked(conn: &mut PgConnection) -> StoreResult<()> {
        // `run_direct` rather than `run`: `run(&mut PgConnection)` trips the
        // "Acquire is not general enough" error inside `async_trait` futures.
        MIGRATOR.run_direct(&mut *conn).await?;
        let created_at = now();
        let mut tx = conn.begin().await?;
        for (id, purpose) in BUILTIN_POOLS {
            sqlx::query(
                "INSERT INTO pools (id, description, purpose, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(crate::store::builtin_pool_description(purpose))
            .bind(purpose)
            .bind(created_at)
            .execute(&mut *tx)
            .await?;
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

/// Reads a column, reporting undecodable values as corrupt data.
pub(super) fn column<'r, T>(row: &'r PgRow, name: &str) -> StoreResult<T>
where
    T: Decode<'r, sqlx::Postgres> + Type<sqlx::Postgres>,
{
    row.try_get(name).map_err(|err| match err {
        sqlx::Error::ColumnDecode { .. } => StoreError::Corrupt(err.to_string()),
        other => other.into(),
    })
}

fn backend_from_row(row: &PgRow, secrets: &SecretBox) -> StoreResult<BackendRecord> {
    let labels: Json<BTreeMap<String, String>> = column(row, "labels")?;
    let id: String = column(row, "id")?;
    Ok(BackendRecord {
        api_key: sealed::open_api_key(secrets, &id, column(row, "api_key")?)?,
        id,
        name: column(row, "name")?,
        backend_type: column(row, "backend_type")?,
        base_url: column(row, "base_url")?,
        priority: column(row, "priority")?,
        max_concurrency: column(row, "max_concurrency")?,
        request_timeout_ms: column(row, "request_timeout_ms")?,
        labels: labels.0,
        state: BackendState {
            health: column(row, "health")?,
            models: column(row, "models")?,
            last_error: column(row, "last_error")?,
            last_sync_at: column(row, "last_sync_at")?,
            latency_ms: column(row, "latency_ms")?,
        },
        revision: column(row, "revision")?,
        created_at: column(row, "created_at")?,
        updated_at: column(row, "updated_at")?,
    })
}

fn pool_from_row(row: &PgRow) -> StoreResult<PoolRecord> {
    Ok(PoolRecord {
        id: column(row, "id")?,
        description: column(row, "description")?,
        purpose: column(row, "purpose")?,
        created_at: column(row, "created_at")?,
    })
}

fn model_from_row(row: &PgRow) -> StoreResult<ModelRecord> {
    Ok(ModelRecord {
        id: column(row, "id")?,
        name: column(row, "name")?,
        context_length: column(row, "context_length")?,
        capabilities: column(row, "capabilities")?,
        created_at: column(row, "created_at")?,
    })
}

fn hook_from_row(row: &PgRow, secrets: &SecretBox) -> StoreResult<HookRecord> {
    let headers: Json<BTreeMap<String, String>> = column(row, "headers")?;
    let secret_headers: Json<serde_json::Value> = column(row, "secret_headers")?;
    let name: String = column(row, "name")?;
    Ok(HookRecord {
        secret_headers: sealed::open_headers(secrets, &name, secret_headers.0)?,
        name,
        description: column(row, "description")?,
        url: column(row, "url")?,
        method: column(row, "method")?,
        timeout_ms: column(row, "timeout_ms")?,
        headers: headers.0,
        queue: column(row, "queue")?,
        revision: column(row, "revision")?,
        created_at: column(row, "created_at")?,
        updated_at: column(row, "updated_at")?,
    })
}

fn chain_from_row(row: &PgRow) -> StoreResult<ChainRecord> {
    Ok(ChainRecord {
        id: column(row, "id")?,
        version: column(row, "version")?,
        definition: column(row, "definition")?,
        created_at: column(row, "chain_created_at")?,
        updated_at: column(row, "version_created_at")?,
    })
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

/// What an idempotency key says about a create.
pub(super) enum Reservation {
    /// First use: the key is now reserved by this transaction.
    Fresh,
    /// Seen before with the same payload: the resource it created.
    Replay {
        resource_key: String,
        resource_version: Option<i64>,
    },
}

/// Reserves `key` for a creation of `resource_key` in `conn`'s transaction,
/// or reports the earlier creation it guarded.
pub(super) async fn reserve(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    resource_key: &str,
) -> StoreResult<Reservation> {
    // A sweeper may delete the key between the insert and the read; a few
    // rounds settle that.
    for _ in 0..3 {
        // An uncommitted duplicate makes this wait; once it commits this is a
        // no-op, once it rolls back this inserts.
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, request_id, request_hash, resource_key) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (scope, request_id) DO NOTHING",
        )
        .bind(&key.scope)
        .bind(&key.request_id)
        .bind(&key.request_hash)
        .bind(resource_key)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Reservation::Fresh);
        }
        // READ COMMITTED: this statement's snapshot sees the committed key.
        let existing = sqlx::query(
            "SELECT request_hash, resource_key, resource_version FROM idempotency_keys \
             WHERE scope = $1 AND request_id = $2",
        )
        .bind(&key.scope)
        .bind(&key.request_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = existing {
            let request_hash: String = column(&row, "request_hash")?;
            if request_hash != key.request_hash {
                return Err(StoreError::IdempotencyMismatch {
                    request_id: key.request_id.clone(),
                });
            }
            return Ok(Reservation::Replay {
                resource_key: column(&row, "resource_key")?,
                resource_version: column(&row, "resource_version")?,
            });
        }
    }
    Err(StoreError::FailedPrecondition(format!(
        "request_id {:?} is being expired concurrently; retry",
        key.request_id
    )))
}

/// Records which chain version the request guarded by `key` created.
async fn record_idempotent_version(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    version: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET resource_version = $3 WHERE scope = $1 AND request_id = $2",
    )
    .bind(&key.scope)
    .bind(&key.request_id)
    .bind(version)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn fetch_backend(
    conn: &mut PgConnection,
    id: &str,
    secrets: &SecretBox,
) -> StoreResult<BackendRecord> {
    let row = sqlx::query(concat!(
        "SELECT ",
        backend_columns!(),
        " FROM backends b WHERE b.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found("backend", id))?;
    backend_from_row(&row, secrets)
}

async fn fetch_pool(conn: &mut PgConnection, id: &str) -> StoreResult<PoolRecord> {
    let row = sqlx::query(concat!(
        "SELECT ",
        pool_columns!(),
        " FROM pools p WHERE p.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found("pool", id))?;
    pool_from_row(&row)
}

async fn fetch_model(conn: &mut PgConnection, name: &str) -> StoreResult<ModelRecord> {
    let row = sqlx::query(concat!(
        "SELECT ",
        model_columns!(),
        " FROM models m WHERE m.name = $1"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found("model", name))?;
    model_from_row(&row)
}

async fn fetch_hook(
    conn: &mut PgConnection,
    name: &str,
    secrets: &SecretBox,
) -> StoreResult<HookRecord> {
    let row = sqlx::query(concat!(
        "SELECT ",
        hook_columns!(),
        " FROM hooks h WHERE h.name = $1"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found("hook", name))?;
    hook_from_row(&row, secrets)
}

/// A chain version, live or deleted.
async fn fetch_chain_version(
    conn: &mut PgConnection,
    id: &str,
    version: i64,
) -> StoreResult<ChainRecord> {
    let row = sqlx::query(concat!(
        "SELECT ",
        chain_columns!(),
        " FROM chain_versions v JOIN chain_heads h ON h.id = v.id \
         WHERE v.id = $1 AND v.version = $2"
    ))
    .bind(id)
    .bind(version)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found("chain version", format!("{id}@{version}")))?;
    chain_from_row(&row)
}

/// Whether a pool exists.
async fn pool_exists(conn: &mut PgConnection, id: &str) -> StoreResult<bool> {
    Ok(sqlx::query("SELECT 1 FROM pools WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .is_some())
}

/// The stored revision of a row when a conditional write matched nothing:
/// `NotFound` if the row is gone, otherwise `Conflict`.
fn revision_mismatch(
    resource: &'static str,
    id: &str,
    expected: i64,
    actual: Option<i64>,
) -> StoreError {
    match actual {
        None => not_found(resource, id),
        Some(actual) => conflict(resource, id, expected, actual),
    }
}

/// Head of a chain, locked for the rest of the transaction.
struct ChainHead {
    latest_version: i64,
    deleted: bool,
}

async fn lock_chain_head(conn: &mut PgConnection, id: &str) -> StoreResult<Option<ChainHead>> {
    let row =
        sqlx::query("SELECT latest_version, deleted FROM chain_heads WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.map(|row| {
        Ok(ChainHead {
            latest_version: column(&row, "latest_version")?,
            deleted: column(&row, "deleted")?,
        })
    })
    .transpose()
}

/// Inserts one chain version and returns it as stored.
async fn insert_chain_version(
    conn: &mut PgConnection,
    id: &str,
    version: i64,
    definition: &[u8],
    created_at: DateTime<Utc>,
) -> StoreResult<ChainRecord> {
    sqlx::query(
        "INSERT INTO chain_versions (id, version, definition, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(version)
    .bind(definition)
    .bind(created_at)
    .execute(&mut *conn)
    .await?;
    fetch_chain_version(conn, id, version).await
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
        Self::migrate_locked(&mut conn).await?;
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
            let id: String = column(row, "id")?;
            let stored: String = column(row, "api_key")?;
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
        let hooks = sqlx::query("SELECT name, secret_headers FROM hooks")
            .fetch_all(&self.pool)
            .await?;
        for row in &hooks {
            let name: String = column(row, "name")?;
            let stored: Json<serde_json::Value> = column(row, "secret_headers")?;
            if let Some(resealed) = sealed::reseal_headers(&self.secrets, &name, &stored.0)? {
                sealed += sqlx::query(
                    "UPDATE hooks SET secret_headers = $3 WHERE name = $1 AND secret_headers = $2",
                )
                .bind(&name)
                .bind(&stored)
                .bind(Json(resealed))
                .execute(&self.pool)
                .await?
                .rows_affected() as usize;
            }
        }
        Ok(sealed)
    }

    // ---- backends ----

    async fn create_backend(
        &self,
        backend: BackendRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<BackendRecord>> {
        let mut tx = self.pool.begin().await?;
        if let Some(key) = &idempotency
            && let Reservation::Replay { resource_key, .. } =
                reserve(&mut tx, key, &backend.id).await?
        {
            let record = fetch_backend(&mut tx, &resource_key, &self.secrets).await?;
            return Ok(Created {
                record,
                replayed: true,
            });
        }
        let created_at = now();
        let row = sqlx::query(concat!(
            "INSERT INTO backends AS b (id, name, backend_type, base_url, api_key, priority, \
             max_concurrency, request_timeout_ms, labels, health, models, last_error, \
             last_sync_at, latency_ms, revision, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15, $15) \
             RETURNING ",
            backend_columns!()
        ))
        .bind(&backend.id)
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
        .bind(Json(&backend.labels))
        .bind(&backend.state.health)
        .bind(&backend.state.models)
        .bind(&backend.state.last_error)
        .bind(backend.state.last_sync_at.map(|at| at.trunc_subsecs(6)))
        .bind(backend.state.latency_ms)
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| {
            on_unique_violation(err, "backend", |constraint| {
                if constraint == Some("backends_name_key") {
                    backend.name.clone()
                } else {
                    backend.id.clone()
                }
            })
        })?;
        let record = backend_from_row(&row, &self.secrets)?;
        tx.commit().await?;
        Ok(Created {
            record,
            replayed: false,
        })
    }

    async fn get_backend(&self, id: &str) -> StoreResult<BackendRecord> {
        let mut conn = self.pool.acquire().await?;
        fetch_backend(&mut conn, id, &self.secrets).await
    }

    async fn list_backends(&self, page: PageQuery) -> StoreResult<Page<BackendRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            backend_columns!(),
            " FROM backends b WHERE b.name > $1 ORDER BY b.name LIMIT $2"
        ))
        .bind(after_key(&page))
        .bind(page_limits(&page).1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|row| backend_from_row(row, &self.secrets))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, &page, |b| b.name.clone()))
    }

    async fn update_backend(&self, backend: BackendRecord) -> StoreResult<BackendRecord> {
        let mut tx = self.pool.begin().await?;
        // A concurrent update of the same row makes this wait, then re-check
        // the revision against the committed row.
        let row = sqlx::query(concat!(
            "UPDATE backends AS b SET name = $3, backend_type = $4, base_url = $5, api_key = $6, \
             priority = $7, max_concurrency = $8, request_timeout_ms = $9, labels = $10, \
             revision = b.revision + 1, updated_at = $11 \
             WHERE b.id = $1 AND b.revision = $2 RETURNING ",
            backend_columns!()
        ))
        .bind(&backend.id)
        .bind(backend.revision)
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
        .bind(Json(&backend.labels))
        .bind(now())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| on_unique_violation(err, "backend", |_| backend.name.clone()))?;
        let Some(row) = row else {
            let actual = sqlx::query_scalar("SELECT revision FROM backends WHERE id = $1")
                .bind(&backend.id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(revision_mismatch(
                "backend",
                &backend.id,
                backend.revision,
                actual,
            ));
        };
        let record = backend_from_row(&row, &self.secrets)?;
        tx.commit().await?;
        Ok(record)
    }

    async fn set_backend_state(&self, id: &str, state: BackendState) -> StoreResult<()> {
        let updated = sqlx::query(
            "UPDATE backends SET health = $2, models = $3, last_error = $4, last_sync_at = $5, \
             latency_ms = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(&state.health)
        .bind(&state.models)
        .bind(&state.last_error)
        .bind(state.last_sync_at.map(|at| at.trunc_subsecs(6)))
        .bind(state.latency_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(not_found("backend", id));
        }
        Ok(())
    }

    async fn delete_backend(&self, id: &str, expected_revision: Option<i64>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // Pool memberships go with it (ON DELETE CASCADE).
        let deleted = sqlx::query(
            "DELETE FROM backends WHERE id = $1 AND ($2::BIGINT IS NULL OR revision = $2)",
        )
        .bind(id)
        .bind(expected_revision)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted == 0 {
            let actual = sqlx::query_scalar("SELECT revision FROM backends WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let expected = expected_revision.unwrap_or_default();
            return Err(revision_mismatch("backend", id, expected, actual));
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- pools ----

    async fn create_pool(
        &self,
        pool: PoolRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<PoolRecord>> {
        let mut tx = self.pool.begin().await?;
        if let Some(key) = &idempotency
            && let Reservation::Replay { resource_key, .. } =
                reserve(&mut tx, key, &pool.id).await?
        {
            let record = fetch_pool(&mut tx, &resource_key).await?;
            return Ok(Created {
                record,
                replayed: true,
            });
        }
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
        let record = pool_from_row(&row)?;
        tx.commit().await?;
        Ok(Created {
            record,
            replayed: false,
        })
    }

    async fn get_pool(&self, id: &str) -> StoreResult<PoolRecord> {
        let mut conn = self.pool.acquire().await?;
        fetch_pool(&mut conn, id).await
    }

    async fn list_pools(&self, page: PageQuery) -> StoreResult<Page<PoolRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            pool_columns!(),
            " FROM pools p WHERE p.id > $1 ORDER BY p.id LIMIT $2"
        ))
        .bind(after_key(&page))
        .bind(page_limits(&page).1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(pool_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, &page, |p| p.id.clone()))
    }

    async fn delete_pool(&self, id: &str) -> StoreResult<()> {
        if BUILTIN_POOLS.iter().any(|(builtin, _)| *builtin == id) {
            return Err(StoreError::FailedPrecondition(format!(
                "pool {id:?} is built in and cannot be deleted"
            )));
        }
        // Memberships go with it (ON DELETE CASCADE).
        let deleted = sqlx::query("DELETE FROM pools WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(not_found("pool", id));
        }
        Ok(())
    }

    async fn assign_backend_to_pool(&self, pool_id: &str, backend_id: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        if !pool_exists(&mut tx, pool_id).await? {
            return Err(not_found("pool", pool_id));
        }
        let backend_exists = sqlx::query("SELECT 1 FROM backends WHERE id = $1")
            .bind(backend_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !backend_exists {
            return Err(not_found("backend", backend_id));
        }
        // The foreign keys catch a pool or backend deleted since the checks.
        sqlx::query(
            "INSERT INTO pool_backends (pool_id, backend_id) VALUES ($1, $2) \
             ON CONFLICT (pool_id, backend_id) DO NOTHING",
        )
        .bind(pool_id)
        .bind(backend_id)
        .execute(&mut *tx)
        .await
        .map_err(|err| {
            on_foreign_key_violation(err, "pool backend", &format!("{pool_id}/{backend_id}"))
        })?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_backend_from_pool(&self, pool_id: &str, backend_id: &str) -> StoreResult<()> {
        let deleted =
            sqlx::query("DELETE FROM pool_backends WHERE pool_id = $1 AND backend_id = $2")
                .bind(pool_id)
                .bind(backend_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        if deleted == 0 {
            return Err(not_found("pool backend", format!("{pool_id}/{backend_id}")));
        }
        Ok(())
    }

    async fn list_pool_backends(
        &self,
        pool_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<BackendRecord>> {
        let mut tx = self.pool.begin().await?;
        if !pool_exists(&mut tx, pool_id).await? {
            return Err(not_found("pool", pool_id));
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            backend_columns!(),
            " FROM pool_backends pb JOIN backends b ON b.id = pb.backend_id \
             WHERE pb.pool_id = $1 AND b.name > $2 ORDER BY b.name LIMIT $3"
        ))
        .bind(pool_id)
        .bind(after_key(&page))
        .bind(page_limits(&page).1)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = rows
            .iter()
            .map(|row| backend_from_row(row, &self.secrets))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, &page, |b| b.name.clone()))
    }

    async fn list_backend_pools(
        &self,
        backend_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<PoolRecord>> {
        let mut tx = self.pool.begin().await?;
        let backend_exists = sqlx::query("SELECT 1 FROM backends WHERE id = $1")
            .bind(backend_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !backend_exists {
            return Err(not_found("backend", backend_id));
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            pool_columns!(),
            " FROM pool_backends pb JOIN pools p ON p.id = pb.pool_id \
             WHERE pb.backend_id = $1 AND p.id > $2 ORDER BY p.id LIMIT $3"
        ))
        .bind(backend_id)
        .bind(after_key(&page))
        .bind(page_limits(&page).1)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = rows
            .iter()
            .map(pool_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, &page, |p| p.id.clone()))
    }

    async fn assign_model_to_pool(&self, pool_id: &str, model_name: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        if !pool_exists(&mut tx, pool_id).await? {
            return Err(not_found("pool", pool_id));
        }
        let model_exists = sqlx::query("SELECT 1 FROM models WHERE name = $1")
            .bind(model_name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !model_exists {
            return Err(not_found("model", model_name));
        }
        // The foreign keys catch a pool or model deleted since the checks.
        sqlx::query(
            "INSERT INTO pool_models (pool_id, model_name) VALUES ($1, $2) \
             ON CONFLICT (pool_id, model_name) DO NOTHING",
        )
        .bind(pool_id)
        .bind(model_name)
        .execute(&mut *tx)
        .await
        .map_err(|err| {
            on_foreign_key_violation(err, "pool model", &format!("{pool_id}/{model_name}"))
        })?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_model_from_pool(&self, pool_id: &str, model_name: &str) -> StoreResult<()> {
        let deleted = sqlx::query("DELETE FROM pool_models WHERE pool_id = $1 AND model_name = $2")
            .bind(pool_id)
            .bind(model_name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(not_found("pool model", format!("{pool_id}/{model_name}")));
        }
        Ok(())
    }

    async fn list_pool_models(
        &self,
        pool_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<ModelRecord>> {
        let mut tx = self.pool.begin().await?;
        if !pool_exists(&mut tx, pool_id).await? {
            return Err(not_found("pool", pool_id));
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            model_columns!(),
            " FROM pool_models pm JOIN models m ON m.name = pm.model_name \
             WHERE pm.pool_id = $1 AND m.name > $2 ORDER BY m.name LIMIT $3"
        ))
        .bind(pool_id)
        .bind(after_key(&page))
        .bind(page_limits(&page).1)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = rows
            .iter()
            .map(model_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, &page, |m| m.name.clone()))
    }

    async fn list_model_pools(
        &self,
        model_name: &str,
        page: PageQuery,
    ) -> StoreResult<Page<PoolRecord>> {
        let mut tx = self.pool.begin().await?;
        let model_exists = sqlx::query("SELECT 1 FROM models WHERE name = $1")
            .bind(model_name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !model_exists {
            return Err(not_found("model", model_name));
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            pool_columns!(),
            " FROM pool_models pm JOIN pools p ON p.id = pm.pool_id \
             WHERE pm.model_name = $1 AND p.id > $2 ORDER BY p.id LIMIT $3"
        ))
        .bind(model_name)
        .bind(after_key(&page))
        .bind(page_limits(&page).1)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = rows
            .iter()
            .map(pool_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, &page, |p| p.id.clone()))
    }

    // ---- models ----

    async fn create_model(
        &self,
        model: ModelRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<ModelRecord>> {
        let mut tx = self.pool.begin().await?;
        if let Some(key) = &idempotency
            && let Reservation::Replay { resource_key, .. } =
                reserve(&mut tx, key, &model.name).await?
        {
            let record = fetch_model(&mut tx, &resource_key).await?;
            return Ok(Created {
                record,
                replayed: true,
            });
        }
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
        let record = model_from_row(&row)?;
        tx.commit().await?;
        Ok(Created {
            record,
            replayed: false,
        })
    }

    async fn get_model(&self, name: &str) -> StoreResult<ModelRecord> {
        let mut conn = self.pool.acquire().await?;
        fetch_model(&mut conn, name).await
    }

    async fn list_models(&self, page: PageQuery) -> StoreResult<Page<ModelRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            model_columns!(),
            " FROM models m WHERE m.name > $1 ORDER BY m.name LIMIT $2"
        ))
        .bind(after_key(&page))
        .bind(page_limits(&page).1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(model_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, &page, |m| m.name.clone()))
    }

    async fn delete_model(&self, name: &str) -> StoreResult<()> {
        // Pool memberships go with it (ON DELETE CASCADE).
        let deleted = sqlx::query("DELETE FROM models WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(not_found("model", name));
        }
        Ok(())
    }

    // ---- hooks ----

    async fn create_hook(
        &self,
        hook: HookRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<HookRecord>> {
        let mut tx = self.pool.begin().await?;
        if let Some(key) = &idempotency
            && let Reservation::Replay { resource_key, .. } =
                reserve(&mut tx, key, &hook.name).await?
        {
            let record = fetch_hook(&mut tx, &resource_key, &self.secrets).await?;
            return Ok(Created {
                record,
                replayed: true,
            });
        }
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
        .bind(Json(sealed::seal_headers(
            &self.secrets,
            &hook.name,
            &hook.secret_headers,
        )?))
        .bind(&hook.queue)
        .bind(now())
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| on_unique_violation(err, "hook", |_| hook.name.clone()))?;
        let record = hook_from_row(&row, &self.secrets)?;
        tx.commit().await?;
        Ok(Created {
            record,
            replayed: false,
        })
    }

    async fn get_hook(&self, name: &str) -> StoreResult<HookRecord> {
        let mut conn = self.pool.acquire().await?;
        fetch_hook(&mut conn, name, &self.secrets).await
    }

    async fn list_hooks(&self, page: PageQuery) -> StoreResult<Page<HookRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            hook_columns!(),
            " FROM hooks h WHERE h.name > $1 ORDER BY h.name LIMIT $2"
        ))
        .bind(after_key(&page))
        .bind(page_limits(&page).1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|row| hook_from_row(row, &self.secrets))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, &page, |h| h.name.clone()))
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
        .bind(Json(sealed::seal_headers(
            &self.secrets,
            &hook.name,
            &hook.secret_headers,
        )?))
        .bind(&hook.queue)
        .bind(now())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let actual = sqlx::query_scalar("SELECT revision FROM hooks WHERE name = $1")
                .bind(&hook.name)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(revision_mismatch("hook", &hook.name, hook.revision, actual));
        };
        let record = hook_from_row(&row, &self.secrets)?;
        tx.commit().await?;
        Ok(record)
    }

    async fn delete_hook(&self, name: &str, expected_revision: Option<i64>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM hooks WHERE name = $1 AND ($2::BIGINT IS NULL OR revision = $2)",
        )
        .bind(name)
        .bind(expected_revision)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted == 0 {
            let actual = sqlx::query_scalar("SELECT revision FROM hooks WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            let expected = expected_revision.unwrap_or_default();
            return Err(revision_mismatch("hook", name, expected, actual));
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- chains ----

    async fn create_chain(
        &self,
        id: &str,
        definition: Vec<u8>,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<ChainRecord>> {
        let mut tx = self.pool.begin().await?;
        if let Some(key) = &idempotency
            && let Reservation::Replay {
                resource_key,
                resource_version,
            } = reserve(&mut tx, key, id).await?
        {
            let version = resource_version.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "request_id {:?} has no recorded chain version",
                    key.request_id
                ))
            })?;
            let record = fetch_chain_version(&mut tx, &resource_key, version).await?;
            return Ok(Created {
                record,
                replayed: true,
            });
        }
        let created_at = now();
        // A new id starts at version 1; a deleted one comes back to life with
        // the next number. A live one matches the WHERE of neither branch, so
        // nothing is returned. Concurrent creators serialize on the row.
        let version: Option<i64> = sqlx::query_scalar(
            "INSERT INTO chain_heads AS h (id, latest_version, created_at, deleted) \
             VALUES ($1, 1, $2, FALSE) \
             ON CONFLICT (id) DO UPDATE SET latest_version = h.latest_version + 1, \
             created_at = EXCLUDED.created_at, deleted = FALSE \
             WHERE h.deleted RETURNING h.latest_version",
        )
        .bind(id)
        .bind(created_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(version) = version else {
            return Err(StoreError::AlreadyExists {
                resource: "chain",
                id: id.to_string(),
            });
        };
        let record = insert_chain_version(&mut tx, id, version, &definition, created_at).await?;
        if let Some(key) = &idempotency {
            record_idempotent_version(&mut tx, key, version).await?;
        }
        tx.commit().await?;
        Ok(Created {
            record,
            replayed: false,
        })
    }

    async fn get_chain(
        &self,
        id: &str,
        version: Option<i64>,
        include_deleted: bool,
    ) -> StoreResult<ChainRecord> {
        let row = sqlx::query(concat!(
            "SELECT h.deleted, h.latest_version, ",
            chain_columns!(),
            " FROM chain_heads h LEFT JOIN chain_versions v \
             ON v.id = h.id AND v.version = COALESCE($2, h.latest_version) WHERE h.id = $1"
        ))
        .bind(id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("chain", id))?;
        let deleted: bool = column(&row, "deleted")?;
        if deleted && !include_deleted {
            return Err(not_found("chain", id));
        }
        // The LEFT JOIN leaves the version columns NULL for a missing version.
        let found: Option<i64> = column(&row, "version")?;
        if found.is_none() {
            let latest: i64 = column(&row, "latest_version")?;
            let version = version.unwrap_or(latest);
            return Err(not_found("chain version", format!("{id}@{version}")));
        }
        chain_from_row(&row)
    }

    async fn list_chains(&self, page: PageQuery) -> StoreResult<Page<ChainRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            chain_columns!(),
            " FROM chain_heads h JOIN chain_versions v \
             ON v.id = h.id AND v.version = h.latest_version \
             WHERE NOT h.deleted AND h.id > $1 ORDER BY h.id LIMIT $2"
        ))
        .bind(after_key(&page))
        .bind(page_limits(&page).1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(chain_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, &page, |c| c.id.clone()))
    }

    async fn list_chain_versions(
        &self,
        id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<ChainRecord>> {
        // Newest first: the page key is the last version returned.
        let before = match &page.after {
            None => i64::MAX,
            Some(after) => after.parse::<i64>().map_err(|_| {
                StoreError::FailedPrecondition(format!("page key {after:?} is not a chain version"))
            })?,
        };
        let mut tx = self.pool.begin().await?;
        let live =
            sqlx::query_scalar::<_, bool>("SELECT NOT deleted FROM chain_heads WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(false);
        if !live {
            return Err(not_found("chain", id));
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            chain_columns!(),
            " FROM chain_versions v JOIN chain_heads h ON h.id = v.id \
             WHERE v.id = $1 AND v.version < $2 ORDER BY v.version DESC LIMIT $3"
        ))
        .bind(id)
        .bind(before)
        .bind(page_limits(&page).1)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = rows
            .iter()
            .map(chain_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, &page, |c| c.version.to_string()))
    }

    async fn update_chain(
        &self,
        id: &str,
        definition: Vec<u8>,
        expected_version: Option<i64>,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<ChainRecord>> {
        let mut tx = self.pool.begin().await?;
        if let Some(key) = &idempotency
            && let Reservation::Replay {
                resource_key,
                resource_version,
            } = reserve(&mut tx, key, id).await?
        {
            let version = resource_version.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "request_id {:?} has no recorded chain version",
                    key.request_id
                ))
            })?;
            let record = fetch_chain_version(&mut tx, &resource_key, version).await?;
            return Ok(Created {
                record,
                replayed: true,
            });
        }
        let head = match lock_chain_head(&mut tx, id).await? {
            Some(head) if !head.deleted => head,
            _ => return Err(not_found("chain", id)),
        };
        if let Some(expected) = expected_version
            && expected != head.latest_version
        {
            return Err(StoreError::Conflict {
                resource: "chain",
                id: id.to_string(),
                expected,
                actual: head.latest_version,
            });
        }
        let version = head.latest_version + 1;
        sqlx::query("UPDATE chain_heads SET latest_version = $2 WHERE id = $1")
            .bind(id)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        let record = insert_chain_version(&mut tx, id, version, &definition, now()).await?;
        if let Some(key) = &idempotency {
            record_idempotent_version(&mut tx, key, version).await?;
        }
        tx.commit().await?;
        Ok(Created {
            record,
            replayed: false,
        })
    }

    async fn delete_chain(&self, id: &str, expected_version: Option<i64>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let head = match lock_chain_head(&mut tx, id).await? {
            Some(head) if !head.deleted => head,
            _ => return Err(not_found("chain", id)),
        };
        if let Some(expected) = expected_version
            && expected != head.latest_version
        {
            return Err(StoreError::Conflict {
                resource: "chain",
                id: id.to_string(),
                expected,
                actual: head.latest_version,
            });
        }
        sqlx::query("UPDATE chain_heads SET deleted = TRUE WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut builtin: Vec<&str> = BUILTIN_POOLS.iter().map(|(id, _)| *id).collect();
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
