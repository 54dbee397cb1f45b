//! Every SIMD kernel tier this CPU has, against the scalar definitions, bit for bit: one
//! suite for every architecture (each check runs for each tier of `available_tiers()`: AVX2,
//! AVX-VNNI, AVX-512 natively on x86_64; NEON, DOTPROD, I8MM, SME on aarch64, under qemu for
//! each emulated CPU in `scripts/test-aarch64.sh`). What only one architecture has (tier
//! order and detection, SME vector lengths) is in `x86/tests.rs` and `aarch64/tests.rs`. The
//! wasm simd128 tier has its own tests in the engine crate (`saguaro_engine::kernels`), run by
//! `scripts/test-wasm-kernels.sh`.
//!
//! `SAGUARO_PROPTEST_CASES` sets the number of random cases per property (default 256).

use proptest::prelude::*;
use saguaro_engine::kernels::{Kernels, QuantActs, QuantMatrix};
use saguaro_engine::quant::{QuantKind, QuantShape, GROUP, ROW_BLOCK};

use super::test_support::{available_tiers, bits, cases, GemmCase, Rng};

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn dot_f32_matches_scalar(n in 0usize..300, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let (a, b) = (rng.f32s(n), rng.f32s(n));
        let want = (Kernels::scalar().dot_f32)(&a, &b);
        for k in available_tiers() {
            prop_assert_eq!((k.dot_f32)(&a, &b).to_bits(), want.to_bits(), "tier {}", k.tier);
        }
    }

    #[test]
    fn matmul_f32_matches_scalar(cols in 1usize..300, rows in 1usize..10, tokens in 1usize..7, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let (x, w) = (rng.f32s(tokens * cols), rng.f32s(rows * cols));
        let mut want = vec![0.0; tokens * rows];
        (Kernels::scalar().matmul_f32)(&x, &w, cols, &mut want);
        for k in available_tiers() {
            let mut got = vec![f32::NAN; tokens * rows];
            (k.matmul_f32)(&x, &w, cols, &mut got);
            prop_assert_eq!(bits(&got), bits(&want), "tier {}", k.tier);
        }
    }

    #[test]
    fn matmul_half_matches_scalar(cols in 1usize..300, rows in 1usize..10, tokens in 1usize..7, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let x = rng.f32s(tokens * cols);
        let w16: Vec<u8> = (0..rows * cols).flat_map(|_| rng.f16_bits().to_le_bytes()).collect();
        let wb16: Vec<u8> = (0..rows * cols).flat_map(|_| rng.bf16_bits().to_le_bytes()).collect();
        let sc = Kernels::scalar();
        let (mut want16, mut wantb) = (vec![0.0; tokens * rows], vec![0.0; tokens * rows]);
        (sc.matmul_f16)(&x, &w16, cols, &mut want16);
        (sc.matmul_bf16)(&x, &wb16, cols, &mut wantb);
        for k in available_tiers() {
            let mut got = vec![f32::NAN; tokens * rows];
            (k.matmul_f16)(&x, &w16, cols, &mut got);
            prop_assert_eq!(bits(&got), bits(&want16), "f16 tier {}", k.tier);
            (k.matmul_bf16)(&x, &wb16, cols, &mut got);
            prop_assert_eq!(bits(&got), bits(&wantb), "bf16 tier {}", k.tier);
        }
    }

    #[test]
    fn quantize_row_matches_scalar(n in 0usize..300, extra in 0usize..3, zero_every in 1usize..5, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut x = rng.f32s(n);
        // Some all-zero groups, some groups with tiny or huge values.
        for (g, chunk) in x.chunks_mut(GROUP).enumerate() {
            match (g % zero_every, rng.below(4)) {
                (0, _) => chunk.fill(0.0),
                (_, 0) => chunk.iter_mut().for_each(|v| *v *= 1e-30),
                (_, 1) => chunk.iter_mut().for_each(|v| *v *= 1e30),
                _ => {}
            }
        }
        let groups = n.div_ceil(GROUP) + extra;
        let (mut qw, mut sw) = (vec![7i8; groups * GROUP], vec![7.0f32; groups]);
        (Kernels::scalar().quantize_row)(&x, &mut qw, &mut sw);
        for k in available_tiers() {
            let (mut q, mut s) = (vec![-3i8; groups * GROUP], vec![-3.0f32; groups]);
            (k.quantize_row)(&x, &mut q, &mut s);
            prop_assert_eq!(&q, &qw, "tier {}", k.tier);
            prop_assert_eq!(bits(&s), bits(&sw), "tier {}", k.tier);
        }
    }

    #[test]
    fn quantize_row_ties_match_scalar(n in 0usize..300, extra in 0usize..3, zero_every in 1usize..5, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut x = rng.f32s(n);
        // Some all-zero groups (amax = 0) and some ties (x * inv = k + 0.5).
        for (g, xg) in x.chunks_mut(GROUP).enumerate() {
            if g % zero_every == 1 {
                xg.fill(0.0);
            } else if g % zero_every == 2 && !xg.is_empty() {
                for (i, v) in xg.iter_mut().enumerate() {
                    *v = (i as f32 - 15.5) / 2.0;
                }
                xg[0] = 127.0 / 2.0;
            }
        }
        let groups = n.div_ceil(GROUP) + extra;
        let (mut qw, mut sw) = (vec![0i8; groups * GROUP], vec![0.0f32; groups]);
        (Kernels::scalar().quantize_row)(&x, &mut qw, &mut sw);
        for k in available_tiers() {
            let (mut q, mut s) = (vec![5i8; groups * GROUP], vec![9.0f32; groups]);
            (k.quantize_row)(&x, &mut q, &mut s);
            prop_assert_eq!(&q, &qw, "tier {}", k.tier);
            prop_assert_eq!(bits(&s), bits(&sw), "tier {}", k.tier);
        }
    }

    #[test]
    fn gemm_matches_scalar(
        q4 in any::<bool>(),
        tokens in 1usize..10,
        row_blocks in 1usize..6,
        row_pad in 0usize..16,
        groups in 1usize..9,
        col_pad in 0usize..32,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let kind = if q4 { QuantKind::Q4 } else { QuantKind::Q8 };
        let rows = (row_blocks * ROW_BLOCK - row_pad).max(1);
        let cols = (groups * GROUP - col_pad).max(1);
        let shape = QuantShape::new(rows, cols).unwrap();
        // Any byte pattern: q8 bytes over the whole i8 range (-128 included), q4 nibbles 0..15.
        let data: Vec<u8> = (0..shape.data_bytes(kind)).map(|_| rng.next() as u8).collect();
        let scales: Vec<u8> = (0..shape.scale_bytes() / 2)
            .flat_map(|_| if rng.below(8) == 0 { 0u16 } else { rng.f16_bits() }.to_le_bytes())
            .collect();
        let w = QuantMatrix { kind, shape, data: &data, scales: &scales };
        // Activations with some all-zero groups (scale 0).
        let mut x = rng.f32s(tokens * cols);
        for v in x.iter_mut().enumerate().filter(|(i, _)| (i % cols) / GROUP % 3 == 1 && rng.below(2) == 0).map(|(_, v)| v) {
            *v = 0.0;
        }
        for row in x.chunks_mut(cols) {
            if rng.below(3) == 0 {
                let g = rng.below(shape.groups() as u64) as usize;
                let end = ((g + 1) * GROUP).min(cols);
                row[g * GROUP..end].fill(0.0);
            }
        }
        let s = Kernels::scalar();
        let mut acts = QuantActs::default();
        acts.quantize(&s, &x, cols);
        let nb = shape.row_blocks();
        let start = rng.below(nb as u64) as usize;
        let end = start + 1 + rng.below((nb - start) as u64) as usize;
        for blocks in [0..nb, start..end] {
            let width = blocks.len() * ROW_BLOCK;
            let mut want = vec![0.0; tokens * width];
            (s.gemm(kind))(&w, &acts, blocks.clone(), &mut want);
            for k in available_tiers() {
                let mut got = vec![f32::NAN; tokens * width];
                (k.gemm(kind))(&w, &acts, blocks.clone(), &mut got);
                prop_assert_eq!(bits(&got), bits(&want), "tier {} {:?} blocks {:?}", k.tier, kind, blocks);
            }
        }
    }

    #[test]
    fn gemm_cases_match_scalar(
        q4 in any::<bool>(),
        tokens in 1usize..10,
        row_blocks in 1usize..6,
        groups in 1usize..9,
        sub in any::<(u8, u8)>(),
        seed in any::<u64>(),
    ) {
        let kind = if q4 { QuantKind::Q4 } else { QuantKind::Q8 };
        let case = GemmCase::new(kind, tokens, row_blocks, groups, seed);
        case.check(0..row_blocks);
        // A sub-range of row blocks (as the prefill threads use).
        let b0 = sub.0 as usize % row_blocks;
        let b1 = b0 + 1 + sub.1 as usize % (row_blocks - b0);
        case.check(b0..b1);
    }
}

