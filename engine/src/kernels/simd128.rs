//! WebAssembly simd128 kernels (stable `core::arch::wasm32` intrinsics).
//!
//! With the engine's `relaxed-simd` cargo feature (the npm package's second module) the INT4
//! GEMM uses relaxed-simd's 8-bit dot product instead, in [`relaxed`] (its doc says why the
//! results stay the same bits), and the tier is named `simd128+relaxed`.
//!
//! Compiled only for `wasm32` with `target_feature = "simd128"` (`-C target-feature=+simd128`),
//! where [`super::Kernels::portable`] returns [`kernels`]. Every entry returns results
//! bit-identical to [`super::scalar`] (the definition), which fixes the order of each f32
//! operation:
//! - f32 dot products keep the 16 canonical partial sums in four `f32x4` accumulators
//!   (element `i` in lane `i % 16`), multiply then add (wasm has no FMA), a zero-filled tail,
//!   and the pairwise reduction `p[j] += p[j + 8]`, `+4`, `+2`, `+1`;
//! - f16 / bf16 weights are widened exactly (integer bit tricks, the same bits as `half`);
//! - quantized GEMM sums the 32 int8 products of a group exactly in i32
//!   (`i32x4_dot_i16x8` on sign- or zero-extended values), then
//!   `acc += (w_scale * x_scale) * (isum as f32)` per group in order, as the scalar code.
//!
//! Tests (`#[cfg(test)]` below) compare every entry with the scalar kernel bit for bit; they
//! run under Node's WASI with `scripts/test-wasm-kernels.sh`.
//!
//! Why this tier is here and not with the native tiers in `host/src/kernels`: the wasm
//! builds (npm package, WASI component) compile this crate without the host crate, and wasm
//! has no run-time feature detection, so the tier is chosen at compile time by
//! [`super::Kernels::portable`] rather than by the host's `select()` (see
//! `host/src/kernels/README.md`).

use core::arch::wasm32::*;
use std::ops::Range;

use super::{Kernels, QuantActs, QuantMatrix, F32_LANES};
use crate::quant::{QuantKind, QuantShape, CHUNK_BYTES, CHUNK_K, GROUP, ROW_BLOCK};

#[cfg(feature = "relaxed-simd")]
mod relaxed;

/// The tier's name in [`Kernels::tier`] (and the model info the packages report).
#[cfg(not(feature = "relaxed-simd"))]
const TIER: &str = "simd128";
/// With relaxed-simd the quantized GEMM uses the 8-bit dot products ([`relaxed`]).
#[cfg(feature = "relaxed-simd")]
const TIER: &str = "simd128+relaxed";

/// The simd128 kernel table.
pub const fn kernels() -> Kernels {
    Kernels {
        tier: TIER,
        dot_f32,
        matmul_f32,
        matmul_f16,
        matmul_bf16,
        quantize_row,
        gemm_q8,
        gemm_q4,
        axpy,
        // softmax and silu_mul (libm-free exp) stay scalar.
        ..Kernels::scalar()
    }
}

// ---------------------------------------------------------------------------------------
// f32 dot products
// ---------------------------------------------------------------------------------------

/// Loads 4 f32 from an unaligned pointer.
///
/// # Safety
/// `p .. p + 4` must be readable.
#[inline(always)]
unsafe fn ld(p: *const f32) -> v128 {
    // SAFETY: the caller guarantees 16 readable bytes; wasm loads need no alignment.
    unsafe { v128_load(p as *const v128) }
}

/// The canonical pairwise reduction of the 16 partial sums held as lanes 0-3, 4-7, 8-11, 12-15.
#[inline(always)]
fn reduce16(a0: v128, a1: v128, a2: v128, a3: v128) -> f32 {
    // p[j] += p[j + 8] for j < 8.
    let s0 = f32x4_add(a0, a2);
    let s1 = f32x4_add(a1, a3);
    // p[j] += p[j + 4] for j < 4.
    let s = f32x4_add(s0, s1);
    // p[j] += p[j + 2] for j < 2.
    let s = f32x4_add(s, i32x4_shuffle::<2, 3, 2, 3>(s, s));
    // p[0] += p[1].
    f32x4_extract_lane::<0>(s) + f32x4_extract_lane::<1>(s)
}

/// `N` canonical dot products sharing the operand `a`: `out[n] = dot_f32(a, b[n])`
/// (products are `a[i] * b[n][i]`; f32 multiplication is commutative, so the operand order
/// does not matter for the bits).
///
/// # Safety
/// `a` and every `b[n]` must point to `len` readable f32.
#[inline(always)]
unsafe fn dot_n<const N: usize>(a: *const f32, b: [*const f32; N], len: usize) -> [f32; N] {
    let z = f32x4_splat(0.0);
    let mut acc = [[z; 4]; N];
    let full = len / F32_LANES;
    for i in 0..full {
        let o = i * F32_LANES;
        // SAFETY: o + 16 <= len.
        let (x0, x1, x2, x3) = unsafe { (ld(a.add(o)), ld(a.add(o + 4)), ld(a.add(o + 8)), ld(a.add(o + 12))) };
        for n in 0..N {
            let bn = b[n];
            // SAFETY: o + 16 <= len.
            let (y0, y1, y2, y3) = unsafe { (ld(bn.add(o)), ld(bn.add(o + 4)), ld(bn.add(o + 8)), ld(bn.add(o + 12))) };
            acc[n][0] = f32x4_add(acc[n][0], f32x4_mul(x0, y0));
            acc[n][1] = f32x4_add(acc[n][1], f32x4_mul(x1, y1));
            acc[n][2] = f32x4_add(acc[n][2], f32x4_mul(x2, y2));
            acc[n][3] = f32x4_add(acc[n][3], f32x4_mul(x3, y3));
        }
    }
    let rem = len % F32_LANES;
    if rem != 0 {
        // Zero-filled tail: lanes past the end add 0 * 0 = +0, as the scalar definition.
        let o = full * F32_LANES;
        let mut pa = [0.0f32; F32_LANES];
        // SAFETY: o + rem == len.
        unsafe { std::ptr::copy_nonoverlapping(a.add(o), pa.as_mut_ptr(), rem) };
        let pp = pa.as_ptr();
        // SAFETY: pa holds 16 f32.
        let (x0, x1, x2, x3) = unsafe { (ld(pp), ld(pp.add(4)), ld(pp.add(8)), ld(pp.add(12))) };
        for n in 0..N {
            let mut pb = [0.0f32; F32_LANES];
            // SAFETY: o + rem == len.
            unsafe { std::ptr::copy_nonoverlapping(b[n].add(o), pb.as_mut_ptr(), rem) };
            let qp = pb.as_ptr();
            // SAFETY: pb holds 16 f32.
            let (y0, y1, y2, y3) = unsafe { (ld(qp), ld(qp.add(4)), ld(qp.add(8)), ld(qp.add(12))) };
            acc[n][0] = f32x4_add(acc[n][0], f32x4_mul(x0, y0));
            acc[n][1] = f32x4_add(acc[n][1], f32x4_mul(x1, y1));
            acc[n][2] = f32x4_add(acc[n][2], f32x4_mul(x2, y2));
            acc[n][3] = f32x4_add(acc[n][3], f32x4_mul(x3, y3));
        }
    }
    let mut out = [0.0f32; N];
    for n in 0..N {
        out[n] = reduce16(acc[n][0], acc[n][1], acc[n][2], acc[n][3]);
    }
    out
}

/// Canonical f32 dot product (see [`super::scalar::dot_f32`]).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
    // SAFETY: both slices hold a.len() f32.
    unsafe { dot_n::<1>(a.as_ptr(), [b.as_ptr()], a.len())[0] }
}

