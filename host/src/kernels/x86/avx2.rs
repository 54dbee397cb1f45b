//! The `avx2` tier: AVX2 + F16C (no FMA is ever used: the scalar definition multiplies and
//! adds separately).
//!
//! - f32 dot products: the 16 canonical partial sums live in two ymm registers (lanes 0-7
//!   and 8-15); the first step of the pairwise tree is `lo + hi`.
//! - Quantized GEMV/GEMM: a 64-byte `r16k4` chunk is two ymm halves (rows 0-7 and 8-15,
//!   4 k each). int8: `vpmaddubsw(|w|, sign(x, w))` gives exact i16 pair sums
//!   (|w| <= 128, |x| <= 127: at most 32512), `vpmaddwd` with ones widens them to i32.
//!   int4: `vpmaddubsw(nibble, x)` (nibble in [0, 15]) pair sums are at most 3810 in
//!   magnitude, so the 8 chunks of a group accumulate in i16 (<= 30480) before one
//!   `vpmaddwd`; the nibble offset is removed with `-8 * sum(x)` per group.

use std::arch::x86_64::*;

use saguaro_engine::kernels::Kernels;
use saguaro_engine::quant::GROUP;

use super::driver::{self, FloatTier, GemmCall, QuantTier, W_F16, W_F32};

/// Tier name (`SAGUARO_KERNELS=avx2`).
pub(super) const NAME: &str = "avx2";

/// Whether this CPU has every feature the tier's functions are compiled with.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c")
}

/// The tier's table: the `driver` entries over [`Avx2`]'s microkernels, handed out only when
/// [`available`] holds (the safety argument of `driver`); otherwise the scalar table.
pub(super) fn kernels() -> Kernels {
    if !available() {
        return Kernels::scalar();
    }
    Kernels {
        tier: NAME,
        dot_f32: driver::dot_f32::<Avx2>,
        matmul_f32: driver::matmul_f32::<Avx2>,
        matmul_f16: driver::matmul_f16::<Avx2>,
        matmul_bf16: driver::matmul_bf16::<Avx2>,
        quantize_row: driver::quantize_row::<Avx2>,
        gemm_q8: driver::gemm_q8::<Avx2>,
        gemm_q4: driver::gemm_q4::<Avx2>,
        softmax: super::elementwise::softmax_avx2,
        silu_mul: super::elementwise::silu_mul_avx2,
        axpy: super::elementwise::axpy_avx2,
        ..Kernels::scalar()
    }
}

// ---------------------------------------------------------------------------------------
// f32 dot products and matmuls, activation quantization
// ---------------------------------------------------------------------------------------

/// The canonical tree on 16 partial sums held as (lanes 0-7, lanes 8-15).
#[target_feature(enable = "avx2,f16c")]
pub(super) fn reduce16(lo: __m256, hi: __m256) -> f32 {
    let s8 = _mm256_add_ps(lo, hi);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
    _mm_cvtss_f32(s1)
}

/// 8 weights of kind `KIND` at `p` widened to f32.
///
/// # Safety
/// AVX2 + F16C present; 8 elements readable at `p`.
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn load8<const KIND: u8>(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 8 readable elements (32 bytes for f32, 16 otherwise).
    unsafe {
        match KIND {
            W_F32 => _mm256_loadu_ps(p.cast()),
            W_F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
            _ => {
                // bf16 -> f32 is a 16-bit shift. `half` also sets the quiet bit of a NaN, which
                // this does not: the widened weight only ever feeds `vmulps`, which quiets a
                // signalling NaN operand in exactly the same way, so products are identical.
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()))))
            }
        }
    }
}

/// The tier's microkernels (see the module docs; the drivers are in `driver`).
pub(super) struct Avx2;

impl FloatTier for Avx2 {
    fn available() -> bool {
        available()
    }

    // Prefill: 2 rows x 2 tokens (8 accumulators + 4 x + 2 w registers of the 16).
    const MATMUL_TILE: (usize, usize) = (2, 2);

