//! How the secret columns are stored, shared by both stores: provider API
//! keys (`backends.api_key`) and hook secret headers
//! (`hooks.secret_headers`) are sealed with the store's [`SecretBox`];
//! plain text written by versions before encryption at rest still reads,
//! and [`super::Store::seal_stored_secrets`] encrypts it at start.
//!
//! Secret headers are sealed as one JSON string holding the sealed map;
//! an empty map (nothing secret) stays `{}`, and a JSON object is the
//! earlier plain-text form.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{StoreError, StoreResult};
use crate::secrets::SecretBox;

fn api_key_context(backend_id: &str) -> String {
    format!("backends.api_key/{backend_id}")
}

fn headers_context(hook_name: &str) -> String {
    format!("hooks.secret_headers/{hook_name}")
}

fn unreadable(what: String, error: crate::secrets::OpenError) -> StoreError {
    StoreError::Corrupt(format!("cannot decrypt {what}: {error}"))
}

pub(super) fn seal_api_key(
    secrets: &SecretBox,
    backend_id: &str,
    api_key: Option<&str>,
) -> Option<String> {
    api_key.map(|key| secrets.seal(key, &api_key_context(backend_id)))
}

pub(super) fn open_api_key(
    secrets: &SecretBox,
    backend_id: &str,
    stored: Option<String>,
) -> StoreResult<Option<String>> {
    match stored {
        Some(sealed) if SecretBox::is_sealed(&sealed) => secrets
            .open(&sealed, &api_key_context(backend_id))
            .map(Some)
            .map_err(|error| unreadable(format!("the API key of backend {backend_id:?}"), error)),
        plain => Ok(plain),
    }
}

pub(super) fn seal_headers(
    secrets: &SecretBox,
    hook_name: &str,
    headers: &BTreeMap<String, String>,
) -> StoreResult<Value> {
    if headers.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let json = serde_json::to_string(headers)
        .map_err(|e| StoreError::Corrupt(format!("encode hook secret headers: {e}")))?;
    Ok(Value::String(
        secrets.seal(&json, &headers_context(hook_name)),
    ))
}

pub(super) fn open_headers(
    secrets: &SecretBox,
    hook_name: &str,
    stored: Value,
) -> StoreResult<BTreeMap<String, String>> {
    let json = match stored {
        Value::String(sealed) => {
            secrets
                .open(&sealed, &headers_context(hook_name))
                .map_err(|error| {
                    unreadable(format!("the secret headers of hook {hook_name:?}"), error)
                })?
        }
        plain => return decode_headers(plain),
    };
    let value = serde_json::from_str(&json)
        .map_err(|e| StoreError::Corrupt(format!("decode hook secret headers: {e}")))?;
    decode_headers(value)
}

fn decode_headers(value: Value) -> StoreResult<BTreeMap<String, String>> {
    serde_json::from_value(value)
        .map_err(|e| StoreError::Corrupt(format!("decode hook secret headers: {e}")))
}

/// What the start-up pass does with one stored API key: `Some(sealed)` to
/// write back for plain text, `None` when it is sealed with this key.
pub(super) fn reseal_api_key(
    secrets: &SecretBox,
    backend_id: &str,
    stored: &str,
) -> StoreResult<Option<String>> {
    if SecretBox::is_sealed(stored) {
        open_api_key(secrets, backend_id, Some(stored.to_string()))?;
        return Ok(None);
    }
    Ok(seal_api_key(secrets, backend_id, Some(stored)))
}

/// As [`reseal_api_key`], for a hook's stored secret headers.
pub(super) fn reseal_headers(
    secrets: &SecretBox,
    hook_name: &str,
    stored: &Value,
) -> StoreResult<Option<Value>> {
    let headers = open_headers(secrets, hook_name, stored.clone())?;
    match stored {
        Value::Object(map) if !map.is_empty() => {
            seal_headers(secrets, hook_name, &headers).map(Some)
        }
        _ => Ok(None),
    }
}
