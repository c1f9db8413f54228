//! Rebuilds a whole `chat.completion` from its streamed chunks, so a streamed answer can be
//! cached and served again (to streaming requests as a replay, to plain ones whole). Content,
//! refusals and tool calls (id, name, and arguments concatenated by index) are joined per
//! choice; `finish_reason` and the usage chunk are kept.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

#[derive(Default)]
struct Choice {
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    tool_calls: BTreeMap<u64, ToolCall>,
    finish_reason: Value,
}

#[derive(Default)]
struct ToolCall {
    id: Option<String>,
    kind: Option<String>,
    name: String,
    arguments: String,
}

/// Collects chunks; [`Assembler::finish`] returns the completion.
#[derive(Default)]
pub(crate) struct Assembler {
    head: Map<String, Value>,
    choices: BTreeMap<u64, Choice>,
    usage: Option<Value>,
    broken: bool,
}

fn append(slot: &mut Option<String>, piece: &str) {
    slot.get_or_insert_with(String::new).push_str(piece);
}

impl Assembler {
    /// Adds one event's data (a chunk as the provider sent it).
    pub(crate) fn push(&mut self, data: &[u8]) {
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(data) else {
            self.broken = true;
            return;
        };
        for f in crate::cache::HEAD_FIELDS {
            if let Some(v) = chunk.get(f).filter(|v| !v.is_null()) {
                self.head.entry(f).or_insert_with(|| v.clone());
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let Some(Value::Array(choices)) = chunk.get("choices") else {
            return;
        };
        for (i, c) in choices.iter().enumerate() {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
            let choice = self.choices.entry(index).or_default();
            if let Some(f) = c.get("finish_reason").filter(|f| !f.is_null()) {
                choice.finish_reason = f.clone();
            }
            let Some(delta) = c.get("delta") else {
                continue;
            };
            if let Some(r) = delta.get("role").and_then(Value::as_str) {
                choice.role = Some(r.to_owned());
            }
            if let Some(t) = delta.get("content").and_then(Value::as_str) {
                append(&mut choice.content, t);
            }
            if let Some(t) = delta.get("refusal").and_then(Value::as_str) {
                append(&mut choice.refusal, t);
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let j = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                let tc = choice.tool_calls.entry(j).or_default();
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    tc.id = Some(id.to_owned());
                }
                if let Some(k) = call.get("type").and_then(Value::as_str) {
                    tc.kind = Some(k.to_owned());
                }
                if let Some(n) = call.pointer("/function/name").and_then(Value::as_str) {
                    tc.name.push_str(n);
                }
                if let Some(a) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    tc.arguments.push_str(a);
                }
            }
        }
    }

    /// The whole answer as a `chat.completion` body; `None` if a chunk could not be read or
    /// no choice finished.
    pub(crate) fn finish(self) -> Option<Vec<u8>> {
        if self.broken
            || self.choices.is_empty()
            || self.choices.values().any(|c| c.finish_reason.is_null())
        {
            return None;
        }
        let mut out = self.head;
        out.insert("object".into(), "chat.completion".into());
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .map(|(index, c)| {
                let mut message = Map::new();
                message.insert(
                    "role".into(),
                    c.role.unwrap_or_else(|| "assistant".into()).into(),
                );
                message.insert("content".into(), c.content.map_or(Value::Null, Value::from));
                if let Some(r) = c.refusal {
                    message.insert("refusal".into(), r.into());
                }
                if !c.tool_calls.is_empty() {
                    let calls: Vec<Value> = c
                        .tool_calls
                        .into_values()
                        .map(|t| {
                            json!({"id": t.id, "type": t.kind.unwrap_or_else(|| "function".into()),
                                   "function": {"name": t.name, "arguments": t.arguments}})
                        })
                        .collect();
                    message.insert("tool_calls".into(), calls.into());
                }
                json!({"index": index, "message": message, "logprobs": null,
                       "finish_reason": c.finish_reason})
            })
            .collect();
        out.insert("choices".into(), choices.into());
        if let Some(u) = self.usage {
            out.insert("usage".into(), u);
        }
        serde_json::to_vec(&Value::Object(out)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_content_and_tool_calls_and_round_trips_through_the_replay() {
        let mut a = Assembler::default();
        for chunk in [
            r#"{"id":"c","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        ] {
            a.push(chunk.as_bytes());
        }
        let body = a.finish().unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "Hello");
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["total_tokens"], 7);
        // Replayed, it is the same stream again.
        let sse = crate::cache::replay_as_sse(&body, true).unwrap();
        let mut again = Assembler::default();
        for e in std::str::from_utf8(&sse).unwrap().split("\n\n") {
            if let Some(d) = e.strip_prefix("data: ")
                && d != "[DONE]"
            {
                again.push(d.as_bytes());
            }
        }
        assert_eq!(
            serde_json::from_slice::<Value>(&again.finish().unwrap()).unwrap()["choices"],
            v["choices"]
        );
    }

    #[test]
    fn an_unfinished_or_unreadable_stream_gives_nothing() {
        let mut a = Assembler::default();
        a.push(br#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#);
        assert!(a.finish().is_none());
        let mut b = Assembler::default();
        b.push(b"not json");
        assert!(b.finish().is_none());
    }
}