    /// # Safety
    /// AVX2 + F16C present; `a`, `b` readable for `n` f32.
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn dot(a: *const f32, b: *const f32, n: usize) -> f32 {
        let full = n / 16 * 16;
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= n.
            let (a0, a1, b0, b1) = unsafe {
                (
                    _mm256_loadu_ps(a.add(i)),
                    _mm256_loadu_ps(a.add(i + 8)),
                    _mm256_loadu_ps(b.add(i)),
                    _mm256_loadu_ps(b.add(i + 8)),
                )
            };
            lo = _mm256_add_ps(lo, _mm256_mul_ps(a0, b0));
            hi = _mm256_add_ps(hi, _mm256_mul_ps(a1, b1));
            i += 16;
        }
        if full < n {
            let (mut ta, mut tb) = ([0.0f32; 16], [0.0f32; 16]);
            // SAFETY: n - full < 16 elements remain in both inputs; the buffers hold 16.
            unsafe {
                std::ptr::copy_nonoverlapping(a.add(full), ta.as_mut_ptr(), n - full);
                std::ptr::copy_nonoverlapping(b.add(full), tb.as_mut_ptr(), n - full);
            }
            // SAFETY: the stack buffers hold 16 f32 (zero beyond the tail: +0 * +0 = +0, as
            // the scalar zero products).
            let (a0, a1, b0, b1) = unsafe {
                (
                    _mm256_loadu_ps(ta.as_ptr()),
                    _mm256_loadu_ps(ta.as_ptr().add(8)),
                    _mm256_loadu_ps(tb.as_ptr()),
                    _mm256_loadu_ps(tb.as_ptr().add(8)),
                )
            };
            lo = _mm256_add_ps(lo, _mm256_mul_ps(a0, b0));
            hi = _mm256_add_ps(hi, _mm256_mul_ps(a1, b1));
        }
        reduce16(lo, hi)
    }

    /// Rows `r0..r0+RR` x tokens `t0..t0+TT` of `out[t][r] = dot(x[t], w[r])`.
    ///
    /// # Safety
    /// AVX2 + F16C present; `x` holds `tokens * cols` f32, `w` `rows * cols` elements of `KIND`,
    /// `out` `tokens * rows` f32, `r0 + RR <= rows`, `t0 + TT <= tokens`.
    #[target_feature(enable = "avx2,f16c")]
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
        let mut lo = [[_mm256_setzero_ps(); TT]; RR];
        let mut hi = [[_mm256_setzero_ps(); TT]; RR];
        let mut x0 = [_mm256_setzero_ps(); TT];
        let mut x1 = [_mm256_setzero_ps(); TT];
        let mut k = 0;
        while k < full {
            for i in 0..TT {
                // SAFETY: t0 + i < tokens, k + 16 <= cols.
                unsafe {
                    x0[i] = _mm256_loadu_ps(x.add((t0 + i) * cols + k));
                    x1[i] = _mm256_loadu_ps(x.add((t0 + i) * cols + k + 8));
                }
            }
            for r in 0..RR {
                if PF && (k * esize) % 64 == 0 {
                    // The next row tile (RR rows further) at the same column: the rows of a tile
                    // are short interleaved streams that the hardware prefetcher alone follows
                    // poorly. Prefetches never fault, so running past the end is harmless.
                    _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(((r0 + r + RR) * cols + k) * esize).cast());
                }
                let p = w.wrapping_add(((r0 + r) * cols + k) * esize);
                // SAFETY: r0 + r < rows, k + 16 <= cols: 16 elements at p are in w.
                let (w0, w1) = unsafe { (load8::<KIND>(p), load8::<KIND>(p.add(8 * esize))) };
                for i in 0..TT {
                    lo[r][i] = _mm256_add_ps(lo[r][i], _mm256_mul_ps(x0[i], w0));
                    hi[r][i] = _mm256_add_ps(hi[r][i], _mm256_mul_ps(x1[i], w1));
                }
            }
            k += 16;
        }
        if full < cols {
            let n = cols - full;
            for i in 0..TT {
                let mut buf = [0.0f32; 16];
                // SAFETY: n elements remain in token t0 + i's row; the buffer holds 16.
                unsafe {
                    std::ptr::copy_nonoverlapping(x.add((t0 + i) * cols + full), buf.as_mut_ptr(), n);
                    x0[i] = _mm256_loadu_ps(buf.as_ptr());
                    x1[i] = _mm256_loadu_ps(buf.as_ptr().add(8));
                }
            }
            for r in 0..RR {
                let mut buf = [0u8; 64];
                // SAFETY: n elements (n * esize bytes) remain in row r0 + r; the buffer holds
                // 16 elements of any kind, zero beyond the tail (zero widens to +0.0).
                let (w0, w1) = unsafe {
                    std::ptr::copy_nonoverlapping(w.add(((r0 + r) * cols + full) * esize), buf.as_mut_ptr(), n * esize);
                    (load8::<KIND>(buf.as_ptr()), load8::<KIND>(buf.as_ptr().add(8 * esize)))
                };
                for i in 0..TT {
                    lo[r][i] = _mm256_add_ps(lo[r][i], _mm256_mul_ps(x0[i], w0));
                    hi[r][i] = _mm256_add_ps(hi[r][i], _mm256_mul_ps(x1[i], w1));
                }
            }
        }
        for r in 0..RR {
            for i in 0..TT {
                // SAFETY: (t0 + i) * rows + r0 + r < tokens * rows.
                unsafe { *out.add((t0 + i) * rows + r0 + r) = reduce16(lo[r][i], hi[r][i]) };
            }
        }
    }

    /// # Safety
    /// AVX2 present; `q.len() == 32 * scales.len() >= x.len()`.
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn quantize_row(x: &[f32], q: &mut [i8], scales: &mut [f32]) {
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
        let c127 = _mm256_set1_ps(127.0);
        let cm127 = _mm256_set1_ps(-127.0);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (g, s) in scales.iter_mut().enumerate() {
            let start = (g * GROUP).min(x.len());
            let n = (x.len() - start).min(GROUP);
            let mut buf = [0.0f32; GROUP];
            let src = if n == GROUP {
                // SAFETY: 32 elements from start are in x.
                unsafe { x.as_ptr().add(start) }
            } else {
                buf[..n].copy_from_slice(&x[start..start + n]);
                buf.as_ptr()
            };
            let mut v = [_mm256_setzero_ps(); 4];
            for (j, vj) in v.iter_mut().enumerate() {
                // SAFETY: src points at 32 readable f32 (x itself or the zero-padded buffer).
                *vj = unsafe { _mm256_loadu_ps(src.add(8 * j)) };
            }
            // max(|x|, m): vmaxps returns its second operand when either is NaN, so NaNs are
            // skipped like `f32::max` does in the scalar fold.
            let mut m = _mm256_setzero_ps();
            for &vj in &v {
                m = _mm256_max_ps(_mm256_and_ps(vj, abs_mask), m);
            }
            let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
            let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            let m1 = _mm_max_ss(m2, _mm_shuffle_ps::<0b01>(m2, m2));
            let amax = _mm_cvtss_f32(m1);
            // SAFETY: g < scales.len(), q.len() == 32 * scales.len().
            let qg = unsafe { q.as_mut_ptr().add(g * GROUP) };
            if amax == 0.0 {
                *s = 0.0;
                // SAFETY: 32 bytes at qg are in q.
                unsafe { _mm256_storeu_si256(qg.cast(), _mm256_setzero_si256()) };
                continue;
            }
            let inv = _mm256_set1_ps(127.0 / amax);
            let mut qi = [_mm256_setzero_si256(); 4];
            for (j, &vj) in v.iter().enumerate() {
                let y = _mm256_mul_ps(vj, inv);
                // NaN products become 0 (`NaN as i8` is 0 in the scalar code).
                let y = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(y, y), y);
                // Clamp, then round half to even (the bounds are integers: same as after).
                qi[j] = _mm256_cvtps_epi32(_mm256_max_ps(cm127, _mm256_min_ps(c127, y)));
            }
            let w = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
            // SAFETY: 32 bytes at qg are in q.
            unsafe { _mm256_storeu_si256(qg.cast(), _mm256_permutevar8x32_epi32(w, order)) };
            *s = amax / 127.0;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Quantized GEMV / GEMM
// ---------------------------------------------------------------------------------------

/// The f32 epilogue of one group on (rows 0-7, rows 8-15) halves:
/// `acc += (w_scale * x_scale) * isum`.
///
/// # Safety
/// AVX2 + F16C present; `sp[r] + 32 g` has 32 readable bytes; `t + TT <= tokens`.
#[target_feature(enable = "avx2,f16c")]
#[inline]
pub(super) unsafe fn epilogue<const RB: usize, const TT: usize>(
    c: &GemmCall,
    sp: &[*const u8; RB],
    g: usize,
    t: usize,
    isum: &[[[__m256i; TT]; 2]; RB],
    acc: &mut [[[__m256; TT]; 2]; RB],
) {
    for r in 0..RB {
        for h in 0..2 {
            // SAFETY: 8 f16 scales of rows 8h..8h+8 of (row block, group g).
            let ws = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(sp[r].add(g * 32 + h * 16).cast()) });
            for i in 0..TT {
                // SAFETY: (t + i) * groups + g < tokens * groups.
                let xs = unsafe { *c.xs.add((t + i) * c.groups + g) };
                let s = _mm256_mul_ps(ws, _mm256_set1_ps(xs));
                acc[r][h][i] = _mm256_add_ps(acc[r][h][i], _mm256_mul_ps(s, _mm256_cvtepi32_ps(isum[r][h][i])));
            }
        }
    }
}

