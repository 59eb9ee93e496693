use std::process::ExitCode;

use clap::Parser;
use taskloom_server::config::{Cli, Command};
use taskloom_server::secrets::SecretBox;
use taskloom_server::{render, server, store, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::RenderSandbox(args) = &cli.command {
        // A render sandbox is single-threaded and starts no runtime: its
        // memory limit is for templates, not for worker threads.
        return render::serve_sandbox(args.limits());
    }
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("taskloom: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
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
            Command::RenderSandbox(_) => Ok(()),
        }
    });
    // A blocking read of standard input (`--exit-with-stdin`) never ends by
    // itself; dropping the runtime would wait for it forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
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
