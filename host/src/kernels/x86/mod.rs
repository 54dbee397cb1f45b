//! x86_64 kernels: AVX2, AVX-VNNI, AVX-512 VNNI.
//!
//! Each tier overrides the entries it implements and takes the rest from the tier below:
//! - `avx2` (AVX2 + F16C): every entry.
//! - `avxvnni` (+ AVX-VNNI): the quantized matmuls with 256-bit `vpdpbusd`.
//! - `avx512` (AVX-512 F/BW/VL + VNNI): every entry on 512-bit registers.
//!
//! All of them are bit-identical to `saguaro_engine::kernels::scalar` (tests in `tests.rs`).
//! A tier's entries are handed out only by its `kernels()` function after its runtime
//! feature check, which is what makes the `#[target_feature]` calls inside them sound.

// Tiles index small fixed-size register arrays in nested loops; plain index loops read best.
#![allow(clippy::needless_range_loop)]

/// Calls `$tile::<R, T, PF>(c, bi, t)` for the run-time tile size `(rbn, tn)` from a fixed
/// list of instantiations; any other size (never produced by the drivers' settings) is
/// computed one row block and one token at a time, which gives the same results.
macro_rules! dispatch {
    ($tile:ident, $c:expr, $rbn:expr, $tn:expr, $bi:expr, $t:expr, [$(($r:literal, $tt:literal, $pf:literal)),* $(,)?]) => {
        match ($rbn, $tn) {
            $(($r, $tt) => $tile::<$r, $tt, $pf>($c, $bi, $t),)*
            _ => {
                for b in $bi..$bi + $rbn {
                    for tt in $t..$t + $tn {
                        $tile::<1, 1, false>($c, b, tt);
                    }
                }
            }
        }
    };
}

mod avx2;
mod avx512;
mod avxvnni;
mod common;
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
