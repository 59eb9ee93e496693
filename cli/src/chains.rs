//! `taskloom chains …`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use taskloom_proto::taskloom::v1 as pb;

use crate::output::{self, json_line, print_line, print_table, short, table, time};
use crate::{CallFailed, Client, ClientOptions, Format, Outcome, call, collect_pages};

const CHAIN: &str = "taskloom.v1.Chain";

#[derive(Debug, Subcommand)]
pub enum ChainsCommand {
    /// Create or update chains from JSON or YAML files (the protobuf JSON
    /// mapping: camelCase or snake_case, contenox chains as they are). A
    /// file whose content equals the chain's latest version makes no new
    /// version.
    Apply {
        /// A chain file, or a directory whose `*.json`, `*.yaml` and `*.yml`
        /// files are applied in name order.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List the latest version of every chain.
    List,
    /// Print a chain's definition (the latest version, or `--version`).
    Get {
        id: String,
        #[arg(long, default_value_t = 0)]
        version: i64,
    },
    /// List a chain's versions, newest first.
    Versions { id: String },
    /// Check chain files without storing them; exits 1 when one is invalid.
    Validate {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Delete a chain (runs keep the versions they pinned).
    Delete { id: String },
}

pub async fn run(options: &ClientOptions, command: ChainsCommand) -> anyhow::Result<Outcome> {
    let format = options.output;
    // Files are read before connecting: a typo fails fast and offline.
    match command {
        ChainsCommand::Apply { file } => {
            let chains = read_chains(&file)?;
            let client = Client::connect(options).await?;
            for (path, chain) in chains {
                apply(&client, format, &path, chain).await?;
            }
            Ok(Outcome::Ok)
        }
        ChainsCommand::Validate { file } => {
            let chains = read_chains(&file)?;
            let client = Client::connect(options).await?;
            let mut outcome = Outcome::Ok;
            for (path, chain) in chains {
                let response = call(
                    client
                        .chains()
                        .validate_chain(pb::ValidateChainRequest { chain: Some(chain) })
                        .await,
                )?;
                if !response.valid {
                    outcome = Outcome::Invalid;
                }
                match format {
                    Format::Json => {
                        let mut line =
                            output::to_json("taskloom.v1.ValidateChainResponse", &response)?;
                        if let Some(object) = line.as_object_mut() {
                            object.insert("file".into(), path.display().to_string().into());
                            object.insert("valid".into(), response.valid.into());
                        }
                        print_line(&line)?;
                    }
                    Format::Table if response.valid => println!("{}: valid", path.display()),
                    Format::Table => {
                        println!("{}: invalid", path.display());
                        for violation in &response.violations {
                            println!(
                                "  {}: {} ({})",
                                violation.field, violation.description, violation.reason
                            );
                        }
                    }
                }
            }
            Ok(outcome)
        }
        ChainsCommand::List => {
            let client = Client::connect(options).await?;
            let chains = collect_pages(usize::MAX, |page_size, page_token| {
                let mut service = client.chains();
                let request = pb::ListChainsRequest {
                    page_size,
                    page_token,
                };
                async move {
                    let page = call(service.list_chains(request).await)?;
                    Ok((page.chains, page.next_page_token))
                }
            })
            .await?;
            print_chains(format, &chains, true)
        }
        ChainsCommand::Get { id, version } => {
            let client = Client::connect(options).await?;
            let chain = call(
                client
                    .chains()
                    .get_chain(pb::GetChainRequest { id, version })
                    .await,
            )?;
            match format {
                Format::Json => json_line(CHAIN, &chain)?,
                Format::Table => println!(
                    "{}",
                    serde_json::to_string_pretty(&output::to_json(CHAIN, &chain)?)?
                ),
            }
            Ok(Outcome::Ok)
        }
        ChainsCommand::Versions { id } => {
            let client = Client::connect(options).await?;
            let chains = collect_pages(usize::MAX, |page_size, page_token| {
                let mut service = client.chains();
                let request = pb::ListChainVersionsRequest {
                    id: id.clone(),
                    page_size,
                    page_token,
                };
                async move {
                    let page = call(service.list_chain_versions(request).await)?;
                    Ok((page.chains, page.next_page_token))
                }
            })
            .await?;
            print_chains(format, &chains, false)
        }
        ChainsCommand::Delete { id } => {
            let client = Client::connect(options).await?;
            call(
                client
                    .chains()
                    .delete_chain(pb::DeleteChainRequest {
                        id: id.clone(),
                        etag: String::new(),
                    })
                    .await,
            )?;
            match format {
                Format::Json => print_line(&serde_json::json!({"chain": id, "result": "deleted"}))?,
                Format::Table => println!("chain {id}: deleted"),
            }
            Ok(Outcome::Ok)
        }
    }
}

fn print_chains(format: Format, chains: &[pb::Chain], with_id: bool) -> anyhow::Result<Outcome> {
    match format {
        Format::Json => {
            for chain in chains {
                json_line(CHAIN, chain)?;
            }
        }
        Format::Table => {
            let mut header = vec!["VERSION", "TASKS", "UPDATED", "DESCRIPTION"];
            if with_id {
                header.insert(0, "ID");
            }
            let mut rows = table(header);
            for chain in chains {
                let mut row = vec![
                    chain.version.to_string(),
                    chain.tasks.len().to_string(),
                    time(chain.update_time.as_ref()),
                    short(&chain.description, 60),
                ];
                if with_id {
                    row.insert(0, chain.id.clone());
                }
                rows.add_row(row);
            }
            print_table(&rows);
        }
    }
    Ok(Outcome::Ok)
}

/// Whether `path` names a YAML file (JSON otherwise).
fn is_yaml(path: &Path) -> bool {
    path.extension()
        .is_some_and(|extension| extension == "yaml" || extension == "yml")
}

/// The chain files named by `path`: the file itself, or a directory's
/// `*.json`, `*.yaml` and `*.yml` files in name order.
fn read_chains(path: &Path) -> anyhow::Result<Vec<(PathBuf, pb::Chain)>> {
    let files = if path.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).with_context(|| format!("read {}", path.display()))? {
            let file = entry?.path();
            if file
                .extension()
                .is_some_and(|extension| extension == "json")
                && file.is_file()
            {
                files.push(file);
            }
        }
        files.sort();
        if files.is_empty() {
            anyhow::bail!("{} holds no *.json, *.yaml or *.yml file", path.display());
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            let chain = if is_yaml(&file) {
                output::from_yaml::<pb::Chain>(CHAIN, &text)
            } else {
                output::from_json::<pb::Chain>(CHAIN, &text)
            };
            let chain = chain.with_context(|| format!("{} is not a chain", file.display()))?;
            if chain.id.is_empty() {
                anyhow::bail!("{}: the chain has no id", file.display());
            }
            Ok((file, chain))
        })
        .collect()
}

