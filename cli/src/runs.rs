//! `taskloom runs …`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use futures::StreamExt;
use taskloom_proto::taskloom::v1 as pb;

use comfy_table::Cell;

use crate::filters::TimeRange;
use crate::output::{
    self, attempt_status, event_type, json_line, print_table, run_status, short, status_cell,
    table, time, value_text,
};
use crate::{CallFailed, Client, ClientOptions, Format, Outcome, call, collect_pages};

const RUN: &str = "taskloom.v1.Run";
const EVENT: &str = "taskloom.v1.RunEvent";

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Start a run of a stored chain; with `--watch`, follow it to its end
    /// (exit code 4 when it fails or is cancelled).
    Start(StartArgs),
    /// List runs, newest first.
    List(ListArgs),
    /// Show a run.
    Get { run: String },
    /// Follow a run live to its end: task lines and streamed tokens (exit
    /// code 4 when it fails or is cancelled).
    Watch { run: String },
    /// List a run's stored events.
    Events { run: String },
    /// List a run's task attempts.
    Attempts { run: String },
    /// Cancel a run.
    Cancel {
        run: String,
        /// Why, recorded in the run's events.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Stop dispatching a run's tasks.
    Pause {
        run: String,
        /// Also cancel executing attempts (they run again on resume).
        #[arg(long)]
        cancel_running: bool,
    },
    /// Resume a paused run.
    Resume { run: String },
    /// Continue a failed run from the task that failed.
    Retry { run: String },
    /// Re-derive a run's path from its recorded outputs (no model, hook or
    /// worker is called) and say whether it diverges; exits 4 when it does.
    Replay { run: String },
    /// Delete a finished run with its attempts and events.
    Delete { run: String },
    /// Run a request file (`ExecuteChain`, contenox's `POST /tasks`: a
    /// chain id or an inline chain, and the input) and wait for the end:
    /// the trace on stderr, the output on stdout. Exits 4 when the run
    /// failed or was cancelled, 3 (DEADLINE_EXCEEDED) when the wait
    /// (`waitTimeout`, default 5 minutes) ended first.
    Execute {
        /// The request, JSON or YAML (e.g. examples/qa.json).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Answer the `human_input` task a run waits on.
    Input {
        run: String,
        /// The task answered (default: the one the run waits on).
        #[arg(long)]
        task: Option<String>,
        /// The answer, as text.
        #[arg(long)]
        value: String,
    },
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The stored chain's id.
    chain: String,
    /// Run this version instead of the latest.
    #[arg(long, default_value_t = 0)]
    version: i64,
    /// The input, as text.
    #[arg(long, group = "run_input")]
    input: Option<String>,
    /// The input, as JSON (its type inferred from the JSON, as the API does).
    #[arg(long, group = "run_input")]
    input_json: Option<String>,
    /// The input: the text of this file (`-`: standard input).
    #[arg(long, group = "run_input")]
    input_file: Option<PathBuf>,
    /// A label `key=value`; repeatable.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Follow the run to its end, as `runs watch`.
    #[arg(long)]
    watch: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs in this state (`running`, `failed`, …); repeatable.
    #[arg(long = "status", value_parser = parse_status)]
    statuses: Vec<pb::RunStatus>,
    /// Only runs of this chain.
    #[arg(long)]
    chain: Option<String>,
    /// Only runs carrying this label `key=value`; repeatable.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Only runs of this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only runs created in this window.
    #[command(flatten)]
    created: TimeRange,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .ok_or_else(|| format!("`{text}` is not key=value"))
}

fn parse_status(text: &str) -> Result<pb::RunStatus, String> {
    let name = text.to_ascii_uppercase().replace('-', "_");
    pb::RunStatus::from_str_name(&format!("RUN_STATUS_{name}"))
        .or_else(|| pb::RunStatus::from_str_name(&name))
        .filter(|status| *status != pb::RunStatus::Unspecified)
        .ok_or_else(|| {
            format!("unknown status `{text}` (queued, running, waiting_input, paused, succeeded, failed, cancelled)")
        })
}

pub async fn run(options: &ClientOptions, command: RunsCommand) -> anyhow::Result<Outcome> {
    let format = options.output;
    match command {
        RunsCommand::Start(args) => start(options, args).await,
        RunsCommand::List(args) => {
            let client = Client::connect(options).await?;
            // `--since` counts from now once: every page has the same
            // window.
            let (after, before) = (args.created.start(), args.created.end());
            let runs = collect_pages(args.limit, |page_size, page_token| {
                let mut service = client.runs();
                let request = pb::ListRunsRequest {
                    statuses: args.statuses.iter().map(|status| *status as i32).collect(),
                    chain_id: args.chain.clone().unwrap_or_default(),
                    labels: args.labels.iter().cloned().collect(),
                    tenant: args.tenant.clone().unwrap_or_default(),
                    create_time_after: after,
                    create_time_before: before,
                    page_size,
                    page_token,
                };
                async move {
                    let page = call(service.list_runs(request).await)?;
                    Ok((page.runs, page.next_page_token))
                }
            })
            .await?;
            match format {
                Format::Json => {
                    for run in &runs {
                        json_line(RUN, run)?;
                    }
                }
                Format::Table => {
                    let mut rows = table(["ID", "CHAIN", "STATUS", "CREATED", "DETAIL"]);
                    for run in &runs {
                        rows.add_row(vec![
                            Cell::new(&run.id),
                            Cell::new(format!("{} v{}", run.chain_id, run.chain_version)),
                            status_cell(run_status(run.status)),
                            Cell::new(time(run.create_time.as_ref())),
                            Cell::new(short(&run_detail(run), 50)),
                        ]);
                    }
                    print_table(&rows);
                }
            }
            Ok(Outcome::Ok)
        }
        RunsCommand::Get { run } => {
            let client = Client::connect(options).await?;
            let run = call(client.runs().get_run(pb::GetRunRequest { id: run }).await)?;
            print_run(format, &run)?;
            Ok(Outcome::Ok)
        }
        RunsCommand::Watch { run } => {
            let client = Client::connect(options).await?;
            let stream = call(
                client
                    .runs()
                    .watch_run(pb::WatchRunRequest {
                        run_id: run,
                        after_seq: 0,
                        include_deltas: true,
                    })
                    .await,
            )?;
            follow(format, &client, stream).await
        }
        RunsCommand::Events { run } => {
            let client = Client::connect(options).await?;
            let events = collect_pages(usize::MAX, |page_size, page_token| {
                let mut service = client.runs();
                let request = pb::ListRunEventsRequest {
                    run_id: run.clone(),
                    after_seq: 0,
                    page_size,
                    page_token,
                };
                async move {
                    let page = call(service.list_run_events(request).await)?;
                    Ok((page.events, page.next_page_token))
                }
            })
            .await?;
            match format {
                Format::Json => {
                    for event in &events {
                        json_line(EVENT, event)?;
                    }
                }
                Format::Table => {
                    let mut rows = table(["SEQ", "TIME", "TYPE", "TASK", "ATTEMPT", "DETAIL"]);
                    for event in &events {
                        rows.add_row(vec![
                            event.seq.to_string(),
                            time(event.time.as_ref()),
                            event_type(event.r#type),
                            event.task_id.clone(),
                            if event.attempt > 0 {
                                event.attempt.to_string()
                            } else {
                                String::new()
                            },
                            short(&event_detail(event), 60),
                        ]);
                    }
                    print_table(&rows);
                }
            }
            Ok(Outcome::Ok)
        }
        RunsCommand::Attempts { run } => {
            let client = Client::connect(options).await?;
            let attempts = collect_pages(usize::MAX, |page_size, page_token| {
                let mut service = client.runs();
                let request = pb::ListRunAttemptsRequest {
                    run_id: run.clone(),
                    page_size,
                    page_token,
                };
                async move {
                    let page = call(service.list_run_attempts(request).await)?;
                    Ok((page.attempts, page.next_page_token))
                }
            })
            .await?;
            match format {
                Format::Json => {
                    for attempt in &attempts {
                        json_line("taskloom.v1.TaskAttempt", attempt)?;
                    }
                }
                Format::Table => {
                    let mut rows = table([
                        "TASK", "ATTEMPT", "STATUS", "QUEUE", "STARTED", "ENDED", "DETAIL",
                    ]);
                    for attempt in &attempts {
                        let detail = if attempt.error.is_empty() {
                            value_text(attempt.output.as_ref())
                        } else {
                            attempt.error.clone()
                        };
                        rows.add_row(vec![
                            Cell::new(&attempt.task_id),
                            Cell::new(attempt.attempt),
                            status_cell(attempt_status(attempt.status)),
                            Cell::new(&attempt.queue),
                            Cell::new(time(attempt.start_time.as_ref())),
                            Cell::new(time(attempt.end_time.as_ref())),
                            Cell::new(short(&detail, 50)),
                        ]);
                    }
                    print_table(&rows);
                }
            }
            Ok(Outcome::Ok)
        }
        RunsCommand::Cancel { run, reason } => {
            let client = Client::connect(options).await?;
            let run = call(
                client
                    .runs()
                    .cancel_run(pb::CancelRunRequest {
                        id: run,
                        reason,
                        request_id: request_id(),
                    })
                    .await,
            )?;
            print_state(format, &run)
        }
        RunsCommand::Pause {
            run,
            cancel_running,
        } => {
            let client = Client::connect(options).await?;
            let run = call(
                client
                    .runs()
                    .pause_run(pb::PauseRunRequest {
                        id: run,
                        cancel_running,
                        request_id: request_id(),
                    })
                    .await,
            )?;
            print_state(format, &run)
        }
        RunsCommand::Resume { run } => {
            let client = Client::connect(options).await?;
            let run = call(
                client
                    .runs()
                    .resume_run(pb::ResumeRunRequest {
                        id: run,
                        request_id: request_id(),
                    })
                    .await,
            )?;
            print_state(format, &run)
        }
        RunsCommand::Retry { run } => {
            let client = Client::connect(options).await?;
            let run = call(
                client
                    .runs()
                    .retry_run(pb::RetryRunRequest {
                        id: run,
                        request_id: request_id(),
                    })
                    .await,
            )?;
            print_state(format, &run)
        }
        RunsCommand::Replay { run } => {
            let client = Client::connect(options).await?;
            let replay = call(
                client
                    .runs()
                    .replay_run(pb::ReplayRunRequest { id: run })
                    .await,
            )?;
            match format {
                Format::Json => json_line("taskloom.v1.ReplayRunResponse", &replay)?,
                Format::Table => {
                    println!("fingerprint: {}", replay.fingerprint);
                    println!("path: {}", replay.path.join(" → "));
                    println!("diverged: {}", replay.diverged);
                    for divergence in &replay.divergences {
                        println!(
                            "  step {} ({}): recorded {}, replayed {}",
                            divergence.step,
                            divergence.task_id,
                            divergence.recorded,
                            divergence.replayed
                        );
                    }
                }
            }
            Ok(if replay.diverged {
                Outcome::RunFailed
            } else {
                Outcome::Ok
            })
        }
        RunsCommand::Delete { run } => {
            let client = Client::connect(options).await?;
            call(
                client
                    .runs()
                    .delete_run(pb::DeleteRunRequest {
                        id: run.clone(),
                        request_id: request_id(),
                    })
                    .await,
            )?;
            match format {
                Format::Json => {
                    output::print_line(&serde_json::json!({"run": run, "result": "deleted"}))?
                }
                Format::Table => println!("run {run}: deleted"),
            }
            Ok(Outcome::Ok)
        }
        RunsCommand::Execute { file } => execute(options, &file).await,
        RunsCommand::Input { run, task, value } => {
            let client = Client::connect(options).await?;
            let task_id = match task {
                Some(task) => task,
                None => {
                    let waiting = call(
                        client
                            .runs()
                            .get_run(pb::GetRunRequest { id: run.clone() })
                            .await,
                    )?;
                    match waiting.input_request {
                        Some(request) => request.task_id,
                        None => anyhow::bail!(
                            "run {run} waits for no input (it is {}); name the task with --task",
                            run_status(waiting.status)
                        ),
                    }
                }
            };
            let run = call(
                client
                    .runs()
                    .submit_input(pb::SubmitInputRequest {
                        run_id: run,
                        task_id,
                        answer: Some(pb::submit_input_request::Answer::TypedInput(text(value))),
                        request_id: request_id(),
                    })
                    .await,
            )?;
            print_state(format, &run)
        }
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn text(text: String) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::Text(text)),
    }
}

async fn execute(options: &ClientOptions, file: &std::path::Path) -> anyhow::Result<Outcome> {
    const REQUEST: &str = "taskloom.v1.ExecuteChainRequest";
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let yaml = file
        .extension()
        .is_some_and(|extension| extension == "yaml" || extension == "yml");
    let mut request: pb::ExecuteChainRequest = if yaml {
        output::from_yaml(REQUEST, &text)
    } else {
        output::from_json(REQUEST, &text)
    }
    .with_context(|| format!("{} is not an ExecuteChain request", file.display()))?;
    if request.request_id.is_empty() {
        request.request_id = request_id();
    }
    let client = Client::connect(options).await?;
    let response = call(client.runs().execute_chain(request).await)?;
    let run = response.run.clone().unwrap_or_default();
    let status = pb::RunStatus::try_from(run.status).unwrap_or(pb::RunStatus::Unspecified);
    match options.output {
        Format::Json => json_line("taskloom.v1.ExecuteChainResponse", &response)?,
        Format::Table => {
            let mut rows = table([
                "TASK", "HANDLER", "ATTEMPTS", "DURATION", "MODEL", "NEXT", "ERRORS",
            ]);
            for step in &response.trace {
                let duration = step.duration.map_or_else(String::new, |duration| {
                    format!(
                        "{:.3}s",
                        duration.seconds as f64 + f64::from(duration.nanos) / 1e9
                    )
                });
                rows.add_row(vec![
                    step.task_id.clone(),
                    step.handler.clone(),
                    step.attempts.to_string(),
                    duration,
                    step.model.clone(),
                    step.next.join(", "),
                    short(&step.errors.join("; "), 50),
                ]);
            }
            let mut stderr = std::io::stderr().lock();
            for line in output::table_lines(&rows) {
                writeln!(stderr, "{line}")?;
            }
            writeln!(stderr, "run {}: {}", run.id, run_status(run.status))?;
            if let Some(error) = &run.error {
                writeln!(stderr, "error: {}", error.message)?;
            }
            if status == pb::RunStatus::Succeeded {
                println!("{}", value_text(response.output.as_ref()));
            }
        }
    }
    match status {
        pb::RunStatus::Succeeded => Ok(Outcome::Ok),
        pb::RunStatus::Failed | pb::RunStatus::Cancelled => Ok(Outcome::RunFailed),
        // The server answers DEADLINE_EXCEEDED when its wait ends first.
        _ => anyhow::bail!("run {} has not ended ({})", run.id, run_status(run.status)),
    }
}

async fn start(options: &ClientOptions, args: StartArgs) -> anyhow::Result<Outcome> {
    use pb::start_run_request::RunInput;
    let input = if let Some(input) = args.input {
        Some(RunInput::TypedInput(text(input)))
    } else if let Some(json) = args.input_json {
        let json: serde_json::Value =
            serde_json::from_str(&json).context("--input-json is not JSON")?;
        Some(RunInput::Input(output::json_to_pb_value(&json)))
    } else if let Some(path) = args.input_file {
        let content = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("read standard input")?
        } else {
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?
        };
        Some(RunInput::TypedInput(text(content)))
    } else {
        None
    };
    let start = pb::StartRunRequest {
        chain_id: args.chain,
        chain_version: args.version,
        run_input: input,
        // A retried call must not start a second run.
        request_id: request_id(),
        labels: args.labels.into_iter().collect::<BTreeMap<_, _>>(),
        ..Default::default()
    };
    let client = Client::connect(options).await?;
    if args.watch {
        // One call starts and watches: no event or token is missed between
        // the start and the watch.
        let stream = call(
            client
                .runs()
                .start_and_watch_run(pb::StartAndWatchRunRequest {
                    start: Some(start),
                    after_seq: 0,
                    include_deltas: true,
                })
                .await,
        )?;
        return follow(options.output, &client, stream).await;
    }
    let run = call(client.runs().start_run(start).await)?;
    match options.output {
        Format::Json => json_line(RUN, &run)?,
        Format::Table => println!("{}", run.id),
    }
    Ok(Outcome::Ok)
}

