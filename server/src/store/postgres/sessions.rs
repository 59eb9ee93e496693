//! [`SessionStore`] for PostgreSQL.

use crate::store::codec::{decode_all, session_from_row};
use crate::store::sessions::to_json;
use crate::store::{SessionStore, StoreResult, WorkerSessionRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;

#[async_trait]
impl SessionStore for PostgresStore {
    async fn publish_sessions(
        &self,
        replica: &str,
        sessions: &[WorkerSessionRecord],
        window: (DateTime<Utc>, DateTime<Utc>),
    ) -> StoreResult<()> {
        let (seen_at, forget_before) = window;
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM worker_sessions WHERE replica = $1 OR seen_at < $2")
            .bind(replica)
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        let col = |f: &dyn Fn(&WorkerSessionRecord) -> String| -> Vec<String> {
            sessions.iter().map(f).collect()
        };
        sqlx::query(
            "INSERT INTO worker_sessions (session_id, replica, worker_id, name, queues, slots, \
             leases_held, labels, sdk_version, connected_at, last_heartbeat, fenced_operations, \
             seen_at) \
             SELECT s.session_id, $2, s.worker_id, s.name, s.queues::jsonb, s.slots, \
             s.leases_held, s.labels::jsonb, s.sdk_version, s.connected_at, s.last_heartbeat, \
             s.fenced_operations, $3 \
             FROM UNNEST($1::text[], $4::text[], $5::text[], $6::text[], $7::int4[], \
             $8::int4[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], \
             $13::int8[]) \
             AS s(session_id, worker_id, name, queues, slots, leases_held, labels, \
             sdk_version, connected_at, last_heartbeat, fenced_operations) \
             ON CONFLICT (session_id) DO UPDATE SET replica = EXCLUDED.replica, \
             slots = EXCLUDED.slots, leases_held = EXCLUDED.leases_held, \
             last_heartbeat = EXCLUDED.last_heartbeat, \
             fenced_operations = EXCLUDED.fenced_operations, seen_at = EXCLUDED.seen_at",
        )
        .bind(col(&|s| s.session_id.clone()))
        .bind(replica)
        .bind(seen_at)
        .bind(col(&|s| s.worker_id.clone()))
        .bind(col(&|s| s.name.clone()))
        .bind(col(&|s| to_json(&s.queues)))
        .bind(sessions.iter().map(|s| s.slots as i32).collect::<Vec<_>>())
        .bind(
            sessions
                .iter()
                .map(|s| s.leases_held as i32)
                .collect::<Vec<_>>(),
        )
        .bind(col(&|s| to_json(&s.labels)))
        .bind(col(&|s| s.sdk_version.clone()))
        .bind(sessions.iter().map(|s| s.connected_at).collect::<Vec<_>>())
        .bind(
            sessions
                .iter()
                .map(|s| s.last_heartbeat)
                .collect::<Vec<_>>(),
        )
        .bind(
            sessions
                .iter()
                .map(|s| s.fenced_operations as i64)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_sessions(&self, since: DateTime<Utc>) -> StoreResult<Vec<WorkerSessionRecord>> {
        let rows = sqlx::query(
            "SELECT session_id, replica, worker_id, name, queues, slots, leases_held, \
             labels, sdk_version, connected_at, last_heartbeat, \
             fenced_operations FROM worker_sessions WHERE seen_at >= $1 ORDER BY session_id",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        decode_all(&rows, session_from_row)
    }
}
