//! Wires the process: store, gRPC services, health, reflection, limits,
//! keepalive and graceful shutdown.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::api::{self, ApiContext};
use crate::config::{DEFAULT_HTTP_LISTEN, HttpListen, ServeArgs};
use crate::dispatch::{DispatchConfig, Dispatcher};
use crate::drain::DrainLayer;
use crate::executor::Executor;
use crate::fleet::{Fleet, FleetConfig};
use crate::handshake::HandshakeDeadline;
use crate::health;
use crate::kernel::{Kernel, KernelConfig};
use crate::llm::resolver::{Resolver, SelectionPolicy};
use crate::outbound::{HttpClient, OutboundPolicy};
use crate::proto::taskloom::v1 as pb;
use crate::render::{RenderConfig, SandboxConfig};
use crate::replicas::{self, ReplicaConfig};
use crate::runner;
use crate::secrets::SecretBox;
use crate::store;

/// Serves until `shutdown` resolves, then drains for at most the configured
/// grace period.
pub async fn run(
    args: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Configuration that refuses to start is checked before anything is
    // created on disk.
    let keys = api_keys(&args)?;
    anyhow::ensure!(
        args.replica_heartbeat_interval >= Duration::from_millis(100),
        "--replica-heartbeat-interval must be at least 100ms"
    );
    anyhow::ensure!(
        args.replica_timeout >= args.replica_heartbeat_interval * 3,
        "--replica-timeout ({:?}) must be at least three --replica-heartbeat-interval ({:?}): \
         a live replica must not look dead between two heartbeats",
        args.replica_timeout,
        args.replica_heartbeat_interval
    );
    let secrets = secret_key(&args)?;
    if args.metrics_listen.is_some() {
        // Before any work starts, so that none goes uncounted.
        crate::metrics::install()?;
    }
    let store = store::open(&args.database.database_url, secrets)
        .await
        .with_context(|| {
            format!(
                "open database {}",
                describe_location(&args.database.database_url)
            )
        })?;
    store.migrate().await.context("migrate database")?;
    let sealed = store
        .seal_stored_secrets()
        .await
        .context("check the stored secrets")?;
    if sealed > 0 {
        tracing::info!(
            sealed,
            "encrypted secrets that an earlier version stored in plain text"
        );
    }
    if let Some(path) = store::sqlite_path(&args.database.database_url) {
        warn_if_others_can_read(Path::new(path), "the database file");
    }
    keys.reload(&store).await.context("load the API keys")?;
    if keys.is_open() && !args.listen.ip().is_loopback() && !args.insecure_open {
        anyhow::bail!(
            "no API key is configured and --listen {} is not a loopback address: refusing to \
             serve every caller as admin on the network. Create a key (`taskloom keys create \
             --role admin`), set --api-keys-file or TASKLOOM_API_KEYS, listen on 127.0.0.1, \
             or pass --insecure-open to serve without keys anyway",
            args.listen
        );
    }

    if let Some(HttpListen::At(addr)) = args.http_listen
        && keys.is_open()
        && !addr.ip().is_loopback()
        && !args.insecure_open
    {
        anyhow::bail!(
            "no API key is configured and --http-listen {addr} is not a loopback address: \
             refusing to serve every browser on the network as admin. Create a key, listen on \
             127.0.0.1, or pass --insecure-open"
        );
    }

    let exporting = match &args.otlp_endpoint {
        Some(endpoint) => {
            let exporting = crate::traces::init(endpoint)
                .with_context(|| format!("--otlp-endpoint {endpoint:?}"))?;
            tracing::info!(endpoint = %endpoint, "exporting traces over OTLP");
            Some(exporting)
        }
        None => None,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let local_addr = listener.local_addr()?;
    let web_listener = bind_web(args.http_listen).await?;
    let location = describe_location(&args.database.database_url);
    tracing::info!(listen = %local_addr, store = store.kind(), data = %location, "taskloom serving");
    println!("taskloom {} listening on {local_addr}", crate::VERSION);
    println!("taskloom data: {} ({location})", store.kind());

    let program = std::env::current_exe()
        .context("find the taskloom executable (to start template sandboxes)")?;
    let kernel = Kernel::new(
        store.clone(),
        KernelConfig {
            lease: args.lease_duration,
            max_lease_expiries: args.max_lease_expiries,
            caps: args.caps(),
            render: RenderConfig {
                limits: args.templates.limits(),
                sandbox: Some(SandboxConfig::new(
                    program,
                    args.template_memory_mib.saturating_mul(1024 * 1024),
                )),
            },
            ..KernelConfig::default()
        },
        uuid::Uuid::now_v7().to_string(),
    );
    let (stop_runner, runner_stop) = tokio::sync::watch::channel(false);
    let outbound_policy = OutboundPolicy {
        deny_private: args.outbound_deny_private,
    };
    let http = HttpClient::new(outbound_policy).context("build the HTTP client")?;
    tracing::info!(
        deny_private = outbound_policy.deny_private,
        "outbound calls: no redirects; link-local and cloud metadata addresses refused"
    );
    let policy = SelectionPolicy::parse(&args.selection_policy).with_context(|| {
        format!(
            "--selection-policy {:?}: use round_robin, least_loaded, random or priority",
            args.selection_policy
        )
    })?;
    let fleet = Fleet::new(
        kernel.store().clone(),
        http.clone(),
        kernel.instance_id().to_string(),
        FleetConfig {
            sync_interval: args.sync_interval,
            auto_pull: args.auto_pull,
            ..FleetConfig::default()
        },
    );
    let resolver = Resolver::new(
        kernel.store().clone(),
        http.clone(),
        policy,
        args.discover_models,
    );
    // A limited call that ends frees capacity: this replica's runner looks
    // for attempts due again at once (other replicas recheck at retry_at).
    let settled = kernel.clone();
    resolver.limiter().on_settle(move || settled.wake());
    let executor = Arc::new(Executor::new(kernel.store().clone(), resolver, http));
    let runner = tokio::spawn(runner::run(
        kernel.clone(),
        executor.clone(),
        runner_stop.clone(),
    ));
    let dispatcher = Dispatcher::new(
        kernel.clone(),
        DispatchConfig {
            heartbeat_interval: args.worker_heartbeat_interval,
            heartbeat_timeout: args.worker_heartbeat_timeout,
            lease: args.lease_duration,
            ..DispatchConfig::default()
        },
    );
    let dispatch_loop = tokio::spawn(dispatcher.clone().run(runner_stop.clone()));
    let lease_watch = tokio::spawn(dispatcher.clone().watch_leases(runner_stop.clone()));
    let publisher = tokio::spawn(dispatcher.clone().publish_sessions(runner_stop.clone()));
    let reconciler = tokio::spawn(fleet.clone().run(runner_stop.clone()));
    let retention = tokio::spawn(kernel.clone().run_retention(
        crate::kernel::retention::RetentionConfig::new(args.run_retention),
        runner_stop.clone(),
    ));
    // The registry loop outlives the other loops: it heartbeats until the
    // drain is over, so others do not declare this replica dead meanwhile.
    kernel
        .register_replica(&local_addr.to_string())
        .await
        .context("register this replica in the store")?;
    let (stop_registry, registry_stop) = tokio::sync::watch::channel(false);
    let (drain_requested, mut drain_request) = tokio::sync::watch::channel(false);
    let registry = tokio::spawn(replicas::run(
        kernel.clone(),
        ReplicaConfig {
            heartbeat_interval: args.replica_heartbeat_interval,
            timeout: args.replica_timeout,
            listen_address: local_addr.to_string(),
            shared_store: store.kind() == "postgres",
        },
        drain_requested,
        registry_stop,
    ));
    // Key checks stay fresh until the registry stops, after the drain: a
    // revocation during a drain is honoured too.
    let key_loop = tokio::spawn(keys.clone().run(store.clone(), stop_registry.subscribe()));
    let context = ApiContext::new(kernel, executor, dispatcher, fleet, keys.clone());
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let service_names = [
        "taskloom.v1.BackendService",
        "taskloom.v1.ChainService",
        "taskloom.v1.HookService",
        "taskloom.v1.RunService",
        "taskloom.v1.WorkerService",
        "taskloom.v1.InfoService",
        "taskloom.v1.AuditService",
        "taskloom.v1.OperationsService",
        "taskloom.v1.KeyService",
        "taskloom.v1.NamespaceService",
    ];
    for name in service_names.into_iter().chain([""]) {
        health_reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    // NOT_SERVING while the store cannot write.
    let store_health = tokio::spawn(health::follow_store(
        store.clone(),
        health_reporter.clone(),
        service_names.to_vec(),
        runner_stop,
    ));
    // Serves until this function returns: `/readyz` answers 503 while the
    // server drains.
    let _metrics_endpoint = match args.metrics_listen {
        Some(addr) => {
            let sources = crate::metrics::Sources {
                store: store.clone(),
                dispatcher: context.dispatcher().clone(),
            };
            let readiness =
                crate::metrics::Readiness::new(health_reporter.clone(), context.drain_state());
            let (bound, task) = crate::metrics::serve(addr, sources, readiness).await?;
            tracing::info!(listen = %bound, "metrics serving");
            println!("taskloom metrics listening on {bound}");
            Some(task)
        }
        None => None,
    };

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    if keys.is_open() {
        tracing::warn!(
            "no API keys configured: every caller has full access (open local development \
             mode; see `taskloom keys create` and docs/security.md)"
        );
        println!(
            "taskloom: OPEN MODE: no API key is configured, every caller is admin \
             (create one with `taskloom keys create --role admin`)"
        );
    } else {
        tracing::info!(
            static_keys = keys.static_keys(),
            stored_keys = keys.stored_keys(),
            "API keys required"
        );
    }
    let limit = args.max_message_bytes;
    // Compression, message limits and the API key check of each service.
    macro_rules! configure {
        ($server:expr) => {
            InterceptedService::new(
                $server
                    .accept_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Zstd)
                    .send_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Zstd)
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit),
                keys.clone(),
            )
        };
    }

    let mut api_routes = Routes::builder();
    api_routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(configure!(
            pb::backend_service_server::BackendServiceServer::new(api::BackendApi::new(
                context.clone()
            ))
        ))
        .add_service(configure!(
            pb::chain_service_server::ChainServiceServer::new(api::ChainApi::new(context.clone()))
        ))
        .add_service(configure!(pb::hook_service_server::HookServiceServer::new(
            api::HookApi::new(context.clone())
        )))
        .add_service(configure!(pb::info_service_server::InfoServiceServer::new(
            api::InfoApi::new(context.clone())
        )))
        .add_service(configure!(pb::run_service_server::RunServiceServer::new(
            api::RunApi::new(context.clone())
        )))
        .add_service(configure!(
            pb::operations_service_server::OperationsServiceServer::new(api::OperationsApi::new(
                context.clone()
            ))
        ))
        .add_service(configure!(
            pb::worker_service_server::WorkerServiceServer::new(api::WorkerApi::new(
                context.clone()
            ))
        ))
        .add_service(configure!(
            pb::audit_service_server::AuditServiceServer::new(api::AuditApi::new(context.clone()))
        ))
        .add_service(configure!(pb::key_service_server::KeyServiceServer::new(
            api::KeyApi::new(context.clone())
        )))
        .add_service(configure!(
            pb::namespace_service_server::NamespaceServiceServer::new(api::NamespaceApi::new(
                context.clone()
            ))
        ));
    let api_routes = api_routes.routes();

    let tls = tls_config(&args)?;
    let mut server = Server::builder();
    if let Some(tls) = tls.clone() {
        server = server
            .tls_config(tls)
            .context("the TLS certificate or key is not usable")?;
    }
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let drain = DrainLayer::new(drain_rx);
    let router = server
        .layer(crate::traces::RpcLayer)
        .layer(drain.clone())
        .http2_keepalive_interval(Some(args.keepalive_interval))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .trace_fn(|request| tracing::info_span!("rpc", path = %request.uri().path()))
        .add_routes(api_routes.clone());

    // Connections close (GOAWAY) once the calls in flight at the drain have
    // finished, or the grace period is over.
    let (close_tx, mut close_signal) = tokio::sync::watch::channel(false);
    let incoming = accepted(listener, args.handshake_timeout);
    let web_serve = match web_listener {
        Some(listener) => {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let bound = listener.local_addr()?;
            let mut web_server = Server::builder().accept_http1(true);
            if let Some(tls) = tls {
                web_server = web_server
                    .tls_config(tls)
                    .context("the TLS certificate or key is not usable")?;
            }
            let routes = crate::web::routes(api_routes, drain.clone(), bound.ip().is_loopback());
            // A browser's first bytes (a request line, or a TLS hello) are
            // longer than the HTTP/2 preface, so the same deadline holds.
            let incoming = accepted(listener, args.handshake_timeout);
            let mut close = close_signal.clone();
            let serve = web_server
                .trace_fn(|request| tracing::info_span!("web", path = %request.uri().path()))
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = close.wait_for(|close| *close).await;
                });
            tracing::info!(listen = %bound, "web UI serving");
            println!("taskloom web UI listening on {scheme}://{bound}");
            Some(tokio::spawn(async move {
                // The API stays up on gRPC: say why the UI went away.
                if let Err(error) = serve.await {
                    tracing::error!(error = %error, "the web UI listener failed");
                }
            }))
        }
        None => None,
    };
    let serve = router.serve_with_incoming_shutdown(incoming, async move {
        let _ = close_signal.wait_for(|close| *close).await;
    });
    tokio::pin!(serve);

    let grace = args.shutdown_grace;
    tokio::pin!(shutdown);
    tokio::select! {
        result = &mut serve => {
            store_health.abort();
            runner.abort();
            dispatch_loop.abort();
            lease_watch.abort();
            publisher.abort();
            reconciler.abort();
            registry.abort();
            retention.abort();
            key_loop.abort();
            if let Some(web) = &web_serve {
                web.abort();
            }
            return result.context("gRPC server failed");
        }
        () = &mut shutdown => {
            // SIGTERM: the registry shows this replica draining.
            if let Err(error) = context.kernel().mark_draining().await {
                tracing::warn!(error = %error, "cannot record the drain in the store");
            }
        }
        Ok(_) = drain_request.wait_for(|requested| *requested) => {}
    }
    tracing::info!(grace = ?grace, "shutting down: draining in-flight requests and leases");
    store_health.abort();
    for name in service_names.into_iter().chain([""]) {
        health_reporter
            .set_service_status(name, tonic_health::ServingStatus::NotServing)
            .await;
    }
    // Open streams end with UNAVAILABLE at once, new calls are refused with
    // UNAVAILABLE, unary calls in flight may finish within the grace period.
    let deadline = tokio::time::Instant::now() + grace;
    context.begin_drain();
    let _ = drain_tx.send(true);
    // No new work is claimed or leased eagerly; attempts in flight finish
    // within the grace period, and what is still held then is handed back
    // (fenced) for another replica to claim at once. Worker streams end
    // with UNAVAILABLE above: workers reconnect elsewhere and re-attach
    // their leases.
    context.kernel().stop_taking_work();
    let _ = stop_runner.send(true);
    let leases = tokio::spawn(hand_back_leases(context.kernel().clone(), deadline));
    tokio::select! {
        result = &mut serve => {
            result.context("gRPC server failed during shutdown")?;
        }
        idle = tokio::time::timeout_at(deadline, drain.idle()) => {
            if idle.is_err() {
                tracing::warn!("drain period elapsed with calls in flight; closing connections");
            }
            let _ = close_tx.send(true);
            let closing = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_secs(1));
            match tokio::time::timeout(closing, &mut serve).await {
                Ok(result) => result.context("gRPC server failed during shutdown")?,
                Err(_) => tracing::warn!("connections still open; closing them"),
            }
        }
    }
    match leases.await {
        Ok(Ok(0)) => {}
        Ok(Ok(given_back)) => {
            tracing::info!(
                given_back,
                "leases still held at the end of the grace period handed back"
            );
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "cannot hand back the leases held; they expire")
        }
        Err(error) => tracing::warn!(error = %error, "handing back the leases failed"),
    }
    runner.abort();
    dispatch_loop.abort();
    lease_watch.abort();
    publisher.abort();
    reconciler.abort();
    retention.abort();
    if let Some(web) = &web_serve {
        web.abort();
    }
    let _ = stop_registry.send(true);
    let _ = registry.await;
    if let Err(error) = context.kernel().stop_replica().await {
        tracing::warn!(error = %error, "cannot record the stop in the store");
    }
    if let Some(exporting) = exporting {
        exporting.shutdown().await;
    }
    tracing::info!("taskloom stopped");
    Ok(())
}

