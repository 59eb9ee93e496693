//! The compiled retry policy of a task and its delay arithmetic.

use std::time::Duration;

/// How failed attempts of a task are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first; at least 1 (1 = no retry).
    pub max_attempts: u32,
    /// How the delay grows between retries.
    pub backoff: Backoff,
    /// Delay before the first retry.
    pub initial_delay: Duration,
    /// Cap on the computed delay (before jitter).
    pub max_delay: Duration,
    /// Random extra delay as a fraction of the delay, in `0..=1`.
    pub jitter: f64,
}

/// How the delay between retries grows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// Every retry waits `initial_delay`.
    Fixed,
    /// Retry `n` waits `initial_delay * multiplier^(n-1)`.
    Exponential {
        /// Growth factor, at least 1.
        multiplier: f64,
    },
}

impl RetryPolicy {
    /// The policy of a task that declares no retry: one attempt.
    pub const NO_RETRY: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        backoff: Backoff::Fixed,
        initial_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(1),
        jitter: 0.0,
    };

    /// contenox's `retry_on_failure: N`: N retries, 1s apart.
    pub(crate) fn contenox(retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: retries.saturating_add(1),
            ..RetryPolicy::NO_RETRY
        }
    }

    /// Whether another attempt may follow the failure of attempt number
    /// `failed_attempt` (counted from 1).
    pub fn can_retry(&self, failed_attempt: u32) -> bool {
        failed_attempt < self.max_attempts
    }

    /// The delay before the attempt that follows the failure of attempt
    /// number `attempt` (counted from 1; 0 is read as 1).
    ///
    /// The backoff delay is capped by `max_delay`; jitter then adds up to
    /// `jitter * delay`, scaled by `random_unit` (a random number in
    /// `0..=1`, clamped there; NaN counts as 0). Jitter is applied after the
    /// cap on purpose: tasks that all reached the cap still spread out.
    pub fn delay(&self, attempt: u32, random_unit: f64) -> Duration {
        let exponent = attempt.max(1) - 1;
        let uncapped = match self.backoff {
            Backoff::Fixed => self.initial_delay.as_secs_f64(),
            Backoff::Exponential { multiplier } => {
                let exponent = i32::try_from(exponent).unwrap_or(i32::MAX);
                self.initial_delay.as_secs_f64() * multiplier.powi(exponent)
            }
        };
        let cap = self.max_delay.as_secs_f64();
        // A huge exponent gives infinity, which the cap absorbs; NaN only
        // comes from a zero initial delay times infinity, i.e. no delay.
        let base = if uncapped.is_nan() {
            0.0
        } else {
            uncapped.min(cap)
        };
        let unit = if random_unit.is_nan() {
            0.0
        } else {
            random_unit.clamp(0.0, 1.0)
        };
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let total = base + base * jitter * unit;
        Duration::try_from_secs_f64(total).unwrap_or(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exponential(multiplier: f64, initial_ms: u64, max_ms: u64, jitter: f64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            backoff: Backoff::Exponential { multiplier },
            initial_delay: Duration::from_millis(initial_ms),
            max_delay: Duration::from_millis(max_ms),
            jitter,
        }
    }

    fn close(actual: Duration, expected_ms: f64) -> bool {
        (actual.as_secs_f64() * 1000.0 - expected_ms).abs() < 1e-6
    }

    #[test]
    fn fixed_delay_is_constant() {
        let policy = RetryPolicy::contenox(3);
        assert_eq!(policy.max_attempts, 4);
        for attempt in [0, 1, 2, 3, 50] {
            assert_eq!(policy.delay(attempt, 0.0), Duration::from_secs(1));
        }
    }

    #[test]
    fn exponential_delay_grows_then_caps() {
        let policy = exponential(2.0, 100, 1000, 0.0);
        let expected = [100.0, 200.0, 400.0, 800.0, 1000.0, 1000.0];
        for (index, ms) in expected.into_iter().enumerate() {
            let attempt = index as u32 + 1;
            assert!(
                close(policy.delay(attempt, 0.7), ms),
                "attempt {attempt}: {:?}",
                policy.delay(attempt, 0.7)
            );
        }
        assert!(close(policy.delay(0, 0.0), 100.0), "attempt 0 reads as 1");
    }

    #[test]
    fn exponential_delay_survives_huge_attempt_numbers() {
        let policy = exponential(10.0, 1000, 60_000, 0.0);
        assert_eq!(policy.delay(u32::MAX, 0.0), Duration::from_secs(60));
        let zero_start = exponential(2.0, 0, 5000, 0.0);
        assert_eq!(zero_start.delay(u32::MAX, 0.0), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let policy = exponential(2.0, 1000, 10_000, 0.5);
        assert!(close(policy.delay(1, 0.0), 1000.0));
        assert!(close(policy.delay(1, 1.0), 1500.0));
        assert!(close(policy.delay(2, 0.5), 2500.0));
        for step in 0..=20 {
            let unit = f64::from(step) / 20.0;
            let delay = policy.delay(3, unit).as_secs_f64();
            assert!((4.0..=6.0).contains(&delay), "{unit}: {delay}");
        }
        // Jitter applies on top of the cap.
        assert!(close(policy.delay(9, 1.0), 15_000.0));
    }

    #[test]
    fn random_unit_out_of_range_is_clamped() {
        let policy = exponential(2.0, 1000, 10_000, 1.0);
        assert!(close(policy.delay(1, 7.0), 2000.0));
        assert!(close(policy.delay(1, -3.0), 1000.0));
        assert!(close(policy.delay(1, f64::NAN), 1000.0));
    }

    #[test]
    fn can_retry_counts_attempts() {
        let policy = RetryPolicy::contenox(2);
        assert!(policy.can_retry(1));
        assert!(policy.can_retry(2));
        assert!(!policy.can_retry(3));
        assert!(!RetryPolicy::NO_RETRY.can_retry(1));
    }
}
