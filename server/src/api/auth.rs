//! Who is calling (docs/security.md). With any key configured — in
//! `--api-keys-file`, `TASKLOOM_API_KEYS` or the store — every call to a
//! Taskloom service must carry `authorization: Bearer <key>`
//! (`UNAUTHENTICATED` otherwise); health checks and reflection stay open,
//! so probes and `grpcurl list` work without one. With none configured
//! every caller is admin (open local-development mode, logged at startup).
//!
//! Only SHA-256 digests of secrets are kept. The store's keys are mirrored
//! whole in memory ([`Authenticator::reload`], whenever the store's key
//! revision moves, polled every [`POLL_INTERVAL`]): a key check is one
//! hash and one map lookup and never reads the store. Keys are few (people
//! and services, not end users), so the mirror is small; a secret that is
//! not in it is unknown, which makes a separate negative cache needless.
//! `last_used_at` is written in batches off the request path, at most
//! about once a minute per key.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::ApiError;
use super::permissions::{Permission, Role};
use super::request::hex;
use crate::store::{ApiKeyRecord, DynStore, StoreResult};

type KeyDigest = [u8; 32];

/// How often each replica asks the store whether keys changed: a
/// revocation reaches every replica within about this long.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often recorded key uses are written.
const TOUCH_INTERVAL: Duration = Duration::from_secs(5);
/// A key's use is recorded at most this often (seconds).
const TOUCH_EVERY_SECS: i64 = 60;
/// The metadata a call names its namespace in.
pub const NAMESPACE_HEADER: &str = "x-taskloom-namespace";

/// Checks the keys of every call. Cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Keys of `--api-keys-file` and `TASKLOOM_API_KEYS`: admin, every
    /// namespace.
    static_keys: Vec<KeyDigest>,
    /// The store's keys, as last loaded.
    table: RwLock<Arc<KeyTable>>,
    /// Key uses not yet written to the store.
    used: Mutex<Vec<(String, DateTime<Utc>)>>,
}

#[derive(Default)]
struct KeyTable {
    /// The store's key revision this table was loaded at.
    revision: Option<i64>,
    keys: HashMap<KeyDigest, Arc<KnownKey>>,
    /// The namespaces that exist (they move the key revision too).
    namespaces: HashSet<String>,
}

/// A store key as the checks need it.
struct KnownKey {
    id: String,
    role: Role,
    namespace: Option<String>,
    /// `None`: every queue.
    queues: Option<Arc<[String]>>,
    expires_at: Option<DateTime<Utc>>,
    revoked: bool,
    /// When a use was last recorded (seconds since the epoch).
    last_marked: AtomicI64,
}

impl KnownKey {
    fn from_record(record: ApiKeyRecord) -> Option<(KeyDigest, KnownKey)> {
        let Some(role) = Role::parse(&record.role) else {
            // Fail closed: a key this version cannot read grants nothing.
            tracing::warn!(key_id = %record.id, role = %record.role, "API key with an unknown role ignored");
            return None;
        };
        let Ok(digest) = KeyDigest::try_from(record.secret_hash.as_slice()) else {
            tracing::warn!(key_id = %record.id, "API key with a malformed digest ignored");
            return None;
        };
        let known = KnownKey {
            id: record.id,
            role,
            namespace: record.namespace,
            queues: (!record.queues.is_empty()).then(|| record.queues.into()),
            expires_at: record.expires_at,
            revoked: record.revoked_at.is_some(),
            last_marked: AtomicI64::new(record.last_used_at.map_or(0, |at| at.timestamp())),
        };
        Some((digest, known))
    }
}

