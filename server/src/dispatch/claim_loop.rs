//! The claim loop: leases ready work to sessions with free slots, woken by
//! the kernel, by other replicas, by freed slots and by work falling due.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use super::slots::Seat;
use super::{Dispatcher, MAX_CLAIM, MAX_CLAIM_WHEN_DUE};
use crate::kernel::{ClaimLoop, Kernel, KernelError};
use crate::telemetry::FailureLog;

/// What a dispatch round claims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Round {
    /// Work made ready (signals, freed slots, the poll): sessions that may
    /// have some claim up to `MAX_CLAIM`.
    ReadyWork,
    /// Work that fell due: every session with room claims, up to
    /// `MAX_CLAIM_WHEN_DUE`.
    WhenDue,
}

impl Dispatcher {
    /// Runs the dispatch loop until `stop`: leases ready attempts to
    /// sessions with free slots.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut failures = FailureLog::new("claiming attempts for workers");
        let due_rounds = tokio::spawn(self.clone().dispatch_when_due(stop.clone()));
        loop {
            if *stop.borrow() {
                break;
            }
            let busy = match self.dispatch_round(Round::ReadyWork).await {
                Ok(busy) => {
                    failures.succeeded();
                    busy
                }
                Err(error) => {
                    failures.failed(&error);
                    tokio::select! {
                        () = tokio::time::sleep(failures.backoff()) => {}
                        _ = stop.changed() => break,
                    }
                    continue;
                }
            };
            if busy {
                continue;
            }
            let work_may_be_ready = tokio::select! {
                () = self.inner.kernel.worker_work_available() => true,
                () = self.inner.wake.notified() => false,
                () = tokio::time::sleep(self.inner.config.poll_interval) => true,
                _ = stop.changed() => break,
            };
            if work_may_be_ready {
                self.state().ready_epoch += 1;
            }
        }
        due_rounds.abort();
    }

    /// Runs a dispatch round whenever future work (a retry's delay) falls
    /// due, until `stop`.
    pub(super) async fn dispatch_when_due(self, stop: watch::Receiver<bool>) {
        let kernel = self.inner.kernel.clone();
        when_due(kernel, ClaimLoop::Workers, stop, move || {
            let dispatcher = self.clone();
            async move {
                if dispatcher.dispatch_round(Round::WhenDue).await? {
                    dispatcher.inner.wake.notify_one();
                }
                Ok(())
            }
        })
        .await
    }

    /// One claim per session with free slots (for ready work: those that
    /// may have some); true if some claim was full (more may be waiting).
    /// The error of a failed claim, after the others were made.
    pub(super) async fn dispatch_round(&self, round: Round) -> Result<bool, KernelError> {
        let (ready_epoch, wanting) = {
            let mut state = self.state();
            let (most, ready_epoch) = match round {
                Round::ReadyWork => (MAX_CLAIM, state.ready_epoch),
                Round::WhenDue => {
                    // Sessions without room now claim when a slot frees.
                    if state.sessions.values().any(|s| s.seat.free() == 0) {
                        state.ready_epoch += 1;
                    }
                    (MAX_CLAIM_WHEN_DUE, state.ready_epoch)
                }
            };
            // Read before the claims: work made ready while they run bumps
            // it.
            let wanting: Vec<(Arc<Seat>, Vec<String>, u32)> = state
                .sessions
                .values()
                .filter(|s| round == Round::WhenDue || s.may_have_work(ready_epoch))
                .filter_map(|s| {
                    // Reserved until the claim returns.
                    let take = s.seat.take(most);
                    (take > 0).then(|| (s.seat.clone(), s.info.queues.clone(), take))
                })
                .collect();
            (ready_epoch, wanting)
        };
        let mut full = false;
        let mut failed = None;
        let mut short = false;
        for (seat, queues, take) in wanting {
            let session_id = &seat.session_id;
            let (claimed, found_all) = match self
                .inner
                .kernel
                .claim(&queues, &seat.worker_id, take)
                .await
            {
                Ok(claimed) => {
                    let found_all = (claimed.len() as u32) < take;
                    (claimed, found_all)
                }
                Err(error) => {
                    failed = Some(error);
                    (Vec::new(), false)
                }
            };
            full |= claimed.len() as u32 == take;
            short |= found_all;
            // Keep one slot per claimed attempt; give the rest back.
            seat.give_back(take - claimed.len() as u32);
            let freed_for_more = {
                let mut state = self.state();
                let current_epoch = state.ready_epoch;
                state.sessions.get_mut(session_id).is_some_and(|session| {
                    if found_all {
                        session.clean_at = Some(ready_epoch);
                    }
                    // Slots given back while work became ready (e.g. a round
                    // for work falling due found them reserved by this
                    // claim): claim again, as a freed slot does.
                    take > claimed.len() as u32 && session.may_have_work(current_epoch)
                })
            };
            if freed_for_more {
                self.inner.wake.notify_one();
            }
            for attempt in claimed {
                self.deliver(session_id.clone(), attempt);
            }
        }
        if short {
            // Every session's queues: any of them may claim next.
            let mut queues: Vec<String> = self
                .state()
                .sessions
                .values()
                .flat_map(|s| s.info.queues.iter().cloned())
                .collect();
            queues.sort();
            queues.dedup();
            self.inner
                .kernel
                .learn_due(ClaimLoop::Workers, &queues)
                .await;
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(full),
        }
    }
}

/// Claim rounds for work falling due that may run at once.
const ROUNDS_WHEN_DUE: usize = 4;

/// Runs `round` whenever work of the claim loop `claims` falls due (a
/// retry's delay), until `stop`. Each round runs on its own, a few at once
/// (slots are reserved per claim): work falling due while an earlier claim
/// is still in the store is not held up. Shared by the dispatcher and the
/// built-in runner.
pub(crate) async fn when_due<R, Fut>(
    kernel: Kernel,
    claims: ClaimLoop,
    mut stop: watch::Receiver<bool>,
    round: R,
) where
    R: Fn() -> Fut,
    Fut: Future<Output = Result<(), KernelError>> + Send + 'static,
{
    let rounds = Arc::new(tokio::sync::Semaphore::new(ROUNDS_WHEN_DUE));
    let poll = kernel.config().poll_interval;
    loop {
        let fell_due = tokio::select! {
            fell_due = kernel.sleep_until_due(claims, poll) => fell_due,
            _ = stop.changed() => return,
        };
        if !fell_due {
            continue;
        }
        let Ok(permit) = rounds.clone().acquire_owned().await else {
            return;
        };
        let claimed = round();
        tokio::spawn(async move {
            // The claim loop logs store faults and backs off.
            if let Err(error) = claimed.await {
                tracing::debug!(error = %error, "claiming work fallen due failed");
            }
            drop(permit);
        });
    }
}
