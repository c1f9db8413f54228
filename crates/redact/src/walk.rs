//! The walk over a whole JSON body: every text a provider receives, at any depth, is handed to
//! a [`Visit`] (which reserves, masks, or masks and restores it), known field or not.
//!
//! What the walk hands over: every string value, every object key (a key of a free-form map
//! such as `metadata`, a tool's parameter `properties` or `logit_bias` is content too), and
//! the decoded payload of every textual `data:` URL (see `walk/data_url.rs`). Numbers, booleans
//! and nulls carry no text and are left alone (token ids in embeddings input stay numbers).
//!
//! What it skips, by two explicit lists and nothing else (an unknown field, part type or shape
//! is walked entirely):
//! - the routing fields of a [`Shape`] (top-level `model`): Warden reads them before redaction
//!   and replaces them with the route's own values before sending (`set_routing_field`), so the
//!   client's text never reaches a provider;
//! - texts that are exactly one of [`WORDS`], the protocol's own vocabulary (field names, roles,
//!   part types, enum values such as `auto` or `json_schema`): a skipped text is then always
//!   one of Warden's constants, so nothing a client wrote passes unseen because of where it
//!   sits; an unexpected value in an enum field (`"role": "jane@example.com"`) is scanned.
//!
//! Binary media (a `data:` URL or a raw base64 field whose bytes are not text) cannot be seen
//! by a text detector: its payload is passed as it is, its header is scanned. Its
//! bytes are looked at first: a payload that decodes to text is scanned as text.

mod data_url;

use serde_json::{Map, Value};

/// Cost of looking at one JSON value or key (the texts themselves are charged by the visitor).
const PER_NODE: u64 = 1;

/// How a text is to be treated.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ctx {
    /// The text is JSON (tool-call arguments): values restored into it must be JSON-escaped.
    pub json: bool,
}

/// What is done with each text of a body.
pub(crate) trait Visit {
    /// Looks at one text; returns its replacement if it changed.
    fn text(&mut self, text: &str, ctx: Ctx) -> Option<String>;
    /// Charges work the walk did besides handing over texts (looking at values, decoding).
    fn charge(&mut self, units: u64);
}

/// What the walk needs to know about one kind of body.
#[derive(Debug)]
pub(crate) struct Shape {
    /// Top-level fields Warden reads and replaces itself before sending: never scanned.
    pub routing: &'static [&'static str],
    /// `(parent key, key)` pairs whose string value is raw base64 media (no `data:` prefix).
    pub base64: &'static [(&'static str, &'static str)],
    /// Keys whose string value is JSON text.
    pub json_text: &'static [&'static str],
}

/// A chat completions request body.
pub(crate) const CHAT_REQUEST: Shape = Shape {
    routing: &["model"],
    base64: &[("input_audio", "data"), ("file", "file_data")],
    json_text: &["arguments"],
};

/// An embeddings request body.
pub(crate) const EMBEDDINGS_REQUEST: Shape = Shape {
    routing: &["model"],
    base64: &[],
    json_text: &[],
};

/// A chat answer's `message`, or a streamed chunk's `delta`.
pub(crate) const CHAT_ANSWER: Shape = Shape {
    routing: &[],
    base64: &[("audio", "data")],
    json_text: &["arguments"],
};

/// The protocol's own words, sorted (a test checks it): field names of the OpenAI shapes, JSON
/// Schema keywords, roles, part types and enum values. A text exactly equal to one is skipped.
pub(crate) const WORDS: &[&str] = &[
    "$defs",
    "$ref",
    "$schema",
    "aac",
    "additionalProperties",
    "allOf",
    "alloy",
    "anyOf",
    "approximate",
    "arguments",
    "array",
    "ash",
    "assistant",
    "audio",
    "auto",
    "ballad",
    "base64",
    "boolean",
    "const",
    "content",
    "content_filter",
    "coral",
    "data",
    "default",
    "definitions",
    "description",
    "detail",
    "developer",
    "dimensions",
    "echo",
    "encoding_format",
    "enum",
    "examples",
    "fable",
    "file",
    "file_data",
    "file_id",
    "filename",
    "flac",
    "flex",
    "float",
    "format",
    "frequency_penalty",
    "function",
    "function_call",
    "high",
    "id",
    "image_url",
    "include_usage",
    "input",
    "input_audio",
    "integer",
    "items",
    "json_object",
    "json_schema",
    "length",
    "logit_bias",
    "logprobs",
    "low",
    "maxItems",
    "maxLength",
    "max_completion_tokens",
    "max_tokens",
    "maximum",
    "medium",
    "messages",
    "metadata",
    "minItems",
    "minLength",
    "minimal",
    "minimum",
    "modalities",
    "model",
    "mp3",
    "n",
    "name",
    "none",
    "not",
    "nova",
    "null",
    "nullable",
    "number",
    "object",
    "oneOf",
    "onyx",
    "opus",
    "parallel_tool_calls",
    "parameters",
    "pattern",
    "pcm16",
    "prediction",
    "presence_penalty",
    "priority",
    "properties",
    "reasoning_effort",
    "refusal",
    "required",
    "response_format",
    "role",
    "sage",
    "scale",
    "schema",
    "search_context_size",
    "seed",
    "service_tier",
    "shimmer",
    "stop",
    "store",
    "stream",
    "stream_options",
    "strict",
    "string",
    "system",
    "temperature",
    "text",
    "title",
    "tool",
    "tool_call_id",
    "tool_calls",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "type",
    "url",
    "user",
    "user_location",
    "verbosity",
    "verse",
    "voice",
    "wav",
    "web_search_options",
];

