//! Parsers that turn a model's free-text answer into the output of the
//! `parse_number`, `parse_score`, `parse_range` and `condition_key`
//! handlers.

use super::number::{Found, find_number, number_at};

/// A model's answer did not contain what the handler needed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No number in the answer.
    #[error("no number found in the answer")]
    NoNumber,
    /// No `a-b`, `a..b` or `a to b` range in the answer, and not exactly
    /// one number either.
    #[error("no range (`a-b`, `a..b` or `a to b`) and no single number found in the answer")]
    NoRange,
    /// The answer names none of the valid condition keys.
    #[error("the answer matches none of the valid conditions: {}", .valid.join(", "))]
    NoCondition {
        /// The valid keys.
        valid: Vec<String>,
    },
    /// The answer names several valid condition keys.
    #[error("the answer matches several conditions ({}); expected exactly one of: {}", .matched.join(", "), .valid.join(", "))]
    AmbiguousCondition {
        /// The keys found in the answer.
        matched: Vec<String>,
        /// The valid keys.
        valid: Vec<String>,
    },
}

/// The first number in `text`: negatives and decimals are read (`-5.5`),
/// a hyphen after a letter or digit is not a sign (`item-5` is 5, `3-5`
/// is 3).
pub fn parse_number(text: &str) -> Result<f64, ParseError> {
    find_number(text, 0)
        .map(|found| found.value)
        .ok_or(ParseError::NoNumber)
}

/// A score: the first number in `text`, as [`parse_number`] reads it
/// (`8/10` is 8). Not clamped to any scale.
pub fn parse_score(text: &str) -> Result<f64, ParseError> {
    parse_number(text)
}

/// The first range in `text` written `a-b`, `a..b`, `a–b` (en dash) or
/// `a to b`, negatives allowed (`-10--5`, `-3 to 7`). Returned as
/// `(low, high)` whatever order the answer used. An answer without a range
/// but with exactly one number (`5`, `about 5 days`) is the range 5–5, as
/// contenox reads it; several numbers without a range are no range.
pub fn parse_range(text: &str) -> Result<(f64, f64), ParseError> {
    let mut from = 0;
    while let Some(low) = find_number(text, from) {
        if let Some(high) = range_end_after(text, low) {
            return Ok((low.value.min(high), low.value.max(high)));
        }
        from = low.end;
    }
    match find_number(text, 0) {
        Some(only) if find_number(text, only.end).is_none() => Ok((only.value, only.value)),
        _ => Err(ParseError::NoRange),
    }
}

/// The number closing a range whose first number is `low`, if a range
/// separator and a number follow it.
fn range_end_after(text: &str, low: Found) -> Option<f64> {
    let rest = &text[low.end..];
    let after_space = rest.trim_start();
    let separator_len = ["...", "..", "-", "–", "—", "to "]
        .iter()
        .find(|separator| after_space.starts_with(**separator))
        .map(|separator| separator.len())?;
    let after_separator = after_space[separator_len..].trim_start();
    let start = text.len() - after_separator.len();
    number_at(text, start).map(|found| found.value)
}

/// Characters stripped from both ends of a condition answer: whitespace,
/// quotes, markdown emphasis and sentence punctuation.
fn is_decoration(c: char) -> bool {
    c.is_whitespace() || "\"'`*.,;:!?()[]{}“”‘’«»".contains(c)
}

/// The valid condition key a model answered with. The answer, trimmed of
/// quotes and punctuation, is compared case-insensitively with each key;
/// failing that, if the answer contains exactly one key as a whole word
/// (`The answer is Yes.`), that key. Keys are returned as declared.
pub fn parse_condition_key(text: &str, valid: &[String]) -> Result<String, ParseError> {
    let answer = text.trim_matches(is_decoration).to_lowercase();
    if let Some(key) = valid.iter().find(|key| key.to_lowercase() == answer) {
        return Ok(key.clone());
    }

    // Collect where each key occurs as a whole word, then drop keys whose
    // every occurrence lies inside a longer key's (`sure` in `not sure`).
    let occurrences: Vec<(&String, Vec<(usize, usize)>)> = valid
        .iter()
        .map(|key| (key, word_occurrences(&answer, &key.to_lowercase())))
        .filter(|(_, spans)| !spans.is_empty())
        .collect();
    let mut matched: Vec<String> = occurrences
        .iter()
        .filter(|(key, spans)| {
            spans.iter().any(|&(start, end)| {
                !occurrences.iter().any(|(other, other_spans)| {
                    other != key
                        && other_spans.iter().any(|&(o_start, o_end)| {
                            o_start <= start && end <= o_end && o_end - o_start > end - start
                        })
                })
            })
        })
        .map(|(key, _)| (*key).clone())
        .collect();
    matched.dedup();
    match matched.len() {
        1 => Ok(matched.remove(0)),
        0 => Err(ParseError::NoCondition {
            valid: valid.to_vec(),
        }),
        _ => Err(ParseError::AmbiguousCondition {
            matched,
            valid: valid.to_vec(),
        }),
    }
}

