//! Any text and any chunking: masking then restoring gives the text back, and a streamed
//! restoration equals the whole one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use warden_redact::{Detector, Direction, Policy, Session, StreamText};

static DETECTOR: OnceLock<Detector> = OnceLock::new();

fuzz_target!(|input: (&str, Vec<u8>)| {
    let (text, cuts) = input;
    let d = DETECTOR.get_or_init(|| Detector::new(&[]).expect("detectors"));
    let policy = Policy::default();
    let mut s = Session::default();
    let masked = s.mask(d, &policy, text, Direction::Request).into_owned();
    assert_eq!(s.restore(&masked, false), text);
    let mut field = StreamText::new(false);
    let mut out = String::new();
    let mut at = 0;
    for c in cuts {
        let mut next = (at + usize::from(c)).min(masked.len());
        while !masked.is_char_boundary(next) {
            next += 1;
        }
        out.push_str(&field.push(&mut s, d, &policy, false, &masked[at..next]));
        at = next;
    }
    out.push_str(&field.push(&mut s, d, &policy, false, &masked[at..]));
    out.push_str(&field.finish(&mut s, d, &policy, false));
    assert_eq!(out, text);
});
