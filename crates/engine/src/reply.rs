//! What a command answers, before it is framed.
//!
//! The engine does not speak RESP: the server frames a [`Reply`] as RESP2 or RESP3 for
//! the connection, and the cluster router of a later layer merges typed results before
//! they become replies. `Map` is a RESP3 map that RESP2 flattens into an array.

/// A reply value. Serializable because replies cross processes: from a shard group's
/// leader to the node that proposed the write, and from shards to the router.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Reply {
    /// `+OK`.
    Ok,
    /// A status line (`+PONG`, `+string`).
    Simple(String),
    /// An error line, code included (`ERR ...`, `WRONGTYPE ...`, or a module's bare text).
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// The null bulk string (RESP2 `$-1`, RESP3 `_`).
    Null,
    Array(Vec<Reply>),
    /// Key/value pairs: a RESP3 map, a flat array in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A double: RESP3 `,`, a bulk string in RESP2.
    Double(f64),
    /// RESP3 verbatim text (`=`), a bulk string in RESP2. INFO answers with it.
    Verbatim(String),
}

impl Reply {
    pub fn bulk(text: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(text.into())
    }

    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }

    /// `ERR <text>`.
    pub fn err(text: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {text}"))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// A map from string keys, for the FT.INFO and FT.SEARCH shapes.
    pub fn map<K: Into<Vec<u8>>>(pairs: impl IntoIterator<Item = (K, Reply)>) -> Reply {
        Reply::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Reply::Bulk(k.into()), v))
                .collect(),
        )
    }
}

/// Formats like C's `%.12g`, which is how RediSearch prints scores and numbers:
/// integral values without a point, others with up to 12 significant digits.
pub fn format_g12(v: f64) -> String {
    G12::new(v).as_str().to_owned()
}

/// [`format_g12`]'s text on the stack. Every hit of every search part formats its
/// score, so the common case writes its digits here and the caller copies them once
/// into the reply, instead of building a `String` digit by digit and checking it for
/// UTF-8 (about half of the 50 ns a score took).
#[derive(Clone, Copy)]
pub struct G12 {
    buf: [u8; G12_CAPACITY],
    len: usize,
}

/// The longest `%.12g` text: a sign, 12 digits, a point and `e-308`, or a sign, `0.`,
/// three zeros and 12 digits.
const G12_CAPACITY: usize = 24;

impl G12 {
    const EMPTY: G12 = G12 {
        buf: [0; G12_CAPACITY],
        len: 0,
    };

    pub fn new(v: f64) -> G12 {
        let mut out = G12::EMPTY;
        if v.is_nan() {
            out.push(b"nan");
        } else if v.is_infinite() {
            out.push(if v > 0.0 { b"inf" } else { b"-inf" });
        } else if v == 0.0 {
            out.push(if v.is_sign_negative() { b"-0" } else { b"0" });
        } else if let Some((digits, exponent)) = g12_digits_fast(v.abs()) {
            let mut text = itoa::Buffer::new();
            // 12 digits: `digits` is in 10^11..10^12.
            out.fixed(v < 0.0, text.format(digits).as_bytes(), exponent);
        } else {
            out = g12_exact(v);
        }
        out
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever pushed.
        std::str::from_utf8(self.as_bytes()).unwrap_or("nan")
    }

