//! Watching a run and waiting for its end, on the hub's signals.
//!
//! [`RunWatch`] yields a run's stored events after `after_seq`, then live
//! ones, without gap or duplicate at the switch, and ends after the
//! terminal event. What a watch costs is bounded whatever its reader does:
//!
//! - It is pulled: the next event is produced only when asked for (the
//!   `WatchRun` response stream asks when the HTTP/2 stream has room), so a
//!   reader that does not read holds at most one chunk of history here,
//!   never a queue.
//! - History is read in chunks of at most [`CHUNK_BYTES`] (the chunk's
//!   event count adapts to the events' sizes), one at a time, only when the
//!   reader has taken the previous one.
//! - A watch that keeps up takes new events from the hub; one that falls
//!   behind (the hub's small per-run ring overflowed) reads them from the
//!   store instead.
//! - An idle watch does nothing: it wakes only on the hub's signals (this
//!   replica's commits, or a poke when another replica announced a change).
//!
//! Token deltas (with `include_deltas`) are never stored. A watch that
//! joins while a model call streams is caught up: as it turns live it takes
//! the text so far of the run's calls streaming on this replica (and its
//! opening asked the other replicas for theirs), yields it as one catch-up
//! delta per call, then live deltas. It subscribed before, so a live delta
//! is either inside the catch-up (its range is covered: dropped) or after
//! it; per attempt it tracks the bytes yielded, so nothing is repeated or
//! skipped at the switch.
//!
//! [`Kernel::execute_run`] starts a run and waits, the same way, for its
//! end; what it returns says what the run did, with the routing the kernel
//! recorded for each task (its `Transition` events), never re-evaluated.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use prost::Message;
use tokio::sync::broadcast::error::RecvError;

use super::events::{LiveEvent, TokenDelta};
use super::{Kernel, KernelError, KernelResult, StartRun, Subscription, now};
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptRecord, EventRecord, Page, PageQuery, RunFilter, RunRecord};

/// Bytes of stored events read at once (about): what a watch whose reader
/// stopped reading may hold, so it stays small.
const CHUNK_BYTES: usize = 8 * 1024;
/// Events read at once: the first read, and at most.
const FIRST_CHUNK_EVENTS: u32 = 8;
const MAX_CHUNK_EVENTS: u32 = 64;
/// Attempts and events read at once when collecting a whole run's.
const WHOLE_RUN_PAGE: u32 = 1000;

/// One reader's watch of one run.
pub struct RunWatch {
    kernel: Kernel,
    run_id: String,
    include_deltas: bool,
    /// Held while the watch wants token deltas: model calls of the run
    /// stream only while someone does.
    _delta_interest: Option<super::signals::DeltaInterest>,
    /// Subscribed before the first read, so nothing committed in between
    /// is missed.
    live: Subscription,
    /// The last stored sequence number yielded (at first `after_seq`).
    last: i64,
    /// Stored events read and not yet yielded: at most one chunk.
    pending: VecDeque<EventRecord>,
    /// The store may hold events after `last` that were not read yet.
    behind: bool,
    /// Events to read next time.
    chunk_events: u32,
    /// Per attempt, the bytes of its streamed text yielded so far.
    streamed: HashMap<String, u64>,
    /// The catch-up of this replica's streaming calls is still to take
    /// (at the switch to live, and again after losing live deltas).
    catch_up_due: bool,
    /// Deltas ready to yield.
    deltas: VecDeque<pb::RunEvent>,
    /// The live feed was searched for deltas up to this stored event.
    deltas_before: i64,
    done: bool,
}

/// How [`Kernel::execute_run`] ended.
pub enum Executed {
    /// The run is over.
    Ended(Box<EndedRun>),
    /// The wait ran out; the run goes on.
    TimedOut { run_id: String },
    /// The caller's `stop` fired (the server is draining); the run goes on
    /// (another replica, or this one restarted, takes it up).
    Stopped,
}

/// A run that is over, with what it did.
pub struct EndedRun {
    pub run: RunRecord,
    /// Every attempt, in step order.
    pub attempts: Vec<AttemptRecord>,
    /// One entry per task execution (retries folded in), in order.
    pub executions: Vec<TaskExecution>,
}

