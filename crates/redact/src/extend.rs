//! Findings whose body is unbounded, extended by code from an opening the regex found: a
//! private key block (to its footer, or without one to the end of its base64 body) and a JWT
//! (base64url parts separated by dots, signed or not).
//!
//! In the one regex of all patterns such a body would be a run the engine keeps following
//! past every later match while it searches for the leftmost one (a `-----BEGIN … PRIVATE
//! KEY-----` with no footer sends each search to the end of the text), which made scanning
//! quadratic and its cost invisible. Here each extension reads what it reads, says how much,
//! and remembers what it learnt, so that openings sharing the same run or the same missing
//! footer are decided without reading it again: linear in all.

/// What earlier extensions in the same text learnt.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    /// The shape after the header run of the last JWT opening looked at: openings inside the
    /// same run share it (their header ends at the same place).
    jwt: Option<JwtShape>,
    /// The first private key footer at or after `.0` (its start and end), `None` if there is
    /// none up to the end of the text.
    footer: Option<(usize, Option<(usize, usize)>)>,
}

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const TAILS: [&str; 2] = ["PRIVATE KEY-----", "PRIVATE KEY BLOCK-----"];

/// `(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----` at `at`: the end, if it is there.
fn key_label_end(text: &str, mut at: usize) -> Option<usize> {
    let b = text.as_bytes();
    loop {
        if let Some(tail) = TAILS.iter().find(|t| text[at..].starts_with(**t)) {
            return Some(at + tail.len());
        }
        let word = b[at..]
            .iter()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            .count();
        if word == 0 || b.get(at + word) != Some(&b' ') {
            return None;
        }
        at += word + 1;
    }
}

/// The first footer (`-----END … PRIVATE KEY-----`) at or after `from`, and the bytes read.
fn first_footer(text: &str, from: usize) -> (Option<(usize, usize)>, u64) {
    let mut at = from;
    while let Some(rel) = text[at..].find(END) {
        let start = at + rel;
        if let Some(end) = key_label_end(text, start + END.len()) {
            return (Some((start, end)), (end - from) as u64);
        }
        at = start + 1;
    }
    (None, (text.len() - from) as u64)
}

/// The fewest base64 characters a block without a footer must hold to be masked (an opening
/// alone, or followed by a word, holds no key).
const MIN_BODY: usize = 16;
/// A base64 line at least this long is a full line of a wrapped body: more may follow. A
/// shorter one is the last (PEM and PGP wrap at 64, OpenSSH at 70).
const FULL_LINE: usize = 40;
/// Armor headers that may open a body (encrypted PEM, PGP).
const ARMOR_HEADERS: [&str; 6] = [
    "Proc-Type:",
    "DEK-Info:",
    "Version:",
    "Comment:",
    "Hash:",
    "Charset:",
];

fn base64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'='
}

/// Past spaces, tabs and line breaks, real or escaped as in a JSON string (`\n`, `\r`): where
/// the next text starts, and whether a line break was passed.
fn skip_breaks(b: &[u8], mut at: usize) -> (usize, bool) {
    let mut line_break = false;
    loop {
        match b.get(at) {
            Some(b' ' | b'\t') => at += 1,
            Some(b'\r' | b'\n') => {
                at += 1;
                line_break = true;
            }
            Some(b'\\') if matches!(b.get(at + 1), Some(b'n' | b'r')) => {
                at += 2;
                line_break = true;
            }
            _ => return (at, line_break),
        }
    }
}

/// The end of the line at `at` (before its real or escaped line break).
fn line_end(b: &[u8], at: usize) -> usize {
    let mut i = at;
    while i < b.len()
        && b[i] != b'\n'
        && b[i] != b'\r'
        && !(b[i] == b'\\' && b.get(i + 1) == Some(&b'n'))
    {
        i += 1;
    }
    i
}

