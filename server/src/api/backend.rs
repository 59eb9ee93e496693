//! BackendService: backends, pools and their associations, declared models.
//! Model calls (`ExecutePrompt`, `Embed`, `PullModel`, `SyncBackend`) arrive
//! with the LLM layer and answer UNIMPLEMENTED until then.

use chrono::Utc;
use tonic::{Request, Response, Status};

use super::request::{
    Violations, check_etag, duration_millis, etag, expected_revision, idempotency_key, list_page,
    mask_field, millis_duration, require, timestamp,
};
use super::{ApiContext, ApiError, ApiResult, respond};
use crate::chain::ModelPreference;
use crate::llm::resolver::{Capability, ResolveError};
use crate::llm::{ChatMessage, ChatRequest};
use crate::proto::taskloom::v1::{self as pb, backend_service_server::BackendService};
use crate::store::{BackendRecord, BackendState, ModelRecord, PoolRecord};

/// Longest backend `request_timeout`.
const MAX_REQUEST_TIMEOUT_MS: i64 = 3_600_000;
const MAX_API_KEY_LEN: usize = 8192;

pub struct BackendApi {
    context: ApiContext,
}

impl BackendApi {
    pub fn new(context: ApiContext) -> Self {
        BackendApi { context }
    }
}

fn backend_type_name(value: i32) -> Option<&'static str> {
    match pb::BackendType::try_from(value).ok()? {
        pb::BackendType::Unspecified => None,
        pb::BackendType::Ollama => Some("ollama"),
        pb::BackendType::Openai => Some("openai"),
        pb::BackendType::OpenaiCompatible => Some("openai_compatible"),
        pb::BackendType::Gemini => Some("gemini"),
        pb::BackendType::Anthropic => Some("anthropic"),
    }
}

fn backend_type_value(name: &str) -> pb::BackendType {
    match name {
        "ollama" => pb::BackendType::Ollama,
        "openai" => pb::BackendType::Openai,
        "openai_compatible" => pb::BackendType::OpenaiCompatible,
        "gemini" => pb::BackendType::Gemini,
        "anthropic" => pb::BackendType::Anthropic,
        _ => pb::BackendType::Unspecified,
    }
}

fn capability_name(value: i32) -> Option<&'static str> {
    match pb::ModelCapability::try_from(value).ok()? {
        pb::ModelCapability::Unspecified => None,
        pb::ModelCapability::Chat => Some("chat"),
        pb::ModelCapability::Prompt => Some("prompt"),
        pb::ModelCapability::Embed => Some("embed"),
        pb::ModelCapability::Stream => Some("stream"),
    }
}

fn capability_value(name: &str) -> pb::ModelCapability {
    match name {
        "chat" => pb::ModelCapability::Chat,
        "prompt" => pb::ModelCapability::Prompt,
        "embed" => pb::ModelCapability::Embed,
        "stream" => pb::ModelCapability::Stream,
        _ => pb::ModelCapability::Unspecified,
    }
}

/// The API view of a backend: never carries the API key.
fn backend_message(record: BackendRecord) -> pb::Backend {
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
        }),
        etag: etag(record.revision),
        create_time: Some(timestamp(record.created_at)),
        update_time: Some(timestamp(record.updated_at)),
    }
}

fn pool_message(record: PoolRecord) -> pb::Pool {
    pb::Pool {
        id: record.id,
        description: record.description,
        purpose: record.purpose,
        policy: pb::SelectionPolicy::RoundRobin as i32,
        create_time: Some(timestamp(record.created_at)),
    }
}

