//! Changes told onwards: committed events to this replica's watchers, the
//! attempts a commit changed to this replica's observers, and changed runs
//! and token deltas to the other replicas (and theirs heard from them).

use std::sync::Arc;

use std::time::Duration;

use tokio::sync::mpsc;

use super::{AttemptChange, Kernel};
use crate::store::{Delta, DeltaBatch, EventRecord, Signal};

/// Learns what changed, so it can react (e.g. push cancellations to the
/// workers holding their attempts). Called on the hot path: cheap.
pub trait RunObserver: Send + Sync {
    /// Runs changed elsewhere (another replica, or signals were lost): what
    /// changed in them is not known here.
    fn runs_changed(&self, run_ids: &[&str]);
    /// Attempts this replica's commit just wrote, as stored.
    fn attempts_changed(&self, attempts: &[AttemptChange]);
}

/// How often a replica repeats that its watchers want a run's token
/// deltas, and how long the others believe it.
const DELTA_INTEREST_REPEAT: Duration = Duration::from_secs(20);
const DELTA_INTEREST_HOLDS: Duration = Duration::from_secs(60);

/// "A watcher here wants this run's token deltas", sent to the other
/// replicas on the deltas' own channel: a delta of no attempt (real deltas
/// always name theirs) and no text. With `catch_up` (a watcher just
/// joined, or fell behind), the replica running a model call of the run
/// answers with the call's text so far, ahead of its next deltas.
fn delta_interest(run_id: &str, catch_up: bool) -> Delta {
    Delta {
        run_id: run_id.to_string(),
        task_id: String::new(),
        attempt_id: String::new(),
        text: String::new(),
        offset: 0,
        catch_up,
    }
}

