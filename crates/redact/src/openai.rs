//! Redaction over the OpenAI wire shapes: which request fields carry content (message text in
//! string and array-of-parts form, names, tool results, tool-call arguments, embeddings input),
//! and the answer's fields to scan and restore (message content and tool-call arguments, whole
//! or streamed).

use crate::cost::{Cost, DEFAULT_MAX_COST, TooComplex};
use crate::policy::Policy;
use crate::session::{Direction, Session};
use crate::stream::StreamText;
use crate::{Detector, Redacted};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Redaction settings, built once from configuration.
pub struct Redactor {
    detector: Arc<Detector>,
    global: Arc<Policy>,
    per_key: HashMap<String, Arc<Policy>>,
    restore: bool,
    scan_output: bool,
    max_cost: Option<u64>,
}

/// The request carried data whose policy is `block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// Entity type names, sorted; never the values.
    pub types: Vec<String>,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request contains data that policy forbids sending to a model provider: {}",
            self.types.join(", ")
        )
    }
}

impl std::error::Error for Blocked {}

/// Why a request (or a free text) was not redacted, so must not be sent anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It carries data whose policy is `block`.
    Blocked(Blocked),
    /// Redacting it would cost more than the bound (`redaction.max_cost`).
    TooComplex(TooComplex),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Blocked(b) => b.fmt(f),
            Self::TooComplex(t) => t.fmt(f),
        }
    }
}

impl std::error::Error for Refusal {}

impl Redactor {
    /// Builds the redactor. `per_key` maps virtual-key names to their own policies.
    pub fn new(
        detector: Detector,
        global: Policy,
        per_key: HashMap<String, Policy>,
        restore: bool,
        scan_output: bool,
    ) -> Self {
        Self {
            detector: Arc::new(detector),
            global: Arc::new(global),
            per_key: per_key.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            restore,
            scan_output,
            max_cost: Some(DEFAULT_MAX_COST),
        }
    }

    /// Bounds the work of redacting one request (a body, or one free text) to `max_cost`
    /// units (see [`Cost`]); `None` takes the bound off. The default is [`DEFAULT_MAX_COST`].
    pub fn with_max_cost(mut self, max_cost: Option<u64>) -> Self {
        self.max_cost = max_cost;
        self
    }

    /// The detectors.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Starts one request's redaction, with the policy of the key named `key_name`.
    pub fn exchange(&self, key_name: &str) -> Exchange {
        let policy = self.per_key.get(key_name).unwrap_or(&self.global).clone();
        Exchange {
            scan_output: self.scan_output && !policy.allows_everything(),
            detector: self.detector.clone(),
            policy,
            restore: self.restore,
            session: Session::default(),
            fields: BTreeMap::new(),
            max_cost: self.max_cost,
            cost: Cost::new(self.max_cost),
            too_complex: None,
        }
    }
}

/// Which streamed field: (choice index, None for content or Some(tool call index)).
type FieldId = (u64, Option<u64>);

/// One request and its answer.
pub struct Exchange {
    detector: Arc<Detector>,
    policy: Arc<Policy>,
    restore: bool,
    scan_output: bool,
    session: Session,
    fields: BTreeMap<FieldId, StreamText>,
    /// The bound of one request's (or one free text's) redaction.
    max_cost: Option<u64>,
    /// The work of the request being redacted.
    cost: Cost,
    /// Set when that work passed the bound: the rest is not looked at, the request refused.
    too_complex: Option<TooComplex>,
}

