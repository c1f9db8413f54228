//! Redaction tests: detection quality on a labelled corpus, round trips, streaming, and the
//! OpenAI request and answer shapes.

#![allow(clippy::unwrap_used)] // test helpers fail by panicking

mod complexity;
mod corpus;
mod evasion;
mod exchange;
mod phone_shapes;
mod public;
mod roundtrip;
mod secrets;

use warden_redact::Detector;

pub(crate) fn detector() -> Detector {
    Detector::new(&[]).expect("built-in detectors compile")
}
