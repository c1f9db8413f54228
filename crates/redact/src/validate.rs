//! Checks that turn a pattern match into a finding: checksums (Luhn, IBAN mod-97), issuing
//! rules (US SSN), issuer prefixes, address parsing. Each takes the matched text and returns
//! the span to mask inside it, or `None` for a look-alike.

mod iban;
mod ip;
mod numbering;
mod openings;

pub use iban::{iban, iban_look_alike};
pub use ip::{ipv4, ipv6, stands_alone as ip_stands_alone};
pub use numbering::{NumberingPlans, digit_run_at, next_digit_run};

use std::ops::Range;

/// Luhn checksum over ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut n = u32::from(d - b'0');
        if i % 2 == 1 {
            n *= 2;
            if n > 9 {
                n -= 9;
            }
        }
        sum += n;
    }
    sum.is_multiple_of(10)
}

/// Whether a card number's prefix and length belong to a known issuer: the major networks'
/// published issuer identification number ranges and lengths (ISO/IEC 7812 numbers of 12 to
/// 19 digits).
pub fn card_issuer(d: &[u8]) -> bool {
    let len = d.len();
    let prefix = |n: usize| -> u32 {
        d[..n.min(len)]
            .iter()
            .fold(0, |acc, b| acc * 10 + u32::from(b - b'0'))
    };
    let (p2, p3, p4, p6) = (prefix(2), prefix(3), prefix(4), prefix(6));
    let within = |lo: usize, hi: usize| (lo..=hi).contains(&len);
    ISSUERS.iter().any(|issuer| {
        let p = match issuer.digits {
            1 => u32::from(d[0] - b'0'),
            2 => p2,
            3 => p3,
            4 => p4,
            _ => p6,
        };
        (issuer.from..=issuer.to).contains(&p) && within(issuer.min_len, issuer.max_len)
    })
}

/// One issuer identification number range: prefixes of `digits` digits from `from` to `to`,
/// card numbers of `min_len` to `max_len` digits.
struct Issuer {
    digits: u8,
    from: u32,
    to: u32,
    min_len: usize,
    max_len: usize,
}

const fn issuer(digits: u8, from: u32, to: u32, min_len: usize, max_len: usize) -> Issuer {
    Issuer {
        digits,
        from,
        to,
        min_len,
        max_len,
    }
}

/// The networks' ranges: Visa, Mastercard (both series), American Express, Diners Club,
/// JCB, Discover, UnionPay, Maestro (with the national schemes in its ranges: Verve,
/// Dankort, InterPayment, InstaPayment), Mir, RuPay, Troy, UATP.
const ISSUERS: &[Issuer] = &[
    issuer(1, 4, 4, 13, 19),       // Visa (13, 16, 19; Electron too)
    issuer(2, 51, 55, 16, 16),     // Mastercard
    issuer(4, 2221, 2720, 16, 16), // Mastercard 2-series
    issuer(2, 34, 34, 15, 15),     // American Express
    issuer(2, 37, 37, 15, 15),     // American Express
    issuer(3, 300, 305, 14, 19),   // Diners Club International
    issuer(2, 36, 36, 14, 19),     // Diners Club International
    issuer(2, 38, 39, 14, 19),     // Diners Club (Discover network)
    issuer(4, 3528, 3589, 16, 19), // JCB
    issuer(4, 6011, 6011, 16, 19), // Discover
    issuer(3, 644, 649, 16, 19),   // Discover
    issuer(2, 65, 65, 16, 19),     // Discover, RuPay
    issuer(2, 62, 62, 16, 19),     // UnionPay
    issuer(2, 81, 82, 16, 16),     // UnionPay, RuPay
    issuer(2, 50, 50, 12, 19),     // Maestro, Verve, Dankort
    issuer(2, 56, 69, 12, 19),     // Maestro and national schemes
    issuer(4, 2200, 2204, 16, 19), // Mir
    issuer(4, 9792, 9792, 16, 16), // Troy
    issuer(1, 1, 1, 15, 15),       // UATP
];

/// A card number: digits in groups separated by single spaces, dashes or dots. Tries the longest
/// run of whole groups first (a match may swallow a trailing number), down to 13 digits.
/// Allocation-free: it runs on every card-shaped run of digits.
pub fn credit_card(text: &str) -> Option<Range<usize>> {
    const MOST: usize = 19;
    let b = text.as_bytes();
    // The first 19 digits, and for each whole group among them its end and the digits so far.
    let mut digits = [0u8; MOST];
    let mut count = 0;
    let mut ends = [(0usize, 0usize); MOST];
    let mut groups = 0;
    for (i, &c) in b.iter().enumerate() {
        if !c.is_ascii_digit() {
            continue;
        }
        if count == MOST {
            break; // a longer run is no card: the groups so far are all there is to try
        }
        digits[count] = c;
        count += 1;
        if b.get(i + 1).is_none_or(|n| !n.is_ascii_digit()) {
            ends[groups] = (i + 1, count);
            groups += 1;
        }
    }
    ends[..groups].iter().rev().find_map(|&(end, n)| {
        let d = &digits[..n];
        if !((13..=MOST).contains(&n) && card_issuer(d) && luhn(d)) {
            return None;
        }
        // Separators must be consistent: all spaces, all dashes, all dots, or none.
        let mut seps = b[..end].iter().filter(|c| !c.is_ascii_digit());
        let first = seps.next();
        seps.all(|c| Some(c) == first).then_some(0..end)
    })
}

