//! The durable execution engine. It owns every state transition of runs and
//! attempts: each is a pure decision ([`decide`]) applied by the store in one
//! transaction under the run's row lock, and every transition returns what
//! it did ([`Transitioned`]). Built-in handlers are executed by this
//! replica's runner (`crate::runner`), which takes attempts from the
//! `internal` queue exactly as a remote worker takes them from its queue.
//!
//! The rooms:
//! - [`engine`]: the operations callers use (start, complete, fail, cancel,
//!   claim, sweep, ...);
//! - `transitions`: queuing decisions into batch writes and reading back
//!   what each did;
//! - `chains`: compiled chain versions (cached) and inline chains;
//! - `eager`: leasing new attempts to a free slot on this replica in the
//!   transaction that creates them, and waking the claim loops;
//! - `signals`: committed changes told to this replica's watchers and
//!   observers and to the other replicas, and theirs heard;
//! - [`decide`] (pure decisions), [`events`] (live fan-out), `due` (when
//!   future work falls due), `batch` (the batcher), [`replay`], [`value`].

mod batch;
mod chains;
pub mod decide;
mod due;
mod eager;
pub mod engine;
mod error;
pub mod events;
pub mod lease;
mod operations;
pub mod replay;
pub mod retention;
mod signals;
mod transitions;
pub mod value;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::chain::CompiledChain;
use crate::proto::taskloom::v1 as pb;
use crate::render::{RenderConfig, Renderer};
use crate::store::{AttemptRecord, Delta, DynStore, IdempotencyKey, RunRecord};
use batch::Batcher;
pub use decide::{INTERNAL_QUEUE, TaskFailure, TaskSuccess, Throttled};
pub use due::ClaimLoop;
pub use eager::{Slot, SlotProvider};
pub use engine::{AttemptChange, Transitioned};
pub use error::{KernelError, KernelResult};
use events::{EventHub, LiveEvent};
use lease::Caps;
pub use operations::{Executing, QueueFigures};
pub use signals::{DeltaInterest, RunObserver};
use transitions::{MAX_STARTS, MAX_TRANSITIONS, StartItem, TransitionItem};

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// Lease expiries an attempt survives before it fails as lost.
    pub max_lease_expiries: i32,
    /// Built-in handler executions in flight on this replica.
    pub executor_concurrency: usize,
    /// How often idle loops look at the store even without a wake-up.
    pub poll_interval: Duration,
    /// Concurrency caps per queue and per tenant, global across replicas.
    pub caps: Caps,
    /// How chain templates render (limits, sandbox).
    pub render: RenderConfig,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            lease: Duration::from_secs(30),
            max_lease_expiries: 3,
            executor_concurrency: 256,
            poll_interval: Duration::from_millis(250),
            caps: Caps::default(),
            render: RenderConfig::default(),
        }
    }
}

/// Where a run's chain comes from.
#[derive(Debug, Clone)]
pub enum ChainSource {
    /// A stored chain: the latest version, or a pinned one.
    Stored { id: String, version: Option<i64> },
    /// An inline definition (already validated); stored as a new version
    /// when it differs from the stored one with the same id.
    Inline(pb::Chain),
}

/// A validated StartRun.
#[derive(Debug, Clone)]
pub struct StartRun {
    /// The namespace the run and its chain belong to.
    pub namespace: String,
    pub chain: ChainSource,
    pub input: pb::Value,
    pub labels: BTreeMap<String, String>,
    pub priority: i32,
    pub tenant: String,
    pub idempotency: Option<IdempotencyKey>,
    /// The caller's W3C `traceparent`, normalised: the run span's parent.
    pub traceparent: Option<String>,
}