/// The definition without the fields the server sets.
fn definition(chain: &pb::Chain) -> pb::Chain {
    pb::Chain {
        version: 0,
        etag: String::new(),
        create_time: None,
        update_time: None,
        ..chain.clone()
    }
}

/// Creates `chain`, or updates it when its definition differs from the
/// latest version. The comparison is the client's: the API makes a new
/// version for every update.
async fn apply(
    client: &Client,
    format: Format,
    path: &Path,
    chain: pb::Chain,
) -> anyhow::Result<()> {
    let id = chain.id.clone();
    let latest = match client
        .chains()
        .get_chain(pb::GetChainRequest {
            id: id.clone(),
            version: 0,
        })
        .await
    {
        Ok(response) => Some(response.into_inner()),
        Err(status) if status.code() == tonic::Code::NotFound => None,
        Err(status) => return Err(CallFailed(status).into()),
    };
    let (result, version, changes) = match latest {
        None => {
            let created = call(
                client
                    .chains()
                    .create_chain(pb::CreateChainRequest {
                        // Output-only fields (a file saved by `chains get
                        // -o json`) are not the client's to set.
                        chain: Some(definition(&chain)),
                        request_id: uuid::Uuid::new_v4().to_string(),
                    })
                    .await,
            )?;
            ("created", created.version, Vec::new())
        }
        Some(latest) if definition(&latest) == definition(&chain) => {
            ("unchanged", latest.version, Vec::new())
        }
        Some(latest) => {
            let changes = describe_changes(&latest, &chain);
            let updated = call(
                client
                    .chains()
                    .update_chain(pb::UpdateChainRequest {
                        chain: Some(definition(&chain)),
                        // Someone else's update in between fails this one
                        // instead of being overwritten unseen.
                        etag: latest.etag.clone(),
                        request_id: uuid::Uuid::new_v4().to_string(),
                    })
                    .await,
            )?;
            ("updated", updated.version, changes)
        }
    };
    match format {
        Format::Json => print_line(&serde_json::json!({
            "file": path.display().to_string(),
            "chain": id,
            "result": result,
            "version": version,
            "changes": changes,
        }))?,
        Format::Table => {
            println!("chain {id}: {result} (v{version})");
            for change in changes {
                println!("  {change}");
            }
        }
    }
    Ok(())
}

/// What differs between two definitions, task by task, for people.
fn describe_changes(old: &pb::Chain, new: &pb::Chain) -> Vec<String> {
    let mut changes = Vec::new();
    let old_chain = pb::Chain {
        tasks: Vec::new(),
        ..definition(old)
    };
    let new_chain = pb::Chain {
        tasks: Vec::new(),
        ..definition(new)
    };
    if old_chain != new_chain {
        changes.push("chain settings changed".to_string());
    }
    for task in &new.tasks {
        match old.tasks.iter().find(|old| old.id == task.id) {
            None => changes.push(format!("task {} added", task.id)),
            Some(old) if old != task => changes.push(format!("task {} changed", task.id)),
            Some(_) => {}
        }
    }
    for task in &old.tasks {
        if !new.tasks.iter().any(|new| new.id == task.id) {
            changes.push(format!("task {} removed", task.id));
        }
    }
    let order = |chain: &pb::Chain| {
        chain
            .tasks
            .iter()
            .map(|task| task.id.clone())
            .collect::<Vec<_>>()
    };
    if changes.is_empty() && order(old) != order(new) {
        changes.push("tasks reordered".to_string());
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, handler: &str) -> pb::Task {
        pb::Task {
            id: id.into(),
            handler: handler.into(),
            ..Default::default()
        }
    }

    #[test]
    fn changes_are_named_task_by_task() {
        let old = pb::Chain {
            id: "c".into(),
            tasks: vec![task("a", "noop"), task("b", "noop")],
            version: 3,
            etag: "3".into(),
            ..Default::default()
        };
        let new = pb::Chain {
            id: "c".into(),
            description: "new".into(),
            tasks: vec![task("a", "raw_string"), task("c", "noop")],
            ..Default::default()
        };
        assert_eq!(
            describe_changes(&old, &new),
            [
                "chain settings changed",
                "task a changed",
                "task c added",
                "task b removed"
            ]
        );
        let reordered = pb::Chain {
            tasks: vec![task("b", "noop"), task("a", "noop")],
            ..old.clone()
        };
        assert_eq!(describe_changes(&old, &reordered), ["tasks reordered"]);
        // Output-only fields are not content.
        assert_eq!(
            definition(&old),
            definition(&pb::Chain {
                version: 1,
                etag: String::new(),
                ..old.clone()
            })
        );
    }
}
