//! BackendService: backends, pools and their associations, declared models,
//! and one-shot model calls through the executor.

use super::audit::{action, audited};
use super::convert::backend::{
    BACKEND_MASK_FIELDS, backend_message, embed_answer, embed_call, model_message, new_backend,
    new_model, new_pool, pool_message, prompt_answer, prompt_call, resolve_error, updated_backend,
};
use super::page::{child_scope, infallible, list_page};
use super::request::{Patch, deletion, require, require_pair};
use super::{ApiContext, ApiError, ApiResult};
use crate::fleet::PullReport;
use crate::proto::taskloom::v1::{self as pb, backend_service_server::BackendService};
use crate::store::{AuditRecord, DynStore};
use tonic::codegen::BoxStream;

pub struct BackendApi {
    context: ApiContext,
}

impl BackendApi {
    pub fn new(context: ApiContext) -> Self {
        BackendApi { context }
    }

    fn store(&self) -> &DynStore {
        self.context.store()
    }

    /// The audit record of a change to a pool's members: the resource is
    /// the pool, named with the member as `<pool_id>/<member>`.
    fn membership(&self, name: &str, pool_id: &str, member: &str) -> AuditRecord {
        let link = format!("{pool_id}/{member}");
        action(&self.context, name, "pool", &link, "")
    }
}

service! {
    impl BackendService for BackendApi {
        fn create_backend(pb::CreateBackendRequest) -> pb::Backend = InfraWrite;
        fn get_backend(pb::GetBackendRequest) -> pb::Backend = InfraRead;
        fn list_backends(pb::ListBackendsRequest) -> pb::ListBackendsResponse = InfraRead;
        fn update_backend(pb::UpdateBackendRequest) -> pb::Backend = InfraWrite;
        fn delete_backend(pb::DeleteBackendRequest) -> () = InfraWrite;
        fn sync_backend(pb::SyncBackendRequest) -> pb::Backend = InfraWrite;
        fn pull_model(pb::PullModelRequest) -> BoxStream<pb::PullModelProgress> = InfraWrite;
        fn create_pool(pb::CreatePoolRequest) -> pb::Pool = InfraWrite;
        fn get_pool(pb::GetPoolRequest) -> pb::Pool = InfraRead;
        fn list_pools(pb::ListPoolsRequest) -> pb::ListPoolsResponse = InfraRead;
        fn delete_pool(pb::DeletePoolRequest) -> () = InfraWrite;
        fn assign_backend_to_pool(pb::AssignBackendToPoolRequest) -> () = InfraWrite;
        fn remove_backend_from_pool(pb::RemoveBackendFromPoolRequest) -> () = InfraWrite;
        fn list_pool_backends(pb::ListPoolBackendsRequest) -> pb::ListBackendsResponse = InfraRead;
        fn list_backend_pools(pb::ListBackendPoolsRequest) -> pb::ListPoolsResponse = InfraRead;
        fn assign_model_to_pool(pb::AssignModelToPoolRequest) -> () = InfraWrite;
        fn remove_model_from_pool(pb::RemoveModelFromPoolRequest) -> () = InfraWrite;
        fn list_pool_models(pb::ListPoolModelsRequest) -> pb::ListModelsResponse = InfraRead;
        fn list_model_pools(pb::ListModelPoolsRequest) -> pb::ListPoolsResponse = InfraRead;
        fn create_model(pb::CreateModelRequest) -> pb::Model = InfraWrite;
        fn get_model(pb::GetModelRequest) -> pb::Model = InfraRead;
        fn list_models(pb::ListModelsRequest) -> pb::ListModelsResponse = InfraRead;
        fn delete_model(pb::DeleteModelRequest) -> () = InfraWrite;
        fn execute_prompt(pb::ExecutePromptRequest) -> pb::ExecutePromptResponse = ModelsCall;
        fn embed(pb::EmbedRequest) -> pb::EmbedResponse = ModelsCall;
    }
}

impl BackendApi {
    async fn create_backend(&self, request: pb::CreateBackendRequest) -> ApiResult<pb::Backend> {
        let id = &request.backend_id;
        let record = action(
            &self.context,
            "CreateBackend",
            "backend",
            id,
            &request.request_id,
        );
        audited(&self.context, record, async |audit| {
            let (record, idempotency) = new_backend(&request)?;
            // The id the server generates when the request names none.
            audit.resource_id = record.id.clone();
            let created = self
                .store()
                .create_backend(record, idempotency, audit)
                .await?;
            if !created.replayed {
                tracing::info!(backend_id = %created.record.id, name = %created.record.name, "backend created");
            }
            Ok(backend_message(created.record))
        })
        .await
    }

    async fn get_backend(&self, request: pb::GetBackendRequest) -> ApiResult<pb::Backend> {
        require("id", &request.id)?;
        Ok(backend_message(
            self.store().get_backend(&request.id).await?,
        ))
    }

