//! `bench`: starts one `taskloom serve` on a throwaway PostgreSQL (or the
//! embedded SQLite store), drives concurrent gRPC clients through RunService
//! and prints throughput, latency, event delivery, CPU and memory figures.
//!
//! Everything it starts listens on 127.0.0.1 and is stopped when it ends
//! (unless `--keep`); it never connects anywhere but loopback.

mod drive;
mod failover;
mod history;
mod looping;
mod postgres;
mod procfs;
mod report;
mod server;
mod stats;
mod throttling;
mod workers;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::{Parser, ValueEnum};
use tokio::time::Instant;

use drive::{Connections, Shape};
use postgres::LocalPostgres;
use procfs::{MachineTicks, Memory, RssSampler};
use report::{InflightReport, Resources, RunReport};
use server::BenchServer;

/// How long the inflight scenario waits after the last StartRun before
/// reading memory, so the dispatcher has looked at every new run.
const INFLIGHT_SETTLE: Duration = Duration::from_secs(2);
/// Runs whose status the inflight scenario samples with GetRun.
const CENSUS_SAMPLE: usize = 20;
/// How often the server's RSS is sampled (a cross-check of `VmHWM`).
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Runs of a one-task `noop` chain, each watched to its end.
    Single,
    /// Runs of a three-task `noop` chain (a → b → c), each watched to its end.
    Chain3,
    /// `single` on `--latency-clients` clients: both single-task targets
    /// (throughput and p50) in one measurement, which 64 closed-loop
    /// clients cannot show (their p50 is 64 / throughput by Little's law).
    Latency,
    /// Runs of a one-task `worker` chain served by `--workers` in-process
    /// workers over gRPC: worker tasks/s, enqueue→lease and
    /// lease→completion-recorded latency.
    Workers,
    /// Runs left waiting on an unserved worker queue: server RSS with that
    /// many runs in flight, then CancelRun on all of them.
    Inflight,
    /// One run whose task goes round to itself `--loop-steps` times (small
    /// outputs), then `--loop-large-steps` times with 100 kB outputs: the
    /// last steps' rate against the first ones', and server RSS.
    Loop,
    /// `--throttling-runs` runs over three fake LLM providers, one limited
    /// to 5 concurrent calls and 60 a minute, on two replicas (one on
    /// SQLite): runs/s, the limited provider's calls a minute and most
    /// calls at once, throttled events (docs/limits.md). Not in the default
    /// list: it takes over a minute by design.
    Throttling,
    /// `single`, `workers` and `ListRuns` latency on the empty store, then
    /// again on a second store filled with `--history-runs` finished runs
    /// while retention deletes the expired half (see `history.rs`). Not in
    /// the default list: filling takes minutes.
    History,
    /// `--failover-runs` runs of three slow model tasks on two replicas
    /// sharing PostgreSQL, then `kill -9` of one mid-load: how long each
    /// run it held waits until another replica resumes it (p50, p95, max).
    /// Not in the default list; PostgreSQL only.
    Failover,
}

