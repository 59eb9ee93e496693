//! The reconciler, observed state and pulls against a real server process,
//! a real gRPC client and fake providers on loopback: each provider's model
//! list with its details, health flapping, the periodic cycle and the cloud
//! list cache, pulls (progress, failures, one at a time), auto-pull, and two
//! replicas on one PostgreSQL sharing the syncs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{BackendServiceClient, TestServer, error_reason};
use serde_json::json;
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::ServerProcess;
use taskloom_testkit::fake_llm::{FakeLlm, Pull, Reply};
use tonic::Code;
use tonic::transport::Channel;

const ON_DEMAND: &[&str] = &["--sync-interval", "0s"];
const FAST_CYCLE: &[&str] = &["--sync-interval", "200ms"];

api_tests!(
    ON_DEMAND; sqlite, postgres;
    listings_carry_each_providers_details,
    health_flaps_then_recovers,
    sync_reflects_a_newly_served_model,
    pull_streams_progress_then_done,
    failed_pulls_answer_unavailable_or_not_found,
    concurrent_pulls_take_turns,
    pull_refuses_other_backends,
    a_hanging_backend_is_bounded_by_its_timeout,
    huge_model_lists_are_capped,
);

api_tests!(
    FAST_CYCLE; sqlite_cycle, postgres_cycle;
    periodic_cycle_updates_list_backends,
    cycle_reuses_cloud_lists_sync_backend_does_not,
    auto_pull_fetches_declared_missing_models,
    failed_auto_pull_is_reported_without_unhealthy,
);

const HEALTHY: i32 = pb::BackendHealth::Healthy as i32;
const UNHEALTHY: i32 = pb::BackendHealth::Unhealthy as i32;