/// Waits until this replica's runner executes nothing or `deadline`
/// passes, then hands back every lease it still holds (attempts still
/// running, and any leased but never started). Returns how many leases
/// were handed back.
async fn hand_back_leases(
    kernel: crate::kernel::Kernel,
    deadline: tokio::time::Instant,
) -> crate::kernel::KernelResult<usize> {
    while kernel.executions() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kernel.hand_back_leases().await
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// while the server is still starting is not fatal.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let wait = |stream: std::io::Result<tokio::signal::unix::Signal>| async move {
                match stream {
                    Ok(mut stream) => {
                        stream.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => tracing::info!("SIGINT received"),
                () = wait(terminate) => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves when standard input reaches end of file (or fails).
pub async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 256];
    while let Ok(read) = stdin.read(&mut buffer).await {
        if read == 0 {
            return;
        }
    }
}

/// Where the data lives, safe to print: the SQLite file's absolute path, or
/// the Postgres URL without its password.
pub fn describe_location(database_url: &str) -> String {
    match store::sqlite_path(database_url) {
        None => match url::Url::parse(database_url) {
            Ok(mut parsed) => {
                if parsed.password().is_some() {
                    let _ = parsed.set_password(Some("***"));
                }
                parsed.to_string()
            }
            Err(_) => "postgres (unparseable URL)".to_string(),
        },
        Some(path) => std::path::absolute(Path::new(path))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.to_string()),
    }
}

