//! The lease decision, pure (time and randomness are passed in): who holds
//! an attempt, under which fencing token and until when ([`grant`]), and
//! how many attempts each queue and tenant may hold at once ([`Caps`]).
//!
//! Both ways of leasing go through [`grant`]: the store's claim, which
//! selects and locks candidates and asks a [`ClaimRequest`] (the store's
//! [`ClaimPolicy`]) what to take and how to lease it, feeding it the leased
//! counts it reads; and eager dispatch, which leases the attempts a
//! transition creates before they are first written.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};

use crate::store::{AttemptRecord, AttemptStatus, ClaimPolicy, Rejection, RejectionKind};

/// Concurrency caps, global across replicas: how many attempts of a queue,
/// or of a tenant's runs, may be leased at once. A claim leaves attempts
/// beyond them `Ready` (backpressure, never a failure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    pub queues: BTreeMap<String, u32>,
    pub tenants: BTreeMap<String, u32>,
    /// For every tenant without a cap of its own.
    pub default_tenant: Option<u32>,
}

impl Caps {
    /// The cap of a queue key: its own (`team/gpu=4`), or the one its
    /// name has in every namespace (`gpu=4`, counted per namespace).
    pub fn queue(&self, key: &str) -> Option<u32> {
        self.queues
            .get(key)
            .or_else(|| self.queues.get(crate::namespace::unqualified(key)))
            .copied()
    }

    /// The cap of a tenant key (`namespace/tenant`): its own, the one its
    /// name has in every namespace, or the default.
    pub fn tenant(&self, key: &str) -> Option<u32> {
        self.tenants
            .get(key)
            .or_else(|| self.tenants.get(crate::namespace::unqualified(key)))
            .copied()
            .or(self.default_tenant)
    }

    pub fn limits_tenants(&self) -> bool {
        !self.tenants.is_empty() || self.default_tenant.is_some()
    }
}

/// When a lease taken at `now` for `lease_ms` ends; `None` when that
/// leaves the representable range.
pub fn expiry(now: DateTime<Utc>, lease_ms: i64) -> Option<DateTime<Utc>> {
    TimeDelta::try_milliseconds(lease_ms).and_then(|lease| now.checked_add_signed(lease))
}

/// `attempt` leased to `owner` from `now` until `expires_at`, fenced by
/// `token` (random bits the caller draws).
pub fn grant(
    attempt: &AttemptRecord,
    owner: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    token: u128,
) -> AttemptRecord {
    AttemptRecord {
        status: AttemptStatus::Leased,
        lease_owner: Some(owner.to_string()),
        lease_token: Some(format!("{token:032x}")),
        lease_expires_at: Some(expires_at),
        started_at: Some(now),
        ..attempt.clone()
    }
}

/// One claim: what to take, for whom, within which caps.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Claim only from these queues.
    pub queues: Vec<String>,
    /// The lease owner (a replica's executor or a worker session).
    pub owner: String,
    /// At most this many attempts.
    pub limit: u32,
    /// Claim attempts whose `available_at <= now`.
    pub now: DateTime<Utc>,
    /// The leases expire at `now + lease_ms`.
    pub lease_ms: i64,
    /// Concurrency caps the claim must stay within.
    pub caps: Caps,
}

impl ClaimPolicy for ClaimRequest {
    fn queues(&self) -> &[String] {
        &self.queues
    }

    fn limit(&self) -> u32 {
        self.limit
    }

    fn now(&self) -> DateTime<Utc> {
        self.now
    }

    fn queue_capped(&self, queue: &str) -> bool {
        self.caps.queue(queue).is_some()
    }

    fn tenant_capped(&self, tenant: &str) -> bool {
        self.caps.tenant(tenant).is_some()
    }

    fn quotas(&self, leased_per_queue: &HashMap<String, u32>) -> Vec<(String, u32)> {
        queue_quotas(self, leased_per_queue)
    }

    fn within_caps(
        &self,
        candidates: &[(&str, &str)],
        quotas: &HashMap<String, u32>,
        leased_per_tenant: &HashMap<String, u32>,
    ) -> (Vec<usize>, Vec<String>) {
        let (kept, full) = within_caps(
            candidates,
            quotas,
            &self.caps,
            leased_per_tenant,
            self.limit as usize,
        );
        // Counted once per claim and cap kind that left ready work waiting.
        if !full.is_empty() {
            crate::metrics::throttled("tenant_cap");
        }
        let held_by_queue_cap = crate::metrics::enabled()
            && kept.len() < self.limit as usize
            && (0..candidates.len()).any(|index| {
                let (queue, tenant) = candidates[index];
                !kept.contains(&index)
                    && self.caps.queue(queue).is_some()
                    && !full.iter().any(|t| t == tenant)
            });
        if held_by_queue_cap {
            crate::metrics::throttled("queue_cap");
        }
        (kept, full)
    }

    fn lease(&self, attempt: &AttemptRecord) -> Result<AttemptRecord, Rejection> {
        let expires_at = expiry(self.now, self.lease_ms).ok_or_else(|| Rejection {
            kind: RejectionKind::FailedPrecondition,
            message: format!("lease of {} ms is out of range", self.lease_ms),
        })?;
        // The thread's CSPRNG: no lock, no I/O.
        let token = rand::random::<u128>();
        Ok(grant(attempt, &self.owner, self.now, expires_at, token))
    }
}

