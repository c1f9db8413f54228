//! Unix time helpers for the CLI's output.

/// `2026-11-26T10:00:00Z` for unix seconds (UTC, proleptic Gregorian).
pub fn iso8601(secs: i64) -> String {
    warden_core::time::iso8601(secs)
}

/// Parses a time given on the command line: unix seconds, `YYYY-MM-DD` (midnight UTC) or
/// `YYYY-MM-DDTHH:MM:SSZ`. Returns unix seconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    warden_core::time::parse_time(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_known_instants() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::iso8601(784_111_777), "1994-11-06T08:49:37Z");
        assert_eq!(super::iso8601(1_795_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn parse_time_is_the_inverse_of_iso8601() {
        for secs in [0, 784_111_777, 1_795_000_000] {
            assert_eq!(super::parse_time(&super::iso8601(secs)), Ok(secs));
        }
        assert_eq!(super::parse_time("2026-11-18"), Ok(1_795_000_000 - 40_000));
        assert_eq!(super::parse_time("1795000000"), Ok(1_795_000_000));
        assert!(super::parse_time("yesterday").is_err());
        assert!(super::parse_time("2026-13-01").is_err());
    }
}
