//! Request decoding with limits.
//!
//! redis-protocol frames complete requests. A client can, however, declare a bulk of a
//! terabyte and then trickle bytes; the framer would wait forever and the buffer would
//! grow. So before waiting for more input the declared lengths of the pending request
//! are checked against [`Limits`], as Redis checks `proto-max-bulk-len`.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;
use smallvec::SmallVec;

/// What a connection may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest single argument.
    pub max_bulk_len: usize,
    /// Most arguments in one command.
    pub max_args: usize,
    /// Most bytes buffered for one not yet complete request.
    pub max_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_args: 1024 * 1024,
            max_buffer: 1024 * 1024 * 1024,
        }
    }
}

/// Where each argument of a request lies in the input: the usual few on the stack.
type Spans = SmallVec<[(usize, usize); 8]>;

/// A request the connection cannot recover from: the server answers with the error
/// and closes, as Redis does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("ERR Protocol error: invalid bulk length")]
    BulkLength,
    #[error("ERR Protocol error: invalid multibulk length")]
    MultibulkLength,
    #[error("ERR Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("ERR Protocol error: too big inline request")]
    InlineTooBig,
    #[error("ERR Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("ERR Protocol error: {0}")]
    Malformed(String),
    #[error("ERR Protocol error: query buffer exceeds {0} bytes")]
    BufferFull(usize),
}

/// Longest inline command line, as Redis's `PROTO_INLINE_MAX_SIZE`.
const MAX_INLINE: usize = 64 * 1024;

