//! The quantized GEMM block kernels with relaxed-simd's integer dot products (compiled only
//! with the engine's `relaxed-simd` cargo feature; the npm package ships this build beside
//! the plain simd128 one and loads it where the runtime validates it).
//!
//! The functions here carry `#[target_feature(enable = "relaxed-simd")]`, but LLVM's wasm
//! backend gives every function of a module the union of their features, and with relaxed-simd
//! it lowers plain pmax / pmin patterns elsewhere (the activation quantizer, clamps in scalar
//! code) to `f32x4.relaxed_max` / `relaxed_min`, whose NaN and signed-zero results differ
//! between runtimes. `scripts/build-npm.sh` turns those back into `f32x4.pmax` / `pmin` (what
//! the plain build makes of the same code) and fails if the module holds any relaxed
//! instruction but the dot product.
//!
//! Why the results stay bit-identical although the instructions are "relaxed": the only
//! implementation-defined cases of `i16x8.relaxed_dot_i8x16_i7x16_s` and
//! `i32x4.relaxed_dot_i8x16_i7x16_add_s` are a second operand with its top bit set (signed or
//! unsigned) and an i16 pair sum beyond i16 (saturated or wrapped). Here the second operand is
//! always a 4-bit or 7-bit weight part (0..=127) and every pair sum is at most
//! 2 x 128 x 127 = 32512 < 32767, so every runtime computes the same exact integers; the f32
//! steps after them are the ones of the plain kernels (`update`), in the same order.
//!
//! - INT4: nibbles (0..15) are the 7-bit operand as they are. A pair sum is at most
//!   2 x 128 x 15 = 3840, so the 8 chunks of a group sum exactly in i16 (<= 30720) and widen to
//!   i32 once per group: one dot and one add per 16 multiply-adds per token, against two
//!   `i32x4_dot_i16x8` and two adds plus the nibble widening in the plain kernel.
//! - INT8 keeps the plain kernel. Measured slower here (Node 20, Xeon, 350M shape, prefill 256:
//!   49-54 against 68 tok/s): each byte split into two 4-bit parts, `w = 16 (h - 8) + l`, summed
//!   in i16 like the nibbles (two dots per 16 multiply-adds, as many as the plain kernel's
//!   `i32x4_dot_i16x8`, plus the split). The i32 form `i32x4.relaxed_dot_i8x16_i7x16_add_s`
//!   (one instruction on AVX-VNNI or ARM DOTPROD) is avoided: Node 20's baseline compiler
//!   (Liftoff) returns twice the sum for it (found by the bit-exactness tests).

use core::arch::wasm32::*;

use super::{load_scales, store16, update, Job, CHUNKS};
use crate::quant::{CHUNK_BYTES, CHUNK_K, GROUP, ROW_BLOCK};

/// Fills `xv` `[groups][8 chunks][nt]` with each chunk's 4 int8 activations repeated 4 times
/// (one per row of a 4-row quad) and `corr` `[groups][nt]` with `8 * sum(x)` of the group in
/// every lane (the nibbles' offset: `sum((n - 8) x) = sum(n x) - 8 sum(x)`).
pub(super) fn prepare_acts(
    acts: &super::QuantActs,
    t0: usize,
    nt: usize,
    groups: usize,
    xv: &mut Vec<v128>,
    corr: &mut Vec<v128>,
) {
    let cp = acts.cols_padded;
    assert!((t0 + nt) * cp <= acts.q.len() && groups * GROUP <= cp, "gemm: activations too short");
    xv.clear();
    corr.clear();
    let q = acts.q.as_ptr();
    for g in 0..groups {
        for c in 0..CHUNKS {
            for t in t0..t0 + nt {
                // SAFETY: t < t0 + nt and g * 32 + c * 4 + 4 <= cp (asserted above).
                xv.push(unsafe { v128_load32_splat(q.add(t * cp + g * GROUP + c * CHUNK_K) as *const u32) });
            }
        }
        for t in t0..t0 + nt {
            let sum: i32 = acts.q[t * cp + g * GROUP..][..GROUP].iter().map(|&v| v as i32).sum();
            corr.push(i32x4_splat(8 * sum));
        }
    }
}

/// Exact i16 pair sums `x * n` of a 7-bit `n` (see the module doc).
#[inline]
#[target_feature(enable = "relaxed-simd")]
fn dot16(x: v128, n: v128) -> v128 {
    i16x8_relaxed_dot_i8x16_i7x16(x, n)
}

/// Low nibbles (chunk p) and high nibbles (chunk p + 4) of 4 rows x 4 k, as 0..15 bytes.
#[inline(always)]
fn split_q4(w: v128) -> (v128, v128) {
    (v128_and(w, u8x16_splat(0x0F)), u8x16_shr(w, 4))
}

/// INT4, `N` tokens (1 = decode) per pass over row block `rb`; outputs of token `t` at
/// `out + t * width`.
///
/// # Safety
/// As [`super::gemm`]'s call: block `rb` exists, tokens `t0 .. t0 + N` exist and `xv` / `corr`
/// were filled for them by [`prepare_acts`], `out + t * width + 16` is writable for `t < N`.
#[target_feature(enable = "relaxed-simd")]
pub(super) unsafe fn q4_block<const N: usize>(
    job: &Job,
    rb: usize,
    t0: usize,
    xv: &[v128],
    corr: &[v128],
    out: *mut f32,
    width: usize,
) {
    let groups = job.groups;
    // SAFETY: block rb's data and scales are in bounds (checked in gemm).
    let (wb, sb) =
        unsafe { (job.data.add(rb * groups * job.group_bytes), job.scales.add(rb * groups * ROW_BLOCK * 2)) };
    let xs = &job.acts.scales;
    let mut acc = [[f32x4_splat(0.0); 4]; N];
    for (g, (xg, cg)) in xv.chunks_exact(CHUNKS * N).zip(corr.chunks_exact(N)).enumerate() {
        // SAFETY: g < groups.
        let wg = unsafe { wb.add(g * job.group_bytes) };
        // SAFETY: 32 scale bytes of group g.
        let ws = unsafe { load_scales(sb.add(g * ROW_BLOCK * 2)) };
        let xsv: [v128; N] = std::array::from_fn(|t| f32x4_splat(xs[(t0 + t) * groups + g]));
        for (v, &wsv) in ws.iter().enumerate() {
            let mut s = [i16x8_splat(0); N];
            for p in 0..CHUNKS / 2 {
                // SAFETY: rows 4v..4v+3 of chunks p and p + 4 of group g.
                let wv = unsafe { v128_load(wg.add(p * CHUNK_BYTES + v * 16) as *const v128) };
                let (lo, hi) = split_q4(wv);
                let (xa, xb) = (&xg[p * N..(p + 1) * N], &xg[(p + CHUNKS / 2) * N..(p + CHUNKS / 2 + 1) * N]);
                for t in 0..N {
                    s[t] = i16x8_add(s[t], i16x8_add(dot16(xa[t], lo), dot16(xb[t], hi)));
                }
            }
            for t in 0..N {
                let isum = i32x4_sub(i32x4_extadd_pairwise_i16x8(s[t]), cg[t]);
                acc[t][v] = update(acc[t][v], wsv, xsv[t], isum);
            }
        }
    }
    for (t, a) in acc.iter().enumerate() {
        // SAFETY: token t's 16 outputs.
        unsafe { store16(out.add(t * width), a[0], a[1], a[2], a[3]) };
    }
}
