//! Every control-plane RPC rejects missing keys with INVALID_ARGUMENT naming
//! the field, and unknown keys with NOT_FOUND — on both stores.

mod common;

use common::{TestServer, assert_invalid};
use taskloom_server::proto::taskloom::v1 as pb;
use tonic::Code;

api_tests!(missing_keys_are_invalid, unknown_keys_are_not_found);

async fn missing_keys_are_invalid(server: TestServer) {
    let mut backends = server.backends();
    let mut chains = server.chains();
    let mut hooks = server.hooks();
    let mut runs = server.runs();
    macro_rules! invalid {
        ($call:expr, $fields:expr) => {
            assert_invalid($call.await.unwrap_err(), $fields)
        };
    }
    invalid!(
        backends.get_backend(pb::GetBackendRequest::default()),
        &["id"]
    );
    invalid!(
        backends.delete_backend(pb::DeleteBackendRequest::default()),
        &["id"]
    );
    invalid!(
        backends.update_backend(pb::UpdateBackendRequest::default()),
        &["backend"]
    );
    invalid!(
        backends.update_backend(pb::UpdateBackendRequest {
            backend: Some(pb::Backend::default()),
            ..Default::default()
        }),
        &["backend.id"]
    );
    invalid!(
        backends.create_pool(pb::CreatePoolRequest::default()),
        &["pool"]
    );
    invalid!(backends.get_pool(pb::GetPoolRequest::default()), &["id"]);
    invalid!(
        backends.delete_pool(pb::DeletePoolRequest::default()),
        &["id"]
    );
    invalid!(
        backends.list_pool_backends(pb::ListPoolBackendsRequest::default()),
        &["pool_id"]
    );
    invalid!(
        backends.list_backend_pools(pb::ListBackendPoolsRequest::default()),
        &["backend_id"]
    );
    invalid!(
        backends.remove_backend_from_pool(pb::RemoveBackendFromPoolRequest::default()),
        &["backend_id", "pool_id"]
    );
    invalid!(
        backends.assign_model_to_pool(pb::AssignModelToPoolRequest::default()),
        &["model", "pool_id"]
    );
    invalid!(
        backends.remove_model_from_pool(pb::RemoveModelFromPoolRequest::default()),
        &["model", "pool_id"]
    );
    invalid!(
        backends.list_pool_models(pb::ListPoolModelsRequest::default()),
        &["pool_id"]
    );
    invalid!(
        backends.list_model_pools(pb::ListModelPoolsRequest::default()),
        &["model"]
    );
    invalid!(
        backends.create_model(pb::CreateModelRequest::default()),
        &["model"]
    );
    invalid!(
        backends.get_model(pb::GetModelRequest::default()),
        &["name"]
    );
    invalid!(
        backends.delete_model(pb::DeleteModelRequest::default()),
        &["name"]
    );
    invalid!(
        backends.list_models(pb::ListModelsRequest {
            page_size: -5,
            page_token: String::new()
        }),
        &["page_size"]
    );
    invalid!(
        chains.create_chain(pb::CreateChainRequest::default()),
        &["chain"]
    );
    invalid!(
        chains.update_chain(pb::UpdateChainRequest::default()),
        &["chain"]
    );
    invalid!(chains.get_chain(pb::GetChainRequest::default()), &["id"]);
    invalid!(
        chains.delete_chain(pb::DeleteChainRequest::default()),
        &["id"]
    );
    invalid!(
        chains.list_chain_versions(pb::ListChainVersionsRequest::default()),
        &["id"]
    );
    invalid!(hooks.get_hook(pb::GetHookRequest::default()), &["name"]);
    invalid!(
        hooks.delete_hook(pb::DeleteHookRequest::default()),
        &["name"]
    );
    invalid!(
        hooks.update_hook(pb::UpdateHookRequest::default()),
        &["hook"]
    );
    invalid!(
        hooks.list_hooks(pb::ListHooksRequest {
            page_size: 10,
            page_token: "garbage".into()
        }),
        &["page_token"]
    );
    invalid!(runs.get_run(pb::GetRunRequest::default()), &["id"]);
    invalid!(runs.cancel_run(pb::CancelRunRequest::default()), &["id"]);
    invalid!(runs.pause_run(pb::PauseRunRequest::default()), &["id"]);
    invalid!(runs.resume_run(pb::ResumeRunRequest::default()), &["id"]);
    invalid!(runs.retry_run(pb::RetryRunRequest::default()), &["id"]);
    invalid!(runs.replay_run(pb::ReplayRunRequest::default()), &["id"]);
    invalid!(
        runs.list_run_events(pb::ListRunEventsRequest::default()),
        &["run_id"]
    );
    invalid!(
        runs.list_run_attempts(pb::ListRunAttemptsRequest::default()),
        &["run_id"]
    );
    invalid!(
        runs.submit_input(pb::SubmitInputRequest::default()),
        &["input", "run_id", "task_id"]
    );
}

async fn unknown_keys_are_not_found(server: TestServer) {
    let mut backends = server.backends();
    let mut chains = server.chains();
    let mut hooks = server.hooks();
    let mut runs = server.runs();
    macro_rules! not_found {
        ($call:expr) => {{
            let status = $call.await.unwrap_err();
            assert_eq!(status.code(), Code::NotFound, "{status:?}");
        }};
    }
    not_found!(backends.get_backend(pb::GetBackendRequest { id: "x".into() }));
    not_found!(backends.delete_backend(pb::DeleteBackendRequest {
        id: "x".into(),
        etag: String::new()
    }));
    not_found!(backends.get_pool(pb::GetPoolRequest { id: "x".into() }));
    not_found!(backends.delete_pool(pb::DeletePoolRequest { id: "x".into() }));
    not_found!(backends.list_pool_backends(pb::ListPoolBackendsRequest {
        pool_id: "x".into(),
        ..Default::default()
    }));
    not_found!(backends.list_backend_pools(pb::ListBackendPoolsRequest {
        backend_id: "x".into(),
        ..Default::default()
    }));
    not_found!(backends.list_model_pools(pb::ListModelPoolsRequest {
        model: "x".into(),
        ..Default::default()
    }));
    not_found!(backends.get_model(pb::GetModelRequest { name: "x".into() }));
    not_found!(backends.delete_model(pb::DeleteModelRequest { name: "x".into() }));
    not_found!(chains.get_chain(pb::GetChainRequest {
        id: "x".into(),
        version: 0
    }));
    not_found!(chains.delete_chain(pb::DeleteChainRequest {
        id: "x".into(),
        etag: String::new()
    }));
    not_found!(chains.list_chain_versions(pb::ListChainVersionsRequest {
        id: "x".into(),
        ..Default::default()
    }));
    not_found!(hooks.get_hook(pb::GetHookRequest { name: "x".into() }));
    not_found!(hooks.delete_hook(pb::DeleteHookRequest {
        name: "x".into(),
        etag: String::new()
    }));
    not_found!(runs.get_run(pb::GetRunRequest { id: "x".into() }));
    not_found!(runs.cancel_run(pb::CancelRunRequest {
        id: "x".into(),
        ..Default::default()
    }));
    not_found!(runs.list_run_events(pb::ListRunEventsRequest {
        run_id: "x".into(),
        ..Default::default()
    }));
    not_found!(runs.list_run_attempts(pb::ListRunAttemptsRequest {
        run_id: "x".into(),
        ..Default::default()
    }));
    not_found!(runs.replay_run(pb::ReplayRunRequest { id: "x".into() }));
}