/// `out[t][r] = dot_f32(x[t], w[r])`. One token: two rows share each load of x. Several
/// tokens: each row of w is loaded once for two tokens.
pub fn matmul_f32(x: &[f32], w: &[f32], cols: usize, out: &mut [f32]) {
    assert!(cols > 0 && x.len().is_multiple_of(cols) && w.len().is_multiple_of(cols), "matmul_f32: bad shapes");
    let rows = w.len() / cols;
    let tokens = x.len() / cols;
    assert_eq!(out.len(), tokens * rows, "matmul_f32: bad output length");
    if tokens == 1 {
        let xp = x.as_ptr();
        let mut r = 0;
        while r + 2 <= rows {
            let wp = w[r * cols..].as_ptr();
            // SAFETY: rows r and r + 1 exist: wp and wp + cols address `cols` f32 of w; x holds
            // `cols` f32.
            let d = unsafe { dot_n::<2>(xp, [wp, wp.add(cols)], cols) };
            out[r] = d[0];
            out[r + 1] = d[1];
            r += 2;
        }
        if r < rows {
            // SAFETY: row r exists; x holds `cols` f32.
            out[r] = unsafe { dot_n::<1>(xp, [w[r * cols..].as_ptr()], cols)[0] };
        }
        return;
    }
    for r in 0..rows {
        let wp = w[r * cols..].as_ptr();
        rows_times_tokens(wp, x, cols, rows, r, out);
    }
}

/// `out[t * rows + r] = dot(w_row, x[t])` for every token, two tokens per pass over the row.
#[inline(always)]
fn rows_times_tokens(wp: *const f32, x: &[f32], cols: usize, rows: usize, r: usize, out: &mut [f32]) {
    let tokens = x.len() / cols;
    let mut t = 0;
    while t + 2 <= tokens {
        let xp = x[t * cols..].as_ptr();
        // SAFETY: tokens t and t + 1 exist; wp addresses `cols` f32.
        let d = unsafe { dot_n::<2>(wp, [xp, xp.add(cols)], cols) };
        out[t * rows + r] = d[0];
        out[(t + 1) * rows + r] = d[1];
        t += 2;
    }
    if t < tokens {
        // SAFETY: token t exists; wp addresses `cols` f32.
        out[t * rows + r] = unsafe { dot_n::<1>(wp, [x[t * cols..].as_ptr()], cols)[0] };
    }
}

/// `y += a * x` elementwise, multiply rounded then add (see [`super::scalar::axpy`]).
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy: length mismatch");
    let n = x.len();
    let av = f32x4_splat(a);
    let full = n / 4;
    let (xp, yp) = (x.as_ptr(), y.as_mut_ptr());
    for i in 0..full {
        // SAFETY: 4 i + 4 <= n for both slices.
        unsafe {
            let yv = f32x4_add(ld(yp.add(4 * i)), f32x4_mul(av, ld(xp.add(4 * i))));
            v128_store(yp.add(4 * i) as *mut v128, yv);
        }
    }
    for (yi, &xi) in y[4 * full..].iter_mut().zip(&x[4 * full..]) {
        *yi += a * xi;
    }
}

// ---------------------------------------------------------------------------------------
// f16 / bf16 weights
// ---------------------------------------------------------------------------------------

/// A 16-bit float format widened exactly to f32 by integer operations.
trait Half {
    /// Bits of the largest magnitude the fast path converts exactly (`|h| & 0x7fff`):
    /// above it, [`Half::exact`] is used for the whole row.
    const FAST_MAX: u16;
    /// Widens the 8 values of `v` to two f32x4 (values with `|h| <= FAST_MAX` exactly).
    fn widen(v: v128) -> (v128, v128);
    /// The exact definition (the `half` crate's conversion, as the scalar kernel).
    fn exact(b: [u8; 2]) -> f32;
}

struct F16;
struct Bf16;

/// 2^112: rescales an f16 exponent field placed in an f32 (bias 15 -> bias 127).
const F16_RESCALE: f32 = f32::from_bits((127 + 112) << 23);

/// Widens f16 whose i32 lanes are sign-extended from the 16-bit pattern: sign to bit 31,
/// exponent and mantissa to bits 27..13, times 2^112. Exact for zeros, subnormals and
/// normals (not for inf / NaN, exponent 31).
#[inline(always)]
fn f16_lanes(h: v128) -> v128 {
    let bits = v128_and(i32x4_shl(h, 13), u32x4_splat(0x8FFF_E000));
    f32x4_mul(bits, f32x4_splat(F16_RESCALE))
}

impl Half for F16 {
    const FAST_MAX: u16 = 0x7BFF;
    #[inline(always)]
    fn widen(v: v128) -> (v128, v128) {
        (f16_lanes(i32x4_extend_low_i16x8(v)), f16_lanes(i32x4_extend_high_i16x8(v)))
    }
    fn exact(b: [u8; 2]) -> f32 {
        half::f16::from_le_bytes(b).to_f32()
    }
}

impl Half for Bf16 {
    /// bf16 widening is a shift for everything but NaN (which `half` quiets).
    const FAST_MAX: u16 = 0x7F80;
    #[inline(always)]
    fn widen(v: v128) -> (v128, v128) {
        let z = i16x8_splat(0);
        (i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(z, v), i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(z, v))
    }
    fn exact(b: [u8; 2]) -> f32 {
        half::bf16::from_le_bytes(b).to_f32()
    }
}

/// Running maximum of `|h|` over 8 halves (the check for values outside the fast path).
#[inline(always)]
fn mag_max(m: v128, v: v128) -> v128 {
    u16x8_max(m, v128_and(v, u16x8_splat(0x7FFF)))
}

#[inline(always)]
fn over_fast<H: Half>(m: v128) -> bool {
    v128_any_true(u16x8_gt(m, u16x8_splat(H::FAST_MAX)))
}

/// Widens one row (`w.len() / 2` values) into `row`, exactly as the scalar kernel.
fn widen_row<H: Half>(w: &[u8], row: &mut [f32]) {
    let n = row.len();
    debug_assert_eq!(w.len(), 2 * n);
    let full = n / 8;
    let mut m = u16x8_splat(0);
    for i in 0..full {
        // SAFETY: 16 bytes at 16 i (<= 2 n) are in `w`, 8 f32 at 8 i in `row`.
        unsafe {
            let v = v128_load(w.as_ptr().add(16 * i) as *const v128);
            m = mag_max(m, v);
            let (a, b) = H::widen(v);
            let o = row.as_mut_ptr().add(8 * i);
            v128_store(o as *mut v128, a);
            v128_store(o.add(4) as *mut v128, b);
        }
    }
    if over_fast::<H>(m) {
        for (v, b) in row.iter_mut().zip(w.chunks_exact(2)) {
            *v = H::exact([b[0], b[1]]);
        }
        return;
    }
    for (v, b) in row[full * 8..].iter_mut().zip(w[full * 16..].chunks_exact(2)) {
        *v = H::exact([b[0], b[1]]);
    }
}

