//! How the resolver picks a backend and model, against a real server
//! process and fake providers on loopback: each pool's selection policy,
//! refusals that name the filter that held (and are not retried when
//! retrying cannot help), and the validation of the fleet's settings.

mod common;

use common::chains::task;

use common::{TestServer, assert_invalid};
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::fake_llm::FakeLlm;
use tonic::Code;

api_tests!(
    each_pool_orders_backends_by_its_own_policy,
    refusals_name_the_filter_and_are_not_retried,
    fleet_settings_are_validated,
);

async fn create_pool(server: &TestServer, id: &str, policy: pb::SelectionPolicy) {
    server
        .backends()
        .create_pool(pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                id: id.into(),
                policy: policy as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Registers an OpenAI-compatible backend at `url` in `pool`.
async fn add_backend(
    server: &TestServer,
    pool: &str,
    name: &str,
    url: &str,
    priority: i32,
) -> String {
    let mut backends = server.backends();
    let backend = backends
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: name.into(),
                r#type: pb::BackendType::OpenaiCompatible as i32,
                base_url: url.into(),
                priority,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    backends
        .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
            pool_id: pool.into(),
            backend_id: backend.id.clone(),
        })
        .await
        .unwrap();
    backend.id
}

async fn prompt_in(
    server: &TestServer,
    pool: &str,
    models: &[&str],
    prompt: &str,
) -> Result<pb::ExecutePromptResponse, tonic::Status> {
    server
        .backends()
        .execute_prompt(pb::ExecutePromptRequest {
            prompt: prompt.into(),
            models: models.iter().map(|m| m.to_string()).collect(),
            pool: pool.into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn each_pool_orders_backends_by_its_own_policy(server: TestServer) {
    let (low, high) = (FakeLlm::start().await, FakeLlm::start().await);
    create_pool(&server, "by-priority", pb::SelectionPolicy::Priority).await;
    create_pool(&server, "rotating", pb::SelectionPolicy::Unspecified).await;
    let low_id = add_backend(&server, "by-priority", "low", &low.url(), 1).await;
    let high_id = add_backend(&server, "by-priority", "high", &high.url(), 5).await;
    for id in [&low_id, &high_id] {
        server
            .backends()
            .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
                pool_id: "rotating".into(),
                backend_id: id.clone(),
            })
            .await
            .unwrap();
    }
    let pool = server
        .backends()
        .get_pool(pb::GetPoolRequest {
            id: "by-priority".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pool.policy, pb::SelectionPolicy::Priority as i32);

    // The priority pool always asks the backend with the highest priority.
    for _ in 0..4 {
        let answer = prompt_in(&server, "by-priority", &["m"], "hi")
            .await
            .unwrap();
        assert_eq!(answer.backend_id, high_id);
    }
    // A pool that sets no policy takes the server's (round robin).
    let mut served = Vec::new();
    for _ in 0..4 {
        served.push(
            prompt_in(&server, "rotating", &["m"], "hi")
                .await
                .unwrap()
                .backend_id,
        );
    }
    assert!(
        served.contains(&low_id) && served.contains(&high_id),
        "{served:?}"
    );
    assert_eq!(
        high.requests().len(),
        4 + served.iter().filter(|id| **id == high_id).count()
    );
}

async fn refusals_name_the_filter_and_are_not_retried(server: TestServer) {
    let fake = FakeLlm::start().await;
    create_pool(&server, "p", pb::SelectionPolicy::Unspecified).await;
    add_backend(&server, "p", "fake", &fake.url(), 0).await;
    let mut backends = server.backends();
    for (name, capability, context_length) in [
        ("embedder", pb::ModelCapability::Embed, 8192),
        ("tiny", pb::ModelCapability::Chat, 8),
    ] {
        backends
            .create_model(pb::CreateModelRequest {
                model: Some(pb::Model {
                    name: name.into(),
                    context_length,
                    capabilities: vec![capability as i32],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let long_prompt = "word ".repeat(20);
    let error = prompt_in(&server, "p", &["embedder", "tiny"], &long_prompt)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    let message = error.message();
    assert!(
        message.contains("\"embedder\" is declared without the chat capability"),
        "{message}"
    );
    assert!(
        message.contains("\"tiny\" has a context of 8 tokens, the prompt needs about 25"),
        "{message}"
    );
    assert!(fake.requests().is_empty(), "nothing was sent");

    let error = prompt_in(&server, "missing-pool", &["m"], "hi")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(
        error
            .message()
            .contains("pool \"missing-pool\" does not exist"),
        "{error:?}"
    );

    // In a run, a refusal that retrying cannot change fails the task at
    // once, whatever its retry policy.
    let mut asks_embedder = task("ask", "raw_string", vec![]);
    asks_embedder.execute_config = Some(pb::ExecuteConfig {
        models: vec!["embedder".into()],
        pool: "p".into(),
        ..Default::default()
    });
    asks_embedder.retry = Some(pb::RetryPolicy {
        max_attempts: 3,
        ..Default::default()
    });
    let response = server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(pb::Chain {
                id: "refused".into(),
                tasks: vec![asks_embedder],
                ..Default::default()
            }),
            run_input: Some(pb::execute_chain_request::RunInput::TypedInput(
                common::chains::text_value("hi"),
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let run = response.run.unwrap();
    assert_eq!(run.status, pb::RunStatus::Failed as i32);
    let attempts = server
        .runs()
        .list_run_attempts(pb::ListRunAttemptsRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attempts;
    assert_eq!(attempts.len(), 1, "not retried: {attempts:?}");
    assert!(
        attempts[0].error.contains("without the chat capability"),
        "{:?}",
        attempts[0].error
    );
}

async fn fleet_settings_are_validated(server: TestServer) {
    let mut backends = server.backends();
    let error = backends
        .create_pool(pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                id: "p".into(),
                policy: 99,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["pool.policy"]);

    let error = backends
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: "b".into(),
                r#type: pb::BackendType::Ollama as i32,
                base_url: "http://127.0.0.1:1".into(),
                requests_per_minute: -1,
                tokens_per_minute: -5,
                model_limits: [
                    (
                        "m".to_string(),
                        pb::Limits {
                            max_concurrency: -1,
                            ..Default::default()
                        },
                    ),
                    ("bad name!".to_string(), pb::Limits::default()),
                ]
                .into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(
        error,
        &[
            "backend.requests_per_minute",
            "backend.tokens_per_minute",
            "backend.model_limits[\"bad name!\"]",
            "backend.model_limits[\"m\"].max_concurrency",
        ],
    );

    // Presets need no base URL; the hosted ones need a key.
    let error = backends
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: "router".into(),
                r#type: pb::BackendType::Openrouter as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["backend.api_key"]);
    let limits = pb::Limits {
        max_concurrency: 2,
        requests_per_minute: 30,
        tokens_per_minute: 1000,
    };
    let created = backends
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: "studio".into(),
                r#type: pb::BackendType::LmStudio as i32,
                requests_per_minute: 60,
                model_limits: [("qwen".to_string(), limits)].into(),
                omit_stream_options: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.r#type, pb::BackendType::LmStudio as i32);
    assert_eq!(created.requests_per_minute, 60);
    assert_eq!(created.model_limits["qwen"], limits);
    assert!(created.omit_stream_options);
    let updated = backends
        .update_backend(pb::UpdateBackendRequest {
            backend: Some(pb::Backend {
                id: created.id.clone(),
                tokens_per_minute: 5000,
                ..Default::default()
            }),
            update_mask: vec!["tokens_per_minute".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.tokens_per_minute, 5000);
    assert_eq!(updated.requests_per_minute, 60, "outside the mask: kept");
    assert_eq!(updated.model_limits["qwen"], limits);
}
