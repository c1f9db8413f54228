//! How long to wait before retrying one target: bounded exponential backoff with jitter, or
//! the upstream's `retry-after` when it gives one that fits the bound.
//!
//! The delay is ours rather than `backon`'s on purpose: backon's jitter adds up to a whole
//! delay on top of it, so the configured `max_backoff` would not bound the wait a client
//! sees; this is "equal jitter" (a random point in the upper half), within the cap. The
//! retry loop itself is the gateway's (it also moves between targets and circuit breakers).

use rand::Rng;
use std::time::Duration;
use warden_config::RetryConfig;

/// Wait before retry number `retry` (1 for the first retry): a random point in the upper half
/// of `initial * 2^(retry-1)`, capped at `max`. Jitter keeps many clients from retrying in step.
pub fn delay(config: &RetryConfig, retry: u32) -> Duration {
    let exp = config
        .initial_backoff
        .saturating_mul(1u32 << (retry.saturating_sub(1)).min(16));
    let ceiling = exp.min(config.max_backoff);
    let half = ceiling / 2;
    half + rand::rng().random_range(Duration::ZERO..=half)
}

/// Parses `retry-after`: whole seconds, or an HTTP date. Dates in the past give zero.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs.min(86_400.0)));
    }
    // The three date forms RFC 9110 says a recipient must accept (IMF-fixdate, RFC 850,
    // asctime), through the `httpdate` crate hyper uses.
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn config() -> RetryConfig {
        RetryConfig {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        }
    }

    #[test]
    fn delay_grows_exponentially_within_jitter_and_is_capped() {
        for _ in 0..200 {
            let d1 = delay(&config(), 1);
            assert!((50..=100).contains(&d1.as_millis()), "{d1:?}");
            let d3 = delay(&config(), 3);
            assert!((200..=400).contains(&d3.as_millis()), "{d3:?}");
            let d9 = delay(&config(), 9);
            assert!((500..=1000).contains(&d9.as_millis()), "{d9:?}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("0.5", now),
            Some(Duration::from_millis(500))
        );
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:41 GMT", now),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:42 1994", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 25:49:40 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
