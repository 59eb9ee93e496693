//! ChainService: chain definitions with immutable versions.

use prost::Message;
use tonic::{Request, Response, Status};

use super::request::{
    Violations, expected_revision, idempotency_key, list_page, require, timestamp,
};
use super::{ApiContext, ApiError, ApiResult, respond};
use crate::chain;
use crate::proto::taskloom::v1::{self as pb, chain_service_server::ChainService};
use crate::store::ChainRecord;

/// Largest accepted chain definition (encoded).
const MAX_CHAIN_BYTES: usize = 1024 * 1024;

pub struct ChainApi {
    context: ApiContext,
}

impl ChainApi {
    pub fn new(context: ApiContext) -> Self {
        ChainApi { context }
    }
}

/// Decodes a stored version and fills in its output-only fields.
fn chain_message(record: ChainRecord) -> ApiResult<pb::Chain> {
    let mut chain = pb::Chain::decode(record.definition.as_slice()).map_err(|error| {
        ApiError::Internal(format!(
            "stored chain {} version {} does not decode: {error}",
            record.id, record.version
        ))
    })?;
    chain.version = record.version;
    chain.etag = record.version.to_string();
    chain.create_time = Some(timestamp(record.created_at));
    chain.update_time = Some(timestamp(record.updated_at));
    Ok(chain)
}

/// Rejects definitions over [`MAX_CHAIN_BYTES`] before any deeper check.
fn check_size(chain: &pb::Chain) -> ApiResult<()> {
    let size = chain.encoded_len();
    if size > MAX_CHAIN_BYTES {
        return Err(ApiError::invalid(
            "chain",
            format!("is {size} bytes encoded; at most {MAX_CHAIN_BYTES} are accepted"),
        ));
    }
    Ok(())
}

/// Validates a definition (every problem at once, paths under `chain.`) and
/// returns the bytes to store: the message without its output-only fields.
fn definition_bytes(chain: Option<&pb::Chain>) -> ApiResult<(String, Vec<u8>)> {
    let Some(chain) = chain else {
        return Err(ApiError::invalid("chain", "is required"));
    };
    let mut definition = chain.clone();
    definition.version = 0;
    definition.etag.clear();
    definition.create_time = None;
    definition.update_time = None;
    check_size(&definition)?;
    let bytes = definition.encode_to_vec();
    let mut violations = Violations::new();
    for violation in chain::validate(&definition) {
        violations.add_with_reason(
            format!("chain.{}", violation.field),
            violation.description,
            violation.reason,
        );
    }
    violations.finish()?;
    Ok((definition.id, bytes))
}

impl ChainApi {
    async fn create(&self, request: pb::CreateChainRequest) -> ApiResult<pb::Chain> {
        let mut violations = Violations::new();
        violations.check_request_id("request_id", &request.request_id);
        violations.finish()?;
        let (id, bytes) = definition_bytes(request.chain.as_ref())?;
        let idempotency = idempotency_key("CreateChain", &request.request_id, &request, |r| {
            r.request_id.clear()
        });
        let created = self
            .context
            .store()
            .create_chain(&id, bytes, idempotency)
            .await?;
        if !created.replayed {
            tracing::info!(chain_id = %id, version = created.record.version, "chain created");
        }
        chain_message(created.record)
    }

    async fn update(&self, request: pb::UpdateChainRequest) -> ApiResult<pb::Chain> {
        let mut violations = Violations::new();
        violations.check_request_id("request_id", &request.request_id);
        violations.finish()?;
        let (id, bytes) = definition_bytes(request.chain.as_ref())?;
        let expected = expected_revision(&request.etag, "chain", &id, None)?;
        let idempotency = idempotency_key("UpdateChain", &request.request_id, &request, |r| {
            r.request_id.clear()
        });
        let updated = self
            .context
            .store()
            .update_chain(&id, bytes, expected, idempotency)
            .await?;
        if !updated.replayed {
            tracing::info!(chain_id = %id, version = updated.record.version, "chain updated");
        }
        chain_message(updated.record)
    }
}

#[tonic::async_trait]
impl ChainService for ChainApi {
    async fn create_chain(
        &self,
        request: Request<pb::CreateChainRequest>,
    ) -> Result<Response<pb::Chain>, Status> {
        respond(self.create(request.into_inner()).await)
    }

    async fn get_chain(
        &self,
        request: Request<pb::GetChainRequest>,
    ) -> Result<Response<pb::Chain>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("id", &request.id)?;
                if request.version < 0 {
                    return Err(ApiError::invalid(
                        "version",
                        "must be positive, or 0 for the latest",
                    ));
                }
                let version = (request.version > 0).then_some(request.version);
                let record = self
                    .context
                    .store()
                    .get_chain(&request.id, version, false)
                    .await?;
                chain_message(record)
            }
            .await,
        )
    }

    async fn list_chains(
        &self,
        request: Request<pb::ListChainsRequest>,
    ) -> Result<Response<pb::ListChainsResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                let scope = "ListChains";
                let (chains, next_page_token) = list_page(
                    request.page_size,
                    &request.page_token,
                    scope,
                    |query| self.context.store().list_chains(query),
                    chain_message,
                )
                .await?;
                Ok(pb::ListChainsResponse {
                    chains,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn list_chain_versions(
        &self,
        request: Request<pb::ListChainVersionsRequest>,
    ) -> Result<Response<pb::ListChainVersionsResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("id", &request.id)?;
                let scope = format!("ListChainVersions/{}", request.id);
                let (chains, next_page_token) = list_page(
                    request.page_size,
                    &request.page_token,
                    &scope,
                    |query| self.context.store().list_chain_versions(&request.id, query),
                    chain_message,
                )
                .await?;
                Ok(pb::ListChainVersionsResponse {
                    chains,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn update_chain(
        &self,
        request: Request<pb::UpdateChainRequest>,
    ) -> Result<Response<pb::Chain>, Status> {
        respond(self.update(request.into_inner()).await)
    }

    async fn delete_chain(
        &self,
        request: Request<pb::DeleteChainRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        respond(
            async {
                require("id", &request.id)?;
                let expected = expected_revision(&request.etag, "chain", &request.id, None)?;
                self.context
                    .store()
                    .delete_chain(&request.id, expected)
                    .await?;
                tracing::info!(chain_id = %request.id, "chain deleted");
                Ok(())
            }
            .await,
        )
    }

    async fn validate_chain(
        &self,
        request: Request<pb::ValidateChainRequest>,
    ) -> Result<Response<pb::ValidateChainResponse>, Status> {
        let request = request.into_inner();
        respond(
            async {
                let Some(chain) = request.chain.as_ref() else {
                    return Err(ApiError::invalid("chain", "is required"));
                };
                check_size(chain)?;
                let violations: Vec<pb::FieldViolation> = chain::validate(chain)
                    .into_iter()
                    .map(|v| pb::FieldViolation {
                        field: format!("chain.{}", v.field),
                        description: v.description,
                        reason: v.reason.to_string(),
                    })
                    .collect();
                Ok(pb::ValidateChainResponse {
                    valid: violations.is_empty(),
                    violations,
                })
            }
            .await,
        )
    }
}
