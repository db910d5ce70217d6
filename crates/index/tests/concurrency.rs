//! Readers and writers at once. Every vector is a pure function of its id, so a reader can
//! check each answer it gets: the distance it reports must be the distance to that id's
//! vector. A torn read, or a slot reused while a search still held it, would break that.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use shoal_index::{build, FlatIndex, IndexError, Metric, Predicate, RoaringBitmap, VectorIndex};

const DIM: usize = 16;
const IDS: u32 = 3_000;

/// A pseudo-random vector in [-5, 5)^DIM that is a pure function of the id, with
/// distinct directions (so COSINE has no near-ties either).
fn vector_of(id: u32) -> Vec<f32> {
    (0..DIM)
        .map(|d| {
            let mut z = (u64::from(id) << 8 | d as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z ^= z >> 29;
            (z % 10_000) as f32 / 1_000.0 - 5.0
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
    let writers_left = AtomicUsize::new(3);
    let searches = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // Writers 0 and 1 own the even and the odd ids; writer 2 races writer 0 on the
        // even ids, so an add and a remove (or two replaces) of one id meet head on.
        for w in 0..3u32 {
            let writers_left = &writers_left;
            s.spawn(move || {
                for round in 0..6u32 {
                    for id in (w % 2..IDS).step_by(2) {
                        let v = vector_of(id);
                        let result = match (round + id / 2 + w) % 3 {
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
                    // COSINE distances are at most 2; keep the range selective there too.
                    let radius = if metric == Metric::Cosine { 0.05 } else { 40.0 };
                    let hits = index.range_search(&q, radius, None, None).unwrap();
                    assert!(hits.iter().all(|h| h.distance <= radius));
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
    // Nothing absent comes back: an add racing a remove of the same id must not leave a
    // live vector behind that the id map has forgotten.
    for probe in (0..IDS).step_by(13) {
        for n in index.search(&vector_of(probe), 20, Some(64), None).unwrap() {
            assert!(index.contains(n.id), "id {} answered but not present", n.id);
        }
    }
    // Every present id is still reachable, as far as an approximate index promises: after
    // thousands of racing adds, removes and repairs, a search for an id's own vector finds
    // it (the same bar as the delete/re-insert recall test: 0.99 of the sampled ids).
    let sample: Vec<u32> = present.iter().copied().step_by(7).collect();
    let found = sample
        .iter()
        .filter(|&&id| {
            let top = index.search(&vector_of(id), 3, Some(64), None).unwrap();
            top.iter().any(|n| n.id == id)
        })
        .count();
    assert!(
        found as f64 >= 0.99 * sample.len() as f64,
        "only {found} of {} present ids were found by their own vectors",
        sample.len()
    );
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
