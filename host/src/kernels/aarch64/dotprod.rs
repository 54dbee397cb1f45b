//! `dotprod` tier (FEAT_DotProd): the quantized GEMMs with `sdot` by element.
//!
//! One 64-byte `r16k4` chunk is 16 rows x 4 k: four registers of 4 rows x 4 k, exactly the
//! operand of `sdot vd.4s, w.16b, x.4b[i]` (lane i of the activation register = the chunk's 4
//! k). Per group of 32: 8 chunks x 4 `sdot` per token into four i32x4 sums (16 rows), then the
//! f32 update of `common::fold`. Row blocks are the outer loop; tokens go in pairs so every
//! loaded weight register feeds two tokens (one token for decode and the odd last one).
//! INT4 registers are split into raw nibbles `n` (`and`/`ushr`): chunk c from the low nibbles,
//! chunk c + 4 from the high ones; the sums start at `-8 * sum(x)` so they add up `(n - 8) x`.
//!
//! Other entries: the `neon` tier.

use std::arch::aarch64::*;
use std::arch::asm;

use saguaro_engine::kernels::Kernels;
use saguaro_engine::quant::{QuantKind, CHUNK_BYTES, GROUP};

use super::common::{f16x16, fold, q4_correction, q4_nibbles, zero_f32, zero_i32};
use super::driver::{self, for_token_pairs, Gemm, QuantTier};

pub const NAME: &str = "dotprod";

pub fn available() -> bool {
    super::neon::available() && std::arch::is_aarch64_feature_detected!("dotprod")
}

/// The table; the `neon` table when this CPU lacks the features (so an entry handed out
/// here can always run).
pub fn kernels() -> Kernels {
    if !available() {
        return super::neon::kernels();
    }
    Kernels {
        tier: NAME,
        gemm_q8: driver::gemm_q8::<DotProd>,
        gemm_q4: driver::gemm_q4::<DotProd>,
        ..super::neon::kernels()
    }
}

/// The tier's microkernels (the driver is `driver`).
pub(super) struct DotProd;

impl QuantTier for DotProd {
    fn available() -> bool {
        available()
    }

    /// Token pairs with [`block`], an odd last token alone.
    ///
    /// # Safety
    /// FEAT_DotProd present; `g` from `Gemm::new`.
    #[target_feature(enable = "dotprod")]
    unsafe fn gemm(g: &Gemm) {
        for_token_pairs(
            g,
            // SAFETY: `bi < nblocks`, `t + 1 < tokens` (`for_token_pairs`); FEAT_DotProd (caller).
            |bi, t| unsafe { block_kind::<2>(g, bi, t) },
            // SAFETY: `bi < nblocks`, `t < tokens`; FEAT_DotProd (caller).
            |bi, t| unsafe { block_kind::<1>(g, bi, t) },
        )
    }
}

/// [`block`] for the weight kind of `g`.
///
/// # Safety
/// As [`block`].
#[target_feature(enable = "dotprod")]
#[inline]
pub(super) unsafe fn block_kind<const NT: usize>(g: &Gemm, bi: usize, t0: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match g.kind {
            QuantKind::Q8 => block::<NT, false>(g, bi, t0),
            QuantKind::Q4 => block::<NT, true>(g, bi, t0),
        }
    }
}

/// `acc += w . x[lane]` for 4 rows: `sdot acc.4s, w.16b, x.4b[lane]`.
macro_rules! sdot {
    ($acc:expr, $w:expr, $x:expr, $lane:expr) => {{
        let mut a: int32x4_t = $acc;
        // Used only inside `unsafe` blocks of functions with FEAT_DotProd enabled and detected.
        asm!(
            "sdot {a:v}.4s, {w:v}.16b, {x:v}.4b[{l}]",
            a = inout(vreg) a,
            w = in(vreg) $w,
            x = in(vreg) $x,
            l = const $lane,
            options(pure, nomem, nostack, preserves_flags),
        );
        a
    }};
}

/// Tokens `t0 .. t0 + NT`, row block `bi`: 16 outputs per token.
///
/// # Safety
/// FEAT_DotProd present; `bi < g.nblocks`, `t0 + NT <= g.tokens`.
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn block<const NT: usize, const Q4: bool>(g: &Gemm, bi: usize, t0: usize) {
    // SAFETY: weight reads stay inside row block `bi` (`groups * group_bytes`
    // bytes from `wdata`), scale reads inside its `groups * 32` bytes, activation reads inside
    // the `cols_padded` bytes and `groups` scales of tokens `t0 .. t0 + NT` (invariants of
    // `Gemm::new`).
    unsafe {
        let wd = g.wdata(bi);
        let sp = g.wscales(bi);
        let xq: [*const i8; NT] = std::array::from_fn(|t| g.x(t0 + t));
        let xs: [*const f32; NT] = std::array::from_fn(|t| g.xscales(t0 + t));
        let mut acc = [zero_f32(); NT];
        for gi in 0..g.groups {
            let wg = wd.add(gi * g.group_bytes);
            let xr: [[int8x16_t; 2]; NT] =
                std::array::from_fn(|t| [vld1q_s8(xq[t].add(gi * GROUP)), vld1q_s8(xq[t].add(gi * GROUP + 16))]);
            // INT4: the sums start at -8 * sum(x) and take the raw nibbles.
            let mut isum = if Q4 {
                std::array::from_fn(|t| [vdupq_n_s32(q4_correction(xr[t][0], xr[t][1])); 4])
            } else {
                [zero_i32(); NT]
            };
            // Chunk c: 4 weight registers, lane c % 4 of activation register c / 4.
            macro_rules! chunk {
                ($c:expr, $w:expr) => {{
                    const C: usize = $c;
                    let w: [int8x16_t; 4] = $w;
                    for t in 0..NT {
                        for j in 0..4 {
                            isum[t][j] = sdot!(isum[t][j], w[j], xr[t][C / 4], C % 4);
                        }
                    }
                }};
            }
            for_each_chunk!(Q4, wg, chunk);
            let ws = f16x16(sp.add(gi * 32));
            for t in 0..NT {
                fold(&mut acc[t], &isum[t], &ws, *xs[t].add(gi));
            }
        }
        for t in 0..NT {
            g.store(t0 + t, bi, &acc[t]);
        }
    }
}
