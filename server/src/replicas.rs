//! This replica in the registry: it registers at start, writes its
//! heartbeat every `heartbeat_interval`, refreshes its copy of the paused
//! queues with it, notices when an operator asked it to drain
//! (`DrainReplica` on any replica), and declares gone every replica whose
//! heartbeat is older than `timeout`, releasing that replica's leases so
//! its runs resume at once instead of after their leases expire.

use std::time::Duration;

use tokio::sync::watch;

use crate::kernel::Kernel;
use crate::store::{self, ReplicaState};
use crate::telemetry::FailureLog;

/// Tunables of the registry loop.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// How often the heartbeat is written.
    pub heartbeat_interval: Duration,
    /// A heartbeat older than this declares its replica gone.
    pub timeout: Duration,
    /// The address this replica serves gRPC on.
    pub listen_address: String,
    /// Whether other live replicas may share the store (PostgreSQL). A
    /// SQLite file has one process: the only replica it can find dead is
    /// its own predecessor after a crash, so it looks once per heartbeat
    /// instead of several times a second.
    pub shared_store: bool,
}

impl ReplicaConfig {
    /// How often dead replicas are looked for: often enough that a dead
    /// one is noticed soon after its timeout (a cheap indexed update).
    fn check_interval(&self) -> Duration {
        if !self.shared_store {
            return self.heartbeat_interval;
        }
        (self.timeout / 50)
            .max(Duration::from_millis(50))
            .min(self.heartbeat_interval)
    }
}

/// Runs until `stop` turns true; flips `drain_requested` to true when the
/// store says this replica is to drain.
pub async fn run(
    kernel: Kernel,
    config: ReplicaConfig,
    drain_requested: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let check = config.check_interval();
    let mut failures = FailureLog::new("writing the replica heartbeat");
    let mut next_heartbeat = tokio::time::Instant::now();
    // After a store outage every replica's heartbeat is old: others are
    // judged only once this replica wrote its own lately and the store has
    // worked for a whole timeout (so the others could write theirs too).
    let mut faults = store::fault_hints();
    faults.mark_unchanged();
    let mut last_fault: Option<tokio::time::Instant> = None;
    let mut last_written: Option<tokio::time::Instant> = None;
    loop {
        if faults.has_changed().unwrap_or(false) {
            faults.mark_unchanged();
            last_fault = Some(tokio::time::Instant::now());
        }
        if tokio::time::Instant::now() >= next_heartbeat {
            next_heartbeat += config.heartbeat_interval;
            let written = kernel.replica_heartbeat().await;
            if matches!(written, Ok(Some(_))) {
                last_written = Some(tokio::time::Instant::now());
            }
            match written {
                Ok(Some(ReplicaState::Draining)) => {
                    failures.succeeded();
                    if !*drain_requested.borrow() {
                        tracing::info!("this replica was asked to drain");
                        let _ = drain_requested.send(true);
                    }
                }
                Ok(Some(_)) => failures.succeeded(),
                Ok(None) => {
                    // Others declared this replica gone (it could not write
                    // for longer than the timeout) and released its leases;
                    // its late reports are fenced. It serves on, anew.
                    tracing::warn!(
                        "this replica was declared gone (missed heartbeats); registering again"
                    );
                    if let Err(error) = kernel.register_replica(&config.listen_address).await {
                        failures.failed(&error);
                    }
                }
                Err(error) => {
                    last_fault = Some(tokio::time::Instant::now());
                    failures.failed(&error);
                }
            }
            if let Err(error) = kernel.refresh_paused_queues().await {
                tracing::debug!(error = %error, "cannot read the paused queues now");
            }
        }
        let written_lately = last_written.is_some_and(|at| at.elapsed() < config.timeout / 2);
        let store_settled = last_fault.is_none_or(|at| at.elapsed() > config.timeout);
        if written_lately
            && store_settled
            && let Err(error) = kernel.release_dead_replicas(config.timeout).await
        {
            tracing::debug!(error = %error, "cannot look for dead replicas now");
        }
        tokio::select! {
            () = tokio::time::sleep(check) => {}
            _ = stop.changed() => return,
        }
    }
}
