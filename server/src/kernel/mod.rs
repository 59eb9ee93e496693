//! The durable execution engine. It owns every state transition of runs and
//! attempts: each is a pure decision ([`decide`]) applied by the store in one
//! transaction under the run's row lock. Built-in handlers are executed by
//! this replica's [`runner`], which claims attempts from the `internal`
//! queue exactly as a remote worker claims from its queue; a sweeper returns
//! expired leases and times out overdue attempts.

mod batch;
pub mod decide;
mod due;
pub mod events;
pub mod lease;
pub mod replay;
pub mod runner;
pub mod value;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use crate::chain::{self, CompiledChain, Handler};
use crate::proto::taskloom::v1 as pb;
use crate::render::{RenderConfig, Renderer};
use crate::store::{
    AttemptRecord, AttemptStatus, ChainCheck, CreatedRun, Decision, Delta, DeltaBatch, DynStore,
    EventRecord, IdempotencyKey, NewRun, Plan, RejectionKind, RunRecord, RunSnapshot, Signal,
    StoreError, StoreResult, TransitionOutcome, Verdict,
};
use batch::{Batcher, Keyed};
use decide::{Given, RenderJob, Renders};
pub use decide::{INTERNAL_QUEUE, TaskFailure, TaskSuccess};
pub use due::ClaimLoop;
use events::{EventHub, LiveEvent};
use lease::{Caps, ClaimRequest};

/// Errors of the kernel layer.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The process is stopping; the caller should retry elsewhere.
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored state that cannot be interpreted.
    #[error("{0}")]
    Corrupt(String),
}

pub type KernelResult<T> = Result<T, KernelError>;

impl KernelError {
    /// The store itself failed (see [`StoreError::is_fault`]): retry later.
    pub fn is_store_fault(&self) -> bool {
        matches!(self, KernelError::Store(error) if error.is_fault())
    }
}

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
    pub chain: ChainSource,
    pub input: pb::Value,
    pub labels: BTreeMap<String, String>,
    pub priority: i32,
    pub tenant: String,
    pub idempotency: Option<IdempotencyKey>,
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
    pub chain_id: String,
    pub chain_version: i64,
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
    chains: RwLock<HashMap<(String, i64), Arc<CompiledChain>>>,
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
    latest_versions: RwLock<HashMap<String, i64>>,
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
}

/// Somewhere on this replica that can execute an attempt right away.
pub trait SlotProvider: Send + Sync {
    /// Reserves a slot for an attempt of `queue`, if one is free now. A slot
    /// dropped without delivery frees itself.
    fn reserve(&self, queue: &str) -> Option<Box<dyn Slot>>;
}

/// A reserved place for one attempt.
pub trait Slot: Send + Sync {
    /// The lease owner to record.
    fn owner(&self) -> String;
    /// Hands over the attempt, leased to `owner()` and committed.
    fn deliver(self: Box<Self>, attempt: ClaimedAttempt);
}

/// Learns which runs changed, so it can react (e.g. push cancellations to
/// the workers holding their attempts). Called on the hot path: cheap.
pub trait RunObserver: Send + Sync {
    fn runs_changed(&self, run_ids: &[&str]);
}

/// A decision given the compiled chain, the snapshot and the time.
type ChainDecision = dyn Fn(&Given) -> Plan + Send + Sync;

/// A transition queued for a batch write.
struct TransitionItem {
    run_id: String,
    /// An attempt the decision looks at.
    focus: Option<String>,
    chain: Arc<CompiledChain>,
    decide: Arc<ChainDecision>,
    renders: Arc<Renders>,
    reply: oneshot::Sender<Decided>,
}

/// What a transition came to.
// Sent once per transition and matched at once: boxing the result would
// cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
enum Decided {
    Done(KernelResult<RunRecord>),
    /// Nothing was written: the decision needs these templates rendered
    /// first (see [`Renders`]).
    NeedsRenders(Vec<RenderJob>),
}

impl Keyed for TransitionItem {
    fn key(&self) -> Option<&str> {
        Some(&self.run_id)
    }
}

/// A run queued for a batch create.
struct StartItem {
    new: NewRun,
    /// `scope/request_id`, so one key is reserved once per batch.
    key: Option<String>,
    reply: oneshot::Sender<StoreResult<CreatedRun>>,
}

