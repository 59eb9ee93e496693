//! The lease book: which leases this replica's sessions hold, the lease
//! operations they send (settled here before the kernel applies them, so a
//! freed slot can take the next attempt in the same commit), fencing
//! counts, heartbeats, and cancellations of leases lost under a session.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::{Dispatcher, Held, ServerMsg, State};
use crate::chain::CompiledChain;
use crate::kernel::{AttemptChange, KernelError, RunObserver, TaskFailure, TaskSuccess};
use crate::proto::taskloom::v1 as pb;
use crate::store::AttemptStatus;

/// A lease's run, and its pinned chain when known (see `Held::chain`).
pub(super) struct LeaseRun {
    run_id: String,
    chain: Option<(String, String, i64)>,
}

pub(super) fn forget_run_attempt(state: &mut State, run_id: &str, attempt_id: &str) {
    if let Some(attempts) = state.by_run.get_mut(run_id) {
        attempts.remove(attempt_id);
        if attempts.is_empty() {
            state.by_run.remove(run_id);
        }
    }
}

/// Why a lease is gone, if it is: its attempt's status, and whether the
/// attempt is still leased under the token held.
pub(super) fn lost_reason(status: AttemptStatus, leased_under_token: bool) -> Option<String> {
    if leased_under_token {
        return None;
    }
    Some(match status {
        AttemptStatus::Cancelled => "run cancelled or paused".to_string(),
        AttemptStatus::TimedOut => "the task's timeout passed".to_string(),
        AttemptStatus::Ready | AttemptStatus::Leased => "lease expired".to_string(),
        other => format!("attempt is {}", other.as_str()),
    })
}

/// Hears which runs changed and checks the leases held on them.
pub(super) struct LeaseWatch(pub(super) Dispatcher);

impl RunObserver for LeaseWatch {
    fn runs_changed(&self, run_ids: &[&str]) {
        let held: Vec<String> = {
            let state = self.0.state();
            if state.by_run.is_empty() {
                return;
            }
            run_ids
                .iter()
                .filter(|run_id| state.by_run.contains_key(**run_id))
                .map(|run_id| run_id.to_string())
                .collect()
        };
        if !held.is_empty() {
            let dispatcher = self.0.clone();
            tokio::spawn(async move { dispatcher.check_runs(held).await });
        }
    }

    /// This replica's own commits say what they wrote: no read needed.
    fn attempts_changed(&self, attempts: &[AttemptChange]) {
        let lost: Vec<(String, Held, String)> = {
            let state = self.0.state();
            if state.held.is_empty() {
                return;
            }
            attempts
                .iter()
                .filter_map(|attempt| {
                    let held = state.held.get(&attempt.id)?;
                    let reason = lost_reason(attempt.status, attempt.leased_under(&held.token))?;
                    Some((attempt.id.clone(), held.clone(), reason))
                })
                .collect()
        };
        for (attempt_id, held, reason) in lost {
            self.0.cancel_lost(&attempt_id, &held, reason);
        }
    }
}

impl Dispatcher {
    /// `NotFound` unless the attempt is one of `namespace`'s (its queue is
    /// a queue of `namespace`): a lease token of another namespace's
    /// attempt opens nothing there, as its id would not.
    pub async fn require_in(&self, namespace: &str, attempt_id: &str) -> Result<(), KernelError> {
        let held = self.state().held.get(attempt_id).and_then(|held| {
            let (of, _, _) = held.chain.as_ref()?;
            Some(of.clone())
        });
        let of = match held {
            Some(of) => of,
            None => {
                let store = self.inner.kernel.store();
                let attempt = store.get_attempt(attempt_id).await?;
                match crate::namespace::of_queue_key(&attempt.queue) {
                    Some(of) => of.to_string(),
                    // The internal queue serves every namespace: its
                    // attempts are of their run's.
                    None => store.get_run(&attempt.run_id).await?.namespace,
                }
            }
        };
        if of == namespace {
            return Ok(());
        }
        Err(KernelError::Store(crate::store::StoreError::NotFound {
            resource: "attempt",
            id: attempt_id.to_string(),
        }))
    }

    /// The namespace of a session (that of its queues).
    pub(super) fn session_namespace(&self, session_id: &str) -> Option<String> {
        let state = self.state();
        let key = state.sessions.get(session_id)?.info.queues.first()?.clone();
        crate::namespace::of_queue_key(&key).map(str::to_string)
    }

    /// The run of an attempt, from this replica's leases or the store.
    pub(super) async fn run_of(&self, attempt_id: &str) -> Result<LeaseRun, KernelError> {
        if let Some(held) = self.state().held.get(attempt_id) {
            return Ok(LeaseRun {
                run_id: held.run_id.clone(),
                chain: held.chain.clone(),
            });
        }
        match self.inner.kernel.store().get_attempt(attempt_id).await {
            Ok(attempt) => Ok(LeaseRun {
                run_id: attempt.run_id,
                chain: None,
            }),
            Err(error) => Err(error.into()),
        }
    }

