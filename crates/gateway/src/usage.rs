//! Token counts from a provider's `usage` object.

use serde::Deserialize;

/// Token counts as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "RawUsage")]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: Option<i64>,
    /// Tokens generated.
    pub completion_tokens: Option<i64>,
    /// Prompt tokens the provider served from its own prompt cache.
    pub cached_tokens: Option<i64>,
}

impl Usage {
    /// Prompt plus completion tokens (0 for what was not reported).
    pub fn total(&self) -> u64 {
        (self.prompt_tokens.unwrap_or(0).max(0) + self.completion_tokens.unwrap_or(0).max(0)) as u64
    }
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: Option<i64>,
    #[serde(default)]
    completion_tokens: Option<i64>,
    #[serde(default)]
    prompt_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<i64>,
}

impl From<RawUsage> for Usage {
    fn from(r: RawUsage) -> Self {
        Self {
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cached_tokens: r.prompt_tokens_details.and_then(|d| d.cached_tokens),
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    usage: Option<Usage>,
}

/// Checks that `body` is one JSON object and extracts its `usage` (skipping everything else
/// without building it). `Err` means the body is not valid JSON.
pub(crate) fn from_body(body: &[u8]) -> Result<Option<Usage>, String> {
    serde_json::from_slice::<Envelope>(body)
        .map(|e| e.usage)
        .map_err(|e| e.to_string())
}

/// Records token counts in `warden_tokens_total{model, kind}`.
pub(crate) fn record_tokens(model: &str, usage: &Usage) {
    if let Some(n) = usage.prompt_tokens.filter(|n| *n > 0) {
        metrics::counter!("warden_tokens_total", "model" => model.to_owned(), "kind" => "prompt")
            .increment(n as u64);
    }
    if let Some(n) = usage.completion_tokens.filter(|n| *n > 0) {
        metrics::counter!("warden_tokens_total", "model" => model.to_owned(), "kind" => "completion")
            .increment(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_usage_and_rejects_malformed_bodies() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
        assert_eq!(
            from_body(body).unwrap(),
            Some(Usage {
                prompt_tokens: Some(3),
                completion_tokens: Some(1),
                cached_tokens: None,
            })
        );
        assert_eq!(from_body(b"{}").unwrap(), None);
        assert!(from_body(b"{\"id\":").is_err());
        assert!(from_body(b"").is_err());
    }
}
