//! Engine replies into protocol values.

use shoal_engine::Reply;
use shoal_resp::encode::{Node, ReplyTree};
use shoal_resp::Value;

/// An engine reply as the RESP encoder takes it, framed without first being rebuilt as a
/// [`Value`] tree (a search's reply would allocate that tree's arrays once more).
/// A newtype because neither the trait nor `Reply` is this crate's; it has `Reply`'s
/// layout (`repr(transparent)`), so wrapping a `Vec` of them reuses its allocation.
#[derive(Debug)]
#[repr(transparent)]
pub struct EngineReply(pub Reply);

impl ReplyTree for EngineReply {
    fn into_node(self) -> Node<EngineReply> {
        match self.0 {
            Reply::Ok => Node::Simple(bytes::Bytes::from_static(b"OK")),
            Reply::Simple(s) => Node::Simple(s.into()),
            Reply::Error(e) => Node::Error(e),
            Reply::Int(i) => Node::Int(i),
            Reply::Bulk(b) => Node::Bulk(b.into()),
            Reply::Null => Node::Null,
            Reply::Array(items) => Node::Array(items.into_iter().map(EngineReply).collect()),
            Reply::Map(pairs) => Node::Map(
                pairs
                    .into_iter()
                    .map(|(k, v)| (EngineReply(k), EngineReply(v)))
                    .collect(),
            ),
            Reply::Double(d) => Node::Double(d),
            Reply::Verbatim(s) => Node::Verbatim(s),
        }
    }
}

/// An engine reply as a [`Value`], for replies that embed it among the server's own
/// (a transaction's EXEC).
pub fn to_value(reply: Reply) -> Value {
    Value::from_tree(EngineReply(reply))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use shoal_resp::{encode, Protocol};

    /// Every shape of an engine reply frames to the same bytes directly as through a
    /// `Value`, in both protocols.
    #[test]
    fn engine_replies_frame_as_their_values_do() {
        let reply = Reply::Array(vec![
            Reply::Int(2),
            Reply::Ok,
            Reply::Simple("PONG\r\n+OK".into()),
            Reply::Error("ERR bad\nline".into()),
            Reply::bulk("doc:1"),
            Reply::Null,
            Reply::map([
                ("__vec_score", Reply::bulk("0.5")),
                ("n", Reply::Double(1.25)),
            ]),
            Reply::Double(f64::INFINITY),
            Reply::Verbatim("a:b".into()),
            Reply::Array(vec![]),
        ]);
        for protocol in [Protocol::Resp2, Protocol::Resp3] {
            let mut direct = BytesMut::new();
            encode(EngineReply(reply.clone()), protocol, &mut direct);
            let mut through = BytesMut::new();
            encode(to_value(reply.clone()), protocol, &mut through);
            assert_eq!(direct, through, "{protocol:?}");
            assert!(!direct.is_empty());
        }
    }

    #[test]
    fn engine_replies_frame_as_redis_does() {
        let reply = || {
            EngineReply(Reply::Array(vec![
                Reply::Ok,
                Reply::Int(3),
                Reply::bulk("k"),
                Reply::Null,
                Reply::Double(1.5),
                Reply::map([("a", Reply::Int(1))]),
            ]))
        };
        let mut out = BytesMut::new();
        encode(reply(), Protocol::Resp2, &mut out);
        assert_eq!(
            &out[..],
            b"*6\r\n+OK\r\n:3\r\n$1\r\nk\r\n$-1\r\n$3\r\n1.5\r\n*2\r\n$1\r\na\r\n:1\r\n"
        );
        let mut out = BytesMut::new();
        encode(reply(), Protocol::Resp3, &mut out);
        assert_eq!(
            &out[..],
            b"*6\r\n+OK\r\n:3\r\n$1\r\nk\r\n_\r\n,1.5\r\n%1\r\n$1\r\na\r\n:1\r\n"
        );
    }
}
