//! Backends, pools, models and one-shot model calls.

use std::collections::BTreeMap;

use chrono::Utc;

use crate::api::request::{
    Patch, Violations, created, duration_millis, etag, idempotency_key, millis_duration, timestamp,
};
use crate::api::{ApiError, ApiResult};
use crate::chain::ModelPreference;
use crate::llm::resolver::{ResolveError, Served};
use crate::llm::{ChatResponse, EmbedResponse};
use crate::proto::taskloom::v1 as pb;
use crate::store::{BackendRecord, BackendState, IdempotencyKey, Limits, ModelRecord, PoolRecord};

/// Longest backend `request_timeout`.
const MAX_REQUEST_TIMEOUT_MS: i64 = 3_600_000;
const MAX_API_KEY_LEN: usize = 8192;
/// Longest prompt, embedded text and system instruction of a one-shot call.
const MAX_PROMPT_BYTES: usize = 1024 * 1024;
const MAX_SYSTEM_INSTRUCTION_BYTES: usize = 64 * 1024;
/// Most models one backend may limit one by one.
const MAX_MODEL_LIMITS: usize = 1000;

/// The fields `UpdateBackend` may change.
pub const BACKEND_MASK_FIELDS: &[&str] = &[
    "name",
    "type",
    "base_url",
    "api_key",
    "priority",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "model_limits",
    "omit_stream_options",
    "request_timeout",
    "labels",
];

/// Backend types: the API's value and the stored name of each.
const BACKEND_TYPES: [(pb::BackendType, &str); 9] = [
    (pb::BackendType::Ollama, "ollama"),
    (pb::BackendType::Openai, "openai"),
    (pb::BackendType::OpenaiCompatible, "openai_compatible"),
    (pb::BackendType::Gemini, "gemini"),
    (pb::BackendType::Anthropic, "anthropic"),
    (pb::BackendType::Openrouter, "openrouter"),
    (pb::BackendType::Mistral, "mistral"),
    (pb::BackendType::Vllm, "vllm"),
    (pb::BackendType::LmStudio, "lm_studio"),
];

/// Selection policies: the API's value and the stored name of each (`""`
/// is the server's default).
const POLICIES: [(pb::SelectionPolicy, &str); 5] = [
    (pb::SelectionPolicy::Unspecified, ""),
    (pb::SelectionPolicy::RoundRobin, "round_robin"),
    (pb::SelectionPolicy::LeastLoaded, "least_loaded"),
    (pb::SelectionPolicy::Random, "random"),
    (pb::SelectionPolicy::Priority, "priority"),
];

/// Model capabilities: the API's value and the stored name of each.
const CAPABILITIES: [(pb::ModelCapability, &str); 4] = [
    (pb::ModelCapability::Chat, "chat"),
    (pb::ModelCapability::Prompt, "prompt"),
    (pb::ModelCapability::Embed, "embed"),
    (pb::ModelCapability::Stream, "stream"),
];

/// The stored name of an API enum value (none for an unknown or
/// unspecified value).
fn name_in<E: Copy + PartialEq, U>(
    table: &[(E, &'static str)],
    value: Result<E, U>,
) -> Option<&'static str> {
    let value = value.ok()?;
    table
        .iter()
        .find(|(known, _)| *known == value)
        .map(|(_, name)| *name)
}

/// The API enum value of a stored name (unspecified for an unknown one).
fn value_in<E: Copy + Default>(table: &[(E, &str)], name: &str) -> E {
    table
        .iter()
        .find(|(_, known)| *known == name)
        .map_or_else(E::default, |(value, _)| *value)
}

fn backend_type_name(value: i32) -> Option<&'static str> {
    name_in(&BACKEND_TYPES, pb::BackendType::try_from(value))
}

fn backend_type_value(name: &str) -> pb::BackendType {
    value_in(&BACKEND_TYPES, name)
}

fn capability_name(value: i32) -> Option<&'static str> {
    name_in(&CAPABILITIES, pb::ModelCapability::try_from(value))
}

fn capability_value(name: &str) -> pb::ModelCapability {
    value_in(&CAPABILITIES, name)
}

