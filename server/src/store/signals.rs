//! Change signals between replicas that share one database. A replica
//! announces the runs its transitions changed; the others wake their
//! watchers and runners instead of waiting for their next poll. Signals are
//! hints: everything they point at is read from the store, and every loop
//! also polls slowly, so a lost signal only costs latency.
//!
//! PostgreSQL: `NOTIFY` on one channel, sent outside the write transactions
//! and coalesced by the caller (see PERFORMANCE.md: a NOTIFY inside the
//! write transaction serializes commits). SQLite: one process, no signals.

use async_trait::async_trait;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::{PostgresStore, SqliteStore, StoreResult};

/// The PostgreSQL notification channel.
const CHANNEL: &str = "taskloom_runs";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7900;

/// An announcement: which replica, which runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub origin: String,
    pub run_ids: Vec<String>,
}

#[async_trait]
pub trait Signals: Send + Sync {
    /// Tells the other replicas that `run_ids` changed.
    async fn announce(&self, origin: &str, run_ids: &[String]) -> StoreResult<()>;

    /// Announcements made by any replica (including this one: filter by
    /// origin). `None` for a single-process store.
    async fn listen(&self) -> StoreResult<Option<mpsc::Receiver<Announcement>>>;
}

#[async_trait]
impl Signals for SqliteStore {
    async fn announce(&self, _origin: &str, _run_ids: &[String]) -> StoreResult<()> {
        Ok(())
    }

    async fn listen(&self) -> StoreResult<Option<mpsc::Receiver<Announcement>>> {
        Ok(None)
    }
}

/// Splits run ids into payloads `origin|id,id,…` under the size limit.
fn payloads(origin: &str, run_ids: &[String]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = format!("{origin}|");
    let mut empty = true;
    for id in run_ids {
        if !empty && current.len() + id.len() + 1 > MAX_PAYLOAD {
            payloads.push(std::mem::replace(&mut current, format!("{origin}|")));
            empty = true;
        }
        if !empty {
            current.push(',');
        }
        current.push_str(id);
        empty = false;
    }
    if !empty {
        payloads.push(current);
    }
    payloads
}

fn parse(payload: &str) -> Option<Announcement> {
    let (origin, ids) = payload.split_once('|')?;
    Some(Announcement {
        origin: origin.to_string(),
        run_ids: ids
            .split(',')
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

#[async_trait]
impl Signals for PostgresStore {
    async fn announce(&self, origin: &str, run_ids: &[String]) -> StoreResult<()> {
        for payload in payloads(origin, run_ids) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }

    async fn listen(&self) -> StoreResult<Option<mpsc::Receiver<Announcement>>> {
        let mut listener = PgListener::connect_with(self.pool()).await?;
        listener.listen(CHANNEL).await?;
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                // `recv` reconnects by itself after a lost connection.
                match listener.recv().await {
                    Ok(notification) => {
                        if let Some(announcement) = parse(notification.payload())
                            && sender.send(announcement).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "listening for run changes failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
                if sender.is_closed() {
                    return;
                }
            }
        });
        Ok(Some(receiver))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_stay_small_and_round_trip() {
        let ids: Vec<String> = (0..1000).map(|i| format!("run-{i:036}")).collect();
        let split = payloads("replica-a", &ids);
        assert!(split.len() > 1);
        assert!(split.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let mut back = Vec::new();
        for payload in &split {
            let announcement = parse(payload).unwrap();
            assert_eq!(announcement.origin, "replica-a");
            back.extend(announcement.run_ids);
        }
        assert_eq!(back, ids);
        assert!(payloads("a", &[]).is_empty());
    }
}