/// One token: `dot_f32(x, widen(w_row))` with the widening fused into the loop. `None` if
/// the row holds a value outside the fast path (the caller then widens it exactly).
///
/// # Safety
/// `x` points to `cols` f32 and `w` to `2 * cols` bytes.
#[inline(always)]
unsafe fn dot_half_row<H: Half>(x: *const f32, w: *const u8, cols: usize) -> Option<f32> {
    let z = f32x4_splat(0.0);
    let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
    let mut m = u16x8_splat(0);
    let full = cols / F32_LANES;
    for i in 0..full {
        let o = i * F32_LANES;
        // SAFETY: o + 16 <= cols.
        unsafe {
            let v0 = v128_load(w.add(2 * o) as *const v128);
            let v1 = v128_load(w.add(2 * o + 16) as *const v128);
            m = mag_max(mag_max(m, v0), v1);
            let (w0, w1) = H::widen(v0);
            let (w2, w3) = H::widen(v1);
            a0 = f32x4_add(a0, f32x4_mul(ld(x.add(o)), w0));
            a1 = f32x4_add(a1, f32x4_mul(ld(x.add(o + 4)), w1));
            a2 = f32x4_add(a2, f32x4_mul(ld(x.add(o + 8)), w2));
            a3 = f32x4_add(a3, f32x4_mul(ld(x.add(o + 12)), w3));
        }
    }
    if over_fast::<H>(m) {
        return None;
    }
    let rem = cols % F32_LANES;
    if rem != 0 {
        let o = full * F32_LANES;
        let mut px = [0.0f32; F32_LANES];
        let mut pw = [0.0f32; F32_LANES];
        for j in 0..rem {
            // SAFETY: o + j < cols.
            unsafe {
                px[j] = *x.add(o + j);
                pw[j] = H::exact([*w.add(2 * (o + j)), *w.add(2 * (o + j) + 1)]);
            }
        }
        let (xp, wp) = (px.as_ptr(), pw.as_ptr());
        // SAFETY: both buffers hold 16 f32.
        unsafe {
            a0 = f32x4_add(a0, f32x4_mul(ld(xp), ld(wp)));
            a1 = f32x4_add(a1, f32x4_mul(ld(xp.add(4)), ld(wp.add(4))));
            a2 = f32x4_add(a2, f32x4_mul(ld(xp.add(8)), ld(wp.add(8))));
            a3 = f32x4_add(a3, f32x4_mul(ld(xp.add(12)), ld(wp.add(12))));
        }
    }
    Some(reduce16(a0, a1, a2, a3))
}

fn matmul_half<H: Half>(x: &[f32], w: &[u8], cols: usize, out: &mut [f32]) {
    assert!(cols > 0 && x.len().is_multiple_of(cols) && w.len().is_multiple_of(2 * cols), "matmul_half: bad shapes");
    let rows = w.len() / (2 * cols);
    let tokens = x.len() / cols;
    assert_eq!(out.len(), tokens * rows, "matmul_half: bad output length");
    let mut row = Vec::new();
    if tokens == 1 {
        for (r, o) in out.iter_mut().enumerate() {
            let wr = &w[r * 2 * cols..(r + 1) * 2 * cols];
            // SAFETY: x holds cols f32, wr 2 * cols bytes.
            *o = match unsafe { dot_half_row::<H>(x.as_ptr(), wr.as_ptr(), cols) } {
                Some(v) => v,
                None => {
                    row.resize(cols, 0.0);
                    widen_row::<H>(wr, &mut row);
                    dot_f32(x, &row)
                }
            };
        }
        return;
    }
    row.resize(cols, 0.0);
    for r in 0..rows {
        widen_row::<H>(&w[r * 2 * cols..(r + 1) * 2 * cols], &mut row);
        rows_times_tokens(row.as_ptr(), x, cols, rows, r, out);
    }
}

/// `matmul_f32` with little-endian f16 weights (see [`super::scalar::matmul_f16`]).
pub fn matmul_f16(x: &[f32], w: &[u8], cols: usize, out: &mut [f32]) {
    matmul_half::<F16>(x, w, cols, out)
}

/// `matmul_f32` with little-endian bf16 weights (see [`super::scalar::matmul_bf16`]).
pub fn matmul_bf16(x: &[f32], w: &[u8], cols: usize, out: &mut [f32]) {
    matmul_half::<Bf16>(x, w, cols, out)
}

// ---------------------------------------------------------------------------------------
// Activation quantization
// ---------------------------------------------------------------------------------------

/// Activation quantization of one row (see [`super::scalar::quantize_row`]).
pub fn quantize_row(x: &[f32], q: &mut [i8], scales: &mut [f32]) {
    assert!(q.len() == scales.len() * GROUP && x.len() <= q.len(), "quantize_row: bad lengths");
    let full = x.len() / GROUP;
    for (g, (qg, s)) in q.chunks_exact_mut(GROUP).zip(scales.iter_mut()).enumerate() {
        if g < full {
            *s = quantize_group(&x[g * GROUP..(g + 1) * GROUP], qg);
        } else {
            let start = (g * GROUP).min(x.len());
            let mut pad = [0.0f32; GROUP];
            pad[..x.len() - start].copy_from_slice(&x[start..]);
            *s = quantize_group(&pad, qg);
        }
    }
}

/// One group of 32 (zero padded by the caller): returns the scale, writes 32 values.
#[inline(always)]
fn quantize_group(x: &[f32], q: &mut [i8]) -> f32 {
    debug_assert!(x.len() == GROUP && q.len() == GROUP);
    // SAFETY: x holds 32 f32.
    let v: [v128; 8] = std::array::from_fn(|i| unsafe { ld(x.as_ptr().add(4 * i)) });
    // amax = max |x|. pmax(m, a) = if m < a { a } else { m }: NaN inputs are skipped as by
    // f32::max in the scalar fold (which starts at 0 too); max is exact and order-free.
    let mut m = f32x4_splat(0.0);
    for &vi in &v {
        m = f32x4_pmax(m, f32x4_abs(vi));
    }
    m = f32x4_pmax(m, i32x4_shuffle::<2, 3, 0, 1>(m, m));
    m = f32x4_pmax(m, i32x4_shuffle::<1, 0, 3, 2>(m, m));
    let amax = f32x4_extract_lane::<0>(m);
    if amax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    let inv = f32x4_splat(127.0 / amax);
    // round_ties_even(x * inv) (exactly f32x4_nearest), then to integer: trunc_sat is exact on
    // integral values, saturates infinities and maps NaN to 0 like `as i8`; the saturating
    // narrows and the max with -127 give the clamp to [-127, 127].
    let r: [v128; 8] = std::array::from_fn(|i| i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(v[i], inv))));
    let lo = i8x16_narrow_i16x8(i16x8_narrow_i32x4(r[0], r[1]), i16x8_narrow_i32x4(r[2], r[3]));
    let hi = i8x16_narrow_i16x8(i16x8_narrow_i32x4(r[4], r[5]), i16x8_narrow_i32x4(r[6], r[7]));
    let min = i8x16_splat(-127);
    // SAFETY: q holds 32 bytes.
    unsafe {
        v128_store(q.as_mut_ptr() as *mut v128, i8x16_max(lo, min));
        v128_store(q.as_mut_ptr().add(16) as *mut v128, i8x16_max(hi, min));
    }
    amax / 127.0
}

// ---------------------------------------------------------------------------------------
// Quantized GEMM (r16k4)
// ---------------------------------------------------------------------------------------
//
// One 16-byte load of a 64-byte chunk holds 4 rows x 4 k. Sign-extended to i16 (low half:
// rows 0-1, high half: rows 2-3) and multiplied by the chunk's 4 activations repeated twice
// with `i32x4_dot_i16x8`, it gives each row's two pair sums; over a group these accumulate
// exactly in i32 and one shuffle-add per 4 rows finishes the 32-product sums.
// INT4: nibbles are zero-extended (0..15) and the offset is removed once per group:
// sum((n - 8) x) = sum(n x) - 8 sum(x), exact in i32.
//
// Speed (Node 20 / V8 on x86-64): `i32x4_dot_i16x8` (pmaddwd, 8 multiply-adds) is the widest
// integer multiply-add in simd128 (the i8 dot products are relaxed-simd), so the inner loops
// are bound by it: about 30 G multiply-adds/s for decode on one core (Q8 ~30 GB/s of weights,
// Q4 ~16 GB/s), about 40 G with the 4-token prefill tile. Variants measured slower: splitting
// each 16-byte load into even/odd bytes (whole-row sums without the final shuffle), one quad
// at a time, and token tiles of 2 or 3.