/// Large shapes (several token chunks, many groups, row-tile remainders) once per tier.
#[test]
fn gemm_large_shapes_match_scalar() {
    let mut rng = Rng::new(42);
    for (kind, rows, cols, tokens) in [
        (QuantKind::Q8, 16 * 7, 4096, 70),
        (QuantKind::Q4, 16 * 5 - 3, 4100, 67),
        (QuantKind::Q8, 16 * 9, 1024, 1),
        (QuantKind::Q4, 16 * 9, 1024, 1),
    ] {
        let shape = QuantShape::new(rows, cols).unwrap();
        let data: Vec<u8> = (0..shape.data_bytes(kind)).map(|_| rng.next() as u8).collect();
        let scales: Vec<u8> = (0..shape.scale_bytes() / 2).flat_map(|_| rng.f16_bits().to_le_bytes()).collect();
        let w = QuantMatrix { kind, shape, data: &data, scales: &scales };
        let x = rng.f32s(tokens * cols);
        let s = Kernels::scalar();
        let mut acts = QuantActs::default();
        acts.quantize(&s, &x, cols);
        let mut want = vec![0.0; tokens * shape.rows_padded];
        (s.gemm(kind))(&w, &acts, 0..shape.row_blocks(), &mut want);
        for k in available_tiers() {
            let mut got = vec![f32::NAN; want.len()];
            (k.gemm(kind))(&w, &acts, 0..shape.row_blocks(), &mut got);
            assert_eq!(bits(&got), bits(&want), "tier {} {kind:?} {rows}x{cols} T={tokens}", k.tier);
        }
    }
}