impl Keyed for StartItem {
    fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

/// What a decision leased eagerly, and which claim loops it left ready
/// work for.
#[derive(Default)]
struct Dispatch {
    eager: Vec<(ClaimedAttempt, Box<dyn Slot>)>,
    internal_ready: bool,
    worker_ready: bool,
    /// The earliest future `available_at` of the ready work left, per loop.
    internal_due: Option<DateTime<Utc>>,
    worker_due: Option<DateTime<Utc>>,
}

type DispatchSlot = Arc<std::sync::Mutex<Dispatch>>;

/// Most transitions written in one batch.
const MAX_TRANSITIONS: usize = 128;
/// Most runs created in one batch.
const MAX_STARTS: usize = 128;
/// How often a start is retried when its chain changed under it.
const START_TRIES: u32 = 3;
/// Most rounds of rendering and deciding again for one transition: a run
/// whose other branches keep changing the templates' context may need more
/// than one.
const RENDER_ROUNDS: usize = 16;

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
            }),
        }
    }

    /// Publishes committed events to this replica's watchers and queues
    /// their runs for announcement to the other replicas.
    fn committed(&self, events: &[EventRecord]) {
        self.inner.hub.publish(events);
        let mut run_ids: Vec<&str> = Vec::new();
        for event in events {
            if run_ids.last() != Some(&event.run_id.as_str()) {
                let _ = self.inner.changed.send(event.run_id.clone());
                run_ids.push(&event.run_id);
            }
        }
        if !run_ids.is_empty() {
            self.notify_observers(&run_ids);
        }
    }

    /// Exchanges signals with the other replicas until `stop`: announces
    /// this replica's changed runs and token deltas (coalesced, see
    /// [`Kernel::announce`]), wakes watchers and the runner on the others'
    /// announcements and forwards their deltas to this replica's watchers.
    pub async fn exchange_signals(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let (Some(changed), Some(deltas)) = (
            take(&self.inner.changed_receiver),
            take(&self.inner.deltas_receiver),
        ) else {
            return;
        };
        let mut incoming = match self.inner.store.listen().await {
            Ok(incoming) => incoming,
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for other replicas' changes; relying on polling");
                None
            }
        };
        let _announcing = AbortOnDrop(Some(tokio::spawn(self.clone().announce(changed, deltas))));
        loop {
            tokio::select! {
                signal = recv_signal(&mut incoming) => match signal {
                    Some(Signal::Changed(announcement)) if announcement.origin != self.inner.instance_id => {
                        for run_id in &announcement.run_ids {
                            self.inner.hub.poke(run_id);
                        }
                        let run_ids: Vec<&str> = announcement.run_ids.iter().map(String::as_str).collect();
                        self.notify_observers(&run_ids);
                        // Their changes may include future work.
                        self.inner.due.forget();
                        self.inner.work.notify_one();
                        self.inner.worker_work.notify_one();
                    }
                    // Announcements were lost while the store was away: every
                    // watcher and claim loop looks at the store again.
                    Some(Signal::Resync) => {
                        self.inner.hub.poke_all();
                        self.inner.due.forget();
                        self.inner.work.notify_one();
                        self.inner.worker_work.notify_one();
                    }
                    Some(Signal::Deltas(batch)) if batch.origin != self.inner.instance_id => {
                        for delta in batch.deltas {
                            self.inner.hub.delta(&delta.run_id, &delta.task_id, &delta.attempt_id, delta.text);
                        }
                    }
                    Some(_) => {}
                    None => incoming = None,
                },
                _ = stop.changed() => return,
            }
        }
    }

    /// Sends this replica's changed runs (one notification per 5 ms burst)
    /// and token deltas (one per 20 ms of streaming) to the other replicas.
    /// Deltas already seen go out before the changes that follow them, so
    /// a remote watcher gets a call's last token before its completion.
    async fn announce(
        self,
        mut changed: mpsc::UnboundedReceiver<String>,
        mut deltas: mpsc::UnboundedReceiver<Delta>,
    ) {
        loop {
            let (mut run_ids, mut pending, window) = tokio::select! {
                run_id = changed.recv() => {
                    let Some(run_id) = run_id else { return };
                    (vec![run_id], Vec::new(), Duration::from_millis(5))
                }
                delta = deltas.recv() => {
                    let Some(delta) = delta else { return };
                    (Vec::new(), vec![delta], Duration::from_millis(20))
                }
            };
            // Gather the rest of the burst.
            let window = tokio::time::sleep(window);
            tokio::pin!(window);
            while run_ids.len() < 512 && pending.len() < 512 {
                tokio::select! {
                    () = &mut window => break,
                    Some(run_id) = changed.recv(), if pending.is_empty() => run_ids.push(run_id),
                    Some(delta) = deltas.recv(), if run_ids.is_empty() => pending.push(delta),
                }
            }
            while let Ok(delta) = deltas.try_recv() {
                pending.push(delta);
            }
            if !pending.is_empty() {
                let batch = DeltaBatch {
                    origin: self.inner.instance_id.clone(),
                    deltas: pending,
                };
                if let Err(error) = self.inner.store.announce_deltas(&batch).await {
                    tracing::debug!(error = %error, "sending token deltas failed");
                }
            }
            if !run_ids.is_empty() {
                run_ids.sort();
                run_ids.dedup();
                if let Err(error) = self
                    .inner
                    .store
                    .announce(&self.inner.instance_id, &run_ids)
                    .await
                {
                    tracing::debug!(error = %error, "announcing changed runs failed");
                }
            }
        }
    }

    /// A token delta of a streaming model call: to this replica's watchers
    /// at once, to the others' within a few tens of milliseconds.
    pub fn publish_delta(&self, run_id: &str, task_id: &str, attempt_id: &str, text: String) {
        self.inner
            .hub
            .delta(run_id, task_id, attempt_id, text.clone());
        if self.inner.store.kind() != "sqlite" {
            let _ = self.inner.deltas.send(Delta {
                run_id: run_id.to_string(),
                task_id: task_id.to_string(),
                attempt_id: attempt_id.to_string(),
                text,
            });
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

    fn cached_chain(&self, id: &str, version: i64) -> Option<Arc<CompiledChain>> {
        self.inner
            .chains
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(id.to_string(), version))
            .cloned()
    }

    /// A compiled chain version (versions are immutable, so cached forever).
    pub async fn chain(&self, id: &str, version: i64) -> KernelResult<Arc<CompiledChain>> {
        if let Some(chain) = self.cached_chain(id, version) {
            return Ok(chain);
        }
        let record = self.inner.store.get_chain(id, Some(version), true).await?;
        let definition = pb::Chain::decode(record.definition.as_slice())
            .map_err(|error| KernelError::Corrupt(format!("chain {id} v{version}: {error}")))?;
        let compiled = chain::compile(&definition).map_err(|violations| {
            KernelError::Corrupt(format!(
                "stored chain {id} v{version} no longer compiles: {}",
                violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;
        let compiled = Arc::new(compiled);
        self.inner
            .chains
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((id.to_string(), version), compiled.clone());
        Ok(compiled)
    }

    /// Resolves the chain version a new run pins, and what its batch must
    /// check about it. `fresh` bypasses the latest-version cache.
    async fn resolve_chain(
        &self,
        source: &ChainSource,
        fresh: bool,
    ) -> KernelResult<(String, i64, Option<ChainCheck>)> {
        let store = &self.inner.store;
        match source {
            ChainSource::Stored { id, version } => {
                let cached = match version {
                    None if !fresh => self.cached_latest(id),
                    Some(v) if !fresh && self.cached_chain(id, *v).is_some() => Some(*v),
                    _ => None,
                };
                let resolved = match cached {
                    Some(v) => v,
                    None => {
                        let record = store.get_chain(id, *version, false).await.map_err(
                            |error| match error {
                                StoreError::NotFound { .. } => {
                                    KernelError::NotFound(match version {
                                        Some(v) => format!("chain {id:?} has no version {v}"),
                                        None => format!("chain {id:?} not found"),
                                    })
                                }
                                other => other.into(),
                            },
                        )?;
                        if version.is_none() {
                            self.remember_latest(id, record.version);
                        }
                        record.version
                    }
                };
                let check = ChainCheck {
                    chain_id: id.clone(),
                    latest_version: version.is_none().then_some(resolved),
                };
                Ok((id.clone(), resolved, Some(check)))
            }
            ChainSource::Inline(chain) => {
                let mut definition = chain.clone();
                definition.version = 0;
                definition.etag.clear();
                definition.create_time = None;
                definition.update_time = None;
                let bytes = definition.encode_to_vec();
                match store.get_chain(&definition.id, None, false).await {
                    Ok(latest) if latest.definition == bytes => {
                        Ok((latest.id, latest.version, None))
                    }
                    Ok(_) => {
                        let updated = store
                            .update_chain(&definition.id, bytes, None, None)
                            .await?;
                        Ok((updated.record.id, updated.record.version, None))
                    }
                    Err(StoreError::NotFound { .. }) => {
                        match store
                            .create_chain(&definition.id, bytes.clone(), None)
                            .await
                        {
                            Ok(created) => Ok((created.record.id, created.record.version, None)),
                            // Another request stored it first.
                            Err(StoreError::AlreadyExists { .. }) => {
                                let latest = store.get_chain(&definition.id, None, false).await?;
                                Ok((latest.id, latest.version, None))
                            }
                            Err(other) => Err(other.into()),
                        }
                    }
                    Err(other) => Err(other.into()),
                }
            }
        }
    }

    fn cached_latest(&self, id: &str) -> Option<i64> {
        self.inner
            .latest_versions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(id)
            .copied()
    }

    fn remember_latest(&self, id: &str, version: i64) {
        self.inner
            .latest_versions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id.to_string(), version);
    }

    /// Starts a run (or, for a repeated `request_id`, returns the run the
    /// first request started).
    pub async fn start_run(&self, request: StartRun) -> KernelResult<Started> {
        if let ChainSource::Inline(definition) = &request.chain {
            // An inline chain is stored before its run: first check what
            // could still refuse the start, so a refused one writes nothing.
            let compiled =
                chain::compile(definition).map_err(|violations| KernelError::InvalidArgument {
                    field: "chain".to_string(),
                    message: violations
                        .iter()
                        .map(|v| format!("{}: {}", v.field, v.description))
                        .collect::<Vec<_>>()
                        .join("; "),
                })?;
            check_start_input(&compiled, &request.input)?;
            if let Some(key) = &request.idempotency
                && let Some(run_id) = self.inner.store.find_request(key).await?
            {
                return Ok(Started {
                    run: self.get_run(&run_id).await?,
                    attempts: None,
                });
            }
        }
        let mut tries = 1;
        loop {
            let (chain_id, version, chain_check) =
                self.resolve_chain(&request.chain, tries > 1).await?;
            let chain = self.chain(&chain_id, version).await?;
            check_start_input(&chain, &request.input)?;
            let new = decide::NewRun {
                id: uuid::Uuid::now_v7().to_string(),
                chain_id,
                chain_version: version,
                input: request.input.clone(),
                labels: request.labels.clone(),
                priority: request.priority,
                tenant: request.tenant.clone(),
                request_id: request
                    .idempotency
                    .as_ref()
                    .map(|key| key.request_id.clone()),
            };
            let now = now();
            let (run, attempts, events) = self.decide_start(&chain, new, now).await;
            let mut plan = Plan {
                run: None,
                new_attempts: attempts,
                events,
                ..Plan::apply()
            };
            let dispatch = self.lease_new_attempts(&chain, &run, &mut plan, now);
            let attempts = plan.new_attempts;
            let new = NewRun {
                run: plan.run.unwrap_or(run),
                attempts: attempts.clone(),
                events: plan.events,
                idempotency: request.idempotency.clone(),
                chain_check,
            };
            match self.create_batched(new).await {
                Err(KernelError::Store(StoreError::ChainChanged { .. })) if tries < START_TRIES => {
                    // Resolve the chain again, bypassing the cache.
                    tries += 1;
                }
                Err(error) => return Err(error),
                Ok((created, stored_events)) => {
                    self.committed(&stored_events);
                    if !created.replayed {
                        self.dispatch(dispatch);
                    }
                    let attempts = (!created.replayed).then_some(attempts);
                    return Ok(Started {
                        run: created.record,
                        attempts,
                    });
                }
            }
        }
    }

    /// Eager dispatch (as Temporal's eager activity dispatch): the attempts
    /// a decision creates are leased, in the transaction that creates them,
    /// to a slot free on this replica right now (the runner for `internal`,
    /// a connected worker for other queues), and handed over after the
    /// commit without a claim transaction: one commit per task instead of
    /// two, and no wait for the claim loop. Fencing is unchanged: the lease
    /// is in the store, and if this replica dies it expires and the attempt
    /// is claimed elsewhere. Also tells which claim loops have work left.
    fn lease_new_attempts(
        &self,
        chain: &CompiledChain,
        current: &RunRecord,
        plan: &mut Plan,
        now: DateTime<Utc>,
    ) -> Dispatch {
        let mut dispatch = Dispatch::default();
        if !matches!(plan.verdict, Verdict::Apply) {
            return dispatch;
        }
        // Work due later wakes its claim loop then, not now.
        let note_ready = |dispatch: &mut Dispatch, queue: &str, available_at: DateTime<Utc>| {
            let (ready, due) = if queue == INTERNAL_QUEUE {
                (&mut dispatch.internal_ready, &mut dispatch.internal_due)
            } else {
                (&mut dispatch.worker_ready, &mut dispatch.worker_due)
            };
            if available_at > now {
                *due = Some(due.map_or(available_at, |due| due.min(available_at)));
            } else {
                *ready = true;
            }
        };
        for update in &plan.attempt_updates {
            if update.status == AttemptStatus::Ready {
                note_ready(&mut dispatch, &update.queue, update.available_at);
            }
        }
        let run_after = plan.run.as_ref().unwrap_or(current);
        if run_after.status != current.status && run_after.status.is_dispatchable() {
            // Resumed or retried: its ready attempts are claimable again.
            dispatch.internal_ready = true;
            dispatch.worker_ready = true;
        }
        // A paused run keeps its ready attempts until it resumes.
        let dispatchable = run_after.status.is_dispatchable();
        let providers = self
            .inner
            .providers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let expires_at = lease::expiry(now, self.inner.config.lease.as_millis() as i64);
        let mut slots: Vec<(String, Box<dyn Slot>)> = Vec::new();
        for attempt in plan.new_attempts.iter_mut() {
            if attempt.status != AttemptStatus::Ready {
                continue;
            }
            // Capped work goes through the claim, which counts across
            // replicas.
            let capped = self.inner.config.caps.queue(&attempt.queue).is_some()
                || self.inner.config.caps.tenant(&run_after.tenant).is_some();
            let lease =
                expires_at.filter(|_| dispatchable && !capped && attempt.available_at <= now);
            let slot = lease.and_then(|until| {
                providers
                    .iter()
                    .find_map(|p| p.reserve(&attempt.queue))
                    .map(|slot| (slot, until))
            });
            let Some((slot, until)) = slot else {
                note_ready(&mut dispatch, &attempt.queue, attempt.available_at);
                continue;
            };
            *attempt = lease::grant(attempt, &slot.owner(), now, until, rand::random());
            slots.push((attempt.id.clone(), slot));
        }
        if slots.is_empty() {
            return dispatch;
        }
        let run = plan.run.clone().unwrap_or_else(|| current.clone());
        let leased: Vec<AttemptRecord> = plan
            .new_attempts
            .iter()
            .filter(|a| slots.iter().any(|(id, _)| *id == a.id))
            .cloned()
            .collect();
        let claim = decide::claimed(Some(chain), &run, &leased, now);
        for update in claim.attempt_updates {
            if let Some(attempt) = plan.new_attempts.iter_mut().find(|a| a.id == update.id) {
                *attempt = update;
            }
        }
        plan.events.extend(claim.events);
        plan.run = claim.run;
        for (id, slot) in slots {
            if let Some(attempt) = plan.new_attempts.iter().find(|a| a.id == id) {
                let claimed = ClaimedAttempt {
                    attempt: attempt.clone(),
                    chain_id: run.chain_id.clone(),
                    chain_version: run.chain_version,
                };
                dispatch.eager.push((claimed, slot));
            }
        }
        dispatch
    }

    /// A decision that leases its new internal attempts eagerly; the slot
    /// holds what the last call (the one applied) leased.
    fn decide_eagerly(
        &self,
        chain: Arc<CompiledChain>,
        decide: Arc<ChainDecision>,
        renders: Arc<Renders>,
    ) -> (Decision, DispatchSlot) {
        let slot = DispatchSlot::default();
        let (kernel, last) = (self.clone(), slot.clone());
        let decide_fn = Decision::new(move |snapshot: &RunSnapshot| {
            let now = now();
            let given = Given {
                chain: &chain,
                snapshot,
                renders: &renders,
                now,
            };
            let mut plan = decide(&given);
            let dispatch = kernel.lease_new_attempts(&chain, &snapshot.run, &mut plan, now);
            *last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = dispatch;
            plan
        });
        (decide_fn, slot)
    }

    /// After a commit: hands eagerly leased attempts over and wakes the
    /// claim loops that have work left.
    fn dispatch(&self, dispatch: Dispatch) {
        for (attempt, slot) in dispatch.eager {
            slot.deliver(attempt);
        }
        if let Some(at) = dispatch.internal_due {
            self.inner.due.note(ClaimLoop::Internal, at);
        }
        if let Some(at) = dispatch.worker_due {
            self.inner.due.note(ClaimLoop::Workers, at);
        }
        if dispatch.internal_ready {
            self.inner.work.notify_one();
        }
        if dispatch.worker_ready {
            self.inner.worker_work.notify_one();
        }
    }

    /// Adds a place that takes new attempts at once (see
    /// [`Kernel::lease_new_attempts`]).
    pub fn register_slots(&self, provider: Arc<dyn SlotProvider>) {
        self.inner
            .providers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(provider);
    }

    /// Adds an observer of changed runs.
    pub fn observe_runs(&self, observer: Arc<dyn RunObserver>) {
        self.inner
            .observers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(observer);
    }

    fn notify_observers(&self, run_ids: &[&str]) {
        let observers = self
            .inner
            .observers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for observer in observers.iter() {
            observer.runs_changed(run_ids);
        }
    }

    /// Waits until work may be ready on a worker queue.
    pub async fn worker_work_available(&self) {
        self.inner.worker_work.notified().await;
    }

    /// Queues a run for the next batch create and waits for it.
    async fn create_batched(&self, new: NewRun) -> KernelResult<CreatedRun> {
        let (reply, answer) = oneshot::channel();
        let key = new
            .idempotency
            .as_ref()
            .map(|key| format!("{}/{}", key.scope, key.request_id));
        let item = StartItem { new, key, reply };
        let kernel = self.clone();
        let write = move |batch| {
            let kernel = kernel.clone();
            async move { kernel.write_starts(batch).await }
        };
        if self.inner.starts.submit(item, write).is_err() {
            return Err(KernelError::ShuttingDown);
        }
        match answer.await {
            Ok(result) => result.map_err(KernelError::from),
            Err(_) => Err(KernelError::ShuttingDown),
        }
    }

    async fn write_starts(&self, batch: Vec<StartItem>) {
        let news = batch.iter().map(|item| item.new.clone()).collect();
        match self.inner.store.create_runs(news).await {
            Ok(results) => {
                for (item, result) in batch.into_iter().zip(results) {
                    let _ = item.reply.send(result);
                }
            }
            Err(error) => {
                // One bad item must not fail its neighbours: write each alone.
                // A lost connection is replaced for the first one; once the
                // store itself fails, the rest fail the same way at once.
                tracing::warn!(error = %error, size = batch.len(), "a start batch failed; writing its runs one by one");
                let mut fault: Option<StoreError> = None;
                for item in batch {
                    let result = match fault.as_ref().and_then(StoreError::fault_copy) {
                        Some(fault) => Err(fault),
                        None => match self.inner.store.create_runs(vec![item.new]).await {
                            Ok(mut results) => results.pop().unwrap_or_else(|| {
                                Err(StoreError::Corrupt("create_runs lost a run".into()))
                            }),
                            Err(error) => {
                                fault = error.fault_copy();
                                Err(error)
                            }
                        },
                    };
                    let _ = item.reply.send(result);
                }
            }
        }
    }

    /// Applies one decision to a run.
    /// `focus` names an attempt the decision looks at (read into its
    /// snapshot even when it is not one of the run's heads).
    pub async fn transition<F>(
        &self,
        run_id: &str,
        focus: Option<&str>,
        decide: F,
    ) -> KernelResult<RunRecord>
    where
        F: Fn(&Given) -> Plan + Send + Sync + 'static,
    {
        self.transition_once(run_id, focus, None, decide).await
    }

    /// As `transition`, guarded by the caller's request id: a repeat of an
    /// applied request returns the run as it is, deciding nothing.
    async fn transition_once<F>(
        &self,
        run_id: &str,
        focus: Option<&str>,
        idempotency: Option<IdempotencyKey>,
        decide: F,
    ) -> KernelResult<RunRecord>
    where
        F: Fn(&Given) -> Plan + Send + Sync + 'static,
    {
        let run = self.get_run(run_id).await?;
        let chain = self.chain(&run.chain_id, run.chain_version).await?;
        let decide: Arc<ChainDecision> = Arc::new(decide);
        let mut done = Vec::new();
        for _ in 0..RENDER_ROUNDS {
            let renders = Arc::new(Renders::new(done.clone()));
            let (decide_fn, dispatch) =
                self.decide_eagerly(chain.clone(), decide.clone(), renders.clone());
            let decide_fn = decide_fn
                .with_focus(focus.into_iter().map(str::to_string).collect())
                .with_idempotency(idempotency.clone());
            let outcome = self.inner.store.transition(run_id, decide_fn).await?;
            match self.outcome(outcome, dispatch, &renders) {
                Decided::Done(result) => return result,
                Decided::NeedsRenders(jobs) => {
                    done.extend(self.inner.renderer.render_all(jobs).await)
                }
            }
        }
        Err(restless(run_id))
    }

    /// The first state of a run, with its entry task's templates rendered
    /// (outside any transaction, like every render).
    async fn decide_start(
        &self,
        chain: &CompiledChain,
        new: decide::NewRun,
        now: DateTime<Utc>,
    ) -> (RunRecord, Vec<AttemptRecord>, Vec<Vec<u8>>) {
        let mut done = Vec::new();
        loop {
            let renders = Renders::new(done);
            let first = decide::start(chain, new.clone(), &renders, now);
            let missing = renders.take_missing();
            if missing.is_empty() {
                return first;
            }
            // The context of an entry task is the run's input alone, so a
            // second round always finds what it needs.
            done = renders.into_done();
            done.extend(self.inner.renderer.render_all(missing).await);
        }
    }

    /// Publishes an applied transition's events; maps a rejection.
    fn outcome(
        &self,
        outcome: TransitionOutcome,
        dispatch: DispatchSlot,
        renders: &Renders,
    ) -> Decided {
        let dispatch = std::mem::take(
            &mut *dispatch
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        match outcome {
            TransitionOutcome::Applied { run, events } => {
                self.committed(&events);
                self.dispatch(dispatch);
                Decided::Done(Ok(run))
            }
            TransitionOutcome::Replayed(run) => Decided::Done(Ok(run)),
            TransitionOutcome::Rejected(rejection) => Decided::Done(Err(match rejection.kind {
                RejectionKind::NotFound => KernelError::NotFound(rejection.message),
                RejectionKind::FailedPrecondition => {
                    KernelError::FailedPrecondition(rejection.message)
                }
                RejectionKind::InvalidArgument => KernelError::InvalidArgument {
                    field: String::new(),
                    message: rejection.message,
                },
                RejectionKind::Deferred => {
                    let missing = renders.take_missing();
                    if !missing.is_empty() {
                        return Decided::NeedsRenders(missing);
                    }
                    KernelError::Corrupt(format!(
                        "a decision was deferred without naming a render: {}",
                        rejection.message
                    ))
                }
            })),
        }
    }

    /// Queues a transition for the next batch write and waits for it. A
    /// decision that needs templates rendered comes back unwritten; this
    /// caller renders them (delaying nothing but its own run) and queues it
    /// again with the results.
    async fn batched<F>(
        &self,
        run_id: &str,
        focus: Option<&str>,
        chain: Arc<CompiledChain>,
        decide: F,
    ) -> KernelResult<RunRecord>
    where
        F: Fn(&Given) -> Plan + Send + Sync + 'static,
    {
        let decide: Arc<ChainDecision> = Arc::new(decide);
        let mut done = Vec::new();
        for _ in 0..RENDER_ROUNDS {
            let (reply, answer) = oneshot::channel();
            let item = TransitionItem {
                run_id: run_id.to_string(),
                focus: focus.map(str::to_string),
                chain: chain.clone(),
                decide: decide.clone(),
                renders: Arc::new(Renders::new(done.clone())),
                reply,
            };
            let kernel = self.clone();
            let write = move |batch| {
                let kernel = kernel.clone();
                async move { kernel.write_transitions(batch).await }
            };
            if self.inner.transitions.submit(item, write).is_err() {
                return Err(KernelError::ShuttingDown);
            }
            match answer.await {
                Ok(Decided::Done(result)) => return result,
                Ok(Decided::NeedsRenders(jobs)) => {
                    done.extend(self.inner.renderer.render_all(jobs).await)
                }
                Err(_) => return Err(KernelError::ShuttingDown),
            }
        }
        Err(restless(run_id))
    }

    async fn write_transitions(&self, batch: Vec<TransitionItem>) {
        let mut items = Vec::with_capacity(batch.len());
        let mut dispatches = Vec::with_capacity(batch.len());
        for item in &batch {
            let (decide_fn, dispatch) = self.decide_eagerly(
                item.chain.clone(),
                item.decide.clone(),
                item.renders.clone(),
            );
            items.push((
                item.run_id.clone(),
                decide_fn.with_focus(item.focus.iter().cloned().collect()),
            ));
            dispatches.push(dispatch);
        }
        match self.inner.store.transition_many(items).await {
            Ok(results) => {
                for ((item, result), dispatch) in batch.into_iter().zip(results).zip(dispatches) {
                    let answer = match result {
                        Ok(outcome) => self.outcome(outcome, dispatch, &item.renders),
                        Err(error) => Decided::Done(Err(error.into())),
                    };
                    let _ = item.reply.send(answer);
                }
            }
            Err(error) => {
                // One bad item must not fail its neighbours: write each alone
                // (as for starts, a store fault fails the rest at once).
                tracing::warn!(error = %error, size = batch.len(), "a transition batch failed; writing its items one by one");
                drop(dispatches);
                let mut fault: Option<StoreError> = None;
                for item in batch {
                    if let Some(fault) = fault.as_ref().and_then(StoreError::fault_copy) {
                        let _ = item.reply.send(Decided::Done(Err(fault.into())));
                        continue;
                    }
                    let (decide_fn, dispatch) =
                        self.decide_eagerly(item.chain, item.decide, item.renders.clone());
                    let decide_fn = decide_fn.with_focus(item.focus.into_iter().collect());
                    let answer = match self.inner.store.transition(&item.run_id, decide_fn).await {
                        Ok(outcome) => self.outcome(outcome, dispatch, &item.renders),
                        Err(error) => {
                            fault = error.fault_copy();
                            Decided::Done(Err(error.into()))
                        }
                    };
                    let _ = item.reply.send(answer);
                }
            }
        }
    }

    /// A run; a missing one is the store's `NotFound` (resource and id,
    /// which the API returns as `ResourceInfo`).
    pub async fn get_run(&self, run_id: &str) -> KernelResult<RunRecord> {
        Ok(self.inner.store.get_run(run_id).await?)
    }

    /// Records a completion (batched with others).
    pub async fn complete(
        &self,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
        success: TaskSuccess,
    ) -> KernelResult<RunRecord> {
        let chain = self.run_chain(run_id).await?;
        self.complete_in(chain, run_id, attempt_id, lease_token, success)
            .await
    }

    /// As `complete`, for a caller that already holds the run's chain.
    pub async fn complete_in(
        &self,
        chain: Arc<CompiledChain>,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
        success: TaskSuccess,
    ) -> KernelResult<RunRecord> {
        let focus = attempt_id;
        let (attempt_id, token) = (attempt_id.to_string(), lease_token.to_string());
        self.batched(run_id, Some(focus), chain, move |given| {
            decide::complete(given, &attempt_id, &token, success.clone())
        })
        .await
    }

    /// Records a failure (batched with others).
    pub async fn fail(
        &self,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
        failure: TaskFailure,
    ) -> KernelResult<RunRecord> {
        let chain = self.run_chain(run_id).await?;
        self.fail_in(chain, run_id, attempt_id, lease_token, failure)
            .await
    }

    /// As `fail`, for a caller that already holds the run's chain.
    pub async fn fail_in(
        &self,
        chain: Arc<CompiledChain>,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
        failure: TaskFailure,
    ) -> KernelResult<RunRecord> {
        let focus = attempt_id;
        let (attempt_id, token) = (attempt_id.to_string(), lease_token.to_string());
        let random_unit: f64 = rand::random();
        self.batched(run_id, Some(focus), chain, move |given| {
            decide::fail(given, &attempt_id, &token, failure.clone(), random_unit)
        })
        .await
    }

    /// The chain version a run pinned.
    pub async fn run_chain(&self, run_id: &str) -> KernelResult<Arc<CompiledChain>> {
        let run = self.get_run(run_id).await?;
        self.chain(&run.chain_id, run.chain_version).await
    }

    pub async fn extend_lease(
        &self,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
        extension: Duration,
    ) -> KernelResult<DateTime<Utc>> {
        let until = now() + chrono::Duration::from_std(extension).unwrap_or(chrono::Duration::MAX);
        let focus = attempt_id;
        let (attempt_id, token) = (attempt_id.to_string(), lease_token.to_string());
        self.transition(run_id, Some(focus), move |given| {
            decide::extend(given, &attempt_id, &token, until)
        })
        .await?;
        Ok(until)
    }

    /// Gives a lease back: the attempt is `Ready` again at once, without
    /// spending a retry (batched).
    pub async fn release_lease(
        &self,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
    ) -> KernelResult<RunRecord> {
        let chain = self.run_chain(run_id).await?;
        let focus = attempt_id;
        let (attempt_id, token) = (attempt_id.to_string(), lease_token.to_string());
        self.batched(run_id, Some(focus), chain, move |given| {
            decide::release(given, &attempt_id, &token)
        })
        .await
    }

    /// Records a progress note of a held lease as a `TASK_PROGRESS` event.
    pub async fn progress(
        &self,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
        message: String,
        data: Option<prost_types::Struct>,
    ) -> KernelResult<RunRecord> {
        let chain = self.run_chain(run_id).await?;
        let focus = attempt_id;
        let (attempt_id, token) = (attempt_id.to_string(), lease_token.to_string());
        self.batched(run_id, Some(focus), chain, move |given| {
            decide::progress(given, &attempt_id, &token, &message, data.clone())
        })
        .await
    }

    /// Cancels a run; with a request id, a repeat answers the run as it is.
    pub async fn cancel_run(
        &self,
        run_id: &str,
        reason: &str,
        idempotency: Option<IdempotencyKey>,
    ) -> KernelResult<RunRecord> {
        let reason = reason.to_string();
        self.transition_once(run_id, None, idempotency, move |given| {
            decide::cancel(given, &reason)
        })
        .await
    }

    pub async fn pause_run(
        &self,
        run_id: &str,
        cancel_running: bool,
        idempotency: Option<IdempotencyKey>,
    ) -> KernelResult<RunRecord> {
        self.transition_once(run_id, None, idempotency, move |given| {
            decide::pause(given, cancel_running)
        })
        .await
    }

    pub async fn resume_run(
        &self,
        run_id: &str,
        idempotency: Option<IdempotencyKey>,
    ) -> KernelResult<RunRecord> {
        self.transition_once(run_id, None, idempotency, decide::resume)
            .await
    }

    pub async fn submit_input(
        &self,
        run_id: &str,
        task_id: &str,
        answer: pb::Value,
        request_key: Option<String>,
    ) -> KernelResult<RunRecord> {
        let task_id = task_id.to_string();
        self.transition(run_id, None, move |given| {
            decide::submit_input(given, &task_id, answer.clone(), request_key.as_deref())
        })
        .await
    }

    /// Continues a failed run; with a request id, a repeat answers the run
    /// as it is instead of failing because the run is no longer failed.
    pub async fn retry_run(
        &self,
        run_id: &str,
        idempotency: Option<IdempotencyKey>,
    ) -> KernelResult<RunRecord> {
        self.transition_once(run_id, None, idempotency, decide::retry_run)
            .await
    }

    /// Leases ready attempts of `queues` for `owner`.
    pub async fn claim(
        &self,
        queues: &[String],
        owner: &str,
        limit: u32,
    ) -> KernelResult<Vec<ClaimedAttempt>> {
        let now = now();
        let request = ClaimRequest {
            queues: queues.to_vec(),
            owner: owner.to_string(),
            limit,
            now,
            lease_ms: self.inner.config.lease.as_millis() as i64,
            caps: self.inner.config.caps.clone(),
        };
        let kernel = self.clone();
        let chains_of_runs = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let seen = chains_of_runs.clone();
        let decide_claim = move |run: &RunRecord, attempts: &[AttemptRecord]| {
            seen.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(run.id.clone(), (run.chain_id.clone(), run.chain_version));
            let chain = kernel.cached_chain(&run.chain_id, run.chain_version);
            decide::claimed(chain.as_deref(), run, attempts, now)
        };
        let claimed = self.inner.store.claim(&request, &decide_claim).await?;
        self.committed(&claimed.events);
        let chains_of_runs = std::mem::take(
            &mut *chains_of_runs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        Ok(claimed
            .attempts
            .into_iter()
            .filter_map(|attempt| {
                let (chain_id, chain_version) = chains_of_runs.get(&attempt.run_id)?.clone();
                Some(ClaimedAttempt {
                    attempt,
                    chain_id,
                    chain_version,
                })
            })
            .collect())
    }

    /// Returns expired leases to `Ready` and times out overdue attempts.
    /// Returns how many attempts were handled; stops at a store fault.
    pub async fn sweep(&self) -> KernelResult<usize> {
        let due = self.inner.store.due_attempts(now(), 256).await?;
        let max = self.inner.config.max_lease_expiries;
        for item in &due {
            let attempt_id = item.attempt_id.clone();
            let random_unit: f64 = rand::random();
            let result = self
                .transition(&item.run_id, Some(&item.attempt_id), move |given| {
                    decide::expire(given, &attempt_id, max, random_unit)
                })
                .await;
            match result {
                Err(error) if error.is_store_fault() => return Err(error),
                Err(error) => {
                    tracing::warn!(run_id = %item.run_id, attempt_id = %item.attempt_id, error = %error, "sweeping an attempt failed");
                }
                Ok(_) => {}
            }
        }
        Ok(due.len())
    }

    /// Wakes the executor (new internal work may be ready).
    pub fn wake(&self) {
        self.inner.work.notify_one();
    }

    async fn work_available(&self) {
        self.inner.work.notified().await;
    }

    /// Ends a lease at once, as if it had expired: its holder failed the
    /// liveness check, so the attempt goes back to `Ready` for someone else
    /// now rather than when the lease runs out. Counted as a lease expiry
    /// (a task that keeps losing its workers still fails as lost).
    /// `FailedPrecondition` unless the attempt is leased under
    /// `lease_token`.
    pub async fn expire_lease(
        &self,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
    ) -> KernelResult<RunRecord> {
        let max = self.inner.config.max_lease_expiries;
        let random_unit: f64 = rand::random();
        let (attempt_id, token) = (attempt_id.to_string(), lease_token.to_string());
        let focus = attempt_id.clone();
        self.transition(run_id, Some(&focus), move |given| {
            let mut expired = given.snapshot.clone();
            let held = expired.attempts.iter_mut().find(|a| {
                a.id == attempt_id
                    && a.status == AttemptStatus::Leased
                    && a.lease_token.as_deref() == Some(token.as_str())
            });
            let Some(held) = held else {
                return Plan::reject(
                    RejectionKind::FailedPrecondition,
                    format!("attempt {attempt_id} is not leased under this token"),
                );
            };
            held.lease_expires_at = Some(given.now);
            let given = decide::Given {
                snapshot: &expired,
                ..*given
            };
            decide::expire(&given, &attempt_id, max, random_unit)
        })
        .await
    }
}

/// A run whose templates' context changed under every render round.
fn restless(run_id: &str) -> KernelError {
    KernelError::FailedPrecondition(format!(
        "run {run_id} kept changing while its templates rendered; try again"
    ))
}

/// Takes what a one-time slot holds.
fn take<T>(slot: &std::sync::Mutex<Option<T>>) -> Option<T> {
    slot.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}

async fn recv_signal(incoming: &mut Option<mpsc::Receiver<Signal>>) -> Option<Signal> {
    match incoming {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// The current time at the precision the stores keep.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// A start's input must suit its chain's entry task.
fn check_start_input(chain: &CompiledChain, input: &pb::Value) -> KernelResult<()> {
    let Some(entry) = chain.task(chain.entry()) else {
        return Ok(());
    };
    check_entry_input(entry.handler, input).map_err(|message| KernelError::InvalidArgument {
        field: "input".to_string(),
        message,
    })
}

/// Whether the run's input suits the entry task's handler.
fn check_entry_input(handler: Handler, input: &pb::Value) -> Result<(), String> {
    use pb::value::Kind;
    let kind = input.kind.as_ref();
    let fits = match handler {
        Handler::ModelExecution => matches!(kind, Some(Kind::ChatHistory(_) | Kind::Text(_))),
        Handler::Embedding => matches!(kind, Some(Kind::Text(_))),
        Handler::RawString
        | Handler::ConditionKey
        | Handler::ParseNumber
        | Handler::ParseScore
        | Handler::ParseRange => !matches!(kind, Some(Kind::Vector(_)) | None),
        _ => kind.is_some(),
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "the entry task's handler {} cannot take a {} input",
            handler.name(),
            value::value_type(input).as_str_name()
        ))
    }
}
