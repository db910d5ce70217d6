//! Reading a schema field out of a document: a hash field's bytes or a JSONPath's values.

use shoal_query::Field;

use crate::keyspace::Value;

/// A field's raw value in one document, compared before and after a write to see
/// whether the field's index needs touching.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw<'a> {
    Bytes(&'a [u8]),
    Json(Vec<&'a serde_json::Value>),
}

/// The raw value of `field` in `value`, `None` when the document lacks it.
pub fn raw_field<'a>(value: &'a Value, field: &Field) -> Option<Raw<'a>> {
    match value {
        Value::Hash(h) => h.get(field.identifier.as_bytes()).map(|v| Raw::Bytes(v)),
        Value::Json(doc) => {
            let nodes = json_query(doc, &field.identifier)?;
            (!nodes.is_empty()).then_some(Raw::Json(nodes))
        }
        Value::Str(_) => None,
    }
}

/// Values at a JSONPath; `None` for a path that does not parse (a schema accepted it,
/// so that does not happen for indexed fields).
pub fn json_query<'a>(
    doc: &'a serde_json::Value,
    path: &str,
) -> Option<Vec<&'a serde_json::Value>> {
    let path = serde_json_path::JsonPath::parse(path).ok()?;
    Some(path.query(doc).all())
}

impl Raw<'_> {
    /// A NUMERIC value: a hash field that parses as a float, or one JSON number.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Raw::Bytes(b) => shoal_query::args::parse_f64(b).filter(|v| v.is_finite()),
            Raw::Json(nodes) => match nodes.as_slice() {
                [serde_json::Value::Number(n)] => n.as_f64(),
                _ => None,
            },
        }
    }

    /// TAG values: a hash field split by the separator, or JSON strings (an array of
    /// them, or several matches).
    pub fn as_tags(&self, split: impl Fn(&str) -> Vec<String>) -> Option<Vec<String>> {
        match self {
            Raw::Bytes(b) => std::str::from_utf8(b).ok().map(split),
            Raw::Json(nodes) => {
                let mut tags = Vec::new();
                for node in nodes {
                    match node {
                        serde_json::Value::String(s) => tags.extend(split(s)),
                        serde_json::Value::Array(items) => {
                            for item in items {
                                let serde_json::Value::String(s) = item else {
                                    return None;
                                };
                                tags.extend(split(s));
                            }
                        }
                        serde_json::Value::Bool(b) => tags.extend(split(&b.to_string())),
                        serde_json::Value::Null
                        | serde_json::Value::Number(_)
                        | serde_json::Value::Object(_) => return None,
                    }
                }
                tags.sort();
                tags.dedup();
                Some(tags)
            }
        }
    }

    /// A VECTOR value: exactly `dim` little-endian f32s, or a JSON array of `dim` numbers.
    pub fn as_vector(&self, dim: usize) -> Option<Vec<f32>> {
        match self {
            Raw::Bytes(b) => (b.len() == dim * 4).then(|| {
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }),
            Raw::Json(nodes) => {
                let numbers: Vec<&serde_json::Value> = match nodes.as_slice() {
                    [serde_json::Value::Array(items)] => items.iter().collect(),
                    many => many.to_vec(),
                };
                if numbers.len() != dim {
                    return None;
                }
                numbers
                    .iter()
                    .map(|n| n.as_f64().map(|f| f as f32))
                    .collect()
            }
        }
    }

    /// The value as text, for TEXT matching and for replies.
    pub fn as_text(&self) -> String {
        match self {
            Raw::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Raw::Json(nodes) => match nodes.as_slice() {
                [serde_json::Value::String(s)] => s.clone(),
                [one] => one.to_string(),
                many => serde_json::Value::Array(many.iter().map(|v| (*v).clone()).collect())
                    .to_string(),
            },
        }
    }

    /// The bytes a reply carries for this field: borrowed where the document holds it that way.
    pub fn reply_cow(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Raw::Bytes(b) => std::borrow::Cow::Borrowed(b),
            Raw::Json(_) => std::borrow::Cow::Owned(self.as_text().into_bytes()),
        }
    }
}

/// Words of a text, lower-cased, split on anything that is not a letter or digit.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}
