//! One worker session's stream: the loop that serves its inbound messages
//! (already decoded and checked by the API), pings the worker and closes a
//! session that stops reading, and applies the messages about one lease in
//! stream order.

use std::collections::{HashMap, VecDeque};
use std::future::Future;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt};

use super::{Dispatcher, Hello, Outbound, Outgoing, ServerMsg, SessionEnd};
use crate::kernel::{KernelError, TaskFailure};
use crate::proto::taskloom::v1 as pb;
use crate::store::StoreError;

/// Most pings awaiting an answer; none is sent beyond them (the oldest
/// closes the session when its time is up).
const MAX_UNANSWERED_PINGS: usize = 64;

/// A message a worker sent on its stream, decoded and checked.
pub enum Inbound {
    /// The leases the worker is running: extended, or cancelled if lost.
    Heartbeat(Vec<pb::LeaseRef>),
    /// The answer to a ping.
    Pong(i64),
    SetSlots(u32),
    /// A message about one lease, applied after the previous one about it.
    Lease(LeaseMessage),
    /// A message that changes nothing (it still proves the stream is read);
    /// logged with why, when one is given.
    Ignored(Option<String>),
}

/// A message naming a lease (as the worker named it, even if invalid).
pub struct LeaseMessage {
    pub lease: pb::LeaseRef,
    pub op: LeaseOp,
}

pub enum LeaseOp {
    Complete(pb::Value),
    Fail(TaskFailure),
    Release,
    /// Acknowledged only when refused.
    Progress {
        message: String,
        data: Option<prost_types::Struct>,
    },
    /// Refused before it reached the kernel (an invalid message): its
    /// `Ack`, sent in its turn.
    Refused(pb::Ack),
}

/// The stream broke (the transport's description).
#[derive(Debug)]
pub struct StreamBroken(pub String);

impl Dispatcher {
    /// Opens a session for `hello` and serves its `inbound` messages in the
    /// background until the stream ends, a ping goes unanswered past the
    /// heartbeat timeout, or `drained` resolves (the server is stopping).
    /// Returns the session's outbound stream.
    pub async fn connect<S, D>(&self, hello: Hello, inbound: S, drained: D) -> Outbound
    where
        S: Stream<Item = Result<Inbound, StreamBroken>> + Send + Unpin + 'static,
        D: Future<Output = ()> + Send + 'static,
    {
        let (session_id, outbound) = self.open(hello).await;
        tokio::spawn(self.clone().serve(session_id, inbound, drained));
        outbound
    }

    async fn serve<S, D>(self, session_id: String, mut inbound: S, drained: D)
    where
        S: Stream<Item = Result<Inbound, StreamBroken>> + Unpin,
        D: Future<Output = ()>,
    {
        let interval = self.inner.config.heartbeat_interval;
        let timeout = self.inner.config.heartbeat_timeout;
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        // Pings not answered yet, oldest first: (nonce, sent). Liveness is a
        // worker that reads its stream: a heartbeat proves only that it
        // writes.
        let mut unanswered: VecDeque<(i64, Instant)> = VecDeque::new();
        // Messages about one lease are applied in stream order (progress
        // before the completion that follows it); different leases go in
        // parallel.
        let mut pending = LeaseOrder::default();
        // Read once, while the session is surely registered: lease
        // messages still in flight when it closes keep their namespace.
        let namespace = self.session_namespace(&session_id).unwrap_or_default();
        tokio::pin!(drained);
        loop {
            let answer_due = unanswered.front().map(|(_, sent)| *sent + timeout);
            let message = tokio::select! {
                message = inbound.next() => message,
                _ = ping.tick() => {
                    if unanswered.len() < MAX_UNANSWERED_PINGS {
                        // Unguessable, so only a worker that read the ping
                        // can answer it. A ping the outbox has no room for
                        // stays unanswered.
                        let nonce = rand::random::<i64>();
                        unanswered.push_back((nonce, Instant::now()));
                        self.send(&session_id, ServerMsg::Ping(pb::Ping { nonce }));
                    }
                    continue;
                }
                () = sleep_until(answer_due) => {
                    tracing::info!(session_id = %session_id, "worker session left a ping unanswered past the heartbeat timeout; closing it and ending its leases");
                    self.end(&session_id, SessionEnd::Silent);
                    self.abandon(&session_id);
                    return;
                }
                () = &mut drained => {
                    self.end(&session_id, SessionEnd::ShuttingDown);
                    break;
                }
            };
            let message = match message {
                Some(Ok(message)) => message,
                None => break,
                Some(Err(StreamBroken(error))) => {
                    tracing::info!(session_id = %session_id, error = %error, "worker stream broke");
                    break;
                }
            };
            self.alive(&session_id);
            match message {
                Inbound::Heartbeat(active) => {
                    let dispatcher = self.clone();
                    let session_id = session_id.clone();
                    tokio::spawn(async move { dispatcher.heartbeat(&session_id, active).await });
                }
                Inbound::Pong(nonce) => {
                    // Answers this ping and every earlier one (stream order).
                    if let Some(index) = unanswered.iter().position(|(sent, _)| *sent == nonce) {
                        unanswered.drain(..=index);
                    }
                }
                Inbound::SetSlots(slots) => self.set_slots(&session_id, slots),
                Inbound::Lease(message) => pending.spawn(&self, (&namespace, &session_id), message),
                Inbound::Ignored(None) => {}
                Inbound::Ignored(Some(why)) => {
                    tracing::info!(session_id = %session_id, "{why}");
                }
            }
        }
        self.close(&session_id);
    }

