//! Eager dispatch: new attempts leased, in the transaction that creates
//! them, to a slot free on this replica right now, and handed over after
//! the commit; and the wake-ups of the claim loops for the work left.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::decide::{self, ChainDecision, Given, Renders};
use super::{AttemptChange, ClaimLoop, ClaimedAttempt, INTERNAL_QUEUE, Kernel, lease, now};
use crate::chain::CompiledChain;
use crate::store::{AttemptRecord, AttemptStatus, Decision, Plan, RunRecord, RunSnapshot, Verdict};

/// Somewhere on this replica that can execute an attempt right away.
pub trait SlotProvider: Send + Sync {
    /// Reserves a slot for an attempt of `queue`, if one is free now. A slot
    /// dropped without delivery frees itself. Called inside the store's
    /// write transaction: it must not wait, nor take a lock that code
    /// waiting on the store may hold (atomics, a semaphore's `try_acquire`).
    fn reserve(&self, queue: &str) -> Option<Box<dyn Slot>>;
}

/// A reserved place for one attempt.
pub trait Slot: Send + Sync {
    /// The lease owner to record.
    fn owner(&self) -> String;
    /// Hands over the attempt, leased to `owner()` and committed.
    fn deliver(self: Box<Self>, attempt: ClaimedAttempt);
}

/// What a decision did to attempts, what it leased eagerly, and which
/// claim loops it left ready work for.
#[derive(Default)]
pub(super) struct Dispatch {
    /// The attempts the plan updates or creates, as it writes them.
    pub(super) changes: Vec<AttemptChange>,
    /// What the plan ends, for its spans (only while traces are exported):
    /// the attempts, and whether the run ends too.
    pub(super) ended_attempts: Vec<AttemptRecord>,
    pub(super) run_ends: bool,
    eager: Vec<(ClaimedAttempt, Box<dyn Slot>)>,
    internal_ready: bool,
    worker_ready: bool,
    /// The earliest future `available_at` of the ready work left, per loop.
    internal_due: Option<DateTime<Utc>>,
    worker_due: Option<DateTime<Utc>>,
}

pub(super) type DispatchSlot = Arc<std::sync::Mutex<Dispatch>>;

impl Kernel {
    /// Eager dispatch (as Temporal's eager activity dispatch): the attempts
    /// a decision creates are leased, in the transaction that creates them,
    /// to a slot free on this replica right now (the runner for `internal`,
    /// a connected worker for other queues), and handed over after the
    /// commit without a claim transaction: one commit per task instead of
    /// two, and no wait for the claim loop. Fencing is unchanged: the lease
    /// is in the store, and if this replica dies it expires and the attempt
    /// is claimed elsewhere. Also tells which claim loops have work left.
    pub(super) fn lease_new_attempts(
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
            // Paused queues (and a draining replica) take no eager lease.
            let held_back = self.holds_back(&attempt.queue);
            let lease = expires_at
                .filter(|_| dispatchable && !capped && !held_back && attempt.available_at <= now);
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
                    namespace: run.namespace.clone(),
                    chain_id: run.chain_id.clone(),
                    chain_version: run.chain_version,
                    trace: crate::traces::RunTrace::of_run(current).attempt(&attempt.id),
                };
                dispatch.eager.push((claimed, slot));
            }
        }
        dispatch
    }

    /// A decision that leases its new attempts eagerly; the slot holds what
    /// the last call (the one applied) changed and leased.
    pub(super) fn decide_eagerly(
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
            let mut dispatch = kernel.lease_new_attempts(&chain, &snapshot.run, &mut plan, now);
            if plan.verdict == Verdict::Apply {
                dispatch.changes = (plan.attempt_updates.iter())
                    .chain(&plan.new_attempts)
                    .map(AttemptChange::of)
                    .collect();
                if crate::traces::enabled() {
                    dispatch.ended_attempts = (plan.attempt_updates.iter())
                        .filter(|a| crate::traces::attempt_has_ended(a.status))
                        .cloned()
                        .collect();
                    dispatch.run_ends = !snapshot.run.status.is_terminal()
                        && plan
                            .run
                            .as_ref()
                            .is_some_and(|run| run.status.is_terminal());
                }
            }
            *last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = dispatch;
            plan
        });
        (decide_fn, slot)
    }

    /// After a commit: hands eagerly leased attempts over and wakes the
    /// claim loops that have work left.
    pub(super) fn dispatch(&self, dispatch: Dispatch) {
        for (attempt, slot) in dispatch.eager {
            crate::metrics::leased(&attempt.attempt);
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

    /// Waits until work may be ready on a worker queue.
    pub async fn worker_work_available(&self) {
        self.inner.worker_work.notified().await;
    }

    /// Wakes the executor (new internal work may be ready).
    pub fn wake(&self) {
        self.inner.work.notify_one();
    }

    pub async fn work_available(&self) {
        self.inner.work.notified().await;
    }
}