/// How long a watch whose stream broke keeps trying to open it again.
const RESUME_FOR: std::time::Duration = std::time::Duration::from_secs(30);
/// The pause between tries.
const RESUME_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// Follows a watch stream to the terminal event. People get task lines and
/// tokens on stderr and the run's output on stdout, so `$(taskloom runs
/// start --watch …)` is the output; `-o json` prints every event as a line.
///
/// A stream that breaks (a dropped connection, a server restarting) is
/// opened again with `WatchRun` after the last event seen, for up to
/// [`RESUME_FOR`]: no event is shown twice, and a model answer's tokens
/// continue where they were (the catch-up delta a new watch gets first is
/// cut to what was not printed yet).
async fn follow(
    format: Format,
    client: &Client,
    mut stream: tonic::Streaming<pb::RunEvent>,
) -> anyhow::Result<Outcome> {
    use pb::RunEventType as T;
    let mut mid_line = false;
    let mut stderr = std::io::stderr();
    let mut run_id = String::new();
    let mut last_seq = 0;
    // Per attempt: how many bytes of its streamed text were shown.
    let mut shown: BTreeMap<String, i64> = BTreeMap::new();
    loop {
        let event = match stream.next().await {
            Some(Ok(event)) => event,
            broken => {
                let why = match broken {
                    Some(Err(status)) => status,
                    _ => tonic::Status::unavailable("the watch ended before the run did"),
                };
                if run_id.is_empty() {
                    return Err(CallFailed(why).into());
                }
                stream = resume(client, &run_id, last_seq, why).await?;
                continue;
            }
        };
        run_id.clone_from(&event.run_id);
        let kind = T::try_from(event.r#type).unwrap_or(T::Unspecified);
        if kind == T::TokenDelta {
            // Deltas carry the last stored event's number: they never move
            // the resume point.
            let Some(delta) = unseen(&mut shown, &event) else {
                continue;
            };
            match format {
                Format::Json => json_line(
                    EVENT,
                    &pb::RunEvent {
                        delta: delta.clone(),
                        ..event
                    },
                )?,
                Format::Table => {
                    write!(stderr, "{delta}")?;
                    stderr.flush()?;
                    mid_line = !delta.ends_with('\n');
                }
            }
            continue;
        }
        if event.seq <= last_seq {
            continue;
        }
        last_seq = event.seq;
        if format == Format::Json {
            json_line(EVENT, &event)?;
        } else if let Some(line) = watch_line(&event, kind) {
            if mid_line {
                writeln!(stderr)?;
                mid_line = false;
            }
            writeln!(stderr, "{line}")?;
        }
        match kind {
            T::RunSucceeded => {
                if format == Format::Table {
                    println!("{}", value_text(event.output.as_ref()));
                }
                return Ok(Outcome::Ok);
            }
            T::RunFailed | T::RunCancelled => return Ok(Outcome::RunFailed),
            _ => {}
        }
    }
}

/// The part of a token delta not shown yet, if any, and records it shown.
fn unseen(shown: &mut BTreeMap<String, i64>, event: &pb::RunEvent) -> Option<String> {
    let seen = shown.entry(event.attempt_id.clone()).or_insert(0);
    let start = event.delta_offset;
    let end = start + i64::try_from(event.delta.len()).unwrap_or(i64::MAX);
    if end <= *seen {
        return None;
    }
    let skip = usize::try_from((*seen - start).max(0)).unwrap_or(0);
    *seen = end;
    // Offsets are of the same UTF-8 text, so `skip` falls on a character
    // boundary; a server that broke that would print the delta whole.
    Some(event.delta.get(skip..).unwrap_or(&event.delta).to_string())
}

/// Opens the watch of `run_id` again after `after_seq`, retrying while the
/// server cannot be reached, for up to [`RESUME_FOR`].
async fn resume(
    client: &Client,
    run_id: &str,
    after_seq: i64,
    why: tonic::Status,
) -> anyhow::Result<tonic::Streaming<pb::RunEvent>> {
    let deadline = tokio::time::Instant::now() + RESUME_FOR;
    let mut last = why;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(RESUME_PAUSE).await;
        let request = pb::WatchRunRequest {
            run_id: run_id.to_string(),
            after_seq,
            include_deltas: true,
        };
        match client.runs().watch_run(request).await {
            Ok(stream) => return Ok(stream.into_inner()),
            // Only an unreachable server is worth waiting for: any other
            // answer is final.
            Err(status) if status.code() == tonic::Code::Unavailable => last = status,
            Err(status) => return Err(CallFailed(status).into()),
        }
    }
    Err(CallFailed(last).into())
}

