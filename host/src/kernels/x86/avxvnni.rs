//! The `avxvnni` tier: AVX2 + AVX-VNNI (`vpdpbusd` on 256-bit registers, VEX encoded).
//!
//! Only the quantized matmuls differ from `avx2`: a 64-byte `r16k4` chunk is two ymm halves
//! (rows 0-7 / 8-15, 4 k each) fed to `vpdpbusd` against the broadcast activations.
//! `vpdpbusd` is u8 x s8: int8 weights are flipped to offset binary (`w ^ 0x80` = `w + 128`)
//! and the accumulator starts at `-128 * sum(x)` of the group; int4 nibbles already are
//! `q + 8`, with the accumulator starting at `-8 * sum(x)`. Everything else (f32 matmuls,
//! activation quantization) is the `avx2` tier's.

use std::arch::x86_64::*;

use saguaro_engine::kernels::Kernels;
use saguaro_engine::quant::GROUP;

use super::avx2::{epilogue, store_tile};
use super::driver::{self, GemmCall, QuantTier};

/// Tier name (`SAGUARO_KERNELS=avxvnni`).
pub(super) const NAME: &str = "avxvnni";

/// Whether this CPU has every feature the tier's functions are compiled with.
pub(super) fn available() -> bool {
    super::avx2::available() && is_x86_feature_detected!("avxvnni")
}

/// The tier's table: the `avx2` table with the quantized matmuls over [`AvxVnni`]'s tiles,
/// handed out only when [`available`] holds (the safety argument of `driver`); otherwise the
/// tier below.
pub(super) fn kernels() -> Kernels {
    let below = super::avx2::kernels();
    if !available() {
        return below;
    }
    Kernels { tier: NAME, gemm_q8: driver::gemm_q8::<AvxVnni>, gemm_q4: driver::gemm_q4::<AvxVnni>, ..below }
}

/// Accumulators initialised with the per-(token, group) correction.
///
/// # Safety
/// AVX2 present; `t + TT <= tokens`, `g < groups`, corr attached.
#[target_feature(enable = "avx2,f16c,avxvnni")]
#[inline]
unsafe fn init_sums<const RB: usize, const TT: usize>(c: &GemmCall, g: usize, t: usize) -> [[[__m256i; TT]; 2]; RB] {
    let mut isum = [[[_mm256_setzero_si256(); TT]; 2]; RB];
    for i in 0..TT {
        // SAFETY: (t + i) * groups + g < tokens * groups entries of corr.
        let corr = _mm256_set1_epi32(unsafe { *c.corr.add((t + i) * c.groups + g) });
        for row in isum.iter_mut() {
            for half in row.iter_mut() {
                half[i] = corr;
            }
        }
    }
    isum
}

/// The tier's microkernels (see the module docs; the driver is in `driver`).
pub(super) struct AvxVnni;

impl QuantTier for AvxVnni {
    fn available() -> bool {
        available()
    }

    // Prefill: 1 row block x 4 tokens per tile.
    const GEMM_TILE: (usize, usize) = (1, 4);

    // `vpdpbusd` is u8 x s8: INT8 weights are flipped to offset binary.
    const Q8_OFFSET_BINARY: bool = true;

    /// INT8 tile: row blocks `bi..bi+RB` x tokens `t..t+TT`.
    ///
    /// # Safety
    /// AVX2 + F16C + AVX-VNNI present; `bi + RB <= c.nblocks`, `t + TT <= c.tokens`,
    /// `GemmCall` invariants with the correction attached.
    #[target_feature(enable = "avx2,f16c,avxvnni")]
    unsafe fn q8<const RB: usize, const TT: usize, const PF: bool>(c: &GemmCall, bi: usize, t: usize) {
        let flip = _mm256_set1_epi8(-128);
        // SAFETY: tile bounds as required.
        let ((wp, sp), xp) = unsafe { (c.block_ptrs::<RB>(bi, 512), c.token_ptrs::<TT>(t)) };
        let mut acc = [[[_mm256_setzero_ps(); TT]; 2]; RB];
        for g in 0..c.groups {
            // SAFETY: g < groups, t + TT <= tokens.
            let mut isum = unsafe { init_sums::<RB, TT>(c, g, t) };
            for ch in 0..8 {
                let mut wv = [[_mm256_setzero_si256(); 2]; RB];
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
                        let raw = unsafe { _mm256_loadu_si256(wp[r].add(g * 512 + ch * 64 + h * 32).cast()) };
                        wv[r][h] = _mm256_xor_si256(raw, flip);
                    }
                }
                for i in 0..TT {
                    // SAFETY: 4 bytes at 32 g + 4 ch < cols_padded of token t + i.
                    let xb = _mm256_set1_epi32(unsafe { xp[i].add(g * GROUP + ch * 4).cast::<i32>().read_unaligned() });
                    for r in 0..RB {
                        for h in 0..2 {
                            isum[r][h][i] = _mm256_dpbusd_avx_epi32(isum[r][h][i], wv[r][h], xb);
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
    /// As [`QuantTier::q8`].
    #[target_feature(enable = "avx2,f16c,avxvnni")]
    unsafe fn q4<const RB: usize, const TT: usize, const PF: bool>(c: &GemmCall, bi: usize, t: usize) {
        let low = _mm256_set1_epi8(0x0F);
        // SAFETY: tile bounds as required.
        let ((wp, sp), xp) = unsafe { (c.block_ptrs::<RB>(bi, 256), c.token_ptrs::<TT>(t)) };
        let mut acc = [[[_mm256_setzero_ps(); TT]; 2]; RB];
        for g in 0..c.groups {
            // SAFETY: g < groups, t + TT <= tokens.
            let mut isum = unsafe { init_sums::<RB, TT>(c, g, t) };
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
                            isum[r][h][i] = _mm256_dpbusd_avx_epi32(isum[r][h][i], lo[r][h], xl);
                            isum[r][h][i] = _mm256_dpbusd_avx_epi32(isum[r][h][i], hi[r][h], xh);
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
}
