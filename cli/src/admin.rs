//! `taskloom audit …`, `taskloom namespaces …` and `taskloom queues …`:
//! what operators and admins look at and steer.

use clap::Subcommand;
use comfy_table::Cell;
use taskloom_proto::taskloom::v1 as pb;

use crate::filters::TimeRange;
use crate::output::{json_line, print_table, short, status_cell, table, time};
use crate::{Client, ClientOptions, Format, Outcome, call, collect_pages};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit events, newest first.
    List(AuditListArgs),
}

#[derive(Debug, clap::Args)]
pub struct AuditListArgs {
    /// Only this caller: `key:<id>`, `local`, `cli`, `replica:<id>`.
    #[arg(long, visible_alias = "principal")]
    actor: Option<String>,
    /// Only this action (the RPC's name, e.g. `CancelRun`).
    #[arg(long, visible_alias = "method")]
    action: Option<String>,
    /// Only this kind of resource: `chain`, `run`, `backend`, `queue`, …
    #[arg(long)]
    resource_type: Option<String>,
    /// Only this resource (needs `--resource-type`).
    #[arg(long, requires = "resource_type")]
    resource: Option<String>,
    /// Only events in this window.
    #[command(flatten)]
    time: TimeRange,
    /// At most this many events.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

pub async fn audit(options: &ClientOptions, command: AuditCommand) -> anyhow::Result<Outcome> {
    let AuditCommand::List(args) = command;
    let client = Client::connect(options).await?;
    // `--since` counts from now once: every page has the same window.
    let (start, end) = (args.time.start(), args.time.end());
    let events = collect_pages(args.limit, |page_size, page_token| {
        let mut service = client.audit();
        let request = pb::ListAuditEventsRequest {
            actor: args.actor.clone().unwrap_or_default(),
            action: args.action.clone().unwrap_or_default(),
            resource_type: args.resource_type.clone().unwrap_or_default(),
            resource_id: args.resource.clone().unwrap_or_default(),
            start_time: start,
            end_time: end,
            page_size,
            page_token,
        };
        async move {
            let page = call(service.list_audit_events(request).await)?;
            Ok((page.events, page.next_page_token))
        }
    })
    .await?;
    match options.output {
        Format::Json => {
            for event in &events {
                json_line("taskloom.v1.AuditEvent", event)?;
            }
        }
        Format::Table => {
            let mut rows = table(["TIME", "ACTOR", "ACTION", "RESOURCE", "OUTCOME", "ERROR"]);
            for event in &events {
                rows.add_row(vec![
                    Cell::new(time(event.time.as_ref())),
                    Cell::new(&event.actor),
                    Cell::new(&event.action),
                    Cell::new(format!("{} {}", event.resource_type, event.resource_id)),
                    status_cell(&event.outcome),
                    Cell::new(short(&event.error_message, 50)),
                ]);
            }
            print_table(&rows);
        }
    }
    Ok(Outcome::Ok)
}

#[derive(Debug, Subcommand)]
pub enum NamespacesCommand {
    /// List the namespaces the caller may see.
    List,
    /// Show a namespace.
    Get { name: String },
    /// Create a namespace (admin, with a key bound to no namespace).
    Create {
        name: String,
        /// Free text for people.
        #[arg(long, default_value = "")]
        description: String,
        /// A pool its LLM tasks may use; repeatable (every pool without
        /// it).
        #[arg(long = "pool")]
        pools: Vec<String>,
    },
    /// Delete a namespace with its chains, hooks and finished runs, and
    /// revoke the keys bound to it. Refused while it holds an unfinished
    /// run.
    Delete { name: String },
}

const NAMESPACE: &str = "taskloom.v1.Namespace";

pub async fn namespaces(
    options: &ClientOptions,
    command: NamespacesCommand,
) -> anyhow::Result<Outcome> {
    let client = Client::connect(options).await?;
    let format = options.output;
    match command {
        NamespacesCommand::List => {
            let list = call(
                client
                    .namespaces()
                    .list_namespaces(pb::ListNamespacesRequest {})
                    .await,
            )?;
            print_namespaces(format, &list.namespaces)?;
        }
        NamespacesCommand::Get { name } => {
            let namespace = call(
                client
                    .namespaces()
                    .get_namespace(pb::GetNamespaceRequest { name })
                    .await,
            )?;
            print_namespaces(format, &[namespace])?;
        }
        NamespacesCommand::Create {
            name,
            description,
            pools,
        } => {
            let namespace = call(
                client
                    .namespaces()
                    .create_namespace(pb::CreateNamespaceRequest {
                        name,
                        description,
                        pools,
                    })
                    .await,
            )?;
            match format {
                Format::Json => json_line(NAMESPACE, &namespace)?,
                Format::Table => println!("namespace {}: created", namespace.name),
            }
        }
        NamespacesCommand::Delete { name } => {
            let deleted = call(
                client
                    .namespaces()
                    .delete_namespace(pb::DeleteNamespaceRequest { name: name.clone() })
                    .await,
            )?;
            match format {
                Format::Json => json_line("taskloom.v1.DeleteNamespaceResponse", &deleted)?,
                Format::Table => println!(
                    "namespace {name}: deleted ({} finished runs with it)",
                    deleted.deleted_runs
                ),
            }
        }
    }
    Ok(Outcome::Ok)
}

fn print_namespaces(format: Format, namespaces: &[pb::Namespace]) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            for namespace in namespaces {
                json_line(NAMESPACE, namespace)?;
            }
        }
        Format::Table => {
            let mut rows = table(["NAME", "POOLS", "CREATED", "BY", "DESCRIPTION"]);
            for namespace in namespaces {
                rows.add_row(vec![
                    namespace.name.clone(),
                    if namespace.pools.is_empty() {
                        "(all)".to_string()
                    } else {
                        namespace.pools.join(", ")
                    },
                    time(namespace.create_time.as_ref()),
                    namespace.created_by.clone(),
                    short(&namespace.description, 50),
                ]);
            }
            print_table(&rows);
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// List the queues that have work, are paused or have a cap.
    List,
    /// Pause a queue on every replica: it offers nothing until resumed;
    /// leases in flight finish.
    Pause { name: String },
    /// Resume a paused queue.
    Resume { name: String },
}

