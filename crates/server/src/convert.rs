//! Engine replies into protocol values.

use shoal_engine::Reply;
use shoal_resp::Value;

pub fn to_value(reply: Reply) -> Value {
    match reply {
        Reply::Ok => Value::ok(),
        Reply::Simple(s) => Value::simple(s),
        Reply::Error(e) => Value::Error(e),
        Reply::Int(i) => Value::Int(i),
        Reply::Bulk(b) => Value::Bulk(b.into()),
        Reply::Null => Value::Null,
        Reply::Array(items) => Value::Array(items.into_iter().map(to_value).collect()),
        Reply::Map(pairs) => Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (to_value(k), to_value(v)))
                .collect(),
        ),
        Reply::Double(d) => Value::Double(d),
        Reply::Verbatim(s) => Value::Verbatim(s),
    }
}