/// The key that seals stored secrets: `--secret-key-file`, else (SQLite
/// only) `<database>.key`, created if missing.
fn secret_key(args: &ServeArgs) -> anyhow::Result<SecretBox> {
    let database_url = &args.database.database_url;
    let (path, created) = match (&args.secret_key_file, store::sqlite_path(database_url)) {
        (Some(path), _) => (path.clone(), false),
        (None, None) => anyhow::bail!(
            "PostgreSQL needs --secret-key-file (or TASKLOOM_SECRET_KEY_FILE): the key that \
             encrypts provider API keys and hook secret headers, the same file on every \
             replica; create one with `openssl rand -hex 32 > taskloom.key; chmod 600 taskloom.key`"
        ),
        (None, Some(":memory:")) => return Ok(SecretBox::ephemeral()),
        (None, Some(database)) => {
            let path = std::path::PathBuf::from(format!("{database}.key"));
            let created = !path.exists();
            (path, created)
        }
    };
    let secrets = if created {
        SecretBox::create_key_file(&path)?
    } else {
        SecretBox::load_key_file(&path)?
    };
    let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
    if created {
        tracing::warn!(
            path = %shown.display(),
            "created a new secret key file (mode 0600) next to the database: keep it with the \
             database and back it up; the secrets stored with it cannot be read without it"
        );
    } else {
        warn_if_others_can_read(&path, "the secret key file");
    }
    tracing::info!(path = %shown.display(), key_id = secrets.key_id(), "secret key loaded");
    println!("taskloom secret key: {}", shown.display());
    Ok(secrets)
}

