//! Batching glue: decisions are queued and written together (one commit
//! for many transitions, one for many starts), and each caller gets back
//! what its own transition did ([`Transitioned`]), read off the plan that
//! was applied, never off the store again. A decision that needs templates
//! rendered comes back unwritten and is queued again with the renders.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::batch::Keyed;
use super::decide::{self, ChainDecision, Given, RenderJob, Renders};
use super::eager::DispatchSlot;
use super::{Kernel, KernelError, KernelResult, Transitioned};
use crate::chain::CompiledChain;
use crate::store::{
    AttemptRecord, AuditRecord, CreatedRun, IdempotencyKey, NewRun, Plan, RejectionKind, RunRecord,
    StoreError, StoreResult, TransitionOutcome,
};

/// A decision a caller asks the kernel to make on a run; it may be made
/// more than once (after renders, or in another batch).
pub trait RunDecision: Fn(&Given) -> Plan + Send + Sync + 'static {}

impl<F: Fn(&Given) -> Plan + Send + Sync + 'static> RunDecision for F {}

/// A transition queued for a batch write.
pub(super) struct TransitionItem {
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
pub(super) enum Decided {
    Done(KernelResult<Transitioned>),
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
pub(super) struct StartItem {
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

/// Most transitions written in one batch.
pub(super) const MAX_TRANSITIONS: usize = 128;

/// Most runs created in one batch.
pub(super) const MAX_STARTS: usize = 128;

/// How often a start is retried when its chain changed under it.
pub(super) const START_TRIES: u32 = 3;

/// Most rounds of rendering and deciding again for one transition: a run
/// whose other branches keep changing the templates' context may need more
/// than one.
const RENDER_ROUNDS: usize = 16;

/// A run whose templates' context changed under every render round.
fn restless(run_id: &str) -> KernelError {
    KernelError::Contended(format!(
        "run {run_id} kept changing while its templates rendered; try again"
    ))
}

impl Kernel {
    /// Queues a run for the next batch create and waits for it.
    pub(super) async fn create_batched(&self, new: NewRun) -> KernelResult<CreatedRun> {
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
        let created = self.inner.starts.ask(item, answer, write).await;
        created
            .ok_or(KernelError::ShuttingDown)?
            .map_err(KernelError::from)
    }

