//! Remote workers on this replica: their sessions (one per `Connect`
//! stream), the leases they hold, and the offers sent to them. State
//! transitions stay in the kernel; this module decides who gets which
//! attempt and talks to the streams.
//!
//! Rooms: `mod.rs` (sessions: open, close, abandon, send, end), `session`
//! (one session's stream loop), `leases` (the lease book and lease
//! operations), `claim_loop`, `offer` (delivery and offer encoding),
//! `slots` (lock-free session slots, offered to eager dispatch), `sessions`
//! (every replica's sessions).
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
//!   (`session`) pings every heartbeat interval and abandons a session
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

mod claim_loop;
mod leases;
mod offer;
mod session;
mod sessions;
mod slots;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::kernel::Kernel;
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptStatus, WorkerSessionRecord};
use leases::{LeaseWatch, forget_run_attempt};
use slots::{Seat, Seats, SessionSlots};

mod workers;

pub(crate) use claim_loop::when_due;
pub use pb::server_message::Msg as ServerMsg;
pub use session::{Inbound, LeaseMessage, LeaseOp, StreamBroken};

/// Most attempts leased to one session by one claim.
const MAX_CLAIM: u32 = 64;
/// Most attempts leased to one session by a claim for work falling due:
/// few fall due at once, and rounds running together must leave each other
/// slots.
const MAX_CLAIM_WHEN_DUE: u32 = 16;
/// Outbound messages queued per session before sends count as failed.
const OUTBOX: usize = 1024;
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
    /// Every session's slots, for eager dispatch (no lock of `state`).
    seats: Seats,
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
    /// Counts the signs that ready work may be waiting for a slot (ready
    /// work left after a commit, a change on another replica, the safety
    /// poll); see `Session::clean_at`.
    ready_epoch: u64,
}

struct Session {
    /// As opened (its slot count is the seat's).
    info: SessionInfo,
    seat: Arc<Seat>,
    /// Ends the session's stream at once (see [`Outbound`]).
    end: Option<oneshot::Sender<SessionEnd>>,
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
    chain: Option<(String, String, i64)>,
}

impl Dispatcher {
    pub fn new(kernel: Kernel, config: DispatchConfig) -> Dispatcher {
        let dispatcher = Dispatcher {
            inner: Arc::new(Inner {
                kernel,
                config,
                state: Mutex::new(State::default()),
                seats: Seats::default(),
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
    async fn open(&self, hello: Hello) -> (String, Outbound) {
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
        let welcome = Outgoing::Message(ServerMsg::Welcome(pb::Welcome {
            session_id: session_id.clone(),
            heartbeat_interval: Some(proto_duration(self.inner.config.heartbeat_interval)),
            heartbeat_timeout: Some(proto_duration(self.inner.config.heartbeat_timeout)),
            reattached,
            rejected,
            replica: self.inner.kernel.instance_id().to_string(),
        }));
        // The outbox is empty: this cannot fail.
        let _ = outbox.try_send(welcome);
        let caps = &self.inner.kernel.config().caps;
        let capped =
            caps.limits_tenants() || hello.queues.iter().any(|queue| caps.queue(queue).is_some());
        {
            let mut state = self.state();
            let seat = Seat::new(
                session_id.clone(),
                hello.worker_id.clone(),
                hello.slots,
                outbox,
            );
            let session = Session {
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
                seat: Arc::new(seat),
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
                    old.seat.give_back(1);
                }
                session.seat.hold();
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
            self.inner.seats.reindex(&state);
        }
        self.inner.wake.notify_one();
        self.inner.publish.notify_one();
        (session_id, outbound)
    }

    /// Closes a session: it gets no more offers; the leases it holds stay
    /// valid until they expire (its worker may re-attach them).
    fn close(&self, session_id: &str) {
        self.remove_session(session_id);
    }

    /// Closes a session that failed the liveness check (a ping unanswered
    /// past the heartbeat timeout): its leases end at once, counted as
    /// lease expiries, so other workers get their tasks now.
    fn abandon(&self, session_id: &str) {
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
        self.inner.seats.reindex(&state);
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
    fn alive(&self, session_id: &str) {
        if let Some(session) = self.state().sessions.get_mut(session_id) {
            session.info.last_heartbeat = crate::kernel::now();
        }
    }

    /// Changes a session's slot count.
    fn set_slots(&self, session_id: &str, slots: u32) {
        if let Some(session) = self.state().sessions.get(session_id) {
            session.seat.set_slots(slots);
        }
        self.inner.wake.notify_one();
    }

    /// Queues a message on a session's stream; false if it cannot be sent.
    fn send(&self, session_id: &str, msg: ServerMsg) -> bool {
        self.push(session_id, Outgoing::Message(msg))
    }

    fn push(&self, session_id: &str, item: Outgoing) -> bool {
        let outbox = match self.state().sessions.get(session_id) {
            Some(session) => session.seat.outbox.clone(),
            None => return false,
        };
        // Never waits: a worker that stopped reading fills its outbox, and
        // what does not fit counts as not sent.
        outbox.try_send(item).is_ok()
    }

    /// Ends a session's stream at once, ahead of whatever its outbox
    /// still holds (the session closes after).
    fn end(&self, session_id: &str, why: SessionEnd) {
        let end = self
            .state()
            .sessions
            .get_mut(session_id)
            .and_then(|session| session.end.take());
        if let Some(end) = end {
            let _ = end.send(why);
        }
    }
}

/// Why the server ends a session's stream (the API turns it into the
/// stream's final status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionEnd {
    /// A ping went unanswered past the heartbeat timeout.
    #[error("no answer to a ping within the heartbeat timeout; reconnect")]
    Silent,
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// What a session's stream carries.
// Most items are messages: boxing them would allocate for every offer.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outgoing {
    /// A message encoded here (welcome, offers, pings, cancellations).
    Message(ServerMsg),
    /// The outcome of a lease message the worker sent: the API encodes it
    /// as an `Ack` with the code and reason a unary call would get.
    Ack(pb::LeaseRef, Result<(), crate::kernel::KernelError>),
}

/// A session's outbound stream: the messages queued in its outbox until
/// the session is ended with a status, which is sent at once in place of
/// whatever is still queued (a worker that stopped reading must not hold
/// its own ending back). A session closed without a status ends after its
/// queued messages.
pub struct Outbound {
    messages: mpsc::Receiver<Outgoing>,
    end: Option<oneshot::Receiver<SessionEnd>>,
    ended: bool,
}

impl tokio_stream::Stream for Outbound {
    type Item = Result<Outgoing, SessionEnd>;

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

fn proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: duration.as_secs() as i64,
        nanos: duration.subsec_nanos() as i32,
    }
}
