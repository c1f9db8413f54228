//! Finds sensitive data in text: every pattern (built-in and custom) in one regex pass, each
//! match confirmed by its check (or extended by code, for unbounded bodies), plus custom word
//! lists through Aho-Corasick. Both engines run in time linear in the text they scan; what a
//! whole text costs (candidates rescanned, patterns retried) is counted as it goes
//! ([`Cost`]), so a caller can bound it.

use crate::cost::{self, Cost, TooComplex};
use crate::entity::Entity;
use crate::extend::{self, Memo};
use crate::patterns::{self, Check, Extend};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input, PatternID};

/// A custom detector from configuration.
#[derive(Debug, Clone)]
pub enum Custom {
    /// A named regular expression.
    Regex {
        /// Entity name (upper case).
        name: String,
        /// The expression.
        pattern: String,
    },
    /// A named list of words or phrases, matched case-insensitively as whole words.
    Words {
        /// Entity name (upper case).
        name: String,
        /// The words.
        words: Vec<String>,
    },
}

/// A finding: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Byte offset of the start.
    pub start: usize,
    /// Byte offset of the end.
    pub end: usize,
    /// What was found.
    pub entity: Entity,
}

/// Why a detector set could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

struct WordList {
    entity: Entity,
    matcher: AhoCorasick,
}

/// The compiled detectors. Build once; share.
pub struct Detector {
    regex: Regex,
    meta: Vec<(Entity, Option<Check>, Option<Extend>)>,
    words: Vec<WordList>,
}

impl Detector {
    /// Builds the built-in detectors plus `custom` ones.
    pub fn new(custom: &[Custom]) -> Result<Self, BuildError> {
        let mut regexes: Vec<String> = Vec::new();
        let mut meta = Vec::new();
        for p in patterns::built_in() {
            regexes.push(p.regex.to_owned());
            meta.push((Entity::new(p.entity), p.check, p.extend));
        }
        let mut words = Vec::new();
        for c in custom {
            match c {
                Custom::Regex { name, pattern } => {
                    check_name(name)?;
                    Regex::new(pattern).map_err(|e| {
                        BuildError(format!("custom entity {name}: invalid regex: {e}"))
                    })?;
                    regexes.push(pattern.clone());
                    meta.push((Entity::new(name), None, None));
                }
                Custom::Words { name, words: list } => {
                    check_name(name)?;
                    let list: Vec<&str> = list
                        .iter()
                        .map(|w| w.trim())
                        .filter(|w| !w.is_empty())
                        .collect();
                    if list.is_empty() {
                        return Err(BuildError(format!(
                            "custom entity {name}: the word list is empty"
                        )));
                    }
                    let matcher = AhoCorasickBuilder::new()
                        .ascii_case_insensitive(true)
                        .match_kind(MatchKind::LeftmostLongest)
                        .build(&list)
                        .map_err(|e| BuildError(format!("custom entity {name}: {e}")))?;
                    words.push(WordList {
                        entity: Entity::new(name),
                        matcher,
                    });
                }
            }
        }
        let regex = Regex::new_many(&regexes).map_err(|e| BuildError(format!("detectors: {e}")))?;
        Ok(Self { regex, meta, words })
    }

    /// Every finding in `text`, in order, never overlapping.
    pub fn find(&self, text: &str) -> Vec<Finding> {
        // Unbounded: the count never refuses.
        self.find_within(text, &mut Cost::unlimited())
            .unwrap_or_default()
    }

    /// Like [`Self::find`], charging the work to `cost`; stops as soon as it passes its bound.
    pub fn find_within(&self, text: &str, cost: &mut Cost) -> Result<Vec<Finding>, TooComplex> {
        let mut out = Vec::new();
        let mut memo = Memo::default();
        let mut at = 0;
        while at < text.len() {
            let found = self.regex.search(&Input::new(text).range(at..));
            let scanned = found.map_or(text.len(), |m| m.end()) - at;
            cost.charge(cost::PER_SEARCH + scanned as u64)?;
            let Some(m) = found else {
                break;
            };
            match self.confirm(text, m.start(), m.end(), m.pattern(), &mut memo, cost)? {
                Some(f) => {
                    at = f.end.max(m.start() + 1);
                    out.push(f);
                }
                None => {
                    // Another pattern may match here; else move past this start.
                    match self.retry_at(text, m.start(), m.pattern(), &mut memo, cost)? {
                        Some(f) => {
                            at = f.end;
                            out.push(f);
                        }
                        None => at = next_char(text, m.start()),
                    }
                }
            }
        }
        if !self.words.is_empty() {
            out = merge(out, self.find_words(text, cost)?);
        }
        Ok(out)
    }