/// Tokens per pass over the weights in prefill (each weight vector feeds this many tokens).
const TILE: usize = 4;
/// Bytes of weights per panel of row blocks kept in cache while every token tile passes.
const PANEL_BYTES: usize = 512 * 1024;
/// Chunks of 4 k per group.
const CHUNKS: usize = GROUP / CHUNK_K;

/// INT8-weight matmul (see [`super::scalar::gemm_q8`]).
pub fn gemm_q8(w: &QuantMatrix, acts: &QuantActs, blocks: Range<usize>, out: &mut [f32]) {
    gemm(QuantKind::Q8, w, acts, blocks, out)
}

/// INT4-weight matmul (see [`super::scalar::gemm_q4`]).
pub fn gemm_q4(w: &QuantMatrix, acts: &QuantActs, blocks: Range<usize>, out: &mut [f32]) {
    gemm(QuantKind::Q4, w, acts, blocks, out)
}

/// Pointers and sizes shared by the block kernels.
struct Job<'a> {
    /// Start of the data of row block 0.
    data: *const u8,
    /// Start of the f16 scales of row block 0.
    scales: *const u8,
    groups: usize,
    group_bytes: usize,
    acts: &'a QuantActs,
}

fn gemm(kind: QuantKind, w: &QuantMatrix, acts: &QuantActs, blocks: Range<usize>, out: &mut [f32]) {
    let groups = w.shape.groups();
    assert_eq!(acts.cols_padded, w.shape.cols_padded, "gemm: activation width mismatch");
    assert!(blocks.end <= w.shape.row_blocks(), "gemm: row blocks out of range");
    let nblocks = blocks.len();
    let width = nblocks * ROW_BLOCK;
    assert_eq!(out.len(), acts.tokens * width, "gemm: bad output length");
    let group_bytes = QuantShape::block_group_bytes(kind);
    assert!(
        w.data.len() >= blocks.end * groups * group_bytes
            && w.scales.len() >= blocks.end * groups * ROW_BLOCK * 2
            && acts.q.len() >= acts.tokens * acts.cols_padded
            && acts.scales.len() >= acts.tokens * groups,
        "gemm: buffers too short"
    );
    if nblocks == 0 || acts.tokens == 0 {
        return;
    }
    let job = Job { data: w.data.as_ptr(), scales: w.scales.as_ptr(), groups, group_bytes, acts };
    let tokens = acts.tokens;
    let panel = if tokens <= TILE { nblocks } else { (PANEL_BYTES / (groups * group_bytes).max(1)).clamp(1, nblocks) };
    let mut xv: Vec<v128> = Vec::with_capacity(groups * CHUNKS * TILE.min(tokens));
    let mut corr: Vec<v128> = Vec::with_capacity(groups * TILE.min(tokens));
    let mut p0 = blocks.start;
    while p0 < blocks.end {
        let p1 = (p0 + panel).min(blocks.end);
        let mut t0 = 0;
        while t0 < tokens {
            let nt = TILE.min(tokens - t0);
            prepare_acts(kind, acts, t0, nt, groups, &mut xv, &mut corr);
            for rb in p0..p1 {
                let o = t0 * width + (rb - blocks.start) * ROW_BLOCK;
                let outp = out[o..].as_mut_ptr();
                // SAFETY: rb < blocks.end (data and scales checked above); tokens t0 .. t0 + nt
                // exist; out holds rows o + t * width .. + 16 for t < nt (o + (nt - 1) * width
                // + 16 <= tokens * width); xv / corr were just filled for nt tokens.
                unsafe { block(kind, nt, &job, rb, t0, &xv, &corr, outp, width) }
            }
            t0 += nt;
        }
        p0 = p1;
    }
}

/// Row block `rb` for tokens `t0 .. t0 + nt` (nt <= [`TILE`]). INT4 runs the relaxed-simd
/// kernels ([`relaxed`]) in the build with that feature; INT8 always runs the plain ones (see
/// the relaxed module's doc).
///
/// # Safety
/// See the call in [`gemm`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    kind: QuantKind,
    nt: usize,
    job: &Job,
    rb: usize,
    t0: usize,
    xv: &[v128],
    corr: &[v128],
    out: *mut f32,
    width: usize,
) {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        match (kind, nt) {
            (QuantKind::Q8, 1) => q8_block_1(job, rb, t0, xv, out),
            (QuantKind::Q8, 2) => q8_block_n::<2>(job, rb, t0, xv, out, width),
            (QuantKind::Q8, 3) => q8_block_n::<3>(job, rb, t0, xv, out, width),
            (QuantKind::Q8, _) => q8_block_n::<4>(job, rb, t0, xv, out, width),
            #[cfg(not(feature = "relaxed-simd"))]
            (QuantKind::Q4, 1) => q4_block_1(job, rb, t0, xv, corr, out),
            #[cfg(not(feature = "relaxed-simd"))]
            (QuantKind::Q4, 2) => q4_block_n::<2>(job, rb, t0, xv, corr, out, width),
            #[cfg(not(feature = "relaxed-simd"))]
            (QuantKind::Q4, 3) => q4_block_n::<3>(job, rb, t0, xv, corr, out, width),
            #[cfg(not(feature = "relaxed-simd"))]
            (QuantKind::Q4, _) => q4_block_n::<4>(job, rb, t0, xv, corr, out, width),
            #[cfg(feature = "relaxed-simd")]
            (QuantKind::Q4, 1) => relaxed::q4_block::<1>(job, rb, t0, xv, corr, out, width),
            #[cfg(feature = "relaxed-simd")]
            (QuantKind::Q4, 2) => relaxed::q4_block::<2>(job, rb, t0, xv, corr, out, width),
            #[cfg(feature = "relaxed-simd")]
            (QuantKind::Q4, 3) => relaxed::q4_block::<3>(job, rb, t0, xv, corr, out, width),
            #[cfg(feature = "relaxed-simd")]
            (QuantKind::Q4, _) => relaxed::q4_block::<4>(job, rb, t0, xv, corr, out, width),
        }
    }
}

/// Fills `xv` `[groups][8 chunks][nt]` with each chunk's 4 activations as i16, repeated twice
/// (`[x0, x1, x2, x3, x0, x1, x2, x3]`), and for INT4 `corr` `[groups][nt]` with
/// `8 * sum(x)` of the group in every lane.
fn prepare_acts(
    kind: QuantKind,
    acts: &QuantActs,
    t0: usize,
    nt: usize,
    groups: usize,
    xv: &mut Vec<v128>,
    corr: &mut Vec<v128>,
) {
    // The relaxed INT4 kernels take the activations as int8 (relaxed::prepare_acts).
    #[cfg(feature = "relaxed-simd")]
    if kind == QuantKind::Q4 {
        return relaxed::prepare_acts(acts, t0, nt, groups, xv, corr);
    }
    let cp = acts.cols_padded;
    assert!((t0 + nt) * cp <= acts.q.len() && groups * GROUP <= cp, "gemm: activations too short");
    xv.clear();
    corr.clear();
    let q = acts.q.as_ptr();
    for g in 0..groups {
        for c in 0..CHUNKS {
            for t in t0..t0 + nt {
                // SAFETY: t < t0 + nt and g * 32 + c * 4 + 4 <= cp (asserted above).
                let x4 = unsafe { v128_load32_splat(q.add(t * cp + g * GROUP + c * CHUNK_K) as *const u32) };
                xv.push(i16x8_extend_low_i8x16(x4));
            }
        }
        if kind == QuantKind::Q4 {
            let xg = &xv[g * CHUNKS * nt..];
            for t in 0..nt {
                // Sum of the 8 chunk vectors (|sum| <= 8 * 128 fits i16): lanes j and j + 4
                // both hold sum_c x[4c + j]; times 8 in pairs, then the two pairs added.
                let mut s = xg[t];
                for c in 1..CHUNKS {
                    s = i16x8_add(s, xg[c * nt + t]);
                }
                let d = i32x4_dot_i16x8(s, i16x8_splat(8));
                corr.push(i32x4_add(d, i32x4_shuffle::<1, 0, 3, 2>(d, d)));
            }
        }
    }
}

