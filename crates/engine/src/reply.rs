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
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    if let Some((digits, exponent)) = g12_digits_fast(v.abs()) {
        let mut buf = [b'0'; 12];
        let mut n = digits;
        for slot in buf.iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        // ASCII digits by construction.
        let text = std::str::from_utf8(&buf).unwrap_or("0");
        return fixed(v < 0.0, text, exponent);
    }
    g12_exact(v)
}

/// [`format_g12`] of a finite non-zero value the exact way: one formatting pass
/// (scientific, which fixes the digits and the exponent after rounding); the fixed
/// form is rebuilt from its digits.
fn g12_exact(v: f64) -> String {
    const PRECISION: i32 = 12;
    let sci = format!("{:.*e}", (PRECISION - 1) as usize, v);
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..PRECISION).contains(&exponent) {
        let mantissa = trim_zeros(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let mantissa = mantissa.strip_prefix('-').unwrap_or(mantissa);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    fixed(v < 0.0, &digits, exponent)
}

/// Powers of ten up to 10^15, each exact in an f64.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];
/// 10^-1 down to 10^-4: the decades below one that the fast path formats.
const NEG_POW10: [f64; 4] = [1e-1, 1e-2, 1e-3, 1e-4];

/// `a`'s 12 significant digits (as an integer in 10^11..10^12) and decimal exponent,
/// rounded as `{:.11e}` rounds them, for the `%g` fixed range (exponent -4..=11).
///
/// Scores are formatted for every returned document, and Rust's exact formatting
/// costs a few hundred nanoseconds each; here one multiplication by an exact power of
/// ten does. Its result is within 2^-53 relative (under 1.2e-4 absolute below 10^12)
/// of the exact product, so rounding it to an integer agrees with exact rounding
/// unless the fraction is that close to one half: then, and outside the range, None,
/// and the caller formats exactly.
fn g12_digits_fast(a: f64) -> Option<(u64, i32)> {
    const TIE_MARGIN: f64 = 2.5e-4;
    if !(a.is_finite() && a > 0.0) {
        return None;
    }
    let scaled = |e: i32| -> Option<f64> {
        let k = usize::try_from(11 - e).ok()?;
        POW10.get(k).map(|p| a * p)
    };
    // The decade by comparisons, not `log10().floor()`: both are libm calls on the
    // baseline x86-64 target, and this runs for every hit of every search part. The
    // table's negative powers are not exact, so this too can land one off next to a
    // power of ten, which the check below puts right as it did for log10.
    if !(1e-4..1e12).contains(&a) {
        return None;
    }
    let mut exponent = if a >= 1.0 {
        POW10[1..12].partition_point(|&p| p <= a) as i32
    } else {
        -(NEG_POW10.partition_point(|&p| p > a) as i32) - 1
    };
    let mut x = scaled(exponent)?;
    // The decade can be one off next to a power of ten.
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
    // from a tie (refused just above) rounding is one comparison. `floor` and `round`
    // are libm calls on the baseline target.
    let whole = x as u64;
    let fraction = x - whole as f64;
    if (fraction - 0.5).abs() < TIE_MARGIN {
        return None;
    }
    let mut digits = whole + u64::from(fraction > 0.5);
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

/// `%g`'s fixed notation from significant digits (trailing zeros allowed) and the
/// decimal exponent of the first one.
fn fixed(negative: bool, digits: &str, exponent: i32) -> String {
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut out = String::with_capacity(20);
    if negative {
        out.push('-');
    }
    if exponent < 0 {
        out.push_str("0.");
        for _ in 0..(-exponent - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let int_len = exponent as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
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
            proptest::prop_assert_eq!(format_g12(v), g12_exact(v));
        }

        #[test]
        fn fast_path_agrees_with_exact_formatting_in_range(
            mantissa in 1.0f64..10.0, exponent in -6i32..14, negative in proptest::prelude::any::<bool>()
        ) {
            let v = mantissa * 10f64.powi(exponent) * if negative { -1.0 } else { 1.0 };
            proptest::prop_assert_eq!(format_g12(v), g12_exact(v));
        }
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
            assert_eq!(format_g12(v), g12_exact(v), "{v}");
            assert_eq!(format_g12(-v), g12_exact(-v), "{v}");
        }
    }

    /// Next to every power of ten the fast path can reach, where its decade is found
    /// by comparison with inexact powers, and the fast path is what ordinary values in
    /// each decade take.
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
                assert_eq!(format_g12(v), g12_exact(v), "{v:e}");
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
