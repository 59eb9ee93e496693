//! Remote workers on this replica: their sessions (one per `Connect`
//! stream), the leases they hold, and the offers sent to them. State
//! transitions stay in the kernel; this module decides who gets which
//! attempt and talks to the streams.
//!
//! - **Offers**: a worker gets attempts of its queues up to its free slots,
//!   highest priority and oldest first, either eagerly (leased in the
//!   transaction that creates the attempt, when a local session has a free
//!   slot; see `Kernel::lease_new_attempts`) or by the dispatch loop's
//!   claims (woken by the kernel, by other replicas' announcements, and by
//!   slots freeing up; a slow poll is the safety net). A lease is committed
//!   before its offer is sent; an offer that cannot be sent releases the
//!   lease at once.
//! - **Liveness is reading the stream**: the session's stream loop
//!   (`api::worker`) pings every heartbeat interval and abandons a session
//!   that leaves a ping unanswered past the heartbeat timeout: its leases end
//!   at once, as expired. A session whose stream just ends is closed and its
//!   leases stay valid until they expire, so a worker that reconnects in
//!   time re-attaches them (`Hello.held_leases`). Nothing here waits on a
//!   stream: outboxes are bounded and written without waiting.
//! - **Fencing**: completions, failures, releases, progress, heartbeats and
//!   extensions name `(attempt id, lease token)` and the kernel rejects stale
//!   or foreign ones (`FAILED_PRECONDITION`, counted here). The bookkeeping
//!   here (slots, held leases, leases by run) changes only for the lease the
//!   token names as this replica handed it out.
//! - **Cancellation**: the kernel tells this module which runs changed; an
//!   attempt a session holds that is no longer leased under its token gets a
//!   `CancelLease` on that session's stream.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tonic::Status;

use crate::chain::{CompiledChain, Handler};
use crate::kernel::{
    ClaimLoop, ClaimedAttempt, Kernel, KernelError, RunObserver, Slot, SlotProvider, TaskFailure,
    TaskSuccess, value,
};
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptRecord, AttemptStatus, WorkerSessionRecord};
use crate::telemetry::FailureLog;

mod workers;

pub use pb::server_message::Msg as ServerMsg;

/// Most attempts leased to one session by one claim.
const MAX_CLAIM: u32 = 64;
/// Most attempts leased to one session by a claim for work falling due:
/// few fall due at once, and rounds running together must leave each other
/// slots.
const MAX_CLAIM_WHEN_DUE: u32 = 16;
/// Outbound messages queued per session before sends count as failed.
const OUTBOX: usize = 1024;
/// Dispatch rounds for work falling due that may run at once.
const ROUNDS_WHEN_DUE: usize = 4;
/// Room kept in an outbox for acks, pings and cancellations: a session
/// whose outbox has less free room gets no offers (its worker is not
/// reading fast enough) until it drains.
const OUTBOX_RESERVE: usize = 64;

/// Tunables of the worker protocol.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// How often workers heartbeat and the server pings.
    pub heartbeat_interval: Duration,
    /// Silence after which a session is closed.
    pub heartbeat_timeout: Duration,
    /// How long a lease lasts without extension.
    pub lease: Duration,
    /// How often the dispatch loop looks for ready work without a wake-up.
    pub poll_interval: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(15),
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// A validated `Hello`.
#[derive(Debug, Clone)]
pub struct Hello {
    pub worker_id: String,
    pub name: String,
    pub queues: Vec<String>,
    pub slots: u32,
    pub labels: BTreeMap<String, String>,
    pub sdk_version: String,
    pub held_leases: Vec<pb::LeaseRef>,
}

/// A session as `ListWorkers` shows it (and as replicas publish it).
pub type SessionInfo = WorkerSessionRecord;

/// This replica's worker sessions.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    kernel: Kernel,
    config: DispatchConfig,
    state: Mutex<State>,
    /// Wakes the dispatch loop (slots freed, sessions opened).
    wake: Notify,
    /// Stale or foreign lease operations rejected (fencing).
    fencing_rejections: AtomicU64,
    /// Asks the publisher to write this replica's sessions now.
    publish: Notify,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    /// Leases held by this replica's sessions, by attempt id.
    held: HashMap<String, Held>,
    /// Attempt ids held, by run id (for cancellations).
    by_run: HashMap<String, HashSet<String>>,
    /// Round-robin start for eager slots.
    turn: usize,
    /// Counts the signs that ready work may be waiting for a slot (ready
    /// work left after a commit, a change on another replica, the safety
    /// poll); see `Session::clean_at`.
    ready_epoch: u64,
}

