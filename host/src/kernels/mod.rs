//! Native kernels: CPU feature detection and the kernel table the host plugs into models.
//!
//! Per-architecture folders (like ggml's) hold the SIMD variants; each exposes its tiers as
//! [`Tier`]s, best last. [`select`] picks the best tier the CPU supports, or the one named
//! by `SAGUARO_KERNELS` (for A/B runs and tests). Every tier returns results bit-identical
//! to the scalar definitions in `saguaro_engine::kernels::scalar`, tested by one suite
//! (`tier_tests.rs`) that runs every check for every tier this CPU has. README.md (beside
//! this file) maps every tier, the driver/microkernel split and the tests; the wasm simd128
//! tier lives in the engine crate (`saguaro_engine::kernels::simd128`), because the wasm
//! builds compile the engine alone and choose it at compile time.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod shapes;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tier_tests;
#[cfg(target_arch = "x86_64")]
pub mod x86;

use saguaro_engine::kernels::Kernels;
use saguaro_engine::{Error, Result};

/// One kernel tier of this architecture.
#[derive(Clone, Copy)]
pub struct Tier {
    /// Name used by `SAGUARO_KERNELS` and `saguaro info --cpu`.
    pub name: &'static str,
    /// Whether this CPU can run it (runtime detection).
    pub available: fn() -> bool,
    /// The table: entries this tier implements, the tier below it for the rest.
    pub kernels: fn() -> Kernels,
}

fn scalar_tier() -> Tier {
    Tier { name: "scalar", available: || true, kernels: Kernels::scalar }
}

/// Every tier compiled into this build, worst first (scalar first).
pub fn tiers() -> Vec<Tier> {
    #[allow(unused_mut)]
    let mut all = vec![scalar_tier()];
    #[cfg(target_arch = "x86_64")]
    all.extend(x86::tiers());
    #[cfg(target_arch = "aarch64")]
    all.extend(aarch64::tiers());
    all
}

/// The tier named `name`, if compiled in and supported by this CPU.
pub fn tier_by_name(name: &str) -> Result<Tier> {
    let all = tiers();
    let tier = all.iter().find(|t| t.name == name).copied().ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|t| t.name).collect();
        Error::Input(format!("unknown kernel tier `{name}` (this build has: {})", names.join(", ")))
    })?;
    if !(tier.available)() {
        return Err(Error::Input(format!("kernel tier `{name}` is not supported by this CPU")));
    }
    Ok(tier)
}

/// The best supported tier, unless `SAGUARO_KERNELS` names one.
pub fn select() -> Result<Kernels> {
    match std::env::var("SAGUARO_KERNELS") {
        Ok(name) if !name.is_empty() => Ok((tier_by_name(&name)?.kernels)()),
        _ => Ok(best()),
    }
}

/// The best tier this CPU supports.
pub fn best() -> Kernels {
    let tier = tiers().into_iter().rev().find(|t| (t.available)()).unwrap_or_else(scalar_tier);
    (tier.kernels)()
}

/// The SIMD features this CPU reports (for `saguaro info --cpu`).
pub fn cpu_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$( if std::arch::is_x86_feature_detected!($f) { found.push($f); } )*};
        }
        probe!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avxvnni",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$( if std::arch::is_aarch64_feature_detected!($f) { found.push($f); } )*};
        }
        probe!("neon", "fp16", "dotprod", "i8mm", "bf16", "sve", "sve2");
        // `is_aarch64_feature_detected!("sme")` is unstable on Rust 1.95: ask the kernel.
        if aarch64::has_sme() {
            found.push("sme");
        }
    }
    found
}
