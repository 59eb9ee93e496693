//! The API keys' store contract, one suite over SQLite and PostgreSQL:
//! keys are stored with their digest (never a secret) and their audit row
//! in one transaction, listed oldest first, found by digest, revoked once
//! (a second revocation keeps the first time), every create and revoke
//! moves the key revision, and uses are recorded without moving it.

use chrono::{Duration, SubsecRound, Utc};
use taskloom_server::store::{ApiKeyRecord, AuditFilter, DynStore, PageQuery, StoreError};

mod common;

use common::stores::audit_of;

store_tests!(harness;
    (harness.store.clone()) => [
        keys_round_trip_with_their_audit_row,
        revocation_keeps_its_first_time_and_moves_the_revision,
        uses_are_recorded_without_moving_the_revision,
        duplicates_and_unknown_ids_are_refused,
    ],
);

fn key(id: &str, hash_byte: u8) -> ApiKeyRecord {
    let now = Utc::now().trunc_subsecs(6);
    ApiKeyRecord {
        id: id.to_string(),
        name: format!("name of {id}"),
        role: "worker".to_string(),
        namespace: Some("team-a".to_string()),
        queues: vec!["gpu".to_string(), "cpu".to_string()],
        prefix: "tlk_abcd".to_string(),
        secret_hash: vec![hash_byte; 32],
        created_at: now,
        created_by: "local".to_string(),
        last_used_at: None,
        expires_at: Some(now + Duration::days(90)),
        revoked_at: None,
    }
}

async fn audited_ids(store: &DynStore) -> Vec<String> {
    let page = PageQuery {
        limit: 100,
        after: None,
    };
    let filter = AuditFilter {
        resource_type: Some("api_key".into()),
        ..AuditFilter::default()
    };
    let rows = store.list_audit_events(&filter, page).await.unwrap().items;
    rows.into_iter().map(|row| row.resource_id).collect()
}

async fn keys_round_trip_with_their_audit_row(store: DynStore) {
    assert!(store.list_api_keys().await.unwrap().is_empty());
    let first = key("k_000000000001", 1);
    let mut second = key("k_000000000002", 2);
    second.namespace = None;
    second.queues = Vec::new();
    second.expires_at = None;
    second.role = "admin".into();
    second.created_at = first.created_at + Duration::seconds(1);
    for record in [&first, &second] {
        store
            .create_api_key(record, &audit_of("CreateApiKey", "api_key", &record.id))
            .await
            .unwrap();
    }
    assert_eq!(
        store.list_api_keys().await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(
        store.find_api_key(&[2; 32]).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(store.find_api_key(&[3; 32]).await.unwrap(), None);
    assert_eq!(
        audited_ids(&store).await,
        vec![second.id.clone(), first.id.clone()]
    );
}

async fn revocation_keeps_its_first_time_and_moves_the_revision(store: DynStore) {
    let record = key("k_00000000000a", 10);
    let start = store.api_key_revision().await.unwrap();
    store
        .create_api_key(&record, &audit_of("CreateApiKey", "api_key", &record.id))
        .await
        .unwrap();
    let created = store.api_key_revision().await.unwrap();
    assert_ne!(created, start);
    let at = Utc::now().trunc_subsecs(6);
    let revoked = store
        .revoke_api_key(
            &record.id,
            at,
            &audit_of("RevokeApiKey", "api_key", &record.id),
        )
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(at));
    let after_revoke = store.api_key_revision().await.unwrap();
    assert_ne!(after_revoke, created);
    let again = store
        .revoke_api_key(
            &record.id,
            at + Duration::seconds(5),
            &audit_of("RevokeApiKey", "api_key", &record.id),
        )
        .await
        .unwrap();
    assert_eq!(again.revoked_at, Some(at), "the first revocation stands");
    assert_eq!(store.list_api_keys().await.unwrap()[0].revoked_at, Some(at));
}

async fn uses_are_recorded_without_moving_the_revision(store: DynStore) {
    let record = key("k_00000000000b", 11);
    store
        .create_api_key(&record, &audit_of("CreateApiKey", "api_key", &record.id))
        .await
        .unwrap();
    let revision = store.api_key_revision().await.unwrap();
    let used = Utc::now().trunc_subsecs(6);
    store
        .touch_api_keys(&[(record.id.clone(), used), ("k_unknown".to_string(), used)])
        .await
        .unwrap();
    // An older use does not move the time back.
    store
        .touch_api_keys(&[(record.id.clone(), used - Duration::minutes(5))])
        .await
        .unwrap();
    store.touch_api_keys(&[]).await.unwrap();
    let listed = store.list_api_keys().await.unwrap();
    assert_eq!(listed[0].last_used_at, Some(used));
    assert_eq!(store.api_key_revision().await.unwrap(), revision);
}

async fn duplicates_and_unknown_ids_are_refused(store: DynStore) {
    let record = key("k_00000000000c", 12);
    store
        .create_api_key(&record, &audit_of("CreateApiKey", "api_key", &record.id))
        .await
        .unwrap();
    let same_id = key("k_00000000000c", 13);
    let same_secret = key("k_00000000000d", 12);
    for duplicate in [same_id, same_secret] {
        let error = store
            .create_api_key(
                &duplicate,
                &audit_of("CreateApiKey", "api_key", &duplicate.id),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::AlreadyExists { .. }),
            "{error:?}"
        );
    }
    assert_eq!(store.list_api_keys().await.unwrap().len(), 1);
    assert_eq!(audited_ids(&store).await, vec![record.id.clone()]);
    let error = store
        .revoke_api_key(
            "k_missing",
            Utc::now(),
            &audit_of("RevokeApiKey", "api_key", "k_missing"),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound { .. }), "{error:?}");
    assert_eq!(audited_ids(&store).await, vec![record.id.clone()]);
}
