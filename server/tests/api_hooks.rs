//! HookService against a real server process, on SQLite and Postgres.

mod common;

use std::collections::BTreeMap;

use common::{TestServer, assert_invalid, error_reason};
use taskloom_server::proto::taskloom::v1 as pb;
use tonic::Code;

api_tests!(
    hook_lifecycle_keeps_secrets,
    hook_validation,
    hook_updates_and_etags
);

fn seconds(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

fn search_hook() -> pb::Hook {
    pb::Hook {
        name: "search".into(),
        url: "http://127.0.0.1:8080/search".into(),
        method: "post".into(),
        timeout: seconds(30),
        headers: BTreeMap::from([("X-Team".to_string(), "ml".to_string())]),
        secret_headers: BTreeMap::from([(
            "Authorization".to_string(),
            "Bearer top-secret".to_string(),
        )]),
        ..Default::default()
    }
}

async fn hook_lifecycle_keeps_secrets(server: TestServer) {
    let mut client = server.hooks();
    let created = client
        .create_hook(pb::CreateHookRequest {
            hook: Some(search_hook()),
            request_id: "h1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.method, "POST");
    assert!(created.secret_headers.is_empty());
    assert_eq!(
        created.secret_header_names,
        vec!["Authorization".to_string()]
    );
    assert!(!format!("{created:?}").contains("top-secret"));

    let replay = client
        .create_hook(pb::CreateHookRequest {
            hook: Some(search_hook()),
            request_id: "h1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay, created);

    let duplicate = client
        .create_hook(pb::CreateHookRequest {
            hook: Some(search_hook()),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    assert_eq!(error_reason(&duplicate), "ALREADY_EXISTS");

    let fetched = client
        .get_hook(pb::GetHookRequest {
            name: "search".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, created);
    let listed = client
        .list_hooks(pb::ListHooksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.hooks, vec![created]);

    client
        .delete_hook(pb::DeleteHookRequest {
            name: "search".into(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let error = client
        .get_hook(pb::GetHookRequest {
            name: "search".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
}

async fn hook_validation(server: TestServer) {
    let mut client = server.hooks();
    let error = client
        .create_hook(pb::CreateHookRequest {
            hook: Some(pb::Hook {
                name: String::new(),
                url: "not a url".into(),
                timeout: seconds(0),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["hook.name", "hook.timeout", "hook.url"]);

    let error = client
        .create_hook(pb::CreateHookRequest {
            hook: Some(pb::Hook {
                name: "h".into(),
                url: "https://example.com/x".into(),
                method: "TRACE".into(),
                timeout: Some(prost_types::Duration {
                    seconds: -5,
                    nanos: 0,
                }),
                headers: BTreeMap::from([("Bad Header".to_string(), "v".to_string())]),
                secret_headers: BTreeMap::from([("X-Injected".to_string(), "a\r\nb".to_string())]),
                queue: "no spaces allowed".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(
        error,
        &[
            "hook.headers[\"Bad Header\"]",
            "hook.method",
            "hook.queue",
            "hook.secret_headers[\"X-Injected\"]",
            "hook.timeout",
        ],
    );

    let error = client
        .create_hook(pb::CreateHookRequest {
            hook: Some(pb::Hook {
                name: "h".into(),
                url: "https://example.com".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["hook.timeout"]);

    let error = client
        .create_hook(pb::CreateHookRequest::default())
        .await
        .unwrap_err();
    assert_invalid(error, &["hook"]);

    let listed = client
        .list_hooks(pb::ListHooksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.hooks.is_empty(), "rejected hooks wrote nothing");
}

async fn hook_updates_and_etags(server: TestServer) {
    let mut client = server.hooks();
    let created = client
        .create_hook(pb::CreateHookRequest {
            hook: Some(search_hook()),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();

    let updated = client
        .update_hook(pb::UpdateHookRequest {
            hook: Some(pb::Hook {
                name: "search".into(),
                timeout: seconds(5),
                ..Default::default()
            }),
            update_mask: vec!["timeout".into()],
            etag: created.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.timeout, seconds(5));
    assert_eq!(updated.url, created.url);
    assert_eq!(
        updated.secret_header_names,
        vec!["Authorization".to_string()]
    );
    assert_ne!(updated.etag, created.etag);

    let stale = client
        .update_hook(pb::UpdateHookRequest {
            hook: Some(pb::Hook {
                name: "search".into(),
                timeout: seconds(9),
                ..Default::default()
            }),
            update_mask: vec!["timeout".into()],
            etag: created.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let error = client
        .update_hook(pb::UpdateHookRequest {
            hook: Some(pb::Hook {
                name: "search".into(),
                timeout: seconds(0),
                ..Default::default()
            }),
            update_mask: vec!["timeout".into()],
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["hook.timeout"]);

    let error = client
        .delete_hook(pb::DeleteHookRequest {
            name: "search".into(),
            etag: created.etag,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Aborted);
    client
        .delete_hook(pb::DeleteHookRequest {
            name: "search".into(),
            etag: updated.etag,
        })
        .await
        .unwrap();
}
