//! Number and range lexing shared by branch operands, branch evaluation and
//! the output parsers. Hand-written rather than `str::parse::<f64>` alone
//! because that also accepts `inf`, `NaN` and `1e400`, which must never
//! steer a chain.

/// Parses a whole string (surrounding whitespace ignored) as a finite
/// decimal number: `[+-]?(D+(.D*)?|.D+)([eE][+-]?D+)?`.
pub(crate) fn parse_strict(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() || strict_number_len(text.as_bytes()) != text.len() {
        return None;
    }
    text.parse::<f64>().ok().filter(|value| value.is_finite())
}

/// Length of the longest prefix of `bytes` that is a strict number (see
/// [`parse_strict`]), or 0.
fn strict_number_len(bytes: &[u8]) -> usize {
    let mut pos = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        pos += 1;
    }
    let int_digits = count_digits(&bytes[pos..]);
    pos += int_digits;
    let mut frac_digits = 0;
    if bytes.get(pos) == Some(&b'.') {
        frac_digits = count_digits(&bytes[pos + 1..]);
        if int_digits > 0 || frac_digits > 0 {
            pos += 1 + frac_digits;
        }
    }
    if int_digits == 0 && frac_digits == 0 {
        return 0;
    }
    if matches!(bytes.get(pos), Some(b'e' | b'E')) {
        let mut exp = pos + 1;
        if matches!(bytes.get(exp), Some(b'+' | b'-')) {
            exp += 1;
        }
        let exp_digits = count_digits(&bytes[exp..]);
        if exp_digits > 0 {
            pos = exp + exp_digits;
        }
    }
    pos
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Parses an `in_range` operand: `LOW..HIGH` or contenox's `LOW-HIGH`, where
/// both bounds may be negative (`-10..-5`, `-10--5`, `-3-7`) and
/// `LOW <= HIGH`.
pub(crate) fn parse_range_operand(text: &str) -> Result<(f64, f64), String> {
    let text = text.trim();
    let (low, high) = split_range_operand(text).ok_or_else(|| {
        "expected a range `LOW..HIGH` or `LOW-HIGH` of two numbers, e.g. `1..5` or `-10--5`"
            .to_string()
    })?;
    if low > high {
        return Err(format!(
            "the low bound {low} is greater than the high bound {high}"
        ));
    }
    Ok((low, high))
}

fn split_range_operand(text: &str) -> Option<(f64, f64)> {
    if let Some((low, high)) = text.split_once("..") {
        return Some((parse_strict(low)?, parse_strict(high)?));
    }
    // A leading `-` is a sign, so the separator is a later `-` that leaves a
    // number on both sides; at most one position can, since a number only
    // holds a `-` at its start or right after its exponent mark.
    text.char_indices()
        .filter(|&(pos, c)| c == '-' && pos > 0)
        .find_map(|(pos, _)| Some((parse_strict(&text[..pos])?, parse_strict(&text[pos + 1..])?)))
}

/// A number found inside free text: its value and the byte range it spans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Found {
    pub value: f64,
    pub start: usize,
    pub end: usize,
}

/// Finds the first number in free text at or after byte `from`: an optional
/// `-` sign (only when it does not follow a letter or digit, so `item-5` and
/// `3-5` yield 5 and 3), digits, and an optional fraction with at least one
/// digit (so `7.` at the end of a sentence is 7). Exponents are not read:
/// model prose like `2e` or `3e5` is rarer as a number than as text.
pub(crate) fn find_number(text: &str, from: usize) -> Option<Found> {
    let bytes = text.as_bytes();
    let mut pos = from;
    while pos < bytes.len() {
        if bytes[pos].is_ascii_digit() {
            let signed = pos > 0
                && bytes[pos - 1] == b'-'
                && (pos < 2 || !bytes[pos - 2].is_ascii_alphanumeric());
            let start = if signed { pos - 1 } else { pos };
            // Only a sign that lies at or after `from` belongs to this search.
            let start = start.max(from);
            return number_at(text, start);
        }
        pos += 1;
    }
    None
}