/// How many attempts each queue of a claim may take: the claim's limit,
/// cut by the queue's cap less what is leased now. Queues with no room are
/// left out. Sorted by queue.
fn queue_quotas(request: &ClaimRequest, leased: &HashMap<String, u32>) -> Vec<(String, u32)> {
    let mut queues: Vec<&String> = request.queues.iter().collect();
    queues.sort();
    queues.dedup();
    queues
        .into_iter()
        .filter_map(|queue| {
            let room = match request.caps.queue(queue) {
                Some(cap) => cap.saturating_sub(leased.get(queue).copied().unwrap_or(0)),
                None => request.limit,
            };
            (room > 0).then(|| (queue.clone(), room.min(request.limit)))
        })
        .collect()
}

/// Keeps the candidates (in claim order, each with its queue and its run's
/// tenant) that fit each queue's quota and each tenant's room given what
/// is leased now, at most `limit`; also returns the tenants that ran out
/// of room while candidates of theirs were left (to leave out of a
/// re-read).
fn within_caps(
    candidates: &[(&str, &str)],
    quotas: &HashMap<String, u32>,
    caps: &Caps,
    leased_per_tenant: &HashMap<String, u32>,
    limit: usize,
) -> (Vec<usize>, Vec<String>) {
    let mut per_queue: HashMap<&str, u32> = HashMap::new();
    let mut per_tenant: HashMap<&str, u32> = HashMap::new();
    let mut kept = Vec::new();
    let mut full: Vec<String> = Vec::new();
    for (index, (queue, tenant)) in candidates.iter().enumerate() {
        if kept.len() == limit {
            break;
        }
        let queue_taken = per_queue.entry(queue).or_default();
        if *queue_taken >= quotas.get(*queue).copied().unwrap_or(0) {
            continue;
        }
        if let Some(cap) = caps.tenant(tenant) {
            let taken = per_tenant.entry(tenant).or_default();
            if leased_per_tenant.get(*tenant).copied().unwrap_or(0) + *taken >= cap {
                if !full.iter().any(|t| t == tenant) {
                    full.push(tenant.to_string());
                }
                continue;
            }
            *taken += 1;
        }
        *queue_taken += 1;
        kept.push(index);
    }
    (kept, full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(queues: &[&str], limit: u32, caps: Caps) -> ClaimRequest {
        ClaimRequest {
            queues: queues.iter().map(|q| q.to_string()).collect(),
            owner: "w".into(),
            limit,
            now: chrono::Utc::now(),
            lease_ms: 1000,
            caps,
        }
    }

    #[test]
    fn queue_quotas_follow_caps_and_leases() {
        let caps = Caps {
            queues: BTreeMap::from([("capped".to_string(), 3), ("full".to_string(), 2)]),
            ..Caps::default()
        };
        let leased = HashMap::from([("capped".to_string(), 1), ("full".to_string(), 2)]);
        let quotas = queue_quotas(&request(&["free", "full", "capped"], 10, caps), &leased);
        assert_eq!(
            quotas,
            vec![("capped".to_string(), 2), ("free".to_string(), 10)]
        );
    }

    #[test]
    fn candidates_within_queue_quotas_and_tenant_caps() {
        let caps = Caps {
            tenants: BTreeMap::from([("big".to_string(), 5)]),
            default_tenant: Some(1),
            ..Caps::default()
        };
        let leased = HashMap::from([("big".to_string(), 4)]);
        let quotas = HashMap::from([("q".to_string(), 10), ("small".to_string(), 1)]);
        let candidates = [
            ("q", "big"),
            ("q", "big"),
            ("q", "a"),
            ("q", "a"),
            ("small", "b"),
            ("small", "c"),
        ];
        let (kept, full) = within_caps(&candidates, &quotas, &caps, &leased, 10);
        assert_eq!(kept, vec![0, 2, 4]);
        assert_eq!(full, vec!["big".to_string(), "a".to_string()]);
        let (kept, _) = within_caps(&candidates, &quotas, &caps, &leased, 2);
        assert_eq!(kept, vec![0, 2]);
    }

    #[test]
    fn a_grant_leases_the_attempt_and_nothing_else() {
        let now = chrono::Utc::now();
        let attempt = AttemptRecord {
            queue: "q".into(),
            lease_expiries: 2,
            ..AttemptRecord::ready("a".into(), "r".into(), "t".into(), now)
        };
        let until = expiry(now, 1500).unwrap();
        let leased = grant(&attempt, "w", now, until, 0xab);
        assert_eq!(
            leased,
            AttemptRecord {
                status: AttemptStatus::Leased,
                lease_owner: Some("w".into()),
                lease_token: Some(format!("{:032x}", 0xab)),
                lease_expires_at: Some(now + TimeDelta::milliseconds(1500)),
                started_at: Some(now),
                ..attempt
            }
        );
        assert_eq!(expiry(now, i64::MAX), None);
    }
}