async fn create(server: &TestServer, name: &str, kind: pb::BackendType, url: &str) -> pb::Backend {
    server
        .backends()
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: name.to_string(),
                r#type: kind as i32,
                base_url: url.to_string(),
                // Cloud presets require one; the others forward it.
                api_key: "test-key".to_string(),
                request_timeout: Some(prost_types::Duration {
                    seconds: 5,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create backend")
        .into_inner()
}

async fn sync(server: &TestServer, id: &str) -> pb::Backend {
    server
        .backends()
        .sync_backend(pb::SyncBackendRequest { id: id.to_string() })
        .await
        .expect("sync backend")
        .into_inner()
}

fn state(backend: &pb::Backend) -> pb::BackendState {
    backend.state.clone().unwrap_or_default()
}

fn observed(backend: &pb::Backend, name: &str) -> pb::ObservedModel {
    state(backend)
        .observed_models
        .into_iter()
        .find(|model| model.name == name)
        .unwrap_or_else(|| panic!("{name} not observed in {backend:?}"))
}

fn caps(capabilities: &[pb::ModelCapability]) -> Vec<i32> {
    capabilities.iter().map(|c| *c as i32).collect()
}

async fn listings_carry_each_providers_details(server: TestServer) {
    use pb::ModelCapability::{Chat, Embed, Prompt};

    let fake = FakeLlm::start().await;
    fake.set_models(["llama3:latest", "nomic-embed-text:latest"]);
    fake.set_model_details("llama3:latest", json!({"size": 4_661_224_676_i64}));
    fake.set_ollama_show(
        "llama3:latest",
        json!({"model_info": {"general.architecture": "llama", "llama.context_length": 8192},
               "capabilities": ["completion", "tools"]}),
    );
    fake.set_ollama_show(
        "nomic-embed-text:latest",
        json!({"model_info": {"nomic-bert.context_length": 2048}, "capabilities": ["embedding"]}),
    );
    let backend = create(&server, "ollama", pb::BackendType::Ollama, &fake.url()).await;
    let synced = sync(&server, &backend.id).await;
    assert_eq!(state(&synced).health, HEALTHY, "{synced:?}");
    let llama = observed(&synced, "llama3:latest");
    assert_eq!(llama.context_length, 8192);
    assert_eq!(llama.capabilities, caps(&[Chat, Prompt]));
    assert_eq!(llama.size_bytes, 4_661_224_676);
    let nomic = observed(&synced, "nomic-embed-text:latest");
    assert_eq!(
        (nomic.context_length, nomic.capabilities),
        (2048, caps(&[Embed]))
    );
    assert_eq!(
        state(&synced).models,
        ["llama3:latest", "nomic-embed-text:latest"]
    );
    assert!(state(&synced).models_time.is_some() && state(&synced).last_sync_time.is_some());
    assert!(state(&synced).latency.is_some());

    // OpenAI-compatible servers, each with its own detail fields.
    let cases: [(pb::BackendType, serde_json::Value, i32, Vec<i32>); 5] = [
        (
            pb::BackendType::Vllm,
            json!({"max_model_len": 4096}),
            4096,
            vec![],
        ),
        (
            pb::BackendType::Openrouter,
            json!({"context_length": 128_000}),
            128_000,
            vec![],
        ),
        (
            pb::BackendType::Mistral,
            json!({"max_context_length": 32768, "capabilities": {"completion_chat": true}}),
            32768,
            caps(&[Chat, Prompt]),
        ),
        (
            pb::BackendType::LmStudio,
            json!({"type": "embeddings", "max_context_length": 2048}),
            2048,
            caps(&[Embed]),
        ),
        (pb::BackendType::Openai, json!({}), 0, vec![]),
    ];
    for (kind, details, context_length, capabilities) in cases {
        let fake = FakeLlm::start().await;
        fake.set_models(["m"]);
        fake.set_model_details("m", details);
        let backend = create(&server, &format!("{kind:?}"), kind, &fake.url()).await;
        let model = observed(&sync(&server, &backend.id).await, "m");
        assert_eq!(model.context_length, context_length, "{kind:?}");
        assert_eq!(model.capabilities, capabilities, "{kind:?}");
    }

    let fake = FakeLlm::start().await;
    fake.set_models(["gemini-2.0-flash"]);
    fake.set_model_details("gemini-2.0-flash", json!({"inputTokenLimit": 1_048_576}));
    let backend = create(&server, "gemini", pb::BackendType::Gemini, &fake.url()).await;
    let model = observed(&sync(&server, &backend.id).await, "gemini-2.0-flash");
    assert_eq!(model.context_length, 1_048_576);
    assert_eq!(model.capabilities, caps(&[Chat, Embed, Prompt]));

    let fake = FakeLlm::start().await;
    fake.set_models(["claude-sonnet-4"]);
    let backend = create(
        &server,
        "anthropic",
        pb::BackendType::Anthropic,
        &fake.url(),
    )
    .await;
    let synced = sync(&server, &backend.id).await;
    assert_eq!(state(&synced).models, ["claude-sonnet-4"]);
    assert_eq!(observed(&synced, "claude-sonnet-4").context_length, 0);

    // GetBackend and ListBackends show the same observed state.
    let got = server
        .backends()
        .get_backend(pb::GetBackendRequest {
            id: backend.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.state, synced.state);
}

async fn health_flaps_then_recovers(server: TestServer) {
    let fake = FakeLlm::start().await;
    fake.set_models(["m"]);
    let backend = create(&server, "flappy", pb::BackendType::Ollama, &fake.url()).await;
    assert_eq!(state(&sync(&server, &backend.id).await).health, HEALTHY);

    fake.script(
        FakeLlm::LIST_MODELS,
        Reply::error(500, r#"{"error":"boom"}"#),
    );
    let failed = sync(&server, &backend.id).await;
    let failed_state = state(&failed);
    assert_eq!(failed_state.health, UNHEALTHY);
    assert!(failed_state.last_error.contains("500"), "{failed_state:?}");
    assert!(failed_state.last_error.contains("boom"), "{failed_state:?}");
    // The models last observed are kept.
    assert_eq!(failed_state.models, ["m"]);

    let recovered = state(&sync(&server, &backend.id).await);
    assert_eq!(recovered.health, HEALTHY);
    assert_eq!(recovered.last_error, "");

    // An unreachable backend is recorded as unhealthy too, not an error.
    let unreachable = create(
        &server,
        "gone",
        pb::BackendType::Ollama,
        &format!("http://127.0.0.1:{}", taskloom_testkit::free_port()),
    )
    .await;
    let gone = state(&sync(&server, &unreachable.id).await);
    assert_eq!(gone.health, UNHEALTHY);
    assert!(!gone.last_error.is_empty());
}

async fn sync_reflects_a_newly_served_model(server: TestServer) {
    let fake = FakeLlm::start().await;
    fake.set_models(["a"]);
    let backend = create(&server, "b", pb::BackendType::OpenaiCompatible, &fake.url()).await;
    assert_eq!(state(&sync(&server, &backend.id).await).models, ["a"]);
    fake.set_models(["a", "b"]);
    assert_eq!(state(&sync(&server, &backend.id).await).models, ["a", "b"]);

    let status = server
        .backends()
        .sync_backend(pb::SyncBackendRequest {
            id: "no-such-backend".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = server
        .backends()
        .sync_backend(pb::SyncBackendRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

async fn pull(
    client: &mut BackendServiceClient<Channel>,
    backend_id: &str,
    model: &str,
) -> Result<Vec<pb::PullModelProgress>, tonic::Status> {
    let mut stream = client
        .pull_model(pb::PullModelRequest {
            backend_id: backend_id.to_string(),
            model: model.to_string(),
        })
        .await?
        .into_inner();
    let mut messages = vec![];
    while let Some(message) = stream.message().await? {
        messages.push(message);
    }
    Ok(messages)
}

async fn pull_streams_progress_then_done(server: TestServer) {
    let fake = FakeLlm::start().await;
    fake.script_pull("llama3", Pull::success(3000, 3));
    let backend = create(&server, "ollama", pb::BackendType::Ollama, &fake.url()).await;
    let messages = pull(&mut server.backends(), &backend.id, "llama3")
        .await
        .expect("pull");
    assert_eq!(messages[0].status, "pulling manifest");
    let downloads: Vec<(i64, i64)> = messages
        .iter()
        .filter(|m| m.total_bytes > 0 && !m.done)
        .map(|m| (m.completed_bytes, m.total_bytes))
        .collect();
    assert_eq!(downloads, [(1000, 3000), (2000, 3000), (3000, 3000)]);
    let last = messages.last().unwrap();
    assert!(last.done && last.status == "success", "{messages:?}");
    assert_eq!(messages.iter().filter(|m| m.done).count(), 1);
    let request = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/pull")
        .unwrap();
    assert_eq!(request.body["model"], "llama3");

    // The backend was re-listed: the new model shows at once.
    let got = server
        .backends()
        .get_backend(pb::GetBackendRequest { id: backend.id })
        .await
        .unwrap()
        .into_inner();
    assert!(
        state(&got).models.contains(&"llama3".to_string()),
        "{got:?}"
    );
}

async fn failed_pulls_answer_unavailable_or_not_found(server: TestServer) {
    let fake = FakeLlm::start().await;
    fake.script_pull("big", Pull::failing("no space left on device"));
    fake.script_pull(
        "typo",
        Pull::http_error(404, r#"{"error":"model not found"}"#),
    );
    let backend = create(&server, "ollama", pb::BackendType::Ollama, &fake.url()).await;
    let mut client = server.backends();

    let status = pull(&mut client, &backend.id, "big").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("no space left"), "{status:?}");
    assert_eq!(error_reason(&status), "PROVIDER_UNAVAILABLE");

    let status = pull(&mut client, &backend.id, "typo").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // Ollama's own way: a 200 stream with an error line.
    let status = pull(&mut client, &backend.id, "unscripted")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains("file does not exist"),
        "{status:?}"
    );
}

async fn concurrent_pulls_take_turns(server: TestServer) {
    let fake = FakeLlm::start().await;
    let slow = || Pull::success(100, 4).line_delay(Duration::from_millis(60));
    fake.script_pull("one", slow());
    fake.script_pull("two", slow());
    let backend = create(&server, "ollama", pb::BackendType::Ollama, &fake.url()).await;
    let (mut first, mut second) = (server.backends(), server.backends());
    let (a, b) = tokio::join!(
        pull(&mut first, &backend.id, "one"),
        pull(&mut second, &backend.id, "two")
    );
    let (a, b) = (a.expect("first pull"), b.expect("second pull"));
    assert!(a.last().unwrap().done && b.last().unwrap().done);
    assert_eq!(fake.max_pulls_in_flight(), 1);
    let waited = [&a, &b]
        .iter()
        .filter(|messages| messages[0].status == "waiting for another pull")
        .count();
    assert_eq!(waited, 1, "{a:?} {b:?}");
}

async fn pull_refuses_other_backends(server: TestServer) {
    let fake = FakeLlm::start().await;
    let openai = create(&server, "openai", pb::BackendType::Openai, &fake.url()).await;
    let mut client = server.backends();
    let status = pull(&mut client, &openai.id, "gpt-4o").await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = pull(&mut client, "no-such-backend", "m").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = pull(&mut client, &openai.id, "").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(fake.requests().is_empty());
}

async fn a_hanging_backend_is_bounded_by_its_timeout(server: TestServer) {
    let hanging = FakeLlm::start().await;
    hanging.script(
        FakeLlm::LIST_MODELS,
        Reply::text("").delay(Duration::from_secs(60)),
    );
    let backend = server
        .backends()
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: "hanging".into(),
                r#type: pb::BackendType::Ollama as i32,
                base_url: hanging.url(),
                request_timeout: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let started = Instant::now();
    let synced = state(&sync(&server, &backend.id).await);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(synced.health, UNHEALTHY);
    assert!(synced.last_error.contains("within"), "{synced:?}");
    // The listing was abandoned, not left running.
    assert!(hanging.wait_for_cancelled(1, Duration::from_secs(5)).await);
}

async fn huge_model_lists_are_capped(server: TestServer) {
    let fake = FakeLlm::start().await;
    fake.set_models((0..10_050).map(|n| format!("m{n:05}")));
    let backend = create(&server, "huge", pb::BackendType::Vllm, &fake.url()).await;
    let synced = state(&sync(&server, &backend.id).await);
    assert_eq!(synced.health, HEALTHY);
    assert_eq!(synced.models.len(), 10_000);
    assert_eq!(synced.observed_models.len(), 10_000);
}

/// Polls `get` until `done` holds (or panics after 10 s).
async fn eventually<T, F, Fut>(what: &str, mut get: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
    T: std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = get().await;
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: last seen {value:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn listed(client: &BackendServiceClient<Channel>, id: &str) -> pb::Backend {
    let backends = client
        .clone()
        .list_backends(pb::ListBackendsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .backends;
    backends.into_iter().find(|b| b.id == id).unwrap()
}

async fn periodic_cycle_updates_list_backends(server: TestServer) {
    let fake = FakeLlm::start().await;
    fake.set_models(["a"]);
    let backend = create(&server, "ollama", pb::BackendType::Ollama, &fake.url()).await;
    let client = server.backends();
    eventually(
        "first cycle",
        || listed(&client, &backend.id),
        |b| state(b).health == HEALTHY && state(b).models == ["a"],
    )
    .await;
    fake.set_models(["a", "b"]);
    eventually(
        "the new model",
        || listed(&client, &backend.id),
        |b| state(b).models == ["a", "b"],
    )
    .await;
    fake.script(FakeLlm::LIST_MODELS, Reply::error(503, "{}"));
    eventually(
        "unhealthy",
        || listed(&client, &backend.id),
        |b| state(b).health == UNHEALTHY,
    )
    .await;
    eventually(
        "healthy again",
        || listed(&client, &backend.id),
        |b| state(b).health == HEALTHY && state(b).last_error.is_empty(),
    )
    .await;
}

async fn cycle_reuses_cloud_lists_sync_backend_does_not(server: TestServer) {
    let fake = FakeLlm::start().await;
    fake.set_models(["gpt-4o"]);
    let backend = create(&server, "openai", pb::BackendType::Openai, &fake.url()).await;
    let client = server.backends();
    let first = eventually(
        "first cycle",
        || listed(&client, &backend.id),
        |b| state(b).health == HEALTHY,
    )
    .await;
    let listings = fake.list_requests();
    assert_eq!(listings, 1);
    // Later cycles sync (last_sync_time moves) without listing again.
    let first_sync = state(&first).last_sync_time.unwrap();
    eventually(
        "a later cycle",
        || listed(&client, &backend.id),
        |b| state(b).last_sync_time.as_ref().unwrap().seconds > first_sync.seconds + 1,
    )
    .await;
    assert_eq!(fake.list_requests(), 1);
    assert_eq!(
        state(&listed(&client, &backend.id).await).models_time,
        state(&first).models_time
    );

    fake.set_models(["gpt-4o", "gpt-5"]);
    let synced = sync(&server, &backend.id).await;
    assert_eq!(fake.list_requests(), 2);
    assert_eq!(state(&synced).models, ["gpt-4o", "gpt-5"]);
}

async fn declare(server: &TestServer, pool: &str, model: &str, backend_id: &str) {
    let mut client = server.backends();
    client
        .create_model(pb::CreateModelRequest {
            model: Some(pb::Model {
                name: model.to_string(),
                context_length: 8192,
                capabilities: vec![pb::ModelCapability::Chat as i32],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create model");
    client
        .create_pool(pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                id: pool.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create pool");
    client
        .assign_model_to_pool(pb::AssignModelToPoolRequest {
            pool_id: pool.to_string(),
            model: model.to_string(),
        })
        .await
        .expect("assign model");
    client
        .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
            pool_id: pool.to_string(),
            backend_id: backend_id.to_string(),
        })
        .await
        .expect("assign backend");
}

async fn auto_pull_fetches_declared_missing_models(server: TestServer) {
    let fake = FakeLlm::start().await;
    fake.set_models(["undeclared:latest"]);
    fake.script_pull("llama3", Pull::success(500, 2));
    let backend = create(&server, "ollama", pb::BackendType::Ollama, &fake.url()).await;
    declare(&server, "local", "llama3", &backend.id).await;
    let client = server.backends();
    let pulled = eventually(
        "the declared model pulled and listed",
        || listed(&client, &backend.id),
        |b| state(b).models.contains(&"llama3".to_string()),
    )
    .await;
    // Nothing it did not declare is deleted.
    assert!(
        state(&pulled)
            .models
            .contains(&"undeclared:latest".to_string())
    );
    let requests = fake.requests();
    let pulls: Vec<_> = requests.iter().filter(|r| r.path == "/api/pull").collect();
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(pulls[0].body["model"], "llama3");
    assert!(
        requests
            .iter()
            .all(|r| r.method != "DELETE" && r.path != "/api/delete")
    );
}

async fn failed_auto_pull_is_reported_without_unhealthy(server: TestServer) {
    let fake = FakeLlm::start().await;
    fake.script_pull("huge", Pull::failing("no space left on device"));
    let backend = create(&server, "ollama", pb::BackendType::Ollama, &fake.url()).await;
    declare(&server, "local", "huge", &backend.id).await;
    let client = server.backends();
    let failed = eventually(
        "the failed auto-pull in last_error",
        || listed(&client, &backend.id),
        |b| state(b).last_error.contains("no space left"),
    )
    .await;
    assert_eq!(state(&failed).health, HEALTHY);
    assert!(state(&failed).last_error.contains("auto-pull"));
    // Not tried again at every cycle.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pulls = fake
        .requests()
        .iter()
        .filter(|r| r.path == "/api/pull")
        .count();
    assert_eq!(pulls, 1);
}

/// Two replicas on one PostgreSQL database, each cycling every 200 ms: the
/// backend is listed about once per interval, not once per replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_syncs_of_a_backend() {
    let url = taskloom_testkit::fresh_postgres_database().expect("fresh postgres database");
    let binary = Path::new(env!("CARGO_BIN_EXE_taskloom"));
    let start = |url: String| {
        tokio::task::spawn_blocking(move || {
            ServerProcess::start(binary, Some(&url), FAST_CYCLE).expect("start taskloom")
        })
    };
    let (first, second) = tokio::join!(start(url.clone()), start(url));
    let (first, second) = (first.unwrap(), second.unwrap());
    let connect = |process: &ServerProcess| {
        Channel::from_shared(process.addr.clone())
            .expect("endpoint")
            .connect_lazy()
    };
    let (one, two) = (
        BackendServiceClient::new(connect(&first)),
        BackendServiceClient::new(connect(&second)),
    );
    let fake = FakeLlm::start().await;
    fake.set_models(["m"]);
    let backend = one
        .clone()
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: "shared".into(),
                r#type: pb::BackendType::Ollama as i32,
                base_url: fake.url(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    eventually(
        "seen healthy by the other replica",
        || listed(&two, &backend.id),
        |b| state(b).health == HEALTHY,
    )
    .await;
    let (before, started) = (fake.list_requests(), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let listings = fake.list_requests() - before;
    let intervals = (started.elapsed().as_millis() / 200) as usize;
    // Uncoordinated replicas would list about twice per interval.
    assert!(
        listings >= intervals / 3,
        "{listings} listings in {intervals} intervals"
    );
    assert!(
        listings <= intervals + 2,
        "{listings} listings in {intervals} intervals"
    );
    drop((first, second));
}