    async fn list_backends(
        &self,
        request: pb::ListBackendsRequest,
    ) -> ApiResult<pb::ListBackendsResponse> {
        let fetch = |query| self.store().list_backends(query);
        list_page(&request, "ListBackends", fetch, infallible(backend_message)).await
    }

    async fn update_backend(&self, request: pb::UpdateBackendRequest) -> ApiResult<pb::Backend> {
        let id = request
            .backend
            .as_ref()
            .map_or("", |backend| backend.id.as_str());
        let record = action(&self.context, "UpdateBackend", "backend", id, "");
        audited(&self.context, record, async |audit| {
            let key = ("id", |backend: &pb::Backend| backend.id.clone());
            let mask = (&request.update_mask[..], BACKEND_MASK_FIELDS);
            let patch = Patch::checked(request.backend.clone(), "backend", key, mask)?;
            let read = || self.store().get_backend(patch.key());
            let write = |record| self.store().update_backend(record, audit);
            let updated = patch
                .write(&request.etag, read, updated_backend, write)
                .await?;
            tracing::info!(backend_id = %updated.id, "backend updated");
            Ok(backend_message(updated))
        })
        .await
    }

    async fn delete_backend(&self, request: pb::DeleteBackendRequest) -> ApiResult<()> {
        let record = action(&self.context, "DeleteBackend", "backend", &request.id, "");
        audited(&self.context, record, async |audit| {
            let expected = deletion("backend", "id", &request.id, &request.etag)?;
            self.store()
                .delete_backend(&request.id, expected, audit)
                .await?;
            tracing::info!(backend_id = %request.id, "backend deleted");
            Ok(())
        })
        .await
    }

    async fn sync_backend(&self, request: pb::SyncBackendRequest) -> ApiResult<pb::Backend> {
        require("id", &request.id)?;
        let synced = self.context.fleet().sync_backend(&request.id).await?;
        Ok(backend_message(synced))
    }

    async fn pull_model(
        &self,
        request: pb::PullModelRequest,
    ) -> ApiResult<BoxStream<pb::PullModelProgress>> {
        require_pair("backend_id", &request.backend_id, "model", &request.model)?;
        let reports = self
            .context
            .fleet()
            .pull_model(&request.backend_id, &request.model)
            .await?;
        Ok(Box::pin(futures::StreamExt::map(reports, |report| {
            report
                .map(progress_message)
                .map_err(|error| ApiError::from(error).into())
        })))
    }

    async fn create_pool(&self, request: pb::CreatePoolRequest) -> ApiResult<pb::Pool> {
        let id = request.pool.as_ref().map_or("", |pool| pool.id.as_str());
        let record = action(&self.context, "CreatePool", "pool", id, &request.request_id);
        audited(&self.context, record, async |audit| {
            let (record, idempotency) = new_pool(&request)?;
            let created = self.store().create_pool(record, idempotency, audit).await?;
            Ok(pool_message(created.record))
        })
        .await
    }

    async fn get_pool(&self, request: pb::GetPoolRequest) -> ApiResult<pb::Pool> {
        require("id", &request.id)?;
        Ok(pool_message(self.store().get_pool(&request.id).await?))
    }

    async fn list_pools(&self, request: pb::ListPoolsRequest) -> ApiResult<pb::ListPoolsResponse> {
        let fetch = |query| self.store().list_pools(query);
        list_page(&request, "ListPools", fetch, infallible(pool_message)).await
    }

    async fn delete_pool(&self, request: pb::DeletePoolRequest) -> ApiResult<()> {
        let record = action(&self.context, "DeletePool", "pool", &request.id, "");
        audited(&self.context, record, async |audit| {
            require("id", &request.id)?;
            Ok(self.store().delete_pool(&request.id, audit).await?)
        })
        .await
    }

    async fn assign_backend_to_pool(
        &self,
        request: pb::AssignBackendToPoolRequest,
    ) -> ApiResult<()> {
        let (pool, backend) = (&request.pool_id, &request.backend_id);
        let record = self.membership("AssignBackendToPool", pool, backend);
        audited(&self.context, record, async |audit| {
            require_pair("pool_id", pool, "backend_id", backend)?;
            Ok(self
                .store()
                .assign_backend_to_pool(pool, backend, audit)
                .await?)
        })
        .await
    }

    async fn remove_backend_from_pool(
        &self,
        request: pb::RemoveBackendFromPoolRequest,
    ) -> ApiResult<()> {
        let (pool, backend) = (&request.pool_id, &request.backend_id);
        let record = self.membership("RemoveBackendFromPool", pool, backend);
        audited(&self.context, record, async |audit| {
            require_pair("pool_id", pool, "backend_id", backend)?;
            Ok(self
                .store()
                .remove_backend_from_pool(pool, backend, audit)
                .await?)
        })
        .await
    }

