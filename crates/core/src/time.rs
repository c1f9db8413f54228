//! The wall clock, read in one place, in the units stored rows and records use, and the two
//! ways people write times (ISO 8601 in UTC, or a date), through `chrono`.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now (0 if the clock is before 1970).
pub fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds now (0 if the clock is before 1970).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The UTC date and time of unix seconds (`None` beyond chrono's range of ±262,000 years).
pub fn utc(secs: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(secs, 0).map(|t| t.naive_utc())
}

/// `2026-11-26T10:00:00Z` for unix seconds (UTC); out of range, the seconds as they are.
pub fn iso8601(secs: i64) -> String {
    utc(secs).map_or_else(
        || secs.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// Parses a time given by a person (CLI flags, query parameters): unix seconds, `YYYY-MM-DD`
/// (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ`. Returns unix seconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    let at = match text.strip_suffix('Z') {
        Some(t) => NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").ok(),
        None => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0)),
    };
    at.map(|t| t.and_utc().timestamp()).ok_or_else(|| {
        format!("`{text}` is not a time (use unix seconds, 2026-11-26 or 2026-11-26T10:00:00Z)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(784_111_777), "1994-11-06T08:49:37Z");
        assert_eq!(iso8601(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parse_time_is_the_inverse_of_iso8601() {
        for secs in [0, 784_111_777, 1_795_000_000, -86_400] {
            assert_eq!(parse_time(&iso8601(secs)), Ok(secs));
        }
        assert_eq!(parse_time("2026-11-18"), Ok(1_795_000_000 - 40_000));
        assert_eq!(parse_time(" 1795000000 "), Ok(1_795_000_000));
        assert_eq!(parse_time("2028-02-29"), Ok(1_835_395_200));
        for bad in [
            "yesterday",
            "2026-02-30",
            "2026-13-01",
            "2026-11-18T25:00:00Z",
            "2026-11-18T10:00:00",
        ] {
            let e = parse_time(bad).unwrap_err();
            assert!(e.contains("is not a time"), "{bad}: {e}");
        }
    }
}
