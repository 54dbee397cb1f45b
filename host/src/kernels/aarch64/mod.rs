//! aarch64 kernels: NEON, DOTPROD (sdot), I8MM (smmla), SME.

use super::Tier;

/// aarch64 tiers, worst first.
pub fn tiers() -> Vec<Tier> {
    Vec::new()
}