    fn confirm(
        &self,
        text: &str,
        start: usize,
        end: usize,
        pid: PatternID,
        memo: &mut Memo,
        cost: &mut Cost,
    ) -> Result<Option<Finding>, TooComplex> {
        cost.charge(cost::PER_CANDIDATE + (end - start) as u64)?;
        let (entity, check, extend) = &self.meta[pid.as_usize()];
        let end = match extend {
            None => end,
            Some(how) => {
                let (found, read) = match how {
                    Extend::PrivateKey => extend::private_key(text, start, end, memo),
                    Extend::Jwt => extend::jwt(text, start, memo),
                };
                cost.charge(read)?;
                match found {
                    Some(end) => end,
                    None => return Ok(None),
                }
            }
        };
        let range = match check {
            Some(check) => match check(&text[start..end]) {
                Some(r) => r,
                None => return Ok(None),
            },
            None => 0..end - start,
        };
        if entity.name() == "IP_ADDRESS" && dotted_number_continues(text, start, end) {
            return Ok(None); // part of a longer dotted number: a version, not an address
        }
        Ok(Some(Finding {
            start: start + range.start,
            end: start + range.end,
            entity: entity.clone(),
        }))
    }

    /// Tries the patterns after `failed`, anchored at `start`.
    fn retry_at(
        &self,
        text: &str,
        start: usize,
        failed: PatternID,
        memo: &mut Memo,
        cost: &mut Cost,
    ) -> Result<Option<Finding>, TooComplex> {
        for pid in failed.as_usize() + 1..self.meta.len() {
            let Ok(pid) = PatternID::new(pid) else {
                break;
            };
            let input = Input::new(text)
                .range(start..)
                .anchored(Anchored::Pattern(pid));
            let found = self.regex.search(&input);
            cost.charge(cost::PER_RETRY + found.map_or(0, |m| m.end() - start) as u64)?;
            if let Some(m) = found
                && let Some(f) = self.confirm(text, m.start(), m.end(), pid, memo, cost)?
            {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    fn find_words(&self, text: &str, cost: &mut Cost) -> Result<Vec<Finding>, TooComplex> {
        let mut out = Vec::new();
        for list in &self.words {
            cost.charge(cost::PER_SEARCH + text.len() as u64)?;
            for m in list.matcher.find_iter(text) {
                cost.charge(cost::PER_CANDIDATE)?;
                let before = text[..m.start()].chars().next_back();
                let after = text[m.end()..].chars().next();
                let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                if !word(before) && !word(after) {
                    out.push(Finding {
                        start: m.start(),
                        end: m.end(),
                        entity: list.entity.clone(),
                    });
                }
            }
        }
        out.sort_by_key(|f| f.start);
        Ok(out)
    }
}

fn check_name(name: &str) -> Result<(), BuildError> {
    if crate::entity::valid_name(name) {
        Ok(())
    } else {
        Err(BuildError(format!(
            "custom entity `{name}`: names are upper case letters, digits and `_`, starting with a letter"
        )))
    }
}

/// Whether `.digit` follows or `digit.` precedes the span (as in `1.2.3.4.5`).
fn dotted_number_continues(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let after = end + 1 < b.len() && b[end] == b'.' && b[end + 1].is_ascii_digit();
    let before = start >= 2 && b[start - 1] == b'.' && b[start - 2].is_ascii_digit();
    after || before
}

fn next_char(text: &str, at: usize) -> usize {
    text[at..]
        .chars()
        .next()
        .map_or(text.len(), |c| at + c.len_utf8())
}

/// Merges two sorted finding lists, dropping any finding that overlaps an earlier kept one.
fn merge(a: Vec<Finding>, b: Vec<Finding>) -> Vec<Finding> {
    let mut all: Vec<Finding> = a.into_iter().chain(b).collect();
    all.sort_by(|x, y| x.start.cmp(&y.start).then(y.end.cmp(&x.end)));
    let mut out: Vec<Finding> = Vec::with_capacity(all.len());
    for f in all {
        if out.last().is_none_or(|last| f.start >= last.end) {
            out.push(f);
        }
    }
    out
}
