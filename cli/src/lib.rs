//! The client commands of the `taskloom` binary (`taskloom chains …`,
//! `taskloom runs …`, `taskloom workers …`, `taskloom dlq …`, `taskloom
//! backends …`, `taskloom audit …`, `taskloom namespaces …`, `taskloom
//! queues …`, `taskloom replicas …`, and `taskloom keys …` against a
//! server). They use the public gRPC API only, through the generated
//! clients of `taskloom-proto`, so they can do what any client can and
//! nothing more.
//!
//! Exit codes, for scripts: [`EXIT_OK`], [`EXIT_ERROR`] (a local problem: a
//! file that does not parse, an invalid chain), 2 for a usage error (clap's),
//! [`EXIT_CALL_FAILED`] (the server answered with an error or could not be
//! reached) and [`EXIT_RUN_FAILED`] (a watched or executed run ended FAILED
//! or CANCELLED, or a replay diverged).

mod admin;
mod backends;
mod chains;
mod filters;
pub mod keys;
mod output;
pub mod profile;
mod runs;
mod workers;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use taskloom_proto::taskloom::v1 as pb;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub use admin::{AuditCommand, NamespacesCommand, QueuesCommand, ReplicasCommand};
pub use backends::BackendsCommand;
pub use chains::ChainsCommand;
pub use runs::RunsCommand;
pub use workers::{DlqCommand, WorkersCommand};

/// The command succeeded.
pub const EXIT_OK: u8 = 0;
/// A local problem: unreadable or unparsable input, an invalid chain.
pub const EXIT_ERROR: u8 = 1;
/// A call failed: the server answered with an error status, or could not
/// be reached.
pub const EXIT_CALL_FAILED: u8 = 3;
/// A watched run ended FAILED or CANCELLED (or a replay diverged).
pub const EXIT_RUN_FAILED: u8 = 4;

/// The client subcommands, flattened into the `taskloom` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store, inspect and check chain definitions.
    Chains(ChainsArgs),
    /// Start, watch, inspect and steer runs.
    Runs(RunsArgs),
    /// See the connected workers.
    Workers(WorkersArgs),
    /// See the attempts that failed for good (dead letters).
    Dlq(DlqArgs),
    /// See and sync LLM backends, pull models onto them, list declared
    /// models and pools.
    Backends(BackendsArgs),
    /// Read the audit log of control-plane actions.
    Audit(AuditArgs),
    /// List, create and delete namespaces.
    Namespaces(NamespacesArgs),
    /// See queue depths; pause and resume queues.
    Queues(QueuesArgs),
    /// See the server's replicas; drain one.
    Replicas(ReplicasArgs),
}

/// A noun's connection flags and its subcommand.
macro_rules! noun_args {
    ($($name:ident => $command:ty),* $(,)?) => {$(
        #[derive(Debug, Args)]
        pub struct $name {
            #[command(flatten)]
            client: ClientArgs,
            #[command(subcommand)]
            command: $command,
        }
    )*};
}

noun_args!(
    ChainsArgs => ChainsCommand,
    RunsArgs => RunsCommand,
    WorkersArgs => WorkersCommand,
    DlqArgs => DlqCommand,
    BackendsArgs => BackendsCommand,
    AuditArgs => AuditCommand,
    NamespacesArgs => NamespacesCommand,
    QueuesArgs => QueuesCommand,
    ReplicasArgs => ReplicasCommand,
);

/// How to reach the server and how to print, as given on the command line
/// and in the environment; accepted before or after the subcommand.
/// [`ClientArgs::resolve`] completes them from the profile.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The namespace to work in, sent as `x-taskloom-namespace` (the key's
    /// or the server's default without it).
    #[arg(long, global = true, env = "TASKLOOM_NAMESPACE")]
    pub namespace: Option<String>,
}

