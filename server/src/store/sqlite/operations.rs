//! [`OperationsStore`] for the embedded store: queue figures, paused queues
//! and the replica registry (one process, so one replica at a time, but the
//! same records as PostgreSQL).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, audit, micros};
use crate::store::codec::{PlainColumns, StoredRow, decode_all, not_found};
use crate::store::{
    AuditRecord, HeldLease, OperationsStore, QueuePause, QueueRecord, ReplicaRecord, ReplicaState,
    StoreError, StoreResult,
};

/// Ready attempts per queue, split at `?1` into due now and due later.
const READY_PER_QUEUE: &str = "SELECT queue AS name, \
     SUM(CASE WHEN available_at <= ?1 THEN 1 ELSE 0 END) AS ready, \
     MIN(CASE WHEN available_at <= ?1 THEN available_at END) AS oldest_ready_at, \
     SUM(CASE WHEN available_at > ?1 THEN 1 ELSE 0 END) AS scheduled \
     FROM attempts WHERE status = 'ready' GROUP BY queue";

const LEASED_PER_QUEUE: &str = "SELECT queue AS name, count(*) AS leased \
     FROM attempts WHERE status = 'leased' GROUP BY queue";

/// Replicas with what they hold: leases under the replica's own id (its
/// runner) or under the worker id of a session it published lately.
const REPLICAS: &str = "SELECT r.id, r.listen_address, r.version, r.started_at, \
     r.heartbeat_at, r.state, r.stopped_at, \
     (SELECT count(*) FROM worker_sessions s WHERE s.replica = r.id AND s.seen_at >= ?2) \
       AS worker_sessions, \
     (SELECT count(*) FROM attempts a WHERE a.status = 'leased' AND (a.lease_owner = r.id \
       OR a.lease_owner IN (SELECT s.worker_id FROM worker_sessions s \
       WHERE s.replica = r.id AND s.seen_at >= ?2))) AS leases_held, \
     (SELECT count(DISTINCT a.run_id) FROM attempts a WHERE a.status = 'leased' \
       AND (a.lease_owner = r.id OR a.lease_owner IN (SELECT s.worker_id \
       FROM worker_sessions s WHERE s.replica = r.id AND s.seen_at >= ?2))) AS runs_held \
     FROM replicas r WHERE (r.state <> 'gone' OR r.stopped_at >= ?1) \
     AND (?3 IS NULL OR r.id = ?3) ORDER BY r.id";

fn replica_from_row(row: &SqliteRow) -> StoreResult<ReplicaRecord> {
    Ok(ReplicaRecord {
        id: row.text("id")?,
        listen_address: row.text("listen_address")?,
        version: row.text("version")?,
        started_at: row.time("started_at")?,
        heartbeat_at: row.time("heartbeat_at")?,
        state: ReplicaState::parse(&row.text("state")?)?,
        stopped_at: row.optional_time("stopped_at")?,
        runs_held: row.int("runs_held")?,
        leases_held: row.int("leases_held")?,
        worker_sessions: row.int("worker_sessions")?,
    })
}

fn empty_queue(name: String) -> QueueRecord {
    QueueRecord {
        name,
        ready: 0,
        oldest_ready_at: None,
        leased: 0,
        scheduled: 0,
        pause: None,
    }
}

impl SqliteStore {
    async fn replicas_where(
        &self,
        stopped_since: DateTime<Utc>,
        sessions_since: DateTime<Utc>,
        id: Option<&str>,
    ) -> StoreResult<Vec<ReplicaRecord>> {
        let mut tx = self.read_tx().await?;
        let rows = sqlx::query(REPLICAS)
            .bind(micros(stopped_since))
            .bind(micros(sessions_since))
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        decode_all(&rows, replica_from_row)
    }
}

#[async_trait]
impl OperationsStore for SqliteStore {
    async fn list_queues(&self, now: DateTime<Utc>) -> StoreResult<Vec<QueueRecord>> {
        let mut tx = self.read_tx().await?;
        let ready = sqlx::query(READY_PER_QUEUE)
            .bind(micros(now))
            .fetch_all(&mut *tx)
            .await?;
        let leased = sqlx::query(LEASED_PER_QUEUE).fetch_all(&mut *tx).await?;
        let paused = sqlx::query("SELECT name, paused_by, paused_at FROM paused_queues")
            .fetch_all(&mut *tx)
            .await?;
        drop(tx);
        let mut queues: BTreeMap<String, QueueRecord> = BTreeMap::new();
        for row in &ready {
            let name = row.text("name")?;
            let queue = queues
                .entry(name.clone())
                .or_insert_with(|| empty_queue(name));
            queue.ready = row.int("ready")?;
            queue.oldest_ready_at = row.optional_time("oldest_ready_at")?;
            queue.scheduled = row.int("scheduled")?;
        }
        for row in &leased {
            let name = row.text("name")?;
            let queue = queues
                .entry(name.clone())
                .or_insert_with(|| empty_queue(name));
            queue.leased = row.int("leased")?;
        }
        for row in &paused {
            let name = row.text("name")?;
            let queue = queues
                .entry(name.clone())
                .or_insert_with(|| empty_queue(name));
            queue.pause = Some(QueuePause {
                paused_by: row.text("paused_by")?,
                paused_at: row.time("paused_at")?,
            });
        }
        Ok(queues.into_values().collect())
    }

