//! Text as the detectors see it. A value can be disguised without changing what a reader (or
//! a model) takes it for: full-width or other-script digits (`４１１１…`, `٤١١١…`), `＠` for
//! `@`, a zero-width space or a soft hyphen inside a number, a no-break space between its
//! groups, `%40` for `@`. The detectors run on a normalised copy in which each character is
//! replaced by its NFKC form when that form is ASCII, Unicode decimal digits become ASCII
//! digits, dashes become `-`, spaces become ` `, format characters (zero-width, soft hyphen,
//! bidi controls, variation selectors) disappear, and `%40` becomes `@`. Each finding is mapped
//! back to the original text, so the original span is what gets masked.
//!
//! Characters whose NFKC form is not ASCII are kept as they are: a Cyrillic `а` stays Cyrillic
//! (the email detector accepts internationalised domains), and the text stays readable.

use unicode_normalization::UnicodeNormalization;

/// A normalised copy of a text and the map back to the original's byte offsets.
#[derive(Debug)]
pub(crate) struct Normalized {
    /// What the detectors scan.
    pub text: String,
    /// Every replaced (or dropped) character, in order: where its replacement is in `text`
    /// and where the character was in the original.
    spans: Vec<Span>,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    norm_start: usize,
    norm_len: usize,
    orig_start: usize,
    orig_len: usize,
}

impl Normalized {
    /// The original offset of a finding that starts at `at` in the normalised text.
    pub fn start(&self, at: usize) -> usize {
        match self.last_span_at_or_before(at) {
            None => at,
            Some(s) if at < s.norm_start + s.norm_len => s.orig_start,
            Some(s) => s.orig_start + s.orig_len + (at - s.norm_start - s.norm_len),
        }
    }

    /// The original offset of a finding that ends (exclusively) at `end` in the normalised
    /// text: the end of the original character that produced its last byte.
    pub fn end(&self, end: usize) -> usize {
        if end == 0 {
            return 0;
        }
        let last = end - 1;
        match self.last_span_containing(last) {
            Some(s) => s.orig_start + s.orig_len,
            None => self.start(last) + 1,
        }
    }

    fn last_span_at_or_before(&self, at: usize) -> Option<&Span> {
        let i = self.spans.partition_point(|s| s.norm_start <= at);
        self.spans[..i].last()
    }

    fn last_span_containing(&self, at: usize) -> Option<&Span> {
        let i = self.spans.partition_point(|s| s.norm_start <= at);
        self.spans[..i]
            .last()
            .filter(|s| at < s.norm_start + s.norm_len)
    }
}

/// The normalised copy of `text`, or `None` when normalising changes nothing (ASCII text
/// without `%40`: the common case, checked without copying).
pub(crate) fn normalize(text: &str) -> Option<Normalized> {
    if text.is_ascii() && !has_percent_at(text) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut spans = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '%' && is_percent_at(&text[at..]) {
            chars.next();
            chars.next();
            spans.push(Span {
                norm_start: out.len(),
                norm_len: 1,
                orig_start: at,
                orig_len: 3,
            });
            out.push('@');
            continue;
        }
        if c.is_ascii() {
            out.push(c);
            continue;
        }
        let norm_start = out.len();
        let replaced = replace(c, &mut out);
        if replaced {
            spans.push(Span {
                norm_start,
                norm_len: out.len() - norm_start,
                orig_start: at,
                orig_len: c.len_utf8(),
            });
        } else {
            out.push(c);
        }
    }
    if spans.is_empty() {
        return None;
    }
    Some(Normalized { text: out, spans })
}

/// Writes what `c` (not ASCII) becomes, and says whether it changed.
fn replace(c: char, out: &mut String) -> bool {
    if is_format(c) {
        return true; // dropped
    }
    if let Some(d) = decimal_digit(c) {
        out.push(char::from(b'0' + d));
        return true;
    }
    if is_dash(c) {
        out.push('-');
        return true;
    }
    if c.is_whitespace() {
        out.push(if c == '\u{2028}' || c == '\u{2029}' {
            '\n'
        } else {
            ' '
        });
        return true;
    }
    let mut folded = [0u8; 16];
    let mut len = 0;
    for n in std::iter::once(c).nfkc() {
        if !n.is_ascii() || len == folded.len() {
            return false;
        }
        folded[len] = n as u8;
        len += 1;
    }
    // NFKC of a non-ASCII character is never empty; all ASCII here.
    out.push_str(std::str::from_utf8(&folded[..len]).unwrap_or_default());
    len > 0
}

