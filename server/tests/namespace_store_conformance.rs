//! The namespaces' store contract, one suite over SQLite and PostgreSQL:
//! `default` exists from the start; namespaces are created, listed, read
//! and updated with their audit rows and move the key revision (every
//! replica reloads them with the keys); chains and hooks of two namespaces
//! with the same id stay apart; and deleting a namespace is refused while
//! it holds an unfinished run, then removes everything of it, and nothing
//! of any other namespace, in one transaction.

use std::collections::BTreeMap;

use chrono::{SubsecRound, Utc};
use taskloom_server::store::{
    ApiKeyRecord, AttemptRecord, AuditFilter, DynStore, HookRecord, IdempotencyKey,
    NamespaceRecord, PageQuery, RunFilter, RunRecord, RunStatus, StoreError,
};

mod common;

use common::stores::{RawDatabase, audit_of};

store_tests!(harness;
    (harness.store.clone()) => [
        namespaces_round_trip_and_move_the_key_revision,
        chains_and_hooks_of_two_namespaces_stay_apart,
        audit_entries_are_listed_per_namespace,
    ],
    (harness.store.clone(), harness.database.clone()) => [
        deleting_a_namespace_waits_for_its_runs_then_takes_everything_of_it,
    ],
);

fn everything() -> PageQuery {
    PageQuery {
        limit: 100,
        after: None,
    }
}

fn namespace(name: &str, pools: &[&str]) -> NamespaceRecord {
    NamespaceRecord {
        name: name.to_string(),
        description: format!("namespace {name}"),
        pools: pools.iter().map(|pool| pool.to_string()).collect(),
        created_at: Utc::now().trunc_subsecs(6),
        created_by: "local".to_string(),
    }
}

fn hook(namespace: &str, name: &str, url: &str) -> HookRecord {
    let now = Utc::now().trunc_subsecs(6);
    HookRecord {
        namespace: namespace.to_string(),
        name: name.to_string(),
        description: String::new(),
        url: url.to_string(),
        method: "POST".to_string(),
        timeout_ms: 5_000,
        headers: BTreeMap::new(),
        secret_headers: BTreeMap::from([("X-Token".to_string(), format!("{namespace}-secret"))]),
        queue: String::new(),
        revision: 1,
        created_at: now,
        updated_at: now,
    }
}

/// A run of chain `chain_id` in `namespace`, with one attempt on `queue`.
fn run(namespace: &str, id: &str, status: RunStatus) -> (RunRecord, Vec<AttemptRecord>) {
    let now = Utc::now().trunc_subsecs(6);
    let run = RunRecord {
        id: id.to_string(),
        namespace: namespace.to_string(),
        chain_id: "shared-id".to_string(),
        chain_version: 1,
        status,
        input: b"input".to_vec(),
        output: None,
        error: None,
        labels: BTreeMap::new(),
        priority: 0,
        tenant: String::new(),
        request_id: None,
        steps: 1,
        executions: 1,
        heads: None,
        input_tokens: 0,
        output_tokens: 0,
        last_seq: 0,
        created_at: now,
        started_at: Some(now),
        ended_at: status.is_terminal().then_some(now),
        updated_at: now,
        traceparent: None,
    };
    let mut attempt = AttemptRecord::ready(format!("{id}-a"), id.to_string(), "t".into(), now);
    attempt.queue = format!("{namespace}/jobs");
    (run, vec![attempt])
}

async fn plant_run(store: &DynStore, namespace: &str, id: &str, status: RunStatus) {
    let (record, attempts) = run(namespace, id, status);
    let key = IdempotencyKey {
        scope: format!("{namespace}/StartRun"),
        request_id: format!("start-{id}"),
        request_hash: "h".to_string(),
    };
    store
        .create_run(record, attempts, vec![b"e1".to_vec()], Some(key))
        .await
        .unwrap();
}

async fn run_ids(store: &DynStore, namespace: &str) -> Vec<String> {
    let filter = RunFilter {
        namespace: namespace.to_string(),
        ..RunFilter::default()
    };
    let page = store.list_runs(&filter, everything()).await.unwrap();
    page.items.into_iter().map(|run| run.id).collect()
}

