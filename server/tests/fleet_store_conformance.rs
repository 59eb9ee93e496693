//! The reconciler's store capabilities, one suite over SQLite and
//! PostgreSQL: the per-backend sync lease and the declared models of a
//! backend's pools.

use chrono::{Duration, Utc};
use taskloom_server::store::{
    BackendRecord, BackendState, DynStore, ModelRecord, PoolRecord, StoreError,
};

mod common;

use common::stores::audit;

store_tests!(harness;
    (harness.store.clone()) => [
        sync_lease_has_one_holder_until_it_passes,
        sync_lease_released_is_free,
        sync_lease_of_a_missing_backend_is_not_found,
        concurrent_lease_takers_one_wins,
        declared_models_come_from_the_backends_pools,
        backend_state_round_trips_observed_models,
    ],
);

fn backend(id: &str) -> BackendRecord {
    BackendRecord {
        id: id.to_string(),
        name: format!("name-{id}"),
        backend_type: "ollama".to_string(),
        base_url: "http://127.0.0.1:11434".to_string(),
        api_key: None,
        priority: 0,
        max_concurrency: 0,
        requests_per_minute: 0,
        tokens_per_minute: 0,
        model_limits: Default::default(),
        omit_stream_options: false,
        request_timeout_ms: 0,
        labels: Default::default(),
        state: BackendState::default(),
        revision: 0,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

async fn created(store: &DynStore, id: &str) {
    store
        .create_backend(backend(id), None, &audit())
        .await
        .unwrap();
}

async fn sync_lease_has_one_holder_until_it_passes(store: DynStore) {
    created(&store, "b").await;
    let now = Utc::now();
    let lease = (now, now + Duration::seconds(30));
    assert!(
        store
            .take_sync_lease("b", "replica-1", lease)
            .await
            .unwrap()
    );
    // Held: another replica cannot take it; the holder renews it.
    assert!(
        !store
            .take_sync_lease("b", "replica-2", lease)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_sync_lease("b", "replica-1", lease)
            .await
            .unwrap()
    );
    // Once it has passed, another replica takes it over.
    let later = now + Duration::seconds(31);
    let after = (later, later + Duration::seconds(30));
    assert!(
        store
            .take_sync_lease("b", "replica-2", after)
            .await
            .unwrap()
    );
    assert!(
        !store
            .take_sync_lease("b", "replica-1", after)
            .await
            .unwrap()
    );
}

async fn sync_lease_released_is_free(store: DynStore) {
    created(&store, "b").await;
    let now = Utc::now();
    let lease = (now, now + Duration::seconds(30));
    assert!(
        store
            .take_sync_lease("b", "replica-1", lease)
            .await
            .unwrap()
    );
    // Only the holder releases it.
    store.release_sync_lease("b", "replica-2").await.unwrap();
    assert!(
        !store
            .take_sync_lease("b", "replica-2", lease)
            .await
            .unwrap()
    );
    store.release_sync_lease("b", "replica-1").await.unwrap();
    assert!(
        store
            .take_sync_lease("b", "replica-2", lease)
            .await
            .unwrap()
    );
    // Releasing a deleted backend's lease is not an error.
    store.delete_backend("b", None, &audit()).await.unwrap();
    store.release_sync_lease("b", "replica-2").await.unwrap();
}

async fn sync_lease_of_a_missing_backend_is_not_found(store: DynStore) {
    let now = Utc::now();
    let error = store
        .take_sync_lease("missing", "replica-1", (now, now + Duration::seconds(5)))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound { .. }), "{error:?}");
}

async fn concurrent_lease_takers_one_wins(store: DynStore) {
    created(&store, "b").await;
    let now = Utc::now();
    let takers = (0..8).map(|replica| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .take_sync_lease(
                    "b",
                    &format!("replica-{replica}"),
                    (now, now + Duration::seconds(30)),
                )
                .await
                .unwrap()
        })
    });
    let mut winners = 0;
    for taker in takers {
        winners += usize::from(taker.await.unwrap());
    }
    assert_eq!(winners, 1);
}

async fn declared_models_come_from_the_backends_pools(store: DynStore) {
    created(&store, "b").await;
    created(&store, "lonely").await;
    for name in ["llama3", "mistral", "qwen"] {
        let model = ModelRecord {
            id: format!("id-{name}"),
            name: name.to_string(),
            context_length: 8192,
            capabilities: vec!["chat".to_string()],
            created_at: Utc::now(),
        };
        store.create_model(model, None, &audit()).await.unwrap();
    }
    for (pool, models) in [("p1", ["llama3", "mistral"]), ("p2", ["mistral", "qwen"])] {
        let record = PoolRecord {
            id: pool.to_string(),
            description: String::new(),
            purpose: "chat".to_string(),
            policy: String::new(),
            discover_models: false,
            created_at: Utc::now(),
        };
        store.create_pool(record, None, &audit()).await.unwrap();
        for model in models {
            store
                .assign_model_to_pool(pool, model, &audit())
                .await
                .unwrap();
        }
    }
    store
        .assign_backend_to_pool("p1", "b", &audit())
        .await
        .unwrap();
    assert_eq!(
        store.declared_models_of_backend("b").await.unwrap(),
        ["llama3", "mistral"]
    );
    store
        .assign_backend_to_pool("p2", "b", &audit())
        .await
        .unwrap();
    assert_eq!(
        store.declared_models_of_backend("b").await.unwrap(),
        ["llama3", "mistral", "qwen"]
    );
    assert!(
        store
            .declared_models_of_backend("lonely")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .declared_models_of_backend("missing")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn backend_state_round_trips_observed_models(store: DynStore) {
    use chrono::SubsecRound;
    use taskloom_server::store::ObservedModel;

    created(&store, "b").await;
    let now = Utc::now().trunc_subsecs(6);
    let state = BackendState {
        health: "healthy".to_string(),
        models: vec!["llama3".to_string()],
        observed_models: vec![ObservedModel {
            name: "llama3".to_string(),
            context_length: 8192,
            capabilities: vec!["chat".to_string(), "prompt".to_string()],
            size_bytes: 4_000_000_000,
        }],
        models_at: Some(now),
        last_error: String::new(),
        last_sync_at: Some(now),
        latency_ms: Some(12),
    };
    store.set_backend_state("b", state.clone()).await.unwrap();
    assert_eq!(store.get_backend("b").await.unwrap().state, state);
}
