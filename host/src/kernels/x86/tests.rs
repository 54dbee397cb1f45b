//! Every x86 tier available on this CPU against the scalar definitions, bit for bit.

use proptest::prelude::*;
use saguaro_engine::kernels::{Kernels, QuantActs, QuantMatrix};
use saguaro_engine::quant::{QuantKind, QuantShape, GROUP, ROW_BLOCK};

/// The tiers this CPU can run (their tables), excluding scalar.
fn available_tiers() -> Vec<Kernels> {
    super::tiers().into_iter().filter(|t| (t.available)()).map(|t| (t.kernels)()).collect()
}

use super::super::test_support::Rng;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn dot_f32_matches_scalar(n in 0usize..300, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let (a, b) = (rng.f32s(n), rng.f32s(n));
        let want = (Kernels::scalar().dot_f32)(&a, &b).to_bits();
        for k in available_tiers() {
            prop_assert_eq!((k.dot_f32)(&a, &b).to_bits(), want, "tier {}", k.tier);
        }
    }

    #[test]
    fn matmul_f32_matches_scalar(cols in 1usize..300, rows in 1usize..10, tokens in 1usize..6, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let x = rng.f32s(tokens * cols);
        let w = rng.f32s(rows * cols);
        let mut want = vec![0.0; tokens * rows];
        (Kernels::scalar().matmul_f32)(&x, &w, cols, &mut want);
        for k in available_tiers() {
            let mut got = vec![f32::NAN; tokens * rows];
            (k.matmul_f32)(&x, &w, cols, &mut got);
            prop_assert_eq!(bits(&got), bits(&want), "tier {}", k.tier);
        }
    }

    #[test]
    fn matmul_half_matches_scalar(cols in 1usize..300, rows in 1usize..10, tokens in 1usize..6, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let x = rng.f32s(tokens * cols);
        let w16: Vec<u8> = (0..rows * cols).flat_map(|_| rng.f16_bits().to_le_bytes()).collect();
        let wb16: Vec<u8> = (0..rows * cols).flat_map(|_| rng.bf16_bits().to_le_bytes()).collect();
        let s = Kernels::scalar();
        let (mut want16, mut wantb) = (vec![0.0; tokens * rows], vec![0.0; tokens * rows]);
        (s.matmul_f16)(&x, &w16, cols, &mut want16);
        (s.matmul_bf16)(&x, &wb16, cols, &mut wantb);
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
    let (mut qw, mut sw) = (vec![0i8; 128], vec![0.0f32; 4]);
    let mut only_sub = vec![0.0f32; 32];
    only_sub[5] = -1e-45;
    let (mut qs, mut ss) = (vec![0i8; 32], vec![0.0f32; 1]);
    let sc = Kernels::scalar();
    (sc.quantize_row)(&x, &mut qw, &mut sw);
    (sc.quantize_row)(&only_sub, &mut qs, &mut ss);
    for k in available_tiers() {
        let (mut q, mut s) = (vec![1i8; 128], vec![1.0f32; 4]);
        (k.quantize_row)(&x, &mut q, &mut s);
        assert_eq!(q, qw, "tier {}", k.tier);
        assert_eq!(bits(&s), bits(&sw), "tier {}", k.tier);
        let (mut q, mut s) = (vec![1i8; 32], vec![1.0f32; 1]);
        (k.quantize_row)(&only_sub, &mut q, &mut s);
        assert_eq!(q, qs, "tier {}", k.tier);
        assert_eq!(bits(&s), bits(&ss), "tier {}", k.tier);
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

#[test]
fn tiers_are_ordered_and_selectable() {
    let names: Vec<&str> = super::tiers().iter().map(|t| t.name).collect();
    assert_eq!(names, ["avx2", "avxvnni", "avx512"]);
    for tier in super::tiers() {
        match super::super::tier_by_name(tier.name) {
            Ok(t) => {
                assert!((t.available)());
                assert_eq!((t.kernels)().tier, tier.name);
            }
            Err(_) => assert!(!(tier.available)()),
        }
    }
    if std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512bw") {
        let t = super::super::tier_by_name("avx512").expect("avx512 tier on this CPU");
        assert_eq!((t.kernels)().tier, "avx512");
        assert_eq!(super::super::best().tier, "avx512");
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