/// The server and the output, without the namespace: `taskloom keys`
/// takes these (its `--namespace` is the namespace a new key is bound to).
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// Use this profile of the CLI config file (`$TASKLOOM_CONFIG`, or
    /// `~/.config/taskloom/cli.toml`); its `default_profile` without it.
    /// Flags and variables override the profile's settings.
    #[arg(long, global = true, env = "TASKLOOM_PROFILE")]
    pub profile: Option<String>,
    /// The server's gRPC address [default: http://127.0.0.1:50051].
    #[arg(long, global = true, env = "TASKLOOM_ADDRESS")]
    pub address: Option<String>,
    /// An API key, sent as `authorization: Bearer <key>`.
    #[arg(long, global = true, env = "TASKLOOM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Read the API key from this file (its first line; the file must not be
    /// readable by other users).
    #[arg(long, global = true, env = "TASKLOOM_API_KEY_FILE")]
    pub api_key_file: Option<std::path::PathBuf>,
    /// For an `https://` address: trust this PEM CA certificate (the public
    /// roots without it).
    #[arg(long, global = true, env = "TASKLOOM_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// For an `https://` address: the name the server's certificate must
    /// carry, when it is not the address's host.
    #[arg(long, global = true, env = "TASKLOOM_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
    /// `table` for people, `json` for scripts (one JSON object per line, in
    /// the protobuf JSON mapping).
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Colour status cells: `auto` when standard output is a terminal and
    /// `NO_COLOR` is not set.
    #[arg(long, global = true, value_enum, default_value_t = ColorMode::Auto)]
    pub color: ColorMode,
}

impl ServerArgs {
    /// Whether these name a server (an address or a profile, by flag or
    /// variable): `taskloom keys` then manages the server's keys.
    pub fn names_a_server(&self) -> bool {
        self.address.is_some() || self.profile.is_some()
    }

    /// These with no namespace of their own (a profile's still applies).
    pub fn without_namespace(&self) -> ClientArgs {
        ClientArgs {
            server: self.clone(),
            namespace: None,
        }
    }
}

/// The server address without a flag, variable or profile.
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:50051";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorMode {
    #[default]
    Auto,
    Always,
    Never,
}

/// The settings a command runs with: the flags and variables, then the
/// profile, then the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub address: String,
    pub api_key: Option<String>,
    pub namespace: Option<String>,
    pub tls_ca: Option<std::path::PathBuf>,
    pub tls_domain: Option<String>,
    pub output: Format,
}

impl ClientArgs {
    /// The settings with the profile's filled in: `--profile` (or
    /// `TASKLOOM_PROFILE`), else the config file's `default_profile`.
    pub fn resolve(&self) -> anyhow::Result<ClientOptions> {
        let profile = profile::load(self.server.profile.as_deref())?;
        self.merge(profile.unwrap_or_default())
    }

    /// Flags and variables first, then the profile. A key given either way
    /// on the command line or in the environment (`--api-key` or
    /// `--api-key-file`) hides the profile's.
    fn merge(&self, profile: profile::Profile) -> anyhow::Result<ClientOptions> {
        let server = &self.server;
        let api_key = match (&server.api_key, &server.api_key_file) {
            (Some(key), _) => Some(key.clone()),
            (None, Some(path)) => Some(profile::read_key_file(path)?),
            (None, None) => match (profile.api_key, profile.api_key_file) {
                (Some(key), _) => Some(key),
                (None, Some(path)) => Some(profile::read_key_file(&path)?),
                (None, None) => None,
            },
        };
        Ok(ClientOptions {
            address: server
                .address
                .clone()
                .or(profile.address)
                .unwrap_or_else(|| DEFAULT_ADDRESS.to_string()),
            api_key,
            namespace: self.namespace.clone().or(profile.namespace),
            tls_ca: server.tls_ca.clone().or(profile.tls_ca),
            tls_domain: server.tls_domain.clone().or(profile.tls_domain),
            output: server.output,
        })
    }

    /// Whether tables colour their status cells: `--color`, else whether
    /// standard output is a terminal that wants colour (`NO_COLOR`,
    /// `CLICOLOR_FORCE`, `TERM=dumb` are honoured).
    pub fn colored(&self) -> bool {
        match self.server.color {
            ColorMode::Always => true,
            ColorMode::Never => false,
            ColorMode::Auto => {
                anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A local check failed (an invalid chain): the reason was printed.
    Invalid,
    /// The watched run ended FAILED or CANCELLED.
    RunFailed,
}

/// A call that failed: kept apart from local errors for the exit code.
#[derive(Debug)]
pub struct CallFailed(pub tonic::Status);

impl std::fmt::Display for CallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            output::code_name(self.0.code()),
            self.0.message()
        )
    }
}

impl std::error::Error for CallFailed {}

