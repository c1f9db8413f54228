//! Human durations such as `250ms`, `30s`, `5m`, `24h`, `7d` (or `1h 30m`, `2 days`), used in
//! the file and on the CLI, read through the `humantime` crate and written back in one unit.

use std::time::Duration;

/// The longest duration accepted: what fits in `u64` milliseconds (about 584 million years),
/// as before humantime, so that adding one to an instant or a unix time cannot overflow.
const LONGEST: Duration = Duration::from_millis(u64::MAX);

/// Parses a duration: numbers with units (`ms`, `s`, `m`, `h`, `d`, `w` and their long
/// forms), several of them added (`1h 30m`). A number without a unit (`0` too) is an error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = |why: &dyn std::fmt::Display| {
        format!("`{text}` is not a duration ({why}); write e.g. 250ms, 30s, 5m, 24h or 7d")
    };
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(&"a unit is needed"));
    }
    let d = humantime::parse_duration(text).map_err(|e| bad(&e))?;
    if d > LONGEST {
        return Err(bad(&"too large"));
    }
    Ok(d)
}

/// Formats a duration in the largest unit that divides it (`90s`, `1500ms`, `25h`), which
/// [`parse_duration`] reads back.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
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
            "0",
            "h",
            "",
            "3 fortnights",
            "-5s",
            "99999999999999999999d",
            "300000000000y",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(
                e.contains("is not a duration") && e.contains("30s"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn format_is_the_inverse_of_parse() {
        for text in ["250ms", "30s", "90s", "5m", "25h", "7d", "1500ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
        assert_eq!(format_duration(parse_duration("1h 30m").unwrap()), "90m");
    }
}
