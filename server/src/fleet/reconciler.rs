//! One sync of a backend: list its models (its health is whether that
//! worked), record what was seen, and start pulls of declared models an
//! Ollama backend misses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use futures::StreamExt as _;

use super::{AUTO_PULL_BACKOFF, FleetError, Inner, lock, pull};
use crate::store::{BackendRecord, BackendState, ObservedModel, PageQuery, StoreError};

/// Models kept of one listing; a hostile backend cannot make the stored
/// state grow without bound.
const MAX_MODELS: usize = 10_000;

/// Backends synced at once by one cycle.
const CYCLE_CONCURRENCY: usize = 8;

/// How long a sync lease lasts beyond the listing deadline: long enough for
/// the store writes around it, short enough that a crashed replica's lease
/// is soon taken over.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// How often a forced sync asks again for a lease another replica holds.
const LEASE_RETRY: Duration = Duration::from_millis(100);

/// Providers whose model lists are reused for [`super::FleetConfig::cloud_list_ttl`]
/// by the periodic cycle: their lists change rarely and listing costs a
/// call to a metered API.
const CLOUD_TYPES: &[&str] = &["openai", "gemini", "anthropic", "openrouter", "mistral"];

/// Whether a sync may reuse a fresh stored state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The periodic cycle: skips a backend another replica synced within
    /// the interval, reuses a cloud provider's list within its TTL.
    Periodic,
    /// `SyncBackend`: always lists anew.
    Forced,
    /// The re-list after a pull: lists anew and starts no automatic pull
    /// (a model that a pull did not make appear is not pulled again and
    /// again).
    Relist,
}

/// Syncs every backend once, a few at a time.
pub(super) async fn cycle(inner: &Arc<Inner>) {
    let backends = match all_backends(inner).await {
        Ok(backends) => backends,
        Err(error) => {
            tracing::warn!(%error, "reconciler: cannot list backends");
            return;
        }
    };
    futures::stream::iter(backends)
        .for_each_concurrent(CYCLE_CONCURRENCY, |backend| async move {
            if let Err(error) = sync(inner, &backend.id, Mode::Periodic).await {
                tracing::warn!(backend_id = %backend.id, %error, "reconciler: sync failed");
            }
        })
        .await;
}

async fn all_backends(inner: &Inner) -> Result<Vec<BackendRecord>, StoreError> {
    let mut backends = vec![];
    let mut after = None;
    loop {
        let page = inner
            .store
            .list_backends(PageQuery { limit: 500, after })
            .await?;
        backends.extend(page.items);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(backends),
        }
    }
}

/// `SyncBackend`: a sync that waits for another replica's sync to finish
/// rather than skipping.
pub(super) async fn sync_now(
    inner: &Arc<Inner>,
    backend_id: &str,
) -> Result<BackendRecord, FleetError> {
    match sync(inner, backend_id, Mode::Forced).await? {
        Some(backend) => Ok(backend),
        None => Err(FleetError::SyncBusy(backend_id.to_string())),
    }
}

/// Syncs one backend under its lease; `None` when the lease was not taken
/// (periodic: another replica syncs it; forced: it kept it too long) or a
/// periodic sync found the backend freshly synced.
async fn sync(
    inner: &Arc<Inner>,
    backend_id: &str,
    mode: Mode,
) -> Result<Option<BackendRecord>, FleetError> {
    // The lease is sized by the backend's deadline, known once it is read.
    let backend = inner.store.get_backend(backend_id).await?;
    let lease = listing_deadline(&backend) + LEASE_MARGIN;
    if !take_lease(inner, backend_id, lease, mode).await? {
        return Ok(None);
    }
    let result = sync_leased(inner, backend_id, mode).await;
    if let Err(error) = inner
        .store
        .release_sync_lease(backend_id, &inner.replica)
        .await
    {
        // It expires by itself.
        tracing::debug!(backend_id, %error, "reconciler: cannot release the sync lease");
    }
    let synced = result?;
    if let Some(backend) = synced.as_ref().filter(|_| mode != Mode::Relist) {
        start_auto_pull(inner, backend).await;
    }
    Ok(synced)
}