/// The 16 f16 scales of one (row block, group) as four f32x4 (rows 0-3, 4-7, 8-11, 12-15).
///
/// # Safety
/// `p` points to 32 readable bytes.
#[inline(always)]
unsafe fn load_scales(p: *const u8) -> [v128; 4] {
    // SAFETY: 32 readable bytes.
    let (s0, s1) = unsafe { (v128_load(p as *const v128), v128_load(p.add(16) as *const v128)) };
    if over_fast::<F16>(mag_max(mag_max(u16x8_splat(0), s0), s1)) {
        // SAFETY: as above.
        return unsafe { load_scales_exact(p) };
    }
    let (a, b) = F16::widen(s0);
    let (c, d) = F16::widen(s1);
    [a, b, c, d]
}

/// Infinite or NaN scales: the exact conversion (never on a valid model).
///
/// # Safety
/// `p` points to 32 readable bytes.
#[cold]
#[inline(never)]
unsafe fn load_scales_exact(p: *const u8) -> [v128; 4] {
    let mut f = [0.0f32; ROW_BLOCK];
    for (i, v) in f.iter_mut().enumerate() {
        // SAFETY: i < 16, 2 i + 1 < 32.
        *v = unsafe { F16::exact([*p.add(2 * i), *p.add(2 * i + 1)]) };
    }
    // SAFETY: f holds 16 f32.
    unsafe { [ld(f.as_ptr()), ld(f.as_ptr().add(4)), ld(f.as_ptr().add(8)), ld(f.as_ptr().add(12))] }
}

/// Row sums of 4 rows from the pair sums `lo` (rows 0, 1) and `hi` (rows 2, 3).
#[inline(always)]
fn pair_sums(lo: v128, hi: v128) -> v128 {
    i32x4_add(i32x4_shuffle::<0, 2, 4, 6>(lo, hi), i32x4_shuffle::<1, 3, 5, 7>(lo, hi))
}

/// `acc + (ws * xs) * f32(isum)`, each step rounded (the scalar order).
#[inline(always)]
fn update(acc: v128, ws: v128, xs: v128, isum: v128) -> v128 {
    f32x4_add(acc, f32x4_mul(f32x4_mul(ws, xs), f32x4_convert_i32x4(isum)))
}

/// INT8, one token (decode GEMV): row block `rb`, all groups, 16 outputs at `out`.
///
/// # Safety
/// See the call in [`gemm`].
#[inline(always)]
unsafe fn q8_block_1(job: &Job, rb: usize, t: usize, xv: &[v128], out: *mut f32) {
    let groups = job.groups;
    // SAFETY: block rb's data and scales are in bounds (checked in gemm).
    let (wb, sb) =
        unsafe { (job.data.add(rb * groups * job.group_bytes), job.scales.add(rb * groups * ROW_BLOCK * 2)) };
    let xs = &job.acts.scales[t * groups..(t + 1) * groups];
    let z = f32x4_splat(0.0);
    let (mut f0, mut f1, mut f2, mut f3) = (z, z, z, z);
    for (g, (xg, &xsg)) in xv.chunks_exact(CHUNKS).zip(xs).enumerate() {
        // SAFETY: g < groups.
        let wg = unsafe { wb.add(g * job.group_bytes) };
        let zi = i32x4_splat(0);
        let (mut l0, mut h0, mut l1, mut h1, mut l2, mut h2, mut l3, mut h3) = (zi, zi, zi, zi, zi, zi, zi, zi);
        for (c, &x) in xg.iter().enumerate() {
            // SAFETY: chunk c of group g: 64 bytes inside the block's data.
            let (w0, w1, w2, w3) = unsafe {
                let p = wg.add(c * CHUNK_BYTES);
                (
                    v128_load(p as *const v128),
                    v128_load(p.add(16) as *const v128),
                    v128_load(p.add(32) as *const v128),
                    v128_load(p.add(48) as *const v128),
                )
            };
            l0 = i32x4_add(l0, i32x4_dot_i16x8(i16x8_extend_low_i8x16(w0), x));
            h0 = i32x4_add(h0, i32x4_dot_i16x8(i16x8_extend_high_i8x16(w0), x));
            l1 = i32x4_add(l1, i32x4_dot_i16x8(i16x8_extend_low_i8x16(w1), x));
            h1 = i32x4_add(h1, i32x4_dot_i16x8(i16x8_extend_high_i8x16(w1), x));
            l2 = i32x4_add(l2, i32x4_dot_i16x8(i16x8_extend_low_i8x16(w2), x));
            h2 = i32x4_add(h2, i32x4_dot_i16x8(i16x8_extend_high_i8x16(w2), x));
            l3 = i32x4_add(l3, i32x4_dot_i16x8(i16x8_extend_low_i8x16(w3), x));
            h3 = i32x4_add(h3, i32x4_dot_i16x8(i16x8_extend_high_i8x16(w3), x));
        }
        // SAFETY: 32 scale bytes of group g.
        let ws = unsafe { load_scales(sb.add(g * ROW_BLOCK * 2)) };
        let xsv = f32x4_splat(xsg);
        f0 = update(f0, ws[0], xsv, pair_sums(l0, h0));
        f1 = update(f1, ws[1], xsv, pair_sums(l1, h1));
        f2 = update(f2, ws[2], xsv, pair_sums(l2, h2));
        f3 = update(f3, ws[3], xsv, pair_sums(l3, h3));
    }
    // SAFETY: 16 f32 at out.
    unsafe { store16(out, f0, f1, f2, f3) };
}

/// # Safety
/// `out` points to 16 writable f32.
#[inline(always)]
unsafe fn store16(out: *mut f32, f0: v128, f1: v128, f2: v128, f3: v128) {
    // SAFETY: 16 writable f32.
    unsafe {
        v128_store(out as *mut v128, f0);
        v128_store(out.add(4) as *mut v128, f1);
        v128_store(out.add(8) as *mut v128, f2);
        v128_store(out.add(12) as *mut v128, f3);
    }
}

