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
//! The corner cases follow Redis's `stringmatchlen` (its tests are the table below):
//! a class left open runs to the end of the pattern; a range's ends may come in either
//! order; inside a class `\` escapes the next byte; a trailing `\` is a literal
//! backslash; and the empty text is matched by the empty pattern only (`*` does not
//! match it, as in Redis).

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
            Some(b'\\') if p + 1 < pattern.len() => {
                hit |= fold(pattern[p + 1]) == c;
                p += 2;
            }
            Some(b']') => {
                p += 1;
                break;
            }
            Some(&start) if pattern.get(p + 1) == Some(&b'-') && p + 2 < pattern.len() => {
                let (a, b) = (fold(start), fold(pattern[p + 2]));
                let (low, high) = if a <= b { (a, b) } else { (b, a) };
                hit |= (low..=high).contains(&c);
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
    fn redis_s_own_cases() {
        // From Redis's util.c tests and keyspace tests, and its documented examples.
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
        assert!(matches_case(b"[S-U]imeout", b"timeout", true));
        assert!(!matches_case(b"[^T]imeout", b"timeout", true));
    }

    #[test]
    fn a_pattern_built_to_be_slow_is_not() {
        let stars = format!("{}b", "*a".repeat(5_000));
        let text = "a".repeat(20_000);
        let started = std::time::Instant::now();
        assert!(!matches(stars.as_bytes(), text.as_bytes()));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    /// The same answers as a plain recursive matcher over every short pattern and text
    /// drawn from a small alphabet.
    #[test]
    fn agrees_with_a_recursive_reading_of_the_rules() {
        fn reference(p: &[u8], t: &[u8]) -> bool {
            match p.first() {
                None => t.is_empty(),
                Some(b'*') => (0..=t.len()).any(|i| reference(&p[1..], &t[i..])),
                Some(_) => match t.first() {
                    None => false,
                    Some(&c) => {
                        let (hit, next) = token(p, 0, c, false);
                        hit && reference(&p[next..], &t[1..])
                    }
                },
            }
        }
        let alphabet = [b'a', b'b', b'*', b'?', b'[', b']', b'^', b'-', b'\\'];
        let texts: Vec<Vec<u8>> = (1..=3)
            .flat_map(|n| {
                (0..3usize.pow(n)).map(move |mut i| {
                    (0..n)
                        .map(|_| {
                            let c = [b'a', b'b', b']'][i % 3];
                            i /= 3;
                            c
                        })
                        .collect()
                })
            })
            .collect();
        let mut checked = 0;
        for n in 1..=4u32 {
            for mut i in 0..alphabet.len().pow(n) {
                let pattern: Vec<u8> = (0..n)
                    .map(|_| {
                        let c = alphabet[i % alphabet.len()];
                        i /= alphabet.len();
                        c
                    })
                    .collect();
                for text in &texts {
                    assert_eq!(
                        matches(&pattern, text),
                        reference(&pattern, text),
                        "{:?} ~ {:?}",
                        String::from_utf8_lossy(&pattern),
                        String::from_utf8_lossy(text)
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 100_000);
    }
}
