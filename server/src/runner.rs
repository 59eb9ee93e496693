//! This replica's built-in worker: the runner of built-in handlers. It
//! stands beside the remote workers' dispatcher (`crate::dispatch`) as one
//! more consumer of leases: it takes the `internal`
//! attempts this replica's decisions lease to it eagerly, and claims the rest
//! from the `internal` queue exactly as a remote worker claims from its queue
//! (owner = this replica); it executes them with bounded concurrency, renews their
//! leases while they run, and records the results through the kernel. A
//! crashed replica's attempts return to `Ready` when their leases expire and
//! another replica picks them up. Between claims it sleeps until woken, until
//! its earliest known future work (a retry's backoff) falls due, or until the
//! safety poll. The runner also drives the sweeper.
//!
//! Store outages: an attempt goes on running while its lease cannot be
//! renewed, and its outcome is written again and again until the store
//! takes it (or rejects it: the lease was lost). After a store fault the
//! sweeper waits one lease period (at least [`MIN_OUTAGE_GRACE`]) before it
//! expires leases, so holders can renew or complete first; an attempt whose
//! holder did not is run again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::chain::CompiledChain;
use crate::dispatch::when_due;
use crate::executor::Executor;
use crate::kernel::{
    ClaimLoop, ClaimedAttempt, INTERNAL_QUEUE, Kernel, KernelError, KernelResult, Slot,
    SlotProvider, TaskFailure, Transitioned,
};
use crate::store::{self, AttemptRecord};
use crate::telemetry::FailureLog;

/// The least time leases are left alone after the store comes back.
pub const MIN_OUTAGE_GRACE: Duration = Duration::from_secs(5);

/// Most attempts one claim leases.
const MAX_CLAIM: usize = 64;
/// Most attempts a claim for work falling due leases: few fall due at once,
/// and claims running together must leave each other slots.
const MAX_CLAIM_WHEN_DUE: usize = 16;