    /// The chain version a lease's run pinned.
    pub(super) async fn chain_of(
        &self,
        lease: &LeaseRun,
    ) -> Result<Arc<CompiledChain>, KernelError> {
        match &lease.chain {
            Some((namespace, chain_id, version)) => {
                self.inner.kernel.chain(namespace, chain_id, *version).await
            }
            None => self.inner.kernel.run_chain(&lease.run_id).await,
        }
    }

    /// Forgets a lease this replica held (it was completed, failed,
    /// released or lost) and frees its slot; returns what was held.
    pub(super) fn forget(&self, attempt_id: &str) -> Option<Held> {
        let mut state = self.state();
        let held = state.held.remove(attempt_id)?;
        let ready_epoch = state.ready_epoch;
        let wake = state
            .sessions
            .get_mut(&held.session_id)
            .is_some_and(|session| {
                session.seat.give_back(1);
                session.may_have_work(ready_epoch)
            });
        forget_run_attempt(&mut state, &held.run_id, attempt_id);
        drop(state);
        if wake {
            self.inner.wake.notify_one();
        }
        Some(held)
    }

    /// Holds a settled lease again (see [`Dispatcher::settle`]), unless its
    /// session is gone or the attempt is held anew.
    pub(super) fn restore(&self, attempt_id: &str, held: Held) {
        let mut state = self.state();
        if state.held.contains_key(attempt_id) {
            return;
        }
        let Some(session) = state.sessions.get_mut(&held.session_id) else {
            return;
        };
        session.seat.hold();
        state
            .by_run
            .entry(held.run_id.clone())
            .or_default()
            .insert(attempt_id.to_string());
        state.held.insert(attempt_id.to_string(), held);
    }

    /// Counts a lease operation of `session_id` refused by fencing.
    pub(super) fn fenced(&self, session_id: &str) {
        if let Some(session) = self.state().sessions.get_mut(session_id) {
            session.info.fenced_operations += 1;
        }
    }

    /// Completes a leased attempt.
    pub async fn complete(
        &self,
        attempt_id: &str,
        token: &str,
        output: pb::Value,
    ) -> Result<(), KernelError> {
        let kernel = &self.inner.kernel;
        let success = TaskSuccess::output(output);
        self.settle_in_chain(attempt_id, token, |chain, run_id| async move {
            kernel
                .complete_in(chain, &run_id, attempt_id, token, success)
                .await
        })
        .await
        .map(|_| ())
    }

    /// Fails a leased attempt; tells whether another attempt was scheduled.
    pub async fn fail(
        &self,
        attempt_id: &str,
        token: &str,
        failure: TaskFailure,
    ) -> Result<bool, KernelError> {
        let kernel = &self.inner.kernel;
        let failed = self.settle_in_chain(attempt_id, token, |chain, run_id| async move {
            kernel
                .fail_in(chain, &run_id, attempt_id, token, failure)
                .await
        });
        Ok(failed.await?.will_retry(attempt_id))
    }