/// Stores an RB x TT tile.
///
/// # Safety
/// AVX2 present; `bi + RB <= nblocks`, `t + TT <= tokens`.
#[target_feature(enable = "avx2,f16c")]
#[inline]
pub(super) unsafe fn store_tile<const RB: usize, const TT: usize>(
    c: &GemmCall,
    bi: usize,
    t: usize,
    acc: &[[[__m256; TT]; 2]; RB],
) {
    for r in 0..RB {
        for h in 0..2 {
            for i in 0..TT {
                // SAFETY: (t + i) * width + (bi + r) * 16 + 8 h + 8 <= tokens * width.
                unsafe { _mm256_storeu_ps(c.out.add((t + i) * c.width + (bi + r) * 16 + h * 8), acc[r][h][i]) };
            }
        }
    }
}

impl QuantTier for Avx2 {
    fn available() -> bool {
        available()
    }

    // Prefill: 1 row block x 4 tokens per tile.
    const GEMM_TILE: (usize, usize) = (1, 4);

    // `vpmaddubsw(|w|, sign(x, w))` multiplies signed weights directly.
    const Q8_OFFSET_BINARY: bool = false;

    /// INT8 tile: row blocks `bi..bi+RB` x tokens `t..t+TT`. Exact for activations in
    /// [-127, 127], the range of `QuantActs::q` (`vpsignb` cannot negate -128).
    ///
    /// # Safety
    /// AVX2 + F16C present; `bi + RB <= c.nblocks`, `t + TT <= c.tokens`, `GemmCall` invariants.
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn q8<const RB: usize, const TT: usize, const PF: bool>(c: &GemmCall, bi: usize, t: usize) {
        let ones = _mm256_set1_epi16(1);
        // SAFETY: tile bounds as required.
        let ((wp, sp), xp) = unsafe { (c.block_ptrs::<RB>(bi, 512), c.token_ptrs::<TT>(t)) };
        let mut acc = [[[_mm256_setzero_ps(); TT]; 2]; RB];
        for g in 0..c.groups {
            let mut isum = [[[_mm256_setzero_si256(); TT]; 2]; RB];
            for ch in 0..8 {
                let mut raw = [[_mm256_setzero_si256(); 2]; RB];
                let mut aw = [[_mm256_setzero_si256(); 2]; RB];
                if PF {
                    for r in 0..RB {
                        _mm_prefetch::<_MM_HINT_T0>(
                            wp[r].wrapping_add(g * 512 + ch * 64 + driver::PREFETCH_DISTANCE).cast(),
                        );
                    }
                }
                for r in 0..RB {
                    for h in 0..2 {
                        // SAFETY: 32 bytes of chunk ch of group g of the row block, in w.data.
                        raw[r][h] = unsafe { _mm256_loadu_si256(wp[r].add(g * 512 + ch * 64 + h * 32).cast()) };
                        aw[r][h] = _mm256_abs_epi8(raw[r][h]);
                    }
                }
                for i in 0..TT {
                    // SAFETY: 4 bytes at 32 g + 4 ch < cols_padded of token t + i.
                    let xb = _mm256_set1_epi32(unsafe { xp[i].add(g * GROUP + ch * 4).cast::<i32>().read_unaligned() });
                    for r in 0..RB {
                        for h in 0..2 {
                            // |w| * sign(x, w) = w * x per byte; pair sums fit i16 exactly.
                            let p = _mm256_maddubs_epi16(aw[r][h], _mm256_sign_epi8(xb, raw[r][h]));
                            isum[r][h][i] = _mm256_add_epi32(isum[r][h][i], _mm256_madd_epi16(p, ones));
                        }
                    }
                }
            }
            // SAFETY: g < groups, t + TT <= tokens.
            unsafe { epilogue::<RB, TT>(c, &sp, g, t, &isum, &mut acc) };
        }
        // SAFETY: tile bounds as required.
        unsafe { store_tile::<RB, TT>(c, bi, t, &acc) };
    }