impl Authenticator {
    /// Checks the given static keys (blank ones are ignored) and, once
    /// loaded, the store's.
    pub fn new<I, K>(static_keys: I) -> Authenticator
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let static_keys = static_keys
            .into_iter()
            .map(|key| key.as_ref().trim().to_string())
            .filter(|key| !key.is_empty())
            .map(|key| digest(&key))
            .collect();
        Authenticator {
            inner: Arc::new(Inner {
                static_keys,
                ..Inner::default()
            }),
        }
    }

    /// How many keys come from the file and the environment.
    pub fn static_keys(&self) -> usize {
        self.inner.static_keys.len()
    }

    /// How many keys the store holds (revoked and expired included).
    pub fn stored_keys(&self) -> usize {
        self.table().keys.len()
    }

    /// No key anywhere: every caller is admin. A store key, even revoked or
    /// expired, ends open mode for good, so revoking the last key cannot
    /// open the server.
    pub fn is_open(&self) -> bool {
        self.inner.static_keys.is_empty() && self.table().keys.is_empty()
    }

    fn table(&self) -> Arc<KeyTable> {
        self.inner
            .table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Loads the store's keys if its key revision moved since the last load.
    pub async fn reload(&self, store: &DynStore) -> StoreResult<()> {
        let revision = store.api_key_revision().await?;
        if self.table().revision == Some(revision) {
            return Ok(());
        }
        // The revision is read first: a change after it is seen by the next
        // poll, never lost.
        let records = store.list_api_keys().await?;
        let namespaces = store
            .list_namespaces()
            .await?
            .into_iter()
            .map(|namespace| namespace.name)
            .collect();
        let keys = records
            .into_iter()
            .filter_map(KnownKey::from_record)
            .map(|(digest, known)| (digest, Arc::new(known)))
            .collect();
        let mut table = self
            .inner
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The poll loop and a KeyService call may load at once: the older
        // load must not replace the newer (revisions only grow).
        if table.revision.is_some_and(|current| current > revision) {
            return Ok(());
        }
        *table = Arc::new(KeyTable {
            revision: Some(revision),
            keys,
            namespaces,
        });
        Ok(())
    }

    /// Follows the store's keys until `stop` turns true: reloads them when
    /// they change and writes the recorded uses.
    pub async fn run(self, store: DynStore, mut stop: watch::Receiver<bool>) {
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut touch = tokio::time::interval(TOUCH_INTERVAL);
        touch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = poll.tick() => {
                    if let Err(error) = self.reload(&store).await {
                        tracing::debug!(error = %error, "cannot reload the API keys");
                    }
                }
                _ = touch.tick() => self.write_uses(&store).await,
                // The guard `wait_for` returns is dropped inside: it is not
                // `Send`.
                () = async { let _ = stop.wait_for(|stop| *stop).await; } => break,
            }
        }
        self.write_uses(&store).await;
    }

    async fn write_uses(&self, store: &DynStore) {
        let used = std::mem::take(
            &mut *self
                .inner
                .used
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if let Err(error) = store.touch_api_keys(&used).await {
            // Best effort: a lost `last_used_at` is not worth a retry.
            tracing::debug!(error = %error, "cannot record API key uses");
        }
    }

    /// Who makes a call with this metadata: `UNAUTHENTICATED` without a
    /// valid key, `INVALID_ARGUMENT` for a malformed namespace,
    /// `PERMISSION_DENIED` for a namespace the key is not bound to.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, ApiError> {
        let table = self.table();
        // Checked after the key: a caller without one learns nothing more.
        let named = || {
            let namespace = namespace_of(metadata)?;
            let exists = table.namespaces.contains(&namespace);
            Ok::<_, ApiError>((namespace, exists))
        };
        if self.inner.static_keys.is_empty() && table.keys.is_empty() {
            let (namespace, namespace_exists) = named()?;
            return Ok(Caller {
                namespace_exists,
                ..Caller::local_in(namespace)
            });
        }
        let presented = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "an API key is required: send `authorization: Bearer <key>`".into(),
                )
            })?;
        let presented = digest(presented);
        if self.admits_static(&presented) {
            let (namespace, namespace_exists) = named()?;
            return Ok(Caller {
                actor: format!("key:{}", hex(&presented[..6])),
                key_id: None,
                role: Role::Admin,
                namespace,
                namespace_exists,
                key_namespace: None,
                queues: None,
            });
        }
        // A map lookup by digest: the digest of a high-entropy secret tells
        // nothing about the secret, so its timing leaks nothing useful.
        let key = table
            .keys
            .get(&presented)
            .ok_or_else(|| ApiError::Unauthenticated("the API key is not valid".into()))?;
        if key.revoked {
            return Err(ApiError::Unauthenticated(format!(
                "the API key {} was revoked",
                key.id
            )));
        }
        let now = Utc::now();
        if key.expires_at.is_some_and(|expires| expires <= now) {
            return Err(ApiError::Unauthenticated(format!(
                "the API key {} has expired",
                key.id
            )));
        }
        let (namespace, namespace_exists) = named()?;
        if let Some(bound) = &key.namespace
            && *bound != namespace
        {
            return Err(ApiError::PermissionDenied {
                reason: "NAMESPACE_NOT_ALLOWED",
                message: format!(
                    "the API key {} is bound to namespace {bound:?}, not {namespace:?}",
                    key.id
                ),
                metadata: vec![
                    ("role", key.role.name().to_string()),
                    ("namespace", namespace.clone()),
                    ("key_namespace", bound.clone()),
                ],
            });
        }
        self.mark_used(key, now);
        Ok(Caller {
            actor: format!("key:{}", key.id),
            key_id: Some(key.id.clone()),
            role: key.role,
            namespace,
            namespace_exists,
            key_namespace: key.namespace.clone(),
            queues: key.queues.clone(),
        })
    }

    /// Installs `records` as the store's keys (tests without a store).
    #[cfg(test)]
    fn install(&self, records: Vec<ApiKeyRecord>) {
        let keys = records
            .into_iter()
            .filter_map(KnownKey::from_record)
            .map(|(digest, known)| (digest, Arc::new(known)))
            .collect();
        *self.inner.table.write().expect("lock") = Arc::new(KeyTable {
            revision: Some(1),
            keys,
            namespaces: HashSet::from([crate::namespace::DEFAULT.to_string()]),
        });
    }

    fn admits_static(&self, presented: &KeyDigest) -> bool {
        // Compare every byte of every digest: the time taken does not tell
        // how much of a key matched.
        self.inner.static_keys.iter().fold(false, |found, known| {
            let differing = known
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found | (differing == 0)
        })
    }

    /// Queues a `last_used_at` write when the last one is a minute old.
    fn mark_used(&self, key: &KnownKey, now: DateTime<Utc>) {
        let seconds = now.timestamp();
        let last = key.last_marked.load(Ordering::Relaxed);
        if seconds - last < TOUCH_EVERY_SECS
            || key
                .last_marked
                .compare_exchange(last, seconds, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.inner
            .used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((key.id.clone(), now));
    }
}

