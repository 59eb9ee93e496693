//! Queues and replicas, for operators: queue figures with their caps,
//! pausing and resuming queues (global: the claims read the paused queues
//! in their own transaction; eager dispatch, which cannot read the store,
//! follows this replica's copy of them, refreshed every heartbeat and at
//! once by a pause served here), the replica registry, and handing leases
//! back (a drain) or taking a dead replica's leases away (failover).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::{Kernel, KernelResult, now};
use crate::namespace::{of_queue_key, queue_in, queue_key};
use crate::store::{AuditRecord, QueueRecord, ReplicaRecord, ReplicaState};

/// One queue as `ListQueues` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFigures {
    pub record: QueueRecord,
    /// `--queue-concurrency` for the queue; 0 means none.
    pub concurrency_cap: u32,
}

/// How long a stopped replica stays listed.
const GONE_LISTED_FOR: chrono::Duration = chrono::Duration::hours(1);

impl Kernel {
    /// Every queue of `namespace` (and the shared internal one) with work,
    /// paused or capped, by key.
    pub async fn list_queues(&self, namespace: &str) -> KernelResult<Vec<QueueFigures>> {
        let records = self.inner.store.list_queues(now()).await?;
        let caps = &self.inner.config.caps;
        let mut figures: Vec<QueueFigures> = records
            .into_iter()
            .filter(|record| queue_in(namespace, &record.name).is_some())
            .map(|record| QueueFigures {
                concurrency_cap: caps.queue(&record.name).unwrap_or(0),
                record,
            })
            .collect();
        for name in caps.queues.keys() {
            // A cap without a namespace applies in every one.
            let key = match of_queue_key(name) {
                Some(_) if queue_in(namespace, name).is_none() => continue,
                Some(_) => name.clone(),
                None => queue_key(namespace, name),
            };
            if !figures.iter().any(|queue| queue.record.name == key) {
                figures.push(QueueFigures {
                    concurrency_cap: caps.queue(&key).unwrap_or(0),
                    record: idle_queue(&key),
                });
            }
        }
        figures.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        Ok(figures)
    }

    /// One queue's figures (a queue without work shows zeros).
    async fn queue(&self, namespace: &str, key: &str) -> KernelResult<QueueFigures> {
        let found = self
            .list_queues(namespace)
            .await?
            .into_iter()
            .find(|queue| queue.record.name == key);
        Ok(found.unwrap_or_else(|| QueueFigures {
            record: idle_queue(key),
            concurrency_cap: 0,
        }))
    }

    /// Pauses queue `name` of `namespace` on every replica (idempotent;
    /// `audit` is written with the pause). The internal queue is shared.
    pub async fn pause_queue(
        &self,
        namespace: &str,
        name: &str,
        audit: &AuditRecord,
    ) -> KernelResult<QueueFigures> {
        let key = queue_key(namespace, name);
        self.inner.store.pause_queue(&key, audit).await?;
        self.paused_queues_write().insert(key.clone());
        self.queue(namespace, &key).await
    }

    /// Resumes a queue (idempotent; `audit` is written with the change) and
    /// wakes this replica's claim loops; the others' find its work at
    /// their next poll.
    pub async fn resume_queue(
        &self,
        namespace: &str,
        name: &str,
        audit: &AuditRecord,
    ) -> KernelResult<QueueFigures> {
        let key = queue_key(namespace, name);
        self.inner.store.resume_queue(&key, audit).await?;
        self.paused_queues_write().remove(&key);
        self.inner.work.notify_one();
        self.inner.worker_work.notify_one();
        self.queue(namespace, &key).await
    }

    /// Replaces this replica's copy of the paused queues (read from the
    /// store every heartbeat).
    pub async fn refresh_paused_queues(&self) -> KernelResult<()> {
        let names: HashSet<String> = self
            .inner
            .store
            .paused_queues()
            .await?
            .into_iter()
            .collect();
        *self.paused_queues_write() = names;
        Ok(())
    }

