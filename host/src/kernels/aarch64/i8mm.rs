//! `i8mm` tier (FEAT_I8MM): the quantized GEMMs over pairs of tokens with `smmla`.
//!
//! `smmla vd.4s, vn.16b, vm.16b` multiplies a 2x8 int8 matrix (two weight rows, 8 k) by the
//! transpose of another (two tokens, the same 8 k) into a 2x2 i32 block. In `r16k4` each
//! 32-bit element of a weight register is one row's 4 k, so `zip1/zip2 .4s` of two chunks'
//! registers gives row pairs with 8 k: chunks (c, c + 1) for INT8, and for INT4 the low and
//! high nibbles of one register, i.e. chunks (c, c + 4). The activations of the two tokens are
//! arranged the same way with `zip .4s`/`.2d`. Per group: 32 `smmla` into 8 row-pair blocks,
//! then `uzp1`/`uzp2 .4s` give each token's 16 rows for the f32 update of `common::fold`.
//! Which 8 k share one instruction does not matter: the i32 sums are exact. INT4 uses the raw
//! nibbles with the sums started at `-8 * sum(x)` of their token.
//!
//! A single token (decode) and the odd last token use the `dotprod` kernel; other entries
//! come from `dotprod` / `neon`.

use std::arch::aarch64::*;
use std::arch::asm;

use saguaro_engine::kernels::Kernels;
use saguaro_engine::quant::{QuantKind, CHUNK_BYTES, GROUP};

use super::common::{f16x16, fold, q4_correction, q4_nibbles, zero_f32};
use super::driver::{self, for_token_pairs, Gemm, QuantTier};

pub const NAME: &str = "i8mm";

pub fn available() -> bool {
    super::dotprod::available() && std::arch::is_aarch64_feature_detected!("i8mm")
}

/// The table; the `dotprod` table when this CPU lacks the features (so an entry handed out
/// here can always run).
pub fn kernels() -> Kernels {
    if !available() {
        return super::dotprod::kernels();
    }
    Kernels {
        tier: NAME,
        gemm_q8: driver::gemm_q8::<I8mm>,
        gemm_q4: driver::gemm_q4::<I8mm>,
        ..super::dotprod::kernels()
    }
}

/// The tier's microkernels (the driver is `driver`).
pub(super) struct I8mm;

impl QuantTier for I8mm {
    fn available() -> bool {
        available()
    }

    /// Token pairs with `smmla` ([`pair`]), an odd last token with `sdot`.
    ///
    /// # Safety
    /// FEAT_I8MM and FEAT_DotProd present; `g` from `Gemm::new`.
    #[target_feature(enable = "i8mm,dotprod")]
    unsafe fn gemm(g: &Gemm) {
        for_token_pairs(
            g,
            // SAFETY: `bi < nblocks`, `t + 1 < tokens` (`for_token_pairs`); features (caller).
            |bi, t| unsafe {
                match g.kind {
                    QuantKind::Q8 => pair::<false>(g, bi, t),
                    QuantKind::Q4 => pair::<true>(g, bi, t),
                }
            },
            // SAFETY: `bi < nblocks`, `t < tokens`; FEAT_DotProd (caller).
            |bi, t| unsafe { super::dotprod::block_kind::<1>(g, bi, t) },
        )
    }
}

/// `acc += n * m^T` (2x8 by 2x8 int8 into 2x2 i32): `smmla acc.4s, n.16b, m.16b`.
macro_rules! smmla {
    ($acc:expr, $n:expr, $m:expr) => {{
        let mut a: int32x4_t = $acc;
        // Used only inside `unsafe` blocks of functions with FEAT_I8MM enabled and detected.
        asm!(
            "smmla {a:v}.4s, {n:v}.16b, {m:v}.16b",
            a = inout(vreg) a,
            n = in(vreg) $n,
            m = in(vreg) $m,
            options(pure, nomem, nostack, preserves_flags),
        );
        a
    }};
}

#[inline(always)]
fn zip1_32(a: int8x16_t, b: int8x16_t) -> int8x16_t {
    // SAFETY: NEON is a baseline feature of every aarch64 target (register operations).
    unsafe { vreinterpretq_s8_s32(vzip1q_s32(vreinterpretq_s32_s8(a), vreinterpretq_s32_s8(b))) }
}

#[inline(always)]
fn zip2_32(a: int8x16_t, b: int8x16_t) -> int8x16_t {
    // SAFETY: NEON is a baseline feature of every aarch64 target (register operations).
    unsafe { vreinterpretq_s8_s32(vzip2q_s32(vreinterpretq_s32_s8(a), vreinterpretq_s32_s8(b))) }
}

#[inline(always)]
fn zip1_64(a: int8x16_t, b: int8x16_t) -> int8x16_t {
    // SAFETY: NEON is a baseline feature of every aarch64 target (register operations).
    unsafe { vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b))) }
}

#[inline(always)]
fn zip2_64(a: int8x16_t, b: int8x16_t) -> int8x16_t {
    // SAFETY: NEON is a baseline feature of every aarch64 target (register operations).
    unsafe { vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b))) }
}

