//! Namespaces as data, against the real binary on both stores
//! (docs/security.md): NamespaceService's lifecycle and its refusals, and
//! the isolation of everything that belongs to a namespace — chains, runs
//! (attempts, events, dead letters, idempotency keys), hooks, worker
//! sessions and queues. From another namespace every id answers NOT_FOUND,
//! every list shows only its own namespace, workers get only their own
//! namespace's tasks, and pausing a queue pauses it in one namespace.
//! Deleting a namespace waits for its runs to finish, then removes what it
//! holds and revokes its keys; its `pools` restrict its model tasks.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::chains::{branch, chain, goto, noop_chain, task, text_value, worker_chain};
use common::{HookServer, TestServer, assert_invalid, error_reason, violated_fields};
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::fake_llm::{FakeLlm, Reply};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use pb::server_message::Msg as ServerMsg;
use pb::worker_message::Msg as WorkerMsg;

api_tests!(
    namespaces_are_created_listed_updated_and_deleted,
    an_unknown_namespace_is_not_found,
    chains_are_isolated,
    runs_are_isolated,
    request_ids_are_per_namespace,
    hooks_are_isolated,
    workers_and_queues_are_isolated,
    lease_tokens_open_nothing_in_another_namespace,
    delete_waits_for_unfinished_runs_then_removes_everything,
    only_unbound_admins_manage_namespaces,
    pools_restrict_model_tasks,
);

/// How long anything the server does at once may take to show.
const SOON: Duration = Duration::from_secs(10);
/// How long to wait for something that must not happen.
const QUIET: Duration = Duration::from_millis(1500);

/// Adds the namespace header (and a key) to every call of a client.
#[derive(Clone)]
struct Scope {
    namespace: Option<String>,
    secret: Option<String>,
}

impl tonic::service::Interceptor for Scope {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(namespace) = &self.namespace {
            request
                .metadata_mut()
                .insert("x-taskloom-namespace", namespace.parse().expect("ascii"));
        }
        if let Some(secret) = &self.secret {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {secret}").parse().expect("ascii"),
            );
        }
        Ok(request)
    }
}

type Scoped = InterceptedService<Channel, Scope>;

/// Clients whose every call names one namespace (`None`: no header, the
/// `default` namespace) and, in keys mode, one key.
#[derive(Clone)]
struct Client {
    channel: Channel,
    scope: Scope,
}

impl Client {
    /// A caller in open mode (no key).
    fn open(server: &TestServer, namespace: Option<&str>) -> Client {
        Client {
            channel: server.channel.clone(),
            scope: Scope {
                namespace: namespace.map(str::to_string),
                secret: None,
            },
        }
    }

    /// A caller in open mode on a channel of its own.
    fn on(channel: &Channel, namespace: Option<&str>) -> Client {
        Client {
            channel: channel.clone(),
            scope: Scope {
                namespace: namespace.map(str::to_string),
                secret: None,
            },
        }
    }

    /// A caller with a key.
    fn keyed(server: &TestServer, namespace: Option<&str>, secret: &str) -> Client {
        Client {
            channel: server.channel.clone(),
            scope: Scope {
                namespace: namespace.map(str::to_string),
                secret: Some(secret.to_string()),
            },
        }
    }

    fn chains(&self) -> pb::chain_service_client::ChainServiceClient<Scoped> {
        pb::chain_service_client::ChainServiceClient::with_interceptor(
            self.channel.clone(),
            self.scope.clone(),
        )
    }

    fn runs(&self) -> pb::run_service_client::RunServiceClient<Scoped> {
        pb::run_service_client::RunServiceClient::with_interceptor(
            self.channel.clone(),
            self.scope.clone(),
        )
    }

    fn hooks(&self) -> pb::hook_service_client::HookServiceClient<Scoped> {
        pb::hook_service_client::HookServiceClient::with_interceptor(
            self.channel.clone(),
            self.scope.clone(),
        )
    }

    fn workers(&self) -> pb::worker_service_client::WorkerServiceClient<Scoped> {
        pb::worker_service_client::WorkerServiceClient::with_interceptor(
            self.channel.clone(),
            self.scope.clone(),
        )
    }

    fn operations(&self) -> pb::operations_service_client::OperationsServiceClient<Scoped> {
        pb::operations_service_client::OperationsServiceClient::with_interceptor(
            self.channel.clone(),
            self.scope.clone(),
        )
    }

    fn namespaces(&self) -> pb::namespace_service_client::NamespaceServiceClient<Scoped> {
        pb::namespace_service_client::NamespaceServiceClient::with_interceptor(
            self.channel.clone(),
            self.scope.clone(),
        )
    }

    fn keys(&self) -> pb::key_service_client::KeyServiceClient<Scoped> {
        pb::key_service_client::KeyServiceClient::with_interceptor(
            self.channel.clone(),
            self.scope.clone(),
        )
    }

    fn backends(&self) -> pb::backend_service_client::BackendServiceClient<Scoped> {
        pb::backend_service_client::BackendServiceClient::with_interceptor(
            self.channel.clone(),
            self.scope.clone(),
        )
    }

    /// Where this client's calls go, for messages.
    fn name(&self) -> &str {
        self.scope.namespace.as_deref().unwrap_or("default")
    }
}

/// A status's code and message, without its binary details.
fn brief(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// Asserts that `result` is a NOT_FOUND.
#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) {
    match result {
        Err(status) => assert_eq!(status.code(), Code::NotFound, "{what}: {status:?}"),
        Ok(answer) => panic!("{what}: expected NOT_FOUND, got {answer:?}"),
    }
}

/// Asserts that `result` is the NOT_FOUND of a namespace that does not
/// exist.
#[track_caller]
fn assert_namespace_not_found<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) {
    match result {
        Err(status) => {
            assert_eq!(status.code(), Code::NotFound, "{what}: {status:?}");
            assert_eq!(
                error_reason(&status),
                "NAMESPACE_NOT_FOUND",
                "{what}: {status:?}"
            );
        }
        Ok(answer) => panic!("{what}: expected NAMESPACE_NOT_FOUND, got {answer:?}"),
    }
}

#[track_caller]
fn assert_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, what: &str) {
    match result {
        Err(status) => assert_eq!(status.code(), code, "{what}: {status:?}"),
        Ok(answer) => panic!("{what}: expected {code:?}, got {answer:?}"),
    }
}

/// A refusal of pools that do not exist: NOT_FOUND, or INVALID_ARGUMENT
/// naming `pools`.
#[track_caller]
fn assert_pools_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) {
    let status = match result {
        Err(status) => status,
        Ok(answer) => panic!("{what}: expected a refusal of the pools, got {answer:?}"),
    };
    match status.code() {
        Code::NotFound => {}
        Code::InvalidArgument => {
            let fields = violated_fields(&status);
            assert!(
                !fields.is_empty() && fields.iter().all(|f| f.starts_with("pools")),
                "{what}: {status:?}"
            );
        }
        _ => panic!("{what}: expected NOT_FOUND or INVALID_ARGUMENT, got {status:?}"),
    }
}

async fn create_namespace(client: &Client, name: &str) -> pb::Namespace {
    client
        .namespaces()
        .create_namespace(pb::CreateNamespaceRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("create namespace {name}: {status:?}"))
        .into_inner()
}

async fn namespace_names(client: &Client) -> Vec<String> {
    client
        .namespaces()
        .list_namespaces(pb::ListNamespacesRequest {})
        .await
        .expect("list namespaces")
        .into_inner()
        .namespaces
        .into_iter()
        .map(|namespace| namespace.name)
        .collect()
}

async fn create_chain(client: &Client, chain: pb::Chain) -> pb::Chain {
    let id = chain.id.clone();
    client
        .chains()
        .create_chain(pb::CreateChainRequest {
            chain: Some(chain),
            request_id: String::new(),
        })
        .await
        .unwrap_or_else(|status| panic!("create chain {id} in {}: {status:?}", client.name()))
        .into_inner()
}