/// INT8, `N` tokens per pass (prefill): each weight vector is loaded and widened once for
/// `N` tokens. Outputs of token `t` at `out + t * width`.
///
/// # Safety
/// See the call in [`gemm`].
#[inline(always)]
unsafe fn q8_block_n<const N: usize>(job: &Job, rb: usize, t0: usize, xv: &[v128], out: *mut f32, width: usize) {
    let groups = job.groups;
    // SAFETY: block rb's data and scales are in bounds (checked in gemm).
    let (wb, sb) =
        unsafe { (job.data.add(rb * groups * job.group_bytes), job.scales.add(rb * groups * ROW_BLOCK * 2)) };
    let xs = &job.acts.scales;
    let mut acc = [[f32x4_splat(0.0); 4]; N];
    for (g, xg) in xv.chunks_exact(CHUNKS * N).enumerate() {
        // SAFETY: g < groups.
        let wg = unsafe { wb.add(g * job.group_bytes) };
        // SAFETY: 32 scale bytes of group g.
        let ws = unsafe { load_scales(sb.add(g * ROW_BLOCK * 2)) };
        let xsv: [v128; N] = std::array::from_fn(|t| f32x4_splat(xs[(t0 + t) * groups + g]));
        for (v, &wsv) in ws.iter().enumerate() {
            let zi = i32x4_splat(0);
            let mut lo = [zi; N];
            let mut hi = [zi; N];
            for (c, xc) in xg.chunks_exact(N).enumerate() {
                // SAFETY: rows 4v..4v+3 of chunk c of group g.
                let wv = unsafe { v128_load(wg.add(c * CHUNK_BYTES + v * 16) as *const v128) };
                let (wl, wh) = (i16x8_extend_low_i8x16(wv), i16x8_extend_high_i8x16(wv));
                for t in 0..N {
                    lo[t] = i32x4_add(lo[t], i32x4_dot_i16x8(wl, xc[t]));
                    hi[t] = i32x4_add(hi[t], i32x4_dot_i16x8(wh, xc[t]));
                }
            }
            for t in 0..N {
                acc[t][v] = update(acc[t][v], wsv, xsv[t], pair_sums(lo[t], hi[t]));
            }
        }
    }
    for (t, a) in acc.iter().enumerate() {
        // SAFETY: token t's 16 outputs.
        unsafe { store16(out.add(t * width), a[0], a[1], a[2], a[3]) };
    }
}

/// The 4 rows x 4 k (low nibbles: chunk p) and (high nibbles: chunk p + 4) of one load, as
/// zero-extended i16: (rows 0-1 low, rows 0-1 high, rows 2-3 low, rows 2-3 high).
#[inline(always)]
#[cfg_attr(feature = "relaxed-simd", allow(dead_code))]
fn nibbles(w: v128) -> (v128, v128, v128, v128) {
    let m = u16x8_splat(0x0F);
    let e0 = u16x8_extend_low_u8x16(w);
    let e1 = u16x8_extend_high_u8x16(w);
    (v128_and(e0, m), u16x8_shr(e0, 4), v128_and(e1, m), u16x8_shr(e1, 4))
}

/// INT4, one token (decode GEMV).
///
/// # Safety
/// See the call in [`gemm`].
#[inline(always)]
#[cfg_attr(feature = "relaxed-simd", allow(dead_code))]
unsafe fn q4_block_1(job: &Job, rb: usize, t: usize, xv: &[v128], corr: &[v128], out: *mut f32) {
    let groups = job.groups;
    // SAFETY: block rb's data and scales are in bounds (checked in gemm).
    let (wb, sb) =
        unsafe { (job.data.add(rb * groups * job.group_bytes), job.scales.add(rb * groups * ROW_BLOCK * 2)) };
    let xs = &job.acts.scales[t * groups..(t + 1) * groups];
    let z = f32x4_splat(0.0);
    let (mut f0, mut f1, mut f2, mut f3) = (z, z, z, z);
    for (g, ((xg, &xsg), &cg)) in xv.chunks_exact(CHUNKS).zip(xs).zip(corr).enumerate() {
        // SAFETY: g < groups.
        let wg = unsafe { wb.add(g * job.group_bytes) };
        // SAFETY: group g of block rb: 256 bytes at wg.
        let (l0, h0, l1, h1) = unsafe { q4_two_quads(wg, xg) };
        // SAFETY: as above (rows 8-15 start 32 bytes into each chunk pair).
        let (l2, h2, l3, h3) = unsafe { q4_two_quads(wg.add(32), xg) };
        // SAFETY: 32 scale bytes of group g.
        let ws = unsafe { load_scales(sb.add(g * ROW_BLOCK * 2)) };
        let xsv = f32x4_splat(xsg);
        f0 = update(f0, ws[0], xsv, i32x4_sub(pair_sums(l0, h0), cg));
        f1 = update(f1, ws[1], xsv, i32x4_sub(pair_sums(l1, h1), cg));
        f2 = update(f2, ws[2], xsv, i32x4_sub(pair_sums(l2, h2), cg));
        f3 = update(f3, ws[3], xsv, i32x4_sub(pair_sums(l3, h3), cg));
    }
    // SAFETY: 16 f32 at out.
    unsafe { store16(out, f0, f1, f2, f3) };
}

/// INT4, `N` tokens per pass (prefill).
///
/// # Safety
/// See the call in [`gemm`].
#[inline(always)]
#[cfg_attr(feature = "relaxed-simd", allow(dead_code))]
unsafe fn q4_block_n<const N: usize>(
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
            let zi = i32x4_splat(0);
            let mut lo = [zi; N];
            let mut hi = [zi; N];
            for p in 0..CHUNKS / 2 {
                // SAFETY: rows 4v..4v+3 of chunks p and p + 4 of group g.
                let wv = unsafe { v128_load(wg.add(p * CHUNK_BYTES + v * 16) as *const v128) };
                let (a, b, c, d) = nibbles(wv);
                let (xa, xb) = (&xg[p * N..(p + 1) * N], &xg[(p + CHUNKS / 2) * N..(p + CHUNKS / 2 + 1) * N]);
                for t in 0..N {
                    lo[t] = i32x4_add(lo[t], i32x4_add(i32x4_dot_i16x8(a, xa[t]), i32x4_dot_i16x8(b, xb[t])));
                    hi[t] = i32x4_add(hi[t], i32x4_add(i32x4_dot_i16x8(c, xa[t]), i32x4_dot_i16x8(d, xb[t])));
                }
            }
            for t in 0..N {
                let isum = i32x4_sub(pair_sums(lo[t], hi[t]), cg[t]);
                acc[t][v] = update(acc[t][v], wsv, xsv[t], isum);
            }
        }
    }
    for (t, a) in acc.iter().enumerate() {
        // SAFETY: token t's 16 outputs.
        unsafe { store16(out.add(t * width), a[0], a[1], a[2], a[3]) };
    }
}

