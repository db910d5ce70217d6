//! Replies: one [`Value`] tree, framed as RESP2 or RESP3 for the connection.
//!
//! The shapes differ only where RESP3 has a type RESP2 lacks: a map flattens to an
//! array of alternating keys and values, a double and a verbatim string become bulk
//! strings, a boolean an integer, null the null bulk string.

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol a connection negotiated with HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// A reply before framing.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A status line; `Bytes` so that `OK`, `QUEUED` and `PONG` cost no allocation.
    Simple(Bytes),
    Error(String),
    Int(i64),
    Bulk(Bytes),
    Null,
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Double(f64),
    Bool(bool),
    Verbatim(String),
}

impl Value {
    pub fn ok() -> Value {
        Value::Simple(Bytes::from_static(b"OK"))
    }

    pub fn simple(text: impl Into<String>) -> Value {
        Value::Simple(Bytes::from(text.into()))
    }

    pub fn bulk(b: impl Into<Bytes>) -> Value {
        Value::Bulk(b.into())
    }

    /// Any reply tree as a [`Value`], for a reply that embeds it among values of its own.
    pub fn from_tree<T: ReplyTree>(tree: T) -> Value {
        match tree.into_node() {
            Node::Simple(s) => Value::Simple(s),
            Node::Error(e) => Value::Error(e),
            Node::Int(i) => Value::Int(i),
            Node::Bulk(b) => Value::Bulk(b),
            Node::Null => Value::Null,
            Node::Array(items) => Value::Array(items.into_iter().map(Value::from_tree).collect()),
            Node::Map(pairs) => Value::Map(
                pairs
                    .into_iter()
                    .map(|(k, v)| (Value::from_tree(k), Value::from_tree(v)))
                    .collect(),
            ),
            Node::Double(d) => Value::Double(d),
            Node::Bool(b) => Value::Bool(b),
            Node::Verbatim(s) => Value::Verbatim(s),
        }
    }
}

/// One level of a reply tree: the shapes [`Value`] has, with children of the tree's own
/// type. A tree with these shapes (the engine's replies) is framed through it as it is,
/// without first being rebuilt as a [`Value`] tree: that copy was an allocation per array
/// of every search's reply.
#[derive(Debug)]
pub enum Node<T> {
    Simple(Bytes),
    Error(String),
    Int(i64),
    Bulk(Bytes),
    Null,
    Array(Vec<T>),
    Map(Vec<(T, T)>),
    Double(f64),
    Bool(bool),
    Verbatim(String),
}

/// A reply tree [`encode`] can frame.
pub trait ReplyTree: Sized {
    /// This value's own level; its children stay of the tree's type.
    fn into_node(self) -> Node<Self>;
}

impl ReplyTree for Value {
    fn into_node(self) -> Node<Value> {
        match self {
            Value::Simple(s) => Node::Simple(s),
            Value::Error(e) => Node::Error(e),
            Value::Int(i) => Node::Int(i),
            Value::Bulk(b) => Node::Bulk(b),
            Value::Null => Node::Null,
            Value::Array(items) => Node::Array(items),
            Value::Map(pairs) => Node::Map(pairs),
            Value::Double(d) => Node::Double(d),
            Value::Bool(b) => Node::Bool(b),
            Value::Verbatim(s) => Node::Verbatim(s),
        }
    }
}

