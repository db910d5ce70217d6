//! Replies: one [`Value`] tree, framed as RESP2 or RESP3 for the connection.
//!
//! The shapes differ only where RESP3 has a type RESP2 lacks: a map flattens to an
//! array of alternating keys and values, a double and a verbatim string become bulk
//! strings, a boolean an integer, null the null bulk string.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Frame2;
use redis_protocol::resp3::types::{BytesFrame as Frame3, FrameMap, VerbatimStringFormat};

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

/// Appends `value`, framed for `protocol`, to `out`. Takes the value: its bulk strings
/// move into the frames, where a borrowed `Bytes` made from a `Vec` would allocate a
/// shared header on every clone (a GET's reply, every field of a search).
pub fn encode<T: ReplyTree>(value: T, protocol: Protocol, out: &mut BytesMut) {
    // Frames built here are always encodable; redis-protocol reports errors only for
    // frames it cannot represent (e.g. a Hello frame in a reply), which never occur.
    match protocol {
        Protocol::Resp2 => {
            let _ = redis_protocol::resp2::encode::extend_encode(out, &to_resp2(value), false);
        }
        Protocol::Resp3 => {
            let _ = redis_protocol::resp3::encode::complete::extend_encode(
                out,
                &to_resp3(value),
                false,
            );
        }
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

fn to_resp2<T: ReplyTree>(value: T) -> Frame2 {
    match value.into_node() {
        Node::Simple(s) => Frame2::SimpleString(one_line_bytes(s)),
        Node::Error(e) => Frame2::Error(one_line(&e).as_ref().into()),
        Node::Int(i) => Frame2::Integer(i),
        Node::Bulk(b) => Frame2::BulkString(b),
        Node::Null => Frame2::Null,
        Node::Array(items) => Frame2::Array(items.into_iter().map(to_resp2).collect()),
        Node::Map(pairs) => Frame2::Array(
            pairs
                .into_iter()
                .flat_map(|(k, v)| [to_resp2(k), to_resp2(v)])
                .collect(),
        ),
        Node::Double(d) => Frame2::BulkString(Bytes::from(format_double(d))),
        Node::Bool(b) => Frame2::Integer(i64::from(b)),
        Node::Verbatim(s) => Frame2::BulkString(Bytes::from(s)),
    }
}

fn to_resp3<T: ReplyTree>(value: T) -> Frame3 {
    match value.into_node() {
        Node::Simple(s) => Frame3::SimpleString {
            data: one_line_bytes(s),
            attributes: None,
        },
        Node::Error(e) => Frame3::SimpleError {
            data: one_line(&e).as_ref().into(),
            attributes: None,
        },
        Node::Int(i) => Frame3::Number {
            data: i,
            attributes: None,
        },
        Node::Bulk(b) => Frame3::BlobString {
            data: b,
            attributes: None,
        },
        Node::Null => Frame3::Null,
        Node::Array(items) => Frame3::Array {
            data: items.into_iter().map(to_resp3).collect(),
            attributes: None,
        },
        Node::Map(pairs) => {
            let mut map = FrameMap::with_capacity(pairs.len());
            for (k, v) in pairs {
                map.insert(to_resp3(k), to_resp3(v));
            }
            Frame3::Map {
                data: map,
                attributes: None,
            }
        }
        Node::Double(d) => Frame3::Double {
            data: d,
            attributes: None,
        },
        Node::Bool(b) => Frame3::Boolean {
            data: b,
            attributes: None,
        },
        Node::Verbatim(s) => Frame3::VerbatimString {
            data: Bytes::from(s),
            format: VerbatimStringFormat::Text,
            attributes: None,
        },
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
}