/// The body of a block without a footer, from `from` (the end of its opening): armor
/// headers, then lines of base64 while they are full lines, the last shorter line, and a
/// PGP checksum line (`=` and four characters). Its end, if it holds at least [`MIN_BODY`]
/// base64 characters, and the bytes read.
fn body_end(text: &str, from: usize) -> (Option<usize>, u64) {
    let b = text.as_bytes();
    let run_at = |at: usize| b[at..].iter().take_while(|c| base64_char(**c)).count();
    let (mut at, mut end, mut base64) = (from, from, 0);
    loop {
        let (line, line_break) = skip_breaks(b, at);
        // A header stands on a line of its own, before the base64.
        if base64 == 0 && line_break && ARMOR_HEADERS.iter().any(|h| text[line..].starts_with(h)) {
            at = line_end(b, line);
            end = at;
            continue;
        }
        let run = run_at(line);
        let checksum = run > 0 && b[line] == b'=' && run <= 5;
        if run == 0 || (checksum && base64 == 0) {
            at = line;
            break;
        }
        base64 += run;
        at = line + run;
        end = at;
        if checksum || run < FULL_LINE {
            // The last line; a PGP checksum line may follow it.
            let (next, _) = skip_breaks(b, at);
            let sum = run_at(next);
            if !checksum && b.get(next) == Some(&b'=') && sum <= 5 {
                end = next + sum;
            }
            at = next + sum;
            break;
        }
    }
    let read = (at - from) as u64 + 1;
    ((base64 >= MIN_BODY).then_some(end), read)
}

/// A private key block from its opening at `start` (the regex matched `-----BEGIN …
/// PRIVATE KEY-----` up to `opening_end`) to the end of its first footer, or without a
/// footer to the end of its base64 body: the end of the finding, if any, and the bytes read.
pub(crate) fn private_key(
    text: &str,
    start: usize,
    opening_end: usize,
    memo: &mut Memo,
) -> (Option<usize>, u64) {
    debug_assert!(text[start..].starts_with(BEGIN));
    let (footer, read) = match memo.footer {
        Some((from, found))
            if from <= opening_end && found.is_none_or(|(s, _)| s >= opening_end) =>
        {
            (found, 1)
        }
        _ => {
            let (found, read) = first_footer(text, opening_end);
            memo.footer = Some((opening_end, found));
            (found, read)
        }
    };
    match footer {
        Some((_, end)) => (Some(end), read),
        None => {
            let (end, body) = body_end(text, opening_end);
            (end, read + body)
        }
    }
}

fn base64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// The most spaces or tabs on either side of a JWT's dot (`header . payload`, an evasion).
const MAX_DOT_SPACES: usize = 4;
/// The fewest characters of a signature (an HMAC-SHA256 one has 43).
const MIN_SIGNATURE: usize = 10;
/// How much of a header is decoded to recognise an unsigned token's (`{"alg":…`).
const HEADER_PREFIX: usize = 64;

/// What follows a JWT's header run, the same for every opening inside that run.
#[derive(Debug, Clone, Copy)]
struct JwtShape {
    /// The end of the header run.
    header_end: usize,
    /// The end of a token with a signature part, if there is one.
    signed: Option<usize>,
    /// The end of a token without one (`header.payload` or `header.payload.`), if there is a
    /// payload.
    unsigned: Option<usize>,
    /// How far the shape was read.
    read_to: usize,
}

/// A dot at `at` with at most [`MAX_DOT_SPACES`] spaces or tabs on either side: where it is,
/// and where the next part starts.
fn dot_after(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let spaces = |from: usize| {
        from + b[from..]
            .iter()
            .take(MAX_DOT_SPACES)
            .take_while(|c| **c == b' ' || **c == b'\t')
            .count()
    };
    let dot = spaces(at);
    (b.get(dot) == Some(&b'.')).then(|| (dot, spaces(dot + 1)))
}

