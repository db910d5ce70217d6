//! Redis's glob, what `KEYS`, `SCAN ... MATCH`, `CONFIG GET` and ACL key patterns mean
//! by a pattern: `*` any run of bytes, `?` one byte, `[abc]`, `[a-z]` and `[^...]` one
//! byte of (or outside) a class, `\x` the byte `x`; everything else literal. On bytes,
//! as keys are bytes: no encoding is assumed.
//!
//! Every token but `*` takes exactly one byte, so a mismatch need only go back to the
//! last `*` and let it take one byte more: time bounded by the pattern's length times
//! the text's, however the pattern is built (Redis recurses per star and caps the depth
//! at 1,000 instead).
//!
//! The corner cases follow Redis's `stringmatchlen`: a class left open runs to the end
//! of the pattern; a range's ends may come in either order; inside a class `\` escapes
//! the next byte (compared exactly, even ignoring case); a trailing `\` is a literal
//! backslash; ignoring case, a range is ordered by its raw bytes before both ends are
//! lowered (`[Z-a]` then matches nothing); and the empty text is matched by the empty
//! pattern only (`*` does not match it: callers that mean "every key" by a bare `*`
//! say so themselves, as Redis's KEYS and SCAN do).
//!
//! Two differences, on purpose: Redis gives up (no match) past 1,000 nested stars,
//! where this matcher answers; and on x86 Redis compares a range's ends as signed
//! bytes (`[a-\xff]` there holds `\x00`..`a` and `\xff`), where this one compares
//! unsigned, as Redis does on ARM.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    matches_case(pattern, text, false)
}