/// A watcher's live feed of one run; dropping it frees the run's channel
/// when no other watcher is left.
pub struct Subscription {
    kernel: Kernel,
    run_id: String,
    receiver: Option<broadcast::Receiver<LiveEvent>>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<LiveEvent, broadcast::error::RecvError> {
        match &mut self.receiver {
            Some(receiver) => receiver.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }

    /// What the feed holds now, without waiting.
    pub fn try_recv(&mut self) -> Result<LiveEvent, broadcast::error::TryRecvError> {
        match &mut self.receiver {
            Some(receiver) => receiver.try_recv(),
            None => Err(broadcast::error::TryRecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        self.kernel.inner.hub.release(&self.run_id);
    }
}

/// A run just started.
#[derive(Debug, Clone)]
pub struct Started {
    pub run: RunRecord,
    /// The attempts created with it; `None` when the request was a replay
    /// of an earlier one with the same `request_id` (nothing was written).
    pub attempts: Option<Vec<AttemptRecord>>,
}

/// A leased attempt with the chain version its run pinned.
#[derive(Debug, Clone)]
pub struct ClaimedAttempt {
    pub attempt: AttemptRecord,
    /// The run's namespace, its chain's.
    pub namespace: String,
    pub chain_id: String,
    pub chain_version: i64,
    /// The attempt's span context, in its run's trace.
    pub trace: crate::traces::AttemptTrace,
}

/// The engine, shared by the API and the background loops of a replica.
#[derive(Clone)]
pub struct Kernel {
    inner: Arc<Inner>,
}

struct Inner {
    store: DynStore,
    config: KernelConfig,
    renderer: Renderer,
    instance_id: String,
    /// Keyed by namespace, chain id and version.
    chains: RwLock<HashMap<(String, String, i64), Arc<CompiledChain>>>,
    hub: EventHub,
    /// Wakes the executor when internal work may be ready.
    work: Notify,
    /// Runs changed by this replica, to announce to the others.
    changed: mpsc::UnboundedSender<String>,
    changed_receiver: std::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Token deltas seen here, to send to the other replicas' watchers.
    deltas: mpsc::UnboundedSender<Delta>,
    deltas_receiver: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Delta>>>,
    /// Transitions waiting to be written together.
    transitions: Batcher<TransitionItem>,
    /// Runs waiting to be created together.
    starts: Batcher<StartItem>,
    /// Latest version of each stored chain as last seen; every start that
    /// uses it is checked against the store in its batch transaction.
    latest_versions: RwLock<HashMap<(String, String), i64>>,
    /// Places on this replica that take new attempts at once (eager
    /// dispatch): the runner for `internal`, the worker dispatcher for the
    /// queues its sessions serve.
    providers: RwLock<Vec<Arc<dyn SlotProvider>>>,
    /// Wakes the worker dispatcher when work may be ready on a worker queue.
    worker_work: Notify,
    /// Told about runs changed here or on other replicas.
    observers: RwLock<Vec<Arc<dyn RunObserver>>>,
    /// When the claim loops' future work falls due.
    due: due::DueTimes,
    /// The paused queues as last read (eager dispatch skips them).
    paused_queues: RwLock<std::collections::HashSet<String>>,
    /// Set once this replica drains: eager dispatch leases nothing more.
    draining: std::sync::atomic::AtomicBool,
    /// Attempts the runner executes now (a drain waits for them).
    executing: std::sync::atomic::AtomicUsize,
}

impl Kernel {
    pub fn new(store: DynStore, config: KernelConfig, instance_id: String) -> Kernel {
        let (changed, changed_receiver) = mpsc::unbounded_channel();
        let (deltas, deltas_receiver) = mpsc::unbounded_channel();
        Kernel {
            inner: Arc::new(Inner {
                store,
                renderer: Renderer::new(&config.render),
                config,
                instance_id,
                chains: RwLock::new(HashMap::new()),
                hub: EventHub::default(),
                work: Notify::new(),
                changed,
                changed_receiver: std::sync::Mutex::new(Some(changed_receiver)),
                deltas,
                deltas_receiver: std::sync::Mutex::new(Some(deltas_receiver)),
                transitions: Batcher::new(MAX_TRANSITIONS),
                starts: Batcher::new(MAX_STARTS),
                latest_versions: RwLock::new(HashMap::new()),
                providers: RwLock::new(Vec::new()),
                worker_work: Notify::new(),
                observers: RwLock::new(Vec::new()),
                due: due::DueTimes::default(),
                paused_queues: RwLock::default(),
                draining: std::sync::atomic::AtomicBool::new(false),
                executing: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    pub fn store(&self) -> &DynStore {
        &self.inner.store
    }

    pub fn config(&self) -> &KernelConfig {
        &self.inner.config
    }

    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    pub fn hub(&self) -> &EventHub {
        &self.inner.hub
    }

    /// Live events of one run (see [`EventHub`]).
    pub fn subscribe(&self, run_id: &str) -> Subscription {
        Subscription {
            kernel: self.clone(),
            run_id: run_id.to_string(),
            receiver: Some(self.inner.hub.subscribe(run_id)),
        }
    }

    /// A run; a missing one is the store's `NotFound` (resource and id,
    /// which the API returns as `ResourceInfo`).
    pub async fn get_run(&self, run_id: &str) -> KernelResult<RunRecord> {
        Ok(self.inner.store.get_run(run_id).await?)
    }

    /// A run of `namespace`. Another namespace's run is `NotFound`, as a
    /// missing one is, so that ids do not leak across namespaces.
    pub async fn run_in(&self, namespace: &str, run_id: &str) -> KernelResult<RunRecord> {
        let run = self.get_run(run_id).await?;
        if run.namespace != namespace {
            return Err(run_not_found(run_id));
        }
        Ok(run)
    }
}

/// The `NotFound` of a run that is missing or in another namespace.
fn run_not_found(run_id: &str) -> KernelError {
    KernelError::Store(crate::store::StoreError::NotFound {
        resource: "run",
        id: run_id.to_string(),
    })
}

/// The current time at the precision the stores keep.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}
