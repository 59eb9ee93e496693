//! The audit log's store contract, one suite over SQLite and PostgreSQL: a
//! control-plane write stores its audit row in its own transaction (a
//! write that fails or is replayed stores none), failures are appended on
//! their own, and the log lists newest first with filters and keyset
//! pages.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use taskloom_server::store::{
    AuditFilter, AuditRecord, BackendRecord, BackendState, Decision, DynStore, HookRecord,
    IdempotencyKey, ModelRecord, PageQuery, Plan, PoolRecord, RejectionKind, RunRecord, RunStatus,
    StoreError, TransitionOutcome,
};

mod common;

use common::stores::audit_of;

store_tests!(harness;
    (harness.store.clone()) => [
        resource_writes_store_their_row_with_the_write,
        failed_resource_writes_store_no_row,
        replayed_creates_store_no_second_row,
        chain_writes_store_their_row,
        transitions_store_the_row_only_when_applied,
        appended_rows_filter_by_every_field,
        pages_run_newest_first_without_gaps,
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

fn pool(id: &str) -> PoolRecord {
    PoolRecord {
        id: id.to_string(),
        description: String::new(),
        purpose: "chat".to_string(),
        policy: String::new(),
        discover_models: false,
        created_at: Utc::now(),
    }
}

fn model(name: &str) -> ModelRecord {
    ModelRecord {
        id: format!("id-{name}"),
        name: name.to_string(),
        context_length: 8192,
        capabilities: vec!["chat".to_string()],
        created_at: Utc::now(),
    }
}

fn hook(name: &str) -> HookRecord {
    HookRecord {
        namespace: "default".to_string(),
        name: name.to_string(),
        description: String::new(),
        url: format!("https://hooks.example/{name}"),
        method: "POST".to_string(),
        timeout_ms: 2_000,
        headers: BTreeMap::new(),
        secret_headers: BTreeMap::new(),
        queue: String::new(),
        revision: 0,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn key(scope: &str, request_id: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey {
        scope: scope.to_string(),
        request_id: request_id.to_string(),
        request_hash: "hash".to_string(),
    })
}

/// Every row of the log, newest first.
async fn logged(store: &DynStore) -> Vec<AuditRecord> {
    let page = PageQuery {
        limit: 1000,
        after: None,
    };
    let listed = store
        .list_audit_events(&AuditFilter::default(), page)
        .await
        .unwrap();
    assert_eq!(listed.next_after, None);
    listed.items
}

/// The ids of every row of the log, newest first.
async fn logged_ids(store: &DynStore) -> Vec<String> {
    logged(store).await.into_iter().map(|row| row.id).collect()
}

async fn resource_writes_store_their_row_with_the_write(store: DynStore) {
    let mut expected: Vec<AuditRecord> = Vec::new();
    let mut step = |action: &str, kind: &str, id: &str| {
        let record = audit_of(action, kind, id);
        expected.push(record.clone());
        record
    };
    let created = store
        .create_backend(backend("b"), None, &step("CreateBackend", "backend", "b"))
        .await
        .unwrap();
    let mut renamed = created.record.clone();
    renamed.name = "renamed".to_string();
    store
        .update_backend(renamed, &step("UpdateBackend", "backend", "b"))
        .await
        .unwrap();
    store
        .create_pool(pool("p"), None, &step("CreatePool", "pool", "p"))
        .await
        .unwrap();
    store
        .create_model(model("m"), None, &step("CreateModel", "model", "m"))
        .await
        .unwrap();
    let link = step("AssignBackendToPool", "pool", "p/b");
    store.assign_backend_to_pool("p", "b", &link).await.unwrap();
    let link = step("AssignModelToPool", "pool", "p/m");
    store.assign_model_to_pool("p", "m", &link).await.unwrap();
    let link = step("RemoveBackendFromPool", "pool", "p/b");
    store
        .remove_backend_from_pool("p", "b", &link)
        .await
        .unwrap();
    let link = step("RemoveModelFromPool", "pool", "p/m");
    store.remove_model_from_pool("p", "m", &link).await.unwrap();
    let hooked = store
        .create_hook(hook("h"), None, &step("CreateHook", "hook", "h"))
        .await
        .unwrap();
    let mut changed = hooked.record.clone();
    changed.description = "changed".to_string();
    store
        .update_hook(changed, &step("UpdateHook", "hook", "h"))
        .await
        .unwrap();
    store
        .delete_hook("default", "h", Some(2), &step("DeleteHook", "hook", "h"))
        .await
        .unwrap();
    store
        .delete_model("m", &step("DeleteModel", "model", "m"))
        .await
        .unwrap();
    store
        .delete_pool("p", &step("DeletePool", "pool", "p"))
        .await
        .unwrap();
    store
        .delete_backend("b", None, &step("DeleteBackend", "backend", "b"))
        .await
        .unwrap();
    expected.reverse();
    assert_eq!(logged(&store).await, expected);
}

async fn failed_resource_writes_store_no_row(store: DynStore) {
    let first = audit_of("CreateBackend", "backend", "b");
    store
        .create_backend(backend("b"), None, &first)
        .await
        .unwrap();
    let refused = [
        store
            .create_backend(
                backend("b"),
                None,
                &audit_of("CreateBackend", "backend", "b"),
            )
            .await
            .map(|_| ()),
        store
            .update_backend(backend("b"), &audit_of("UpdateBackend", "backend", "b"))
            .await
            .map(|_| ()),
        store
            .delete_backend("b", Some(7), &audit_of("DeleteBackend", "backend", "b"))
            .await,
        store
            .delete_backend("nope", None, &audit_of("DeleteBackend", "backend", "nope"))
            .await,
        store
            .delete_pool(
                "internal_chat_pool",
                &audit_of("DeletePool", "pool", "internal_chat_pool"),
            )
            .await,
        store
            .assign_backend_to_pool("nope", "b", &audit_of("AssignBackendToPool", "pool", "x"))
            .await,
        store
            .remove_model_from_pool(
                "internal_chat_pool",
                "nope",
                &audit_of("RemoveModelFromPool", "pool", "x"),
            )
            .await,
        store
            .delete_model("nope", &audit_of("DeleteModel", "model", "nope"))
            .await,
        store
            .delete_hook(
                "default",
                "nope",
                None,
                &audit_of("DeleteHook", "hook", "nope"),
            )
            .await,
        store
            .delete_chain(
                "default",
                "nope",
                None,
                &audit_of("DeleteChain", "chain", "nope"),
            )
            .await,
        store
            .update_chain(
                "default",
                "nope",
                b"v".to_vec(),
                None,
                None,
                &audit_of("UpdateChain", "chain", "nope"),
            )
            .await
            .map(|_| ()),
    ];
    for (index, result) in refused.iter().enumerate() {
        assert!(result.is_err(), "write {index} should fail: {result:?}");
    }
    assert!(matches!(refused[0], Err(StoreError::AlreadyExists { .. })));
    assert!(matches!(refused[1], Err(StoreError::Conflict { .. })));
    assert_eq!(logged_ids(&store).await, [first.id]);
}

async fn replayed_creates_store_no_second_row(store: DynStore) {
    let first = audit_of("CreatePool", "pool", "p");
    let created = store
        .create_pool(pool("p"), key("CreatePool", "req-1"), &first)
        .await
        .unwrap();
    assert!(!created.replayed);
    let again = store
        .create_pool(
            pool("p"),
            key("CreatePool", "req-1"),
            &audit_of("CreatePool", "pool", "p"),
        )
        .await
        .unwrap();
    assert!(again.replayed);
    let chain = audit_of("CreateChain", "chain", "c");
    store
        .create_chain(
            "default",
            "c",
            b"v1".to_vec(),
            key("CreateChain", "req-2"),
            &chain,
        )
        .await
        .unwrap();
    let replayed = store
        .create_chain(
            "default",
            "c",
            b"v1".to_vec(),
            key("CreateChain", "req-2"),
            &audit_of("CreateChain", "chain", "c"),
        )
        .await
        .unwrap();
    assert!(replayed.replayed);
    assert_eq!(logged_ids(&store).await, [chain.id, first.id]);
}

async fn chain_writes_store_their_row(store: DynStore) {
    let created = audit_of("CreateChain", "chain", "c");
    let updated = audit_of("UpdateChain", "chain", "c");
    let deleted = audit_of("DeleteChain", "chain", "c");
    store
        .create_chain("default", "c", b"v1".to_vec(), None, &created)
        .await
        .unwrap();
    store
        .update_chain("default", "c", b"v2".to_vec(), Some(1), None, &updated)
        .await
        .unwrap();
    // A stale version conflicts and leaves no row.
    let stale = store
        .update_chain(
            "default",
            "c",
            b"v3".to_vec(),
            Some(1),
            None,
            &audit_of("UpdateChain", "chain", "c"),
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })));
    store
        .delete_chain("default", "c", Some(2), &deleted)
        .await
        .unwrap();
    assert_eq!(logged(&store).await, [deleted, updated, created]);
}

