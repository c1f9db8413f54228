//! National-format phone numbers by the numbering plans: libphonenumber's metadata (through
//! the `phonenumber` crate) says, for each of its 245 regions, how a number is grouped when
//! written in national format (`$1 $2 $3` over `(\d{2})(\d{3})(\d{3})`), which leading digits
//! each grouping is for, whether the trunk prefix (`0`, `8`, `1` …) is written before it, and
//! which digit strings are assigned numbers (fixed line, mobile, toll free …). A run of digit
//! groups without a country code is a phone number when some region writes one of its valid
//! numbers with exactly those groups. So `02 123 456` is one (AE, fixed line), `2024-11-26`,
//! `1.234.567` and `19 99` are not.
//!
//! Only the metadata is taken from the crate: its parser compiles its regular expressions on
//! demand behind one mutex-guarded cache of 100, which thrashes over 245 regions. Here the
//! groupings are indexed by their group lengths once, and a region's patterns are compiled
//! with regex-automata (like every other detector) on the first candidate that needs them.

use super::openings::Openings;
use crate::bytes::{is_word, next_number_opening};
use crate::cost::{self, Cost, TooComplex};
use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, LazyLock, OnceLock};

/// Fewest digits taken without a word that says a phone number follows: shorter national
/// numbers exist (`62889`, Ascension) but cannot be told from any other short number.
const MIN_DIGITS: usize = 6;
/// Most digits of a national number with its trunk prefix.
const MAX_DIGITS: usize = 15;
/// Most written groups looked at (the longest national formats have five).
const MAX_GROUPS: usize = 6;

