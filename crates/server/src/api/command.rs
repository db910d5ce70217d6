//! gRPC requests as the RESP commands they stand for. Going through the commands keeps
//! one implementation of every rule (validation, routing, error wording) for both fronts.

use shoal_proto::api::{
    field, search_request, Algorithm, CreateIndexRequest, DataType, Document, Metric, SearchRequest,
};

/// A command's arguments.
pub type Args = Vec<Vec<u8>>;

fn arg(s: impl AsRef<[u8]>) -> Vec<u8> {
    s.as_ref().to_vec()
}

/// Why a request cannot become a command (the status message a client gets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("field {0:?} has no type (tag, numeric, text or vector)")]
    NoFieldType(String),
    #[error("unknown {what} {value}")]
    UnknownEnum { what: &'static str, value: i32 },
    #[error("a document is either json or fields and vectors, not both")]
    JsonAndFields,
    #[error("a document needs a key and json, fields or vectors")]
    EmptyDocument,
    #[error("a vector search needs vector_field")]
    NoVectorField,
    #[error("{0} is required")]
    Missing(&'static str),
}

/// FT.CREATE.
pub fn create_index(r: &CreateIndexRequest) -> Result<Args, RequestError> {
    if r.index.is_empty() {
        return Err(RequestError::Missing("index"));
    }
    let on = DataType::try_from(r.on).map_err(|_| RequestError::UnknownEnum {
        what: "data type",
        value: r.on,
    })?;
    let mut a = vec![arg("FT.CREATE"), arg(&r.index), arg("ON")];
    a.push(arg(match on {
        DataType::Hash => "HASH",
        DataType::Json => "JSON",
    }));
    if !r.prefixes.is_empty() {
        a.push(arg("PREFIX"));
        a.push(arg(r.prefixes.len().to_string()));
        a.extend(r.prefixes.iter().map(arg));
    }
    if r.skip_initial_scan {
        a.push(arg("SKIPINITIALSCAN"));
    }
    a.push(arg("SCHEMA"));
    for f in &r.fields {
        a.push(arg(&f.name));
        if !f.alias.is_empty() {
            a.push(arg("AS"));
            a.push(arg(&f.alias));
        }
        match &f.kind {
            None => return Err(RequestError::NoFieldType(f.name.clone())),
            Some(field::Kind::Tag(t)) => {
                a.push(arg("TAG"));
                if !t.separator.is_empty() {
                    a.push(arg("SEPARATOR"));
                    a.push(arg(&t.separator));
                }
                if t.case_sensitive {
                    a.push(arg("CASESENSITIVE"));
                }
            }
            Some(field::Kind::Numeric(_)) => a.push(arg("NUMERIC")),
            Some(field::Kind::Text(_)) => a.push(arg("TEXT")),
            Some(field::Kind::Vector(v)) => {
                let algorithm =
                    Algorithm::try_from(v.algorithm).map_err(|_| RequestError::UnknownEnum {
                        what: "algorithm",
                        value: v.algorithm,
                    })?;
                let metric = Metric::try_from(v.metric).map_err(|_| RequestError::UnknownEnum {
                    what: "metric",
                    value: v.metric,
                })?;
                let mut attrs: Vec<(&str, String)> = vec![
                    ("TYPE", "FLOAT32".into()),
                    ("DIM", v.dim.to_string()),
                    (
                        "DISTANCE_METRIC",
                        match metric {
                            Metric::L2 => "L2",
                            Metric::Ip => "IP",
                            Metric::Cosine => "COSINE",
                        }
                        .into(),
                    ),
                ];
                if v.initial_cap > 0 {
                    attrs.push(("INITIAL_CAP", v.initial_cap.to_string()));
                }
                if algorithm == Algorithm::Hnsw {
                    for (name, value) in [
                        ("M", v.m),
                        ("EF_CONSTRUCTION", v.ef_construction),
                        ("EF_RUNTIME", v.ef_runtime),
                    ] {
                        if value > 0 {
                            attrs.push((name, value.to_string()));
                        }
                    }
                }
                a.push(arg("VECTOR"));
                a.push(arg(match algorithm {
                    Algorithm::Hnsw => "HNSW",
                    Algorithm::Flat => "FLAT",
                }));
                a.push(arg((attrs.len() * 2).to_string()));
                for (name, value) in attrs {
                    a.push(arg(name));
                    a.push(arg(value));
                }
            }
        }
    }
    Ok(a)
}

/// FLOAT32 little-endian, as RESP clients store and send vectors.
pub fn vector_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// HSET or JSON.SET.
pub fn upsert(d: &Document) -> Result<Args, RequestError> {
    if d.key.is_empty() {
        return Err(RequestError::EmptyDocument);
    }
    if !d.json.is_empty() {
        if !d.fields.is_empty() || !d.vectors.is_empty() {
            return Err(RequestError::JsonAndFields);
        }
        return Ok(vec![arg("JSON.SET"), arg(&d.key), arg("$"), arg(&d.json)]);
    }
    if d.fields.is_empty() && d.vectors.is_empty() {
        return Err(RequestError::EmptyDocument);
    }
    let mut a = vec![arg("HSET"), arg(&d.key)];
    // Sorted, so that the same document always becomes the same command.
    let mut fields: Vec<(&String, &Vec<u8>)> = d.fields.iter().collect();
    fields.sort();
    for (name, value) in fields {
        a.push(arg(name));
        a.push(value.clone());
    }
    let mut vectors: Vec<_> = d.vectors.iter().collect();
    vectors.sort_by(|x, y| x.0.cmp(y.0));
    for (name, v) in vectors {
        a.push(arg(name));
        a.push(vector_bytes(&v.values));
    }
    Ok(a)
}

/// The name a KNN search's distance comes back under when the request names none.
pub const DISTANCE: &str = "__distance";
const VECTOR_PARAM: &str = "__vector";

/// FT.SEARCH, and the name of the distance field when it is a KNN search.
pub fn search(r: &SearchRequest) -> Result<(Args, Option<String>), RequestError> {
    if r.index.is_empty() {
        return Err(RequestError::Missing("index"));
    }
    let filter = if r.filter.trim().is_empty() {
        "*"
    } else {
        r.filter.as_str()
    };
    let k = if r.k == 0 { 10 } else { r.k };
    let vector = match &r.vector {
        Some(search_request::Vector::Floats(f)) => Some(vector_bytes(&f.values)),
        Some(search_request::Vector::Raw(b)) => Some(b.clone()),
        None => None,
    };
    let mut a = vec![arg("FT.SEARCH"), arg(&r.index)];
    let mut params: Vec<(String, Vec<u8>)> = r
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    params.sort();
    let distance = match vector {
        Some(bytes) => {
            if r.vector_field.is_empty() {
                return Err(RequestError::NoVectorField);
            }
            let alias = if r.distance_field.is_empty() {
                DISTANCE.to_owned()
            } else {
                r.distance_field.clone()
            };
            let ef = if r.ef > 0 {
                format!(" EF_RUNTIME {}", r.ef)
            } else {
                String::new()
            };
            a.push(arg(format!(
                "({filter})=>[KNN {k} @{} ${VECTOR_PARAM}{ef} AS {alias}]",
                r.vector_field.trim_start_matches('@')
            )));
            params.push((VECTOR_PARAM.to_owned(), bytes));
            Some(alias)
        }
        None => {
            a.push(arg(filter));
            None
        }
    };
    // A KNN hit's distance is read from its fields: keys_only and RETURN keep it.
    match (&distance, r.keys_only, r.return_fields.is_empty()) {
        (None, true, _) => a.push(arg("NOCONTENT")),
        (Some(alias), true, _) => a.extend([arg("RETURN"), arg("1"), arg(alias)]),
        (_, false, true) => {}
        (_, false, false) => {
            let mut fields: Vec<&str> = r.return_fields.iter().map(String::as_str).collect();
            if let Some(alias) = &distance {
                if !fields.contains(&alias.as_str()) {
                    fields.push(alias);
                }
            }
            a.push(arg("RETURN"));
            a.push(arg(fields.len().to_string()));
            a.extend(fields.into_iter().map(arg));
        }
    }
    a.extend([arg("LIMIT"), arg(r.offset.to_string()), arg(k.to_string())]);
    if r.timeout_ms > 0 {
        a.extend([arg("TIMEOUT"), arg(r.timeout_ms.to_string())]);
    }
    if r.partial {
        a.push(arg("SOMESHARDS"));
    }
    if !params.is_empty() {
        a.push(arg("PARAMS"));
        a.push(arg((params.len() * 2).to_string()));
        for (name, value) in params {
            a.push(arg(name));
            a.push(value);
        }
    }
    a.extend([arg("DIALECT"), arg("2")]);
    Ok((a, distance))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::api::{Field, FloatVector, TagField, VectorField};

    fn text(args: &Args) -> Vec<String> {
        args.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    #[test]
    fn create_index_spells_ft_create() {
        let r = CreateIndexRequest {
            index: "idx".into(),
            on: DataType::Hash as i32,
            prefixes: vec!["doc:".into()],
            fields: vec![
                Field {
                    name: "t".into(),
                    alias: String::new(),
                    kind: Some(field::Kind::Tag(TagField {
                        separator: "|".into(),
                        case_sensitive: true,
                    })),
                },
                Field {
                    name: "v".into(),
                    alias: "vec".into(),
                    kind: Some(field::Kind::Vector(VectorField {
                        algorithm: Algorithm::Hnsw as i32,
                        dim: 4,
                        metric: Metric::Cosine as i32,
                        m: 8,
                        ..VectorField::default()
                    })),
                },
            ],
            skip_initial_scan: false,
        };
        assert_eq!(
            text(&create_index(&r).unwrap()).join(" "),
            "FT.CREATE idx ON HASH PREFIX 1 doc: SCHEMA t TAG SEPARATOR | CASESENSITIVE \
             v AS vec VECTOR HNSW 8 TYPE FLOAT32 DIM 4 DISTANCE_METRIC COSINE M 8"
        );
        let untyped = CreateIndexRequest {
            index: "i".into(),
            fields: vec![Field {
                name: "x".into(),
                ..Field::default()
            }],
            ..CreateIndexRequest::default()
        };
        assert_eq!(
            create_index(&untyped),
            Err(RequestError::NoFieldType("x".into()))
        );
        let bad_metric = CreateIndexRequest {
            index: "i".into(),
            on: 7,
            ..CreateIndexRequest::default()
        };
        assert!(matches!(
            create_index(&bad_metric),
            Err(RequestError::UnknownEnum { value: 7, .. })
        ));
    }

    #[test]
    fn documents_become_hset_or_json_set() {
        let mut d = Document {
            key: "k".into(),
            ..Document::default()
        };
        d.fields.insert("b".into(), b"2".to_vec());
        d.fields.insert("a".into(), b"1".to_vec());
        d.vectors.insert(
            "v".into(),
            FloatVector {
                values: vec![1.0, -2.0],
            },
        );
        let a = upsert(&d).unwrap();
        assert_eq!(text(&a[..6].to_vec()), ["HSET", "k", "a", "1", "b", "2"]);
        assert_eq!(a[6], b"v");
        assert_eq!(a[7], vector_bytes(&[1.0, -2.0]));
        d.json = "{}".into();
        assert_eq!(upsert(&d), Err(RequestError::JsonAndFields));
        let json = Document {
            key: "j".into(),
            json: r#"{"a":1}"#.into(),
            ..Document::default()
        };
        assert_eq!(
            text(&upsert(&json).unwrap()),
            ["JSON.SET", "j", "$", r#"{"a":1}"#]
        );
        assert_eq!(
            upsert(&Document::default()),
            Err(RequestError::EmptyDocument)
        );
    }

    #[test]
    fn a_vector_search_is_a_knn_query_that_keeps_its_distance() {
        let r = SearchRequest {
            index: "idx".into(),
            filter: "@t:{a}".into(),
            vector: Some(search_request::Vector::Floats(FloatVector {
                values: vec![0.5],
            })),
            vector_field: "v".into(),
            k: 3,
            ef: 40,
            return_fields: vec!["t".into()],
            ..SearchRequest::default()
        };
        let (a, distance) = search(&r).unwrap();
        assert_eq!(distance.as_deref(), Some(DISTANCE));
        let t = text(&a);
        assert_eq!(
            t[..11].join(" "),
            "FT.SEARCH idx (@t:{a})=>[KNN 3 @v $__vector EF_RUNTIME 40 AS __distance] \
             RETURN 2 t __distance LIMIT 0 3 PARAMS"
        );
        assert_eq!(a[13], vector_bytes(&[0.5]));
        assert_eq!(t[14..], ["DIALECT", "2"]);

        let keys_only = SearchRequest {
            index: "idx".into(),
            keys_only: true,
            ..SearchRequest::default()
        };
        assert_eq!(
            text(&search(&keys_only).unwrap().0).join(" "),
            "FT.SEARCH idx * NOCONTENT LIMIT 0 10 DIALECT 2"
        );
        let partial = SearchRequest {
            index: "idx".into(),
            timeout_ms: 300,
            partial: true,
            ..SearchRequest::default()
        };
        assert_eq!(
            text(&search(&partial).unwrap().0).join(" "),
            "FT.SEARCH idx * LIMIT 0 10 TIMEOUT 300 SOMESHARDS DIALECT 2"
        );
        let no_field = SearchRequest {
            index: "idx".into(),
            vector: Some(search_request::Vector::Raw(vec![0; 4])),
            ..SearchRequest::default()
        };
        assert_eq!(search(&no_field), Err(RequestError::NoVectorField));
    }
}