/// Appends `value`, framed for `protocol`, to `out`. Takes the value: each string is
/// copied once, straight from the engine's buffers into `out`, and freed as it goes.
///
/// Written here rather than through redis-protocol's encoder (which decodes requests, and
/// frames the tests' expected bytes below): that encoder takes a frame tree, so every
/// reply was first rebuilt as one (an allocation per array, a `Bytes` header per string
/// that did not fill its `Vec`), measured once for its length and dropped. That was
/// 4.5 us of a 10-hit FT.SEARCH's 40 us in the server (docs/benchmarks.md, session 45).
/// RESP's reply lines are a prefix, a decimal or the bytes, and CRLF; the property test
/// `frames_as_redis_protocol_does` holds every shape to redis-protocol's bytes. A map is
/// written pair by pair: its keys are the builder's to keep distinct (redis-protocol's
/// RESP3 map folded repeats; CONFIG GET and FT.SEARCH's rows now do that themselves).
///
/// The protocols differ only where RESP2 lacks a type:
///
/// | node     | RESP2                     | RESP3            |
/// |----------|---------------------------|------------------|
/// | null     | `$-1`                     | `_`              |
/// | map      | array of 2n, keys between | `%n`             |
/// | double   | bulk string               | `,` line         |
/// | boolean  | integer 0/1               | `#t` / `#f`      |
/// | verbatim | bulk string               | `=` with `txt:`  |
pub fn encode<T: ReplyTree>(value: T, protocol: Protocol, out: &mut BytesMut) {
    let resp3 = protocol == Protocol::Resp3;
    match value.into_node() {
        Node::Simple(s) => text_line(out, b'+', &one_line_bytes(s)),
        Node::Error(e) => text_line(out, b'-', one_line(&e).as_bytes()),
        Node::Int(i) => number_line(out, b':', i),
        Node::Bulk(b) => bulk_string(out, &b),
        Node::Null if resp3 => out.extend_from_slice(b"_\r\n"),
        Node::Null => out.extend_from_slice(b"$-1\r\n"),
        Node::Array(items) => {
            number_line(out, b'*', length(items.len()));
            for item in items {
                encode(item, protocol, out);
            }
        }
        Node::Map(pairs) => {
            if resp3 {
                number_line(out, b'%', length(pairs.len()));
            } else {
                number_line(out, b'*', length(pairs.len()).saturating_mul(2));
            }
            for (k, v) in pairs {
                encode(k, protocol, out);
                encode(v, protocol, out);
            }
        }
        Node::Double(d) if resp3 => text_line(out, b',', resp3_double(d).as_bytes()),
        Node::Double(d) => bulk_string(out, format_double(d).as_bytes()),
        Node::Bool(b) if resp3 => out.extend_from_slice(if b { b"#t\r\n" } else { b"#f\r\n" }),
        Node::Bool(b) => number_line(out, b':', i64::from(b)),
        Node::Verbatim(s) if resp3 => {
            // The length counts the `txt:` format prefix.
            number_line(out, b'=', length(s.len()).saturating_add(4));
            out.reserve(s.len() + 6);
            out.put_slice(b"txt:");
            out.put_slice(s.as_bytes());
            out.put_slice(b"\r\n");
        }
        Node::Verbatim(s) => bulk_string(out, s.as_bytes()),
    }
}
/// A status or error line may not contain CR or LF: text echoed from a request (an index
/// name, a bad argument) would otherwise inject replies. Redis replaces them too.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\r', '\n']) {
        std::borrow::Cow::Owned(text.replace(['\r', '\n'], " "))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn one_line_bytes(bytes: Bytes) -> Bytes {
    if bytes.iter().any(|b| *b == b'\r' || *b == b'\n') {
        bytes
            .iter()
            .map(|b| if *b == b'\r' || *b == b'\n' { b' ' } else { *b })
            .collect::<Vec<u8>>()
            .into()
    } else {
        bytes
    }
}

/// `<kind><decimal>\r\n`: an integer, or the length line of an aggregate or a string.
///
/// Nearly every line a reply frames holds a number under 100 (a hit's key length, a
/// field count, a score's length): those are written as one copy of a fixed size, which
/// compiles to a few stores, where the general path makes three copies of unknown size
/// (profiled: a tenth of a small search's framing; docs/benchmarks.md, session 56).
#[inline]
fn number_line(out: &mut BytesMut, kind: u8, n: i64) {
    match u8::try_from(n) {
        Ok(n @ 0..=9) => out.extend_from_slice(&[kind, b'0' + n, b'\r', b'\n']),
        Ok(n @ 10..=99) => {
            out.extend_from_slice(&[kind, b'0' + n / 10, b'0' + n % 10, b'\r', b'\n'])
        }
        Ok(_) | Err(_) => number_line_long(out, kind, n),
    }
}

/// [`number_line`] for any other number.
fn number_line_long(out: &mut BytesMut, kind: u8, n: i64) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    out.reserve(digits.len() + 3);
    out.put_u8(kind);
    out.put_slice(digits.as_bytes());
    out.put_slice(b"\r\n");
}