/// The line a person sees for an event, if any.
fn watch_line(event: &pb::RunEvent, kind: pb::RunEventType) -> Option<String> {
    use pb::RunEventType as T;
    let task = &event.task_id;
    let attempt = if event.attempt > 1 {
        format!(" (attempt {})", event.attempt)
    } else {
        String::new()
    };
    let line = match kind {
        T::RunStarted => format!("run {} started", event.run_id),
        T::TaskStarted => format!("task {task} started{attempt}"),
        T::TaskSucceeded => format!(
            "task {task} succeeded: {}",
            short(&value_text(event.output.as_ref()), 80)
        ),
        T::TaskFailed => format!("task {task} failed{attempt}: {}", event.message),
        T::TaskTimedOut => format!("task {task} timed out{attempt}"),
        T::TaskRetryScheduled => format!("task {task} will be retried: {}", event.message),
        T::TaskThrottled => format!("task {task} waits: {}", event.message),
        T::LeaseExpired => format!("task {task} lease expired"),
        T::InputRequested => format!("task {task} waits for input: {}", event.message),
        T::InputReceived => format!("task {task} got its input"),
        T::Message => event.message.clone(),
        T::RunPaused => "run paused".to_string(),
        T::RunResumed => "run resumed".to_string(),
        T::RunRetried => "run retried".to_string(),
        T::RunSucceeded => format!("run {} succeeded", event.run_id),
        T::RunFailed => format!("run {} failed: {}", event.run_id, event.message),
        T::RunCancelled => format!("run {} cancelled: {}", event.run_id, event.message),
        _ => return None,
    };
    Some(line)
}