fn model_message(record: ModelRecord) -> pb::Model {
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
            "must be one of BACKEND_TYPE_OLLAMA, BACKEND_TYPE_OPENAI, BACKEND_TYPE_OPENAI_COMPATIBLE, BACKEND_TYPE_GEMINI, BACKEND_TYPE_ANTHROPIC",
        );
    }
    violations.check_http_url("backend.base_url", &backend.base_url);
    violations.check_text("backend.api_key", &backend.api_key, MAX_API_KEY_LEN);
    if backend.api_key.chars().any(char::is_control) {
        violations.add("backend.api_key", "must not contain control characters");
    }
    if backend.max_concurrency < 0 {
        violations.add(
            "backend.max_concurrency",
            "must not be negative (0 = unlimited)",
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
    matches!(backend_type, "openai" | "gemini" | "anthropic")
}

const BACKEND_MASK_FIELDS: &[&str] = &[
    "name",
    "type",
    "base_url",
    "api_key",
    "priority",
    "max_concurrency",
    "request_timeout",
    "labels",
];

impl BackendApi {
    async fn create_backend(&self, request: pb::CreateBackendRequest) -> ApiResult<pb::Backend> {
        let mut violations = Violations::new();
        violations.check_request_id("request_id", &request.request_id);
        let Some(backend) = request.backend.as_ref() else {
            return Err(ApiError::invalid("backend", "is required"));
        };
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
        let idempotency = idempotency_key("CreateBackend", &request.request_id, &request, |r| {
            r.request_id.clear()
        });
        let created = self
            .context
            .store()
            .create_backend(record, idempotency)
            .await?;
        if !created.replayed {
            tracing::info!(backend_id = %created.record.id, name = %created.record.name, "backend created");
        }
        Ok(backend_message(created.record))
    }

    async fn update_backend(&self, request: pb::UpdateBackendRequest) -> ApiResult<pb::Backend> {
        let Some(patch) = request.backend else {
            return Err(ApiError::invalid("backend", "is required"));
        };
        require("backend.id", &patch.id)?;
        let mut mask: Vec<String> = request.update_mask.iter().map(|p| mask_field(p)).collect();
        let mut violations = Violations::new();
        for (index, field) in mask.iter().enumerate() {
            if !BACKEND_MASK_FIELDS.contains(&field.as_str()) {
                violations.add(
                    format!("update_mask[{index}]"),
                    format!(
                        "unknown or read-only field {field:?}; writable: {}",
                        BACKEND_MASK_FIELDS.join(", ")
                    ),
                );
            }
        }
        violations.finish()?;
        let store = self.context.store();
        let current = store.get_backend(&patch.id).await?;
        check_etag(&request.etag, "backend", &patch.id, current.revision)?;
        let whole = mask.is_empty();
        if whole {
            mask = BACKEND_MASK_FIELDS.iter().map(|f| f.to_string()).collect();
        }
        let mut merged = backend_message(current.clone());
        for field in &mask {
            match field.as_str() {
                "name" => merged.name = patch.name.clone(),
                "type" => merged.r#type = patch.r#type,
                "base_url" => merged.base_url = patch.base_url.clone(),
                "api_key" => merged.api_key = patch.api_key.clone(),
                "priority" => merged.priority = patch.priority,
                "max_concurrency" => merged.max_concurrency = patch.max_concurrency,
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
            record.api_key = current.api_key.clone();
        }
        if requires_api_key(&record.backend_type) && record.api_key.is_none() {
            return Err(ApiError::invalid(
                "backend.api_key",
                format!("is required for {} backends", record.backend_type),
            ));
        }
        record.id = current.id.clone();
        record.state = current.state.clone();
        record.revision = current.revision;
        record.created_at = current.created_at;
        let updated = store.update_backend(record).await?;
        tracing::info!(backend_id = %updated.id, "backend updated");
        Ok(backend_message(updated))
    }

    async fn delete_backend(&self, request: pb::DeleteBackendRequest) -> ApiResult<()> {
        require("id", &request.id)?;
        let expected = expected_revision(&request.etag, "backend", &request.id, None)?;
        self.context
            .store()
            .delete_backend(&request.id, expected)
            .await?;
        tracing::info!(backend_id = %request.id, "backend deleted");
        Ok(())
    }

    async fn create_pool(&self, request: pb::CreatePoolRequest) -> ApiResult<pb::Pool> {
        let mut violations = Violations::new();
        violations.check_request_id("request_id", &request.request_id);
        let Some(pool) = request.pool.as_ref() else {
            return Err(ApiError::invalid("pool", "is required"));
        };
        violations.check_id("pool.id", &pool.id);
        violations.check_text("pool.description", &pool.description, 1024);
        violations.check_text("pool.purpose", &pool.purpose, 64);
        violations.finish()?;
        let record = PoolRecord {
            id: pool.id.clone(),
            description: pool.description.clone(),
            purpose: pool.purpose.clone(),
            created_at: Utc::now(),
        };
        let idempotency = idempotency_key("CreatePool", &request.request_id, &request, |r| {
            r.request_id.clear()
        });
        let created = self
            .context
            .store()
            .create_pool(record, idempotency)
            .await?;
        Ok(pool_message(created.record))
    }

    async fn create_model(&self, request: pb::CreateModelRequest) -> ApiResult<pb::Model> {
        let mut violations = Violations::new();
        violations.check_request_id("request_id", &request.request_id);
        let Some(model) = request.model.as_ref() else {
            return Err(ApiError::invalid("model", "is required"));
        };
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
        let idempotency = idempotency_key("CreateModel", &request.request_id, &request, |r| {
            r.request_id.clear()
        });
        let created = self
            .context
            .store()
            .create_model(record, idempotency)
            .await?;
        Ok(model_message(created.record))
    }
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

/// Scope strings bind page tokens to one listing.
fn scoped(listing: &str, key: &str) -> String {
    format!("{listing}/{key}")
}

#[tonic::async_trait]
impl BackendService for BackendApi {
    async fn create_backend(
        &self,
        request: Request<pb::CreateBackendRequest>,
    ) -> Result<Response<pb::Backend>, Status> {
        respond(BackendApi::create_backend(self, request.into_inner()).await)
    }

    async fn get_backend(
        &self,
        request: Request<pb::GetBackendRequest>,
    ) -> Result<Response<pb::Backend>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("id", &request.id)?;
                let record = self.context.store().get_backend(&request.id).await?;
                Ok(backend_message(record))
            }
            .await,
        )
    }

    async fn list_backends(
        &self,
        request: Request<pb::ListBackendsRequest>,
    ) -> Result<Response<pb::ListBackendsResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                let scope = "ListBackends";
                let (backends, next_page_token) = list_page(
                    request.page_size,
                    &request.page_token,
                    scope,
                    |query| self.context.store().list_backends(query),
                    |item| Ok(backend_message(item)),
                )
                .await?;
                Ok(pb::ListBackendsResponse {
                    backends,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn update_backend(
        &self,
        request: Request<pb::UpdateBackendRequest>,
    ) -> Result<Response<pb::Backend>, Status> {
        respond(BackendApi::update_backend(self, request.into_inner()).await)
    }

    async fn delete_backend(
        &self,
        request: Request<pb::DeleteBackendRequest>,
    ) -> Result<Response<()>, Status> {
        respond(BackendApi::delete_backend(self, request.into_inner()).await)
    }

    async fn create_pool(
        &self,
        request: Request<pb::CreatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        respond(BackendApi::create_pool(self, request.into_inner()).await)
    }

    async fn get_pool(
        &self,
        request: Request<pb::GetPoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("id", &request.id)?;
                Ok(pool_message(
                    self.context.store().get_pool(&request.id).await?,
                ))
            }
            .await,
        )
    }

    async fn list_pools(
        &self,
        request: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                let scope = "ListPools";
                let (pools, next_page_token) = list_page(
                    request.page_size,
                    &request.page_token,
                    scope,
                    |query| self.context.store().list_pools(query),
                    |item| Ok(pool_message(item)),
                )
                .await?;
                Ok(pb::ListPoolsResponse {
                    pools,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn delete_pool(
        &self,
        request: Request<pb::DeletePoolRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("id", &request.id)?;
                self.context.store().delete_pool(&request.id).await?;
                Ok(())
            }
            .await,
        )
    }

    async fn assign_backend_to_pool(
        &self,
        request: Request<pb::AssignBackendToPoolRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require_pair(
                    "pool_id",
                    &request.pool_id,
                    "backend_id",
                    &request.backend_id,
                )?;
                self.context
                    .store()
                    .assign_backend_to_pool(&request.pool_id, &request.backend_id)
                    .await?;
                Ok(())
            }
            .await,
        )
    }

    async fn remove_backend_from_pool(
        &self,
        request: Request<pb::RemoveBackendFromPoolRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require_pair(
                    "pool_id",
                    &request.pool_id,
                    "backend_id",
                    &request.backend_id,
                )?;
                self.context
                    .store()
                    .remove_backend_from_pool(&request.pool_id, &request.backend_id)
                    .await?;
                Ok(())
            }
            .await,
        )
    }

    async fn list_pool_backends(
        &self,
        request: Request<pb::ListPoolBackendsRequest>,
    ) -> Result<Response<pb::ListBackendsResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("pool_id", &request.pool_id)?;
                let scope = scoped("ListPoolBackends", &request.pool_id);
                let (backends, next_page_token) = list_page(
                    request.page_size,
                    &request.page_token,
                    &scope,
                    |query| {
                        self.context
                            .store()
                            .list_pool_backends(&request.pool_id, query)
                    },
                    |item| Ok(backend_message(item)),
                )
                .await?;
                Ok(pb::ListBackendsResponse {
                    backends,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn list_backend_pools(
        &self,
        request: Request<pb::ListBackendPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("backend_id", &request.backend_id)?;
                let scope = scoped("ListBackendPools", &request.backend_id);
                let (pools, next_page_token) = list_page(
                    request.page_size,
                    &request.page_token,
                    &scope,
                    |query| {
                        self.context
                            .store()
                            .list_backend_pools(&request.backend_id, query)
                    },
                    |item| Ok(pool_message(item)),
                )
                .await?;
                Ok(pb::ListPoolsResponse {
                    pools,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn assign_model_to_pool(
        &self,
        request: Request<pb::AssignModelToPoolRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require_pair("pool_id", &request.pool_id, "model", &request.model)?;
                self.context
                    .store()
                    .assign_model_to_pool(&request.pool_id, &request.model)
                    .await?;
                Ok(())
            }
            .await,
        )
    }

    async fn remove_model_from_pool(
        &self,
        request: Request<pb::RemoveModelFromPoolRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require_pair("pool_id", &request.pool_id, "model", &request.model)?;
                self.context
                    .store()
                    .remove_model_from_pool(&request.pool_id, &request.model)
                    .await?;
                Ok(())
            }
            .await,
        )
    }

    async fn list_pool_models(
        &self,
        request: Request<pb::ListPoolModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("pool_id", &request.pool_id)?;
                let scope = scoped("ListPoolModels", &request.pool_id);
                let (models, next_page_token) = list_page(
                    request.page_size,
                    &request.page_token,
                    &scope,
                    |query| {
                        self.context
                            .store()
                            .list_pool_models(&request.pool_id, query)
                    },
                    |item| Ok(model_message(item)),
                )
                .await?;
                Ok(pb::ListModelsResponse {
                    models,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn list_model_pools(
        &self,
        request: Request<pb::ListModelPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("model", &request.model)?;
                let scope = scoped("ListModelPools", &request.model);
                let (pools, next_page_token) = list_page(
                    request.page_size,
                    &request.page_token,
                    &scope,
                    |query| self.context.store().list_model_pools(&request.model, query),
                    |item| Ok(pool_message(item)),
                )
                .await?;
                Ok(pb::ListPoolsResponse {
                    pools,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn create_model(
        &self,
        request: Request<pb::CreateModelRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        respond(BackendApi::create_model(self, request.into_inner()).await)
    }

    async fn get_model(
        &self,
        request: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("name", &request.name)?;
                Ok(model_message(
                    self.context.store().get_model(&request.name).await?,
                ))
            }
            .await,
        )
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                let scope = "ListModels";
                let (models, next_page_token) = list_page(
                    request.page_size,
                    &request.page_token,
                    scope,
                    |query| self.context.store().list_models(query),
                    |item| Ok(model_message(item)),
                )
                .await?;
                Ok(pb::ListModelsResponse {
                    models,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn execute_prompt(
        &self,
        request: Request<pb::ExecutePromptRequest>,
    ) -> Result<Response<pb::ExecutePromptResponse>, Status> {
        respond(BackendApi::execute_prompt(self, request.into_inner()).await)
    }

    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        respond(BackendApi::embed(self, request.into_inner()).await)
    }

    async fn delete_model(
        &self,
        request: Request<pb::DeleteModelRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("name", &request.name)?;
                self.context.store().delete_model(&request.name).await?;
                Ok(())
            }
            .await,
        )
    }
}

impl BackendApi {
    async fn execute_prompt(
        &self,
        request: pb::ExecutePromptRequest,
    ) -> ApiResult<pb::ExecutePromptResponse> {
        let mut violations = Violations::new();
        if request.prompt.is_empty() {
            violations.add("prompt", "is required");
        }
        violations.check_text("prompt", &request.prompt, 1024 * 1024);
        violations.check_text("system_instruction", &request.system_instruction, 64 * 1024);
        for (index, model) in request.models.iter().enumerate() {
            check_model_name(&mut violations, &format!("models[{index}]"), model);
        }
        if !request.pool.is_empty() {
            violations.check_id("pool", &request.pool);
        }
        if let Some(temperature) = request.temperature
            && !(0.0..=2.0).contains(&temperature)
        {
            violations.add("temperature", "must be between 0 and 2");
        }
        if request.max_tokens < 0 {
            violations.add("max_tokens", "must not be negative");
        }
        violations.finish()?;
        let preference = ModelPreference {
            models: request.models.clone(),
            pool: (!request.pool.is_empty()).then(|| request.pool.clone()),
            temperature: request.temperature,
            max_tokens: (request.max_tokens > 0).then_some(request.max_tokens as u32),
            ..Default::default()
        };
        let mut messages = Vec::new();
        if !request.system_instruction.is_empty() {
            messages.push(ChatMessage::system(request.system_instruction.clone()));
        }
        messages.push(ChatMessage::user(request.prompt.clone()));
        let resolver = self.context.executor().resolver();
        let chars = request.prompt.len() + request.system_instruction.len();
        let candidates = resolver
            .candidates(&preference, Capability::Chat, "internal_tasks_pool", chars)
            .await
            .map_err(resolve_error)?;
        let served = resolver
            .chat(
                &candidates,
                &ChatRequest {
                    model: String::new(),
                    messages,
                    temperature: preference.temperature,
                    max_tokens: preference.max_tokens,
                },
                None,
            )
            .await
            .map_err(resolve_error)?;
        Ok(pb::ExecutePromptResponse {
            text: served.response.content,
            model: served.model,
            backend_id: served.backend_id,
            usage: Some(pb::TokenUsage {
                input_tokens: served.response.usage.input_tokens as i64,
                output_tokens: served.response.usage.output_tokens as i64,
            }),
        })
    }

    async fn embed(&self, request: pb::EmbedRequest) -> ApiResult<pb::EmbedResponse> {
        let mut violations = Violations::new();
        if request.text.is_empty() {
            violations.add("text", "is required");
        }
        violations.check_text("text", &request.text, 1024 * 1024);
        for (index, model) in request.models.iter().enumerate() {
            check_model_name(&mut violations, &format!("models[{index}]"), model);
        }
        if !request.pool.is_empty() {
            violations.check_id("pool", &request.pool);
        }
        violations.finish()?;
        let preference = ModelPreference {
            models: request.models.clone(),
            pool: (!request.pool.is_empty()).then(|| request.pool.clone()),
            ..Default::default()
        };
        let resolver = self.context.executor().resolver();
        let candidates = resolver
            .candidates(
                &preference,
                Capability::Embed,
                "internal_embed_pool",
                request.text.len(),
            )
            .await
            .map_err(resolve_error)?;
        let served = resolver
            .embed(&candidates, &request.text)
            .await
            .map_err(resolve_error)?;
        Ok(pb::EmbedResponse {
            vector: Some(pb::Vector {
                values: served.response.vector,
            }),
            model: served.model,
            backend_id: served.backend_id,
            usage: Some(pb::TokenUsage {
                input_tokens: served.response.usage.input_tokens as i64,
                output_tokens: served.response.usage.output_tokens as i64,
            }),
        })
    }
}

/// No candidate is a precondition problem (configure a backend); a provider
/// failure is UNAVAILABLE when retryable.
fn resolve_error(error: ResolveError) -> ApiError {
    match error {
        ResolveError::NoCandidate(message) => ApiError::FailedPrecondition {
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
    }
}

/// Both keys of an association request are required; reports both at once.
fn require_pair(first: &str, first_value: &str, second: &str, second_value: &str) -> ApiResult<()> {
    let mut violations = Violations::new();
    if first_value.is_empty() {
        violations.add(first, "is required");
    }
    if second_value.is_empty() {
        violations.add(second, "is required");
    }
    violations.finish()
}
