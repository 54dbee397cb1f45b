//! x86_64 kernels: AVX2, AVX-VNNI, AVX-512 VNNI.
//!
//! Each tier overrides the entries it implements and takes the rest from the tier below:
//! - `avx2` (AVX2 + F16C): every entry.
//! - `avxvnni` (+ AVX-VNNI): the quantized matmuls with 256-bit `vpdpbusd`.
//! - `avx512` (AVX-512 F/BW/VL + VNNI): every entry on 512-bit registers.
//!
//! Layout: `driver.rs` holds every entry once (shape checks, tiling, tile choice, the safe
//! wrapper and its one safety argument), generic over a tier; a tier file holds only its
//! register-tile microkernels, as implementations of `driver::FloatTier` (dot product,
//! f32/f16/bf16 matmul tile, `quantize_row`) and `driver::QuantTier` (INT8/INT4 GEMM
//! tiles), plus its feature check and its `kernels()` table.
//!
//! All of them are bit-identical to `saguaro_engine::kernels::scalar` (tests in
//! `kernels/tier_tests.rs`, run for every tier this CPU has). A tier's entries are handed out
//! only by its `kernels()` function after its runtime feature check, which is what makes the
//! `#[target_feature]` calls inside them sound (see `driver`).

// Tiles index small fixed-size register arrays in nested loops; plain index loops read best.
#![allow(clippy::needless_range_loop)]

mod avx2;
mod avx512;
mod avxvnni;
mod driver;
pub mod elementwise;
#[cfg(test)]
mod tests;

use super::Tier;

/// x86_64 tiers, worst first.
pub fn tiers() -> Vec<Tier> {
    vec![
        Tier { name: avx2::NAME, available: avx2::available, kernels: avx2::kernels },
        Tier { name: avxvnni::NAME, available: avxvnni::available, kernels: avxvnni::kernels },
        Tier { name: avx512::NAME, available: avx512::available, kernels: avx512::kernels },
    ]
}