fn is_delta_interest(delta: &Delta) -> bool {
    delta.attempt_id.is_empty()
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

/// A watcher's wish for a run's token deltas, withdrawn when dropped (the
/// other replicas forget it once its last announcement runs out).
pub struct DeltaInterest {
    kernel: Kernel,
    run_id: String,
}

impl Drop for DeltaInterest {
    fn drop(&mut self) {
        self.kernel.inner.hub.remove_delta_watcher(&self.run_id);
    }
}

/// A model call streaming on this replica; see [`Kernel::streaming_call`].
pub struct StreamingCall {
    kernel: Kernel,
    attempt_id: String,
}

impl Drop for StreamingCall {
    fn drop(&mut self) {
        self.kernel.inner.hub.end_stream(&self.attempt_id);
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

impl Kernel {
    /// Publishes committed events to this replica's watchers, tells the
    /// observers which attempts the commit wrote, and queues the runs for
    /// announcement to the other replicas.
    pub(super) fn committed(&self, events: &[EventRecord], attempts: &[AttemptChange]) {
        self.inner.hub.publish(events);
        let mut last: Option<&str> = None;
        for event in events {
            if last != Some(event.run_id.as_str()) {
                let _ = self.inner.changed.send(event.run_id.clone());
                last = Some(&event.run_id);
            }
        }
        if !attempts.is_empty() {
            for observer in self.observers().iter() {
                observer.attempts_changed(attempts);
            }
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
        let mut repeat_interest = tokio::time::interval(DELTA_INTEREST_REPEAT);
        loop {
            tokio::select! {
                _ = repeat_interest.tick() => {
                    for run_id in self.inner.hub.locally_delta_watched_runs() {
                        self.announce_delta_interest(&run_id, false);
                    }
                }
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
                            if is_delta_interest(&delta) {
                                let until = std::time::Instant::now() + DELTA_INTEREST_HOLDS;
                                self.inner.hub.note_remote_delta_watcher(&delta.run_id, until);
                                if delta.catch_up {
                                    self.send_catch_up(&delta.run_id);
                                }
                            } else {
                                self.inner.hub.forward_delta(&delta.run_id, super::events::TokenDelta {
                                    task_id: delta.task_id,
                                    attempt_id: delta.attempt_id,
                                    text: delta.text,
                                    offset: delta.offset,
                                    catch_up: delta.catch_up,
                                });
                            }
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
    pub(super) async fn announce(
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

    /// A token delta of a streaming model call running here: kept with
    /// the attempt's text so far (for watchers that join later), sent to
    /// this replica's watchers at once, to the others' within a few tens
    /// of milliseconds. The call holds a [`Kernel::streaming_call`] guard.
    pub fn publish_delta(&self, run_id: &str, task_id: &str, attempt_id: &str, text: String) {
        let shared = self.inner.store.kind() != "sqlite";
        self.inner
            .hub
            .stream_delta(run_id, task_id, attempt_id, text, |delta| {
                if shared {
                    let _ = self.inner.deltas.send(Delta {
                        run_id: run_id.to_string(),
                        task_id: delta.task_id.clone(),
                        attempt_id: delta.attempt_id.clone(),
                        text: delta.text.clone(),
                        offset: delta.offset,
                        catch_up: false,
                    });
                }
            });
    }

    /// A guard for a model call of `attempt_id` that streams: when it is
    /// dropped (the call ended, or the attempt's work was dropped) the
    /// call's text so far is dropped too.
    pub fn streaming_call(&self, attempt_id: &str) -> StreamingCall {
        StreamingCall {
            kernel: self.clone(),
            attempt_id: attempt_id.to_string(),
        }
    }

    /// Answers another replica's new watcher of `run_id`: the text so far
    /// of each of the run's calls streaming here, queued (under the text's
    /// lock) ahead of their next deltas.
    fn send_catch_up(&self, run_id: &str) {
        self.inner.hub.catch_up(run_id, |delta| {
            let _ = self.inner.deltas.send(Delta {
                run_id: run_id.to_string(),
                task_id: delta.task_id,
                attempt_id: delta.attempt_id,
                text: delta.text,
                offset: 0,
                catch_up: true,
            });
        });
    }

    /// The text so far of `run_id`'s model calls streaming on this replica,
    /// as catch-up deltas.
    pub fn local_catch_up(&self, run_id: &str) -> Vec<super::events::TokenDelta> {
        let mut deltas = Vec::new();
        self.inner.hub.catch_up(run_id, |delta| deltas.push(delta));
        deltas
    }

    /// Asks the other replicas for the text so far of `run_id`'s streaming
    /// calls (a watcher here fell behind and lost deltas).
    pub fn request_catch_up(&self, run_id: &str) {
        self.announce_delta_interest(run_id, true);
    }

    /// Whether a watcher of `run_id` (on any replica) wants its token
    /// deltas: a model call of the run streams only then, or when its task
    /// asks to.
    pub fn wants_deltas(&self, run_id: &str) -> bool {
        self.inner.hub.wants_deltas(run_id)
    }

    /// Registers a watcher of `run_id` that wants token deltas, here and
    /// (with a shared store) on the other replicas, until the returned
    /// guard is dropped.
    pub fn want_deltas(&self, run_id: &str) -> DeltaInterest {
        self.inner.hub.add_delta_watcher(run_id);
        // A new watcher: the replica running a call of the run catches it up.
        self.announce_delta_interest(run_id, true);
        DeltaInterest {
            kernel: self.clone(),
            run_id: run_id.to_string(),
        }
    }

    fn announce_delta_interest(&self, run_id: &str, catch_up: bool) {
        if self.inner.store.kind() != "sqlite" {
            let _ = self.inner.deltas.send(delta_interest(run_id, catch_up));
        }
    }

    /// Adds an observer of changed runs.
    pub fn observe_runs(&self, observer: Arc<dyn RunObserver>) {
        self.inner
            .observers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(observer);
    }

    pub(super) fn notify_observers(&self, run_ids: &[&str]) {
        for observer in self.observers().iter() {
            observer.runs_changed(run_ids);
        }
    }

    fn observers(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<dyn RunObserver>>> {
        self.inner
            .observers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
