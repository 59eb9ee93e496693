//! The durable execution engine. It owns every state transition of runs and
//! attempts: each is a pure decision ([`decide`]) applied by the store in one
//! transaction under the run's row lock. Built-in handlers are executed by
//! this replica's [`runner`], which claims attempts from the `internal`
//! queue exactly as a remote worker claims from its queue; a sweeper returns
//! expired leases and times out overdue attempts.

pub mod decide;
pub mod events;
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
use crate::store::{
    AttemptRecord, ClaimRequest, DynStore, EventRecord, IdempotencyKey, Plan, RejectionKind,
    RunRecord, RunSnapshot, StoreError, TransitionOutcome,
};
pub use decide::{INTERNAL_QUEUE, TaskFailure, TaskSuccess};
use events::{EventHub, LiveEvent};

/// Errors of the kernel layer.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored state that cannot be interpreted.
    #[error("{0}")]
    Corrupt(String),
}

pub type KernelResult<T> = Result<T, KernelError>;

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
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            lease: Duration::from_secs(30),
            max_lease_expiries: 3,
            executor_concurrency: 256,
            poll_interval: Duration::from_millis(250),
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
    instance_id: String,
    chains: RwLock<HashMap<(String, i64), Arc<CompiledChain>>>,
    hub: EventHub,
    /// Wakes the executor when internal work may be ready.
    work: Notify,
    /// Runs changed by this replica, to announce to the others.
    changed: mpsc::UnboundedSender<String>,
    changed_receiver: std::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Transitions waiting to be written together (see `write_batches`).
    batch: mpsc::UnboundedSender<BatchItem>,
    batch_receiver: tokio::sync::Mutex<mpsc::UnboundedReceiver<BatchItem>>,
    batch_writers: std::sync::Once,
}

/// A decision given the compiled chain, the snapshot and the time.
type ChainDecision = dyn Fn(&CompiledChain, &RunSnapshot, DateTime<Utc>) -> Plan + Send + Sync;

/// A transition queued for a batch write.
struct BatchItem {
    run_id: String,
    chain: Arc<CompiledChain>,
    decide: Arc<ChainDecision>,
    reply: oneshot::Sender<KernelResult<RunRecord>>,
}

impl BatchItem {
    fn decide_fn(&self) -> crate::store::DecideFn {
        let (chain, decide) = (self.chain.clone(), self.decide.clone());
        Box::new(move |snapshot| decide(&chain, snapshot, now()))
    }
}

/// Most transitions written in one batch.
const MAX_BATCH: usize = 128;

impl Kernel {
    pub fn new(store: DynStore, config: KernelConfig, instance_id: String) -> Kernel {
        let (changed, changed_receiver) = mpsc::unbounded_channel();
        let (batch, batch_receiver) = mpsc::unbounded_channel();
        Kernel {
            inner: Arc::new(Inner {
                store,
                config,
                instance_id,
                chains: RwLock::new(HashMap::new()),
                hub: EventHub::default(),
                work: Notify::new(),
                changed,
                changed_receiver: std::sync::Mutex::new(Some(changed_receiver)),
                batch,
                batch_receiver: tokio::sync::Mutex::new(batch_receiver),
                batch_writers: std::sync::Once::new(),
            }),
        }
    }

    /// Publishes committed events to this replica's watchers and queues
    /// their runs for announcement to the other replicas.
    fn committed(&self, events: &[EventRecord]) {
        self.inner.hub.publish(events);
        let mut last: Option<&str> = None;
        for event in events {
            if last != Some(event.run_id.as_str()) {
                let _ = self.inner.changed.send(event.run_id.clone());
                last = Some(&event.run_id);
            }
        }
    }