/// Benchmark one taskloom server: N runs driven by C concurrent gRPC
/// clients, on a throwaway PostgreSQL (default) or SQLite.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Options {
    /// Concurrent clients (each loops: StartRun, then WatchRun to the end).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    clients: u32,
    /// Measured runs per run scenario (single, chain3).
    #[arg(long, default_value_t = 10_000)]
    runs: usize,
    /// Runs started and kept in flight by the inflight scenario.
    #[arg(long, default_value_t = 10_000)]
    inflight_runs: usize,
    /// Unmeasured runs before each run scenario (connections, caches,
    /// prepared statements).
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Scenarios to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "single,chain3,latency,workers,inflight,loop"
    )]
    scenarios: Vec<Scenario>,
    /// Workers of the `workers` scenario (each one stream).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    workers: u32,
    /// Slots of each worker in the `workers` scenario.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    worker_slots: u32,
    /// Steps of the `loop` scenario's run with small outputs.
    #[arg(long, default_value_t = 10_000)]
    loop_steps: usize,
    /// Steps of the `loop` scenario's run with 100 kB outputs.
    #[arg(long, default_value_t = 2_000)]
    loop_large_steps: usize,
    /// Runs of the `throttling` scenario.
    #[arg(long, default_value_t = 100)]
    throttling_runs: usize,
    /// Runs of the `failover` scenario.
    #[arg(long, default_value_t = 300)]
    failover_runs: usize,
    /// Clients of the `latency` scenario.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    latency_clients: u32,
    /// Clients of the `workers` scenario's second phase, which checks the
    /// enqueue→lease target (p50 at ≥ 2,000 tasks/s); the first phase runs
    /// `--clients` for throughput.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    worker_latency_clients: u32,
    /// Open-loop pacing: schedule run i at i/RATE seconds and measure latency
    /// from the schedule (0 = closed loop, as fast as the clients go).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// HTTP/2 connections the clients share.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    channels: u32,
    /// Time limit of each scenario phase, in seconds; a phase cut short
    /// reports what finished and is marked partial.
    #[arg(long, default_value_t = 180)]
    timeout_secs: u64,
    /// Use this PostgreSQL database (loopback or a Unix socket only) instead
    /// of a throwaway server. The server migrates it; use an empty database.
    #[arg(long, conflicts_with = "sqlite")]
    database_url: Option<String>,
    /// Bench the embedded SQLite store (a fresh file in a temp dir).
    #[arg(long)]
    sqlite: bool,
    /// Start the throwaway PostgreSQL the way the test suites do
    /// (taskloom_testkit: fsync, synchronous_commit and full_page_writes
    /// off) instead of with default durability.
    #[arg(long, conflicts_with_all = ["sqlite", "database_url"])]
    pg_no_fsync: bool,
    /// The `taskloom` binary to bench; by default the bench builds the
    /// release binary with cargo and uses it.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Extra argument for `taskloom serve` (repeatable), e.g.
    /// `--server-arg=--lease-duration=60s`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Run with API keys on: the bench creates a store key (`KeyService`,
    /// while the fresh server is open) and sends it on every call of the
    /// run scenarios (`single`, `chain3`, `latency`), so each call pays the
    /// key check. Compare with a run without it.
    #[arg(long)]
    api_key: bool,
    /// Leave the server (and a throwaway PostgreSQL) running afterwards.
    #[arg(long)]
    keep: bool,
    /// Finished runs the `history` scenario stores.
    #[arg(long, default_value_t = 1_000_000)]
    history_runs: usize,
    /// Days the `history` runs' end times are spread over (up to now).
    #[arg(long, default_value_t = 60)]
    history_span_days: u32,
    /// `--run-retention` of the `history` server: with the defaults, the
    /// older half of the history has expired when it starts.
    #[arg(long, default_value = "30d")]
    history_retention: String,
    /// Rounds of the `history` scenario, each measuring the empty store and
    /// then the history (the report gives medians).
    #[arg(long, default_value_t = 3)]
    history_rounds: usize,
}

