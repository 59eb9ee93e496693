//! Go-style durations (`300ms`, `1.5s`, `2m`, `1h30m`, `10us`), the format
//! contenox chains use for timeouts and delays.

use std::time::Duration;

/// Nanoseconds per unit. A unit is read as the whole run of characters up to
/// the next digit or `.` (as Go does), so `ms` never matches `m`.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000), // U+00B5 MICRO SIGN
    ("μs", 1_000), // U+03BC GREEK SMALL LETTER MU
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
];

/// Parses a Go duration string: a sequence of decimal numbers, each with an
/// optional fraction and a required unit (`ns`, `us`/`µs`, `ms`, `s`, `m`,
/// `h`), such as `1h30m` or `1.5s`. `0` alone is allowed. Negative durations
/// are rejected (a [`Duration`] cannot hold them); surrounding whitespace is
/// ignored. Bounds such as "more than zero" are the caller's business.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    if unsigned.starts_with('-') {
        return Err(format!("duration {text:?} is negative"));
    }
    if unsigned == "0" {
        return Ok(Duration::ZERO);
    }
    if unsigned.is_empty() {
        return Err("duration is empty; expected e.g. `30s`, `1m30s` or `500ms`".to_string());
    }

    let mut rest = unsigned;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let (nanos, remainder) = parse_component(rest)
            .map_err(|problem| format!("invalid duration {text:?}: {problem}"))?;
        total_nanos = total_nanos.saturating_add(nanos);
        rest = remainder;
    }
    let nanos = u64::try_from(total_nanos).map_err(|_| format!("duration {text:?} is too long"))?;
    Ok(Duration::from_nanos(nanos))
}

/// Longest accepted retention period: 100 years.
pub const MAX_RETENTION: Duration = Duration::from_secs(36_500 * 86_400);

/// Parses a retention period: a Go duration (see [`parse_duration`]),
/// optionally led by whole days, such as `30d`, `1d12h` or `72h`. `0s` (or
/// `0d`) means "keep forever" to the callers; at most [`MAX_RETENTION`].
pub fn parse_retention(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let period = match text[digits..].strip_prefix('d') {
        Some(rest) if digits > 0 => {
            let too_long = || format!("retention {text:?} is longer than 36500d");
            let days: u64 = text[..digits].parse().map_err(|_| too_long())?;
            let rest = if rest.is_empty() {
                Duration::ZERO
            } else {
                parse_duration(rest)?
            };
            days.checked_mul(86_400)
                .map(Duration::from_secs)
                .and_then(|days| days.checked_add(rest))
                .ok_or_else(too_long)?
        }
        _ => parse_duration(text)?,
    };
    if period > MAX_RETENTION {
        return Err(format!("retention {text:?} is longer than 36500d"));
    }
    Ok(period)
}

/// Parses one `NUMBER UNIT` component at the start of `text`; returns its
/// length in nanoseconds and the rest of the text.
fn parse_component(text: &str) -> Result<(u128, &str), String> {
    let int_len = text.bytes().take_while(u8::is_ascii_digit).count();
    let (int_part, after_int) = text.split_at(int_len);
    let (frac_part, after_number) = match after_int.strip_prefix('.') {
        Some(after_dot) => {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            after_dot.split_at(frac_len)
        }
        None => ("", after_int),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err("expected a number".to_string());
    }
    let unit_len = after_number
        .char_indices()
        .find(|&(_, c)| c.is_ascii_digit() || c == '.')
        .map_or(after_number.len(), |(pos, _)| pos);
    let (unit, rest) = after_number.split_at(unit_len);
    if unit.is_empty() {
        return Err("missing unit (one of ns, us, ms, s, m, h)".to_string());
    }
    let &(_, unit_nanos) = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .ok_or_else(|| format!("unknown unit {unit:?} (expected one of ns, us, ms, s, m, h)"))?;

    // Integer arithmetic like Go, so `0.1s` is exactly 100ms. Digits past
    // nanosecond precision cannot change the result and are dropped, which
    // also keeps the numbers small.
    let too_long = || "number too large".to_string();
    // 30 digits always fit in a u128; more could never fit in a u64 of nanos.
    let int_value: u128 = match int_part.len() {
        0 => 0,
        1..=30 => int_part.parse().map_err(|_| too_long())?,
        _ => return Err(too_long()),
    };
    let frac_digits = &frac_part[..frac_part.len().min(18)];
    let mut frac_nanos: u128 = 0;
    if !frac_digits.is_empty() {
        let numerator: u128 = frac_digits.parse().map_err(|_| too_long())?;
        let scale = 10u128.pow(frac_digits.len() as u32);
        frac_nanos = numerator * unit_nanos / scale;
    }
    let nanos = int_value
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(too_long)?;
    Ok((nanos, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_retention_periods() {
        let day = Duration::from_secs(86_400);
        assert_eq!(parse_retention("30d"), Ok(30 * day));
        assert_eq!(
            parse_retention("1d12h"),
            Ok(day + Duration::from_secs(43_200))
        );
        assert_eq!(parse_retention("72h"), Ok(3 * day));
        assert_eq!(parse_retention("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_retention("0d"), Ok(Duration::ZERO));
        assert_eq!(parse_retention("36500d"), Ok(MAX_RETENTION));
        for text in [
            "",
            "d",
            "30",
            "1.5d",
            "-1d",
            "36501d",
            "99999999999999999999d",
            "3dd",
            "1w",
        ] {
            assert!(parse_retention(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("300ms", Duration::from_millis(300)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("1h30m", Duration::from_secs(5400)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("10μs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("1m30s", Duration::from_secs(90)),
            ("0.1s", Duration::from_millis(100)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("+5s", Duration::from_secs(5)),
            (" 45s ", Duration::from_secs(45)),
            ("1h1m1s1ms1us1ns", Duration::new(3661, 1_001_001)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("1.0000000001s", Duration::from_secs(1)),
            ("24h", Duration::from_secs(86_400)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for text in [
            "", " ", "5", "s", "-1s", "1x", "1 s", "1s 2m", "1.2.3s", "ms5", "1d", "1S", "..5s",
            "1h-5m", "abc",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn rejects_overflow_without_panicking() {
        assert!(parse_duration("99999999999999999999999999999999999999h").is_err());
        assert!(parse_duration("9999999999999h").is_err());
        assert!(parse_duration(&format!("{}s", "9".repeat(500))).is_err());
    }

    #[test]
    fn errors_explain_the_problem() {
        assert!(parse_duration("1d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("-1s").unwrap_err().contains("negative"));
        assert!(parse_duration("").unwrap_err().contains("empty"));
    }
}
