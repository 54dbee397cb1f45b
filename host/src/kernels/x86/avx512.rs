//! The `avx512` tier: AVX-512 F/BW/VL with VNNI (`vpdpbusd` on 512-bit registers).
//!
//! - f32 dot products: one zmm holds the 16 canonical partial sums (lane i%16), `vmulps`
//!   then `vaddps` (never FMA), masked zero-filled tail, the pairwise tree at the end.
//!   Matmuls compute tiles of 4 rows x 4 tokens (prefill) or 4 rows (decode, with the
//!   next 4 rows prefetched): independent accumulator chains sharing each load.
//! - Quantized GEMV/GEMM over the `r16k4` layout: one 64-byte load = 16 rows x 4 k, fed
//!   to `vpdpbusd` against the broadcast 4 activations of each token. `vpdpbusd` is
//!   u8 x s8, so int8 weights are flipped to offset binary (`w ^ 0x80` = `w + 128`) and
//!   the accumulator starts at `-128 * sum(x)` of the group; int4 nibbles already are
//!   `q + 8` in [0, 15], with the accumulator starting at `-8 * sum(x)`. The i32 group sums
//!   are exact, then `acc += (w_scale * x_scale) * isum` in f32, as in the scalar code.

use std::arch::x86_64::*;

use saguaro_engine::kernels::Kernels;
use saguaro_engine::quant::GROUP;

use super::driver::{self, FloatTier, GemmCall, QuantTier, W_F16, W_F32};

/// Tier name (`SAGUARO_KERNELS=avx512`).
pub(super) const NAME: &str = "avx512";

/// Whether this CPU has every feature the tier's functions are compiled with.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("f16c")
}

/// The tier's table: the `driver` entries over [`Avx512`]'s microkernels, handed out only
/// when [`available`] holds (the safety argument of `driver`); otherwise the best tier below.
pub(super) fn kernels() -> Kernels {
    if !available() {
        return super::avxvnni::kernels();
    }
    Kernels {
        tier: NAME,
        dot_f32: driver::dot_f32::<Avx512>,
        matmul_f32: driver::matmul_f32::<Avx512>,
        matmul_f16: driver::matmul_f16::<Avx512>,
        matmul_bf16: driver::matmul_bf16::<Avx512>,
        quantize_row: driver::quantize_row::<Avx512>,
        gemm_q8: driver::gemm_q8::<Avx512>,
        gemm_q4: driver::gemm_q4::<Avx512>,
        softmax: super::elementwise::softmax_avx512,
        silu_mul: super::elementwise::silu_mul_avx512,
        axpy: super::elementwise::axpy_avx512,
        ..Kernels::scalar()
    }
}

// ---------------------------------------------------------------------------------------
// f32 dot products and matmuls, activation quantization
// ---------------------------------------------------------------------------------------

/// Mask of the first `n` (<= 16) lanes.
#[inline]
fn tail_mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// The canonical tree `p[j] += p[j+8]`, `+4`, `+2`, `+1` on the 16 lanes of `v`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
fn reduce16(v: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let s8 = _mm256_add_ps(lo, hi);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
    _mm_cvtss_f32(s1)
}

/// 16 weights of kind `KIND` widened to f32, from `p` (element offset already applied);
/// `m` selects the lanes read (the others are +0.0).
///
/// # Safety
/// Target features present; the selected lanes readable.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
#[inline]
unsafe fn load_w<const KIND: u8, const MASKED: bool>(p: *const u8, m: __mmask16) -> __m512 {
    // SAFETY: the caller guarantees the lanes selected by `m` (all 16 when !MASKED) are in
    // bounds; masked loads do not touch the others.
    unsafe {
        match KIND {
            W_F32 => {
                if MASKED {
                    _mm512_maskz_loadu_ps(m, p.cast())
                } else {
                    _mm512_loadu_ps(p.cast())
                }
            }
            W_F16 => {
                let h = if MASKED { _mm256_maskz_loadu_epi16(m, p.cast()) } else { _mm256_loadu_si256(p.cast()) };
                _mm512_cvtph_ps(h)
            }
            _ => {
                let h = if MASKED { _mm256_maskz_loadu_epi16(m, p.cast()) } else { _mm256_loadu_si256(p.cast()) };
                // bf16 -> f32 is a 16-bit shift. `half` also sets the quiet bit of a NaN, which
                // this does not: the widened weight only ever feeds `vmulps`, which quiets a
                // signalling NaN operand in exactly the same way, so products are identical.
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
            }
        }
    }
}

