//! What a call cost, from the configured price table (dollars per million tokens). Prompt
//! tokens the provider served from its own cache are charged at the cached-input price.

use crate::Usage;
use std::collections::BTreeMap;
use warden_config::Price;

/// The price of the model that answered (`upstream`), else of the name the client used.
pub(crate) fn lookup<'p>(
    prices: &'p BTreeMap<String, Price>,
    upstream: Option<&str>,
    asked: &str,
) -> Option<&'p Price> {
    upstream
        .and_then(|m| prices.get(m))
        .or_else(|| prices.get(asked))
}

/// Dollars for this usage at this price.
pub(crate) fn cost(price: &Price, usage: &Usage) -> f64 {
    let prompt = usage.prompt_tokens.unwrap_or(0).max(0) as f64;
    let cached = (usage.cached_tokens.unwrap_or(0).max(0) as f64).min(prompt);
    let completion = usage.completion_tokens.unwrap_or(0).max(0) as f64;
    ((prompt - cached) * price.input + cached * price.cached_input + completion * price.output)
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_cached_prompt_tokens_at_their_own_price() {
        let p = Price {
            input: 2.5,
            output: 10.0,
            cached_input: 1.25,
        };
        let u = Usage {
            prompt_tokens: Some(1_000_000),
            completion_tokens: Some(100_000),
            cached_tokens: Some(400_000),
        };
        // 600k * 2.5 + 400k * 1.25 + 100k * 10 per million.
        assert!((cost(&p, &u) - (1.5 + 0.5 + 1.0)).abs() < 1e-9);
        let mut prices = BTreeMap::new();
        prices.insert("gpt-4o".to_string(), p);
        assert!(lookup(&prices, Some("gpt-4o"), "smart").is_some());
        assert!(lookup(&prices, Some("other"), "gpt-4o").is_some());
        assert!(lookup(&prices, None, "nothing").is_none());
    }
}
