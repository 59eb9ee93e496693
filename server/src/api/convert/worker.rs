//! Worker sessions.

use crate::api::request::timestamp;
use crate::dispatch::SessionInfo;
use crate::proto::taskloom::v1 as pb;

/// The API view of a connected worker session.
pub fn worker_message(session: SessionInfo) -> pb::WorkerSession {
    pb::WorkerSession {
        session_id: session.session_id,
        worker_id: session.worker_id,
        name: session.name,
        queues: session
            .queues
            .iter()
            .map(|key| crate::namespace::unqualified(key).to_string())
            .collect(),
        slots: session.slots as i32,
        leases_held: session.leases_held as i32,
        labels: session.labels.into_iter().collect(),
        sdk_version: session.sdk_version,
        replica: session.replica,
        connect_time: Some(timestamp(session.connected_at)),
        last_heartbeat_time: Some(timestamp(session.last_heartbeat)),
        fenced_operations: session.fenced_operations as i64,
    }
}
