//! IP addresses: IPv4 (dotted quad, optional CIDR prefix) and IPv6 (every RFC 4291 text form,
//! embedded IPv4, RFC 4007 zone, CIDR prefix), and the context that tells an address from a
//! version number or a path such as `std::io`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

/// IPv4: four octets of at most 255, without leading zeros (which mark version strings and
/// zero-padded ids, not addresses); a `/prefix` of 0 to 32 is masked with it.
pub fn ipv4(text: &str) -> Option<Range<usize>> {
    let (address, prefix) = split_prefix(text);
    let ok = address
        .split('.')
        .all(|o| !o.is_empty() && (o == "0" || !o.starts_with('0')) && o.parse::<u8>().is_ok())
        && address.parse::<Ipv4Addr>().is_ok();
    if !ok {
        return None;
    }
    Some(match prefix {
        Some(p) if p <= 32 => 0..text.len(),
        _ => 0..address.len(),
    })
}

/// IPv6: whatever the standard library parses as one (`::1`, `fe80::1`, `::ffff:192.0.2.1`,
/// the full eight groups), with a `%zone` and a `/prefix` of 0 to 128 masked with it. The
/// unspecified address `::` alone counts only with a prefix (`::/0`): bare, it is punctuation.
pub fn ipv6(text: &str) -> Option<Range<usize>> {
    let (with_zone, prefix) = split_prefix(text);
    let address = with_zone.split('%').next().unwrap_or(with_zone);
    address.parse::<Ipv6Addr>().ok()?;
    let prefix_ok = prefix.is_some_and(|p| p <= 128);
    if !prefix_ok && !address.bytes().any(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(if prefix_ok {
        0..text.len()
    } else {
        0..with_zone.len()
    })
}

/// `address/prefix` split at the `/`; the prefix as a number when it is one.
fn split_prefix(text: &str) -> (&str, Option<u32>) {
    match text.split_once('/') {
        Some((address, prefix)) => (address, prefix.parse().ok()),
        None => (text, None),
    }
}

/// Whether an address found at `start..end` stands on its own. An IPv6 address needs no
/// letter, digit, `_`, `:` or `.` on either side (`std::cout`, `12345:db8::1`, `2001::db8::1`
/// hold none), except a `:` after a label (`IPv6:2001:db8::1`) or one that ends a field
/// (`from 2001:db8::1: refused`). An IPv4 address must open its run of dotted numbers
/// (`1.192.168.0.1` is not one), and in a longer run (`192.168.1.1.1`) counts unless its four
/// numbers are single digits (a version such as `4.5.6.7.8`, an OID such as `1.3.6.1.4.1`).
pub fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let found = &text[start..end];
    let before = start.checked_sub(1).map(|i| b[i]);
    let after = b.get(end).copied();
    if found.contains(':') {
        let joins =
            |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric() || b"_:.".contains(&c));
        // A `.` or `:` after ends a sentence or a log field unless what follows it goes on.
        let after_joins = match after {
            Some(b'.') => joins(b.get(end + 1).copied()) && b[end + 1] != b'.',
            Some(b':') => joins(b.get(end + 1).copied()),
            other => joins(other),
        };
        // A `:` before follows a label (`ip:`, `IPv6:`: a word with a letter that is no
        // hex digit), not more hex groups (`12345:db8::1`).
        let before_joins = match before {
            Some(b':') => {
                let label = b[..start - 1]
                    .iter()
                    .rev()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_');
                let mut label = label.peekable();
                label.peek().is_none() || label.all(u8::is_ascii_hexdigit)
            }
            other => joins(other),
        };
        return !before_joins && !after_joins;
    }
    let digit_before = start >= 2 && b[start - 2].is_ascii_digit();
    if before == Some(b'.') && digit_before {
        return false;
    }
    let continues = after == Some(b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit);
    let address = found.split('/').next().unwrap_or(found);
    !(continues && address.split('.').all(|o| o.len() == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_prefixes_and_zones() {
        assert_eq!(ipv4("192.168.1.20"), Some(0..12));
        assert_eq!(ipv4("10.0.0.0/8"), Some(0..10));
        assert_eq!(ipv4("10.0.0.0/33"), Some(0..8), "no such prefix");
        assert!(ipv4("256.1.1.1").is_none());
        assert!(ipv4("01.02.03.04").is_none());
        assert!(ipv6("2001:db8::8a2e:370:7334").is_some());
        assert_eq!(ipv6("::1"), Some(0..3));
        assert_eq!(ipv6("::ffff:192.0.2.1"), Some(0..16));
        assert_eq!(ipv6("fe80::1%eth0/64"), Some(0..15));
        assert_eq!(ipv6("::/0"), Some(0..4));
        assert!(ipv6("::").is_none(), "bare unspecified address");
        assert!(ipv6("12:30:45").is_none());
        assert!(ipv6("2001::db8::1").is_none());
    }

    #[test]
    fn context_tells_addresses_from_versions_and_paths() {
        let at = |t: &str, found: &str| {
            let s = t.find(found).unwrap();
            stands_alone(t, s, s + found.len())
        };
        assert!(at("connect to 10.0.0.1 now", "10.0.0.1"));
        assert!(at("192.168.1.1.1", "192.168.1.1"));
        assert!(!at("4.5.6.7.8", "4.5.6.7"));
        assert!(!at("1.192.168.0.1", "192.168.0.1"));
        assert!(at("host:10.0.0.1", "10.0.0.1"));
        assert!(!at("std::cout", "d::c"));
        assert!(!at("12345:db8::1", "2345:db8::1"));
        assert!(at("[::1]:80", "::1"));
        assert!(at("Use 2001:db8::1.", "2001:db8::1"));
        assert!(!at("2001:db8::1.5", "2001:db8::1"));
        // After a label and before a log field's colon.
        assert!(at("ip:2001:db8::1", "2001:db8::1"));
        assert!(at("IPv6:2001:db8::1", "2001:db8::1"));
        assert!(at("from 2001:db8::1: refused", "2001:db8::1"));
        assert!(!at("ab:2001:db8::1", "2001:db8::1"), "more hex groups");
        assert!(!at("2001:db8::1:x", "2001:db8::1"));
    }
}
