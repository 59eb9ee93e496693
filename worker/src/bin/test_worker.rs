//! A worker process for the test suites: serves one queue, answers every
//! task after `--delay-ms` with `done by <worker id>`, and prints what
//! happens, one line per event, on stdout (`offered ID`, `settled ID`,
//! `refused ID CODE`, `cancelled ID`, `connected SESSION REPLICA`,
//! `disconnected`). Tests `kill -9` it mid-task.

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use taskloom_proto::taskloom::v1 as pb;
use taskloom_worker::{WorkerEvent, WorkerOptions};

#[derive(Parser)]
struct Args {
    /// Server address, `http://host:port`; repeat to fail over.
    #[arg(long = "addr", required = true)]
    addrs: Vec<String>,
    #[arg(long)]
    worker_id: String,
    #[arg(long)]
    queue: String,
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// How long each task takes.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let options = WorkerOptions {
        addrs: args.addrs,
        worker_id: args.worker_id.clone(),
        queues: vec![args.queue],
        slots: args.slots,
        max_backoff: Duration::from_secs(1),
    };
    let delay = Duration::from_millis(args.delay_ms);
    let worker_id = args.worker_id;
    let handler = move |_offer: pb::LeaseOffer| {
        let text = format!("done by {worker_id}");
        async move {
            tokio::time::sleep(delay).await;
            Ok(pb::Value {
                kind: Some(pb::value::Kind::Text(text)),
            })
        }
    };
    let (events, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let (_stop, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(taskloom_worker::run(options, handler, events, stop));
    while let Some(event) = heard.recv().await {
        let line = match event {
            WorkerEvent::Connected {
                session_id,
                replica,
            } => {
                format!("connected {session_id} {replica}")
            }
            WorkerEvent::Offered { attempt_id, .. } => format!("offered {attempt_id}"),
            WorkerEvent::Settled { attempt_id, .. } => format!("settled {attempt_id}"),
            WorkerEvent::Refused { attempt_id, code } => format!("refused {attempt_id} {code}"),
            WorkerEvent::Cancelled { attempt_id } => format!("cancelled {attempt_id}"),
            WorkerEvent::Disconnected => "disconnected".to_string(),
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
}