/// Walks a whole body; its top-level routing fields are skipped.
pub(crate) fn body(body: &mut Map<String, Value>, shape: &Shape, visit: &mut dyn Visit) {
    walk_map(body, "", shape.routing, shape, visit);
}

/// Walks an object inside a body (an answer's `message`, a chunk's `delta`).
pub(crate) fn map(map: &mut Map<String, Value>, shape: &Shape, visit: &mut dyn Visit) {
    walk_map(map, "", &[], shape, visit);
}

/// Whether `text` is one of the protocol's own words.
pub(crate) fn is_word(text: &str) -> bool {
    WORDS.binary_search(&text).is_ok()
}

/// `key` is the key `value` sits under (an array's items sit under the array's key), `parent`
/// the key of the object holding it.
fn walk_value(value: &mut Value, parent: &str, key: &str, shape: &Shape, visit: &mut dyn Visit) {
    visit.charge(PER_NODE);
    match value {
        Value::String(s) => {
            if let Some(new) = string(s, parent, key, shape, visit) {
                *s = new;
            }
        }
        Value::Array(items) => {
            for item in items {
                walk_value(item, parent, key, shape, visit);
            }
        }
        Value::Object(map) => walk_map(map, key, &[], shape, visit),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Each key, then its value, in order; keys that changed are renamed (the order is kept).
fn walk_map(
    map: &mut Map<String, Value>,
    own_key: &str,
    skip: &[&str],
    shape: &Shape,
    visit: &mut dyn Visit,
) {
    let mut renamed: Vec<(String, String)> = Vec::new();
    for (k, v) in map.iter_mut() {
        if skip.contains(&k.as_str()) {
            continue;
        }
        visit.charge(PER_NODE);
        if let Some(new) = key_text(k, visit) {
            renamed.push((k.clone(), new));
        }
        walk_value(v, own_key, k, shape, visit);
    }
    if !renamed.is_empty() {
        rename(map, &renamed);
    }
}

/// Rebuilds `map` with the keys `renamed` lists replaced, in the same order.
fn rename(map: &mut Map<String, Value>, renamed: &[(String, String)]) {
    let old = std::mem::take(map);
    for (k, v) in old {
        let k = match renamed.iter().find(|(from, _)| *from == k) {
            Some((_, to)) => to.clone(),
            None => k,
        };
        map.insert(k, v);
    }
}

fn string(
    s: &str,
    parent: &str,
    key: &str,
    shape: &Shape,
    visit: &mut dyn Visit,
) -> Option<String> {
    if let Some(url) = data_url::DataUrl::parse(s) {
        return url.rewrite(visit);
    }
    if shape.base64.contains(&(parent, key)) {
        return data_url::raw_base64(s, visit);
    }
    let ctx = Ctx {
        json: shape.json_text.contains(&key),
    };
    text(s, ctx, visit)
}

/// A key: text, or a `data:` URL like any string (a key is never JSON text nor raw base64).
fn key_text(k: &str, visit: &mut dyn Visit) -> Option<String> {
    match data_url::DataUrl::parse(k) {
        Some(url) => url.rewrite(visit),
        None => text(k, Ctx::default(), visit),
    }
}

/// Hands `s` to the visitor unless it is empty or a protocol word.
fn text(s: &str, ctx: Ctx, visit: &mut dyn Visit) -> Option<String> {
    if s.is_empty() || is_word(s) {
        return None;
    }
    visit.text(s, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_words_are_sorted_and_hold_no_data() {
        assert!(WORDS.windows(2).all(|w| w[0] < w[1]), "sort WORDS");
        let detector = crate::Detector::new(&[]).expect("built-in detectors");
        for w in WORDS {
            assert!(detector.find(w).is_empty(), "{w}");
        }
    }
}