/// The shape after a header run ending at `header_end`.
fn jwt_shape(text: &str, header_end: usize) -> JwtShape {
    let b = text.as_bytes();
    let run = |from: usize| from + b[from..].iter().take_while(|c| base64url(**c)).count();
    let mut shape = JwtShape {
        header_end,
        signed: None,
        unsigned: None,
        read_to: header_end,
    };
    let Some((_, payload)) = dot_after(b, header_end) else {
        shape.read_to = (header_end + 2 * MAX_DOT_SPACES + 1).min(b.len());
        return shape;
    };
    if !text[payload..].starts_with("eyJ") {
        shape.read_to = payload;
        return shape;
    }
    let payload_end = run(payload + 3);
    shape.read_to = payload_end;
    if payload_end - (payload + 3) < 5 {
        return shape;
    }
    shape.unsigned = Some(payload_end);
    if let Some((dot, signature)) = dot_after(b, payload_end) {
        let signature_end = run(signature);
        shape.read_to = signature_end;
        if signature_end - signature >= MIN_SIGNATURE {
            shape.signed = Some(signature_end);
        } else if signature == dot + 1 {
            // `header.payload.`, or a stub of a signature glued to it: the whole token.
            shape.unsigned = Some(signature_end);
        } else {
            shape.unsigned = Some(dot + 1);
        }
    }
    shape
}

fn base64url_value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' | b'+' => 62,
        b'_' | b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Base64url (or base64) without padding, decoded; whatever follows the first character
