//! Time filters shared by the list commands: `--since 1h`, `--after` and
//! `--before` (RFC 3339).

use std::time::{Duration, SystemTime};

use clap::Args;

/// A time window: `--since` or `--after` for its start, `--before` for its
/// end.
#[derive(Debug, Clone, Default, Args)]
pub struct TimeRange {
    /// Only those of the last DURATION: `90s`, `15m`, `1h`, `2d`, `1w`, or
    /// several such as `1h30m`.
    #[arg(long, value_name = "DURATION", value_parser = parse_age, conflicts_with = "after")]
    pub since: Option<Duration>,
    /// Only those at or after this time (RFC 3339, e.g.
    /// `2026-12-07T10:00:00Z`, or a date: its midnight UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub after: Option<prost_types::Timestamp>,
    /// Only those before this time (RFC 3339).
    #[arg(long, visible_alias = "until", value_name = "TIME", value_parser = parse_time)]
    pub before: Option<prost_types::Timestamp>,
}

impl TimeRange {
    /// The window's start, `--since` counted back from now.
    pub fn start(&self) -> Option<prost_types::Timestamp> {
        match self.since {
            Some(age) => Some(
                SystemTime::now()
                    .checked_sub(age)
                    .unwrap_or(SystemTime::UNIX_EPOCH)
                    .into(),
            ),
            None => self.after,
        }
    }

    pub fn end(&self) -> Option<prost_types::Timestamp> {
        self.before
    }
}

/// `1h`, `90s`, `1h30m`, `2d`, `1w`: one or more numbers each with a unit
/// (`s`, `m`, `h`, `d`, `w`).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let invalid = || format!("`{text}` is not a duration such as 90s, 15m, 1h, 2d, 1w or 1h30m");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for char in text.trim().chars() {
        if char.is_ascii_digit() {
            digits.push(char);
            continue;
        }
        let unit = match char {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(invalid()),
        };
        let count: u64 = digits.parse().map_err(|_| invalid())?;
        digits.clear();
        total = count
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(invalid)?;
    }
    if !digits.is_empty() || total == 0 {
        return Err(invalid());
    }
    Ok(Duration::from_secs(total))
}

/// An RFC 3339 time such as `2026-12-07T10:00:00Z` or
/// `2026-12-07T11:00:00+01:00`, or a date (its midnight, UTC).
pub fn parse_time(text: &str) -> Result<prost_types::Timestamp, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("`{text}` is not an RFC 3339 time such as 2026-12-07T10:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse() {
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_age("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_age("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_age("1w"), Ok(Duration::from_secs(604_800)));
        for bad in [
            "",
            "1",
            "h",
            "1x",
            "-1h",
            "0s",
            "1.5h",
            "99999999999999999999w",
        ] {
            assert!(parse_age(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_parse() {
        let time = parse_time("2026-12-07T11:00:00+01:00").unwrap();
        assert_eq!(time, parse_time("2026-12-07T10:00:00Z").unwrap());
        assert!(parse_time("yesterday").is_err());
        // A date alone is its midnight, UTC.
        assert_eq!(
            parse_time("2026-12-07").unwrap(),
            parse_time("2026-12-07T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn since_counts_back_from_now() {
        let range = TimeRange {
            since: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        let start = range.start().unwrap();
        let now: prost_types::Timestamp = SystemTime::now().into();
        let back = now.seconds - start.seconds;
        assert!((3599..=3601).contains(&back), "{back}");
    }
}