async fn namespaces_round_trip_and_move_the_key_revision(store: DynStore) {
    let listed = store.list_namespaces().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].name, "default");
    assert_eq!(listed[0].created_by, "system");
    assert!(listed[0].pools.is_empty());

    let revision = store.api_key_revision().await.unwrap();
    let team = namespace("team-a", &["internal_chat_pool"]);
    let created = store
        .create_namespace(&team, &audit_of("CreateNamespace", "namespace", "team-a"))
        .await
        .unwrap();
    assert_eq!(created, team);
    assert_eq!(store.get_namespace("team-a").await.unwrap(), team);
    assert!(store.api_key_revision().await.unwrap() > revision);
    let names: Vec<String> = store
        .list_namespaces()
        .await
        .unwrap()
        .into_iter()
        .map(|namespace| namespace.name)
        .collect();
    assert_eq!(names, ["default", "team-a"]);

    let audit = audit_of("CreateNamespace", "namespace", "team-a");
    assert!(matches!(
        store.create_namespace(&team, &audit).await,
        Err(StoreError::AlreadyExists {
            resource: "namespace",
            ..
        })
    ));
    let missing_pool = namespace("team-b", &["no-such-pool"]);
    let audit = audit_of("CreateNamespace", "namespace", "team-b");
    assert!(matches!(
        store.create_namespace(&missing_pool, &audit).await,
        Err(StoreError::NotFound {
            resource: "pool",
            ..
        })
    ));
    assert!(matches!(
        store.get_namespace("team-b").await,
        Err(StoreError::NotFound { .. })
    ));

    let revision = store.api_key_revision().await.unwrap();
    let pools = vec!["internal_tasks_pool".to_string()];
    let audit = audit_of("UpdateNamespace", "namespace", "team-a");
    let updated = store
        .update_namespace("team-a", ("new words", &pools), &audit)
        .await
        .unwrap();
    assert_eq!(
        (updated.description.as_str(), &updated.pools),
        ("new words", &pools)
    );
    assert_eq!(updated.created_at, team.created_at);
    assert!(store.api_key_revision().await.unwrap() > revision);
    let audit = audit_of("UpdateNamespace", "namespace", "nope");
    assert!(matches!(
        store.update_namespace("nope", ("", &[]), &audit).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn chains_and_hooks_of_two_namespaces_stay_apart(store: DynStore) {
    let audit = audit_of("CreateNamespace", "namespace", "team-a");
    store
        .create_namespace(&namespace("team-a", &[]), &audit)
        .await
        .unwrap();
    let chain_audit = || audit_of("CreateChain", "chain", "shared-id");
    for (space, definition) in [("default", "of default"), ("team-a", "of team-a")] {
        let created = store
            .create_chain(space, "shared-id", definition.into(), None, &chain_audit())
            .await
            .unwrap();
        assert_eq!(created.record.version, 1, "{space}");
    }
    let of_team = store
        .get_chain("team-a", "shared-id", None, false)
        .await
        .unwrap();
    assert_eq!(of_team.definition, b"of team-a");
    store
        .update_chain(
            "team-a",
            "shared-id",
            b"v2".to_vec(),
            Some(1),
            None,
            &chain_audit(),
        )
        .await
        .unwrap();
    let of_default = store
        .get_chain("default", "shared-id", None, false)
        .await
        .unwrap();
    assert_eq!(
        (of_default.version, of_default.definition),
        (1, b"of default".to_vec())
    );
    store
        .delete_chain("default", "shared-id", None, &chain_audit())
        .await
        .unwrap();
    assert!(
        store
            .list_chains("default", everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let listed = store
        .list_chains("team-a", everything())
        .await
        .unwrap()
        .items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, 2);
    assert!(matches!(
        store.get_chain("team-b", "shared-id", None, true).await,
        Err(StoreError::NotFound { .. })
    ));
    let versions = store
        .list_chain_versions("team-a", "shared-id", everything())
        .await
        .unwrap();
    assert_eq!(versions.items.len(), 2);

    let hook_audit = || audit_of("CreateHook", "hook", "notify");
    for (space, url) in [
        ("default", "https://a.example/"),
        ("team-a", "https://b.example/"),
    ] {
        store
            .create_hook(hook(space, "notify", url), None, &hook_audit())
            .await
            .unwrap();
    }
    let of_team = store.get_hook("team-a", "notify").await.unwrap();
    assert_eq!(of_team.url, "https://b.example/");
    // Secrets are sealed per hook and open in their own namespace.
    assert_eq!(of_team.secret_headers["X-Token"], "team-a-secret");
    assert!(matches!(
        store.get_hook("team-b", "notify").await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .delete_hook("default", "notify", Some(1), &hook_audit())
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
    let listed = store
        .list_hooks("team-a", everything())
        .await
        .unwrap()
        .items;
    assert_eq!(listed, [of_team]);
}

async fn deleting_a_namespace_waits_for_its_runs_then_takes_everything_of_it(
    store: DynStore,
    database: RawDatabase,
) {
    for name in ["team-a", "team-b"] {
        let audit = audit_of("CreateNamespace", "namespace", name);
        store
            .create_namespace(&namespace(name, &[]), &audit)
            .await
            .unwrap();
    }
    let audit = || audit_of("Plant", "x", "x");
    for space in ["default", "team-a", "team-b"] {
        store
            .create_chain(space, "shared-id", b"def".to_vec(), None, &audit())
            .await
            .unwrap();
        store
            .create_hook(hook(space, "notify", "https://a.example/"), None, &audit())
            .await
            .unwrap();
        store
            .pause_queue(&format!("{space}/jobs"), &audit())
            .await
            .unwrap();
        plant_run(
            &store,
            space,
            &format!("{space}-done"),
            RunStatus::Succeeded,
        )
        .await;
    }
    plant_run(&store, "team-a", "team-a-live", RunStatus::Running).await;
    let now = Utc::now().trunc_subsecs(6);
    let bound = ApiKeyRecord {
        id: "k_00000000000a".to_string(),
        name: "team-a worker".to_string(),
        role: "worker".to_string(),
        namespace: Some("team-a".to_string()),
        queues: Vec::new(),
        prefix: "tlk_aaaa".to_string(),
        secret_hash: vec![7; 32],
        created_at: now,
        created_by: "local".to_string(),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
    };
    store.create_api_key(&bound, &audit()).await.unwrap();

    let delete = || audit_of("DeleteNamespace", "namespace", "team-a");
    match store.delete_namespace("team-a", now, &delete()).await {
        Err(StoreError::FailedPrecondition(message)) => {
            assert!(message.contains("1 run(s)"), "{message}");
        }
        other => panic!("expected FailedPrecondition, got {other:?}"),
    }
    // Refused: nothing went.
    assert_eq!(run_ids(&store, "team-a").await.len(), 2);
    assert!(store.get_namespace("team-a").await.is_ok());

    database
        .execute("UPDATE runs SET status = 'cancelled' WHERE id = 'team-a-live'")
        .await;
    let revision = store.api_key_revision().await.unwrap();
    let deleted = store
        .delete_namespace("team-a", now, &delete())
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    assert!(store.api_key_revision().await.unwrap() > revision);
    assert!(matches!(
        store.get_namespace("team-a").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(run_ids(&store, "team-a").await.is_empty());
    assert!(matches!(
        store.get_run("team-a-done").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.get_chain("team-a", "shared-id", None, false).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.get_hook("team-a", "notify").await,
        Err(StoreError::NotFound { .. })
    ));
    let paused = store.paused_queues().await.unwrap();
    assert_eq!(paused.len(), 2, "{paused:?}");
    assert!(!paused.contains(&"team-a/jobs".to_string()), "{paused:?}");
    let keys = store.list_api_keys().await.unwrap();
    assert_eq!(keys[0].revoked_at, Some(now));
    assert!(matches!(
        store.delete_namespace("team-a", now, &delete()).await,
        Err(StoreError::NotFound { .. })
    ));
    // A namespace made again starts empty, but a chain id used before
    // continues its versions: caches of compiled versions stay true.
    let audit_again = audit_of("CreateNamespace", "namespace", "team-a");
    store
        .create_namespace(&namespace("team-a", &[]), &audit_again)
        .await
        .unwrap();
    assert!(
        store
            .list_chains("team-a", everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let again = store
        .create_chain("team-a", "shared-id", b"new".to_vec(), None, &audit())
        .await
        .unwrap();
    assert_eq!(again.record.version, 2);
    // The other namespaces keep everything.
    for space in ["default", "team-b"] {
        assert_eq!(run_ids(&store, space).await, [format!("{space}-done")]);
        store
            .get_chain(space, "shared-id", None, false)
            .await
            .unwrap();
        store.get_hook(space, "notify").await.unwrap();
    }
}

async fn audit_entries_are_listed_per_namespace(store: DynStore) {
    for (space, action) in [("default", "CreateChain"), ("team-a", "CancelRun")] {
        let mut record = audit_of(action, "x", "same-id");
        record.namespace = space.to_string();
        store.append_audit(&record).await.unwrap();
    }
    for (space, action) in [("default", "CreateChain"), ("team-a", "CancelRun")] {
        let filter = AuditFilter {
            namespace: Some(space.to_string()),
            ..AuditFilter::default()
        };
        let listed = store
            .list_audit_events(&filter, everything())
            .await
            .unwrap();
        let seen: Vec<(&str, &str)> = listed
            .items
            .iter()
            .map(|record| (record.namespace.as_str(), record.action.as_str()))
            .collect();
        assert_eq!(seen, [(space, action)]);
    }
}