    /// Settles a lease (see [`Dispatcher::settle`]) around `apply`, the
    /// kernel call that ends it, given the chain and the id of its run.
    async fn settle_in_chain<T, F, Fut>(
        &self,
        attempt_id: &str,
        token: &str,
        apply: F,
    ) -> Result<T, KernelError>
    where
        F: FnOnce(Arc<CompiledChain>, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, KernelError>>,
    {
        let lease = self.run_of(attempt_id).await?;
        let chain = self.chain_of(&lease).await?;
        let settled = self.settle(attempt_id, token);
        let result = apply(chain, lease.run_id).await;
        self.after_settle(attempt_id, settled, &result);
        result
    }

    /// Gives a lease back without spending a retry.
    pub async fn release(&self, attempt_id: &str, token: &str) -> Result<(), KernelError> {
        let run_id = self.run_of(attempt_id).await?.run_id;
        let settled = self.settle(attempt_id, token);
        let result = self
            .inner
            .kernel
            .release_lease(&run_id, attempt_id, token)
            .await;
        self.after_settle(attempt_id, settled, &result);
        result.map(|_| ())
    }

    /// Extends a lease by `extension` from now.
    pub async fn extend(
        &self,
        attempt_id: &str,
        token: &str,
        extension: Duration,
    ) -> Result<DateTime<Utc>, KernelError> {
        let run_id = self.run_of(attempt_id).await?.run_id;
        let result = self
            .inner
            .kernel
            .extend_lease(&run_id, attempt_id, token, extension)
            .await;
        self.count_rejection(&result);
        result
    }

    /// Records progress of a leased attempt.
    pub async fn progress(
        &self,
        attempt_id: &str,
        token: &str,
        message: String,
        data: Option<prost_types::Struct>,
    ) -> Result<(), KernelError> {
        let run_id = self.run_of(attempt_id).await?.run_id;
        let result = self
            .inner
            .kernel
            .progress(&run_id, attempt_id, token, message, data)
            .await;
        self.count_rejection(&result);
        result.map(|_| ())
    }

    /// Before a completion, failure or release naming the token this
    /// replica handed out with the lease: the lease ends whether the kernel
    /// applies the message or finds it stale, so its slot is freed now (the
    /// commit may lease the next attempt into it) and the commit is not
    /// taken for a lease lost under the worker. Any other token changes
    /// nothing here: it is someone else's, or stale. Returns the lease
    /// forgotten.
    pub(super) fn settle(&self, attempt_id: &str, token: &str) -> Option<Held> {
        let ours = self
            .state()
            .held
            .get(attempt_id)
            .is_some_and(|held| held.token == token);
        if ours { self.forget(attempt_id) } else { None }
    }

    /// After a settled message: counts a fencing rejection, and holds the
    /// lease again if the message failed for a reason that leaves it valid
    /// (bad output, store unavailable).
    pub(super) fn after_settle<T>(
        &self,
        attempt_id: &str,
        settled: Option<Held>,
        result: &Result<T, KernelError>,
    ) {
        self.count_rejection(result);
        if let (Some(held), Err(error)) = (settled, result)
            && !error.lease_gone()
        {
            self.restore(attempt_id, held);
        }
    }

    /// Counts a fencing rejection (a lease operation refused as stale or
    /// foreign).
    pub(super) fn count_rejection<T>(&self, result: &Result<T, KernelError>) {
        if let Err(KernelError::LeaseFenced(_)) = result {
            self.inner
                .fencing_rejections
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Extends the leases a heartbeat names; the ones no longer valid get a
    /// `CancelLease` so the worker stops them. A refused lease is forgotten
    /// only if it is the sender's own under that token: a heartbeat naming
    /// another worker's lease with a wrong token changes nothing.
    pub(super) async fn heartbeat(&self, session_id: &str, active: Vec<pb::LeaseRef>) {
        let lease = self.inner.config.lease;
        for lease_ref in active {
            let result = self
                .extend(&lease_ref.attempt_id, &lease_ref.lease_token, lease)
                .await;
            let error = match result {
                Ok(_) => continue,
                Err(error) if error.lease_gone() => error,
                Err(error) => {
                    // The lease may still be valid: the next heartbeat tries
                    // again.
                    tracing::info!(attempt_id = %lease_ref.attempt_id, error = %error, "extending a lease failed");
                    continue;
                }
            };
            if let KernelError::LeaseFenced(_) = error {
                self.fenced(session_id);
            }
            let senders = self
                .state()
                .held
                .get(&lease_ref.attempt_id)
                .is_some_and(|held| {
                    held.session_id == session_id && held.token == lease_ref.lease_token
                });
            if senders {
                self.forget(&lease_ref.attempt_id);
            }
            self.send(
                session_id,
                ServerMsg::Cancel(pb::CancelLease {
                    lease: Some(lease_ref),
                    reason: format!("lease lost: {error}"),
                }),
            );
        }
    }

    /// Checks the leases this replica holds on `run_ids` and cancels, on
    /// their sessions, those no longer leased under their token.
    pub(super) async fn check_runs(&self, run_ids: Vec<String>) {
        let attempts: Vec<(String, Held)> = {
            let state = self.state();
            run_ids
                .iter()
                .filter_map(|run_id| state.by_run.get(run_id))
                .flatten()
                .filter_map(|attempt_id| {
                    state
                        .held
                        .get(attempt_id)
                        .map(|held| (attempt_id.clone(), held.clone()))
                })
                .collect()
        };
        for (attempt_id, held) in attempts {
            let record = match self.inner.kernel.store().get_attempt(&attempt_id).await {
                Ok(record) => record,
                Err(error) => {
                    tracing::debug!(attempt_id = %attempt_id, error = %error, "cannot check a lease");
                    continue;
                }
            };
            let leased_under_token = record.status == AttemptStatus::Leased
                && record.lease_token.as_deref() == Some(held.token.as_str());
            if let Some(reason) = lost_reason(record.status, leased_under_token) {
                self.cancel_lost(&attempt_id, &held, reason);
            }
        }
    }

    /// Tells a session that a lease it holds is gone, unless the lease was
    /// forgotten meanwhile (a completion in flight forgets it first).
    pub(super) fn cancel_lost(&self, attempt_id: &str, held: &Held, reason: String) {
        let still_held = self
            .state()
            .held
            .get(attempt_id)
            .is_some_and(|h| h.token == held.token);
        if still_held {
            self.forget(attempt_id);
            self.send(
                &held.session_id,
                ServerMsg::Cancel(pb::CancelLease {
                    lease: Some(pb::LeaseRef {
                        attempt_id: attempt_id.to_string(),
                        lease_token: held.token.clone(),
                    }),
                    reason,
                }),
            );
        }
    }

    /// Safety net for cancellations whose change signal was lost: checks
    /// every lease held here, every heartbeat interval, until `stop`.
    pub async fn watch_leases(self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.inner.config.heartbeat_interval) => {}
                _ = stop.changed() => return,
            }
            let runs: Vec<String> = self.state().by_run.keys().cloned().collect();
            if !runs.is_empty() {
                self.check_runs(runs).await;
            }
        }
    }
}