/// Shapes past the drivers' chunking: many groups (> one SME batch), many tokens (several
/// token blocks of every tile width), f32/f16 rows past one cached row chunk.
#[test]
fn gemm_case_large_shapes_match_scalar() {
    for (i, &(tokens, row_blocks, groups)) in
        [(37usize, 3usize, 40usize), (4, 2, 17), (19, 1, 33), (1, 4, 64)].iter().enumerate()
    {
        for kind in [QuantKind::Q8, QuantKind::Q4] {
            let case = GemmCase::new(kind, tokens, row_blocks, groups, 1000 + i as u64);
            case.check(0..row_blocks);
            case.check(1.min(row_blocks - 1)..row_blocks);
        }
    }
    let mut rng = Rng::new(7);
    for &(tokens, rows, cols) in &[(5usize, 70usize, 2003usize), (1, 37, 4100), (9, 3, 17)] {
        let x = rng.f32s(tokens * cols);
        let w = rng.f32s(rows * cols);
        let w16: Vec<u8> = (0..rows * cols).flat_map(|_| rng.f16_bits().to_le_bytes()).collect();
        let sc = Kernels::scalar();
        let mut want = vec![0.0; tokens * rows];
        let mut want16 = vec![0.0; tokens * rows];
        (sc.matmul_f32)(&x, &w, cols, &mut want);
        (sc.matmul_f16)(&x, &w16, cols, &mut want16);
        for k in available_tiers() {
            let mut got = vec![f32::NAN; tokens * rows];
            (k.matmul_f32)(&x, &w, cols, &mut got);
            assert_eq!(bits(&got), bits(&want), "tier {} f32 {tokens}x{rows}x{cols}", k.tier);
            (k.matmul_f16)(&x, &w16, cols, &mut got);
            assert_eq!(bits(&got), bits(&want16), "tier {} f16 {tokens}x{rows}x{cols}", k.tier);
        }
    }
}

