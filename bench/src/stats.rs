//! Latency percentiles over recorded samples (a few tens of thousands at
//! most, so a sorted vector is exact and cheap).

use std::time::Duration;

/// Exact percentiles of a set of durations.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    sorted: Vec<Duration>,
}

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Latencies {
        samples.sort_unstable();
        Latencies { sorted: samples }
    }

    /// The sample at or below which `percent` % of the samples lie
    /// (nearest-rank); `None` without samples.
    pub fn percentile(&self, percent: f64) -> Option<Duration> {
        if self.sorted.is_empty() {
            return None;
        }
        let rank = ((percent / 100.0) * self.sorted.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.sorted.len()) - 1;
        self.sorted.get(index).copied()
    }

    /// The samples, shortest first.
    pub fn samples(&self) -> &[Duration] {
        &self.sorted
    }

    pub fn max(&self) -> Option<Duration> {
        self.sorted.last().copied()
    }
}

/// Milliseconds with one decimal, or `-` without a value.
pub fn millis(value: Option<Duration>) -> String {
    value.map_or_else(|| "-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
}

/// MiB with one decimal from KiB.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let latencies = Latencies::new(samples);
        assert_eq!(latencies.percentile(50.0), Some(Duration::from_millis(50)));
        assert_eq!(latencies.percentile(90.0), Some(Duration::from_millis(90)));
        assert_eq!(latencies.percentile(99.0), Some(Duration::from_millis(99)));
        assert_eq!(
            latencies.percentile(100.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(latencies.percentile(0.0), Some(Duration::from_millis(1)));
        assert_eq!(latencies.max(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn unsorted_input_and_empty_set() {
        let latencies = Latencies::new(vec![
            Duration::from_millis(30),
            Duration::from_millis(10),
            Duration::from_millis(20),
        ]);
        assert_eq!(latencies.percentile(50.0), Some(Duration::from_millis(20)));
        assert_eq!(Latencies::default().percentile(50.0), None);
        assert_eq!(millis(None), "-");
        assert_eq!(millis(Some(Duration::from_micros(1260))), "1.3");
        assert_eq!(mib(1536), "1.5");
    }
}
