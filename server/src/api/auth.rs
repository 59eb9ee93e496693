//! API keys. With keys configured, every call to a Taskloom service must
//! carry `authorization: Bearer <key>` (`UNAUTHENTICATED` otherwise); health
//! checks and reflection stay open, so probes and `grpcurl list` work
//! without one. Only SHA-256 digests of the keys are kept in memory. With
//! none configured every caller has full access (local development mode,
//! logged at startup).

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use super::ApiError;

type KeyDigest = [u8; 32];

#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Arc<[KeyDigest]>,
}

impl ApiKeys {
    /// The accepted keys (blank ones are ignored).
    pub fn new<I, K>(keys: I) -> ApiKeys
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let digests: Vec<KeyDigest> = keys
            .into_iter()
            .map(|key| key.as_ref().trim().to_string())
            .filter(|key| !key.is_empty())
            .map(|key| digest(&key))
            .collect();
        ApiKeys {
            digests: digests.into(),
        }
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    fn admits(&self, key: &str) -> bool {
        let presented = digest(key);
        // Compare every byte of every digest: the time taken does not tell
        // how much of a key matched.
        self.digests.iter().fold(false, |found, known| {
            let differing = known
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found | (differing == 0)
        })
    }
}

fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// Who made the current call, for the audit log: `key:<id>` (the first 12
/// hex digits of the key's SHA-256 digest: stable, and no use to anyone
/// who does not hold the key) or `local` when no keys are configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub actor: String,
}

impl Caller {
    pub fn local() -> Caller {
        Caller {
            actor: "local".to_string(),
        }
    }

    fn key(digest: &KeyDigest) -> Caller {
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Caller {
            actor: format!("key:{hex}"),
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

/// Runs `call` with `caller` as the current caller.
pub async fn with_caller<F: std::future::Future>(caller: Caller, call: F) -> F::Output {
    CALLER.scope(caller, call).await
}

impl tonic::service::Interceptor for ApiKeys {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if self.is_empty() {
            request.extensions_mut().insert(Caller::local());
            return Ok(request);
        }
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match presented {
            Some(key) if self.admits(key.trim()) => {
                let caller = Caller::key(&digest(key.trim()));
                request.extensions_mut().insert(caller);
                Ok(request)
            }
            Some(_) => Err(ApiError::Unauthenticated("the API key is not valid".into()).into()),
            None => Err(ApiError::Unauthenticated(
                "an API key is required: send `authorization: Bearer <key>`".into(),
            )
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;

    use super::*;

    fn call(keys: &ApiKeys, authorization: Option<&str>) -> Result<(), tonic::Code> {
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
        let open = ApiKeys::new(Vec::<String>::new());
        assert_eq!(call(&open, None), Ok(()));
        let keys = ApiKeys::new(["alpha", " beta ", ""]);
        assert_eq!(keys.len(), 2);
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
}
