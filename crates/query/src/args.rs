//! A cursor over a command's arguments.
//!
//! Command arguments arrive already split (RESP bulk strings), so the "grammar" of
//! `FT.CREATE` or `FT.SEARCH` options is a sequence of keyword and value tokens; this
//! cursor is what walks them. Keywords compare ASCII case-insensitively, as Redis does.

use crate::error::{QueryError, Result};

/// Arguments of one command, consumed front to back.
#[derive(Debug)]
pub struct Args<'a, A> {
    items: &'a [A],
    pos: usize,
}

impl<'a, A: AsRef<[u8]>> Args<'a, A> {
    pub fn new(items: &'a [A]) -> Self {
        Args { items, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.items.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn peek(&self) -> Option<&'a [u8]> {
        self.items.get(self.pos).map(AsRef::as_ref)
    }

    /// The token `n` places after the next one, without consuming anything.
    pub fn peek_at(&self, n: usize) -> Option<&'a [u8]> {
        self.items.get(self.pos + n).map(AsRef::as_ref)
    }

    /// The next raw token, or [`QueryError::MissingArgument`].
    pub fn next_bytes(&mut self) -> Result<&'a [u8]> {
        let item = self
            .items
            .get(self.pos)
            .ok_or(QueryError::MissingArgument)?;
        self.pos += 1;
        Ok(item.as_ref())
    }

    /// The next token as text; binary tokens are shown lossily in errors but rejected
    /// where text is required.
    pub fn next_str(&mut self) -> Result<&'a str> {
        let bytes = self.next_bytes()?;
        std::str::from_utf8(bytes)
            .map_err(|_| QueryError::UnexpectedArgument(String::from_utf8_lossy(bytes).into()))
    }

    /// Consumes the next token if it is `keyword` (any case).
    pub fn eat(&mut self, keyword: &str) -> bool {
        match self.peek() {
            Some(token) if token.eq_ignore_ascii_case(keyword.as_bytes()) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    /// Skips `n` tokens, which the caller has checked exist.
    pub fn skip(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.items.len());
    }

    /// The next `n` tokens as their own cursor (for `<nargs> ...` groups).
    pub fn take(&mut self, n: usize) -> Result<Args<'a, A>> {
        if n > self.remaining() {
            return Err(QueryError::MissingArgument);
        }
        let sub = Args {
            items: &self.items[self.pos..self.pos + n],
            pos: 0,
        };
        self.pos += n;
        Ok(sub)
    }
}

/// Parses a whole token as a signed integer; `None` for anything else.
pub fn parse_i64(token: &[u8]) -> Option<i64> {
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// Parses a whole token as a finite or infinite (never NaN) float, accepting the spellings
/// Redis accepts: `inf`, `+inf`, `-inf` in any case.
pub fn parse_f64(token: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(token).ok()?;
    // Compared in place, not lowercased into a copy: this runs for every KNN clause and
    // every numeric value indexed.
    let infinite = |t: &str| t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinity");
    let v: f64 = match text.strip_prefix('-') {
        Some(rest) if infinite(rest) => f64::NEG_INFINITY,
        _ if infinite(text.strip_prefix('+').unwrap_or(text)) => f64::INFINITY,
        // Rust's float grammar accepts "NaN" and "inf" spelled other ways; the arms above
        // already took the infinities, and NaN is never a valid number here.
        _ => text.parse().ok().filter(|v: &f64| v.is_finite())?,
    };
    Some(v)
}

/// Shows a token in an error message.
pub fn show(token: &[u8]) -> String {
    String::from_utf8_lossy(token).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_case_insensitive_and_values_are_exact() {
        let items = ["sChEmA", "Name"];
        let mut args = Args::new(&items);
        assert!(!args.eat("PREFIX"));
        assert!(args.eat("SCHEMA"));
        assert_eq!(args.next_str().unwrap(), "Name");
        assert_eq!(args.next_str(), Err(QueryError::MissingArgument));
    }

    #[test]
    fn numbers_follow_redis_spelling() {
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"+INF"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"1.5e3"), Some(1500.0));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b"1.5x"), None);
        assert_eq!(parse_i64(b"-7"), Some(-7));
        assert_eq!(parse_i64(b"7.0"), None);
    }

    /// The spelling rules as they were written first (lowercase a copy, then match), the
    /// reference for the in-place comparison.
    fn parse_f64_by_copy(token: &[u8]) -> Option<f64> {
        let text = std::str::from_utf8(token).ok()?;
        match text.to_ascii_lowercase().as_str() {
            "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
            "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
            other => other.parse().ok().filter(|v: &f64| v.is_finite()),
        }
    }

    #[test]
    fn numbers_parse_as_the_lowercased_copy_did() {
        let signs = ["", "+", "-", "--", "+-", "-+", "++"];
        let bodies = [
            "inf", "INF", "Inf", "infinity", "InFiNiTy", "infin", "nan", "NaN", "1", "1.5E3",
            "1e400", "-0", "0.000", "1_0", " 1", "1 ", "", "e5", ".5", "5.",
        ];
        for sign in signs {
            for body in bodies {
                let token = format!("{sign}{body}");
                let want = parse_f64_by_copy(token.as_bytes());
                let got = parse_f64(token.as_bytes());
                assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{token:?}");
            }
        }
        assert_eq!(parse_f64(&[0xff, b'1']), None);
    }

    #[test]
    fn take_bounds_a_group() {
        let items = ["a", "b", "c"];
        let mut args = Args::new(&items);
        let mut group = args.take(2).unwrap();
        assert_eq!(group.remaining(), 2);
        assert_eq!(group.next_str().unwrap(), "a");
        assert_eq!(args.next_str().unwrap(), "c");
        assert!(args.take(1).is_err());
    }
}
