//! `WatchRun`: a run's stored events after `after_seq`, then live ones,
//! without gap or duplicate at the switch, ending after the terminal event.
//!
//! What a watcher costs is bounded whatever its client does:
//!
//! - The response stream is pulled: the next event is produced only when
//!   the HTTP/2 stream has room for it, so a client that does not read
//!   holds at most one chunk of history here (plus what hyper and h2 hold
//!   for one stream), never a queue.
//! - History is read in chunks of at most [`CHUNK_BYTES`] (the chunk's
//!   event count adapts to the events' sizes), one at a time, only when the
//!   client has taken the previous one.
//! - A watcher that keeps up takes new events from the kernel's hub; one
//!   that falls behind (the hub's small per-run ring overflowed) reads them
//!   from the store instead.
//! - An idle watcher does nothing: it wakes only on the hub's signals (this
//!   replica's commits, or a poke when another replica announced a change).

use std::collections::VecDeque;

use futures::StreamExt as _;
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;
use tonic::codegen::BoxStream;

use super::run::{event_message, is_terminal_event};
use super::{ApiError, ApiResult};
use crate::kernel::events::LiveEvent;
use crate::kernel::{Kernel, Subscription, now};
use crate::proto::taskloom::v1 as pb;
use crate::store::EventRecord;

/// Bytes of stored events read at once (about): what a watcher whose
/// client stopped reading may hold, so it stays small.
const CHUNK_BYTES: usize = 8 * 1024;
/// Events read at once: the first read, and at most.
const FIRST_CHUNK_EVENTS: u32 = 8;
const MAX_CHUNK_EVENTS: u32 = 64;

/// One client's watch of one run.
pub struct Watcher {
    kernel: Kernel,
    run_id: String,
    include_deltas: bool,
    /// Subscribed before the first read, so nothing committed in between
    /// is missed.
    live: Subscription,
    /// The last stored sequence number sent (at first the client's
    /// `after_seq`).
    last: i64,
    /// Stored events read and not yet sent: at most one chunk.
    pending: VecDeque<EventRecord>,
    /// The store may hold events after `last` that were not read yet.
    behind: bool,
    /// Events to read next time.
    chunk_events: u32,
    done: bool,
}

impl Watcher {
    /// Subscribes, reads the first chunk (an unknown run is NOT_FOUND) and,
    /// for a run that already ended with nothing after `after_seq`, queues
    /// its terminal event once more so the stream ends at once.
    pub async fn open(
        kernel: Kernel,
        run_id: String,
        after_seq: i64,
        include_deltas: bool,
    ) -> ApiResult<Watcher> {
        let live = kernel.subscribe(&run_id);
        let mut watcher = Watcher {
            kernel,
            run_id,
            include_deltas,
            live,
            last: after_seq,
            pending: VecDeque::new(),
            behind: true,
            chunk_events: FIRST_CHUNK_EVENTS,
            done: false,
        };
        watcher.read_chunk().await?;
        if watcher.pending.is_empty() {
            let run = watcher.kernel.get_run(&watcher.run_id).await?;
            if run.status.is_terminal() {
                if run.last_seq > watcher.last {
                    // It ended between the read and now: read on.
                    watcher.behind = true;
                } else {
                    // Nothing follows `after_seq`: the terminal event (the
                    // run's last) is sent again and the stream ends.
                    watcher.last = run.last_seq - 1;
                    watcher.chunk_events = 1;
                    watcher.read_chunk().await?;
                    watcher.behind = false;
                    if !watcher.pending.back().is_some_and(is_terminal_record) {
                        watcher.pending.clear();
                        watcher.done = true;
                    }
                }
            }
        }
        Ok(watcher)
    }

    /// The response stream: each event is produced when the client can
    /// take it.
    pub fn into_stream(self) -> BoxStream<pb::RunEvent> {
        futures::stream::unfold(self, |mut watcher| async move {
            let item = watcher.next().await?;
            Some((item, watcher))
        })
        .boxed()
    }

    /// Reads the next chunk of stored events after `last`. The read runs
    /// as a task of its own: a response stream is not polled while its
    /// client's window is full, and a read parked half-way would hold a
    /// pooled connection (in a transaction) for as long as that lasts.
    async fn read_chunk(&mut self) -> ApiResult<()> {
        let store = self.kernel.store().clone();
        let run_id = self.run_id.clone();
        let (after, limit) = (self.last, self.chunk_events);
        let events = tokio::spawn(async move { store.list_events(&run_id, after, limit).await })
            .await
            .map_err(|error| ApiError::Internal(format!("reading run events: {error}")))??;
        self.behind = events.len() as u32 == self.chunk_events;
        if !events.is_empty() {
            let bytes: usize = events.iter().map(|e| e.payload.len()).sum();
            let average = (bytes / events.len()).max(1);
            self.chunk_events = ((CHUNK_BYTES / average) as u32).clamp(1, MAX_CHUNK_EVENTS);
        }
        self.pending = events.into();
        Ok(())
    }

    async fn next(&mut self) -> Option<Result<pb::RunEvent, Status>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(record) = self.pending.pop_front() {
                if record.seq > self.last {
                    return Some(self.emit(&record));
                }
                continue;
            }
            if self.behind {
                if let Err(error) = self.read_chunk().await {
                    self.done = true;
                    return Some(Err(error.into()));
                }
                continue;
            }
            match self.live.recv().await {
                Ok(LiveEvent::Stored(record)) if record.seq == self.last + 1 => {
                    return Some(self.emit(&record));
                }
                Ok(LiveEvent::Stored(record)) if record.seq <= self.last => {}
                // A gap, a change elsewhere, or a missed signal: the store
                // has what this watcher has not seen.
                Ok(LiveEvent::Stored(_) | LiveEvent::Poke) | Err(RecvError::Lagged(_)) => {
                    self.behind = true;
                }
                Ok(LiveEvent::Delta(delta)) => {
                    if self.include_deltas {
                        return Some(Ok(pb::RunEvent {
                            run_id: self.run_id.clone(),
                            seq: self.last,
                            r#type: pb::RunEventType::TokenDelta as i32,
                            time: Some(super::request::timestamp(now())),
                            task_id: delta.task_id.clone(),
                            attempt_id: delta.attempt_id.clone(),
                            delta: delta.text.clone(),
                            ..Default::default()
                        }));
                    }
                }
                Err(RecvError::Closed) => {
                    self.live = self.kernel.subscribe(&self.run_id);
                    self.behind = true;
                }
            }
        }
    }

    /// Sends a stored event; the stream ends after a terminal one.
    fn emit(&mut self, record: &EventRecord) -> Result<pb::RunEvent, Status> {
        match event_message(record) {
            Ok(event) => {
                self.last = record.seq;
                if is_terminal_event(&event) {
                    self.done = true;
                    self.pending.clear();
                }
                Ok(event)
            }
            Err(error) => {
                self.done = true;
                Err(Status::from(error))
            }
        }
    }
}

fn is_terminal_record(record: &EventRecord) -> bool {
    event_message(record).is_ok_and(|event| is_terminal_event(&event))
}
