//! What the reconciler needs of the store besides a backend's observed
//! state: which replica syncs a backend now (a lease on the backend's row,
//! so replicas sharing a database do not all call the same provider), and
//! which models a backend is meant to serve (auto-pull).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

#[async_trait]
pub trait FleetStore: Send + Sync {
    /// Takes the sync lease of backend `id` for `replica` until `until`
    /// when nobody holds it, its holder's lease has passed at `now`, or
    /// `replica` holds it already (a renewal). Returns whether `replica`
    /// holds it now; `NotFound` without the backend.
    async fn take_sync_lease(
        &self,
        id: &str,
        replica: &str,
        (now, until): (DateTime<Utc>, DateTime<Utc>),
    ) -> StoreResult<bool>;

    /// Gives the lease back if `replica` holds it. A missing backend is
    /// not an error (it may have been deleted during the sync).
    async fn release_sync_lease(&self, id: &str, replica: &str) -> StoreResult<()>;

    /// The models declared in the pools backend `id` belongs to, sorted and
    /// distinct; empty for a backend in no pool (or none at all).
    async fn declared_models_of_backend(&self, id: &str) -> StoreResult<Vec<String>>;
}
