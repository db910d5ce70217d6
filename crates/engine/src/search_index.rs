//! One search index: its schema, its documents and one index per field, kept exact as
//! keys change.
//!
//! [`SearchIndex::on_change`] is the only way documents enter or leave. It is called with
//! the value before and after every mutation of a covered key and touches only the fields
//! whose raw value changed, so an `HSET` of a tag does not re-insert the vector.

use std::collections::VecDeque;

use shoal_index::{IndexConfig, VectorIndex};
use shoal_query::{DistanceMetric, FieldKind, IndexSchema, KeyType, VectorAlgorithm};

use crate::docs::DocTable;
use crate::error::{EngineError, Result};
use crate::fields::{raw_field, Raw};
use crate::keyspace::{hash_key, Keyspace, Value};
use crate::numeric::NumericIndex;
use crate::tags::TagIndex;

/// The index kept for one schema field.
#[derive(Debug)]
pub enum FieldIndex {
    Numeric(NumericIndex),
    Tag(TagIndex),
    /// TEXT is stored in the document and matched there; nothing is kept here.
    Text,
    Vector(Box<dyn VectorIndex>),
}

/// Backfill over the keys that existed when the index was created.
#[derive(Debug, Default)]
pub struct Backfill {
    pub(crate) pending: VecDeque<Vec<u8>>,
    pub total: usize,
    pub done: usize,
}

impl Backfill {
    pub fn in_progress(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.done as f64 / self.total as f64
        }
    }
}

/// The index lifecycle FT.INFO reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexState {
    Backfilling,
    Ready,
}

impl IndexState {
    pub fn name(self) -> &'static str {
        match self {
            IndexState::Backfilling => "backfill_in_progress",
            IndexState::Ready => "ready",
        }
    }
}

#[derive(Debug)]
pub struct SearchIndex {
    pub schema: IndexSchema,
    /// The FT.CREATE arguments the index came from; snapshots store these.
    pub definition: Vec<Vec<u8>>,
    /// Which of the cluster map's definitions of the name this is (0: a plain
    /// FT.CREATE, outside a cluster or from before generations); see
    /// `commands::ft::create_with_generation`.
    pub generation: u64,
    pub docs: DocTable,
    pub fields: Vec<FieldIndex>,
    /// Field values that could not be indexed (wrong vector size, not a number, ...).
    pub failures: u64,
    pub backfill: Backfill,
    /// Vector changes not yet applied to the vector indexes (see [`Self::flush_vectors`]).
    pending: Vec<PendingVector>,
}

/// One deferred change of one document's vector in one field: set it, or remove it.
#[derive(Debug)]
struct PendingVector {
    field: usize,
    doc: u32,
    vector: Option<Vec<f32>>,
}

/// Fewer additions than this are made on the calling thread: starting threads costs
/// more than it saves.
const PARALLEL_MIN: usize = 64;

impl SearchIndex {
    /// Creates the index and, unless SKIPINITIALSCAN, queues the covered keys that exist
    /// now for backfill. The generation is an argument, not a field set afterwards: an
    /// index rebuilt (FLUSHALL, a snapshot load) that lost it would no longer match the
    /// cluster map, and a router's FT.DROPINDEX would pass it by.
    pub fn create(
        schema: IndexSchema,
        definition: Vec<Vec<u8>>,
        generation: u64,
        keyspace: &Keyspace,
        now: u64,
    ) -> Result<Self> {
        let mut fields = Vec::with_capacity(schema.fields.len());
        for field in &schema.fields {
            fields.push(match &field.kind {
                FieldKind::Numeric => FieldIndex::Numeric(NumericIndex::default()),
                FieldKind::Tag(options) => FieldIndex::Tag(TagIndex::new(*options)),
                FieldKind::Text => FieldIndex::Text,
                FieldKind::Vector(options) => {
                    let metric = match options.metric {
                        DistanceMetric::L2 => shoal_index::Metric::L2,
                        DistanceMetric::Ip => shoal_index::Metric::Ip,
                        DistanceMetric::Cosine => shoal_index::Metric::Cosine,
                    };
                    let algorithm = match &options.algorithm {
                        VectorAlgorithm::Flat(_) => shoal_index::Algorithm::Flat,
                        VectorAlgorithm::Hnsw(h) => {
                            shoal_index::Algorithm::Hnsw(shoal_index::HnswParams {
                                m: h.m,
                                ef_construction: h.ef_construction,
                                ef_runtime: h.ef_runtime,
                                epsilon: h.epsilon.unwrap_or(shoal_index::DEFAULT_EPSILON),
                                // Every replica derives the same seed from the names.
                                seed: hash_key(
                                    format!("{}\0{}", schema.name, field.alias).as_bytes(),
                                ),
                                ..shoal_index::HnswParams::default()
                            })
                        }
                    };
                    let config = IndexConfig {
                        dim: options.dim,
                        metric,
                        // INITIAL_CAP as asked: untouched capacity costs address space,
                        // not memory (shoal-index maps it lazily), and a walk on an index
                        // that outgrew its first chunk is 12-14% slower than on the same
                        // graph in one (`shoal-bench engine-search`, docs/benchmarks.md).
                        initial_cap: options.initial_cap,
                        algorithm,
                    };
                    FieldIndex::Vector(
                        shoal_index::build(&config)
                            .map_err(|e| EngineError::Index(e.to_string()))?,
                    )
                }
            });
        }
        let mut backfill = Backfill::default();
        if !schema.skip_initial_scan {
            backfill.pending = keyspace
                .iter(now)
                .filter(|(key, entry)| {
                    schema.covers(key) && type_matches(schema.key_type, &entry.value)
                })
                .map(|(key, _)| key.to_vec())
                .collect();
            backfill.total = backfill.pending.len();
        }
        Ok(SearchIndex {
            schema,
            definition,
            generation,
            docs: DocTable::default(),
            fields,
            failures: 0,
            backfill,
            pending: Vec::new(),
        })
    }

