//! Figures derived from the scenarios and the tables printed at the end.

use std::path::Path;
use std::time::Duration;

use crate::drive::{Batch, RunSample, StartedRun};
use crate::procfs::Memory;
use crate::server::BenchServer;
use crate::stats::{Latencies, mib, millis};
use crate::workers::WorkersReport;

/// The targets (2-core machine, server + PostgreSQL + client on it).
const TARGET_SINGLE_RUNS_PER_SEC: f64 = 1_500.0;
const TARGET_SINGLE_P50: Duration = Duration::from_millis(10);
const TARGET_CHAIN3_RUNS_PER_SEC: f64 = 500.0;
const TARGET_INFLIGHT_RSS_BYTES: u64 = 150_000_000;
const TARGET_WORKER_TASKS_PER_SEC: f64 = 2_000.0;
const TARGET_ENQUEUE_TO_LEASE_P50: Duration = Duration::from_millis(5);

/// CPU and memory spent during a measured phase.
#[derive(Debug, Clone, Copy)]
pub struct Resources {
    pub wall: Duration,
    /// Share of all cores busy (anything on the machine).
    pub machine_busy: Option<f64>,
    pub server_cpu: Option<Duration>,
    /// The postmaster and its children; `None` when it could not be found.
    pub postgres_cpu: Option<Duration>,
    pub bench_cpu: Option<Duration>,
    pub server_peak_kib: u64,
    pub server_end_kib: u64,
}

/// A `single` or `chain3` scenario's figures.
pub struct RunReport {
    pub name: &'static str,
    pub clients: u32,
    pub requested: usize,
    pub succeeded: usize,
    /// Runs that ended failed or cancelled.
    pub failed: usize,
    pub errors: u64,
    pub first_error: Option<String>,
    pub timed_out: bool,
    pub latency: Latencies,
    pub start_latency: Latencies,
    pub events: u64,
    /// Successful runs per second in each tenth of the wall time, to show
    /// whether throughput holds or decays as the tables grow.
    pub rate_by_tenth: Vec<f64>,
    pub resources: Resources,
}

/// Completions per second in each of `slices` equal slices of `wall`.
fn rate_by_slice(finished: &[Duration], wall: Duration, slices: usize) -> Vec<f64> {
    if wall.is_zero() || slices == 0 {
        return Vec::new();
    }
    let slice = wall / slices as u32;
    let mut counts = vec![0u64; slices];
    for at in finished {
        let index = (at.as_secs_f64() / slice.as_secs_f64()) as usize;
        counts[index.min(slices - 1)] += 1;
    }
    counts.iter().map(|&count| per_sec(count, slice)).collect()
}

impl RunReport {
    pub fn new(
        name: &'static str,
        clients: u32,
        requested: usize,
        batch: Batch<RunSample>,
        resources: Resources,
    ) -> RunReport {
        let succeeded: Vec<&RunSample> = batch.done.iter().filter(|s| s.succeeded).collect();
        RunReport {
            name,
            clients,
            requested,
            succeeded: succeeded.len(),
            failed: batch.done.len() - succeeded.len(),
            errors: batch.errors,
            first_error: batch.first_error,
            timed_out: batch.timed_out,
            latency: Latencies::new(succeeded.iter().map(|s| s.latency).collect()),
            start_latency: Latencies::new(batch.done.iter().map(|s| s.start_latency).collect()),
            events: batch.done.iter().map(|s| s.events).sum(),
            rate_by_tenth: rate_by_slice(
                &succeeded.iter().map(|s| s.finished_at).collect::<Vec<_>>(),
                batch.wall,
                10,
            ),
            resources,
        }
    }

    pub fn runs_per_sec(&self) -> f64 {
        per_sec(self.succeeded as u64, self.resources.wall)
    }

    pub fn events_per_sec(&self) -> f64 {
        per_sec(self.events, self.resources.wall)
    }
}