/// The tier's microkernels (see the module docs; the drivers are in `driver`).
pub(super) struct Avx512;

impl FloatTier for Avx512 {
    fn available() -> bool {
        available()
    }

    // Prefill: 4 rows x 4 tokens (16 accumulators, 8 loads per 16 mul+add).
    const MATMUL_TILE: (usize, usize) = (4, 4);

    /// # Safety
    /// Target features of this tier present; `a` and `b` readable for `n` f32.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
    unsafe fn dot(a: *const f32, b: *const f32, n: usize) -> f32 {
        let full = n / 16 * 16;
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= full <= n.
            let (va, vb) = unsafe { (_mm512_loadu_ps(a.add(i)), _mm512_loadu_ps(b.add(i))) };
            acc = _mm512_add_ps(acc, _mm512_mul_ps(va, vb));
            i += 16;
        }
        if full < n {
            let m = tail_mask(n - full);
            // SAFETY: only the first n - full lanes (in bounds) are read; masked-off lanes are
            // not accessed (AVX-512 masked loads suppress faults) and read as +0.0.
            let (va, vb) = unsafe { (_mm512_maskz_loadu_ps(m, a.add(full)), _mm512_maskz_loadu_ps(m, b.add(full))) };
            acc = _mm512_add_ps(acc, _mm512_mul_ps(va, vb));
        }
        reduce16(acc)
    }

    /// Rows `r0..r0+RR` x tokens `t0..t0+TT` of `out[t][r] = dot(x[t], w[r])`.
    ///
    /// # Safety
    /// Target features present; `x` holds `tokens * cols` f32, `w` `rows * cols` elements of
    /// `KIND`, `out` `tokens * rows` f32, with `r0 + RR <= rows` and `t0 + TT <= tokens`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
    unsafe fn mm_tile<const KIND: u8, const RR: usize, const TT: usize, const PF: bool>(
        x: *const f32,
        w: *const u8,
        cols: usize,
        rows: usize,
        out: *mut f32,
        r0: usize,
        t0: usize,
    ) {
        let esize = if KIND == W_F32 { 4 } else { 2 };
        let full = cols / 16 * 16;
        let mut acc = [[_mm512_setzero_ps(); TT]; RR];
        let mut xv = [_mm512_setzero_ps(); TT];
        let mut k = 0;
        while k < full {
            for (i, v) in xv.iter_mut().enumerate() {
                // SAFETY: t0 + i < tokens and k + 16 <= cols.
                *v = unsafe { _mm512_loadu_ps(x.add((t0 + i) * cols + k)) };
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                if PF && (k * esize) % 64 == 0 {
                    // The next row tile (RR rows further) at the same column: the rows of a tile
                    // are short interleaved streams that the hardware prefetcher alone follows
                    // poorly. Prefetches never fault, so running past the end is harmless.
                    _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(((r0 + r + RR) * cols + k) * esize).cast());
                }
                // SAFETY: r0 + r < rows and k + 16 <= cols.
                let wv = unsafe { load_w::<KIND, false>(w.add(((r0 + r) * cols + k) * esize), 0xFFFF) };
                for (a, &xi) in acc_r.iter_mut().zip(&xv) {
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(xi, wv));
                }
            }
            k += 16;
        }
        if full < cols {
            let m = tail_mask(cols - full);
            for (i, v) in xv.iter_mut().enumerate() {
                // SAFETY: the lanes of `m` are the cols - full elements left in the row.
                *v = unsafe { _mm512_maskz_loadu_ps(m, x.add((t0 + i) * cols + full)) };
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: as above, only the in-bounds tail lanes are read.
                let wv = unsafe { load_w::<KIND, true>(w.add(((r0 + r) * cols + full) * esize), m) };
                for (a, &xi) in acc_r.iter_mut().zip(&xv) {
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(xi, wv));
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (i, &a) in acc_r.iter().enumerate() {
                // SAFETY: (t0 + i) * rows + r0 + r < tokens * rows.
                unsafe { *out.add((t0 + i) * rows + r0 + r) = reduce16(a) };
            }
        }
    }

    /// # Safety
    /// Target features present; `q.len() == 32 * scales.len() >= x.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
    unsafe fn quantize_row(x: &[f32], q: &mut [i8], scales: &mut [f32]) {
        let c127 = _mm512_set1_ps(127.0);
        let cm127 = _mm512_set1_ps(-127.0);
        for (g, s) in scales.iter_mut().enumerate() {
            let start = (g * GROUP).min(x.len());
            let n = (x.len() - start).min(GROUP);
            let (m0, m1) = if n >= 16 { (0xFFFF, tail_mask(n - 16)) } else { (tail_mask(n), 0) };
            let (p0, p1) = (x.as_ptr().wrapping_add(start), x.as_ptr().wrapping_add(start + 16));
            // SAFETY: lanes selected by m0 / m1 are x[start .. start + n], in bounds; masked-off
            // lanes are not accessed (masked loads suppress faults) and read as +0.0.
            let (v0, v1) = unsafe { (_mm512_maskz_loadu_ps(m0, p0), _mm512_maskz_loadu_ps(m1, p1)) };
            // max(|x|, m): vmaxps returns its second operand when either is NaN, so NaN inputs
            // are skipped, as `f32::max` does in the scalar fold.
            let m = _mm512_max_ps(_mm512_abs_ps(v1), _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps()));
            let amax = _mm512_reduce_max_ps(m);
            // SAFETY: g < scales.len() and q.len() == 32 * scales.len().
            let qg = unsafe { q.as_mut_ptr().add(g * GROUP) };
            if amax == 0.0 {
                *s = 0.0;
                // SAFETY: 32 bytes at qg are in q.
                unsafe { _mm256_storeu_si256(qg.cast(), _mm256_setzero_si256()) };
                continue;
            }
            let inv = _mm512_set1_ps(127.0 / amax);
            // Clamp before rounding (the bounds are integers, so this equals clamping after).
            // vminps/vmaxps with the constant first pass a NaN product through; it converts to
            // 0x8000_0000, whose low byte (vpmovdb truncates) is 0, as `NaN as i8` is in Rust.
            // Rounding to nearest even is encoded in the instruction (independent of MXCSR).
            const RNE: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
            let q0 = _mm512_cvt_roundps_epi32::<RNE>(_mm512_max_ps(cm127, _mm512_min_ps(c127, _mm512_mul_ps(v0, inv))));
            let q1 = _mm512_cvt_roundps_epi32::<RNE>(_mm512_max_ps(cm127, _mm512_min_ps(c127, _mm512_mul_ps(v1, inv))));
            let b = _mm256_inserti128_si256::<1>(
                _mm256_castsi128_si256(_mm512_cvtepi32_epi8(q0)),
                _mm512_cvtepi32_epi8(q1),
            );
            // SAFETY: 32 bytes at qg are in q.
            unsafe { _mm256_storeu_si256(qg.cast(), b) };
            *s = amax / 127.0;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Quantized GEMV / GEMM
// ---------------------------------------------------------------------------------------

/// The f32 epilogue of one group: `acc += (w_scale * x_scale) * isum` for RB x TT tiles.
///
/// # Safety
/// Target features present; `sp[r] + 32 * g` has 32 readable bytes, `c.xs` holds
/// `(t + TT) * groups` scales.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
#[inline]
unsafe fn epilogue<const RB: usize, const TT: usize>(
    c: &GemmCall,
    sp: &[*const u8; RB],
    g: usize,
    t: usize,
    isum: &[[__m512i; TT]; RB],
    acc: &mut [[__m512; TT]; RB],
) {
    for r in 0..RB {
        // SAFETY: the 16 f16 scales of (row block, group g) are in `w.scales`.
        let ws = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(sp[r].add(g * 32).cast()) });
        for i in 0..TT {
            // SAFETY: (t + i) * groups + g < tokens * groups.
            let xs = unsafe { *c.xs.add((t + i) * c.groups + g) };
            let s = _mm512_mul_ps(ws, _mm512_set1_ps(xs));
            acc[r][i] = _mm512_add_ps(acc[r][i], _mm512_mul_ps(s, _mm512_cvtepi32_ps(isum[r][i])));
        }
    }
}

