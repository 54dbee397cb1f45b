//! x86_64 kernels: AVX2, AVX-VNNI, AVX-512 VNNI.

use super::Tier;

/// x86_64 tiers, worst first.
pub fn tiers() -> Vec<Tier> {
    Vec::new()
}
