//! Token estimates made before a call, by the model's own tokenizer (tiktoken's vocabularies,
//! compiled in; unknown models count with `o200k_base`). A chat prompt is counted the way
//! OpenAI documents it: each message's text plus a few tokens of framing. The estimate a
//! budget reserves is this plus the output cap (`max_completion_tokens`, `max_tokens`, or the
//! configured default), times `n` choices.

use serde_json::{Map, Value};
use tiktoken_rs::CoreBPE;

/// Framing tokens per message and per reply, as OpenAI's cookbook counts them.
const PER_MESSAGE: u64 = 3;
const PER_REPLY: u64 = 3;

fn bpe(model: &str) -> &'static CoreBPE {
    tiktoken_rs::bpe_for_model(model).unwrap_or_else(|_| tiktoken_rs::o200k_base_singleton())
}

/// Loads the vocabularies now, so the first request does not pay for it.
pub(crate) fn warm_up() {
    let _ = tiktoken_rs::o200k_base_singleton().encode_ordinary("warm up");
    let _ = tiktoken_rs::cl100k_base_singleton().encode_ordinary("warm up");
}

fn count(bpe: &CoreBPE, text: &str) -> u64 {
    bpe.encode_ordinary(text).len() as u64
}

/// Text tokens of a message's `content`: a string, or an array of parts whose text counts.
fn content_tokens(bpe: &CoreBPE, content: &Value) -> u64 {
    match content {
        Value::String(s) => count(bpe, s),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("text") {
                Some(Value::String(s)) => count(bpe, s),
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// Prompt tokens of a chat request body (messages, tool definitions).
pub(crate) fn chat_prompt(model: &str, body: &Map<String, Value>) -> u64 {
    let bpe = bpe(model);
    let mut n = PER_REPLY;
    if let Some(Value::Array(messages)) = body.get("messages") {
        for m in messages {
            n += PER_MESSAGE;
            if let Some(c) = m.get("content") {
                n += content_tokens(bpe, c);
            }
            if let Some(Value::String(name)) = m.get("name") {
                n += 1 + count(bpe, name);
            }
            if let Some(Value::Array(calls)) = m.get("tool_calls") {
                for c in calls {
                    if let Some(Value::String(a)) = c.pointer("/function/arguments") {
                        n += count(bpe, a);
                    }
                    if let Some(Value::String(f)) = c.pointer("/function/name") {
                        n += count(bpe, f);
                    }
                }
            }
        }
    }
    if let Some(tools) = body.get("tools").filter(|t| !t.is_null()) {
        n += count(bpe, &tools.to_string());
    }
    n
}

/// Input tokens of an embeddings request: a string, strings, or pre-tokenised arrays.
pub(crate) fn embeddings_input(model: &str, body: &Map<String, Value>) -> u64 {
    let bpe = bpe(model);
    match body.get("input") {
        Some(Value::String(s)) => count(bpe, s),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => count(bpe, s),
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