impl Exchange {
    /// Redacts a chat completions body.
    pub fn chat_request(
        &mut self,
        mut body: Map<String, Value>,
    ) -> Result<Redacted<Map<String, Value>>, Refusal> {
        self.start_request();
        // First pass: reserve placeholder-shaped text the client wrote anywhere in the body.
        if let Some(messages) = body.get("messages") {
            self.reserve_all(messages);
        }
        if let Some(Value::Array(messages)) = body.get_mut("messages") {
            for m in messages.iter_mut().filter_map(Value::as_object_mut) {
                match m.get_mut("content") {
                    Some(v @ Value::String(_)) => self.mask(v),
                    Some(Value::Array(parts)) => {
                        for part in parts.iter_mut().filter_map(Value::as_object_mut) {
                            if let Some(t) = part.get_mut("text") {
                                self.mask(t);
                            }
                        }
                    }
                    _ => {}
                }
                if let Some(name) = m.get_mut("name") {
                    self.mask(name);
                }
                if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
                    for call in calls {
                        if let Some(args) = call.pointer_mut("/function/arguments") {
                            self.mask(args);
                        }
                    }
                }
                if let Some(args) = m
                    .get_mut("function_call")
                    .and_then(|f| f.get_mut("arguments"))
                {
                    self.mask(args);
                }
            }
        }
        self.finish_request(body)
    }

    /// Redacts an embeddings body (`input`: a string or an array of strings).
    pub fn embeddings_request(
        &mut self,
        mut body: Map<String, Value>,
    ) -> Result<Redacted<Map<String, Value>>, Refusal> {
        self.start_request();
        if let Some(input) = body.get("input") {
            self.reserve_all(input);
        }
        match body.get_mut("input") {
            Some(v @ Value::String(_)) => self.mask(v),
            Some(Value::Array(items)) => items.iter_mut().for_each(|v| self.mask(v)),
            _ => {}
        }
        self.finish_request(body)
    }

    /// A fresh count for the request about to be redacted.
    fn start_request(&mut self) {
        self.cost = Cost::new(self.max_cost);
        self.too_complex = None;
    }

    fn finish_request(
        &mut self,
        body: Map<String, Value>,
    ) -> Result<Redacted<Map<String, Value>>, Refusal> {
        if let Some(too_complex) = self.too_complex.take() {
            return Err(Refusal::TooComplex(too_complex));
        }
        if self.session.blocked.is_empty() {
            Ok(Redacted::new(body))
        } else {
            Err(Refusal::Blocked(Blocked {
                types: self
                    .session
                    .blocked
                    .iter()
                    .map(|e| e.name().to_owned())
                    .collect(),
            }))
        }
    }

    /// Reserves placeholder-shaped tokens in every string under `v`.
    fn reserve_all(&mut self, v: &Value) {
        if self.too_complex.is_some() {
            return;
        }
        match v {
            Value::String(s) if s.contains('<') => {
                if let Err(e) = self.session.reserve_literals_within(s, &mut self.cost) {
                    self.too_complex = Some(e);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.reserve_all(i)),
            Value::Object(map) => map.values().for_each(|i| self.reserve_all(i)),
            _ => {}
        }
    }

    fn mask(&mut self, v: &mut Value) {
        if self.too_complex.is_some() {
            return;
        }
        if let Value::String(s) = v {
            let masked = self.session.mask_within(
                &self.detector,
                &self.policy,
                s,
                Direction::Request,
                &mut self.cost,
            );
            match masked {
                Ok(std::borrow::Cow::Owned(masked)) => *s = masked,
                Ok(std::borrow::Cow::Borrowed(_)) => {}
                Err(e) => self.too_complex = Some(e),
            }
        }
    }

    /// Units the last request (or free text) cost to redact.
    pub fn request_cost(&self) -> u64 {
        self.cost.spent()
    }

    /// Masks one free text (an agent's task, a tool's result) in this exchange's session, so
    /// placeholders stay numbered across everything the exchange has seen. A type whose
    /// policy is `block` refuses the text, as does a text whose redaction would cost more
    /// than the bound (each text has the bound of a request).
    pub fn redact_text(&mut self, text: &str) -> Result<Redacted<String>, Refusal> {
        let before = self.session.blocked.clone();
        self.start_request();
        let cost = &mut self.cost;
        self.session
            .reserve_literals_within(text, cost)
            .map_err(Refusal::TooComplex)?;
        let masked = self
            .session
            .mask_within(&self.detector, &self.policy, text, Direction::Request, cost)
            .map_err(Refusal::TooComplex)?
            .into_owned();
        let new: Vec<String> = self
            .session
            .blocked
            .difference(&before)
            .map(|e| e.name().to_owned())
            .collect();
        if new.is_empty() {
            Ok(Redacted::new(masked))
        } else {
            Err(Refusal::Blocked(Blocked { types: new }))
        }
    }

    /// Puts this exchange's own values back into `text` (an agent's answer to its user);
    /// unchanged when restoring is off.
    pub fn restore_text(&self, text: &str) -> String {
        if self.restore {
            self.session.restore(text, false).into_owned()
        } else {
            text.to_owned()
        }
    }

    /// Like [`Self::restore_text`] for JSON text (tool-call arguments): restored values are
    /// JSON-escaped, so the JSON stays valid.
    pub fn restore_json_text(&self, text: &str) -> String {
        if self.restore {
            self.session.restore(text, true).into_owned()
        } else {
            text.to_owned()
        }
    }

    /// Findings by type name, request and answer together.
    pub fn totals(&self) -> BTreeMap<String, u32> {
        let mut all: BTreeMap<String, u32> = BTreeMap::new();
        for (e, n) in self
            .session
            .request_counts
            .iter()
            .chain(&self.session.response_counts)
        {
            *all.entry(e.name().to_owned()).or_default() += n;
        }
        all
    }

    /// `CREDIT_CARD=1,EMAIL=2` for the `x-warden-redactions` header, or `None` if nothing.
    pub fn summary(&self) -> Option<String> {
        format_counts(&self.totals())
    }

    /// Counts by type found in the request, and in the answer.
    pub fn counts(&self) -> (&BTreeMap<crate::Entity, u32>, &BTreeMap<crate::Entity, u32>) {
        (&self.session.request_counts, &self.session.response_counts)
    }

    /// Whether the answer needs to be looked at at all.
    pub fn touches_answers(&self) -> bool {
        self.scan_output || (self.restore && self.session.has_placeholders())
    }

    fn answer_text(&mut self, text: &str, json: bool, pass: AnswerPass) -> Option<String> {
        let masked = if self.scan_output && pass != AnswerPass::RestoreOnly {
            self.session
                .mask(&self.detector, &self.policy, text, Direction::Response)
        } else {
            std::borrow::Cow::Borrowed(text)
        };
        let restored = if self.restore && pass != AnswerPass::MaskOnly {
            self.session.restore(&masked, json)
        } else {
            std::borrow::Cow::Borrowed(masked.as_ref())
        };
        (restored.as_ref() != text).then(|| restored.into_owned())
    }

    /// A whole chat answer: values the model produced are masked, placeholders restored, in
    /// message content and tool-call arguments. `None` when nothing changed (forward as is).
    pub fn chat_answer(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        self.chat_answer_pass(body, AnswerPass::Both)
    }

    /// The first half of [`Self::chat_answer`]: values the model produced are masked, the
    /// request's placeholders stay. What a response cache may keep.
    pub fn mask_chat_answer(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        self.chat_answer_pass(body, AnswerPass::MaskOnly)
    }

    /// The second half of [`Self::chat_answer`]: the request's placeholders are restored
    /// (for an answer already masked, e.g. one served from a cache).
    pub fn restore_chat_answer(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        self.chat_answer_pass(body, AnswerPass::RestoreOnly)
    }

    fn chat_answer_pass(&mut self, body: &[u8], pass: AnswerPass) -> Option<Vec<u8>> {
        let needed = match pass {
            AnswerPass::Both => self.touches_answers(),
            AnswerPass::MaskOnly => self.scan_output,
            AnswerPass::RestoreOnly => self.restore && self.session.has_placeholders(),
        };
        if !needed {
            return None;
        }
        let mut v: Value = serde_json::from_slice(body).ok()?;
        let mut changed = false;
        if let Some(Value::Array(choices)) = v.get_mut("choices") {
            for c in choices.iter_mut() {
                let Some(message) = c.get_mut("message") else {
                    continue;
                };
                if let Some(Value::String(s)) = message.get_mut("content")
                    && let Some(new) = self.answer_text(s, false, pass)
                {
                    *s = new;
                    changed = true;
                }
                if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
                    for call in calls {
                        if let Some(Value::String(s)) = call.pointer_mut("/function/arguments")
                            && let Some(new) = self.answer_text(s, true, pass)
                        {
                            *s = new;
                            changed = true;
                        }
                    }
                }
            }
        }
        changed.then(|| serde_json::to_vec(&v).unwrap_or_else(|_| body.to_vec()))
    }

    /// One streamed chunk (an SSE event's data). Returns the data to send instead, or `None`
    /// to send it unchanged. Text that might be part of a placeholder or a finding is held
    /// back and released with a later chunk, at the latest with the choice's `finish_reason`.
    pub fn chat_chunk(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if !self.touches_answers() {
            return None;
        }
        let mut v: Value = serde_json::from_slice(data).ok()?;
        let mut changed = false;
        let Some(Value::Array(choices)) = v.get_mut("choices") else {
            return None;
        };
        for c in choices.iter_mut() {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let finished = c.get("finish_reason").is_some_and(|f| !f.is_null());
            let Some(delta) = c.get_mut("delta").and_then(Value::as_object_mut) else {
                continue;
            };
            if let Some(Value::String(s)) = delta.get_mut("content") {
                let out = self.push_field((index, None), s);
                changed |= out != *s;
                *s = out;
            }
            if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                for call in calls.iter_mut() {
                    let j = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                    if let Some(Value::String(s)) = call.pointer_mut("/function/arguments") {
                        let out = self.push_field((index, Some(j)), s);
                        changed |= out != *s;
                        *s = out;
                    }
                }
            }
            if finished {
                changed |= self.flush_choice(index, delta);
            }
        }
        changed.then(|| serde_json::to_vec(&v).unwrap_or_else(|_| data.to_vec()))
    }

    /// At the end of the stream: a chunk carrying whatever is still held (a stream that ended
    /// without `finish_reason`), or `None`.
    pub fn chat_stream_end(&mut self) -> Option<Vec<u8>> {
        let indexes: Vec<u64> = self
            .fields
            .iter()
            .filter(|(_, f)| f.is_holding())
            .map(|((i, _), _)| *i)
            .collect();
        if indexes.is_empty() {
            return None;
        }
        let mut choices = Vec::new();
        for i in indexes
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
        {
            let mut delta = Map::new();
            self.flush_choice(i, &mut delta);
            choices.push(serde_json::json!({"index": i, "delta": delta, "finish_reason": null}));
        }
        let chunk = serde_json::json!({"object": "chat.completion.chunk", "choices": choices});
        serde_json::to_vec(&chunk).ok()
    }

    fn push_field(&mut self, id: FieldId, piece: &str) -> String {
        let field = self
            .fields
            .entry(id)
            .or_insert_with(|| StreamText::new(id.1.is_some()));
        field.push(
            &mut self.session,
            &self.detector,
            &self.policy,
            self.scan_output,
            piece,
        )
    }

    /// Appends everything held for choice `index` to `delta`; true if anything was.
    fn flush_choice(&mut self, index: u64, delta: &mut Map<String, Value>) -> bool {
        let mut changed = false;
        let ids: Vec<FieldId> = self
            .fields
            .keys()
            .filter(|(i, _)| *i == index)
            .copied()
            .collect();
        for id in ids {
            let Some(field) = self.fields.get_mut(&id) else {
                continue;
            };
            let rest = field.finish(
                &mut self.session,
                &self.detector,
                &self.policy,
                self.scan_output,
            );
            if rest.is_empty() {
                continue;
            }
            changed = true;
            match id.1 {
                None => append(
                    delta
                        .entry("content")
                        .or_insert(Value::String(String::new())),
                    &rest,
                ),
                Some(j) => {
                    let calls = delta
                        .entry("tool_calls")
                        .or_insert_with(|| Value::Array(Vec::new()));
                    let Value::Array(calls) = calls else { continue };
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
                                    &rest,
                                );
                            }
                        }
                        None => calls
                            .push(serde_json::json!({"index": j, "function": {"arguments": rest}})),
                    }
                }
            }
        }
        changed
    }
}

/// Counts by type as `CREDIT_CARD=1,EMAIL=2` (the `x-warden-redactions` header), or `None`.
pub fn format_counts(counts: &BTreeMap<String, u32>) -> Option<String> {
    (!counts.is_empty()).then(|| {
        counts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn append(v: &mut Value, rest: &str) {
    match v {
        Value::String(s) => s.push_str(rest),
        other => *other = Value::String(rest.to_owned()),
    }
}

/// Which half of the answer pass to run: both (the normal path), or one half (the cache
/// keeps masked answers and restores them per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerPass {
    Both,
    MaskOnly,
    RestoreOnly,
}
