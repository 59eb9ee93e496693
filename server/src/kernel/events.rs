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
#[derive(Debug, Clone)]
pub struct TokenDelta {
    pub task_id: String,
    pub attempt_id: String,
    pub text: String,
    /// UTF-8 bytes of the attempt's streamed text before `text`.
    pub offset: u64,
    /// `text` is the attempt's whole text so far (`offset` 0), for
    /// watchers that joined while the call streamed.
    pub catch_up: bool,
}

impl TokenDelta {
    /// The offset just after this delta.
    pub fn end(&self) -> u64 {
        self.offset + self.text.len() as u64
    }
}

/// The text a streaming model call running on this replica produced so
/// far, kept for watchers that join mid-call (the catch-up).
struct StreamingText {
    run_id: String,
    task_id: String,
    /// At most [`MAX_STREAMING_TEXT_BYTES`]: what comes after is only
    /// forwarded, so a late watcher sees a gap rather than the server
    /// holding an unbounded answer.
    text: String,
    /// Bytes streamed so far, kept or not.
    streamed: u64,
}

/// The most text kept per streaming attempt: the largest output a task
/// may store (`api/worker.rs`), so the catch-up can hold any answer that
/// can be stored.
pub const MAX_STREAMING_TEXT_BYTES: usize = 1024 * 1024;

/// Per-run broadcast channels, created by the first watcher and dropped
/// with the last.
#[derive(Default)]
pub struct EventHub {
    runs: Mutex<HashMap<String, broadcast::Sender<LiveEvent>>>,
    /// Who wants token deltas: a model call streams only then.
    delta_watchers: Mutex<DeltaWatchers>,
    /// The text of the model calls streaming on this replica, by attempt
    /// id, from their first delta until they end.
    streaming: Mutex<HashMap<String, StreamingText>>,
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

    /// Forwards a token delta from another replica to the run's watchers.
    pub fn forward_delta(&self, run_id: &str, delta: TokenDelta) {
        self.send(run_id, || LiveEvent::Delta(Arc::new(delta)));
    }

    /// A token delta of a model call streaming on this replica: appended
    /// to the attempt's text (within the cap), sent to the run's watchers,
    /// and handed to `also` (on to the other replicas) while the text is
    /// locked, so that a catch-up taken meanwhile is ordered with it: every
    /// delta either is in a catch-up or follows it.
    pub fn stream_delta(
        &self,
        run_id: &str,
        task_id: &str,
        attempt_id: &str,
        text: String,
        also: impl FnOnce(&TokenDelta),
    ) {
        let mut streaming = lock(&self.streaming);
        let entry = streaming
            .entry(attempt_id.to_string())
            .or_insert_with(|| StreamingText {
                run_id: run_id.to_string(),
                task_id: task_id.to_string(),
                text: String::new(),
                streamed: 0,
            });
        let offset = entry.streamed;
        entry.streamed += text.len() as u64;
        // Kept only while nothing was dropped: the kept text stays a
        // prefix of the answer.
        if entry.streamed as usize <= MAX_STREAMING_TEXT_BYTES {
            entry.text.push_str(&text);
        }
        let delta = TokenDelta {
            task_id: task_id.to_string(),
            attempt_id: attempt_id.to_string(),
            text,
            offset,
            catch_up: false,
        };
        also(&delta);
        self.send(run_id, || LiveEvent::Delta(Arc::new(delta)));
    }

    /// The attempt's call stopped streaming: its text is dropped (its
    /// output, once stored, is the whole answer).
    pub fn end_stream(&self, attempt_id: &str) {
        lock(&self.streaming).remove(attempt_id);
    }

    /// One catch-up delta per model call of `run_id` streaming on this
    /// replica, each handed to `each` while the text is locked (see
    /// [`EventHub::stream_delta`]).
    pub fn catch_up(&self, run_id: &str, mut each: impl FnMut(TokenDelta)) {
        let streaming = lock(&self.streaming);
        for (attempt_id, entry) in streaming.iter() {
            if entry.run_id == run_id {
                each(TokenDelta {
                    task_id: entry.task_id.clone(),
                    attempt_id: attempt_id.clone(),
                    text: entry.text.clone(),
                    offset: 0,
                    catch_up: true,
                });
            }
        }
    }

    /// Model calls streaming on this replica.
    #[cfg(test)]
    fn streaming_calls(&self) -> usize {
        lock(&self.streaming).len()
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
    fn a_catch_up_holds_the_text_so_far_until_the_call_ends() {
        let hub = EventHub::default();
        let mut live = hub.subscribe("run");
        hub.stream_delta("run", "ask", "att", "Hel".into(), |_| {});
        hub.stream_delta("run", "ask", "att", "lo".into(), |d| {
            assert_eq!(d.offset, 3)
        });
        let mut caught = Vec::new();
        hub.catch_up("run", |d| caught.push(d));
        hub.catch_up("other", |_| panic!("not this run's"));
        assert_eq!(caught.len(), 1);
        assert_eq!((caught[0].text.as_str(), caught[0].offset), ("Hello", 0));
        assert!(caught[0].catch_up);
        for expected in [(0, "Hel"), (3, "lo")] {
            match live.try_recv() {
                Ok(LiveEvent::Delta(d)) => assert_eq!((d.offset, d.text.as_str()), expected),
                other => panic!("{other:?}"),
            }
        }
        hub.end_stream("att");
        assert_eq!(hub.streaming_calls(), 0);
        // Past the cap the text is no longer kept; offsets go on.
        let big = "x".repeat(MAX_STREAMING_TEXT_BYTES);
        hub.stream_delta("run", "ask", "att2", big, |_| {});
        hub.stream_delta("run", "ask", "att2", "y".into(), |d| {
            assert_eq!(d.offset, MAX_STREAMING_TEXT_BYTES as u64)
        });
        hub.catch_up("run", |d| {
            assert_eq!(d.text.len(), MAX_STREAMING_TEXT_BYTES)
        });
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