/// Tokens `t0`, `t0 + 1`, row block `bi`: 16 outputs each.
///
/// # Safety
/// FEAT_I8MM present; `bi < g.nblocks`, `t0 + 2 <= g.tokens`.
#[target_feature(enable = "i8mm,dotprod")]
unsafe fn pair<const Q4: bool>(g: &Gemm, bi: usize, t0: usize) {
    // SAFETY: weight reads stay inside row block `bi` (`groups * group_bytes`
    // bytes from `wdata`), scale reads inside its `groups * 32` bytes, activation reads inside
    // the `cols_padded` bytes and `groups` scales of tokens `t0`, `t0 + 1` (invariants of
    // `Gemm::new`).
    unsafe {
        let wd = g.wdata(bi);
        let sp = g.wscales(bi);
        let (x0, x1) = (g.x(t0), g.x(t0 + 1));
        let (s0, s1) = (g.xscales(t0), g.xscales(t0 + 1));
        let mut acc0 = zero_f32();
        let mut acc1 = zero_f32();
        for gi in 0..g.groups {
            let wg = wd.add(gi * g.group_bytes);
            // a = chunks 0-3 (k 0..16), b = chunks 4-7 (k 16..32) of each token.
            let a0 = vld1q_s8(x0.add(gi * GROUP));
            let b0 = vld1q_s8(x0.add(gi * GROUP + 16));
            let a1 = vld1q_s8(x1.add(gi * GROUP));
            let b1 = vld1q_s8(x1.add(gi * GROUP + 16));
            // isum[q] lanes: (row 2q, t0), (row 2q, t1), (row 2q+1, t0), (row 2q+1, t1).
            // INT4: the sums start at -8 * sum(x) of their token and take the raw nibbles.
            let mut isum = if Q4 {
                let (c0, c1) = (q4_correction(a0, b0), q4_correction(a1, b1));
                [vreinterpretq_s32_u64(vdupq_n_u64((c0 as u32 as u64) | ((c1 as u32 as u64) << 32))); 8]
            } else {
                [vdupq_n_s32(0); 8]
            };
            // Four weight registers `l` (chunk p) and `h` (chunk p'), activations `xp` =
            // [t0 chunk p, t0 chunk p', t1 chunk p, t1 chunk p'].
            macro_rules! pairs {
                ($l:expr, $h:expr, $xp:expr) => {{
                    let (l, h): ([int8x16_t; 4], [int8x16_t; 4]) = ($l, $h);
                    let xp: int8x16_t = $xp;
                    for j in 0..4 {
                        isum[2 * j] = smmla!(isum[2 * j], zip1_32(l[j], h[j]), xp);
                        isum[2 * j + 1] = smmla!(isum[2 * j + 1], zip2_32(l[j], h[j]), xp);
                    }
                }};
            }
            if !Q4 {
                // Chunk pairs (c, c + 1) = 8 consecutive k.
                let xp = [zip1_64(a0, a1), zip2_64(a0, a1), zip1_64(b0, b1), zip2_64(b0, b1)];
                for p in 0..4 {
                    let l = vld1q_s8_x4(wg.add(2 * p * CHUNK_BYTES) as *const i8);
                    let h = vld1q_s8_x4(wg.add((2 * p + 1) * CHUNK_BYTES) as *const i8);
                    pairs!([l.0, l.1, l.2, l.3], [h.0, h.1, h.2, h.3], xp[p]);
                }
            } else {
                // Chunk pairs (c, c + 4): low and high nibbles of the same registers.
                let (z0, z1) = (zip1_32(a0, b0), zip1_32(a1, b1)); // chunks 0,4,1,5
                let (y0, y1) = (zip2_32(a0, b0), zip2_32(a1, b1)); // chunks 2,6,3,7
                let xp = [zip1_64(z0, z1), zip2_64(z0, z1), zip1_64(y0, y1), zip2_64(y0, y1)];
                for c in 0..4 {
                    let v = vld1q_u8_x4(wg.add(c * CHUNK_BYTES));
                    let u = [q4_nibbles(v.0), q4_nibbles(v.1), q4_nibbles(v.2), q4_nibbles(v.3)];
                    pairs!([u[0].0, u[1].0, u[2].0, u[3].0], [u[0].1, u[1].1, u[2].1, u[3].1], xp[c]);
                }
            }
            let mut i0 = [vdupq_n_s32(0); 4];
            let mut i1 = [vdupq_n_s32(0); 4];
            for m in 0..4 {
                i0[m] = vuzp1q_s32(isum[2 * m], isum[2 * m + 1]);
                i1[m] = vuzp2q_s32(isum[2 * m], isum[2 * m + 1]);
            }
            let ws = f16x16(sp.add(gi * 32));
            fold(&mut acc0, &i0, &ws, *s0.add(gi));
            fold(&mut acc1, &i1, &ws, *s1.add(gi));
        }
        g.store(t0, bi, &acc0);
        g.store(t0 + 1, bi, &acc1);
    }
}