struct Session {
    info: SessionInfo,
    /// Slots taken: leases held plus slots reserved for offers in flight.
    in_use: u32,
    outbox: mpsc::Sender<pb::ServerMessage>,
    /// Ends the session's stream at once (see [`Outbound`]).
    end: Option<oneshot::Sender<Status>>,
    /// The `ready_epoch` at the start of this session's last claim that
    /// found less than it asked for: no ready work for it was left then.
    /// A freed slot wakes the claim loop only if work may have become
    /// ready since; most completions free a slot with nothing waiting, and
    /// a claim transaction per completion was a third of PostgreSQL's work.
    clean_at: Option<u64>,
    /// Serves a capped queue or tenant-capped work: room under a cap comes
    /// from leases settled anywhere, so every freed slot tries a claim.
    capped: bool,
}

impl Session {
    fn free(&self) -> u32 {
        if self.outbox.capacity() < OUTBOX_RESERVE {
            return 0;
        }
        self.info.slots.saturating_sub(self.in_use)
    }

    /// Whether ready work may be waiting for this session's slots.
    fn may_have_work(&self, ready_epoch: u64) -> bool {
        self.capped || self.clean_at.is_none_or(|clean| clean < ready_epoch)
    }
}

#[derive(Debug, Clone)]
struct Held {
    session_id: String,
    run_id: String,
    token: String,
    /// The chain and version the run pinned, when this replica leased the
    /// attempt (not for leases re-attached at Hello): settling the lease
    /// then needs no read of the run.
    chain: Option<(String, i64)>,
}

/// A lease's run, and its pinned chain when known (see `Held::chain`).
struct LeaseRun {
    run_id: String,
    chain: Option<(String, i64)>,
}

impl Dispatcher {
    pub fn new(kernel: Kernel, config: DispatchConfig) -> Dispatcher {
        let dispatcher = Dispatcher {
            inner: Arc::new(Inner {
                kernel,
                config,
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                fencing_rejections: AtomicU64::new(0),
                publish: Notify::new(),
            }),
        };
        dispatcher
            .inner
            .kernel
            .register_slots(Arc::new(SessionSlots(dispatcher.clone())));
        dispatcher
            .inner
            .kernel
            .observe_runs(Arc::new(LeaseWatch(dispatcher.clone())));
        dispatcher
    }

    pub fn kernel(&self) -> &Kernel {
        &self.inner.kernel
    }

    pub fn config(&self) -> &DispatchConfig {
        &self.inner.config
    }

