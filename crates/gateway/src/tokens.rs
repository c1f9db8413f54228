//! Token estimates made before a call, by the model's own tokenizer: OpenAI's `o200k_base`
//! (GPT-4o, GPT-4.1, o-series, GPT-5, and any model not known to be older) or `cl100k_base`
//! (GPT-4, GPT-3.5, the embedding models), through `bpe-openai` (the vocabularies are compiled
//! in; exact tiktoken counts, about twice as fast as tiktoken-rs). A chat prompt is counted the
//! way OpenAI documents it: each message's text plus a few tokens of framing. The estimate a
//! budget reserves is this plus the output cap (`max_completion_tokens`, `max_tokens`, or the
//! configured default), times `n` choices.
//!
//! Agents resend their whole conversation on every turn, so the counts of long texts are
//! remembered by their BLAKE3 hash: each turn tokenizes only what is new.

use bpe_openai::Tokenizer;
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// Framing tokens per message and per reply, as OpenAI's cookbook counts them.
const PER_MESSAGE: u64 = 3;
const PER_REPLY: u64 = 3;
/// Texts at least this long have their count remembered.
const MEMO_MIN_BYTES: usize = 256;
/// Counts remembered at most (about 3 MB); moka evicts the least useful past this.
const MEMO_MAX: u64 = 65_536;

/// Which vocabulary (`true`: o200k) and the first 16 bytes of the text's BLAKE3.
type MemoKey = (bool, [u8; 16]);

/// Remembered counts of long texts.
static MEMO: LazyLock<moka::sync::Cache<MemoKey, u32>> =
    LazyLock::new(|| moka::sync::Cache::new(MEMO_MAX));

/// The tokenizer of a model name (what the provider is asked for).
fn tokenizer(model: &str) -> (&'static Tokenizer, bool) {
    let m = model.rsplit('/').next().unwrap_or(model);
    let older = m == "gpt-4"
        || ["gpt-4-", "gpt-3.5", "text-embedding-", "davinci", "babbage"]
            .iter()
            .any(|p| m.starts_with(p));
    if older {
        (bpe_openai::cl100k_base(), false)
    } else {
        (bpe_openai::o200k_base(), true)
    }
}

/// Loads the vocabularies now, so the first request does not pay for it.
pub(crate) fn warm_up() {
    bpe_openai::o200k_base().count("warm up");
    bpe_openai::cl100k_base().count("warm up");
}

