//! Kernel micro-benchmarks: every tier this CPU supports (scalar included) on LFM2-350M
//! shapes.
//!
//! `cargo bench -p saguaro-host --bench kernels -- --warm-up-time 1 --measurement-time 3`
//!
//! - GEMV (decode, one token): throughput in bytes of weights (quantized data + f16 scales)
//!   per second, to compare with the machine's memory bandwidth.
//! - GEMM (prefill, 64 tokens): throughput in "elements" = multiply-accumulates per second.
//! - quantize_row: activations per second.
//!
//! A filter picks a subset, e.g. `-- gemv_q8/avx512`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use saguaro_engine::kernels::{Kernels, QuantActs, QuantMatrix};
use saguaro_engine::quant::{QuantKind, QuantShape};

/// The tables of every tier available here, scalar first.
fn tables() -> Vec<Kernels> {
    saguaro_host::kernels::tiers().into_iter().filter(|t| (t.available)()).map(|t| (t.kernels)()).collect()
}

/// Deterministic pseudo-random bytes.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

fn floats(n: usize, seed: u64) -> Vec<f32> {
    bytes(n, seed).iter().map(|&b| (b as f32 - 127.5) / 64.0).collect()
}

/// Random quantized weights: finite f16 scales near 1e-2.
struct Weights {
    kind: QuantKind,
    shape: QuantShape,
    data: Vec<u8>,
    scales: Vec<u8>,
}

impl Weights {
    fn new(kind: QuantKind, rows: usize, cols: usize) -> Self {
        let shape = QuantShape::new(rows, cols).unwrap();
        let data = bytes(shape.data_bytes(kind), rows as u64 ^ cols as u64);
        let scales = bytes(shape.scale_bytes() / 2, 3)
            .iter()
            .flat_map(|&b| half::f16::from_f32(0.01 + b as f32 * 1e-4).to_le_bytes())
            .collect();
        Weights { kind, shape, data, scales }
    }

    fn matrix(&self) -> QuantMatrix<'_> {
        QuantMatrix { kind: self.kind, shape: self.shape, data: &self.data, scales: &self.scales }
    }

    fn bytes(&self) -> u64 {
        (self.data.len() + self.scales.len()) as u64
    }
}

fn acts(tokens: usize, cols: usize) -> QuantActs {
    let mut a = QuantActs::default();
    a.quantize(&Kernels::scalar(), &floats(tokens * cols, 11), cols);
    a
}

/// Bytes of weight copies a "dram" GEMV cycles through: well beyond the L3 cache, so every
/// call streams its weights from memory as decode does on a real model.
const COLD_BYTES: u64 = 192 << 20;

fn bench_gemv(c: &mut Criterion) {
    for kind in [QuantKind::Q8, QuantKind::Q4] {
        let name = match kind {
            QuantKind::Q8 => "gemv_q8",
            QuantKind::Q4 => "gemv_q4",
        };
        let mut group = c.benchmark_group(name);
        group.sampling_mode(SamplingMode::Flat).sample_size(10);
        for (rows, cols) in [(1024, 4608), (4608, 1024), (65536, 1024)] {
            let w = Weights::new(kind, rows, cols);
            let a = acts(1, cols);
            let mut out = vec![0.0f32; w.shape.rows_padded];
            group.throughput(Throughput::Bytes(w.bytes()));
            // Cold: cycle through copies that together exceed the caches.
            let copies: Vec<(Vec<u8>, Vec<u8>)> =
                (0..COLD_BYTES.div_ceil(w.bytes()).max(1)).map(|_| (w.data.clone(), w.scales.clone())).collect();
            let mats: Vec<QuantMatrix> =
                copies.iter().map(|(d, s)| QuantMatrix { kind, shape: w.shape, data: d, scales: s }).collect();
            for k in tables() {
                let mut i = 0;
                group.bench_with_input(BenchmarkId::new(format!("dram/{}", k.tier), format!("{rows}x{cols}")), &k, |b, k| {
                    b.iter(|| {
                        i = (i + 1) % mats.len();
                        (k.gemm(kind))(black_box(&mats[i]), black_box(&a), 0..w.shape.row_blocks(), &mut out)
                    })
                });
            }
            // Hot: the same matrix every call (cache-resident when it fits in L3).
            if w.bytes() < 16 << 20 {
                let m = w.matrix();
                for k in tables() {
                    group.bench_with_input(BenchmarkId::new(format!("l3/{}", k.tier), format!("{rows}x{cols}")), &k, |b, k| {
                        b.iter(|| (k.gemm(kind))(black_box(&m), black_box(&a), 0..w.shape.row_blocks(), &mut out))
                    });
                }
            }
        }
        group.finish();
    }
}

