//! Test inputs shared by the kernel tier tests (`tier_tests.rs` and the per-architecture
//! `tests.rs`): the tiers to test, a small deterministic generator (so one proptest seed fixes
//! all data) of the values kernels must agree on bit for bit, and random quantized matmuls.

#![allow(dead_code)]

use saguaro_engine::kernels::{Kernels, QuantActs, QuantMatrix};
use saguaro_engine::quant::{QuantKind, QuantShape, GROUP, ROW_BLOCK};

/// The SIMD tiers this CPU can run (their tables): every tier of this build but scalar.
pub fn available_tiers() -> Vec<Kernels> {
    super::tiers().into_iter().filter(|t| t.name != "scalar" && (t.available)()).map(|t| (t.kernels)()).collect()
}

/// Random cases per property: `SAGUARO_PROPTEST_CASES`, or 256 (a slow emulated run, as
/// under qemu in `scripts/test-aarch64.sh`, may ask for fewer).
pub fn cases() -> u32 {
    std::env::var("SAGUARO_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

/// The bits of `v`, to compare results exactly (NaN payloads and signed zeros included).
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Small deterministic generator (xorshift64*), so a proptest seed fixes all data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A finite f32 spread over many magnitudes, signs and some exact zeros.
    pub fn f32(&mut self) -> f32 {
        match self.below(16) {
            0 => 0.0,
            1 => -0.0,
            2 => (self.below(2001) as f32 - 1000.0) * 1e-6,
            _ => {
                let m = (self.below(1 << 24) as f32) / (1 << 24) as f32 * 2.0 - 1.0;
                let e = self.below(13) as i32 - 6;
                m * 2f32.powi(e)
            }
        }
    }
    pub fn f32s(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
    /// Finite f16 bits (any exponent but the inf/NaN one, subnormals and zeros included).
    pub fn f16_bits(&mut self) -> u16 {
        loop {
            let b = self.next() as u16;
            if b & 0x7C00 != 0x7C00 {
                return b;
            }
        }
    }
    /// bf16 bits of moderate magnitude (|v| < 2^16, so no product or sum overflows).
    pub fn bf16_bits(&mut self) -> u16 {
        let v = self.f32() * 1000.0;
        (v.to_bits() >> 16) as u16
    }
}

/// Random quantized weights (every byte value, so q8 covers -128 and q4 every nibble) with
/// f16 scales (some zero, some subnormal), and activations (every value in [-127, 127]) with
/// some all-zero groups.
pub struct GemmCase {
    pub kind: QuantKind,
    pub shape: QuantShape,
    pub data: Vec<u8>,
    pub scales: Vec<u8>,
    pub acts: QuantActs,
}

impl GemmCase {
    pub fn new(kind: QuantKind, tokens: usize, row_blocks: usize, groups: usize, seed: u64) -> Self {
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
                    // Any value `quantize_row` makes: [-127, 127]. (-128 never occurs, and the
                    // AVX2 tile's `vpsignb` trick relies on that; see `QuantActs::q`.)
                    q[t * cols_padded + g * GROUP + k] = (rng.next() as i8).max(-127);
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

    pub fn matrix(&self) -> QuantMatrix<'_> {
        QuantMatrix { kind: self.kind, shape: self.shape, data: &self.data, scales: &self.scales }
    }

    /// Runs `k`'s GEMM over row blocks `blocks`.
    pub fn run(&self, k: &Kernels, blocks: std::ops::Range<usize>) -> Vec<f32> {
        let mut out = vec![f32::NAN; self.acts.tokens * blocks.len() * ROW_BLOCK];
        (k.gemm(self.kind))(&self.matrix(), &self.acts, blocks, &mut out);
        out
    }

    /// Every available tier equals scalar on `blocks`.
    pub fn check(&self, blocks: std::ops::Range<usize>) {
        let want = self.run(&Kernels::scalar(), blocks.clone());
        for k in available_tiers() {
            let got = self.run(&k, blocks.clone());
            assert_eq!(bits(&got), bits(&want), "tier {} {:?} {:?} blocks {blocks:?}", k.tier, self.kind, self.shape);
        }
    }
}
