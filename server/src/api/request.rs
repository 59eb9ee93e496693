//! Request decoding helpers shared by the services: field checks that collect
//! every violation, idempotency keys and etags (pages: [`super::page`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic_types::FieldViolation;

use super::error::{ApiError, ApiResult};
use crate::outbound::OutboundPolicy;
use crate::proto::taskloom::v1 as pb;
use crate::store::{IdempotencyKey, StoreResult};

/// Longest accepted `request_id`.
const MAX_REQUEST_ID_LEN: usize = 128;
/// Bounds on label maps.
const MAX_LABELS: usize = 64;
const MAX_LABEL_KEY_LEN: usize = 63;
const MAX_LABEL_VALUE_LEN: usize = 256;

/// Collects field violations so a request reports every problem at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    pub fn add_with_reason(&mut self, field: String, description: String, reason: &str) {
        let mut violation = FieldViolation::new(field, description);
        violation.reason = reason.to_string();
        self.0.push(violation);
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when no violation was recorded.
    pub fn finish(self) -> ApiResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self.0))
        }
    }

    /// Checks a resource id: `[A-Za-z0-9_.-]{1,128}`.
    pub fn check_id(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.add(field, "is required");
        } else if !is_valid_id(value) {
            self.add(
                field,
                "must be 1 to 128 characters of letters, digits, '_', '.' or '-'",
            );
        }
    }

    /// Checks a required free-text name without control characters.
    pub fn check_name(&mut self, field: &str, value: &str, max_len: usize) {
        if value.trim().is_empty() {
            self.add(field, "is required");
        } else if value.chars().count() > max_len {
            self.add(field, format!("must be at most {max_len} characters"));
        } else if value.chars().any(char::is_control) {
            self.add(field, "must not contain control characters");
        }
    }

    /// Checks a caller's free text (see [`check_text`]).
    pub fn check_text(&mut self, field: &str, value: &str, max_len: usize) {
        if let Some(description) = text_problem(value, max_len) {
            self.add(field, description);
        }
    }

    /// Checks an absolute `http`/`https` URL without embedded credentials.
    pub fn check_http_url(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.add(field, "is required");
            return;
        }
        if value.len() > 2048 {
            self.add(field, "must be at most 2048 bytes");
            return;
        }
        if value.chars().any(char::is_control) {
            self.add(field, "must not contain control characters");
            return;
        }
        match url::Url::parse(value) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                self.add(field, "must be an http or https URL")
            }
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                self.add(field, "must name a host")
            }
            Ok(url) if !url.username().is_empty() || url.password().is_some() => self.add(
                field,
                "must not embed credentials; pass secrets in their own field",
            ),
            // Addresses refused whatever the flags (link-local, cloud
            // metadata) are refused here already; the call-time check is
            // the one that counts, since a name can change its address.
            Ok(url) => {
                if let Err(refused) = OutboundPolicy::default().check_url(&url) {
                    self.add(field, refused.to_string());
                }
            }
            Err(error) => self.add(field, format!("is not a valid URL: {error}")),
        }
    }

    /// Checks a label map's size and entries.
    pub fn check_labels(&mut self, field: &str, labels: &BTreeMap<String, String>) {
        if labels.len() > MAX_LABELS {
            self.add(field, format!("must have at most {MAX_LABELS} entries"));
        }
        for (key, value) in labels {
            if key.is_empty() || key.len() > MAX_LABEL_KEY_LEN || !is_valid_id(key) {
                self.add(
                    format!("{field}[{key:?}]"),
                    format!("label keys must be 1 to {MAX_LABEL_KEY_LEN} characters of letters, digits, '_', '.' or '-'"),
                );
            }
            if let Some(problem) = text_problem(value, MAX_LABEL_VALUE_LEN) {
                self.add(
                    format!("{field}[{key:?}]"),
                    format!("label values {problem}"),
                );
            }
        }
    }

    /// Checks a `request_id`'s length.
    pub fn check_request_id(&mut self, field: &str, value: &str) {
        if value.len() > MAX_REQUEST_ID_LEN {
            self.add(field, format!("must be at most {MAX_REQUEST_ID_LEN} bytes"));
        } else if value.chars().any(char::is_control) {
            self.add(field, "must not contain control characters");
        }
    }
}

/// Longest failure or progress message a worker may report.
pub const MAX_WORKER_MESSAGE_BYTES: usize = 64 * 1024;

/// Checks a caller's free text that is stored as text (descriptions,
/// reasons, label values, a worker's failure and progress messages): at
/// most `max_len` bytes and no NUL. PostgreSQL text cannot hold U+0000, so
/// both stores refuse it alike.
pub fn check_text(field: &str, value: &str, max_len: usize) -> ApiResult<()> {
    match text_problem(value, max_len) {
        Some(description) => Err(ApiError::invalid(field, description)),
        None => Ok(()),
    }
}

fn text_problem(value: &str, max_len: usize) -> Option<String> {
    if value.len() > max_len {
        Some(format!("must be at most {max_len} bytes"))
    } else if value.contains('\0') {
        Some("must not contain NUL (U+0000) characters".to_string())
    } else {
        None
    }
}