/// INT4 decode, rows 8 h .. 8 h + 7 of one group (two 4-row quads at `wg`, `wg + 16` in each
/// 64-byte chunk pair): pair sums (lo, hi) of each quad. Two passes of two quads keep the
/// accumulators, activations and nibble temporaries in the 16 x86 vector registers.
///
/// # Safety
/// `wg` points into a group's data such that `wg + 64 p + 32` is readable for p < 4.
#[inline(always)]
#[cfg_attr(feature = "relaxed-simd", allow(dead_code))]
unsafe fn q4_two_quads(wg: *const u8, xg: &[v128]) -> (v128, v128, v128, v128) {
    let zi = i32x4_splat(0);
    let (mut l0, mut h0, mut l1, mut h1) = (zi, zi, zi, zi);
    for p in 0..CHUNKS / 2 {
        let (xa, xb) = (xg[p], xg[p + CHUNKS / 2]);
        // SAFETY: 32 bytes at wg + 64 p (the caller's contract).
        let (w0, w1) = unsafe {
            (v128_load(wg.add(p * CHUNK_BYTES) as *const v128), v128_load(wg.add(p * CHUNK_BYTES + 16) as *const v128))
        };
        let dot2 = |a: v128, b: v128| i32x4_add(i32x4_dot_i16x8(a, xa), i32x4_dot_i16x8(b, xb));
        let (a, b, c, d) = nibbles(w0);
        l0 = i32x4_add(l0, dot2(a, b));
        h0 = i32x4_add(h0, dot2(c, d));
        let (a, b, c, d) = nibbles(w1);
        l1 = i32x4_add(l1, dot2(a, b));
        h1 = i32x4_add(h1, dot2(c, d));
    }
    (l0, h0, l1, h1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::scalar;
    use crate::quant::{quantize_matrix_with, ScaleRule};

    /// Deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            (self.next() >> 11) % n
        }
        /// Values of mixed magnitudes and signs, with some exact zeros and negative zeros.
        fn f32(&mut self) -> f32 {
            match self.below(16) {
                0 => 0.0,
                1 => -0.0,
                2 => (self.below(2001) as f32 - 1000.0) * 1e-3,
                3 => (self.below(2001) as f32 - 1000.0) * 37.5,
                _ => {
                    let m = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
                    let e = self.below(24) as i32 - 12;
                    let s = if self.below(2) == 0 { 1.0 } else { -1.0 };
                    s * m * 2f32.powi(e)
                }
            }
        }
        fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.f32()).collect()
        }
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    fn assert_same(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                same(g, w),
                "{what}: [{i}] simd128 {g:e} ({:#010x}) != scalar {w:e} ({:#010x})",
                g.to_bits(),
                w.to_bits()
            );
        }
    }

    #[test]
    fn portable_table_is_simd128() {
        let want = if cfg!(feature = "relaxed-simd") { "simd128+relaxed" } else { "simd128" };
        assert_eq!(Kernels::portable().tier, want);
    }

    #[test]
    fn dot_f32_is_bit_exact() {
        let mut rng = Rng::new(1);
        for n in 0..=300 {
            for _ in 0..3 {
                let (a, b) = (rng.vec(n), rng.vec(n));
                let (got, want) = (dot_f32(&a, &b), scalar::dot_f32(&a, &b));
                assert!(same(got, want), "n={n}: {got:e} vs {want:e}");
            }
        }
        // Signed zeros: the zero-filled tail turns -0 partial sums into +0, as the definition.
        for n in [1usize, 5, 16, 17, 33] {
            let a = vec![-0.0f32; n];
            let b = vec![1.0f32; n];
            assert_eq!(dot_f32(&a, &b).to_bits(), scalar::dot_f32(&a, &b).to_bits(), "n={n}");
        }
        // Cancellation-heavy inputs where any reassociation changes the bits.
        let a: Vec<f32> = (0..257).map(|i| if i % 3 == 0 { 1e8 } else { 1.0 + i as f32 * 1e-3 }).collect();
        let b: Vec<f32> = (0..257).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        assert_eq!(dot_f32(&a, &b).to_bits(), scalar::dot_f32(&a, &b).to_bits());
    }

    #[test]
    fn matmul_f32_is_bit_exact() {
        let mut rng = Rng::new(2);
        for tokens in 1..=5 {
            for rows in 1..=5 {
                for cols in [1usize, 2, 3, 7, 15, 16, 17, 31, 32, 33, 47, 64, 100, 129, 300] {
                    let x = rng.vec(tokens * cols);
                    let w = rng.vec(rows * cols);
                    let mut got = vec![f32::NAN; tokens * rows];
                    let mut want = vec![f32::NAN; tokens * rows];
                    matmul_f32(&x, &w, cols, &mut got);
                    scalar::matmul_f32(&x, &w, cols, &mut want);
                    assert_same(&got, &want, &format!("matmul_f32 t{tokens} r{rows} c{cols}"));
                }
            }
        }
    }

    #[test]
    fn axpy_is_bit_exact() {
        let mut rng = Rng::new(8);
        for n in 0..=70 {
            let (x, y) = (rng.vec(n), rng.vec(n));
            let a = rng.f32();
            let (mut got, mut want) = (y.clone(), y);
            axpy(a, &x, &mut got);
            scalar::axpy(a, &x, &mut want);
            assert_same(&got, &want, &format!("axpy n={n}"));
        }
    }

    /// Random 16-bit patterns: finite values of every exponent (subnormals and zeros
    /// included), and with `specials`, infinities and NaNs too.
    fn half_bits(rng: &mut Rng, n: usize, bf16: bool, specials: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let h = loop {
                let h = rng.next() as u16;
                let h = if bf16 {
                    // Keep bf16 products in a sane range most of the time.
                    if rng.below(4) == 0 {
                        h
                    } else {
                        (h & 0x807F) | ((0x3C00 + (rng.below(0x600) as u16 & 0x3F80)) & 0x7F80)
                    }
                } else {
                    h
                };
                let exp_all_ones = if bf16 { h & 0x7F80 == 0x7F80 } else { h & 0x7C00 == 0x7C00 };
                if specials || !exp_all_ones {
                    break h;
                }
            };
            out.extend_from_slice(&h.to_le_bytes());
        }
        out
    }

    #[test]
    fn f16_and_bf16_widening_is_exact_for_every_pattern() {
        // The fast widening on every 16-bit pattern it accepts, against `half`.
        let all: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
        let mut row = vec![0.0f32; 1 << 16];
        widen_row::<F16>(&all, &mut row); // holds specials: exact path for the whole row
        for (h, &v) in (0..=u16::MAX).zip(&row) {
            assert_eq!(v.to_bits(), half::f16::from_bits(h).to_f32().to_bits(), "f16 {h:#06x}");
        }
        widen_row::<Bf16>(&all, &mut row);
        for (h, &v) in (0..=u16::MAX).zip(&row) {
            assert_eq!(v.to_bits(), half::bf16::from_bits(h).to_f32().to_bits(), "bf16 {h:#06x}");
        }
        for h in 0..=u16::MAX {
            let v = u16x8_splat(h);
            for (is_bf16, fast_max) in [(false, F16::FAST_MAX), (true, Bf16::FAST_MAX)] {
                if h & 0x7FFF > fast_max {
                    continue;
                }
                let (a, b) = if is_bf16 { Bf16::widen(v) } else { F16::widen(v) };
                let want = if is_bf16 { half::bf16::from_bits(h).to_f32() } else { half::f16::from_bits(h).to_f32() };
                for got in [f32x4_extract_lane::<0>(a), f32x4_extract_lane::<3>(a), f32x4_extract_lane::<2>(b)] {
                    assert_eq!(got.to_bits(), want.to_bits(), "bf16={is_bf16} {h:#06x}");
                }
            }
        }
    }

    #[test]
    fn matmul_half_is_bit_exact() {
        let mut rng = Rng::new(3);
        type Mm = fn(&[f32], &[u8], usize, &mut [f32]);
        let pairs: [(&str, bool, Mm, Mm); 2] =
            [("f16", false, matmul_f16, scalar::matmul_f16), ("bf16", true, matmul_bf16, scalar::matmul_bf16)];
        for (name, bf16, simd, reference) in pairs {
            for tokens in 1..=4 {
                for rows in 1..=4 {
                    for cols in [1usize, 2, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 64, 65, 100, 255, 300] {
                        for specials in [false, true] {
                            let x: Vec<f32> = (0..tokens * cols).map(|_| rng.f32() * 1e-2).collect();
                            let with_specials = specials && rng.below(2) == 0;
                            let w = half_bits(&mut rng, rows * cols, bf16, with_specials);
                            let mut got = vec![f32::NAN; tokens * rows];
                            let mut want = vec![f32::NAN; tokens * rows];
                            simd(&x, &w, cols, &mut got);
                            reference(&x, &w, cols, &mut want);
                            assert_same(&got, &want, &format!("{name} t{tokens} r{rows} c{cols}"));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn quantize_row_is_bit_exact() {
        let mut rng = Rng::new(4);
        for n in 0..=300usize {
            for variant in 0..5 {
                let mut x = rng.vec(n);
                match variant {
                    // Ties: multiples of amax / 254 land exactly on .5 after scaling.
                    1 => x.iter_mut().enumerate().for_each(|(i, v)| *v = ((i as f32 * 7.0) % 255.0 - 127.0) / 2.0),
                    // A whole zero group, and a group with only its tail non-zero.
                    2 => x.iter_mut().take(40).for_each(|v| *v = 0.0),
                    // Non-finite values (unspecified results, but the same on every tier).
                    3 if n > 0 => {
                        let k = rng.below(n as u64) as usize;
                        x[k] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-45][n % 4];
                    }
                    // Subnormal-only values: 127 / amax overflows to inf, so x * inv is +-inf
                    // (clamped to +-127) or NaN (0).
                    4 => x.iter_mut().for_each(|v| *v = [0.0, 1e-45, -1e-45, 3e-45, -3e-45][rng.below(5) as usize]),
                    _ => {}
                }
                let groups = n.div_ceil(GROUP) + (variant & 1);
                let mut q1 = vec![99i8; groups * GROUP];
                let mut s1 = vec![f32::NAN; groups];
                let mut q2 = q1.clone();
                let mut s2 = s1.clone();
                quantize_row(&x, &mut q1, &mut s1);
                scalar::quantize_row(&x, &mut q2, &mut s2);
                assert_eq!(q1, q2, "n={n} variant {variant}");
                assert_same(&s1, &s2, &format!("scales n={n} variant {variant}"));
            }
        }
    }

    /// A quantized matrix with random bytes (every int8 / nibble pattern) and random f16
    /// scales (zeros, subnormals, normals of many exponents).
    fn random_matrix(
        rng: &mut Rng,
        kind: QuantKind,
        row_blocks: usize,
        groups: usize,
    ) -> (QuantShape, Vec<u8>, Vec<u8>) {
        let shape = QuantShape::new(row_blocks * ROW_BLOCK, groups * GROUP).unwrap();
        let data: Vec<u8> = (0..shape.data_bytes(kind)).map(|_| rng.next() as u8).collect();
        let mut scales = Vec::with_capacity(shape.scale_bytes());
        for _ in 0..shape.scale_bytes() / 2 {
            let h: u16 = match rng.below(8) {
                0 => 0,
                1 => rng.below(0x400) as u16, // subnormal
                _ => (rng.below(0x1000) as u16) | ((rng.below(24) as u16 + 2) << 10),
            };
            scales.extend_from_slice(&h.to_le_bytes());
        }
        (shape, data, scales)
    }

    fn random_acts(rng: &mut Rng, tokens: usize, groups: usize) -> QuantActs {
        let cols_padded = groups * GROUP;
        let mut q: Vec<i8> = (0..tokens * cols_padded).map(|_| rng.next() as i8).collect();
        let mut scales: Vec<f32> = (0..tokens * groups).map(|_| rng.f32().abs() * 1e-2).collect();
        // Zero groups (scale 0, values 0) and groups with extreme values.
        for t in 0..tokens {
            for g in 0..groups {
                match rng.below(6) {
                    0 => {
                        q[(t * groups + g) * GROUP..][..GROUP].fill(0);
                        scales[t * groups + g] = 0.0;
                    }
                    1 => q[(t * groups + g) * GROUP..][..GROUP]
                        .iter_mut()
                        .for_each(|v| *v = if rng.below(2) == 0 { -128 } else { 127 }),
                    _ => {}
                }
            }
        }
        QuantActs { tokens, cols_padded, q, scales }
    }

    fn check_gemm(kind: QuantKind, m: &QuantMatrix, acts: &QuantActs, blocks: Range<usize>, what: &str) {
        let n = acts.tokens * blocks.len() * ROW_BLOCK;
        let mut got = vec![f32::NAN; n];
        let mut want = vec![f32::NAN; n];
        match kind {
            QuantKind::Q8 => {
                gemm_q8(m, acts, blocks.clone(), &mut got);
                scalar::gemm_q8(m, acts, blocks, &mut want);
            }
            QuantKind::Q4 => {
                gemm_q4(m, acts, blocks.clone(), &mut got);
                scalar::gemm_q4(m, acts, blocks, &mut want);
            }
        }
        assert_same(&got, &want, what);
    }

    #[test]
    fn gemm_is_bit_exact_on_random_bytes() {
        let mut rng = Rng::new(5);
        for kind in [QuantKind::Q8, QuantKind::Q4] {
            for tokens in 1..=9 {
                for row_blocks in 1..=5 {
                    for groups in 1..=8 {
                        let (shape, data, scales) = random_matrix(&mut rng, kind, row_blocks, groups);
                        let m = QuantMatrix { kind, shape, data: &data, scales: &scales };
                        let acts = random_acts(&mut rng, tokens, groups);
                        let what = format!("{kind:?} t{tokens} rb{row_blocks} g{groups}");
                        check_gemm(kind, &m, &acts, 0..row_blocks, &what);
                        // A sub-range of row blocks (as a threaded caller would pass).
                        let start = rng.below(row_blocks as u64) as usize;
                        let end = start + 1 + rng.below((row_blocks - start) as u64) as usize;
                        check_gemm(kind, &m, &acts, start..end, &format!("{what} blocks {start}..{end}"));
                        check_gemm(kind, &m, &acts, start..start, &format!("{what} empty"));
                    }
                }
            }
        }
    }

    #[test]
    fn gemm_is_bit_exact_on_quantized_models() {
        // Real quantized weights (odd shapes: padded rows and columns) and activations from
        // the simd128 quantizer, which is itself bit-exact.
        let mut rng = Rng::new(6);
        // Both INT4 scale rules: ScaleRule::Ggml gives negative scales too.
        for (kind, rule) in [(QuantKind::Q8, ScaleRule::Amax), (QuantKind::Q4, ScaleRule::Amax), (QuantKind::Q4, ScaleRule::Ggml)] {
            for (rows, cols) in [(1usize, 1usize), (16, 32), (21, 45), (37, 100), (64, 257), (80, 96)] {
                let w = rng.vec(rows * cols);
                let (data, scales) = quantize_matrix_with(kind, rule, &w, rows, cols);
                let shape = QuantShape::new(rows, cols).unwrap();
                let m = QuantMatrix { kind, shape, data: &data, scales: &scales };
                for tokens in [1usize, 2, 3, 4, 5, 8, 9, 13] {
                    let x = rng.vec(tokens * cols);
                    let mut acts = QuantActs::default();
                    acts.quantize(&kernels(), &x, cols);
                    let mut acts_ref = QuantActs::default();
                    acts_ref.quantize(&Kernels::scalar(), &x, cols);
                    assert_eq!((&acts.q, &acts.scales), (&acts_ref.q, &acts_ref.scales));
                    check_gemm(kind, &m, &acts, 0..shape.row_blocks(), &format!("{kind:?} {rows}x{cols} t{tokens}"));
                }
            }
        }
    }

    #[test]
    fn gemm_handles_special_scales_and_panels() {
        let mut rng = Rng::new(7);
        // Infinite / NaN scales go through the exact conversion.
        for kind in [QuantKind::Q8, QuantKind::Q4] {
            let (shape, data, mut scales) = random_matrix(&mut rng, kind, 2, 3);
            scales[2..4].copy_from_slice(&0x7C00u16.to_le_bytes());
            scales[40..42].copy_from_slice(&0xFC00u16.to_le_bytes());
            scales[70..72].copy_from_slice(&0x7E01u16.to_le_bytes());
            let m = QuantMatrix { kind, shape, data: &data, scales: &scales };
            for tokens in [1, 5] {
                let acts = random_acts(&mut rng, tokens, 3);
                check_gemm(kind, &m, &acts, 0..2, &format!("{kind:?} special scales t{tokens}"));
            }
        }
        // Wide matrices: several panels of row blocks with several token tiles each.
        for kind in [QuantKind::Q8, QuantKind::Q4] {
            let (shape, data, scales) = random_matrix(&mut rng, kind, 12, 160);
            let m = QuantMatrix { kind, shape, data: &data, scales: &scales };
            let acts = random_acts(&mut rng, 7, 160);
            check_gemm(kind, &m, &acts, 1..12, &format!("{kind:?} panels"));
        }
    }
}