    pub(super) async fn write_starts(&self, batch: Vec<StartItem>) {
        let news = batch.iter().map(|item| item.new.clone()).collect();
        let created = crate::metrics::store_call("create_runs", self.inner.store.create_runs(news));
        match created.await {
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
    pub async fn transition(
        &self,
        run_id: &str,
        focus: Option<&str>,
        decide: impl RunDecision,
    ) -> KernelResult<Transitioned> {
        self.transition_once((None, run_id), focus, (None, None), decide)
            .await
    }

    /// As `transition`, guarded by the caller's request id: a repeat of an
    /// applied request returns the run as it is, deciding nothing.
    /// With a namespace, a run of another one is `NotFound`.
    pub(super) async fn transition_once(
        &self,
        (namespace, run_id): (Option<&str>, &str),
        focus: Option<&str>,
        (idempotency, audit): (Option<IdempotencyKey>, Option<AuditRecord>),
        decide: impl RunDecision,
    ) -> KernelResult<Transitioned> {
        let run = match namespace {
            Some(namespace) => self.run_in(namespace, run_id).await?,
            None => self.get_run(run_id).await?,
        };
        let chain = self
            .chain(&run.namespace, &run.chain_id, run.chain_version)
            .await?;
        let decide: Arc<ChainDecision> = Arc::new(decide);
        self.in_render_rounds(run_id, |renders| {
            let renders = Arc::new(renders);
            let (decide_fn, dispatch) =
                self.decide_eagerly(chain.clone(), decide.clone(), renders.clone());
            let decide_fn = decide_fn
                .with_focus(focus.into_iter().map(str::to_string).collect())
                .with_idempotency(idempotency.clone())
                .with_audit(audit.clone());
            async move {
                let outcome = crate::metrics::store_call(
                    "transition",
                    self.inner.store.transition(run_id, decide_fn),
                )
                .await?;
                Ok(self.outcome(outcome, dispatch, &renders))
            }
        })
        .await
    }

    /// Decides in rounds: each `round` gets the templates rendered so far;
    /// one that needs more has them rendered (outside any transaction) and
    /// is run again, up to [`RENDER_ROUNDS`] times.
    async fn in_render_rounds<Round>(
        &self,
        run_id: &str,
        mut round: impl FnMut(Renders) -> Round,
    ) -> KernelResult<Transitioned>
    where
        Round: Future<Output = KernelResult<Decided>>,
    {
        let mut done = Vec::new();
        for _ in 0..RENDER_ROUNDS {
            match round(Renders::new(done.clone())).await? {
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
    pub(super) async fn decide_start(
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
    pub(super) fn outcome(
        &self,
        outcome: TransitionOutcome,
        dispatch: DispatchSlot,
        renders: &Renders,
    ) -> Decided {
        let mut dispatch = std::mem::take(
            &mut *dispatch
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        match outcome {
            TransitionOutcome::Applied { run, events } => {
                if crate::metrics::enabled() {
                    let chain = self.cached_chain(&run.namespace, &run.chain_id, run.chain_version);
                    crate::metrics::run_committed(&run, chain.as_deref(), &events);
                }
                self.committed(&events, &dispatch.changes);
                for attempt in &dispatch.ended_attempts {
                    crate::traces::attempt_ended(&run, attempt);
                }
                if dispatch.run_ends {
                    crate::traces::run_ended(&run);
                }
                let attempts = std::mem::take(&mut dispatch.changes);
                self.dispatch(dispatch);
                Decided::Done(Ok(Transitioned { run, attempts }))
            }
            TransitionOutcome::Replayed(run) => Decided::Done(Ok(Transitioned {
                run,
                attempts: Vec::new(),
            })),
            TransitionOutcome::Rejected(rejection) => {
                if rejection.kind == RejectionKind::LeaseFenced {
                    crate::metrics::fencing_rejected();
                }
                if rejection.kind == RejectionKind::Deferred {
                    let missing = renders.take_missing();
                    if !missing.is_empty() {
                        return Decided::NeedsRenders(missing);
                    }
                }
                Decided::Done(Err(KernelError::rejected(rejection)))
            }
        }
    }

    /// Queues a transition for the next batch write and waits for it. A
    /// decision that needs templates rendered comes back unwritten; this
    /// caller renders them (delaying nothing but its own run) and queues it
    /// again with the results.
    pub(super) async fn batched(
        &self,
        run_id: &str,
        focus: Option<&str>,
        chain: Arc<CompiledChain>,
        decide: impl RunDecision,
    ) -> KernelResult<Transitioned> {
        let decide: Arc<ChainDecision> = Arc::new(decide);
        self.in_render_rounds(run_id, |renders| {
            let (reply, answer) = oneshot::channel();
            let item = TransitionItem {
                run_id: run_id.to_string(),
                focus: focus.map(str::to_string),
                chain: chain.clone(),
                decide: decide.clone(),
                renders: Arc::new(renders),
                reply,
            };
            let kernel = self.clone();
            let write = move |batch| {
                let kernel = kernel.clone();
                async move { kernel.write_transitions(batch).await }
            };
            async move {
                let decided = self.inner.transitions.ask(item, answer, write).await;
                decided.ok_or(KernelError::ShuttingDown)
            }
        })
        .await
    }

    pub(super) async fn write_transitions(&self, batch: Vec<TransitionItem>) {
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
        let written =
            crate::metrics::store_call("transition_many", self.inner.store.transition_many(items));
        match written.await {
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
}
