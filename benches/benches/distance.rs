//! Distance kernels at the dimensions embeddings come in: simsimd against the scalar
//! reference, per metric.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shoal_index::{scalar, Metric};

fn vectors(dim: usize) -> (Vec<f32>, Vec<f32>) {
    let a = (0..dim)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let b = (0..dim)
        .map(|i| ((i * 104_729) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    (a, b)
}

fn kernels(c: &mut Criterion) {
    for metric in [Metric::L2, Metric::Ip, Metric::Cosine] {
        let mut group = c.benchmark_group(format!("distance/{}", metric.name()));
        group
            .warm_up_time(std::time::Duration::from_millis(500))
            .measurement_time(std::time::Duration::from_secs(2));
        for dim in [128usize, 384, 768, 1536] {
            let (a, b) = vectors(dim);
            let (mut pa, mut pb) = (Vec::new(), Vec::new());
            metric.prepare(&a, dim, &mut pa).expect("valid vector");
            metric.prepare(&b, dim, &mut pb).expect("valid vector");
            group.throughput(Throughput::Bytes((dim * 8) as u64));
            group.bench_with_input(BenchmarkId::new("simsimd", dim), &dim, |bench, _| {
                bench.iter(|| metric.distance(std::hint::black_box(&pa), std::hint::black_box(&pb)))
            });
            group.bench_with_input(BenchmarkId::new("scalar", dim), &dim, |bench, _| {
                bench.iter(|| {
                    let (x, y) = (std::hint::black_box(&a), std::hint::black_box(&b));
                    match metric {
                        Metric::L2 => scalar::l2sq(x, y),
                        Metric::Ip => scalar::dot(x, y),
                        Metric::Cosine => scalar::cosine_distance(x, y),
                    }
                })
            });
        }
        group.finish();
    }
}

/// What every query pays before the first distance: validation, and for COSINE the
/// normalization into a unit vector.
fn prepare(c: &mut Criterion) {
    let mut group = c.benchmark_group("prepare");
    group
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    for metric in [Metric::L2, Metric::Cosine] {
        for dim in [128usize, 1536] {
            let (a, _) = vectors(dim);
            let mut out = Vec::with_capacity(dim);
            group.bench_with_input(BenchmarkId::new(metric.name(), dim), &dim, |bench, _| {
                bench.iter(|| metric.prepare(std::hint::black_box(&a), dim, &mut out))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, kernels, prepare);
criterion_main!(benches);