fn main() -> ExitCode {
    let options = Options::parse();
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<()> {
    ensure!(options.rate >= 0.0, "--rate must not be negative");
    ensure!(
        !options.api_key
            || options
                .scenarios
                .iter()
                .all(|s| matches!(s, Scenario::Single | Scenario::Chain3 | Scenario::Latency)),
        "--api-key applies to the single, chain3 and latency scenarios only"
    );
    if cfg!(debug_assertions) {
        eprintln!(
            "bench: warning: this is a debug build of the bench; client overhead is inflated (use cargo run --release)"
        );
    }
    let binary = server_binary(options)?;
    let store = Store::prepare(options)?;
    let extra_args: Vec<&str> = options.server_args.iter().map(String::as_str).collect();
    eprintln!(
        "bench: starting {} serve on {}",
        binary.display(),
        store.label
    );
    let server = BenchServer::start(&binary, store.url.as_deref(), &extra_args, options.keep)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build the tokio runtime")?;
    let outcome = runtime.block_on(bench(options, &server, &store, &binary));
    drop(runtime);
    match server.finish() {
        Ok(line) if options.keep => println!("\n{line}"),
        Ok(line) => eprintln!("bench: {line}"),
        Err(error) => eprintln!("bench: {error:#}"),
    }
    if options.keep {
        if let Some(url) = &store.url {
            println!("database: {url}");
        }
        if let Some(local) = store.local {
            println!("{}", local.keep()?);
        }
    }
    outcome
}

/// The release `taskloom` binary: `--server-bin`, or built now with cargo
/// (a no-op when it is up to date).
fn server_binary(options: &Options) -> Result<PathBuf> {
    if let Some(path) = &options.server_bin {
        ensure!(
            path.is_file(),
            "--server-bin {} is not a file",
            path.display()
        );
        return Ok(path.clone());
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the bench crate has no parent directory")?;
    let manifest = workspace.join("Cargo.toml");
    // `cargo run` tells its child which cargo it is.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("bench: cargo build --release -p taskloom-server --bin taskloom");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "taskloom-server",
            "--bin",
            "taskloom",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .status()
        .context("run cargo")?;
    ensure!(
        status.success(),
        "building the server failed; build it with `cargo build --release -p taskloom-server --bin taskloom` and pass --server-bin target/release/taskloom"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let binary = target.join("release").join("taskloom");
    ensure!(
        binary.is_file(),
        "{} not found after the build; pass --server-bin",
        binary.display()
    );
    Ok(binary)
}

/// Where the server keeps its data.
struct Store {
    /// `None` for a fresh SQLite file (the testkit makes one).
    url: Option<String>,
    label: String,
    /// The postmaster, when known, for PostgreSQL CPU accounting.
    postmaster: Option<u32>,
    local: Option<LocalPostgres>,
}

impl Store {
    fn prepare(options: &Options) -> Result<Store> {
        if options.sqlite {
            return Ok(Store {
                url: None,
                label: "SQLite (fresh file in a temp dir)".into(),
                postmaster: None,
                local: None,
            });
        }
        if let Some(url) = &options.database_url {
            check_loopback_database(url)?;
            return Ok(Store {
                url: Some(url.clone()),
                label: format!(
                    "PostgreSQL {} (given by --database-url)",
                    postgres::server_version(url).unwrap_or_default()
                ),
                postmaster: procfs::postmaster_pid(url),
                local: None,
            });
        }
        if options.pg_no_fsync {
            let url = taskloom_testkit::fresh_postgres_database()?;
            return Ok(Store {
                label: format!(
                    "PostgreSQL {} via taskloom_testkit (fsync=off, synchronous_commit=off, full_page_writes=off)",
                    postgres::server_version(&url).unwrap_or_default()
                ),
                postmaster: procfs::postmaster_pid(&url),
                url: Some(url),
                local: None,
            });
        }
        eprintln!("bench: starting a throwaway PostgreSQL");
        let local = LocalPostgres::start()?;
        let url = local.create_database("taskloom_bench")?;
        Ok(Store {
            label: format!(
                "PostgreSQL {}, throwaway, default durability (fsync=on, synchronous_commit=on)",
                postgres::server_version(&url).unwrap_or_default()
            ),
            postmaster: local.postmaster_pid(),
            url: Some(url),
            local: Some(local),
        })
    }
}

/// Refuses a database URL that names a host other than loopback (a Unix
/// socket directory is fine).
fn check_loopback_database(url: &str) -> Result<()> {
    let parsed = url::Url::parse(url).context("--database-url is not a URL")?;
    ensure!(
        matches!(parsed.scheme(), "postgres" | "postgresql"),
        "--database-url must be a postgres:// URL (use --sqlite for SQLite)"
    );
    let is_loopback = |host: &str| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.is_empty()
            || host.starts_with('/')
            || host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    };
    if let Some(host) = parsed.host_str() {
        ensure!(
            is_loopback(host),
            "--database-url must point at loopback, not {host}"
        );
    }
    for (key, value) in parsed.query_pairs() {
        if key == "host" || key == "hostaddr" {
            ensure!(
                value.split(',').all(is_loopback),
                "--database-url must point at loopback, not {value}"
            );
        }
    }
    Ok(())
}

/// Shared state of a bench run.
struct Bench<'a> {
    options: &'a Options,
    connections: Connections,
    server_pid: u32,
    postmaster: Option<u32>,
    sampler: RssSampler,
    /// Distinguishes this bench's chains and queues in a reused database.
    tag: String,
}

async fn bench(
    options: &Options,
    server: &BenchServer,
    store: &Store,
    binary: &Path,
) -> Result<()> {
    let mut connections = Connections::open(&server.addr, options.channels as usize).await?;
    if options.api_key {
        let created = taskloom_proto::taskloom::v1::key_service_client::KeyServiceClient::new(
            connections.channel(0),
        )
        .create_api_key(taskloom_proto::taskloom::v1::CreateApiKeyRequest {
            name: "bench".into(),
            role: "admin".into(),
            ..Default::default()
        })
        .await
        .context("create the bench's API key (the server must start without keys)")?
        .into_inner();
        connections = connections.with_key(&created.secret)?;
        eprintln!("bench: calls carry a store API key");
    }
    let server_pid = server.pid();
    let startup_peak = procfs::memory(server_pid).map_or(0, |m| m.peak_kib);
    let bench = Bench {
        options,
        connections,
        server_pid,
        postmaster: store.postmaster,
        sampler: RssSampler::start(server_pid, RSS_SAMPLE_INTERVAL),
        tag: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
    };
    report::print_header(options_summary(options), &store.label, binary, server);

    let mut run_reports = Vec::new();
    let mut inflight_reports = Vec::new();
    let mut workers_reports = Vec::new();
    let mut peak_kib = startup_peak;
    for scenario in &options.scenarios {
        match scenario {
            Scenario::Single => {
                let report = bench
                    .run_scenario("single", Shape::Single, options.clients)
                    .await?;
                peak_kib = peak_kib.max(report.resources.server_peak_kib);
                report::print_run_progress(&report);
                run_reports.push(report);
            }
            Scenario::Chain3 => {
                let report = bench
                    .run_scenario("chain3", Shape::Chain3, options.clients)
                    .await?;
                peak_kib = peak_kib.max(report.resources.server_peak_kib);
                report::print_run_progress(&report);
                run_reports.push(report);
            }
            Scenario::Latency => {
                let report = bench
                    .run_scenario("latency", Shape::Single, options.latency_clients)
                    .await?;
                peak_kib = peak_kib.max(report.resources.server_peak_kib);
                report::print_run_progress(&report);
                run_reports.push(report);
            }
            Scenario::Workers => {
                // Throughput on `--clients`, then the latency target on
                // `--worker-latency-clients` (as `single` and `latency`).
                for clients in [options.clients, options.worker_latency_clients] {
                    eprintln!(
                        "bench: workers: {} runs, {} workers × {} slots, {} clients…",
                        options.runs, options.workers, options.worker_slots, clients
                    );
                    let meter = bench.meter();
                    let report = workers::drive(workers::WorkersPlan {
                        connections: &bench.connections,
                        addr: &server.addr,
                        tag: &format!("{}-{clients}", bench.tag),
                        workers: options.workers,
                        slots: options.worker_slots,
                        runs: options.runs,
                        clients: clients as usize,
                        deadline: bench.deadline().into_std(),
                        // The server's default; the bench does not change it.
                        lease: Duration::from_secs(30),
                        rate: (options.rate > 0.0).then_some(options.rate),
                    })
                    .await?;
                    let resources = meter.finish(&bench.sampler, report.wall);
                    peak_kib = peak_kib.max(resources.server_peak_kib);
                    report::print_workers(&report, &resources);
                    workers_reports.push((report, resources));
                }
            }
            Scenario::Loop => {
                for (steps, output_bytes) in [
                    (options.loop_steps, 16),
                    (options.loop_large_steps, 100_000),
                ] {
                    eprintln!("bench: loop: {steps} steps with {output_bytes} B outputs…");
                    let report = looping::drive(looping::LoopPlan {
                        connections: &bench.connections,
                        tag: &bench.tag,
                        steps,
                        output_bytes,
                        server_pid,
                        deadline: bench.deadline(),
                    })
                    .await?;
                    looping::print(&report);
                }
            }
            Scenario::Throttling => {
                // A second replica on the same PostgreSQL (SQLite: one).
                let second = match &store.url {
                    Some(url) => {
                        let args = options.server_args.clone();
                        let url = url.clone();
                        let binary = binary.to_path_buf();
                        Some(
                            tokio::task::spawn_blocking(move || {
                                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                                BenchServer::start(&binary, Some(&url), &args, false)
                            })
                            .await??,
                        )
                    }
                    None => None,
                };
                let mut replicas = vec![bench.connections.channel(0)];
                if let Some(second) = &second {
                    replicas.push(Connections::open(&second.addr, 1).await?.channel(0));
                }
                let report = throttling::drive(throttling::ThrottlingPlan {
                    replicas: &replicas,
                    tag: &bench.tag,
                    runs: options.throttling_runs,
                    deadline: bench.deadline(),
                })
                .await?;
                throttling::print(&report);
            }
            Scenario::History => {
                let history_store = match (&store.local, options.pg_no_fsync, &store.url) {
                    (_, _, None) => history::HistoryStore::Sqlite(
                        tempfile::tempdir().context("make a temp dir for the history store")?,
                    ),
                    (Some(local), _, Some(_)) => {
                        history::HistoryStore::Postgres(local.create_database("taskloom_history")?)
                    }
                    (None, true, Some(_)) => history::HistoryStore::Postgres(
                        tokio::task::spawn_blocking(taskloom_testkit::fresh_postgres_database)
                            .await??,
                    ),
                    (None, false, Some(_)) => history::refuse_given_database()?,
                };
                let report = history::drive(history::HistoryPlan {
                    empty: (&bench.connections, &server.addr),
                    binary,
                    server_args: &options.server_args,
                    store: history_store,
                    history_runs: options.history_runs,
                    span_days: options.history_span_days,
                    retention: &options.history_retention,
                    runs: options.runs,
                    warmup: options.warmup,
                    clients: options.clients as usize,
                    workers: options.workers,
                    slots: options.worker_slots,
                    timeout: Duration::from_secs(options.timeout_secs),
                    tag: &bench.tag,
                    rounds: options.history_rounds,
                })
                .await?;
                history::print(&report);
            }
            Scenario::Failover => {
                let Some(url) = &store.url else {
                    anyhow::bail!("the failover scenario needs PostgreSQL (two replicas)");
                };
                let report = failover::drive(failover::FailoverPlan {
                    survivor: bench.connections.channel(0),
                    binary,
                    database_url: url,
                    server_args: &options.server_args,
                    tag: &bench.tag,
                    runs: options.failover_runs,
                    deadline: bench.deadline(),
                })
                .await?;
                failover::print(&report);
            }
            Scenario::Inflight => {
                let report = bench.inflight_scenario().await?;
                peak_kib = peak_kib.max(report.resources.server_peak_kib);
                report::print_inflight_progress(&report);
                inflight_reports.push(report);
            }
        }
    }
    if let Some(memory) = procfs::memory(server_pid) {
        peak_kib = peak_kib.max(memory.peak_kib);
    }
    peak_kib = peak_kib.max(bench.sampler.max_kib());
    report::print_summary(
        &run_reports,
        &inflight_reports,
        &workers_reports,
        peak_kib,
        options.clients,
    );
    Ok(())
}

fn options_summary(options: &Options) -> String {
    let scenarios: Vec<&str> = options
        .scenarios
        .iter()
        .map(|s| match s {
            Scenario::Single => "single",
            Scenario::Chain3 => "chain3",
            Scenario::Latency => "latency",
            Scenario::Workers => "workers",
            Scenario::Inflight => "inflight",
            Scenario::Loop => "loop",
            Scenario::Throttling => "throttling",
            Scenario::History => "history",
            Scenario::Failover => "failover",
        })
        .collect();
    let pacing = if options.rate > 0.0 {
        format!("open loop at {} runs/s", options.rate)
    } else {
        "closed loop".into()
    };
    format!(
        "clients {}, runs {}, inflight runs {}, warmup {}, {} HTTP/2 connections, {pacing}, scenarios {}, timeout {} s per phase{}",
        options.clients,
        options.runs,
        options.inflight_runs,
        options.warmup,
        options.channels,
        scenarios.join(","),
        options.timeout_secs,
        if options.api_key { ", API key on" } else { "" }
    )
}

impl Bench<'_> {
    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.options.timeout_secs)
    }

    fn clients(&self) -> usize {
        self.options.clients as usize
    }

    fn meter(&self) -> Meter {
        Meter::start(self.server_pid, self.postmaster, &self.sampler)
    }

    async fn run_scenario(
        &self,
        name: &'static str,
        shape: Shape,
        clients: u32,
    ) -> Result<RunReport> {
        let tag = format!("{name}-{}", self.tag);
        let chain_id = drive::create_chain(&self.connections, shape, &tag).await?;
        if self.options.warmup > 0 {
            let warmup = drive::drive_runs(
                &self.connections,
                &chain_id,
                self.options.warmup,
                clients as usize,
                None,
                self.deadline(),
            )
            .await;
            if let Some(error) = &warmup.first_error {
                eprintln!(
                    "bench: {name} warmup: {} errors, first: {error}",
                    warmup.errors
                );
            }
        }
        eprintln!(
            "bench: {name}: {} runs on {} clients…",
            self.options.runs, clients
        );
        let meter = self.meter();
        let rate = (self.options.rate > 0.0).then_some(self.options.rate);
        let batch = drive::drive_runs(
            &self.connections,
            &chain_id,
            self.options.runs,
            clients as usize,
            rate,
            self.deadline(),
        )
        .await;
        let resources = meter.finish(&self.sampler, batch.wall);
        Ok(RunReport::new(
            name,
            clients,
            self.options.runs,
            batch,
            resources,
        ))
    }

    async fn inflight_scenario(&self) -> Result<InflightReport> {
        let chain_id = drive::create_chain(&self.connections, Shape::Unserved, &self.tag).await?;
        eprintln!(
            "bench: inflight: starting {} runs that wait on an unserved queue…",
            self.options.inflight_runs
        );
        let meter = self.meter();
        let started = drive::start_runs(
            &self.connections,
            &chain_id,
            self.options.inflight_runs,
            self.clients(),
            self.deadline(),
        )
        .await;
        tokio::time::sleep(INFLIGHT_SETTLE).await;
        let in_flight_memory = procfs::memory(self.server_pid).unwrap_or_default();
        let in_flight_memory = Memory {
            peak_kib: in_flight_memory.peak_kib.max(self.sampler.max_kib()),
            ..in_flight_memory
        };
        let ids: Vec<String> = started.done.iter().map(|run| run.id.clone()).collect();
        let step = (ids.len() / CENSUS_SAMPLE).max(1);
        let sample: Vec<String> = ids
            .iter()
            .step_by(step)
            .take(CENSUS_SAMPLE)
            .cloned()
            .collect();
        let census = drive::status_census(&self.connections, &sample).await;
        eprintln!("bench: inflight: cancelling {} runs…", ids.len());
        let cancelled = drive::cancel_runs(
            &self.connections,
            Arc::new(ids),
            self.clients(),
            self.deadline(),
        )
        .await;
        let after_cancel = procfs::memory(self.server_pid).unwrap_or_default();
        let resources = meter.finish(
            &self.sampler,
            started.wall + INFLIGHT_SETTLE + cancelled.wall,
        );
        Ok(InflightReport::new(
            self.options.inflight_runs,
            started,
            census,
            in_flight_memory,
            cancelled,
            after_cancel,
            resources,
        ))
    }
}