/// One execution of a task: its attempts and where the run went after it.
pub struct TaskExecution {
    pub task_id: String,
    /// The handler's name (empty for a task the chain no longer has).
    pub handler: String,
    /// Its attempts, in order; the first is never empty.
    pub attempts: Vec<AttemptRecord>,
    /// The tasks the kernel routed to after its success (`end` when the
    /// run could end there); empty when it did not route.
    pub next: Vec<String>,
}

impl Kernel {
    /// Opens a watch of `run_id` after `after_seq` (an unknown run is
    /// NOT_FOUND). For a run that already ended with nothing after
    /// `after_seq`, the watch yields its terminal event once more and ends.
    pub async fn watch_run(
        &self,
        namespace: &str,
        run_id: &str,
        after_seq: i64,
        include_deltas: bool,
    ) -> KernelResult<RunWatch> {
        self.run_in(namespace, run_id).await?;
        let live = self.subscribe(run_id);
        let interest = include_deltas.then(|| self.want_deltas(run_id));
        self.open_watch(run_id, live, interest, after_seq).await
    }

    /// Starts a run and watches it after `after_seq`. The watch (and its
    /// wish for token deltas) exists before the run does, so nothing the
    /// run does can happen before it: the first events and deltas of a run
    /// that starts at once are seen. A replayed `request_id` watches the
    /// run the first request started.
    pub async fn start_and_watch(
        &self,
        start: StartRun,
        after_seq: i64,
        include_deltas: bool,
    ) -> KernelResult<RunWatch> {
        let run_id = uuid::Uuid::now_v7().to_string();
        let live = self.subscribe(&run_id);
        let interest = include_deltas.then(|| self.want_deltas(&run_id));
        let started = self.start_run_as(start, Some(run_id.clone())).await?;
        if started.run.id != run_id {
            return self
                .watch_run(
                    &started.run.namespace,
                    &started.run.id,
                    after_seq,
                    include_deltas,
                )
                .await;
        }
        self.open_watch(&run_id, live, interest, after_seq).await
    }

    /// A watch of `run_id` on its live feed, subscribed before its first
    /// read (with its wish for deltas, if any, registered).
    async fn open_watch(
        &self,
        run_id: &str,
        live: Subscription,
        interest: Option<super::signals::DeltaInterest>,
        after_seq: i64,
    ) -> KernelResult<RunWatch> {
        let include_deltas = interest.is_some();
        let mut watch = RunWatch {
            kernel: self.clone(),
            run_id: run_id.to_string(),
            include_deltas,
            _delta_interest: interest,
            live,
            last: after_seq,
            pending: VecDeque::new(),
            behind: true,
            chunk_events: FIRST_CHUNK_EVENTS,
            streamed: HashMap::new(),
            catch_up_due: include_deltas,
            deltas: VecDeque::new(),
            deltas_before: after_seq,
            done: false,
        };
        watch.read_chunk().await?;
        if watch.pending.is_empty() {
            let run = self.get_run(run_id).await?;
            if run.status.is_terminal() {
                if run.last_seq > watch.last {
                    // It ended between the read and now: read on.
                    watch.behind = true;
                } else {
                    // Nothing follows `after_seq`: the terminal event (the
                    // run's last) is yielded again and the watch ends.
                    watch.last = run.last_seq - 1;
                    watch.chunk_events = 1;
                    watch.read_chunk().await?;
                    watch.behind = false;
                    if !watch.pending.back().is_some_and(is_terminal_record) {
                        watch.pending.clear();
                        watch.done = true;
                    }
                }
            }
        }
        Ok(watch)
    }

    /// Waits until the run is over; returns it as it ended. Wakes on the
    /// hub's signals only (any stored event may be the terminal one).
    pub async fn wait_for_end(&self, run_id: &str) -> KernelResult<RunRecord> {
        let mut live = self.subscribe(run_id);
        loop {
            let run = self.get_run(run_id).await?;
            if run.status.is_terminal() {
                return Ok(run);
            }
            loop {
                match live.recv().await {
                    Ok(LiveEvent::Delta(_)) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => {
                        live = self.subscribe(run_id);
                        break;
                    }
                }
            }
        }
    }