    /// Exchanges change signals with the other replicas until `stop`:
    /// announces this replica's changed runs (coalesced: one notification
    /// per burst, never one per transition) and wakes watchers and the
    /// runner on the others' announcements.
    pub async fn exchange_signals(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(mut changed) = self
            .inner
            .changed_receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            return;
        };
        let mut incoming = match self.inner.store.listen().await {
            Ok(incoming) => incoming,
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for other replicas' changes; relying on polling");
                None
            }
        };
        let mut batch: Vec<String> = Vec::new();
        loop {
            tokio::select! {
                received = changed.recv() => {
                    let Some(run_id) = received else { return };
                    batch.push(run_id);
                    // Gather the rest of the burst.
                    let window = tokio::time::sleep(Duration::from_millis(5));
                    tokio::pin!(window);
                    while batch.len() < 512 {
                        tokio::select! {
                            () = &mut window => break,
                            more = changed.recv() => match more {
                                Some(run_id) => batch.push(run_id),
                                None => break,
                            },
                        }
                    }
                    batch.sort();
                    batch.dedup();
                    if let Err(error) = self.inner.store.announce(&self.inner.instance_id, &batch).await {
                        tracing::debug!(error = %error, "announcing changed runs failed");
                    }
                    batch.clear();
                }
                announcement = recv_announcement(&mut incoming) => match announcement {
                    Some(announcement) if announcement.origin != self.inner.instance_id => {
                        for run_id in &announcement.run_ids {
                            self.inner.hub.poke(run_id);
                        }
                        self.inner.work.notify_one();
                    }
                    Some(_) => {}
                    None => incoming = None,
                },
                _ = stop.changed() => return,
            }
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

    /// Resolves the chain version a new run pins.
    async fn resolve_chain(&self, source: &ChainSource) -> KernelResult<(String, i64)> {
        let store = &self.inner.store;
        match source {
            ChainSource::Stored { id, version } => {
                let record =
                    store
                        .get_chain(id, *version, false)
                        .await
                        .map_err(|error| match error {
                            StoreError::NotFound { .. } => KernelError::NotFound(match version {
                                Some(v) => format!("chain {id:?} has no version {v}"),
                                None => format!("chain {id:?} not found"),
                            }),
                            other => other.into(),
                        })?;
                Ok((record.id, record.version))
            }
            ChainSource::Inline(chain) => {
                let mut definition = chain.clone();
                definition.version = 0;
                definition.etag.clear();
                definition.create_time = None;
                definition.update_time = None;
                let bytes = definition.encode_to_vec();
                match store.get_chain(&definition.id, None, false).await {
                    Ok(latest) if latest.definition == bytes => Ok((latest.id, latest.version)),
                    Ok(_) => {
                        let updated = store
                            .update_chain(&definition.id, bytes, None, None)
                            .await?;
                        Ok((updated.record.id, updated.record.version))
                    }
                    Err(StoreError::NotFound { .. }) => {
                        match store
                            .create_chain(&definition.id, bytes.clone(), None)
                            .await
                        {
                            Ok(created) => Ok((created.record.id, created.record.version)),
                            // Another request stored it first.
                            Err(StoreError::AlreadyExists { .. }) => {
                                let latest = store.get_chain(&definition.id, None, false).await?;
                                Ok((latest.id, latest.version))
                            }
                            Err(other) => Err(other.into()),
                        }
                    }
                    Err(other) => Err(other.into()),
                }
            }
        }
    }

    /// Starts a run (or, for a repeated `request_id`, returns the run the
    /// first request started).
    pub async fn start_run(&self, request: StartRun) -> KernelResult<Started> {
        let (chain_id, version) = self.resolve_chain(&request.chain).await?;
        let chain = self.chain(&chain_id, version).await?;
        if let Some(entry) = chain.task(chain.entry()) {
            check_entry_input(entry.handler, &request.input).map_err(|message| {
                KernelError::InvalidArgument {
                    field: "input".to_string(),
                    message,
                }
            })?;
        }
        let now = now();
        let new = decide::NewRun {
            id: uuid::Uuid::now_v7().to_string(),
            chain_id,
            chain_version: version,
            input: request.input,
            labels: request.labels,
            priority: request.priority,
            tenant: request.tenant,
            request_id: request
                .idempotency
                .as_ref()
                .map(|key| key.request_id.clone()),
        };
        let (run, attempts, events) = decide::start(&chain, new, now);
        let (created, stored_events) = self
            .inner
            .store
            .create_run(run, attempts.clone(), events, request.idempotency)
            .await?;
        self.committed(&stored_events);
        self.inner.work.notify_one();
        let attempts = if created.replayed {
            None
        } else {
            Some(attempts)
        };
        Ok(Started {
            run: created.record,
            attempts,
        })
    }

    /// Applies one decision to a run.
    pub async fn transition<F>(&self, run_id: &str, decide: F) -> KernelResult<RunRecord>
    where
        F: Fn(&CompiledChain, &RunSnapshot, DateTime<Utc>) -> Plan + Send + Sync + 'static,
    {
        let run = self.get_run(run_id).await?;
        let chain = self.chain(&run.chain_id, run.chain_version).await?;
        let outcome = self
            .inner
            .store
            .transition(
                run_id,
                Box::new(move |snapshot| decide(&chain, snapshot, now())),
            )
            .await?;
        self.outcome(outcome)
    }

    /// Publishes an applied transition's events; maps a rejection.
    fn outcome(&self, outcome: TransitionOutcome) -> KernelResult<RunRecord> {
        match outcome {
            TransitionOutcome::Applied { run, events } => {
                self.committed(&events);
                if !events.is_empty() {
                    self.inner.work.notify_one();
                }
                Ok(run)
            }
            TransitionOutcome::Rejected(rejection) => Err(match rejection.kind {
                RejectionKind::NotFound => KernelError::NotFound(rejection.message),
                RejectionKind::FailedPrecondition => {
                    KernelError::FailedPrecondition(rejection.message)
                }
                RejectionKind::InvalidArgument => KernelError::InvalidArgument {
                    field: String::new(),
                    message: rejection.message,
                },
            }),
        }
    }

    /// Queues a transition for the next batch write and waits for it.
    async fn batched<F>(
        &self,
        run_id: &str,
        chain: Arc<CompiledChain>,
        decide: F,
    ) -> KernelResult<RunRecord>
    where
        F: Fn(&CompiledChain, &RunSnapshot, DateTime<Utc>) -> Plan + Send + Sync + 'static,
    {
        self.inner
            .batch_writers
            .call_once(|| self.spawn_batch_writers());
        let (reply, answer) = oneshot::channel();
        let item = BatchItem {
            run_id: run_id.to_string(),
            chain,
            decide: Arc::new(decide),
            reply,
        };
        if self.inner.batch.send(item).is_err() {
            return Err(KernelError::FailedPrecondition(
                "the kernel is shutting down".into(),
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Err(KernelError::FailedPrecondition(
                "the batch writer stopped".into(),
            ))
        })
    }

    /// Starts the tasks that write queued transitions in batches: one
    /// transaction per batch instead of one per completion (see
    /// PERFORMANCE.md: completions dominate). Two writers take turns, so one
    /// batch forms while the other commits. They live as long as the
    /// runtime.
    fn spawn_batch_writers(&self) {
        for _ in 0..2 {
            let kernel = self.clone();
            tokio::spawn(async move {
                let mut carried: Vec<BatchItem> = Vec::new();
                while let Some(batch) = kernel.next_batch(&mut carried).await {
                    kernel.write_batch(batch).await;
                }
            });
        }
    }

    /// The next batch: what is queued now (at least one item), each run at
    /// most once; a second transition of the same run waits for the next.
    async fn next_batch(&self, carried: &mut Vec<BatchItem>) -> Option<Vec<BatchItem>> {
        let mut receiver = self.inner.batch_receiver.lock().await;
        let mut batch: Vec<BatchItem> = Vec::new();
        let mut later: Vec<BatchItem> = Vec::new();
        for item in carried.drain(..) {
            if batch.iter().any(|b| b.run_id == item.run_id) {
                later.push(item);
            } else {
                batch.push(item);
            }
        }
        if batch.is_empty() {
            batch.push(receiver.recv().await?);
        }
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(item) if batch.iter().any(|b| b.run_id == item.run_id) => later.push(item),
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        *carried = later;
        Some(batch)
    }

    async fn write_batch(&self, batch: Vec<BatchItem>) {
        let items = batch
            .iter()
            .map(|item| (item.run_id.clone(), item.decide_fn()))
            .collect();
        match self.inner.store.transition_many(items).await {
            Ok(results) => {
                for (item, result) in batch.into_iter().zip(results) {
                    let answer = match result {
                        Ok(outcome) => self.outcome(outcome),
                        Err(StoreError::NotFound { .. }) => Err(KernelError::NotFound(format!(
                            "run {:?} not found",
                            item.run_id
                        ))),
                        Err(error) => Err(error.into()),
                    };
                    let _ = item.reply.send(answer);
                }
            }
            Err(error) => {
                // One bad item must not fail its neighbours: write each alone.
                tracing::warn!(error = %error, size = batch.len(), "a transition batch failed; writing its items one by one");
                for item in batch {
                    let answer = match self
                        .inner
                        .store
                        .transition(&item.run_id, item.decide_fn())
                        .await
                    {
                        Ok(outcome) => self.outcome(outcome),
                        Err(error) => Err(error.into()),
                    };
                    let _ = item.reply.send(answer);
                }
            }
        }
    }

    pub async fn get_run(&self, run_id: &str) -> KernelResult<RunRecord> {
        self.inner
            .store
            .get_run(run_id)
            .await
            .map_err(|error| match error {
                StoreError::NotFound { .. } => {
                    KernelError::NotFound(format!("run {run_id:?} not found"))
                }
                other => other.into(),
            })
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
        let (attempt_id, token) = (attempt_id.to_string(), lease_token.to_string());
        self.batched(run_id, chain, move |chain, snapshot, now| {
            decide::complete(chain, snapshot, now, &attempt_id, &token, success.clone())
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
        let (attempt_id, token) = (attempt_id.to_string(), lease_token.to_string());
        let random_unit: f64 = rand::random();
        self.batched(run_id, chain, move |chain, snapshot, now| {
            decide::fail(
                chain,
                snapshot,
                now,
                &attempt_id,
                &token,
                failure.clone(),
                random_unit,
            )
        })
        .await
    }

    /// The chain version a run pinned.
    async fn run_chain(&self, run_id: &str) -> KernelResult<Arc<CompiledChain>> {
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
        let (attempt_id, token) = (attempt_id.to_string(), lease_token.to_string());
        self.transition(run_id, move |chain, snapshot, now| {
            decide::extend(chain, snapshot, now, &attempt_id, &token, until)
        })
        .await?;
        Ok(until)
    }

    pub async fn cancel_run(&self, run_id: &str, reason: &str) -> KernelResult<RunRecord> {
        let reason = reason.to_string();
        self.transition(run_id, move |chain, snapshot, now| {
            decide::cancel(chain, snapshot, now, &reason)
        })
        .await
    }

    pub async fn pause_run(&self, run_id: &str, cancel_running: bool) -> KernelResult<RunRecord> {
        self.transition(run_id, move |chain, snapshot, now| {
            decide::pause(chain, snapshot, now, cancel_running)
        })
        .await
    }

    pub async fn resume_run(&self, run_id: &str) -> KernelResult<RunRecord> {
        self.transition(run_id, decide::resume).await
    }

    pub async fn submit_input(
        &self,
        run_id: &str,
        task_id: &str,
        answer: pb::Value,
        request_key: Option<String>,
    ) -> KernelResult<RunRecord> {
        let task_id = task_id.to_string();
        self.transition(run_id, move |chain, snapshot, now| {
            decide::submit_input(
                chain,
                snapshot,
                now,
                &task_id,
                answer.clone(),
                request_key.as_deref(),
            )
        })
        .await
    }

    pub async fn retry_run(&self, run_id: &str) -> KernelResult<RunRecord> {
        self.transition(run_id, decide::retry_run).await
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
    /// Returns how many attempts were handled.
    pub async fn sweep(&self) -> KernelResult<usize> {
        let due = self.inner.store.due_attempts(now(), 256).await?;
        let max = self.inner.config.max_lease_expiries;
        for item in &due {
            let attempt_id = item.attempt_id.clone();
            let random_unit: f64 = rand::random();
            let result = self
                .transition(&item.run_id, move |chain, snapshot, now| {
                    decide::expire(chain, snapshot, now, &attempt_id, max, random_unit)
                })
                .await;
            if let Err(error) = result {
                tracing::warn!(run_id = %item.run_id, attempt_id = %item.attempt_id, error = %error, "sweeping an attempt failed");
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
}

async fn recv_announcement(
    incoming: &mut Option<mpsc::Receiver<crate::store::Announcement>>,
) -> Option<crate::store::Announcement> {
    match incoming {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// The current time at the precision the stores keep.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
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
