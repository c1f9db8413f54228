//! Finds sensitive data in text: the patterns (built-in and custom) in a few searches (most
//! patterns in one regex, a few that would make its lazy DFA thrash on their own, custom ones
//! in one more), merged into one leftmost-first pass, each match confirmed by its check (or
//! extended by code, for unbounded bodies), plus custom word lists through Aho-Corasick. The
//! engines run in time linear in the text they scan; what a whole text costs (spans searched,
//! candidates rescanned, patterns retried) is counted as it goes ([`Cost`]), so a caller can
//! bound it.

use crate::cost::{self, Cost, TooComplex};
use crate::email;
use crate::entity::Entity;
use crate::extend::{self, Memo};
use crate::first_bytes::FirstBytes;
use crate::glued::{GLUED_KINDS, glued_runs};
use crate::normalize;
use crate::patterns::{self, Check, Context, Extend, Search, Veto};
use crate::validate::{self, NumberingPlans};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input, PatternID};
use std::ops::Range;
use std::sync::Arc;

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

impl Finding {
    /// The same finding in a text that holds this one's text from `by` on.
    fn shifted(self, by: usize) -> Self {
        Self {
            start: by + self.start,
            end: by + self.end,
            entity: self.entity,
        }
    }
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
    groups: Vec<Group>,
    meta: Vec<PatternInfo>,
    /// For each pattern (in priority order), its group and its id in the group's regex.
    place: Vec<(usize, PatternID)>,
    words: Vec<WordList>,
    /// What confirms a run of digit groups as a national phone number.
    plans: Arc<NumberingPlans>,
}

/// What a pattern finds and how its match is confirmed.
struct PatternInfo {
    entity: Entity,
    check: Option<Check>,
    veto: Option<Veto>,
    extend: Option<Extend>,
    context: Option<Context>,
    /// The bytes its match may start with: a retry at another start passes it over.
    first: FirstBytes,
}

impl PatternInfo {
    fn custom(name: &str, pattern: &str) -> Self {
        Self {
            entity: Entity::new(name),
            check: None,
            veto: None,
            extend: None,
            context: None,
            first: FirstBytes::of(pattern),
        }
    }
}

/// Patterns searched together, by one engine.
struct Group {
    regex: Regex,
    /// How the group is searched: by its regex, or by code (`Email`, `DigitRuns`).
    how: Search,
    /// The priority (index in `Detector::meta`) of each of the regex's patterns.
    ids: Vec<usize>,
    /// Whether it holds a pattern of a kind a number glued to a word may be found as
    /// ([`GLUED_KINDS`]): only such groups search a glued run.
    glued: bool,
}

/// Which groups a pass searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every group: the pass over the whole text.
    All,
    /// The groups that can find a kind kept from a glued run. Leaving the others out can
    /// only reveal more of those kinds (no other pattern's match hides one), never fewer.
    Glued,
}

impl Scope {
    fn holds(self, group: &Group) -> bool {
        self == Scope::All || group.glued
    }
}

/// The kinds confirmed by shape alone (no checksum, no issuing rule): inside a look-alike of
/// a checked kind (an IBAN whose check digits fail, an SSN-shaped number outside the issued
/// ranges) such a finding is dropped. Checked kinds (a card passing Luhn and its issuer's
/// range) are never dropped that way: a look-alike may not hide one.
const SHAPE_ONLY_KINDS: &[&str] = &["PHONE"];

/// Whether `f` is of a shape-only kind and overlaps a look-alike.
fn unchecked_inside(f: &Finding, look_alikes: &[Range<usize>]) -> bool {
    SHAPE_ONLY_KINDS.contains(&f.entity.name())
        && look_alikes
            .iter()
            .any(|r| r.start < f.end && f.start < r.end)
}

/// What one pass of the patterns found, and the look-alikes it met.
type Scanned = (Vec<Finding>, Vec<Range<usize>>);

/// A group's next match: where, and which pattern (its priority).
#[derive(Debug, Clone, Copy)]
struct Hit {
    start: usize,
    end: usize,
    id: usize,
}

