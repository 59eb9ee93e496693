//! HookService: registered HTTP hooks that `hook` tasks call.

use super::convert::hook::{HOOK_MASK_FIELDS, hook_message, new_hook, updated_hook};
use super::page::{infallible, list_page};
use super::request::{Patch, deletion, require};
use super::{ApiContext, ApiResult};
use crate::proto::taskloom::v1::{self as pb, hook_service_server::HookService};
use crate::store::DynStore;

pub struct HookApi {
    context: ApiContext,
}

impl HookApi {
    pub fn new(context: ApiContext) -> Self {
        HookApi { context }
    }

    fn store(&self) -> &DynStore {
        self.context.store()
    }
}

service! {
    impl HookService for HookApi {
        fn create_hook(pb::CreateHookRequest) -> pb::Hook;
        fn get_hook(pb::GetHookRequest) -> pb::Hook;
        fn list_hooks(pb::ListHooksRequest) -> pb::ListHooksResponse;
        fn update_hook(pb::UpdateHookRequest) -> pb::Hook;
        fn delete_hook(pb::DeleteHookRequest) -> ();
    }
}

impl HookApi {
    async fn create_hook(&self, request: pb::CreateHookRequest) -> ApiResult<pb::Hook> {
        let (record, idempotency) = new_hook(&request)?;
        let created = self.store().create_hook(record, idempotency).await?;
        if !created.replayed {
            tracing::info!(hook = %created.record.name, "hook created");
        }
        Ok(hook_message(created.record))
    }

    async fn get_hook(&self, request: pb::GetHookRequest) -> ApiResult<pb::Hook> {
        require("name", &request.name)?;
        Ok(hook_message(self.store().get_hook(&request.name).await?))
    }

    async fn list_hooks(&self, request: pb::ListHooksRequest) -> ApiResult<pb::ListHooksResponse> {
        let fetch = |query| self.store().list_hooks(query);
        list_page(&request, "ListHooks", fetch, infallible(hook_message)).await
    }

    async fn update_hook(&self, request: pb::UpdateHookRequest) -> ApiResult<pb::Hook> {
        let key = ("name", |hook: &pb::Hook| hook.name.clone());
        let mask = (&request.update_mask[..], HOOK_MASK_FIELDS);
        let patch = Patch::checked(request.hook, "hook", key, mask)?;
        let read = || self.store().get_hook(patch.key());
        let write = |record| self.store().update_hook(record);
        let updated = patch
            .write(&request.etag, read, updated_hook, write)
            .await?;
        tracing::info!(hook = %updated.name, "hook updated");
        Ok(hook_message(updated))
    }

    async fn delete_hook(&self, request: pb::DeleteHookRequest) -> ApiResult<()> {
        let expected = deletion("hook", "name", &request.name, &request.etag)?;
        Ok(self.store().delete_hook(&request.name, expected).await?)
    }
}