/// Stores the RB x TT tile of 16-row results.
///
/// # Safety
/// Target features present; `t + TT <= tokens`, `bi + RB <= nblocks`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
#[inline]
unsafe fn store_tile<const RB: usize, const TT: usize>(c: &GemmCall, bi: usize, t: usize, acc: &[[__m512; TT]; RB]) {
    for r in 0..RB {
        for i in 0..TT {
            // SAFETY: (t + i) * width + (bi + r) * 16 + 16 <= tokens * width.
            unsafe { _mm512_storeu_ps(c.out.add((t + i) * c.width + (bi + r) * 16), acc[r][i]) };
        }
    }
}

impl QuantTier for Avx512 {
    fn available() -> bool {
        available()
    }

    // Prefill: 2 row blocks x 4 tokens per tile.
    const GEMM_TILE: (usize, usize) = (2, 4);

    // `vpdpbusd` is u8 x s8: INT8 weights are flipped to offset binary.
    const Q8_OFFSET_BINARY: bool = true;

    /// INT8 tile: row blocks `bi..bi+RB` (relative to the call) x tokens `t..t+TT`.
    ///
    /// # Safety
    /// Target features present; `bi + RB <= c.nblocks`, `t + TT <= c.tokens`, and the
    /// [`GemmCall`] invariants (corr filled).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
    unsafe fn q8<const RB: usize, const TT: usize, const PF: bool>(c: &GemmCall, bi: usize, t: usize) {
        let groups = c.groups;
        let flip = _mm512_set1_epi8(-128);
        // SAFETY: bi + RB <= nblocks, t + TT <= tokens.
        let ((wp, sp), xp) = unsafe { (c.block_ptrs::<RB>(bi, 512), c.token_ptrs::<TT>(t)) };
        let mut acc = [[_mm512_setzero_ps(); TT]; RB];
        for g in 0..groups {
            let mut isum = [[_mm512_setzero_si512(); TT]; RB];
            for i in 0..TT {
                // SAFETY: (t + i) * groups + g < tokens * groups entries of corr.
                let corr = _mm512_set1_epi32(unsafe { *c.corr.add((t + i) * groups + g) });
                for row in isum.iter_mut() {
                    row[i] = corr;
                }
            }
            for ch in 0..8 {
                let mut wv = [_mm512_setzero_si512(); RB];
                for r in 0..RB {
                    if PF {
                        _mm_prefetch::<_MM_HINT_T0>(
                            wp[r].wrapping_add(g * 512 + ch * 64 + driver::PREFETCH_DISTANCE).cast(),
                        );
                    }
                    // SAFETY: chunk ch of group g of the row block: 64 bytes inside w.data.
                    wv[r] = _mm512_xor_si512(unsafe { _mm512_loadu_si512(wp[r].add(g * 512 + ch * 64).cast()) }, flip);
                }
                for i in 0..TT {
                    // SAFETY: 4 bytes at 32 g + 4 ch < cols_padded in token t + i's row.
                    let xb = _mm512_set1_epi32(unsafe { xp[i].add(g * GROUP + ch * 4).cast::<i32>().read_unaligned() });
                    for r in 0..RB {
                        isum[r][i] = _mm512_dpbusd_epi32(isum[r][i], wv[r], xb);
                    }
                }
            }
            // SAFETY: g < groups, t + TT <= tokens.
            unsafe { epilogue::<RB, TT>(c, &sp, g, t, &isum, &mut acc) };
        }
        // SAFETY: tile bounds as required by this function.
        unsafe { store_tile::<RB, TT>(c, bi, t, &acc) };
    }

