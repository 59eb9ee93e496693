//! Group writes: callers queue items and wait; writer tasks take whatever
//! is queued and write it in one transaction (see docs/postgres.md: one
//! commit per batch instead of one per item is what lets a 2-core box reach
//! its targets). Two writers take turns, so one batch forms while the other
//! commits. Items with the same key never share a batch (a run transitions
//! at most once per batch; a request id is reserved at most once).

use std::future::Future;
use std::sync::{Arc, Once};

use tokio::sync::{Mutex, mpsc, oneshot};

/// Writer tasks per batcher.
const WRITERS: usize = 2;

/// An item that may conflict with another in the same batch.
pub(super) trait Keyed {
    /// Items with equal keys go to different batches; `None` conflicts with
    /// nothing.
    fn key(&self) -> Option<&str>;
}

pub(super) struct Batcher<T> {
    sender: mpsc::UnboundedSender<T>,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<T>>>,
    started: Once,
    max: usize,
}

impl<T: Keyed + Send + 'static> Batcher<T> {
    pub fn new(max: usize) -> Batcher<T> {
        let (sender, receiver) = mpsc::unbounded_channel();
        Batcher {
            sender,
            receiver: Arc::new(Mutex::new(receiver)),
            started: Once::new(),
            max: max.max(1),
        }
    }

    /// Queues `item`; the first call starts the writers, which call `write`
    /// with each batch for as long as the runtime lives. Gives the item back
    /// if the writers are gone.
    pub fn submit<W, F>(&self, item: T, write: W) -> Result<(), T>
    where
        W: Fn(Vec<T>) -> F + Clone + Send + 'static,
        F: Future<Output = ()> + Send,
    {
        self.started.call_once(|| {
            for _ in 0..WRITERS {
                let receiver = self.receiver.clone();
                let write = write.clone();
                let max = self.max;
                tokio::spawn(async move {
                    let mut carried = Vec::new();
                    while let Some(batch) = next_batch(&receiver, &mut carried, max).await {
                        write(batch).await;
                    }
                });
            }
        });
        self.sender.send(item).map_err(|error| error.0)
    }

    /// Queues `item`, which carries the sender of `answer`, and waits for
    /// the writers to answer it; `None` when they are gone or dropped it
    /// unanswered (shutting down).
    pub async fn ask<A, W, F>(&self, item: T, answer: oneshot::Receiver<A>, write: W) -> Option<A>
    where
        W: Fn(Vec<T>) -> F + Clone + Send + 'static,
        F: Future<Output = ()> + Send,
    {
        self.submit(item, write).ok()?;
        answer.await.ok()
    }
}

/// The next batch: what is queued now (at least one item), no key twice;
/// a conflicting item waits for a later batch. A writer with carried items
/// never waits for the receiver: the other writer may hold it while idle.
async fn next_batch<T: Keyed>(
    receiver: &Mutex<mpsc::UnboundedReceiver<T>>,
    carried: &mut Vec<T>,
    max: usize,
) -> Option<Vec<T>> {
    let mut batch: Vec<T> = Vec::new();
    let mut later: Vec<T> = Vec::new();
    for item in carried.drain(..) {
        if batch.len() < max && !conflicts(&batch, &item) {
            batch.push(item);
        } else {
            later.push(item);
        }
    }
    let mut receiver = if batch.is_empty() {
        let mut receiver = receiver.lock().await;
        batch.push(receiver.recv().await?);
        Some(receiver)
    } else {
        receiver.try_lock().ok()
    };
    if let Some(receiver) = receiver.as_mut() {
        while batch.len() < max {
            match receiver.try_recv() {
                Ok(item) if conflicts(&batch, &item) => later.push(item),
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
    }
    *carried = later;
    Some(batch)
}

fn conflicts<T: Keyed>(batch: &[T], item: &T) -> bool {
    item.key()
        .is_some_and(|key| batch.iter().any(|other| other.key() == Some(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(Option<&'static str>, u32);

    impl Keyed for Item {
        fn key(&self) -> Option<&str> {
            self.0
        }
    }

    #[tokio::test]
    async fn carried_items_do_not_wait_for_a_held_receiver() {
        let (sender, receiver) = mpsc::unbounded_channel::<Item>();
        let receiver = Mutex::new(receiver);
        let _held = receiver.lock().await;
        let mut carried = vec![Item(Some("a"), 1), Item(Some("a"), 2)];
        let batch = next_batch(&receiver, &mut carried, 8).await.unwrap();
        assert_eq!(batch.iter().map(|i| i.1).collect::<Vec<_>>(), [1]);
        assert_eq!(carried.len(), 1);
        drop(sender);
    }

    #[tokio::test]
    async fn conflicting_items_wait_for_the_next_batch() {
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Mutex::new(receiver);
        for item in [
            Item(Some("a"), 1),
            Item(Some("a"), 2),
            Item(None, 3),
            Item(None, 4),
            Item(Some("b"), 5),
        ] {
            sender.send(item).ok();
        }
        let mut carried = Vec::new();
        let first = next_batch(&receiver, &mut carried, 3).await.unwrap();
        assert_eq!(first.iter().map(|i| i.1).collect::<Vec<_>>(), [1, 3, 4]);
        let second = next_batch(&receiver, &mut carried, 3).await.unwrap();
        assert_eq!(second.iter().map(|i| i.1).collect::<Vec<_>>(), [2, 5]);
    }
}