impl Detector {
    /// Builds the built-in detectors plus `custom` ones.
    pub fn new(custom: &[Custom]) -> Result<Self, BuildError> {
        Self::build(custom, false, NumberingPlans::all())
    }

    /// Like [`Self::new`], with national-format phone numbers (those without a country
    /// code or a word that says a phone number follows) taken by the numbering plans of
    /// `regions` only (ISO 3166 codes; none: no national formats) instead of every region's.
    pub fn with_phone_regions(custom: &[Custom], regions: &[String]) -> Result<Self, BuildError> {
        let plans =
            NumberingPlans::only(regions).map_err(|e| BuildError(format!("phone_regions: {e}")))?;
        Self::build(custom, false, Arc::new(plans))
    }

    /// `one_regex`: every pattern but the searches by code (emails, digit runs) in one regex (what the groups must find the same as; for
    /// tests, on short texts, where the one lazy DFA does not thrash).
    fn build(
        custom: &[Custom],
        one_regex: bool,
        plans: Arc<NumberingPlans>,
    ) -> Result<Self, BuildError> {
        // Groups: 0 the patterns searched together; then one per pattern searched alone;
        // custom regular expressions together in the last.
        let mut sources: Vec<(Search, Vec<String>, Vec<usize>)> =
            vec![(Search::Together, Vec::new(), Vec::new())];
        let mut meta = Vec::new();
        for p in patterns::built_in() {
            let id = meta.len();
            meta.push(PatternInfo {
                entity: Entity::new(p.entity),
                check: p.check,
                veto: p.veto,
                extend: p.extend,
                context: p.context,
                first: FirstBytes::of(p.regex),
            });
            match p.search {
                Search::Together => {
                    sources[0].1.push(p.regex.to_owned());
                    sources[0].2.push(id);
                }
                how => sources.push((how, vec![p.regex.to_owned()], vec![id])),
            }
        }
        let custom_group = sources.len();
        sources.push((Search::Together, Vec::new(), Vec::new()));
        let mut words = Vec::new();
        for c in custom {
            match c {
                Custom::Regex { name, pattern } => {
                    check_name(name)?;
                    let regex = Regex::new(pattern).map_err(|e| {
                        BuildError(format!("custom entity {name}: invalid regex: {e}"))
                    })?;
                    if regex.is_match("") {
                        return Err(BuildError(format!(
                            "custom entity {name}: the regex matches the empty text; it must match something"
                        )));
                    }
                    sources[custom_group].1.push(pattern.clone());
                    sources[custom_group].2.push(meta.len());
                    meta.push(PatternInfo::custom(name, pattern));
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
        if one_regex {
            // The email search is code around an anchored regex, not a regex: it stays apart.
            let (email, rest): (Vec<_>, Vec<_>) = sources
                .drain(..)
                .partition(|(how, _, _)| matches!(how, Search::Email | Search::DigitRuns));
            let mut all: Vec<(usize, String)> = rest
                .into_iter()
                .flat_map(|(_, r, ids)| ids.into_iter().zip(r))
                .collect();
            all.sort_by_key(|(id, _)| *id);
            let (ids, regexes) = all.into_iter().unzip();
            sources = vec![(Search::Together, regexes, ids)];
            sources.extend(email);
        }
        sources.retain(|(_, regexes, _)| !regexes.is_empty());
        let mut groups = Vec::new();
        let mut place = vec![(0, PatternID::ZERO); meta.len()];
        for (how, regexes, ids) in sources {
            let regex =
                Regex::new_many(&regexes).map_err(|e| BuildError(format!("detectors: {e}")))?;
            for (local, &id) in ids.iter().enumerate() {
                let local = PatternID::new(local).map_err(|e| BuildError(e.to_string()))?;
                place[id] = (groups.len(), local);
            }
            let glued = ids
                .iter()
                .any(|&id| GLUED_KINDS.contains(&meta[id].entity.name()));
            groups.push(Group {
                regex,
                how,
                ids,
                glued,
            });
        }
        Ok(Self {
            groups,
            meta,
            place,
            words,
            plans,
        })
    }

    /// Every finding in `text`, in order, never overlapping.
    pub fn find(&self, text: &str) -> Vec<Finding> {
        // Unbounded: the count never refuses.
        self.find_within(text, &mut Cost::unlimited())
            .unwrap_or_default()
    }

    /// Like [`Self::find`], charging the work to `cost`; stops as soon as it passes its bound.
    ///
    /// The detectors see the text normalised (`normalize.rs`: disguised digits, signs,
    /// spaces and invisible characters undone); each finding is the original span.
    pub fn find_within(&self, text: &str, cost: &mut Cost) -> Result<Vec<Finding>, TooComplex> {
        let Some(normalized) = normalize::normalize(text) else {
            return self.find_normalized(text, cost);
        };
        cost.charge(cost::PER_SEARCH + text.len() as u64)?;
        let found = self.find_normalized(&normalized.text, cost)?;
        Ok(found
            .into_iter()
            .map(|f| Finding {
                start: normalized.start(f.start),
                end: normalized.end(f.end),
                entity: f.entity,
            })
            .collect())
    }

    /// Every finding in a text already normalised.
    fn find_normalized(&self, text: &str, cost: &mut Cost) -> Result<Vec<Finding>, TooComplex> {
        let (mut out, look_alikes) = self.scan(text, Scope::All, cost)?;
        let glued = self.find_glued(text, &out, &look_alikes, cost)?;
        let words = if self.words.is_empty() {
            Vec::new()
        } else {
            self.find_words(text, cost)?
        };
        if glued.is_empty() && words.is_empty() {
            return Ok(out);
        }
        out.extend(glued);
        out.extend(words);
        Ok(merge(out))
    }

    /// Numbers glued to a word (`cust_4111111111111111`, `tel_415-555-0132`,
    /// `x4111111111111111`): the patterns' word boundaries do not hold between a letter or
    /// `_` and a digit, so each run of digits and separators that touches a word character
    /// (and holds enough digits to be a card, phone, SSN or address) is searched again on its
    /// own, where its ends are the text's ends. Only those kinds are taken from it. Each byte
    /// is in at most one run, so the work stays linear.
    fn find_glued(
        &self,
        text: &str,
        found: &[Finding],
        look_alikes: &[Range<usize>],
        cost: &mut Cost,
    ) -> Result<Vec<Finding>, TooComplex> {
        let mut out = Vec::new();
        // The first finding that may overlap the current run (both lists are in order).
        let mut next_found = 0;
        for (start, end) in glued_runs(text.as_bytes()) {
            while found.get(next_found).is_some_and(|f| f.end <= start) {
                next_found += 1;
            }
            if found.get(next_found).is_some_and(|f| f.start < end) {
                continue;
            }
            for f in self.scan(&text[start..end], Scope::Glued, cost)?.0 {
                let shifted = f.shifted(start);
                if GLUED_KINDS.contains(&shifted.entity.name())
                    && !unchecked_inside(&shifted, look_alikes)
                {
                    out.push(shifted);
                }
            }
        }
        Ok(out)
    }

    /// The patterns' pass over a text (no glued runs, no word lists): the findings, and the
    /// look-alikes stepped over (see [`Veto`]).
    fn scan(&self, text: &str, scope: Scope, cost: &mut Cost) -> Result<Scanned, TooComplex> {
        let mut out = Vec::new();
        let mut look_alikes = Vec::new();
        // Between a label and the value found after it: searched on its own afterwards.
        let mut gaps = Vec::new();
        let mut memo = Memo::default();
        // Each group's next match from where it last searched (`None`: search again). It
        // stays the group's next match from any later place up to its start, so a group is
        // searched again only once the scan has passed that start.
        // A group out of scope has no next match.
        let mut next: Vec<Option<Option<Hit>>> = self
            .groups
            .iter()
            .map(|g| if scope.holds(g) { None } else { Some(None) })
            .collect();
        let mut at = 0;
        while at < text.len() {
            // The leftmost match, the first pattern of those starting there: the match one
            // regex of every pattern would find.
            let mut found: Option<Hit> = None;
            for (group, slot) in self.groups.iter().zip(next.iter_mut()) {
                if matches!(slot, Some(Some(h)) if h.start < at) {
                    *slot = None;
                }
                let hit = match slot {
                    Some(hit) => *hit,
                    None => *slot.insert(group.search(text, at, cost)?),
                };
                if let Some(h) = hit
                    && found.is_none_or(|f| (h.start, h.id) < (f.start, f.id))
                {
                    found = Some(h);
                }
            }
            let Some(m) = found else {
                break;
            };
            match self.confirm(text, m.start, m.end, m.id, &mut memo, cost)? {
                Some(f) => {
                    at = resume_after(text, m.start, &f, &mut gaps);
                    out.push(f);
                }
                None => {
                    let veto = self.meta[m.id].veto;
                    if let Some(len) = veto.and_then(|v| v(&text[m.start..m.end])) {
                        look_alikes.push(m.start..m.start + len);
                    }
                    // Another pattern may match here; else move past this start.
                    match self.retry_at(text, m.start, m.id, scope, &mut memo, cost)? {
                        Some(f) => {
                            at = resume_after(text, m.start, &f, &mut gaps);
                            out.push(f);
                        }
                        None => at = next_char(text, m.start),
                    }
                }
            }
        }
        // Each gap lies inside one match (a label's bounded filler), so the gaps add at most
        // the text's length to the work.
        for gap in gaps {
            let (found, inner) = self.scan(&text[gap.clone()], scope, cost)?;
            let shift = |r: Range<usize>| gap.start + r.start..gap.start + r.end;
            look_alikes.extend(inner.into_iter().map(shift));
            out.extend(found.into_iter().map(|f| f.shifted(gap.start)));
        }
        out.retain(|f| !unchecked_inside(f, &look_alikes));
        // What the gaps held comes before the value found after their label.
        Ok((merge(out), look_alikes))
    }

    fn confirm(
        &self,
        text: &str,
        start: usize,
        end: usize,
        id: usize,
        memo: &mut Memo,
        cost: &mut Cost,
    ) -> Result<Option<Finding>, TooComplex> {
        cost.charge(cost::PER_CANDIDATE + (end - start) as u64)?;
        let PatternInfo {
            entity,
            check,
            extend,
            context,
            ..
        } = &self.meta[id];
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
        let digit_run = self.groups[self.place[id].0].how == Search::DigitRuns;
        let range = match check {
            Some(check) => check(&text[start..end]),
            None if digit_run => self.plans.national_number(&text[start..end], cost)?,
            None => Some(0..end - start),
        };
        let Some(range) = range else {
            return Ok(None);
        };
        if let Some(alone) = context
            && !alone(text, start + range.start, start + range.end)
        {
            return Ok(None); // part of a version number, a path such as `std::io`, a longer number
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
        failed: usize,
        scope: Scope,
        memo: &mut Memo,
        cost: &mut Cost,
    ) -> Result<Option<Finding>, TooComplex> {
        let first = text.as_bytes().get(start);
        for id in failed + 1..self.meta.len() {
            let (group, pid) = self.place[id];
            let group = &self.groups[group];
            if !scope.holds(group) || !first.is_none_or(|&b| self.meta[id].first.admit(b)) {
                continue;
            }
            let found = match group.how {
                // The email search is code around the regex (its local part is unbounded
                // in the regex): anchored alone, the regex could read to the end of the text.
                Search::Email => email::email_at(&group.regex, text, start, cost)?,
                Search::DigitRuns => validate::digit_run_at(text, start),
                Search::Together | Search::Alone => {
                    let input = Input::new(text)
                        .range(start..)
                        .anchored(Anchored::Pattern(pid));
                    group.regex.search(&input).map(|m| (m.start(), m.end()))
                }
            };
            cost.charge(cost::PER_RETRY + found.map_or(0, |(_, end)| end - start) as u64)?;
            if let Some((m_start, m_end)) = found
                && let Some(f) = self.confirm(text, m_start, m_end, id, memo, cost)?
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

impl Group {
    /// The group's leftmost match starting at `at` or later, charging the span searched.
    fn search(&self, text: &str, at: usize, cost: &mut Cost) -> Result<Option<Hit>, TooComplex> {
        let found = match self.how {
            Search::Email => {
                email::next_email(&self.regex, text, at, cost)?.map(|(start, end)| (start, end, 0))
            }
            Search::DigitRuns => validate::next_digit_run(text, at).map(|(s, e)| (s, e, 0)),
            Search::Together | Search::Alone => self
                .regex
                .search(&Input::new(text).range(at..))
                .map(|m| (m.start(), m.end(), m.pattern().as_usize())),
        };
        let scanned = found.map_or(text.len(), |(_, end, _)| end) - at;
        cost.charge(cost::PER_SEARCH + scanned as u64)?;
        Ok(found.map(|(start, end, local)| Hit {
            start,
            end,
            id: self.ids[local],
        }))
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

/// Where the scan goes on after finding `f` in a match that starts at `start`: after the
/// finding (and past `start`, should the finding be empty). When the finding starts later
/// than its match (a value after its label), the text between the label's first character
/// and the value joins `gaps`, to be searched too: a card or a phone number there must not
/// hide behind the label.
fn resume_after(text: &str, start: usize, f: &Finding, gaps: &mut Vec<Range<usize>>) -> usize {
    let next = next_char(text, start);
    if f.start > next {
        gaps.push(next..f.start);
    }
    f.end.max(next)
}

fn next_char(text: &str, at: usize) -> usize {
    text[at..]
        .chars()
        .next()
        .map_or(text.len(), |c| at + c.len_utf8())
}

/// Findings in order, never overlapping: findings that overlap become one, of the first
/// one's kind, covering both (what either found is masked).
fn merge(mut all: Vec<Finding>) -> Vec<Finding> {
    all.sort_by(|x, y| x.start.cmp(&y.start).then(y.end.cmp(&x.end)));
    let mut out: Vec<Finding> = Vec::with_capacity(all.len());
    for f in all {
        match out.last_mut() {
            Some(last) if f.start < last.end => last.end = last.end.max(f.end),
            _ => out.push(f),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces of near-misses and findings of every pattern, and the characters around them.
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "9",
        "0",
        ".",
        "-",
        "_",
        "+",
        "%",
        "@",
        ":",
        "/",
        "=",
        " ",
        "\n",
        "\t",
        "é",
        "x@y",
        "jane.doe@example.com",
        "a.b-c+d@mail.example.org",
        "@example.com",
        ".com",
        "://",
        "https://",
        "postgres://u:p@",
        "db.internal",
        "password",
        "PWD",
        "= ",
        "hunter2",
        "aws_secret_access_key",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "4111 1111 1111 1111",
        "4111111111111111",
        "123-45-6789",
        "SSN ",
        "+44 20 7946 0958",
        "(555) 123-4567",
        "DE89370400440532013000",
        "DE89 3704 ",
        "192.168.1.1",
        "1.2.3.4.5",
        "fe80::1",
        "::",
        "AKIAIOSFODNN7EXAMPLE",
        "sk-",
        "sk_live_",
        "ghp_",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
        "eyJ",
        "-----BEGIN PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
        "ORD-1",
    ];

    fn texts(n: usize) -> Vec<String> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|_| {
                let len = 1 + next() % 40;
                (0..len)
                    .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }

    /// The retries pass over a pattern by its first byte: no pattern matches where its
    /// first bytes say it cannot start.
    #[test]
    fn a_pattern_matches_only_where_its_first_bytes_admit() {
        let d = Detector::new(&[]).unwrap();
        let mut tried = 0;
        for text in texts(3_000) {
            for (start, &byte) in text.as_bytes().iter().enumerate() {
                for (id, meta) in d.meta.iter().enumerate() {
                    let (group, pid) = d.place[id];
                    let group = &d.groups[group];
                    if group.how != Search::Together && group.how != Search::Alone {
                        continue;
                    }
                    let input = Input::new(&text)
                        .range(start..)
                        .anchored(Anchored::Pattern(pid));
                    if group.regex.search(&input).is_some() {
                        tried += 1;
                        assert!(
                            meta.first.admit(byte),
                            "{} at {start} of {text:?}",
                            meta.entity.name()
                        );
                    }
                }
            }
        }
        assert!(tried > 1_000, "few matches: {tried}");
    }

    #[test]
    fn an_email_address_written_out_is_found_after_its_label() {
        let d = Detector::new(&[]).unwrap();
        let found = |text: &str| -> Vec<String> {
            d.find(text)
                .iter()
                .map(|f| text[f.start..f.end].to_owned())
                .collect()
        };
        assert_eq!(
            found("My email is john at gmail.com, thanks"),
            ["john at gmail.com"]
        );
        assert_eq!(
            found("E-mail: jane.doe [at] example [dot] org."),
            ["jane.doe [at] example [dot] org"]
        );
        assert_eq!(
            found("email address: bob(at)mail.example.co.uk"),
            ["bob(at)mail.example.co.uk"]
        );
        assert_eq!(found("email: John at Gmail.com"), ["John at Gmail.com"]);
        // What sits between the label and the address is searched too.
        assert_eq!(
            found("Email / phone: 415-555-0132, jane at example.com"),
            ["415-555-0132", "jane at example.com"]
        );
        assert_eq!(
            found("email: 4111111111111111 or bob at x.com"),
            ["4111111111111111", "bob at x.com"]
        );
        assert_eq!(
            found("email AKIAIOSFODNN7EXAMPLE bob at example.com"),
            ["AKIAIOSFODNN7EXAMPLE", "bob at example.com"]
        );
        // Not the local part of an address that goes on.
        assert_eq!(
            found("email me at 5pm.jane@example.com"),
            ["5pm.jane@example.com"]
        );
        assert!(found("Look at example.com for the email policy").is_empty());
        assert!(found("email me at 5pm at the office").is_empty());
        assert!(found("emails at scale.").is_empty());
    }

    #[test]
    fn a_custom_regex_must_match_something() {
        let empty = Custom::Regex {
            name: "X".into(),
            pattern: "x*".into(),
        };
        let Err(BuildError(e)) = Detector::new(&[empty]) else {
            panic!("built");
        };
        assert!(e.contains("matches the empty text"), "{e}");
    }

    #[test]
    fn a_run_of_digit_groups_that_is_no_number_hides_no_phone_in_it() {
        let d = Detector::new(&[]).unwrap();
        let text = "Ref 12 020 7946 0958, ISBN 978-90-345-0790-7, call 02 123 456.";
        let found: Vec<&str> = d.find(text).iter().map(|f| &text[f.start..f.end]).collect();
        assert_eq!(found, ["020 7946 0958", "02 123 456"]);
    }

    #[test]
    fn the_groups_find_what_one_regex_of_every_pattern_finds() {
        let custom = [Custom::Regex {
            name: "TICKET".into(),
            pattern: r"ORD-[0-9]+|[a-z]@[a-z]".into(),
        }];
        for custom in [&[][..], &custom[..]] {
            let grouped = Detector::build(custom, false, NumberingPlans::all()).unwrap();
            let one = Detector::build(custom, true, NumberingPlans::all()).unwrap();
            // One regex, plus the two searches by code (emails, runs of digit groups).
            assert!(grouped.groups.len() > 3 && one.groups.len() == 3);
            for text in texts(20_000) {
                assert_eq!(grouped.find(&text), one.find(&text), "{text:?}");
            }
        }
    }
}