    /// Starts a run and waits up to `wait` for its end. The run is
    /// cancelled if this future is dropped (or the wait fails) before it
    /// ended: a synchronous caller that leaves takes its work with it.
    pub async fn execute_run(
        &self,
        start: StartRun,
        wait: Duration,
        stop: impl Future<Output = ()>,
    ) -> KernelResult<Executed> {
        let run = self.start_run(start).await?.run;
        let mut guard = CancelOnDrop {
            kernel: self.clone(),
            run: Some((run.namespace.clone(), run.id.clone())),
        };
        let ended = tokio::select! {
            ended = tokio::time::timeout(wait, self.wait_for_end(&run.id)) => match ended {
                Ok(result) => result?,
                Err(_) => {
                    guard.run = None;
                    return Ok(Executed::TimedOut { run_id: run.id });
                }
            },
            () = stop => {
                guard.run = None;
                return Ok(Executed::Stopped);
            }
        };
        guard.run = None;
        Ok(Executed::Ended(Box::new(self.ended_run(ended).await?)))
    }

    /// A page of runs, each with its active attempts (for its active
    /// tasks and input request). Finished runs have none to read.
    pub async fn list_runs(
        &self,
        filter: &RunFilter,
        query: PageQuery,
    ) -> KernelResult<Page<(RunRecord, Vec<AttemptRecord>)>> {
        let page = self.store().list_runs(filter, query).await?;
        let unfinished: Vec<&str> = page
            .items
            .iter()
            .filter(|run| !run.status.is_terminal())
            .map(|run| run.id.as_str())
            .collect();
        let mut active: HashMap<String, Vec<AttemptRecord>> = HashMap::new();
        for attempt in self.store().active_attempts(&unfinished).await? {
            active
                .entry(attempt.run_id.clone())
                .or_default()
                .push(attempt);
        }
        Ok(page.map(|run| {
            let attempts = active.remove(&run.id).unwrap_or_default();
            (run, attempts)
        }))
    }

    /// Every attempt of a run, in step order.
    pub async fn run_attempts(&self, run_id: &str) -> KernelResult<Vec<AttemptRecord>> {
        let mut attempts = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store()
                .list_attempts(
                    run_id,
                    PageQuery {
                        limit: WHOLE_RUN_PAGE,
                        after,
                    },
                )
                .await?;
            attempts.extend(page.items);
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(attempts),
            }
        }
    }

    /// What an ended run did: its attempts folded into task executions,
    /// each with the routing recorded after its success.
    async fn ended_run(&self, run: RunRecord) -> KernelResult<EndedRun> {
        let attempts = self.run_attempts(&run.id).await?;
        let chain = self
            .chain(&run.namespace, &run.chain_id, run.chain_version)
            .await?;
        let routes = self.recorded_routes(&run.id).await?;
        let mut executions: Vec<TaskExecution> = Vec::new();
        for attempt in &attempts {
            let first =
                attempt.attempt == 1 || !executions.iter().any(|e| e.task_id == attempt.task_id);
            if first {
                executions.push(TaskExecution {
                    task_id: attempt.task_id.clone(),
                    handler: chain
                        .task(&attempt.task_id)
                        .map(|task| task.handler.name().to_string())
                        .unwrap_or_default(),
                    attempts: Vec::new(),
                    next: Vec::new(),
                });
            }
            let Some(execution) = executions
                .iter_mut()
                .rev()
                .find(|e| e.task_id == attempt.task_id)
            else {
                continue;
            };
            if let Some(next) = routes.get(&attempt.id) {
                execution.next = next.clone();
            }
            execution.attempts.push(attempt.clone());
        }
        Ok(EndedRun {
            run,
            attempts,
            executions,
        })
    }

    /// Where the run went after each successful attempt, by attempt id, as
    /// the kernel recorded it: a `Transition` event with `next` follows
    /// its task's `TaskSucceeded` in the same decision.
    async fn recorded_routes(&self, run_id: &str) -> KernelResult<HashMap<String, Vec<String>>> {
        let mut routes = HashMap::new();
        let mut succeeded: HashMap<String, String> = HashMap::new();
        let mut after = 0;
        loop {
            let records = self
                .store()
                .list_events(run_id, after, WHOLE_RUN_PAGE)
                .await?;
            for record in &records {
                let event = decode_event(record)?;
                match pb::RunEventType::try_from(event.r#type) {
                    Ok(pb::RunEventType::TaskSucceeded) => {
                        succeeded.insert(event.task_id, event.attempt_id);
                    }
                    Ok(pb::RunEventType::Transition) => {
                        if let (Some(next), Some(attempt_id)) =
                            (recorded_next(&event), succeeded.remove(&event.task_id))
                        {
                            routes.insert(attempt_id, next);
                        }
                    }
                    _ => {}
                }
            }
            match records.last() {
                Some(last) if records.len() as u32 == WHOLE_RUN_PAGE => after = last.seq,
                _ => return Ok(routes),
            }
        }
    }
}

