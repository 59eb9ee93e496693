//! Process and machine figures read from `/proc`: resident memory of the
//! server, CPU time of the server, of PostgreSQL and of the bench itself, and
//! how busy the whole machine was.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Resident set size of a process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Current resident set (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set since start or the last [`reset_peak`] (`VmHWM`).
    pub peak_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid`; `None` once the process is gone.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// Resets the kernel's peak-RSS mark of `pid` so `VmHWM` measures from now
/// (Linux ≥ 4.0; needs ptrace rights over the process, which a parent has).
/// Returns false when the kernel refused.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Clock ticks per second of the `utime`/`stime` fields of `/proc/*/stat`.
fn ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold
/// spaces), so index 0 is the state (field 3 in proc(5)).
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_string).collect())
}

/// User + system CPU time of one process, in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let fields = stat_fields(pid)?;
    // proc(5): utime is field 14, stime field 15; index 0 here is field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / ticks_per_second() as f64)
}

/// CPU time `pid` has used so far.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    cpu_ticks(&pid.to_string()).map(ticks_to_duration)
}

/// CPU time the bench process has used so far (all its threads).
pub fn own_cpu() -> Option<Duration> {
    cpu_ticks("self").map(ticks_to_duration)
}

/// CPU time of a process and all its direct children: a postmaster and its
/// backends, walwriter, checkpointer and autovacuum workers. Backends that
/// already exited are not counted (the server pools its connections, so its
/// backends live for the whole bench).
pub fn process_tree_cpu(parent: u32) -> Option<Duration> {
    let mut total = cpu_ticks(&parent.to_string())?;
    let parent = parent.to_string();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Some(fields) = stat_fields(pid) else {
            continue;
        };
        // Index 1 is the parent pid (field 4).
        if fields.get(1) == Some(&parent) {
            total += cpu_ticks(pid).unwrap_or(0);
        }
    }
    Some(ticks_to_duration(total))
}

/// Busy and total CPU ticks of the whole machine (all cores), from the
/// first line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineTicks {
    busy: u64,
    total: u64,
}

impl MachineTicks {
    pub fn now() -> MachineTicks {
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return MachineTicks::default();
        };
        let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
            return MachineTicks::default();
        };
        let values: Vec<u64> = cpu
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is
        // already part of user).
        let total: u64 = values.iter().take(8).sum();
        let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
        MachineTicks {
            busy: total.saturating_sub(idle),
            total,
        }
    }

    /// Share of all cores' time that was busy between `earlier` and `self`.
    pub fn busy_share_since(&self, earlier: &MachineTicks) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

/// The pid of the postmaster serving `database_url`, found by asking the
/// server for its data directory and reading `postmaster.pid` there. Works
/// for a local server whose data directory this user can read; `None`
/// otherwise (its CPU time is then not reported).
pub fn postmaster_pid(database_url: &str) -> Option<u32> {
    let output = Command::new("psql")
        .arg(database_url)
        .args(["-Atq", "-c", "SHOW data_directory"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let pid_file = std::fs::read_to_string(Path::new(&dir).join("postmaster.pid")).ok()?;
    pid_file.lines().next()?.trim().parse().ok()
}

/// Samples the current RSS of a process every `interval` and keeps the
/// highest value seen, as a cross-check of `VmHWM` (and a fallback where it
/// cannot be reset).
pub struct RssSampler {
    max_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    pub fn start(pid: u32, interval: Duration) -> RssSampler {
        let max_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (max, stopped) = (max_kib.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            while !stopped.load(Ordering::Relaxed) {
                ticker.tick().await;
                match memory(pid) {
                    Some(mem) => {
                        max.fetch_max(mem.rss_kib, Ordering::Relaxed);
                    }
                    None => break,
                }
            }
        });
        RssSampler { max_kib, stop }
    }

    /// Highest RSS sampled since start or the last [`RssSampler::reset`].
    pub fn max_kib(&self) -> u64 {
        self.max_kib.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        self.max_kib.store(0, Ordering::Relaxed);
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
