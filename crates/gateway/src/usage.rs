//! Token counts from a provider's `usage` object.

use serde::Deserialize;

/// Token counts as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: Option<i64>,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: Option<i64>,
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
                completion_tokens: Some(1)
            })
        );
        assert_eq!(from_body(b"{}").unwrap(), None);
        assert!(from_body(b"{\"id\":").is_err());
        assert!(from_body(b"").is_err());
    }
}