/// The API view of a backend: never carries the API key.
pub fn backend_message(record: BackendRecord) -> pb::Backend {
    let state = &record.state;
    pb::Backend {
        id: record.id,
        name: record.name,
        r#type: backend_type_value(&record.backend_type) as i32,
        base_url: record.base_url,
        api_key: String::new(),
        has_api_key: record.api_key.as_deref().is_some_and(|key| !key.is_empty()),
        priority: record.priority,
        max_concurrency: record.max_concurrency,
        requests_per_minute: record.requests_per_minute,
        tokens_per_minute: record.tokens_per_minute,
        model_limits: record
            .model_limits
            .iter()
            .map(|(model, limits)| (model.clone(), limits_message(limits)))
            .collect(),
        omit_stream_options: record.omit_stream_options,
        request_timeout: (record.request_timeout_ms > 0)
            .then(|| millis_duration(record.request_timeout_ms)),
        labels: record.labels,
        state: Some(pb::BackendState {
            health: match state.health.as_str() {
                "healthy" => pb::BackendHealth::Healthy,
                "unhealthy" => pb::BackendHealth::Unhealthy,
                _ => pb::BackendHealth::Unspecified,
            } as i32,
            models: state.models.clone(),
            last_error: state.last_error.clone(),
            last_sync_time: state.last_sync_at.map(timestamp),
            latency: state.latency_ms.map(millis_duration),
            observed_models: state
                .observed_models
                .iter()
                .map(|model| pb::ObservedModel {
                    name: model.name.clone(),
                    context_length: model.context_length,
                    capabilities: model
                        .capabilities
                        .iter()
                        .map(|c| capability_value(c) as i32)
                        .collect(),
                    size_bytes: model.size_bytes,
                })
                .collect(),
            models_time: state.models_at.map(timestamp),
        }),
        etag: etag(record.revision),
        create_time: Some(timestamp(record.created_at)),
        update_time: Some(timestamp(record.updated_at)),
    }
}

fn limits_message(limits: &Limits) -> pb::Limits {
    pb::Limits {
        max_concurrency: limits.max_concurrency,
        requests_per_minute: limits.requests_per_minute,
        tokens_per_minute: limits.tokens_per_minute,
    }
}

/// Checks limits given at `path`: none may be negative (0 = unlimited).
fn check_limits(path: &str, limits: &pb::Limits, violations: &mut Violations) -> Limits {
    for (field, negative) in [
        ("max_concurrency", limits.max_concurrency < 0),
        ("requests_per_minute", limits.requests_per_minute < 0),
        ("tokens_per_minute", limits.tokens_per_minute < 0),
    ] {
        if negative {
            violations.add(
                format!("{path}.{field}"),
                "must not be negative (0 = unlimited)",
            );
        }
    }
    Limits {
        max_concurrency: limits.max_concurrency,
        requests_per_minute: limits.requests_per_minute,
        tokens_per_minute: limits.tokens_per_minute,
    }
}

pub fn pool_message(record: PoolRecord) -> pb::Pool {
    pb::Pool {
        id: record.id,
        description: record.description,
        purpose: record.purpose,
        policy: value_in(&POLICIES, &record.policy) as i32,
        discover_models: record.discover_models,
        create_time: Some(timestamp(record.created_at)),
    }
}

pub fn model_message(record: ModelRecord) -> pb::Model {
    pb::Model {
        id: record.id,
        name: record.name,
        context_length: record.context_length,
        capabilities: record
            .capabilities
            .iter()
            .map(|c| capability_value(c) as i32)
            .collect(),
        create_time: Some(timestamp(record.created_at)),
    }
}