/// The namespace a call names: lowercase letters, digits and `-`, 1 to 63
/// characters; `default` when it names none.
fn namespace_of(metadata: &MetadataMap) -> Result<String, ApiError> {
    let Some(value) = metadata.get(NAMESPACE_HEADER) else {
        return Ok(crate::namespace::DEFAULT.to_string());
    };
    let name = value.to_str().unwrap_or_default();
    if !crate::namespace::is_valid(name) {
        return Err(ApiError::invalid(
            NAMESPACE_HEADER,
            "a namespace is 1 to 63 lowercase letters, digits and `-`",
        ));
    }
    Ok(name.to_string())
}

fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// Who makes the current call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// For the audit log: `key:<id>` for a store key, `key:<12 hex>` (the
    /// start of the SHA-256 digest: stable, and no use to anyone who does
    /// not hold the key) for a file or environment key, `local` in open
    /// mode.
    pub actor: String,
    /// The store key's id.
    pub key_id: Option<String>,
    pub role: Role,
    /// The namespace the call names.
    pub namespace: String,
    /// Whether that namespace exists (as this replica last loaded them).
    pub namespace_exists: bool,
    /// The namespace the key is bound to; `None` for every namespace.
    pub key_namespace: Option<String>,
    /// The only queues a worker key may serve; `None` for every queue.
    pub queues: Option<Arc<[String]>>,
}

impl Caller {
    /// The caller in open mode, and outside any call.
    pub fn local() -> Caller {
        Caller::local_in(crate::namespace::DEFAULT.to_string())
    }

    fn local_in(namespace: String) -> Caller {
        Caller {
            actor: "local".to_string(),
            key_id: None,
            role: Role::Admin,
            namespace,
            namespace_exists: true,
            key_namespace: None,
            queues: None,
        }
    }

    /// `PERMISSION_DENIED` unless the caller's role grants `permission`;
    /// `NOT_FOUND` when it acts in a namespace that does not exist.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.role.grants(permission) {
            if permission.in_namespace() && !self.namespace_exists {
                return Err(ApiError::NamespaceNotFound(self.namespace.clone()));
            }
            return Ok(());
        }
        Err(ApiError::PermissionDenied {
            reason: "PERMISSION_MISSING",
            message: format!("the role {} lacks the permission {permission}", self.role),
            metadata: vec![
                ("role", self.role.name().to_string()),
                ("permission", permission.name().to_string()),
            ],
        })
    }

    /// `PERMISSION_DENIED` unless the caller may serve every one of
    /// `queues`.
    pub fn require_queues(&self, queues: &[String]) -> Result<(), ApiError> {
        let Some(allowed) = &self.queues else {
            return Ok(());
        };
        match queues.iter().find(|queue| !allowed.contains(queue)) {
            None => Ok(()),
            Some(queue) => Err(ApiError::PermissionDenied {
                reason: "QUEUE_NOT_ALLOWED",
                message: format!("this API key may not serve the queue {queue:?}"),
                metadata: vec![
                    ("role", self.role.name().to_string()),
                    ("queue", queue.clone()),
                ],
            }),
        }
    }
}

tokio::task_local! {
    /// The caller of the RPC this task serves (set by the `service!`
    /// handlers around each call).
    static CALLER: Caller;
}

/// The caller of the RPC being served; `local` outside a call.
pub fn caller() -> Caller {
    CALLER
        .try_with(Caller::clone)
        .unwrap_or_else(|_| Caller::local())
}

