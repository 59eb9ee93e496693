//! The `history` scenario: does a long history slow the runtime down?
//!
//! 1. A second store is filled with `--history-runs` finished runs (one
//!    task, its events, realistic payloads: copies of a real run) ending
//!    over the last `--history-span-days` days, by bulk SQL straight into
//!    the tables while no server runs — seconds per hundred thousand runs —
//!    and flushed to disk, so the fill's write-back does not land in the
//!    measurements.
//! 2. A server on that store, with `--run-retention` set so that about half
//!    of the history has expired (the retention loop deletes it while the
//!    measurements run).
//! 3. `--history-rounds` rounds, each measuring the bench's server (an
//!    empty store) and then the history server: `single` throughput,
//!    `workers` throughput and `ListRuns` first-page latency (unfiltered,
//!    by status and by chain). Alternating the two servers round by round
//!    spreads the machine's drift over both; the report gives each figure's
//!    median over the rounds, and how many runs retention deleted meanwhile.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use sqlx::Connection;
use taskloom_proto::taskloom::v1 as pb;
use tokio::time::Instant;

use crate::drive::{self, Connections, Shape};
use crate::server::BenchServer;
use crate::stats::{Latencies, millis};
use crate::workers;

/// History chains: runs are spread over these.
const HISTORY_CHAINS: usize = 4;
/// Runs inserted per statement (and, on SQLite, per transaction).
const FILL_CHUNK: usize = 50_000;
/// `ListRuns` calls per measured filter.
const LIST_CALLS: usize = 200;
/// The page `ListRuns` is asked for.
const LIST_PAGE: i32 = 50;

/// Where the history store lives.
pub enum HistoryStore {
    /// A fresh SQLite file (its directory is removed at the end).
    Sqlite(tempfile::TempDir),
    /// An empty PostgreSQL database.
    Postgres(String),
}

impl HistoryStore {
    fn url(&self) -> String {
        match self {
            HistoryStore::Sqlite(dir) => dir.path().join("history.db").display().to_string(),
            HistoryStore::Postgres(url) => url.clone(),
        }
    }
}

pub struct HistoryPlan<'a> {
    /// The bench's server, on an empty store.
    pub empty: (&'a Connections, &'a str),
    pub binary: &'a Path,
    pub server_args: &'a [String],
    pub store: HistoryStore,
    pub history_runs: usize,
    pub span_days: u32,
    pub retention: &'a str,
    pub runs: usize,
    pub warmup: usize,
    pub clients: usize,
    pub workers: u32,
    pub slots: u32,
    pub timeout: Duration,
    pub tag: &'a str,
    /// Alternating measurements of the empty store and the history.
    pub rounds: usize,
}

