//! IBANs (ISO 13616): the SWIFT IBAN registry's countries and lengths, the mod-97 check, and
//! the shape of an IBAN whose check fails (a look-alike, whose digits no other detector may
//! take for a phone number or a card).

use std::ops::Range;

/// An IBAN at the start of `text`: a registry country (upper case), two check digits (02 to
/// 98), then the country's number of letters and digits (any case), with single spaces, dots
/// or dashes anywhere between them (`NO 02 1503 7577 003`, `ES72 2013-0692-81-0201150993`),
/// ending at a word boundary, and passing mod-97. Masks the IBAN only (the pattern's match
/// may run on into the next words).
pub fn iban(text: &str) -> Option<Range<usize>> {
    let shape = shape(text)?;
    mod97(&shape.compact).then_some(0..shape.end)
}

/// The span of an IBAN-shaped value whose check failed (so [`iban`] refused it): the exact
/// shape with wrong check digits, or the print format (`XX00 1234 5678 9012 …`, groups of four
/// after the country and check digits, at least three of them). Digits inside such a value
/// are an account reference, not a phone number or a card.
pub fn iban_look_alike(text: &str) -> Option<usize> {
    if let Some(shape) = shape(text) {
        return Some(shape.end);
    }
    print_format(text)
}

struct Shape {
    /// Upper-case letters and digits, separators dropped.
    compact: Vec<u8>,
    /// Where the IBAN ends in the text.
    end: usize,
}

fn shape(text: &str) -> Option<Shape> {
    let b = text.as_bytes();
    if b.len() < 4 || !b[0].is_ascii_uppercase() || !b[1].is_ascii_uppercase() {
        return None;
    }
    let expected = length(&b[..2])?;
    let mut compact = Vec::with_capacity(expected);
    let mut bban_digits = 0;
    let mut after_separator = false;
    let mut i = 0;
    while i < b.len() && compact.len() < expected {
        let c = b[i];
        if c.is_ascii_alphanumeric() {
            if compact.len() >= 4 && c.is_ascii_digit() {
                bban_digits += 1;
            }
            compact.push(c.to_ascii_uppercase());
            after_separator = false;
        } else if b" .-".contains(&c) && !after_separator && compact.len() >= 2 {
            after_separator = true;
        } else {
            return None;
        }
        i += 1;
    }
    let check_digits = compact.get(2..4)?;
    let at_boundary = b.get(i).is_none_or(|c| !c.is_ascii_alphanumeric());
    let valid_check = check_digits.iter().all(u8::is_ascii_digit)
        && (b"02"..=b"98").contains(&&[check_digits[0], check_digits[1]]);
    // Every registry BBAN holds digits; six or more keeps words that follow a country code
    // and two digits (`NO 15 people came …`) from making up one.
    (compact.len() == expected && at_boundary && valid_check && bban_digits >= 6)
        .then_some(Shape { compact, end: i })
}

/// `CCdd` then single-space-separated groups of four letters or digits (the last of one to
/// four), at least three groups: the end of the value, whatever its length or checksum.
fn print_format(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let opening = b.len() >= 4
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..4].iter().all(u8::is_ascii_digit)
        && length(&b[..2]).is_some();
    if !opening {
        return None;
    }
    let mut end = 4;
    let mut groups = 0;
    while b.get(end) == Some(&b' ') {
        let run = b[end + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        if run == 0 || run > 4 {
            break;
        }
        end += 1 + run;
        groups += 1;
        if run < 4 {
            break;
        }
    }
    let at_boundary = b.get(end).is_none_or(|c| !c.is_ascii_alphanumeric());
    (groups >= 3 && at_boundary).then_some(end)
}