    pub fn state(&self) -> IndexState {
        if self.backfill.in_progress() {
            IndexState::Backfilling
        } else {
            IndexState::Ready
        }
    }

    /// Indexes up to `budget` queued keys; returns how many were taken off the queue.
    pub fn backfill_step(&mut self, keyspace: &Keyspace, budget: usize) -> usize {
        let mut taken = 0;
        while taken < budget {
            let Some(key) = self.backfill.pending.pop_front() else {
                break;
            };
            taken += 1;
            self.backfill.done += 1;
            // A key written since creation was indexed by that write; one removed since
            // is gone. Either way there is nothing left to do for it.
            if self.docs.id(&key).is_some() {
                continue;
            }
            // Present entries are indexed whatever their TTL: expiry removes them through
            // a write, so the outcome does not depend on this replica's clock.
            if let Some(entry) = keyspace.get(&key, 0) {
                self.on_change(&key, None, Some(&entry.value));
            }
        }
        taken
    }

    /// Brings the index up to date with a change of `key` from `old` to `new` (`None`:
    /// absent). Callers pass only keys the schema's prefixes cover.
    pub fn on_change(&mut self, key: &[u8], old: Option<&Value>, new: Option<&Value>) {
        let new = new.filter(|v| type_matches(self.schema.key_type, v));
        let Some(new) = new else {
            self.remove_doc(key);
            return;
        };
        let (doc, fresh) = self.docs.assign(key);
        let old = if fresh {
            None
        } else {
            old.filter(|v| type_matches(self.schema.key_type, v))
        };
        for (position, field) in self.schema.fields.iter().enumerate() {
            let after = raw_field(new, field);
            if !fresh {
                let before = old.and_then(|o| raw_field(o, field));
                if before == after {
                    continue;
                }
            }
            if let FieldKind::Vector(options) = &field.kind {
                let vector = match after {
                    None => None,
                    Some(raw) => {
                        let parsed = raw.as_vector(options.dim);
                        if parsed.is_none() {
                            self.failures += 1;
                        }
                        parsed
                    }
                };
                self.pending.push(PendingVector {
                    field: position,
                    doc,
                    vector,
                });
                continue;
            }
            let ok = update_field(&mut self.fields[position], &field.kind, doc, after);
            if !ok {
                self.failures += 1;
            }
        }
    }

    /// Re-derives the tag and numeric entries of a document restored from a snapshot
    /// (its vectors came back with the vector index).
    pub(crate) fn reload_doc(&mut self, doc: u32, value: &Value) {
        for (position, field) in self.schema.fields.iter().enumerate() {
            if matches!(field.kind, FieldKind::Vector(_)) {
                continue;
            }
            let raw = raw_field(value, field);
            update_field(&mut self.fields[position], &field.kind, doc, raw);
        }
    }

    fn remove_doc(&mut self, key: &[u8]) {
        let Some(doc) = self.docs.release(key) else {
            return;
        };
        for (position, field) in self.fields.iter_mut().enumerate() {
            match field {
                FieldIndex::Numeric(n) => n.remove(doc),
                FieldIndex::Tag(t) => t.remove(doc),
                FieldIndex::Text => {}
                FieldIndex::Vector(_) => self.pending.push(PendingVector {
                    field: position,
                    doc,
                    vector: None,
                }),
            }
        }
    }

