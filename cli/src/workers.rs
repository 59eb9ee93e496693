//! `taskloom workers …` and `taskloom dlq …`: what serves the queues, and
//! the attempts that failed for good.

use clap::Subcommand;
use taskloom_proto::taskloom::v1 as pb;

use crate::output::{json_line, print_table, short, table, time, value_text};
use crate::{Client, ClientOptions, Format, Outcome, call, collect_pages};

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// List the connected worker sessions.
    List {
        /// Only workers serving this queue.
        #[arg(long, default_value = "")]
        queue: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered attempts (failed with no retry left), newest
    /// first.
    List {
        /// Only attempts of this queue.
        #[arg(long, default_value = "")]
        queue: String,
    },
}

pub async fn workers(options: &ClientOptions, command: WorkersCommand) -> anyhow::Result<Outcome> {
    let WorkersCommand::List { queue } = command;
    let client = Client::connect(options).await?;
    let workers = collect_pages(usize::MAX, |page_size, page_token| {
        let mut service = client.workers();
        let request = pb::ListWorkersRequest {
            queue: queue.clone(),
            page_size,
            page_token,
        };
        async move {
            let page = call(service.list_workers(request).await)?;
            Ok((page.workers, page.next_page_token))
        }
    })
    .await?;
    match options.output {
        Format::Json => {
            for worker in &workers {
                json_line("taskloom.v1.WorkerSession", worker)?;
            }
        }
        Format::Table => {
            let mut rows = table([
                "WORKER",
                "QUEUES",
                "LEASES",
                "REPLICA",
                "CONNECTED",
                "HEARTBEAT",
            ]);
            for worker in &workers {
                rows.add_row(vec![
                    worker.worker_id.clone(),
                    worker.queues.join(", "),
                    format!("{}/{}", worker.leases_held, worker.slots),
                    worker.replica.clone(),
                    time(worker.connect_time.as_ref()),
                    time(worker.last_heartbeat_time.as_ref()),
                ]);
            }
            print_table(&rows);
        }
    }
    Ok(Outcome::Ok)
}

pub async fn dlq(options: &ClientOptions, command: DlqCommand) -> anyhow::Result<Outcome> {
    let DlqCommand::List { queue } = command;
    let client = Client::connect(options).await?;
    let attempts = collect_pages(usize::MAX, |page_size, page_token| {
        let mut service = client.workers();
        let request = pb::ListDeadLettersRequest {
            queue: queue.clone(),
            page_size,
            page_token,
        };
        async move {
            let page = call(service.list_dead_letters(request).await)?;
            Ok((page.attempts, page.next_page_token))
        }
    })
    .await?;
    match options.output {
        Format::Json => {
            for attempt in &attempts {
                json_line("taskloom.v1.TaskAttempt", attempt)?;
            }
        }
        Format::Table => {
            let mut rows = table(["RUN", "TASK", "ATTEMPT", "QUEUE", "ENDED", "ERROR"]);
            for attempt in &attempts {
                let error = if attempt.error.is_empty() {
                    value_text(attempt.output.as_ref())
                } else {
                    attempt.error.clone()
                };
                rows.add_row(vec![
                    attempt.run_id.clone(),
                    attempt.task_id.clone(),
                    attempt.attempt.to_string(),
                    attempt.queue.clone(),
                    time(attempt.end_time.as_ref()),
                    short(&error, 50),
                ]);
            }
            print_table(&rows);
        }
    }
    Ok(Outcome::Ok)
}