fn bench_gemm(c: &mut Criterion) {
    let tokens = 64;
    for kind in [QuantKind::Q8, QuantKind::Q4] {
        let name = match kind {
            QuantKind::Q8 => "gemm_q8_t64",
            QuantKind::Q4 => "gemm_q4_t64",
        };
        let mut group = c.benchmark_group(name);
        group.sampling_mode(SamplingMode::Flat).sample_size(10);
        for (rows, cols) in [(4608, 1024), (1024, 4608)] {
            let w = Weights::new(kind, rows, cols);
            let m = w.matrix();
            let a = acts(tokens, cols);
            let mut out = vec![0.0f32; tokens * w.shape.rows_padded];
            group.throughput(Throughput::Elements((tokens * rows * cols) as u64));
            for k in tables() {
                group.bench_with_input(BenchmarkId::new(k.tier, format!("{rows}x{cols}")), &k, |b, k| {
                    b.iter(|| (k.gemm(kind))(black_box(&m), black_box(&a), 0..w.shape.row_blocks(), &mut out))
                });
            }
        }
        group.finish();
    }
}

fn bench_quantize(c: &mut Criterion) {
    let mut group = c.benchmark_group("quantize_row");
    let cols = 1024;
    let x = floats(cols, 5);
    let (mut q, mut s) = (vec![0i8; cols], vec![0.0f32; cols / 32]);
    group.throughput(Throughput::Elements(cols as u64));
    for k in tables() {
        group.bench_with_input(BenchmarkId::new(k.tier, cols), &k, |b, k| {
            b.iter(|| (k.quantize_row)(black_box(&x), &mut q, &mut s))
        });
    }
    group.finish();
}

fn bench_matmul_f(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemv_f");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    let (rows, cols) = (1024, 1024);
    let x = floats(cols, 1);
    let w32 = floats(rows * cols, 2);
    let w16: Vec<u8> = w32.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    let wb16: Vec<u8> = w32.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
    let mut out = vec![0.0f32; rows];
    for k in tables() {
        group.throughput(Throughput::Bytes((rows * cols * 4) as u64));
        group.bench_with_input(BenchmarkId::new(format!("f32/{}", k.tier), "1024x1024"), &k, |b, k| {
            b.iter(|| (k.matmul_f32)(black_box(&x), black_box(&w32), cols, &mut out))
        });
        group.throughput(Throughput::Bytes((rows * cols * 2) as u64));
        group.bench_with_input(BenchmarkId::new(format!("f16/{}", k.tier), "1024x1024"), &k, |b, k| {
            b.iter(|| (k.matmul_f16)(black_box(&x), black_box(&w16), cols, &mut out))
        });
        group.bench_with_input(BenchmarkId::new(format!("bf16/{}", k.tier), "1024x1024"), &k, |b, k| {
            b.iter(|| (k.matmul_bf16)(black_box(&x), black_box(&wb16), cols, &mut out))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("dot_f32");
    for n in [64usize, 1024] {
        let (a, b2) = (floats(n, 8), floats(n, 9));
        group.throughput(Throughput::Elements(n as u64));
        for k in tables() {
            group.bench_with_input(BenchmarkId::new(k.tier, n), &k, |b, k| b.iter(|| (k.dot_f32)(black_box(&a), black_box(&b2))));
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_gemv, bench_gemm, bench_quantize, bench_matmul_f
}
criterion_main!(benches);
