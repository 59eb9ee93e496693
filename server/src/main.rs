use std::process::ExitCode;

use clap::Parser;
use taskloom_cli::keys::KeysAction;
use taskloom_server::config::{Cli, Command, KeysCommand};
use taskloom_server::secrets::SecretBox;
use taskloom_server::{render, server, store, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::RenderSandbox(args) = &cli.command {
        // A render sandbox is single-threaded and starts no runtime: its
        // memory limit is for templates, not for worker threads.
        return render::serve_sandbox(args.limits());
    }
    if let Command::Client(command) = cli.command {
        // A client logs nothing: what it prints is its output.
        return taskloom_cli::main(command);
    }
    if let Command::Keys(command) = &cli.command
        && let Some((server, action)) = remote_keys(command)
    {
        return taskloom_cli::keys::main(server, action);
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
            Command::Keys(command) => keys(command).await,
            Command::RenderSandbox(_) | Command::Client(_) => Ok(()),
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

/// `taskloom keys …` naming a server and no database: the same action
/// through the server's `KeyService`.
fn remote_keys(command: &KeysCommand) -> Option<(&taskloom_cli::ServerArgs, KeysAction)> {
    let target = match command {
        KeysCommand::Create(args) => &args.target,
        KeysCommand::List(args) => &args.target,
        KeysCommand::Revoke(args) => &args.target,
    };
    if target.database().is_some() {
        return None;
    }
    let action = match command {
        KeysCommand::Create(args) => KeysAction::Create {
            role: args.role.clone(),
            name: args.name.clone(),
            namespace: args.namespace.clone(),
            queues: args.queues.clone(),
            expires_in: args.expires_in,
        },
        KeysCommand::List(_) => KeysAction::List,
        KeysCommand::Revoke(args) => KeysAction::Revoke {
            id: args.id.clone(),
        },
    };
    Some((&target.server, action))
}

/// `taskloom keys …`: writes the store directly (a fresh install has no key
/// to call the API with). Running servers see a change within a second.
async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    use anyhow::Context;
    use chrono::{SubsecRound, Utc};
    use taskloom_server::api;
    use taskloom_server::store::AuditRecord;

    let target = match &command {
        KeysCommand::Create(args) => &args.target,
        KeysCommand::List(args) => &args.target,
        KeysCommand::Revoke(args) => &args.target,
    };
    let database_url = target
        .database()
        .context("no database to write the keys in")?
        .to_string();
    let database_url = database_url.as_str();
    // Keys are hashed, not sealed: any secret box will do.
    let store = store::open(database_url, SecretBox::ephemeral())
        .await
        .with_context(|| format!("open database {}", server::describe_location(database_url)))?;
    store.migrate().await.context("migrate database")?;
    let audit = |action: &str, id: &str| AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        at: Utc::now().trunc_subsecs(6),
        actor: "cli".to_string(),
        action: action.to_string(),
        resource_type: "api_key".to_string(),
        resource_id: id.to_string(),
        request_id: String::new(),
        outcome: AuditRecord::OK.to_string(),
        error_message: String::new(),
        replica: "cli".to_string(),
        namespace: taskloom_server::namespace::DEFAULT.to_string(),
    };
    match command {
        KeysCommand::Create(args) => {
            let expires_at = match args.expires_in {
                None => None,
                Some(ttl) if ttl.is_zero() => anyhow::bail!("--expires-in must be positive"),
                Some(ttl) => Some(Utc::now() + chrono::Duration::from_std(ttl)?),
            };
            let spec = api::KeySpec {
                name: args.name,
                role: args.role,
                namespace: args.namespace,
                queues: args.queues,
                expires_at,
            };
            let (record, secret) =
                api::new_key(spec, "cli").map_err(|error| anyhow::anyhow!("{error}"))?;
            store
                .create_api_key(&record, &audit("CreateApiKey", &record.id))
                .await
                .context("store the key")?;
            println!("id: {}", record.id);
            println!("role: {}", record.role);
            println!("secret: {secret}");
            eprintln!(
                "taskloom: the secret is shown only this once; send it as \
                 `authorization: Bearer <secret>`"
            );
        }
        KeysCommand::List(_) => {
            let now = Utc::now();
            for key in store.list_api_keys().await? {
                let state = if key.revoked_at.is_some() {
                    "revoked"
                } else if key.expires_at.is_some_and(|at| at <= now) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}…\t{}",
                    key.id,
                    key.role,
                    key.namespace.as_deref().unwrap_or("*"),
                    state,
                    key.name,
                    key.prefix,
                    key.expires_at
                        .map_or_else(|| "never".to_string(), |at| at.to_rfc3339()),
                );
            }
        }
        KeysCommand::Revoke(args) => {
            let at = Utc::now().trunc_subsecs(6);
            let key = store
                .revoke_api_key(&args.id, at, &audit("RevokeApiKey", &args.id))
                .await
                .with_context(|| format!("revoke {}", args.id))?;
            println!("revoked: {}", key.id);
        }
    }
    Ok(())
}
