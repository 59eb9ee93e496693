//! Store conformance: one suite, run against every backend.
//!
//! Each check is written once as `async fn name(store: DynStore)`;
//! `store_tests!` (in `common/stores.rs`, shared with the run store's suite)
//! stamps out a `#[tokio::test]` per check and backend (`sqlite::name`,
//! `postgres::name`), so `cargo test --test store_conformance sqlite` runs
//! the SQLite half.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;

use chrono::{DateTime, Utc};
use taskloom_server::store::{
    self, BUILTIN_POOLS, BackendRecord, BackendState, ChainRecord, Created, DynStore, HookRecord,
    IdempotencyKey, Limits, ModelRecord, ObservedModel, Page, PageQuery, PoolRecord, StoreError,
    StoreResult, WorkerSessionRecord,
};

mod common;

use common::Backend;
use common::stores::{audit, test_secrets};

// ---------------------------------------------------------------------------
// The suite

store_tests!(harness;
    (harness.store.clone(), harness.backend) => [reports_its_kind],
    (harness.store.clone()) => [
        migrate_seeds_builtin_pools_idempotently,
        backend_crud_round_trip,
        backend_unique_id_and_name,
        backend_missing_is_not_found,
        backend_stale_revision_conflicts,
        backend_state_does_not_bump_revision,
        backends_paginate_by_name,
        backend_idempotent_create,
        concurrent_creates_with_one_request_id,
        concurrent_distinct_writes_all_succeed,
        pool_crud_and_builtin_protection,
        pools_paginate_by_id,
        pool_backend_membership,
        pool_model_membership,
        membership_pages,
        model_crud_and_errors,
        models_paginate_by_name,
        hook_crud_and_revisions,
        hooks_paginate_by_name,
        chain_versions_lifecycle,
        chain_recreate_continues_numbering,
        chain_idempotency,
        chains_paginate_by_id_excluding_deleted,
        chain_versions_paginate_newest_first,
        missing_chain_is_not_found,
        worker_sessions_per_replica,
    ],
);

async fn reports_its_kind(store: DynStore, backend: Backend) {
    assert_eq!(store.kind(), backend.name());
}

// ---------------------------------------------------------------------------
// Fixtures and helpers

/// Asserts that `result` is an error matching `pattern`.
macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            other => panic!("expected {}, got {:?}", stringify!($pattern), other),
        }
    };
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Timestamps the fixtures carry: the store must replace them with its own.
const CALLER_TIME: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// Now, at the microsecond precision both backends keep.
fn micros_now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

/// Asserts that the store stamped `at` itself during a call that started at
/// `before`.
fn assert_stamped_since(at: DateTime<Utc>, before: DateTime<Utc>) {
    assert!(
        before <= at && at <= Utc::now(),
        "timestamp {at} was not set by the store during the call (started {before})"
    );
}

/// A backend as the API layer would hand it to `create_backend`.
fn backend(id: &str, name: &str) -> BackendRecord {
    BackendRecord {
        id: id.to_string(),
        name: name.to_string(),
        backend_type: "ollama".to_string(),
        base_url: format!("http://{name}.local:11434"),
        api_key: Some(format!("sk-{id}")),
        priority: 5,
        max_concurrency: 4,
        requests_per_minute: 60,
        tokens_per_minute: 90_000,
        model_limits: [(
            "llama3:8b".to_string(),
            Limits {
                max_concurrency: 2,
                requests_per_minute: 30,
                tokens_per_minute: 0,
            },
        )]
        .into(),
        omit_stream_options: true,
        request_timeout_ms: 30_000,
        labels: labels(&[("tier", "gpu"), ("zone", "eu-1")]),
        state: BackendState::default(),
        revision: 0,
        created_at: CALLER_TIME,
        updated_at: CALLER_TIME,
    }
}

fn pool(id: &str) -> PoolRecord {
    PoolRecord {
        id: id.to_string(),
        description: format!("pool {id}"),
        purpose: "chat".to_string(),
        policy: "least_loaded".to_string(),
        discover_models: true,
        created_at: CALLER_TIME,
    }
}

fn model(name: &str) -> ModelRecord {
    ModelRecord {
        id: format!("id-{name}"),
        name: name.to_string(),
        context_length: 8192,
        capabilities: vec!["chat".to_string(), "stream".to_string()],
        created_at: CALLER_TIME,
    }
}

fn hook(name: &str) -> HookRecord {
    HookRecord {
        namespace: "default".to_string(),
        name: name.to_string(),
        description: format!("hook {name}"),
        url: format!("https://hooks.example/{name}"),
        method: "POST".to_string(),
        timeout_ms: 2_000,
        headers: labels(&[("x-trace", "on")]),
        secret_headers: labels(&[("authorization", "Bearer s3cret")]),
        queue: "default".to_string(),
        revision: 0,
        created_at: CALLER_TIME,
        updated_at: CALLER_TIME,
    }
}

fn key(scope: &str, request_id: &str, request_hash: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey {
        scope: scope.to_string(),
        request_id: request_id.to_string(),
        request_hash: request_hash.to_string(),
    })
}

fn first_page(limit: u32) -> PageQuery {
    PageQuery { limit, after: None }
}

/// A large first page: everything, for small fixtures.
fn everything() -> PageQuery {
    first_page(1000)
}

/// The input record with the fields the store owns (revision, timestamps)
/// taken from the stored one: what a create must have kept.
fn backend_as_stored(input: &BackendRecord, stored: &BackendRecord) -> BackendRecord {
    BackendRecord {
        revision: stored.revision,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
        ..input.clone()
    }
}

fn hook_as_stored(input: &HookRecord, stored: &HookRecord) -> HookRecord {
    HookRecord {
        revision: stored.revision,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
        ..input.clone()
    }
}

/// Follows `next_after` from the first page to the last, checking the page
/// contract on the way: no page over `limit`, a page that promises more is
/// full and its `next_after` is the key of its last item.
async fn all_pages<T, Key, List, Fut>(limit: u32, key_of: Key, mut list: List) -> Vec<Page<T>>
where
    T: Debug,
    Key: Fn(&T) -> String,
    List: FnMut(PageQuery) -> Fut,
    Fut: Future<Output = StoreResult<Page<T>>>,
{
    let mut pages: Vec<Page<T>> = Vec::new();
    let mut after = None;
    loop {
        let page = list(PageQuery { limit, after }).await.unwrap();
        assert!(
            page.items.len() <= limit as usize,
            "page over the limit: {page:?}"
        );
        if let Some(next) = &page.next_after {
            assert_eq!(
                page.items.len(),
                limit as usize,
                "short page with more: {page:?}"
            );
            assert_eq!(Some(next.clone()), page.items.last().map(&key_of));
        }
        after = page.next_after.clone();
        pages.push(page);
        if after.is_none() {
            return pages;
        }
        assert!(pages.len() <= 100, "pagination does not terminate");
    }
}