fn count(tok: (&'static Tokenizer, bool), text: &str) -> u64 {
    if text.len() < MEMO_MIN_BYTES {
        return tok.0.count(text) as u64;
    }
    let hash = blake3::hash(text.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&hash.as_bytes()[..16]);
    let key = (tok.1, key);
    if let Some(n) = MEMO.get(&key) {
        return u64::from(n);
    }
    let n = tok.0.count(text);
    MEMO.insert(key, u32::try_from(n).unwrap_or(u32::MAX));
    n as u64
}

/// Text tokens of a message's `content`: a string, or an array of parts whose text counts.
fn content_tokens(tok: (&'static Tokenizer, bool), content: &Value) -> u64 {
    match content {
        Value::String(s) => count(tok, s),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("text") {
                Some(Value::String(s)) => count(tok, s),
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// Prompt tokens of a chat request body (messages, tool definitions).
pub(crate) fn chat_prompt(model: &str, body: &Map<String, Value>) -> u64 {
    let tok = tokenizer(model);
    let mut n = PER_REPLY;
    if let Some(Value::Array(messages)) = body.get("messages") {
        for m in messages {
            n += PER_MESSAGE;
            if let Some(c) = m.get("content") {
                n += content_tokens(tok, c);
            }
            if let Some(Value::String(name)) = m.get("name") {
                n += 1 + count(tok, name);
            }
            if let Some(Value::Array(calls)) = m.get("tool_calls") {
                for c in calls {
                    if let Some(Value::String(a)) = c.pointer("/function/arguments") {
                        n += count(tok, a);
                    }
                    if let Some(Value::String(f)) = c.pointer("/function/name") {
                        n += count(tok, f);
                    }
                }
            }
        }
    }
    if let Some(tools) = body.get("tools").filter(|t| !t.is_null()) {
        n += count(tok, &tools.to_string());
    }
    n
}

/// Input tokens of an embeddings request: a string, strings, or pre-tokenised arrays.
pub(crate) fn embeddings_input(model: &str, body: &Map<String, Value>) -> u64 {
    let tok = tokenizer(model);
    match body.get("input") {
        Some(Value::String(s)) => count(tok, s),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => count(tok, s),
                Value::Array(tokens) => tokens.len() as u64,
                Value::Number(_) => 1,
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// The output a chat request may produce: its cap, or `default` when it sets none.
pub(crate) fn output_cap(body: &Map<String, Value>, default: u64) -> u64 {
    let cap = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|f| body.get(*f).and_then(Value::as_u64))
        .unwrap_or(default);
    let choices = body.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    cap.saturating_mul(choices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn counts_with_the_models_tokenizer() {
        // "hello world" is two tokens in both vocabularies; 3 + 3 framing.
        let b = body(serde_json::json!({"messages":[{"role":"user","content":"hello world"}]}));
        assert_eq!(chat_prompt("gpt-4o", &b), 8);
        assert_eq!(chat_prompt("some-local-model", &b), 8);
        let parts = body(serde_json::json!({"messages":[{"role":"user","content":[
            {"type":"text","text":"hello world"},{"type":"image_url","image_url":{"url":"x"}}]}]}));
        assert_eq!(chat_prompt("gpt-4o", &parts), 8);
        let longer = body(
            serde_json::json!({"messages":[{"role":"user","content":"hello world ".repeat(100)}]}),
        );
        assert!(chat_prompt("gpt-4o", &longer) > 150);
    }

    #[test]
    fn the_two_vocabularies_differ_and_models_pick_theirs() {
        assert!(tokenizer("gpt-4o-mini").1 && tokenizer("o3").1 && tokenizer("gpt-5").1);
        assert!(tokenizer("llama3.1:8b").1);
        assert!(!tokenizer("gpt-4").1 && !tokenizer("gpt-4-turbo").1);
        assert!(!tokenizer("gpt-3.5-turbo").1 && !tokenizer("text-embedding-3-small").1);
        // Non-English text splits differently in the two (o200k is the newer, denser one).
        let text = "日本語のテキストを数える。Ceci est une phrase en français. ".repeat(5);
        let o200k = bpe_openai::o200k_base().count(text.as_str());
        let cl100k = bpe_openai::cl100k_base().count(text.as_str());
        assert!(o200k < cl100k, "{o200k} vs {cl100k}");
    }

    #[test]
    fn remembered_counts_equal_fresh_ones() {
        let text = "An agent resends its conversation on every turn. ".repeat(20);
        let tok = tokenizer("gpt-4o");
        let fresh = tok.0.count(text.as_str()) as u64;
        assert_eq!(count(tok, &text), fresh);
        assert_eq!(count(tok, &text), fresh, "from the memo");
        assert_ne!(count(tokenizer("gpt-4"), &text), 0);
    }

    #[test]
    fn output_cap_takes_the_request_cap_times_choices() {
        assert_eq!(output_cap(&body(serde_json::json!({})), 4096), 4096);
        assert_eq!(
            output_cap(&body(serde_json::json!({"max_tokens": 10})), 4096),
            10
        );
        assert_eq!(
            output_cap(
                &body(serde_json::json!({"max_completion_tokens": 7, "n": 3})),
                4096
            ),
            21
        );
    }

    #[test]
    fn embeddings_count_every_input() {
        let b = body(serde_json::json!({"input": ["hello world", [1, 2, 3]]}));
        assert_eq!(embeddings_input("text-embedding-3-small", &b), 5);
    }
}
