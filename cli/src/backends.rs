//! `taskloom backends …`: the LLM backends, their observed state, model
//! downloads onto Ollama backends, and the declared models and pools.

use std::io::IsTerminal;

use clap::Subcommand;
use comfy_table::Cell;
use indicatif::{ProgressBar, ProgressStyle};
use taskloom_proto::taskloom::v1 as pb;

use crate::output::{json_line, print_table, status_cell, table, time};
use crate::{CallFailed, Client, ClientOptions, Format, Outcome, call, collect_pages};

const BACKEND: &str = "taskloom.v1.Backend";

#[derive(Debug, Subcommand)]
pub enum BackendsCommand {
    /// List the backends by name, with their health and models as last
    /// synced.
    List,
    /// Show a backend (by id or name) and what the last sync saw.
    Get { backend: String },
    /// Sync a backend (by id or name) now: health, latency, its model list;
    /// prints what it saw.
    Sync { backend: String },
    /// Download MODEL onto an Ollama backend (by id or name), showing its
    /// progress.
    Pull { backend: String, model: String },
    /// List the declared models.
    Models,
    /// List the pools, with their backends and models.
    Pools,
}

pub async fn run(options: &ClientOptions, command: BackendsCommand) -> anyhow::Result<Outcome> {
    let client = Client::connect(options).await?;
    let format = options.output;
    match command {
        BackendsCommand::List => {
            let backends = list_backends(&client).await?;
            match format {
                Format::Json => {
                    for backend in &backends {
                        json_line(BACKEND, backend)?;
                    }
                }
                Format::Table => {
                    let mut rows =
                        table(["NAME", "ID", "TYPE", "URL", "HEALTH", "MODELS", "SYNCED"]);
                    for backend in &backends {
                        let state = backend.state.clone().unwrap_or_default();
                        rows.add_row(vec![
                            Cell::new(&backend.name),
                            Cell::new(&backend.id),
                            Cell::new(backend_type(backend.r#type)),
                            Cell::new(&backend.base_url),
                            status_cell(health(state.health)),
                            Cell::new(state.models.len()),
                            Cell::new(time(state.last_sync_time.as_ref())),
                        ]);
                    }
                    print_table(&rows);
                }
            }
        }
        BackendsCommand::Get { backend } => {
            let backend = find(&client, &backend).await?;
            print_backend(format, &backend)?;
        }
        BackendsCommand::Sync { backend } => {
            let id = find(&client, &backend).await?.id;
            let backend = call(
                client
                    .backends()
                    .sync_backend(pb::SyncBackendRequest { id })
                    .await,
            )?;
            print_backend(format, &backend)?;
        }
        BackendsCommand::Pull { backend, model } => {
            let backend = find(&client, &backend).await?;
            return pull(&client, format, &backend, &model).await;
        }
        BackendsCommand::Models => {
            let models = list_models(&client).await?;
            match format {
                Format::Json => {
                    for model in &models {
                        json_line("taskloom.v1.Model", model)?;
                    }
                }
                Format::Table => {
                    let mut rows = table(["NAME", "CONTEXT", "CAPABILITIES", "CREATED"]);
                    for model in &models {
                        rows.add_row(vec![
                            model.name.clone(),
                            context_length(model.context_length),
                            capabilities(&model.capabilities),
                            time(model.create_time.as_ref()),
                        ]);
                    }
                    print_table(&rows);
                }
            }
        }
        BackendsCommand::Pools => {
            let pools = list_pools(&client).await?;
            let mut rows = table(["POOL", "PURPOSE", "BACKENDS", "MODELS", "DESCRIPTION"]);
            for pool in &pools {
                let (backends, models) = pool_members(&client, &pool.id).await?;
                match format {
                    Format::Json => {
                        // The pool as the API returns it, with its members.
                        let mut json = crate::output::to_json("taskloom.v1.Pool", pool)?;
                        json["backends"] = backends.iter().map(|b| b.name.clone()).collect();
                        json["models"] = models.iter().map(|m| m.name.clone()).collect();
                        crate::output::print_line(&json)?;
                    }
                    Format::Table => {
                        rows.add_row(vec![
                            pool.id.clone(),
                            pool.purpose.clone(),
                            names(backends.iter().map(|b| b.name.as_str())),
                            if pool.discover_models && models.is_empty() {
                                "(discovered)".to_string()
                            } else {
                                names(models.iter().map(|m| m.name.as_str()))
                            },
                            pool.description.clone(),
                        ]);
                    }
                }
            }
            if format == Format::Table {
                print_table(&rows);
            }
        }
    }
    Ok(Outcome::Ok)
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

/// A backend by id, else by name: people know backends by name, the API by
/// id. Neither is the API's `NOT_FOUND` for the id.
async fn find(client: &Client, key: &str) -> anyhow::Result<pb::Backend> {
    let by_id = client
        .backends()
        .get_backend(pb::GetBackendRequest { id: key.into() })
        .await;
    match by_id {
        Ok(backend) => Ok(backend.into_inner()),
        Err(status) if status.code() == tonic::Code::NotFound => {
            let named = list_backends(client)
                .await?
                .into_iter()
                .find(|backend| backend.name == key);
            named.ok_or_else(|| {
                CallFailed(tonic::Status::not_found(format!(
                    "no backend has the id or name {key:?}"
                )))
                .into()
            })
        }
        Err(status) => Err(CallFailed(status).into()),
    }
}

async fn list_backends(client: &Client) -> anyhow::Result<Vec<pb::Backend>> {
    collect_pages(usize::MAX, |page_size, page_token| {
        let mut service = client.backends();
        let request = pb::ListBackendsRequest {
            page_size,
            page_token,
        };
        async move {
            let page = call(service.list_backends(request).await)?;
            Ok((page.backends, page.next_page_token))
        }
    })
    .await
}

async fn list_models(client: &Client) -> anyhow::Result<Vec<pb::Model>> {
    collect_pages(usize::MAX, |page_size, page_token| {
        let mut service = client.backends();
        let request = pb::ListModelsRequest {
            page_size,
            page_token,
        };
        async move {
            let page = call(service.list_models(request).await)?;
            Ok((page.models, page.next_page_token))
        }
    })
    .await
}

async fn list_pools(client: &Client) -> anyhow::Result<Vec<pb::Pool>> {
    collect_pages(usize::MAX, |page_size, page_token| {
        let mut service = client.backends();
        let request = pb::ListPoolsRequest {
            page_size,
            page_token,
        };
        async move {
            let page = call(service.list_pools(request).await)?;
            Ok((page.pools, page.next_page_token))
        }
    })
    .await
}

/// A pool's backends and declared models.
async fn pool_members(
    client: &Client,
    pool_id: &str,
) -> anyhow::Result<(Vec<pb::Backend>, Vec<pb::Model>)> {
    let backends = collect_pages(usize::MAX, |page_size, page_token| {
        let mut service = client.backends();
        let request = pb::ListPoolBackendsRequest {
            pool_id: pool_id.into(),
            page_size,
            page_token,
        };
        async move {
            let page = call(service.list_pool_backends(request).await)?;
            Ok((page.backends, page.next_page_token))
        }
    })
    .await?;
    let models = collect_pages(usize::MAX, |page_size, page_token| {
        let mut service = client.backends();
        let request = pb::ListPoolModelsRequest {
            pool_id: pool_id.into(),
            page_size,
            page_token,
        };
        async move {
            let page = call(service.list_pool_models(request).await)?;
            Ok((page.models, page.next_page_token))
        }
    })
    .await?;
    Ok((backends, models))
}

fn print_backend(format: Format, backend: &pb::Backend) -> anyhow::Result<()> {
    if format == Format::Json {
        return json_line(BACKEND, backend);
    }
    let state = backend.state.clone().unwrap_or_default();
    let mut rows = table(["FIELD", "VALUE"]);
    let mut add = |field: &str, value: Cell| {
        if !value.content().is_empty() {
            rows.add_row(vec![Cell::new(field), value]);
        }
    };
    add("id", Cell::new(&backend.id));
    add("name", Cell::new(&backend.name));
    add("type", Cell::new(backend_type(backend.r#type)));
    add("url", Cell::new(&backend.base_url));
    add("health", status_cell(health(state.health)));
    add("last error", Cell::new(&state.last_error));
    add("synced", Cell::new(time(state.last_sync_time.as_ref())));
    if let Some(latency) = state.latency {
        let millis = latency.seconds * 1000 + i64::from(latency.nanos) / 1_000_000;
        add("latency", Cell::new(format!("{millis} ms")));
    }
    add("models", Cell::new(state.models.join(", ")));
    if backend.max_concurrency > 0 {
        add("max concurrency", Cell::new(backend.max_concurrency));
    }
    if backend.requests_per_minute > 0 {
        add("requests/minute", Cell::new(backend.requests_per_minute));
    }
    if backend.tokens_per_minute > 0 {
        add("tokens/minute", Cell::new(backend.tokens_per_minute));
    }
    add(
        "labels",
        Cell::new(
            backend
                .labels
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    );
    add(
        "api key",
        Cell::new(if backend.has_api_key { "set" } else { "" }),
    );
    add("created", Cell::new(time(backend.create_time.as_ref())));
    print_table(&rows);
    Ok(())
}

/// Streams a pull: a progress bar on a terminal, otherwise a line per
/// status and per tenth of the download (every message with `-o json`).
async fn pull(
    client: &Client,
    format: Format,
    backend: &pb::Backend,
    model: &str,
) -> anyhow::Result<Outcome> {
    let mut stream = call(
        client
            .backends()
            .pull_model(pb::PullModelRequest {
                backend_id: backend.id.clone(),
                model: model.into(),
            })
            .await,
    )?;
    let mut display = match format {
        Format::Json => Display::Json,
        Format::Table if std::io::stderr().is_terminal() => Display::Bar(bar()),
        Format::Table => Display::Lines {
            status: String::new(),
            tenth: -1,
        },
    };
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(status) => {
                display.abandon();
                return Err(CallFailed(status).into());
            }
        };
        display.show(&message)?;
        if message.done {
            break;
        }
    }
    display.finish();
    if format == Format::Table {
        println!("pulled {model} onto {}", backend.name);
    }
    Ok(Outcome::Ok)
}

fn bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    // The template is a constant: it parses.
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

enum Display {
    Json,
    Bar(ProgressBar),
    /// The last status line printed, and the tenth of the download reached
    /// (-1 before any).
    Lines {
        status: String,
        tenth: i64,
    },
}

impl Display {
    fn show(&mut self, message: &pb::PullModelProgress) -> anyhow::Result<()> {
        match self {
            Display::Json => json_line("taskloom.v1.PullModelProgress", message)?,
            Display::Bar(bar) => {
                bar.set_message(message.status.clone());
                if message.total_bytes > 0 {
                    bar.set_length(u64::try_from(message.total_bytes).unwrap_or(0));
                    bar.set_position(u64::try_from(message.completed_bytes).unwrap_or(0));
                }
            }
            Display::Lines { status, tenth } => {
                let reached = if message.total_bytes > 0 {
                    (message.completed_bytes.saturating_mul(10) / message.total_bytes).min(10)
                } else {
                    -1
                };
                let changed = *status != message.status;
                if changed {
                    status.clone_from(&message.status);
                    *tenth = -1;
                }
                if changed || reached > *tenth {
                    println!("{}", progress_line(message));
                    *tenth = reached.max(*tenth);
                }
            }
        }
        Ok(())
    }

    fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.finish();
        }
    }

    fn abandon(&self) {
        if let Display::Bar(bar) = self {
            bar.abandon();
        }
    }
}

/// `pulling sha256:…: 1000/3000 bytes (33%)`, or the status alone.
fn progress_line(message: &pb::PullModelProgress) -> String {
    if message.total_bytes > 0 {
        format!(
            "{}: {}/{} bytes ({}%)",
            message.status,
            message.completed_bytes,
            message.total_bytes,
            message.completed_bytes.saturating_mul(100) / message.total_bytes
        )
    } else {
        message.status.clone()
    }
}

/// `BACKEND_TYPE_OPENAI_COMPATIBLE` → `openai_compatible`.
fn backend_type(kind: i32) -> String {
    pb::BackendType::try_from(kind)
        .map(|kind| {
            kind.as_str_name()
                .trim_start_matches("BACKEND_TYPE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| kind.to_string())
}

fn health(health: i32) -> String {
    match pb::BackendHealth::try_from(health) {
        Ok(pb::BackendHealth::Unspecified) => "unsynced".to_string(),
        Ok(health) => health
            .as_str_name()
            .trim_start_matches("BACKEND_HEALTH_")
            .to_string(),
        Err(_) => health.to_string(),
    }
}

fn context_length(length: i32) -> String {
    if length > 0 {
        length.to_string()
    } else {
        String::new()
    }
}

fn capabilities(capabilities: &[i32]) -> String {
    capabilities
        .iter()
        .map(|capability| {
            pb::ModelCapability::try_from(*capability)
                .map(|capability| {
                    capability
                        .as_str_name()
                        .trim_start_matches("MODEL_CAPABILITY_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|_| capability.to_string())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(status: &str, completed: i64, total: i64) -> pb::PullModelProgress {
        pb::PullModelProgress {
            status: status.into(),
            completed_bytes: completed,
            total_bytes: total,
            done: false,
        }
    }

    #[test]
    fn progress_lines_say_bytes_and_percent() {
        assert_eq!(
            progress_line(&progress("pulling abc", 1000, 3000)),
            "pulling abc: 1000/3000 bytes (33%)"
        );
        assert_eq!(
            progress_line(&progress("pulling manifest", 0, 0)),
            "pulling manifest"
        );
    }

    #[test]
    fn names_read_as_people_say_them() {
        assert_eq!(
            backend_type(pb::BackendType::OpenaiCompatible as i32),
            "openai_compatible"
        );
        assert_eq!(health(pb::BackendHealth::Healthy as i32), "HEALTHY");
        assert_eq!(health(0), "unsynced");
    }
}
