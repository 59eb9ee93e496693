//! Keys, roles and namespaces against the real binary, on both stores
//! (docs/security.md): every RPC answers every role as the permission
//! table says, keys live in the store (secret shown once, hidden from
//! lists, revoked at once, expiring), namespace-bound and queue-bound keys
//! are held to their binding, `taskloom keys create` bootstraps a fresh
//! install, and a server without keys refuses a non-loopback listener.

mod common;
use common::replica;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, error_reason};
use prost::Message;
use taskloom_server::api::permissions::{Permission, Role};
use taskloom_server::api::rpc_permissions;
use taskloom_server::proto::taskloom::v1 as pb;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use pb::audit_service_client::AuditServiceClient;
use pb::chain_service_client::ChainServiceClient;
use pb::info_service_client::InfoServiceClient;
use pb::key_service_client::KeyServiceClient;
use pb::worker_service_client::WorkerServiceClient;

api_tests!(
    every_rpc_answers_every_role_as_the_table_says,
    keys_live_in_the_store_and_revoke_at_once,
    expired_keys_are_refused,
    namespace_bound_keys_stay_in_their_namespace,
    worker_keys_serve_only_their_queues,
);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_taskloom"))
}

/// `message` with `authorization: Bearer <secret>` (none for `None`).
fn authed<T>(message: T, secret: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(secret) = secret {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {secret}").parse().expect("ascii"),
        );
    }
    request
}

/// `message` with a key and `x-taskloom-namespace: namespace`.
fn in_namespace<T>(message: T, secret: &str, namespace: &str) -> tonic::Request<T> {
    let mut request = authed(message, Some(secret));
    request
        .metadata_mut()
        .insert("x-taskloom-namespace", namespace.parse().expect("ascii"));
    request
}

async fn version(channel: &Channel, secret: Option<&str>) -> Result<(), tonic::Status> {
    InfoServiceClient::new(channel.clone())
        .get_version(authed(pb::GetVersionRequest {}, secret))
        .await
        .map(|_| ())
}

/// Creates a key with `admin` (`None`: open mode); returns (id, secret).
async fn create_key(
    channel: &Channel,
    admin: Option<&str>,
    request: pb::CreateApiKeyRequest,
) -> (String, String) {
    let created = KeyServiceClient::new(channel.clone())
        .create_api_key(authed(request, admin))
        .await
        .expect("create key")
        .into_inner();
    let key = created.key.expect("key");
    (key.id, created.secret)
}

fn key_request(name: &str, role: &str) -> pb::CreateApiKeyRequest {
    pb::CreateApiKeyRequest {
        name: name.into(),
        role: role.into(),
        ..Default::default()
    }
}

