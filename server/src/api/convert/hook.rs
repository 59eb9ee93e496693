//! Registered HTTP hooks.

use std::collections::BTreeMap;

use chrono::Utc;

use crate::api::ApiResult;
use crate::api::request::{
    Patch, Violations, created, duration_millis, etag, idempotency_key, millis_duration, timestamp,
};
use crate::proto::taskloom::v1 as pb;
use crate::store::{HookRecord, IdempotencyKey};

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
const MAX_TIMEOUT_MS: i64 = 3_600_000;
const MAX_HEADERS: usize = 64;

/// The API view of a hook: secret header values are never returned.
pub fn hook_message(record: HookRecord) -> pb::Hook {
    pb::Hook {
        name: record.name,
        description: record.description,
        url: record.url,
        method: record.method,
        timeout: Some(millis_duration(record.timeout_ms)),
        headers: record.headers,
        secret_headers: BTreeMap::new(),
        secret_header_names: record.secret_headers.into_keys().collect(),
        queue: record.queue,
        etag: etag(record.revision),
        create_time: Some(timestamp(record.created_at)),
        update_time: Some(timestamp(record.updated_at)),
    }
}

/// RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_headers(violations: &mut Violations, field: &str, headers: &BTreeMap<String, String>) {
    if headers.len() > MAX_HEADERS {
        violations.add(field, format!("must have at most {MAX_HEADERS} entries"));
    }
    for (name, value) in headers {
        if !is_header_name(name) {
            violations.add(
                format!("{field}[{name:?}]"),
                "is not a valid HTTP header name",
            );
        }
        if value.len() > 8192 || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            violations.add(
                format!("{field}[{name:?}]"),
                "header values must be at most 8192 bytes without CR, LF or NUL",
            );
        }
    }
}

/// Checks every writable field of a hook and builds its record.
fn validate_hook(hook: &pb::Hook, violations: &mut Violations) -> HookRecord {
    violations.check_id("hook.name", &hook.name);
    violations.check_text("hook.description", &hook.description, 1024);
    violations.check_http_url("hook.url", &hook.url);
    let method = if hook.method.is_empty() {
        "POST".to_string()
    } else {
        hook.method.to_ascii_uppercase()
    };
    if !METHODS.contains(&method.as_str()) {
        violations.add(
            "hook.method",
            format!("must be one of {}", METHODS.join(", ")),
        );
    }
    let timeout_ms = match &hook.timeout {
        None => {
            violations.add("hook.timeout", "is required (e.g. \"30s\")");
            0
        }
        Some(duration) => match duration_millis(duration) {
            Some(ms) if ms > 0 && ms <= MAX_TIMEOUT_MS => ms,
            _ => {
                violations.add("hook.timeout", "must be positive and at most 1 hour");
                0
            }
        },
    };
    check_headers(violations, "hook.headers", &hook.headers);
    check_headers(violations, "hook.secret_headers", &hook.secret_headers);
    for name in hook.secret_headers.keys() {
        if hook
            .headers
            .keys()
            .any(|plain| plain.eq_ignore_ascii_case(name))
        {
            violations.add(
                format!("hook.secret_headers[{name:?}]"),
                "is also set in headers",
            );
        }
    }
    if !hook.queue.is_empty() {
        violations.check_id("hook.queue", &hook.queue);
    }
    let now = Utc::now();
    HookRecord {
        namespace: crate::api::call_namespace(),
        name: hook.name.clone(),
        description: hook.description.clone(),
        url: hook.url.clone(),
        method,
        timeout_ms,
        headers: hook.headers.clone(),
        secret_headers: hook.secret_headers.clone(),
        queue: hook.queue.clone(),
        revision: 1,
        created_at: now,
        updated_at: now,
    }
}

/// The fields `UpdateHook` may change.
pub const HOOK_MASK_FIELDS: &[&str] = &[
    "description",
    "url",
    "method",
    "timeout",
    "headers",
    "secret_headers",
    "queue",
];

/// The hook a `CreateHook` registers.
pub fn new_hook(
    request: &pb::CreateHookRequest,
) -> ApiResult<(HookRecord, Option<IdempotencyKey>)> {
    let (hook, mut violations) = created(request, "hook", request.hook.as_ref())?;
    let record = validate_hook(hook, &mut violations);
    violations.finish()?;
    Ok((record, idempotency_key(request)))
}

/// `current` with the fields of `mask` (every writable one when `whole`)
/// taken from `patch`, checked.
pub fn updated_hook(current: HookRecord, update: &Patch<pb::Hook>) -> ApiResult<HookRecord> {
    let Patch {
        resource: patch,
        mask,
        whole,
        ..
    } = update;
    let (revision, created_at) = (current.revision, current.created_at);
    let secret_headers = current.secret_headers.clone();
    let mut merged = hook_message(current);
    merged.secret_headers = secret_headers;
    for field in mask {
        match field.as_str() {
            "description" => merged.description = patch.description.clone(),
            "url" => merged.url = patch.url.clone(),
            "method" => merged.method = patch.method.clone(),
            "timeout" => merged.timeout = patch.timeout,
            "headers" => merged.headers = patch.headers.clone(),
            // Whole-resource updates keep stored secrets unless new ones
            // are given; a masked update replaces them.
            "secret_headers" if !whole || !patch.secret_headers.is_empty() => {
                merged.secret_headers = patch.secret_headers.clone()
            }
            "queue" => merged.queue = patch.queue.clone(),
            _ => {}
        }
    }
    let mut violations = Violations::new();
    let mut record = validate_hook(&merged, &mut violations);
    violations.finish()?;
    record.revision = revision;
    record.created_at = created_at;
    Ok(record)
}
