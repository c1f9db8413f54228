//! A deterministic bound on the work of redacting one request, so that no body can make
//! redaction take seconds of CPU.
//!
//! The cost is counted in units of about one byte scanned by the regex engine, never by the
//! clock (the same body always costs the same, on any machine): every search (of each of the
//! few searches the detectors run, see `detector.rs`) is charged a fixed charge plus the bytes
//! from where it starts to the end of what it found (or of the text), every `@` an email is
//! looked for around the bytes of its domain and a search, every candidate a fixed charge plus
//! its length (its check reads it), every further pattern tried at the same place a fixed
//! charge, every finding a fixed charge plus its length (its placeholder), every text field a
//! fixed charge, and the code that extends a private key block or a JWT the bytes it reads.
//! Ordinary text costs about ten units per byte (about a nanosecond a unit);
//! a body of near-miss candidates (digit groups, dotted numbers, openings of tokens that
//! never complete) costs much more, and redaction stops as soon as the total passes the
//! bound.
//!
//! The charge of a search is exact only if no pattern can keep the engine scanning far past
//! the match it reports: the built-in patterns are written so (unbounded bodies are extended by
//! code, see `extend.rs`); a custom regular expression should bound its runs likewise.

/// The default bound on one request's redaction: 64 million units. A unit costs 0.8 to 6
/// ns of one core (`cargo bench -p warden-redact --bench throughput`), so the bound is about
/// 100 to 400 ms of work at most whatever the text, while 4 MiB of prose, code, JSON and logs
/// costs about 24 million, of random base64 or a lock file about 21 million, of JSON with
/// 19-digit ids about 51 million and of an nginx access log about 53 million (its `200 1234`
/// status and size fields are phone-shaped); a table of 13-digit millisecond timestamps
/// (about 100 million: each number is a card candidate that fails) is refused.
pub const DEFAULT_MAX_COST: u64 = 64_000_000;

/// A text field (a message's content, a name, a tool result).
pub(crate) const PER_FIELD: u64 = 64;
/// A regex search started (its setup costs about as much as an anchored retry).
pub(crate) const PER_SEARCH: u64 = 48;
/// A candidate the regex found, checked.
pub(crate) const PER_CANDIDATE: u64 = 64;
/// A further pattern tried at the place of a candidate whose check failed.
pub(crate) const PER_RETRY: u64 = 48;
/// One region's national grouping looked at for a run of digit groups: its trunk prefix,
/// the number's possible lengths and the first two digits its patterns admit (a few
/// nanoseconds; `validate/numbering.rs`).
pub(crate) const PER_OPENING_TEST: u64 = 4;
/// One region's national grouping whose openings admit the run, tested by its patterns (its
/// leading digits, then its numbering plan): 13 to 20 ns each, measured on this machine's
/// release build.
pub(crate) const PER_GROUPING: u64 = 16;
/// A finding masked.
pub(crate) const PER_FINDING: u64 = 64;
/// A value seen for the first time: its placeholder made and remembered.
pub(crate) const PER_NEW_VALUE: u64 = 192;
/// A `<` looked at for placeholder-shaped text.
pub(crate) const PER_ANGLE: u64 = 8;

/// The work spent on one request so far, against its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    spent: u64,
    limit: Option<u64>,
}

impl Cost {
    /// A fresh count with this bound; `None` is unbounded.
    pub fn new(limit: Option<u64>) -> Self {
        Self { spent: 0, limit }
    }

    /// A fresh count without a bound.
    pub fn unlimited() -> Self {
        Self::new(None)
    }

    /// Units spent so far.
    pub fn spent(&self) -> u64 {
        self.spent
    }

    /// Adds `units`; past the bound, the work must stop.
    pub(crate) fn charge(&mut self, units: u64) -> Result<(), TooComplex> {
        self.spent = self.spent.saturating_add(units);
        match self.limit {
            Some(limit) if self.spent > limit => Err(TooComplex { limit }),
            _ => Ok(()),
        }
    }
}

/// Redacting the text would cost more than its bound: nothing of it may be sent anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooComplex {
    /// The bound that was passed (`redaction.max_cost`).
    pub limit: u64,
}

impl std::fmt::Display for TooComplex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request is too complex to redact: scanning it for personal data and secrets \
             would cost more than the bound of {} units (redaction.max_cost); send less text, \
             or fewer number-like or token-like sequences",
            self.limit
        )
    }
}

impl std::error::Error for TooComplex {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_refuses_past_its_bound_and_an_unbounded_one_never() {
        let mut c = Cost::new(Some(10));
        assert!(c.charge(10).is_ok());
        assert_eq!(c.charge(1), Err(TooComplex { limit: 10 }));
        assert_eq!(c.spent(), 11);
        let mut u = Cost::unlimited();
        assert!(u.charge(u64::MAX).is_ok() && u.charge(1).is_ok());
    }
}