/// Whether `text` matches `pattern`, ASCII case ignored when `nocase` (CONFIG GET's).
pub fn matches_case(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
    if text.is_empty() {
        return pattern.is_empty();
    }
    let (mut p, mut t) = (0usize, 0usize);
    // Where the last `*` was, and where in the text it was last tried from.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&b'*') {
            star = Some((p, t));
            p += 1;
            continue;
        }
        let step = pattern.get(p).map(|_| token(pattern, p, text[t], nocase));
        match step {
            Some((true, next)) => {
                p = next;
                t += 1;
            }
            Some((false, _)) | None => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Matches `byte` against the one-byte token at `pattern[p]` (not a `*`): whether it
/// matched, and where the next token starts.
fn token(pattern: &[u8], p: usize, byte: u8, nocase: bool) -> (bool, usize) {
    let eq = |a: u8, b: u8| {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    match pattern[p] {
        b'?' => (true, p + 1),
        b'[' => class(pattern, p + 1, byte, nocase),
        b'\\' if p + 1 < pattern.len() => (eq(pattern[p + 1], byte), p + 2),
        literal => (eq(literal, byte), p + 1),
    }
}

/// A class whose body starts at `pattern[p]` (after the `[`).
fn class(pattern: &[u8], mut p: usize, byte: u8, nocase: bool) -> (bool, usize) {
    let fold = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
    let c = fold(byte);
    let negated = pattern.get(p) == Some(&b'^');
    if negated {
        p += 1;
    }
    let mut hit = false;
    loop {
        match pattern.get(p) {
            // Open to the end: the class is what is left.
            None => break,
            // Escaped: that byte exactly, whatever the case rule.
            Some(b'\\') if p + 1 < pattern.len() => {
                hit |= pattern[p + 1] == byte;
                p += 2;
            }
            Some(b']') => {
                p += 1;
                break;
            }
            Some(&start) if pattern.get(p + 1) == Some(&b'-') && p + 2 < pattern.len() => {
                // Ordered by the raw bytes, then lowered: Redis's order of the two.
                let end = pattern[p + 2];
                let (low, high) = if start <= end {
                    (start, end)
                } else {
                    (end, start)
                };
                hit |= (fold(low)..=fold(high)).contains(&c);
                p += 3;
            }
            Some(&literal) => {
                hit |= fold(literal) == c;
                p += 1;
            }
        }
    }
    (hit != negated, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_s_answers() {
        // What Redis's stringmatchlen answers, case by case (its documented examples,
        // and the corners its code decides).
        for (pattern, text, want) in [
            ("h?llo", "hello", true),
            ("h?llo", "hallo", true),
            ("h?llo", "hllo", false),
            ("h*llo", "hllo", true),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hallo", true),
            ("h[a-b]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h[b-a]llo", "hallo", true),
            ("*", "anything", true),
            ("*", "", false),
            ("", "", true),
            ("", "a", false),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("*a*", "xxaxx", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("\\*hello", "*hello", true),
            ("\\*hello", "xhello", false),
            ("\\?", "?", true),
            ("\\?", "a", false),
            ("a\\", "a\\", true),
            ("[\\]]", "]", true),
            ("[\\\\]", "\\", true),
            ("[!0-9]x", "!x", true),
            ("[!0-9]x", "ax", false),
            ("[a-]x]", "x", true),
            ("[a-]x]", "]", true),
            ("[a-]x]", "b", false),
            ("[abc", "b", true),
            ("[abc", "d", false),
            ("[", "a", false),
            ("[-a]", "-", true),
            ("[]", "a", false),
            ("[^]", "a", true),
            ("[a-", "-", true),
            // A range may end at a `\` (taken literally there): `a`..`\` holds `]`,
            // and the second `]` is a literal after the class.
            ("[a-\\]]", "]]", true),
            ("[a-\\]]", "]", false),
            ("[\\", "\\", true),
            ("user:[0-9]*", "user:7abc", true),
            ("user:[0-9]*", "user:x", false),
            ("fz:*", "fz:", true),
            ("*-*-*", "proto-max-bulk-len", true),
        ] {
            assert_eq!(
                matches(pattern.as_bytes(), text.as_bytes()),
                want,
                "{pattern:?} ~ {text:?}"
            );
        }
    }

    #[test]
    fn bytes_not_characters() {
        assert!(matches(b"k?", b"k\xff"));
        assert!(matches(b"k[\x80-\xff]", b"k\xc3"));
        assert!(!matches(b"k?", "ké".as_bytes()), "é is two bytes");
        assert!(matches(b"k??", "ké".as_bytes()));
    }

    #[test]
    fn case_is_ignored_only_when_asked() {
        assert!(!matches(b"TIME*", b"timeout"));
        assert!(matches_case(b"TIME*", b"timeout", true));
        assert!(matches_case(b"\\TIME*", b"timeout", true));
        assert!(matches_case(b"[S-U]imeout", b"timeout", true));
        assert!(!matches_case(b"[^T]imeout", b"timeout", true));
        // Redis orders a range by its raw bytes, then lowers it: `[Z-a]` is `z`..`a`.
        assert!(!matches_case(b"[Z-a]", b"m", true));
        assert!(!matches_case(b"[a-Z]", b"m", true));
        // An escaped byte in a class is compared exactly.
        assert!(!matches_case(b"[\\T]imeout", b"timeout", true));
        assert!(matches_case(b"[\\t]imeout", b"timeout", true));
    }

    #[test]
    fn a_pattern_built_to_be_slow_is_not() {
        let stars = format!("{}b", "*a".repeat(5_000));
        let text = "a".repeat(20_000);
        let started = std::time::Instant::now();
        assert!(!matches(stars.as_bytes(), text.as_bytes()));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    /// Redis's `stringmatchlen` read straight: recursive at each `*`, the class scanned
    /// in place with its pattern pointer, as its C code walks it. The iterative matcher
    /// must give its answers for every short pattern over an alphabet of every special
    /// byte, against texts that hold them too, in both case modes.
    fn redis(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
        let low = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
        let (mut p, mut t) = (0usize, 0usize);
        while p < pattern.len() && t < text.len() {
            match pattern[p] {
                b'*' => {
                    while p + 1 < pattern.len() && pattern[p + 1] == b'*' {
                        p += 1;
                    }
                    if p + 1 == pattern.len() {
                        return true;
                    }
                    return (t..text.len())
                        .any(|from| redis(&pattern[p + 1..], &text[from..], nocase));
                }
                b'?' => t += 1,
                b'[' => {
                    p += 1;
                    let not = pattern.get(p) == Some(&b'^');
                    if not {
                        p += 1;
                    }
                    let mut hit = false;
                    loop {
                        let left = pattern.len() - p;
                        if left >= 2 && pattern[p] == b'\\' {
                            p += 1;
                            hit |= pattern[p] == text[t];
                        } else if left >= 1 && pattern[p] == b']' {
                            break;
                        } else if left == 0 {
                            p -= 1;
                            break;
                        } else if left >= 3 && pattern[p + 1] == b'-' {
                            let (mut a, mut b) = (pattern[p], pattern[p + 2]);
                            if a > b {
                                std::mem::swap(&mut a, &mut b);
                            }
                            let c = low(text[t]);
                            hit |= low(a) <= c && c <= low(b);
                            p += 2;
                        } else {
                            hit |= low(pattern[p]) == low(text[t]);
                        }
                        p += 1;
                    }
                    if hit == not {
                        return false;
                    }
                    t += 1;
                }
                c => {
                    let c = if c == b'\\' && pattern.len() - p >= 2 {
                        p += 1;
                        pattern[p]
                    } else {
                        c
                    };
                    if low(c) != low(text[t]) {
                        return false;
                    }
                    t += 1;
                }
            }
            p += 1;
            if t == text.len() {
                while p < pattern.len() && pattern[p] == b'*' {
                    p += 1;
                }
            }
        }
        p >= pattern.len() && t == text.len()
    }

    fn all_strings(alphabet: &[u8], longest: u32) -> Vec<Vec<u8>> {
        (1..=longest)
            .flat_map(|n| {
                (0..alphabet.len().pow(n)).map(move |mut i| {
                    (0..n)
                        .map(|_| {
                            let c = alphabet[i % alphabet.len()];
                            i /= alphabet.len();
                            c
                        })
                        .collect()
                })
            })
            .collect()
    }

    #[test]
    fn agrees_with_a_straight_reading_of_redis_s_matcher() {
        let patterns = all_strings(b"aB*?[]^-\\", 4);
        let texts = all_strings(b"abB-^\\]", 3);
        let mut checked = 0;
        for pattern in &patterns {
            for text in &texts {
                for nocase in [false, true] {
                    assert_eq!(
                        matches_case(pattern, text, nocase),
                        redis(pattern, text, nocase),
                        "{:?} ~ {:?} (nocase {nocase})",
                        String::from_utf8_lossy(pattern),
                        String::from_utf8_lossy(text)
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 1_000_000, "{checked}");
    }
}
