//! FT.INFO and the search sections of INFO.

use shoal_query::{FieldKind, KeyType, VectorAlgorithm};

use crate::reply::{format_g12, Reply};
use crate::search_index::{FieldIndex, SearchIndex};
use crate::Engine;

/// FT.INFO: a map (flattened to the reference's key/value array on RESP2).
pub fn ft_info(index: &SearchIndex, _resp3: bool) -> Reply {
    let schema = &index.schema;
    let definition = Reply::map([
        ("key_type", Reply::bulk(schema.key_type.name())),
        (
            "prefixes",
            Reply::Array(
                schema
                    .prefixes
                    .iter()
                    .map(|p| Reply::Bulk(p.clone()))
                    .collect(),
            ),
        ),
        ("default_score", Reply::bulk(format_g12(schema.score))),
    ]);
    let attributes = schema
        .fields
        .iter()
        .zip(&index.fields)
        .map(|(field, field_index)| {
            let mut pairs = vec![
                ("identifier", Reply::bulk(field.identifier.clone())),
                ("attribute", Reply::bulk(field.alias.clone())),
                ("type", Reply::bulk(field.kind.name())),
            ];
            match (&field.kind, field_index) {
                (FieldKind::Tag(options), _) => {
                    pairs.push(("SEPARATOR", Reply::Bulk(vec![options.separator])));
                    if options.case_sensitive {
                        pairs.push(("CASESENSITIVE", Reply::Int(1)));
                    }
                }
                (FieldKind::Vector(options), FieldIndex::Vector(vectors)) => {
                    let algorithm = match &options.algorithm {
                        VectorAlgorithm::Hnsw(h) => Reply::map([
                            ("name", Reply::bulk("HNSW")),
                            ("m", Reply::Int(h.m as i64)),
                            ("ef_construction", Reply::Int(h.ef_construction as i64)),
                            ("ef_runtime", Reply::Int(h.ef_runtime as i64)),
                        ]),
                        VectorAlgorithm::Flat(f) => Reply::map([
                            ("name", Reply::bulk("FLAT")),
                            ("block_size", Reply::Int(f.block_size as i64)),
                        ]),
                    };
                    pairs.push((
                        "index",
                        Reply::map([
                            (
                                "capacity",
                                Reply::Int(vectors.capacity().max(options.initial_cap) as i64),
                            ),
                            ("dimensions", Reply::Int(options.dim as i64)),
                            ("distance_metric", Reply::bulk(options.metric.name())),
                            ("size", Reply::Int(vectors.len() as i64)),
                            ("data_type", Reply::bulk("FLOAT32")),
                            ("algorithm", algorithm),
                        ]),
                    ));
                }
                (FieldKind::Numeric | FieldKind::Text | FieldKind::Vector(_), _) => {}
            }
            Reply::map(pairs)
        })
        .collect();
    let backfilling = index.backfill.in_progress();
    Reply::map([
        ("index_name", Reply::bulk(schema.name.clone())),
        ("index_options", Reply::Array(Vec::new())),
        ("index_definition", definition),
        ("attributes", Reply::Array(attributes)),
        ("num_docs", Reply::Int(index.docs.len() as i64)),
        ("num_records", Reply::Int(index.records() as i64)),
        ("hash_indexing_failures", Reply::Int(index.failures as i64)),
        ("backfill_in_progress", Reply::Int(i64::from(backfilling))),
        (
            "backfill_complete_percent",
            Reply::bulk(format_g12(index.backfill.percent())),
        ),
        ("mutation_queue_size", Reply::Int(0)),
        ("recent_mutations_queue_delay", Reply::bulk("0 sec")),
        ("state", Reply::bulk(index.state().name())),
    ])
}

/// Bytes in human form, as Redis prints `used_memory_human`.
pub fn human_bytes(bytes: usize) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}G", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2}M", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

impl Engine {
    /// Bytes held by search indexes.
    pub fn search_memory(&self) -> usize {
        self.indexes.values().map(SearchIndex::memory).sum()
    }

    /// Rough bytes held by keys and values.
    pub fn keyspace_memory(&self) -> usize {
        self.keyspace.approximate_size()
    }

