//! The fleet of LLM backends as the reconciler keeps it: what each backend
//! actually serves (its observed state, stored so every replica sees it),
//! model downloads onto Ollama backends, and the automatic pull of declared
//! models a backend misses.
//!
//! [`Fleet::run`] syncs every backend each `--sync-interval`;
//! [`Fleet::sync_backend`] syncs one now. Replicas sharing a database take
//! a per-backend lease before syncing, so one backend is listed by one
//! replica at a time.

mod pull;
mod reconciler;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::llm::{self, Provider, ProviderError};
use crate::outbound::HttpClient;
use crate::store::{BackendRecord, DynStore, StoreError};

pub use pull::{PullReport, PullStream, WAITING as PULL_WAITING_STATUS};

/// How the reconciler runs.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Between two periodic cycles; zero disables them (`SyncBackend`
    /// still syncs on demand).
    pub sync_interval: Duration,
    /// Pull the declared models an Ollama backend misses.
    pub auto_pull: bool,
    /// How long the periodic cycle reuses a cloud provider's model list.
    pub cloud_list_ttl: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            sync_interval: Duration::from_secs(30),
            auto_pull: true,
            cloud_list_ttl: Duration::from_secs(3600),
        }
    }
}

/// Why a fleet operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Only Ollama backends download models.
    #[error("backend {backend_id:?} is of type {backend_type:?}: only ollama backends pull models")]
    NotPullable {
        backend_id: String,
        backend_type: String,
    },
    /// The provider's registry does not have the model.
    #[error("{message}")]
    ModelNotFound { model: String, message: String },
    /// The download (or the backend) failed.
    #[error("{0}")]
    ProviderFailed(String),
    /// Another replica kept the backend's sync lease for longer than a sync
    /// may take.
    #[error("backend {0:?} is being synced by another replica; retry later")]
    SyncBusy(String),
}

/// The reconciler and the pulls of this replica. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

struct Inner {
    store: DynStore,
    http: HttpClient,
    /// This replica's id: the holder named in sync leases.
    replica: String,
    config: FleetConfig,
    /// One download at a time per backend on this replica.
    pull_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Backends with an automatic pull running on this replica.
    auto_pulling: Mutex<std::collections::HashSet<String>>,
    /// Failed automatic pulls, by (backend, model): when, and the error.
    /// A failed model is not tried again before [`AUTO_PULL_BACKOFF`], and
    /// its error stays in the backend's `last_error` meanwhile.
    auto_pull_failures: Mutex<HashMap<(String, String), (Instant, String)>>,
    /// Automatic pulls to start, for the worker [`Fleet::run`] runs.
    auto_pull_jobs: mpsc::UnboundedSender<reconciler::AutoPull>,
    auto_pull_queue: Mutex<Option<mpsc::UnboundedReceiver<reconciler::AutoPull>>>,
}

/// How long a failed automatic pull waits before it is tried again.
const AUTO_PULL_BACKOFF: Duration = Duration::from_secs(600);

/// A backend's listing deadline when it sets no request timeout of its own.
const DEFAULT_LIST_TIMEOUT: Duration = Duration::from_secs(30);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Fleet {
    pub fn new(store: DynStore, http: HttpClient, replica: String, config: FleetConfig) -> Self {
        let (auto_pull_jobs, queue) = mpsc::unbounded_channel();
        Fleet {
            inner: Arc::new(Inner {
                store,
                http,
                replica,
                config,
                pull_locks: Mutex::new(HashMap::new()),
                auto_pulling: Mutex::new(Default::default()),
                auto_pull_failures: Mutex::new(HashMap::new()),
                auto_pull_jobs,
                auto_pull_queue: Mutex::new(Some(queue)),
            }),
        }
    }

    /// Syncs every backend each interval, and runs the automatic pulls
    /// that syncs start, until `stop` turns true.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let queue = lock(&self.inner.auto_pull_queue).take();
        let worker = queue
            .map(|queue| tokio::spawn(reconciler::auto_pull_worker(self.inner.clone(), queue)));
        self.cycles(stop).await;
        if let Some(worker) = worker {
            worker.abort();
        }
    }

    async fn cycles(&self, mut stop: watch::Receiver<bool>) {
        if self.inner.config.sync_interval.is_zero() {
            let _ = stop.wait_for(|stop| *stop).await;
            return;
        }
        // The first cycle comes one interval after the start: the stored
        // state from before the restart stands meanwhile.
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.inner.config.sync_interval) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                () = reconciler::cycle(&self.inner) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Syncs one backend now (its model list fetched anew) and returns it
    /// with its new observed state.
    pub async fn sync_backend(&self, backend_id: &str) -> Result<BackendRecord, FleetError> {
        reconciler::sync_now(&self.inner, backend_id).await
    }

    /// Starts downloading `model` onto an Ollama backend; the stream reports
    /// progress and ends with `done` or the failure.
    pub async fn pull_model(
        &self,
        backend_id: &str,
        model: &str,
    ) -> Result<PullStream, FleetError> {
        pull::start(self.inner.clone(), backend_id, model).await
    }
}

impl Inner {
    /// A client for `backend`, bounded by its request timeout.
    fn provider(&self, backend: &BackendRecord) -> Result<Box<dyn Provider>, ProviderError> {
        let timeout = if backend.request_timeout_ms > 0 {
            Duration::from_millis(backend.request_timeout_ms as u64)
        } else {
            DEFAULT_LIST_TIMEOUT
        };
        llm::provider_for(
            &backend.backend_type,
            &backend.base_url,
            backend.api_key.as_deref(),
            timeout,
            self.http.clone(),
        )
    }

    /// The download lock of a backend.
    fn pull_lock(&self, backend_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.pull_locks)
            .entry(backend_id.to_string())
            .or_default()
            .clone()
    }
}
