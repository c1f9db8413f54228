//! Reversible pseudonymisation for one request. Values are replaced by typed, numbered
//! placeholders (`<EMAIL_1>`), the same value always by the same placeholder, so the model can
//! still reason about them; the answer's placeholders are turned back into the values.

use crate::Detector;
use crate::cost::{self, Cost, TooComplex};
use crate::entity::Entity;
use crate::policy::{Action, Policy};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The state of one request's redaction.
#[derive(Debug, Default)]
pub struct Session {
    by_value: HashMap<(Entity, String), String>,
    by_placeholder: HashMap<String, String>,
    next: HashMap<Entity, u32>,
    /// Findings masked or blocked in the request, by type.
    pub request_counts: BTreeMap<Entity, u32>,
    /// Findings masked in the answer (values the model produced), by type.
    pub response_counts: BTreeMap<Entity, u32>,
    /// Types whose policy is `block` that were found.
    pub blocked: BTreeSet<Entity>,
    longest_placeholder: usize,
    /// Placeholder-shaped text the client itself sent: never generated, so never "restored".
    reserved: std::collections::HashSet<String>,
}

/// Which way text flows, for counting and for restorability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to provider: placeholders are remembered and restored later.
    Request,
    /// Provider to client: values the model produced are masked one way.
    Response,
}

