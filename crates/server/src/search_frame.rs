//! FT.SEARCH replies framed into RESP2 as the engine finds the hits, on a
//! `--standalone` node (a router merges its parts' owned hits first).
//!
//! Through `Engine::query` a search copies each hit's key and fields into buffers of
//! their own, builds a reply tree of them, encodes it and frees it all: for the issue
//! #3 benchmark's `RETURN 1 __vec_score`, five allocations a hit. Framed here, keys and
//! fields are written from the documents straight into the output (each hit's field
//! count, known last, is rotated in front of its fields). RESP3's map shape stays with
//! the tree.

use bytes::{Bytes, BytesMut};
use shoal_engine::{Engine, HitSink, ReadContext, Reply, SortValue};
use shoal_resp::encode::{array_len, bulk_string, integer};
use shoal_resp::{encode, Protocol};

use crate::convert::EngineReply;

/// RESP2's `[total, key, [name, value, ...], ...]`, written as the hits come.
struct Resp2Hits<'a> {
    out: &'a mut BytesMut,
    /// Where the current hit's fields begin in `out`. Their count leads them and is known
    /// only at the end, when its line is written after them and rotated to the front:
    /// the hit's field bytes move once within `out`, where a scratch buffer had to be
    /// allocated and grown for every search and copied from for every hit.
    fields_at: usize,
    count: usize,
    with_fields: bool,
}

impl HitSink for Resp2Hits<'_> {
    fn begin(&mut self, total: usize, hits: usize, with_fields: bool) {
        self.with_fields = with_fields;
        let per_hit = if with_fields { 2 } else { 1 };
        array_len(self.out, hits.saturating_mul(per_hit).saturating_add(1));
        integer(self.out, i64::try_from(total).unwrap_or(i64::MAX));
    }

    fn hit(
        &mut self,
        key: &[u8],
        _distance: Option<f32>,
        _sort_value: Option<SortValue>,
        _fields: usize,
    ) {
        bulk_string(self.out, key);
        self.fields_at = self.out.len();
        self.count = 0;
    }

    fn field(&mut self, name: &[u8], value: std::borrow::Cow<'_, [u8]>) {
        if !self.with_fields {
            return;
        }
        bulk_string(self.out, name);
        bulk_string(self.out, &value);
        self.count += 2;
    }

    fn end_hit(&mut self) {
        if self.with_fields {
            let fields_end = self.out.len();
            array_len(self.out, self.count);
            let line = self.out.len() - fields_end;
            // [fields][count line] -> [count line][fields]
            if let Some(hit) = self.out.get_mut(self.fields_at..) {
                hit.rotate_right(line);
            }
        }
    }
}

/// Whether [`frame`] answers `request`: an FT.SEARCH with an index and a query, to a
/// RESP2 connection (fewer arguments get `query`'s arity error).
pub fn frames(request: &[Bytes], resp3: bool) -> bool {
    !resp3
        && request.len() >= 3
        && request
            .first()
            .is_some_and(|name| name.eq_ignore_ascii_case(b"FT.SEARCH"))
}

/// Answers `request` into `out` if [`frames`] holds; false leaves it to `Engine::query`.
/// The bytes are those `query`'s reply encodes to, errors included (`tests` hold the
/// two to each other).
// #[PerformanceCriticalPath]: every --standalone FT.SEARCH in RESP2 comes through here.
pub fn frame(engine: &Engine, request: &[Bytes], ctx: ReadContext, out: &mut BytesMut) -> bool {
    if !frames(request, ctx.resp3) {
        return false;
    }
    frame_with(out, |sink| engine.search_into(&request[1..], ctx, sink));
    true
}

