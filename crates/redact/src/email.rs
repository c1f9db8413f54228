//! Email addresses: RFC 5321/5322 syntax (every `atext` character, dot-atoms, quoted local
//! parts) and RFC 6531 internationalised addresses (local parts and domains in any script,
//! IDN top-level labels and their `xn--` forms). Each `@` is found by `memchr`, the start of
//! its local part by walking back from it, and the address by the regex anchored there: an
//! unanchored search would have to track every place in the last 64 characters where a local
//! part could start, which thrashes a lazy DFA's cache on text full of `.`, `+` and `-`.

use crate::cost::{self, Cost, TooComplex};
use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};

/// An address from the start of its local part: a quoted string or a dot-atom, `@`, labels
/// of letters, marks, digits and `-` (any script) each followed by `.`, and a top-level
/// label: an `xn--` A-label, or two or more letters. No counted repetition (over Unicode
/// classes it would blow up the automaton): the code bounds the local part (it chooses the
/// start, at most 64 characters before the `@`) and the search (it ends at the end of the
/// domain's run of characters).
pub const EMAIL: &str = concat!(
    r#"(?:"(?:[^"\\\r\n]|\\[^\r\n])+"|[\p{L}\p{M}\p{N}!#$%&'*+/=?^_`{|}~.-]+)"#,
    r"@(?:[\p{L}\p{M}\p{N}](?:[\p{L}\p{M}\p{N}-]*[\p{L}\p{M}\p{N}])?\.)+",
    r"(?:[Xx][Nn]--[A-Za-z0-9-]+|\p{L}[\p{L}\p{M}]+)",
);

/// The most characters a local part holds (RFC 5321).
const MAX_LOCAL: usize = 64;

/// The most opening quotes tried for one quoted local part.
const MAX_QUOTE_TRIES: usize = 3;

/// The leftmost email address starting at `at` or later. Every `@` looked at is charged for
/// the bytes read around it and a search per anchored try.
pub fn next_email(
    regex: &Regex,
    text: &str,
    at: usize,
    cost: &mut Cost,
) -> Result<Option<(usize, usize)>, TooComplex> {
    next_email_before(regex, text, at, text.len(), cost)
}

/// The email address that starts exactly at `start`, if one does (for a retry after another
/// pattern failed there): only the `@` signs a local part from `start` could reach are tried,
/// so a retry reads a bounded span.
pub fn email_at(
    regex: &Regex,
    text: &str,
    start: usize,
    cost: &mut Cost,
) -> Result<Option<(usize, usize)>, TooComplex> {
    let reach = (start + 4 * (2 * MAX_LOCAL + 2)).min(text.len());
    Ok(next_email_before(regex, text, start, reach, cost)?.filter(|(s, _)| *s == start))
}

/// [`next_email`] for the `@` signs before `until`.
fn next_email_before(
    regex: &Regex,
    text: &str,
    at: usize,
    until: usize,
    cost: &mut Cost,
) -> Result<Option<(usize, usize)>, TooComplex> {
    let b = &text.as_bytes()[..until];
    let mut from = at;
    // An unquoted local part holds no `@`, so it never reaches back past the previous one:
    // each byte is walked back over at most once.
    let mut floor = at;
    while let Some(rel) = memchr::memchr(b'@', &b[from..]) {
        let sign = from + rel;
        from = sign + 1;
        let lowest = floor;
        floor = sign + 1;
        let Some(domain_end) = domain_end(text, sign, cost)? else {
            continue;
        };
        let starts = if sign > at && b[sign - 1] == b'"' {
            opening_quotes(b, at, sign)
        } else {
            unquoted_start(text, lowest, sign).into_iter().collect()
        };
        for start in starts {
            cost.charge(cost::PER_SEARCH)?;
            let input = Input::new(text)
                .range(start..domain_end)
                .anchored(Anchored::Yes);
            if let Some(m) = regex.search(&input)
                && m.end() > sign + 1
            {
                return Ok(Some((m.start(), m.end())));
            }
        }
    }
    Ok(None)
}

/// Whether a local part character: RFC 5322 `atext`, `.`, or a letter, mark or digit of any
/// script (RFC 6531).
fn local_char(c: char) -> bool {
    c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c) || unicode_mark(c)
}

/// Combining marks (as in `ईन्फो`, `ṩ`).
fn unicode_mark(c: char) -> bool {
    unicode_normalization::char::is_combining_mark(c)
}