/// Reads a number that starts exactly at byte `start` (optional `-`, digits,
/// optional `.digits`).
pub(crate) fn number_at(text: &str, start: usize) -> Option<Found> {
    let bytes = text.as_bytes();
    let mut end = start;
    if bytes.get(end) == Some(&b'-') {
        end += 1;
    }
    let int_digits = count_digits(&bytes[end.min(bytes.len())..]);
    if int_digits == 0 {
        return None;
    }
    end += int_digits;
    if bytes.get(end) == Some(&b'.') {
        let frac_digits = count_digits(&bytes[end + 1..]);
        if frac_digits > 0 {
            end += 1 + frac_digits;
        }
    }
    let value = text[start..end]
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())?;
    Some(Found { value, start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_numbers() {
        assert_eq!(parse_strict("42"), Some(42.0));
        assert_eq!(parse_strict("  -3.5 \n"), Some(-3.5));
        assert_eq!(parse_strict("+2"), Some(2.0));
        assert_eq!(parse_strict("1."), Some(1.0));
        assert_eq!(parse_strict(".5"), Some(0.5));
        assert_eq!(parse_strict("1e3"), Some(1000.0));
        assert_eq!(parse_strict("-2.5E-1"), Some(-0.25));
    }

    #[test]
    fn strict_rejects_non_numbers() {
        for text in [
            "", " ", "-", ".", "inf", "NaN", "infinity", "1e400", "1e", "1x", "x1", "1 2", "--1",
            "0x10", "1,5",
        ] {
            assert_eq!(parse_strict(text), None, "{text:?}");
        }
    }

    #[test]
    fn range_operands_with_dots() {
        assert_eq!(parse_range_operand("1..5"), Ok((1.0, 5.0)));
        assert_eq!(parse_range_operand(" 1.5 .. 2.5 "), Ok((1.5, 2.5)));
        assert_eq!(parse_range_operand("-10..-5"), Ok((-10.0, -5.0)));
        assert_eq!(parse_range_operand("-3..7"), Ok((-3.0, 7.0)));
        assert_eq!(parse_range_operand("4..4"), Ok((4.0, 4.0)));
    }

    #[test]
    fn range_operands_with_hyphen() {
        assert_eq!(parse_range_operand("3-5"), Ok((3.0, 5.0)));
        assert_eq!(parse_range_operand("-10--5"), Ok((-10.0, -5.0)));
        assert_eq!(parse_range_operand("-3-7"), Ok((-3.0, 7.0)));
        assert_eq!(parse_range_operand("0.5-1.5"), Ok((0.5, 1.5)));
        assert_eq!(parse_range_operand("1e-3-2"), Ok((0.001, 2.0)));
    }

    #[test]
    fn range_operands_rejected() {
        for text in [
            "", "5", "-5", "a-b", "1..", "..2", "1-", "1--", "1 to 5", "1..2..3", "inf-5",
        ] {
            assert!(parse_range_operand(text).is_err(), "{text:?}");
        }
        let reversed = parse_range_operand("5-3").unwrap_err();
        assert!(reversed.contains("greater"), "{reversed}");
        assert!(parse_range_operand("-5--10").is_err());
    }

    #[test]
    fn finds_numbers_in_text() {
        let found = find_number("score: -5.5 points", 0).unwrap();
        assert_eq!(found.value, -5.5);
        assert_eq!(&"score: -5.5 points"[found.start..found.end], "-5.5");
        assert_eq!(find_number("item-5", 0).unwrap().value, 5.0);
        assert_eq!(find_number("3-5", 0).unwrap().value, 3.0);
        assert_eq!(find_number("-3-5", 0).unwrap().value, -3.0);
        assert_eq!(find_number("It is 7.", 0).unwrap().value, 7.0);
        assert_eq!(find_number("no digits", 0), None);
        assert_eq!(find_number("1 and 2", 1).unwrap().value, 2.0);
    }

    #[test]
    fn number_at_requires_a_digit() {
        assert_eq!(number_at("-x", 0), None);
        assert_eq!(number_at("", 0), None);
        assert_eq!(number_at("-12.25abc", 0).unwrap().value, -12.25);
        assert_eq!(number_at("9", 1), None);
    }
}