fn listing_deadline(backend: &BackendRecord) -> Duration {
    if backend.request_timeout_ms > 0 {
        Duration::from_millis(backend.request_timeout_ms as u64)
    } else {
        super::DEFAULT_LIST_TIMEOUT
    }
}

async fn take_lease(
    inner: &Inner,
    backend_id: &str,
    lease: Duration,
    mode: Mode,
) -> Result<bool, FleetError> {
    let started = Instant::now();
    loop {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        if inner
            .store
            .take_sync_lease(backend_id, &inner.replica, (now, until))
            .await?
        {
            return Ok(true);
        }
        if mode == Mode::Periodic || started.elapsed() > lease {
            return Ok(false);
        }
        tokio::time::sleep(LEASE_RETRY).await;
    }
}

/// The sync proper, under the lease. Reads the backend again: another
/// replica may have synced it while this one waited.
async fn sync_leased(
    inner: &Inner,
    backend_id: &str,
    mode: Mode,
) -> Result<Option<BackendRecord>, FleetError> {
    let mut backend = inner.store.get_backend(backend_id).await?;
    // The stores keep microseconds: the record returned is the one stored.
    let now = Utc::now().trunc_subsecs(6);
    if mode == Mode::Periodic && synced_within(&backend.state, now, inner.config.sync_interval) {
        return Ok(None);
    }
    let state = if mode == Mode::Periodic && reusable_cloud_list(inner, &backend, now) {
        BackendState {
            last_sync_at: Some(now),
            ..backend.state.clone()
        }
    } else {
        observe(inner, &backend, now).await
    };
    let state = with_auto_pull_failure(inner, &backend.id, state);
    inner
        .store
        .set_backend_state(&backend.id, state.clone())
        .await?;
    backend.state = state;
    Ok(Some(backend))
}

/// Whether another replica's sync is recent enough to skip this one (with
/// some slack, so cycles of equal intervals do not skip every other turn).
fn synced_within(state: &BackendState, now: DateTime<Utc>, interval: Duration) -> bool {
    let Some(last) = state.last_sync_at else {
        return false;
    };
    let slack = interval.mul_f64(0.8);
    now.signed_duration_since(last)
        .to_std()
        .is_ok_and(|since| since < slack)
}

fn reusable_cloud_list(inner: &Inner, backend: &BackendRecord, now: DateTime<Utc>) -> bool {
    CLOUD_TYPES.contains(&backend.backend_type.as_str())
        && backend.state.health == "healthy"
        && backend.state.models_at.is_some_and(|at| {
            now.signed_duration_since(at)
                .to_std()
                .is_ok_and(|age| age < inner.config.cloud_list_ttl)
        })
}

/// Lists the backend's models. A failure keeps the models last observed
/// (the backend may be back soon) but marks it unhealthy with the error.
async fn observe(inner: &Inner, backend: &BackendRecord, now: DateTime<Utc>) -> BackendState {
    let started = Instant::now();
    let listed = match inner.provider(backend) {
        Ok(provider) => provider.list_models().await,
        Err(error) => Err(error),
    };
    let latency_ms = Some(started.elapsed().as_millis().min(i64::MAX as u128) as i64);
    match listed {
        Ok(mut models) => {
            models.truncate(MAX_MODELS);
            BackendState {
                health: "healthy".to_string(),
                models: models.iter().map(|model| model.name.clone()).collect(),
                observed_models: models,
                models_at: Some(now),
                last_error: String::new(),
                last_sync_at: Some(now),
                latency_ms,
            }
        }
        Err(error) => BackendState {
            health: "unhealthy".to_string(),
            last_error: error.message,
            last_sync_at: Some(now),
            latency_ms,
            ..backend.state.clone()
        },
    }
}

