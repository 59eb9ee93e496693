//! RetentionStore conformance: deleting one run (`DeleteRun`) and batches
//! of expired finished runs (the retention loop), on every backend (see
//! `store_tests!` in `common/stores.rs`).
//!
//! Every check counts the rows left in each table that holds something of
//! a run, so a delete that leaves an orphan behind fails.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Connection;
use taskloom_server::store::{
    AttemptRecord, AttemptStatus, AuditRecord, DynStore, IdempotencyKey, PageQuery, Rejection,
    RejectionKind, RunDeletion, RunRecord, RunStatus, StoreError,
};

mod common;

use common::stores::RawDatabase;

store_tests!(harness;
    (harness.store.clone(), harness.database.clone()) => [
        delete_run_removes_everything_of_the_run,
        delete_run_is_idempotent_by_request_id,
        refused_delete_writes_nothing,
        ended_runs_are_deleted_per_chain_oldest_first_in_batches,
    ],
    (harness.store.clone()) => [all_chains_include_deleted_chains],
);

// ---------------------------------------------------------------------------
// Fixtures

fn at(offset_s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_750_000_000_000_000).unwrap() + TimeDelta::seconds(offset_s)
}

/// A run of `chain_id` that ended at `ended` (`None`: still running).
fn run(id: &str, chain_id: &str, ended: Option<i64>) -> RunRecord {
    RunRecord {
        id: id.to_string(),
        namespace: "default".to_string(),
        chain_id: chain_id.to_string(),
        chain_version: 1,
        status: if ended.is_some() {
            RunStatus::Succeeded
        } else {
            RunStatus::Running
        },
        input: b"input".to_vec(),
        output: ended.map(|_| b"output".to_vec()),
        error: None,
        labels: BTreeMap::new(),
        priority: 0,
        tenant: "acme".to_string(),
        request_id: None,
        steps: 2,
        executions: 1,
        heads: None,
        input_tokens: 0,
        output_tokens: 0,
        last_seq: 0,
        created_at: at(0),
        started_at: Some(at(0)),
        ended_at: ended.map(at),
        updated_at: at(0),
        traceparent: None,
    }
}

fn attempt(run: &RunRecord, id: &str, step: i32, dead_lettered: bool) -> AttemptRecord {
    let mut attempt = AttemptRecord::ready(id.to_string(), run.id.clone(), "t".to_string(), at(0));
    attempt.step = step;
    attempt.queue = "work".to_string();
    attempt.status = if dead_lettered {
        AttemptStatus::Failed
    } else {
        AttemptStatus::Succeeded
    };
    attempt.dead_lettered = dead_lettered;
    attempt
}

fn key(scope: &str, request_id: &str, hash: &str) -> IdempotencyKey {
    IdempotencyKey {
        scope: scope.to_string(),
        request_id: request_id.to_string(),
        request_hash: hash.to_string(),
    }
}

fn audit(run_id: &str, request_id: &str) -> AuditRecord {
    AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        at: Utc::now(),
        actor: "local".to_string(),
        action: "DeleteRun".to_string(),
        resource_type: "run".to_string(),
        resource_id: run_id.to_string(),
        request_id: request_id.to_string(),
        outcome: AuditRecord::OK.to_string(),
        error_message: String::new(),
        replica: "r1".to_string(),
        namespace: "default".to_string(),
    }
}

/// Stores `run` with two attempts (one dead-lettered), three events and
/// the idempotency key of the StartRun that made it.
async fn plant(store: &DynStore, run: RunRecord) {
    let attempts = vec![
        attempt(&run, &format!("{}-a1", run.id), 1, false),
        attempt(&run, &format!("{}-a2", run.id), 2, true),
    ];
    let events = vec![b"e1".to_vec(), b"e2".to_vec(), b"e3".to_vec()];
    let start_key = key("StartRun", &format!("start-{}", run.id), "h");
    store
        .create_run(run, attempts, events, Some(start_key))
        .await
        .unwrap();
}

/// Rows of `run_id` in every table that holds something of a run.
async fn rows_of(database: &RawDatabase, run_id: &str) -> [i64; 4] {
    let p = match database {
        RawDatabase::Sqlite(_) => "?",
        RawDatabase::Postgres(_) => "$1",
    };
    let queries = [
        format!("SELECT count(*) FROM runs WHERE id = {p}"),
        format!("SELECT count(*) FROM attempts WHERE run_id = {p}"),
        format!("SELECT count(*) FROM run_events WHERE run_id = {p}"),
        format!(
            "SELECT count(*) FROM idempotency_keys WHERE resource_key = {p} AND scope <> 'DeleteRun'"
        ),
    ];
    let mut counts = [0; 4];
    for (count, sql) in counts.iter_mut().zip(&queries) {
        *count = scalar(database, sql, run_id).await;
    }
    counts
}