/// One phase's figures.
pub struct Phase {
    pub label: &'static str,
    pub single_runs_per_sec: f64,
    pub single_p50: Option<Duration>,
    pub workers_tasks_per_sec: f64,
    /// By filter name.
    pub list: Vec<(&'static str, Latencies)>,
}

pub struct HistoryReport {
    /// One phase per round, in order.
    pub empty: Vec<Phase>,
    pub history: Vec<Phase>,
    /// Runs in the history store before and after the rounds.
    pub stored: (i64, i64),
    pub history_runs: usize,
    pub fill: Duration,
    pub retention: String,
}

pub async fn drive(plan: HistoryPlan<'_>) -> Result<HistoryReport> {
    // A server on the history store makes its schema, the history chains
    // and the run every history run is a copy of.
    let url = plan.store.url();
    let template_server = start_server(&plan, &url, &["--run-retention", "0s"]).await?;
    let template_connections = Connections::open(&template_server.addr, 1).await?;
    let mut chains = Vec::new();
    for index in 0..HISTORY_CHAINS {
        chains.push(
            drive::create_chain(
                &template_connections,
                Shape::Single,
                &format!("history-{}-{index}", plan.tag),
            )
            .await?,
        );
    }
    let deadline = Instant::now() + plan.timeout;
    let template = drive::drive_runs(&template_connections, &chains[0], 1, 1, None, deadline).await;
    ensure!(
        template.done.len() == 1,
        "the template run failed: {:?}",
        template.first_error
    );
    let template_id = newest_run(&template_connections, &chains[0]).await?;
    drop(template_connections);
    let stopped = tokio::task::spawn_blocking(move || template_server.finish()).await??;
    eprintln!("bench: history: template server: {stopped}");

    eprintln!(
        "bench: history: inserting {} finished runs over {} days…",
        plan.history_runs, plan.span_days
    );
    let started = Instant::now();
    let chain_prefix = chains[0]
        .strip_suffix('0')
        .context("history chain ids end in their index")?
        .to_string();
    fill(&plan, &url, &template_id, &chain_prefix).await?;
    let fill_time = started.elapsed();
    eprintln!("bench: history: filled in {:.1} s", fill_time.as_secs_f64());

    let before = count_runs(&plan.store, &url).await?;
    let server = start_server(&plan, &url, &["--run-retention", plan.retention]).await?;
    let connections = Connections::open(&server.addr, 4).await?;
    eprintln!(
        "bench: history: {before} stored runs, retention {}; {} rounds…",
        plan.retention, plan.rounds
    );
    let (empty_connections, empty_addr) = plan.empty;
    let mut empty = Vec::new();
    let mut history = Vec::new();
    for round in 1..=plan.rounds.max(1) {
        empty.push(
            measure(
                &plan,
                "empty store",
                round,
                empty_connections,
                empty_addr,
                None,
            )
            .await?,
        );
        history.push(
            measure(
                &plan,
                "history",
                round,
                &connections,
                &server.addr,
                Some(&chains[0]),
            )
            .await?,
        );
    }
    let after = count_runs(&plan.store, &url).await?;
    drop(connections);
    let stopped = tokio::task::spawn_blocking(move || server.finish()).await??;
    eprintln!("bench: history: {stopped}");
    Ok(HistoryReport {
        empty,
        history,
        stored: (before, after),
        history_runs: plan.history_runs,
        fill: fill_time,
        retention: plan.retention.to_string(),
    })
}

async fn start_server(plan: &HistoryPlan<'_>, url: &str, args: &[&str]) -> Result<BenchServer> {
    let binary = plan.binary.to_path_buf();
    let url = url.to_string();
    let mut all: Vec<String> = plan.server_args.to_vec();
    all.extend(args.iter().map(|arg| arg.to_string()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        BenchServer::start(&binary, Some(&url), &args, false)
    })
    .await?
}

async fn newest_run(connections: &Connections, chain_id: &str) -> Result<String> {
    let page = connections
        .runs(0)
        .list_runs(pb::ListRunsRequest {
            page_size: 1,
            chain_id: chain_id.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    page.runs
        .first()
        .map(|run| run.id.clone())
        .context("the template run is not listed")
}

/// Throughput of `single` and `workers`, and `ListRuns` latency.
async fn measure(
    plan: &HistoryPlan<'_>,
    label: &'static str,
    round: usize,
    connections: &Connections,
    addr: &str,
    history_chain: Option<&String>,
) -> Result<Phase> {
    let tag = format!("{}-{}-{round}", plan.tag, label.replace(' ', "-"));
    let chain_id = drive::create_chain(connections, Shape::Single, &tag).await?;
    if plan.warmup > 0 {
        let deadline = Instant::now() + plan.timeout;
        drive::drive_runs(
            connections,
            &chain_id,
            plan.warmup,
            plan.clients,
            None,
            deadline,
        )
        .await;
    }
    eprintln!("bench: history ({label}): single, {} runs…", plan.runs);
    let deadline = Instant::now() + plan.timeout;
    let single = drive::drive_runs(
        connections,
        &chain_id,
        plan.runs,
        plan.clients,
        None,
        deadline,
    )
    .await;
    if let Some(error) = &single.first_error {
        eprintln!(
            "bench: history ({label}): single: {} errors, first: {error}",
            single.errors
        );
    }
    let succeeded: Vec<Duration> = single
        .done
        .iter()
        .filter(|sample| sample.succeeded)
        .map(|sample| sample.latency)
        .collect();
    let single_runs_per_sec = succeeded.len() as f64 / single.wall.as_secs_f64().max(1e-9);
    let single_p50 = Latencies::new(succeeded).percentile(50.0);

    eprintln!("bench: history ({label}): workers, {} runs…", plan.runs);
    let workers = workers::drive(workers::WorkersPlan {
        connections,
        addr,
        tag: &tag,
        workers: plan.workers,
        slots: plan.slots,
        runs: plan.runs,
        clients: plan.clients,
        deadline: (Instant::now() + plan.timeout).into_std(),
        lease: Duration::from_secs(30),
        rate: None,
    })
    .await?;
    // ListRuns after the load, so the empty store's pages are as full as
    // the history's (a table with no rows at all is no baseline).
    let mut list = Vec::new();
    let by_chain = history_chain.cloned().unwrap_or_else(|| chain_id.clone());
    for (name, request) in [
        (
            "status=succeeded",
            pb::ListRunsRequest {
                page_size: LIST_PAGE,
                statuses: vec![pb::RunStatus::Succeeded as i32],
                ..Default::default()
            },
        ),
        (
            "all",
            pb::ListRunsRequest {
                page_size: LIST_PAGE,
                ..Default::default()
            },
        ),
        (
            "chain",
            pb::ListRunsRequest {
                page_size: LIST_PAGE,
                chain_id: by_chain.clone(),
                ..Default::default()
            },
        ),
    ] {
        list.push((name, list_latency(connections, request).await?));
    }

    let phase = Phase {
        label,
        single_runs_per_sec,
        single_p50,
        workers_tasks_per_sec: workers.tasks_per_sec(),
        list,
    };
    print_phase(&phase, round);
    Ok(phase)
}

async fn list_latency(
    connections: &Connections,
    request: pb::ListRunsRequest,
) -> Result<Latencies> {
    let mut client = connections.runs(0);
    let mut samples = Vec::with_capacity(LIST_CALLS);
    for _ in 0..LIST_CALLS {
        let started = Instant::now();
        client
            .list_runs(request.clone())
            .await
            .context("ListRuns")?;
        samples.push(started.elapsed());
    }
    Ok(Latencies::new(samples))
}

fn print_phase(phase: &Phase, round: usize) {
    eprintln!(
        "bench: history ({}, round {round}): single {:.0} runs/s (p50 {} ms), workers {:.0} tasks/s",
        phase.label,
        phase.single_runs_per_sec,
        millis(phase.single_p50),
        phase.workers_tasks_per_sec
    );
    for (name, latency) in &phase.list {
        eprintln!(
            "bench: history ({}, round {round}): ListRuns {name}: p50 {} ms, p99 {} ms",
            phase.label,
            millis(latency.percentile(50.0)),
            millis(latency.percentile(99.0))
        );
    }
}

/// One throughput figure of a phase.
type Figure = fn(&Phase) -> f64;

pub fn print(report: &HistoryReport) {
    println!();
    println!(
        "history: {} finished runs inserted in {:.1} s; retention {}; {} rounds",
        report.history_runs,
        report.fill.as_secs_f64(),
        report.retention,
        report.history.len()
    );
    let (before, after) = report.stored;
    println!(
        "history: runs stored when the history server started {before}, when the measurements ended {after} (the measurements added their own)"
    );
    let change = |history: f64, empty: f64| {
        if empty > 0.0 {
            format!("{:+.1} %", (history / empty - 1.0) * 100.0)
        } else {
            "-".into()
        }
    };
    let rounds = |phases: &[Phase], figure: Figure| -> String {
        phases
            .iter()
            .map(|phase| format!("{:.0}", figure(phase)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| figure (median of the rounds) | empty store | history | change | rounds: empty / history |"
    );
    println!("|---|---|---|---|---|");
    let throughputs: [(&str, Figure); 2] = [
        ("single runs/s", |phase| phase.single_runs_per_sec),
        ("workers tasks/s", |phase| phase.workers_tasks_per_sec),
    ];
    for (name, figure) in throughputs {
        let (empty, history) = (
            median(report.empty.iter().map(figure)),
            median(report.history.iter().map(figure)),
        );
        println!(
            "| {name} | {empty:.0} | {history:.0} | {} | {} / {} |",
            change(history, empty),
            rounds(&report.empty, figure),
            rounds(&report.history, figure)
        );
    }
    let filters = report
        .empty
        .first()
        .map(|phase| phase.list.len())
        .unwrap_or(0);
    for filter in 0..filters {
        let name = report.empty[0].list[filter].0;
        // Every round's calls pooled: percentiles of all of them.
        let pooled = |phases: &[Phase]| {
            Latencies::new(
                phases
                    .iter()
                    .flat_map(|phase| phase.list[filter].1.samples().iter().copied())
                    .collect(),
            )
        };
        let (empty, history) = (pooled(&report.empty), pooled(&report.history));
        for percent in [50.0, 99.0] {
            let (e, h) = (empty.percentile(percent), history.percentile(percent));
            println!(
                "| ListRuns {name} p{percent} ms (all rounds' calls) | {} | {} | {} | |",
                millis(e),
                millis(h),
                change(
                    h.unwrap_or_default().as_secs_f64(),
                    e.unwrap_or_default().as_secs_f64()
                )
            );
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Runs in the history store.
async fn count_runs(store: &HistoryStore, url: &str) -> Result<i64> {
    Ok(match store {
        HistoryStore::Sqlite(_) => {
            let mut conn = sqlite(url).await?;
            sqlx::query_scalar("SELECT count(*) FROM runs")
                .fetch_one(&mut conn)
                .await?
        }
        HistoryStore::Postgres(_) => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::query_scalar("SELECT count(*) FROM runs")
                .fetch_one(&mut conn)
                .await?
        }
    })
}

async fn sqlite(path: &str) -> Result<sqlx::SqliteConnection> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Off);
    Ok(sqlx::SqliteConnection::connect_with(&options).await?)
}

/// A UUIDv7-shaped id (so ids sort by time, as the server's do) for
/// history run `i` at unix microseconds `t`; `kind` tells runs and
/// attempts apart.
fn sqlite_id(t: &str, i: &str, kind: &str) -> String {
    format!(
        "printf('%08x-%04x-7000-{kind}000-%012x', ({t} / 1000) >> 16, ({t} / 1000) & 65535, {i})"
    )
}

fn postgres_id(t: &str, i: &str, kind: &str) -> String {
    format!(
        "lpad(to_hex(({t} / 1000) >> 16), 8, '0') || '-' || lpad(to_hex(({t} / 1000) & 65535), 4, '0') \
         || '-7000-{kind}000-' || lpad(to_hex({i}), 12, '0')"
    )
}

/// Inserts the history: run `i` ends at `start + i * step` (microseconds),
/// a copy of the template run with its attempts and events, on history
/// chain `i % HISTORY_CHAINS`; one in ten is cancelled.
async fn fill(plan: &HistoryPlan<'_>, url: &str, template: &str, chain_prefix: &str) -> Result<()> {
    let span_us = i64::from(plan.span_days) * 86_400 * 1_000_000;
    let now_us = chrono_now_us();
    let start_us = now_us - span_us;
    let step_us = span_us / plan.history_runs.max(1) as i64;
    let total = plan.history_runs as i64;
    let chains = HISTORY_CHAINS as i64;
    match &plan.store {
        HistoryStore::Sqlite(_) => {
            let mut conn = sqlite(url).await?;
            let t = "(?3 + g.i * ?4)";
            let run_id = sqlite_id(t, "g.i", "8");
            let attempt_id = sqlite_id(t, "g.i * 16 + a.step", "9");
            let series =
                "WITH RECURSIVE g(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < ?2)";
            let runs = format!(
                "{series} INSERT INTO runs (id, chain_id, chain_version, status, input, output, \
                 error_message, error_task_id, error_reason, labels, priority, tenant, request_id, \
                 steps, input_tokens, output_tokens, last_seq, created_at, started_at, ended_at, \
                 updated_at, executions, heads) \
                 SELECT {run_id}, ?6 || (g.i % ?7), t.chain_version, \
                 CASE WHEN g.i % 10 = 0 THEN 'cancelled' ELSE 'succeeded' END, t.input, t.output, \
                 t.error_message, t.error_task_id, t.error_reason, t.labels, t.priority, t.tenant, \
                 NULL, t.steps, t.input_tokens, t.output_tokens, t.last_seq, {t} - 2000, {t} - 2000, \
                 {t}, {t}, t.executions, NULL FROM g, runs t WHERE t.id = ?5"
            );
            let attempts = format!(
                "{series} INSERT INTO attempts (id, run_id, task_id, attempt, step, status, queue, \
                 priority, available_at, deadline, lease_owner, lease_token, lease_expires_at, \
                 lease_expiries, input, prompt, output, error, dead_lettered, backend_id, model, \
                 input_tokens, output_tokens, created_at, started_at, ended_at) \
                 SELECT {attempt_id}, {run_id}, a.task_id, a.attempt, a.step, a.status, a.queue, \
                 a.priority, {t} - 2000, NULL, NULL, NULL, NULL, a.lease_expiries, a.input, \
                 a.prompt, a.output, a.error, a.dead_lettered, a.backend_id, a.model, \
                 a.input_tokens, a.output_tokens, {t} - 2000, {t} - 1000, {t} \
                 FROM g, attempts a WHERE a.run_id = ?5 AND ?6 = ?6 AND ?7 = ?7"
            );
            let events = format!(
                "{series} INSERT INTO run_events (run_id, seq, payload) \
                 SELECT {run_id}, e.seq, e.payload FROM g, run_events e \
                 WHERE e.run_id = ?5 AND ?6 = ?6 AND ?7 = ?7"
            );
            let mut low = 0;
            while low < total {
                let high = (low + FILL_CHUNK as i64).min(total);
                let mut tx = conn.begin().await?;
                for sql in [&runs, &attempts, &events] {
                    sqlx::query(sql)
                        .bind(low)
                        .bind(high)
                        .bind(start_us)
                        .bind(step_us)
                        .bind(template)
                        .bind(chain_prefix)
                        .bind(chains)
                        .execute(&mut *tx)
                        .await
                        .context("insert history")?;
                }
                tx.commit().await?;
                low = high;
            }
            // Into the database file and onto the disk: written back later,
            // the fill would slow the measurements down.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut conn)
                .await?;
            conn.close().await?;
            std::fs::File::open(url)
                .and_then(|file| file.sync_all())
                .with_context(|| format!("flush {url}"))?;
        }
        HistoryStore::Postgres(_) => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let t = "($3::bigint + g.i * $4::bigint)";
            let time = format!("to_timestamp({t}::double precision / 1e6)");
            let run_id = postgres_id(t, "g.i", "8");
            let attempt_id = postgres_id(t, "g.i * 16 + a.step", "9");
            let series = "generate_series($1::bigint, $2::bigint - 1) AS g(i)";
            let runs = format!(
                "INSERT INTO runs (id, chain_id, chain_version, status, input, output, \
                 error_message, error_task_id, error_reason, labels, priority, tenant, request_id, \
                 steps, input_tokens, output_tokens, last_seq, created_at, started_at, ended_at, \
                 updated_at, executions, heads) \
                 SELECT {run_id}, $6 || (g.i % $7::bigint)::text, t.chain_version, \
                 CASE WHEN g.i % 10 = 0 THEN 'cancelled' ELSE 'succeeded' END, t.input, t.output, \
                 t.error_message, t.error_task_id, t.error_reason, t.labels, t.priority, t.tenant, \
                 NULL, t.steps, t.input_tokens, t.output_tokens, t.last_seq, \
                 {time} - interval '2 ms', {time} - interval '2 ms', {time}, {time}, \
                 t.executions, NULL FROM {series}, runs t WHERE t.id = $5"
            );
            let attempts = format!(
                "INSERT INTO attempts (id, run_id, task_id, attempt, step, status, queue, \
                 priority, available_at, deadline, lease_owner, lease_token, lease_expires_at, \
                 lease_expiries, input, prompt, output, error, dead_lettered, backend_id, model, \
                 input_tokens, output_tokens, created_at, started_at, ended_at) \
                 SELECT {attempt_id}, {run_id}, a.task_id, a.attempt, a.step, a.status, a.queue, \
                 a.priority, {time} - interval '2 ms', NULL, NULL, NULL, NULL, a.lease_expiries, \
                 a.input, a.prompt, a.output, a.error, a.dead_lettered, a.backend_id, a.model, \
                 a.input_tokens, a.output_tokens, {time} - interval '2 ms', \
                 {time} - interval '1 ms', {time} \
                 FROM {series}, attempts a WHERE a.run_id = $5 AND $6::text = $6::text AND $7::bigint = $7::bigint"
            );
            let events = format!(
                "INSERT INTO run_events (run_id, seq, payload) \
                 SELECT {run_id}, e.seq, e.payload FROM {series}, run_events e \
                 WHERE e.run_id = $5 AND $6::text = $6::text AND $7::bigint = $7::bigint"
            );
            let mut low = 0;
            while low < total {
                let high = (low + 2 * FILL_CHUNK as i64).min(total);
                let mut tx = conn.begin().await?;
                for sql in [&runs, &attempts, &events] {
                    sqlx::query(sql)
                        .bind(low)
                        .bind(high)
                        .bind(start_us)
                        .bind(step_us)
                        .bind(template)
                        .bind(chain_prefix)
                        .bind(chains)
                        .execute(&mut *tx)
                        .await
                        .context("insert history")?;
                }
                tx.commit().await?;
                low = high;
            }
            // What autovacuum would have done by the time a history this
            // long had accumulated.
            sqlx::query("VACUUM ANALYZE runs")
                .execute(&mut conn)
                .await?;
            sqlx::query("VACUUM ANALYZE attempts")
                .execute(&mut conn)
                .await?;
            sqlx::query("VACUUM ANALYZE run_events")
                .execute(&mut conn)
                .await?;
            // Onto the disk now rather than during the measurements.
            sqlx::query("CHECKPOINT").execute(&mut conn).await?;
        }
    }
    Ok(())
}

fn chrono_now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_micros() as i64)
        .unwrap_or_default()
}

/// Refuses a history on a database the bench did not make.
pub fn refuse_given_database() -> Result<HistoryStore> {
    bail!(
        "the history scenario fills its own store: run it on --sqlite, the throwaway PostgreSQL or --pg-no-fsync, not --database-url"
    )
}