/// A healthy backend's `last_error` shows a recent failed automatic pull.
fn with_auto_pull_failure(
    inner: &Inner,
    backend_id: &str,
    mut state: BackendState,
) -> BackendState {
    if state.health != "healthy" {
        return state;
    }
    let mut failures = lock(&inner.auto_pull_failures);
    failures.retain(|_, (at, _)| at.elapsed() < AUTO_PULL_BACKOFF);
    if let Some((_, message)) = failures
        .iter()
        .find(|((backend, _), _)| backend == backend_id)
        .map(|(_, failure)| failure)
    {
        state.last_error = message.clone();
    }
    state
}

/// Whether an Ollama listing has `model`: Ollama lists `name:latest` for a
/// model pulled as `name`.
pub(super) fn lists(observed: &[ObservedModel], model: &str) -> bool {
    observed.iter().any(|listed| {
        listed.name == model
            || (!model.contains(':') && listed.name == format!("{model}:latest"))
            || listed.name.strip_suffix(":latest") == Some(model)
    })
}

/// Starts pulling, in the background and one at a time, the declared
/// models of the backend's pools that a healthy Ollama backend does not
/// list. Nothing is ever deleted.
async fn start_auto_pull(inner: &Arc<Inner>, backend: &BackendRecord) {
    if !inner.config.auto_pull
        || backend.backend_type != "ollama"
        || backend.state.health != "healthy"
    {
        return;
    }
    let declared = match inner.store.declared_models_of_backend(&backend.id).await {
        Ok(declared) => declared,
        Err(error) => {
            tracing::warn!(backend_id = %backend.id, %error, "auto-pull: cannot read the declared models");
            return;
        }
    };
    let missing: Vec<String> = {
        let failures = lock(&inner.auto_pull_failures);
        declared
            .into_iter()
            .filter(|model| !lists(&backend.state.observed_models, model))
            .filter(|model| {
                failures
                    .get(&(backend.id.clone(), model.clone()))
                    .is_none_or(|(at, _)| at.elapsed() >= AUTO_PULL_BACKOFF)
            })
            .collect()
    };
    if missing.is_empty() || !lock(&inner.auto_pulling).insert(backend.id.clone()) {
        return;
    }
    // Handed to the auto-pull worker: a task spawned from here would make
    // the type of a sync contain itself.
    let job = AutoPull {
        backend_id: backend.id.clone(),
        models: missing,
    };
    if inner.auto_pull_jobs.send(job).is_err() {
        lock(&inner.auto_pulling).remove(&backend.id);
    }
}

/// Declared models to pull onto one backend.
pub(super) struct AutoPull {
    backend_id: String,
    models: Vec<String>,
}

/// Runs each automatic pull job in its own task until the queue closes.
pub(super) async fn auto_pull_worker(
    inner: Arc<Inner>,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<AutoPull>,
) {
    while let Some(job) = jobs.recv().await {
        tokio::spawn(auto_pull(inner.clone(), job));
    }
}

/// Pulls the models one at a time, then lists the backend anew.
async fn auto_pull(inner: Arc<Inner>, job: AutoPull) {
    let backend_id = job.backend_id;
    for model in job.models {
        tracing::info!(
            backend_id,
            model,
            "auto-pull: pulling a declared model the backend misses"
        );
        match pull::download(&inner, &backend_id, &model, None).await {
            Ok(_) => {
                lock(&inner.auto_pull_failures).remove(&(backend_id.clone(), model));
            }
            Err(error) => {
                let message = format!("auto-pull of {model:?} failed: {error}");
                tracing::warn!(backend_id, %message, "auto-pull failed");
                lock(&inner.auto_pull_failures)
                    .insert((backend_id.clone(), model), (Instant::now(), message));
            }
        }
    }
    lock(&inner.auto_pulling).remove(&backend_id);
    // The new models (and any failure) show at once.
    relist(&inner, &backend_id).await;
}

/// Lists the backend anew after a pull, so its new model shows at once.
pub(super) async fn relist(inner: &Arc<Inner>, backend_id: &str) {
    if let Err(error) = sync(inner, backend_id, Mode::Relist).await {
        tracing::debug!(backend_id, %error, "re-list after a pull failed");
    }
}