/// Runs `search` into a framer over `out`; on its error, whatever of the page it wrote
/// is taken back and the error goes out alone (a deadline can pass mid-page).
fn frame_with(out: &mut BytesMut, search: impl FnOnce(&mut Resp2Hits<'_>) -> Result<(), String>) {
    let start = out.len();
    let result = {
        let mut sink = Resp2Hits {
            out: &mut *out,
            fields_at: start,
            count: 0,
            with_fields: false,
        };
        search(&mut sink)
    };
    if let Err(text) = result {
        out.truncate(start);
        encode(EngineReply(Reply::Error(text)), Protocol::Resp2, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_engine::Write;

    const NOW: u64 = 1_000_000;

    fn ctx(resp3: bool) -> ReadContext {
        ReadContext {
            now_ms: NOW,
            resp3,
            in_apply: false,
        }
    }

    /// A command's arguments from `|`-separated text; `<q>` and `<j>` stand for the two
    /// query vectors.
    fn args(text: &str) -> Vec<Bytes> {
        text.split('|')
            .map(|a| match a {
                "<q>" => Bytes::from(vector(11.2, 0.5)),
                "<j>" => Bytes::from(vector(3.3, 1.0)),
                _ => Bytes::copy_from_slice(a.as_bytes()),
            })
            .collect()
    }

    fn vector(x: f32, y: f32) -> Vec<u8> {
        [x, y].iter().flat_map(|f| f.to_le_bytes()).collect()
    }

    fn write(engine: &mut Engine, args: Vec<Bytes>) {
        let write = Write::single(NOW, args.iter().map(|a| a.to_vec()).collect());
        let replies = engine.apply(&write);
        assert!(
            !matches!(replies.first(), Some(Reply::Error(_))),
            "{replies:?}"
        );
    }

    /// An index over hashes and one over JSON, with fields some documents lack.
    fn engine() -> Engine {
        let mut engine = Engine::new();
        write(
            &mut engine,
            args("FT.CREATE|idx|PREFIX|1|d:|SCHEMA|v|VECTOR|HNSW|6|TYPE|FLOAT32|DIM|2|DISTANCE_METRIC|L2|n|NUMERIC|t|TAG"),
        );
        for i in 0..40u8 {
            let tag = if i % 2 == 0 { "even" } else { "odd" };
            // Every fifth document lacks `n` and has a field outside the schema.
            let rest = if i % 5 == 0 {
                format!("t|{tag}|extra|x")
            } else {
                format!("n|{}|t|{tag}", i % 7)
            };
            let mut hset = args(&format!("HSET|d:{i}|v|<v>|{rest}"));
            hset[3] = Bytes::from(vector(f32::from(i), 0.5));
            write(&mut engine, hset);
        }
        write(
            &mut engine,
            args("FT.CREATE|jidx|ON|JSON|PREFIX|1|j:|SCHEMA|$.n|AS|n|NUMERIC|$.v|AS|v|VECTOR|FLAT|6|TYPE|FLOAT32|DIM|2|DISTANCE_METRIC|L2"),
        );
        for i in 0..10 {
            let doc = format!(r#"{{"n":{i},"v":[{i}.0,1.0],"s":"x{i}"}}"#);
            write(&mut engine, args(&format!("JSON.SET|j:{i}|$|{doc}")));
        }
        engine
    }

    fn through_the_tree(engine: &Engine, request: &[Bytes]) -> BytesMut {
        let mut out = BytesMut::new();
        encode(
            EngineReply(engine.query(request, ctx(false))),
            Protocol::Resp2,
            &mut out,
        );
        out
    }

    /// Searches of every reply shape, then four that fail.
    const SEARCHES: &[&str] = &[
        // KNN with the score alone (the issue's benchmark), with every field, with
        // NOCONTENT, with a LIMIT page, with SORTBY.
        "FT.SEARCH|idx|*=>[KNN 10 @v $q EF_RUNTIME 20]|PARAMS|2|q|<q>|RETURN|1|__v_score|DIALECT|2",
        "FT.SEARCH|idx|*=>[KNN 5 @v $q]|PARAMS|2|q|<q>|DIALECT|2",
        "ft.search|idx|*=>[KNN 5 @v $q AS dist]|PARAMS|2|q|<q>|NOCONTENT|DIALECT|2",
        "FT.SEARCH|idx|*=>[KNN 8 @v $q AS dist]|PARAMS|2|q|<q>|RETURN|3|dist|n|extra|LIMIT|2|3|DIALECT|2",
        "FT.SEARCH|idx|*=>[KNN 8 @v $q AS dist]|PARAMS|2|q|<q>|SORTBY|n|DESC|RETURN|2|n|dist|DIALECT|2",
        // Ten fields a hit where `n` is there (a count line of two digits), six where not.
        "FT.SEARCH|idx|*=>[KNN 6 @v $q AS dist]|PARAMS|2|q|<q>|RETURN|11|dist|n|AS|a|n|AS|b|t|AS|c|v|DIALECT|2",
        // Filters without KNN, RETURN ... AS, an empty answer, LIMIT 0 0, a page.
        "FT.SEARCH|idx|@t:{odd} @n:[2 4]|RETURN|3|n|AS|count",
        "FT.SEARCH|idx|@n:[100 200]",
        "FT.SEARCH|idx|*|LIMIT|0|0",
        "FT.SEARCH|idx|@t:{even}|SORTBY|n|LIMIT|3|4",
        // VECTOR_RANGE's yielded distance; JSON documents whole and by path.
        "FT.SEARCH|idx|@v:[VECTOR_RANGE 2.5 $q]=>{$YIELD_DISTANCE_AS: r}|PARAMS|2|q|<q>|SORTBY|r|DIALECT|2",
        "FT.SEARCH|jidx|*=>[KNN 3 @v $q]|PARAMS|2|q|<j>|DIALECT|2",
        "FT.SEARCH|jidx|@n:[2 6]|RETURN|3|$.s|n|$.missing",
        // A field most documents lack: hits with no fields at all.
        "FT.SEARCH|idx|*=>[KNN 6 @v $q]|PARAMS|2|q|<q>|RETURN|1|extra|DIALECT|2",
        // An unknown index, a query that does not parse, a vector of the wrong size, a
        // LIMIT that is not a number.
        "FT.SEARCH|nope|*",
        "FT.SEARCH|idx|@n:[1",
        "FT.SEARCH|idx|*=>[KNN 3 @v $q]|PARAMS|2|q|short|DIALECT|2",
        "FT.SEARCH|idx|*|LIMIT|x|1",
    ];
    const FAILING: usize = 4;

    /// Every shape of FT.SEARCH reply, and its errors, frames to the bytes the reply
    /// tree encodes to, after whatever the output already held.
    #[test]
    fn framed_searches_are_the_bytes_the_reply_tree_encodes_to() {
        let engine = engine();
        for text in SEARCHES {
            let request = args(text);
            let mut framed = BytesMut::from(&b"+before\r\n"[..]);
            assert!(frame(&engine, &request, ctx(false), &mut framed));
            let mut expected = BytesMut::from(&b"+before\r\n"[..]);
            expected.extend_from_slice(&through_the_tree(&engine, &request));
            assert_eq!(framed, expected, "{text}");
        }
    }

    /// The searches above answer what they are meant to: hits with fields, JSON paths,
    /// and errors from the failing ones alone.
    #[test]
    fn the_searches_compared_answer_hits_and_errors() {
        let engine = engine();
        let replies: Vec<BytesMut> = SEARCHES
            .iter()
            .map(|text| through_the_tree(&engine, &args(text)))
            .collect();
        assert!(replies[0].starts_with(b"*21\r\n:10\r\n$4\r\nd:11\r\n*2\r\n$9\r\n__v_score\r\n"));
        // Hits of ten fields (a count line of two digits) and of six; hits of none.
        assert!(replies[5].windows(5).any(|w| w == b"*10\r\n"));
        assert!(replies[5].windows(4).any(|w| w == b"*6\r\n"));
        assert!(replies[13].windows(4).any(|w| w == b"*0\r\n"));
        assert!(replies[12].windows(8).any(|w| w == b"$2\r\nx3\r\n"));
        let failed: Vec<bool> = replies.iter().map(|r| r.starts_with(b"-")).collect();
        let ok = SEARCHES.len() - FAILING;
        assert!(failed[..ok].iter().all(|f| !f), "{failed:?}");
        assert!(failed[ok..].iter().all(|f| *f), "{failed:?}");
    }

    /// An error after part of the page was written (a deadline passing mid-page) sends
    /// the error alone, after what the output held before.
    #[test]
    fn an_error_mid_page_takes_the_page_back() {
        let mut out = BytesMut::from(&b"+before\r\n"[..]);
        frame_with(&mut out, |sink| {
            sink.begin(7, 2, true);
            sink.hit(b"d:1", Some(0.5), None, 1);
            sink.field(b"score", std::borrow::Cow::Borrowed(b"0.5"));
            sink.end_hit();
            sink.hit(b"d:2", Some(0.7), None, 1);
            Err("Search operation cancelled due to timeout".into())
        });
        assert_eq!(
            out,
            &b"+before\r\n-Search operation cancelled due to timeout\r\n"[..]
        );
        // And without the error, the same calls frame the page.
        let mut out = BytesMut::new();
        frame_with(&mut out, |sink| {
            sink.begin(7, 1, true);
            sink.hit(b"d:1", Some(0.5), None, 1);
            sink.field(b"score", std::borrow::Cow::Borrowed(b"0.5"));
            sink.end_hit();
            Ok(())
        });
        assert_eq!(
            out,
            &b"*3\r\n:7\r\n$3\r\nd:1\r\n*2\r\n$5\r\nscore\r\n$3\r\n0.5\r\n"[..]
        );
    }

    /// RESP3 keeps the tree's map; other commands and short requests are not framed.
    #[test]
    fn only_resp2_searches_are_framed() {
        let engine = engine();
        let mut out = BytesMut::new();
        assert!(!frame(
            &engine,
            &args("FT.SEARCH|idx|*"),
            ctx(true),
            &mut out
        ));
        assert!(!frame(
            &engine,
            &args("FT.SEARCH|idx"),
            ctx(false),
            &mut out
        ));
        assert!(!frame(&engine, &args("HGETALL|d:1"), ctx(false), &mut out));
        assert!(!frame(
            &engine,
            &args("FT.AGGREGATE|idx|*"),
            ctx(false),
            &mut out
        ));
        assert!(out.is_empty());
        // `search_into` itself answers a short request as `query` does.
        frame_with(&mut out, |sink| {
            engine.search_into(&args("idx"), ctx(false), sink)
        });
        assert_eq!(out, through_the_tree(&engine, &args("FT.SEARCH|idx")));
        assert!(out.starts_with(b"-ERR wrong number of arguments for 'ft.search'"));
    }
}
