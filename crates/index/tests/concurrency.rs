//! Readers and writers at once. Every vector is a pure function of its id, so a reader can
//! check each answer it gets: the distance it reports must be the distance to that id's
//! vector. A torn read, or a slot reused while a search still held it, would break that.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use shoal_index::{build, FlatIndex, IndexError, Metric, Predicate, RoaringBitmap, VectorIndex};

const DIM: usize = 16;
const IDS: u32 = 3_000;

fn vector_of(id: u32) -> Vec<f32> {
    (0..DIM)
        .map(|d| {
            let x = (id as u64 * 2_654_435_761 + d as u64 * 40_503) % 10_007;
            x as f32 / 1_000.0 + (id % 17) as f32
        })
        .collect()
}

fn check_answer(metric: Metric, q: &[f32], found: &[shoal_index::Neighbor], k: usize) {
    assert!(found.len() <= k);
    assert!(
        found.windows(2).all(|w| w[0].distance <= w[1].distance),
        "unsorted"
    );
    let mut ids: Vec<u32> = found.iter().map(|n| n.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), found.len(), "an id twice in one answer");
    for n in found {
        assert!(n.id < IDS);
        let want = metric.reference_distance(q, &vector_of(n.id));
        let tol = 1e-3 * (1.0 + want.abs());
        assert!(
            (f64::from(n.distance) - want).abs() <= tol,
            "id {} reported {} but is {want}",
            n.id,
            n.distance
        );
    }
}

fn stress(index: &dyn VectorIndex, flat: Option<&FlatIndex>) {
    let metric = index.metric();
    for id in 0..IDS / 2 {
        index.add(id, &vector_of(id)).unwrap();
    }
    let writers_left = AtomicUsize::new(2);
    let searches = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..2u32 {
            let writers_left = &writers_left;
            s.spawn(move || {
                // Each writer owns the ids of its parity: add, remove, replace in rounds.
                for round in 0..6u32 {
                    for id in (w..IDS).step_by(2) {
                        let v = vector_of(id);
                        let result = match (round + id / 2) % 3 {
                            0 => index.add(id, &v),
                            1 => index.remove(id),
                            _ => index.replace(id, &v),
                        };
                        match result {
                            Ok(())
                            | Err(IndexError::DuplicateId(_))
                            | Err(IndexError::UnknownId(_)) => {}
                            Err(e) => panic!("writer failed: {e}"),
                        }
                    }
                }
                writers_left.fetch_sub(1, Ordering::SeqCst);
            });
        }
        for r in 0..2u32 {
            let (writers_left, searches) = (&writers_left, &searches);
            s.spawn(move || {
                // Search while the writers run, and at least 200 times each.
                let mut i = r;
                while writers_left.load(Ordering::SeqCst) > 0 || i < r + 400 {
                    let q = vector_of((i * 7_919) % IDS);
                    let odd = Predicate(|id: u32| id % 2 == 1);
                    // Few enough ids that both indexes answer by id lookup (the exact path),
                    // which reads slots that inserts are claiming at the same moment.
                    let sparse: RoaringBitmap = (0..IDS).filter(|id| id % 50 == i % 50).collect();
                    let filter: Option<&dyn shoal_index::IdFilter> = match i % 3 {
                        0 => Some(&odd),
                        1 => Some(&sparse),
                        _ => None,
                    };
                    let found = index.search(&q, 10, Some(32), filter).unwrap();
                    check_answer(metric, &q, &found, 10);
                    if let Some(f) = filter {
                        assert!(found.iter().all(|n| f.allows(n.id)));
                    }
                    let hits = index.range_search(&q, 5.0, None, None).unwrap();
                    assert!(hits.iter().all(|h| h.distance <= 5.0));
                    check_answer(metric, &q, &hits, usize::MAX);
                    if let Some(flat) = flat {
                        let answers = flat.search_batch(&q, 5, None, 2).unwrap();
                        check_answer(metric, &q, &answers[0], 5);
                    }
                    searches.fetch_add(1, Ordering::Relaxed);
                    i += 2;
                }
            });
        }
    });
    assert!(searches.load(Ordering::Relaxed) >= 400);
    // Quiescent: every present id finds itself first.
    let present: Vec<u32> = (0..IDS).filter(|&id| index.contains(id)).collect();
    assert_eq!(present.len(), index.len());
    for &id in present.iter().step_by(37) {
        let found = index.search(&vector_of(id), 1, Some(64), None).unwrap();
        assert!(found[0].distance <= 1e-3, "id {id} lost: {found:?}");
    }
}

#[test]
fn hnsw_readers_and_writers_interleave_safely() {
    stress(
        build(&common::hnsw_config(DIM, Metric::L2, 64))
            .unwrap()
            .as_ref(),
        None,
    );
}

#[test]
fn hnsw_cosine_readers_and_writers_interleave_safely() {
    stress(
        build(&common::hnsw_config(DIM, Metric::Cosine, 64))
            .unwrap()
            .as_ref(),
        None,
    );
}

#[test]
fn flat_readers_and_writers_interleave_safely() {
    let flat = FlatIndex::new(DIM, Metric::L2, 64).unwrap();
    stress(&flat, Some(&flat));
}