    /// Appends what fits; every text `%.12g` makes fits (see [`G12_CAPACITY`]).
    fn push(&mut self, bytes: &[u8]) {
        let room = G12_CAPACITY - self.len;
        let n = bytes.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn zeros(&mut self, count: usize) {
        let n = count.min(G12_CAPACITY - self.len);
        self.buf[self.len..self.len + n].fill(b'0');
        self.len += n;
    }

    /// `%g`'s fixed notation from significant digits (trailing zeros allowed) and the
    /// decimal exponent of the first one.
    fn fixed(&mut self, negative: bool, digits: &[u8], exponent: i32) {
        let kept = digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
        let digits: &[u8] = if kept == 0 { b"0" } else { &digits[..kept] };
        if negative {
            self.push(b"-");
        }
        if exponent < 0 {
            self.push(b"0.");
            self.zeros(exponent.unsigned_abs() as usize - 1);
            self.push(digits);
        } else {
            let int_len = exponent as usize + 1;
            if digits.len() <= int_len {
                self.push(digits);
                self.zeros(int_len - digits.len());
            } else {
                self.push(&digits[..int_len]);
                self.push(b".");
                self.push(&digits[int_len..]);
            }
        }
    }
}

impl std::fmt::Debug for G12 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// [`format_g12`] of a finite non-zero value the exact way: one formatting pass
/// (scientific, which fixes the digits and the exponent after rounding); the fixed
/// form is rebuilt from its digits.
fn g12_exact(v: f64) -> G12 {
    const PRECISION: i32 = 12;
    let sci = format!("{:.*e}", (PRECISION - 1) as usize, v);
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let mut out = G12::EMPTY;
    if !(-4..PRECISION).contains(&exponent) {
        let mantissa = trim_zeros(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        out.push(format!("{mantissa}e{sign}{:02}", exponent.abs()).as_bytes());
        return out;
    }
    let mantissa = mantissa.strip_prefix('-').unwrap_or(mantissa);
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    out.fixed(v < 0.0, &digits, exponent);
    out
}

/// Powers of ten up to 10^15, each exact in an f64.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// `a`'s 12 significant digits (as an integer in 10^11..10^12) and decimal exponent,
/// rounded as `{:.11e}` rounds them, for the `%g` fixed range (exponent -4..=11).
///
/// Scores are formatted for every returned document, and Rust's exact formatting
/// costs a few hundred nanoseconds each; here one multiplication by an exact power of
/// ten does. Its result is within 2^-53 relative (under 1.2e-4 absolute below 10^12)
/// of the exact product, so rounding it to an integer agrees with exact rounding
/// unless the fraction is that close to one half. There the product's exact error,
/// from a fused multiply-add, decides, and an exact tie goes to the even digit as
/// `{:.11e}` and C's printf round it. Ties are common: an f32 distance times a power
/// of ten often has a fraction of a few bits, and one in 64 of the benchmark's L2
/// distances (10,000 checked, at 256–512) landed on exactly one half (each then took
/// the exact path, 2.5% of a small search's server CPU, until session 56). Outside the
/// range, None, and the caller formats exactly.
fn g12_digits_fast(a: f64) -> Option<(u64, i32)> {
    const TIE_MARGIN: f64 = 2.5e-4;
    if !(a.is_finite() && a > 0.0) {
        return None;
    }
    let scaled = |e: i32| -> Option<f64> {
        let k = usize::try_from(11 - e).ok()?;
        POW10.get(k).map(|p| a * p)
    };
    // The decade from the binary exponent, not `log10().floor()` (libm calls on the
    // baseline x86-64 target) nor a search of the powers (a branch per step that the
    // scores of one reply take different ways): floor(e2 * log10 2), with log10 2 as
    // 1233 / 2^12, is the decade of 2^e2, which is `a`'s or the one below. The check
    // below moves it up one where `a` is past the next power of ten.
    if !(1e-4..1e12).contains(&a) {
        return None;
    }
    let e2 = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    // At least -4: `a` is, and below that the power table has no entry.
    let mut exponent = ((e2 * 1233) >> 12).max(-4);
    let mut x = scaled(exponent)?;
    // The decade can be one off.
    if x < 1e11 {
        exponent -= 1;
        x = scaled(exponent)?;
    } else if x >= 1e12 {
        exponent += 1;
        x = scaled(exponent)?;
    }
    if !(1e11..1e12).contains(&x) || !(-4..=11).contains(&exponent) {
        return None;
    }
    // `x` is in 10^11..10^12: truncating to u64 is exact and is its floor, and away
    // from a tie rounding is one comparison. `floor` and `round` are libm calls on the
    // baseline target.
    let whole = x as u64;
    // Exact: `whole` is `x` truncated, within a factor of two of it.
    let fraction = x - whole as f64;
    let up = if (fraction - 0.5).abs() < TIE_MARGIN {
        // `x` is the product rounded; `a * p - x` is representable, so the fused
        // multiply-add gives it exactly, and the exact product minus `whole + 0.5` is
        // `(fraction - 0.5) + error`: the first term exact (within a factor of two of
        // 0.5), the sum rounded but never across zero. Decision table:
        //
        //   sum    digit
        //   > 0    up
        //   < 0    down
        //   = 0    a tie: up only if `whole` is odd (to even)
        let p = *POW10.get(usize::try_from(11 - exponent).ok()?)?;
        let error = a.mul_add(p, -x);
        let off = (fraction - 0.5) + error;
        if off == 0.0 {
            whole % 2 == 1
        } else {
            off > 0.0
        }
    } else {
        fraction > 0.5
    };
    let mut digits = whole + u64::from(up);
    if digits == 1_000_000_000_000 {
        // Rounded up to the next power of ten: 9.99...95 becomes 1.00000000000e+1.
        digits = 100_000_000_000;
        exponent += 1;
        if exponent > 11 {
            return None;
        }
    }
    Some((digits, exponent))
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g12_matches_c() {
        assert_eq!(format_g12(f64::from(0.04f32)), "0.0399999991059");
        assert_eq!(format_g12(12.0), "12");
        assert_eq!(format_g12(-5.0), "-5");
        assert_eq!(format_g12(0.0), "0");
        assert_eq!(format_g12(0.5), "0.5");
        assert_eq!(format_g12(1e20), "1e+20");
        assert_eq!(format_g12(1.5e-7), "1.5e-07");
        assert_eq!(format_g12(123456789012.0), "123456789012");
        assert_eq!(format_g12(1234567890123.0), "1.23456789012e+12");
        assert_eq!(format_g12(0.0001), "0.0001");
        assert_eq!(format_g12(f64::INFINITY), "inf");
        assert_eq!(format_g12(-0.5), "-0.5");
        assert_eq!(format_g12(100.0), "100");
        assert_eq!(format_g12(99999999999.95), "99999999999.9");
        assert_eq!(format_g12(999999999999.5), "1e+12");
        assert_eq!(format_g12(0.000123456789012345), "0.000123456789012");
        assert_eq!(format_g12(-1234.5), "-1234.5");
        assert_eq!(format_g12(9.9999999999996), "10");
        assert_eq!(format_g12(0.00099999999999996), "0.001");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// Distances are f32s: every finite one formats as the exact path does.
        #[test]
        fn fast_path_agrees_with_exact_formatting_on_f32(bits in proptest::prelude::any::<u32>()) {
            let v = f64::from(f32::from_bits(bits));
            proptest::prop_assume!(v.is_finite() && v != 0.0);
            let exact = g12_exact(v);
            proptest::prop_assert_eq!(format_g12(v), exact.as_str());
        }

        #[test]
        fn fast_path_agrees_with_exact_formatting_in_range(
            mantissa in 1.0f64..10.0, exponent in -6i32..14, negative in proptest::prelude::any::<bool>()
        ) {
            let v = mantissa * 10f64.powi(exponent) * if negative { -1.0 } else { 1.0 };
            let exact = g12_exact(v);
            proptest::prop_assert_eq!(format_g12(v), exact.as_str());
        }
    }

    /// The longest texts `%.12g` makes fit the stack buffer whole (expected texts from
    /// C's printf, through Python's `%`).
    #[test]
    fn the_longest_texts_fit() {
        for (v, text) in [
            (-f64::MIN_POSITIVE * 1.23456789012, "-2.74700473886e-308"),
            (-0.000123456789012, "-0.000123456789012"),
            (-1234567.89012345, "-1234567.89012"),
            (-123456789012.0, "-123456789012"),
            (f64::MAX, "1.79769313486e+308"),
            (f64::NEG_INFINITY, "-inf"),
            (-0.0, "-0"),
        ] {
            assert_eq!(G12::new(v).as_str(), text, "{v:e}");
            assert_eq!(format_g12(v), text);
        }
    }

    /// Exact ties at the twelfth digit, and the floats either side of them: f32
    /// distances whose scaled fraction is exactly one half (both parities of the digit
    /// before it), as C's printf rounds them (expected texts through Python's `%`).
    #[test]
    fn ties_round_to_even_as_printf_does() {
        for (v, text) in [
            (274.0009765625, "274.000976562"),
            (274.0029296875, "274.002929688"),
            (274.0048828125, "274.004882812"),
            (274.0068359375, "274.006835938"),
            (1.5, "1.5"),
        ] {
            assert_eq!(format_g12(v), text, "{v:e}");
            assert_eq!(format_g12(-v), format!("-{text}"), "{v:e}");
        }
        let mut ties = 0;
        for bits in (0x4389_0000u32..0x438a_0000).step_by(7) {
            let v = f64::from(f32::from_bits(bits));
            for v in [v, v.next_up(), v.next_down()] {
                assert_eq!(format_g12(v), g12_exact(v).as_str(), "{v:e}");
            }
            let scaled = v * 1e9;
            ties += usize::from(scaled - scaled.trunc() == 0.5);
        }
        assert!(ties > 100, "{ties} ties: the range no longer tests them");
    }

    #[test]
    fn ties_and_powers_of_ten_take_the_exact_path() {
        for v in [
            99999999999.95,
            999999999999.5,
            0.000123456789012345,
            1e-4,
            1e11,
            1e12,
            0.1,
            0.3,
            2.0f64.sqrt(),
            123.456,
        ] {
            assert_eq!(format_g12(v), g12_exact(v).as_str(), "{v}");
            assert_eq!(format_g12(-v), g12_exact(-v).as_str(), "{v}");
        }
    }

    /// Next to every power of ten the fast path can reach, where its decade, estimated
    /// from the binary exponent, is most often one off and put right, and the fast path
    /// is what ordinary values in each decade take.
    #[test]
    fn decade_edges_format_as_the_exact_path() {
        for e in -5..=13 {
            let p: f64 = format!("1e{e}").parse().unwrap_or(f64::NAN);
            let mut v = p;
            let mut around = vec![p];
            for _ in 0..3 {
                v = v.next_up();
                around.push(v);
            }
            v = p;
            for _ in 0..3 {
                v = v.next_down();
                around.push(v);
            }
            around.extend([p * 0.9999999, p * 1.0000001, f64::from(p as f32)]);
            for v in around {
                assert_eq!(format_g12(v), g12_exact(v).as_str(), "{v:e}");
            }
            if (-4..=11).contains(&e) {
                let ordinary = p * 3.7;
                assert_eq!(
                    g12_digits_fast(ordinary).map(|(_, exp)| exp),
                    Some(e),
                    "{ordinary:e} takes the fast path in its decade"
                );
            }
        }
    }
}
