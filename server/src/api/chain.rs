//! ChainService: chain definitions with immutable versions.

use super::audit::{action, audited};
use super::convert::chain::{chain_message, definition_bytes, requested_version, validation};
use super::page::{child_scope, list_page};
use super::request::{Violations, deletion, expected_revision, idempotency_key, require};
use super::{ApiContext, ApiResult, call_namespace};
use crate::proto::taskloom::v1::{self as pb, chain_service_server::ChainService};
use crate::store::{AuditRecord, DynStore};

pub struct ChainApi {
    context: ApiContext,
}

impl ChainApi {
    pub fn new(context: ApiContext) -> Self {
        ChainApi { context }
    }

    fn store(&self) -> &DynStore {
        self.context.store()
    }

    /// The audit record of a call that writes `chain`.
    fn audit(&self, name: &str, chain: Option<&pb::Chain>, request_id: &str) -> AuditRecord {
        let id = chain.map_or("", |chain| chain.id.as_str());
        action(&self.context, name, "chain", id, request_id)
    }
}

service! {
    impl ChainService for ChainApi {
        fn create_chain(pb::CreateChainRequest) -> pb::Chain = ChainsWrite;
        fn get_chain(pb::GetChainRequest) -> pb::Chain = ChainsRead;
        fn list_chains(pb::ListChainsRequest) -> pb::ListChainsResponse = ChainsRead;
        fn list_chain_versions(pb::ListChainVersionsRequest) -> pb::ListChainVersionsResponse = ChainsRead;
        fn update_chain(pb::UpdateChainRequest) -> pb::Chain = ChainsWrite;
        fn delete_chain(pb::DeleteChainRequest) -> () = ChainsWrite;
        fn validate_chain(pb::ValidateChainRequest) -> pb::ValidateChainResponse = ChainsRead;
    }
}

impl ChainApi {
    async fn create_chain(&self, request: pb::CreateChainRequest) -> ApiResult<pb::Chain> {
        let record = self.audit("CreateChain", request.chain.as_ref(), &request.request_id);
        audited(&self.context, record, async |audit| {
            let mut violations = Violations::new();
            violations.check_request_id("request_id", &request.request_id);
            violations.finish()?;
            let (id, bytes) = definition_bytes(request.chain.as_ref())?;
            let idempotency = idempotency_key(&request);
            let created = self
                .store()
                .create_chain(&call_namespace(), &id, bytes, idempotency, audit)
                .await?;
            if !created.replayed {
                tracing::info!(chain_id = %id, version = created.record.version, "chain created");
            }
            chain_message(created.record)
        })
        .await
    }

    async fn get_chain(&self, request: pb::GetChainRequest) -> ApiResult<pb::Chain> {
        require("id", &request.id)?;
        let version = requested_version(request.version)?;
        chain_message(
            self.store()
                .get_chain(&call_namespace(), &request.id, version, false)
                .await?,
        )
    }

    async fn list_chains(
        &self,
        request: pb::ListChainsRequest,
    ) -> ApiResult<pb::ListChainsResponse> {
        let namespace = call_namespace();
        let fetch = |query| self.store().list_chains(&namespace, query);
        list_page(&request, "ListChains", fetch, chain_message).await
    }

    async fn list_chain_versions(
        &self,
        request: pb::ListChainVersionsRequest,
    ) -> ApiResult<pb::ListChainVersionsResponse> {
        let scope = child_scope("ListChainVersions", "id", &request.id)?;
        let namespace = call_namespace();
        let fetch = |query| {
            self.store()
                .list_chain_versions(&namespace, &request.id, query)
        };
        list_page(&request, &scope, fetch, chain_message).await
    }

    async fn update_chain(&self, request: pb::UpdateChainRequest) -> ApiResult<pb::Chain> {
        let record = self.audit("UpdateChain", request.chain.as_ref(), &request.request_id);
        audited(&self.context, record, async |audit| {
            let mut violations = Violations::new();
            violations.check_request_id("request_id", &request.request_id);
            violations.finish()?;
            let (id, bytes) = definition_bytes(request.chain.as_ref())?;
            let expected = expected_revision(&request.etag, "chain", &id, None)?;
            let idempotency = idempotency_key(&request);
            let updated = self
                .store()
                .update_chain(&call_namespace(), &id, bytes, expected, idempotency, audit)
                .await?;
            if !updated.replayed {
                tracing::info!(chain_id = %id, version = updated.record.version, "chain updated");
            }
            chain_message(updated.record)
        })
        .await
    }

    async fn delete_chain(&self, request: pb::DeleteChainRequest) -> ApiResult<()> {
        let record = action(&self.context, "DeleteChain", "chain", &request.id, "");
        audited(&self.context, record, async |audit| {
            let expected = deletion("chain", "id", &request.id, &request.etag)?;
            self.store()
                .delete_chain(&call_namespace(), &request.id, expected, audit)
                .await?;
            tracing::info!(chain_id = %request.id, "chain deleted");
            Ok(())
        })
        .await
    }

    async fn validate_chain(
        &self,
        request: pb::ValidateChainRequest,
    ) -> ApiResult<pb::ValidateChainResponse> {
        validation(request.chain.as_ref())
    }
}
