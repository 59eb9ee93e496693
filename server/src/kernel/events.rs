//! Live fan-out of run events inside one process. Stored events are the
//! truth (watchers read them from the store); the hub tells watchers that
//! something new exists, hands small new events along so that watchers
//! keeping up need not read them back, and carries token deltas, which are
//! never stored. What it holds is bounded: a small ring per watched run,
//! shared by its watchers (a watcher that falls behind reads the store).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::broadcast;

use crate::store::EventRecord;

/// What a watcher of one run hears.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// An event just committed.
    Stored(Arc<EventRecord>),
    /// The run changed (on another replica, or with an event too large to
    /// pass around); read the store.
    Poke,
    /// A token delta of a streaming model call.
    Delta(Arc<TokenDelta>),
}

/// A token delta of a streaming model call.
#[derive(Debug)]
pub struct TokenDelta {
    pub task_id: String,
    pub attempt_id: String,
    pub text: String,
}

/// Per-run broadcast channels, created by the first watcher and dropped
/// with the last.
#[derive(Default)]
pub struct EventHub {
    runs: Mutex<HashMap<String, broadcast::Sender<LiveEvent>>>,
    /// Who wants token deltas: a model call streams only then.
    delta_watchers: Mutex<DeltaWatchers>,
}

/// The runs whose token deltas someone wants: watchers on this replica
/// (counted), and watchers on other replicas as they last announced
/// themselves (until when that announcement holds).
#[derive(Default)]
struct DeltaWatchers {
    local: HashMap<String, usize>,
    remote: HashMap<String, Instant>,
}

/// Capacity of one run's channel; a watcher that lags further re-reads the
/// store, so this stays small (every watched run allocates it).
const CHANNEL_CAPACITY: usize = 64;
/// Larger events are announced with a [`LiveEvent::Poke`] rather than
/// kept in the ring, which would otherwise hold up to 64 of them per run.
const MAX_CARRIED_EVENT_BYTES: usize = 16 * 1024;

impl EventHub {
    pub fn subscribe(&self, run_id: &str) -> broadcast::Receiver<LiveEvent> {
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        runs.entry(run_id.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Drops the run's channel once its last watcher is gone (a finished
    /// run gets no further send that would notice).
    pub fn release(&self, run_id: &str) {
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if runs
            .get(run_id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            runs.remove(run_id);
        }
    }

    /// Sends `event()` to the run's watchers; builds nothing when the run
    /// has none.
    fn send(&self, run_id: &str, event: impl FnOnce() -> LiveEvent) {
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A failed send means no receiver is left.
        if let Some(sender) = runs.get(run_id)
            && sender.send(event()).is_err()
        {
            runs.remove(run_id);
        }
    }

    /// Announces committed events.
    pub fn publish(&self, events: &[EventRecord]) {
        for event in events {
            self.send(&event.run_id, || {
                if event.payload.len() <= MAX_CARRIED_EVENT_BYTES {
                    LiveEvent::Stored(Arc::new(event.clone()))
                } else {
                    LiveEvent::Poke
                }
            });
        }
    }

    /// Tells watchers of `run_id` to re-read the store.
    pub fn poke(&self, run_id: &str) {
        self.send(run_id, || LiveEvent::Poke);
    }

    /// Tells every watcher to re-read the store (changes may have been
    /// missed).
    pub fn poke_all(&self) {
        let senders: Vec<broadcast::Sender<LiveEvent>> = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect();
        for sender in senders {
            let _ = sender.send(LiveEvent::Poke);
        }
    }

    /// Forwards a token delta to the run's watchers.
    pub fn delta(&self, run_id: &str, task_id: &str, attempt_id: &str, text: String) {
        self.send(run_id, || {
            LiveEvent::Delta(Arc::new(TokenDelta {
                task_id: task_id.to_string(),
                attempt_id: attempt_id.to_string(),
                text,
            }))
        });
    }

    /// A watcher of `run_id` on this replica wants token deltas (until
    /// [`EventHub::remove_delta_watcher`]).
    pub fn add_delta_watcher(&self, run_id: &str) {
        *lock(&self.delta_watchers)
            .local
            .entry(run_id.to_string())
            .or_default() += 1;
    }

    pub fn remove_delta_watcher(&self, run_id: &str) {
        let mut watchers = lock(&self.delta_watchers);
        if let Some(count) = watchers.local.get_mut(run_id) {
            *count -= 1;
            if *count == 0 {
                watchers.local.remove(run_id);
            }
        }
    }

    /// A watcher of `run_id` on another replica wants token deltas; the
    /// announcement holds `until` (that replica repeats it while its
    /// watcher stays).
    pub fn note_remote_delta_watcher(&self, run_id: &str, until: Instant) {
        let mut watchers = lock(&self.delta_watchers);
        let now = Instant::now();
        watchers.remote.retain(|_, expiry| *expiry > now);
        watchers.remote.insert(run_id.to_string(), until);
    }

    /// Whether anyone, here or on another replica, wants `run_id`'s token
    /// deltas now.
    pub fn wants_deltas(&self, run_id: &str) -> bool {
        let watchers = lock(&self.delta_watchers);
        watchers.local.contains_key(run_id)
            || watchers
                .remote
                .get(run_id)
                .is_some_and(|until| *until > Instant::now())
    }

    /// The runs whose token deltas a watcher on this replica wants.
    pub fn locally_delta_watched_runs(&self) -> Vec<String> {
        lock(&self.delta_watchers).local.keys().cloned().collect()
    }

    /// Number of runs with watchers (for tests and metrics).
    pub fn watched_runs(&self) -> usize {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_goes_with_its_last_watcher() {
        let hub = EventHub::default();
        let first = hub.subscribe("run");
        let second = hub.subscribe("run");
        drop(first);
        hub.release("run");
        assert_eq!(hub.watched_runs(), 1);
        drop(second);
        hub.release("run");
        assert_eq!(hub.watched_runs(), 0);
        // Publishing to a run nobody watches allocates nothing.
        hub.poke("run");
        assert_eq!(hub.watched_runs(), 0);
    }

    #[test]
    fn deltas_are_wanted_while_a_delta_watcher_stays() {
        let hub = EventHub::default();
        assert!(!hub.wants_deltas("run"));
        hub.add_delta_watcher("run");
        hub.add_delta_watcher("run");
        hub.remove_delta_watcher("run");
        assert!(hub.wants_deltas("run"));
        hub.remove_delta_watcher("run");
        assert!(!hub.wants_deltas("run"));
        hub.note_remote_delta_watcher("other", Instant::now() + std::time::Duration::from_secs(60));
        assert!(hub.wants_deltas("other"));
        hub.note_remote_delta_watcher("gone", Instant::now());
        assert!(!hub.wants_deltas("gone"));
    }
}
