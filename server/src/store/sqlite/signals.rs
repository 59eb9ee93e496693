//! [`Signals`] for the embedded store: one process, so there is no other
//! replica to tell.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::SqliteStore;
use crate::store::{DeltaBatch, Signal, Signals, StoreResult};

#[async_trait]
impl Signals for SqliteStore {
    async fn announce(&self, _origin: &str, _run_ids: &[String]) -> StoreResult<()> {
        Ok(())
    }

    async fn announce_deltas(&self, _batch: &DeltaBatch) -> StoreResult<()> {
        Ok(())
    }

    async fn listen(&self) -> StoreResult<Option<mpsc::Receiver<Signal>>> {
        Ok(None)
    }
}