/// Whether the run at `start..end` is the whole run of digit groups: no letter, digit or `_`
/// and no separator followed by a digit on either side (`555-0132` in `tel_415-555-0132`,
/// `2024-11` in `2024-11-26T10:30`).
fn national_stands_alone(text: &str, start: usize, end: usize) -> bool {
    let bytes = text.as_bytes();
    let sep = |b: u8| matches!(b, b' ' | b'-' | b'.' | b'/');
    let before_ok = match start.checked_sub(1).map(|i| bytes[i]) {
        None => true,
        Some(b) if is_word(b) => false,
        Some(b) if sep(b) => start < 2 || !bytes[start - 2].is_ascii_digit(),
        Some(_) => true,
    };
    let after_ok = match bytes.get(end) {
        None => true,
        Some(&b) if is_word(b) => false,
        Some(&b) if sep(b) => !bytes.get(end + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    };
    before_ok && after_ok
}

/// The next whole run of digit groups at `at` or later that could be a national number:
/// 2 to [`MAX_GROUPS`] groups of [`MIN_DIGITS`] to [`MAX_DIGITS`] digits in all, separated
/// by a space, dash or dot or a group's parentheses, standing on its own. Each byte is read
/// at most twice (a run that is no candidate is stepped over in bounded steps), so a search
/// costs its span, and a run is read only as far as a candidate could reach.
pub fn next_digit_run(text: &str, at: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let mut i = at;
    while i < b.len() {
        let start = next_number_opening(b, i)?;
        if start > 0 && is_word(b[start - 1]) {
            // Glued to a word (`req_8f3a2b`, `v2`): no run starts here; step over the word.
            let word = b[start..].iter().position(|&c| !is_word(c));
            i = start + word.unwrap_or(b.len() - start).max(1);
            continue;
        }
        let (end, candidate) = run_from(b, start);
        if candidate && national_stands_alone(text, start, end) {
            return Some((start, end));
        }
        i = end.max(start + 1);
    }
    None
}

/// The run of [`next_digit_run`] that starts exactly at `start`, if there is one.
pub fn digit_run_at(text: &str, start: usize) -> Option<(usize, usize)> {
    let (end, candidate) = run_from(text.as_bytes(), start);
    (candidate && national_stands_alone(text, start, end)).then_some((start, end))
}

/// Where the run of digit groups from `start` ends, and whether its shape makes it a
/// candidate (see [`next_digit_run`]).
fn run_from(b: &[u8], start: usize) -> (usize, bool) {
    let mut j = start;
    // Parentheses opened inside the run: only those close in it (`((010) 123456)` is the
    // number `(010) 123456` in parentheses of the text's own).
    let mut open = 0u32;
    if b.get(j) == Some(&b'(') {
        j += 1;
        open += 1;
    }
    let (mut groups, mut digits, mut end) = (0usize, 0usize, start);
    loop {
        let from = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j == from {
            break;
        }
        groups += 1;
        digits += j - from;
        end = j;
        if groups > MAX_GROUPS || digits > MAX_DIGITS {
            break; // no candidate: the rest of the run is read by the next search
        }
        let mut k = j;
        let closed = open > 0 && b.get(k) == Some(&b')');
        k += usize::from(closed);
        open -= u32::from(closed);
        let separated = matches!(b.get(k), Some(b' ' | b'-' | b'.'));
        k += usize::from(separated);
        let opens = b.get(k) == Some(&b'(');
        k += usize::from(opens);
        open += u32::from(opens);
        if closed && !b.get(k).is_some_and(u8::is_ascii_digit) {
            end = j + 1; // the closing parenthesis of a number written `(050 123 4567)`
        }
        if k == j || !b.get(k).is_some_and(u8::is_ascii_digit) {
            break;
        }
        j = k;
    }
    let candidate =
        (2..=MAX_GROUPS).contains(&groups) && (MIN_DIGITS..=MAX_DIGITS).contains(&digits);
    (end.max(start + 1), candidate)
}

/// Whether the digit groups of a candidate are written as a phone number is: one space, dash
/// or dot between groups, parentheses around a group (`(021) 8350123`, `8 (495) 123-45-67`),
/// at least two groups.
fn written_as_phone(text: &str, groups: &[Range<usize>]) -> bool {
    if groups.len() < 2 || groups[0].start > 1 {
        return false;
    }
    let mut depth = 0i32;
    let first = std::iter::once(&text[..groups[0].start]);
    let gaps = first.chain(groups.windows(2).map(|w| &text[w[0].end..w[1].start]));
    for gap in gaps {
        let closes = gap.starts_with(')');
        let opens = gap.ends_with('(');
        let middle = &gap[usize::from(closes)..gap.len() - usize::from(opens)];
        depth += i32::from(opens) - i32::from(closes);
        let middle_ok = match middle {
            "" => closes || opens || gap.is_empty(),
            " " | "-" | "." => true,
            _ => false,
        };
        if !middle_ok || !(0..=1).contains(&depth) || (closes && opens && middle.is_empty()) {
            return false;
        }
    }
    match &text[groups[groups.len() - 1].end..] {
        "" => {}
        ")" => depth -= 1,
        _ => return false,
    }
    depth == 0
}

/// Shapes that the groups of some region may share but that are written for other things:
/// dates (`26.11.2024`, `2024-11-26`), year and page ranges (`2019-2024`, `120-135`),
/// reference numbers (`024509-8382`), round
/// amounts (`250 000 000`), dotted thousands (`1.234.567`) and dotted quads (`300.1.2.3`, an
/// address's shape).
fn not_a_phone(span: &str, groups: &[Range<usize>]) -> bool {
    let sep = |i: usize| &span[groups[i].end..groups[i + 1].start];
    let seps = 0..groups.len() - 1;
    let same_sep = seps.clone().all(|i| sep(i) == sep(0));
    let value = |g: &Range<usize>| span[g.clone()].parse::<u32>().unwrap_or(u32::MAX);
    let year = |g: &Range<usize>| g.len() == 4 && (1900..=2099).contains(&value(g));
    let day_or_month = |g: &Range<usize>| g.len() <= 2 && (1..=31).contains(&value(g));
    let dated = seps.clone().all(|i| matches!(sep(i), "-" | "." | "/"));
    if dated && same_sep && groups.len() == 3 {
        let [a, b, c] = [&groups[0], &groups[1], &groups[2]];
        if (year(a) && day_or_month(b) && day_or_month(c))
            || (day_or_month(a) && day_or_month(b) && (year(c) || c.len() == 2))
        {
            return true;
        }
    }
    if groups.len() == 2 && sep(0) == "-" && year(&groups[0]) && year(&groups[1]) {
        return true;
    }
    // A range of page or item numbers (`120-135`), or a reference number's shape: a long
    // first group and a dash (`024509-8382`).
    if groups.len() == 2
        && sep(0) == "-"
        && (groups.iter().all(|g| g.len() <= 3) || groups[0].len() >= 6)
    {
        return true;
    }
    // A round amount with spaces between thousands (`100 000`, `250 000 000`).
    let spaced = seps.clone().all(|i| sep(i) == " ");
    let last = &groups[groups.len() - 1];
    if spaced
        && groups[0].len() <= 3
        && groups[1..].iter().all(|g| g.len() == 3)
        && &span[last.clone()] == "000"
    {
        return true;
    }
    let dotted = seps.clone().all(|i| sep(i) == ".");
    if dotted && groups[0].len() <= 3 && groups[1..].iter().all(|g| g.len() == 3) {
        return true;
    }
    dotted && groups.len() == 4 && groups.iter().all(|g| g.len() <= 3)
}

/// The digit runs of a candidate, at most [`MAX_GROUPS`] (kept on the stack).
struct Groups {
    runs: [Range<usize>; MAX_GROUPS],
    len: usize,
}

impl Groups {
    /// The digit runs of `text`; `None` if there are more than [`MAX_GROUPS`].
    fn of(text: &str) -> Option<Self> {
        let mut out = Groups {
            runs: std::array::from_fn(|_| 0..0),
            len: 0,
        };
        let mut start = None;
        for (i, b) in text.bytes().chain([b' ']).enumerate() {
            match (b.is_ascii_digit(), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    *out.runs.get_mut(out.len)? = s..i;
                    out.len += 1;
                    start = None;
                }
                _ => {}
            }
        }
        Some(out)
    }

    fn as_slice(&self) -> &[Range<usize>] {
        &self.runs[..self.len]
    }
}

