//! Upgrading a store written before namespaces existed: its chains, hooks,
//! runs (with their attempts), paused queues and request ids all belong to
//! `default` afterwards and work as before, on both stores.
//!
//! The store is first migrated with the migrations that came before
//! namespaces (copied from `migrations/` into a directory of their own), the
//! old rows are written with plain SQL as that version wrote them, and then
//! the store migrates as any upgraded server does.

use std::path::Path;

use sqlx::Connection;
use taskloom_server::store::{self, IdempotencyKey, PageQuery, RunFilter};

mod common;

/// The last migration before namespaces, per store.
const SQLITE_BEFORE: i64 = 13;
const POSTGRES_BEFORE: i64 = 15;

/// A directory with the migrations of `kind` up to `last`.
fn migrations_up_to(kind: &str, last: i64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(kind);
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let version: i64 = name.split('_').next().unwrap().parse().unwrap();
        if version <= last {
            std::fs::copy(&path, dir.path().join(name)).unwrap();
        }
    }
    dir
}

/// The rows an old version wrote: a chain, a hook, a run with an attempt
/// on the worker queue `jobs`, that queue paused, and the run's request id.
const OLD_ROWS_SQLITE: &[&str] = &[
    "INSERT INTO chain_heads (id, latest_version, created_at, deleted) VALUES ('c1', 1, 1, 0)",
    "INSERT INTO chain_versions (id, version, definition, created_at) VALUES ('c1', 1, x'0a026331', 1)",
    "INSERT INTO hooks (name, description, url, method, timeout_ms, headers, secret_headers, \
     queue, revision, created_at, updated_at) \
     VALUES ('h1', '', 'https://hooks.example/', 'POST', 5000, '{}', '{}', '', 1, 1, 1)",
    "INSERT INTO runs (id, chain_id, chain_version, status, input, labels, priority, tenant, \
     steps, input_tokens, output_tokens, last_seq, created_at, updated_at) \
     VALUES ('r1', 'c1', 1, 'queued', x'', '{}', 0, 'acme', 1, 0, 0, 0, 1, 1)",
    "INSERT INTO attempts (id, run_id, task_id, attempt, step, status, queue, priority, \
     available_at, lease_expiries, input, dead_lettered, input_tokens, output_tokens, created_at) \
     VALUES ('a1', 'r1', 't', 1, 1, 'ready', 'jobs', 0, 1, 0, x'', 0, 0, 0, 1)",
    "INSERT INTO paused_queues (name, paused_by, paused_at) VALUES ('jobs', 'local', 1)",
    "INSERT INTO idempotency_keys (scope, request_id, request_hash, resource_key, created_at) \
     VALUES ('StartRun', 'req-1', 'h', 'r1', 1)",
];

const OLD_ROWS_POSTGRES: &[&str] = &[
    "INSERT INTO chain_heads (id, latest_version, created_at, deleted) VALUES ('c1', 1, now(), FALSE)",
    "INSERT INTO chain_versions (id, version, definition, created_at) \
     VALUES ('c1', 1, '\\x0a026331', now())",
    "INSERT INTO hooks (name, description, url, method, timeout_ms, headers, secret_headers, \
     queue, revision, created_at, updated_at) \
     VALUES ('h1', '', 'https://hooks.example/', 'POST', 5000, '{}', '{}', '', 1, now(), now())",
    "INSERT INTO runs (id, chain_id, chain_version, status, input, labels, priority, tenant, \
     steps, input_tokens, output_tokens, last_seq, created_at, updated_at) \
     VALUES ('r1', 'c1', 1, 'queued', '\\x', '{}', 0, 'acme', 1, 0, 0, 0, now(), now())",
    "INSERT INTO attempts (id, run_id, task_id, attempt, step, status, queue, priority, \
     available_at, lease_expiries, input, dead_lettered, input_tokens, output_tokens, created_at) \
     VALUES ('a1', 'r1', 't', 1, 1, 'ready', 'jobs', 0, now(), 0, '\\x', FALSE, 0, 0, now())",
    "INSERT INTO paused_queues (name, paused_by, paused_at) VALUES ('jobs', 'local', now())",
    "INSERT INTO idempotency_keys (scope, request_id, request_hash, resource_key, created_at) \
     VALUES ('StartRun', 'req-1', 'h', 'r1', now())",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rows_of_before_namespaces_belong_to_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taskloom.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let old = migrations_up_to("sqlite", SQLITE_BEFORE);
    let migrator = sqlx::migrate::Migrator::new(old.path()).await.unwrap();
    migrator.run(&mut conn).await.unwrap();
    for sql in OLD_ROWS_SQLITE {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    upgraded_rows_belong_to_default(path.to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_of_before_namespaces_belong_to_default() {
    let url = tokio::task::spawn_blocking(taskloom_testkit::fresh_postgres_database)
        .await
        .unwrap()
        .unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let old = migrations_up_to("postgres", POSTGRES_BEFORE);
    let migrator = sqlx::migrate::Migrator::new(old.path()).await.unwrap();
    migrator.run(&mut conn).await.unwrap();
    for sql in OLD_ROWS_POSTGRES {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    upgraded_rows_belong_to_default(&url).await;
}

async fn upgraded_rows_belong_to_default(url: &str) {
    let store = store::open(url, common::stores::test_secrets())
        .await
        .unwrap();
    store.migrate().await.unwrap();

    let chain = store.get_chain("default", "c1", None, false).await.unwrap();
    assert_eq!(
        (chain.version, chain.definition),
        (1, b"\x0a\x02c1".to_vec())
    );
    assert_eq!(
        store.get_hook("default", "h1").await.unwrap().url,
        "https://hooks.example/"
    );
    let run = store.get_run("r1").await.unwrap();
    assert_eq!(
        (run.namespace.as_str(), run.chain_id.as_str()),
        ("default", "c1")
    );
    let filter = RunFilter {
        namespace: "default".into(),
        chain_id: Some("c1".into()),
        ..RunFilter::default()
    };
    let page = PageQuery {
        limit: 10,
        after: None,
    };
    let listed = store.list_runs(&filter, page).await.unwrap().items;
    assert_eq!(listed.len(), 1);
    // Queues are known by key now, the internal queue aside.
    assert_eq!(store.get_attempt("a1").await.unwrap().queue, "default/jobs");
    assert_eq!(store.paused_queues().await.unwrap(), ["default/jobs"]);
    // A retry of the old StartRun, now scoped to `default`, finds its run.
    let key = IdempotencyKey {
        scope: "default/StartRun".into(),
        request_id: "req-1".into(),
        request_hash: "h".into(),
    };
    assert_eq!(
        store.find_request(&key).await.unwrap().as_deref(),
        Some("r1")
    );
    let namespaces = store.list_namespaces().await.unwrap();
    assert_eq!(namespaces.len(), 1);
    assert_eq!(namespaces[0].name, "default");
    // A second start migrates nothing more and loses nothing.
    store.migrate().await.unwrap();
    assert_eq!(store.get_run("r1").await.unwrap().namespace, "default");
}