/// A fresh server is open; its first admin key, created by the open
/// caller, closes it.
async fn bootstrap(server: &TestServer) -> (String, String) {
    let info = InfoServiceClient::new(server.channel.clone())
        .get_version(pb::GetVersionRequest {})
        .await
        .expect("open mode")
        .into_inner();
    assert!(info.features.iter().any(|f| f == "api_keys"), "{info:?}");
    let admin = create_key(&server.channel, None, key_request("first admin", "admin")).await;
    let refused = version(&server.channel, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    admin
}

/// How each RPC streams, from the served descriptors:
/// (client streaming, server streaming).
fn streaming_kinds() -> HashMap<String, (bool, bool)> {
    let set = prost_types::FileDescriptorSet::decode(taskloom_server::proto::FILE_DESCRIPTOR_SET)
        .expect("descriptors");
    let mut kinds = HashMap::new();
    for file in set.file {
        for service in &file.service {
            for method in &service.method {
                kinds.insert(
                    format!("{}.{}/{}", file.package(), service.name(), method.name()),
                    (method.client_streaming(), method.server_streaming()),
                );
            }
        }
    }
    kinds
}

/// Calls `path` with an empty request (valid bytes for every message
/// type) and returns the status the call ended with before any response
/// message (`Ok` when one began).
async fn raw_call(
    channel: &Channel,
    path: &str,
    kind: (bool, bool),
    secret: &str,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unknown(e.to_string()))?;
    let path = PathAndQuery::try_from(path.to_string()).expect("path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let mut request = authed((), Some(secret));
    request.set_timeout(Duration::from_secs(5));
    match kind {
        (false, false) => grpc.unary(request, path, codec).await.map(|_| ()),
        (false, true) => grpc
            .server_streaming(request, path, codec)
            .await
            .map(|_| ()),
        _ => {
            let (metadata, extensions, ()) = request.into_parts();
            let stream = tonic::Request::from_parts(metadata, extensions, tokio_stream::empty());
            grpc.streaming(stream, path, codec).await.map(|_| ())
        }
    }
}

/// Every RPC of the permission table, called by a key of every role:
/// refused with PERMISSION_DENIED (ErrorInfo naming the role and the
/// permission) exactly when the role lacks the RPC's permission.
async fn every_rpc_answers_every_role_as_the_table_says(server: TestServer) {
    let (_, admin) = bootstrap(&server).await;
    let mut secrets = HashMap::new();
    for role in Role::ALL {
        let (_, secret) = create_key(
            &server.channel,
            Some(&admin),
            key_request(&format!("{role} key"), role.name()),
        )
        .await;
        secrets.insert(role, secret);
    }
    let kinds = streaming_kinds();
    let table = rpc_permissions();
    assert!(table.len() > 60, "{}", table.len());
    let mut denied = 0;
    for entry in &table {
        let path = format!("/{}/{}", entry.service, entry.method);
        let kind = kinds[&format!("{}/{}", entry.service, entry.method)];
        for role in Role::ALL {
            let result = raw_call(&server.channel, &path, kind, &secrets[&role]).await;
            let what = format!("{path} as {role}: {result:?}");
            if role.grants(entry.permission) {
                if let Err(status) = &result {
                    assert!(
                        !matches!(
                            status.code(),
                            Code::PermissionDenied | Code::Unauthenticated
                        ),
                        "{what}"
                    );
                }
            } else {
                denied += 1;
                let status = result.expect_err(&what);
                assert_eq!(status.code(), Code::PermissionDenied, "{what}");
                let info = status.get_details_error_info().expect(&what);
                assert_eq!(info.reason, "PERMISSION_MISSING", "{what}");
                assert_eq!(info.metadata["role"], role.name(), "{what}");
                assert_eq!(
                    info.metadata["permission"],
                    entry.permission.name(),
                    "{what}"
                );
            }
        }
    }
    assert!(denied > 100, "{denied}");
    // The table itself, spot-checked against the roles.
    let permission_of = |method: &str| {
        table
            .iter()
            .find(|entry| entry.method == method)
            .map(|entry| entry.permission)
            .expect(method)
    };
    assert!(!Role::Viewer.grants(permission_of("CreateChain")));
    assert!(Role::Viewer.grants(permission_of("WatchRun")));
    assert!(!Role::Worker.grants(permission_of("GetRun")));
    assert!(Role::Worker.grants(permission_of("Connect")));
    assert!(!Role::Operator.grants(permission_of("CreateBackend")));
    assert!(!Role::Operator.grants(permission_of("CreateApiKey")));
    assert!(!Role::Operator.grants(permission_of("DrainReplica")));
    assert!(Role::Operator.grants(permission_of("PauseQueue")));
    assert_eq!(permission_of("RevokeApiKey"), Permission::KeysManage);
}

/// CreateApiKey shows the secret once, ListApiKeys never; a revoked key is
/// refused at once; audit entries name the key id.
async fn keys_live_in_the_store_and_revoke_at_once(server: TestServer) {
    let (admin_id, admin) = bootstrap(&server).await;
    let mut keys = KeyServiceClient::new(server.channel.clone());
    let created = keys
        .create_api_key(authed(key_request("ops", "operator"), Some(&admin)))
        .await
        .unwrap()
        .into_inner();
    let operator = created.secret.clone();
    let key = created.key.unwrap();
    assert!(
        operator.starts_with("tlk_") && operator.len() > 40,
        "{operator}"
    );
    assert_eq!(key.prefix, operator[..8]);
    assert_eq!(key.role, "operator");
    assert_eq!(key.created_by, format!("key:{admin_id}"));

    let listed = keys
        .list_api_keys(authed(pb::ListApiKeysRequest {}, Some(&admin)))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed.keys.iter().map(|key| key.id.as_str()).collect();
    assert_eq!(ids, vec![admin_id.as_str(), key.id.as_str()]);
    let printed = format!("{listed:?}");
    assert!(!printed.contains(&operator) && !printed.contains(&admin));

    // The operator acts; the audit log names its key.
    ChainServiceClient::new(server.channel.clone())
        .create_chain(authed(
            pb::CreateChainRequest {
                chain: Some(common::chains::noop_chain("audited", 1)),
                ..Default::default()
            },
            Some(&operator),
        ))
        .await
        .unwrap();
    let events = AuditServiceClient::new(server.channel.clone())
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                page_size: 100,
                ..Default::default()
            },
            Some(&admin),
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let actor_of = |action: &str, resource: &str| {
        events
            .iter()
            .find(|event| event.action == action && event.resource_id == resource)
            .map(|event| event.actor.clone())
    };
    assert_eq!(
        actor_of("CreateChain", "audited"),
        Some(format!("key:{}", key.id))
    );
    assert_eq!(actor_of("CreateApiKey", &admin_id), Some("local".into()));
    assert_eq!(
        actor_of("CreateApiKey", &key.id),
        Some(format!("key:{admin_id}"))
    );

    // The use is recorded off the request path, within seconds.
    let used_since = Instant::now();
    loop {
        let listed = keys
            .list_api_keys(authed(pb::ListApiKeysRequest {}, Some(&admin)))
            .await
            .unwrap()
            .into_inner();
        let operator_key = listed.keys.iter().find(|k| k.id == key.id).unwrap();
        if operator_key.last_used_time.is_some() {
            break;
        }
        assert!(
            used_since.elapsed() < Duration::from_secs(10),
            "last_used_time never set"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Operators manage no keys.
    let refused = keys
        .list_api_keys(authed(pb::ListApiKeysRequest {}, Some(&operator)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let revoked = keys
        .revoke_api_key(authed(
            pb::RevokeApiKeyRequest { id: key.id.clone() },
            Some(&admin),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoke_time.is_some());
    let refused = version(&server.channel, Some(&operator)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("revoked"), "{refused:?}");
    // Revoking again changes nothing; an unknown id is NOT_FOUND.
    let again = keys
        .revoke_api_key(authed(
            pb::RevokeApiKeyRequest { id: key.id.clone() },
            Some(&admin),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.revoke_time, revoked.revoke_time);
    let missing = keys
        .revoke_api_key(authed(
            pb::RevokeApiKeyRequest {
                id: "k_nope".into(),
            },
            Some(&admin),
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // Bad requests name their fields.
    let bad = keys
        .create_api_key(authed(key_request("", "root"), Some(&admin)))
        .await
        .unwrap_err();
    common::assert_invalid(bad, &["name", "role"]);
    // Revoking every key does not reopen the server.
    keys.revoke_api_key(authed(
        pb::RevokeApiKeyRequest {
            id: admin_id.clone(),
        },
        Some(&admin),
    ))
    .await
    .unwrap();
    let refused = version(&server.channel, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}

async fn expired_keys_are_refused(server: TestServer) {
    let (_, admin) = bootstrap(&server).await;
    let (_, brief) = create_key(
        &server.channel,
        Some(&admin),
        pb::CreateApiKeyRequest {
            ttl: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..key_request("brief", "viewer")
        },
    )
    .await;
    version(&server.channel, Some(&brief)).await.expect("fresh");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let refused = version(&server.channel, Some(&brief)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("expired"), "{refused:?}");
}

async fn namespace_bound_keys_stay_in_their_namespace(server: TestServer) {
    let (_, admin) = bootstrap(&server).await;
    let (_, team) = create_key(
        &server.channel,
        Some(&admin),
        pb::CreateApiKeyRequest {
            namespace: "team-a".into(),
            ..key_request("team a", "operator")
        },
    )
    .await;
    let mut info = InfoServiceClient::new(server.channel.clone());
    info.get_version(in_namespace(pb::GetVersionRequest {}, &team, "team-a"))
        .await
        .expect("own namespace");
    // No header is the `default` namespace.
    for request in [
        authed(pb::GetVersionRequest {}, Some(&team)),
        in_namespace(pb::GetVersionRequest {}, &team, "team-b"),
    ] {
        let refused = info.get_version(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        assert_eq!(error_reason(&refused), "NAMESPACE_NOT_ALLOWED");
    }
    // A key for every namespace names any.
    info.get_version(in_namespace(pb::GetVersionRequest {}, &admin, "team-b"))
        .await
        .expect("admin in any namespace");
    let bad = info
        .get_version(in_namespace(pb::GetVersionRequest {}, &admin, "Team_B"))
        .await
        .unwrap_err();
    common::assert_invalid(bad, &["x-taskloom-namespace"]);

    // An admin bound to a namespace manages that namespace's keys only: it
    // cannot mint a key that escapes its binding, nor see or revoke others.
    let (_, team_admin) = create_key(
        &server.channel,
        Some(&admin),
        pb::CreateApiKeyRequest {
            namespace: "team-a".into(),
            ..key_request("team a admin", "admin")
        },
    )
    .await;
    let mut keys = KeyServiceClient::new(server.channel.clone());
    let escape = keys
        .create_api_key(in_namespace(
            key_request("escape", "admin"),
            &team_admin,
            "team-a",
        ))
        .await
        .unwrap_err();
    assert_eq!(escape.code(), Code::PermissionDenied, "{escape:?}");
    assert_eq!(error_reason(&escape), "NAMESPACE_NOT_ALLOWED");
    let created = keys
        .create_api_key(in_namespace(
            pb::CreateApiKeyRequest {
                namespace: "team-a".into(),
                ..key_request("team a viewer", "viewer")
            },
            &team_admin,
            "team-a",
        ))
        .await
        .expect("a key of its own namespace")
        .into_inner();
    let listed = keys
        .list_api_keys(in_namespace(
            pb::ListApiKeysRequest {},
            &team_admin,
            "team-a",
        ))
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert!(
        listed.iter().all(|key| key.namespace == "team-a"),
        "{listed:?}"
    );
    assert_eq!(listed.len(), 3, "{listed:?}");
    let all = keys
        .list_api_keys(authed(pb::ListApiKeysRequest {}, Some(&admin)))
        .await
        .unwrap()
        .into_inner()
        .keys;
    let admin_id = all
        .iter()
        .find(|key| key.namespace.is_empty())
        .map(|key| key.id.clone())
        .unwrap();
    let hidden = keys
        .revoke_api_key(in_namespace(
            pb::RevokeApiKeyRequest { id: admin_id },
            &team_admin,
            "team-a",
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    keys.revoke_api_key(in_namespace(
        pb::RevokeApiKeyRequest {
            id: created.key.unwrap().id,
        },
        &team_admin,
        "team-a",
    ))
    .await
    .expect("its own namespace's key");
}

async fn worker_keys_serve_only_their_queues(server: TestServer) {
    let (_, admin) = bootstrap(&server).await;
    let (_, worker) = create_key(
        &server.channel,
        Some(&admin),
        pb::CreateApiKeyRequest {
            queues: vec!["gpu".into()],
            ..key_request("gpu worker", "worker")
        },
    )
    .await;
    let hello = |queues: &[&str]| pb::WorkerMessage {
        msg: Some(pb::worker_message::Msg::Hello(pb::Hello {
            worker_id: "w1".into(),
            queues: queues.iter().map(|q| q.to_string()).collect(),
            slots: 1,
            ..Default::default()
        })),
    };
    let mut workers = WorkerServiceClient::new(server.channel.clone());
    let refused = workers
        .connect(authed(
            tokio_stream::iter(vec![hello(&["gpu", "cpu"])]),
            Some(&worker),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(error_reason(&refused), "QUEUE_NOT_ALLOWED");
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender.send(hello(&["gpu"])).await.unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let _session = workers
        .connect(authed(stream, Some(&worker)))
        .await
        .expect("its own queue");
    // Workers read nothing else.
    let refused = workers
        .list_workers(authed(pb::ListWorkersRequest::default(), Some(&worker)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    drop(sender);
}

/// Runs `taskloom ARGS` to the end; (success, stdout + stderr).
fn run_taskloom(args: &[&str]) -> (bool, String) {
    let output = Command::new(binary())
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("run taskloom");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn printed_value(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
        .trim()
        .to_string()
}

/// `taskloom keys create` writes an admin key into a fresh store; a server
/// on it is closed from the start and takes that key; `keys revoke` is
/// honoured by the running server within a second.
async fn bootstrap_on(url: &str) {
    let (ok, text) = run_taskloom(&[
        "keys",
        "create",
        "--role",
        "admin",
        "--name",
        "boot",
        "--expires-in",
        "90d",
        "--database-url",
        url,
    ]);
    assert!(ok, "{text}");
    let id = printed_value(&text, "id:");
    let secret = printed_value(&text, "secret:");
    assert!(secret.starts_with("tlk_"), "{text}");
    let (ok, listed) = run_taskloom(&["keys", "list", "--database-url", url]);
    assert!(ok, "{listed}");
    assert!(
        listed.contains(&id) && !listed.contains(&secret),
        "{listed}"
    );

    let (_process, channel) = replica(url).await;
    let refused = version(&channel, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    version(&channel, Some(&secret))
        .await
        .expect("bootstrap key");

    let (ok, text) = run_taskloom(&["keys", "revoke", &id, "--database-url", url]);
    assert!(ok, "{text}");
    let revoked_at = Instant::now();
    while version(&channel, Some(&secret)).await.is_ok() {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "the revocation took over a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_from_the_command_line_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap_on(&dir.path().join("boot.db").display().to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_from_the_command_line_on_postgres() {
    let url = tokio::task::spawn_blocking(taskloom_testkit::fresh_postgres_database)
        .await
        .unwrap()
        .unwrap();
    bootstrap_on(&url).await;
}

/// A key created on one PostgreSQL replica works on the other within a
/// second, and its revocation reaches the other within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_every_postgres_replica_within_a_second() {
    let url = tokio::task::spawn_blocking(taskloom_testkit::fresh_postgres_database)
        .await
        .unwrap()
        .unwrap();
    let (_a, channel_a) = replica(&url).await;
    let (_b, channel_b) = replica(&url).await;
    let (_, admin) = create_key(&channel_a, None, key_request("admin", "admin")).await;
    let (id, viewer) = create_key(&channel_a, Some(&admin), key_request("v", "viewer")).await;
    let created_at = Instant::now();
    while version(&channel_b, Some(&viewer)).await.is_err() {
        assert!(created_at.elapsed() < Duration::from_secs(1), "not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    KeyServiceClient::new(channel_a.clone())
        .revoke_api_key(authed(pb::RevokeApiKeyRequest { id }, Some(&admin)))
        .await
        .unwrap();
    let revoked_at = Instant::now();
    loop {
        match version(&channel_b, Some(&viewer)).await {
            Ok(()) => {
                assert!(
                    revoked_at.elapsed() < Duration::from_secs(1),
                    "the revocation took over a second"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                break;
            }
        }
    }
}

/// Without any key, a non-loopback listener needs `--insecure-open`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_is_refused_on_a_non_loopback_listener() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("open.db").display().to_string();
    let (ok, text) = run_taskloom(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--database-url",
        &db,
        "--exit-with-stdin",
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("not a loopback address") && text.contains("--insecure-open"),
        "{text}"
    );

    let mut child = Command::new(binary())
        .args(["serve", "--listen", "0.0.0.0:0", "--database-url", &db])
        .args(["--insecure-open", "--exit-with-stdin"])
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Every line is read to the end (a closed pipe would fail the
    // server's later prints).
    let stdout = child.stdout.take().unwrap();
    let (lines, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|line: &String| line.contains("OPEN MODE")) {
        let line = printed
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no OPEN MODE line: {seen:?}"));
        seen.push(line);
    }
    assert!(
        seen.iter()
            .any(|line| line.contains("listening on 0.0.0.0:")),
        "{seen:?}"
    );
    drop(child.stdin.take());
    let _ = child.wait();
}
