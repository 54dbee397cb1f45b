//! `neon` tier: Armv8.0 Advanced SIMD, present on every aarch64 CPU. Implements every entry.
//!
//! - f32 dot products: the 16 canonical partial sums live in four 4-lane registers
//!   (element i in lane i % 16), `fmul` then `fadd` (never `fmla`), zero-filled tails, the
//!   canonical pairwise tree at the end. Matmuls compute tiles of 2 tokens x 2 rows (prefill)
//!   or 1 token x 4 rows (decode) so each load feeds several dot products.
//! - f16 weights are widened with `fcvtl`, bf16 with a 16-bit shift (both exact); with 4 or
//!   more tokens a block of rows is widened once into an f32 buffer and reused.
//! - `quantize_row`: `fabs`/`fmaxnm` for the group maximum, `fcvtns` (round to nearest, ties
//!   to even), saturating narrows and a max with -127 for the clamp.
//! - Quantized GEMM: the int8 dot products are emulated exactly with `smull`/`smull2` (i16
//!   products) and `sadalp` (pairwise add into i32), 16 rows per group per token. INT4 uses the
//!   raw nibbles and adds `-8 * sum(x)` per group (exact), as the other tiers.

use std::arch::aarch64::*;

use saguaro_engine::kernels::{Kernels, F32_LANES};
use saguaro_engine::quant::{QuantKind, CHUNK_BYTES, GROUP};

use super::super::shapes;
use super::common::{f16x16, fold, q4_correction, q4_nibbles, zero_f32, zero_i32};
use super::driver::{self, Gemm, QuantTier};

pub const NAME: &str = "neon";

pub fn available() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

/// The table (the scalar definitions if NEON were missing; other entries are scalar).
pub fn kernels() -> Kernels {
    if !available() {
        return Kernels::scalar();
    }
    Kernels {
        tier: NAME,
        dot_f32,
        matmul_f32,
        matmul_f16,
        matmul_bf16,
        quantize_row,
        gemm_q8: driver::gemm_q8::<Neon>,
        gemm_q4: driver::gemm_q4::<Neon>,
        ..Kernels::scalar()
    }
}

// ---------------------------------------------------------------------------------------
// f32 dot products and matmuls
// ---------------------------------------------------------------------------------------

/// A weight element type widened exactly to f32, 16 at a time.
trait Widen {
    type E: Copy + Default;
    /// Loads 16 elements at `p` as four f32x4 (element i in register i / 4, lane i % 4).
    ///
    /// # Safety
    /// `p` must be readable for 16 elements.
    unsafe fn load16(p: *const Self::E) -> [float32x4_t; 4];
}

struct F32;
struct F16;
struct Bf16;

impl Widen for F32 {
    type E = f32;
    #[inline(always)]
    unsafe fn load16(p: *const f32) -> [float32x4_t; 4] {
        // SAFETY: the caller guarantees 16 readable f32.
        let v = unsafe { vld1q_f32_x4(p) };
        [v.0, v.1, v.2, v.3]
    }
}

impl Widen for F16 {
    type E = u16;
    #[inline(always)]
    unsafe fn load16(p: *const u16) -> [float32x4_t; 4] {
        // SAFETY: the caller guarantees 16 readable u16 = 32 bytes.
        unsafe { f16x16(p as *const u8) }
    }
}

impl Widen for Bf16 {
    type E = u16;
    #[inline(always)]
    unsafe fn load16(p: *const u16) -> [float32x4_t; 4] {
        // SAFETY: the caller guarantees 16 readable u16.
        // (NEON is a baseline feature of every aarch64 target.)
        unsafe {
            let h = vld1q_u16_x2(p);
            [
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h.0))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h.0)),
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h.1))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h.1)),
            ]
        }
    }
}

/// Loads `n < 16` elements at `p` zero-padded to 16.
///
/// # Safety
/// `p` must be readable for `n` elements.
#[inline(always)]
unsafe fn load_tail<W: Widen>(p: *const W::E, n: usize) -> [float32x4_t; 4] {
    let mut buf = [W::E::default(); F32_LANES];
    // SAFETY: `n <= 16` elements readable at `p` (caller), `buf` holds 16.
    unsafe {
        std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
        W::load16(buf.as_ptr())
    }
}

