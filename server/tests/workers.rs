//! WorkerService against a real server process, on SQLite and Postgres:
//! lease streams from a Rust test worker over real gRPC, the unary calls,
//! fencing, lease expiry, stalled streams, reconnects, cancellation, slots
//! and bad input.

mod common;

use common::chains::text_value;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::{TestServer, assert_invalid, violated_fields};
use futures::StreamExt;
use taskloom_server::proto::taskloom::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

use pb::server_message::Msg as ServerMsg;
use pb::worker_message::Msg as WorkerMsg;

/// Short leases and heartbeats, so expiry paths run in seconds.
const ARGS: &[&str] = &[
    "--lease-duration=2s",
    "--worker-heartbeat-interval=300ms",
    "--worker-heartbeat-timeout=1s",
    "--queue-concurrency=capped=2",
    "--tenant-concurrency=acme=1",
];

/// The same without concurrency caps: a session serving capped work claims
/// on every freed slot, which would add claims that are no part of what the
/// lateness tests measure.
const UNCAPPED_ARGS: &[&str] = &[
    "--lease-duration=2s",
    "--worker-heartbeat-interval=300ms",
    "--worker-heartbeat-timeout=1s",
];

api_tests!(
    ARGS; sqlite, postgres;
    happy_path_offers_and_completes,
    stale_and_foreign_tokens_are_rejected,
    foreign_tokens_change_no_bookkeeping,
    killed_worker_task_completes_on_another,
    stalled_stream_is_closed_and_work_reoffered,
    zombie_that_heartbeats_but_never_reads_loses_its_lease,
    a_worker_that_stops_reading_blocks_nothing,
    reconnect_reattaches_held_leases,
    cancellation_reaches_the_worker,
    slots_bound_offers,
    failures_retry_and_dead_letter,
    bad_input_is_rejected,
    list_workers_shows_sessions,
    queue_and_tenant_caps_hold,
    priority_orders_offers,
    hooks_routed_to_a_queue_reach_workers,
);

api_tests!(
    UNCAPPED_ARGS; sqlite_uncapped, postgres_uncapped;
    worker_retries_are_leased_when_due,
    internal_retries_run_when_due,
);

/// A worker on the other end of a `Connect` stream. A background task reads
/// its stream as a real worker does, answering pings at once; the rest
/// waits in `inbox` for the test to look at.
struct Worker {
    outbound: mpsc::Sender<pb::WorkerMessage>,
    inbox: mpsc::UnboundedReceiver<Result<ServerMsg, tonic::Status>>,
    welcome: pb::Welcome,
    /// Messages read while waiting for something else.
    backlog: Vec<ServerMsg>,
    /// How the stream ended, once it has.
    ended: Option<tonic::Status>,
}

fn hello(worker_id: &str, queues: &[&str], slots: i32) -> pb::Hello {
    pb::Hello {
        worker_id: worker_id.into(),
        name: format!("test worker {worker_id}"),
        queues: queues.iter().map(|q| q.to_string()).collect(),
        slots,
        sdk_version: "taskloom-rust-tests/0".into(),
        ..Default::default()
    }
}

impl Worker {
    async fn try_connect(channel: Channel, hello: pb::Hello) -> Result<Worker, tonic::Status> {
        let (outbound, mut inbound, welcome) = open_stream(channel, hello).await?;
        let (forward, inbox) = mpsc::unbounded_channel();
        let pongs = outbound.clone();
        tokio::spawn(async move {
            loop {
                let msg = match inbound.message().await {
                    Ok(Some(pb::ServerMessage { msg: Some(msg) })) => msg,
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(status) => {
                        let _ = forward.send(Err(status));
                        return;
                    }
                };
                if let ServerMsg::Ping(ping) = msg {
                    let pong = WorkerMsg::Pong(pb::Pong { nonce: ping.nonce });
                    let _ = pongs.send(pb::WorkerMessage { msg: Some(pong) }).await;
                } else if forward.send(Ok(msg)).is_err() {
                    return;
                }
            }
        });
        Ok(Worker {
            outbound,
            inbox,
            welcome,
            backlog: Vec::new(),
            ended: None,
        })
    }

    async fn connect(server: &TestServer, hello: pb::Hello) -> Worker {
        Worker::try_connect(server.channel.clone(), hello)
            .await
            .expect("connect")
    }

    async fn send(&self, msg: WorkerMsg) {
        let _ = self
            .outbound
            .send(pb::WorkerMessage { msg: Some(msg) })
            .await;
    }

    /// The next message matching `pick` within `within`; others are kept.
    async fn next<T>(
        &mut self,
        within: Duration,
        pick: impl Fn(&ServerMsg) -> Option<T>,
    ) -> Option<T> {
        if let Some(index) = self.backlog.iter().position(|m| pick(m).is_some()) {
            return pick(&self.backlog.remove(index));
        }
        let deadline = tokio::time::Instant::now() + within;
        while self.ended.is_none() {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Err(_) | Ok(None) => return None,
                Ok(Some(Err(status))) => self.ended = Some(status),
                Ok(Some(Ok(msg))) => {
                    if let Some(found) = pick(&msg) {
                        return Some(found);
                    }
                    self.backlog.push(msg);
                }
            }
        }
        None
    }

    async fn offer(&mut self, within: Duration) -> Option<pb::LeaseOffer> {
        self.next(within, |m| match m {
            ServerMsg::Lease(offer) => Some(offer.clone()),
            _ => None,
        })
        .await
    }

    async fn ack(&mut self, attempt_id: &str) -> pb::Ack {
        let attempt_id = attempt_id.to_string();
        self.next(Duration::from_secs(10), move |m| match m {
            ServerMsg::Ack(ack)
                if ack
                    .lease
                    .as_ref()
                    .is_some_and(|l| l.attempt_id == attempt_id) =>
            {
                Some(ack.clone())
            }
            _ => None,
        })
        .await
        .expect("an ack")
    }

    async fn cancel(&mut self, within: Duration) -> Option<pb::CancelLease> {
        self.next(within, |m| match m {
            ServerMsg::Cancel(cancel) => Some(cancel.clone()),
            _ => None,
        })
        .await
    }

    async fn complete(&mut self, offer: &pb::LeaseOffer, text: &str) -> pb::Ack {
        self.send(WorkerMsg::Complete(pb::Completion {
            lease: Some(lease_of(offer)),
            output: Some(text_value(text)),
        }))
        .await;
        self.ack(&offer.attempt_id).await
    }

    async fn heartbeat(&self, active: &[&pb::LeaseOffer]) {
        self.send(WorkerMsg::Heartbeat(pb::Heartbeat {
            active: active.iter().map(|o| lease_of(o)).collect(),
        }))
        .await;
    }
}