/// Large f32 matmuls (token chunking) once per tier.
#[test]
fn matmul_large_shapes_match_scalar() {
    let mut rng = Rng::new(7);
    for (rows, cols, tokens) in [(37, 1000, 70), (5, 4099, 1)] {
        let x = rng.f32s(tokens * cols);
        let w = rng.f32s(rows * cols);
        let w16: Vec<u8> = (0..rows * cols).flat_map(|_| rng.f16_bits().to_le_bytes()).collect();
        let s = Kernels::scalar();
        let (mut want, mut want16) = (vec![0.0; tokens * rows], vec![0.0; tokens * rows]);
        (s.matmul_f32)(&x, &w, cols, &mut want);
        (s.matmul_f16)(&x, &w16, cols, &mut want16);
        for k in available_tiers() {
            let mut got = vec![0.0; tokens * rows];
            (k.matmul_f32)(&x, &w, cols, &mut got);
            assert_eq!(bits(&got), bits(&want), "tier {}", k.tier);
            (k.matmul_f16)(&x, &w16, cols, &mut got);
            assert_eq!(bits(&got), bits(&want16), "tier {}", k.tier);
        }
    }
}

/// Empty inputs: no tokens, an empty row-block range, an empty row.
#[test]
fn empty_inputs_match_scalar() {
    for kind in [QuantKind::Q8, QuantKind::Q4] {
        let case = GemmCase::new(kind, 0, 2, 3, 5);
        let with_tokens = GemmCase::new(kind, 5, 2, 3, 5);
        for k in available_tiers() {
            assert!(case.run(&k, 0..2).is_empty());
            assert!(with_tokens.run(&k, 1..1).is_empty());
        }
    }
    for k in available_tiers() {
        assert_eq!((k.dot_f32)(&[], &[]).to_bits(), 0.0f32.to_bits());
        let (mut q, mut s) = (vec![3i8; 64], vec![1.0f32; 2]);
        (k.quantize_row)(&[], &mut q, &mut s);
        assert!(q.iter().all(|&v| v == 0) && s == [0.0, 0.0], "tier {}", k.tier);
    }
}

/// Non-finite activations: unspecified by the definition, but still identical here.
#[test]
fn quantize_row_non_finite_matches_scalar() {
    let mut x = vec![0.5f32; 100];
    x[3] = f32::NAN;
    x[40] = f32::INFINITY;
    x[41] = -3.0;
    x[70] = 1e-45; // subnormal amax: 127 / amax = inf
    x[71] = -0.0;
    x[99] = f32::NEG_INFINITY;
    let mut only_sub = vec![0.0f32; 32];
    only_sub[5] = -1e-45;
    let sc = Kernels::scalar();
    for input in [&x, &only_sub] {
        let groups = input.len().div_ceil(GROUP);
        let (mut qw, mut sw) = (vec![0i8; groups * GROUP], vec![0.0f32; groups]);
        (sc.quantize_row)(input, &mut qw, &mut sw);
        for k in available_tiers() {
            let (mut q, mut s) = (vec![1i8; groups * GROUP], vec![1.0f32; groups]);
            (k.quantize_row)(input, &mut q, &mut s);
            assert_eq!(q, qw, "tier {}", k.tier);
            assert_eq!(bits(&s), bits(&sw), "tier {}", k.tier);
        }
    }
}