/// The canonical reduction of 16 partial sums (lanes 0-3, 4-7, 8-11, 12-15 in `a[0..4]`):
/// `p[j] += p[j + 8]`, then `+4`, `+2`, `+1`.
#[inline(always)]
fn reduce16(a: &[float32x4_t; 4]) -> f32 {
    // SAFETY: NEON is a baseline feature of every aarch64 target (register operations).
    unsafe {
        let s0 = vaddq_f32(a[0], a[2]);
        let s1 = vaddq_f32(a[1], a[3]);
        let s = vaddq_f32(s0, s1);
        let h = vadd_f32(vget_low_f32(s), vget_high_f32(s));
        vpadds_f32(h)
    }
}

/// One 16-column step of an NT x NR tile: `acc[t][r] += x[t] * w[r]` lane by lane.
#[inline(always)]
fn step<const NT: usize, const NR: usize>(
    acc: &mut [[[float32x4_t; 4]; NR]; NT],
    xv: &[[float32x4_t; 4]; NT],
    wv: &[[float32x4_t; 4]; NR],
) {
    for t in 0..NT {
        for r in 0..NR {
            for q in 0..4 {
                // SAFETY: NEON is a baseline feature of every aarch64 target.
                acc[t][r][q] = unsafe { vaddq_f32(acc[t][r][q], vmulq_f32(xv[t][q], wv[r][q])) };
            }
        }
    }
}

/// The 16 partial sums of `dot(x[t], w[r])` for NT tokens and NR weight rows of `cols`
/// elements.
///
/// # Safety
/// Every `x[t]` readable for `cols` f32, every `w[r]` for `cols` elements.
#[inline(always)]
unsafe fn tile<W: Widen, const NT: usize, const NR: usize>(
    x: [*const f32; NT],
    w: [*const W::E; NR],
    cols: usize,
) -> [[[float32x4_t; 4]; NR]; NT] {
    let mut acc = [[zero_f32(); NR]; NT];
    let full = cols / F32_LANES * F32_LANES;
    let mut i = 0;
    while i < full {
        // SAFETY: `i + 16 <= cols`, in bounds of every row (caller).
        let (xv, wv) = unsafe {
            (std::array::from_fn(|t| F32::load16(x[t].add(i))), std::array::from_fn(|r| W::load16(w[r].add(i))))
        };
        step::<NT, NR>(&mut acc, &xv, &wv);
        i += F32_LANES;
    }
    let rem = cols - full;
    if rem > 0 {
        // SAFETY: `full + rem == cols` elements readable in every row (caller).
        let (xv, wv) = unsafe {
            (
                std::array::from_fn(|t| load_tail::<F32>(x[t].add(full), rem)),
                std::array::from_fn(|r| load_tail::<W>(w[r].add(full), rem)),
            )
        };
        step::<NT, NR>(&mut acc, &xv, &wv);
    }
    acc
}

/// Canonical f32 dot product.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
    // SAFETY: both slices hold `a.len()` f32.
    let acc = unsafe { tile::<F32, 1, 1>([a.as_ptr()], [b.as_ptr()], a.len()) };
    reduce16(&acc[0][0])
}

/// `out[t * rows + r0 + r] = dot(x[t], w[r])` for the `nrows` rows at `w` (row stride `cols`).
///
/// # Safety
/// `x` holds `tokens * cols` f32, `w` `nrows * cols` elements, `out` `tokens * rows` f32 with
/// `r0 + nrows <= rows`.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul_rows<W: Widen>(
    x: *const f32,
    tokens: usize,
    w: *const W::E,
    nrows: usize,
    cols: usize,
    out: *mut f32,
    rows: usize,
    r0: usize,
) {
    // SAFETY: every pointer formed below addresses a row `< tokens` of `x`, a
    // row `< nrows` of `w`, or an output index `< tokens * rows` (caller's bounds).
    unsafe {
        let xr = |t: usize| x.add(t * cols);
        let wr = |r: usize| w.add(r * cols);
        let o = |t: usize, r: usize| out.add(t * rows + r0 + r);
        let mut t = 0;
        while t + 2 <= tokens {
            let mut r = 0;
            while r + 2 <= nrows {
                let acc = tile::<W, 2, 2>([xr(t), xr(t + 1)], [wr(r), wr(r + 1)], cols);
                for a in 0..2 {
                    for b in 0..2 {
                        *o(t + a, r + b) = reduce16(&acc[a][b]);
                    }
                }
                r += 2;
            }
            if r < nrows {
                let acc = tile::<W, 2, 1>([xr(t), xr(t + 1)], [wr(r)], cols);
                *o(t, r) = reduce16(&acc[0][0]);
                *o(t + 1, r) = reduce16(&acc[1][0]);
            }
            t += 2;
        }
        if t < tokens {
            let mut r = 0;
            while r + 4 <= nrows {
                let acc = tile::<W, 1, 4>([xr(t)], [wr(r), wr(r + 1), wr(r + 2), wr(r + 3)], cols);
                for b in 0..4 {
                    *o(t, r + b) = reduce16(&acc[0][b]);
                }
                r += 4;
            }
            while r < nrows {
                let acc = tile::<W, 1, 1>([xr(t)], [wr(r)], cols);
                *o(t, r) = reduce16(&acc[0][0]);
                r += 1;
            }
        }
    }
}

