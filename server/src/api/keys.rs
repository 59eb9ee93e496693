//! KeyService: API keys kept in the store (docs/security.md). Admin only
//! (the permission table says so); every change is audited in its own
//! transaction and reloaded into this replica's key checks at once (other
//! replicas follow within [`POLL_INTERVAL`](super::auth::POLL_INTERVAL)).

use base64::Engine as _;
use chrono::{DateTime, Duration as TimeDelta, SubsecRound, Utc};
use rand::TryRngCore as _;
use sha2::{Digest, Sha256};

use super::audit::{action, audited};
use super::permissions::Role;
use super::request::{Violations, hex, require, timestamp};
use super::{ApiContext, ApiError, ApiResult, caller};
use crate::proto::taskloom::v1::{self as pb, key_service_server::KeyService};
use crate::store::{ApiKeyRecord, DynStore};

/// Most queues a worker key may list.
const MAX_KEY_QUEUES: usize = 64;
const MAX_KEY_NAME: usize = 128;
/// What every secret starts with: easy to find in a leaked config.
pub const SECRET_PREFIX: &str = "tlk_";

pub struct KeyApi {
    context: ApiContext,
}

impl KeyApi {
    pub fn new(context: ApiContext) -> Self {
        KeyApi { context }
    }

    fn store(&self) -> &DynStore {
        self.context.store()
    }

    /// Makes this replica's key checks see a change at once.
    async fn reload(&self) {
        if let Err(error) = self.context.auth().reload(self.store()).await {
            // The poll loop retries within a quarter second.
            tracing::warn!(error = %error, "cannot reload the API keys");
        }
    }
}

service! {
    impl KeyService for KeyApi {
        fn create_api_key(pb::CreateApiKeyRequest) -> pb::CreateApiKeyResponse = KeysManage;
        fn list_api_keys(pb::ListApiKeysRequest) -> pb::ListApiKeysResponse = KeysManage;
        fn revoke_api_key(pb::RevokeApiKeyRequest) -> pb::ApiKey = KeysManage;
    }
}

impl KeyApi {
    async fn create_api_key(
        &self,
        request: pb::CreateApiKeyRequest,
    ) -> ApiResult<pb::CreateApiKeyResponse> {
        let expires_at = requested_expiry(&request)?;
        let spec = KeySpec {
            name: request.name,
            role: request.role,
            namespace: request.namespace,
            queues: request.queues,
            expires_at,
        };
        let caller = caller();
        // A key bound to a namespace makes keys of that namespace only: it
        // cannot mint a key that escapes its binding.
        if let Some(bound) = &caller.key_namespace
            && spec.namespace != *bound
        {
            return Err(outside_binding(bound, "create a key for another namespace"));
        }
        let (record, secret) = new_key(spec, &caller.actor)?;
        let audit = action(&self.context, "CreateApiKey", "api_key", &record.id, "");
        audited(&self.context, audit, async |audit| {
            self.store().create_api_key(&record, audit).await?;
            Ok(())
        })
        .await?;
        self.reload().await;
        tracing::info!(key_id = %record.id, role = %record.role, "API key created");
        Ok(pb::CreateApiKeyResponse {
            key: Some(key_message(record)),
            secret,
        })
    }

    async fn list_api_keys(
        &self,
        _request: pb::ListApiKeysRequest,
    ) -> ApiResult<pb::ListApiKeysResponse> {
        let bound = caller().key_namespace;
        let keys = self.store().list_api_keys().await?;
        Ok(pb::ListApiKeysResponse {
            keys: keys
                .into_iter()
                // A namespace-bound caller sees its namespace's keys only.
                .filter(|key| bound.is_none() || key.namespace == bound)
                .map(key_message)
                .collect(),
        })
    }

    async fn revoke_api_key(&self, request: pb::RevokeApiKeyRequest) -> ApiResult<pb::ApiKey> {
        let audit = action(&self.context, "RevokeApiKey", "api_key", &request.id, "");
        let key = audited(&self.context, audit, async |audit| {
            require("id", &request.id)?;
            if let Some(bound) = caller().key_namespace {
                // Keys outside the caller's namespace are not its to see.
                let keys = self.store().list_api_keys().await?;
                if !keys
                    .iter()
                    .any(|key| key.id == request.id && key.namespace.as_ref() == Some(&bound))
                {
                    return Err(ApiError::NotFound {
                        resource_type: "api key",
                        name: request.id.clone(),
                    });
                }
            }
            let at = Utc::now().trunc_subsecs(6);
            Ok(self.store().revoke_api_key(&request.id, at, audit).await?)
        })
        .await?;
        self.reload().await;
        tracing::info!(key_id = %key.id, "API key revoked");
        Ok(key_message(key))
    }
}

/// The refusal of a call by a namespace-bound key that reaches outside its
/// namespace.
pub(super) fn outside_binding(bound: &str, what: &str) -> ApiError {
    let caller = caller();
    ApiError::PermissionDenied {
        reason: "NAMESPACE_NOT_ALLOWED",
        message: format!("a key bound to namespace {bound:?} cannot {what}"),
        metadata: vec![
            ("role", caller.role.name().to_string()),
            ("key_namespace", bound.to_string()),
        ],
    }
}