fn event_detail(event: &pb::RunEvent) -> String {
    if !event.message.is_empty() {
        event.message.clone()
    } else {
        value_text(event.output.as_ref())
    }
}

fn run_detail(run: &pb::Run) -> String {
    if let Some(error) = &run.error {
        return error.message.clone();
    }
    if let Some(request) = &run.input_request {
        return format!("waits for input at {}", request.task_id);
    }
    if !run.active_tasks.is_empty() {
        return run.active_tasks.join(", ");
    }
    value_text(run.output.as_ref())
}

fn print_state(format: Format, run: &pb::Run) -> anyhow::Result<Outcome> {
    match format {
        Format::Json => json_line(RUN, run)?,
        Format::Table => println!("run {}: {}", run.id, run_status(run.status)),
    }
    Ok(Outcome::Ok)
}

fn print_run(format: Format, run: &pb::Run) -> anyhow::Result<()> {
    if format == Format::Json {
        return json_line(RUN, run);
    }
    let mut rows = table(["FIELD", "VALUE"]);
    let usage = run.usage.unwrap_or_default();
    rows.add_row(vec![Cell::new("id"), Cell::new(&run.id)]);
    rows.add_row(vec![
        Cell::new("chain"),
        Cell::new(format!("{} v{}", run.chain_id, run.chain_version)),
    ]);
    rows.add_row(vec![
        Cell::new("status"),
        status_cell(run_status(run.status)),
    ]);
    let mut add = |field: &str, value: String| {
        if !value.is_empty() {
            rows.add_row(vec![field.to_string(), value]);
        }
    };
    add("input", value_text(run.input.as_ref()));
    add("output", value_text(run.output.as_ref()));
    if let Some(error) = &run.error {
        add(
            "error",
            format!(
                "{} ({}, task {})",
                error.message, error.reason, error.task_id
            ),
        );
    }
    if let Some(request) = &run.input_request {
        add(
            "waits for",
            format!("{}: {}", request.task_id, request.prompt),
        );
    }
    add("active tasks", run.active_tasks.join(", "));
    add(
        "labels",
        run.labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    add("steps", run.steps.to_string());
    add(
        "tokens",
        format!("{} in, {} out", usage.input_tokens, usage.output_tokens),
    );
    add("created", time(run.create_time.as_ref()));
    add("started", time(run.start_time.as_ref()));
    add("ended", time(run.end_time.as_ref()));
    print_table(&rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(attempt: &str, offset: i64, text: &str) -> pb::RunEvent {
        pb::RunEvent {
            attempt_id: attempt.into(),
            delta_offset: offset,
            delta: text.into(),
            r#type: pb::RunEventType::TokenDelta as i32,
            ..Default::default()
        }
    }

    /// After a resume, the catch-up delta (the attempt's whole text so far)
    /// shows only what was not shown, and repeated deltas nothing.
    #[test]
    fn resumed_deltas_show_only_new_text() {
        let mut shown = BTreeMap::new();
        assert_eq!(
            unseen(&mut shown, &delta("a1", 0, "Hél")).as_deref(),
            Some("Hél")
        );
        assert_eq!(
            unseen(&mut shown, &delta("a1", 4, "lo")).as_deref(),
            Some("lo")
        );
        // Catch-up: bytes 0..9 of which 0..6 were shown.
        assert_eq!(
            unseen(&mut shown, &delta("a1", 0, "Héllo, w")).as_deref(),
            Some(", w")
        );
        assert_eq!(unseen(&mut shown, &delta("a1", 6, ", w")), None);
        // Another attempt has its own text.
        assert_eq!(
            unseen(&mut shown, &delta("a2", 0, "x")).as_deref(),
            Some("x")
        );
    }

    #[test]
    fn statuses_parse_in_any_case() {
        assert_eq!(parse_status("failed"), Ok(pb::RunStatus::Failed));
        assert_eq!(
            parse_status("WAITING-INPUT"),
            Ok(pb::RunStatus::WaitingInput)
        );
        assert_eq!(parse_status("RUN_STATUS_PAUSED"), Ok(pb::RunStatus::Paused));
        assert!(parse_status("unspecified").is_err());
        assert!(parse_status("sleeping").is_err());
    }
}
