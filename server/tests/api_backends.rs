//! BackendService against a real server process, on SQLite and Postgres:
//! backends, pools, associations, models; validation, idempotency, etags,
//! pagination, and that API keys never come back.

mod common;

use std::collections::BTreeMap;

use common::{TestServer, assert_invalid, error_reason};
use taskloom_server::proto::taskloom::v1 as pb;
use tonic::Code;

api_tests!(
    backend_lifecycle_never_returns_the_key,
    backend_validation_reports_every_field,
    backend_idempotency_and_duplicates,
    backend_etags_and_masks,
    backend_pagination,
    builtin_pools_and_associations,
    models_lifecycle_and_validation,
);

fn ollama(name: &str) -> pb::Backend {
    pb::Backend {
        name: name.to_string(),
        r#type: pb::BackendType::Ollama as i32,
        base_url: "http://127.0.0.1:11434".to_string(),
        ..Default::default()
    }
}

async fn create(server: &TestServer, backend: pb::Backend) -> pb::Backend {
    server
        .backends()
        .create_backend(pb::CreateBackendRequest {
            backend: Some(backend),
            ..Default::default()
        })
        .await
        .expect("create backend")
        .into_inner()
}

async fn backend_lifecycle_never_returns_the_key(server: TestServer) {
    let mut client = server.backends();
    let created = create(
        &server,
        pb::Backend {
            name: "openai-main".into(),
            r#type: pb::BackendType::Openai as i32,
            base_url: "https://api.openai.com/v1/".into(),
            api_key: "sk-very-secret".into(),
            priority: 5,
            labels: BTreeMap::from([("team".to_string(), "ml".to_string())]),
            ..Default::default()
        },
    )
    .await;
    assert!(!created.id.is_empty());
    assert!(created.has_api_key);
    assert!(created.api_key.is_empty());
    assert_eq!(created.base_url, "https://api.openai.com/v1");
    assert_eq!(created.etag, "1");
    let fetched = client
        .get_backend(pb::GetBackendRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, created);
    let listed = client
        .list_backends(pb::ListBackendsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.backends, vec![created.clone()]);
    assert!(!format!("{listed:?}").contains("sk-very-secret"));

    client
        .delete_backend(pb::DeleteBackendRequest {
            id: created.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let missing = client
        .get_backend(pb::GetBackendRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(error_reason(&missing), "NOT_FOUND");
    let missing = client
        .delete_backend(pb::DeleteBackendRequest {
            id: created.id,
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

async fn backend_validation_reports_every_field(server: TestServer) {
    let mut client = server.backends();
    let error = client
        .create_backend(pb::CreateBackendRequest::default())
        .await
        .unwrap_err();
    assert_invalid(error, &["backend"]);

    let error = client
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: String::new(),
                r#type: 0,
                base_url: "ftp://example.com".into(),
                max_concurrency: -1,
                request_timeout: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            backend_id: "not a valid id!".into(),
            request_id: "x".repeat(200),
        })
        .await
        .unwrap_err();
    assert_invalid(
        error,
        &[
            "backend.base_url",
            "backend.max_concurrency",
            "backend.name",
            "backend.request_timeout",
            "backend.type",
            "backend_id",
            "request_id",
        ],
    );

    for (url, why) in [
        ("", "empty"),
        ("not a url", "unparseable"),
        ("http://user:pw@host:1", "credentials"),
        ("mailto:a@b.c", "scheme"),
    ] {
        let mut backend = ollama("b");
        backend.base_url = url.into();
        let error = client
            .create_backend(pb::CreateBackendRequest {
                backend: Some(backend),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid(error, &["backend.base_url"]);
        let _ = why;
    }

    // Hosted providers need a key.
    let error = client
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: "anthropic".into(),
                r#type: pb::BackendType::Anthropic as i32,
                base_url: "https://api.anthropic.com".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["backend.api_key"]);

    // Nothing was written by any rejected request.
    let listed = client
        .list_backends(pb::ListBackendsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.backends.is_empty());

    let error = client
        .get_backend(pb::GetBackendRequest { id: String::new() })
        .await
        .unwrap_err();
    assert_invalid(error, &["id"]);
}

async fn backend_idempotency_and_duplicates(server: TestServer) {
    let mut client = server.backends();
    let request = pb::CreateBackendRequest {
        backend: Some(ollama("local")),
        backend_id: String::new(),
        request_id: "req-1".into(),
    };
    let first = client
        .create_backend(request.clone())
        .await
        .unwrap()
        .into_inner();
    let second = client
        .create_backend(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, second, "a retried create returns the original");

    let mut changed = request.clone();
    changed.backend.as_mut().unwrap().name = "other".into();
    let error = client.create_backend(changed).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&error), "REQUEST_ID_REUSED");

    let error = client
        .create_backend(pb::CreateBackendRequest {
            backend: Some(ollama("local")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);

    let chosen = client
        .create_backend(pb::CreateBackendRequest {
            backend: Some(ollama("second")),
            backend_id: "my-ollama".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(chosen.id, "my-ollama");
    let error = client
        .create_backend(pb::CreateBackendRequest {
            backend: Some(ollama("third")),
            backend_id: "my-ollama".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);

    // Concurrent duplicates: exactly one backend.
    let mut handles = Vec::new();
    for _ in 0..20 {
        let mut client = server.backends();
        handles.push(tokio::spawn(async move {
            client
                .create_backend(pb::CreateBackendRequest {
                    backend: Some(ollama("raced")),
                    request_id: "race".into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().id)
        }));
    }
    let mut ids = Vec::new();
    for handle in handles {
        ids.push(handle.await.unwrap().expect("every duplicate succeeds"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let listed = client
        .list_backends(pb::ListBackendsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.backends.len(), 3);
}

async fn backend_etags_and_masks(server: TestServer) {
    let mut client = server.backends();
    let created = create(
        &server,
        pb::Backend {
            api_key: "key-1".into(),
            ..ollama("b")
        },
    )
    .await;

    let updated = client
        .update_backend(pb::UpdateBackendRequest {
            backend: Some(pb::Backend {
                id: created.id.clone(),
                base_url: "http://127.0.0.1:9999".into(),
                ..Default::default()
            }),
            update_mask: vec!["baseUrl".into()],
            etag: created.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.base_url, "http://127.0.0.1:9999");
    assert_eq!(updated.name, "b");
    assert!(updated.has_api_key, "an unmasked key is kept");
    assert_eq!(updated.etag, "2");

    let stale = client
        .update_backend(pb::UpdateBackendRequest {
            backend: Some(pb::Backend {
                id: created.id.clone(),
                priority: 3,
                ..Default::default()
            }),
            update_mask: vec!["priority".into()],
            etag: created.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");

    let error = client
        .update_backend(pb::UpdateBackendRequest {
            backend: Some(pb::Backend {
                id: created.id.clone(),
                ..Default::default()
            }),
            update_mask: vec!["etag".into(), "nonsense".into()],
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["update_mask[0]", "update_mask[1]"]);

    // Masked update that produces an invalid resource writes nothing.
    let error = client
        .update_backend(pb::UpdateBackendRequest {
            backend: Some(pb::Backend {
                id: created.id.clone(),
                ..Default::default()
            }),
            update_mask: vec!["base_url".into()],
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["backend.base_url"]);

    // Clearing the key explicitly.
    let cleared = client
        .update_backend(pb::UpdateBackendRequest {
            backend: Some(pb::Backend {
                id: created.id.clone(),
                ..Default::default()
            }),
            update_mask: vec!["api_key".into()],
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!cleared.has_api_key);
    assert_eq!(cleared.base_url, "http://127.0.0.1:9999");

    let error = client
        .delete_backend(pb::DeleteBackendRequest {
            id: created.id.clone(),
            etag: "1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Aborted);
    client
        .delete_backend(pb::DeleteBackendRequest {
            id: created.id.clone(),
            etag: cleared.etag,
        })
        .await
        .unwrap();

    let error = client
        .update_backend(pb::UpdateBackendRequest {
            backend: Some(pb::Backend {
                id: "nope".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
}

async fn backend_pagination(server: TestServer) {
    let mut client = server.backends();
    for i in 0..7 {
        create(&server, ollama(&format!("backend-{i}"))).await;
    }
    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_backends(pb::ListBackendsRequest {
                page_size: 3,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.backends.len() <= 3);
        names.extend(page.backends.into_iter().map(|b| b.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..7).map(|i| format!("backend-{i}")).collect();
    assert_eq!(names, expected);

    let error = client
        .list_backends(pb::ListBackendsRequest {
            page_size: -1,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["page_size"]);
    let error = client
        .list_backends(pb::ListBackendsRequest {
            page_size: 3,
            page_token: "bogus".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["page_token"]);
    // A token from another listing is refused.
    let pools_page = client
        .list_pools(pb::ListPoolsRequest {
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let error = client
        .list_backends(pb::ListBackendsRequest {
            page_size: 3,
            page_token: pools_page.next_page_token,
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["page_token"]);
}

async fn builtin_pools_and_associations(server: TestServer) {
    let mut client = server.backends();
    let pools = client
        .list_pools(pb::ListPoolsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .pools;
    let ids: Vec<&str> = pools.iter().map(|p| p.id.as_str()).collect();
    for builtin in [
        "internal_chat_pool",
        "internal_embed_pool",
        "internal_tasks_pool",
    ] {
        assert!(ids.contains(&builtin), "{ids:?}");
    }
    let error = client
        .delete_pool(pb::DeletePoolRequest {
            id: "internal_chat_pool".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);

    let pool = client
        .create_pool(pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                id: "gpu".into(),
                purpose: "chat".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pool.id, "gpu");
    let error = client
        .create_pool(pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                id: "gpu".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);
    let error = client
        .create_pool(pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                id: "bad id".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["pool.id"]);

    let backend = create(&server, ollama("local")).await;
    for pool_id in ["gpu", "internal_chat_pool", "gpu"] {
        client
            .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
                pool_id: pool_id.into(),
                backend_id: backend.id.clone(),
            })
            .await
            .unwrap();
    }
    let members = client
        .list_pool_backends(pb::ListPoolBackendsRequest {
            pool_id: "gpu".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .backends;
    assert_eq!(
        members.iter().map(|b| b.id.clone()).collect::<Vec<_>>(),
        vec![backend.id.clone()]
    );
    let memberships = client
        .list_backend_pools(pb::ListBackendPoolsRequest {
            backend_id: backend.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pools;
    assert_eq!(
        memberships
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        vec!["gpu", "internal_chat_pool"]
    );

    let error = client
        .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
            pool_id: "gpu".into(),
            backend_id: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    let error = client
        .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
            pool_id: "missing".into(),
            backend_id: backend.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    let error = client
        .assign_backend_to_pool(pb::AssignBackendToPoolRequest::default())
        .await
        .unwrap_err();
    assert_invalid(error, &["backend_id", "pool_id"]);

    client
        .remove_backend_from_pool(pb::RemoveBackendFromPoolRequest {
            pool_id: "gpu".into(),
            backend_id: backend.id.clone(),
        })
        .await
        .unwrap();
    let error = client
        .remove_backend_from_pool(pb::RemoveBackendFromPoolRequest {
            pool_id: "gpu".into(),
            backend_id: backend.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);

    // Deleting the backend removes its remaining memberships.
    client
        .delete_backend(pb::DeleteBackendRequest {
            id: backend.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let members = client
        .list_pool_backends(pb::ListPoolBackendsRequest {
            pool_id: "internal_chat_pool".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .backends;
    assert!(members.is_empty());

    client
        .delete_pool(pb::DeletePoolRequest { id: "gpu".into() })
        .await
        .unwrap();
    let error = client
        .get_pool(pb::GetPoolRequest { id: "gpu".into() })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
}

async fn models_lifecycle_and_validation(server: TestServer) {
    let mut client = server.backends();
    let model = client
        .create_model(pb::CreateModelRequest {
            model: Some(pb::Model {
                name: "smollm2:135m".into(),
                context_length: 8192,
                capabilities: vec![
                    pb::ModelCapability::Stream as i32,
                    pb::ModelCapability::Chat as i32,
                    pb::ModelCapability::Chat as i32,
                ],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        model.capabilities,
        vec![
            pb::ModelCapability::Chat as i32,
            pb::ModelCapability::Stream as i32
        ]
    );
    let fetched = client
        .get_model(pb::GetModelRequest {
            name: "smollm2:135m".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, model);

    let error = client
        .create_model(pb::CreateModelRequest {
            model: Some(pb::Model {
                name: "smollm2:135m".into(),
                context_length: 1,
                capabilities: vec![1],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);

    let error = client
        .create_model(pb::CreateModelRequest {
            model: Some(pb::Model {
                name: "bad name with spaces".into(),
                context_length: 0,
                capabilities: vec![0, 99],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(
        error,
        &[
            "model.capabilities[0]",
            "model.capabilities[1]",
            "model.context_length",
            "model.name",
        ],
    );
    let error = client
        .create_model(pb::CreateModelRequest {
            model: Some(pb::Model {
                name: "m".into(),
                context_length: 10,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["model.capabilities"]);

    client
        .assign_model_to_pool(pb::AssignModelToPoolRequest {
            pool_id: "internal_chat_pool".into(),
            model: "smollm2:135m".into(),
        })
        .await
        .unwrap();
    let in_pool = client
        .list_pool_models(pb::ListPoolModelsRequest {
            pool_id: "internal_chat_pool".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(in_pool, vec![model.clone()]);
    let pools = client
        .list_model_pools(pb::ListModelPoolsRequest {
            model: "smollm2:135m".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pools;
    assert_eq!(pools.len(), 1);
    let error = client
        .assign_model_to_pool(pb::AssignModelToPoolRequest {
            pool_id: "internal_chat_pool".into(),
            model: "unknown".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    client
        .remove_model_from_pool(pb::RemoveModelFromPoolRequest {
            pool_id: "internal_chat_pool".into(),
            model: "smollm2:135m".into(),
        })
        .await
        .unwrap();

    let listed = client
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(listed, vec![model]);
    client
        .delete_model(pb::DeleteModelRequest {
            name: "smollm2:135m".into(),
        })
        .await
        .unwrap();
    let error = client
        .get_model(pb::GetModelRequest {
            name: "smollm2:135m".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
}
