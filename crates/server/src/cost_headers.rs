//! Response headers that tell a client how cost control treated its request:
//! `x-warden-cache` (HIT, MISS, BYPASS), `x-warden-model` (the model that answered),
//! `x-warden-downgraded-from` (tiering), and OpenAI's `x-ratelimit-*` family for the tightest
//! of the key's and the user's limits.

use http::{HeaderMap, HeaderValue};
use warden_gateway::{CallReport, Window};

/// `1.5s`, `2m3s`, `250ms`: the duration format of OpenAI's `x-ratelimit-reset-*` headers.
pub(crate) fn reset_text(us: u64) -> String {
    let ms = us.div_ceil(1000);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let minutes = ms / 60_000;
    let secs = (ms % 60_000) as f64 / 1000.0;
    let secs = format!("{secs:.3}");
    let secs = secs.trim_end_matches('0').trim_end_matches('.');
    if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

fn put(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn window(headers: &mut HeaderMap, noun: &str, w: &Window) {
    let names: [&'static str; 3] = match noun {
        "requests" => [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ],
        _ => [
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ],
    };
    put(headers, names[0], &w.limit.to_string());
    put(headers, names[1], &w.remaining.to_string());
    put(headers, names[2], &reset_text(w.reset_us));
}

/// Adds the headers `meta` calls for.
pub(crate) fn insert(headers: &mut HeaderMap, meta: &CallReport) {
    if let Some(c) = meta.cache {
        headers.insert("x-warden-cache", HeaderValue::from_static(c.header()));
    }
    if let Some(m) = &meta.upstream_model {
        put(headers, "x-warden-model", m);
    }
    if let Some(m) = &meta.downgraded_from {
        put(headers, "x-warden-downgraded-from", m);
    }
    if let Some(w) = &meta.rate.requests {
        window(headers, "requests", w);
    }
    if let Some(w) = &meta.rate.tokens {
        window(headers, "tokens", w);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reset_durations_read_like_openais() {
        assert_eq!(super::reset_text(250_000), "250ms");
        assert_eq!(super::reset_text(1_500_000), "1.5s");
        assert_eq!(super::reset_text(60_000_000), "1m0s");
        assert_eq!(super::reset_text(123_000_000), "2m3s");
    }
}
