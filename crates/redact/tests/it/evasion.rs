//! Properties: a value disguised by the forms an attacker (or a copy from a word processor)
//! uses — full-width and other-script digits, `＠` and `%40`, zero-width characters and soft
//! hyphens inside it, no-break spaces and Unicode dashes between its groups — is still found,
//! and masking removes every one of its characters, whatever the disguise.

use crate::detector;
use proptest::prelude::*;
use warden_redact::{Direction, Policy, Session, StreamText};

/// Values the detectors find written plainly, and what they are.
const VALUES: &[(&str, &str)] = &[
    ("4111 1111 1111 1111", "CREDIT_CARD"),
    ("5555-5555-5555-4444", "CREDIT_CARD"),
    ("378282246310005", "CREDIT_CARD"),
    ("jane.doe@example.com", "EMAIL"),
    ("ops+alerts@mail.example.org", "EMAIL"),
    ("123-45-6789", "US_SSN"),
    ("+44 20 7946 0958", "PHONE"),
    ("(415) 555-0132", "PHONE"),
    ("DE89370400440532013000", "IBAN"),
    ("GB82 WEST 1234 5698 7654 32", "IBAN"),
    ("192.168.10.24", "IP_ADDRESS"),
    ("AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY"),
];

/// Invisible characters that can sit inside a value.
const INVISIBLE: &[char] = &[
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{00AD}', '\u{FEFF}', '\u{180E}',
];

/// Zeros of other digit forms: full-width, Arabic-Indic, Devanagari, Bengali, Thai,
/// mathematical bold.
const DIGIT_ZEROS: &[u32] = &[0xFF10, 0x0660, 0x0966, 0x09E6, 0x0E50, 0x1D7CE];

/// Spaces and dashes a separator can be written with.
const SPACES: &[char] = &['\u{00A0}', '\u{2007}', '\u{202F}', '\u{3000}', '\u{2009}'];
const DASHES: &[char] = &['\u{2010}', '\u{2011}', '\u{2013}', '\u{2212}', '\u{FF0D}'];

#[derive(Debug, Clone)]
struct Disguise {
    digits: Option<u32>,
    full_width_letters: bool,
    at_sign: u8,
    space: Option<char>,
    dash: Option<char>,
    /// (position as a fraction of the value's characters, invisible character)
    insertions: Vec<(u8, char)>,
}

fn disguise() -> impl Strategy<Value = Disguise> {
    (
        prop::option::of(prop::sample::select(DIGIT_ZEROS.to_vec())),
        any::<bool>(),
        0u8..3,
        prop::option::of(prop::sample::select(SPACES.to_vec())),
        prop::option::of(prop::sample::select(DASHES.to_vec())),
        prop::collection::vec(
            (any::<u8>(), prop::sample::select(INVISIBLE.to_vec())),
            0..4,
        ),
    )
        .prop_map(
            |(digits, full_width_letters, at_sign, space, dash, insertions)| Disguise {
                digits,
                full_width_letters,
                at_sign,
                space,
                dash,
                insertions,
            },
        )
}

/// `value` written with the disguise.
fn apply(value: &str, d: &Disguise) -> String {
    let mut chars: Vec<String> = value
        .chars()
        .map(|c| match c {
            '0'..='9' => match d.digits {
                Some(zero) => char::from_u32(zero + u32::from(c as u8 - b'0'))
                    .map_or(c.to_string(), |c| c.to_string()),
                None => c.to_string(),
            },
            'A'..='Z' | 'a'..='z' if d.full_width_letters => {
                char::from_u32(u32::from(c) - 0x21 + 0xFF01).map_or(c.to_string(), String::from)
            }
            '@' => match d.at_sign {
                1 => "＠".to_owned(),
                2 => "%40".to_owned(),
                _ => "@".to_owned(),
            },
            ' ' => d.space.map_or(" ".to_owned(), String::from),
            '-' => d.dash.map_or("-".to_owned(), String::from),
            c => c.to_string(),
        })
        .collect();
    for (at, invisible) in &d.insertions {
        // Inside the value: after its first character, before its last.
        let len = chars.len();
        if len > 2 {
            let i = 1 + usize::from(*at) % (len - 1);
            chars.insert(i, invisible.to_string());
        }
    }
    chars.concat()
}