/// The national groupings of a set of regions (every region by default, or those an
/// operator names in `redaction.phone_regions`), indexed by the lengths of the groups they
/// write. Patterns are compiled on first use and kept.
pub struct NumberingPlans {
    regions: Vec<Region>,
    writings: Vec<Writing>,
    /// Written group lengths (the trunk prefix counted as written) → writings.
    by_lengths: HashMap<Vec<u8>, Vec<usize>>,
}

/// One region's plan: which national significant numbers are assigned.
struct Region {
    meta: &'static Metadata,
    /// The lengths a national number may have (bit per length; all when the plan says none).
    lengths: u32,
    assigned: OnceLock<Option<Regex>>,
    /// The first two digits an assigned number may have ([`Openings`]).
    assigned_openings: OnceLock<Openings>,
}

/// One way a region writes some of its numbers in national format.
struct Writing {
    region: usize,
    /// The trunk prefix's digits written before the number (`""` for none).
    prefix: String,
    /// The format's most specific leading-digits pattern (`None`: any number).
    leading: Option<&'static str>,
    leading_regex: OnceLock<Option<Regex>>,
    /// The first two digits a number this writing leads may have ([`Openings`]).
    leading_openings: OnceLock<Openings>,
}

/// Every region's plans, shared by every detector that uses them all.
static ALL: LazyLock<Arc<NumberingPlans>> =
    LazyLock::new(|| Arc::new(NumberingPlans::load(|_| true)));

