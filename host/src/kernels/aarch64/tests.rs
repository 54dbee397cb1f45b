//! Every aarch64 tier available on this CPU against the scalar definitions, bit for bit.
//!
//! Run under qemu-user once per emulated CPU (`scripts/test-aarch64.sh`): cortex-a53 (neon),
//! neoverse-n1 (+dotprod), neoverse-v1 (+i8mm), max (+sme). `SAGUARO_PROPTEST_CASES` sets the
//! number of random cases per property (default 256).

use proptest::prelude::*;
use saguaro_engine::kernels::{Kernels, QuantActs, QuantMatrix};
use saguaro_engine::quant::{QuantKind, QuantShape, GROUP, ROW_BLOCK};

/// The aarch64 tiers this CPU can run (their tables).
fn available_tiers() -> Vec<Kernels> {
    super::tiers().into_iter().filter(|t| (t.available)()).map(|t| (t.kernels)()).collect()
}

fn cases() -> u32 {
    std::env::var("SAGUARO_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

use super::super::test_support::Rng;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Random quantized weights (every byte value, so q8 covers -128 and q4 every nibble) with
/// f16 scales (some zero, some subnormal), and activations with some all-zero groups.
struct GemmCase {
    kind: QuantKind,
    shape: QuantShape,
    data: Vec<u8>,
    scales: Vec<u8>,
    acts: QuantActs,
}

impl GemmCase {
    fn new(kind: QuantKind, tokens: usize, row_blocks: usize, groups: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let rows = row_blocks * ROW_BLOCK - rng.below(ROW_BLOCK as u64) as usize;
        let cols = groups * GROUP - rng.below(GROUP as u64) as usize;
        let shape = QuantShape::new(rows, cols).unwrap();
        let data: Vec<u8> = (0..shape.data_bytes(kind)).map(|_| rng.next() as u8).collect();
        let scales: Vec<u8> = (0..shape.scale_bytes() / 2)
            .flat_map(|_| {
                let b = match rng.below(8) {
                    0 => 0,
                    1 => 0x8000,
                    2 => rng.next() as u16 & 0x83FF, // subnormal
                    _ => {
                        // A typical weight scale (|s| in [2^-14, 2^-2]).
                        let e = 1 + rng.below(13) as u16;
                        (rng.next() as u16 & 0x83FF) | (e << 10)
                    }
                };
                b.to_le_bytes()
            })
            .collect();
        let cols_padded = shape.cols_padded;
        let mut q = vec![0i8; tokens * cols_padded];
        let mut xs = vec![0.0f32; tokens * groups];
        for t in 0..tokens {
            for g in 0..groups {
                if rng.below(5) == 0 {
                    continue; // an all-zero group: q = 0, scale 0
                }
                for k in 0..GROUP {
                    q[t * cols_padded + g * GROUP + k] = rng.next() as i8;
                }
                xs[t * groups + g] = match rng.below(10) {
                    0 => 0.0,
                    _ => rng.f32().abs() / 127.0 + f32::MIN_POSITIVE,
                };
            }
        }
        let acts = QuantActs { tokens, cols_padded, q, scales: xs };
        GemmCase { kind, shape, data, scales, acts }
    }

    fn matrix(&self) -> QuantMatrix<'_> {
        QuantMatrix { kind: self.kind, shape: self.shape, data: &self.data, scales: &self.scales }
    }

    /// Runs `k`'s GEMM over row blocks `blocks`.
    fn run(&self, k: &Kernels, blocks: std::ops::Range<usize>) -> Vec<f32> {
        let mut out = vec![f32::NAN; self.acts.tokens * blocks.len() * ROW_BLOCK];
        (k.gemm(self.kind))(&self.matrix(), &self.acts, blocks, &mut out);
        out
    }

    /// Every available tier equals scalar on `blocks`.
    fn check(&self, blocks: std::ops::Range<usize>) {
        let want = self.run(&Kernels::scalar(), blocks.clone());
        for k in available_tiers() {
            let got = self.run(&k, blocks.clone());
            assert_eq!(bits(&got), bits(&want), "tier {} {:?} {:?} blocks {blocks:?}", k.tier, self.kind, self.shape);
        }
    }
}

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

/// Shapes past the drivers' chunking: many groups (> one SME batch), many tokens (several
/// token blocks of every tile width), f32/f16 rows past one cached row chunk.
#[test]
fn large_shapes_match_scalar() {
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

#[test]
fn tiers_are_ordered_and_selectable() {
    let names: Vec<&str> = super::tiers().iter().map(|t| t.name).collect();
    assert_eq!(names, ["neon", "dotprod", "i8mm", "sme"]);
    let mut below_available = true;
    for tier in super::tiers() {
        // A tier falls back to the ones below it, so it needs them.
        assert!(below_available || !(tier.available)(), "{} available without the tiers below", tier.name);
        below_available = (tier.available)();
        match super::super::tier_by_name(tier.name) {
            Ok(t) => {
                assert!((t.available)());
                assert_eq!((t.kernels)().tier, tier.name);
            }
            Err(_) => assert!(!(tier.available)()),
        }
    }
    assert!((super::tiers()[0].available)(), "neon is always available on aarch64");
}

/// The tiers detected on each emulated CPU (the CPU name comes from `SAGUARO_QEMU_CPU`, set
/// by `scripts/test-aarch64.sh`, or `QEMU_CPU`; without either the test only prints them).
#[test]
fn detected_tiers_match_cpu() {
    let found: Vec<&str> = super::tiers().into_iter().filter(|t| (t.available)()).map(|t| t.name).collect();
    let cpu = std::env::var("SAGUARO_QEMU_CPU").or_else(|_| std::env::var("QEMU_CPU")).unwrap_or_default();
    let want: &[&str] = match cpu.split(',').next().unwrap_or("") {
        "cortex-a53" | "cortex-a57" | "cortex-a72" => &["neon"],
        "neoverse-n1" | "cortex-a76" | "cortex-a55" => &["neon", "dotprod"],
        "neoverse-v1" | "neoverse-n2" => &["neon", "dotprod", "i8mm"],
        "max" => &["neon", "dotprod", "i8mm", "sme"],
        _ => {
            eprintln!("aarch64 tiers on this CPU ({cpu:?}): {found:?}");
            return;
        }
    };
    assert_eq!(found, want, "tiers detected under {cpu}");
    assert_eq!(super::super::best().tier, *want.last().unwrap());
}

/// SME at every streaming vector length qemu offers: 128, 256, 512 bits (tile widths 4, 8,
/// 16) and 1024 / 2048 bits (not supported by the kernel: the i8mm fallback). The length is
/// set for this thread only (`prctl(PR_SME_SET_VL)`) and restored.
#[test]
fn sme_every_vector_length_matches_scalar() {
    if !super::sme::available() {
        return;
    }
    const PR_SME_SET_VL: i32 = 63;
    const PR_SME_GET_VL: i32 = 64;
    const PR_SME_VL_LEN_MASK: i32 = 0xffff;
    extern "C" {
        fn prctl(option: i32, ...) -> i32;
    }
    // SAFETY: PR_SME_GET_VL only reads this thread's SME vector length.
    let saved = unsafe { prctl(PR_SME_GET_VL) } & PR_SME_VL_LEN_MASK;
    assert!(saved > 0, "PR_SME_GET_VL failed");
    let sme = (super::tiers()[3].kernels)();
    for vl in [16u64, 32, 64, 128, 256] {
        // SAFETY: changes this thread's streaming vector length; no SME state is live here.
        let set = unsafe { prctl(PR_SME_SET_VL, vl) };
        if set < 0 || (set & PR_SME_VL_LEN_MASK) as u64 != vl {
            continue; // not offered by this CPU
        }
        // SAFETY: SME present (checked above).
        assert_eq!(unsafe { super::sme::svl_bytes() }, vl as usize);
        for (i, &(tokens, row_blocks, groups)) in
            [(4usize, 1usize, 1usize), (5, 2, 3), (9, 3, 2), (17, 2, 18), (33, 1, 5), (16, 2, 4)].iter().enumerate()
        {
            for kind in [QuantKind::Q8, QuantKind::Q4] {
                let case = GemmCase::new(kind, tokens, row_blocks, groups, vl * 100 + i as u64);
                let want = case.run(&Kernels::scalar(), 0..row_blocks);
                let got = case.run(&sme, 0..row_blocks);
                assert_eq!(bits(&got), bits(&want), "sme vl {vl} {kind:?} t{tokens} rb{row_blocks} g{groups}");
            }
        }
    }
    // SAFETY: as above.
    unsafe { prctl(PR_SME_SET_VL, saved as u64) };
}

#[test]
#[should_panic(expected = "gemm: bad output length")]
fn gemm_shape_mismatch_panics() {
    let case = GemmCase::new(QuantKind::Q8, 2, 1, 1, 1);
    let k = available_tiers().pop().unwrap();
    let mut out = vec![0.0; 31];
    (k.gemm_q8)(&case.matrix(), &case.acts, 0..1, &mut out);
}