/// Runs one client command to its end and returns the exit code. It starts
/// its own single-threaded runtime: a client needs no worker threads.
pub fn main(command: Command) -> ExitCode {
    run_to_exit(async move {
        match command {
            Command::Chains(args) => chains::run(&args.client.start()?, args.command).await,
            Command::Runs(args) => runs::run(&args.client.start()?, args.command).await,
            Command::Workers(args) => workers::workers(&args.client.start()?, args.command).await,
            Command::Dlq(args) => workers::dlq(&args.client.start()?, args.command).await,
            Command::Backends(args) => backends::run(&args.client.start()?, args.command).await,
            Command::Audit(args) => admin::audit(&args.client.start()?, args.command).await,
            Command::Namespaces(args) => {
                admin::namespaces(&args.client.start()?, args.command).await
            }
            Command::Queues(args) => admin::queues(&args.client.start()?, args.command).await,
            Command::Replicas(args) => admin::replicas(&args.client.start()?, args.command).await,
        }
    })
}

/// Runs a command's future on its own single-threaded runtime and turns
/// its result into the exit code.
fn run_to_exit(command: impl Future<Output = anyhow::Result<Outcome>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("taskloom: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    exit_code(runtime.block_on(command))
}

impl ClientArgs {
    /// The resolved settings, with the colour choice made for the tables.
    fn start(&self) -> anyhow::Result<ClientOptions> {
        output::set_color(self.colored());
        self.resolve()
    }
}

/// The exit code of a command's result, with a failure reported on stderr.
fn exit_code(result: anyhow::Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Ok) => ExitCode::from(EXIT_OK),
        Ok(Outcome::Invalid) => ExitCode::from(EXIT_ERROR),
        Ok(Outcome::RunFailed) => ExitCode::from(EXIT_RUN_FAILED),
        Err(error) => match error.downcast_ref::<CallFailed>() {
            Some(CallFailed(status)) => {
                report_status(status);
                ExitCode::from(EXIT_CALL_FAILED)
            }
            None => {
                eprintln!("taskloom: {error:#}");
                ExitCode::from(EXIT_ERROR)
            }
        },
    }
}

/// Prints a failed call's code, message and field violations to stderr.
fn report_status(status: &tonic::Status) {
    use tonic_types::StatusExt;
    eprintln!(
        "taskloom: call failed: {}: {}",
        output::code_name(status.code()),
        status.message()
    );
    if let Some(bad_request) = status.get_details_bad_request() {
        for violation in bad_request.field_violations {
            eprintln!("  {}: {}", violation.field, violation.description);
        }
    }
}

/// Sends the key and the namespace with every call.
#[derive(Clone, Default)]
pub struct Metadata {
    authorization: Option<AsciiMetadataValue>,
    namespace: Option<AsciiMetadataValue>,
}

impl tonic::service::Interceptor for Metadata {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        if let Some(value) = &self.namespace {
            request
                .metadata_mut()
                .insert("x-taskloom-namespace", value.clone());
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Metadata>;

/// A connection to the server with the options' key and namespace.
pub struct Client {
    channel: Channel,
    metadata: Metadata,
}

/// Largest message the CLI accepts: the server's default limit.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

impl Client {
    pub async fn connect(options: &ClientOptions) -> anyhow::Result<Client> {
        let metadata = Metadata {
            authorization: options
                .api_key
                .as_deref()
                .map(|key| format!("Bearer {key}").parse())
                .transpose()
                .context("the API key is not valid header text")?,
            namespace: options
                .namespace
                .as_deref()
                .map(str::parse)
                .transpose()
                .context("the namespace is not valid header text")?,
        };
        let mut endpoint = Endpoint::from_shared(options.address.clone())
            .with_context(|| format!("invalid --address {}", options.address))?
            .connect_timeout(Duration::from_secs(10));
        if options.address.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            tls = match &options.tls_ca {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .with_context(|| format!("read --tls-ca {}", path.display()))?;
                    tls.ca_certificate(Certificate::from_pem(pem))
                }
                None => tls.with_webpki_roots(),
            };
            if let Some(domain) = &options.tls_domain {
                tls = tls.domain_name(domain.clone());
            }
            endpoint = endpoint.tls_config(tls).context("TLS settings")?;
        } else if options.tls_ca.is_some() || options.tls_domain.is_some() {
            anyhow::bail!("--tls-ca and --tls-domain need an https:// --address");
        }
        // An unreachable server is a failed call for scripts, as an error
        // status would be.
        let channel = endpoint.connect().await.map_err(|error| {
            // tonic's own message is only "transport error": the causes
            // say what failed (refused, certificate, name).
            let mut message = format!("cannot connect to {}: {error}", options.address);
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            CallFailed(tonic::Status::unavailable(message))
        })?;
        Ok(Client { channel, metadata })
    }
}

