//! Redaction over the OpenAI wire shapes. A request is walked whole (`walk.rs`): every string
//! and key at any depth is reserved, then masked, except the routing field `model` and the
//! protocol's own words. An answer's `message` is walked whole too (masked and restored); a
//! stream's `delta` has its streamed text fields (content, refusal, reasoning, audio
//! transcript, tool-call arguments) each held back on its own, and its other strings handled
//! whole.

use crate::cost::{Cost, DEFAULT_MAX_COST, TooComplex};
use crate::policy::Policy;
use crate::session::{Direction, Session};
use crate::stream::StreamText;
use crate::walk;
use crate::{Detector, Redacted};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use streamed::{
    STREAMED, Slot, append, append_tool_arguments, entry_at, streamed_mut, take_streamed,
};

mod streamed;

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

/// Which streamed field: (choice index, which field of its delta).
type FieldId = (u64, Slot);

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
    /// Redacts a chat completions body: every string and key at any depth (see `walk.rs`
    /// for what is skipped: the routing field `model` and the protocol's own words).
    pub fn chat_request(
        &mut self,
        body: Map<String, Value>,
    ) -> Result<Redacted<Map<String, Value>>, Refusal> {
        self.request(body, &walk::CHAT_REQUEST)
    }

    /// Redacts an embeddings body (`input`: strings, arrays of them, or token ids, which are
    /// numbers and stay), like [`Self::chat_request`].
    pub fn embeddings_request(
        &mut self,
        body: Map<String, Value>,
    ) -> Result<Redacted<Map<String, Value>>, Refusal> {
        self.request(body, &walk::EMBEDDINGS_REQUEST)
    }

    /// Two walks over the whole body: the first reserves placeholder-shaped text the client
    /// wrote anywhere, the second masks; both see exactly the same texts.
    fn request(
        &mut self,
        mut body: Map<String, Value>,
        shape: &walk::Shape,
    ) -> Result<Redacted<Map<String, Value>>, Refusal> {
        self.start_request();
        walk::body(&mut body, shape, &mut Reserve(self));
        walk::body(&mut body, shape, &mut Mask(self));
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

    /// Charges `units` to the request; past the bound, the rest is not looked at.
    fn charge(&mut self, units: u64) {
        if self.too_complex.is_none()
            && let Err(e) = self.cost.charge(units)
        {
            self.too_complex = Some(e);
        }
    }

    /// Reserves placeholder-shaped tokens in one text of the request.
    fn reserve(&mut self, text: &str) {
        if self.too_complex.is_some() || !text.contains('<') {
            return;
        }
        if let Err(e) = self.session.reserve_literals_within(text, &mut self.cost) {
            self.too_complex = Some(e);
        }
    }

    /// Masks one text of the request; `None` when it is unchanged (or the bound was passed).
    fn mask(&mut self, text: &str) -> Option<String> {
        if self.too_complex.is_some() {
            return None;
        }
        let masked = self.session.mask_within(
            &self.detector,
            &self.policy,
            text,
            Direction::Request,
            &mut self.cost,
        );
        match masked {
            Ok(std::borrow::Cow::Owned(masked)) => Some(masked),
            Ok(std::borrow::Cow::Borrowed(_)) => None,
            Err(e) => {
                self.too_complex = Some(e);
                None
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
    /// every string of each choice's `message` (content, refusal, reasoning, tool-call and
    /// function-call arguments, audio transcript…). `None` when nothing changed (forward as is).
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
        let mut answer = Answer {
            exchange: self,
            pass,
            changed: false,
        };
        if let Some(Value::Array(choices)) = v.get_mut("choices") {
            for c in choices.iter_mut() {
                if let Some(Value::Object(message)) = c.get_mut("message") {
                    walk::map(message, &walk::CHAT_ANSWER, &mut answer);
                }
            }
        }
        answer
            .changed
            .then(|| serde_json::to_vec(&v).unwrap_or_else(|_| body.to_vec()))
    }

    /// One streamed chunk (an SSE event's data). Returns the data to send instead, or `None`
    /// to send it unchanged. The streamed text fields of each choice's `delta` (content,
    /// refusal, reasoning, reasoning_content, audio transcript, each tool call's arguments) are each held back on their own: text that might be
    /// part of a placeholder or a finding is released with a later chunk, at the latest with
    /// the choice's `finish_reason`. Every other string of the delta (a tool call's name, an
    /// annotation) arrives whole and is masked and restored whole.
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
            changed |= self.stream_delta(index, delta);
            if finished {
                changed |= self.flush_choice(index, delta);
            }
        }
        changed.then(|| serde_json::to_vec(&v).unwrap_or_else(|_| data.to_vec()))
    }

    /// One choice's delta: the streamed fields through their hold-back, the rest whole.
    fn stream_delta(&mut self, index: u64, delta: &mut Map<String, Value>) -> bool {
        let pieces = take_streamed(delta);
        let mut answer = Answer {
            exchange: self,
            pass: AnswerPass::Both,
            changed: false,
        };
        walk::map(delta, &walk::CHAT_ANSWER, &mut answer);
        let mut changed = answer.changed;
        for (slot, at, piece) in pieces {
            let out = self.push_field((index, slot), &piece);
            changed |= out != piece;
            if let Some(v) = streamed_mut(delta, slot, at) {
                *v = Value::String(out);
            }
        }
        changed
    }

    /// At the end of the stream: a chunk carrying whatever is still held (a stream that ended
    /// without `finish_reason`), or `None`.
    pub fn chat_stream_end(&mut self) -> Option<Vec<u8>> {
        let indexes: std::collections::BTreeSet<u64> = self
            .fields
            .iter()
            .filter(|(_, f)| f.is_holding())
            .map(|((i, _), _)| *i)
            .collect();
        if indexes.is_empty() {
            return None;
        }
        let mut choices = Vec::new();
        for i in indexes {
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
            .or_insert_with(|| StreamText::new(id.1.is_json()));
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
                Slot::Delta(i) => {
                    if let Some(v) = STREAMED.get(i).and_then(|(path, _)| entry_at(delta, path)) {
                        append(v, &rest);
                    }
                }
                Slot::ToolArguments(j) => append_tool_arguments(delta, j, &rest),
            }
        }
        changed
    }
}