/// `[A-Za-z0-9_.-]{1,128}`.
pub fn is_valid_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Rejects an empty required key field (`id`, `name`, …) of a Get/Delete.
pub fn require(field: &str, value: &str) -> ApiResult<()> {
    if value.is_empty() {
        Err(ApiError::invalid(field, "is required"))
    } else {
        Ok(())
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The idempotency key of a mutating request (AIP-155), scoped to the
/// call's namespace: `None` when the caller sent no `request_id`. The hash covers the whole request with its
/// `request_id` cleared (maps encode in key order, so it is deterministic).
pub fn idempotency_key<M: Idempotent>(request: &M) -> Option<IdempotencyKey> {
    if request.request_id().is_empty() {
        return None;
    }
    let mut payload = request.clone();
    payload.clear_request_id();
    Some(IdempotencyKey {
        // Request ids are the caller's, so they are per namespace.
        scope: format!("{}/{}", super::call_namespace(), M::METHOD),
        request_id: request.request_id().to_string(),
        request_hash: hex(&Sha256::digest(payload.encode_to_vec())),
    })
}

/// The resource a Create request carries as `field` (required), and the
/// violations found so far (its `request_id` checked).
pub fn created<'a, M: Idempotent, R>(
    request: &M,
    field: &str,
    resource: Option<&'a R>,
) -> ApiResult<(&'a R, Violations)> {
    let mut violations = Violations::new();
    violations.check_request_id("request_id", request.request_id());
    let resource = resource.ok_or_else(|| ApiError::invalid(field, "is required"))?;
    Ok((resource, violations))
}

/// A mutating request that carries a `request_id` (AIP-155).
pub trait Idempotent: Message + Clone {
    /// The method's name: a request id is bound to its method.
    const METHOD: &'static str;
    fn request_id(&self) -> &str;
    fn clear_request_id(&mut self);
}

macro_rules! idempotent {
    ($($request:ident => $method:literal),* $(,)?) => {$(
        impl Idempotent for pb::$request {
            const METHOD: &'static str = $method;
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn clear_request_id(&mut self) {
                self.request_id.clear();
            }
        }
    )*};
}

idempotent!(
    CreateChainRequest => "CreateChain",
    UpdateChainRequest => "UpdateChain",
    CreateHookRequest => "CreateHook",
    CreateBackendRequest => "CreateBackend",
    CreatePoolRequest => "CreatePool",
    CreateModelRequest => "CreateModel",
    StartRunRequest => "StartRun",
    ExecuteChainRequest => "ExecuteChain",
    SubmitInputRequest => "SubmitInput",
    CancelRunRequest => "CancelRun",
    PauseRunRequest => "PauseRun",
    ResumeRunRequest => "ResumeRun",
    RetryRunRequest => "RetryRun",
    DeleteRunRequest => "DeleteRun",
);

/// The etag of a revisioned resource.
pub fn etag(revision: i64) -> String {
    revision.to_string()
}

/// The revision an etag names; `Ok(None)` for an empty etag (no
/// precondition). An etag this server never issued cannot match anything.
pub fn expected_revision(
    etag_value: &str,
    resource_type: &'static str,
    name: &str,
    current: Option<i64>,
) -> ApiResult<Option<i64>> {
    if etag_value.is_empty() {
        return Ok(None);
    }
    match etag_value.parse::<i64>() {
        Ok(revision) if revision > 0 => Ok(Some(revision)),
        _ => Err(ApiError::EtagMismatch {
            resource_type,
            name: name.to_string(),
            given: etag_value.to_string(),
            current: current.map(etag).unwrap_or_default(),
        }),
    }
}

/// Checks an etag against the current revision.
pub fn check_etag(
    etag_value: &str,
    resource_type: &'static str,
    name: &str,
    current: i64,
) -> ApiResult<()> {
    match expected_revision(etag_value, resource_type, name, Some(current))? {
        Some(expected) if expected != current => Err(ApiError::EtagMismatch {
            resource_type,
            name: name.to_string(),
            given: etag_value.to_string(),
            current: etag(current),
        }),
        _ => Ok(()),
    }
}

/// A timestamp for an API message.
pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// A proto duration as milliseconds; `None` if negative or out of range.
pub fn duration_millis(duration: &prost_types::Duration) -> Option<i64> {
    if duration.seconds < 0 || duration.nanos < 0 || duration.nanos >= 1_000_000_000 {
        return None;
    }
    duration
        .seconds
        .checked_mul(1000)?
        .checked_add(i64::from(duration.nanos / 1_000_000))
}

/// Milliseconds as a proto duration.
pub fn millis_duration(millis: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: millis / 1000,
        nanos: ((millis % 1000) * 1_000_000) as i32,
    }
}