fn page_sizes<T>(pages: &[Page<T>]) -> Vec<usize> {
    pages.iter().map(|page| page.items.len()).collect()
}

fn flatten<T>(pages: Vec<Page<T>>) -> Vec<T> {
    pages.into_iter().flat_map(|page| page.items).collect()
}

fn names(backends: &[BackendRecord]) -> Vec<&str> {
    backends.iter().map(|b| b.name.as_str()).collect()
}

fn pool_ids(pools: &[PoolRecord]) -> Vec<&str> {
    pools.iter().map(|p| p.id.as_str()).collect()
}

fn model_names(models: &[ModelRecord]) -> Vec<&str> {
    models.iter().map(|m| m.name.as_str()).collect()
}

// ---------------------------------------------------------------------------
// Migrations

async fn migrate_seeds_builtin_pools_idempotently(store: DynStore) {
    let pools = store.list_pools(everything()).await.unwrap();
    assert_eq!(pools.next_after, None);
    let mut expected: Vec<(&str, &str)> = BUILTIN_POOLS.to_vec();
    expected.sort();
    let seeded: Vec<(&str, &str)> = pools
        .items
        .iter()
        .map(|p| (p.id.as_str(), p.purpose.as_str()))
        .collect();
    assert_eq!(seeded, expected);

    // Running migrations again changes nothing, built-in pools included.
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.list_pools(everything()).await.unwrap(), pools);
    for (id, purpose) in BUILTIN_POOLS {
        assert_eq!(store.get_pool(id).await.unwrap().purpose, purpose);
    }
}

// ---------------------------------------------------------------------------
// Backends