/// Byte spans where `word` occurs in `text` not touching other word
/// characters (letters, digits, `_`).
fn word_occurrences(text: &str, word: &str) -> Vec<(usize, usize)> {
    if word.is_empty() {
        return Vec::new();
    }
    let is_word_char = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word)
        .map(|(start, found)| (start, start + found.len()))
        .filter(|&(start, end)| {
            let before = text[..start].chars().next_back();
            let after = text[end..].chars().next();
            !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn numbers_in_answers() {
        assert_eq!(parse_number("42"), Ok(42.0));
        assert_eq!(parse_number("The answer is -3.25, I think."), Ok(-3.25));
        assert_eq!(parse_number("about 7."), Ok(7.0));
        assert_eq!(parse_number("between 3-5"), Ok(3.0));
        assert_eq!(parse_number("-0.5"), Ok(-0.5));
        assert_eq!(parse_number("version-2 of 3"), Ok(2.0));
        assert_eq!(parse_number("none"), Err(ParseError::NoNumber));
        assert_eq!(parse_number(""), Err(ParseError::NoNumber));
    }

    #[test]
    fn scores_are_the_first_number() {
        assert_eq!(parse_score("8/10"), Ok(8.0));
        assert_eq!(parse_score("Score: 11"), Ok(11.0), "not clamped");
        assert_eq!(parse_score("**9.5** out of 10"), Ok(9.5));
        assert_eq!(parse_score("n/a"), Err(ParseError::NoNumber));
    }

    #[test]
    fn ranges_in_answers() {
        assert_eq!(parse_range("3-5"), Ok((3.0, 5.0)));
        assert_eq!(parse_range("between 10 and 20: 10..20"), Ok((10.0, 20.0)));
        assert_eq!(parse_range("roughly 2 to 4 hours"), Ok((2.0, 4.0)));
        assert_eq!(parse_range("1.5 – 2.5"), Ok((1.5, 2.5)));
        assert_eq!(parse_range("1...3"), Ok((1.0, 3.0)));
        assert_eq!(parse_range("7 - 3"), Ok((3.0, 7.0)), "reordered");
    }

    #[test]
    fn negative_ranges_in_answers() {
        assert_eq!(parse_range("-10--5"), Ok((-10.0, -5.0)));
        assert_eq!(parse_range("-3-7"), Ok((-3.0, 7.0)));
        assert_eq!(parse_range("from -3 to 7 degrees"), Ok((-3.0, 7.0)));
        assert_eq!(parse_range("-10..-5"), Ok((-10.0, -5.0)));
        assert_eq!(parse_range("temps of -2.5 - -1"), Ok((-2.5, -1.0)));
    }

    #[test]
    fn a_single_number_is_a_degenerate_range() {
        assert_eq!(parse_range("5"), Ok((5.0, 5.0)));
        assert_eq!(parse_range(" -2.5 "), Ok((-2.5, -2.5)));
        assert_eq!(parse_range("about 5 days"), Ok((5.0, 5.0)));
        assert_eq!(parse_range("5 tomorrow"), Ok((5.0, 5.0)));
    }

    #[test]
    fn range_needs_a_range_or_a_single_number() {
        assert_eq!(parse_range("5 apples, 6 pears"), Err(ParseError::NoRange));
        assert_eq!(parse_range("range: x-y"), Err(ParseError::NoRange));
        assert_eq!(parse_range(""), Err(ParseError::NoRange));
        assert_eq!(
            parse_range("5 apples then 1-2"),
            Ok((1.0, 2.0)),
            "skips a lone number"
        );
    }

    #[test]
    fn condition_key_exact_answers() {
        let valid = keys(&["yes", "no"]);
        assert_eq!(parse_condition_key("yes", &valid), Ok("yes".to_string()));
        assert_eq!(parse_condition_key("  No.\n", &valid), Ok("no".to_string()));
        assert_eq!(
            parse_condition_key("\"YES\"", &valid),
            Ok("yes".to_string())
        );
        assert_eq!(
            parse_condition_key("**Yes**!", &valid),
            Ok("yes".to_string())
        );
        assert_eq!(parse_condition_key("`no`", &valid), Ok("no".to_string()));
    }

    #[test]
    fn condition_key_keeps_declared_spelling() {
        let valid = keys(&["Technical", "General_Question"]);
        assert_eq!(
            parse_condition_key("general_question", &valid),
            Ok("General_Question".to_string())
        );
    }

    #[test]
    fn condition_key_found_as_a_word() {
        let valid = keys(&["yes", "no"]);
        assert_eq!(
            parse_condition_key("The answer is Yes, clearly.", &valid),
            Ok("yes".to_string())
        );
        assert_eq!(
            parse_condition_key("I'd say no", &valid),
            Ok("no".to_string())
        );
        // `no` inside `nothing`/`note` is not the word `no`.
        assert_eq!(
            parse_condition_key("nothing to note: yes", &valid),
            Ok("yes".to_string())
        );
    }

    #[test]
    fn condition_key_prefers_the_longer_key() {
        let valid = keys(&["sure", "not sure"]);
        assert_eq!(
            parse_condition_key("I am not sure.", &valid),
            Ok("not sure".to_string())
        );
        assert_eq!(
            parse_condition_key("I am sure.", &valid),
            Ok("sure".to_string())
        );
    }

    #[test]
    fn condition_key_errors_name_the_valid_keys() {
        let valid = keys(&["yes", "no"]);
        let error = parse_condition_key("maybe", &valid).unwrap_err();
        assert_eq!(
            error,
            ParseError::NoCondition {
                valid: valid.clone()
            }
        );
        assert!(error.to_string().contains("yes, no"), "{error}");

        let error = parse_condition_key("yes and no", &valid).unwrap_err();
        assert_eq!(
            error,
            ParseError::AmbiguousCondition {
                matched: valid.clone(),
                valid: valid.clone()
            }
        );
        assert!(
            error
                .to_string()
                .contains("expected exactly one of: yes, no"),
            "{error}"
        );

        assert!(matches!(
            parse_condition_key("yes", &[]),
            Err(ParseError::NoCondition { .. })
        ));
    }

    #[test]
    fn word_occurrences_respect_boundaries() {
        assert_eq!(
            word_occurrences("no, no_way, none no", "no"),
            vec![(0, 2), (17, 19)]
        );
        assert_eq!(word_occurrences("abc", ""), Vec::<(usize, usize)>::new());
    }
}
