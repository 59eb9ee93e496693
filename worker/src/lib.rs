//! A small Rust worker for taskloom's `WorkerService`: it holds a lease
//! stream to one of several server addresses, runs a handler for each offer
//! with bounded concurrency (the slots it announces), heartbeats the leases
//! it is running, stops a handler when the server cancels its lease, and
//! reconnects with capped exponential backoff and jitter, re-attaching the
//! leases it still holds. Completions reached while disconnected go through
//! the unary `CompleteTask`/`FailTask`.
//!
//! Used by the test suites (as a library and as the `taskloom-test-worker`
//! process they kill) and by the bench.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use taskloom_proto::taskloom::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use pb::server_message::Msg as ServerMsg;
use pb::worker_message::Msg as WorkerMsg;

/// How a worker connects and what it serves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Server addresses (`http://host:port`), tried in turn.
    pub addrs: Vec<String>,
    pub worker_id: String,
    pub queues: Vec<String>,
    pub slots: u32,
    /// Longest wait between reconnects.
    pub max_backoff: Duration,
}

/// What a handler returns: an output, or a failure (message, retryable).
pub type Outcome = Result<pb::Value, (String, bool)>;

/// Something that happened, for tests and the bench.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerEvent {
    Connected {
        session_id: String,
        replica: String,
    },
    Offered {
        attempt_id: String,
        run_id: String,
        at: Instant,
        /// Wall-clock arrival and the lease's expiry as the server set it.
        received: SystemTime,
        lease_expires: Option<SystemTime>,
    },
    /// The server accepted a completion or failure of this attempt.
    Settled {
        attempt_id: String,
        /// A completion (not a failure).
        completed: bool,
        at: Instant,
    },
    /// The server refused it (e.g. a stale lease).
    Refused {
        attempt_id: String,
        code: String,
    },
    Cancelled {
        attempt_id: String,
    },
    Disconnected,
}

struct Running {
    lease: pb::LeaseRef,
    task: tokio::task::JoinHandle<()>,
}

/// Runs a worker until `stop` turns true.
pub async fn run<H, F>(
    options: WorkerOptions,
    handler: H,
    events: mpsc::UnboundedSender<WorkerEvent>,
    mut stop: watch::Receiver<bool>,
) where
    H: Fn(pb::LeaseOffer) -> F + Send + Sync + Clone + 'static,
    F: Future<Output = Outcome> + Send + 'static,
{
    let running: Arc<Mutex<HashMap<String, Running>>> = Arc::default();
    let (results, mut finished) = mpsc::unbounded_channel::<(pb::LeaseRef, Outcome)>();
    let mut attempt: u32 = 0;
    let mut backoff = Duration::from_millis(50);
    loop {
        if *stop.borrow() {
            return;
        }
        let addr = &options.addrs[attempt as usize % options.addrs.len()];
        attempt += 1;
        let held: Vec<pb::LeaseRef> = running
            .lock()
            .map(|running| running.values().map(|r| r.lease.clone()).collect())
            .unwrap_or_default();
        let session = open(addr, &options, held).await;
        let Ok((channel, outbound, mut inbound, welcome)) = session else {
            // Unreachable: back off (capped, jittered) and try the next.
            let jitter = rand::random::<f64>() * 0.5 + 0.75;
            tokio::select! {
                () = tokio::time::sleep(backoff.mul_f64(jitter)) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(options.max_backoff);
            continue;
        };
        backoff = Duration::from_millis(50);
        let _ = events.send(WorkerEvent::Connected {
            session_id: welcome.session_id.clone(),
            replica: welcome.replica.clone(),
        });
        // Leases the server no longer knows: stop their handlers.
        for lease in &welcome.rejected {
            if let Some(gone) = running
                .lock()
                .ok()
                .and_then(|mut r| r.remove(&lease.attempt_id))
            {
                gone.task.abort();
            }
        }
        let interval = welcome
            .heartbeat_interval
            .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(5));
        let mut heartbeat = tokio::time::interval(interval);
        let mut workers_client = pb::worker_service_client::WorkerServiceClient::new(channel);
        // Results of handlers that ended while disconnected.
        let mut unsent: Vec<(pb::LeaseRef, Outcome)> = Vec::new();
        while let Ok(item) = finished.try_recv() {
            unsent.push(item);
        }
        // Whether each outcome sent on this stream was a completion (its
        // Ack says only accepted or not).
        let mut sent: HashMap<String, bool> = HashMap::new();
        for (lease, outcome) in unsent {
            sent.insert(lease.attempt_id.clone(), outcome.is_ok());
            send_outcome(&outbound, lease, outcome).await;
        }
        loop {
            tokio::select! {
                message = inbound.message() => {
                    let msg = match message {
                        Ok(Some(message)) => message.msg,
                        _ => break,
                    };
                    match msg {
                        Some(ServerMsg::Lease(offer)) => {
                            let _ = events.send(WorkerEvent::Offered {
                                attempt_id: offer.attempt_id.clone(),
                                run_id: offer.run_id.clone(),
                                at: Instant::now(),
                                received: SystemTime::now(),
                                lease_expires: offer.lease_expire_time.map(|t| {
                                    SystemTime::UNIX_EPOCH
                                        + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32)
                                }),
                            });
                            let lease = pb::LeaseRef {
                                attempt_id: offer.attempt_id.clone(),
                                lease_token: offer.lease_token.clone(),
                            };
                            let handler = handler.clone();
                            let results = results.clone();
                            let done = lease.clone();
                            let task = tokio::spawn(async move {
                                let outcome = handler(offer).await;
                                let _ = results.send((done, outcome));
                            });
                            if let Ok(mut running) = running.lock() {
                                running.insert(lease.attempt_id.clone(), Running { lease, task });
                            }
                        }
                        Some(ServerMsg::Cancel(cancel)) => {
                            let attempt_id = cancel.lease.map(|l| l.attempt_id).unwrap_or_default();
                            if let Some(gone) = running.lock().ok().and_then(|mut r| r.remove(&attempt_id)) {
                                gone.task.abort();
                            }
                            let _ = events.send(WorkerEvent::Cancelled { attempt_id });
                        }
                        Some(ServerMsg::Ping(ping)) => {
                            let _ = outbound.send(pb::WorkerMessage { msg: Some(WorkerMsg::Pong(pb::Pong { nonce: ping.nonce })) }).await;
                        }
                        Some(ServerMsg::Ack(ack)) => {
                            let attempt_id = ack.lease.map(|l| l.attempt_id).unwrap_or_default();
                            let completed = sent.remove(&attempt_id).unwrap_or(false);
                            let event = if ack.accepted {
                                WorkerEvent::Settled { attempt_id, completed, at: Instant::now() }
                            } else {
                                WorkerEvent::Refused { attempt_id, code: ack.code }
                            };
                            let _ = events.send(event);
                        }
                        Some(ServerMsg::Welcome(_)) | None => {}
                    }
                }
                Some((lease, outcome)) = finished.recv() => {
                    let ours = running.lock().ok().and_then(|mut r| r.remove(&lease.attempt_id)).is_some();
                    if ours {
                        sent.insert(lease.attempt_id.clone(), outcome.is_ok());
                        send_outcome(&outbound, lease, outcome).await;
                    }
                }
                _ = heartbeat.tick() => {
                    let active: Vec<pb::LeaseRef> = running
                        .lock()
                        .map(|r| r.values().map(|r| r.lease.clone()).collect())
                        .unwrap_or_default();
                    let _ = outbound.send(pb::WorkerMessage { msg: Some(WorkerMsg::Heartbeat(pb::Heartbeat { active })) }).await;
                }
                _ = stop.changed() => {
                    return;
                }
            }
        }
        let _ = events.send(WorkerEvent::Disconnected);
        // Handlers keep running; results that arrive before the next
        // connection go through the unary calls.
        while let Ok((lease, outcome)) = finished.try_recv() {
            if running
                .lock()
                .ok()
                .and_then(|mut r| r.remove(&lease.attempt_id))
                .is_some()
            {
                let attempt_id = lease.attempt_id.clone();
                let settled = unary_outcome(&mut workers_client, lease, outcome).await;
                let _ = events.send(match settled {
                    Ok(completed) => WorkerEvent::Settled {
                        attempt_id,
                        completed,
                        at: Instant::now(),
                    },
                    Err(code) => WorkerEvent::Refused { attempt_id, code },
                });
            }
        }
    }
}