/// The `next` list of a `Transition` event (`None` for an `on_failure` one).
fn recorded_next(event: &pb::RunEvent) -> Option<Vec<String>> {
    use prost_types::value::Kind;
    let Some(Kind::ListValue(list)) = event.data.as_ref()?.fields.get("next")?.kind.as_ref() else {
        return None;
    };
    Some(
        list.values
            .iter()
            .filter_map(|value| match &value.kind {
                Some(Kind::StringValue(target)) => Some(target.clone()),
                _ => None,
            })
            .collect(),
    )
}

/// Cancels the run if dropped while armed.
struct CancelOnDrop {
    kernel: Kernel,
    /// The run's namespace and id.
    run: Option<(String, String)>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some((namespace, run_id)) = self.run.take() {
            let kernel = self.kernel.clone();
            tokio::spawn(async move {
                let reason = "ExecuteChain caller disconnected";
                if let Err(error) = kernel
                    .cancel_run(&namespace, &run_id, reason, None, None)
                    .await
                {
                    tracing::debug!(run_id = %run_id, error = %error, "cancel after disconnect");
                }
            });
        }
    }
}

impl RunWatch {
    /// The watched run.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The watch as a stream: each event is produced when it is polled.
    pub fn into_stream(self) -> BoxStream<'static, KernelResult<pb::RunEvent>> {
        futures::stream::unfold(self, |mut watch| async move {
            let item = watch.next().await?;
            Some((item, watch))
        })
        .boxed()
    }

    /// Reads the next chunk of stored events after `last`. The read runs
    /// as a task of its own: a response stream is not polled while its
    /// client's window is full, and a read parked half-way would hold a
    /// pooled connection (in a transaction) for as long as that lasts.
    async fn read_chunk(&mut self) -> KernelResult<()> {
        let store = self.kernel.store().clone();
        let run_id = self.run_id.clone();
        let (after, limit) = (self.last, self.chunk_events);
        let events = tokio::spawn(async move { store.list_events(&run_id, after, limit).await })
            .await
            .map_err(|error| KernelError::Corrupt(format!("reading run events: {error}")))??;
        self.behind = events.len() as u32 == self.chunk_events;
        if !events.is_empty() {
            let bytes: usize = events.iter().map(|e| e.payload.len()).sum();
            let average = (bytes / events.len()).max(1);
            self.chunk_events = ((CHUNK_BYTES / average) as u32).clamp(1, MAX_CHUNK_EVENTS);
        }
        self.pending = events.into();
        Ok(())
    }

    /// The next event; `None` after the terminal one (or an error).
    pub async fn next(&mut self) -> Option<KernelResult<pb::RunEvent>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(record) = self.pending.pop_front() {
                if record.seq > self.last {
                    if self.include_deltas && record.seq > self.deltas_before {
                        self.deltas_before = record.seq;
                        self.take_deltas_before(record.seq);
                    }
                    if let Some(delta) = self.deltas.pop_front() {
                        self.pending.push_front(record);
                        return Some(Ok(delta));
                    }
                    return Some(self.emit(&record));
                }
                continue;
            }
            if self.behind {
                if let Err(error) = self.read_chunk().await {
                    self.done = true;
                    return Some(Err(error));
                }
                continue;
            }
            if self.catch_up_due {
                self.catch_up_due = false;
                for delta in self.kernel.local_catch_up(&self.run_id) {
                    self.accept(&delta);
                }
            }
            if let Some(delta) = self.deltas.pop_front() {
                return Some(Ok(delta));
            }
            match self.live.recv().await {
                Ok(LiveEvent::Stored(record)) if record.seq == self.last + 1 => {
                    return Some(self.emit(&record));
                }
                Ok(LiveEvent::Stored(record)) if record.seq <= self.last => {}
                // A gap, a change elsewhere, or a missed signal: the store
                // has what this watch has not seen.
                Ok(LiveEvent::Stored(_) | LiveEvent::Poke) => {
                    self.behind = true;
                }
                // Deltas may be lost too: catch up on them again.
                Err(RecvError::Lagged(_)) => {
                    self.behind = true;
                    if self.include_deltas {
                        self.catch_up_due = true;
                        self.kernel.request_catch_up(&self.run_id);
                    }
                }
                Ok(LiveEvent::Delta(delta)) => {
                    if self.include_deltas {
                        self.accept(&delta);
                    }
                }
                Err(RecvError::Closed) => {
                    self.live = self.kernel.subscribe(&self.run_id);
                    self.behind = true;
                }
            }
        }
    }

    /// While history is read from the store, the live feed fills up with
    /// the same events and with the deltas between them (which exist
    /// nowhere else): takes the deltas that came before stored event `seq`,
    /// so that a watch reading history (one that started with its run, or
    /// is slow) yields a call's tokens before its completion. Stops at
    /// `seq`'s own announcement; anything unexpected sends it to the store.
    fn take_deltas_before(&mut self, seq: i64) {
        use tokio::sync::broadcast::error::TryRecvError;
        loop {
            match self.live.try_recv() {
                Ok(LiveEvent::Delta(delta)) => self.accept(&delta),
                Ok(LiveEvent::Stored(record)) if record.seq < seq => {}
                Ok(LiveEvent::Stored(record)) => {
                    if record.seq > seq {
                        self.behind = true;
                    }
                    return;
                }
                Ok(LiveEvent::Poke) => {
                    self.behind = true;
                    return;
                }
                Err(TryRecvError::Lagged(_)) => {
                    self.behind = true;
                    self.catch_up_due = true;
                    self.kernel.request_catch_up(&self.run_id);
                    return;
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    /// Queues what a token delta adds to its attempt's text as this watch
    /// has yielded it: nothing when its range was yielded already (a live
    /// delta a catch-up covered), the new part otherwise. A catch-up is
    /// yielded as such only as the attempt's first delta here.
    fn accept(&mut self, delta: &TokenDelta) {
        let end = delta.end();
        let (text, offset, catch_up) = match self.streamed.get(&delta.attempt_id) {
            // Joined mid-call without the text before it: that comes with
            // a catch-up (asked for when this watch opened or fell behind),
            // which covers this delta too.
            None if delta.offset > 0 => return,
            None => (delta.text.as_str(), 0, delta.catch_up),
            Some(&yielded) if end <= yielded => return,
            // Text past what the catch-up could keep (the cap): yielded
            // with its offset, which shows the gap.
            Some(&yielded) if delta.offset >= yielded => (delta.text.as_str(), delta.offset, false),
            Some(&yielded) => {
                let skip = (yielded - delta.offset) as usize;
                match delta.text.get(skip..) {
                    Some(rest) => (rest, yielded, false),
                    None => return,
                }
            }
        };
        self.streamed.insert(delta.attempt_id.clone(), end);
        let time = now();
        self.deltas.push_back(pb::RunEvent {
            run_id: self.run_id.clone(),
            seq: self.last,
            r#type: pb::RunEventType::TokenDelta as i32,
            time: Some(prost_types::Timestamp {
                seconds: time.timestamp(),
                nanos: time.timestamp_subsec_nanos() as i32,
            }),
            task_id: delta.task_id.clone(),
            attempt_id: delta.attempt_id.clone(),
            delta: text.to_string(),
            delta_offset: offset as i64,
            catch_up,
            ..Default::default()
        });
    }

    /// Yields a stored event; the watch ends after a terminal one.
    fn emit(&mut self, record: &EventRecord) -> KernelResult<pb::RunEvent> {
        match decode_event(record) {
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
                Err(error)
            }
        }
    }
}

/// A stored event as readers see it (its sequence number from the row).
pub fn decode_event(record: &EventRecord) -> KernelResult<pb::RunEvent> {
    let mut event = pb::RunEvent::decode(record.payload.as_slice())
        .map_err(|error| KernelError::Corrupt(format!("stored event does not decode: {error}")))?;
    event.seq = record.seq;
    event.run_id = record.run_id.clone();
    Ok(event)
}

/// The event that ends a run (and its watches).
fn is_terminal_event(event: &pb::RunEvent) -> bool {
    matches!(
        pb::RunEventType::try_from(event.r#type),
        Ok(pb::RunEventType::RunSucceeded
            | pb::RunEventType::RunFailed
            | pb::RunEventType::RunCancelled)
    )
}

fn is_terminal_record(record: &EventRecord) -> bool {
    decode_event(record).is_ok_and(|event| is_terminal_event(&event))
}