/// CPU and memory readings at the start of a measured phase.
struct Meter {
    server_pid: u32,
    postmaster: Option<u32>,
    server_cpu: Option<Duration>,
    postgres_cpu: Option<Duration>,
    bench_cpu: Option<Duration>,
    machine: MachineTicks,
    /// The kernel's peak-RSS mark was reset, so `VmHWM` covers this phase.
    peak_reset: bool,
}

impl Meter {
    fn start(server_pid: u32, postmaster: Option<u32>, sampler: &RssSampler) -> Meter {
        let peak_reset = procfs::reset_peak(server_pid);
        sampler.reset();
        Meter {
            server_pid,
            postmaster,
            server_cpu: procfs::process_cpu(server_pid),
            postgres_cpu: postmaster.and_then(procfs::process_tree_cpu),
            bench_cpu: procfs::own_cpu(),
            machine: MachineTicks::now(),
            peak_reset,
        }
    }

    fn finish(&self, sampler: &RssSampler, wall: Duration) -> Resources {
        let since = |start: Option<Duration>, end: Option<Duration>| {
            start.zip(end).map(|(start, end)| end.saturating_sub(start))
        };
        let memory = procfs::memory(self.server_pid).unwrap_or_default();
        let kernel_peak = if self.peak_reset { memory.peak_kib } else { 0 };
        Resources {
            wall,
            machine_busy: MachineTicks::now().busy_share_since(&self.machine),
            server_cpu: since(self.server_cpu, procfs::process_cpu(self.server_pid)),
            postgres_cpu: since(
                self.postgres_cpu,
                self.postmaster.and_then(procfs::process_tree_cpu),
            ),
            bench_cpu: since(self.bench_cpu, procfs::own_cpu()),
            server_peak_kib: kernel_peak.max(sampler.max_kib()),
            server_end_kib: memory.rss_kib,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_database_urls_only() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/db",
            "postgres://u:p@localhost/db",
            "postgresql://[::1]:5432/db",
            "postgres:///db?host=/var/run/postgresql",
            "postgres://127.0.0.2/db?hostaddr=127.0.0.1",
        ] {
            assert!(check_loopback_database(url).is_ok(), "{url}");
        }
        for url in [
            "postgres://db.example.com/db",
            "postgres://10.0.0.5:5432/db",
            "postgres://localhost/db?host=db.example.com",
            "mysql://127.0.0.1/db",
            "taskloom.db",
        ] {
            assert!(check_loopback_database(url).is_err(), "{url}");
        }
    }

    #[test]
    fn options_parse_scenario_lists() {
        let options =
            Options::try_parse_from(["bench", "--scenarios", "inflight,single", "--clients", "8"])
                .unwrap();
        assert_eq!(
            options.scenarios,
            vec![Scenario::Inflight, Scenario::Single]
        );
        assert_eq!(options.clients, 8);
        assert!(Options::try_parse_from(["bench", "--scenarios", "bogus"]).is_err());
        assert!(Options::try_parse_from(["bench", "--sqlite", "--database-url", "x"]).is_err());
        assert!(Options::try_parse_from(["bench", "--clients", "0"]).is_err());
    }
}