/// Checks the writable fields of a backend (after defaults and masks are
/// applied) and returns them as a record with placeholder bookkeeping.
fn validate_backend(backend: &pb::Backend, violations: &mut Violations) -> Option<BackendRecord> {
    violations.check_name("backend.name", &backend.name, 128);
    let backend_type = backend_type_name(backend.r#type);
    if backend_type.is_none() {
        violations.add(
            "backend.type",
            "must be one of BACKEND_TYPE_OLLAMA, _OPENAI, _OPENAI_COMPATIBLE, _GEMINI, _ANTHROPIC, _OPENROUTER, _MISTRAL, _VLLM, _LM_STUDIO",
        );
    }
    // The presets know their base URL; every other type names its own.
    let preset = matches!(
        backend_type,
        Some("openrouter" | "mistral" | "vllm" | "lm_studio")
    );
    if !(preset && backend.base_url.is_empty()) {
        violations.check_http_url("backend.base_url", &backend.base_url);
    }
    violations.check_text("backend.api_key", &backend.api_key, MAX_API_KEY_LEN);
    if backend.api_key.chars().any(char::is_control) {
        violations.add("backend.api_key", "must not contain control characters");
    }
    let own_limits = pb::Limits {
        max_concurrency: backend.max_concurrency,
        requests_per_minute: backend.requests_per_minute,
        tokens_per_minute: backend.tokens_per_minute,
    };
    check_limits("backend", &own_limits, violations);
    let mut model_limits = BTreeMap::new();
    for (model, limits) in &backend.model_limits {
        check_model_name(
            violations,
            &format!("backend.model_limits[{model:?}]"),
            model,
        );
        let limits = check_limits(
            &format!("backend.model_limits[{model:?}]"),
            limits,
            violations,
        );
        model_limits.insert(model.clone(), limits);
    }
    if backend.model_limits.len() > MAX_MODEL_LIMITS {
        violations.add(
            "backend.model_limits",
            format!("must have at most {MAX_MODEL_LIMITS} entries"),
        );
    }
    let request_timeout_ms = match &backend.request_timeout {
        None => 0,
        Some(duration) => match duration_millis(duration) {
            Some(ms) if ms > 0 && ms <= MAX_REQUEST_TIMEOUT_MS => ms,
            _ => {
                violations.add(
                    "backend.request_timeout",
                    "must be positive and at most 1 hour",
                );
                0
            }
        },
    };
    violations.check_labels("backend.labels", &backend.labels);
    let now = Utc::now();
    Some(BackendRecord {
        id: backend.id.clone(),
        name: backend.name.trim().to_string(),
        backend_type: backend_type?.to_string(),
        base_url: backend.base_url.trim_end_matches('/').to_string(),
        api_key: (!backend.api_key.is_empty()).then(|| backend.api_key.clone()),
        priority: backend.priority,
        max_concurrency: backend.max_concurrency,
        requests_per_minute: backend.requests_per_minute,
        tokens_per_minute: backend.tokens_per_minute,
        model_limits,
        omit_stream_options: backend.omit_stream_options,
        request_timeout_ms,
        labels: backend.labels.clone(),
        state: BackendState::default(),
        revision: 1,
        created_at: now,
        updated_at: now,
    })
}

/// Hosted providers that cannot be called without a key.
fn requires_api_key(backend_type: &str) -> bool {
    matches!(
        backend_type,
        "openai" | "gemini" | "anthropic" | "openrouter" | "mistral"
    )
}

/// The backend a `CreateBackend` asks for, with a new id unless it names
/// one.
pub fn new_backend(
    request: &pb::CreateBackendRequest,
) -> ApiResult<(BackendRecord, Option<IdempotencyKey>)> {
    let (backend, mut violations) = created(request, "backend", request.backend.as_ref())?;
    if !request.backend_id.is_empty() {
        violations.check_id("backend_id", &request.backend_id);
    }
    let record = validate_backend(backend, &mut violations);
    if let Some(record) = &record
        && requires_api_key(&record.backend_type)
        && record.api_key.is_none()
    {
        violations.add(
            "backend.api_key",
            format!("is required for {} backends", record.backend_type),
        );
    }
    violations.finish()?;
    let Some(mut record) = record else {
        return Err(ApiError::invalid("backend", "is invalid"));
    };
    record.id = if request.backend_id.is_empty() {
        uuid::Uuid::now_v7().to_string()
    } else {
        request.backend_id.clone()
    };
    Ok((record, idempotency_key(request)))
}

/// `current` with the fields of `mask` (every writable one when `whole`)
/// taken from `patch`, checked.
pub fn updated_backend(
    current: BackendRecord,
    update: &Patch<pb::Backend>,
) -> ApiResult<BackendRecord> {
    let Patch {
        resource: patch,
        mask,
        whole,
        ..
    } = update;
    let mut merged = backend_message(current.clone());
    for field in mask {
        match field.as_str() {
            "name" => merged.name = patch.name.clone(),
            "type" => merged.r#type = patch.r#type,
            "base_url" => merged.base_url = patch.base_url.clone(),
            "api_key" => merged.api_key = patch.api_key.clone(),
            "priority" => merged.priority = patch.priority,
            "max_concurrency" => merged.max_concurrency = patch.max_concurrency,
            "requests_per_minute" => merged.requests_per_minute = patch.requests_per_minute,
            "tokens_per_minute" => merged.tokens_per_minute = patch.tokens_per_minute,
            "model_limits" => merged.model_limits = patch.model_limits.clone(),
            "omit_stream_options" => merged.omit_stream_options = patch.omit_stream_options,
            "request_timeout" => merged.request_timeout = patch.request_timeout,
            "labels" => merged.labels = patch.labels.clone(),
            _ => {}
        }
    }
    let mut violations = Violations::new();
    let record = validate_backend(&merged, &mut violations);
    violations.finish()?;
    let Some(mut record) = record else {
        return Err(ApiError::invalid("backend", "is invalid"));
    };
    // An empty key in a whole-resource update keeps the stored key; an
    // explicit `api_key` mask entry with an empty value clears it.
    let key_in_mask = !whole && mask.iter().any(|f| f == "api_key");
    if record.api_key.is_none() && !key_in_mask {
        record.api_key = current.api_key;
    }
    if requires_api_key(&record.backend_type) && record.api_key.is_none() {
        return Err(ApiError::invalid(
            "backend.api_key",
            format!("is required for {} backends", record.backend_type),
        ));
    }
    record.id = current.id;
    record.state = current.state;
    record.revision = current.revision;
    record.created_at = current.created_at;
    Ok(record)
}

/// The pool a `CreatePool` asks for.
pub fn new_pool(
    request: &pb::CreatePoolRequest,
) -> ApiResult<(PoolRecord, Option<IdempotencyKey>)> {
    let (pool, mut violations) = created(request, "pool", request.pool.as_ref())?;
    violations.check_id("pool.id", &pool.id);
    violations.check_text("pool.description", &pool.description, 1024);
    violations.check_text("pool.purpose", &pool.purpose, 64);
    let policy = name_in(&POLICIES, pb::SelectionPolicy::try_from(pool.policy));
    if policy.is_none() {
        violations.add(
            "pool.policy",
            "must be SELECTION_POLICY_ROUND_ROBIN, _LEAST_LOADED, _RANDOM, _PRIORITY or unset",
        );
    }
    violations.finish()?;
    let record = PoolRecord {
        id: pool.id.clone(),
        description: pool.description.clone(),
        purpose: pool.purpose.clone(),
        policy: policy.unwrap_or_default().to_string(),
        discover_models: pool.discover_models,
        created_at: Utc::now(),
    };
    Ok((record, idempotency_key(request)))
}

/// The model a `CreateModel` declares.
pub fn new_model(
    request: &pb::CreateModelRequest,
) -> ApiResult<(ModelRecord, Option<IdempotencyKey>)> {
    let (model, mut violations) = created(request, "model", request.model.as_ref())?;
    check_model_name(&mut violations, "model.name", &model.name);
    if model.context_length <= 0 {
        violations.add("model.context_length", "must be positive");
    }
    if model.capabilities.is_empty() {
        violations.add(
            "model.capabilities",
            "must name at least one of MODEL_CAPABILITY_CHAT, _PROMPT, _EMBED, _STREAM",
        );
    }
    let mut capabilities = Vec::new();
    for (index, value) in model.capabilities.iter().enumerate() {
        match capability_name(*value) {
            Some(name) => capabilities.push(name.to_string()),
            None => violations.add(
                format!("model.capabilities[{index}]"),
                "must be MODEL_CAPABILITY_CHAT, _PROMPT, _EMBED or _STREAM",
            ),
        }
    }
    violations.finish()?;
    capabilities.sort();
    capabilities.dedup();
    let record = ModelRecord {
        id: uuid::Uuid::now_v7().to_string(),
        name: model.name.clone(),
        context_length: model.context_length,
        capabilities,
        created_at: Utc::now(),
    };
    Ok((record, idempotency_key(request)))
}

/// Model names as providers spell them: `smollm2:135m`, `gpt-4o-mini`,
/// `library/llama3:8b`, `models/gemini-1.5-pro`.
fn check_model_name(violations: &mut Violations, field: &str, name: &str) {
    if name.is_empty() {
        violations.add(field, "is required");
    } else if name.len() > 256
        || !name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':' | b'/' | b'@')
        })
    {
        violations.add(
            field,
            "must be 1 to 256 characters of letters, digits and '_', '.', '-', ':', '/', '@'",
        );
    }
}

