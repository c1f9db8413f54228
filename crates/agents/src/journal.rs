//! The journal's step kinds and their JSON, and the conversation rebuilt from a task's steps.
//! Everything here is redacted text: the runner redacts before it builds a step.

use serde_json::{Value, json};
use warden_store::StepRecord;

/// Step kinds, as stored.
pub(crate) mod kind {
    pub const TASK: &str = "task";
    pub const MODEL: &str = "model";
    pub const TOOL: &str = "tool";
    pub const ANSWER: &str = "answer";
    pub const TIMED_OUT: &str = "timed_out";
    pub const HALTED: &str = "halted";
    pub const FAILED: &str = "failed";
    pub const INTERRUPTED: &str = "interrupted";
    pub const RESET: &str = "reset";
    pub const RESUMED: &str = "resumed";
    pub const APPROVAL: &str = "approval";
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolCallRequest {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (redacted: placeholders in, model-made values out).
    pub arguments: String,
}

/// The assistant message of a model step: its text and tool calls.
pub(crate) fn tool_calls(message: &Value) -> Vec<ToolCallRequest> {
    message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some(ToolCallRequest {
                id: c.get("id")?.as_str()?.to_owned(),
                name: c.pointer("/function/name")?.as_str()?.to_owned(),
                arguments: c
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or("{}")
                    .to_owned(),
            })
        })
        .collect()
}

/// What a task's journal holds, ready to continue from.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    /// The conversation so far (without the system prompt).
    pub messages: Vec<Value>,
    /// Model steps taken.
    pub model_steps: u32,
    /// Tool calls of the last model step that have no result yet (to run on resume).
    pub pending_calls: Vec<ToolCallRequest>,
    /// The last tool calls in order, for loop detection: (name, arguments).
    pub recent_calls: Vec<(String, String)>,
    /// Journal position of the last model step (approval ids derive from it).
    pub model_seq: i64,
    /// The answer, if the task's last content step is one (journalled, maybe never released).
    pub answer: Option<String>,
}

/// Rebuilds a task's conversation from its journal steps: the task becomes the user message,
/// each model step its assistant message, each tool step its tool message. Model answers and
/// tool results are taken from the journal, never asked for again.
pub(crate) fn replay(steps: &[StepRecord]) -> Replay {
    let mut r = Replay::default();
    for s in steps {
        let data: Value = serde_json::from_str(&s.data).unwrap_or(Value::Null);
        match s.kind.as_str() {
            kind::ANSWER => {
                r.answer = data["content"].as_str().map(str::to_owned);
                continue;
            }
            kind::TASK => {
                let content = data["content"].as_str().unwrap_or_default();
                r.messages.push(json!({"role": "user", "content": content}));
            }
            kind::MODEL => {
                let message = data["message"].clone();
                r.model_steps += 1;
                r.model_seq = s.seq;
                r.pending_calls = tool_calls(&message);
                r.messages.push(message);
            }
            kind::TOOL => {
                let id = data["call_id"].as_str().unwrap_or_default().to_owned();
                r.pending_calls.retain(|c| c.id != id);
                r.recent_calls.push((
                    data["tool"].as_str().unwrap_or_default().to_owned(),
                    data["arguments"].as_str().unwrap_or_default().to_owned(),
                ));
                r.messages.push(json!({
                    "role": "tool", "tool_call_id": id,
                    "content": data["result"].as_str().unwrap_or_default(),
                }));
            }
            _ => continue,
        }
        r.answer = None;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(seq: i64, kind: &str, data: Value) -> StepRecord {
        StepRecord {
            seq,
            task_id: "t".into(),
            kind: kind.into(),
            data: data.to_string(),
            tokens: None,
            started_at: 0,
            finished_at: 0,
        }
    }

    #[test]
    fn a_journal_replays_into_the_conversation_and_its_unfinished_calls() {
        let call = |id: &str| json!({"id": id, "type": "function", "function": {"name": "sql_query", "arguments": "{\"sql\":\"SELECT 1\"}"}});
        let steps = vec![
            step(1, kind::TASK, json!({"content": "how many?"})),
            step(
                2,
                kind::MODEL,
                json!({"message": {"role": "assistant", "content": null, "tool_calls": [call("a"), call("b")]}}),
            ),
            step(
                3,
                kind::TOOL,
                json!({"call_id": "a", "tool": "sql_query", "arguments": "{\"sql\":\"SELECT 1\"}", "result": "{\"rows\":[]}"}),
            ),
        ];
        let r = replay(&steps);
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.messages[0]["role"], "user");
        assert_eq!(r.messages[2]["tool_call_id"], "a");
        assert_eq!(r.model_steps, 1);
        assert_eq!(r.pending_calls.len(), 1);
        assert_eq!(r.pending_calls[0].id, "b");
        assert_eq!(r.recent_calls.len(), 1);
    }
}