/// `Client::NAME()`: the generated client of a service, with the key and
/// namespace sent and the server's message size limit.
macro_rules! service_clients {
    ($($name:ident => $module:ident :: $client:ident),* $(,)?) => {
        impl Client {$(
            pub fn $name(&self) -> pb::$module::$client<Authed> {
                pb::$module::$client::with_interceptor(self.channel.clone(), self.metadata.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            }
        )*}
    };
}

service_clients!(
    chains => chain_service_client::ChainServiceClient,
    workers => worker_service_client::WorkerServiceClient,
    runs => run_service_client::RunServiceClient,
    backends => backend_service_client::BackendServiceClient,
    audit => audit_service_client::AuditServiceClient,
    keys => key_service_client::KeyServiceClient,
    namespaces => namespace_service_client::NamespaceServiceClient,
    operations => operations_service_client::OperationsServiceClient,
);

/// Turns a failed call into an error the exit code tells apart.
pub(crate) fn call<T>(result: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| CallFailed(status).into())
}

/// The most items one list call asks for (the API's page size limit).
const MAX_PAGE: usize = 1000;

/// The items of a paged list, the first `limit` of them (`usize::MAX`: all).
/// `page` makes the call for one page, given its size and token, and
/// answers that page's items and the next token (empty after the last).
pub(crate) async fn collect_pages<T, F, Fut>(limit: usize, mut page: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(i32, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(Vec<T>, String)>>,
{
    let mut items = Vec::new();
    let mut page_token = String::new();
    while items.len() < limit {
        let size = (limit - items.len()).min(MAX_PAGE) as i32;
        let (found, next) = page(size, page_token).await?;
        items.extend(found);
        if next.is_empty() {
            break;
        }
        page_token = next;
    }
    items.truncate(limit);
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use profile::Profile;

    fn profile() -> Profile {
        Profile {
            address: Some("https://prod:50051".into()),
            api_key: Some("from-profile".into()),
            namespace: Some("team-a".into()),
            tls_domain: Some("prod.internal".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_without_flags_or_profile() {
        let options = ClientArgs::default().merge(Profile::default()).unwrap();
        assert_eq!(options.address, DEFAULT_ADDRESS);
        assert_eq!(options.api_key, None);
        assert_eq!(options.namespace, None);
    }

    #[test]
    fn the_profile_fills_what_flags_leave_out() {
        let options = ClientArgs::default().merge(profile()).unwrap();
        assert_eq!(options.address, "https://prod:50051");
        assert_eq!(options.api_key.as_deref(), Some("from-profile"));
        assert_eq!(options.namespace.as_deref(), Some("team-a"));
        assert_eq!(options.tls_domain.as_deref(), Some("prod.internal"));
    }

    #[test]
    fn flags_override_the_profile() {
        let args = ClientArgs {
            server: ServerArgs {
                address: Some("http://127.0.0.1:1".into()),
                api_key: Some("from-flag".into()),
                ..Default::default()
            },
            namespace: Some("team-b".into()),
        };
        let options = args.merge(profile()).unwrap();
        assert_eq!(options.address, "http://127.0.0.1:1");
        assert_eq!(options.api_key.as_deref(), Some("from-flag"));
        assert_eq!(options.namespace.as_deref(), Some("team-b"));
        // What no flag gives still comes from the profile.
        assert_eq!(options.tls_domain.as_deref(), Some("prod.internal"));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_flag_hides_the_profile_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "from-file\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let args = ServerArgs {
            api_key_file: Some(path.clone()),
            ..Default::default()
        }
        .without_namespace();
        let options = args.merge(profile()).unwrap();
        assert_eq!(options.api_key.as_deref(), Some("from-file"));
        let from_profile = Profile {
            api_key: None,
            api_key_file: Some(path),
            ..profile()
        };
        let options = ClientArgs::default().merge(from_profile).unwrap();
        assert_eq!(options.api_key.as_deref(), Some("from-file"));
    }

    #[test]
    fn keys_go_remote_only_when_a_server_is_named() {
        assert!(!ServerArgs::default().names_a_server());
        let profile = ServerArgs {
            profile: Some("prod".into()),
            ..Default::default()
        };
        assert!(profile.names_a_server());
    }
}