    async fn pause_queue(&self, name: &str, record: &AuditRecord) -> StoreResult<QueuePause> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO paused_queues (name, paused_by, paused_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&record.actor)
        .bind(micros(record.at))
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT paused_by, paused_at FROM paused_queues WHERE name = ?1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        let pause = QueuePause {
            paused_by: row.text("paused_by")?,
            paused_at: row.time("paused_at")?,
        };
        audit::insert(&mut tx, record).await?;
        tx.commit().await?;
        Ok(pause)
    }

    async fn resume_queue(&self, name: &str, record: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM paused_queues WHERE name = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        audit::insert(&mut tx, record).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn paused_queues(&self) -> StoreResult<Vec<String>> {
        let mut tx = self.read_tx().await?;
        let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM paused_queues ORDER BY name")
            .fetch_all(&mut *tx)
            .await?;
        Ok(names.into_iter().map(|(name,)| name).collect())
    }

    async fn register_replica(&self, replica: &ReplicaRecord) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO replicas (id, listen_address, version, started_at, heartbeat_at, state, \
             stopped_at) VALUES (?1, ?2, ?3, ?4, ?5, 'active', NULL) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, \
             state = 'active', stopped_at = NULL",
        )
        .bind(&replica.id)
        .bind(&replica.listen_address)
        .bind(&replica.version)
        .bind(micros(replica.started_at))
        .bind(micros(replica.heartbeat_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn heartbeat_replica(
        &self,
        id: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<ReplicaState>> {
        let mut tx = self.write_tx().await?;
        let state: Option<(String,)> = sqlx::query_as(
            "UPDATE replicas SET heartbeat_at = ?2 WHERE id = ?1 AND state <> 'gone' \
             RETURNING state",
        )
        .bind(id)
        .bind(micros(at))
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        state
            .map(|(state,)| ReplicaState::parse(&state))
            .transpose()
    }

    async fn list_replicas(
        &self,
        stopped_since: DateTime<Utc>,
        sessions_since: DateTime<Utc>,
    ) -> StoreResult<Vec<ReplicaRecord>> {
        self.replicas_where(stopped_since, sessions_since, None)
            .await
    }

    async fn drain_replica(
        &self,
        id: &str,
        record: Option<&AuditRecord>,
    ) -> StoreResult<ReplicaRecord> {
        let mut tx = self.write_tx().await?;
        let state: Option<(String,)> = sqlx::query_as("SELECT state FROM replicas WHERE id = ?1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        match state
            .map(|(state,)| ReplicaState::parse(&state))
            .transpose()?
        {
            None => return Err(not_found("replica", id)),
            Some(ReplicaState::Gone) => {
                return Err(StoreError::FailedPrecondition(format!(
                    "replica {id:?} is gone: there is nothing left to drain"
                )));
            }
            Some(_) => {}
        }
        sqlx::query("UPDATE replicas SET state = 'draining' WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if let Some(record) = record {
            audit::insert(&mut tx, record).await?;
        }
        tx.commit().await?;
        let now = chrono::Utc::now();
        self.replicas_where(now, now, Some(id))
            .await?
            .pop()
            .ok_or_else(|| not_found("replica", id))
    }

    async fn stop_replica(&self, id: &str, at: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE replicas SET state = 'gone', stopped_at = ?2 WHERE id = ?1")
            .bind(id)
            .bind(micros(at))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn declare_gone(
        &self,
        heartbeat_before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<String>> {
        let mut tx = self.write_tx().await?;
        let ids: Vec<(String,)> = sqlx::query_as(
            "UPDATE replicas SET state = 'gone', stopped_at = ?2 \
             WHERE state <> 'gone' AND heartbeat_at < ?1 RETURNING id",
        )
        .bind(micros(heartbeat_before))
        .bind(micros(at))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    async fn leases_held_by(&self, owner: &str) -> StoreResult<Vec<HeldLease>> {
        let mut tx = self.read_tx().await?;
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT run_id, id, lease_token FROM attempts \
             WHERE status = 'leased' AND lease_owner = ?1",
        )
        .bind(owner)
        .fetch_all(&mut *tx)
        .await?;
        let mut held: Vec<HeldLease> = rows
            .into_iter()
            .map(|(run_id, attempt_id, token)| HeldLease {
                run_id,
                attempt_id,
                lease_token: token.unwrap_or_default(),
            })
            .collect();
        // Sorted here, not by `ORDER BY id`: that tempts the planner into
        // walking every attempt in id order instead of the few leased ones.
        held.sort_by(|a, b| a.attempt_id.cmp(&b.attempt_id));
        Ok(held)
    }
}
