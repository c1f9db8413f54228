//! Checks that turn a pattern match into a finding: checksums (Luhn, IBAN mod-97), issuing
//! rules (US SSN), issuer prefixes, address parsing. Each takes the matched text and returns
//! the span to mask inside it, or `None` for a look-alike.

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

/// Whether a card number's prefix and length belong to a known issuer.
pub fn card_issuer(d: &[u8]) -> bool {
    let len = d.len();
    let prefix = |n: usize| -> u32 {
        d[..n.min(len)]
            .iter()
            .fold(0, |acc, b| acc * 10 + u32::from(b - b'0'))
    };
    let p2 = prefix(2);
    let p3 = prefix(3);
    let p4 = prefix(4);
    let p6 = prefix(6);
    match d[0] {
        b'4' => matches!(len, 13 | 16 | 19),              // Visa
        b'5' if (51..=55).contains(&p2) => len == 16,     // Mastercard
        b'2' if (2221..=2720).contains(&p4) => len == 16, // Mastercard 2-series
        b'3' if p2 == 34 || p2 == 37 => len == 15,        // Amex
        b'3' if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 => {
            (14..=19).contains(&len)
        } // Diners
        b'3' if (3528..=3589).contains(&p4) => (16..=19).contains(&len), // JCB
        b'6' if p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) => (16..=19).contains(&len), // Discover
        b'6' if (622_126..=622_925).contains(&p6) || p2 == 62 => (16..=19).contains(&len), // UnionPay
        b'5' | b'6' if matches!(p2, 50 | 56..=69) => (12..=19).contains(&len), // Maestro
        _ => false,
    }
}

/// A card number: digits in groups separated by single spaces, dashes or dots. Tries the longest
/// run of whole groups first (a match may swallow a trailing number), down to 13 digits.
pub fn credit_card(text: &str) -> Option<Range<usize>> {
    let groups: Vec<(usize, usize)> = digit_groups(text);
    for take in (1..=groups.len()).rev() {
        let end = groups[take - 1].1;
        let digits: Vec<u8> = text[..end].bytes().filter(u8::is_ascii_digit).collect();
        if (13..=19).contains(&digits.len()) && card_issuer(&digits) && luhn(&digits) {
            // Separators must be consistent: all spaces, all dashes, all dots, or none.
            let seps: Vec<u8> = text[..end]
                .bytes()
                .filter(|b| !b.is_ascii_digit())
                .collect();
            if seps.windows(2).all(|w| w[0] == w[1]) {
                return Some(0..end);
            }
        }
    }
    None
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

/// An SSN written with dashes (or spaces, which the pattern only allows after an SSN label).
pub fn ssn(text: &str) -> Option<Range<usize>> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let digits: Vec<u8> = text[start..].bytes().filter(u8::is_ascii_digit).collect();
    ssn_digits(&digits).then_some(start..text.len())
}

/// IBAN: country length table and the ISO 13616 mod-97 check.
pub fn iban(text: &str) -> Option<Range<usize>> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b" .-".contains(b)).collect();
    let expected = iban_length(&compact[..2])?;
    if compact.len() != expected {
        return None;
    }
    let mut rem: u32 = 0;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return None,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    (rem == 1).then_some(0..text.len())
}

/// IBAN lengths by country (SWIFT IBAN registry).
fn iban_length(country: &[u8]) -> Option<usize> {
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
        (b"BR", 29),
        (b"BY", 28),
        (b"CH", 21),
        (b"CR", 22),
        (b"CY", 28),
        (b"CZ", 24),
        (b"DE", 22),
        (b"DK", 18),
        (b"DO", 28),
        (b"EE", 20),
        (b"EG", 29),
        (b"ES", 24),
        (b"FI", 18),
        (b"FO", 18),
        (b"FR", 27),
        (b"GB", 22),
        (b"GE", 22),
        (b"GI", 23),
        (b"GL", 18),
        (b"GR", 27),
        (b"GT", 28),
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
        (b"MC", 27),
        (b"MD", 24),
        (b"ME", 22),
        (b"MK", 19),
        (b"MR", 27),
        (b"MT", 31),
        (b"MU", 30),
        (b"NL", 18),
        (b"NO", 15),
        (b"PK", 24),
        (b"PL", 28),
        (b"PS", 29),
        (b"PT", 25),
        (b"QA", 29),
        (b"RO", 24),
        (b"RS", 22),
        (b"SA", 24),
        (b"SC", 31),
        (b"SE", 24),
        (b"SI", 19),
        (b"SK", 24),
        (b"SM", 27),
        (b"ST", 25),
        (b"SV", 28),
        (b"TL", 23),
        (b"TN", 24),
        (b"TR", 26),
        (b"UA", 29),
        (b"VA", 22),
        (b"VG", 24),
        (b"XK", 20),
    ];
    TABLE
        .iter()
        .find(|(c, _)| c.as_slice() == country)
        .map(|(_, n)| *n)
}

/// IPv4: four octets of at most 255, without leading zeros (which mark version strings and
/// zero-padded ids, not addresses).
pub fn ipv4(text: &str) -> Option<Range<usize>> {
    let ok = text
        .split('.')
        .all(|o| !o.is_empty() && (o == "0" || !o.starts_with('0')) && o.parse::<u8>().is_ok());
    ok.then_some(0..text.len())
}

/// IPv6: whatever parses as one, with at least two groups of hex.
pub fn ipv6(text: &str) -> Option<Range<usize>> {
    let groups = text.split(':').filter(|g| !g.is_empty()).count();
    (groups >= 2 && text.parse::<std::net::Ipv6Addr>().is_ok()).then_some(0..text.len())
}

/// A phone number: 8 to 15 digits in all (E.164's limit), and for North American numbers
/// written without a country code, valid area and exchange codes.
pub fn phone(text: &str) -> Option<Range<usize>> {
    // The pattern may swallow a trailing number (`… 0958-192.0.2.10`): try whole groups from
    // the longest down.
    let ends: Vec<usize> = digit_groups(text).iter().map(|g| g.1).collect();
    ends.into_iter()
        .rev()
        .find_map(|end| phone_exact(&text[..end]).map(|_| 0..end))
}

fn phone_exact(text: &str) -> Option<()> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_digit).collect();
    if !(8..=15).contains(&digits.len()) {
        return None;
    }
    if !text.starts_with('+') && !text.starts_with('0') && digits.len() == 10 {
        // NANP: NXX-NXX-XXXX.
        if digits[0] < b'2' || digits[3] < b'2' {
            return None;
        }
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
    fn iban_checksums() {
        assert!(iban("DE89370400440532013000").is_some());
        assert!(iban("GB82 WEST 1234 5698 7654 32").is_some());
        assert!(iban("DE89370400440532013001").is_none());
        assert!(iban("DE8937040044053201300").is_none(), "wrong length");
        assert!(iban("XX89370400440532013000").is_none(), "unknown country");
    }

    #[test]
    fn addresses() {
        assert!(ipv4("192.168.1.20").is_some());
        assert!(ipv4("256.1.1.1").is_none());
        assert!(ipv4("01.02.03.04").is_none());
        assert!(ipv6("2001:db8::8a2e:370:7334").is_some());
        assert!(ipv6("12:30:45").is_none());
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