/// The namespace the RPC being served names; `default` outside a call.
pub fn call_namespace() -> String {
    CALLER
        .try_with(|caller| caller.namespace.clone())
        .unwrap_or_else(|_| crate::namespace::DEFAULT.to_string())
}

/// Runs `call` with `caller` as the current caller.
pub async fn with_caller<F: std::future::Future>(caller: Caller, call: F) -> F::Output {
    CALLER.scope(caller, call).await
}

/// Authenticates before the request is decoded; the `service!` handlers
/// check the permission of each RPC.
impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.authenticate(request.metadata())?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;

    use super::*;

    fn call(keys: &Authenticator, authorization: Option<&str>) -> Result<(), tonic::Code> {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("ascii header"));
        }
        keys.clone().call(request).map(|_| ()).map_err(|s| s.code())
    }

    #[test]
    fn keys_gate_calls_only_when_configured() {
        let open = Authenticator::new(Vec::<String>::new());
        assert_eq!(call(&open, None), Ok(()));
        let keys = Authenticator::new(["alpha", " beta ", ""]);
        assert_eq!(keys.static_keys(), 2);
        assert_eq!(call(&keys, Some("Bearer alpha")), Ok(()));
        assert_eq!(call(&keys, Some("Bearer beta")), Ok(()));
        assert_eq!(
            call(&keys, Some("Bearer gamma")),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            call(&keys, Some("alpha")),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(call(&keys, None), Err(tonic::Code::Unauthenticated));
    }

    #[test]
    fn namespaces_are_checked() {
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert(NAMESPACE_HEADER, "Bad_Name".parse().expect("ascii"));
        let status = Authenticator::default().call(request).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(NAMESPACE_HEADER), "{status:?}");
    }

    fn record(index: usize, role: &str) -> (ApiKeyRecord, String) {
        let secret = format!("tlk_secret-number-{index:040}");
        let record = ApiKeyRecord {
            id: format!("k_{index:012}"),
            name: "test".into(),
            role: role.into(),
            namespace: None,
            queues: Vec::new(),
            prefix: secret[..8].to_string(),
            secret_hash: Sha256::digest(secret.as_bytes()).to_vec(),
            created_at: Utc::now(),
            created_by: "test".into(),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
        };
        (record, secret)
    }

    fn bearer(secret: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert(
            "authorization",
            format!("Bearer {secret}").parse().expect("ascii"),
        );
        metadata
    }

    #[test]
    fn stored_keys_resolve_to_their_role_and_record_their_use_once() {
        let auth = Authenticator::default();
        assert!(auth.is_open());
        let (viewer, secret) = record(1, "viewer");
        let (mut revoked, revoked_secret) = record(2, "admin");
        revoked.revoked_at = Some(Utc::now());
        auth.install(vec![viewer, revoked]);
        assert!(!auth.is_open(), "a revoked key still closes the server");
        let caller = auth.authenticate(&bearer(&secret)).expect("viewer");
        assert_eq!(caller.role, Role::Viewer);
        assert_eq!(caller.actor, "key:k_000000000001");
        assert_eq!(caller.namespace, crate::namespace::DEFAULT);
        auth.authenticate(&bearer(&secret)).expect("again");
        let used = auth.inner.used.lock().expect("lock").clone();
        assert_eq!(used.len(), 1, "one use a minute is recorded: {used:?}");
        let refused = auth.authenticate(&bearer(&revoked_secret)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }

    /// What a key check costs, among 1,000 stored keys: a SHA-256 and a map
    /// lookup. Run with `--ignored --nocapture` (in release for real
    /// figures); a gRPC call costs tens of microseconds or more.
    #[test]
    #[ignore]
    fn key_check_cost() {
        let auth = Authenticator::default();
        let mut records = Vec::new();
        let mut secrets = Vec::new();
        for index in 0..1000 {
            let (record, secret) = record(index, "operator");
            records.push(record);
            secrets.push(bearer(&secret));
        }
        auth.install(records);
        let rounds = 200_000;
        let start = std::time::Instant::now();
        for round in 0..rounds {
            let caller = auth
                .authenticate(&secrets[round % secrets.len()])
                .expect("key");
            caller.require(Permission::RunsRead).expect("allowed");
        }
        let per_call = start.elapsed() / rounds as u32;
        println!("one key check: {per_call:?}");
    }

    #[test]
    fn a_queue_list_restricts_a_worker() {
        let caller = Caller {
            queues: Some(vec!["gpu".to_string()].into()),
            role: Role::Worker,
            ..Caller::local()
        };
        assert!(caller.require_queues(&["gpu".into()]).is_ok());
        assert!(
            caller
                .require_queues(&["gpu".into(), "cpu".into()])
                .is_err()
        );
        assert!(caller.require(Permission::WorkerServe).is_ok());
        assert!(caller.require(Permission::RunsRead).is_err());
    }
}