    /// INT4 tile.
    ///
    /// # Safety
    /// As [`QuantTier::q8`], with the correction sums (`-8 * sum(x)`) attached.
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn q4<const RB: usize, const TT: usize, const PF: bool>(c: &GemmCall, bi: usize, t: usize) {
        let ones = _mm256_set1_epi16(1);
        let low = _mm256_set1_epi8(0x0F);
        // SAFETY: tile bounds as required.
        let ((wp, sp), xp) = unsafe { (c.block_ptrs::<RB>(bi, 256), c.token_ptrs::<TT>(t)) };
        let mut acc = [[[_mm256_setzero_ps(); TT]; 2]; RB];
        for g in 0..c.groups {
            let mut s16 = [[[_mm256_setzero_si256(); TT]; 2]; RB];
            for ch in 0..4 {
                let mut lo = [[_mm256_setzero_si256(); 2]; RB];
                let mut hi = [[_mm256_setzero_si256(); 2]; RB];
                if PF {
                    for r in 0..RB {
                        _mm_prefetch::<_MM_HINT_T0>(
                            wp[r].wrapping_add(g * 256 + ch * 64 + driver::PREFETCH_DISTANCE).cast(),
                        );
                    }
                }
                for r in 0..RB {
                    for h in 0..2 {
                        // SAFETY: 32 bytes of chunk ch of group g (256 bytes) of the row block.
                        let raw = unsafe { _mm256_loadu_si256(wp[r].add(g * 256 + ch * 64 + h * 32).cast()) };
                        lo[r][h] = _mm256_and_si256(raw, low);
                        hi[r][h] = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low);
                    }
                }
                for i in 0..TT {
                    // SAFETY: 4 bytes at 32 g + 4 ch and 32 g + 4 (ch + 4) < cols_padded.
                    let (xl, xh) = unsafe {
                        (
                            xp[i].add(g * GROUP + ch * 4).cast::<i32>().read_unaligned(),
                            xp[i].add(g * GROUP + (ch + 4) * 4).cast::<i32>().read_unaligned(),
                        )
                    };
                    let (xl, xh) = (_mm256_set1_epi32(xl), _mm256_set1_epi32(xh));
                    for r in 0..RB {
                        for h in 0..2 {
                            let p = _mm256_add_epi16(
                                _mm256_maddubs_epi16(lo[r][h], xl),
                                _mm256_maddubs_epi16(hi[r][h], xh),
                            );
                            s16[r][h][i] = _mm256_add_epi16(s16[r][h][i], p);
                        }
                    }
                }
            }
            let mut isum = [[[_mm256_setzero_si256(); TT]; 2]; RB];
            for i in 0..TT {
                // SAFETY: (t + i) * groups + g < tokens * groups entries of corr.
                let corr = _mm256_set1_epi32(unsafe { *c.corr.add((t + i) * c.groups + g) });
                for r in 0..RB {
                    for h in 0..2 {
                        isum[r][h][i] = _mm256_add_epi32(_mm256_madd_epi16(s16[r][h][i], ones), corr);
                    }
                }
            }
            // SAFETY: g < groups, t + TT <= tokens.
            unsafe { epilogue::<RB, TT>(c, &sp, g, t, &isum, &mut acc) };
        }
        // SAFETY: tile bounds as required.
        unsafe { store_tile::<RB, TT>(c, bi, t, &acc) };
    }
}
