//! Numbers glued to a word (`cust_4111111111111111`, `tel_415-555-0132`): the patterns' word
//! boundaries do not hold between a letter or `_` and a digit, so the detector searches each
//! such run of digits and separators again on its own (`Detector::find_glued`). This finds
//! the runs.

use crate::bytes::{is_word, next_number_opening};
use std::ops::Range;

/// The kinds a number glued to a word may be found as (see `Detector::find_glued`).
pub(crate) const GLUED_KINDS: &[&str] = &["CREDIT_CARD", "PHONE", "US_SSN", "IP_ADDRESS"];

/// The fewest digits of a glued number worth searching (an IPv4 address has 4, but glued
/// to a word it is a host name's part; a phone has at least 8).
const GLUED_MIN_DIGITS: usize = 8;

/// Runs of digits and number separators (`+`, `(`, `)`, space, `-`, `.`, `/`) that start
/// with `+`, `(` or a digit, end with a digit, hold at least [`GLUED_MIN_DIGITS`] digits, and
/// touch a letter, digit or `_` on one side (where a word boundary fails).
pub(crate) fn glued_runs(b: &[u8]) -> Vec<(usize, usize)> {
    let part = |c: u8| {
        matches!(
            c,
            b'0'..=b'9' | b'+' | b'(' | b')' | b' ' | b'-' | b'.' | b'/'
        )
    };
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(start) = next_number_opening(b, i) {
        i = start;
        let mut end = i;
        let mut digits = 0;
        while i < b.len() && part(b[i]) {
            if b[i].is_ascii_digit() {
                digits += 1;
                end = i + 1;
            }
            i += 1;
        }
        // Two capitals opening a word and then digits are an IBAN's shape (the IBAN
        // detector judges it), not a number glued to a word.
        let iban_shaped = start >= 2
            && b[start - 2..start].iter().all(u8::is_ascii_uppercase)
            && (start == 2 || !is_word(b[start - 3]));
        let glued_before = start > 0 && is_word(b[start - 1]) && !iban_shaped;
        let glued_after = end < b.len() && is_word(b[end]) && !iso_date_time(b, start, end);
        if digits >= GLUED_MIN_DIGITS && (glued_before || glued_after) {
            out.push((start, end));
        }
        i = i.max(start + 1);
    }
    out
}

/// Whether `start..end` is the date of an ISO 8601 date and time (`2024-11-26T10:30:00Z`),
/// which `T` joins to its time: that is no number glued to a word (and it is in every line
/// of many logs).
fn iso_date_time(b: &[u8], start: usize, end: usize) -> bool {
    let date = &b[start..end];
    let digits = |r: Range<usize>| date[r].iter().all(u8::is_ascii_digit);
    let two = |at: usize| (date[at] - b'0') * 10 + (date[at + 1] - b'0');
    date.len() == 10
        && digits(0..4)
        && date[4] == b'-'
        && digits(5..7)
        && date[7] == b'-'
        && digits(8..10)
        && (1..=12).contains(&two(5))
        && (1..=31).contains(&two(8))
        && b.get(end) == Some(&b'T')
        && b.get(end + 1).is_some_and(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_iso_date_and_time_is_no_glued_number() {
        let runs = |t: &str| glued_runs(t.as_bytes());
        assert_eq!(runs("at 2024-11-26T10:30:00Z ok"), []);
        assert_eq!(runs("at 2024-11-26Tx"), [(3, 13)], "no time after the T");
        assert_eq!(runs("at 0871-94-22T9"), [(3, 13)], "no month 94");
        assert_eq!(runs("id2024-11-26T10:30"), [(2, 12)], "glued before");
        assert_eq!(runs("card 4111111111111111x"), [(5, 21)]);
    }
}
