//! Structured logging with `tracing`.

use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), logs
/// go to stderr as text or JSON lines.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: log files and pipes get plain text.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Logs the failures of a background loop at a sane rate while they repeat
/// (a store outage fails every round): the first at once, then one line
/// every [`FailureLog::REPEAT`] with the count, and the recovery. It also
/// paces the loop's retries.
pub struct FailureLog {
    what: &'static str,
    /// Consecutive failures.
    failures: u32,
    logged_at: Option<std::time::Instant>,
}

impl FailureLog {
    const REPEAT: std::time::Duration = std::time::Duration::from_secs(30);
    const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);
    const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

    /// `what` names the work, e.g. "claiming internal attempts".
    pub const fn new(what: &'static str) -> FailureLog {
        FailureLog {
            what,
            failures: 0,
            logged_at: None,
        }
    }

    pub fn failed(&mut self, error: &dyn std::fmt::Display) {
        self.failures += 1;
        let now = std::time::Instant::now();
        if self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= Self::REPEAT)
        {
            tracing::warn!(error = %error, failures = self.failures, "{} failed", self.what);
            self.logged_at = Some(now);
        }
    }

    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "{} works again", self.what);
        }
        self.failures = 0;
        self.logged_at = None;
    }

    /// Whether the last round failed.
    pub fn failing(&self) -> bool {
        self.failures > 0
    }

    /// How long to wait before the next try: from 250 ms, doubling with
    /// each consecutive failure, at most 5 s.
    pub fn backoff(&self) -> std::time::Duration {
        let doublings = self.failures.saturating_sub(1).min(5);
        (Self::FIRST_BACKOFF * 2u32.pow(doublings)).min(Self::MAX_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::FailureLog;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_a_cap_and_resets() {
        let mut log = FailureLog::new("testing");
        let mut waits = Vec::new();
        for _ in 0..7 {
            log.failed(&"boom");
            waits.push(log.backoff());
        }
        assert_eq!(
            waits,
            [250, 500, 1000, 2000, 4000, 5000, 5000].map(Duration::from_millis)
        );
        assert!(log.failing());
        log.succeeded();
        assert!(!log.failing());
        log.failed(&"boom");
        assert_eq!(log.backoff(), Duration::from_millis(250));
    }
}