impl NumberingPlans {
    /// Every region's plans (loaded once per process: about 0.2 s of one core, as the crate
    /// compiles its metadata's expressions; a detector loads them when it is built, so that
    /// the first request does not wait).
    pub fn all() -> Arc<Self> {
        Arc::clone(&ALL)
    }

    /// The plans of the named regions only (ISO 3166 codes as libphonenumber names them:
    /// `US`, `GB`, `DE` …); an unknown code is an error that names it.
    pub fn only(regions: &[String]) -> Result<Self, String> {
        if let Some(bad) = regions
            .iter()
            .find(|r| DATABASE.by_id(r.as_str()).is_none())
        {
            return Err(format!(
                "unknown phone region `{bad}` (use ISO 3166 codes such as US, GB, DE)"
            ));
        }
        Ok(Self::load(|id| regions.iter().any(|r| r == id)))
    }

    /// The span of `text` (a candidate: a run of digits, spaces, dashes, dots and
    /// parentheses) that is a national-format number of one of these regions. Only the
    /// whole run counts: a phone number's groups are also found inside ISBNs
    /// (`978-90-345-0790-7`), card numbers and account numbers, which are not phone numbers.
    ///
    /// Each grouping of some region with the run's group lengths is charged to `cost`
    /// ([`cost::PER_OPENING_TEST`]: up to a hundred or so for a common shape such as
    /// `123 4567`), and each whose openings admit the run again before its patterns run
    /// ([`cost::PER_GROUPING`]), so that the bound on a body's redaction holds for runs of
    /// digit groups.
    pub fn national_number(
        &self,
        text: &str,
        cost: &mut Cost,
    ) -> Result<Option<Range<usize>>, TooComplex> {
        let Some(groups) = Groups::of(text) else {
            return Ok(None);
        };
        let groups = groups.as_slice();
        // The shape first: it costs no grouping.
        let digits: usize = groups.iter().map(|g| g.len()).sum();
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits)
            || !written_as_phone(text, groups)
            || not_a_phone(text, groups)
        {
            return Ok(None);
        }
        let writings = self.writings_for(groups);
        cost.charge(writings.len() as u64 * cost::PER_OPENING_TEST)?;
        let found = self.is_national_number(text, groups, writings, cost)?;
        Ok(found.then_some(0..text.len()))
    }

    /// The groupings of these regions that write numbers with the lengths of `groups`.
    fn writings_for(&self, groups: &[Range<usize>]) -> &[usize] {
        let mut lengths = [0u8; MAX_GROUPS];
        for (l, g) in lengths.iter_mut().zip(groups) {
            *l = g.len() as u8;
        }
        self.by_lengths
            .get(&lengths[..groups.len()])
            .map_or(&[], Vec::as_slice)
    }

    /// Whether the groups of `span` (of a phone number's shape) are a valid number written
    /// as its region writes it. Allocation-free: it runs on every candidate run of digits.
    /// Each grouping whose openings admit the number is charged before its patterns run.
    fn is_national_number(
        &self,
        span: &str,
        groups: &[Range<usize>],
        writings: &[usize],
        cost: &mut Cost,
    ) -> Result<bool, TooComplex> {
        let mut digits = [0u8; MAX_DIGITS];
        let mut n = 0;
        for g in groups {
            if n + g.len() > MAX_DIGITS {
                return Ok(false);
            }
            digits[n..n + g.len()].copy_from_slice(&span.as_bytes()[g.clone()]);
            n += g.len();
        }
        let Ok(digits) = std::str::from_utf8(&digits[..n]) else {
            return Ok(false);
        };
        for &w in writings {
            let writing = &self.writings[w];
            let Some(national) = digits.strip_prefix(writing.prefix.as_str()) else {
                continue;
            };
            let region = &self.regions[writing.region];
            if !(region.may_be(national)
                && writing.may_lead(national)
                && region.may_assign(national))
            {
                continue;
            }
            cost.charge(cost::PER_GROUPING)?;
            if writing.leads(national) && region.assigns(national) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The number types a person can be called at (not short codes, emergency or carrier codes).
fn callable(meta: &'static Metadata) -> impl Iterator<Item = &'static Descriptor> {
    let meta = meta.descriptors();
    [
        meta.fixed_line(),
        meta.mobile(),
        meta.toll_free(),
        meta.premium_rate(),
        meta.shared_cost(),
        meta.personal_number(),
        meta.voip(),
        meta.pager(),
        meta.uan(),
        meta.voicemail(),
    ]
    .into_iter()
    .flatten()
}

/// A pattern of the metadata compiled to match a whole number (`whole`) or its start. The
/// metadata's patterns keep the XML file's line breaks and indentation, which are not part
/// of them.
fn compile(pattern: &str, whole: bool) -> Option<Regex> {
    let pattern: String = pattern.chars().filter(|c| !c.is_whitespace()).collect();
    let source = if whole {
        format!("^(?:{pattern})$")
    } else {
        format!("^(?:{pattern})")
    };
    Regex::builder()
        .syntax(regex_automata::util::syntax::Config::new().unicode(false))
        .build(&source)
        .ok()
}

impl Region {
    /// Whether a national number of this length may exist (the cheap test, first).
    fn may_be(&self, national: &str) -> bool {
        national.len() < 32 && self.lengths >> national.len() & 1 == 1
    }

    /// The bit set of [`Region::lengths`] for a plan.
    fn lengths_of(meta: &Metadata) -> u32 {
        let possible = meta.descriptors().general().possible_length();
        if possible.is_empty() {
            return u32::MAX;
        }
        possible
            .iter()
            .filter(|&&l| l < 32)
            .fold(0, |set, &l| set | 1 << l)
    }

    /// The patterns of every number type a person can be called at, as one alternation.
    fn callable_pattern(&self) -> Option<String> {
        let alternatives: Vec<String> = callable(self.meta)
            .map(|d| format!("(?:{})", d.national_number().as_str()))
            .collect();
        (!alternatives.is_empty()).then(|| alternatives.join("|"))
    }

    /// Whether `national` (digits, without trunk prefix) is an assigned number.
    fn assigns(&self, national: &str) -> bool {
        let regex = self
            .assigned
            .get_or_init(|| self.callable_pattern().and_then(|p| compile(&p, true)));
        regex.as_ref().is_some_and(|r| r.is_match(national))
    }

    /// Whether an assigned number may open as `national` does (the cheap test of
    /// [`Openings`]; `false` only where [`Self::assigns`] is false).
    fn may_assign(&self, national: &str) -> bool {
        self.assigned_openings
            .get_or_init(|| {
                self.callable_pattern()
                    .map_or(Openings::NONE, |p| Openings::of(&p))
            })
            .admit(national.as_bytes())
    }
}

impl Writing {
    /// Whether this grouping may be the one for numbers opening as `national` does (the
    /// cheap test of [`Openings`]; `false` only where [`Self::leads`] is false).
    fn may_lead(&self, national: &str) -> bool {
        let Some(pattern) = self.leading else {
            return true;
        };
        self.leading_openings
            .get_or_init(|| Openings::of(pattern))
            .admit(national.as_bytes())
    }

    /// Whether this grouping is the one for numbers starting as `national` does.
    fn leads(&self, national: &str) -> bool {
        let Some(pattern) = self.leading else {
            return true;
        };
        self.leading_regex
            .get_or_init(|| compile(pattern, false))
            .as_ref()
            .is_some_and(|r| r.is_match(Input::new(national).anchored(Anchored::Yes)))
    }
}

impl NumberingPlans {
    fn load(wanted: impl Fn(&str) -> bool) -> Self {
        let mut plans = NumberingPlans {
            regions: Vec::new(),
            writings: Vec::new(),
            by_lengths: HashMap::new(),
        };
        for meta in DATABASE.iter() {
            if meta.id() == "001" || !wanted(meta.id()) {
                continue; // non-geographic numbers are written with their +800 / +882 … code
            }
            let region = plans.regions.len();
            plans.regions.push(Region {
                meta,
                lengths: Region::lengths_of(meta),
                assigned: OnceLock::new(),
                assigned_openings: OnceLock::new(),
            });
            for format in formats_of(meta) {
                let (Some(captures), Some(written)) = (
                    capture_lengths(format.pattern().as_str()),
                    written_groups(format.format()),
                ) else {
                    continue; // a format that writes literal digits (`$2 15-$3-$4`): not indexed
                };
                let Some(lengths) = group_lengths(&captures, &written) else {
                    continue;
                };
                let trunk = meta.national_prefix().unwrap_or("");
                let none = Prefix::default();
                let mut ways = Vec::new();
                match format
                    .national_prefix()
                    .and_then(|rule| prefix_of(rule, trunk))
                {
                    Some(prefix) if !prefix.digits.is_empty() => {
                        ways.push(prefix);
                        if format.is_national_prefix_optional() {
                            ways.push(none);
                        }
                    }
                    _ => ways.push(none),
                }
                for prefix in ways {
                    let writing = plans.writings.len();
                    for mut key in lengths.iter().cloned() {
                        key[0] += prefix.glued;
                        key.splice(0..0, prefix.apart.iter().copied());
                        let entry = plans.by_lengths.entry(key).or_default();
                        if entry.last() != Some(&writing) {
                            entry.push(writing);
                        }
                    }
                    plans.writings.push(Writing {
                        region,
                        prefix: prefix.digits,
                        leading: format.leading_digits().last().map(|r| r.as_str()),
                        leading_regex: OnceLock::new(),
                        leading_openings: OnceLock::new(),
                    });
                }
            }
        }
        plans
    }
}

/// A region's national formats; a region that shares its country code with a main one
/// (Jersey and Guernsey with the United Kingdom, Åland with Finland) writes its numbers as
/// the main region does.
fn formats_of(meta: &'static Metadata) -> &'static [phonenumber::metadata::Format] {
    if !meta.formats().is_empty() {
        return meta.formats();
    }
    DATABASE
        .by_code(&meta.country_code())
        .and_then(|all| all.into_iter().find(|m| m.is_main_country_for_code()))
        .map_or(&[], |main| main.formats())
}

/// The length range of each capture of a format pattern made of `(\d{a,b})` groups only.
fn capture_lengths(pattern: &str) -> Option<Vec<(u8, u8)>> {
    let pattern: String = pattern.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    let mut rest = pattern.as_str();
    while !rest.is_empty() {
        let inner = rest.strip_prefix("(\\d")?;
        let close = inner.find(')')?;
        let count = &inner[..close];
        rest = &inner[close + 1..];
        out.push(
            match count.strip_prefix('{').and_then(|c| c.strip_suffix('}')) {
                None if count.is_empty() => (1, 1),
                None => return None,
                Some(c) => match c.split_once(',') {
                    Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                    None => {
                        let n = c.parse().ok()?;
                        (n, n)
                    }
                },
            },
        );
    }
    Some(out)
}

/// Which captures each written group joins (`$1 $2-$3` → [[1], [2], [3]]), when the format
/// writes nothing but captures and separators.
fn written_groups(format: &str) -> Option<Vec<Vec<usize>>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut open = false;
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match c {
            '$' => {
                let n = chars.next()?.to_digit(10)? as usize;
                if !open {
                    out.push(Vec::new());
                    open = true;
                }
                out.last_mut()?.push(n);
            }
            ' ' | '-' | '.' | '(' | ')' | '/' => open = false,
            _ => return None,
        }
    }
    Some(out)
}

/// Every combination of written group lengths a format produces (bounded: formats have few
/// variable captures).
fn group_lengths(captures: &[(u8, u8)], written: &[Vec<usize>]) -> Option<Vec<Vec<u8>>> {
    let mut all: Vec<Vec<u8>> = vec![Vec::new()];
    for group in written {
        let mut ranges = Vec::new();
        for &n in group {
            ranges.push(*captures.get(n.checked_sub(1)?)?);
        }
        let lo: u8 = ranges.iter().map(|r| r.0).sum();
        let hi: u8 = ranges.iter().map(|r| r.1).sum();
        all = all
            .into_iter()
            .flat_map(|prefix| {
                (lo..=hi).map(move |len| {
                    let mut next = prefix.clone();
                    next.push(len);
                    next
                })
            })
            .collect();
        if all.len() > 256 {
            return None;
        }
    }
    Some(all)
}

/// How a formatting rule writes the trunk prefix before the first group.
#[derive(Debug, Default, PartialEq)]
struct Prefix {
    /// Its digits (`0`, `8`, `80`).
    digits: String,
    /// The lengths of its parts written as groups of their own (`8 (495) …` → `[1]`).
    apart: Vec<u8>,
    /// How many of its digits open the first group (`020 …` → 1).
    glued: u8,
}

/// The trunk prefix a formatting rule writes before the first group, from the region's trunk
/// prefix: `$NP$FG` → `0` glued; `$NP $FG` and `$NP ($FG)` → apart; `$NP 0$FG` (Belarus) →
/// `8` apart and `0` glued; `($FG)` → none.
fn prefix_of(rule: &str, trunk: &str) -> Option<Prefix> {
    let written = rule[..rule.find("$FG")?].replace("$NP", trunk);
    let parts: Vec<u8> = written
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.len() as u8)
        .collect();
    let digits: String = written.chars().filter(char::is_ascii_digit).collect();
    let glued = !written.trim_end_matches('(').ends_with([' ', '-', ')']);
    Some(match parts.split_last() {
        Some((&last, rest)) if glued => Prefix {
            digits,
            apart: rest.to_vec(),
            glued: last,
        },
        _ => Prefix {
            digits,
            apart: parts,
            glued: 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `plans.national_number` without a bound on the work.
    fn national(plans: &NumberingPlans, text: &str) -> Option<Range<usize>> {
        plans.national_number(text, &mut Cost::unlimited()).unwrap()
    }

    /// The openings test never refuses what the patterns take: for numbers opening with
    /// every two digits, in every region, a refused opening is one no pattern matches.
    #[test]
    fn openings_refuse_only_what_the_patterns_refuse() {
        let plans = NumberingPlans::all();
        let mut refused = 0;
        for opening in 0..100 {
            for tail in ["1234567", "0000000", "9876543210", "55501"] {
                let national = format!("{opening:02}{tail}");
                for writing in &plans.writings {
                    let region = &plans.regions[writing.region];
                    if !writing.may_lead(&national) {
                        refused += 1;
                        assert!(
                            !writing.leads(&national),
                            "{national} {:?}",
                            writing.leading
                        );
                    }
                    if !region.may_assign(&national) {
                        refused += 1;
                        assert!(
                            !region.assigns(&national),
                            "{national} {}",
                            region.meta.id()
                        );
                    }
                }
            }
        }
        assert!(refused > 100_000, "the test refuses little: {refused}");
    }

    #[test]
    fn national_formats_of_several_plans() {
        for number in [
            "020 7946 0958", // GB, trunk prefix glued to the area code
            "(021) 8350123", // the area code in parentheses
            "030 123456",    // DE
            "01 23 45 67 89",
            "912 345 678",       // ES, no trunk prefix
            "22 50 12 34",       // DK
            "8 (495) 123-45-67", // RU: the trunk prefix apart, the area code in parentheses
            "8 017 123-45-67",   // BY: `8` apart, then `0` before the area code
        ] {
            assert_eq!(
                national(&NumberingPlans::all(), number),
                Some(0..number.len()),
                "{number} is a national number"
            );
        }
    }

    #[test]
    fn other_numbers_are_not() {
        for text in [
            "2024-11-26",
            "26.11.2024",
            "2019-2024",
            "120-135",
            "024509-8382",
            "250 000 000",
            "1.234.567",
            "19 99",
            "1 2 3 4 5 6",
            "000 000 000",
        ] {
            assert_eq!(national(&NumberingPlans::all(), text), None, "{text}");
        }
    }

    #[test]
    fn an_operator_may_name_the_regions() {
        let gb = NumberingPlans::only(&["GB".into()]).unwrap();
        assert!(national(&gb, "020 7946 0958").is_some());
        assert!(national(&gb, "912 345 678").is_none(), "Spanish");
        let err = NumberingPlans::only(&["XX".into()]).err().unwrap();
        assert!(err.contains("`XX`"), "{err}");
    }

    #[test]
    fn only_a_whole_run_counts() {
        let text = "tel_415-555-0132, 2024-11-26T10:30, 020 7946 0958 7";
        assert!(!national_stands_alone(text, 8, 16), "555-0132");
        assert!(!national_stands_alone(text, 18, 25), "2024-11");
        assert!(!national_stands_alone(text, 35, 48), "020 7946 0958");
        assert!(national_stands_alone("call 020 7946 0958.", 5, 18));
        assert_eq!(
            national(&NumberingPlans::all(), "020  7946 0958"),
            None,
            "two spaces"
        );
        assert_eq!(
            national(&NumberingPlans::all(), "020 7946 0958)"),
            None,
            "unbalanced"
        );
    }

    #[test]
    fn runs_are_found_whole() {
        let text = "ISBN 978-90-345-0790-7, call (050 123 4567) or 8 (495) 123-45-67.";
        assert_eq!(next_digit_run(text, 0), Some((5, 22)));
        assert_eq!(
            next_digit_run(text, 6),
            Some((29, 43)),
            "not inside the ISBN"
        );
        assert_eq!(&text[47..65], "8 (495) 123-45-67.");
        assert_eq!(next_digit_run(text, 44), Some((47, 64)));
        assert_eq!(next_digit_run("v1.2 and 12 34", 0), None, "too few digits");
        assert_eq!(
            next_digit_run("id_020 7946 0958", 0),
            None,
            "glued to a word"
        );
    }

    #[test]
    fn the_metadata_formats_are_read() {
        assert_eq!(
            capture_lengths(r"(\d{2})(\d{3,4})(\d)"),
            Some(vec![(2, 2), (3, 4), (1, 1)])
        );
        assert_eq!(capture_lengths(r"(\d+)"), None);
        assert_eq!(
            written_groups("$1 $2-$3"),
            Some(vec![vec![1], vec![2], vec![3]])
        );
        assert_eq!(written_groups("$2 15-$3-$4"), None);
        let prefix = |digits: &str, apart: &[u8], glued: u8| {
            Some(Prefix {
                digits: digits.into(),
                apart: apart.to_vec(),
                glued,
            })
        };
        assert_eq!(prefix_of("$NP$FG", "0"), prefix("0", &[], 1));
        assert_eq!(prefix_of("($NP$FG)", "0"), prefix("0", &[], 1));
        assert_eq!(prefix_of("$NP $FG", "8"), prefix("8", &[1], 0));
        assert_eq!(prefix_of("$NP ($FG)", "8"), prefix("8", &[1], 0));
        assert_eq!(prefix_of("$NP 0$FG", "8"), prefix("80", &[1], 1));
        assert_eq!(prefix_of("($FG)", "0"), prefix("", &[], 0));
        assert!(
            NumberingPlans::all().regions.len() > 240,
            "every region's plan is loaded"
        );
    }
}