/// Runs the claim loop and the sweeper until `stop` turns true.
pub async fn run(kernel: Kernel, executor: Arc<Executor>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(kernel.config().executor_concurrency));
    let (eager_sender, mut eager) = mpsc::unbounded_channel();
    kernel.register_slots(Arc::new(RunnerSlots {
        slots: slots.clone(),
        sender: eager_sender,
        owner: kernel.instance_id().to_string(),
    }));
    let eager_runner = {
        let kernel = kernel.clone();
        let executor = executor.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let (claimed, permit) = tokio::select! {
                    item = eager.recv() => match item {
                        Some(item) => item,
                        None => return,
                    },
                    _ = stop.wait_for(|stop| *stop) => break,
                };
                let kernel = kernel.clone();
                let executor = executor.clone();
                tokio::spawn(async move {
                    execute_attempt(&kernel, &executor, claimed).await;
                    drop(permit);
                });
            }
            // Stopped (a drain): attempts handed over but not started go
            // back at once rather than wait for their leases to expire.
            eager.close();
            while let Some((claimed, _permit)) = eager.recv().await {
                let attempt = claimed.attempt;
                let token = attempt.lease_token.clone().unwrap_or_default();
                if let Err(error) = kernel
                    .release_lease(&attempt.run_id, &attempt.id, &token)
                    .await
                {
                    tracing::debug!(attempt_id = %attempt.id, error = %error, "lease not given back");
                }
            }
        })
    };
    let sweeper = tokio::spawn(sweep_loop(kernel.clone(), stop.clone()));
    let signals = {
        let kernel = kernel.clone();
        let stop = stop.clone();
        tokio::spawn(async move { kernel.exchange_signals(stop).await })
    };
    let queues = vec![INTERNAL_QUEUE.to_string()];
    let owner = kernel.instance_id().to_string();
    let claimer = Claimer {
        kernel: kernel.clone(),
        executor,
        slots,
        queues,
        owner,
        missed: Arc::default(),
    };
    let due_claims = tokio::spawn(claimer.clone().claim_when_due(stop.clone()));
    let mut failures = FailureLog::new("claiming internal attempts");
    loop {
        if *stop.borrow() {
            break;
        }
        match claimer.claim(MAX_CLAIM).await {
            // More may be waiting: claim again at once.
            Ok(true) => {
                failures.succeeded();
                continue;
            }
            Ok(false) => failures.succeeded(),
            Err(error) => {
                failures.failed(&error);
                tokio::select! {
                    () = tokio::time::sleep(failures.backoff()) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        }
        tokio::select! {
            () = kernel.work_available() => {}
            () = tokio::time::sleep(kernel.config().poll_interval) => {}
            _ = stop.changed() => {}
        }
    }
    due_claims.abort();
    sweeper.abort();
    signals.abort();
    let _ = eager_runner.await;
}

/// Claims from the `internal` queue for this replica's runner.
#[derive(Clone)]
struct Claimer {
    kernel: Kernel,
    executor: Arc<Executor>,
    slots: Arc<Semaphore>,
    queues: Vec<String>,
    owner: String,
    /// A claim found every slot taken or reserved: the next claim to give
    /// reserved slots back wakes the claim loop.
    missed: Arc<AtomicBool>,
}

impl Claimer {
    /// Claims up to as many attempts as there are free execution slots (at
    /// most `most`) and starts them; true if it leased all it asked for
    /// (more may be waiting).
    async fn claim(&self, most: usize) -> Result<bool, KernelError> {
        let free = self.slots.available_permits().min(most);
        // Reserved first, so claims running at once cannot lease more than
        // there are slots.
        let reserved = match free {
            0 => None,
            free => self.slots.clone().try_acquire_many_owned(free as u32).ok(),
        };
        let Some(mut reserved) = reserved else {
            self.missed.store(true, Ordering::Relaxed);
            return Ok(false);
        };
        let claimed = self
            .kernel
            .claim(&self.queues, &self.owner, free as u32)
            .await?;
        let full = claimed.len() == free;
        for attempt in claimed {
            let Some(permit) = reserved.split(1) else {
                break;
            };
            let kernel = self.kernel.clone();
            let executor = self.executor.clone();
            tokio::spawn(async move {
                execute_attempt(&kernel, &executor, attempt).await;
                drop(permit);
            });
        }
        let gave_back = reserved.num_permits() > 0;
        drop(reserved);
        if gave_back && self.missed.swap(false, Ordering::Relaxed) {
            self.kernel.wake();
        }
        if !full {
            self.kernel
                .learn_due(ClaimLoop::Internal, &self.queues)
                .await;
        }
        Ok(full)
    }

    /// Claims whenever future work (a retry's backoff) falls due, until
    /// `stop`.
    async fn claim_when_due(self, stop: watch::Receiver<bool>) {
        let kernel = self.kernel.clone();
        when_due(kernel, ClaimLoop::Internal, stop, move || {
            let claimer = self.clone();
            async move {
                if claimer.claim(MAX_CLAIM_WHEN_DUE).await? {
                    claimer.kernel.wake();
                }
                Ok(())
            }
        })
        .await
    }
}

/// The runner's execution slots, offered to the kernel for eager dispatch
/// of `internal` attempts. Once the runner stops, it reserves nothing.
struct RunnerSlots {
    slots: Arc<Semaphore>,
    sender: mpsc::UnboundedSender<(ClaimedAttempt, OwnedSemaphorePermit)>,
    owner: String,
}

impl SlotProvider for RunnerSlots {
    fn reserve(&self, queue: &str) -> Option<Box<dyn Slot>> {
        if queue != INTERNAL_QUEUE || self.sender.is_closed() {
            return None;
        }
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        Some(Box::new(RunnerSlot {
            permit,
            sender: self.sender.clone(),
            owner: self.owner.clone(),
        }))
    }
}

struct RunnerSlot {
    permit: OwnedSemaphorePermit,
    sender: mpsc::UnboundedSender<(ClaimedAttempt, OwnedSemaphorePermit)>,
    owner: String,
}

impl Slot for RunnerSlot {
    fn owner(&self) -> String {
        self.owner.clone()
    }

    fn deliver(self: Box<Self>, attempt: ClaimedAttempt) {
        // A runner that stopped gives the lease back (see `run`).
        let _ = self.sender.send((attempt, self.permit));
    }
}

async fn sweep_loop(kernel: Kernel, mut stop: watch::Receiver<bool>) {
    let interval = kernel
        .config()
        .poll_interval
        .max(Duration::from_millis(100));
    let grace = kernel.config().lease.max(MIN_OUTAGE_GRACE);
    let mut faults = store::fault_hints();
    let mut last_fault: Option<Instant> = None;
    let mut failures = FailureLog::new("sweeping leases");
    loop {
        if faults.has_changed().unwrap_or(false) {
            faults.mark_unchanged();
            last_fault = Some(Instant::now());
        }
        // During a store fault leases could be neither renewed nor
        // completed: their holders get a lease period after the last one.
        let wait = match last_fault.map(|at| grace.saturating_sub(at.elapsed())) {
            Some(left) if !left.is_zero() => left,
            _ => match kernel.sweep().await {
                Ok(handled) => {
                    failures.succeeded();
                    if handled > 0 {
                        continue;
                    }
                    interval
                }
                Err(error) => {
                    failures.failed(&error);
                    failures.backoff()
                }
            },
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Executes one leased attempt, renewing its lease while it runs, bounded
/// by the task's timeout, and records the outcome.
async fn execute_attempt(kernel: &Kernel, executor: &Executor, claimed: ClaimedAttempt) {
    let _executing = kernel.executing();
    let attempt = claimed.attempt;
    let token = attempt.lease_token.clone().unwrap_or_default();
    let chain = match store::through_faults(KernelError::is_store_fault, || {
        kernel.chain(&claimed.namespace, &claimed.chain_id, claimed.chain_version)
    })
    .await
    {
        Ok(chain) => chain,
        Err(error) => {
            tracing::error!(run_id = %attempt.run_id, error = %error, "cannot load the chain of an attempt");
            return;
        }
    };
    let Some(task) = chain.task(&attempt.task_id).cloned() else {
        let failure = TaskFailure::new(format!("chain has no task {:?}", attempt.task_id), false);
        record_failure(kernel, &chain, &attempt, &token, failure).await;
        return;
    };
    let lease = kernel.config().lease;
    let work = executor.execute(kernel, &claimed.namespace, &task, &attempt, &claimed.trace);
    tokio::pin!(work);
    let deadline = task
        .timeout
        .map(|timeout| tokio::time::Instant::now() + timeout);
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + lease / 3, lease / 3);
    let outcome = loop {
        tokio::select! {
            result = &mut work => break Some(result),
            () = sleep_until(deadline) => break None,
            _ = renew.tick() => {
                let renewal = kernel.extend_lease(&attempt.run_id, &attempt.id, &token, lease);
                match tokio::time::timeout(lease / 3, renewal).await {
                    Ok(Ok(_)) => {}
                    // The store is failing or slow: go on; the outcome is
                    // written once it is back.
                    Ok(Err(error)) if error.is_store_fault() => {
                        tracing::debug!(attempt_id = %attempt.id, error = %error, "cannot renew a lease now");
                    }
                    Err(_) => {}
                    Ok(Err(error)) => {
                        // The lease is gone (cancelled, expired, reassigned): stop.
                        tracing::info!(attempt_id = %attempt.id, error = %error, "lease lost; abandoning the attempt");
                        return;
                    }
                }
            }
        }
    };
    match outcome {
        Some(Ok(success)) => {
            record(&attempt, "completion", || {
                kernel.complete_in(
                    chain.clone(),
                    &attempt.run_id,
                    &attempt.id,
                    &token,
                    success.clone(),
                )
            })
            .await;
        }
        // A call limit held the attempt: it waits `Ready`, never fails.
        Some(Err(TaskFailure {
            throttled: Some(throttled),
            ..
        })) => {
            record(&attempt, "throttle", || {
                kernel.throttle_in(
                    chain.clone(),
                    &attempt.run_id,
                    &attempt.id,
                    &token,
                    throttled.clone(),
                )
            })
            .await;
        }
        Some(Err(failure)) => {
            record_failure(kernel, &chain, &attempt, &token, failure).await;
        }
        None => {
            // Dropping `work` cancelled the handler (and its model call).
            let mut failure = TaskFailure::new(
                format!(
                    "task {} exceeded its timeout of {:?}",
                    attempt.task_id,
                    task.timeout.unwrap_or_default()
                ),
                true,
            );
            failure.timed_out = true;
            record_failure(kernel, &chain, &attempt, &token, failure).await;
        }
    }
}

async fn record_failure(
    kernel: &Kernel,
    chain: &Arc<CompiledChain>,
    attempt: &AttemptRecord,
    token: &str,
    failure: TaskFailure,
) {
    record(attempt, "failure", || {
        kernel.fail_in(
            chain.clone(),
            &attempt.run_id,
            &attempt.id,
            token,
            failure.clone(),
        )
    })
    .await;
}

/// Writes an attempt's outcome, again and again while the store fails.
async fn record<W, F>(attempt: &AttemptRecord, what: &str, write: W)
where
    W: Fn() -> F,
    F: std::future::Future<Output = KernelResult<Transitioned>>,
{
    if let Err(error) = store::through_faults(KernelError::is_store_fault, write).await {
        tracing::info!(attempt_id = %attempt.id, error = %error, "{what} not recorded");
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