async fn backend_crud_round_trip(store: DynStore) {
    let input = backend("b-1", "alpha");
    let before = micros_now();
    let created = store
        .create_backend(input.clone(), None, &audit())
        .await
        .unwrap();
    assert!(!created.replayed);
    let stored = created.record;
    assert_eq!(stored.revision, 1);
    assert_stamped_since(stored.created_at, before);
    assert_eq!(stored.updated_at, stored.created_at);
    assert_eq!(stored, backend_as_stored(&input, &stored));
    assert_eq!(store.get_backend("b-1").await.unwrap(), stored);
    assert_eq!(
        store.list_backends(everything()).await.unwrap().items,
        vec![stored.clone()]
    );

    // Every writable field changes; the reconciler's state does not come
    // from an update.
    let edit = BackendRecord {
        name: "alpha-renamed".to_string(),
        backend_type: "openai_compatible".to_string(),
        base_url: "https://llm.example/v1".to_string(),
        api_key: None,
        priority: 9,
        max_concurrency: 16,
        request_timeout_ms: 0,
        labels: labels(&[("tier", "cpu")]),
        state: BackendState {
            health: "healthy".to_string(),
            ..BackendState::default()
        },
        ..stored.clone()
    };
    let before = micros_now();
    let updated = store.update_backend(edit.clone(), &audit()).await.unwrap();
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.created_at, stored.created_at);
    assert_stamped_since(updated.updated_at, before);
    assert_eq!(
        updated,
        BackendRecord {
            revision: 2,
            updated_at: updated.updated_at,
            state: BackendState::default(),
            ..edit
        }
    );
    assert_eq!(store.get_backend("b-1").await.unwrap(), updated);

    // A second update continues from the new revision.
    let again = store
        .update_backend(
            BackendRecord {
                priority: 1,
                ..updated.clone()
            },
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(again.revision, 3);

    store
        .delete_backend("b-1", Some(3), &audit())
        .await
        .unwrap();
    assert_err!(store.get_backend("b-1").await, StoreError::NotFound { .. });
    assert!(
        store
            .list_backends(everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_err!(
        store.delete_backend("b-1", None, &audit()).await,
        StoreError::NotFound { .. }
    );
}

async fn backend_unique_id_and_name(store: DynStore) {
    let first = store
        .create_backend(backend("b-1", "alpha"), None, &audit())
        .await
        .unwrap()
        .record;
    assert_err!(
        store
            .create_backend(backend("b-1", "other-name"), None, &audit())
            .await,
        StoreError::AlreadyExists { .. }
    );
    assert_err!(
        store
            .create_backend(backend("b-2", "alpha"), None, &audit())
            .await,
        StoreError::AlreadyExists { .. }
    );

    // Renaming onto a taken name is refused and changes nothing.
    let second = store
        .create_backend(backend("b-2", "beta"), None, &audit())
        .await
        .unwrap()
        .record;
    assert_err!(
        store
            .update_backend(
                BackendRecord {
                    name: "alpha".to_string(),
                    ..second.clone()
                },
                &audit()
            )
            .await,
        StoreError::AlreadyExists { .. }
    );
    assert_eq!(store.get_backend("b-2").await.unwrap(), second);
    assert_eq!(store.get_backend("b-1").await.unwrap(), first);

    // Keeping one's own name is not a clash.
    let kept = store
        .update_backend(
            BackendRecord {
                priority: 7,
                ..second
            },
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!((kept.name.as_str(), kept.priority), ("beta", 7));
    assert_eq!(
        store.list_backends(everything()).await.unwrap().items.len(),
        2
    );
}

async fn backend_missing_is_not_found(store: DynStore) {
    assert_err!(store.get_backend("nope").await, StoreError::NotFound { .. });
    let ghost = BackendRecord {
        revision: 1,
        ..backend("nope", "ghost")
    };
    assert_err!(
        store.update_backend(ghost, &audit()).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store
            .set_backend_state("nope", BackendState::default())
            .await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.delete_backend("nope", None, &audit()).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.delete_backend("nope", Some(1), &audit()).await,
        StoreError::NotFound { .. }
    );
    assert!(
        store
            .list_backends(everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn backend_stale_revision_conflicts(store: DynStore) {
    let v1 = store
        .create_backend(backend("b-1", "alpha"), None, &audit())
        .await
        .unwrap()
        .record;
    let v2 = store
        .update_backend(
            BackendRecord {
                priority: 2,
                ..v1.clone()
            },
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(v2.revision, 2);

    // A writer still holding revision 1 loses.
    assert_err!(
        store
            .update_backend(
                BackendRecord {
                    priority: 3,
                    ..v1.clone()
                },
                &audit()
            )
            .await,
        StoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        }
    );
    assert_err!(
        store
            .update_backend(
                BackendRecord {
                    revision: 5,
                    ..v2.clone()
                },
                &audit()
            )
            .await,
        StoreError::Conflict {
            expected: 5,
            actual: 2,
            ..
        }
    );
    assert_err!(
        store.delete_backend("b-1", Some(1), &audit()).await,
        StoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        }
    );
    assert_eq!(store.get_backend("b-1").await.unwrap(), v2);

    // Without an expected revision the delete is unconditional.
    store.delete_backend("b-1", None, &audit()).await.unwrap();
    assert_err!(store.get_backend("b-1").await, StoreError::NotFound { .. });
}

async fn backend_state_does_not_bump_revision(store: DynStore) {
    let created = store
        .create_backend(backend("b-1", "alpha"), None, &audit())
        .await
        .unwrap()
        .record;
    assert_eq!(created.state, BackendState::default());

    // Microsecond timestamps: what both backends can keep exactly.
    let synced_at = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let observed = BackendState {
        health: "unhealthy".to_string(),
        models: vec!["llama3:8b".to_string(), "nomic-embed-text".to_string()],
        observed_models: vec![
            ObservedModel {
                name: "llama3:8b".to_string(),
                context_length: 8192,
                capabilities: vec!["chat".to_string()],
                size_bytes: 4_700_000_000,
            },
            ObservedModel {
                name: "nomic-embed-text".to_string(),
                ..ObservedModel::default()
            },
        ],
        models_at: Some(synced_at),
        last_error: "connection refused".to_string(),
        last_sync_at: Some(synced_at),
        latency_ms: Some(42),
    };
    store
        .set_backend_state("b-1", observed.clone())
        .await
        .unwrap();
    let after = store.get_backend("b-1").await.unwrap();
    assert_eq!(
        after,
        BackendRecord {
            state: observed.clone(),
            ..created.clone()
        }
    );

    // Back to "never synced": optional fields clear.
    store
        .set_backend_state("b-1", BackendState::default())
        .await
        .unwrap();
    assert_eq!(store.get_backend("b-1").await.unwrap(), created);

    // The revision the caller holds is still current, and an update keeps
    // the observed state.
    store
        .set_backend_state("b-1", observed.clone())
        .await
        .unwrap();
    let updated = store
        .update_backend(
            BackendRecord {
                priority: 8,
                ..created
            },
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.state, observed);
}

async fn backends_paginate_by_name(store: DynStore) {
    let empty = store.list_backends(first_page(3)).await.unwrap();
    assert_eq!(
        empty,
        Page {
            items: vec![],
            next_after: None,
            keys: vec![],
        }
    );

    // Ids run opposite to names so that ordering by id would show.
    for i in 0..7 {
        store
            .create_backend(
                backend(&format!("b-{}", 9 - i), &format!("backend-{i:02}")),
                None,
                &audit(),
            )
            .await
            .unwrap();
    }
    let expected: Vec<String> = (0..7).map(|i| format!("backend-{i:02}")).collect();

    let pages = all_pages(
        3,
        |b: &BackendRecord| b.name.clone(),
        |q| store.list_backends(q),
    )
    .await;
    assert_eq!(page_sizes(&pages), vec![3, 3, 1]);
    assert_eq!(names(&flatten(pages)), expected);

    // A limit that divides the total evenly ends without an empty page.
    let pages = all_pages(
        7,
        |b: &BackendRecord| b.name.clone(),
        |q| store.list_backends(q),
    )
    .await;
    assert_eq!(page_sizes(&pages), vec![7]);
    let pages = all_pages(
        1,
        |b: &BackendRecord| b.name.clone(),
        |q| store.list_backends(q),
    )
    .await;
    assert_eq!(names(&flatten(pages)), expected);

    // Paging resumes strictly after the given key, which need not exist.
    let tail = store
        .list_backends(PageQuery {
            limit: 10,
            after: Some("backend-04x".to_string()),
        })
        .await
        .unwrap();
    assert_eq!(names(&tail.items), vec!["backend-05", "backend-06"]);
    assert_eq!(tail.next_after, None);
}

async fn backend_idempotent_create(store: DynStore) {
    let original = store
        .create_backend(
            backend("b-1", "alpha"),
            key("CreateBackend", "req-1", "hash-1"),
            &audit(),
        )
        .await
        .unwrap();
    assert!(!original.replayed);

    // The same request again (the API layer generated a fresh id for it):
    // the original comes back and nothing is written.
    let replay = store
        .create_backend(
            backend("b-2", "alpha-2"),
            key("CreateBackend", "req-1", "hash-1"),
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(
        replay,
        Created {
            record: original.record.clone(),
            replayed: true
        }
    );
    assert_eq!(
        store.list_backends(everything()).await.unwrap().items,
        vec![original.record.clone()]
    );
    assert_err!(store.get_backend("b-2").await, StoreError::NotFound { .. });

    // Same request id, other payload.
    assert_err!(
        store
            .create_backend(
                backend("b-3", "gamma"),
                key("CreateBackend", "req-1", "hash-2"),
                &audit()
            )
            .await,
        StoreError::IdempotencyMismatch { .. }
    );
    assert_eq!(
        store.list_backends(everything()).await.unwrap().items.len(),
        1
    );

    // A replay returns the resource as it is now.
    let updated = store
        .update_backend(
            BackendRecord {
                priority: 1,
                ..original.record.clone()
            },
            &audit(),
        )
        .await
        .unwrap();
    let replay = store
        .create_backend(
            backend("b-4", "delta"),
            key("CreateBackend", "req-1", "hash-1"),
            &audit(),
        )
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.record, updated);

    // A failed create does not consume its request id.
    assert_err!(
        store
            .create_backend(
                backend("b-1", "epsilon"),
                key("CreateBackend", "req-2", "hash-3"),
                &audit()
            )
            .await,
        StoreError::AlreadyExists { .. }
    );
    let retried = store
        .create_backend(
            backend("b-5", "epsilon"),
            key("CreateBackend", "req-2", "hash-3"),
            &audit(),
        )
        .await
        .unwrap();
    assert!(!retried.replayed);

    // Request ids are scoped by operation.
    let other_scope = store
        .create_backend(
            backend("b-6", "zeta"),
            key("ImportBackend", "req-1", "hash-9"),
            &audit(),
        )
        .await
        .unwrap();
    assert!(!other_scope.replayed);
    assert_eq!(
        store.list_backends(everything()).await.unwrap().items.len(),
        3
    );
}

async fn concurrent_creates_with_one_request_id(store: DynStore) {
    let racers: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_backend(
                        backend(&format!("b-{i:02}"), &format!("racer-{i:02}")),
                        key("CreateBackend", "req-race", "hash-race"),
                        &audit(),
                    )
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for racer in racers {
        results.push(racer.await.unwrap().unwrap());
    }
    assert_eq!(
        results.iter().filter(|created| !created.replayed).count(),
        1
    );
    let winner = &results[0].record;
    assert!(results.iter().all(|created| &created.record == winner));
    assert_eq!(
        store.list_backends(everything()).await.unwrap().items,
        vec![winner.clone()]
    );
}

async fn concurrent_distinct_writes_all_succeed(store: DynStore) {
    // Writers and readers interleave; none may fail with a lock error.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("b-{i:02}");
                let created = store
                    .create_backend(backend(&id, &format!("backend-{i:02}")), None, &audit())
                    .await?;
                store.list_backends(everything()).await?;
                store
                    .update_backend(
                        BackendRecord {
                            priority: i,
                            ..created.record
                        },
                        &audit(),
                    )
                    .await?;
                store
                    .create_model(model(&format!("model-{i:02}")), None, &audit())
                    .await?;
                store.get_backend(&id).await
            })
        })
        .collect();
    for task in tasks {
        let record = task.await.unwrap().unwrap();
        assert_eq!(record.revision, 2);
    }
    assert_eq!(
        store.list_backends(everything()).await.unwrap().items.len(),
        20
    );
    assert_eq!(
        store.list_models(everything()).await.unwrap().items.len(),
        20
    );
}

// ---------------------------------------------------------------------------
// Pools

async fn pool_crud_and_builtin_protection(store: DynStore) {
    let input = pool("pool-a");
    let before = micros_now();
    let created = store
        .create_pool(input.clone(), None, &audit())
        .await
        .unwrap();
    assert!(!created.replayed);
    let stored = created.record;
    assert_stamped_since(stored.created_at, before);
    assert_eq!(
        stored,
        PoolRecord {
            created_at: stored.created_at,
            ..input
        }
    );
    assert_eq!(store.get_pool("pool-a").await.unwrap(), stored);

    assert_err!(
        store.create_pool(pool("pool-a"), None, &audit()).await,
        StoreError::AlreadyExists { .. }
    );
    assert_err!(
        store
            .create_pool(pool(BUILTIN_POOLS[0].0), None, &audit())
            .await,
        StoreError::AlreadyExists { .. }
    );

    // Idempotent create.
    let first = store
        .create_pool(
            pool("pool-b"),
            key("CreatePool", "req-1", "hash-1"),
            &audit(),
        )
        .await
        .unwrap();
    assert!(!first.replayed);
    let replay = store
        .create_pool(
            pool("pool-b"),
            key("CreatePool", "req-1", "hash-1"),
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(
        replay,
        Created {
            record: first.record,
            replayed: true
        }
    );
    assert_err!(
        store
            .create_pool(
                pool("pool-c"),
                key("CreatePool", "req-1", "hash-2"),
                &audit()
            )
            .await,
        StoreError::IdempotencyMismatch { .. }
    );
    assert_err!(store.get_pool("pool-c").await, StoreError::NotFound { .. });

    store.delete_pool("pool-a", &audit()).await.unwrap();
    assert_err!(store.get_pool("pool-a").await, StoreError::NotFound { .. });
    assert_err!(
        store.delete_pool("pool-a", &audit()).await,
        StoreError::NotFound { .. }
    );
    assert_err!(store.get_pool("nope").await, StoreError::NotFound { .. });

    for (id, _) in BUILTIN_POOLS {
        assert_err!(
            store.delete_pool(id, &audit()).await,
            StoreError::FailedPrecondition(_)
        );
        store.get_pool(id).await.unwrap();
    }
}

async fn pools_paginate_by_id(store: DynStore) {
    for i in (0..5).rev() {
        store
            .create_pool(pool(&format!("pool-{i:02}")), None, &audit())
            .await
            .unwrap();
    }
    let mut expected: Vec<String> = BUILTIN_POOLS.iter().map(|(id, _)| id.to_string()).collect();
    expected.extend((0..5).map(|i| format!("pool-{i:02}")));
    expected.sort();

    let pages = all_pages(3, |p: &PoolRecord| p.id.clone(), |q| store.list_pools(q)).await;
    assert_eq!(page_sizes(&pages), vec![3, 3, 2]);
    assert_eq!(pool_ids(&flatten(pages)), expected);
}

async fn pool_backend_membership(store: DynStore) {
    // Names sort opposite to ids: pool listings order by backend name.
    store
        .create_backend(backend("b-1", "zulu"), None, &audit())
        .await
        .unwrap();
    store
        .create_backend(backend("b-2", "alpha"), None, &audit())
        .await
        .unwrap();
    store
        .create_pool(pool("pool-a"), None, &audit())
        .await
        .unwrap();
    store
        .create_pool(pool("pool-b"), None, &audit())
        .await
        .unwrap();

    store
        .assign_backend_to_pool("pool-a", "b-1", &audit())
        .await
        .unwrap();
    store
        .assign_backend_to_pool("pool-a", "b-1", &audit())
        .await
        .unwrap(); // idempotent
    store
        .assign_backend_to_pool("pool-a", "b-2", &audit())
        .await
        .unwrap();
    store
        .assign_backend_to_pool("pool-b", "b-1", &audit())
        .await
        .unwrap();
    store
        .assign_backend_to_pool("internal_chat_pool", "b-1", &audit())
        .await
        .unwrap();

    let members = store
        .list_pool_backends("pool-a", everything())
        .await
        .unwrap();
    assert_eq!(names(&members.items), vec!["alpha", "zulu"]);
    assert_eq!(members.next_after, None);
    assert_eq!(members.items[0], store.get_backend("b-2").await.unwrap());
    let pools = store.list_backend_pools("b-1", everything()).await.unwrap();
    assert_eq!(
        pool_ids(&pools.items),
        vec!["internal_chat_pool", "pool-a", "pool-b"]
    );
    assert_eq!(pools.items[1], store.get_pool("pool-a").await.unwrap());
    assert!(
        store
            .list_pool_backends("internal_embed_pool", everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Membership does not touch the backend's revision.
    assert_eq!(store.get_backend("b-1").await.unwrap().revision, 1);

    // Missing ends.
    assert_err!(
        store.assign_backend_to_pool("nope", "b-1", &audit()).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store
            .assign_backend_to_pool("pool-a", "nope", &audit())
            .await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.list_pool_backends("nope", everything()).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.list_backend_pools("nope", everything()).await,
        StoreError::NotFound { .. }
    );

    // Removal, then removal of a non-member.
    store
        .remove_backend_from_pool("pool-a", "b-2", &audit())
        .await
        .unwrap();
    assert_err!(
        store
            .remove_backend_from_pool("pool-a", "b-2", &audit())
            .await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store
            .remove_backend_from_pool("nope", "b-2", &audit())
            .await,
        StoreError::NotFound { .. }
    );
    assert_eq!(
        names(
            &store
                .list_pool_backends("pool-a", everything())
                .await
                .unwrap()
                .items
        ),
        vec!["zulu"]
    );
    assert!(
        store
            .list_backend_pools("b-2", everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Deleting a pool drops its memberships.
    store.delete_pool("pool-b", &audit()).await.unwrap();
    assert_eq!(
        pool_ids(
            &store
                .list_backend_pools("b-1", everything())
                .await
                .unwrap()
                .items
        ),
        vec!["internal_chat_pool", "pool-a"]
    );

    // Deleting a backend drops its memberships.
    store
        .assign_backend_to_pool("pool-a", "b-2", &audit())
        .await
        .unwrap();
    store.delete_backend("b-1", None, &audit()).await.unwrap();
    assert_eq!(
        names(
            &store
                .list_pool_backends("pool-a", everything())
                .await
                .unwrap()
                .items
        ),
        vec!["alpha"]
    );
    assert!(
        store
            .list_pool_backends("internal_chat_pool", everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // A backend re-created with the same id starts with no pools.
    store
        .create_backend(backend("b-1", "zulu"), None, &audit())
        .await
        .unwrap();
    assert!(
        store
            .list_backend_pools("b-1", everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn pool_model_membership(store: DynStore) {
    store
        .create_model(model("mistral:7b"), None, &audit())
        .await
        .unwrap();
    store
        .create_model(model("llama3:8b"), None, &audit())
        .await
        .unwrap();
    store
        .create_pool(pool("pool-a"), None, &audit())
        .await
        .unwrap();

    store
        .assign_model_to_pool("pool-a", "mistral:7b", &audit())
        .await
        .unwrap();
    store
        .assign_model_to_pool("pool-a", "mistral:7b", &audit())
        .await
        .unwrap(); // idempotent
    store
        .assign_model_to_pool("pool-a", "llama3:8b", &audit())
        .await
        .unwrap();
    store
        .assign_model_to_pool("internal_chat_pool", "llama3:8b", &audit())
        .await
        .unwrap();

    let members = store
        .list_pool_models("pool-a", everything())
        .await
        .unwrap();
    assert_eq!(model_names(&members.items), vec!["llama3:8b", "mistral:7b"]);
    assert_eq!(
        members.items[0],
        store.get_model("llama3:8b").await.unwrap()
    );
    let pools = store
        .list_model_pools("llama3:8b", everything())
        .await
        .unwrap();
    assert_eq!(pool_ids(&pools.items), vec!["internal_chat_pool", "pool-a"]);

    assert_err!(
        store
            .assign_model_to_pool("nope", "llama3:8b", &audit())
            .await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.assign_model_to_pool("pool-a", "nope", &audit()).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.list_pool_models("nope", everything()).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.list_model_pools("nope", everything()).await,
        StoreError::NotFound { .. }
    );

    store
        .remove_model_from_pool("pool-a", "mistral:7b", &audit())
        .await
        .unwrap();
    assert_err!(
        store
            .remove_model_from_pool("pool-a", "mistral:7b", &audit())
            .await,
        StoreError::NotFound { .. }
    );
    assert!(
        store
            .list_model_pools("mistral:7b", everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Deleting a model drops its memberships.
    store.delete_model("llama3:8b", &audit()).await.unwrap();
    assert!(
        store
            .list_pool_models("pool-a", everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        store
            .list_pool_models("internal_chat_pool", everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Deleting a pool drops its memberships.
    store
        .assign_model_to_pool("pool-a", "mistral:7b", &audit())
        .await
        .unwrap();
    store.delete_pool("pool-a", &audit()).await.unwrap();
    assert!(
        store
            .list_model_pools("mistral:7b", everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn membership_pages(store: DynStore) {
    store
        .create_pool(pool("pool-a"), None, &audit())
        .await
        .unwrap();
    store
        .create_backend(backend("b-x", "solo"), None, &audit())
        .await
        .unwrap();
    store
        .create_model(model("solo-model"), None, &audit())
        .await
        .unwrap();
    for i in 0..5 {
        let id = format!("b-{i}");
        store
            .create_backend(backend(&id, &format!("backend-{i:02}")), None, &audit())
            .await
            .unwrap();
        store
            .assign_backend_to_pool("pool-a", &id, &audit())
            .await
            .unwrap();
        let name = format!("model-{i:02}");
        store
            .create_model(model(&name), None, &audit())
            .await
            .unwrap();
        store
            .assign_model_to_pool("pool-a", &name, &audit())
            .await
            .unwrap();
    }
    for (id, _) in BUILTIN_POOLS {
        store
            .assign_backend_to_pool(id, "b-x", &audit())
            .await
            .unwrap();
        store
            .assign_model_to_pool(id, "solo-model", &audit())
            .await
            .unwrap();
    }
    store
        .assign_backend_to_pool("pool-a", "b-x", &audit())
        .await
        .unwrap();
    store
        .assign_model_to_pool("pool-a", "solo-model", &audit())
        .await
        .unwrap();

    let pages = all_pages(
        2,
        |b: &BackendRecord| b.name.clone(),
        |q| store.list_pool_backends("pool-a", q),
    )
    .await;
    assert_eq!(page_sizes(&pages), vec![2, 2, 2]);
    assert_eq!(
        names(&flatten(pages)),
        vec![
            "backend-00",
            "backend-01",
            "backend-02",
            "backend-03",
            "backend-04",
            "solo"
        ]
    );

    let pages = all_pages(
        2,
        |m: &ModelRecord| m.name.clone(),
        |q| store.list_pool_models("pool-a", q),
    )
    .await;
    assert_eq!(page_sizes(&pages), vec![2, 2, 2]);
    assert_eq!(
        model_names(&flatten(pages)),
        vec![
            "model-00",
            "model-01",
            "model-02",
            "model-03",
            "model-04",
            "solo-model"
        ]
    );

    let mut expected_pools: Vec<&str> = BUILTIN_POOLS.iter().map(|(id, _)| *id).collect();
    expected_pools.push("pool-a");
    expected_pools.sort();
    let pages = all_pages(
        3,
        |p: &PoolRecord| p.id.clone(),
        |q| store.list_backend_pools("b-x", q),
    )
    .await;
    assert_eq!(page_sizes(&pages), vec![3, 1]);
    assert_eq!(pool_ids(&flatten(pages)), expected_pools);
    let pages = all_pages(
        3,
        |p: &PoolRecord| p.id.clone(),
        |q| store.list_model_pools("solo-model", q),
    )
    .await;
    assert_eq!(page_sizes(&pages), vec![3, 1]);
    assert_eq!(pool_ids(&flatten(pages)), expected_pools);
}

// ---------------------------------------------------------------------------
// Models

async fn model_crud_and_errors(store: DynStore) {
    let input = model("llama3:8b");
    let before = micros_now();
    let created = store
        .create_model(input.clone(), None, &audit())
        .await
        .unwrap();
    assert!(!created.replayed);
    let stored = created.record;
    assert_stamped_since(stored.created_at, before);
    assert_eq!(
        stored,
        ModelRecord {
            created_at: stored.created_at,
            ..input
        }
    );
    assert_eq!(store.get_model("llama3:8b").await.unwrap(), stored);
    assert_eq!(
        store.list_models(everything()).await.unwrap().items,
        vec![stored.clone()]
    );

    let mut clash = model("llama3:8b");
    clash.id = "another-id".to_string();
    assert_err!(
        store.create_model(clash, None, &audit()).await,
        StoreError::AlreadyExists { .. }
    );

    // Idempotent create.
    let first = store
        .create_model(
            model("nomic-embed-text"),
            key("CreateModel", "req-1", "hash-1"),
            &audit(),
        )
        .await
        .unwrap();
    assert!(!first.replayed);
    let replay = store
        .create_model(
            model("nomic-embed-text"),
            key("CreateModel", "req-1", "hash-1"),
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(
        replay,
        Created {
            record: first.record,
            replayed: true
        }
    );
    assert_err!(
        store
            .create_model(
                model("qwen2:7b"),
                key("CreateModel", "req-1", "hash-2"),
                &audit()
            )
            .await,
        StoreError::IdempotencyMismatch { .. }
    );
    assert_eq!(
        store.list_models(everything()).await.unwrap().items.len(),
        2
    );

    store.delete_model("llama3:8b", &audit()).await.unwrap();
    assert_err!(
        store.get_model("llama3:8b").await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.delete_model("llama3:8b", &audit()).await,
        StoreError::NotFound { .. }
    );
    // The name is free again.
    store
        .create_model(model("llama3:8b"), None, &audit())
        .await
        .unwrap();
}

async fn models_paginate_by_name(store: DynStore) {
    assert_eq!(
        store.list_models(first_page(2)).await.unwrap(),
        Page {
            items: vec![],
            next_after: None,
            keys: vec![],
        }
    );
    for i in (0..5).rev() {
        store
            .create_model(model(&format!("model-{i:02}")), None, &audit())
            .await
            .unwrap();
    }
    let pages = all_pages(
        2,
        |m: &ModelRecord| m.name.clone(),
        |q| store.list_models(q),
    )
    .await;
    assert_eq!(page_sizes(&pages), vec![2, 2, 1]);
    let expected: Vec<String> = (0..5).map(|i| format!("model-{i:02}")).collect();
    assert_eq!(model_names(&flatten(pages)), expected);
}

// ---------------------------------------------------------------------------
// Hooks

async fn hook_crud_and_revisions(store: DynStore) {
    let input = hook("notify");
    let before = micros_now();
    let created = store
        .create_hook(input.clone(), None, &audit())
        .await
        .unwrap();
    assert!(!created.replayed);
    let stored = created.record;
    assert_eq!(stored.revision, 1);
    assert_stamped_since(stored.created_at, before);
    assert_eq!(stored.updated_at, stored.created_at);
    assert_eq!(stored, hook_as_stored(&input, &stored));
    assert_eq!(store.get_hook("default", "notify").await.unwrap(), stored);
    assert_err!(
        store.create_hook(hook("notify"), None, &audit()).await,
        StoreError::AlreadyExists { .. }
    );

    let edit = HookRecord {
        description: "edited".to_string(),
        url: "https://hooks.example/v2".to_string(),
        method: "PUT".to_string(),
        timeout_ms: 9_000,
        headers: BTreeMap::new(),
        secret_headers: labels(&[("x-api-key", "k2")]),
        queue: "slow".to_string(),
        ..stored.clone()
    };
    let before = micros_now();
    let updated = store.update_hook(edit.clone(), &audit()).await.unwrap();
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.created_at, stored.created_at);
    assert_stamped_since(updated.updated_at, before);
    assert_eq!(
        updated,
        HookRecord {
            revision: 2,
            updated_at: updated.updated_at,
            ..edit
        }
    );
    assert_eq!(store.get_hook("default", "notify").await.unwrap(), updated);

    // Stale revisions lose.
    assert_err!(
        store.update_hook(stored.clone(), &audit()).await,
        StoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        }
    );
    assert_err!(
        store
            .delete_hook("default", "notify", Some(1), &audit())
            .await,
        StoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        }
    );
    assert_eq!(store.get_hook("default", "notify").await.unwrap(), updated);

    // Idempotent create.
    let first = store
        .create_hook(
            hook("audit"),
            key("CreateHook", "req-1", "hash-1"),
            &audit(),
        )
        .await
        .unwrap();
    let replay = store
        .create_hook(
            hook("audit"),
            key("CreateHook", "req-1", "hash-1"),
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(
        replay,
        Created {
            record: first.record,
            replayed: true
        }
    );
    assert_err!(
        store
            .create_hook(
                hook("other"),
                key("CreateHook", "req-1", "hash-2"),
                &audit()
            )
            .await,
        StoreError::IdempotencyMismatch { .. }
    );
    assert_eq!(
        store
            .list_hooks("default", everything())
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    store
        .delete_hook("default", "notify", Some(2), &audit())
        .await
        .unwrap();
    assert_err!(
        store.get_hook("default", "notify").await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.delete_hook("default", "notify", None, &audit()).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.update_hook(updated, &audit()).await,
        StoreError::NotFound { .. }
    );
    store
        .delete_hook("default", "audit", None, &audit())
        .await
        .unwrap();
    assert!(
        store
            .list_hooks("default", everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn hooks_paginate_by_name(store: DynStore) {
    assert_eq!(
        store.list_hooks("default", first_page(4)).await.unwrap(),
        Page {
            items: vec![],
            next_after: None,
            keys: vec![],
        }
    );
    for i in (0..9).rev() {
        store
            .create_hook(hook(&format!("hook-{i:02}")), None, &audit())
            .await
            .unwrap();
    }
    let pages = all_pages(
        4,
        |h: &HookRecord| h.name.clone(),
        |q| store.list_hooks("default", q),
    )
    .await;
    assert_eq!(page_sizes(&pages), vec![4, 4, 1]);
    let listed: Vec<String> = flatten(pages).into_iter().map(|h| h.name).collect();
    let expected: Vec<String> = (0..9).map(|i| format!("hook-{i:02}")).collect();
    assert_eq!(listed, expected);
}

// ---------------------------------------------------------------------------
// Chains

async fn chain_versions_lifecycle(store: DynStore) {
    let before = micros_now();
    let created = store
        .create_chain("default", "summarize", b"v1".to_vec(), None, &audit())
        .await
        .unwrap();
    assert!(!created.replayed);
    let v1 = created.record;
    assert_stamped_since(v1.created_at, before);
    assert_eq!(
        (v1.id.as_str(), v1.version, v1.definition.as_slice()),
        ("summarize", 1, &b"v1"[..])
    );
    assert_eq!(v1.created_at, v1.updated_at);
    assert_eq!(
        store
            .get_chain("default", "summarize", None, false)
            .await
            .unwrap(),
        v1
    );
    assert_err!(
        store
            .create_chain("default", "summarize", b"again".to_vec(), None, &audit())
            .await,
        StoreError::AlreadyExists { .. }
    );

    let v2 = store
        .update_chain(
            "default",
            "summarize",
            b"v2".to_vec(),
            Some(1),
            None,
            &audit(),
        )
        .await
        .unwrap();
    assert!(!v2.replayed);
    let v2 = v2.record;
    assert_eq!((v2.version, v2.definition.as_slice()), (2, &b"v2"[..]));
    assert_eq!(v2.created_at, v1.created_at);
    assert!(v2.updated_at >= v1.updated_at);
    assert_eq!(
        store
            .get_chain("default", "summarize", None, false)
            .await
            .unwrap(),
        v2
    );
    assert_eq!(
        store
            .get_chain("default", "summarize", Some(1), false)
            .await
            .unwrap(),
        v1
    );
    assert_eq!(
        store
            .get_chain("default", "summarize", Some(2), false)
            .await
            .unwrap(),
        v2
    );
    assert_err!(
        store
            .get_chain("default", "summarize", Some(3), false)
            .await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.get_chain("default", "summarize", Some(0), true).await,
        StoreError::NotFound { .. }
    );
    assert_eq!(
        store
            .list_chain_versions("default", "summarize", everything())
            .await
            .unwrap(),
        Page {
            items: vec![v2.clone(), v1.clone()],
            next_after: None,
            keys: vec!["2".into(), "1".into()],
        }
    );

    // A writer that read version 1 loses; without expectation it appends.
    assert_err!(
        store
            .update_chain(
                "default",
                "summarize",
                b"stale".to_vec(),
                Some(1),
                None,
                &audit()
            )
            .await,
        StoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        }
    );
    let v3 = store
        .update_chain("default", "summarize", b"v3".to_vec(), None, None, &audit())
        .await
        .unwrap()
        .record;
    assert_eq!(v3.version, 3);
    assert_eq!(
        store
            .list_chains("default", everything())
            .await
            .unwrap()
            .items,
        vec![v3.clone()]
    );

    assert_err!(
        store
            .delete_chain("default", "summarize", Some(2), &audit())
            .await,
        StoreError::Conflict {
            expected: 2,
            actual: 3,
            ..
        }
    );
    store
        .delete_chain("default", "summarize", Some(3), &audit())
        .await
        .unwrap();

    // Deleted: gone for everyone but runs that pinned a version.
    assert_err!(
        store.get_chain("default", "summarize", None, false).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store
            .get_chain("default", "summarize", Some(1), false)
            .await,
        StoreError::NotFound { .. }
    );
    assert_eq!(
        store
            .get_chain("default", "summarize", None, true)
            .await
            .unwrap(),
        v3
    );
    assert_eq!(
        store
            .get_chain("default", "summarize", Some(1), true)
            .await
            .unwrap(),
        v1
    );
    assert_err!(
        store
            .list_chain_versions("default", "summarize", everything())
            .await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store
            .update_chain("default", "summarize", b"v4".to_vec(), None, None, &audit())
            .await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store
            .delete_chain("default", "summarize", None, &audit())
            .await,
        StoreError::NotFound { .. }
    );
    assert!(
        store
            .list_chains("default", everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn chain_recreate_continues_numbering(store: DynStore) {
    let original = store
        .create_chain("default", "triage", b"v1".to_vec(), None, &audit())
        .await
        .unwrap()
        .record;
    store
        .update_chain("default", "triage", b"v2".to_vec(), None, None, &audit())
        .await
        .unwrap();
    store
        .delete_chain("default", "triage", None, &audit())
        .await
        .unwrap();

    let before = micros_now();
    let recreated = store
        .create_chain("default", "triage", b"fresh".to_vec(), None, &audit())
        .await
        .unwrap();
    assert!(!recreated.replayed);
    let v3 = recreated.record;
    assert_eq!((v3.version, v3.definition.as_slice()), (3, &b"fresh"[..]));
    // A new chain under an old id: created now, not when the id was first
    // used.
    assert_stamped_since(v3.created_at, before);
    assert_eq!(v3.updated_at, v3.created_at);
    assert!(v3.created_at >= original.created_at);
    assert_eq!(
        store
            .get_chain("default", "triage", None, false)
            .await
            .unwrap(),
        v3
    );
    assert_eq!(
        store
            .list_chains("default", everything())
            .await
            .unwrap()
            .items,
        vec![v3.clone()]
    );
    // Earlier versions keep their numbers and content.
    let v1 = store
        .get_chain("default", "triage", Some(1), false)
        .await
        .unwrap();
    assert_eq!(v1.definition, b"v1".to_vec());
    assert_err!(
        store
            .create_chain("default", "triage", b"dup".to_vec(), None, &audit())
            .await,
        StoreError::AlreadyExists { .. }
    );

    let v4 = store
        .update_chain("default", "triage", b"v4".to_vec(), Some(3), None, &audit())
        .await
        .unwrap()
        .record;
    assert_eq!(v4.version, 4);
    let versions = store
        .list_chain_versions("default", "triage", everything())
        .await
        .unwrap();
    assert_eq!(
        versions.items.iter().map(|c| c.version).collect::<Vec<_>>(),
        vec![4, 3, 2, 1]
    );
}

async fn chain_idempotency(store: DynStore) {
    let first = store
        .create_chain(
            "default",
            "etl",
            b"v1".to_vec(),
            key("CreateChain", "req-1", "hash-1"),
            &audit(),
        )
        .await
        .unwrap();
    assert!(!first.replayed);
    let replay = store
        .create_chain(
            "default",
            "etl",
            b"v1".to_vec(),
            key("CreateChain", "req-1", "hash-1"),
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(
        replay,
        Created {
            record: first.record.clone(),
            replayed: true
        }
    );
    assert_err!(
        store
            .create_chain(
                "default",
                "etl-2",
                b"v1".to_vec(),
                key("CreateChain", "req-1", "hash-2"),
                &audit()
            )
            .await,
        StoreError::IdempotencyMismatch { .. }
    );
    assert_err!(
        store.get_chain("default", "etl-2", None, true).await,
        StoreError::NotFound { .. }
    );

    let update = store
        .update_chain(
            "default",
            "etl",
            b"v2".to_vec(),
            Some(1),
            key("UpdateChain", "req-2", "hash-3"),
            &audit(),
        )
        .await
        .unwrap();
    assert!(!update.replayed);
    assert_eq!(update.record.version, 2);
    // The retry of the update returns version 2 instead of conflicting or
    // appending version 3.
    let replay = store
        .update_chain(
            "default",
            "etl",
            b"v2".to_vec(),
            Some(1),
            key("UpdateChain", "req-2", "hash-3"),
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(
        replay,
        Created {
            record: update.record.clone(),
            replayed: true
        }
    );
    assert_eq!(
        store
            .get_chain("default", "etl", None, false)
            .await
            .unwrap(),
        update.record
    );
    assert_err!(
        store
            .update_chain(
                "default",
                "etl",
                b"v3".to_vec(),
                None,
                key("UpdateChain", "req-2", "hash-4"),
                &audit()
            )
            .await,
        StoreError::IdempotencyMismatch { .. }
    );
    assert_eq!(
        store
            .get_chain("default", "etl", None, false)
            .await
            .unwrap()
            .version,
        2
    );

    // The request id of version 2 still replays version 2 after version 3.
    store
        .update_chain("default", "etl", b"v3".to_vec(), None, None, &audit())
        .await
        .unwrap();
    let replay = store
        .update_chain(
            "default",
            "etl",
            b"v2".to_vec(),
            Some(1),
            key("UpdateChain", "req-2", "hash-3"),
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(replay.record, update.record);
    assert!(replay.replayed);
}

async fn chains_paginate_by_id_excluding_deleted(store: DynStore) {
    assert_eq!(
        store.list_chains("default", first_page(2)).await.unwrap(),
        Page {
            items: vec![],
            next_after: None,
            keys: vec![],
        }
    );
    for i in (0..6).rev() {
        store
            .create_chain("default", &format!("chain-{i:02}"), vec![i], None, &audit())
            .await
            .unwrap();
    }
    store
        .update_chain("default", "chain-01", vec![1, 1], None, None, &audit())
        .await
        .unwrap();
    store
        .delete_chain("default", "chain-03", None, &audit())
        .await
        .unwrap();

    let pages = all_pages(
        2,
        |c: &ChainRecord| c.id.clone(),
        |q| store.list_chains("default", q),
    )
    .await;
    assert_eq!(page_sizes(&pages), vec![2, 2, 1]);
    let listed = flatten(pages);
    let ids: Vec<&str> = listed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["chain-00", "chain-01", "chain-02", "chain-04", "chain-05"]
    );
    // Each entry is the latest version.
    assert_eq!(
        (listed[1].version, listed[1].definition.clone()),
        (2, vec![1, 1])
    );
    for chain in &listed {
        assert_eq!(
            &store
                .get_chain("default", &chain.id, None, false)
                .await
                .unwrap(),
            chain
        );
    }
}

async fn chain_versions_paginate_newest_first(store: DynStore) {
    store
        .create_chain("default", "long", b"1".to_vec(), None, &audit())
        .await
        .unwrap();
    for version in 2..=7 {
        store
            .update_chain(
                "default",
                "long",
                version.to_string().into_bytes(),
                Some(version - 1),
                None,
                &audit(),
            )
            .await
            .unwrap();
    }
    let pages = all_pages(
        3,
        |c: &ChainRecord| c.version.to_string(),
        |q| store.list_chain_versions("default", "long", q),
    )
    .await;
    assert_eq!(page_sizes(&pages), vec![3, 3, 1]);
    let versions: Vec<i64> = flatten(pages).iter().map(|c| c.version).collect();
    assert_eq!(versions, vec![7, 6, 5, 4, 3, 2, 1]);

    let pages = all_pages(
        7,
        |c: &ChainRecord| c.version.to_string(),
        |q| store.list_chain_versions("default", "long", q),
    )
    .await;
    assert_eq!(page_sizes(&pages), vec![7]);
    for chain in flatten(pages) {
        assert_eq!(chain.definition, chain.version.to_string().into_bytes());
    }
}

async fn missing_chain_is_not_found(store: DynStore) {
    assert_err!(
        store.get_chain("default", "nope", None, false).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.get_chain("default", "nope", None, true).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.get_chain("default", "nope", Some(1), true).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store
            .list_chain_versions("default", "nope", everything())
            .await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store
            .update_chain("default", "nope", b"x".to_vec(), None, None, &audit())
            .await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store
            .update_chain("default", "nope", b"x".to_vec(), Some(1), None, &audit())
            .await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.delete_chain("default", "nope", None, &audit()).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store
            .delete_chain("default", "nope", Some(1), &audit())
            .await,
        StoreError::NotFound { .. }
    );
}

// ---------------------------------------------------------------------------
// SQLite specifics: the embedded file itself.

mod sqlite_file {
    use super::*;
    use sqlx::Row;

    #[tokio::test]
    async fn open_creates_the_file_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh.db");
        assert!(!path.exists());
        let store = store::open(&format!("sqlite://{}", path.display()), test_secrets())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        assert!(path.exists());

        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("durable.db");
        let path = path.to_str().unwrap();
        let (backend_record, chain) = {
            let store = store::open(path, test_secrets()).await.unwrap();
            store.migrate().await.unwrap();
            let backend_record = store
                .create_backend(
                    backend("b-1", "alpha"),
                    key("CreateBackend", "req-1", "h"),
                    &audit(),
                )
                .await
                .unwrap()
                .record;
            let chain = store
                .create_chain("default", "keep", b"v1".to_vec(), None, &audit())
                .await
                .unwrap()
                .record;
            (backend_record, chain)
        };

        let store = store::open(path, test_secrets()).await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.get_backend("b-1").await.unwrap(), backend_record);
        assert_eq!(
            store
                .get_chain("default", "keep", None, false)
                .await
                .unwrap(),
            chain
        );
        // The idempotency record survived too.
        let replay = store
            .create_backend(
                backend("b-2", "beta"),
                key("CreateBackend", "req-1", "h"),
                &audit(),
            )
            .await
            .unwrap();
        assert!(replay.replayed);
        assert_eq!(replay.record, backend_record);
    }
}

fn session(id: &str, replica: &str, slots: u32) -> WorkerSessionRecord {
    let at = |seconds: i64| DateTime::from_timestamp(1_800_000_000 + seconds, 123_456_000).unwrap();
    WorkerSessionRecord {
        session_id: id.to_string(),
        replica: replica.to_string(),
        worker_id: format!("worker-{id}"),
        name: format!("worker {id}"),
        queues: vec!["a".to_string(), "b".to_string()],
        slots,
        leases_held: 1,
        labels: BTreeMap::from([("zone".to_string(), "eu".to_string())]),
        sdk_version: "sdk/1".to_string(),
        connected_at: at(0),
        last_heartbeat: at(5),
        fenced_operations: slots as u64 * 10,
    }
}

/// Each replica's published sessions replace its earlier ones; readers see
/// only sessions seen recently; old rows are forgotten.
async fn worker_sessions_per_replica(store: DynStore) {
    let t = |seconds: i64| DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap();
    store
        .publish_sessions(
            "r1",
            &[session("s1", "r1", 4), session("s2", "r1", 2)],
            (t(10), t(0)),
        )
        .await
        .unwrap();
    store
        .publish_sessions("r2", &[session("s3", "r2", 1)], (t(10), t(0)))
        .await
        .unwrap();
    let all = store.list_sessions(t(0)).await.unwrap();
    assert_eq!(
        all,
        vec![
            session("s1", "r1", 4),
            session("s2", "r1", 2),
            session("s3", "r2", 1)
        ]
    );
    // r1 republishes: s2 closed, s1 changed.
    store
        .publish_sessions("r1", &[session("s1", "r1", 8)], (t(20), t(0)))
        .await
        .unwrap();
    let all = store.list_sessions(t(0)).await.unwrap();
    assert_eq!(all, vec![session("s1", "r1", 8), session("s3", "r2", 1)]);
    // r2 stopped publishing: stale for readers asking for recent sessions.
    assert_eq!(
        store.list_sessions(t(15)).await.unwrap(),
        vec![session("s1", "r1", 8)]
    );
    // And forgotten once older than the cutoff.
    store
        .publish_sessions("r1", &[], (t(30), t(15)))
        .await
        .unwrap();
    assert!(store.list_sessions(t(0)).await.unwrap().is_empty());
}