    /// Applies the deferred vector changes: the last change of each (field, document)
    /// wins, removals first, then additions — on several threads for a large batch.
    ///
    /// Deferring lets a pipeline of HSETs insert its vectors in parallel while the
    /// keyspace, tags and numbers stay strictly sequential. Nothing reads in between:
    /// the engine flushes before any read and before `apply` returns. The graph that
    /// results may differ between replicas (insertion order); its contents do not.
    // #[PerformanceCriticalPath]: every vector write ends here.
    pub(crate) fn flush_vectors(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut last: std::collections::HashMap<(usize, u32), usize> =
            std::collections::HashMap::with_capacity(pending.len());
        for (i, p) in pending.iter().enumerate() {
            last.insert((p.field, p.doc), i);
        }
        let mut keep: Vec<usize> = last.into_values().collect();
        keep.sort_unstable();
        let mut additions: Vec<&PendingVector> = Vec::with_capacity(keep.len());
        for i in keep {
            let p = &pending[i];
            match (&self.fields[p.field], &p.vector) {
                (FieldIndex::Vector(v), None) => {
                    // Absent when its value never indexed; nothing else can fail here.
                    let _ = v.remove(p.doc);
                }
                (FieldIndex::Vector(_), Some(_)) => additions.push(p),
                (FieldIndex::Numeric(_) | FieldIndex::Tag(_) | FieldIndex::Text, _) => {}
            }
        }
        // Neighbours written one after another (a document's chunks, a time series) are
        // often near each other; two threads inserting near neighbours at once may each
        // miss the other and one can end up unreachable. A fixed pseudo-random order
        // makes concurrent insertions unlikely to be neighbours.
        additions.sort_by_key(|p| hash_key(&p.doc.to_le_bytes()));
        let failures = std::sync::atomic::AtomicU64::new(0);
        let fields = &self.fields;
        let add = |p: &PendingVector| {
            let (FieldIndex::Vector(v), Some(vector)) = (&fields[p.field], &p.vector) else {
                return;
            };
            if v.replace(p.doc, vector).is_err() {
                // NaN components or a zero vector under COSINE: the field is absent.
                let _ = v.remove(p.doc);
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(8);
        if additions.len() < PARALLEL_MIN || threads == 1 {
            additions.iter().for_each(|p| add(p));
        } else {
            let next = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(p) = additions.get(i) else {
                            break;
                        };
                        add(p);
                    });
                }
            });
        }
        self.failures += failures.into_inner();
    }

    /// Vectors held by the vector fields.
    pub fn vectors(&self) -> usize {
        self.fields
            .iter()
            .map(|f| match f {
                FieldIndex::Vector(v) => v.len(),
                FieldIndex::Numeric(_) | FieldIndex::Tag(_) | FieldIndex::Text => 0,
            })
            .sum()
    }

    /// Bytes the index holds, as FT.INFO and INFO SEARCH report it.
    pub fn memory(&self) -> usize {
        self.docs.bytes()
            + self
                .fields
                .iter()
                .map(|f| match f {
                    FieldIndex::Numeric(n) => n.bytes(),
                    FieldIndex::Tag(t) => t.bytes(),
                    FieldIndex::Text => 0,
                    FieldIndex::Vector(v) => v.memory_usage(),
                })
                .sum::<usize>()
    }

    /// Entries across the non-vector field indexes (FT.INFO `num_records`).
    pub fn records(&self) -> usize {
        self.fields
            .iter()
            .map(|f| match f {
                FieldIndex::Numeric(n) => n.len(),
                FieldIndex::Tag(_) | FieldIndex::Text => self.docs.len(),
                FieldIndex::Vector(v) => v.len(),
            })
            .sum()
    }
}

/// Whether a value is of the kind the index covers.
pub fn type_matches(key_type: KeyType, value: &Value) -> bool {
    matches!(
        (key_type, value),
        (KeyType::Hash, Value::Hash(_)) | (KeyType::Json, Value::Json(_))
    )
}

/// Sets one field of one document; false when the value could not be indexed (the
/// field is then absent for that document).
fn update_field(index: &mut FieldIndex, kind: &FieldKind, doc: u32, raw: Option<Raw<'_>>) -> bool {
    match (index, kind) {
        (FieldIndex::Numeric(n), _) => {
            n.remove(doc);
            match raw.map(|r| r.as_number()) {
                None => true,
                Some(Some(v)) => {
                    n.insert(doc, v);
                    true
                }
                Some(None) => false,
            }
        }
        (FieldIndex::Tag(t), _) => {
            t.remove(doc);
            match raw.map(|r| r.as_tags(|s| t.split(s))) {
                None => true,
                Some(Some(tags)) => {
                    t.insert(doc, tags);
                    true
                }
                Some(None) => false,
            }
        }
        (FieldIndex::Text, _) => true,
        // Vectors go through `pending` and `flush_vectors`.
        (FieldIndex::Vector(_), _) => true,
    }
}
