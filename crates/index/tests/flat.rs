//! FLAT is exact: it must agree with the scalar reference on every metric, with and
//! without filters, one query at a time and batched.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

mod common;

use common::*;
use proptest::prelude::*;
use shoal_index::{build, FlatIndex, Metric, Predicate, RoaringBitmap, VectorIndex};

const METRICS: [Metric; 3] = [Metric::L2, Metric::Ip, Metric::Cosine];

fn assert_same(found: &[shoal_index::Neighbor], truth: &[(u32, f64)]) {
    assert_eq!(found.len(), truth.len());
    for (f, t) in found.iter().zip(truth) {
        let tol = 1e-3 * (1.0 + t.1.abs());
        assert!((f64::from(f.distance) - t.1).abs() <= tol, "{f:?} vs {t:?}");
        // Ids may differ only where distances tie within rounding.
        if f.id != t.0 {
            let d_f = truth.iter().find(|x| x.0 == f.id).map(|x| x.1);
            assert!(
                d_f.is_some_and(|d| (d - t.1).abs() <= tol),
                "{f:?} vs {t:?}"
            );
        }
    }
}

#[test]
fn flat_matches_scalar_reference() {
    let data = clustered(2_000, 48, 20, 1);
    let queries = clustered(20, 48, 20, 2);
    for metric in METRICS {
        let index = build(&flat_config(48, metric, 100)).unwrap();
        fill(index.as_ref(), &data);
        for q in &queries {
            let found = index.search(q, 10, None, None).unwrap();
            assert_same(&found, &brute_force(&data, q, 10, metric, None));
        }
    }
}

#[test]
fn batched_search_equals_single_queries() {
    let data = clustered(3_000, 32, 10, 3);
    let queries = clustered(300, 32, 10, 4);
    let flat_queries: Vec<f32> = queries.iter().flatten().copied().collect();
    for metric in METRICS {
        let index = FlatIndex::new(32, metric, 3_000).unwrap();
        fill(&index, &data);
        index.remove(5).unwrap();
        let filter: RoaringBitmap = (0..3_000u32).filter(|i| i % 3 != 0).collect();
        for f in [None, Some(&filter as &dyn shoal_index::IdFilter)] {
            let batch = index.search_batch(&flat_queries, 7, f, 2).unwrap();
            assert_eq!(batch.len(), queries.len());
            for (q, got) in queries.iter().zip(&batch) {
                let single = index.search(q, 7, None, f).unwrap();
                let truth: Vec<(u32, f64)> = single
                    .iter()
                    .map(|n| (n.id, f64::from(n.distance)))
                    .collect();
                assert_same(got, &truth);
                assert!(got.iter().all(|n| n.id != 5));
            }
        }
    }
}

#[test]
fn range_search_is_exact() {
    let data = clustered(1_500, 16, 8, 5);
    let index = build(&flat_config(16, Metric::L2, 0)).unwrap();
    fill(index.as_ref(), &data);
    let q = &data[17];
    let radius = 40.0;
    let hits = index.range_search(q, radius, None, None).unwrap();
    let truth: Vec<u32> = brute_force(&data, q, data.len(), Metric::L2, None)
        .into_iter()
        .filter(|t| t.1 <= f64::from(radius))
        .map(|t| t.0)
        .collect();
    let mut got: Vec<u32> = hits.iter().map(|n| n.id).collect();
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
    got.sort_unstable();
    let mut want = truth.clone();
    want.sort_unstable();
    assert!(!want.is_empty());
    assert_eq!(got, want);
}

#[test]
fn removed_memory_is_reused() {
    let data = clustered(5_000, 8, 4, 6);
    let index = FlatIndex::new(8, Metric::L2, 5_000).unwrap();
    fill(&index, &data);
    let before = index.memory_usage();
    for round in 0..3 {
        for i in 0..1_000u32 {
            index.remove(i).unwrap();
        }
        for i in 0..1_000u32 {
            index
                .add(i, &data[(i as usize + round + 1) % data.len()])
                .unwrap();
        }
    }
    assert_eq!(index.len(), 5_000);
    assert!(
        index.memory_usage() <= before + before / 2,
        "slots were not reused"
    );
    assert_eq!(
        index.capacity(),
        5_000,
        "the index grew instead of reusing slots"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Filtered FLAT equals brute force over the filtered set, for bitmaps (including
    /// the id-lookup path) and predicates.
    #[test]
    fn filtered_flat_equals_brute_force(
        seed in 0u64..1_000,
        modulus in 1u32..60,
        k in 1usize..20,
        metric_pick in 0usize..3,
    ) {
        let metric = METRICS[metric_pick];
        let data = clustered(600, 12, 6, seed);
        let index = build(&flat_config(12, metric, 64)).unwrap();
        fill(index.as_ref(), &data);
        let q = &clustered(1, 12, 6, seed + 7)[0];
        let bitmap: RoaringBitmap = (0..600u32).filter(|i| i % modulus == 0).collect();
        let pred = Predicate(|i: u32| i.is_multiple_of(modulus));
        let truth = brute_force(&data, q, k, metric, Some(&bitmap));
        for f in [&bitmap as &dyn shoal_index::IdFilter, &pred] {
            let found = index.search(q, k, None, Some(f)).unwrap();
            prop_assert_eq!(found.len(), truth.len());
            for (a, b) in found.iter().zip(&truth) {
                prop_assert!((f64::from(a.distance) - b.1).abs() <= 1e-3 * (1.0 + b.1.abs()));
                prop_assert!(bitmap.contains(a.id));
            }
        }
    }
}