/// The request walks' visitor: reserves placeholder-shaped text.
struct Reserve<'x>(&'x mut Exchange);

impl walk::Visit for Reserve<'_> {
    fn text(&mut self, text: &str, _: walk::Ctx) -> Option<String> {
        self.0.reserve(text);
        None
    }

    fn charge(&mut self, units: u64) {
        self.0.charge(units);
    }
}

/// The request walks' visitor: masks.
struct Mask<'x>(&'x mut Exchange);

impl walk::Visit for Mask<'_> {
    fn text(&mut self, text: &str, _: walk::Ctx) -> Option<String> {
        self.0.mask(text)
    }

    fn charge(&mut self, units: u64) {
        self.0.charge(units);
    }
}

/// The answer walks' visitor: masks what the model produced and restores placeholders.
struct Answer<'x> {
    exchange: &'x mut Exchange,
    pass: AnswerPass,
    changed: bool,
}

impl walk::Visit for Answer<'_> {
    fn text(&mut self, text: &str, ctx: walk::Ctx) -> Option<String> {
        let new = self.exchange.answer_text(text, ctx.json, self.pass);
        self.changed |= new.is_some();
        new
    }

    /// Answers are not bounded (the session masks them unbounded, as before).
    fn charge(&mut self, _: u64) {}
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

/// Which half of the answer pass to run: both (the normal path), or one half (the cache
/// keeps masked answers and restores them per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerPass {
    Both,
    MaskOnly,
    RestoreOnly,
}