fn digit_groups(text: &str) -> Vec<(usize, usize)> {
    let mut groups = Vec::new();
    let mut start = None;
    for (i, b) in text.bytes().enumerate() {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                groups.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        groups.push((s, text.len()));
    }
    groups
}

/// US SSN issuing rules: area not 000, 666 or 900–999; group not 00; serial not 0000.
pub fn ssn_digits(d: &[u8]) -> bool {
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area = &d[0..3];
    area != b"000" && area != b"666" && area[0] != b'9' && &d[3..5] != b"00" && &d[5..9] != b"0000"
}

/// The shape of an SSN (`078-05-0000`, `078 00 1123`: three, two and four digits with one
/// kind of separator) whose issuing rules fail: a look-alike, not a phone number.
pub fn ssn_look_alike(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let shaped = b.len() == 11
        && digits(0..3)
        && digits(4..6)
        && digits(7..11)
        && b[3] == b[6]
        && b" .-".contains(&b[3]);
    shaped.then_some(11)
}

/// An email address written out after its label (`email: john at gmail.com`, `jane [at]
/// example [dot] org`): the address from its local part, if its top-level label is two or
/// more letters.
pub fn email_written_out(text: &str) -> Option<Range<usize>> {
    let lower = text.to_ascii_lowercase();
    let at = [" at ", "(at)", "[at]", "{at}"]
        .iter()
        .filter_map(|token| lower.rfind(token))
        .max()?;
    let local_end = text[..at].trim_end_matches(' ').len();
    let is_local = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
    let local_start = text[..local_end].trim_end_matches(is_local).len();
    let top = lower
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .next()?;
    let top_is_letters = top.len() >= 2 && top.bytes().all(|b| b.is_ascii_alphabetic());
    (local_start < local_end && top_is_letters && top != "dot").then_some(local_start..text.len())
}

/// Whether a written-out address found at `start..end` is one: not the local part of an
/// address that goes on (`me at 5pm.jane@example.com` is `5pm.jane@example.com`, which the
/// email search finds).
pub fn written_out_email_stands_alone(text: &str, _start: usize, end: usize) -> bool {
    text.as_bytes().get(end) != Some(&b'@')
}

/// An SSN written with dashes (or spaces, which the pattern only allows after an SSN label).
pub fn ssn(text: &str) -> Option<Range<usize>> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let digits: Vec<u8> = text[start..].bytes().filter(u8::is_ascii_digit).collect();
    ssn_digits(&digits).then_some(start..text.len())
}

/// A phone number: 8 to 15 digits in all (E.164's limit; 7 after a `+`, as in small
/// countries' `+683 7012`), and for North American numbers written without a country code
/// (or with a bare `1`), valid area and exchange codes. An extension (`x12`) is masked with
/// the number and not counted.
pub fn phone(text: &str) -> Option<Range<usize>> {
    phone_with(text, 8)
}

/// A phone number after a word that says one follows (`phone`, `tel`, `mobile`, `fax` …):
/// 7 to 15 digits from the first digit, `+` or `(`; masks the number only.
pub fn phone_after_label(text: &str) -> Option<Range<usize>> {
    let start = text.find(|c: char| c.is_ascii_digit() || c == '+' || c == '(')?;
    if ssn_look_alike(&text[start..]).is_some() {
        return None; // three, two and four digits: the SSN detectors judge it
    }
    let found = phone_with(&text[start..], 7)?;
    Some(start + found.start..start + found.end)
}

/// A national-format number (trunk prefix `0`, area code, groups: `0501 234 56 78`,
/// `(0212) 345 67 89`): 9 to 12 digits, so that a date such as `05-11-2023` is not one.
pub fn national_phone(text: &str) -> Option<Range<usize>> {
    let ends: Vec<usize> = digit_groups(text).iter().map(|g| g.1).collect();
    ends.into_iter().rev().find_map(|end| {
        let digits = text[..end].bytes().filter(u8::is_ascii_digit).count();
        let close = text[..end].matches(')').count() == text[..end].matches('(').count();
        // One group after the area code only with a space (`03112 34567`): with a dash it
        // is an order or reference number's shape (`060633-2047`).
        let groups = text[..end].matches([' ', '-']).count();
        let one_dashed = groups == 1 && text[..end].contains('-');
        ((9..=12).contains(&digits) && close && !one_dashed).then_some(0..end)
    })
}