/// Warns when group or others may read `path`.
fn warn_if_others_can_read(path: &Path, what: &str) {
    #[cfg(unix)]
    if let Ok(metadata) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "{what} is readable by others than its owner; `chmod 600` it"
            );
        }
    }
}

/// The TLS identity of `--tls-cert` and `--tls-key`, if given.
/// The connections of `listener`, each with the socket options of every
/// listener and closed unless it speaks within `handshake_timeout`. Socket
/// options apply to our own listener (the builder's only to listeners it
/// creates). Without TCP_NODELAY, multi-segment responses wait ~40 ms on
/// Nagle + delayed ACK.
fn accepted(
    listener: TcpListener,
    handshake_timeout: Duration,
) -> impl tokio_stream::Stream<Item = std::io::Result<HandshakeDeadline<tokio::net::TcpStream>>> {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)))
        .map(move |accepted| {
            accepted.map(|stream| HandshakeDeadline::new(stream, handshake_timeout))
        })
}

/// The web UI's listener. The default address is taken only when free: a
/// second server on one machine still starts, without a UI.
async fn bind_web(http_listen: Option<HttpListen>) -> anyhow::Result<Option<TcpListener>> {
    match http_listen {
        Some(HttpListen::Off) => Ok(None),
        Some(HttpListen::At(addr)) => TcpListener::bind(addr)
            .await
            .map(Some)
            .with_context(|| format!("--http-listen {addr}")),
        None => match TcpListener::bind(DEFAULT_HTTP_LISTEN).await {
            Ok(listener) => Ok(Some(listener)),
            Err(error) => {
                tracing::warn!(
                    address = DEFAULT_HTTP_LISTEN,
                    error = %error,
                    "the web UI is not served: its default address is not free \
                     (choose one with --http-listen, or --http-listen off)"
                );
                Ok(None)
            }
        },
    }
}