/// Normalizes an update mask entry: accepts `snake_case` and `camelCase`.
pub fn mask_field(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.trim().chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The revision a Delete expects (AIP-135): its key (`key_field`) is
/// required; its etag, when given, names the revision.
pub fn deletion(
    resource_type: &'static str,
    key_field: &str,
    key: &str,
    etag: &str,
) -> ApiResult<Option<i64>> {
    require(key_field, key)?;
    expected_revision(etag, resource_type, key, None)
}

/// A stored resource with a revision (its etag).
pub trait Revisioned {
    fn revision(&self) -> i64;
}

impl Revisioned for crate::store::BackendRecord {
    fn revision(&self) -> i64 {
        self.revision
    }
}

impl Revisioned for crate::store::HookRecord {
    fn revision(&self) -> i64 {
        self.revision
    }
}

/// An Update (AIP-134), checked: the patch, the key of the resource it
/// changes, and the fields its update mask names.
pub struct Patch<P> {
    pub resource: P,
    resource_type: &'static str,
    key: String,
    /// The fields written, normalized.
    pub mask: Vec<String>,
    /// The mask was empty: every writable field is written.
    pub whole: bool,
}

impl<P> Patch<P> {
    /// `resource` (required, as `resource_type`), its key (`key_field` of
    /// it, required) and its update mask (`paths`) checked against the
    /// `writable` fields.
    pub fn checked(
        resource: Option<P>,
        resource_type: &'static str,
        (key_field, key): (&str, impl FnOnce(&P) -> String),
        (paths, writable): (&[String], &[&str]),
    ) -> ApiResult<Patch<P>> {
        let resource = resource.ok_or_else(|| ApiError::invalid(resource_type, "is required"))?;
        let key = key(&resource);
        require(&format!("{resource_type}.{key_field}"), &key)?;
        let (mask, whole) = update_mask(paths, writable)?;
        Ok(Patch {
            resource,
            resource_type,
            key,
            mask,
            whole,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Reads the current resource, checks `etag` against its revision,
    /// merges the patch into it and writes the result.
    pub async fn write<R, ReadFut, WriteFut>(
        &self,
        etag: &str,
        read: impl FnOnce() -> ReadFut,
        merge: impl FnOnce(R, &Self) -> ApiResult<R>,
        write: impl FnOnce(R) -> WriteFut,
    ) -> ApiResult<R>
    where
        R: Revisioned,
        ReadFut: std::future::Future<Output = StoreResult<R>>,
        WriteFut: std::future::Future<Output = StoreResult<R>>,
    {
        let current = read().await?;
        check_etag(etag, self.resource_type, &self.key, current.revision())?;
        let merged = merge(current, self)?;
        Ok(write(merged).await?)
    }
}

/// An update mask, normalized and checked against the `writable` fields;
/// an empty mask means every writable field (the second value: `true`).
pub fn update_mask(paths: &[String], writable: &[&str]) -> ApiResult<(Vec<String>, bool)> {
    let mask: Vec<String> = paths.iter().map(|p| mask_field(p)).collect();
    let mut violations = Violations::new();
    for (index, field) in mask.iter().enumerate() {
        if !writable.contains(&field.as_str()) {
            violations.add(
                format!("update_mask[{index}]"),
                format!(
                    "unknown or read-only field {field:?}; writable: {}",
                    writable.join(", ")
                ),
            );
        }
    }
    violations.finish()?;
    if mask.is_empty() {
        return Ok((writable.iter().map(|f| f.to_string()).collect(), true));
    }
    Ok((mask, false))
}

/// Both keys of an association request are required; reports both at once.
pub fn require_pair(
    first: &str,
    first_value: &str,
    second: &str,
    second_value: &str,
) -> ApiResult<()> {
    let mut violations = Violations::new();
    if first_value.is_empty() {
        violations.add(first, "is required");
    }
    if second_value.is_empty() {
        violations.add(second, "is required");
    }
    violations.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_check_revisions() {
        assert!(check_etag("", "backend", "b", 3).is_ok());
        assert!(check_etag("3", "backend", "b", 3).is_ok());
        assert!(matches!(
            check_etag("2", "backend", "b", 3),
            Err(ApiError::EtagMismatch { .. })
        ));
        assert!(matches!(
            check_etag("bogus", "backend", "b", 3),
            Err(ApiError::EtagMismatch { .. })
        ));
    }

    #[test]
    fn urls_are_checked() {
        let mut v = Violations::new();
        v.check_http_url("a", "http://127.0.0.1:11434");
        v.check_http_url("b", "https://api.openai.com/v1");
        assert!(v.is_empty());
        v.check_http_url("c", "ftp://x");
        v.check_http_url("d", "not a url");
        v.check_http_url("e", "");
        v.check_http_url("f", "http://user:pw@host");
        assert_eq!(v.0.len(), 4);
    }

    #[test]
    fn mask_fields_accept_camel_case() {
        assert_eq!(mask_field("baseUrl"), "base_url");
        assert_eq!(mask_field("base_url"), "base_url");
    }

    #[test]
    fn durations_convert() {
        let d = prost_types::Duration {
            seconds: 2,
            nanos: 500_000_000,
        };
        assert_eq!(duration_millis(&d), Some(2500));
        assert_eq!(
            duration_millis(&prost_types::Duration {
                seconds: -1,
                nanos: 0
            }),
            None
        );
        assert_eq!(millis_duration(2500), d);
    }
}