/// ISO 7064 MOD 97-10 over the IBAN moved to put the country and check digits last.
fn mod97(compact: &[u8]) -> bool {
    let mut rem: u32 = 0;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// IBAN lengths by country: the 89 countries of the SWIFT IBAN registry (release 99, 2025).
fn length(country: &[u8]) -> Option<usize> {
    const TABLE: &[(&[u8; 2], usize)] = &[
        (b"AD", 24),
        (b"AE", 23),
        (b"AL", 28),
        (b"AT", 20),
        (b"AZ", 28),
        (b"BA", 20),
        (b"BE", 16),
        (b"BG", 22),
        (b"BH", 22),
        (b"BI", 27),
        (b"BR", 29),
        (b"BY", 28),
        (b"CH", 21),
        (b"CR", 22),
        (b"CY", 28),
        (b"CZ", 24),
        (b"DE", 22),
        (b"DJ", 27),
        (b"DK", 18),
        (b"DO", 28),
        (b"EE", 20),
        (b"EG", 29),
        (b"ES", 24),
        (b"FI", 18),
        (b"FK", 18),
        (b"FO", 18),
        (b"FR", 27),
        (b"GB", 22),
        (b"GE", 22),
        (b"GI", 23),
        (b"GL", 18),
        (b"GR", 27),
        (b"GT", 28),
        (b"HN", 28),
        (b"HR", 21),
        (b"HU", 28),
        (b"IE", 22),
        (b"IL", 23),
        (b"IQ", 23),
        (b"IS", 26),
        (b"IT", 27),
        (b"JO", 30),
        (b"KW", 30),
        (b"KZ", 20),
        (b"LB", 28),
        (b"LC", 32),
        (b"LI", 21),
        (b"LT", 20),
        (b"LU", 20),
        (b"LV", 21),
        (b"LY", 25),
        (b"MC", 27),
        (b"MD", 24),
        (b"ME", 22),
        (b"MK", 19),
        (b"MN", 20),
        (b"MR", 27),
        (b"MT", 31),
        (b"MU", 30),
        (b"NI", 28),
        (b"NL", 18),
        (b"NO", 15),
        (b"OM", 23),
        (b"PK", 24),
        (b"PL", 28),
        (b"PS", 29),
        (b"PT", 25),
        (b"QA", 29),
        (b"RO", 24),
        (b"RS", 22),
        (b"RU", 33),
        (b"SA", 24),
        (b"SC", 31),
        (b"SD", 18),
        (b"SE", 24),
        (b"SI", 19),
        (b"SK", 24),
        (b"SM", 27),
        (b"SO", 23),
        (b"ST", 25),
        (b"SV", 28),
        (b"TL", 23),
        (b"TN", 24),
        (b"TR", 26),
        (b"UA", 29),
        (b"VA", 22),
        (b"VG", 24),
        (b"XK", 20),
        (b"YE", 30),
    ];
    TABLE
        .iter()
        .find(|(c, _)| c.as_slice() == country)
        .map(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_lists_89_countries() {
        let countries = (b'A'..=b'Z')
            .flat_map(|a| (b'A'..=b'Z').map(move |b| [a, b]))
            .filter(|c| length(c).is_some())
            .count();
        assert_eq!(countries, 89);
    }

    #[test]
    fn checksums_lengths_and_groupings() {
        assert_eq!(iban("DE89370400440532013000"), Some(0..22));
        assert_eq!(iban("GB82 WEST 1234 5698 7654 32"), Some(0..27));
        assert_eq!(iban("NO 02 15037577003 above"), Some(0..17), "runs on");
        assert!(iban("ES72 2013-0692-81-0201150993").is_some(), "mixed");
        assert!(
            iban("MC11 1273 9000 7000 1111 1000 h79").is_some(),
            "lower case"
        );
        assert!(iban("DE89370400440532013001").is_none(), "check fails");
        assert!(iban("DE893704004405320130001").is_none(), "too long");
        assert!(iban("DE8937040044053201300").is_none(), "too short");
        assert!(iban("XX89370400440532013000").is_none(), "no such country");
        assert!(iban("DE89  3704 0044 0532 0130 00").is_none(), "two spaces");
        assert!(iban("NO 15 people came to the meet").is_none(), "words");
    }

    #[test]
    fn look_alikes_cover_the_whole_reference() {
        assert_eq!(iban_look_alike("BE71 0961 2345 6760"), Some(19));
        let long = "IL15 0120 6900 0000 3111 0120 6900 0000 3111 141";
        assert_eq!(iban_look_alike(long), Some(long.len()));
        assert_eq!(iban_look_alike("DE12 0961 2345"), None, "two groups");
        assert_eq!(
            iban_look_alike("ZZ12 0961 2345 6760"),
            None,
            "no such country"
        );
    }
}