/// The start of an unquoted local part ending at `sign`: back over local characters, at most
/// [`MAX_LOCAL`] of them and not before `lowest`, then past any leading dots.
fn unquoted_start(text: &str, lowest: usize, sign: usize) -> Option<usize> {
    let mut start = sign;
    for (taken, (i, c)) in text[lowest..sign].char_indices().rev().enumerate() {
        if taken == MAX_LOCAL || !local_char(c) {
            break;
        }
        start = lowest + i;
    }
    // A run that a letter-less character such as `:` or `;` opens is inside a URL or a
    // header parameter (`https://host/?to=jane@…`, `png;name=jane@…`): there the address
    // starts after the run's last `/`, `=`, `?` or `&`. After a space, a quote or a bracket
    // the whole run is the local part (`user+mailbox/department=shipping@…`).
    let opener = text[..start].chars().next_back();
    let in_url = opener.is_some_and(|c| c == ':' || c == ';');
    let start = match text[start..sign].rfind(['/', '=', '?', '&']) {
        Some(i) if in_url => start + i + 1,
        _ => start,
    };
    let start = start + text[start..sign].len() - text[start..sign].trim_start_matches('.').len();
    (start < sign).then_some(start)
}

/// Candidate opening quotes of a quoted local part whose closing quote is just before `sign`:
/// going left, each `"` not escaped by a `\`, the nearest first, within the longest quoted
/// local part and not before `at`.
fn opening_quotes(b: &[u8], at: usize, sign: usize) -> Vec<usize> {
    let lowest = at.max(sign.saturating_sub(2 * MAX_LOCAL + 2));
    let close = sign - 1;
    (lowest..close)
        .rev()
        .filter(|&q| b[q] == b'"' && (q == 0 || b[q - 1] != b'\\'))
        .take(MAX_QUOTE_TRIES)
        .collect()
}

/// Where the domain after `sign` can end, if it can be one: its run of letters, marks,
/// digits, `.` and `-` (which holds no `@`, so no byte is read for two signs) must start with
/// a letter or digit and hold a `.` then a letter. Charges the run.
fn domain_end(text: &str, sign: usize, cost: &mut Cost) -> Result<Option<usize>, TooComplex> {
    let domain = &text[sign + 1..];
    let first_ok = domain.chars().next().is_some_and(char::is_alphanumeric);
    let mut dot_then_letter = false;
    let mut previous_dot = false;
    let mut read = 0;
    for (i, c) in domain.char_indices() {
        if !(c.is_alphanumeric() || c == '.' || c == '-' || unicode_mark(c)) {
            break;
        }
        dot_then_letter |= previous_dot && c.is_alphabetic();
        previous_dot = c == '.';
        read = i + c.len_utf8();
    }
    cost.charge(read as u64)?;
    Ok((first_ok && dot_then_letter).then_some(sign + 1 + read))
}

#[cfg(test)]
mod tests {
    use crate::Detector;

    fn emails(t: &str) -> Vec<String> {
        Detector::new(&[])
            .unwrap()
            .find(t)
            .into_iter()
            .filter(|f| f.entity.name() == "EMAIL")
            .map(|f| t[f.start..f.end].to_owned())
            .collect()
    }

    #[test]
    fn local_parts_of_every_allowed_form() {
        assert_eq!(emails("x.jane@example.com"), ["x.jane@example.com"]);
        assert_eq!(emails("_jane@example.com"), ["_jane@example.com"]);
        assert_eq!(emails("-jane@example.com"), ["-jane@example.com"]);
        assert_eq!(emails("see .jane@example.com"), ["jane@example.com"]);
        assert_eq!(
            emails("u: user+mailbox/department=shipping@example.tld"),
            ["user+mailbox/department=shipping@example.tld"]
        );
        assert_eq!(
            emails("use !#$%&'*+-/=?^_`.{|}~@example.tld now"),
            ["!#$%&'*+-/=?^_`.{|}~@example.tld"]
        );
        assert_eq!(
            emails(r#"See "quoted local part"@example.org above."#),
            [r#""quoted local part"@example.org"#]
        );
        assert_eq!(
            emails(r#"x "escaped.quote.\".local.part"@example.org"#),
            [r#""escaped.quote.\".local.part"@example.org"#]
        );
        assert_eq!(emails("a@b@example.com"), ["b@example.com"]);
        assert_eq!(
            emails("https://h.example/?e=jane@example.com&x"),
            ["jane@example.com"]
        );
        assert_eq!(
            emails("data:text/plain;name=jane@example.com"),
            ["jane@example.com"]
        );
    }

    #[test]
    fn internationalised_addresses() {
        for address in [
            "jeff@臺網中心.tw",
            "葉士豪@臺網中心.台灣",
            "юзер@екзампл.ком",
            "θσερ@εχαμπλε.ψομ",
            "राम@मोहन.ईन्फो",
            "ñoñó@example.tld",
            "test@xn--hxajbheg2az3al.xn--jxalpdlp",
        ] {
            assert_eq!(emails(&format!("({address})")), [address], "{address}");
        }
    }

    #[test]
    fn long_local_parts_keep_their_last_64_characters() {
        let long = format!("{}@example.com", "a".repeat(70));
        assert_eq!(emails(&long), [long[6..].to_owned()]);
        let wide = format!("{}@example.com", "葉".repeat(70));
        assert_eq!(emails(&wide), [wide[6 * 3..].to_owned()]);
    }

    #[test]
    fn not_addresses() {
        assert!(emails("a @ b.com, x@y, x@.com, x@localhost").is_empty());
        assert!(emails("@example.com").is_empty());
    }
}
