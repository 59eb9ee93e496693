//! When ready work that cannot be claimed yet falls due (retries with
//! backoff, worker-requested retry delays, delayed tasks), as far as this
//! replica knows: the claim loops sleep until then rather than until their
//! next safety poll.
//!
//! A commit on this replica tells the due times of the future work it made
//! (no query). What it cannot know — at start, after another replica's
//! change, past the one due time the store was asked for, after the safety
//! poll — it asks the store (`next_ready_at`, a few index seeks) after the
//! loop's next claim that leased less than it asked for; never on a claim
//! that came back full, so a busy queue pays nothing.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Kernel, now};

/// Due times a claim loop remembers; later ones are left to the store.
const MAX_KNOWN: usize = 1024;

/// A claim loop: the runner's (`internal` queue) or the worker
/// dispatcher's (every other queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimLoop {
    Internal,
    Workers,
}

/// What each claim loop knows of its future work.
#[derive(Default)]
pub(super) struct DueTimes {
    internal: LoopDue,
    workers: LoopDue,
}

#[derive(Default)]
struct LoopDue {
    due: Mutex<Due>,
    /// An earlier due time was noted: a sleeping loop sleeps less.
    sooner: Notify,
}

struct Due {
    /// Future due times known, earliest first.
    known: BTreeSet<DateTime<Utc>>,
    /// Once this passes, future work may exist that `known` misses (the
    /// store was asked for the earliest only, or `known` overflowed).
    horizon: Option<DateTime<Utc>>,
    /// Future work may exist that `known` misses: ask the store.
    unknown: bool,
}

impl Default for Due {
    fn default() -> Self {
        // Nothing is known at start.
        Due {
            known: BTreeSet::new(),
            horizon: None,
            unknown: true,
        }
    }
}

impl Due {
    /// Remembers a due time; true if it is the earliest now.
    fn note(&mut self, at: DateTime<Utc>) -> bool {
        let sooner = self.known.first().is_none_or(|first| at < *first);
        self.known.insert(at);
        if self.known.len() > MAX_KNOWN
            && let Some(dropped) = self.known.pop_last()
        {
            self.horizon = Some(self.horizon.map_or(dropped, |h| h.min(dropped)));
        }
        sooner
    }
}

impl DueTimes {
    fn loop_due(&self, which: ClaimLoop) -> &LoopDue {
        match which {
            ClaimLoop::Internal => &self.internal,
            ClaimLoop::Workers => &self.workers,
        }
    }

    fn of(&self, which: ClaimLoop) -> MutexGuard<'_, Due> {
        self.loop_due(which)
            .due
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Work of `which` falls due at `at`.
    pub(super) fn note(&self, which: ClaimLoop, at: DateTime<Utc>) {
        if self.of(which).note(at) {
            self.loop_due(which).sooner.notify_one();
        }
    }

    /// Another replica changed something: either loop may have future work
    /// it does not know of.
    pub(super) fn forget(&self) {
        self.of(ClaimLoop::Internal).unknown = true;
        self.of(ClaimLoop::Workers).unknown = true;
    }
}

impl Kernel {
    /// After a claim of `queues` that leased less than it asked for: if
    /// `which` may have future work it does not know of, asks the store
    /// when the next of it falls due.
    pub async fn learn_due(&self, which: ClaimLoop, queues: &[String]) {
        let unknown = std::mem::take(&mut self.inner.due.of(which).unknown);
        if !unknown {
            return;
        }
        match self.inner.store.next_ready_at(queues, now()).await {
            Ok(Some(at)) => {
                let sooner = {
                    let mut due = self.inner.due.of(which);
                    due.horizon = Some(due.horizon.map_or(at, |h| h.min(at)));
                    due.note(at)
                };
                if sooner {
                    self.inner.due.loop_due(which).sooner.notify_one();
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(error = %error, "cannot learn when future work falls due");
                self.inner.due.of(which).unknown = true;
            }
        }
    }

    /// Sleeps until `which`'s earliest known future work falls due (as
    /// learnt meanwhile too), or `poll` passes, whichever is first; true if
    /// work fell due. Cancel-safe: a caller woken by something else loses
    /// nothing.
    pub async fn sleep_until_due(&self, which: ClaimLoop, poll: Duration) -> bool {
        let poll_at = Instant::now() + poll;
        let fell_due = loop {
            let sooner = self.inner.due.loop_due(which).sooner.notified();
            let first = self.inner.due.of(which).known.first().copied();
            let wake_at = first.map_or(poll_at, |at| {
                let wait = (at - now()).to_std().unwrap_or(Duration::ZERO);
                poll_at.min(Instant::now() + wait)
            });
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => break wake_at < poll_at,
                () = sooner => {}
            }
        };
        let current = now();
        let mut due = self.inner.due.of(which);
        // What fell due is claimable now.
        due.known = due
            .known
            .split_off(&(current + chrono::Duration::nanoseconds(1)));
        if due.horizon.is_some_and(|horizon| horizon <= current) {
            due.horizon = None;
            due.unknown = true;
        }
        // The poll is also the net for lost signals.
        if !fell_due {
            due.unknown = true;
        }
        fell_due
    }
}