proptest! {
    #[test]
    fn a_disguised_value_is_found_and_masked_whole(
        which in 0..VALUES.len(),
        d in disguise(),
        before in prop::sample::select(vec!["", "Contact: ", "see\u{00A0}", "日本 ", "x\n"]),
        after in prop::sample::select(vec!["", " today", ".", "\u{00A0}ok", " 日本"]),
    ) {
        let (value, entity) = VALUES[which];
        let shown = apply(value, &d);
        let text = format!("{before}{shown}{after}");
        let start = before.len();
        let end = start + shown.len();
        let found = detector().find(&text);
        let covering = found
            .iter()
            .find(|f| f.start <= start + first_char_len(&shown) && f.end >= end - last_char_len(&shown));
        prop_assert!(
            covering.is_some_and(|f| f.entity.name() == entity),
            "{value} as {shown:?} in {text:?}: {found:?}"
        );
        let mut s = Session::default();
        let masked = s.mask(&detector(), &Policy::default(), &text, Direction::Request).into_owned();
        // Nothing of the value is left beside the placeholders.
        let outside: String = masked.split('<').enumerate().map(|(i, part)| {
            if i == 0 { part } else { part.split_once('>').map_or(part, |(_, rest)| rest) }
        }).collect();
        let alnum = |t: &str| t.chars().filter(|c| c.is_alphanumeric()).count();
        prop_assert_eq!(alnum(&outside), alnum(before) + alnum(after), "{:?} left in {:?}", shown, masked);
        prop_assert_eq!(s.restore(&masked, false).into_owned(), text);
    }
}

proptest! {
    #[test]
    fn a_disguised_value_a_model_streams_in_pieces_is_masked_whole(
        which in 0..VALUES.len(),
        d in disguise(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let (value, _) = VALUES[which];
        let shown = apply(value, &d);
        let answer = format!("Sure: {shown} is the one.");
        let det = detector();
        let policy = Policy::default();
        let mut s = Session::default();
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|i| i.index(answer.len() + 1))
            .filter(|p| answer.is_char_boundary(*p))
            .collect();
        points.sort_unstable();
        let mut field = StreamText::new(false);
        let mut out = String::new();
        let mut last = 0;
        for p in points {
            out.push_str(&field.push(&mut s, &det, &policy, true, &answer[last..p]));
            last = p;
        }
        out.push_str(&field.push(&mut s, &det, &policy, true, &answer[last..]));
        out.push_str(&field.finish(&mut s, &det, &policy, true));
        let alnum = |t: &str| t.chars().filter(|c| c.is_alphanumeric()).count();
        let outside: String = out.split('<').enumerate().map(|(i, part)| {
            if i == 0 { part } else { part.split_once('>').map_or(part, |(_, rest)| rest) }
        }).collect();
        prop_assert_eq!(alnum(&outside), alnum("Sure: is the one."), "{:?} streamed as {:?}", shown, out);
    }
}

fn first_char_len(s: &str) -> usize {
    s.chars().next().map_or(0, char::len_utf8)
}

fn last_char_len(s: &str) -> usize {
    s.chars().next_back().map_or(0, char::len_utf8)
}

#[test]
fn the_disguises_named_in_the_issue_are_found() {
    let d = detector();
    for (text, value) in [
        (
            "card ４１１１ １１１１ １１１１ １１１１ ok",
            "４１１１ １１１１ １１１１ １１１１",
        ),
        ("mail jane＠example.com now", "jane＠example.com"),
        ("mail jane%40example.com now", "jane%40example.com"),
        (
            "card 4111\u{00A0}1111\u{00A0}1111\u{00A0}1111 ok",
            "4111\u{00A0}1111\u{00A0}1111\u{00A0}1111",
        ),
        (
            "card 4111\u{200B}1111\u{200B}1111\u{200B}1111 ok",
            "4111\u{200B}1111\u{200B}1111\u{200B}1111",
        ),
        ("ssn 123\u{00AD}-45-6789 ok", "123\u{00AD}-45-6789"),
        (
            "tel +44\u{2009}20\u{2009}7946\u{2009}0958 ok",
            "+44\u{2009}20\u{2009}7946\u{2009}0958",
        ),
    ] {
        let found = d.find(text);
        assert!(
            found.iter().any(|f| &text[f.start..f.end] == value),
            "{value:?} in {text:?}: {found:?}"
        );
    }
}

#[test]
fn numbers_glued_to_a_word_are_found() {
    let d = detector();
    for (text, value) in [
        ("id cust_4111111111111111 ok", "4111111111111111"),
        ("x4111111111111111", "4111111111111111"),
        ("4111111111111111x", "4111111111111111"),
        ("tel_415-555-0132", "415-555-0132"),
        ("ssn_123-45-6789.", "123-45-6789"),
    ] {
        let found: Vec<&str> = d.find(text).iter().map(|f| &text[f.start..f.end]).collect();
        assert_eq!(found, [value], "{text:?}");
    }
    for lookalike in [
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "commit 4f1c2b3a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a",
        "build_20240115 and v1.2.3.4.5",
        "order_4111111111111112 fails Luhn",
    ] {
        assert!(
            d.find(lookalike).is_empty(),
            "{lookalike:?}: {:?}",
            d.find(lookalike)
        );
    }
}
