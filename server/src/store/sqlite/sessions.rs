//! [`SessionStore`] for the embedded store.

use crate::store::codec::{decode_all, session_from_row};
use crate::store::sessions::to_json;
use crate::store::{SessionStore, StoreResult, WorkerSessionRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{SqliteStore, micros};

#[async_trait]
impl SessionStore for SqliteStore {
    async fn publish_sessions(
        &self,
        replica: &str,
        sessions: &[WorkerSessionRecord],
        (seen_at, forget_before): (DateTime<Utc>, DateTime<Utc>),
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM worker_sessions WHERE replica = ? OR seen_at < ?")
            .bind(replica)
            .bind(micros(forget_before))
            .execute(&mut *tx)
            .await?;
        for session in sessions {
            sqlx::query(
                "INSERT OR REPLACE INTO worker_sessions (session_id, replica, worker_id, name, \
                 queues, slots, leases_held, labels, sdk_version, connected_at, last_heartbeat, \
                 fenced_operations, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&session.session_id)
            .bind(replica)
            .bind(&session.worker_id)
            .bind(&session.name)
            .bind(to_json(&session.queues))
            .bind(session.slots as i64)
            .bind(session.leases_held as i64)
            .bind(to_json(&session.labels))
            .bind(&session.sdk_version)
            .bind(micros(session.connected_at))
            .bind(micros(session.last_heartbeat))
            .bind(session.fenced_operations as i64)
            .bind(micros(seen_at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_sessions(&self, since: DateTime<Utc>) -> StoreResult<Vec<WorkerSessionRecord>> {
        let mut tx = self.read_tx().await?;
        let rows = sqlx::query(
            "SELECT session_id, replica, worker_id, name, queues, slots, leases_held, labels, \
             sdk_version, connected_at, last_heartbeat, fenced_operations FROM worker_sessions \
             WHERE seen_at >= ? ORDER BY session_id",
        )
        .bind(micros(since))
        .fetch_all(&mut *tx)
        .await?;
        decode_all(&rows, session_from_row)
    }
}