/// NaN / infinite bf16 and f16 weights: the products (and so the outputs) carry the same
/// bits as the scalar path, whose `half` widening quiets signalling NaNs up front.
#[test]
fn half_nan_weights_match_scalar() {
    let s = Kernels::scalar();
    for k in available_tiers() {
        for special in [0x7F81u16, 0xFF81, 0x7FC0, 0x7F80, 0xFF80, 0x7C01, 0xFE01, 0x7E00, 0x7C00] {
            for cols in [1usize, 17, 40] {
                let mut w = vec![0u8; 2 * cols];
                w[2 * (cols - 1)..].copy_from_slice(&special.to_le_bytes());
                let x: Vec<f32> = (0..cols).map(|i| i as f32 * 0.5 - 3.0).collect();
                let (mut got, mut want) = ([0.0f32], [0.0f32]);
                (s.matmul_bf16)(&x, &w, cols, &mut want);
                (k.matmul_bf16)(&x, &w, cols, &mut got);
                assert_eq!(got[0].to_bits(), want[0].to_bits(), "bf16 tier {} {special:#x} cols {cols}", k.tier);
                (s.matmul_f16)(&x, &w, cols, &mut want);
                (k.matmul_f16)(&x, &w, cols, &mut got);
                assert_eq!(got[0].to_bits(), want[0].to_bits(), "f16 tier {} {special:#x} cols {cols}", k.tier);
            }
        }
    }
}

/// NaN weights give NaN outputs like the scalar widening (`half` quiets NaNs).
#[test]
fn half_nan_widening_matches_scalar() {
    let sc = Kernels::scalar();
    for k in available_tiers() {
        for nan in [0x7F81u16, 0xFF81, 0x7FC0, 0x7F80, 0xFF80, 0x7C01, 0xFE00, 0x7C00] {
            let w = nan.to_le_bytes();
            for (f, g) in [(sc.matmul_bf16, k.matmul_bf16), (sc.matmul_f16, k.matmul_f16)] {
                let (mut want, mut got) = ([0.0f32], [0.0f32]);
                f(&[1.0], &w, 1, &mut want);
                g(&[1.0], &w, 1, &mut got);
                assert_eq!(got[0].is_nan(), want[0].is_nan(), "tier {} {nan:#x}", k.tier);
                if !want[0].is_nan() {
                    assert_eq!(got[0].to_bits(), want[0].to_bits(), "tier {} {nan:#x}", k.tier);
                }
            }
        }
    }
}

/// Shape mismatches panic like the scalar definition.
#[test]
fn shape_mismatches_panic() {
    for k in available_tiers() {
        let r = std::panic::catch_unwind(|| (k.dot_f32)(&[1.0, 2.0], &[1.0]));
        assert!(r.is_err(), "tier {}", k.tier);
        let r = std::panic::catch_unwind(|| {
            let mut out = vec![0.0; 3];
            (k.matmul_f32)(&[1.0; 4], &[1.0; 8], 4, &mut out)
        });
        assert!(r.is_err(), "tier {}", k.tier);
        let shape = QuantShape::new(16, 32).unwrap();
        let data = vec![0u8; shape.data_bytes(QuantKind::Q8)];
        let scales = vec![0u8; shape.scale_bytes()];
        let w = QuantMatrix { kind: QuantKind::Q8, shape, data: &data, scales: &scales };
        let mut acts = QuantActs::default();
        acts.quantize(&Kernels::scalar(), &[1.0; 64], 64);
        let r = std::panic::catch_unwind(|| {
            let mut out = vec![0.0; 16];
            (k.gemm_q8)(&w, &acts, 0..1, &mut out)
        });
        assert!(r.is_err(), "width mismatch must panic (tier {})", k.tier);
        let short = QuantMatrix { data: &data[..100], ..w };
        acts.quantize(&Kernels::scalar(), &[1.0; 32], 32);
        let r = std::panic::catch_unwind(|| {
            let mut out = vec![0.0; 16];
            (k.gemm_q8)(&short, &acts, 0..1, &mut out)
        });
        assert!(r.is_err(), "short data must panic (tier {})", k.tier);
    }
}

#[test]
#[should_panic(expected = "gemm: bad output length")]
fn gemm_shape_mismatch_panics() {
    let case = GemmCase::new(QuantKind::Q8, 2, 1, 1, 1);
    let k = available_tiers().pop().unwrap();
    let mut out = vec![0.0; 31];
    (k.gemm_q8)(&case.matrix(), &case.acts, 0..1, &mut out);
}
