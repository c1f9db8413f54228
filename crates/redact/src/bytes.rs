//! Byte scans shared by the searches by code (digit runs, numbers glued to words): where the
//! next number could open, eight bytes at a time where none can, so that prose costs little
//! more than reading it.

/// Whether `c` is a word character of the patterns' ASCII word boundaries.
pub(crate) fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Whether `c` may open a number: an ASCII digit, `(` or `+`.
fn opens_number(c: u8) -> bool {
    c.is_ascii_digit() || c == b'(' || c == b'+'
}

/// The first ASCII digit, `(` or `+` at `from` or later. Eight bytes are tested at once (SWAR);
/// the last few bytes one by one.
pub(crate) fn next_number_opening(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` equal to `c`: the high bit of each zero byte of `x ^ c·ONES`.
    let equal = |x: u64, c: u8| {
        let y = x ^ (ONES * u64::from(c));
        y.wrapping_sub(ONES) & !y & HIGHS
    };
    let mut i = from;
    while let Some(word) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().ok()?);
        // A byte below 0x80 is in `lo..=hi` when its value minus `lo` is at most `hi - lo`:
        // first the range from `(` to `9` (a superset, in a few operations), then exactly.
        let ascii = !x & HIGHS;
        let low = x & !HIGHS;
        let within = |lo: u8, hi: u8| {
            (low + ONES * u64::from(0x80 - lo)) & !(low + ONES * u64::from(0x7F - hi)) & ascii
        };
        if within(b'(', b'9') != 0 {
            // The lowest flagged byte is a true one (`equal` may flag a byte only above a
            // true match), so it is the first opening, found without a loop over the bytes.
            let found = within(b'0', b'9') | equal(x, b'(') | equal(x, b'+');
            if found != 0 {
                return Some(i + found.trailing_zeros() as usize / 8);
            }
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(|&c| opens_number(c))
        .map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openings_are_found_eight_bytes_at_a_time() {
        let text = "no digits in this sentence at all, then é9 and (x or +y";
        let naive = |from: usize| {
            text.bytes()
                .enumerate()
                .skip(from)
                .find(|(_, c)| opens_number(*c))
                .map(|(i, _)| i)
        };
        for from in 0..=text.len() + 1 {
            assert_eq!(
                next_number_opening(text.as_bytes(), from),
                naive(from),
                "from {from}"
            );
        }
        // Random bytes near the tested ones (borrows between bytes must not mislead).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet =
            b"()*+,-./09:a\x00\x01\x27\x28\x29\x2a\x2b\x2f\x30\x39\x3a\x7f\x80\xa8\xab\xb0\xff";
        for _ in 0..20_000 {
            let bytes: Vec<u8> = (0..24)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let pick = (x % (alphabet.len() as u64 * 4)) as usize;
                    alphabet.get(pick).copied().unwrap_or(b'q')
                })
                .collect();
            let want = bytes.iter().position(|&c| opens_number(c));
            assert_eq!(next_number_opening(&bytes, 0), want, "{bytes:?}");
        }
        for byte in 0..=255u8 {
            for at in [0, 7, 11] {
                let mut bytes = vec![b'a'; 16];
                bytes[at] = byte;
                let want = opens_number(byte).then_some(at);
                assert_eq!(
                    next_number_opening(&bytes, 0),
                    want,
                    "byte {byte:#x} at {at}"
                );
            }
        }
    }
}
