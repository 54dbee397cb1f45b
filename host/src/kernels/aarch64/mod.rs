//! aarch64 kernels: NEON, DOTPROD (`sdot`), I8MM (`smmla`), SME (`smopa`).
//!
//! Tiers, worst first; each overrides the entries it implements and takes the rest from the
//! tier below it:
//! - `neon` (Armv8.0 Advanced SIMD, every aarch64 CPU): every entry. The int8 dot products
//!   are emulated with `smull`/`sadalp` (exact).
//! - `dotprod` (FEAT_DotProd, `sdot` by element): `gemm_q8`, `gemm_q4`.
//! - `i8mm` (FEAT_I8MM, `smmla` 2x8x2): `gemm_q8`, `gemm_q4` over pairs of tokens; a single
//!   token (decode) or an odd last token uses the `dotprod` kernel.
//! - `sme` (FEAT_SME, `smopa` int8 outer products into ZA): the prefill GEMM (`gemm_q8`,
//!   `gemm_q4` with at least [`sme::MIN_TOKENS`] tokens); everything else is `i8mm`.
//!
//! Detection: `neon`, `dotprod` and `i8mm` with `std::arch::is_aarch64_feature_detected!`
//! (HWCAP_ASIMD, HWCAP_ASIMDDP, HWCAP2_I8MM). SME detection is unstable in `std` on Rust 1.95,
//! so [`sme`] reads `getauxval(AT_HWCAP2)` itself (bits documented there). A tier is
//! available only when every tier it falls back to is too.
//!
//! Layout: `driver.rs` holds the quantized GEMM entries once (validation, the safe wrapper
//! and its one safety argument, the token-pair loop), generic over a tier's
//! `driver::QuantTier`; a tier file holds its microkernels, its feature check and its
//! `kernels()` table; `common.rs` has the NEON helpers they share.
//!
//! Every entry is bit-identical to `saguaro_engine::kernels::scalar` (tests in
//! `kernels/tier_tests.rs`, run for every tier this CPU has, and `tests.rs`). A tier's entries
//! are handed out only by its `kernels()` function after its runtime feature check (see
//! `super::Tier`), which is what makes the `#[target_feature]` calls and the feature-specific
//! `asm!` inside them sound (see `driver`).

// Tiles index small fixed-size register arrays in nested loops; plain index loops read best.
#![allow(clippy::needless_range_loop)]

#[macro_use]
mod common;
mod dotprod;
mod driver;
mod i8mm;
mod neon;
mod sme;
#[cfg(test)]
mod tests;

use super::Tier;

/// aarch64 tiers, worst first.
pub fn tiers() -> Vec<Tier> {
    vec![
        Tier { name: neon::NAME, available: neon::available, kernels: neon::kernels },
        Tier { name: dotprod::NAME, available: dotprod::available, kernels: dotprod::kernels },
        Tier { name: i8mm::NAME, available: i8mm::available, kernels: i8mm::kernels },
        Tier { name: sme::NAME, available: sme::available, kernels: sme::kernels },
    ]
}

/// Whether the CPU (and kernel) support SME with int8 outer products (`getauxval`), for
/// callers that cannot use the still unstable `is_aarch64_feature_detected!("sme")`.
pub fn has_sme() -> bool {
    sme::hwcap_sme()
}