const QUEUE: &str = "taskloom.v1.Queue";

pub async fn queues(options: &ClientOptions, command: QueuesCommand) -> anyhow::Result<Outcome> {
    let client = Client::connect(options).await?;
    let format = options.output;
    let changed = match command {
        QueuesCommand::List => {
            let list = call(
                client
                    .operations()
                    .list_queues(pb::ListQueuesRequest {})
                    .await,
            )?;
            match format {
                Format::Json => {
                    for queue in &list.queues {
                        json_line(QUEUE, queue)?;
                    }
                }
                Format::Table => {
                    let mut rows = table([
                        "QUEUE",
                        "STATE",
                        "READY",
                        "OLDEST",
                        "LEASED",
                        "SCHEDULED",
                        "CAP",
                    ]);
                    for queue in &list.queues {
                        rows.add_row(vec![
                            Cell::new(&queue.name),
                            status_cell(queue_state(queue)),
                            Cell::new(queue.ready),
                            Cell::new(
                                queue
                                    .oldest_ready_age
                                    .map(|age| format!("{}s", age.seconds))
                                    .unwrap_or_default(),
                            ),
                            Cell::new(queue.leased),
                            Cell::new(queue.scheduled),
                            Cell::new(if queue.concurrency_cap > 0 {
                                queue.concurrency_cap.to_string()
                            } else {
                                String::new()
                            }),
                        ]);
                    }
                    print_table(&rows);
                }
            }
            return Ok(Outcome::Ok);
        }
        QueuesCommand::Pause { name } => call(
            client
                .operations()
                .pause_queue(pb::PauseQueueRequest {
                    name,
                    request_id: uuid::Uuid::new_v4().to_string(),
                })
                .await,
        )?,
        QueuesCommand::Resume { name } => call(
            client
                .operations()
                .resume_queue(pb::ResumeQueueRequest {
                    name,
                    request_id: uuid::Uuid::new_v4().to_string(),
                })
                .await,
        )?,
    };
    match format {
        Format::Json => json_line(QUEUE, &changed)?,
        Format::Table => println!("queue {}: {}", changed.name, queue_state(&changed)),
    }
    Ok(Outcome::Ok)
}

fn queue_state(queue: &pb::Queue) -> &'static str {
    if queue.paused { "PAUSED" } else { "ACTIVE" }
}

#[derive(Debug, Subcommand)]
pub enum ReplicasCommand {
    /// List the server's replicas (and those that stopped lately).
    List,
    /// Drain a replica: it takes no new work, hands back or finishes what
    /// it holds within its grace period, then stops serving (admin).
    Drain { id: String },
}

const REPLICA: &str = "taskloom.v1.Replica";

pub async fn replicas(
    options: &ClientOptions,
    command: ReplicasCommand,
) -> anyhow::Result<Outcome> {
    let client = Client::connect(options).await?;
    let format = options.output;
    match command {
        ReplicasCommand::List => {
            let list = call(
                client
                    .operations()
                    .list_replicas(pb::ListReplicasRequest {})
                    .await,
            )?;
            match format {
                Format::Json => {
                    for replica in &list.replicas {
                        json_line(REPLICA, replica)?;
                    }
                }
                Format::Table => {
                    let mut rows = table([
                        "REPLICA",
                        "STATE",
                        "ADDRESS",
                        "VERSION",
                        "RUNS",
                        "LEASES",
                        "WORKERS",
                        "STARTED",
                        "HEARTBEAT",
                    ]);
                    for replica in &list.replicas {
                        rows.add_row(vec![
                            Cell::new(&replica.id),
                            status_cell(replica_state(replica.state)),
                            Cell::new(&replica.listen_address),
                            Cell::new(&replica.version),
                            Cell::new(replica.runs_held),
                            Cell::new(replica.leases_held),
                            Cell::new(replica.worker_sessions),
                            Cell::new(time(replica.start_time.as_ref())),
                            Cell::new(time(replica.heartbeat_time.as_ref())),
                        ]);
                    }
                    print_table(&rows);
                }
            }
        }
        ReplicasCommand::Drain { id } => {
            let replica = call(
                client
                    .operations()
                    .drain_replica(pb::DrainReplicaRequest {
                        id,
                        request_id: uuid::Uuid::new_v4().to_string(),
                    })
                    .await,
            )?;
            match format {
                Format::Json => json_line(REPLICA, &replica)?,
                Format::Table => {
                    println!("replica {}: {}", replica.id, replica_state(replica.state))
                }
            }
        }
    }
    Ok(Outcome::Ok)
}

/// `REPLICA_STATE_DRAINING` → `DRAINING`.
fn replica_state(state: i32) -> String {
    pb::ReplicaState::try_from(state)
        .map(|state| {
            state
                .as_str_name()
                .trim_start_matches("REPLICA_STATE_")
                .to_string()
        })
        .unwrap_or_else(|_| state.to_string())
}
