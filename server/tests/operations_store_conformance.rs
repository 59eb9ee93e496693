//! The operations store (queue figures, paused queues, the replica
//! registry), one suite over SQLite and PostgreSQL.

use chrono::{Duration, Utc};
use taskloom_server::store::{AuditRecord, DynStore, ReplicaRecord, ReplicaState, StoreError};

mod common;

store_tests!(harness;
    (harness.store.clone()) => [
        pause_is_idempotent_and_resume_clears_it,
        replicas_register_heartbeat_and_drain,
        a_silent_replica_is_declared_gone_once,
        a_gone_replica_cannot_drain_nor_heartbeat,
        no_queue_without_work_or_pause,
    ],
);

fn audit(action: &str, resource_type: &str, id: &str) -> AuditRecord {
    AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        at: Utc::now(),
        actor: "local".into(),
        action: action.into(),
        resource_type: resource_type.into(),
        resource_id: id.into(),
        request_id: String::new(),
        outcome: AuditRecord::OK.into(),
        error_message: String::new(),
        replica: "r".into(),
        namespace: "default".to_string(),
    }
}

fn replica(id: &str, heartbeat_at: chrono::DateTime<Utc>) -> ReplicaRecord {
    ReplicaRecord {
        id: id.into(),
        listen_address: "127.0.0.1:1".into(),
        version: "0.0.0".into(),
        started_at: heartbeat_at,
        heartbeat_at,
        state: ReplicaState::Active,
        stopped_at: None,
        runs_held: 0,
        leases_held: 0,
        worker_sessions: 0,
    }
}

async fn pause_is_idempotent_and_resume_clears_it(store: DynStore) {
    let first = store
        .pause_queue("jobs", &audit("PauseQueue", "queue", "jobs"))
        .await
        .unwrap();
    assert_eq!(first.paused_by, "local");
    let mut later = audit("PauseQueue", "queue", "jobs");
    later.actor = "key:other".into();
    let second = store.pause_queue("jobs", &later).await.unwrap();
    assert_eq!(second, first, "the first pause stays in force");
    assert_eq!(
        store.paused_queues().await.unwrap(),
        vec!["jobs".to_string()]
    );
    let queues = store.list_queues(Utc::now()).await.unwrap();
    assert_eq!(queues.len(), 1);
    assert_eq!(queues[0].name, "jobs");
    assert_eq!(queues[0].pause.as_ref(), Some(&first));
    assert_eq!(
        (queues[0].ready, queues[0].leased, queues[0].scheduled),
        (0, 0, 0)
    );
    store
        .resume_queue("jobs", &audit("ResumeQueue", "queue", "jobs"))
        .await
        .unwrap();
    store
        .resume_queue("jobs", &audit("ResumeQueue", "queue", "jobs"))
        .await
        .unwrap();
    assert!(store.paused_queues().await.unwrap().is_empty());
    assert!(store.list_queues(Utc::now()).await.unwrap().is_empty());
}

async fn no_queue_without_work_or_pause(store: DynStore) {
    assert!(store.list_queues(Utc::now()).await.unwrap().is_empty());
    assert!(store.leases_held_by("nobody").await.unwrap().is_empty());
}

async fn replicas_register_heartbeat_and_drain(store: DynStore) {
    let now = Utc::now();
    store.register_replica(&replica("a", now)).await.unwrap();
    store.register_replica(&replica("b", now)).await.unwrap();
    let later = now + Duration::seconds(1);
    assert_eq!(
        store.heartbeat_replica("a", later).await.unwrap(),
        Some(ReplicaState::Active)
    );
    assert_eq!(
        store.heartbeat_replica("nobody", later).await.unwrap(),
        None
    );
    let listed = store.list_replicas(now, now).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(
        listed[0].heartbeat_at.timestamp_micros(),
        later.timestamp_micros()
    );
    assert_eq!((listed[0].leases_held, listed[0].runs_held), (0, 0));

    let drained = store
        .drain_replica("b", Some(&audit("DrainReplica", "replica", "b")))
        .await
        .unwrap();
    assert_eq!(drained.state, ReplicaState::Draining);
    // Idempotent; the replica learns it at its heartbeat.
    store.drain_replica("b", None).await.unwrap();
    assert_eq!(
        store.heartbeat_replica("b", later).await.unwrap(),
        Some(ReplicaState::Draining)
    );
    assert!(matches!(
        store.drain_replica("nobody", None).await,
        Err(StoreError::NotFound { .. })
    ));
    store.stop_replica("b", later).await.unwrap();
    let listed = store.list_replicas(now, now).await.unwrap();
    let b = listed
        .iter()
        .find(|r| r.id == "b")
        .expect("listed while recent");
    assert_eq!(b.state, ReplicaState::Gone);
    assert!(b.stopped_at.is_some());
    // Stopped before `stopped_since`: no longer listed.
    let listed = store
        .list_replicas(later + Duration::seconds(1), now)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

async fn a_silent_replica_is_declared_gone_once(store: DynStore) {
    let now = Utc::now();
    store
        .register_replica(&replica("silent", now - Duration::seconds(10)))
        .await
        .unwrap();
    store
        .register_replica(&replica("alive", now))
        .await
        .unwrap();
    let cutoff = now - Duration::seconds(5);
    let (first, second) = tokio::join!(
        store.declare_gone(cutoff, now),
        store.declare_gone(cutoff, now)
    );
    let mut declared = first.unwrap();
    declared.extend(second.unwrap());
    assert_eq!(declared, vec!["silent".to_string()], "declared once");
    assert_eq!(store.heartbeat_replica("silent", now).await.unwrap(), None);
    // Registering again brings it back.
    store
        .register_replica(&replica("silent", now))
        .await
        .unwrap();
    assert_eq!(
        store.heartbeat_replica("silent", now).await.unwrap(),
        Some(ReplicaState::Active)
    );
}

async fn a_gone_replica_cannot_drain_nor_heartbeat(store: DynStore) {
    let now = Utc::now();
    store.register_replica(&replica("r", now)).await.unwrap();
    store.stop_replica("r", now).await.unwrap();
    assert!(matches!(
        store.drain_replica("r", None).await,
        Err(StoreError::FailedPrecondition(_))
    ));
    assert_eq!(store.heartbeat_replica("r", now).await.unwrap(), None);
}