    /// The `search_*` sections of INFO, in INFO's text form.
    pub fn info_search(&self, active_queries: u64) -> String {
        info_search(&[self], active_queries)
    }

    /// INFO keyspace's line.
    pub fn info_keyspace(&self, now: u64) -> String {
        info_keyspace(&[self], now)
    }
}

/// INFO keyspace's line over the replicas of a node (each holds its groups' keys).
pub fn info_keyspace(engines: &[&Engine], now: u64) -> String {
    let keys: usize = engines.iter().map(|e| e.keyspace.len(now)).sum();
    let expires: usize = engines
        .iter()
        .map(|e| {
            e.keyspace
                .iter(now)
                .filter(|(_, entry)| entry.expires_at.is_some())
                .count()
        })
        .sum();
    if keys == 0 {
        String::new()
    } else {
        format!("db0:keys={keys},expires={expires},avg_ttl=0\r\n")
    }
}

/// The `search_*` sections of INFO over the replicas of a node: counts add up over
/// the shard groups it hosts; an index defined on every group counts once.
pub fn info_search(engines: &[&Engine], active_queries: u64) -> String {
    let all = || engines.iter().flat_map(|e| e.indexes.iter());
    let memory: usize = engines.iter().map(|e| e.search_memory()).sum();
    let distinct = |f: &dyn Fn(&SearchIndex) -> bool| {
        all()
            .filter(|(_, i)| f(i))
            .map(|(name, _)| name)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let count = distinct;
    let vector_indexes = count(&|i| {
        i.schema
            .fields
            .iter()
            .any(|f| matches!(f.kind, FieldKind::Vector(_)))
    });
    let hash_indexes = count(&|i| i.schema.key_type == KeyType::Hash);
    let json_indexes = count(&|i| i.schema.key_type == KeyType::Json);
    let backfilling: Vec<&SearchIndex> = all()
        .map(|(_, i)| i)
        .filter(|i| i.backfill.in_progress())
        .collect();
    let progress = backfilling
        .iter()
        .map(|i| i.backfill.percent())
        .fold(1.0f64, f64::min);
    let docs: usize = all().map(|(_, i)| i.docs.len()).sum();
    let vectors: usize = all().map(|(_, i)| i.vectors()).sum();
    let mut out = String::new();
    out.push_str("# search_memory\r\n");
    out.push_str(&format!("search_used_memory_bytes:{memory}\r\n"));
    out.push_str(&format!(
        "search_used_memory_human:{}\r\n",
        human_bytes(memory)
    ));
    out.push_str("\r\n# search_index_stats\r\n");
    out.push_str(&format!(
        "search_number_of_indexes:{}\r\n",
        distinct(&|_| true)
    ));
    out.push_str(&format!("search_num_vector_indexes:{vector_indexes}\r\n"));
    out.push_str(&format!("search_num_hash_indexes:{hash_indexes}\r\n"));
    out.push_str(&format!("search_num_json_indexes:{json_indexes}\r\n"));
    out.push_str(&format!("search_total_indexed_keys:{docs}\r\n"));
    out.push_str(&format!("search_total_indexed_vector:{vectors}\r\n"));
    out.push_str(&format!("search_total_index_size:{memory}\r\n"));
    out.push_str("search_max_index_lag_ms:0\r\n");
    out.push_str("\r\n# search_ingestion\r\n");
    let status = if backfilling.is_empty() {
        "NO_ACTIVITY"
    } else {
        "IN_PROGRESS"
    };
    out.push_str(&format!("search_background_indexing_status:{status}\r\n"));
    out.push_str("search_ingestion_paused:0\r\n");
    out.push_str("\r\n# search_backfill\r\n");
    out.push_str(&format!(
        "search_num_active_backfills:{}\r\n",
        backfilling.len()
    ));
    out.push_str(&format!(
        "search_current_backfill_progress_percentage:{}\r\n",
        format_g12((progress * 100.0).round())
    ));
    out.push_str("\r\n# search_query\r\n");
    out.push_str(&format!("search_num_active_queries:{active_queries}\r\n"));
    out
}