    async fn list_pool_backends(
        &self,
        request: pb::ListPoolBackendsRequest,
    ) -> ApiResult<pb::ListBackendsResponse> {
        let scope = child_scope("ListPoolBackends", "pool_id", &request.pool_id)?;
        let fetch = |query| self.store().list_pool_backends(&request.pool_id, query);
        list_page(&request, &scope, fetch, infallible(backend_message)).await
    }

    async fn list_backend_pools(
        &self,
        request: pb::ListBackendPoolsRequest,
    ) -> ApiResult<pb::ListPoolsResponse> {
        let scope = child_scope("ListBackendPools", "backend_id", &request.backend_id)?;
        let fetch = |query| self.store().list_backend_pools(&request.backend_id, query);
        list_page(&request, &scope, fetch, infallible(pool_message)).await
    }

    async fn assign_model_to_pool(&self, request: pb::AssignModelToPoolRequest) -> ApiResult<()> {
        let (pool, model) = (&request.pool_id, &request.model);
        let record = self.membership("AssignModelToPool", pool, model);
        audited(&self.context, record, async |audit| {
            require_pair("pool_id", pool, "model", model)?;
            Ok(self
                .store()
                .assign_model_to_pool(pool, model, audit)
                .await?)
        })
        .await
    }

    async fn remove_model_from_pool(
        &self,
        request: pb::RemoveModelFromPoolRequest,
    ) -> ApiResult<()> {
        let (pool, model) = (&request.pool_id, &request.model);
        let record = self.membership("RemoveModelFromPool", pool, model);
        audited(&self.context, record, async |audit| {
            require_pair("pool_id", pool, "model", model)?;
            Ok(self
                .store()
                .remove_model_from_pool(pool, model, audit)
                .await?)
        })
        .await
    }

    async fn list_pool_models(
        &self,
        request: pb::ListPoolModelsRequest,
    ) -> ApiResult<pb::ListModelsResponse> {
        let scope = child_scope("ListPoolModels", "pool_id", &request.pool_id)?;
        let fetch = |query| self.store().list_pool_models(&request.pool_id, query);
        list_page(&request, &scope, fetch, infallible(model_message)).await
    }

    async fn list_model_pools(
        &self,
        request: pb::ListModelPoolsRequest,
    ) -> ApiResult<pb::ListPoolsResponse> {
        let scope = child_scope("ListModelPools", "model", &request.model)?;
        let fetch = |query| self.store().list_model_pools(&request.model, query);
        list_page(&request, &scope, fetch, infallible(pool_message)).await
    }

    async fn create_model(&self, request: pb::CreateModelRequest) -> ApiResult<pb::Model> {
        let name = request
            .model
            .as_ref()
            .map_or("", |model| model.name.as_str());
        let record = action(
            &self.context,
            "CreateModel",
            "model",
            name,
            &request.request_id,
        );
        audited(&self.context, record, async |audit| {
            let (record, idempotency) = new_model(&request)?;
            let created = self
                .store()
                .create_model(record, idempotency, audit)
                .await?;
            Ok(model_message(created.record))
        })
        .await
    }

    async fn get_model(&self, request: pb::GetModelRequest) -> ApiResult<pb::Model> {
        require("name", &request.name)?;
        Ok(model_message(self.store().get_model(&request.name).await?))
    }

    async fn list_models(
        &self,
        request: pb::ListModelsRequest,
    ) -> ApiResult<pb::ListModelsResponse> {
        let fetch = |query| self.store().list_models(query);
        list_page(&request, "ListModels", fetch, infallible(model_message)).await
    }

    async fn delete_model(&self, request: pb::DeleteModelRequest) -> ApiResult<()> {
        let record = action(&self.context, "DeleteModel", "model", &request.name, "");
        audited(&self.context, record, async |audit| {
            require("name", &request.name)?;
            Ok(self.store().delete_model(&request.name, audit).await?)
        })
        .await
    }

    async fn execute_prompt(
        &self,
        request: pb::ExecutePromptRequest,
    ) -> ApiResult<pb::ExecutePromptResponse> {
        let (model, system_instruction, prompt) = prompt_call(request)?;
        let served = self
            .context
            .executor()
            .prompt(&model, system_instruction, prompt)
            .await
            .map_err(resolve_error)?;
        Ok(prompt_answer(served))
    }

    async fn embed(&self, request: pb::EmbedRequest) -> ApiResult<pb::EmbedResponse> {
        let (model, text) = embed_call(request)?;
        let served = self
            .context
            .executor()
            .embed(&model, &text)
            .await
            .map_err(resolve_error)?;
        Ok(embed_answer(served))
    }
}

fn progress_message(report: PullReport) -> pb::PullModelProgress {
    pb::PullModelProgress {
        status: report.progress.status,
        completed_bytes: report.progress.completed_bytes,
        total_bytes: report.progress.total_bytes,
        done: report.done,
    }
}