/// Opens a `Connect` stream with `hello` and reads its `Welcome`.
async fn open_stream(
    channel: Channel,
    hello: pb::Hello,
) -> Result<
    (
        mpsc::Sender<pb::WorkerMessage>,
        tonic::Streaming<pb::ServerMessage>,
        pb::Welcome,
    ),
    tonic::Status,
> {
    let (outbound, receiver) = mpsc::channel(256);
    outbound
        .send(pb::WorkerMessage {
            msg: Some(WorkerMsg::Hello(hello)),
        })
        .await
        .unwrap();
    let mut inbound = pb::worker_service_client::WorkerServiceClient::new(channel)
        .connect(ReceiverStream::new(receiver))
        .await?
        .into_inner();
    let first = inbound.message().await?.expect("a welcome");
    let Some(ServerMsg::Welcome(welcome)) = first.msg else {
        panic!("expected a welcome, got {first:?}");
    };
    Ok((outbound, inbound, welcome))
}

/// A worker that reads its stream only when the test says so and never
/// answers a ping: a stalled process, or a zombie whose reader died.
struct Unread {
    outbound: mpsc::Sender<pb::WorkerMessage>,
    inbound: tonic::Streaming<pb::ServerMessage>,
}

impl Unread {
    async fn connect(server: &TestServer, hello: pb::Hello) -> Unread {
        let (outbound, inbound, _) = open_stream(server.channel.clone(), hello)
            .await
            .expect("connect");
        Unread { outbound, inbound }
    }

    /// Reads up to the first lease offer, leaving pings unanswered.
    async fn offer(&mut self, within: Duration) -> Option<pb::LeaseOffer> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = tokio::time::timeout_at(deadline, self.inbound.message())
                .await
                .ok()?
                .ok()??;
            if let Some(ServerMsg::Lease(offer)) = message.msg {
                return Some(offer);
            }
        }
    }

    /// Everything left on the stream, and how it ended (None: it had not
    /// ended within `within`).
    async fn rest(&mut self, within: Duration) -> (Vec<ServerMsg>, Option<tonic::Status>) {
        let deadline = tokio::time::Instant::now() + within;
        let mut messages = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.inbound.message()).await {
                Err(_) => return (messages, None),
                Ok(Ok(Some(message))) => messages.extend(message.msg),
                Ok(Ok(None)) => return (messages, Some(tonic::Status::ok(""))),
                Ok(Err(status)) => return (messages, Some(status)),
            }
        }
    }
}

fn lease_of(offer: &pb::LeaseOffer) -> pb::LeaseRef {
    pb::LeaseRef {
        attempt_id: offer.attempt_id.clone(),
        lease_token: offer.lease_token.clone(),
    }
}