/// The `inflight` scenario's figures.
pub struct InflightReport {
    pub requested: usize,
    pub started: usize,
    pub start_errors: u64,
    pub start_first_error: Option<String>,
    pub start_timed_out: bool,
    pub start_wall: Duration,
    pub start_latency: Latencies,
    /// Statuses of a sample of the started runs, read while in flight.
    pub census: String,
    /// Server memory with the runs in flight (peak since the phase began).
    pub in_flight: Memory,
    pub cancelled: usize,
    pub cancel_errors: u64,
    pub cancel_first_error: Option<String>,
    pub cancel_timed_out: bool,
    pub cancel_wall: Duration,
    pub cancel_latency: Latencies,
    pub after_cancel: Memory,
    pub resources: Resources,
}

impl InflightReport {
    pub fn new(
        requested: usize,
        started: Batch<StartedRun>,
        census: String,
        in_flight: Memory,
        cancelled: Batch<Duration>,
        after_cancel: Memory,
        resources: Resources,
    ) -> InflightReport {
        InflightReport {
            requested,
            started: started.done.len(),
            start_errors: started.errors,
            start_first_error: started.first_error,
            start_timed_out: started.timed_out,
            start_wall: started.wall,
            start_latency: Latencies::new(started.done.iter().map(|r| r.start_latency).collect()),
            census,
            in_flight,
            cancelled: cancelled.done.len(),
            cancel_errors: cancelled.errors,
            cancel_first_error: cancelled.first_error,
            cancel_timed_out: cancelled.timed_out,
            cancel_wall: cancelled.wall,
            cancel_latency: Latencies::new(cancelled.done),
            after_cancel,
            resources,
        }
    }
}