    /// INT4 tile: as [`QuantTier::q8`]; one 64-byte load holds chunk c (low nibbles) and c + 4
    /// (high nibbles) of 16 rows.
    ///
    /// # Safety
    /// As [`QuantTier::q8`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
    unsafe fn q4<const RB: usize, const TT: usize, const PF: bool>(c: &GemmCall, bi: usize, t: usize) {
        let groups = c.groups;
        let low = _mm512_set1_epi8(0x0F);
        // SAFETY: bi + RB <= nblocks, t + TT <= tokens.
        let ((wp, sp), xp) = unsafe { (c.block_ptrs::<RB>(bi, 256), c.token_ptrs::<TT>(t)) };
        let mut acc = [[_mm512_setzero_ps(); TT]; RB];
        for g in 0..groups {
            let mut isum = [[_mm512_setzero_si512(); TT]; RB];
            for i in 0..TT {
                // SAFETY: (t + i) * groups + g < tokens * groups entries of corr.
                let corr = _mm512_set1_epi32(unsafe { *c.corr.add((t + i) * groups + g) });
                for row in isum.iter_mut() {
                    row[i] = corr;
                }
            }
            for ch in 0..4 {
                let mut lo = [_mm512_setzero_si512(); RB];
                let mut hi = [_mm512_setzero_si512(); RB];
                for r in 0..RB {
                    if PF {
                        _mm_prefetch::<_MM_HINT_T0>(
                            wp[r].wrapping_add(g * 256 + ch * 64 + driver::PREFETCH_DISTANCE).cast(),
                        );
                    }
                    // SAFETY: 64-byte chunk ch of group g (256 bytes) of the row block, in w.data.
                    let raw = unsafe { _mm512_loadu_si512(wp[r].add(g * 256 + ch * 64).cast()) };
                    lo[r] = _mm512_and_si512(raw, low);
                    hi[r] = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), low);
                }
                for i in 0..TT {
                    // SAFETY: k = 32 g + 4 ch and 32 g + 4 (ch + 4), 4 bytes each, < cols_padded.
                    let (xl, xh) = unsafe {
                        (
                            xp[i].add(g * GROUP + ch * 4).cast::<i32>().read_unaligned(),
                            xp[i].add(g * GROUP + (ch + 4) * 4).cast::<i32>().read_unaligned(),
                        )
                    };
                    let (xl, xh) = (_mm512_set1_epi32(xl), _mm512_set1_epi32(xh));
                    for r in 0..RB {
                        isum[r][i] = _mm512_dpbusd_epi32(isum[r][i], lo[r], xl);
                        isum[r][i] = _mm512_dpbusd_epi32(isum[r][i], hi[r], xh);
                    }
                }
            }
            // SAFETY: g < groups, t + TT <= tokens.
            unsafe { epilogue::<RB, TT>(c, &sp, g, t, &isum, &mut acc) };
        }
        // SAFETY: tile bounds as required by this function.
        unsafe { store_tile::<RB, TT>(c, bi, t, &acc) };
    }
}
