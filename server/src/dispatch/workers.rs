//! `ListWorkers`: one page of every replica's worker sessions, by session
//! id, from the registry that holds them.

use super::{Dispatcher, SessionInfo};
use crate::kernel::KernelError;
use crate::store::{Page, PageQuery};

impl Dispatcher {
    /// The sessions after `query.after` (a session id), `query.limit` at
    /// most, optionally of one queue.
    pub async fn list_workers(
        &self,
        namespace: &str,
        queue: Option<&str>,
        query: PageQuery,
    ) -> Result<Page<SessionInfo>, KernelError> {
        let mut sessions = self.all_sessions(queue).await?;
        // A session's queues are all of its namespace.
        sessions.retain(|session| {
            session
                .queues
                .first()
                .is_some_and(|key| crate::namespace::of_queue_key(key) == Some(namespace))
        });
        if let Some(after) = &query.after {
            sessions.retain(|session| session.session_id > *after);
        }
        Ok(Page::new(sessions, query.limit as usize, |session| {
            session.session_id.clone()
        }))
    }
}
