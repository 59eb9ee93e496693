//! HookService: registered HTTP hooks that `hook` tasks call.

use super::audit::{action, audited};
use super::convert::hook::{HOOK_MASK_FIELDS, hook_message, new_hook, updated_hook};
use super::page::{infallible, list_page};
use super::request::{Patch, deletion, require};
use super::{ApiContext, ApiResult, call_namespace};
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
        fn create_hook(pb::CreateHookRequest) -> pb::Hook = HooksWrite;
        fn get_hook(pb::GetHookRequest) -> pb::Hook = HooksRead;
        fn list_hooks(pb::ListHooksRequest) -> pb::ListHooksResponse = HooksRead;
        fn update_hook(pb::UpdateHookRequest) -> pb::Hook = HooksWrite;
        fn delete_hook(pb::DeleteHookRequest) -> () = HooksWrite;
    }
}

impl HookApi {
    async fn create_hook(&self, request: pb::CreateHookRequest) -> ApiResult<pb::Hook> {
        let name = request.hook.as_ref().map_or("", |hook| hook.name.as_str());
        let record = action(
            &self.context,
            "CreateHook",
            "hook",
            name,
            &request.request_id,
        );
        audited(&self.context, record, async |audit| {
            let (record, idempotency) = new_hook(&request)?;
            let created = self.store().create_hook(record, idempotency, audit).await?;
            if !created.replayed {
                tracing::info!(hook = %created.record.name, "hook created");
            }
            Ok(hook_message(created.record))
        })
        .await
    }

    async fn get_hook(&self, request: pb::GetHookRequest) -> ApiResult<pb::Hook> {
        require("name", &request.name)?;
        Ok(hook_message(
            self.store()
                .get_hook(&call_namespace(), &request.name)
                .await?,
        ))
    }

    async fn list_hooks(&self, request: pb::ListHooksRequest) -> ApiResult<pb::ListHooksResponse> {
        let namespace = call_namespace();
        let fetch = |query| self.store().list_hooks(&namespace, query);
        list_page(&request, "ListHooks", fetch, infallible(hook_message)).await
    }

    async fn update_hook(&self, request: pb::UpdateHookRequest) -> ApiResult<pb::Hook> {
        let name = request.hook.as_ref().map_or("", |hook| hook.name.as_str());
        let record = action(&self.context, "UpdateHook", "hook", name, "");
        audited(&self.context, record, async |audit| {
            let key = ("name", |hook: &pb::Hook| hook.name.clone());
            let mask = (&request.update_mask[..], HOOK_MASK_FIELDS);
            let patch = Patch::checked(request.hook.clone(), "hook", key, mask)?;
            let namespace = call_namespace();
            let read = || self.store().get_hook(&namespace, patch.key());
            let write = |record| self.store().update_hook(record, audit);
            let updated = patch
                .write(&request.etag, read, updated_hook, write)
                .await?;
            tracing::info!(hook = %updated.name, "hook updated");
            Ok(hook_message(updated))
        })
        .await
    }

    async fn delete_hook(&self, request: pb::DeleteHookRequest) -> ApiResult<()> {
        let record = action(&self.context, "DeleteHook", "hook", &request.name, "");
        audited(&self.context, record, async |audit| {
            let expected = deletion("hook", "name", &request.name, &request.etag)?;
            Ok(self
                .store()
                .delete_hook(&call_namespace(), &request.name, expected, audit)
                .await?)
        })
        .await
    }
}
