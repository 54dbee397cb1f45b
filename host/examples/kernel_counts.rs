//! A fixed, deterministic workload for instruction counts of the kernel tiers under
//! valgrind's callgrind (whose counts, unlike timings, do not depend on machine load):
//!
//! ```sh
//! cargo build --release -p saguaro-host --no-default-features --example kernel_counts
//! valgrind --tool=callgrind --toggle-collect='*kernel_counts*measured*' \
//!     target/release/examples/kernel_counts avx2 gemm_q8_t1
//! ```
//!
//! Where valgrind lacks the instructions (AVX-512, AVX-VNNI), count user-space instructions
//! with `perf stat -e instructions:u` instead, once with 0 repetitions and once with N, and
//! take the difference.
//!
//! Arguments: a tier name (`saguaro info --cpu`), one case (or `all`, the default) and the
//! number of repetitions (default 4):
//! `gemm_q8_t1`, `gemm_q4_t1`, `gemm_q8_t16`, `gemm_q4_t16`, `matmul_f32_t1`, `matmul_f16_t1`,
//! `matmul_bf16_t1`, `matmul_f32_t8`, `quantize_row`, `dot_f32`. Only the calls inside
//! `measured` are counted with the toggle above, so setup and data generation stay out.

use std::hint::black_box;

use saguaro_engine::kernels::{Kernels, QuantActs, QuantMatrix};
use saguaro_engine::quant::{QuantKind, QuantShape};

const CASES: [&str; 10] = [
    "gemm_q8_t1",
    "gemm_q4_t1",
    "gemm_q8_t16",
    "gemm_q4_t16",
    "matmul_f32_t1",
    "matmul_f16_t1",
    "matmul_bf16_t1",
    "matmul_f32_t8",
    "quantize_row",
    "dot_f32",
];

/// Deterministic pseudo-random floats in [-2, 2).
fn floats(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as u8 as f32 - 127.5) / 64.0
        })
        .collect()
}

/// The work being counted: `reps` calls of one kernel.
#[inline(never)]
fn measured(reps: usize, mut call: impl FnMut()) {
    for _ in 0..reps {
        call();
    }
}

fn run(k: &Kernels, case: &str, reps: usize) {
    let (rows, cols) = (512, 1024);
    match case {
        "gemm_q8_t1" | "gemm_q4_t1" | "gemm_q8_t16" | "gemm_q4_t16" => {
            let kind = if case.contains("q8") { QuantKind::Q8 } else { QuantKind::Q4 };
            let tokens = if case.ends_with("t1") { 1 } else { 16 };
            let shape = QuantShape::new(rows, cols).unwrap();
            let data: Vec<u8> = floats(shape.data_bytes(kind), 1).iter().map(|v| (v * 60.0) as i8 as u8).collect();
            let scales: Vec<u8> = floats(shape.scale_bytes() / 2, 2)
                .iter()
                .flat_map(|&v| half::f16::from_f32(0.01 + v * 1e-3).to_le_bytes())
                .collect();
            let w = QuantMatrix { kind, shape, data: &data, scales: &scales };
            let mut acts = QuantActs::default();
            acts.quantize(&Kernels::scalar(), &floats(tokens * cols, 3), cols);
            let mut out = vec![0.0f32; tokens * shape.rows_padded];
            measured(reps, || (k.gemm(kind))(black_box(&w), black_box(&acts), 0..shape.row_blocks(), &mut out));
            black_box(&out);
        }
        "matmul_f32_t1" | "matmul_f16_t1" | "matmul_bf16_t1" | "matmul_f32_t8" => {
            let tokens = if case.ends_with("t8") { 8 } else { 1 };
            let x = floats(tokens * cols, 4);
            let w32 = floats(rows * cols, 5);
            let mut out = vec![0.0f32; tokens * rows];
            if case.starts_with("matmul_f32") {
                measured(reps, || (k.matmul_f32)(black_box(&x), black_box(&w32), cols, &mut out));
            } else if case.starts_with("matmul_f16") {
                let w: Vec<u8> = w32.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
                measured(reps, || (k.matmul_f16)(black_box(&x), black_box(&w), cols, &mut out));
            } else {
                let w: Vec<u8> = w32.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
                measured(reps, || (k.matmul_bf16)(black_box(&x), black_box(&w), cols, &mut out));
            }
            black_box(&out);
        }
        "quantize_row" => {
            let x = floats(64 * cols, 6);
            let (mut q, mut s) = (vec![0i8; cols], vec![0.0f32; cols / 32]);
            measured(reps, || {
                for row in x.chunks(cols) {
                    (k.quantize_row)(black_box(row), &mut q, &mut s)
                }
            });
            black_box((&q, &s));
        }
        "dot_f32" => {
            let (a, b) = (floats(1000, 7), floats(1000, 8));
            measured(64 * reps, || {
                black_box((k.dot_f32)(black_box(&a), black_box(&b)));
            });
        }
        _ => panic!("unknown case `{case}` (one of {CASES:?})"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tier = args.first().map(String::as_str).unwrap_or("scalar");
    let k = (saguaro_host::kernels::tier_by_name(tier).expect("tier").kernels)();
    let reps = args.get(2).map(|r| r.parse().expect("repetitions")).unwrap_or(4);
    match args.get(1).map(String::as_str) {
        Some("all") | None => CASES.iter().for_each(|c| run(&k, c, reps)),
        Some(case) => run(&k, case, reps),
    }
}
