//! [`Signals`] for PostgreSQL: `NOTIFY` on two channels, sent outside the
//! write transactions (see `store/signals.rs`).

use async_trait::async_trait;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::PostgresStore;
use crate::store::signals::{CHANNEL, DELTA_CHANNEL, delta_payloads, parse, payloads};
use crate::store::{DeltaBatch, Signal, Signals, StoreResult};
use crate::telemetry::FailureLog;

#[async_trait]
impl Signals for PostgresStore {
    async fn announce(&self, origin: &str, run_ids: &[String]) -> StoreResult<()> {
        for payload in payloads(origin, run_ids) {
            notify(self, CHANNEL, payload).await?;
        }
        Ok(())
    }

    async fn announce_deltas(&self, batch: &DeltaBatch) -> StoreResult<()> {
        for payload in delta_payloads(batch) {
            notify(self, DELTA_CHANNEL, payload).await?;
        }
        Ok(())
    }

    async fn listen(&self) -> StoreResult<Option<mpsc::Receiver<Signal>>> {
        let pool = self.pool().clone();
        let mut listener = subscribe(&pool).await?;
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(async move {
            let mut failures = FailureLog::new("listening for other replicas' changes");
            loop {
                let received = tokio::select! {
                    received = listener.try_recv() => received,
                    () = sender.closed() => return,
                };
                let signal = match received {
                    Ok(Some(notification)) => {
                        if notification.channel() == DELTA_CHANNEL {
                            serde_json::from_str(notification.payload())
                                .ok()
                                .map(Signal::Deltas)
                        } else {
                            parse(notification.payload()).map(Signal::Changed)
                        }
                    }
                    // The connection was lost; sqlx connected and listened
                    // again before returning.
                    Ok(None) => Some(Signal::Resync),
                    Err(error) => {
                        // Start over on a fresh connection once the
                        // database answers again.
                        failures.failed(&error);
                        listener = loop {
                            tokio::select! {
                                () = tokio::time::sleep(failures.backoff()) => {}
                                () = sender.closed() => return,
                            }
                            match subscribe(&pool).await {
                                Ok(listener) => break listener,
                                Err(error) => failures.failed(&error),
                            }
                        };
                        failures.succeeded();
                        Some(Signal::Resync)
                    }
                };
                if let Some(signal) = signal
                    && sender.send(signal).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(Some(receiver))
    }
}

/// A listener on a pooled connection, listening on both channels.
async fn subscribe(pool: &sqlx::PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([CHANNEL, DELTA_CHANNEL]).await?;
    Ok(listener)
}

async fn notify(store: &PostgresStore, channel: &str, payload: String) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(store.pool())
        .await?;
    Ok(())
}