fn tls_config(args: &ServeArgs) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let identity = Identity::from_pem(read(cert)?, read(key)?);
    Ok(Some(ServerTlsConfig::new().identity(identity)))
}

/// The keys of `--api-keys-file` and `TASKLOOM_API_KEYS`. A source that is
/// configured but holds no key is a mistake that would leave the server
/// open to every caller, so it stops the start (fail closed); an empty
/// `TASKLOOM_API_KEYS` counts as unset.
fn api_keys(args: &ServeArgs) -> anyhow::Result<api::Authenticator> {
    let mut keys: Vec<String> = Vec::new();
    if let Ok(list) = std::env::var("TASKLOOM_API_KEYS")
        && !list.is_empty()
    {
        let listed: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(str::to_string)
            .collect();
        if listed.is_empty() {
            anyhow::bail!(
                "TASKLOOM_API_KEYS is set but holds no API key (only separators or blanks): \
                 refusing to start without authentication; set keys or unset it"
            );
        }
        keys.extend(listed);
    }
    if let Some(path) = &args.api_keys_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the API keys file {}", path.display()))?;
        let listed: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_string)
            .collect();
        if listed.is_empty() {
            anyhow::bail!(
                "--api-keys-file {} holds no API key (only blank or `#` comment lines): \
                 refusing to start without authentication",
                path.display()
            );
        }
        keys.extend(listed);
    }
    Ok(api::Authenticator::new(keys))
}
