//! The streamed text fields of a chat answer's `delta`: which there are, taking their pieces
//! out of a chunk to hold back, and putting the released text back (also into a chunk made at
//! the end of a stream).

use serde_json::{Map, Value};

/// The streamed text fields of a `delta` besides tool calls' arguments: (path, whether JSON
/// text). Each is held back on its own.
pub(super) const STREAMED: &[(&[&str], bool)] = &[
    (&["content"], false),
    (&["refusal"], false),
    (&["reasoning_content"], false),
    (&["reasoning"], false),
    (&["audio", "transcript"], false),
    (&["function_call", "arguments"], true),
];

/// Which streamed field of a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Slot {
    /// One of [`STREAMED`], by position.
    Delta(usize),
    /// The arguments of the tool call of this index.
    ToolArguments(u64),
}

impl Slot {
    pub(super) fn is_json(self) -> bool {
        match self {
            Self::Delta(i) => STREAMED.get(i).is_some_and(|(_, json)| *json),
            Self::ToolArguments(_) => true,
        }
    }
}

/// Takes the streamed fields' text out of `delta` (leaving empty strings, which the walk of
/// the rest skips): (slot, position in `tool_calls` for arguments, text).
pub(super) fn take_streamed(delta: &mut Map<String, Value>) -> Vec<(Slot, usize, String)> {
    let mut pieces = Vec::new();
    for (i, (path, _)) in STREAMED.iter().enumerate() {
        if let Some(Value::String(s)) = value_at(delta, path) {
            pieces.push((Slot::Delta(i), 0, std::mem::take(s)));
        }
    }
    if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
        for (at, call) in calls.iter_mut().enumerate() {
            let j = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            if let Some(Value::String(s)) = call.pointer_mut("/function/arguments") {
                pieces.push((Slot::ToolArguments(j), at, std::mem::take(s)));
            }
        }
    }
    pieces
}

/// Where a piece taken by [`take_streamed`] goes back.
pub(super) fn streamed_mut(
    delta: &mut Map<String, Value>,
    slot: Slot,
    at: usize,
) -> Option<&mut Value> {
    match slot {
        Slot::Delta(i) => value_at(delta, STREAMED.get(i)?.0),
        Slot::ToolArguments(_) => delta
            .get_mut("tool_calls")?
            .get_mut(at)?
            .pointer_mut("/function/arguments"),
    }
}

/// The value at `path` (object keys) in `map`, if there is one.
fn value_at<'m>(map: &'m mut Map<String, Value>, path: &[&str]) -> Option<&'m mut Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(map.get_mut(*first)?, |v, k| v.get_mut(*k))
}

/// The value at `path` in `map`, made (as objects, and an empty string) where missing.
pub(super) fn entry_at<'m>(
    map: &'m mut Map<String, Value>,
    path: &[&str],
) -> Option<&'m mut Value> {
    let (first, rest) = path.split_first()?;
    let v = map
        .entry(*first)
        .or_insert_with(|| Value::String(String::new()));
    if rest.is_empty() {
        return Some(v);
    }
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    entry_at(v.as_object_mut()?, rest)
}

/// Appends `rest` to the arguments of the tool call of index `j` in `delta`.
pub(super) fn append_tool_arguments(delta: &mut Map<String, Value>, j: u64, rest: &str) {
    let calls = delta
        .entry("tool_calls")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(calls) = calls else { return };
    let pos = calls
        .iter()
        .position(|c| c.get("index").and_then(Value::as_u64) == Some(j));
    match pos {
        Some(p) => {
            let f = calls[p].as_object_mut().map(|o| {
                o.entry("function")
                    .or_insert_with(|| Value::Object(Map::new()))
            });
            if let Some(Value::Object(f)) = f {
                append(
                    f.entry("arguments").or_insert(Value::String(String::new())),
                    rest,
                );
            }
        }
        None => calls.push(serde_json::json!({"index": j, "function": {"arguments": rest}})),
    }
}

/// Appends `rest` to a string value (replacing anything else).
pub(super) fn append(v: &mut Value, rest: &str) {
    match v {
        Value::String(s) => s.push_str(rest),
        other => *other = Value::String(rest.to_owned()),
    }
}