/// The expiry a create request asks for: `expire_time` or now + `ttl`.
fn requested_expiry(request: &pb::CreateApiKeyRequest) -> ApiResult<Option<DateTime<Utc>>> {
    match (&request.expire_time, &request.ttl) {
        (Some(_), Some(_)) => Err(ApiError::invalid("ttl", "set expire_time or ttl, not both")),
        (Some(at), None) => {
            let at = DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(0))
                .ok_or_else(|| ApiError::invalid("expire_time", "is out of range"))?;
            if at <= Utc::now() {
                return Err(ApiError::invalid("expire_time", "must be in the future"));
            }
            Ok(Some(at))
        }
        (None, Some(ttl)) => {
            let millis = super::request::duration_millis(ttl)
                .filter(|millis| *millis > 0)
                .ok_or_else(|| ApiError::invalid("ttl", "must be positive"))?;
            let at = Utc::now()
                .checked_add_signed(TimeDelta::milliseconds(millis))
                .ok_or_else(|| ApiError::invalid("ttl", "is too long"))?;
            Ok(Some(at))
        }
        (None, None) => Ok(None),
    }
}

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub name: String,
    /// `admin`, `operator`, `worker` or `viewer`.
    pub role: String,
    /// Empty for every namespace.
    pub namespace: String,
    /// Worker keys only; empty for every queue.
    pub queues: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Checks `spec` and makes a key for it, created by `created_by`: the
/// record to store and the secret, which only the caller ever sees.
pub fn new_key(spec: KeySpec, created_by: &str) -> ApiResult<(ApiKeyRecord, String)> {
    let mut violations = Violations::new();
    violations.check_name("name", &spec.name, MAX_KEY_NAME);
    let role = Role::parse(&spec.role);
    if role.is_none() {
        violations.add("role", "must be admin, operator, worker or viewer");
    }
    if !spec.namespace.is_empty() && !crate::namespace::is_valid(&spec.namespace) {
        violations.add(
            "namespace",
            "a namespace is 1 to 63 lowercase letters, digits and `-`",
        );
    }
    if !spec.queues.is_empty() && role != Some(Role::Worker) {
        violations.add("queues", "only worker keys are restricted to queues");
    }
    if spec.queues.len() > MAX_KEY_QUEUES {
        violations.add("queues", format!("at most {MAX_KEY_QUEUES} queues"));
    }
    for (index, queue) in spec.queues.iter().enumerate() {
        violations.check_id(&format!("queues[{index}]"), queue);
    }
    violations.finish()?;
    let secret = format!("{SECRET_PREFIX}{}", random_secret()?);
    let id = format!("k_{}", hex(&random_bytes::<6>()?));
    let record = ApiKeyRecord {
        id,
        name: spec.name.trim().to_string(),
        role: spec.role,
        namespace: (!spec.namespace.is_empty()).then_some(spec.namespace),
        queues: spec.queues,
        prefix: secret.chars().take(8).collect(),
        secret_hash: Sha256::digest(secret.as_bytes()).to_vec(),
        created_at: Utc::now().trunc_subsecs(6),
        created_by: created_by.to_string(),
        last_used_at: None,
        expires_at: spec.expires_at.map(|at| at.trunc_subsecs(6)),
        revoked_at: None,
    };
    Ok((record, secret))
}

/// `N` bytes from the operating system's generator.
fn random_bytes<const N: usize>() -> ApiResult<[u8; N]> {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|error| ApiError::Internal(format!("the system's random generator: {error}")))?;
    Ok(bytes)
}

/// 256 random bits as unpadded base64url.
fn random_secret() -> ApiResult<String> {
    let bytes = random_bytes::<32>()?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub fn key_message(record: ApiKeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        id: record.id,
        name: record.name,
        role: record.role,
        namespace: record.namespace.unwrap_or_default(),
        queues: record.queues,
        prefix: record.prefix,
        create_time: Some(timestamp(record.created_at)),
        created_by: record.created_by,
        last_used_time: record.last_used_at.map(timestamp),
        expire_time: record.expires_at.map(timestamp),
        revoke_time: record.revoked_at.map(timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(role: &str) -> KeySpec {
        KeySpec {
            name: "ci".into(),
            role: role.into(),
            namespace: String::new(),
            queues: Vec::new(),
            expires_at: None,
        }
    }

    #[test]
    fn secrets_are_random_and_only_their_digest_is_kept() {
        let (first, secret) = new_key(spec("admin"), "local").unwrap();
        let (second, other) = new_key(spec("admin"), "local").unwrap();
        assert!(
            secret.starts_with(SECRET_PREFIX) && secret.len() == 4 + 43,
            "{secret}"
        );
        assert_ne!(secret, other);
        assert_ne!(first.id, second.id);
        assert!(
            first.id.starts_with("k_") && first.id.len() == 14,
            "{}",
            first.id
        );
        assert_eq!(first.prefix, &secret[..8]);
        assert_eq!(
            first.secret_hash,
            Sha256::digest(secret.as_bytes()).to_vec()
        );
    }

    #[test]
    fn specs_are_checked() {
        assert!(new_key(spec("root"), "local").is_err());
        let mut queues = spec("operator");
        queues.queues = vec!["gpu".into()];
        assert!(new_key(queues, "local").is_err());
        let mut namespace = spec("viewer");
        namespace.namespace = "Team A".into();
        assert!(new_key(namespace, "local").is_err());
    }
}