/// Checks the `models` and `pool` a one-shot call prefers.
fn check_preference(violations: &mut Violations, models: &[String], pool: &str) {
    for (index, model) in models.iter().enumerate() {
        check_model_name(violations, &format!("models[{index}]"), model);
    }
    if !pool.is_empty() {
        violations.check_id("pool", pool);
    }
}

fn preference(models: &[String], pool: &str) -> ModelPreference {
    ModelPreference {
        models: models.to_vec(),
        pool: (!pool.is_empty()).then(|| pool.to_string()),
        ..Default::default()
    }
}

/// An `ExecutePrompt`: the model preference, the system instruction (if
/// any) and the prompt.
pub fn prompt_call(
    request: pb::ExecutePromptRequest,
) -> ApiResult<(ModelPreference, Option<String>, String)> {
    let mut violations = Violations::new();
    if request.prompt.is_empty() {
        violations.add("prompt", "is required");
    }
    violations.check_text("prompt", &request.prompt, MAX_PROMPT_BYTES);
    violations.check_text(
        "system_instruction",
        &request.system_instruction,
        MAX_SYSTEM_INSTRUCTION_BYTES,
    );
    check_preference(&mut violations, &request.models, &request.pool);
    if let Some(temperature) = request.temperature
        && !(0.0..=2.0).contains(&temperature)
    {
        violations.add("temperature", "must be between 0 and 2");
    }
    if request.max_tokens < 0 {
        violations.add("max_tokens", "must not be negative");
    }
    violations.finish()?;
    let model = ModelPreference {
        temperature: request.temperature,
        max_tokens: (request.max_tokens > 0).then_some(request.max_tokens as u32),
        ..preference(&request.models, &request.pool)
    };
    let system = (!request.system_instruction.is_empty()).then_some(request.system_instruction);
    Ok((model, system, request.prompt))
}