impl Session {
    /// Masks findings in `text` according to `policy`. Blocked types are recorded (and masked
    /// too, so nothing leaks even if the caller forgot to check `blocked`).
    pub fn mask<'t>(
        &mut self,
        detector: &Detector,
        policy: &Policy,
        text: &'t str,
        direction: Direction,
    ) -> Cow<'t, str> {
        // Unbounded: the count never refuses.
        match self.mask_within(detector, policy, text, direction, &mut Cost::unlimited()) {
            Ok(masked) => masked,
            Err(_) => Cow::Borrowed(text),
        }
    }

    /// Like [`Self::mask`], charging the work to `cost`; stops as soon as it passes its bound
    /// (the session may then hold part of the text's findings: drop the text).
    pub fn mask_within<'t>(
        &mut self,
        detector: &Detector,
        policy: &Policy,
        text: &'t str,
        direction: Direction,
        cost: &mut Cost,
    ) -> Result<Cow<'t, str>, TooComplex> {
        if policy.allows_everything() {
            return Ok(Cow::Borrowed(text));
        }
        cost.charge(cost::PER_FIELD)?;
        if direction == Direction::Request {
            self.reserve_literals_within(text, cost)?;
        }
        let findings = detector.find_within(text, cost)?;
        if findings.is_empty() {
            return Ok(Cow::Borrowed(text));
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for f in findings {
            let action = policy.action(&f.entity);
            if action == Action::Allow {
                continue;
            }
            cost.charge(cost::PER_FINDING + (f.end - f.start) as u64)?;
            if action == Action::Block && direction == Direction::Request {
                self.blocked.insert(f.entity.clone());
            }
            let counts = match direction {
                Direction::Request => &mut self.request_counts,
                Direction::Response => &mut self.response_counts,
            };
            *counts.entry(f.entity.clone()).or_default() += 1;
            out.push_str(&text[last..f.start]);
            let known = self.by_value.len();
            out.push_str(&self.placeholder(&f.entity, &text[f.start..f.end], direction));
            if self.by_value.len() > known {
                cost.charge(cost::PER_NEW_VALUE)?;
            }
            last = f.end;
        }
        if last == 0 && out.is_empty() {
            return Ok(Cow::Borrowed(text));
        }
        out.push_str(&text[last..]);
        Ok(Cow::Owned(out))
    }

    fn placeholder(&mut self, entity: &Entity, value: &str, direction: Direction) -> String {
        let key = (entity.clone(), value.to_owned());
        if let Some(p) = self.by_value.get(&key) {
            return p.clone();
        }
        let n = self.next.entry(entity.clone()).or_insert(0);
        let placeholder = loop {
            *n += 1;
            let candidate = format!("<{}_{}>", entity.name(), n);
            if !self.reserved.contains(&candidate) {
                break candidate;
            }
        };
        self.by_value.insert(key, placeholder.clone());
        // Only values the client sent come back; what the model produced stays masked.
        if direction == Direction::Request {
            self.longest_placeholder = self.longest_placeholder.max(placeholder.len());
            self.by_placeholder
                .insert(placeholder.clone(), value.to_owned());
        }
        placeholder
    }

    /// Remembers placeholder-shaped tokens (`<NAME_12>`) that occur in client text, so that
    /// no generated placeholder equals one and restoring never rewrites the client's own text.
    /// Call it on every request field before masking any (masking calls it on its own text).
    pub fn reserve_literals(&mut self, text: &str) {
        // Unbounded: the count never refuses.
        let _ = self.reserve_literals_within(text, &mut Cost::unlimited());
    }

    /// Like [`Self::reserve_literals`], charging the work to `cost`.
    pub fn reserve_literals_within(
        &mut self,
        text: &str,
        cost: &mut Cost,
    ) -> Result<(), TooComplex> {
        let mut rest = text;
        while let Some(lt) = rest.find('<') {
            rest = &rest[lt..];
            cost.charge(cost::PER_ANGLE)?;
            // A generated placeholder is never longer than MAX_PLACEHOLDER, so only a `>`
            // that near can close one that could collide (looking further made a text of
            // `<` alone quadratic).
            if let Some(gt) = closing(rest, MAX_PLACEHOLDER) {
                let token = &rest[..=gt];
                if is_placeholder_shape(token) {
                    self.reserved.insert(token.to_owned());
                }
            }
            rest = &rest[1..];
        }
        Ok(())
    }

    /// Whether any placeholder can be restored.
    pub fn has_placeholders(&self) -> bool {
        !self.by_placeholder.is_empty()
    }

    /// Replaces known placeholders in `text` by their values; with `json_escape`, values are
    /// escaped for use inside a JSON string (tool-call arguments are JSON text).
    pub fn restore<'t>(&self, text: &'t str, json_escape: bool) -> Cow<'t, str> {
        if self.by_placeholder.is_empty() || !text.contains('<') {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut search = 0;
        while let Some(rel) = text[search..].find('<') {
            let lt = search + rel;
            let Some(gt) = closing(&text[lt..], self.longest_placeholder).map(|g| lt + g) else {
                search = lt + 1;
                continue;
            };
            let candidate = &text[lt..=gt];
            if let Some(value) = self.by_placeholder.get(candidate) {
                out.push_str(&text[last..lt]);
                if json_escape {
                    let quoted = serde_json::Value::String(value.clone()).to_string();
                    out.push_str(&quoted[1..quoted.len() - 1]);
                } else {
                    out.push_str(value);
                }
                last = gt + 1;
                search = gt + 1;
            } else {
                search = lt + 1;
            }
        }
        if last == 0 {
            return Cow::Borrowed(text);
        }
        out.push_str(&text[last..]);
        Cow::Owned(out)
    }

    /// Where the held-back tail of streamed text starts: at a `<` whose tail is a strict
    /// prefix of a known placeholder. Text that cannot become a placeholder is never held.
    pub(crate) fn placeholder_hold(&self, text: &str) -> usize {
        if self.by_placeholder.is_empty() {
            return text.len();
        }
        let mut at = text.len().saturating_sub(self.longest_placeholder);
        while !text.is_char_boundary(at) {
            at += 1;
        }
        while let Some(rel) = text[at..].find('<') {
            let lt = at + rel;
            let tail = &text[lt..];
            if !tail.contains('>')
                && self
                    .by_placeholder
                    .keys()
                    .any(|p| p.len() > tail.len() && p.starts_with(tail))
            {
                return lt;
            }
            at = lt + 1;
        }
        text.len()
    }
}

/// The longest placeholder Warden makes: `<`, a 40-character name, `_`, a `u32`, `>`.
const MAX_PLACEHOLDER: usize = 1 + 40 + 1 + 10 + 1;

/// The offset of the `>` closing the `<` that `text` starts with, if it is within `max`
/// bytes (the token is then at most `max` long).
fn closing(text: &str, max: usize) -> Option<usize> {
    let window = &text.as_bytes()[..text.len().min(max)];
    window.iter().position(|b| *b == b'>')
}

/// `<NAME_123>`: upper-case name, underscore, digits.
fn is_placeholder_shape(token: &str) -> bool {
    let inner = &token[1..token.len() - 1];
    match inner.rsplit_once('_') {
        Some((name, n)) => {
            crate::entity::valid_name(name)
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}