async fn chain_ids(client: &Client) -> HashSet<String> {
    client
        .chains()
        .list_chains(pb::ListChainsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list chains")
        .into_inner()
        .chains
        .into_iter()
        .map(|chain| chain.id)
        .collect()
}

fn start_request(chain_id: &str, request_id: &str) -> pb::StartRunRequest {
    pb::StartRunRequest {
        chain_id: chain_id.into(),
        run_input: Some(pb::start_run_request::RunInput::TypedInput(text_value(
            "go",
        ))),
        request_id: request_id.into(),
        ..Default::default()
    }
}

async fn start(client: &Client, chain_id: &str) -> pb::Run {
    client
        .runs()
        .start_run(start_request(chain_id, ""))
        .await
        .unwrap_or_else(|status| panic!("start {chain_id} in {}: {status:?}", client.name()))
        .into_inner()
}

async fn get_run(client: &Client, run_id: &str) -> pb::Run {
    client
        .runs()
        .get_run(pb::GetRunRequest { id: run_id.into() })
        .await
        .unwrap_or_else(|status| panic!("get run {run_id} in {}: {status:?}", client.name()))
        .into_inner()
}

async fn wait_status(client: &Client, run_id: &str, status: pb::RunStatus) -> pb::Run {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = get_run(client, run_id).await;
        if run.status == status as i32 {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} never reached {status:?}: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for a run to end; returns it as it ended.
async fn wait_finished(client: &Client, run_id: &str) -> pb::Run {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = get_run(client, run_id).await;
        if [
            pb::RunStatus::Succeeded,
            pb::RunStatus::Failed,
            pb::RunStatus::Cancelled,
        ]
        .iter()
        .any(|status| run.status == *status as i32)
        {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} never ended: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_ids(client: &Client) -> HashSet<String> {
    client
        .runs()
        .list_runs(pb::ListRunsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list runs")
        .into_inner()
        .runs
        .into_iter()
        .map(|run| run.id)
        .collect()
}

/// WatchRun's outcome: an error before or as the first message, or Ok when
/// an event (or a clean end) came.
async fn watch(client: &Client, run_id: &str) -> Result<Option<pb::RunEvent>, tonic::Status> {
    let mut stream = client
        .runs()
        .watch_run(pb::WatchRunRequest {
            run_id: run_id.into(),
            after_seq: 0,
            include_deltas: false,
        })
        .await?
        .into_inner();
    tokio::time::timeout(SOON, stream.message())
        .await
        .expect("the watch answers")
}

/// A chain whose one `human_input` task waits for an answer, then ends.
fn approval_chain() -> pb::Chain {
    let mut ask = task(
        "ask",
        "human_input",
        vec![branch("default", "", goto("end"))],
    );
    ask.prompt_template = "Approve {{ input }}?".into();
    chain("approval", vec![ask])
}

fn answer(run_id: &str) -> pb::SubmitInputRequest {
    pb::SubmitInputRequest {
        run_id: run_id.into(),
        task_id: "ask".into(),
        answer: Some(pb::submit_input_request::Answer::TypedInput(text_value(
            "yes",
        ))),
        request_id: String::new(),
    }
}

/// A chain whose one task fails.
fn failing_chain() -> pb::Chain {
    let mut fail = task("fail", "raise_error", vec![]);
    fail.error_message = "on purpose".into();
    chain("failing", vec![fail])
}

fn hook(name: &str, url: &str) -> pb::Hook {
    pb::Hook {
        name: name.into(),
        description: format!("{name} at {url}"),
        url: url.into(),
        timeout: Some(prost_types::Duration {
            seconds: 10,
            nanos: 0,
        }),
        ..Default::default()
    }
}

async fn create_hook(client: &Client, hook: pb::Hook) -> pb::Hook {
    client
        .hooks()
        .create_hook(pb::CreateHookRequest {
            hook: Some(hook),
            request_id: String::new(),
        })
        .await
        .expect("create hook")
        .into_inner()
}

/// One hook task calling `hook`, then the end.
fn hook_chain(id: &str, hook: &str) -> pb::Chain {
    let mut call = task("call", "hook", vec![branch("default", "", goto("end"))]);
    call.hook = Some(pb::HookCall {
        name: hook.into(),
        args: Default::default(),
    });
    chain(id, vec![call])
}

async fn hook_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .hooks()
        .list_hooks(pb::ListHooksRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list hooks")
        .into_inner()
        .hooks
        .into_iter()
        .map(|hook| hook.name)
        .collect();
    names.sort();
    names
}

async fn queue(client: &Client, name: &str) -> Option<pb::Queue> {
    client
        .operations()
        .list_queues(pb::ListQueuesRequest {})
        .await
        .expect("list queues")
        .into_inner()
        .queues
        .into_iter()
        .find(|queue| queue.name == name)
}

async fn worker_ids(client: &Client) -> Vec<String> {
    client
        .workers()
        .list_workers(pb::ListWorkersRequest::default())
        .await
        .expect("list workers")
        .into_inner()
        .workers
        .into_iter()
        .map(|worker| worker.worker_id)
        .collect()
}

async fn dead_letters(client: &Client) -> Vec<pb::TaskAttempt> {
    client
        .workers()
        .list_dead_letters(pb::ListDeadLettersRequest::default())
        .await
        .expect("list dead letters")
        .into_inner()
        .attempts
}

/// A worker on a `Connect` stream opened in one namespace. A background
/// task answers pings and passes lease offers on.
struct Worker {
    _outbound: mpsc::Sender<pb::WorkerMessage>,
    offers: mpsc::UnboundedReceiver<pb::LeaseOffer>,
}

impl Worker {
    async fn connect(
        client: &Client,
        worker_id: &str,
        queue: &str,
    ) -> Result<Worker, tonic::Status> {
        let (outbound, receiver) = mpsc::channel(64);
        outbound
            .send(pb::WorkerMessage {
                msg: Some(WorkerMsg::Hello(pb::Hello {
                    worker_id: worker_id.into(),
                    name: format!("{worker_id} in {}", client.name()),
                    queues: vec![queue.into()],
                    slots: 4,
                    sdk_version: "taskloom-rust-tests/0".into(),
                    ..Default::default()
                })),
            })
            .await
            .expect("queue hello");
        let mut inbound = client
            .workers()
            .connect(ReceiverStream::new(receiver))
            .await?
            .into_inner();
        match inbound.message().await? {
            Some(pb::ServerMessage {
                msg: Some(ServerMsg::Welcome(_)),
            }) => {}
            other => panic!("expected a welcome, got {other:?}"),
        }
        let (forward, offers) = mpsc::unbounded_channel();
        let pongs = outbound.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                match message.msg {
                    Some(ServerMsg::Ping(ping)) => {
                        let pong = WorkerMsg::Pong(pb::Pong { nonce: ping.nonce });
                        let _ = pongs.send(pb::WorkerMessage { msg: Some(pong) }).await;
                    }
                    Some(ServerMsg::Lease(offer)) => {
                        // The test stopped listening: the worker is done.
                        let Ok(()) = forward.send(offer) else { return };
                    }
                    _ => {}
                }
            }
        });
        Ok(Worker {
            _outbound: outbound,
            offers,
        })
    }

    async fn offer(&mut self, within: Duration) -> Option<pb::LeaseOffer> {
        tokio::time::timeout(within, self.offers.recv())
            .await
            .ok()
            .flatten()
    }
}

async fn complete(client: &Client, offer: &pb::LeaseOffer) {
    client
        .workers()
        .complete_task(pb::CompleteTaskRequest {
            attempt_id: offer.attempt_id.clone(),
            lease_token: offer.lease_token.clone(),
            output: Some(text_value("done")),
        })
        .await
        .expect("complete task");
}

/// A lease token is the credential of one attempt in its namespace:
/// CompleteTask, FailTask and ExtendLease with team-a's token answer
/// NOT_FOUND from team-b (as the attempt's id would) and change nothing;
/// the worker in team-a still completes its task.
async fn lease_tokens_open_nothing_in_another_namespace(server: TestServer) {
    let open = Client::open(&server, None);
    create_namespace(&open, "team-a").await;
    create_namespace(&open, "team-b").await;
    let a = Client::open(&server, Some("team-a"));
    let b = Client::open(&server, Some("team-b"));
    create_chain(&a, worker_chain("job", "q")).await;
    let run = start(&a, "job").await;
    let mut worker = Worker::connect(&a, "worker-a", "q")
        .await
        .expect("connect in team-a");
    let offer = worker.offer(SOON).await.expect("team-a's task");
    let (attempt_id, lease_token) = (offer.attempt_id.clone(), offer.lease_token.clone());

    let completed = b
        .workers()
        .complete_task(pb::CompleteTaskRequest {
            attempt_id: attempt_id.clone(),
            lease_token: lease_token.clone(),
            output: Some(text_value("stolen")),
        })
        .await;
    assert_not_found(completed, "CompleteTask from team-b");
    let failed = b
        .workers()
        .fail_task(pb::FailTaskRequest {
            attempt_id: attempt_id.clone(),
            lease_token: lease_token.clone(),
            message: "from team-b".into(),
            ..Default::default()
        })
        .await;
    assert_not_found(failed, "FailTask from team-b");
    let extended = b
        .workers()
        .extend_lease(pb::ExtendLeaseRequest {
            attempt_id: attempt_id.clone(),
            lease_token: lease_token.clone(),
            ..Default::default()
        })
        .await;
    assert_not_found(extended, "ExtendLease from team-b");
    assert_eq!(get_run(&a, &run.id).await.status(), pb::RunStatus::Running);

    complete(&a, &offer).await;
    let ended = wait_status(&a, &run.id, pb::RunStatus::Succeeded).await;
    assert_eq!(ended.output, Some(text_value("done")));

    // An attempt of the shared internal queue is its run's namespace's: a
    // stale token is fenced there (FAILED_PRECONDITION), not found elsewhere.
    create_chain(&a, chain("quick", vec![task("only", "noop", vec![])])).await;
    let quick = start(&a, "quick").await;
    wait_status(&a, &quick.id, pb::RunStatus::Succeeded).await;
    let attempts = a
        .runs()
        .list_run_attempts(pb::ListRunAttemptsRequest {
            run_id: quick.id.clone(),
            ..Default::default()
        })
        .await
        .expect("list attempts")
        .into_inner()
        .attempts;
    for (client, code) in [(&a, Code::FailedPrecondition), (&b, Code::NotFound)] {
        let stale = client
            .workers()
            .complete_task(pb::CompleteTaskRequest {
                attempt_id: attempts[0].id.clone(),
                lease_token: "stale".into(),
                output: Some(text_value("late")),
            })
            .await;
        assert_code(
            stale,
            code,
            &format!("a stale internal lease from {}", client.name()),
        );
    }
}

/// Namespaces are created, read, listed by name, updated and deleted;
/// names, pools and the `default` namespace are guarded.
async fn namespaces_are_created_listed_updated_and_deleted(server: TestServer) {
    let open = Client::open(&server, None);
    let mut namespaces = open.namespaces();
    assert_eq!(namespace_names(&open).await, ["default"]);
    let default = namespaces
        .get_namespace(pb::GetNamespaceRequest {
            name: "default".into(),
        })
        .await
        .expect("default exists")
        .into_inner();
    assert_eq!(default.created_by, "system");
    assert!(default.pools.is_empty());

    let team_b = namespaces
        .create_namespace(pb::CreateNamespaceRequest {
            name: "team-b".into(),
            description: "the B team".into(),
            pools: vec![],
        })
        .await
        .expect("create team-b")
        .into_inner();
    assert_eq!(team_b.name, "team-b");
    assert_eq!(team_b.description, "the B team");
    assert!(team_b.pools.is_empty());
    assert_eq!(team_b.created_by, "local");
    assert!(team_b.create_time.is_some());
    let team_a = namespaces
        .create_namespace(pb::CreateNamespaceRequest {
            name: "team-a".into(),
            description: String::new(),
            pools: vec!["internal_tasks_pool".into()],
        })
        .await
        .expect("create team-a")
        .into_inner();
    assert_eq!(team_a.pools, ["internal_tasks_pool"]);
    let longest = "a".repeat(63);
    create_namespace(&open, &longest).await;
    create_namespace(&open, "0-9").await;
    // By name, `default` included.
    assert_eq!(
        namespace_names(&open).await,
        ["0-9", longest.as_str(), "default", "team-a", "team-b"]
    );
    let got = namespaces
        .get_namespace(pb::GetNamespaceRequest {
            name: "team-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (&got.name, &got.description, &got.pools, &got.created_by),
        (
            &team_a.name,
            &team_a.description,
            &team_a.pools,
            &team_a.created_by
        )
    );
    assert_eq!(
        got.create_time.map(|t| t.seconds),
        team_a.create_time.map(|t| t.seconds)
    );

    // Taken names.
    for name in ["team-a", "default"] {
        let taken = namespaces
            .create_namespace(pb::CreateNamespaceRequest {
                name: name.into(),
                ..Default::default()
            })
            .await;
        assert_code(taken, Code::AlreadyExists, name);
    }
    // Bad names: 1 to 63 lowercase letters, digits and `-`.
    let too_long = "a".repeat(64);
    for name in [
        "",
        "Team-A",
        "team_a",
        "team a",
        "team.a",
        "équipe",
        too_long.as_str(),
    ] {
        let status = namespaces
            .create_namespace(pb::CreateNamespaceRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .expect_err(name);
        assert_invalid(status, &["name"]);
    }
    let status = namespaces
        .create_namespace(pb::CreateNamespaceRequest {
            name: "wordy".into(),
            description: "x".repeat(1025),
            pools: vec![],
        })
        .await
        .unwrap_err();
    assert_invalid(status, &["description"]);
    // Pools must exist.
    let refused = namespaces
        .create_namespace(pb::CreateNamespaceRequest {
            name: "team-c".into(),
            description: String::new(),
            pools: vec!["internal_tasks_pool".into(), "no-such-pool".into()],
        })
        .await;
    assert_pools_refused(refused, "create with a missing pool");
    assert_not_found(
        namespaces
            .get_namespace(pb::GetNamespaceRequest {
                name: "team-c".into(),
            })
            .await,
        "a refused namespace was not created",
    );
    assert_not_found(
        namespaces
            .get_namespace(pb::GetNamespaceRequest {
                name: "nobody".into(),
            })
            .await,
        "get a missing namespace",
    );

    // Update replaces description and pools.
    let updated = namespaces
        .update_namespace(pb::UpdateNamespaceRequest {
            name: "team-b".into(),
            description: "renamed".into(),
            pools: vec!["internal_tasks_pool".into()],
        })
        .await
        .expect("update team-b")
        .into_inner();
    assert_eq!(updated.description, "renamed");
    assert_eq!(updated.pools, ["internal_tasks_pool"]);
    assert_eq!(updated.created_by, "local");
    let got = namespaces
        .get_namespace(pb::GetNamespaceRequest {
            name: "team-b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (got.description, got.pools),
        (updated.description, updated.pools)
    );
    let cleared = namespaces
        .update_namespace(pb::UpdateNamespaceRequest {
            name: "team-b".into(),
            description: String::new(),
            pools: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(cleared.description.is_empty() && cleared.pools.is_empty());
    assert_not_found(
        namespaces
            .update_namespace(pb::UpdateNamespaceRequest {
                name: "nobody".into(),
                ..Default::default()
            })
            .await,
        "update a missing namespace",
    );
    let refused = namespaces
        .update_namespace(pb::UpdateNamespaceRequest {
            name: "team-b".into(),
            description: String::new(),
            pools: vec!["no-such-pool".into()],
        })
        .await;
    assert_pools_refused(refused, "update with a missing pool");
    let unchanged = namespaces
        .get_namespace(pb::GetNamespaceRequest {
            name: "team-b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(unchanged.pools.is_empty(), "{unchanged:?}");

    // Delete.
    assert_code(
        namespaces
            .delete_namespace(pb::DeleteNamespaceRequest {
                name: "default".into(),
            })
            .await,
        Code::FailedPrecondition,
        "delete default",
    );
    assert_not_found(
        namespaces
            .delete_namespace(pb::DeleteNamespaceRequest {
                name: "nobody".into(),
            })
            .await,
        "delete a missing namespace",
    );
    let deleted = namespaces
        .delete_namespace(pb::DeleteNamespaceRequest {
            name: "team-b".into(),
        })
        .await
        .expect("delete team-b")
        .into_inner();
    assert_eq!(deleted.deleted_runs, 0);
    assert_eq!(
        namespace_names(&open).await,
        ["0-9", longest.as_str(), "default", "team-a"]
    );
    assert_not_found(
        namespaces
            .get_namespace(pb::GetNamespaceRequest {
                name: "team-b".into(),
            })
            .await,
        "get a deleted namespace",
    );
    let gone = Client::open(&server, Some("team-b"));
    assert_namespace_not_found(
        gone.chains()
            .list_chains(pb::ListChainsRequest::default())
            .await,
        "list chains in a deleted namespace",
    );
    // The name is free again.
    let again = create_namespace(&open, "team-b").await;
    assert!(again.description.is_empty());
    assert!(chain_ids(&gone).await.is_empty());
}

/// A call naming a namespace that does not exist is NOT_FOUND and writes
/// nothing; NamespaceService calls name namespaces in their requests.
async fn an_unknown_namespace_is_not_found(server: TestServer) {
    let ghost = Client::open(&server, Some("ghost"));
    assert_namespace_not_found(
        ghost
            .chains()
            .create_chain(pb::CreateChainRequest {
                chain: Some(noop_chain("haunted", 1)),
                request_id: String::new(),
            })
            .await,
        "CreateChain",
    );
    assert_namespace_not_found(
        ghost
            .chains()
            .list_chains(pb::ListChainsRequest::default())
            .await,
        "ListChains",
    );
    assert_namespace_not_found(
        ghost
            .runs()
            .start_run(pb::StartRunRequest {
                chain: Some(noop_chain("inline", 1)),
                ..start_request("", "ghost-start")
            })
            .await,
        "StartRun",
    );
    assert_namespace_not_found(
        ghost.runs().list_runs(pb::ListRunsRequest::default()).await,
        "ListRuns",
    );
    assert_namespace_not_found(
        ghost
            .hooks()
            .create_hook(pb::CreateHookRequest {
                hook: Some(hook("haunt", "http://127.0.0.1:9/hook")),
                request_id: String::new(),
            })
            .await,
        "CreateHook",
    );
    assert_namespace_not_found(
        ghost
            .hooks()
            .list_hooks(pb::ListHooksRequest::default())
            .await,
        "ListHooks",
    );
    assert_namespace_not_found(
        ghost
            .workers()
            .list_workers(pb::ListWorkersRequest::default())
            .await,
        "ListWorkers",
    );
    assert_namespace_not_found(
        ghost
            .workers()
            .list_dead_letters(pb::ListDeadLettersRequest::default())
            .await,
        "ListDeadLetters",
    );
    assert_namespace_not_found(
        ghost
            .operations()
            .list_queues(pb::ListQueuesRequest {})
            .await,
        "ListQueues",
    );
    assert_namespace_not_found(
        ghost
            .operations()
            .pause_queue(pb::PauseQueueRequest {
                name: "q".into(),
                request_id: String::new(),
            })
            .await,
        "PauseQueue",
    );
    match Worker::connect(&ghost, "w-ghost", "q").await {
        Err(status) => {
            assert_eq!(status.code(), Code::NotFound, "{status:?}");
            assert_eq!(error_reason(&status), "NAMESPACE_NOT_FOUND", "{status:?}");
        }
        Ok(_) => panic!("a worker connected in a namespace that does not exist"),
    }

    // NamespaceService answers whatever the header names: this creates
    // the namespace the header names.
    let names = namespace_names(&ghost).await;
    assert_eq!(names, ["default"]);
    create_namespace(&ghost, "ghost").await;
    // Nothing of the refused calls was written.
    assert!(chain_ids(&ghost).await.is_empty());
    assert!(run_ids(&ghost).await.is_empty());
    assert!(hook_names(&ghost).await.is_empty());
    assert!(queue(&ghost, "q").await.is_none());
    // Names are still checked where they are named.
    let bad = Client::open(&server, Some("Not_A_Name"));
    let status = bad
        .chains()
        .list_chains(pb::ListChainsRequest::default())
        .await
        .unwrap_err();
    assert_invalid(status, &["x-taskloom-namespace"]);
}

/// Chains of one namespace are invisible from every other; the same chain
/// id lives independently in two namespaces.
async fn chains_are_isolated(server: TestServer) {
    let open = Client::open(&server, None);
    create_namespace(&open, "team-a").await;
    create_namespace(&open, "team-b").await;
    let a = Client::open(&server, Some("team-a"));
    let b = Client::open(&server, Some("team-b"));
    create_chain(&a, noop_chain("only-a", 1)).await;
    create_chain(&a, noop_chain("shared", 1)).await;
    create_chain(&b, noop_chain("shared", 3)).await;
    a.chains()
        .update_chain(pb::UpdateChainRequest {
            chain: Some(noop_chain("shared", 2)),
            ..Default::default()
        })
        .await
        .expect("update shared in team-a");

    for other in [&b, &open] {
        let what = |rpc: &str| format!("{rpc} of team-a's chain from {}", other.name());
        let mut chains = other.chains();
        assert_not_found(
            chains
                .get_chain(pb::GetChainRequest {
                    id: "only-a".into(),
                    version: 0,
                })
                .await,
            &what("GetChain"),
        );
        assert_not_found(
            chains
                .get_chain(pb::GetChainRequest {
                    id: "only-a".into(),
                    version: 1,
                })
                .await,
            &what("GetChain (version 1)"),
        );
        assert_not_found(
            chains
                .list_chain_versions(pb::ListChainVersionsRequest {
                    id: "only-a".into(),
                    ..Default::default()
                })
                .await,
            &what("ListChainVersions"),
        );
        assert_not_found(
            chains
                .update_chain(pb::UpdateChainRequest {
                    chain: Some(noop_chain("only-a", 2)),
                    ..Default::default()
                })
                .await,
            &what("UpdateChain"),
        );
        assert_not_found(
            chains
                .delete_chain(pb::DeleteChainRequest {
                    id: "only-a".into(),
                    ..Default::default()
                })
                .await,
            &what("DeleteChain"),
        );
        assert_not_found(
            other.runs().start_run(start_request("only-a", "")).await,
            &what("StartRun"),
        );
        assert_not_found(
            other
                .runs()
                .execute_chain(pb::ExecuteChainRequest {
                    chain_id: "only-a".into(),
                    run_input: Some(pb::execute_chain_request::RunInput::TypedInput(text_value(
                        "go",
                    ))),
                    wait_timeout: Some(prost_types::Duration {
                        seconds: 10,
                        nanos: 0,
                    }),
                    ..Default::default()
                })
                .await,
            &what("ExecuteChain"),
        );
        let watched = other
            .runs()
            .start_and_watch_run(pb::StartAndWatchRunRequest {
                start: Some(start_request("only-a", "")),
                after_seq: 0,
                include_deltas: false,
            })
            .await;
        match watched {
            Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
            Ok(stream) => {
                let first = tokio::time::timeout(SOON, stream.into_inner().message())
                    .await
                    .expect("the watch answers");
                assert_not_found(first, &what("StartAndWatchRun"));
            }
        }
    }

    // Lists show the caller's namespace only.
    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
    assert_eq!(chain_ids(&a).await, ids(&["only-a", "shared"]));
    assert_eq!(chain_ids(&b).await, ids(&["shared"]));
    assert!(chain_ids(&open).await.is_empty());

    // The same id, two chains.
    let shared_a = a
        .chains()
        .get_chain(pb::GetChainRequest {
            id: "shared".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((shared_a.version, shared_a.tasks.len()), (2, 2));
    let shared_b = b
        .chains()
        .get_chain(pb::GetChainRequest {
            id: "shared".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((shared_b.version, shared_b.tasks.len()), (1, 3));
    let versions = |client: &Client| {
        let mut chains = client.chains();
        async move {
            chains
                .list_chain_versions(pb::ListChainVersionsRequest {
                    id: "shared".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .chains
                .len()
        }
    };
    assert_eq!(versions(&a).await, 2);
    assert_eq!(versions(&b).await, 1);
    // A run of `shared` in B runs B's chain.
    let run = start(&b, "shared").await;
    assert_eq!(run.chain_version, 1);
    let done = wait_status(&b, &run.id, pb::RunStatus::Succeeded).await;
    assert_eq!(done.steps, 3, "{done:?}");
    // An inline chain is stored in the caller's namespace.
    let inline = b
        .runs()
        .start_run(pb::StartRunRequest {
            chain: Some(noop_chain("inline", 1)),
            ..start_request("", "")
        })
        .await
        .expect("inline run in team-b")
        .into_inner();
    wait_status(&b, &inline.id, pb::RunStatus::Succeeded).await;
    assert!(chain_ids(&b).await.contains("inline"));
    assert!(!chain_ids(&a).await.contains("inline"));

    // Deleting B's `shared` leaves A's.
    b.chains()
        .delete_chain(pb::DeleteChainRequest {
            id: "shared".into(),
            ..Default::default()
        })
        .await
        .expect("delete shared in team-b");
    assert_eq!(chain_ids(&a).await, ids(&["only-a", "shared"]));
    // Nothing done from B touched A's `only-a`.
    let only_a = a
        .chains()
        .get_chain(pb::GetChainRequest {
            id: "only-a".into(),
            version: 0,
        })
        .await
        .expect("only-a survives")
        .into_inner();
    assert_eq!((only_a.version, only_a.tasks.len()), (1, 1));
}

/// Runs of one namespace — their events, attempts and every action on
/// them — are NOT_FOUND from every other, and nothing done there changes
/// them.
async fn runs_are_isolated(server: TestServer) {
    let open = Client::open(&server, None);
    create_namespace(&open, "team-a").await;
    create_namespace(&open, "team-b").await;
    let a = Client::open(&server, Some("team-a"));
    let b = Client::open(&server, Some("team-b"));
    create_chain(&a, approval_chain()).await;
    create_chain(&a, noop_chain("quick", 1)).await;
    create_chain(&a, failing_chain()).await;
    let waiting = start(&a, "approval").await;
    wait_status(&a, &waiting.id, pb::RunStatus::WaitingInput).await;
    let done = start(&a, "quick").await;
    wait_status(&a, &done.id, pb::RunStatus::Succeeded).await;
    let failed = start(&a, "failing").await;
    wait_status(&a, &failed.id, pb::RunStatus::Failed).await;
    // A run of B's own, so B's lists are not empty by accident.
    create_chain(&b, noop_chain("quick", 1)).await;
    let own = start(&b, "quick").await;
    wait_status(&b, &own.id, pb::RunStatus::Succeeded).await;

    for other in [&b, &open] {
        let mut runs = other.runs();
        for run in [&waiting, &done, &failed] {
            let what =
                |rpc: &str| format!("{rpc} of team-a's run {} from {}", run.id, other.name());
            assert_not_found(
                runs.get_run(pb::GetRunRequest { id: run.id.clone() }).await,
                &what("GetRun"),
            );
            assert_not_found(
                runs.list_run_events(pb::ListRunEventsRequest {
                    run_id: run.id.clone(),
                    ..Default::default()
                })
                .await,
                &what("ListRunEvents"),
            );
            assert_not_found(
                runs.list_run_attempts(pb::ListRunAttemptsRequest {
                    run_id: run.id.clone(),
                    ..Default::default()
                })
                .await,
                &what("ListRunAttempts"),
            );
            assert_not_found(watch(other, &run.id).await, &what("WatchRun"));
            assert_not_found(
                runs.replay_run(pb::ReplayRunRequest { id: run.id.clone() })
                    .await,
                &what("ReplayRun"),
            );
        }
        let what = |rpc: &str| format!("{rpc} of a team-a run from {}", other.name());
        assert_not_found(
            runs.pause_run(pb::PauseRunRequest {
                id: waiting.id.clone(),
                ..Default::default()
            })
            .await,
            &what("PauseRun"),
        );
        assert_not_found(
            runs.resume_run(pb::ResumeRunRequest {
                id: waiting.id.clone(),
                ..Default::default()
            })
            .await,
            &what("ResumeRun"),
        );
        assert_not_found(
            runs.submit_input(answer(&waiting.id)).await,
            &what("SubmitInput"),
        );
        assert_not_found(
            runs.cancel_run(pb::CancelRunRequest {
                id: waiting.id.clone(),
                ..Default::default()
            })
            .await,
            &what("CancelRun"),
        );
        assert_not_found(
            runs.retry_run(pb::RetryRunRequest {
                id: failed.id.clone(),
                ..Default::default()
            })
            .await,
            &what("RetryRun"),
        );
        assert_not_found(
            runs.delete_run(pb::DeleteRunRequest {
                id: done.id.clone(),
                ..Default::default()
            })
            .await,
            &what("DeleteRun"),
        );
    }

    // Nothing done from elsewhere changed A's runs.
    let still = get_run(&a, &waiting.id).await;
    assert_eq!(
        still.status,
        pb::RunStatus::WaitingInput as i32,
        "{still:?}"
    );
    assert_eq!(
        get_run(&a, &failed.id).await.status,
        pb::RunStatus::Failed as i32
    );
    assert_eq!(
        get_run(&a, &done.id).await.status,
        pb::RunStatus::Succeeded as i32
    );
    assert!(
        watch(&a, &done.id)
            .await
            .expect("watch in team-a")
            .is_some()
    );
    // Their own namespace steers them.
    a.runs()
        .submit_input(answer(&waiting.id))
        .await
        .expect("answer in team-a");
    wait_status(&a, &waiting.id, pb::RunStatus::Succeeded).await;
    a.runs()
        .delete_run(pb::DeleteRunRequest {
            id: done.id.clone(),
            ..Default::default()
        })
        .await
        .expect("delete in team-a");
    assert_not_found(
        a.runs()
            .get_run(pb::GetRunRequest {
                id: done.id.clone(),
            })
            .await,
        "a deleted run",
    );

    // Lists show the caller's runs only.
    let expected: HashSet<String> = [&waiting.id, &failed.id].into_iter().cloned().collect();
    assert_eq!(run_ids(&a).await, expected);
    assert_eq!(run_ids(&b).await, HashSet::from([own.id.clone()]));
    assert!(run_ids(&open).await.is_empty());
    let by_chain = b
        .runs()
        .list_runs(pb::ListRunsRequest {
            chain_id: "quick".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(by_chain.len(), 1, "{by_chain:?}");
    assert_eq!(by_chain[0].id, own.id);
}

/// A request_id is a key within one namespace: the same one starts one run
/// per namespace (each of its own namespace's chain), creates a chain and
/// pauses a queue in each, and stays idempotent within each.
async fn request_ids_are_per_namespace(server: TestServer) {
    let open = Client::open(&server, None);
    create_namespace(&open, "team-a").await;
    create_namespace(&open, "team-b").await;
    let a = Client::open(&server, Some("team-a"));
    let b = Client::open(&server, Some("team-b"));
    let everywhere = [&a, &b, &open];
    // Every problem is collected, so one failure names them all.
    let mut wrong = Vec::new();

    // The same CreateChain, with the same request_id, in each namespace.
    for client in everywhere {
        let created = client
            .chains()
            .create_chain(pb::CreateChainRequest {
                chain: Some(noop_chain("twin", 1)),
                request_id: "create-once".into(),
            })
            .await;
        if let Err(status) = created {
            wrong.push(format!(
                "CreateChain in {}: {}",
                client.name(),
                brief(&status)
            ));
        }
    }
    for client in everywhere {
        let got = client
            .chains()
            .get_chain(pb::GetChainRequest {
                id: "twin".into(),
                version: 0,
            })
            .await;
        if let Err(status) = got {
            wrong.push(format!(
                "CreateChain with a request_id used in another namespace created nothing in {}: {}",
                client.name(),
                brief(&status)
            ));
        }
    }

    // The same PauseQueue in each namespace pauses each one's queue.
    for client in everywhere {
        let paused = client
            .operations()
            .pause_queue(pb::PauseQueueRequest {
                name: "q".into(),
                request_id: "pause-once".into(),
            })
            .await;
        if let Err(status) = paused {
            wrong.push(format!(
                "PauseQueue in {}: {}",
                client.name(),
                brief(&status)
            ));
        }
    }
    for client in everywhere {
        if !queue(client, "q").await.is_some_and(|q| q.paused) {
            wrong.push(format!(
                "PauseQueue with a request_id used in another namespace left q running in {}",
                client.name()
            ));
        }
    }

    // The same StartRun in each namespace starts a run of its own chain.
    create_chain(&a, noop_chain("same", 1)).await;
    create_chain(&b, noop_chain("same", 2)).await;
    create_chain(&open, noop_chain("same", 3)).await;
    let mut started = Vec::new();
    for client in everywhere {
        let run = client
            .runs()
            .start_run(start_request("same", "start-once"))
            .await
            .unwrap_or_else(|status| panic!("start in {}: {status:?}", client.name()))
            .into_inner();
        assert_eq!(run.request_id, "start-once");
        started.push(run);
    }
    let ids: Vec<&str> = started.iter().map(|run| run.id.as_str()).collect();
    if ids[0] == ids[1] || ids[1] == ids[2] || ids[0] == ids[2] {
        wrong.push(format!(
            "StartRun with one request_id in team-a, team-b and default answered runs {ids:?}"
        ));
    }
    for (client, run, steps) in [
        (&a, &started[0], 1),
        (&b, &started[1], 2),
        (&open, &started[2], 3),
    ] {
        if let Err(status) = client
            .runs()
            .get_run(pb::GetRunRequest { id: run.id.clone() })
            .await
        {
            wrong.push(format!(
                "StartRun in {} answered run {}, which GetRun there does not find: {}",
                client.name(),
                run.id,
                brief(&status)
            ));
            continue;
        }
        let done = wait_status(client, &run.id, pb::RunStatus::Succeeded).await;
        if done.steps != steps {
            wrong.push(format!(
                "the run started in {} ran {} steps, not its own chain's {steps}",
                client.name(),
                done.steps
            ));
        }
        // Within a namespace, the key still names that one run.
        let again = client
            .runs()
            .start_run(start_request("same", "start-once"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.id, run.id, "idempotent in {}", client.name());
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Hooks of one namespace are invisible from every other; a chain runs
/// its own namespace's hook of a name, never another's.
async fn hooks_are_isolated(server: TestServer) {
    let hook_a = HookServer::start(200, r#"{"from": "a"}"#, Duration::ZERO).await;
    let hook_b = HookServer::start(200, r#"{"from": "b"}"#, Duration::ZERO).await;
    let open = Client::open(&server, None);
    create_namespace(&open, "team-a").await;
    create_namespace(&open, "team-b").await;
    let a = Client::open(&server, Some("team-a"));
    let b = Client::open(&server, Some("team-b"));
    create_hook(&a, hook("notify", &hook_a.url)).await;
    let only_a = create_hook(&a, hook("only-a", &hook_a.url)).await;
    create_hook(&b, hook("notify", &hook_b.url)).await;

    for other in [&b, &open] {
        let what = |rpc: &str| format!("{rpc} of team-a's hook from {}", other.name());
        let mut hooks = other.hooks();
        assert_not_found(
            hooks
                .get_hook(pb::GetHookRequest {
                    name: "only-a".into(),
                })
                .await,
            &what("GetHook"),
        );
        assert_not_found(
            hooks
                .update_hook(pb::UpdateHookRequest {
                    hook: Some(pb::Hook {
                        description: "taken over".into(),
                        ..hook("only-a", "http://127.0.0.1:9/elsewhere")
                    }),
                    update_mask: vec![],
                    etag: String::new(),
                })
                .await,
            &what("UpdateHook"),
        );
        assert_not_found(
            hooks
                .delete_hook(pb::DeleteHookRequest {
                    name: "only-a".into(),
                    etag: String::new(),
                })
                .await,
            &what("DeleteHook"),
        );
    }
    assert_eq!(hook_names(&a).await, ["notify", "only-a"]);
    assert_eq!(hook_names(&b).await, ["notify"]);
    assert!(hook_names(&open).await.is_empty());
    let notify_b = b
        .hooks()
        .get_hook(pb::GetHookRequest {
            name: "notify".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(notify_b.url, hook_b.url);
    // A's hook is as A made it.
    let kept = a
        .hooks()
        .get_hook(pb::GetHookRequest {
            name: "only-a".into(),
        })
        .await
        .expect("only-a survives")
        .into_inner();
    assert_eq!(
        (kept.url, kept.description),
        (only_a.url, only_a.description)
    );

    // B's chain calls B's `notify`.
    create_chain(&b, hook_chain("call-notify", "notify")).await;
    let run = start(&b, "call-notify").await;
    wait_status(&b, &run.id, pb::RunStatus::Succeeded).await;
    assert_eq!(hook_b.requests().len(), 1);
    assert!(hook_a.requests().is_empty(), "team-a's hook was called");

    // A chain in B naming A's `only-a` is refused, or its run fails: A's
    // hook is never called.
    match b
        .chains()
        .create_chain(pb::CreateChainRequest {
            chain: Some(hook_chain("call-only-a", "only-a")),
            request_id: String::new(),
        })
        .await
    {
        Err(status) => assert!(
            matches!(
                status.code(),
                Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition
            ),
            "{status:?}"
        ),
        Ok(_) => {
            let run = start(&b, "call-only-a").await;
            let ended = wait_finished(&b, &run.id).await;
            assert_eq!(ended.status, pb::RunStatus::Failed as i32, "{ended:?}");
        }
    }
    // An inline chain is the same.
    match b
        .runs()
        .start_run(pb::StartRunRequest {
            chain: Some(hook_chain("inline-only-a", "only-a")),
            ..start_request("", "")
        })
        .await
    {
        Err(status) => assert!(
            matches!(
                status.code(),
                Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition
            ),
            "{status:?}"
        ),
        Ok(run) => {
            let ended = wait_finished(&b, &run.into_inner().id).await;
            assert_eq!(ended.status, pb::RunStatus::Failed as i32, "{ended:?}");
        }
    }
    assert!(hook_a.requests().is_empty(), "team-b reached team-a's hook");
    assert_eq!(hook_b.requests().len(), 1);
}

/// Workers get only their namespace's tasks; queues, their figures, their
/// pauses, worker sessions and dead letters are per namespace.
async fn workers_and_queues_are_isolated(server: TestServer) {
    let open = Client::open(&server, None);
    create_namespace(&open, "team-a").await;
    create_namespace(&open, "team-b").await;
    let a = Client::open(&server, Some("team-a"));
    let b = Client::open(&server, Some("team-b"));
    create_chain(&a, worker_chain("job", "q")).await;
    create_chain(&b, worker_chain("job", "q")).await;
    let a_runs: HashSet<String> = [start(&a, "job").await.id, start(&a, "job").await.id].into();
    let b_run = start(&b, "job").await;

    // Queue figures count each namespace's own tasks.
    let deadline = Instant::now() + SOON;
    loop {
        let in_a = queue(&a, "q").await.map(|q| q.ready);
        let in_b = queue(&b, "q").await.map(|q| q.ready);
        if in_a == Some(2) && in_b == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "queue q: team-a {in_a:?} (want 2), team-b {in_b:?} (want 1)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(queue(&open, "q").await.is_none(), "default has no q");

    // A worker in B gets B's task, and nothing of A's.
    let mut worker_b = Worker::connect(&b, "worker-b", "q")
        .await
        .expect("connect in team-b");
    let offer = worker_b.offer(SOON).await.expect("team-b's task");
    assert_eq!(offer.run_id, b_run.id);
    // Names go out as they came in, without their namespace.
    assert_eq!(offer.queue, "q");
    assert!(
        worker_b.offer(QUIET).await.is_none(),
        "a team-a task reached a team-b worker"
    );
    complete(&b, &offer).await;
    wait_status(&b, &b_run.id, pb::RunStatus::Succeeded).await;
    assert_eq!(worker_ids(&b).await, ["worker-b"]);
    assert!(worker_ids(&a).await.is_empty());
    let sessions = b
        .workers()
        .list_workers(pb::ListWorkersRequest {
            queue: "q".into(),
            ..Default::default()
        })
        .await
        .expect("workers of q")
        .into_inner()
        .workers;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].queues, ["q"]);
    assert!(worker_ids(&open).await.is_empty());

    // Pausing A's q leaves B's q alone.
    let paused = a
        .operations()
        .pause_queue(pb::PauseQueueRequest {
            name: "q".into(),
            request_id: String::new(),
        })
        .await
        .expect("pause q in team-a")
        .into_inner();
    assert!(paused.paused);
    assert_eq!(paused.ready, 2, "{paused:?}");
    let b_queue = queue(&b, "q").await;
    assert!(b_queue.as_ref().is_none_or(|q| !q.paused), "{b_queue:?}");
    let b_run = start(&b, "job").await;
    let offer = worker_b.offer(SOON).await.expect("team-b's q still flows");
    assert_eq!(offer.run_id, b_run.id);
    complete(&b, &offer).await;
    wait_status(&b, &b_run.id, pb::RunStatus::Succeeded).await;

    // A worker in A gets nothing while A's q is paused, then A's tasks.
    let mut worker_a = Worker::connect(&a, "worker-a", "q")
        .await
        .expect("connect in team-a");
    assert!(
        worker_a.offer(QUIET).await.is_none(),
        "a paused queue offered"
    );
    assert_eq!(worker_ids(&a).await, ["worker-a"]);
    assert_eq!(worker_ids(&b).await, ["worker-b"]);
    a.operations()
        .resume_queue(pb::ResumeQueueRequest {
            name: "q".into(),
            request_id: String::new(),
        })
        .await
        .expect("resume q in team-a");
    let first = worker_a.offer(SOON).await.expect("team-a's first task");
    let second = worker_a.offer(SOON).await.expect("team-a's second task");
    let offered: HashSet<String> = [first.run_id.clone(), second.run_id.clone()].into();
    assert_eq!(offered, a_runs);
    assert!(
        worker_b.offer(QUIET).await.is_none(),
        "a team-a task reached a team-b worker"
    );

    // One fails for good: a dead letter of A only.
    complete(&a, &first).await;
    a.workers()
        .fail_task(pb::FailTaskRequest {
            attempt_id: second.attempt_id.clone(),
            lease_token: second.lease_token.clone(),
            message: "for good".into(),
            retryable: false,
            retry_delay: None,
        })
        .await
        .expect("fail in team-a");
    wait_status(&a, &first.run_id, pb::RunStatus::Succeeded).await;
    wait_status(&a, &second.run_id, pb::RunStatus::Failed).await;
    let dead = dead_letters(&a).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].id, second.attempt_id);
    assert_eq!(dead[0].queue, "q");
    let by_queue = a
        .workers()
        .list_dead_letters(pb::ListDeadLettersRequest {
            queue: "q".into(),
            ..Default::default()
        })
        .await
        .expect("dead letters of q")
        .into_inner()
        .attempts;
    assert_eq!(by_queue.len(), 1, "{by_queue:?}");
    assert!(dead_letters(&b).await.is_empty());
    let attempts = a
        .runs()
        .list_run_attempts(pb::ListRunAttemptsRequest {
            run_id: first.run_id.clone(),
            ..Default::default()
        })
        .await
        .expect("attempts in team-a")
        .into_inner()
        .attempts;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].queue, "q");
    assert!(dead_letters(&open).await.is_empty());
    // B cannot complete or see A's attempts either.
    assert_not_found(
        b.runs()
            .list_run_attempts(pb::ListRunAttemptsRequest {
                run_id: second.run_id.clone(),
                ..Default::default()
            })
            .await,
        "ListRunAttempts of team-a's run from team-b",
    );
}

/// DeleteNamespace is refused while a run has not finished; once it has,
/// the namespace goes with its chains, hooks, runs and paused queues, and
/// other namespaces keep theirs.
async fn delete_waits_for_unfinished_runs_then_removes_everything(server: TestServer) {
    let hook_server = HookServer::start(200, r#"{"ok": true}"#, Duration::ZERO).await;
    let open = Client::open(&server, None);
    create_namespace(&open, "doomed").await;
    let doomed = Client::open(&server, Some("doomed"));
    // The default namespace holds the same names, which must survive.
    create_chain(&open, noop_chain("quick", 1)).await;
    create_hook(&open, hook("h", &hook_server.url)).await;
    let kept_run = start(&open, "quick").await;
    wait_status(&open, &kept_run.id, pb::RunStatus::Succeeded).await;

    create_chain(&doomed, approval_chain()).await;
    create_chain(&doomed, noop_chain("quick", 1)).await;
    create_hook(&doomed, hook("h", &hook_server.url)).await;
    let done = start(&doomed, "quick").await;
    wait_status(&doomed, &done.id, pb::RunStatus::Succeeded).await;
    let waiting = start(&doomed, "approval").await;
    wait_status(&doomed, &waiting.id, pb::RunStatus::WaitingInput).await;
    doomed
        .operations()
        .pause_queue(pb::PauseQueueRequest {
            name: "q".into(),
            request_id: String::new(),
        })
        .await
        .expect("pause q in doomed");

    let mut namespaces = open.namespaces();
    let refused = namespaces
        .delete_namespace(pb::DeleteNamespaceRequest {
            name: "doomed".into(),
        })
        .await;
    assert_code(
        refused,
        Code::FailedPrecondition,
        "delete with a run waiting",
    );
    // Nothing went.
    assert_eq!(chain_ids(&doomed).await.len(), 2);
    get_run(&doomed, &done.id).await;
    assert_eq!(hook_names(&doomed).await, ["h"]);

    doomed
        .runs()
        .submit_input(answer(&waiting.id))
        .await
        .expect("answer");
    wait_status(&doomed, &waiting.id, pb::RunStatus::Succeeded).await;
    let deleted = namespaces
        .delete_namespace(pb::DeleteNamespaceRequest {
            name: "doomed".into(),
        })
        .await
        .expect("delete once every run finished")
        .into_inner();
    assert_eq!(deleted.deleted_runs, 2);
    assert_not_found(
        namespaces
            .get_namespace(pb::GetNamespaceRequest {
                name: "doomed".into(),
            })
            .await,
        "GetNamespace of a deleted namespace",
    );
    assert_eq!(namespace_names(&open).await, ["default"]);
    assert_namespace_not_found(
        doomed
            .chains()
            .list_chains(pb::ListChainsRequest::default())
            .await,
        "ListChains in a deleted namespace",
    );
    assert_namespace_not_found(
        doomed
            .runs()
            .get_run(pb::GetRunRequest {
                id: done.id.clone(),
            })
            .await,
        "GetRun in a deleted namespace",
    );
    assert_namespace_not_found(
        doomed
            .operations()
            .list_queues(pb::ListQueuesRequest {})
            .await,
        "ListQueues in a deleted namespace",
    );

    // The default namespace kept its own.
    assert_eq!(chain_ids(&open).await, HashSet::from(["quick".to_string()]));
    assert_eq!(hook_names(&open).await, ["h"]);
    get_run(&open, &kept_run.id).await;

    // A namespace made again under the name starts empty.
    create_namespace(&open, "doomed").await;
    assert!(chain_ids(&doomed).await.is_empty());
    assert!(run_ids(&doomed).await.is_empty());
    assert!(hook_names(&doomed).await.is_empty());
    let q = queue(&doomed, "q").await;
    assert!(q.as_ref().is_none_or(|q| !q.paused), "{q:?}");
    assert_not_found(
        doomed
            .runs()
            .get_run(pb::GetRunRequest {
                id: done.id.clone(),
            })
            .await,
        "a deleted namespace's run",
    );
    let again = namespaces
        .delete_namespace(pb::DeleteNamespaceRequest {
            name: "doomed".into(),
        })
        .await
        .expect("delete the empty namespace")
        .into_inner();
    assert_eq!(again.deleted_runs, 0);
    assert_eq!(run_ids(&open).await, HashSet::from([kept_run.id.clone()]));
}

/// Creates a key with `by` (open mode when `None`); returns (id, secret).
async fn create_key(
    server: &TestServer,
    by: Option<&str>,
    name: &str,
    role: &str,
    namespace: &str,
) -> (String, String) {
    let caller = match by {
        Some(secret) => Client::keyed(server, None, secret),
        None => Client::open(server, None),
    };
    let created = caller
        .keys()
        .create_api_key(pb::CreateApiKeyRequest {
            name: name.into(),
            role: role.into(),
            namespace: namespace.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("create key {name}: {status:?}"))
        .into_inner();
    (created.key.expect("key").id, created.secret)
}

/// Only an admin key bound to no namespace creates, updates and deletes
/// namespaces; a bound key sees its own namespace only; deleting a
/// namespace revokes the keys bound to it.
async fn only_unbound_admins_manage_namespaces(server: TestServer) {
    let (admin_id, admin_secret) = create_key(&server, None, "admin", "admin", "").await;
    let admin = Client::keyed(&server, None, &admin_secret);
    let team_a = create_namespace(&admin, "team-a").await;
    assert_eq!(team_a.created_by, format!("key:{admin_id}"));
    create_namespace(&admin, "team-b").await;

    let mut refused_callers = Vec::new();
    for role in ["operator", "viewer", "worker"] {
        let (_, secret) = create_key(&server, Some(&admin_secret), role, role, "").await;
        refused_callers.push((role.to_string(), Client::keyed(&server, None, &secret)));
    }
    let (_, bound_admin) = create_key(
        &server,
        Some(&admin_secret),
        "team admin",
        "admin",
        "team-a",
    )
    .await;
    refused_callers.push((
        "admin bound to team-a".to_string(),
        Client::keyed(&server, Some("team-a"), &bound_admin),
    ));
    for (who, caller) in &refused_callers {
        let mut namespaces = caller.namespaces();
        assert_code(
            namespaces
                .create_namespace(pb::CreateNamespaceRequest {
                    name: "team-c".into(),
                    ..Default::default()
                })
                .await,
            Code::PermissionDenied,
            &format!("CreateNamespace by {who}"),
        );
        assert_code(
            namespaces
                .update_namespace(pb::UpdateNamespaceRequest {
                    name: "team-a".into(),
                    description: "changed".into(),
                    pools: vec![],
                })
                .await,
            Code::PermissionDenied,
            &format!("UpdateNamespace by {who}"),
        );
        assert_code(
            namespaces
                .delete_namespace(pb::DeleteNamespaceRequest {
                    name: "team-a".into(),
                })
                .await,
            Code::PermissionDenied,
            &format!("DeleteNamespace by {who}"),
        );
    }
    // Nothing changed.
    assert_eq!(
        namespace_names(&admin).await,
        ["default", "team-a", "team-b"]
    );
    let unchanged = admin
        .namespaces()
        .get_namespace(pb::GetNamespaceRequest {
            name: "team-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(unchanged.description.is_empty(), "{unchanged:?}");

    // A key bound to a namespace sees that one only.
    let (bound_viewer_id, bound_viewer) = create_key(
        &server,
        Some(&admin_secret),
        "team viewer",
        "viewer",
        "team-a",
    )
    .await;
    let viewer_a = Client::keyed(&server, Some("team-a"), &bound_viewer);
    for (who, caller) in [
        ("a viewer bound to team-a", &viewer_a),
        (
            "an admin bound to team-a",
            &Client::keyed(&server, Some("team-a"), &bound_admin),
        ),
    ] {
        assert_eq!(namespace_names(caller).await, ["team-a"], "{who}");
        let mut namespaces = caller.namespaces();
        namespaces
            .get_namespace(pb::GetNamespaceRequest {
                name: "team-a".into(),
            })
            .await
            .unwrap_or_else(|status| panic!("{who} gets its namespace: {status:?}"));
        for other in ["team-b", "default"] {
            assert_not_found(
                namespaces
                    .get_namespace(pb::GetNamespaceRequest { name: other.into() })
                    .await,
                &format!("{who} gets {other}"),
            );
        }
    }
    // A viewer bound to no namespace sees them all.
    let (_, viewer) = create_key(&server, Some(&admin_secret), "viewer 2", "viewer", "").await;
    assert_eq!(
        namespace_names(&Client::keyed(&server, None, &viewer)).await,
        ["default", "team-a", "team-b"]
    );

    // Deleting team-a revokes its keys, and only those.
    admin
        .namespaces()
        .delete_namespace(pb::DeleteNamespaceRequest {
            name: "team-a".into(),
        })
        .await
        .expect("delete team-a");
    let keys = admin
        .keys()
        .list_api_keys(pb::ListApiKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    for key in &keys {
        assert_eq!(
            key.revoke_time.is_some(),
            key.namespace == "team-a",
            "{key:?}"
        );
    }
    assert!(keys.iter().any(|key| key.id == bound_viewer_id));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match viewer_a
            .namespaces()
            .list_namespaces(pb::ListNamespacesRequest {})
            .await
        {
            Err(status) if status.code() == Code::Unauthenticated => break,
            other => assert!(
                Instant::now() < deadline,
                "a key of a deleted namespace still works: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(namespace_names(&admin).await, ["default", "team-b"]);
    assert_eq!(
        namespace_names(&Client::keyed(&server, None, &viewer)).await,
        ["default", "team-b"]
    );
}

const MODEL: &str = "ns-model";

/// A one-task chain asking [`MODEL`] in `pool`, with no retry.
fn model_chain(pool: &str) -> pb::Chain {
    let mut say = task("say", "raw_string", vec![]);
    say.prompt_template = "Say hello.".into();
    say.execute_config = Some(pb::ExecuteConfig {
        model: MODEL.into(),
        pool: pool.into(),
        ..Default::default()
    });
    say.retry = Some(pb::RetryPolicy {
        max_attempts: 1,
        ..Default::default()
    });
    chain(&format!("ask-{pool}"), vec![say])
}

/// Runs `model_chain(pool)` in `client`'s namespace to its end (or
/// refusal); true when it succeeded.
async fn model_run_succeeds(client: &Client, pool: &str) -> bool {
    let response = client
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(model_chain(pool)),
            run_input: Some(pb::execute_chain_request::RunInput::TypedInput(text_value(
                "go",
            ))),
            wait_timeout: Some(prost_types::Duration {
                seconds: 20,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await;
    match response {
        Err(status) => {
            assert_ne!(status.code(), Code::Unavailable, "{status:?}");
            false
        }
        Ok(response) => {
            let run = response.into_inner().run.expect("run");
            assert!(
                run.status == pb::RunStatus::Succeeded as i32
                    || run.status == pb::RunStatus::Failed as i32,
                "{run:?}"
            );
            run.status == pb::RunStatus::Succeeded as i32
        }
    }
}

/// A namespace's `pools` bound the pools its model tasks may use; empty
/// allows every pool, and an update takes effect.
async fn pools_restrict_model_tasks(server: TestServer) {
    let fake = FakeLlm::start().await;
    fake.set_default_reply(Reply::text("hello"));
    fake.set_models([MODEL]);
    let open = Client::open(&server, None);
    open.backends()
        .create_pool(pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                id: "allowed".into(),
                discover_models: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create pool");
    // In the built-in tasks pool, and in `allowed`.
    let backend_id = server.add_fake_backend(&fake.url()).await;
    open.backends()
        .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
            pool_id: "allowed".into(),
            backend_id,
        })
        .await
        .expect("assign backend");
    open.namespaces()
        .create_namespace(pb::CreateNamespaceRequest {
            name: "limited".into(),
            description: String::new(),
            pools: vec!["allowed".into()],
        })
        .await
        .expect("create limited");
    create_namespace(&open, "free").await;
    let limited = Client::open(&server, Some("limited"));
    let free = Client::open(&server, Some("free"));

    // Without a restriction every pool serves.
    assert!(model_run_succeeds(&free, "internal_tasks_pool").await);
    assert!(model_run_succeeds(&free, "allowed").await);
    let calls = fake.requests().len();
    assert!(calls >= 2, "{calls}");

    // A restricted namespace uses its pools only; the other is never asked.
    assert!(model_run_succeeds(&limited, "allowed").await);
    let calls = fake.requests().len();
    assert!(
        !model_run_succeeds(&limited, "internal_tasks_pool").await,
        "a pool outside the namespace's served its task"
    );
    assert_eq!(fake.requests().len(), calls, "the provider was asked");

    // Lifting the restriction lets the task through.
    open.namespaces()
        .update_namespace(pb::UpdateNamespaceRequest {
            name: "limited".into(),
            description: String::new(),
            pools: vec![],
        })
        .await
        .expect("update limited");
    assert!(model_run_succeeds(&limited, "internal_tasks_pool").await);
}

/// Two PostgreSQL replicas: work started on either reaches only workers of
/// its own namespace, on either replica; a pause in one namespace holds
/// there only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_keep_namespaces_apart() {
    let url = tokio::task::spawn_blocking(taskloom_testkit::fresh_postgres_database)
        .await
        .unwrap()
        .unwrap();
    let (_one, channel_one) = common::replica(&url).await;
    let (_two, channel_two) = common::replica(&url).await;
    let open = Client::on(&channel_one, None);
    create_namespace(&open, "team-a").await;
    create_namespace(&open, "team-b").await;
    let a_one = Client::on(&channel_one, Some("team-a"));
    let a_two = Client::on(&channel_two, Some("team-a"));
    let b_one = Client::on(&channel_one, Some("team-b"));
    let b_two = Client::on(&channel_two, Some("team-b"));
    // The other replica knows the new namespaces within a second.
    let created = Instant::now();
    for client in [&a_two, &b_two] {
        while let Err(status) = client
            .chains()
            .list_chains(pb::ListChainsRequest::default())
            .await
        {
            assert!(
                created.elapsed() < Duration::from_secs(1),
                "{} unknown to the other replica after a second: {}",
                client.name(),
                brief(&status)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    create_chain(&a_one, worker_chain("job", "q")).await;
    create_chain(&b_two, worker_chain("job", "q")).await;
    // A's worker on replica two, B's on replica one.
    let mut worker_a = Worker::connect(&a_two, "worker-a", "q")
        .await
        .expect("connect a");
    let mut worker_b = Worker::connect(&b_one, "worker-b", "q")
        .await
        .expect("connect b");

    let run_a = start(&a_one, "job").await;
    let offer = worker_a
        .offer(SOON)
        .await
        .expect("team-a's task, across replicas");
    assert_eq!(offer.run_id, run_a.id);
    complete(&a_two, &offer).await;
    let run_b = start(&b_two, "job").await;
    let offer = worker_b
        .offer(SOON)
        .await
        .expect("team-b's task, across replicas");
    assert_eq!(offer.run_id, run_b.id);
    complete(&b_one, &offer).await;
    assert!(
        worker_a.offer(QUIET).await.is_none(),
        "team-b's task reached team-a"
    );
    assert!(
        worker_b.offer(Duration::ZERO).await.is_none(),
        "team-a's task reached team-b"
    );
    wait_status(&a_two, &run_a.id, pb::RunStatus::Succeeded).await;
    wait_status(&b_one, &run_b.id, pb::RunStatus::Succeeded).await;
    assert_eq!(worker_ids(&a_one).await, ["worker-a"]);
    assert_eq!(worker_ids(&b_two).await, ["worker-b"]);

    // Pausing A's q on replica one holds A's work on both replicas, and
    // none of B's.
    a_one
        .operations()
        .pause_queue(pb::PauseQueueRequest {
            name: "q".into(),
            request_id: String::new(),
        })
        .await
        .expect("pause q in team-a");
    // Every replica's copy of the paused queues refreshes within a second.
    tokio::time::sleep(QUIET).await;
    let held = start(&a_two, "job").await;
    let flowing = start(&b_two, "job").await;
    let offer = worker_b.offer(SOON).await.expect("team-b's q flows");
    assert_eq!(offer.run_id, flowing.id);
    complete(&b_one, &offer).await;
    assert!(
        worker_a.offer(QUIET).await.is_none(),
        "team-a's paused q offered"
    );
    let paused_on_two = queue(&a_two, "q").await.expect("q listed in team-a");
    assert!(
        paused_on_two.paused && paused_on_two.ready == 1,
        "{paused_on_two:?}"
    );
    let running_on_two = queue(&b_two, "q").await;
    assert!(
        running_on_two.as_ref().is_none_or(|q| !q.paused),
        "{running_on_two:?}"
    );
    a_two
        .operations()
        .resume_queue(pb::ResumeQueueRequest {
            name: "q".into(),
            request_id: String::new(),
        })
        .await
        .expect("resume q in team-a");
    let offer = worker_a.offer(SOON).await.expect("team-a's q flows again");
    assert_eq!(offer.run_id, held.id);
    complete(&a_two, &offer).await;
    wait_status(&a_one, &held.id, pb::RunStatus::Succeeded).await;

    // Deleted on one replica, gone on the other within a second.
    drop(worker_a);
    let deleted = Client::on(&channel_two, None)
        .namespaces()
        .delete_namespace(pb::DeleteNamespaceRequest {
            name: "team-a".into(),
        })
        .await
        .expect("delete team-a")
        .into_inner();
    assert_eq!(deleted.deleted_runs, 2);
    let deleted_at = Instant::now();
    loop {
        match a_one
            .chains()
            .list_chains(pb::ListChainsRequest::default())
            .await
        {
            Err(status) if status.code() == Code::NotFound => break,
            other => assert!(
                deleted_at.elapsed() < Duration::from_secs(1),
                "team-a still served by the other replica after a second: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(worker_ids(&b_one).await, ["worker-b"]);
}