/// outside the alphabet is ignored.
pub(crate) fn decode_base64url(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in text.iter().map_while(|c| base64url_value(*c)) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Whether a header (base64url, from its `eyJ`) decodes to a JOSE header's opening: a JSON
/// object naming `alg`, `typ`, `enc` or `kid` in its first [`HEADER_PREFIX`] characters.
fn jose_header(header: &[u8]) -> bool {
    let decoded = decode_base64url(&header[..header.len().min(HEADER_PREFIX)]);
    decoded.first() == Some(&b'{')
        && [&b"\"alg\""[..], b"\"typ\"", b"\"enc\"", b"\"kid\""]
            .iter()
            .any(|k| decoded.windows(k.len()).any(|w| w == *k))
}

/// A JWT from `start` (where the regex found `eyJ` and five more characters after a word
/// boundary): `eyJ` header, `.eyJ` payload (at least five characters after `eyJ`), and a
/// signature of at least ten; or, without a signature (`header.payload`, `header.payload.`),
/// a header that decodes to a JOSE header. Up to four spaces may stand on either side of a
/// dot. The end of the finding, if it completes, and the bytes read.
pub(crate) fn jwt(text: &str, start: usize, memo: &mut Memo) -> (Option<usize>, u64) {
    let b = text.as_bytes();
    let (shape, read) = match memo.jwt {
        // An opening inside the header run of an earlier one: its header ends there too.
        Some(shape) if start < shape.header_end => (shape, 1),
        _ => {
            let header_end =
                start + 3 + b[start + 3..].iter().take_while(|c| base64url(**c)).count();
            let shape = jwt_shape(text, header_end);
            memo.jwt = Some(shape);
            (shape, (shape.read_to - start) as u64)
        }
    };
    if shape.header_end - (start + 3) < 5 {
        return (None, read);
    }
    if let Some(end) = shape.signed {
        return (Some(end), read);
    }
    let Some(end) = shape.unsigned else {
        return (None, read);
    };
    let header = &b[start..shape.header_end];
    let decoded = HEADER_PREFIX.min(header.len()) as u64;
    (jose_header(header).then_some(end), read + decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_ends_at_its_first_footer_and_a_missing_footer_is_looked_for_once() {
        let t = "x -----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END CERTIFICATE-----\nAB\n\
                 -----END RSA PRIVATE KEY----- tail -----END PRIVATE KEY-----";
        let s = t.find(BEGIN).unwrap();
        let open = s + "-----BEGIN RSA PRIVATE KEY-----".len();
        let (end, _) = private_key(t, s, open, &mut Memo::default());
        assert_eq!(
            &t[end.unwrap() - 29..end.unwrap()],
            "-----END RSA PRIVATE KEY-----"
        );

        let many = "-----BEGIN PRIVATE KEY----- ".repeat(1000);
        let mut memo = Memo::default();
        let mut read = 0;
        for (i, _) in many.match_indices(BEGIN) {
            let (end, r) = private_key(&many, i, i + 27, &mut memo);
            assert!(end.is_none());
            read += r;
        }
        assert!(read < 3 * many.len() as u64, "read {read}");
    }

    #[test]
    fn a_block_without_a_footer_ends_with_its_base64_body() {
        let line = "MIIEowIBAAKCAQEA7bq9aZ3kL0pQ1rS2tU3vW4xY5zA6bC7dE8fG9hI0jK1lM2nO";
        let open = "-----BEGIN RSA PRIVATE KEY-----";
        for (text, body) in [
            (
                format!("{open}\n{line}\n{line}\nAbCd==\nThanks!"),
                format!("\n{line}\n{line}\nAbCd=="),
            ),
            (
                format!("{open}\\n{line}\\nAbCd==\" }}"),
                format!("\\n{line}\\nAbCd=="),
            ),
            (format!("{open} {line} {line}"), format!(" {line} {line}")),
            (
                format!(
                    "{open}\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B\n\n{line}\nxyz"
                ),
                format!("\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B\n\n{line}\nxyz"),
            ),
        ] {
            let (end, _) = private_key(&text, 0, open.len(), &mut Memo::default());
            assert_eq!(&text[open.len()..end.unwrap()], body, "{text:?}");
        }
        let pgp = format!("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{line}\nAbCd\n=x1Y2\n");
        let (end, _) = private_key(&pgp, 0, 37, &mut Memo::default());
        assert!(pgp[..end.unwrap()].ends_with("AbCd\n=x1Y2"));
        // An opening followed by a word or an address holds no key.
        for text in [
            format!("{open} 10.0.0.1"),
            format!("{open}\nThanks"),
            open.to_owned(),
        ] {
            assert_eq!(
                private_key(&text, 0, open.len(), &mut Memo::default()).0,
                None
            );
        }
    }

    #[test]
    fn a_jwt_completes_as_the_regex_did_and_failed_runs_are_not_read_again() {
        let token =
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let t = format!("auth {token}-- end");
        let (end, _) = jwt(&t, 5, &mut Memo::default());
        assert_eq!(
            &t[5..end.unwrap()],
            format!("{token}--"),
            "greedy, as the regex"
        );
        assert_eq!(
            jwt("eyJabcdef.eyJabc.0123456789", 0, &mut Memo::default()).0,
            None
        );

        let run = "eyJaaaaa-4111111111111111-".repeat(2000);
        let mut memo = Memo::default();
        let mut read = 0;
        for (i, _) in run.match_indices("eyJ") {
            let (end, r) = jwt(&run, i, &mut memo);
            assert_eq!(end, None);
            read += r;
        }
        assert!(read < 2 * run.len() as u64, "read {read}");
    }

    #[test]
    fn an_unsigned_jwt_needs_a_jose_header_and_spaced_dots_still_join_it() {
        // {"alg":"none","typ":"JWT"} and {"sub":"42","name":"Ann"}
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let payload = "eyJzdWIiOiI0MiIsIm5hbWUiOiJBbm4ifQ";
        fn whole(t: &str) -> Option<&str> {
            jwt(t, 0, &mut Memo::default()).0.map(|e| &t[..e])
        }
        let dotted = format!("{header}.{payload}.");
        assert_eq!(whole(&format!("{dotted} rest")), Some(dotted.as_str()));
        let bare = format!("{header}.{payload}");
        assert_eq!(whole(&format!("{bare}, rest")), Some(bare.as_str()));
        let spaced = format!("{header} . {payload} . dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U");
        assert_eq!(whole(&spaced), Some(spaced.as_str()));
        // Random base64url after `eyJ` is no JOSE header: without a signature, no token.
        assert_eq!(
            whole("eyJx9Qk2LmZpRt7WvB3nHs.eyJq8Yd1Fp0LkMn6Tr4Vw2Zs"),
            None
        );
        // An opening inside a failed header run is decided on its own header.
        let glued = format!("eyJx9Qk2-{bare}");
        let mut memo = Memo::default();
        assert_eq!(jwt(&glued, 0, &mut memo).0, None);
        assert_eq!(jwt(&glued, 9, &mut memo).0, Some(glued.len()));
    }

    #[test]
    fn base64url_decodes_with_or_without_padding() {
        assert_eq!(
            decode_base64url(b"eyJhbGciOiJub25lIn0"),
            b"{\"alg\":\"none\"}"
        );
        assert_eq!(decode_base64url(b"aGk"), b"hi");
        assert_eq!(decode_base64url(b"aGk=rest"), b"hi");
    }
}