fn per_sec(count: u64, wall: Duration) -> f64 {
    let secs = wall.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

fn seconds(value: Option<Duration>) -> String {
    value.map_or_else(|| "-".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

/// Machine facts and the configuration, first thing in the output.
pub fn print_header(options: String, store: &str, binary: &Path, server: &BenchServer) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or_else(
            || "unknown".into(),
            |kib| format!("{:.1} GiB", kib as f64 / 1048576.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("taskloom bench");
    println!(
        "  machine: {cpus} CPUs ({model}), {memory} RAM, Linux {}",
        kernel.trim()
    );
    println!("  store:   {store}");
    println!(
        "  server:  {} serve on {} (pid {})",
        binary.display(),
        server.addr,
        server.pid()
    );
    println!("  load:    {options}");
    println!();
}

pub fn print_run_progress(report: &RunReport) {
    eprintln!(
        "bench: {}: {} ok in {:.2} s = {:.0} runs/s, p50 {} ms{}",
        report.name,
        report.succeeded,
        report.resources.wall.as_secs_f64(),
        report.runs_per_sec(),
        millis(report.latency.percentile(50.0)),
        if report.timed_out {
            " (timed out: partial)"
        } else {
            ""
        }
    );
}

pub fn print_inflight_progress(report: &InflightReport) {
    eprintln!(
        "bench: inflight: {} started, RSS {} MiB (peak {} MiB), {} cancelled",
        report.started,
        mib(report.in_flight.rss_kib),
        mib(report.in_flight.peak_kib),
        report.cancelled
    );
}

/// Every table, the whole-bench peak RSS and the comparison to the targets.
/// The `workers` scenario's figures, printed as soon as it ends and again
/// in the summary.
pub fn print_workers(r: &WorkersReport, resources: &Resources) {
    println!(
        "workers ({} clients): {} of {} worker tasks completed in {:.2} s = {:.0} tasks/s by {} workers × {} slots; \
         enqueue→lease (StartRun sent → offer received) p50 {} ms, p99 {} ms; \
         ready→offer (task leased on the server → offer received) p50 {} ms, p99 {} ms; \
         lease→completion recorded p50 {} ms, p99 {} ms; {} start errors",
        r.clients,
        r.completed,
        r.runs,
        r.wall.as_secs_f64(),
        r.tasks_per_sec(),
        r.workers,
        r.slots,
        millis(r.enqueue_to_lease.percentile(50.0)),
        millis(r.enqueue_to_lease.percentile(99.0)),
        millis(r.ready_to_offer.percentile(50.0)),
        millis(r.ready_to_offer.percentile(99.0)),
        millis(r.lease_to_recorded.percentile(50.0)),
        millis(r.lease_to_recorded.percentile(99.0)),
        r.start_errors,
    );
    let per_task = |cpu: Option<Duration>| {
        cpu.map(|cpu| format!("{:.3}", cpu.as_secs_f64() * 1e3 / r.completed.max(1) as f64))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "  CPU ms per task: server {}, postgres {}, bench (clients + workers) {}; machine busy {}",
        per_task(resources.server_cpu),
        per_task(resources.postgres_cpu),
        per_task(resources.bench_cpu),
        resources
            .machine_busy
            .map(|b| format!("{:.0} %", b * 100.0))
            .unwrap_or_else(|| "-".into()),
    );
}

pub fn print_summary(
    runs: &[RunReport],
    inflight: &[InflightReport],
    workers: &[(WorkersReport, Resources)],
    peak_kib: u64,
    clients: u32,
) {
    for (report, resources) in workers {
        print_workers(report, resources);
        println!();
    }
    if !runs.is_empty() {
        println!(
            "runs (latency = StartRun sent → terminal event received; start = StartRun round trip)"
        );
        println!(
            "{:<9} {:>7} {:>7} {:>6} {:>6} {:>7} {:>8} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9}",
            "scenario",
            "clients",
            "ok",
            "failed",
            "errors",
            "wall s",
            "runs/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "start p50",
            "start p99"
        );
        for r in runs {
            println!(
                "{:<9} {:>7} {:>7} {:>6} {:>6} {:>7.2} {:>8.0} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9}{}",
                r.name,
                r.clients,
                r.succeeded,
                r.failed,
                r.errors,
                r.resources.wall.as_secs_f64(),
                r.runs_per_sec(),
                millis(r.latency.percentile(50.0)),
                millis(r.latency.percentile(90.0)),
                millis(r.latency.percentile(99.0)),
                millis(r.latency.max()),
                millis(r.start_latency.percentile(50.0)),
                millis(r.start_latency.percentile(99.0)),
                if r.timed_out || r.succeeded < r.requested {
                    format!("  (partial: {} of {} requested)", r.succeeded, r.requested)
                } else {
                    String::new()
                }
            );
        }
        for r in runs {
            let rates: Vec<String> = r.rate_by_tenth.iter().map(|v| format!("{v:.0}")).collect();
            println!(
                "  {} runs/s by tenth of the wall time: {}",
                r.name,
                rates.join(" ")
            );
        }
        for r in runs.iter().filter(|r| r.first_error.is_some()) {
            println!(
                "  {}: first error: {}",
                r.name,
                r.first_error.as_deref().unwrap_or_default()
            );
        }
        println!();
        println!("events (every event received by the watchers, all clients together)");
        println!(
            "{:<9} {:>9} {:>11} {:>10}",
            "scenario", "events", "events/run", "events/s"
        );
        for r in runs {
            println!(
                "{:<9} {:>9} {:>11.1} {:>10.0}",
                r.name,
                r.events,
                r.events as f64 / (r.succeeded + r.failed).max(1) as f64,
                r.events_per_sec()
            );
        }
        println!();
    }
    for report in inflight {
        print_inflight(report);
    }
    print_resources(runs, inflight);
    println!(
        "peak server RSS over the whole bench: {} MiB",
        mib(peak_kib)
    );
    println!();
    print_targets(runs, inflight, clients);
    // Throughput: the busiest phase; latency: each phase's p50 at its
    // rate (the target asks for both at once).
    if let Some(best) = workers
        .iter()
        .map(|(r, _)| r)
        .max_by(|a, b| a.tasks_per_sec().total_cmp(&b.tasks_per_sec()))
    {
        let rate = best.tasks_per_sec();
        println!(
            "  worker tasks/s       {:>10.0}  target ≥ {TARGET_WORKER_TASKS_PER_SEC:.0}    {}",
            rate,
            verdict(rate >= TARGET_WORKER_TASKS_PER_SEC && best.completed == best.runs)
        );
    }
    // The latency target holds at that throughput: judge the phase with
    // the lowest p50 among those fast enough (else the lowest p50 of all).
    let p50 = |r: &WorkersReport| r.enqueue_to_lease.percentile(50.0).unwrap_or(Duration::MAX);
    let fast = |r: &WorkersReport| r.tasks_per_sec() >= TARGET_WORKER_TASKS_PER_SEC;
    let judged = workers
        .iter()
        .map(|(r, _)| r)
        .min_by_key(|r| (!fast(r), p50(r)));
    if let Some(r) = judged {
        println!(
            "  workers on {} clients: {:.0} tasks/s at enqueue→lease p50 {} ms  target ≥ {TARGET_WORKER_TASKS_PER_SEC:.0} tasks/s at p50 ≤ {} ms  {}",
            r.clients,
            r.tasks_per_sec(),
            millis(r.enqueue_to_lease.percentile(50.0)),
            TARGET_ENQUEUE_TO_LEASE_P50.as_millis(),
            verdict(fast(r) && p50(r) <= TARGET_ENQUEUE_TO_LEASE_P50 && r.completed == r.runs)
        );
    }
}

fn print_inflight(r: &InflightReport) {
    println!("inflight (runs waiting on an unserved worker queue, not watched)");
    println!(
        "  started:   {} of {} in {:.2} s = {:.0} runs/s, StartRun p50 {} ms, p99 {} ms, {} errors{}",
        r.started,
        r.requested,
        r.start_wall.as_secs_f64(),
        per_sec(r.started as u64, r.start_wall),
        millis(r.start_latency.percentile(50.0)),
        millis(r.start_latency.percentile(99.0)),
        r.start_errors,
        if r.start_timed_out {
            " (timed out: partial)"
        } else {
            ""
        }
    );
    if let Some(error) = &r.start_first_error {
        println!("  first StartRun error: {error}");
    }
    println!("  sampled statuses: {}", r.census);
    println!(
        "  server RSS with {} runs in flight: {} MiB now, {} MiB peak during the phase",
        r.started,
        mib(r.in_flight.rss_kib),
        mib(r.in_flight.peak_kib)
    );
    println!(
        "  cancelled: {} in {:.2} s = {:.0} runs/s, CancelRun p50 {} ms, p99 {} ms, {} errors{}",
        r.cancelled,
        r.cancel_wall.as_secs_f64(),
        per_sec(r.cancelled as u64, r.cancel_wall),
        millis(r.cancel_latency.percentile(50.0)),
        millis(r.cancel_latency.percentile(99.0)),
        r.cancel_errors,
        if r.cancel_timed_out {
            " (timed out: partial)"
        } else {
            ""
        }
    );
    if let Some(error) = &r.cancel_first_error {
        println!("  first CancelRun error: {error}");
    }
    println!(
        "  server RSS after cancelling: {} MiB",
        mib(r.after_cancel.rss_kib)
    );
    println!();
}

fn print_resources(runs: &[RunReport], inflight: &[InflightReport]) {
    let rows = runs
        .iter()
        .map(|r| (r.name, r.resources, (r.succeeded + r.failed) as u64))
        .chain(
            inflight
                .iter()
                .map(|r| ("inflight", r.resources, r.started as u64)),
        );
    println!("resources during each measured phase (CPU seconds; per run in ms)");
    println!(
        "{:<9} {:>7} {:>8} {:>10} {:>8} {:>10} {:>8} {:>10} {:>10}",
        "scenario",
        "busy %",
        "server",
        "server/run",
        "postgres",
        "pg/run",
        "bench",
        "RSS peak",
        "RSS end"
    );
    for (name, res, count) in rows {
        let per_run = |cpu: Option<Duration>| {
            cpu.filter(|_| count > 0).map_or_else(
                || "-".into(),
                |d| format!("{:.3}", d.as_secs_f64() * 1e3 / count as f64),
            )
        };
        println!(
            "{:<9} {:>7} {:>8} {:>10} {:>8} {:>10} {:>8} {:>10} {:>10}",
            name,
            res.machine_busy
                .map_or_else(|| "-".into(), |b| format!("{:.0}", b * 100.0)),
            seconds(res.server_cpu),
            per_run(res.server_cpu),
            seconds(res.postgres_cpu),
            per_run(res.postgres_cpu),
            seconds(res.bench_cpu),
            mib(res.server_peak_kib),
            mib(res.server_end_kib)
        );
    }
    println!("  (busy % = all cores, anything on the machine; RSS in MiB)");
    println!();
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn print_targets(runs: &[RunReport], inflight: &[InflightReport], clients: u32) {
    println!("targets (issue: 2-core machine, server + PostgreSQL + client sharing it)");
    if let Some(single) = runs.iter().find(|r| r.name == "single") {
        let rate = single.runs_per_sec();
        println!(
            "  single runs/s        {:>10.0}  target ≥ {TARGET_SINGLE_RUNS_PER_SEC:.0}    {}",
            rate,
            verdict(rate >= TARGET_SINGLE_RUNS_PER_SEC)
        );
        let latency_measured = runs.iter().any(|r| r.name == "latency");
        if let Some(p50) = single
            .latency
            .percentile(50.0)
            .filter(|_| !latency_measured)
        {
            println!(
                "  single p50 ms        {:>10}  target ≤ {}      {}",
                millis(Some(p50)),
                TARGET_SINGLE_P50.as_millis(),
                verdict(p50 <= TARGET_SINGLE_P50)
            );
            // Little's law: a closed loop keeps `clients` runs in flight, so
            // the mean latency is clients / throughput whatever the server.
            if rate > 0.0 {
                println!(
                    "    (closed loop: {clients} runs in flight / {rate:.0} runs/s ≈ {:.1} ms mean latency by Little's law)",
                    clients as f64 / rate * 1e3
                );
            }
        }
    }
    if let Some(latency) = runs.iter().find(|r| r.name == "latency") {
        let rate = latency.runs_per_sec();
        if let Some(p50) = latency.latency.percentile(50.0) {
            let met = rate >= TARGET_SINGLE_RUNS_PER_SEC && p50 <= TARGET_SINGLE_P50;
            println!(
                "  single on {} clients: {rate:.0} runs/s at p50 {} ms  target ≥ {TARGET_SINGLE_RUNS_PER_SEC:.0} runs/s at p50 ≤ {} ms  {}",
                latency.clients,
                millis(Some(p50)),
                TARGET_SINGLE_P50.as_millis(),
                verdict(met)
            );
        }
    }
    if let Some(chain3) = runs.iter().find(|r| r.name == "chain3") {
        let rate = chain3.runs_per_sec();
        println!(
            "  chain3 runs/s        {:>10.0}  target ≥ {TARGET_CHAIN3_RUNS_PER_SEC:.0}     {}",
            rate,
            verdict(rate >= TARGET_CHAIN3_RUNS_PER_SEC)
        );
    }
    if let Some(r) = inflight.first() {
        let bytes = r.in_flight.peak_kib * 1024;
        println!(
            "  RSS @{:>6} in flight {:>6.1} MB  target ≤ {} MB  {}",
            r.started,
            bytes as f64 / 1e6,
            TARGET_INFLIGHT_RSS_BYTES / 1_000_000,
            verdict(bytes <= TARGET_INFLIGHT_RSS_BYTES)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_are_binned_by_slice_of_wall_time() {
        let finished: Vec<Duration> = [0.05, 0.2, 0.3, 0.99, 1.0]
            .iter()
            .map(|&s| Duration::from_secs_f64(s))
            .collect();
        let rates = rate_by_slice(&finished, Duration::from_secs(1), 2);
        // 3 completions in the first half second, 2 in the second (the one
        // at exactly the end counts in the last slice).
        assert_eq!(rates, vec![6.0, 4.0]);
        assert!(rate_by_slice(&finished, Duration::ZERO, 10).is_empty());
    }
}
