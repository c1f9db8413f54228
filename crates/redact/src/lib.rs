//! Redaction: finds personal data and secrets in text and replaces them before anything leaves
//! Warden, reversibly. The model sees `<CREDIT_CARD_1>`; the client gets its own data back.
//!
//! This crate owns the detectors (validated, not bare regexes), the per-type policies (mask,
//! block, allow), the per-request pseudonymisation [`Session`], the streaming restorer, and the
//! walk over OpenAI request and answer shapes. It is the only maker of [`Redacted`]: code that
//! sends, stores or logs content takes a `Redacted<T>`, so forgetting to redact does not
//! compile. It is pure: no I/O, no async, no clock, and every detector runs in linear time.
//! What redacting one request costs is counted deterministically ([`Cost`]) and bounded: past
//! the bound the request is refused ([`TooComplex`]), never sent half-scanned.

mod bytes;
mod cost;
mod detector;
mod email;
mod entity;
mod extend;
mod first_bytes;
mod glued;
mod normalize;
mod openai;
mod patterns;
mod personal;
mod policy;
mod secrets;
mod session;
mod stream;
pub mod validate;
mod walk;

pub use cost::{Cost, DEFAULT_MAX_COST, TooComplex};
pub use detector::{BuildError, Custom, Detector, Finding};
pub use entity::{BUILT_IN, Entity, valid_name};
pub use openai::{Blocked, Exchange, Redactor, Refusal, format_counts};
pub use policy::{Action, Policy};
pub use session::{Direction, Session};
pub use stream::StreamText;

/// A value that has been through redaction. Only this crate can make one, so a function that
/// takes `Redacted<T>` cannot be handed content that skipped it.
#[derive(Debug, Clone, PartialEq)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(value)
    }

    /// The redacted value.
    pub fn get(&self) -> &T {
        &self.0
    }

    /// The redacted value, owned.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Redacted<serde_json::Map<String, serde_json::Value>> {
    /// Sets a routing field of a redacted request body (`model`, `stream_options`): a value
    /// Warden itself chooses after redaction (redaction skips top-level `model`, which this
    /// replaces with the route's own). Never use it for content.
    pub fn set_routing_field(&mut self, key: &str, value: serde_json::Value) {
        self.0.insert(key.to_owned(), value);
    }
}