/// Splits requests off a connection's input buffer.
#[derive(Debug, Default)]
pub struct Decoder {
    pub limits: Limits,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder { limits }
    }

    /// The next complete request's arguments, `Ok(None)` when more input is needed.
    /// Empty inline lines are skipped.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, RespError> {
        loop {
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            if first != b'*' {
                match self.inline(buf)? {
                    Some(args) if args.is_empty() => continue,
                    other => return Ok(other),
                }
            }
            // The common case, a complete array of bulk strings within the limits, is
            // split here in the one pass that reads its headers (redis-protocol's framer
            // would read them again and build a frame per argument: a fifth of the
            // server's CPU under pipelined GETs). Anything else goes to the framer below,
            // which gives every error its wording.
            if let Some((end, spans)) = self.complete_flat(buf) {
                let frame = buf.split_to(end).freeze();
                return Ok(Some(
                    spans.iter().map(|&(s, e)| frame.slice(s..e)).collect(),
                ));
            }
            // The declared structure is checked before redis-protocol's framer sees it:
            // the framer recurses into nested arrays, and a request of a hundred
            // thousand nested `*1` headers would exhaust the stack. Requests are flat
            // arrays of bulk strings, so anything else is refused here.
            self.check_pending(buf)?;
            return match decode_bytes_mut(buf) {
                Ok(Some((frame, _, _))) => self.arguments(frame).map(Some),
                Ok(None) => {
                    if buf.len() > self.limits.max_buffer {
                        return Err(RespError::BufferFull(self.limits.max_buffer));
                    }
                    Ok(None)
                }
                Err(e) => Err(RespError::Malformed(e.details().to_string())),
            };
        }
    }

    fn arguments(&self, frame: BytesFrame) -> Result<Vec<Bytes>, RespError> {
        let BytesFrame::Array(items) = frame else {
            return Err(RespError::Malformed(
                "expected an array of bulk strings".into(),
            ));
        };
        items
            .into_iter()
            .map(|item| match item {
                BytesFrame::BulkString(b) if b.len() > self.limits.max_bulk_len => {
                    Err(RespError::BulkLength)
                }
                BytesFrame::BulkString(b) => Ok(b),
                // Requests are arrays of bulk strings; Redis refuses anything else.
                BytesFrame::SimpleString(_) => Err(RespError::ExpectedBulk('+')),
                BytesFrame::Integer(_) => Err(RespError::ExpectedBulk(':')),
                BytesFrame::Error(_) => Err(RespError::ExpectedBulk('-')),
                BytesFrame::Array(_) => Err(RespError::ExpectedBulk('*')),
                BytesFrame::Null => Err(RespError::ExpectedBulk('$')),
            })
            .collect()
    }

    /// An inline command: one line, arguments split on spaces, quotes honoured.
    fn inline(&self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, RespError> {
        let Some(end) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_INLINE {
                return Err(RespError::InlineTooBig);
            }
            return Ok(None);
        };
        let line = buf.split_to(end + 1);
        let text = String::from_utf8_lossy(&line);
        let words =
            shlex_split(text.trim_end_matches(['\r', '\n'])).ok_or(RespError::UnbalancedQuotes)?;
        Ok(Some(words.into_iter().map(Bytes::from).collect()))
    }

    /// The request at the head of `buf` if it is complete and exactly
    /// `*<n>\r\n` followed by `n` times `$<len>\r\n<len bytes>\r\n` within the limits:
    /// where it ends and each argument's span. `None` for anything else, complete or not.
    // #[PerformanceCriticalPath]: once per request.
    fn complete_flat(&self, buf: &[u8]) -> Option<(usize, Spans)> {
        let (count, mut pos) = header(buf, 0, b'*')?;
        if count <= 0 || count > self.limits.max_args as i64 {
            return None;
        }
        // Grown as arguments are found, not sized by the declared count: a header that
        // claims a million arguments and sends none must not cost a 16 MiB allocation
        // on every read.
        let mut spans = Spans::new();
        for _ in 0..count {
            let (len, start) = header(buf, pos, b'$')?;
            if len < 0 || len > self.limits.max_bulk_len as i64 {
                return None;
            }
            let end = start.checked_add(len as usize)?;
            if buf.get(end..end + 2)? != b"\r\n" {
                return None;
            }
            spans.push((start, end));
            pos = end + 2;
        }
        Some((pos, spans))
    }

    /// Checks the declared counts and lengths of the request at the head of `buf`,
    /// complete or not, without decoding it.
    fn check_pending(&self, buf: &[u8]) -> Result<(), RespError> {
        let mut pos = 0;
        let Some((count, next)) = header(buf, pos, b'*') else {
            return Ok(());
        };
        if count > self.limits.max_args as i64 {
            return Err(RespError::MultibulkLength);
        }
        pos = next;
        for _ in 0..count.max(0) {
            match buf.get(pos) {
                None => return Ok(()),
                Some(b'$') => {}
                Some(&c) => return Err(RespError::ExpectedBulk(char::from(c))),
            }
            let Some((len, next)) = header(buf, pos, b'$') else {
                return Ok(());
            };
            if len < -1 || len > self.limits.max_bulk_len as i64 {
                return Err(RespError::BulkLength);
            }
            pos = next + len.max(0) as usize + 2;
            if pos >= buf.len() {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Reads `<tag><integer>\r\n` at `pos`: the integer and the position after the line.
/// `None` while the line is incomplete or not of that form (the framer then decides).
// #[PerformanceCriticalPath]: runs over every request's headers.
fn header(buf: &[u8], pos: usize, tag: u8) -> Option<(i64, usize)> {
    if buf.get(pos) != Some(&tag) {
        return None;
    }
    // Digits (an optional '-'), then CR: parsed in place, at most 20 characters.
    let mut i = pos + 1;
    let negative = buf.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let start = i;
    let mut n: i64 = 0;
    while let Some(&b) = buf.get(i) {
        match b {
            b'0'..=b'9' if i - start < 19 => {
                n = n * 10 + i64::from(b - b'0');
                i += 1;
            }
            b'\r' if i > start => {
                return Some((if negative { -n } else { n }, i + 2));
            }
            _ => return None,
        }
    }
    None
}

/// Splits an inline line like Redis's `sdssplitargs`: spaces separate, double quotes
/// allow escapes, single quotes are literal. `None` on an unbalanced quote.
fn shlex_split(line: &str) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else {
            return Some(out);
        };
        let mut word = String::new();
        match c {
            '"' => {
                chars.next();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            'n' => word.push('\n'),
                            'r' => word.push('\r'),
                            't' => word.push('\t'),
                            other => word.push(other),
                        },
                        other => word.push(other),
                    }
                }
            }
            '\'' => {
                chars.next();
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => word.push(other),
                    }
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
            }
        }
        out.push(word.into_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, RespError> {
        let decoder = Decoder::default();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(args) = decoder.decode(&mut buf)? {
            out.push(args);
        }
        Ok(out)
    }

    /// The framer's reading of one request, without the fast path.
    fn framed(input: &[u8]) -> Vec<Bytes> {
        let mut buf = BytesMut::from(input);
        let Ok(Some((frame, _, _))) = decode_bytes_mut(&mut buf) else {
            panic!("the framer did not take {input:?}");
        };
        Decoder::default().arguments(frame).unwrap()
    }

    fn encoded(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    proptest::proptest! {
        /// The fast path splits exactly as redis-protocol's framer does, and a request
        /// cut anywhere waits for the rest.
        #[test]
        fn fast_path_agrees_with_the_framer(
            args in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 1..6),
            cut in 0usize..400,
        ) {
            let input = encoded(&args);
            let want: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.clone())).collect();
            proptest::prop_assert_eq!(&framed(&input), &want);
            let decoder = Decoder::default();
            let mut buf = BytesMut::from(&input[..]);
            proptest::prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(want.clone())));
            proptest::prop_assert!(buf.is_empty());
            let cut = cut % input.len();
            let mut buf = BytesMut::from(&input[..cut]);
            proptest::prop_assert_eq!(decoder.decode(&mut buf), Ok(None));
            buf.extend_from_slice(&input[cut..]);
            proptest::prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(want)));
        }
    }

    #[test]
    fn a_bulk_not_followed_by_crlf_is_left_to_the_framer() {
        let input = b"*1\r\n$2\r\nabcd\r\n";
        let mut fast = BytesMut::from(&input[..]);
        let got = Decoder::default().decode(&mut fast);
        let mut framed = BytesMut::from(&input[..]);
        let want = match decode_bytes_mut(&mut framed) {
            Ok(Some((frame, _, _))) => Decoder::default().arguments(frame).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(RespError::Malformed(e.details().to_string())),
        };
        assert_eq!(got, want);
        assert_eq!(fast, framed);
    }

    #[test]
    fn pipelined_requests_split() {
        let got = decode_all(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*1\r\n$3\r\nGE")
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1][1], Bytes::from_static(b"hi"));
    }

    #[test]
    fn inline_commands_with_quotes() {
        let got = decode_all(b"\r\nSET k \"a b\\n\" 'c d'\r\nPING\n").unwrap();
        assert_eq!(
            got[0],
            vec![
                Bytes::from("SET"),
                Bytes::from("k"),
                Bytes::from("a b\n"),
                Bytes::from("c d")
            ]
        );
        assert_eq!(got[1], vec![Bytes::from("PING")]);
        assert_eq!(decode_all(b"SET \"k\r\n"), Err(RespError::UnbalancedQuotes));
    }

    #[test]
    fn declared_lengths_are_checked_before_waiting() {
        assert_eq!(
            decode_all(b"*1\r\n$99999999999\r\nab"),
            Err(RespError::BulkLength)
        );
        assert_eq!(
            decode_all(b"*99999999999\r\n"),
            Err(RespError::MultibulkLength)
        );
        assert_eq!(
            decode_all(b"*2\r\n$1\r\na\r\n:5\r\n"),
            Err(RespError::ExpectedBulk(':'))
        );
        let decoder = Decoder::new(Limits {
            max_bulk_len: 4,
            ..Limits::default()
        });
        let mut buf = BytesMut::from(&b"*1\r\n$5\r\nabcde\r\n"[..]);
        assert_eq!(decoder.decode(&mut buf), Err(RespError::BulkLength));
    }

    #[test]
    fn nested_arrays_are_refused_before_framing() {
        let deep = b"*1\r\n".repeat(200_000);
        assert_eq!(decode_all(&deep), Err(RespError::ExpectedBulk('*')));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for input in [
            &b"*x\r\n"[..],
            b"*1\r\n$x\r\n",
            b"*1\r\n$-5\r\n",
            b"*-1\r\n\x00\xff",
            b"\xff\xfe\r\n",
        ] {
            let _ = decode_all(input);
        }
    }
}