fn has_percent_at(text: &str) -> bool {
    memchr::memmem::find_iter(text.as_bytes(), b"%4").any(|i| is_percent_at(&text[i..]))
}

/// `%40` (the percent-encoding of `@`) at the start of `s`.
fn is_percent_at(s: &str) -> bool {
    s.as_bytes().get(..3) == Some(b"%40")
}

/// Format characters (general category Cf) and other invisible characters that can sit
/// inside a value without showing: zero-width spaces and joiners, the soft hyphen, bidi
/// controls, word joiners, invisible operators, the byte-order mark, variation selectors,
/// Mongolian free variation selectors, tags, the combining grapheme joiner, Hangul fillers.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// Hyphens, dashes and minus signs that stand for `-`.
fn is_dash(c: char) -> bool {
    matches!(
        c,
        '\u{2010}'
            ..='\u{2015}'
                | '\u{2212}'
                | '\u{FE58}'
                | '\u{FE63}'
                | '\u{FF0D}'
                | '\u{2E3A}'
                | '\u{2E3B}'
    )
}

/// The value of a Unicode decimal digit (general category Nd) of any script: each script's
/// digits are ten consecutive code points from its zero (Unicode 16).
fn decimal_digit(c: char) -> Option<u8> {
    const ZEROS: &[u32] = &[
        0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
        0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0,
        0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0,
        0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0,
        0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0,
        0x11F50, 0x16A60, 0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140,
        0x1E2F0, 0x1E4F0, 0x1E950, 0x1FBF0,
    ];
    let c = u32::from(c);
    let i = ZEROS.partition_point(|&z| z <= c);
    let zero = *ZEROS.get(i.checked_sub(1)?)?;
    // Every digit value is below ten here.
    (c - zero < 10).then(|| (c - zero) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(t: &str) -> String {
        normalize(t).map_or_else(|| t.to_owned(), |n| n.text)
    }

    #[test]
    fn ascii_text_is_not_copied() {
        assert!(normalize("card 4111 1111 1111 1111, 100% sure").is_none());
        assert!(normalize("jane%40example.com").is_some());
    }

    #[test]
    fn disguised_digits_and_signs_become_ascii() {
        assert_eq!(norm("４１１１　１１１１"), "4111 1111");
        assert_eq!(norm("٤١١١-١١١١"), "4111-1111");
        assert_eq!(norm("jane＠example．com"), "jane@example.com");
        assert_eq!(norm("41\u{200B}11\u{00AD}11"), "411111");
        assert_eq!(norm("4111\u{00A0}1111\u{2011}1111"), "4111 1111-1111");
        assert_eq!(norm("jane%40example.com"), "jane@example.com");
        assert_eq!(norm("𝟒𝟏𝟏𝟏"), "4111");
    }

    #[test]
    fn letters_of_other_scripts_stay() {
        assert_eq!(norm("jаne@exаmple.com ё"), "jаne@exаmple.com ё");
        assert_eq!(norm("Müller"), "Müller");
    }

    #[test]
    fn findings_map_back_to_the_original_span() {
        let t = "pay ４１\u{200B}１１ now";
        let n = normalize(t).unwrap();
        let s = n.text.find('4').unwrap();
        let e = n.text.rfind('1').unwrap() + 1;
        assert_eq!(&n.text[s..e], "4111");
        assert_eq!(&t[n.start(s)..n.end(e)], "４１\u{200B}１１");
        let after = n.text.find("now").unwrap();
        assert_eq!(&t[n.start(after)..n.end(after + 3)], "now");
        let t = "\u{200B}4111";
        let n = normalize(t).unwrap();
        assert_eq!(
            &t[n.start(0)..n.end(4)],
            "4111",
            "a dropped character before"
        );
        let t = "４\u{200B}1";
        let n = normalize(t).unwrap();
        assert_eq!(&t[n.start(1)..n.end(2)], "1");
        let t = "x é jane%40example.com!";
        let n = normalize(t).unwrap();
        let s = n.text.find("jane").unwrap();
        let e = n.text.find('!').unwrap();
        assert_eq!(&t[n.start(s)..n.end(e)], "jane%40example.com");
    }
}