async fn audit_rows(database: &RawDatabase, run_id: &str) -> i64 {
    let sql = match database {
        RawDatabase::Sqlite(_) => "SELECT count(*) FROM audit_events WHERE resource_id = ?",
        RawDatabase::Postgres(_) => "SELECT count(*) FROM audit_events WHERE resource_id = $1",
    };
    scalar(database, sql, run_id).await
}

async fn scalar(database: &RawDatabase, sql: &str, bind: &str) -> i64 {
    match database {
        RawDatabase::Sqlite(path) => {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .unwrap();
            sqlx::query_scalar(sql)
                .bind(bind)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
        RawDatabase::Postgres(url) => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sql)
                .bind(bind)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    }
}

fn finished_only(run: &RunRecord) -> Option<Rejection> {
    (!run.status.is_terminal()).then(|| Rejection {
        kind: RejectionKind::FailedPrecondition,
        message: format!("run {} has not finished", run.id),
    })
}

const EVERYTHING: [i64; 4] = [1, 2, 3, 1];
const NOTHING: [i64; 4] = [0, 0, 0, 0];

// ---------------------------------------------------------------------------
// Checks

async fn delete_run_removes_everything_of_the_run(store: DynStore, database: RawDatabase) {
    plant(&store, run("gone", "c", Some(10))).await;
    plant(&store, run("kept", "c", Some(10))).await;
    assert_eq!(rows_of(&database, "gone").await, EVERYTHING);

    let deleted = store
        .delete_run("gone", &finished_only, None, &audit("gone", ""))
        .await
        .unwrap();
    assert_eq!(deleted, RunDeletion::Deleted);
    assert_eq!(rows_of(&database, "gone").await, NOTHING);
    assert_eq!(rows_of(&database, "kept").await, EVERYTHING);
    assert_eq!(audit_rows(&database, "gone").await, 1);
    assert!(matches!(
        store.get_run("gone").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.list_events("gone", 0, 10).await,
        Err(StoreError::NotFound { .. })
    ));
    let dead = store
        .list_dead_letters(
            "default",
            None,
            PageQuery {
                limit: 100,
                after: None,
            },
        )
        .await
        .unwrap();
    let dead_runs: Vec<&str> = dead.items.iter().map(|a| a.run_id.as_str()).collect();
    assert_eq!(dead_runs, ["kept"]);

    // Again, without a request id: the run is gone.
    assert!(matches!(
        store
            .delete_run("gone", &finished_only, None, &audit("gone", ""))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(audit_rows(&database, "gone").await, 1);
}

async fn delete_run_is_idempotent_by_request_id(store: DynStore, database: RawDatabase) {
    plant(&store, run("r1", "c", Some(10))).await;
    let first = key("DeleteRun", "del-1", "hash-of-r1");
    let deleted = store
        .delete_run(
            "r1",
            &finished_only,
            Some(first.clone()),
            &audit("r1", "del-1"),
        )
        .await
        .unwrap();
    assert_eq!(deleted, RunDeletion::Deleted);
    // The retry answers as the delete did, though the run is gone, and
    // writes no second audit row.
    let again = store
        .delete_run("r1", &finished_only, Some(first), &audit("r1", "del-1"))
        .await
        .unwrap();
    assert_eq!(again, RunDeletion::Replayed);
    assert_eq!(audit_rows(&database, "r1").await, 1);
    // The same request id for another request.
    assert!(matches!(
        store
            .delete_run(
                "r2",
                &finished_only,
                Some(key("DeleteRun", "del-1", "hash-of-r2")),
                &audit("r2", "del-1"),
            )
            .await,
        Err(StoreError::IdempotencyMismatch { .. })
    ));
    // A new request id for the deleted run.
    assert!(matches!(
        store
            .delete_run(
                "r1",
                &finished_only,
                Some(key("DeleteRun", "del-2", "hash-of-r1")),
                &audit("r1", "del-2"),
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn refused_delete_writes_nothing(store: DynStore, database: RawDatabase) {
    plant(&store, run("busy", "c", None)).await;
    let request = key("DeleteRun", "del-busy", "h");
    let refused = store
        .delete_run(
            "busy",
            &finished_only,
            Some(request.clone()),
            &audit("busy", "del-busy"),
        )
        .await
        .unwrap();
    assert!(matches!(
        refused,
        RunDeletion::Rejected(Rejection {
            kind: RejectionKind::FailedPrecondition,
            ..
        })
    ));
    assert_eq!(rows_of(&database, "busy").await, EVERYTHING);
    assert_eq!(audit_rows(&database, "busy").await, 0);
    // The refusal kept no key: once the check lets it, the same request
    // deletes the run.
    let allow = |_: &RunRecord| None;
    let deleted = store
        .delete_run("busy", &allow, Some(request), &audit("busy", "del-busy"))
        .await
        .unwrap();
    assert_eq!(deleted, RunDeletion::Deleted);
    assert_eq!(rows_of(&database, "busy").await, NOTHING);
}

/// A UUIDv7 run id (as the kernel makes them) of a run created at
/// `at(created_s)`; `n` tells runs created at once apart.
fn uuid7(created_s: i64, n: u64) -> String {
    let millis = at(created_s).timestamp_millis();
    format!(
        "{:08x}-{:04x}-7000-8000-{n:012x}",
        millis >> 16,
        millis & 0xffff
    )
}

/// A run of `chain_id` created at `created_s` that ended at `ended`.
fn aged(chain_id: &str, created_s: i64, n: u64, ended: Option<i64>) -> RunRecord {
    let mut record = run(&uuid7(created_s, n), chain_id, ended);
    record.created_at = at(created_s);
    record.started_at = Some(at(created_s));
    record
}

async fn ended_runs_are_deleted_per_chain_oldest_first_in_batches(
    store: DynStore,
    database: RawDatabase,
) {
    // Chain "a": runs created a second before they ended at 5 (failed),
    // 10, 20, 30 and 40 s; one created at 0 s that ended at 50 s; one
    // created at 0 s still running. Chain "b": one run ended at 10 s.
    let mut failed = aged("a", 4, 1, Some(5));
    failed.status = RunStatus::Failed;
    let a10 = aged("a", 9, 2, Some(10));
    let a20 = aged("a", 19, 3, Some(20));
    let a30 = aged("a", 29, 4, Some(30));
    let a40 = aged("a", 39, 5, Some(40));
    let late = aged("a", 0, 6, Some(50));
    let running = aged("a", 0, 7, None);
    let b10 = aged("b", 9, 8, Some(10));
    for record in [&a40, &a10, &late, &a30, &a20, &running, &b10, &failed] {
        plant(&store, record.clone()).await;
    }
    let id = |record: &RunRecord| record.id.clone();

    let first = store
        .delete_ended_runs(("default", "a"), at(35), 2)
        .await
        .unwrap();
    assert_eq!(first, [id(&failed), id(&a10)]);
    let second = store
        .delete_ended_runs(("default", "a"), at(35), 2)
        .await
        .unwrap();
    assert_eq!(second, [id(&a20), id(&a30)]);
    let third = store
        .delete_ended_runs(("default", "a"), at(35), 2)
        .await
        .unwrap();
    assert!(third.is_empty(), "{third:?}");
    for gone in [&failed, &a10, &a20, &a30] {
        assert_eq!(rows_of(&database, &gone.id).await, NOTHING, "{}", gone.id);
    }
    // Ended after the cutoff (however old), not ended, another chain.
    for kept in [&a40, &late, &running, &b10] {
        assert_eq!(
            rows_of(&database, &kept.id).await,
            EVERYTHING,
            "{}",
            kept.id
        );
    }
    // Whatever the cutoff, a run that has not ended stays.
    let rest = store
        .delete_ended_runs(("default", "a"), at(1_000_000), 100)
        .await
        .unwrap();
    assert_eq!(rest, [id(&late), id(&a40)]);
    assert_eq!(rows_of(&database, &running.id).await, EVERYTHING);
    assert_eq!(rows_of(&database, &b10.id).await, EVERYTHING);
    assert_eq!(audit_rows(&database, &a10.id).await, 0);
    let b = store
        .delete_ended_runs(("default", "b"), at(1_000_000), 100)
        .await
        .unwrap();
    assert_eq!(b, [id(&b10)]);
}

async fn all_chains_include_deleted_chains(store: DynStore) {
    for id in ["zeta", "alpha", "mid"] {
        store
            .create_chain("default", id, b"def".to_vec(), None, &audit(id, ""))
            .await
            .unwrap();
    }
    store
        .delete_chain("default", "mid", None, &audit("mid", ""))
        .await
        .unwrap();
    let chain = |id: &str| ("default".to_string(), id.to_string());
    assert_eq!(
        store.all_chains().await.unwrap(),
        [chain("alpha"), chain("mid"), chain("zeta")]
    );
}
