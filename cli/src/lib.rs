//! The client commands of the `taskloom` binary (`taskloom chains …`,
//! `taskloom runs …`, `taskloom workers …`, `taskloom dlq …`). They use the
//! public gRPC API only, through the generated clients of `taskloom-proto`, so they can do what any client
//! can and nothing more.
//!
//! Exit codes, for scripts: [`EXIT_OK`], [`EXIT_ERROR`] (a local problem: a
//! file that does not parse, an invalid chain), 2 for a usage error (clap's),
//! [`EXIT_CALL_FAILED`] (the server answered with an error or could not be
//! reached) and [`EXIT_RUN_FAILED`] (a watched or executed run ended FAILED
//! or CANCELLED, or a replay diverged).

mod chains;
mod output;
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
}

#[derive(Debug, Args)]
pub struct WorkersArgs {
    #[command(flatten)]
    client: ClientOptions,
    #[command(subcommand)]
    command: WorkersCommand,
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    client: ClientOptions,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, Args)]
pub struct ChainsArgs {
    #[command(flatten)]
    client: ClientOptions,
    #[command(subcommand)]
    command: ChainsCommand,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(flatten)]
    client: ClientOptions,
    #[command(subcommand)]
    command: RunsCommand,
}

/// How to reach the server and how to print; accepted before or after the
/// subcommand.
#[derive(Debug, Clone, Args)]
pub struct ClientOptions {
    /// The server's gRPC address.
    #[arg(
        long,
        global = true,
        env = "TASKLOOM_ADDRESS",
        default_value = "http://127.0.0.1:50051"
    )]
    pub address: String,
    /// An API key, sent as `authorization: Bearer <key>`.
    #[arg(long, global = true, env = "TASKLOOM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The namespace to work in, sent as `x-taskloom-namespace` (the key's
    /// or the server's default without it).
    #[arg(long, global = true, env = "TASKLOOM_NAMESPACE")]
    pub namespace: Option<String>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
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
    let result = runtime.block_on(async move {
        match command {
            Command::Chains(args) => chains::run(&args.client, args.command).await,
            Command::Runs(args) => runs::run(&args.client, args.command).await,
            Command::Workers(args) => workers::workers(&args.client, args.command).await,
            Command::Dlq(args) => workers::dlq(&args.client, args.command).await,
        }
    });
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

    pub fn chains(&self) -> pb::chain_service_client::ChainServiceClient<Authed> {
        pb::chain_service_client::ChainServiceClient::with_interceptor(
            self.channel.clone(),
            self.metadata.clone(),
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn workers(&self) -> pb::worker_service_client::WorkerServiceClient<Authed> {
        pb::worker_service_client::WorkerServiceClient::with_interceptor(
            self.channel.clone(),
            self.metadata.clone(),
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn runs(&self) -> pb::run_service_client::RunServiceClient<Authed> {
        pb::run_service_client::RunServiceClient::with_interceptor(
            self.channel.clone(),
            self.metadata.clone(),
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Turns a failed call into an error the exit code tells apart.
pub(crate) fn call<T>(result: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| CallFailed(status).into())
}
