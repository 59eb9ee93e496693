//! The `workers` scenario: M in-process workers (the `taskloom-worker`
//! client over real gRPC) on one queue, N runs of a single `worker` task
//! started by C clients. Measures worker tasks completed per second,
//! enqueue→lease latency (StartRun sent → lease offer received by a
//! worker) and lease→completion-recorded latency (offer received → the
//! server's acknowledgement of the completion).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use taskloom_proto::taskloom::v1 as pb;
use taskloom_worker::{WorkerEvent, WorkerOptions};
use tokio::sync::{mpsc, watch};

use crate::drive::Connections;
use crate::stats::Latencies;

pub struct WorkersReport {
    pub clients: usize,
    pub workers: u32,
    pub slots: u32,
    pub runs: usize,
    pub completed: usize,
    pub wall: Duration,
    pub enqueue_to_lease: Latencies,
    pub lease_to_recorded: Latencies,
    /// Task made ready and leased on the server → offer received.
    pub ready_to_offer: Latencies,
    pub start_errors: u64,
}

impl WorkersReport {
    pub fn tasks_per_sec(&self) -> f64 {
        self.completed as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

pub struct WorkersPlan<'a> {
    pub connections: &'a Connections,
    pub addr: &'a str,
    pub tag: &'a str,
    pub workers: u32,
    pub slots: u32,
    pub runs: usize,
    pub clients: usize,
    pub deadline: Instant,
    /// The server's lease duration.
    pub lease: Duration,
    /// Open-loop pacing (`--rate`): run i is scheduled at `i / rate` seconds
    /// and enqueue→lease is measured from that schedule.
    pub rate: Option<f64>,
}

pub async fn drive(plan: WorkersPlan<'_>) -> Result<WorkersReport> {
    let queue = format!("bench-workers-{}", plan.tag);
    let chain_id = format!("bench-workers-{}", plan.tag);
    plan.connections
        .chains()
        .create_chain(pb::CreateChainRequest {
            chain: Some(pb::Chain {
                id: chain_id.clone(),
                tasks: vec![pb::Task {
                    id: "remote".into(),
                    handler: "worker".into(),
                    queue: queue.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await?;
    let (events, mut heard) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    let mut connected = 0;
    for index in 0..plan.workers {
        let options = WorkerOptions {
            addrs: vec![plan.addr.to_string()],
            worker_id: format!("bench-worker-{index}"),
            queues: vec![queue.clone()],
            slots: plan.slots,
            max_backoff: Duration::from_secs(1),
        };
        let handler = |_offer: pb::LeaseOffer| async {
            Ok(pb::Value {
                kind: Some(pb::value::Kind::Text("ok".into())),
            })
        };
        tokio::spawn(taskloom_worker::run(
            options,
            handler,
            events.clone(),
            stopped.clone(),
        ));
    }
    while connected < plan.workers {
        match tokio::time::timeout(Duration::from_secs(10), heard.recv()).await {
            Ok(Some(WorkerEvent::Connected { .. })) => connected += 1,
            Ok(Some(_)) => {}
            _ => bail!("the bench workers did not connect"),
        }
    }

    let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let begin = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..plan.clients {
        let mut runs = plan.connections.runs(client);
        let (chain_id, started, next, errors) = (
            chain_id.clone(),
            started.clone(),
            next.clone(),
            errors.clone(),
        );
        let total = plan.runs;
        let deadline = plan.deadline;
        let rate = plan.rate;
        clients.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total || Instant::now() > deadline {
                    return;
                }
                let sent = match rate {
                    Some(rate) => {
                        let scheduled = begin + Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(scheduled.into()).await;
                        scheduled
                    }
                    None => Instant::now(),
                };
                let result = runs
                    .start_run(pb::StartRunRequest {
                        chain_id: chain_id.clone(),
                        run_input: Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
                            kind: Some(pb::value::Kind::Text(format!("task {i}"))),
                        })),
                        ..Default::default()
                    })
                    .await;
                match result {
                    Ok(run) => {
                        started
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(run.into_inner().id, sent);
                    }
                    Err(_) => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        });
    }

    let mut offered: HashMap<String, (String, Instant)> = HashMap::new();
    let mut leased_at: Vec<(String, Instant)> = Vec::new();
    let mut lease_to_recorded = Vec::new();
    let mut ready_to_offer = Vec::new();
    let mut completed = 0;
    let mut last = begin;
    while completed < plan.runs {
        let remaining = plan.deadline.saturating_duration_since(Instant::now());
        let event = match tokio::time::timeout(remaining, heard.recv()).await {
            Ok(Some(event)) => event,
            _ => break,
        };
        match event {
            WorkerEvent::Offered {
                attempt_id,
                run_id,
                at,
                received,
                lease_expires,
            } => {
                // The server leased it at `lease_expires - lease`: for an
                // eager offer, the decision that made the task ready.
                if let Some(leased) = lease_expires.and_then(|e| e.checked_sub(plan.lease)) {
                    ready_to_offer.push(received.duration_since(leased).unwrap_or_default());
                }
                offered.insert(attempt_id, (run_id, at));
            }
            WorkerEvent::Settled { attempt_id, at, .. } => {
                if let Some((run_id, offered_at)) = offered.remove(&attempt_id) {
                    lease_to_recorded.push(at - offered_at);
                    leased_at.push((run_id, offered_at));
                }
                completed += 1;
                last = at;
            }
            _ => {}
        }
    }
    while clients.join_next().await.is_some() {}
    let _ = stop.send(true);
    // A run's id is known once its StartRun returned, which may be after
    // its offer arrived (eager dispatch): match them at the end.
    let started = started.lock().unwrap_or_else(|p| p.into_inner());
    let enqueue_to_lease = leased_at
        .iter()
        .filter_map(|(run_id, at)| Some(at.saturating_duration_since(*started.get(run_id)?)))
        .collect();
    Ok(WorkersReport {
        clients: plan.clients,
        workers: plan.workers,
        slots: plan.slots,
        runs: plan.runs,
        completed,
        wall: last.saturating_duration_since(begin),
        enqueue_to_lease: Latencies::new(enqueue_to_lease),
        lease_to_recorded: Latencies::new(lease_to_recorded),
        ready_to_offer: Latencies::new(ready_to_offer),
        start_errors: errors.load(std::sync::atomic::Ordering::Relaxed),
    })
}