/// An `Embed`: the model preference and the text.
pub fn embed_call(request: pb::EmbedRequest) -> ApiResult<(ModelPreference, String)> {
    let mut violations = Violations::new();
    if request.text.is_empty() {
        violations.add("text", "is required");
    }
    violations.check_text("text", &request.text, MAX_PROMPT_BYTES);
    check_preference(&mut violations, &request.models, &request.pool);
    violations.finish()?;
    Ok((preference(&request.models, &request.pool), request.text))
}

fn usage(input_tokens: u64, output_tokens: u64) -> Option<pb::TokenUsage> {
    Some(pb::TokenUsage {
        input_tokens: input_tokens as i64,
        output_tokens: output_tokens as i64,
    })
}

pub fn prompt_answer(served: Served<ChatResponse>) -> pb::ExecutePromptResponse {
    pb::ExecutePromptResponse {
        usage: usage(
            served.response.usage.input_tokens,
            served.response.usage.output_tokens,
        ),
        text: served.response.content,
        model: served.model,
        backend_id: served.backend_id,
    }
}

pub fn embed_answer(served: Served<EmbedResponse>) -> pb::EmbedResponse {
    pb::EmbedResponse {
        usage: usage(
            served.response.usage.input_tokens,
            served.response.usage.output_tokens,
        ),
        vector: Some(pb::Vector {
            values: served.response.vector,
        }),
        model: served.model,
        backend_id: served.backend_id,
    }
}

/// No candidate is a precondition problem (configure a backend); a provider
/// failure is UNAVAILABLE when retryable.
pub fn resolve_error(error: ResolveError) -> ApiError {
    match error {
        ResolveError::NoCandidate { message, .. } => ApiError::FailedPrecondition {
            reason: "NO_BACKEND",
            message,
        },
        ResolveError::Provider(error) if error.is_retryable() => {
            ApiError::Unavailable(format!("model call failed: {error}"))
        }
        ResolveError::Provider(error) => ApiError::FailedPrecondition {
            reason: "MODEL_CALL_FAILED",
            message: format!("model call failed: {error}"),
        },
        ResolveError::Store(error) => error.into(),
        // A call limit holds every backend: try again after the retry time.
        throttled @ ResolveError::Throttled(_) => ApiError::Unavailable(throttled.to_string()),
    }
}