/// The longest run of whole digit groups of `text` that is a phone number of at least
/// `min_digits` digits (the pattern may swallow a trailing number: `… 0958-192.0.2.10`).
fn phone_with(text: &str, min_digits: usize) -> Option<Range<usize>> {
    let ends: Vec<usize> = digit_groups(text).iter().map(|g| g.1).collect();
    ends.into_iter()
        .rev()
        .find_map(|end| phone_exact(&text[..end], min_digits).map(|_| 0..end))
}

fn phone_exact(text: &str, min_digits: usize) -> Option<()> {
    let number = text.split(['x', 'e', ',']).next().unwrap_or(text);
    let digits: Vec<u8> = number.bytes().filter(u8::is_ascii_digit).collect();
    let min = if number.starts_with('+') {
        7
    } else {
        min_digits
    };
    if !(min..=15).contains(&digits.len()) {
        return None;
    }
    if number.matches('(').count() != number.matches(')').count() {
        return None;
    }
    let plus = number.starts_with('+');
    let nanp = match digits.len() {
        10 if !plus && digits[0] != b'0' => Some(&digits[..]),
        11 if !plus && digits[0] == b'1' => Some(&digits[1..]),
        _ => None,
    };
    if let Some(d) = nanp
        && (d[0] < b'2' || d[3] < b'2')
    {
        return None; // NANP: NXX-NXX-XXXX
    }
    Some(())
}

/// For patterns whose match starts with a label (`password=`, `aws_secret_access_key:`):
/// masks everything after the first `=` or `:` (and any quote or space after it): the label
/// holds neither, and a value may (`password=a=b` is the value `a=b`, not `b`).
pub fn value_after_label(text: &str) -> Option<Range<usize>> {
    let sep = text.find(['=', ':'])?;
    let start = sep + 1 + text[sep + 1..].len()
        - text[sep + 1..]
            .trim_start_matches([' ', '\t', '"', '\''])
            .len();
    (start < text.len()).then_some(start..text.len())
}

/// An AWS secret access key after its label: exactly 40 base64 characters (the pattern takes
/// one character past them, since a trailing `+` or `/` defeats a word boundary).
pub fn aws_secret(text: &str) -> Option<Range<usize>> {
    let value = value_after_label(text)?;
    let key_len = text[value.clone()]
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'/' || *b == b'+')
        .count();
    (key_len == 40).then(|| value.start..value.start + 40)
}

/// A password in a URL's user-info (`scheme://user:password@host`): masks the password only.
pub fn url_password(text: &str) -> Option<Range<usize>> {
    let userinfo_start = text.find("://")? + 3;
    let at = text.rfind('@')?;
    let colon = text[userinfo_start..at].find(':')? + userinfo_start;
    (colon + 1 < at).then_some(colon + 1..at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_issuers_accept_test_cards_and_reject_lookalikes() {
        for card in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "2223003122003222",
        ] {
            assert!(credit_card(card).is_some(), "{card}");
        }
        assert!(credit_card("4111111111111112").is_none(), "Luhn fails");
        assert!(
            credit_card("1234567812345670").is_none(),
            "no issuer starts with 1"
        );
        assert!(
            credit_card("4111 1111-1111 1111").is_none(),
            "mixed separators"
        );
        assert_eq!(
            credit_card("4111 1111 1111 1111 12"),
            Some(0..19),
            "trailing group dropped"
        );
    }

    #[test]
    fn a_phone_number_followed_by_another_number_is_still_found() {
        assert_eq!(phone("+44 20 7946 0958-192.0.2"), Some(0..20));
        assert_eq!(phone("+44 20 7946 0958"), Some(0..16));
        assert_eq!(phone("+1 2"), None);
    }

    #[test]
    fn phone_forms() {
        assert_eq!(phone("+683 7012"), Some(0..9), "seven digits after a plus");
        assert_eq!(phone("1-312-515-2239"), Some(0..14));
        assert_eq!(
            phone("1-112-515-2239"),
            None,
            "no NANP area code starts with 1"
        );
        assert_eq!(phone("312-515-2239 ext. 12"), Some(0..20));
        assert_eq!(phone_after_label("phone: 425 8829090"), Some(7..18));
        assert_eq!(phone_after_label("tel 12345"), None, "too short");
        assert_eq!(national_phone("(0212) 345 67 89"), Some(0..16));
        assert_eq!(national_phone("05-11-2023"), None, "a date");
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn("123-45-6789").is_some());
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(ssn(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn labels_and_urls_mask_only_the_value() {
        let t = "password=hunter2";
        assert_eq!(&t[value_after_label(t).unwrap()], "hunter2");
        let t = "password=a=b:c";
        assert_eq!(
            &t[value_after_label(t).unwrap()],
            "a=b:c",
            "the whole value"
        );
        let u = "postgres://app:s3cr3t@db.internal:5432/prod";
        let r = url_password(&u[..u.find('@').unwrap() + 1]).unwrap();
        assert_eq!(&u[r], "s3cr3t");
    }
}