fn queued_run(id: &str) -> RunRecord {
    let at = DateTime::from_timestamp_micros(1_750_000_000_000_000).unwrap();
    RunRecord {
        id: id.to_string(),
        namespace: "default".to_string(),
        chain_id: "c".to_string(),
        chain_version: 1,
        status: RunStatus::Queued,
        input: b"input".to_vec(),
        output: None,
        error: None,
        labels: BTreeMap::new(),
        priority: 0,
        tenant: String::new(),
        request_id: None,
        steps: 0,
        executions: 0,
        heads: None,
        input_tokens: 0,
        output_tokens: 0,
        last_seq: 0,
        created_at: at,
        started_at: None,
        ended_at: None,
        updated_at: at,
        traceparent: None,
    }
}

/// A decision that moves the run to `status`.
fn to_status(status: RunStatus) -> Decision {
    Decision::new(move |snapshot| {
        let mut run = snapshot.run.clone();
        run.status = status;
        Plan {
            run: Some(run),
            ..Plan::apply()
        }
    })
}

async fn transitions_store_the_row_only_when_applied(store: DynStore) {
    store
        .create_run(queued_run("r"), Vec::new(), Vec::new(), None)
        .await
        .unwrap();
    let paused = audit_of("PauseRun", "run", "r");
    let outcome = store
        .transition(
            "r",
            to_status(RunStatus::Paused).with_audit(Some(paused.clone())),
        )
        .await
        .unwrap();
    assert!(matches!(outcome, TransitionOutcome::Applied { .. }));

    let rejecting = Decision::new(|_| Plan::reject(RejectionKind::FailedPrecondition, "no"))
        .with_audit(Some(audit_of("ResumeRun", "run", "r")));
    let outcome = store.transition("r", rejecting).await.unwrap();
    assert!(matches!(outcome, TransitionOutcome::Rejected(_)));

    let repeat =
        Decision::new(|_| Plan::repeat()).with_audit(Some(audit_of("SubmitInput", "run", "r")));
    let outcome = store.transition("r", repeat).await.unwrap();
    assert!(matches!(outcome, TransitionOutcome::Applied { .. }));

    let resumed = audit_of("ResumeRun", "run", "r");
    let keyed = to_status(RunStatus::Running)
        .with_idempotency(key("ResumeRun", "req-9"))
        .with_audit(Some(resumed.clone()));
    let outcome = store.transition("r", keyed).await.unwrap();
    assert!(matches!(outcome, TransitionOutcome::Applied { .. }));
    let replay = to_status(RunStatus::Running)
        .with_idempotency(key("ResumeRun", "req-9"))
        .with_audit(Some(audit_of("ResumeRun", "run", "r")));
    let outcome = store.transition("r", replay).await.unwrap();
    assert!(matches!(outcome, TransitionOutcome::Replayed(_)));

    // Batches carry no audit record: only single transitions honour one.
    let batch = vec![(
        "r".to_string(),
        to_status(RunStatus::Paused).with_audit(Some(audit_of("PauseRun", "run", "r"))),
    )];
    assert!(matches!(
        store.transition_many(batch).await,
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(logged(&store).await, [resumed, paused]);
}

/// Ten rows a second apart from `base`, over two actors, three actions and
/// two resources.
fn fixture_rows(base: DateTime<Utc>) -> Vec<AuditRecord> {
    (0..10)
        .map(|index| {
            let (action, kind, id) = match index % 3 {
                0 => ("CreateChain", "chain", "c1"),
                1 => ("DeleteChain", "chain", "c2"),
                _ => ("CancelRun", "run", "r1"),
            };
            let mut record = audit_of(action, kind, id);
            record.at = base + Duration::seconds(index);
            record.actor = if index % 2 == 0 { "local" } else { "key:abc" }.to_string();
            if index == 4 {
                record.outcome = "NOT_FOUND".to_string();
                record.error_message = "chain \"c1\" not found".to_string();
            }
            record
        })
        .collect()
}

async fn listed(store: &DynStore, filter: AuditFilter) -> Vec<i64> {
    let page = PageQuery {
        limit: 100,
        after: None,
    };
    let rows = store.list_audit_events(&filter, page).await.unwrap();
    let base = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    rows.items
        .iter()
        .map(|row| (row.at - base).num_seconds())
        .collect()
}

async fn appended_rows_filter_by_every_field(store: DynStore) {
    let base = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let rows = fixture_rows(base);
    for row in &rows {
        store.append_audit(row).await.unwrap();
    }
    let everything = logged(&store).await;
    let newest_first: Vec<AuditRecord> = rows.iter().rev().cloned().collect();
    assert_eq!(everything, newest_first, "rows round-trip, newest first");

    let actor = |actor: &str| AuditFilter {
        actor: Some(actor.to_string()),
        ..Default::default()
    };
    assert_eq!(listed(&store, actor("key:abc")).await, [9, 7, 5, 3, 1]);
    let action = AuditFilter {
        action: Some("CancelRun".to_string()),
        ..Default::default()
    };
    assert_eq!(listed(&store, action).await, [8, 5, 2]);
    let resource = AuditFilter {
        resource_type: Some("chain".to_string()),
        resource_id: Some("c2".to_string()),
        ..Default::default()
    };
    assert_eq!(listed(&store, resource).await, [7, 4, 1]);
    let kind = AuditFilter {
        resource_type: Some("run".to_string()),
        ..Default::default()
    };
    assert_eq!(listed(&store, kind).await, [8, 5, 2]);
    // Start inclusive, end exclusive.
    let window = AuditFilter {
        start: Some(base + Duration::seconds(3)),
        end: Some(base + Duration::seconds(6)),
        ..Default::default()
    };
    assert_eq!(listed(&store, window).await, [5, 4, 3]);
    let combined = AuditFilter {
        actor: Some("local".to_string()),
        resource_type: Some("chain".to_string()),
        start: Some(base + Duration::seconds(1)),
        ..Default::default()
    };
    assert_eq!(listed(&store, combined).await, [6, 4]);
    let nobody = AuditFilter {
        actor: Some("key:nobody".to_string()),
        ..Default::default()
    };
    assert!(listed(&store, nobody).await.is_empty());
    assert_eq!(everything[5].outcome, "NOT_FOUND");
}

async fn pages_run_newest_first_without_gaps(store: DynStore) {
    let base = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let rows = fixture_rows(base);
    for row in &rows {
        store.append_audit(row).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_audit_events(&AuditFilter::default(), PageQuery { limit: 4, after })
            .await
            .unwrap();
        sizes.push(page.items.len());
        if let Some(next) = &page.next_after {
            assert_eq!(Some(next), page.items.last().map(|row| &row.id));
        }
        seen.extend(page.items.into_iter().map(|row| row.id));
        after = page.next_after;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(sizes, [4, 4, 2]);
    let expected: Vec<String> = rows.iter().rev().map(|row| row.id.clone()).collect();
    assert_eq!(seen, expected);
    // Pages of a filtered listing stay within the filter.
    let filter = AuditFilter {
        actor: Some("local".to_string()),
        ..Default::default()
    };
    let first = store
        .list_audit_events(
            &filter,
            PageQuery {
                limit: 2,
                after: None,
            },
        )
        .await
        .unwrap();
    let second = store
        .list_audit_events(
            &filter,
            PageQuery {
                limit: 2,
                after: first.next_after.clone(),
            },
        )
        .await
        .unwrap();
    let actors: Vec<&str> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|row| row.actor.as_str())
        .collect();
    assert_eq!(actors, ["local"; 4]);
    assert_eq!(second.items[0].at, base + Duration::seconds(4));
}