fn worker_chain(id: &str, queue: &str) -> pb::Chain {
    pb::Chain {
        id: id.into(),
        tasks: vec![pb::Task {
            id: "remote".into(),
            handler: "worker".into(),
            queue: queue.into(),
            prompt_template: "look up {{ input }}".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn start_run(server: &TestServer, chain: pb::Chain, input: &str) -> pb::Run {
    start_tenant_run(server, chain, input, "", 0).await
}

async fn get_run(server: &TestServer, run_id: &str) -> pb::Run {
    server
        .runs()
        .get_run(pb::GetRunRequest { id: run_id.into() })
        .await
        .unwrap()
        .into_inner()
}

async fn wait_status(server: &TestServer, run_id: &str, status: pb::RunStatus) -> pb::Run {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = get_run(server, run_id).await;
        if run.status == status as i32 {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} never reached {status:?}: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn output_text(run: &pb::Run) -> String {
    match run.output.as_ref().and_then(|v| v.kind.clone()) {
        Some(pb::value::Kind::Text(text)) => text,
        other => panic!("expected a text output, got {other:?}"),
    }
}

async fn list_workers(
    server: &TestServer,
    request: pb::ListWorkersRequest,
) -> pb::ListWorkersResponse {
    server
        .workers()
        .list_workers(request)
        .await
        .unwrap()
        .into_inner()
}

async fn attempts(server: &TestServer, run_id: &str) -> Vec<pb::TaskAttempt> {
    server
        .runs()
        .list_run_attempts(pb::ListRunAttemptsRequest {
            run_id: run_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attempts
}

const SOON: Duration = Duration::from_secs(10);

async fn happy_path_offers_and_completes(server: TestServer) {
    let mut worker = Worker::connect(&server, hello("w1", &["search"], 4)).await;
    assert!(!worker.welcome.session_id.is_empty());
    assert!(!worker.welcome.replica.is_empty());
    let run = start_run(&server, worker_chain("lookup", "search"), "rust").await;
    let offer = worker.offer(SOON).await.expect("an offer");
    assert_eq!(offer.run_id, run.id);
    assert_eq!(offer.task_id, "remote");
    assert_eq!(offer.handler, "worker");
    assert_eq!(offer.queue, "search");
    assert_eq!(offer.chain_id, "lookup");
    assert_eq!(offer.attempt, 1);
    assert_eq!(offer.input, Some(text_value("rust")));
    assert_eq!(offer.prompt, "look up rust");
    assert!(offer.lease_expire_time.is_some());
    assert!(
        offer.traceparent.starts_with("00-"),
        "{}",
        offer.traceparent
    );
    // Progress is stored as an event watchers see.
    worker
        .send(WorkerMsg::Progress(pb::Progress {
            lease: Some(lease_of(&offer)),
            message: "halfway".into(),
            payload: None,
        }))
        .await;
    let ack = worker.complete(&offer, "found it").await;
    assert!(ack.accepted, "{ack:?}");
    let done = wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
    assert_eq!(output_text(&done), "found it");
    let events = server
        .runs()
        .list_run_events(pb::ListRunEventsRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(
        events
            .iter()
            .any(|e| e.r#type == pb::RunEventType::TaskProgress as i32 && e.message == "halfway"),
        "progress event: {events:?}"
    );
    let started = events
        .iter()
        .find(|e| e.r#type == pb::RunEventType::TaskStarted as i32)
        .expect("task started");
    assert_eq!(started.message, "w1", "the lease owner is the worker");

    // The unary path: a second run completed with CompleteTask.
    let second = start_run(&server, worker_chain("lookup", "search"), "go").await;
    let offer = worker.offer(SOON).await.expect("a second offer");
    assert_eq!(offer.run_id, second.id);
    server
        .workers()
        .complete_task(pb::CompleteTaskRequest {
            attempt_id: offer.attempt_id.clone(),
            lease_token: offer.lease_token.clone(),
            output: Some(text_value("via unary")),
        })
        .await
        .unwrap();
    let done = wait_status(&server, &second.id, pb::RunStatus::Succeeded).await;
    assert_eq!(output_text(&done), "via unary");
}

async fn stale_and_foreign_tokens_are_rejected(server: TestServer) {
    let mut worker = Worker::connect(&server, hello("w1", &["search"], 1)).await;
    let run = start_run(&server, worker_chain("lookup", "search"), "x").await;
    let offer = worker.offer(SOON).await.expect("an offer");
    let forged = pb::LeaseOffer {
        lease_token: "0".repeat(32),
        ..offer.clone()
    };
    let ack = worker.complete(&forged, "forged").await;
    assert!(!ack.accepted);
    assert_eq!(ack.code, "FAILED_PRECONDITION", "{ack:?}");
    let sessions = list_workers(&server, pb::ListWorkersRequest::default())
        .await
        .workers;
    assert_eq!(
        sessions[0].fenced_operations, 1,
        "the refusal is counted on the session"
    );
    for result in [
        server
            .workers()
            .complete_task(pb::CompleteTaskRequest {
                attempt_id: offer.attempt_id.clone(),
                lease_token: forged.lease_token.clone(),
                output: Some(text_value("forged")),
            })
            .await
            .map(|_| ()),
        server
            .workers()
            .fail_task(pb::FailTaskRequest {
                attempt_id: offer.attempt_id.clone(),
                lease_token: forged.lease_token.clone(),
                message: "no".into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        server
            .workers()
            .extend_lease(pb::ExtendLeaseRequest {
                attempt_id: offer.attempt_id.clone(),
                lease_token: forged.lease_token.clone(),
                extension: None,
            })
            .await
            .map(|_| ()),
    ] {
        let error = result.unwrap_err();
        assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    }
    // Nothing changed: the real token still works.
    let extended = server
        .workers()
        .extend_lease(pb::ExtendLeaseRequest {
            attempt_id: offer.attempt_id.clone(),
            lease_token: offer.lease_token.clone(),
            extension: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(extended.lease_expire_time.is_some());
    assert_eq!(
        get_run(&server, &run.id).await.status,
        pb::RunStatus::Running as i32
    );
    let ack = worker.complete(&offer, "real").await;
    assert!(ack.accepted, "{ack:?}");
    // A second completion of the same lease is stale.
    let again = worker.complete(&offer, "again").await;
    assert_eq!(again.code, "FAILED_PRECONDITION");
    let done = wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
    assert_eq!(output_text(&done), "real");
    // An unknown attempt is NOT_FOUND.
    let error = server
        .workers()
        .complete_task(pb::CompleteTaskRequest {
            attempt_id: "no-such-attempt".into(),
            lease_token: "x".into(),
            output: Some(text_value("x")),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
}

/// Messages naming another worker's lease with a wrong token change
/// nothing: not the holder's slot, not its cancellation, not the lease's
/// expiry.
async fn foreign_tokens_change_no_bookkeeping(server: TestServer) {
    let mut holder = Worker::connect(&server, hello("holder", &["solo"], 1)).await;
    let held_run = start_run(&server, worker_chain("solo", "solo"), "first").await;
    let held = holder.offer(SOON).await.expect("an offer");
    // An intruder on another queue, with a lease of its own.
    let mut intruder = Worker::connect(&server, hello("intruder", &["other"], 1)).await;
    start_run(&server, worker_chain("other", "other"), "x").await;
    let own = intruder
        .offer(SOON)
        .await
        .expect("the intruder's own offer");
    let expiry_before = attempts(&server, &held_run.id).await[0].lease_expire_time;
    let wrong_tokens = ["0".repeat(32), own.lease_token.clone(), "stale".to_string()];
    let mut fenced = 0;
    for token in &wrong_tokens {
        let forged = pb::LeaseOffer {
            lease_token: token.clone(),
            ..held.clone()
        };
        // A heartbeat naming the lease: the intruder is told to stop it.
        intruder.heartbeat(&[&forged]).await;
        let cancel = intruder.cancel(SOON).await.expect("a CancelLease");
        assert_eq!(cancel.lease, Some(lease_of(&forged)));
        fenced += 1;
        for msg in [
            WorkerMsg::Complete(pb::Completion {
                lease: Some(lease_of(&forged)),
                output: Some(text_value("forged")),
            }),
            WorkerMsg::Fail(pb::Failure {
                lease: Some(lease_of(&forged)),
                message: "forged".into(),
                retryable: true,
                retry_delay: None,
            }),
            WorkerMsg::Release(pb::Release {
                lease: Some(lease_of(&forged)),
            }),
            WorkerMsg::Progress(pb::Progress {
                lease: Some(lease_of(&forged)),
                message: "forged".into(),
                payload: None,
            }),
        ] {
            intruder.send(msg).await;
            let ack = intruder.ack(&held.attempt_id).await;
            assert_eq!(ack.code, "FAILED_PRECONDITION", "{ack:?}");
            fenced += 1;
        }
        let error = server
            .workers()
            .extend_lease(pb::ExtendLeaseRequest {
                attempt_id: held.attempt_id.clone(),
                lease_token: token.clone(),
                extension: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::FailedPrecondition);
    }
    assert_eq!(
        attempts(&server, &held_run.id).await[0].lease_expire_time,
        expiry_before,
        "the lease's expiry did not move"
    );
    // The holder's one slot is still taken: a second task waits.
    let waiting = start_run(&server, worker_chain("solo", "solo"), "second").await;
    assert!(
        holder.offer(Duration::from_millis(1000)).await.is_none(),
        "no second offer to a worker whose only slot is taken"
    );
    // And it still hears of its run's cancellation.
    server
        .runs()
        .cancel_run(pb::CancelRunRequest {
            id: held_run.id.clone(),
            reason: "stop".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let cancel = holder
        .cancel(Duration::from_secs(2))
        .await
        .expect("the holder gets CancelLease");
    assert_eq!(cancel.lease, Some(lease_of(&held)));
    let next = holder
        .offer(SOON)
        .await
        .expect("the freed slot takes the next task");
    assert_eq!(next.run_id, waiting.id);
    assert!(holder.complete(&next, "ok").await.accepted);
    assert!(intruder.complete(&own, "ok").await.accepted);
    // Each refusal is counted on the intruder's session.
    let intruder_session = list_workers(&server, pb::ListWorkersRequest::default())
        .await
        .workers
        .into_iter()
        .find(|w| w.worker_id == "intruder")
        .expect("the intruder's session");
    assert_eq!(intruder_session.fenced_operations, fenced);
}

async fn killed_worker_task_completes_on_another(server: TestServer) {
    let mut first = Worker::connect(&server, hello("first", &["search"], 1)).await;
    let run = start_run(&server, worker_chain("lookup", "search"), "x").await;
    let lost = first.offer(SOON).await.expect("an offer");
    // The worker dies: its stream goes away without a completion.
    drop(first);
    let mut second = Worker::connect(&server, hello("second", &["search"], 1)).await;
    // Re-offered after the 2 s lease expires.
    let offer = second
        .offer(Duration::from_secs(10))
        .await
        .expect("the task is offered again after lease expiry");
    assert_eq!(
        offer.attempt_id, lost.attempt_id,
        "same attempt, no retry spent"
    );
    assert_ne!(offer.lease_token, lost.lease_token, "a new lease");
    assert!(second.complete(&offer, "second").await.accepted);
    let done = wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
    assert_eq!(output_text(&done), "second");
    // The first worker's late completion is rejected and changes nothing.
    let late = server
        .workers()
        .complete_task(pb::CompleteTaskRequest {
            attempt_id: lost.attempt_id.clone(),
            lease_token: lost.lease_token.clone(),
            output: Some(text_value("first")),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert_eq!(output_text(&get_run(&server, &run.id).await), "second");
    let attempt = &attempts(&server, &run.id).await[0];
    assert_eq!(attempt.lease_expiries, 1);
}

async fn stalled_stream_is_closed_and_work_reoffered(server: TestServer) {
    let mut stalled = Unread::connect(&server, hello("stalled", &["search"], 1)).await;
    let run = start_run(&server, worker_chain("lookup", "search"), "x").await;
    let held = stalled.offer(SOON).await.expect("an offer");
    let began = Instant::now();
    // From now on the worker neither reads nor writes, but keeps the
    // connection open.
    let mut other = Worker::connect(&server, hello("other", &["search"], 1)).await;
    let offer = other
        .offer(Duration::from_secs(10))
        .await
        .expect("re-offered to the other worker");
    assert_eq!(offer.attempt_id, held.attempt_id);
    // A ping unanswered past the heartbeat timeout (0.3 s + 1 s) closes the
    // session and ends its leases at once, without waiting for the lease
    // (2 s) to expire.
    assert!(
        began.elapsed() < Duration::from_millis(1300 + 1000),
        "re-offered within a heartbeat interval plus the timeout: {:?}",
        began.elapsed()
    );
    let sessions = list_workers(&server, pb::ListWorkersRequest::default())
        .await
        .workers;
    assert_eq!(
        sessions
            .iter()
            .map(|s| s.worker_id.as_str())
            .collect::<Vec<_>>(),
        vec!["other"],
        "the stalled session was closed"
    );
    assert!(other.complete(&offer, "done").await.accepted);
    wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
    // The stalled worker's stream ended with UNAVAILABLE.
    let (_, ended) = stalled.rest(SOON).await;
    assert_eq!(ended.map(|s| s.code()), Some(Code::Unavailable));
}

/// A worker that keeps heartbeating its lease but has stopped reading its
/// stream (a zombie) fails the liveness check within the heartbeat
/// timeout: its session is closed, its lease ends at once and a healthy
/// worker finishes the task; the run does not fail as lost.
async fn zombie_that_heartbeats_but_never_reads_loses_its_lease(server: TestServer) {
    let mut zombie = Unread::connect(&server, hello("zombie", &["search"], 1)).await;
    let run = start_run(&server, worker_chain("lookup", "search"), "x").await;
    let held = zombie.offer(SOON).await.expect("an offer");
    // From now on it only writes: a heartbeat naming its lease every
    // heartbeat interval, and never a pong.
    let beats = zombie.outbound.clone();
    let lease = lease_of(&held);
    let heartbeating = tokio::spawn(async move {
        loop {
            let heartbeat = WorkerMsg::Heartbeat(pb::Heartbeat {
                active: vec![lease.clone()],
            });
            if beats
                .send(pb::WorkerMessage {
                    msg: Some(heartbeat),
                })
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let began = Instant::now();
    let mut healthy = Worker::connect(&server, hello("healthy", &["search"], 1)).await;
    let offer = healthy
        .offer(Duration::from_secs(10))
        .await
        .expect("the zombie's task reaches the healthy worker");
    assert_eq!(
        offer.attempt_id, held.attempt_id,
        "same attempt, no retry spent"
    );
    // First ping after 0.3 s, unanswered for 1 s; a second of margin.
    assert!(
        began.elapsed() < Duration::from_millis(1300 + 1000),
        "within a heartbeat interval plus the timeout: {:?}",
        began.elapsed()
    );
    let workers: Vec<String> = list_workers(&server, pb::ListWorkersRequest::default())
        .await
        .workers
        .into_iter()
        .map(|w| w.worker_id)
        .collect();
    assert_eq!(
        workers,
        vec!["healthy".to_string()],
        "the zombie's session is closed"
    );
    assert!(healthy.complete(&offer, "healthy").await.accepted);
    let done = wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
    assert_eq!(output_text(&done), "healthy");
    let attempt = &attempts(&server, &run.id).await[0];
    assert_eq!(
        attempt.lease_expiries, 1,
        "the zombie's lease counted as expired"
    );
    // The zombie's late completion is fenced.
    let late = server
        .workers()
        .complete_task(pb::CompleteTaskRequest {
            attempt_id: held.attempt_id.clone(),
            lease_token: held.lease_token.clone(),
            output: Some(text_value("zombie")),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    heartbeating.abort();
    // Its stream ended with UNAVAILABLE after the pings it never answered.
    let (messages, ended) = zombie.rest(SOON).await;
    assert!(
        messages.iter().all(|m| matches!(m, ServerMsg::Ping(_))),
        "{messages:?}"
    );
    assert_eq!(ended.map(|s| s.code()), Some(Code::Unavailable));
}

/// A worker that stops reading while offers pour in backs up its HTTP/2
/// stream and then its outbox: nothing on the server waits on them. Other
/// workers are served meanwhile, the stalled session is closed within the
/// heartbeat timeout, and every task it held is finished by a healthy
/// worker, each exactly once.
async fn a_worker_that_stops_reading_blocks_nothing(server: TestServer) {
    const RUNS: usize = 1500;
    // A small HTTP/2 window: the stream backs up after a few hundred offers.
    let channel = tonic::transport::Endpoint::from_shared(server.process.addr.clone())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let (outbound, _unread, _) = open_stream(channel, hello("flooded", &["flood"], 10_000))
        .await
        .unwrap();
    let heartbeating = tokio::spawn(async move {
        loop {
            let heartbeat = WorkerMsg::Heartbeat(pb::Heartbeat::default());
            let message = pb::WorkerMessage {
                msg: Some(heartbeat),
            };
            if outbound.send(message).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut bystander = Worker::connect(&server, hello("bystander", &["other"], 1)).await;
    let chain = worker_chain("flood", "flood");
    futures::stream::iter(0..RUNS)
        .map(|i| {
            let (server, chain) = (&server, chain.clone());
            async move { start_run(server, chain, &i.to_string()).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let began = Instant::now();
    let other = start_run(&server, worker_chain("other", "other"), "x").await;
    let offer = bystander
        .offer(SOON)
        .await
        .expect("the bystander is served");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "served at once: {:?}",
        began.elapsed()
    );
    assert!(bystander.complete(&offer, "ok").await.accepted);
    wait_status(&server, &other.id, pb::RunStatus::Succeeded).await;
    // Everything the stalled worker held reaches a healthy one.
    // It completes one offer at a time and never heartbeats: few slots, so
    // no lease it holds waits out its 2 s behind the others on a busy
    // machine.
    let mut healthy = Worker::connect(&server, hello("healthy", &["flood"], 8)).await;
    let mut completed = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while completed.len() < RUNS {
        assert!(
            Instant::now() < deadline,
            "only {} of {RUNS} tasks finished",
            completed.len()
        );
        let offer = healthy.offer(SOON).await.expect("more offers");
        let ack = healthy.complete(&offer, "ok").await;
        assert!(ack.accepted, "{ack:?}");
        assert!(completed.insert(offer.attempt_id), "offered twice");
    }
    let workers: Vec<String> = list_workers(&server, pb::ListWorkersRequest::default())
        .await
        .workers
        .into_iter()
        .map(|w| w.worker_id)
        .collect();
    assert!(!workers.contains(&"flooded".to_string()), "{workers:?}");
    heartbeating.abort();
}

async fn reconnect_reattaches_held_leases(server: TestServer) {
    let mut worker = Worker::connect(&server, hello("flaky", &["search"], 1)).await;
    let run = start_run(&server, worker_chain("lookup", "search"), "x").await;
    let offer = worker.offer(SOON).await.expect("an offer");
    drop(worker);
    // Back within the lease (2 s), naming the lease it still holds.
    let mut again = Worker::connect(
        &server,
        pb::Hello {
            held_leases: vec![
                lease_of(&offer),
                pb::LeaseRef {
                    attempt_id: "unknown".into(),
                    lease_token: "x".into(),
                },
            ],
            ..hello("flaky", &["search"], 1)
        },
    )
    .await;
    assert_eq!(again.welcome.reattached, vec![lease_of(&offer)]);
    assert_eq!(again.welcome.rejected.len(), 1);
    // Heartbeats keep the lease alive past its first expiry.
    for _ in 0..8 {
        again.heartbeat(&[&offer]).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        again.offer(Duration::from_millis(200)).await.is_none(),
        "no second offer: the slot holds the re-attached lease"
    );
    assert!(again.complete(&offer, "once").await.accepted);
    let done = wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
    assert_eq!(output_text(&done), "once");
    let attempt = &attempts(&server, &run.id).await[0];
    assert_eq!(attempt.lease_expiries, 0, "never expired, never re-run");
}

async fn cancellation_reaches_the_worker(server: TestServer) {
    let mut worker = Worker::connect(&server, hello("w1", &["search"], 1)).await;
    let run = start_run(&server, worker_chain("lookup", "search"), "x").await;
    let offer = worker.offer(SOON).await.expect("an offer");
    let began = Instant::now();
    server
        .runs()
        .cancel_run(pb::CancelRunRequest {
            id: run.id.clone(),
            reason: "stop".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let cancel = worker
        .cancel(Duration::from_secs(5))
        .await
        .expect("a cancellation");
    assert_eq!(cancel.lease, Some(lease_of(&offer)));
    assert!(
        began.elapsed() < Duration::from_millis(300 + 500),
        "within one heartbeat interval: {:?}",
        began.elapsed()
    );
    // Completing after the cancel is refused.
    assert_eq!(
        worker.complete(&offer, "late").await.code,
        "FAILED_PRECONDITION"
    );
    assert_eq!(
        get_run(&server, &run.id).await.status,
        pb::RunStatus::Cancelled as i32
    );
}

async fn slots_bound_offers(server: TestServer) {
    let mut worker = Worker::connect(&server, hello("w1", &["bulk"], 2)).await;
    let mut runs = Vec::new();
    for i in 0..5 {
        runs.push(start_run(&server, worker_chain("bulk", "bulk"), &format!("{i}")).await);
    }
    let first = worker.offer(SOON).await.unwrap();
    let second = worker.offer(SOON).await.unwrap();
    assert!(
        worker.offer(Duration::from_millis(700)).await.is_none(),
        "two slots, two offers"
    );
    // Zero slots: finishing work brings nothing new.
    worker
        .send(WorkerMsg::SetSlots(pb::SetSlots { slots: 0 }))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for offer in [&first, &second] {
        worker.heartbeat(&[offer]).await;
        assert!(worker.complete(offer, "ok").await.accepted);
    }
    assert!(
        worker.offer(Duration::from_millis(700)).await.is_none(),
        "a worker with no free slot receives nothing"
    );
    worker
        .send(WorkerMsg::SetSlots(pb::SetSlots { slots: 3 }))
        .await;
    let mut rest = Vec::new();
    for _ in 0..3 {
        rest.push(worker.offer(SOON).await.expect("offers resume"));
    }
    for offer in &rest {
        assert!(worker.complete(offer, "ok").await.accepted);
    }
    for run in &runs {
        wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
    }
}

async fn failures_retry_and_dead_letter(server: TestServer) {
    let mut worker = Worker::connect(&server, hello("w1", &["flaky"], 1)).await;
    let mut chain = worker_chain("flaky", "flaky");
    chain.tasks[0].retry = Some(pb::RetryPolicy {
        max_attempts: 2,
        backoff: "fixed".into(),
        initial_delay: "100ms".into(),
        ..Default::default()
    });
    let run = start_run(&server, chain, "x").await;
    let offer = worker.offer(SOON).await.unwrap();
    worker
        .send(WorkerMsg::Fail(pb::Failure {
            lease: Some(lease_of(&offer)),
            message: "transient".into(),
            retryable: true,
            retry_delay: None,
        }))
        .await;
    assert!(worker.ack(&offer.attempt_id).await.accepted);
    let retry = worker.offer(SOON).await.expect("a retry");
    assert_eq!(retry.attempt, 2);
    let failed = server
        .workers()
        .fail_task(pb::FailTaskRequest {
            attempt_id: retry.attempt_id.clone(),
            lease_token: retry.lease_token.clone(),
            message: "for good".into(),
            retryable: true,
            retry_delay: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!failed.will_retry, "retries exhausted");
    wait_status(&server, &run.id, pb::RunStatus::Failed).await;
    let dead = server
        .workers()
        .list_dead_letters(pb::ListDeadLettersRequest {
            queue: "flaky".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attempts;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, retry.attempt_id);
    assert_eq!(dead[0].error, "for good");
    // RetryRun re-queues the task: the worker gets it again.
    server
        .runs()
        .retry_run(pb::RetryRunRequest {
            id: run.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let third = worker
        .offer(SOON)
        .await
        .expect("offered again after RetryRun");
    assert!(worker.complete(&third, "finally").await.accepted);
    let done = wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
    assert_eq!(output_text(&done), "finally");
}

/// How long after falling due each run's second attempt was leased.
async fn retry_lateness(server: &TestServer, run_ids: &[String]) -> Vec<Duration> {
    let micros = |t: &Option<prost_types::Timestamp>| {
        let t = t.as_ref().expect("a timestamp");
        t.seconds * 1_000_000 + i64::from(t.nanos) / 1000
    };
    let mut lateness = Vec::new();
    for run_id in run_ids {
        let attempts = attempts(server, run_id).await;
        assert_eq!(attempts.len(), 2, "{attempts:?}");
        let retry = &attempts[1];
        let late = micros(&retry.start_time) - micros(&retry.available_time);
        assert!(late >= 0, "leased before it was due: {retry:?}");
        lateness.push(Duration::from_micros(late as u64));
    }
    lateness.sort();
    lateness
}

/// Checks that work was leased when it fell due, not at the next safety
/// poll (every 250 ms for the runner, 500 ms for dispatch): waiting for the
/// poll would make lateness spread evenly over the poll interval (p50 about
/// 125 ms). The bounds leave room for a loaded CI machine; the bench
/// measures the figures themselves.
fn assert_leased_when_due(label: &str, sorted: &[Duration]) {
    let at =
        |q: f64| sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1];
    let (p50, p99) = (at(0.5), at(0.99));
    println!(
        "{label}: lateness p50 {p50:?} p99 {p99:?} max {:?} over {}",
        sorted[sorted.len() - 1],
        sorted.len()
    );
    assert!(p50 <= Duration::from_millis(25), "{label}: p50 {p50:?}");
    assert!(p99 <= Duration::from_millis(100), "{label}: p99 {p99:?}");
}

/// Starts `count` runs of `chain`, one every 5 ms (so their retries fall
/// due apart, as in steady traffic), in the background.
fn start_paced(
    server: &TestServer,
    chain: pb::Chain,
    count: usize,
) -> tokio::task::JoinHandle<Vec<String>> {
    let runs = server.runs();
    tokio::spawn(async move {
        let mut ids = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        for i in 0..count {
            tick.tick().await;
            let run = runs
                .clone()
                .start_run(pb::StartRunRequest {
                    chain: Some(chain.clone()),
                    run_input: Some(pb::start_run_request::RunInput::TypedInput(text_value(
                        &i.to_string(),
                    ))),
                    ..Default::default()
                })
                .await
                .expect("start run")
                .into_inner();
            ids.push(run.id);
        }
        ids
    })
}

/// Delayed work is leased when it falls due, not at the next safety poll:
/// tasks whose first attempt fails with a worker-requested retry delay of
/// 100 ms are each offered again soon after falling due.
async fn worker_retries_are_leased_when_due(server: TestServer) {
    const RUNS: usize = 200;
    let mut worker = Worker::connect(&server, hello("w", &["later"], 64)).await;
    let mut chain = worker_chain("later", "later");
    // The worker's delay overrides the policy's.
    chain.tasks[0].retry = Some(pb::RetryPolicy {
        max_attempts: 2,
        backoff: "fixed".into(),
        initial_delay: "10s".into(),
        ..Default::default()
    });
    let starting = start_paced(&server, chain, RUNS);
    let mut completed = 0;
    while completed < RUNS {
        let offer = worker.offer(SOON).await.expect("an offer");
        let msg = if offer.attempt == 1 {
            WorkerMsg::Fail(pb::Failure {
                lease: Some(lease_of(&offer)),
                message: "later".into(),
                retryable: true,
                retry_delay: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 100_000_000,
                }),
            })
        } else {
            completed += 1;
            WorkerMsg::Complete(pb::Completion {
                lease: Some(lease_of(&offer)),
                output: Some(text_value("done")),
            })
        };
        worker.send(msg).await;
    }
    let run_ids = starting.await.unwrap();
    for run_id in &run_ids {
        wait_status(&server, run_id, pb::RunStatus::Succeeded).await;
    }
    let lateness = retry_lateness(&server, &run_ids).await;
    assert_leased_when_due("worker retries", &lateness);
}

/// The same for the server's own executor: hook tasks whose call fails
/// (connection refused) are called again soon after their retry policy's
/// 100 ms backoff.
async fn internal_retries_run_when_due(server: TestServer) {
    const RUNS: usize = 100;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/down", closed.local_addr().unwrap());
    drop(closed);
    server
        .hooks()
        .create_hook(pb::CreateHookRequest {
            hook: Some(pb::Hook {
                name: "down".into(),
                url,
                method: "POST".into(),
                timeout: Some(prost_types::Duration {
                    seconds: 5,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let chain = pb::Chain {
        id: "down".into(),
        tasks: vec![pb::Task {
            id: "call".into(),
            handler: "hook".into(),
            hook: Some(pb::HookCall {
                name: "down".into(),
                ..Default::default()
            }),
            retry: Some(pb::RetryPolicy {
                max_attempts: 2,
                backoff: "fixed".into(),
                initial_delay: "100ms".into(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let run_ids = start_paced(&server, chain, RUNS).await.unwrap();
    for run_id in &run_ids {
        wait_status(&server, run_id, pb::RunStatus::Failed).await;
    }
    let lateness = retry_lateness(&server, &run_ids).await;
    assert_leased_when_due("internal retries", &lateness);
}

async fn bad_input_is_rejected(server: TestServer) {
    let cases: Vec<(pb::Hello, &[&str])> = vec![
        (hello("", &["search"], 1), &["hello.worker_id"]),
        (hello("w", &[], 1), &["hello.queues"]),
        (hello("w", &["search"], 0), &["hello.slots"]),
        (hello("w", &["search"], -3), &["hello.slots"]),
        (hello("w", &["internal"], 1), &["hello.queues[0]"]),
        (hello("w", &["no spaces"], 1), &["hello.queues[0]"]),
    ];
    for (hello, fields) in cases {
        let error = match Worker::try_connect(server.channel.clone(), hello.clone()).await {
            Ok(_) => panic!("accepted {hello:?}"),
            Err(error) => error,
        };
        assert_invalid(error, fields);
    }
    // The first message must be a hello.
    let (outbound, receiver) = mpsc::channel(4);
    outbound
        .send(pb::WorkerMessage {
            msg: Some(WorkerMsg::Heartbeat(pb::Heartbeat::default())),
        })
        .await
        .unwrap();
    let result = server
        .workers()
        .connect(ReceiverStream::new(receiver))
        .await;
    let error = match result {
        Err(error) => error,
        Ok(response) => {
            let mut stream = response.into_inner();
            stream.message().await.unwrap_err()
        }
    };
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert_eq!(violated_fields(&error), vec!["hello".to_string()]);

    // Oversized and missing outputs are refused; the lease stays valid.
    let mut worker = Worker::connect(&server, hello("w", &["search"], 1)).await;
    let run = start_run(&server, worker_chain("lookup", "search"), "x").await;
    let offer = worker.offer(SOON).await.unwrap();
    worker
        .send(WorkerMsg::Complete(pb::Completion {
            lease: Some(lease_of(&offer)),
            output: Some(text_value(&"x".repeat(1024 * 1024 + 1))),
        }))
        .await;
    let ack = worker.ack(&offer.attempt_id).await;
    assert_eq!(ack.code, "INVALID_ARGUMENT", "{ack:?}");
    let error = server
        .workers()
        .complete_task(pb::CompleteTaskRequest {
            attempt_id: offer.attempt_id.clone(),
            lease_token: offer.lease_token.clone(),
            output: None,
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["output"]);
    let error = server
        .workers()
        .complete_task(pb::CompleteTaskRequest::default())
        .await
        .unwrap_err();
    assert_invalid(error, &["attempt_id", "lease_token"]);
    assert_eq!(
        get_run(&server, &run.id).await.status,
        pb::RunStatus::Running as i32,
        "nothing changed"
    );
    assert!(worker.complete(&offer, "fine").await.accepted);
}

async fn list_workers_shows_sessions(server: TestServer) {
    let _a = Worker::connect(
        &server,
        pb::Hello {
            labels: BTreeMap::from([("zone".to_string(), "eu".to_string())]),
            ..hello("a", &["search", "index"], 3)
        },
    )
    .await;
    let _b = Worker::connect(&server, hello("b", &["index"], 1)).await;
    let all = list_workers(&server, pb::ListWorkersRequest::default())
        .await
        .workers;
    assert_eq!(all.len(), 2);
    let a = all.iter().find(|w| w.worker_id == "a").unwrap();
    assert_eq!(a.queues, vec!["index".to_string(), "search".to_string()]);
    assert_eq!(a.slots, 3);
    assert_eq!(a.labels.get("zone").map(String::as_str), Some("eu"));
    assert_eq!(a.sdk_version, "taskloom-rust-tests/0");
    assert!(a.connect_time.is_some() && a.last_heartbeat_time.is_some());
    assert!(!a.replica.is_empty());
    let search = list_workers(
        &server,
        pb::ListWorkersRequest {
            queue: "search".into(),
            ..Default::default()
        },
    )
    .await
    .workers;
    assert_eq!(search.len(), 1);
    let page = list_workers(
        &server,
        pb::ListWorkersRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(page.workers.len(), 1);
    assert!(!page.next_page_token.is_empty());
}

async fn start_tenant_run(
    server: &TestServer,
    chain: pb::Chain,
    input: &str,
    tenant: &str,
    priority: i32,
) -> pb::Run {
    server
        .runs()
        .start_run(pb::StartRunRequest {
            chain: Some(chain),
            run_input: Some(pb::start_run_request::RunInput::TypedInput(text_value(
                input,
            ))),
            tenant: tenant.into(),
            priority,
            ..Default::default()
        })
        .await
        .expect("start run")
        .into_inner()
}

/// `--queue-concurrency=capped=2` and `--tenant-concurrency=acme=1`: a worker
/// with room for ten gets no more than the caps allow; the rest waits
/// `READY` and follows as leases end.
async fn queue_and_tenant_caps_hold(server: TestServer) {
    let mut worker = Worker::connect(&server, hello("w", &["capped", "open"], 10)).await;
    let mut runs = Vec::new();
    for _ in 0..5 {
        runs.push(start_tenant_run(&server, worker_chain("capped", "capped"), "x", "", 0).await);
    }
    let mut held = Vec::new();
    while let Some(offer) = worker.offer(Duration::from_millis(800)).await {
        held.push(offer);
    }
    assert_eq!(held.len(), 2, "queue cap 2");
    // The tenant cap: one of acme's runs at a time, others unaffected.
    for _ in 0..3 {
        runs.push(start_tenant_run(&server, worker_chain("open", "open"), "x", "acme", 0).await);
    }
    runs.push(start_tenant_run(&server, worker_chain("open", "open"), "x", "other", 0).await);
    let mut open = Vec::new();
    while let Some(offer) = worker.offer(Duration::from_millis(800)).await {
        open.push(offer);
    }
    assert_eq!(
        open.len(),
        2,
        "one acme run and the other tenant's: {open:?}"
    );
    let waiting =
        |attempts: Vec<pb::TaskAttempt>| attempts[0].status == pb::AttemptStatus::Ready as i32;
    let mut ready = 0;
    for run in &runs {
        if waiting(attempts(&server, &run.id).await) {
            ready += 1;
        }
    }
    assert_eq!(ready, 3 + 2, "the rest waits READY, nothing failed");
    // Finishing work lets the rest through, still within the caps.
    let mut done = 0;
    while done < runs.len() {
        let mut batch: Vec<pb::LeaseOffer> = held.drain(..).chain(open.drain(..)).collect();
        if batch.is_empty() {
            match worker.offer(SOON).await {
                Some(offer) => batch.push(offer),
                None => {
                    let mut states = Vec::new();
                    for run in &runs {
                        let a = &attempts(&server, &run.id).await[0];
                        states.push((run.tenant.clone(), a.queue.clone(), a.status));
                    }
                    panic!(
                        "no more offers after {done} done: {states:?} backlog {:?}",
                        worker.backlog
                    );
                }
            }
        }
        for offer in &batch {
            assert!(worker.complete(offer, "ok").await.accepted);
            done += 1;
        }
        while let Some(offer) = worker.offer(Duration::from_millis(300)).await {
            held.push(offer);
        }
        let capped = held.iter().filter(|o| o.queue == "capped").count();
        assert!(capped <= 2, "queue cap held: {capped}");
    }
    for run in &runs {
        wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
    }
}

/// Ready work is offered highest priority first, then oldest.
async fn priority_orders_offers(server: TestServer) {
    let mut by_priority = HashMap::new();
    for (priority, name) in [(1, "low"), (9, "high"), (5, "mid"), (9, "high-later")] {
        let run = start_tenant_run(&server, worker_chain(name, "ordered"), "x", "", priority).await;
        by_priority.insert(run.id, name);
    }
    let mut worker = Worker::connect(&server, hello("w", &["ordered"], 1)).await;
    let mut order = Vec::new();
    for _ in 0..4 {
        let offer = worker.offer(SOON).await.expect("an offer");
        order.push(by_priority[&offer.run_id]);
        assert!(worker.complete(&offer, "ok").await.accepted);
    }
    assert_eq!(order, vec!["high", "high-later", "mid", "low"]);
}

/// A `hook` task with a queue is offered to that queue's workers, with its
/// rendered arguments, instead of the server calling a URL.
async fn hooks_routed_to_a_queue_reach_workers(server: TestServer) {
    let chain = pb::Chain {
        id: "routed-hook".into(),
        tasks: vec![pb::Task {
            id: "notify".into(),
            handler: "hook".into(),
            queue: "hooks".into(),
            hook: Some(pb::HookCall {
                name: "slack".into(),
                args: BTreeMap::from([("text".to_string(), "deploy {{ input }}".to_string())]),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut worker = Worker::connect(&server, hello("hooker", &["hooks"], 1)).await;
    let run = start_run(&server, chain, "v2").await;
    let offer = worker
        .offer(SOON)
        .await
        .expect("the hook is offered to the queue");
    assert_eq!(offer.handler, "hook");
    assert_eq!(offer.queue, "hooks");
    assert_eq!(
        offer.args.get("text").map(String::as_str),
        Some("deploy v2")
    );
    assert!(offer.prompt.is_empty());
    assert!(worker.complete(&offer, "sent").await.accepted);
    let done = wait_status(&server, &run.id, pb::RunStatus::Succeeded).await;
    assert_eq!(output_text(&done), "sent");
}