    /// Applies one lease message and acknowledges it on the session's
    /// stream (progress only when refused).
    async fn apply(&self, (namespace, session_id): (&str, &str), message: LeaseMessage) {
        let LeaseMessage { lease, op } = message;
        let (attempt_id, token) = (&lease.attempt_id, &lease.lease_token);
        let own = self.require_in(namespace, attempt_id).await;
        let (result, ack_success) = match op {
            LeaseOp::Refused(ack) => {
                self.send(session_id, ServerMsg::Ack(ack));
                return;
            }
            _ if own.is_err() => (own, true),
            LeaseOp::Complete(output) => (self.complete(attempt_id, token, output).await, true),
            LeaseOp::Fail(failure) => (
                self.fail(attempt_id, token, failure).await.map(|_| ()),
                true,
            ),
            LeaseOp::Release => (self.release(attempt_id, token).await, true),
            LeaseOp::Progress { message, data } => {
                (self.progress(attempt_id, token, message, data).await, false)
            }
        };
        if let Err(error) = &result
            && counts_as_fenced(error)
        {
            self.fenced(session_id);
        }
        if ack_success || result.is_err() {
            self.push(session_id, Outgoing::Ack(lease, result));
        }
    }
}

/// Whether a refusal counts on the session as a fenced operation: every
/// refusal for the state of the lease or of its run.
fn counts_as_fenced(error: &KernelError) -> bool {
    matches!(
        error,
        KernelError::LeaseFenced(_)
            | KernelError::RunNotActive(_)
            | KernelError::WrongRunState(_)
            | KernelError::Contended(_)
            | KernelError::Store(
                StoreError::FailedPrecondition(_) | StoreError::ChainChanged { .. }
            )
    )
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The last message started on each lease of a session, by attempt id.
#[derive(Default)]
struct LeaseOrder(HashMap<String, JoinHandle<()>>);

impl LeaseOrder {
    /// Applies `message` in the background, after the previous message
    /// about the same lease.
    fn spawn(
        &mut self,
        dispatcher: &Dispatcher,
        (namespace, session_id): (&str, &str),
        message: LeaseMessage,
    ) {
        let key = message.lease.attempt_id.clone();
        let previous = self.0.remove(&key);
        let dispatcher = dispatcher.clone();
        let (namespace, session_id) = (namespace.to_string(), session_id.to_string());
        let task = tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            dispatcher.apply((&namespace, &session_id), message).await;
        });
        self.0.retain(|_, task| !task.is_finished());
        self.0.insert(key, task);
    }
}
