//! Every replica's sessions, for `ListWorkers`: this one's live, the
//! others' as they last published them.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::watch;

use super::{Dispatcher, SessionInfo};
use crate::kernel::KernelError;

impl Dispatcher {
    /// Sessions on this replica, optionally of one queue, by session id.
    pub fn sessions(&self, queue: Option<&str>) -> Vec<SessionInfo> {
        let state = self.state();
        let mut held: HashMap<&str, u32> = HashMap::new();
        for lease in state.held.values() {
            *held.entry(lease.session_id.as_str()).or_default() += 1;
        }
        let mut sessions: Vec<SessionInfo> = state
            .sessions
            .values()
            .filter(|s| queue.is_none_or(|q| s.info.queues.iter().any(|own| own == q)))
            .map(|s| SessionInfo {
                slots: s.seat.slots(),
                leases_held: held.get(s.info.session_id.as_str()).copied().unwrap_or(0),
                ..s.info.clone()
            })
            .collect();
        sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        sessions
    }

    /// Every replica's sessions (this one's live, the others' as last
    /// published), optionally of one queue, by session id.
    pub async fn all_sessions(&self, queue: Option<&str>) -> Result<Vec<SessionInfo>, KernelError> {
        let mut sessions = self.sessions(queue);
        let fresh =
            chrono::Duration::from_std(self.published_freshness()).unwrap_or(chrono::Duration::MAX);
        let replica = self.inner.kernel.instance_id();
        let published = self
            .inner
            .kernel
            .store()
            .list_sessions(crate::kernel::now() - fresh)
            .await?;
        sessions.extend(
            published
                .into_iter()
                .filter(|s| s.replica != replica)
                .filter(|s| queue.is_none_or(|q| s.queues.iter().any(|own| own == q))),
        );
        sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        Ok(sessions)
    }

    /// How recent another replica's published sessions must be to count.
    pub fn published_freshness(&self) -> Duration {
        (self.inner.config.heartbeat_interval * 3).max(self.inner.config.heartbeat_timeout)
    }

    /// Publishes this replica's sessions every heartbeat interval (and when
    /// one opens or closes) until `stop`, for `ListWorkers` elsewhere.
    pub async fn publish_sessions(self, mut stop: watch::Receiver<bool>) {
        loop {
            let now = crate::kernel::now();
            let records = self.sessions(None);
            let forget_before = now - chrono::Duration::hours(1);
            if let Err(error) = self
                .inner
                .kernel
                .store()
                .publish_sessions(
                    self.inner.kernel.instance_id(),
                    &records,
                    (now, forget_before),
                )
                .await
            {
                tracing::debug!(error = %error, "publishing worker sessions failed");
            }
            tokio::select! {
                () = tokio::time::sleep(self.inner.config.heartbeat_interval) => {}
                () = self.inner.publish.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }
}
