//! HookService: registered HTTP hooks that `hook` tasks call.

use std::collections::BTreeMap;

use chrono::Utc;
use tonic::{Request, Response, Status};

use super::request::{
    Violations, check_etag, duration_millis, etag, expected_revision, idempotency_key, list_page,
    mask_field, millis_duration, require, timestamp,
};
use super::{ApiContext, ApiError, ApiResult, respond};
use crate::proto::taskloom::v1::{self as pb, hook_service_server::HookService};
use crate::store::HookRecord;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
const MAX_TIMEOUT_MS: i64 = 3_600_000;
const MAX_HEADERS: usize = 64;

pub struct HookApi {
    context: ApiContext,
}

impl HookApi {
    pub fn new(context: ApiContext) -> Self {
        HookApi { context }
    }
}

/// The API view of a hook: secret header values are never returned.
fn hook_message(record: HookRecord) -> pb::Hook {
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

const HOOK_MASK_FIELDS: &[&str] = &[
    "description",
    "url",
    "method",
    "timeout",
    "headers",
    "secret_headers",
    "queue",
];

impl HookApi {
    async fn create(&self, request: pb::CreateHookRequest) -> ApiResult<pb::Hook> {
        let mut violations = Violations::new();
        violations.check_request_id("request_id", &request.request_id);
        let Some(hook) = request.hook.as_ref() else {
            return Err(ApiError::invalid("hook", "is required"));
        };
        let record = validate_hook(hook, &mut violations);
        violations.finish()?;
        let idempotency = idempotency_key("CreateHook", &request.request_id, &request, |r| {
            r.request_id.clear()
        });
        let created = self
            .context
            .store()
            .create_hook(record, idempotency)
            .await?;
        if !created.replayed {
            tracing::info!(hook = %created.record.name, "hook created");
        }
        Ok(hook_message(created.record))
    }

    async fn update(&self, request: pb::UpdateHookRequest) -> ApiResult<pb::Hook> {
        let Some(patch) = request.hook else {
            return Err(ApiError::invalid("hook", "is required"));
        };
        require("hook.name", &patch.name)?;
        let mut mask: Vec<String> = request.update_mask.iter().map(|p| mask_field(p)).collect();
        let mut violations = Violations::new();
        for (index, field) in mask.iter().enumerate() {
            if !HOOK_MASK_FIELDS.contains(&field.as_str()) {
                violations.add(
                    format!("update_mask[{index}]"),
                    format!(
                        "unknown or read-only field {field:?}; writable: {}",
                        HOOK_MASK_FIELDS.join(", ")
                    ),
                );
            }
        }
        violations.finish()?;
        let store = self.context.store();
        let current = store.get_hook(&patch.name).await?;
        check_etag(&request.etag, "hook", &patch.name, current.revision)?;
        let whole = mask.is_empty();
        if whole {
            mask = HOOK_MASK_FIELDS.iter().map(|f| f.to_string()).collect();
        }
        let mut merged = hook_message(current.clone());
        merged.secret_headers = current.secret_headers.clone();
        for field in &mask {
            match field.as_str() {
                "description" => merged.description = patch.description.clone(),
                "url" => merged.url = patch.url.clone(),
                "method" => merged.method = patch.method.clone(),
                "timeout" => merged.timeout = patch.timeout,
                "headers" => merged.headers = patch.headers.clone(),
                // Whole-resource updates keep stored secrets unless new
                // ones are given; a masked update replaces them.
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
        record.revision = current.revision;
        record.created_at = current.created_at;
        let updated = store.update_hook(record).await?;
        tracing::info!(hook = %updated.name, "hook updated");
        Ok(hook_message(updated))
    }
}

#[tonic::async_trait]
impl HookService for HookApi {
    async fn create_hook(
        &self,
        request: Request<pb::CreateHookRequest>,
    ) -> Result<Response<pb::Hook>, Status> {
        respond(self.create(request.into_inner()).await)
    }

    async fn get_hook(
        &self,
        request: Request<pb::GetHookRequest>,
    ) -> Result<Response<pb::Hook>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("name", &request.name)?;
                Ok(hook_message(
                    self.context.store().get_hook(&request.name).await?,
                ))
            }
            .await,
        )
    }

    async fn list_hooks(
        &self,
        request: Request<pb::ListHooksRequest>,
    ) -> Result<Response<pb::ListHooksResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                let scope = "ListHooks";
                let (hooks, next_page_token) = list_page(
                    request.page_size,
                    &request.page_token,
                    scope,
                    |query| self.context.store().list_hooks(query),
                    |item| Ok(hook_message(item)),
                )
                .await?;
                Ok(pb::ListHooksResponse {
                    hooks,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn update_hook(
        &self,
        request: Request<pb::UpdateHookRequest>,
    ) -> Result<Response<pb::Hook>, Status> {
        respond(self.update(request.into_inner()).await)
    }

    async fn delete_hook(
        &self,
        request: Request<pb::DeleteHookRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("name", &request.name)?;
                let expected = expected_revision(&request.etag, "hook", &request.name, None)?;
                self.context
                    .store()
                    .delete_hook(&request.name, expected)
                    .await?;
                Ok(())
            }
            .await,
        )
    }
}
