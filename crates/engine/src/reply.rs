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
    const PRECISION: i32 = 12;
    // One formatting pass (scientific, which fixes the digits and the exponent after
    // rounding); the fixed form is rebuilt from its digits. Scores are formatted for
    // every returned document, so this is on the reply path.
    let sci = format!("{:.*e}", (PRECISION - 1) as usize, v);
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..PRECISION).contains(&exponent) {
        let mantissa = trim_zeros(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
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
    }
}