/// `<kind><text>\r\n`: a status, an error or a RESP3 double.
fn text_line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(kind);
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

/// A length the protocol writes as a decimal; no reply comes near `i64::MAX` bytes.
fn length(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `*<n>\r\n`: the length line of an array whose items the caller frames next (a
/// reply framed as it is found, without a tree first).
pub fn array_len(out: &mut BytesMut, n: usize) {
    number_line(out, b'*', length(n));
}

/// `:<n>\r\n`.
pub fn integer(out: &mut BytesMut, n: i64) {
    number_line(out, b':', n);
}

/// `$<len>\r\n<bytes>\r\n`.
pub fn bulk_string(out: &mut BytesMut, bytes: &[u8]) {
    // One reservation for the whole string: its length line (at most 22 bytes), the
    // bytes and the CRLF.
    out.reserve(bytes.len() + 24);
    number_line(out, b'$', length(bytes.len()));
    out.put_slice(bytes);
    out.put_slice(b"\r\n");
}

/// Doubles as RESP3 spells them: `inf`, `-inf`, `nan`, else the shortest round trip.
fn resp3_double(d: f64) -> std::borrow::Cow<'static, str> {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        d.to_string().into()
    }
}

/// Doubles as Redis prints them in RESP2 (`%.17g`, shortest round trip here).
fn format_double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    format!("{d}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use redis_protocol::resp2::types::BytesFrame as Frame2;
    use redis_protocol::resp3::types::{BytesFrame as Frame3, FrameMap, VerbatimStringFormat};

    /// The reference: `value` as a redis-protocol frame tree, framed by its encoder.
    fn reference(value: Value, protocol: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        let framed = match protocol {
            Protocol::Resp2 => {
                redis_protocol::resp2::encode::extend_encode(&mut out, &frame2(value), false)
            }
            Protocol::Resp3 => redis_protocol::resp3::encode::complete::extend_encode(
                &mut out,
                &frame3(value),
                false,
            ),
        };
        assert!(framed.is_ok(), "{framed:?}");
        out.to_vec()
    }

    fn frame2(value: Value) -> Frame2 {
        match value {
            Value::Simple(s) => Frame2::SimpleString(one_line_bytes(s)),
            Value::Error(e) => Frame2::Error(one_line(&e).as_ref().into()),
            Value::Int(i) => Frame2::Integer(i),
            Value::Bulk(b) => Frame2::BulkString(b),
            Value::Null => Frame2::Null,
            Value::Array(items) => Frame2::Array(items.into_iter().map(frame2).collect()),
            Value::Map(pairs) => Frame2::Array(
                pairs
                    .into_iter()
                    .flat_map(|(k, v)| [frame2(k), frame2(v)])
                    .collect(),
            ),
            Value::Double(d) => Frame2::BulkString(Bytes::from(format_double(d))),
            Value::Bool(b) => Frame2::Integer(i64::from(b)),
            Value::Verbatim(s) => Frame2::BulkString(Bytes::from(s)),
        }
    }

    fn frame3(value: Value) -> Frame3 {
        match value {
            Value::Simple(s) => Frame3::SimpleString {
                data: one_line_bytes(s),
                attributes: None,
            },
            Value::Error(e) => Frame3::SimpleError {
                data: one_line(&e).as_ref().into(),
                attributes: None,
            },
            Value::Int(i) => Frame3::Number {
                data: i,
                attributes: None,
            },
            Value::Bulk(b) => Frame3::BlobString {
                data: b,
                attributes: None,
            },
            Value::Null => Frame3::Null,
            Value::Array(items) => Frame3::Array {
                data: items.into_iter().map(frame3).collect(),
                attributes: None,
            },
            Value::Map(pairs) => {
                let mut map = FrameMap::with_capacity(pairs.len());
                for (k, v) in pairs {
                    map.insert(frame3(k), frame3(v));
                }
                Frame3::Map {
                    data: map,
                    attributes: None,
                }
            }
            Value::Double(d) => Frame3::Double {
                data: d,
                attributes: None,
            },
            Value::Bool(b) => Frame3::Boolean {
                data: b,
                attributes: None,
            },
            Value::Verbatim(s) => Frame3::VerbatimString {
                data: Bytes::from(s),
                format: VerbatimStringFormat::Text,
                attributes: None,
            },
        }
    }

    /// Text with the bytes that matter to framing: CR, LF, and multi-byte UTF-8.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('a'),
                Just('\r'),
                Just('\n'),
                Just('é'),
                Just(' '),
                Just('$')
            ],
            0..12,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            text().prop_map(Value::simple),
            text().prop_map(Value::Error),
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::bulk),
            Just(Value::Null),
            prop_oneof![
                any::<f64>(),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(f64::NAN),
                Just(0.1),
                Just(-2.5e-300),
            ]
            .prop_map(Value::Double),
            any::<bool>().prop_map(Value::Bool),
            text().prop_map(Value::Verbatim),
        ]
    }

    /// Trees of every shape. Map keys are distinct: redis-protocol's RESP3 map is an
    /// `IndexMap`, which would fold equal keys into one.
    fn tree() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec(inner, 0..6).prop_map(|values| {
                    Value::Map(
                        values
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Value::bulk(format!("k{i}")), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn frames_as_redis_protocol_does(value in tree()) {
            for protocol in [Protocol::Resp2, Protocol::Resp3] {
                let mut out = BytesMut::new();
                encode(value.clone(), protocol, &mut out);
                prop_assert_eq!(out.to_vec(), reference(value.clone(), protocol), "{:?}", protocol);
            }
        }
    }

    fn bytes(v: &Value, p: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(v.clone(), p, &mut out);
        out.to_vec()
    }

    #[test]
    fn maps_flatten_in_resp2_and_keep_order_in_resp3() {
        let v = Value::Map(vec![
            (Value::bulk("b"), Value::Int(1)),
            (Value::bulk("a"), Value::Null),
        ]);
        assert_eq!(
            bytes(&v, Protocol::Resp2),
            b"*4\r\n$1\r\nb\r\n:1\r\n$1\r\na\r\n$-1\r\n"
        );
        assert_eq!(
            bytes(&v, Protocol::Resp3),
            b"%2\r\n$1\r\nb\r\n:1\r\n$1\r\na\r\n_\r\n"
        );
    }

    #[test]
    fn error_lines_cannot_inject_replies() {
        let v = Value::Error("Index with name 'x\r\n+OK' not found".into());
        assert_eq!(
            bytes(&v, Protocol::Resp2),
            b"-Index with name 'x  +OK' not found\r\n"
        );
    }

    #[test]
    fn scalars() {
        assert_eq!(bytes(&Value::ok(), Protocol::Resp2), b"+OK\r\n");
        assert_eq!(
            bytes(&Value::Error("ERR x".into()), Protocol::Resp3),
            b"-ERR x\r\n"
        );
        assert_eq!(
            bytes(&Value::Double(1.5), Protocol::Resp2),
            b"$3\r\n1.5\r\n"
        );
        assert_eq!(bytes(&Value::Double(1.5), Protocol::Resp3), b",1.5\r\n");
        assert_eq!(
            bytes(&Value::Verbatim("a".into()), Protocol::Resp3),
            b"=5\r\ntxt:a\r\n"
        );
    }

    /// The short forms of a number line meet the general one at their bounds.
    #[test]
    fn number_lines_at_the_short_forms_bounds() {
        for n in [
            i64::MIN,
            -100,
            -10,
            -1,
            0,
            1,
            9,
            10,
            11,
            99,
            100,
            255,
            256,
            1000,
            i64::MAX,
        ] {
            for kind in [b'*', b'$', b':', b'%'] {
                let mut out = BytesMut::new();
                number_line(&mut out, kind, n);
                assert_eq!(out, format!("{}{n}\r\n", kind as char).as_bytes(), "{n}");
            }
        }
        let mut out = BytesMut::new();
        bulk_string(&mut out, b"0123456789");
        bulk_string(&mut out, b"");
        assert_eq!(out, &b"$10\r\n0123456789\r\n$0\r\n\r\n"[..]);
    }
}
