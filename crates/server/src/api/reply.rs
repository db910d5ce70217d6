//! RESP replies (as the engine and router build them, in RESP2 shape) read back into
//! the gRPC responses, and RESP errors into gRPC statuses with the same text.

use std::collections::HashMap;

use shoal_engine::Reply;
use shoal_proto::api::{Hit, IndexInfoResponse, SearchResponse};
use tonic::{Code, Status};

/// A RESP error as a status: the message is the RESP text, the code what it means.
pub fn status(text: &str) -> Status {
    let code = if text.starts_with("CLUSTERDOWN") || text.starts_with("TRYAGAIN") {
        Code::Unavailable
    } else if text.starts_with("Index with name") && text.contains("not found") {
        Code::NotFound
    } else if text.starts_with("Index ") && text.ends_with("already exists.") {
        Code::AlreadyExists
    } else if text.starts_with("Search operation cancelled due to timeout") {
        Code::DeadlineExceeded
    } else if text.starts_with("WRONGTYPE") {
        Code::FailedPrecondition
    } else {
        Code::InvalidArgument
    };
    Status::new(code, text)
}

/// The reply, or its error as a status.
pub fn ok(reply: Reply) -> Result<Reply, Status> {
    if let Reply::Error(text) = &reply {
        return Err(status(text));
    }
    Ok(reply)
}

fn unexpected(what: &str, reply: &Reply) -> Status {
    Status::internal(format!("unexpected {what} reply: {reply:?}"))
}

/// The bytes of a string-like reply.
pub fn bytes(reply: &Reply) -> Option<Vec<u8>> {
    match reply {
        Reply::Bulk(b) => Some(b.clone()),
        Reply::Simple(s) | Reply::Verbatim(s) => Some(s.clone().into_bytes()),
        Reply::Int(n) => Some(n.to_string().into_bytes()),
        Reply::Double(d) => Some(d.to_string().into_bytes()),
        Reply::Ok => Some(b"OK".to_vec()),
        Reply::Null | Reply::Error(_) | Reply::Array(_) | Reply::Map(_) => None,
    }
}

