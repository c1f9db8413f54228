//! Findings whose body is unbounded, extended by code from an opening the regex found: a
//! private key block (to its footer) and a JWT (three dot-separated base64url parts).
//!
//! In the one regex of all patterns such a body would be a run the engine keeps following
//! past every later match while it searches for the leftmost one (a `-----BEGIN … PRIVATE
//! KEY-----` with no footer sends each search to the end of the text), which made scanning
//! quadratic and its cost invisible. Here each extension reads what it reads, says how much,
//! and remembers what it learnt, so that openings sharing the same failed run or the same
//! missing footer are refused without reading it again: linear in all.

/// What earlier extensions in the same text learnt.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    /// JWT openings before this offset cannot complete: they share the run of a failed one.
    jwt_dead_until: usize,
    /// The first private key footer at or after `.0` (its start and end), `None` if there is
    /// none up to the end of the text.
    footer: Option<(usize, Option<(usize, usize)>)>,
}

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const TAIL: &str = "PRIVATE KEY-----";

/// `(?:[A-Z0-9]+ )*PRIVATE KEY-----` at `at`: the end, if it is there.
fn key_label_end(text: &str, mut at: usize) -> Option<usize> {
    let b = text.as_bytes();
    loop {
        if text[at..].starts_with(TAIL) {
            return Some(at + TAIL.len());
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

/// A private key block from its opening at `start` (the regex matched `-----BEGIN …
/// PRIVATE KEY-----` up to `opening_end`) to the end of its first footer: the end of the
/// finding, if there is a footer, and the bytes read.
pub(crate) fn private_key(
    text: &str,
    start: usize,
    opening_end: usize,
    memo: &mut Memo,
) -> (Option<usize>, u64) {
    debug_assert!(text[start..].starts_with(BEGIN));
    if let Some((from, found)) = memo.footer
        && from <= opening_end
        && found.is_none_or(|(s, _)| s >= opening_end)
    {
        return (found.map(|(_, e)| e), 1);
    }
    let (found, read) = first_footer(text, opening_end);
    memo.footer = Some((opening_end, found));
    (found.map(|(_, e)| e), read)
}

fn base64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// `eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}` from `start`
/// (where the regex found `eyJ` and five more characters after a word boundary): the end of
/// the finding, if it completes, and the bytes read.
pub(crate) fn jwt(text: &str, start: usize, memo: &mut Memo) -> (Option<usize>, u64) {
    if start < memo.jwt_dead_until {
        return (None, 1);
    }
    let b = text.as_bytes();
    let run = |from: usize| from + b[from..].iter().take_while(|c| base64url(**c)).count();
    let header_end = run(start + 3);
    let found = (|| {
        if header_end - (start + 3) < 5 || b.get(header_end) != Some(&b'.') {
            return Err(header_end);
        }
        let payload = header_end + 1;
        if !text[payload..].starts_with("eyJ") {
            return Err(payload);
        }
        let payload_end = run(payload + 3);
        if payload_end - (payload + 3) < 5 || b.get(payload_end) != Some(&b'.') {
            return Err(payload_end);
        }
        let signature = payload_end + 1;
        let signature_end = run(signature);
        if signature_end - signature < 10 {
            return Err(signature_end);
        }
        Ok(signature_end)
    })();
    match found {
        Ok(end) => (Some(end), (end - start) as u64),
        Err(read_to) => {
            // Any opening inside the same header run ends at the same place, and fails alike.
            memo.jwt_dead_until = header_end;
            (None, (read_to.max(header_end) - start) as u64)
        }
    }
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
        assert!(read < 2 * many.len() as u64, "read {read}");
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
}