/// Bytes of weights a row chunk may occupy so that it stays in L2 while the tokens stream by.
const ROW_CHUNK_BYTES: usize = 128 * 1024;

/// Rows per chunk for `cols` columns of `elem` bytes (a multiple of 4, at least 4).
fn row_chunk(cols: usize, elem: usize) -> usize {
    (ROW_CHUNK_BYTES / (cols * elem)).max(4) / 4 * 4
}

/// `out[t][r] = dot_f32(x[t], w[r])`.
pub fn matmul_f32(x: &[f32], w: &[f32], cols: usize, out: &mut [f32]) {
    let (rows, tokens) = shapes::matmul_f32(x, w, cols, out);
    let chunk = row_chunk(cols, 4);
    let mut r0 = 0;
    while r0 < rows {
        let n = chunk.min(rows - r0);
        // SAFETY: shapes checked above; rows `r0..r0 + n` of `w` exist.
        unsafe {
            matmul_rows::<F32>(x.as_ptr(), tokens, w.as_ptr().add(r0 * cols), n, cols, out.as_mut_ptr(), rows, r0)
        };
        r0 += n;
    }
}

/// `matmul_f32` with f16 weights (widened exactly).
pub fn matmul_f16(x: &[f32], w: &[u8], cols: usize, out: &mut [f32]) {
    matmul_half::<F16>(x, w, cols, out)
}

/// `matmul_f32` with bf16 weights (widened exactly).
pub fn matmul_bf16(x: &[f32], w: &[u8], cols: usize, out: &mut [f32]) {
    matmul_half::<Bf16>(x, w, cols, out)
}

fn matmul_half<W: Widen<E = u16>>(x: &[f32], w: &[u8], cols: usize, out: &mut [f32]) {
    let (rows, tokens) = shapes::matmul_half(x, w, cols, out);
    let wp = w.as_ptr() as *const u16;
    if tokens < 4 {
        // Decode: widen on the fly, every weight is used by at most 2 tokens of a tile.
        let chunk = row_chunk(cols, 2);
        let mut r0 = 0;
        while r0 < rows {
            let n = chunk.min(rows - r0);
            // SAFETY: shapes checked above; rows `r0..r0 + n` of `w` exist (2 bytes each,
            // u16 reads are unaligned-safe `ld1`).
            unsafe { matmul_rows::<W>(x.as_ptr(), tokens, wp.add(r0 * cols), n, cols, out.as_mut_ptr(), rows, r0) };
            r0 += n;
        }
        return;
    }
    // Prefill: widen a chunk of rows once, then the f32 tiles.
    let chunk = row_chunk(cols, 4);
    let mut buf = vec![0.0f32; chunk.min(rows) * cols];
    let mut r0 = 0;
    while r0 < rows {
        let n = chunk.min(rows - r0);
        for r in 0..n {
            // SAFETY: row `r0 + r < rows` of `w` has `cols` elements; `buf` row `r < chunk`.
            unsafe { widen_row::<W>(wp.add((r0 + r) * cols), buf.as_mut_ptr().add(r * cols), cols) };
        }
        // SAFETY: shapes checked above; `buf` holds `n` rows of `cols`.
        unsafe { matmul_rows::<F32>(x.as_ptr(), tokens, buf.as_ptr(), n, cols, out.as_mut_ptr(), rows, r0) };
        r0 += n;
    }
}