    /// Whether eager dispatch must leave `queue` alone.
    pub(super) fn holds_back(&self, queue: &str) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
            || self
                .inner
                .paused_queues
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .contains(queue)
    }

    fn paused_queues_write(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<String>> {
        self.inner
            .paused_queues
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// This replica takes no new work from now on (eager dispatch stops;
    /// the claim loops are stopped by their owner).
    pub fn stop_taking_work(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// The live replicas and those stopped in the last hour, by id.
    pub async fn list_replicas(
        &self,
        sessions_since: DateTime<Utc>,
    ) -> KernelResult<Vec<ReplicaRecord>> {
        let now = now();
        Ok(self
            .inner
            .store
            .list_replicas(now - GONE_LISTED_FOR, sessions_since)
            .await?)
    }

    /// Marks a replica draining; the replica itself notices at its next
    /// heartbeat and drains.
    pub async fn drain_replica(
        &self,
        id: &str,
        audit: &AuditRecord,
    ) -> KernelResult<ReplicaRecord> {
        Ok(self.inner.store.drain_replica(id, Some(audit)).await?)
    }

    /// Adds this replica to the registry (again, if others declared it
    /// gone while it could not write its heartbeat).
    pub async fn register_replica(&self, listen_address: &str) -> KernelResult<()> {
        let now = now();
        let record = ReplicaRecord {
            id: self.inner.instance_id.clone(),
            listen_address: listen_address.to_string(),
            version: crate::VERSION.to_string(),
            started_at: now,
            heartbeat_at: now,
            state: ReplicaState::Active,
            stopped_at: None,
            runs_held: 0,
            leases_held: 0,
            worker_sessions: 0,
        };
        Ok(self.inner.store.register_replica(&record).await?)
    }

    /// Records that this replica drains (on SIGTERM; `DrainReplica` records
    /// it itself).
    pub async fn mark_draining(&self) -> KernelResult<()> {
        self.inner
            .store
            .drain_replica(&self.inner.instance_id, None)
            .await?;
        Ok(())
    }

    /// Records a clean stop: the replica is `Gone`.
    pub async fn stop_replica(&self) -> KernelResult<()> {
        Ok(self
            .inner
            .store
            .stop_replica(&self.inner.instance_id, now())
            .await?)
    }

    /// Gives back every lease this replica's runner holds: each attempt is
    /// `Ready` at once for another replica, without spending a retry. A
    /// handler still running here is fenced out when it reports. Returns
    /// how many leases were given back.
    pub async fn hand_back_leases(&self) -> KernelResult<usize> {
        let held = self
            .inner
            .store
            .leases_held_by(&self.inner.instance_id)
            .await?;
        let mut given_back = 0;
        for lease in &held {
            match self
                .release_lease(&lease.run_id, &lease.attempt_id, &lease.lease_token)
                .await
            {
                Ok(_) => given_back += 1,
                Err(error) if error.is_store_fault() => return Err(error),
                // Settled meanwhile (completed, cancelled): nothing to give.
                Err(error) => {
                    tracing::debug!(attempt_id = %lease.attempt_id, error = %error, "lease not handed back");
                }
            }
        }
        Ok(given_back)
    }

    /// Counts one attempt this replica's runner executes, until dropped
    /// (its outcome recorded or given up).
    pub fn executing(&self) -> Executing {
        self.inner.executing.fetch_add(1, Ordering::SeqCst);
        Executing(self.clone())
    }

    /// Attempts this replica's runner executes now.
    pub fn executions(&self) -> usize {
        self.inner.executing.load(Ordering::SeqCst)
    }

    /// Declares gone the replicas whose heartbeat is older than `timeout`
    /// and ends the leases their runners held at once, as expired (fenced by
    /// their tokens: the dead replica's late reports are rejected). Leases
    /// of workers that were connected to them stay: those workers are alive
    /// and re-attach them on another replica. Returns the replicas declared
    /// gone by this call.
    pub async fn release_dead_replicas(
        &self,
        timeout: std::time::Duration,
    ) -> KernelResult<Vec<String>> {
        let now = now();
        let cutoff = now - chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
        let dead = self.inner.store.declare_gone(cutoff, now).await?;
        for replica in &dead {
            let held = self.inner.store.leases_held_by(replica).await?;
            tracing::warn!(replica = %replica, leases = held.len(), "replica missed its heartbeats: declared gone, releasing its leases");
            for lease in held {
                if let Err(error) = self
                    .expire_lease(&lease.run_id, &lease.attempt_id, &lease.lease_token)
                    .await
                {
                    if error.is_store_fault() {
                        return Err(error);
                    }
                    tracing::debug!(attempt_id = %lease.attempt_id, error = %error, "lease of a gone replica not released");
                }
            }
        }
        Ok(dead)
    }

    /// Writes this replica's heartbeat; its state as stored, `None` when
    /// others declared it gone.
    pub async fn replica_heartbeat(&self) -> KernelResult<Option<ReplicaState>> {
        Ok(self
            .inner
            .store
            .heartbeat_replica(&self.inner.instance_id, now())
            .await?)
    }
}

/// See [`Kernel::executing`].
pub struct Executing(Kernel);

impl Drop for Executing {
    fn drop(&mut self) {
        self.0.inner.executing.fetch_sub(1, Ordering::SeqCst);
    }
}

fn idle_queue(name: &str) -> QueueRecord {
    QueueRecord {
        name: name.to_string(),
        ready: 0,
        oldest_ready_at: None,
        leased: 0,
        scheduled: 0,
        pause: None,
    }
}
