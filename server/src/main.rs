use std::process::ExitCode;

use clap::Parser;
use taskloom_server::config::{Cli, Command};
use taskloom_server::secrets::SecretBox;
use taskloom_server::{server, store, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => {
            let with_stdin = args.exit_with_stdin;
            let signal = server::shutdown_signal();
            let shutdown = async move {
                tokio::select! {
                    () = signal => {}
                    () = server::stdin_closed(), if with_stdin => {
                        tracing::info!("standard input closed");
                    }
                }
            };
            server::run(*args, shutdown).await
        }
        Command::Migrate(args) => migrate(&args.database_url).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "taskloom failed");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(database_url: &str) -> anyhow::Result<()> {
    // Migrations read and write no secret: any key will do.
    let store = store::open(database_url, SecretBox::ephemeral()).await?;
    store.migrate().await?;
    println!(
        "taskloom: {} database migrated ({})",
        store.kind(),
        server::describe_location(database_url)
    );
    Ok(())
}