/// Widens `cols` elements at `src` into f32 at `dst`.
///
/// # Safety
/// `src` readable and `dst` writable for `cols` elements.
unsafe fn widen_row<W: Widen>(src: *const W::E, dst: *mut f32, cols: usize) {
    let mut i = 0;
    // SAFETY: every access below is at an index `< cols` (caller's bounds).
    unsafe {
        while i + F32_LANES <= cols {
            let v = W::load16(src.add(i));
            vst1q_f32_x4(dst.add(i), float32x4x4_t(v[0], v[1], v[2], v[3]));
            i += F32_LANES;
        }
        if i < cols {
            let v = load_tail::<W>(src.add(i), cols - i);
            let mut tmp = [0.0f32; F32_LANES];
            vst1q_f32_x4(tmp.as_mut_ptr(), float32x4x4_t(v[0], v[1], v[2], v[3]));
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst.add(i), cols - i);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Activation quantization
// ---------------------------------------------------------------------------------------

/// Activation quantization of one row (see `scalar::quantize_row`).
pub fn quantize_row(x: &[f32], q: &mut [i8], scales: &mut [f32]) {
    assert!(q.len() == scales.len() * GROUP && x.len() <= q.len(), "quantize_row: bad lengths");
    for (g, (qg, s)) in q.chunks_exact_mut(GROUP).zip(scales.iter_mut()).enumerate() {
        let start = (g * GROUP).min(x.len());
        let xg = &x[start..(start + GROUP).min(x.len())];
        let mut buf = [0.0f32; GROUP];
        let v: [float32x4_t; 8] = if xg.len() == GROUP {
            // SAFETY: `xg` holds 32 f32.
            unsafe { std::array::from_fn(|i| vld1q_f32(xg.as_ptr().add(4 * i))) }
        } else {
            buf[..xg.len()].copy_from_slice(xg);
            // SAFETY: `buf` holds 32 f32.
            unsafe { std::array::from_fn(|i| vld1q_f32(buf.as_ptr().add(4 * i))) }
        };
        // SAFETY: NEON is a baseline feature of every aarch64 target; the stores write the
        // 32 bytes of `qg`.
        let amax = unsafe { group_absmax(&v) };
        if amax == 0.0 {
            qg.fill(0);
            *s = 0.0;
            continue;
        }
        // SAFETY: as above.
        unsafe { quantize_group(&v, 127.0 / amax, qg) };
        *s = amax / 127.0;
    }
}

/// max|x| over 32 values (zero padding does not change it: |x| >= 0). `fmaxnm` ignores a NaN
/// like `f32::max` in the scalar fold.
///
/// # Safety
/// None beyond NEON (baseline).
#[inline(always)]
unsafe fn group_absmax(v: &[float32x4_t; 8]) -> f32 {
    // SAFETY: register operations only.
    unsafe {
        let mut m = vabsq_f32(v[0]);
        for vi in &v[1..] {
            m = vmaxnmq_f32(m, vabsq_f32(*vi));
        }
        vmaxnmvq_f32(m)
    }
}

/// `q = clamp(round_half_even(x * inv), -127, 127)` for 32 values.
///
/// Round to nearest even (`fcvtns`: NaN -> 0, +-inf -> saturated), then clamp: the
/// saturating narrows bound to [-128, 127], the max raises -128 to -127. Padding lanes give
/// 0 * inv = 0 (or NaN -> 0 when inv is infinite), as the scalar zero fill.
///
/// # Safety
/// `q.len() >= 32`.
#[inline(always)]
unsafe fn quantize_group(v: &[float32x4_t; 8], inv: f32, q: &mut [i8]) {
    debug_assert!(q.len() >= GROUP);
    // SAFETY: register operations, and two 16-byte stores into `q` (32 bytes, caller).
    unsafe {
        let r: [int32x4_t; 8] = std::array::from_fn(|i| vcvtnq_s32_f32(vmulq_n_f32(v[i], inv)));
        let h: [int16x8_t; 4] = std::array::from_fn(|i| vcombine_s16(vqmovn_s32(r[2 * i]), vqmovn_s32(r[2 * i + 1])));
        let lo = vmaxq_s8(vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])), vdupq_n_s8(-127));
        let hi = vmaxq_s8(vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])), vdupq_n_s8(-127));
        vst1q_s8(q.as_mut_ptr(), lo);
        vst1q_s8(q.as_mut_ptr().add(16), hi);
    }
}

