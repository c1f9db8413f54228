//! Human durations such as `250ms`, `30s`, `5m`, `24h`, `7d` (or `1h 30m`, `2 days`), used in
//! the file and on the CLI, through the `humantime` crate.

use std::time::Duration;

/// Parses a duration: numbers with units (`ms`, `s`, `m`, `h`, `d`, `w` and their long
/// forms), several of them added (`1h 30m`). A number without a unit is an error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    humantime::parse_duration(text).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write e.g. 250ms, 30s, 5m, 24h or 7d")
    })
}

/// Formats a duration so that [`parse_duration`] reads it back (`30s`, `1h 30m`, `1500ms` as
/// `1s 500ms`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration(" 1h 30m "), Ok(Duration::from_secs(5_400)));
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        for bad in [
            "30",
            "h",
            "",
            "3 fortnights",
            "-5s",
            "99999999999999999999d",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(
                e.contains("is not a duration") && e.contains("30s"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn format_is_read_back_by_parse() {
        for text in ["250ms", "30s", "5m", "25h", "7d", "1500ms", "90m"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{text}");
        }
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
    }
}
