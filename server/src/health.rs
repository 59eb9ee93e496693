//! gRPC health follows the store: `""` and every service turn
//! `NOT_SERVING` while the store cannot write, and `SERVING` again once it
//! can. A store fault met anywhere in the process (see
//! [`store::fault_hints`]) makes the monitor probe the store with a small
//! write; while that fails, it probes every second.

use std::time::Duration;

use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::store::{self, DynStore};
use crate::telemetry::FailureLog;

/// How often a failing store is probed, and at most how often a healthy
/// one is (a storm of faults costs one probe a second).
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A probe that takes longer counts as failed (a pool waiting for a
/// database that does not answer).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs until `stop` turns true.
pub async fn follow_store(
    store: DynStore,
    reporter: HealthReporter,
    services: Vec<&'static str>,
    mut stop: watch::Receiver<bool>,
) {
    let mut hints = store::fault_hints();
    hints.mark_unchanged();
    loop {
        tokio::select! {
            changed = hints.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
        if probe(&store).await.is_err() {
            set(&reporter, &services, ServingStatus::NotServing).await;
            tracing::warn!("the store cannot write: health is NOT_SERVING until it can");
            let mut failures = FailureLog::new("probing the store");
            loop {
                tokio::select! {
                    () = tokio::time::sleep(PROBE_INTERVAL) => {}
                    _ = stop.changed() => return,
                }
                match probe(&store).await {
                    Ok(()) => break,
                    Err(error) => failures.failed(&error),
                }
            }
            set(&reporter, &services, ServingStatus::Serving).await;
            tracing::info!("the store can write again: health is SERVING");
        } else {
            // A passing fault (e.g. one lost connection, replaced since).
            tokio::select! {
                () = tokio::time::sleep(PROBE_INTERVAL) => {}
                _ = stop.changed() => return,
            }
        }
        hints.mark_unchanged();
    }
}

async fn probe(store: &DynStore) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, store.probe()).await {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

async fn set(reporter: &HealthReporter, services: &[&'static str], status: ServingStatus) {
    for name in services.iter().copied().chain([""]) {
        reporter.set_service_status(name, status).await;
    }
}