// ---------------------------------------------------------------------------------------
// Quantized GEMM (int8 dot emulated with smull + sadalp)
// ---------------------------------------------------------------------------------------

/// The tier's quantized GEMM (the driver is `driver`).
pub(super) struct Neon;

impl QuantTier for Neon {
    fn available() -> bool {
        available()
    }

    /// One token at a time ([`block`] needs no second token to reuse its weight loads).
    ///
    /// # Safety
    /// `g` from `Gemm::new` (NEON is baseline).
    unsafe fn gemm(g: &Gemm) {
        for bi in 0..g.nblocks {
            for t in 0..g.tokens {
                // SAFETY: `bi < nblocks`, `t < tokens`; `g` validated by `Gemm::new`.
                unsafe {
                    match g.kind {
                        QuantKind::Q8 => block::<false>(g, bi, t),
                        QuantKind::Q4 => block::<true>(g, bi, t),
                    }
                }
            }
        }
    }
}

/// Adds the exact products of one 16-byte weight register (4 rows x 4 k) and the 4 k of `xd`
/// (replicated 4 times) into `acc`: `acc.0` lanes = (row 0, row 0, row 1, row 1) halves,
/// `acc.1` the same for rows 2, 3.
#[inline(always)]
fn mac4(acc: &mut (int32x4_t, int32x4_t), w: int8x16_t, xd: int8x16_t) {
    // SAFETY: NEON is a baseline feature of every aarch64 target (register operations).
    unsafe {
        acc.0 = vpadalq_s16(acc.0, vmull_s8(vget_low_s8(w), vget_low_s8(xd)));
        acc.1 = vpadalq_s16(acc.1, vmull_high_s8(w, xd));
    }
}

/// Token `t`, row block `bi`: 16 outputs.
///
/// # Safety
/// `bi < g.nblocks`, `t < g.tokens`.
#[inline(always)]
unsafe fn block<const Q4: bool>(g: &Gemm, bi: usize, t: usize) {
    // SAFETY: weight reads stay inside row block `bi` (`groups * group_bytes`
    // bytes from `wdata`), scale reads inside its `groups * 32` bytes, activation reads inside
    // token `t`'s `cols_padded` bytes and `groups` scales (invariants of `Gemm::new`).
    unsafe {
        let wd = g.wdata(bi);
        let sp = g.wscales(bi);
        let xq = g.x(t);
        let xs = g.xscales(t);
        let mut acc = zero_f32();
        for gi in 0..g.groups {
            let wg = wd.add(gi * g.group_bytes);
            let xr = [vld1q_s8(xq.add(gi * GROUP)), vld1q_s8(xq.add(gi * GROUP + 16))];
            let z = vdupq_n_s32(0);
            let mut pairs = [(z, z); 4];
            // Chunk c: 4 k of x replicated (`dup` by element), 4 weight registers.
            macro_rules! chunk {
                ($c:expr, $w:expr) => {{
                    const C: usize = $c;
                    let xd =
                        vreinterpretq_s8_s32(vdupq_laneq_s32::<{ (C % 4) as i32 }>(vreinterpretq_s32_s8(xr[C / 4])));
                    let w: [int8x16_t; 4] = $w;
                    for j in 0..4 {
                        mac4(&mut pairs[j], w[j], xd);
                    }
                }};
            }
            for_each_chunk!(Q4, wg, chunk);
            // INT4: raw nibbles above, plus -8 * sum(x).
            let corr = vdupq_n_s32(if Q4 { q4_correction(xr[0], xr[1]) } else { 0 });
            let mut isum = zero_i32();
            for j in 0..4 {
                isum[j] = vaddq_s32(vpaddq_s32(pairs[j].0, pairs[j].1), corr);
            }
            let ws = f16x16(sp.add(gi * 32));
            fold(&mut acc, &isum, &ws, *xs.add(gi));
        }
        g.store(t, bi, &acc);
    }
}
