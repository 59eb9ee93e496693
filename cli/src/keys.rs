//! `taskloom keys …` against a server (`KeyService`), for when the command
//! names one (`--address`, `--profile` or their variables) and no database.
//! The same verbs without a server write the database directly (the
//! server's `keys` command, which bootstraps a fresh install).

use std::process::ExitCode;
use std::time::Duration;

use comfy_table::Cell;
use taskloom_proto::taskloom::v1 as pb;

use crate::output::{json_line, print_table, status_cell, table, time};
use crate::{Client, ClientOptions, Format, Outcome, ServerArgs, call};

/// What `taskloom keys` was asked, from its command line.
#[derive(Debug, Clone)]
pub enum KeysAction {
    Create {
        role: String,
        name: String,
        namespace: String,
        queues: Vec<String>,
        expires_in: Option<Duration>,
    },
    List,
    Revoke {
        id: String,
    },
}

/// Runs `action` against the server `args` names and returns the exit code,
/// as [`crate::main`] does for the other commands.
pub fn main(args: &ServerArgs, action: KeysAction) -> ExitCode {
    crate::run_to_exit(async move { run(&args.without_namespace().start()?, action).await })
}

async fn run(options: &ClientOptions, action: KeysAction) -> anyhow::Result<Outcome> {
    let client = Client::connect(options).await?;
    match action {
        KeysAction::Create {
            role,
            name,
            namespace,
            queues,
            expires_in,
        } => {
            if expires_in.is_some_and(|ttl| ttl.is_zero()) {
                anyhow::bail!("--expires-in must be positive");
            }
            let created = call(
                client
                    .keys()
                    .create_api_key(pb::CreateApiKeyRequest {
                        name,
                        role,
                        namespace,
                        queues,
                        expire_time: None,
                        ttl: expires_in.map(|ttl| prost_types::Duration {
                            seconds: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
                            nanos: 0,
                        }),
                    })
                    .await,
            )?;
            let key = created.key.clone().unwrap_or_default();
            match options.output {
                Format::Json => json_line("taskloom.v1.CreateApiKeyResponse", &created)?,
                // As the local `keys create` prints it.
                Format::Table => {
                    println!("id: {}", key.id);
                    println!("role: {}", key.role);
                    println!("secret: {}", created.secret);
                }
            }
            eprintln!(
                "taskloom: the secret is shown only this once; send it as \
                 `authorization: Bearer <secret>`"
            );
        }
        KeysAction::List => {
            let list = call(client.keys().list_api_keys(pb::ListApiKeysRequest {}).await)?;
            match options.output {
                Format::Json => {
                    for key in &list.keys {
                        json_line("taskloom.v1.ApiKey", key)?;
                    }
                }
                Format::Table => {
                    let now: prost_types::Timestamp = std::time::SystemTime::now().into();
                    let mut rows = table([
                        "ID",
                        "ROLE",
                        "NAMESPACE",
                        "STATE",
                        "NAME",
                        "PREFIX",
                        "EXPIRES",
                        "LAST USED",
                    ]);
                    for key in &list.keys {
                        rows.add_row(vec![
                            Cell::new(&key.id),
                            Cell::new(&key.role),
                            Cell::new(if key.namespace.is_empty() {
                                "*"
                            } else {
                                &key.namespace
                            }),
                            status_cell(state(key, &now)),
                            Cell::new(&key.name),
                            Cell::new(format!("{}…", key.prefix)),
                            Cell::new(match &key.expire_time {
                                Some(at) => time(Some(at)),
                                None => "never".to_string(),
                            }),
                            Cell::new(time(key.last_used_time.as_ref())),
                        ]);
                    }
                    print_table(&rows);
                }
            }
        }
        KeysAction::Revoke { id } => {
            let key = call(
                client
                    .keys()
                    .revoke_api_key(pb::RevokeApiKeyRequest { id })
                    .await,
            )?;
            match options.output {
                Format::Json => json_line("taskloom.v1.ApiKey", &key)?,
                Format::Table => println!("revoked: {}", key.id),
            }
        }
    }
    Ok(Outcome::Ok)
}

/// `active`, `expired` or `revoked`, as the local `keys list` says.
fn state(key: &pb::ApiKey, now: &prost_types::Timestamp) -> &'static str {
    if key.revoke_time.is_some() {
        "revoked"
    } else if key
        .expire_time
        .is_some_and(|at| (at.seconds, at.nanos) <= (now.seconds, now.nanos))
    {
        "expired"
    } else {
        "active"
    }
}