fn text(reply: &Reply) -> Option<String> {
    bytes(reply).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub fn int(reply: &Reply) -> Result<i64, Status> {
    if let Reply::Int(n) = reply {
        return Ok(*n);
    }
    Err(unexpected("integer", reply))
}

/// Key/value pairs of a map, or of a flat array in RESP2 shape.
fn pairs(reply: Reply) -> Option<Vec<(Reply, Reply)>> {
    match reply {
        Reply::Map(pairs) => Some(pairs),
        Reply::Array(items) if items.len() % 2 == 0 => {
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            Some(out)
        }
        Reply::Array(_)
        | Reply::Ok
        | Reply::Simple(_)
        | Reply::Error(_)
        | Reply::Int(_)
        | Reply::Bulk(_)
        | Reply::Null
        | Reply::Double(_)
        | Reply::Verbatim(_) => None,
    }
}

/// A hash's fields (HGETALL, or a search hit's fields).
pub fn fields(reply: Reply) -> Result<HashMap<String, Vec<u8>>, Status> {
    let shown = format!("{reply:?}");
    let pairs = pairs(reply).ok_or_else(|| Status::internal(format!("not a map: {shown}")))?;
    Ok(pairs
        .into_iter()
        .filter_map(|(k, v)| Some((text(&k)?, bytes(&v)?)))
        .collect())
}

/// An array's string items (FT._LIST).
pub fn strings(reply: Reply) -> Result<Vec<String>, Status> {
    if let Reply::Array(items) = &reply {
        return Ok(items.iter().filter_map(text).collect());
    }
    Err(unexpected("array", &reply))
}

/// FT.SEARCH's RESP2 reply: `[total, key, [fields...], ...]`, or `[total, key, ...]`
/// under NOCONTENT. A KNN hit's distance is taken out of its fields when `keep` says the
/// client did not ask for it as a field.
pub fn search(
    reply: Reply,
    distance: Option<&str>,
    keep_distance_field: bool,
    nocontent: bool,
) -> Result<SearchResponse, Status> {
    let Reply::Array(items) = reply else {
        return Err(unexpected("search", &reply));
    };
    let mut it = items.into_iter();
    let total = match it.next() {
        Some(Reply::Int(n)) => u64::try_from(n).unwrap_or(0),
        other => return Err(Status::internal(format!("search total: {other:?}"))),
    };
    let mut hits = Vec::new();
    while let Some(key) = it.next() {
        let key = text(&key).ok_or_else(|| unexpected("search key", &key))?;
        let mut fields = if nocontent {
            HashMap::new()
        } else {
            match it.next() {
                Some(f) => self::fields(f)?,
                None => HashMap::new(),
            }
        };
        let distance = match distance {
            Some(name) => {
                let value = if keep_distance_field {
                    fields.get(name).cloned()
                } else {
                    fields.remove(name)
                };
                value
                    .and_then(|v| String::from_utf8_lossy(&v).parse::<f64>().ok())
                    .unwrap_or(0.0)
            }
            None => 0.0,
        };
        hits.push(Hit {
            key,
            distance,
            fields,
        });
    }
    Ok(SearchResponse { total, hits })
}

/// FT.INFO's reply, its scalar fields kept as text.
pub fn index_info(reply: Reply) -> Result<IndexInfoResponse, Status> {
    let shown = format!("{reply:?}");
    let pairs = pairs(reply).ok_or_else(|| Status::internal(format!("FT.INFO: {shown}")))?;
    let fields: HashMap<String, String> = pairs
        .iter()
        .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
        .collect();
    let number = |name: &str| fields.get(name).and_then(|v| v.parse::<f64>().ok());
    Ok(IndexInfoResponse {
        index: fields.get("index_name").cloned().unwrap_or_default(),
        num_docs: number("num_docs").unwrap_or(0.0) as u64,
        num_records: number("num_records").unwrap_or(0.0) as u64,
        hash_indexing_failures: number("hash_indexing_failures").unwrap_or(0.0) as u64,
        backfill_complete_percent: number("backfill_complete_percent").unwrap_or(0.0),
        state: fields.get("state").cloned().unwrap_or_default(),
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_replies_with_and_without_content() {
        let reply = Reply::Array(vec![
            Reply::Int(7),
            Reply::bulk("a"),
            Reply::Array(vec![
                Reply::bulk("t"),
                Reply::bulk("x"),
                Reply::bulk("d"),
                Reply::bulk("0.25"),
            ]),
            Reply::bulk("b"),
            Reply::Array(vec![Reply::bulk("d"), Reply::bulk("1")]),
        ]);
        let r = search(reply, Some("d"), false, false).unwrap();
        assert_eq!(r.total, 7);
        assert_eq!(r.hits.len(), 2);
        assert_eq!((r.hits[0].key.as_str(), r.hits[0].distance), ("a", 0.25));
        assert_eq!(r.hits[0].fields.len(), 1);
        assert_eq!(r.hits[0].fields["t"], b"x");
        assert_eq!(r.hits[1].distance, 1.0);
        let keys = Reply::Array(vec![Reply::Int(2), Reply::bulk("a"), Reply::bulk("b")]);
        let r = search(keys, None, false, true).unwrap();
        assert_eq!(
            r.hits.iter().map(|h| h.key.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(search(Reply::Int(1), None, false, false).is_err());
    }

    #[test]
    fn errors_keep_their_text_and_get_a_code() {
        let s = status("Index with name 'x' not found in database 0");
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "Index with name 'x' not found in database 0");
        assert_eq!(
            status("CLUSTERDOWN shard group 1 has no leader").code(),
            Code::Unavailable
        );
        assert_eq!(status("ERR syntax error").code(), Code::InvalidArgument);
    }

    #[test]
    fn info_reads_maps_and_flat_arrays() {
        let flat = Reply::Array(vec![
            Reply::bulk("index_name"),
            Reply::bulk("idx"),
            Reply::bulk("num_docs"),
            Reply::Int(12),
            Reply::bulk("state"),
            Reply::bulk("ready"),
            Reply::bulk("attributes"),
            Reply::Array(vec![]),
        ]);
        let info = index_info(flat).unwrap();
        assert_eq!(
            (info.index.as_str(), info.num_docs, info.state.as_str()),
            ("idx", 12, "ready")
        );
        assert!(!info.fields.contains_key("attributes"));
    }
}