async fn open(
    addr: &str,
    options: &WorkerOptions,
    held: Vec<pb::LeaseRef>,
) -> Result<
    (
        Channel,
        mpsc::Sender<pb::WorkerMessage>,
        tonic::Streaming<pb::ServerMessage>,
        pb::Welcome,
    ),
    tonic::Status,
> {
    let channel = Endpoint::from_shared(addr.to_string())
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let (outbound, receiver) = mpsc::channel(1024);
    let hello = pb::Hello {
        worker_id: options.worker_id.clone(),
        name: options.worker_id.clone(),
        queues: options.queues.clone(),
        slots: options.slots as i32,
        sdk_version: concat!("taskloom-worker-rs/", env!("CARGO_PKG_VERSION")).into(),
        held_leases: held,
        ..Default::default()
    };
    let _ = outbound
        .send(pb::WorkerMessage {
            msg: Some(WorkerMsg::Hello(hello)),
        })
        .await;
    let mut inbound = pb::worker_service_client::WorkerServiceClient::new(channel.clone())
        .connect(ReceiverStream::new(receiver))
        .await?
        .into_inner();
    match inbound.message().await?.and_then(|m| m.msg) {
        Some(ServerMsg::Welcome(welcome)) => Ok((channel, outbound, inbound, welcome)),
        other => Err(tonic::Status::internal(format!(
            "expected a welcome, got {other:?}"
        ))),
    }
}

async fn send_outcome(
    outbound: &mpsc::Sender<pb::WorkerMessage>,
    lease: pb::LeaseRef,
    outcome: Outcome,
) {
    let msg = match outcome {
        Ok(output) => WorkerMsg::Complete(pb::Completion {
            lease: Some(lease),
            output: Some(output),
        }),
        Err((message, retryable)) => WorkerMsg::Fail(pb::Failure {
            lease: Some(lease),
            message,
            retryable,
            retry_delay: None,
        }),
    };
    let _ = outbound.send(pb::WorkerMessage { msg: Some(msg) }).await;
}

async fn unary_outcome(
    client: &mut pb::worker_service_client::WorkerServiceClient<Channel>,
    lease: pb::LeaseRef,
    outcome: Outcome,
) -> Result<bool, String> {
    let result = match outcome {
        Ok(output) => client
            .complete_task(pb::CompleteTaskRequest {
                attempt_id: lease.attempt_id,
                lease_token: lease.lease_token,
                output: Some(output),
            })
            .await
            .map(|_| true),
        Err((message, retryable)) => client
            .fail_task(pb::FailTaskRequest {
                attempt_id: lease.attempt_id,
                lease_token: lease.lease_token,
                message,
                retryable,
                retry_delay: None,
            })
            .await
            .map(|_| false),
    };
    result.map_err(|status| format!("{:?}", status.code()))
}
