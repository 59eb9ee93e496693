//! Command line and environment configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

/// Taskloom: a durable execution runtime for AI task chains, served over gRPC.
#[derive(Debug, Parser)]
#[command(name = "taskloom", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log output format.
    #[arg(long, global = true, env = "TASKLOOM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (migrates the database first).
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Manage the API keys kept in the database (for a fresh install: from
    /// the machine that runs the server; migrates the database first).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Render chain templates for a serving process (internal: the server
    /// starts these itself).
    #[command(hide = true)]
    RenderSandbox(TemplateArgs),
    /// The client commands (`chains`, `runs`, `workers`, `dlq`), which call
    /// a server's API.
    #[command(flatten)]
    Client(taskloom_cli::Command),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown only this once).
    Create(CreateKeyArgs),
    /// List the keys (never their secrets).
    List(DatabaseArgs),
    /// Revoke a key: every server refuses it within a second.
    Revoke(RevokeKeyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CreateKeyArgs {
    /// `admin`, `operator`, `worker` or `viewer`.
    #[arg(long)]
    pub role: String,
    /// A name for people.
    #[arg(long, default_value = "bootstrap")]
    pub name: String,
    /// Bind the key to this namespace (every namespace without it).
    #[arg(long, default_value = "")]
    pub namespace: String,
    /// Worker keys: a queue the key may serve; repeatable (every queue
    /// without it).
    #[arg(long = "queue")]
    pub queues: Vec<String>,
    /// The key stops working this long after creation, e.g. `90d`.
    #[arg(long, value_parser = parse_retention)]
    pub expires_in: Option<Duration>,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RevokeKeyArgs {
    /// The key's id (`k_…`).
    pub id: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Bounds of every template render.
#[derive(Debug, Clone, Args)]
pub struct TemplateArgs {
    /// Fuel of one template render: about one unit per template
    /// instruction; a template that runs out fails its task with
    /// TEMPLATE_LIMIT.
    #[arg(long = "template-fuel", env = "TASKLOOM_TEMPLATE_FUEL", default_value_t = crate::chain::template::TemplateLimits::DEFAULT_FUEL)]
    pub fuel: u64,
    /// Largest text one template render may produce, in bytes.
    #[arg(long = "template-max-output", env = "TASKLOOM_TEMPLATE_MAX_OUTPUT", default_value_t = crate::chain::template::TemplateLimits::DEFAULT_MAX_OUTPUT_BYTES)]
    pub max_output_bytes: usize,
}

impl TemplateArgs {
    pub fn limits(&self) -> crate::chain::template::TemplateLimits {
        crate::chain::template::TemplateLimits {
            fuel: self.fuel,
            max_output_bytes: self.max_output_bytes,
        }
    }
}

/// `--http-listen`: where the web UI is served, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpListen {
    Off,
    At(SocketAddr),
}

/// The web UI's address when `--http-listen` is not given.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8233";

fn parse_http_listen(value: &str) -> Result<HttpListen, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(HttpListen::Off);
    }
    value
        .parse()
        .map(HttpListen::At)
        .map_err(|_| format!("{value:?} is not an address such as 127.0.0.1:8233, nor `off`"))
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `postgres://…` for PostgreSQL; a file path (or `sqlite://PATH`) for the
    /// embedded SQLite store.
    #[arg(long, env = "TASKLOOM_DATABASE_URL", default_value = "taskloom.db")]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TASKLOOM_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Serve TLS with this PEM certificate chain (needs `--tls-key`);
    /// plaintext without it.
    #[arg(long, env = "TASKLOOM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "TASKLOOM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A file of API keys, one per line (`#` comments and blank lines
    /// ignored). With any key configured (here or in `TASKLOOM_API_KEYS`,
    /// comma-separated), calls must send `authorization: Bearer <key>`. A
    /// file or a non-empty variable holding no key stops the start.
    #[arg(long, env = "TASKLOOM_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Serve without any API key on a non-loopback `--listen` address:
    /// every caller on the network is admin. Without it such a server
    /// refuses to start until a key exists.
    #[arg(long, env = "TASKLOOM_INSECURE_OPEN")]
    pub insecure_open: bool,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The key that encrypts provider API keys and hook secret headers in
    /// the database: 32 random bytes as 64 hex digits (`openssl rand -hex
    /// 32`) or base64. Without it, SQLite uses `<database>.key` (created
    /// with mode 0600 if missing); PostgreSQL needs it, the same on every
    /// replica.
    #[arg(long, env = "TASKLOOM_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM
    /// before open streams are ended with UNAVAILABLE.
    #[arg(long, env = "TASKLOOM_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Largest accepted or sent gRPC message, in bytes.
    #[arg(long, env = "TASKLOOM_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// How long a task lease lasts without renewal; a crashed replica's or
    /// worker's tasks are picked up again after it.
    #[arg(long, env = "TASKLOOM_LEASE_DURATION", default_value = "30s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// Lease expiries an attempt survives before it fails as lost.
    #[arg(long, env = "TASKLOOM_MAX_LEASE_EXPIRIES", default_value_t = 3)]
    pub max_lease_expiries: i32,
    /// Most attempts of a queue leased at once, across replicas:
    /// `QUEUE=N` caps the queue in every namespace (each counted on its
    /// own), `NAMESPACE/QUEUE=N` in one; repeat for more queues.
    #[arg(long = "queue-concurrency", value_name = "QUEUE=N", value_parser = parse_cap)]
    pub queue_caps: Vec<(String, u32)>,
    /// Most attempts of one tenant's runs leased at once, across replicas:
    /// `TENANT=N` (in every namespace, each counted on its own),
    /// `NAMESPACE/TENANT=N`, or `*=N` for every tenant without its own;
    /// repeatable.
    #[arg(long = "tenant-concurrency", value_name = "TENANT=N", value_parser = parse_cap)]
    pub tenant_caps: Vec<(String, u32)>,
    /// How often remote workers heartbeat (and the server pings them).
    #[arg(long, env = "TASKLOOM_WORKER_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub worker_heartbeat_interval: Duration,
    /// How long a ping to a worker may go unanswered before its session is
    /// closed and its leases end. Long values keep clients that cannot
    /// answer pings (a grpcurl session) connected.
    #[arg(long, env = "TASKLOOM_WORKER_HEARTBEAT_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub worker_heartbeat_timeout: Duration,
    /// How often this replica writes its heartbeat in the store.
    #[arg(long, env = "TASKLOOM_REPLICA_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub replica_heartbeat_interval: Duration,
    /// A replica whose heartbeat is older than this is declared gone by the
    /// live ones, which release its leases at once (fast failover after a
    /// crash). Must exceed the heartbeat interval.
    #[arg(long, env = "TASKLOOM_REPLICA_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub replica_timeout: Duration,
    /// Shut down when standard input closes: a supervising process (a test
    /// harness) that dies takes the server with it.
    #[arg(long, hide = true)]
    pub exit_with_stdin: bool,
    /// How the resolver orders backends serving the same model:
    /// `round_robin`, `least_loaded`, `random` or `priority`.
    #[arg(long, env = "TASKLOOM_SELECTION_POLICY", default_value = "round_robin")]
    pub selection_policy: String,
    /// Let every pool use the models its backends report serving without
    /// declaring them (a pool can also turn this on for itself).
    #[arg(long, env = "TASKLOOM_DISCOVER_MODELS")]
    pub discover_models: bool,
    /// Also refuse hook and model calls to loopback, unspecified and private
    /// (RFC 1918, 100.64.0.0/10, fc00::/7) addresses. Link-local and cloud
    /// metadata addresses are always refused.
    #[arg(long, env = "TASKLOOM_OUTBOUND_DENY_PRIVATE")]
    pub outbound_deny_private: bool,
    /// How often the reconciler syncs every backend (health, latency,
    /// observed models); `0s` disables the periodic cycle (`SyncBackend`
    /// still syncs on demand).
    #[arg(long, env = "TASKLOOM_SYNC_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub sync_interval: Duration,
    /// Pull onto each Ollama backend the models declared in its pools that
    /// it does not list (never deleting any).
    #[arg(long, env = "TASKLOOM_AUTO_PULL", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_pull: bool,
    #[command(flatten)]
    pub templates: TemplateArgs,
    /// Most memory a template render may use, in MiB: templates that do
    /// more than substitute values render in separate processes with this
    /// limit.
    #[arg(
        long = "template-memory",
        env = "TASKLOOM_TEMPLATE_MEMORY",
        default_value_t = 256
    )]
    pub template_memory_mib: u64,
    /// Interval of HTTP/2 keepalive pings on idle connections and streams.
    #[arg(long, env = "TASKLOOM_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub keepalive_interval: Duration,
    /// A connection that has not sent the HTTP/2 preface this long after
    /// connecting is closed.
    #[arg(long, env = "TASKLOOM_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// How long finished runs are kept before they are deleted, such as
    /// `72h` or `30d`; `0s` keeps them forever. A chain's `run_retention`
    /// overrides it for its runs.
    #[arg(long, env = "TASKLOOM_RUN_RETENTION", default_value = "30d", value_parser = parse_retention)]
    pub run_retention: Duration,
    /// Serve Prometheus metrics (`/metrics`) and the Kubernetes probes
    /// (`/healthz`, `/readyz`) over plain HTTP on this address; off
    /// without it.
    #[arg(long, env = "TASKLOOM_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve the web UI, and the API over gRPC-Web for it, on this address
    /// (`off` serves none). Without it the UI is served on
    /// `127.0.0.1:8233` when that port is free (a warning otherwise).
    #[arg(long, env = "TASKLOOM_HTTP_LISTEN", value_parser = parse_http_listen)]
    pub http_listen: Option<HttpListen>,
    /// Export spans (RPCs, runs, attempts, model and hook calls) to this
    /// OpenTelemetry collector over OTLP/gRPC, e.g. `http://127.0.0.1:4317`.
    /// Off without it.
    #[arg(long, env = "TASKLOOM_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// `NAME=N` with N ≥ 1.
fn parse_cap(text: &str) -> Result<(String, u32), String> {
    let (name, count) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=N"))?;
    let count: u32 = count
        .parse()
        .map_err(|_| format!("{text:?}: N must be a positive integer"))?;
    if name.is_empty() || count == 0 {
        return Err(format!("{text:?}: expected NAME=N with a name and N ≥ 1"));
    }
    Ok((name.to_string(), count))
}

impl ServeArgs {
    /// The concurrency caps the flags name.
    pub fn caps(&self) -> crate::kernel::lease::Caps {
        let mut caps = crate::kernel::lease::Caps {
            queues: self.queue_caps.iter().cloned().collect(),
            ..Default::default()
        };
        for (tenant, count) in &self.tenant_caps {
            if tenant == "*" {
                caps.default_tenant = Some(*count);
            } else {
                caps.tenants.insert(tenant.clone(), *count);
            }
        }
        caps
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::chain::duration::parse_duration(text)
}

fn parse_retention(text: &str) -> Result<Duration, String> {
    crate::chain::duration::parse_retention(text)
}