    /// Stale or foreign lease operations rejected so far on this replica.
    pub fn fencing_rejections(&self) -> u64 {
        self.inner.fencing_rejections.load(Ordering::Relaxed)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a session: re-attaches the leases it still holds, registers it
    /// and queues the `Welcome`. Returns the session id and its outbound
    /// stream.
    pub async fn open(&self, hello: Hello) -> (String, Outbound) {
        let session_id = uuid::Uuid::now_v7().to_string();
        let (outbox, messages) = mpsc::channel(OUTBOX);
        let (end, ended) = oneshot::channel();
        let outbound = Outbound {
            messages,
            end: Some(ended),
            ended: false,
        };
        let mut reattached = Vec::new();
        let mut rejected = Vec::new();
        let mut attach = Vec::new();
        for lease in &hello.held_leases {
            match self
                .inner
                .kernel
                .store()
                .get_attempt(&lease.attempt_id)
                .await
            {
                Ok(attempt)
                    if attempt.status == AttemptStatus::Leased
                        && attempt.lease_token.as_deref() == Some(lease.lease_token.as_str()) =>
                {
                    attach.push((
                        attempt.id.clone(),
                        attempt.run_id.clone(),
                        lease.lease_token.clone(),
                    ));
                    reattached.push(lease.clone());
                }
                _ => rejected.push(lease.clone()),
            }
        }
        let now = crate::kernel::now();
        let welcome = pb::ServerMessage {
            msg: Some(ServerMsg::Welcome(pb::Welcome {
                session_id: session_id.clone(),
                heartbeat_interval: Some(proto_duration(self.inner.config.heartbeat_interval)),
                heartbeat_timeout: Some(proto_duration(self.inner.config.heartbeat_timeout)),
                reattached,
                rejected,
                replica: self.inner.kernel.instance_id().to_string(),
            })),
        };
        // The outbox is empty: this cannot fail.
        let _ = outbox.try_send(welcome);
        let caps = &self.inner.kernel.config().caps;
        let capped =
            caps.limits_tenants() || hello.queues.iter().any(|queue| caps.queue(queue).is_some());
        {
            let mut state = self.state();
            let mut session = Session {
                info: SessionInfo {
                    session_id: session_id.clone(),
                    worker_id: hello.worker_id,
                    name: hello.name,
                    queues: hello.queues,
                    slots: hello.slots,
                    leases_held: 0,
                    labels: hello.labels,
                    sdk_version: hello.sdk_version,
                    replica: self.inner.kernel.instance_id().to_string(),
                    connected_at: now,
                    last_heartbeat: now,
                    fenced_operations: 0,
                },
                in_use: 0,
                outbox,
                end: Some(end),
                clean_at: None,
                capped,
            };
            for (attempt_id, run_id, token) in attach {
                // A lease re-attached by an older session of this worker
                // moves to this one.
                if let Some(previous) = state.held.remove(&attempt_id)
                    && let Some(old) = state.sessions.get_mut(&previous.session_id)
                {
                    old.in_use = old.in_use.saturating_sub(1);
                }
                session.in_use += 1;
                state
                    .by_run
                    .entry(run_id.clone())
                    .or_default()
                    .insert(attempt_id.clone());
                state.held.insert(
                    attempt_id,
                    Held {
                        session_id: session_id.clone(),
                        run_id,
                        token,
                        chain: None,
                    },
                );
            }
            state.sessions.insert(session_id.clone(), session);
        }
        self.inner.wake.notify_one();
        self.inner.publish.notify_one();
        (session_id, outbound)
    }

    /// Closes a session: it gets no more offers; the leases it holds stay
    /// valid until they expire (its worker may re-attach them).
    pub fn close(&self, session_id: &str) {
        self.remove_session(session_id);
    }

    /// Closes a session that failed the liveness check (a ping unanswered
    /// past the heartbeat timeout): its leases end at once, counted as
    /// lease expiries, so other workers get their tasks now.
    pub fn abandon(&self, session_id: &str) {
        for (attempt_id, held) in self.remove_session(session_id) {
            let kernel = self.inner.kernel.clone();
            tokio::spawn(async move {
                if let Err(error) = kernel
                    .expire_lease(&held.run_id, &attempt_id, &held.token)
                    .await
                {
                    tracing::info!(attempt_id = %attempt_id, error = %error, "ending an abandoned lease failed");
                }
            });
        }
    }

    /// Removes a session and the leases it holds from this replica's
    /// bookkeeping; returns those leases.
    fn remove_session(&self, session_id: &str) -> Vec<(String, Held)> {
        let mut state = self.state();
        if state.sessions.remove(session_id).is_none() {
            return Vec::new();
        }
        let attempt_ids: Vec<String> = state
            .held
            .iter()
            .filter(|(_, held)| held.session_id == session_id)
            .map(|(attempt_id, _)| attempt_id.clone())
            .collect();
        let mut dropped = Vec::with_capacity(attempt_ids.len());
        for attempt_id in attempt_ids {
            if let Some(held) = state.held.remove(&attempt_id) {
                forget_run_attempt(&mut state, &held.run_id, &attempt_id);
                dropped.push((attempt_id, held));
            }
        }
        drop(state);
        self.inner.publish.notify_one();
        dropped
    }

    /// Notes a sign of life from a session.
    pub fn alive(&self, session_id: &str) {
        if let Some(session) = self.state().sessions.get_mut(session_id) {
            session.info.last_heartbeat = crate::kernel::now();
        }
    }

    /// Changes a session's slot count.
    pub fn set_slots(&self, session_id: &str, slots: u32) {
        if let Some(session) = self.state().sessions.get_mut(session_id) {
            session.info.slots = slots;
        }
        self.inner.wake.notify_one();
    }

    /// The run of an attempt, from this replica's leases or the store.
    async fn run_of(&self, attempt_id: &str) -> Result<LeaseRun, KernelError> {
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
    async fn chain_of(&self, lease: &LeaseRun) -> Result<Arc<CompiledChain>, KernelError> {
        match &lease.chain {
            Some((chain_id, version)) => self.inner.kernel.chain(chain_id, *version).await,
            None => self.inner.kernel.run_chain(&lease.run_id).await,
        }
    }

    /// Forgets a lease this replica held (it was completed, failed,
    /// released or lost) and frees its slot; returns what was held.
    fn forget(&self, attempt_id: &str) -> Option<Held> {
        let mut state = self.state();
        let held = state.held.remove(attempt_id)?;
        let ready_epoch = state.ready_epoch;
        let wake = state
            .sessions
            .get_mut(&held.session_id)
            .is_some_and(|session| {
                session.in_use = session.in_use.saturating_sub(1);
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
    fn restore(&self, attempt_id: &str, held: Held) {
        let mut state = self.state();
        if state.held.contains_key(attempt_id) {
            return;
        }
        let Some(session) = state.sessions.get_mut(&held.session_id) else {
            return;
        };
        session.in_use += 1;
        state
            .by_run
            .entry(held.run_id.clone())
            .or_default()
            .insert(attempt_id.to_string());
        state.held.insert(attempt_id.to_string(), held);
    }

    /// Counts a lease operation of `session_id` refused by fencing.
    pub fn fenced(&self, session_id: &str) {
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
        let lease = self.run_of(attempt_id).await?;
        let chain = self.chain_of(&lease).await?;
        let settled = self.settle(attempt_id, token);
        let result = self
            .inner
            .kernel
            .complete_in(
                chain,
                &lease.run_id,
                attempt_id,
                token,
                TaskSuccess::output(output),
            )
            .await;
        self.after_settle(attempt_id, settled, &result);
        result.map(|_| ())
    }

    /// Fails a leased attempt; tells whether another attempt was scheduled.
    pub async fn fail(
        &self,
        attempt_id: &str,
        token: &str,
        failure: TaskFailure,
    ) -> Result<bool, KernelError> {
        let lease = self.run_of(attempt_id).await?;
        let chain = self.chain_of(&lease).await?;
        let settled = self.settle(attempt_id, token);
        let run_id = lease.run_id;
        let result = self
            .inner
            .kernel
            .fail_in(chain, &run_id, attempt_id, token, failure)
            .await;
        self.after_settle(attempt_id, settled, &result);
        result?;
        let attempt = self.inner.kernel.store().get_attempt(attempt_id).await?;
        let retry = self
            .inner
            .kernel
            .store()
            .list_attempts(
                &run_id,
                crate::store::PageQuery {
                    limit: 1000,
                    after: Some(attempt.step.to_string()),
                },
            )
            .await?;
        Ok(retry
            .items
            .iter()
            .any(|a| a.task_id == attempt.task_id && a.attempt == attempt.attempt + 1))
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
    fn settle(&self, attempt_id: &str, token: &str) -> Option<Held> {
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
    fn after_settle<T>(
        &self,
        attempt_id: &str,
        settled: Option<Held>,
        result: &Result<T, KernelError>,
    ) {
        self.count_rejection(result);
        if let (Some(held), Err(error)) = (settled, result)
            && !lease_gone(error)
        {
            self.restore(attempt_id, held);
        }
    }

    /// Counts a fencing rejection (a lease operation refused as stale or
    /// foreign).
    fn count_rejection<T>(&self, result: &Result<T, KernelError>) {
        if let Err(KernelError::FailedPrecondition(_)) = result {
            self.inner
                .fencing_rejections
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Extends the leases a heartbeat names; the ones no longer valid get a
    /// `CancelLease` so the worker stops them. A refused lease is forgotten
    /// only if it is the sender's own under that token: a heartbeat naming
    /// another worker's lease with a wrong token changes nothing.
    pub async fn heartbeat(&self, session_id: &str, active: Vec<pb::LeaseRef>) {
        let lease = self.inner.config.lease;
        for lease_ref in active {
            let result = self
                .extend(&lease_ref.attempt_id, &lease_ref.lease_token, lease)
                .await;
            let error = match result {
                Ok(_) => continue,
                Err(error) if lease_gone(&error) => error,
                Err(error) => {
                    // The lease may still be valid: the next heartbeat tries
                    // again.
                    tracing::info!(attempt_id = %lease_ref.attempt_id, error = %error, "extending a lease failed");
                    continue;
                }
            };
            if let KernelError::FailedPrecondition(_) = error {
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

    /// Queues a message on a session's stream; false if it cannot be sent.
    pub fn send(&self, session_id: &str, msg: ServerMsg) -> bool {
        let outbox = match self.state().sessions.get(session_id) {
            Some(session) => session.outbox.clone(),
            None => return false,
        };
        // Never waits: a worker that stopped reading fills its outbox, and
        // what does not fit counts as not sent.
        outbox
            .try_send(pb::ServerMessage { msg: Some(msg) })
            .is_ok()
    }

    /// Ends a session's stream with `status` at once, ahead of whatever
    /// its outbox still holds (the session closes after).
    pub fn end(&self, session_id: &str, status: Status) {
        let end = self
            .state()
            .sessions
            .get_mut(session_id)
            .and_then(|session| session.end.take());
        if let Some(end) = end {
            let _ = end.send(status);
        }
    }

    /// Sessions on this replica, optionally of one queue, by session id.
    pub fn sessions(&self, queue: Option<&str>) -> Vec<SessionInfo> {
        let state = self.state();
        let mut held: HashMap<&str, u32> = HashMap::new();
        for lease in state.held.values() {
            *held.entry(lease.session_id.as_str()).or_default() += 1;
        }
        let mut sessions: Vec<SessionInfo> = state
            .sessions
            .values()
            .filter(|s| queue.is_none_or(|q| s.info.queues.iter().any(|own| own == q)))
            .map(|s| SessionInfo {
                leases_held: held.get(s.info.session_id.as_str()).copied().unwrap_or(0),
                ..s.info.clone()
            })
            .collect();
        sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        sessions
    }

    /// Every replica's sessions (this one's live, the others' as last
    /// published), optionally of one queue, by session id.
    pub async fn all_sessions(&self, queue: Option<&str>) -> Result<Vec<SessionInfo>, KernelError> {
        let mut sessions = self.sessions(queue);
        let fresh =
            chrono::Duration::from_std(self.published_freshness()).unwrap_or(chrono::Duration::MAX);
        let replica = self.inner.kernel.instance_id();
        let published = self
            .inner
            .kernel
            .store()
            .list_sessions(crate::kernel::now() - fresh)
            .await?;
        sessions.extend(
            published
                .into_iter()
                .filter(|s| s.replica != replica)
                .filter(|s| queue.is_none_or(|q| s.queues.iter().any(|own| own == q))),
        );
        sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        Ok(sessions)
    }

    /// How recent another replica's published sessions must be to count.
    fn published_freshness(&self) -> Duration {
        (self.inner.config.heartbeat_interval * 3).max(self.inner.config.heartbeat_timeout)
    }

    /// Publishes this replica's sessions every heartbeat interval (and when
    /// one opens or closes) until `stop`, for `ListWorkers` elsewhere.
    pub async fn publish_sessions(self, mut stop: watch::Receiver<bool>) {
        loop {
            let now = crate::kernel::now();
            let records = self.sessions(None);
            let forget_before = now - chrono::Duration::hours(1);
            if let Err(error) = self
                .inner
                .kernel
                .store()
                .publish_sessions(
                    self.inner.kernel.instance_id(),
                    &records,
                    now,
                    forget_before,
                )
                .await
            {
                tracing::debug!(error = %error, "publishing worker sessions failed");
            }
            tokio::select! {
                () = tokio::time::sleep(self.inner.config.heartbeat_interval) => {}
                () = self.inner.publish.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Hands a leased, committed attempt to a session: registers the lease
    /// and sends the offer; if the offer cannot be sent, releases the lease.
    fn deliver(&self, session_id: String, claimed: ClaimedAttempt) {
        let attempt_id = claimed.attempt.id.clone();
        let run_id = claimed.attempt.run_id.clone();
        let token = claimed.attempt.lease_token.clone().unwrap_or_default();
        let superseded = {
            let mut state = self.state();
            if state.sessions.contains_key(&session_id) {
                state
                    .by_run
                    .entry(run_id.clone())
                    .or_default()
                    .insert(attempt_id.clone());
                let previous = state.held.insert(
                    attempt_id.clone(),
                    Held {
                        session_id: session_id.clone(),
                        run_id: run_id.clone(),
                        token: token.clone(),
                        chain: Some((claimed.chain_id.clone(), claimed.chain_version)),
                    },
                );
                // An earlier lease on this attempt that the check of its
                // run has not caught yet: it is gone, and its slot with it.
                previous.inspect(|previous| {
                    if let Some(old) = state.sessions.get_mut(&previous.session_id) {
                        old.in_use = old.in_use.saturating_sub(1);
                    }
                })
            } else {
                None
            }
        };
        if let Some(previous) = superseded {
            self.send(
                &previous.session_id,
                ServerMsg::Cancel(pb::CancelLease {
                    lease: Some(pb::LeaseRef {
                        attempt_id: attempt_id.clone(),
                        lease_token: previous.token,
                    }),
                    reason: "lease expired".to_string(),
                }),
            );
        }
        let dispatcher = self.clone();
        tokio::spawn(async move {
            let offer = dispatcher.offer(&claimed).await;
            let sent = match offer {
                Ok(offer) => dispatcher.send(&session_id, ServerMsg::Lease(offer)),
                Err(error) => {
                    tracing::warn!(attempt_id = %attempt_id, error = %error, "cannot build a lease offer");
                    false
                }
            };
            if !sent {
                // Commit the lease, then send; a failed send releases it.
                dispatcher.forget(&attempt_id);
                if let Err(error) = dispatcher
                    .inner
                    .kernel
                    .release_lease(&run_id, &attempt_id, &token)
                    .await
                {
                    tracing::info!(attempt_id = %attempt_id, error = %error, "releasing an undelivered lease failed");
                }
            }
        });
    }

    /// The offer of a leased attempt.
    async fn offer(&self, claimed: &ClaimedAttempt) -> Result<pb::LeaseOffer, KernelError> {
        let attempt = &claimed.attempt;
        let chain = self
            .inner
            .kernel
            .chain(&claimed.chain_id, claimed.chain_version)
            .await?;
        let task = chain.task(&attempt.task_id);
        let input = value::decode(&attempt.input).map_err(KernelError::Corrupt)?;
        // A hook routed to a queue: its rendered arguments (kept as a JSON
        // object where other tasks keep their prompt) travel as `args`.
        let is_hook = task.is_some_and(|task| task.handler == Handler::Hook);
        let (prompt, args) = match (&attempt.prompt, is_hook) {
            (Some(json), true) => (String::new(), hook_args(json)),
            (prompt, _) => (prompt.clone().unwrap_or_default(), Default::default()),
        };
        Ok(pb::LeaseOffer {
            attempt_id: attempt.id.clone(),
            lease_token: attempt.lease_token.clone().unwrap_or_default(),
            task_id: attempt.task_id.clone(),
            run_id: attempt.run_id.clone(),
            chain_id: claimed.chain_id.clone(),
            chain_version: claimed.chain_version,
            handler: task
                .map(|task| task.handler.name().to_string())
                .unwrap_or_default(),
            queue: attempt.queue.clone(),
            input: Some(input),
            prompt,
            system_instruction: task
                .and_then(|task| task.system_instruction.clone())
                .unwrap_or_default(),
            args,
            lease_expire_time: attempt.lease_expires_at.map(proto_time),
            deadline: attempt.deadline.map(proto_time),
            attempt: attempt.attempt,
            traceparent: traceparent(&attempt.run_id, &attempt.id),
        })
    }

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
    /// due, until `stop`. Each such round runs on its own, a few at once
    /// (slots are reserved per claim): work falling due while an earlier
    /// claim is still in the store is not held up.
    async fn dispatch_when_due(self, mut stop: watch::Receiver<bool>) {
        let rounds = Arc::new(tokio::sync::Semaphore::new(ROUNDS_WHEN_DUE));
        let poll = self.inner.config.poll_interval;
        loop {
            let fell_due = tokio::select! {
                fell_due = self.inner.kernel.sleep_until_due(ClaimLoop::Workers, poll) => fell_due,
                _ = stop.changed() => return,
            };
            if !fell_due {
                continue;
            }
            let Ok(permit) = rounds.clone().acquire_owned().await else {
                return;
            };
            let dispatcher = self.clone();
            tokio::spawn(async move {
                match dispatcher.dispatch_round(Round::WhenDue).await {
                    Ok(true) => dispatcher.inner.wake.notify_one(),
                    Ok(false) => {}
                    // The dispatch loop logs store faults and backs off.
                    Err(error) => {
                        tracing::debug!(error = %error, "claiming work fallen due failed")
                    }
                }
                drop(permit);
            });
        }
    }

    /// One claim per session with free slots (for ready work: those that
    /// may have some); true if some claim was full (more may be waiting).
    /// The error of a failed claim, after the others were made.
    async fn dispatch_round(&self, round: Round) -> Result<bool, KernelError> {
        let (ready_epoch, wanting) = {
            let mut state = self.state();
            let (most, ready_epoch) = match round {
                Round::ReadyWork => (MAX_CLAIM, state.ready_epoch),
                Round::WhenDue => {
                    // Sessions without room now claim when a slot frees.
                    if state.sessions.values().any(|s| s.free() == 0) {
                        state.ready_epoch += 1;
                    }
                    (MAX_CLAIM_WHEN_DUE, state.ready_epoch)
                }
            };
            // Read before the claims: work made ready while they run bumps
            // it.
            let wanting: Vec<(String, String, Vec<String>, u32)> = state
                .sessions
                .values_mut()
                .filter(|s| {
                    s.free() > 0 && (round == Round::WhenDue || s.may_have_work(ready_epoch))
                })
                .map(|s| {
                    let take = s.free().min(most);
                    // Reserved until the claim returns.
                    s.in_use += take;
                    (
                        s.info.session_id.clone(),
                        s.info.worker_id.clone(),
                        s.info.queues.clone(),
                        take,
                    )
                })
                .collect();
            (ready_epoch, wanting)
        };
        let mut full = false;
        let mut failed = None;
        let mut short = false;
        for (session_id, worker_id, queues, take) in wanting {
            let (claimed, found_all) =
                match self.inner.kernel.claim(&queues, &worker_id, take).await {
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
            let freed_for_more = {
                let mut state = self.state();
                let current_epoch = state.ready_epoch;
                state.sessions.get_mut(&session_id).is_some_and(|session| {
                    // Keep one slot per claimed attempt; give the rest back.
                    session.in_use = session.in_use.saturating_sub(take - claimed.len() as u32);
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

    /// Checks the leases this replica holds on `run_ids` and cancels, on
    /// their sessions, those no longer leased under their token.
    async fn check_runs(&self, run_ids: Vec<String>) {
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
            if let Some(reason) = lost_reason(&record, &held.token) {
                // Only if the lease is still registered: a completion in
                // flight forgets it first.
                let still_held = self
                    .state()
                    .held
                    .get(&attempt_id)
                    .is_some_and(|h| h.token == held.token);
                if still_held {
                    self.forget(&attempt_id);
                    self.send(
                        &held.session_id,
                        ServerMsg::Cancel(pb::CancelLease {
                            lease: Some(pb::LeaseRef {
                                attempt_id: attempt_id.clone(),
                                lease_token: held.token.clone(),
                            }),
                            reason,
                        }),
                    );
                }
            }
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

/// What a dispatch round claims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// Work made ready (signals, freed slots, the poll): sessions that may
    /// have some claim up to `MAX_CLAIM`.
    ReadyWork,
    /// Work that fell due: every session with room claims, up to
    /// `MAX_CLAIM_WHEN_DUE`.
    WhenDue,
}

/// A session's outbound stream: the messages queued in its outbox until
/// the session is ended with a status, which is sent at once in place of
/// whatever is still queued (a worker that stopped reading must not hold
/// its own ending back). A session closed without a status ends after its
/// queued messages.
pub struct Outbound {
    messages: mpsc::Receiver<pb::ServerMessage>,
    end: Option<oneshot::Receiver<Status>>,
    ended: bool,
}

impl tokio_stream::Stream for Outbound {
    type Item = Result<pb::ServerMessage, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(end) = self.end.as_mut()
            && let Poll::Ready(ended) = std::pin::Pin::new(end).poll(cx)
        {
            self.end = None;
            if let Ok(status) = ended {
                self.ended = true;
                return Poll::Ready(Some(Err(status)));
            }
        }
        self.messages.poll_recv(cx).map(|message| message.map(Ok))
    }
}

/// Rendered hook arguments (a JSON object of strings) as a map.
fn hook_args(json: &str) -> BTreeMap<String, String> {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json)
        .map(|object| {
            object
                .into_iter()
                .map(|(name, value)| match value {
                    serde_json::Value::String(text) => (name, text),
                    other => (name, other.to_string()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a lease operation's error means the lease is no longer held
/// under its token (stale, foreign, or an unknown attempt), rather than a
/// failure that leaves it valid.
fn lease_gone(error: &KernelError) -> bool {
    matches!(
        error,
        KernelError::FailedPrecondition(_) | KernelError::NotFound(_)
    )
}

fn forget_run_attempt(state: &mut State, run_id: &str, attempt_id: &str) {
    if let Some(attempts) = state.by_run.get_mut(run_id) {
        attempts.remove(attempt_id);
        if attempts.is_empty() {
            state.by_run.remove(run_id);
        }
    }
}

/// Why a lease held under `token` is gone, if it is.
fn lost_reason(attempt: &AttemptRecord, token: &str) -> Option<String> {
    if attempt.status == AttemptStatus::Leased && attempt.lease_token.as_deref() == Some(token) {
        return None;
    }
    Some(match attempt.status {
        AttemptStatus::Cancelled => "run cancelled or paused".to_string(),
        AttemptStatus::TimedOut => "the task's timeout passed".to_string(),
        AttemptStatus::Ready | AttemptStatus::Leased => "lease expired".to_string(),
        other => format!("attempt is {}", other.as_str()),
    })
}

/// Offers this replica's free worker slots to the kernel's eager dispatch.
struct SessionSlots(Dispatcher);

impl SlotProvider for SessionSlots {
    fn reserve(&self, queue: &str) -> Option<Box<dyn Slot>> {
        let dispatcher = &self.0;
        let mut state = dispatcher.state();
        let turn = state.turn;
        state.turn = state.turn.wrapping_add(1);
        // Sessions in id order from a rotating start: offers spread evenly.
        let mut candidates: Vec<&String> = state
            .sessions
            .iter()
            .filter(|(_, s)| s.free() > 0 && s.info.queues.iter().any(|q| q == queue))
            .map(|(id, _)| id)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        candidates.sort();
        let chosen = candidates[turn % candidates.len()].clone();
        let session = state.sessions.get_mut(&chosen)?;
        session.in_use += 1;
        Some(Box::new(SessionSlot {
            dispatcher: dispatcher.clone(),
            session_id: session.info.session_id.clone(),
            owner: session.info.worker_id.clone(),
            delivered: false,
        }))
    }
}

struct SessionSlot {
    dispatcher: Dispatcher,
    session_id: String,
    owner: String,
    delivered: bool,
}

impl Slot for SessionSlot {
    fn owner(&self) -> String {
        self.owner.clone()
    }

    fn deliver(mut self: Box<Self>, attempt: ClaimedAttempt) {
        self.delivered = true;
        self.dispatcher.deliver(self.session_id.clone(), attempt);
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if !self.delivered
            && let Some(session) = self.dispatcher.state().sessions.get_mut(&self.session_id)
        {
            session.in_use = session.in_use.saturating_sub(1);
        }
    }
}

/// Hears which runs changed and checks the leases held on them.
struct LeaseWatch(Dispatcher);

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
}

fn proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: duration.as_secs() as i64,
        nanos: duration.subsec_nanos() as i32,
    }
}

fn proto_time(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// A W3C trace context: the run is the trace, the attempt a span in it.
fn traceparent(run_id: &str, attempt_id: &str) -> String {
    let trace: String = run_id.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let span: String = attempt_id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .rev()
        .take(16)
        .collect();
    if trace.len() != 32 || span.len() != 16 {
        return String::new();
    }
    format!("00-{}-{}-01", trace.to_lowercase(), span.to_lowercase())
}
