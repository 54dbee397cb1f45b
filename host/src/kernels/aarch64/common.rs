//! Small NEON helpers shared by the aarch64 tiers' microkernels.
//!
//! Every f32 operation here follows the scalar definitions
//! (`saguaro_engine::kernels::scalar`) step by step: products and sums are separate
//! instructions (`fmul` then `fadd`, never `fmla`), and reductions use the canonical tree.

use std::arch::aarch64::*;
use std::arch::asm;

/// Runs `$chunk!(C, [w0, w1, w2, w3])` for each of the 8 chunks `C` of one group of `r16k4`
/// weights at `$wg` (chunk = 4 registers of 4 rows x 4 k), in load order: INT8 one 64-byte
/// load per chunk, 0 to 7; INT4 one 64-byte load per chunk pair, chunk c from the low
/// nibbles and chunk c + 4 from the high ones (raw nibbles, see [`q4_nibbles`]): 0, 4, 1, 5,
/// 2, 6, 3, 7. The group's i32 sums are exact, so the order does not change them.
///
/// Used inside an `unsafe` block whose caller guarantees the group's bytes (512 for INT8,
/// 256 for INT4) readable at `$wg`; the caller imports `CHUNK_BYTES`, the NEON intrinsics
/// and `q4_nibbles`, and defines `$chunk`.
macro_rules! for_each_chunk {
    ($q4:expr, $wg:expr, $chunk:ident) => {
        if !$q4 {
            for_each_chunk!(@q8 $wg, $chunk, 0, 1, 2, 3, 4, 5, 6, 7);
        } else {
            for_each_chunk!(@q4 $wg, $chunk, 0, 1, 2, 3);
        }
    };
    (@q8 $wg:expr, $chunk:ident, $($c:literal),*) => {$({
        let v = vld1q_s8_x4($wg.add($c * CHUNK_BYTES) as *const i8);
        $chunk!($c, [v.0, v.1, v.2, v.3]);
    })*};
    (@q4 $wg:expr, $chunk:ident, $($c:literal),*) => {$({
        let v = vld1q_u8_x4($wg.add($c * CHUNK_BYTES));
        let u = [q4_nibbles(v.0), q4_nibbles(v.1), q4_nibbles(v.2), q4_nibbles(v.3)];
        $chunk!($c, [u[0].0, u[1].0, u[2].0, u[3].0]);
        $chunk!(($c + 4), [u[0].1, u[1].1, u[2].1, u[3].1]);
    })*};
}

/// Widens 16 little-endian f16 values (32 bytes at `p`) to f32 with `fcvtl` (exact; NaNs are
/// quieted with their payload kept, as `half` does).
///
/// # Safety
/// `p` must be readable for 32 bytes.
#[inline(always)]
pub(super) unsafe fn f16x16(p: *const u8) -> [float32x4_t; 4] {
    // SAFETY: the caller guarantees 32 readable bytes; u16 loads have no alignment
    // requirement in `vld1q_u16_x2` (byte-addressed `ld1`).
    let h = unsafe { vld1q_u16_x2(p as *const u16) };
    let (a, b, c, d): (float32x4_t, float32x4_t, float32x4_t, float32x4_t);
    // SAFETY: FCVTL/FCVTL2 (half to single) are baseline Armv8.0 Advanced SIMD; register
    // operands only.
    unsafe {
        asm!(
            "fcvtl {a:v}.4s, {h0:v}.4h",
            "fcvtl2 {b:v}.4s, {h0:v}.8h",
            "fcvtl {c:v}.4s, {h1:v}.4h",
            "fcvtl2 {d:v}.4s, {h1:v}.8h",
            a = out(vreg) a, b = out(vreg) b, c = out(vreg) c, d = out(vreg) d,
            h0 = in(vreg) h.0, h1 = in(vreg) h.1,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    [a, b, c, d]
}

/// One group's update of 16 row accumulators for one token, as the scalar definition:
/// `acc[r] += (w_scale[r] * x_scale) * (isum[r] as f32)`, each step rounded (no FMA).
#[inline(always)]
pub(super) fn fold(acc: &mut [float32x4_t; 4], isum: &[int32x4_t; 4], ws: &[float32x4_t; 4], xs: f32) {
    for i in 0..4 {
        // SAFETY: NEON is a baseline feature of every aarch64 target (register operations).
        acc[i] = unsafe { vaddq_f32(acc[i], vmulq_f32(vmulq_n_f32(ws[i], xs), vcvtq_f32_s32(isum[i]))) };
    }
}

/// Zero f32 accumulators for 16 rows.
#[inline(always)]
pub(super) fn zero_f32() -> [float32x4_t; 4] {
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    [unsafe { vdupq_n_f32(0.0) }; 4]
}

/// Zero i32 sums for 16 rows.
#[inline(always)]
pub(super) fn zero_i32() -> [int32x4_t; 4] {
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    [unsafe { vdupq_n_s32(0) }; 4]
}

/// Splits one 16-byte register of `r16k4` INT4 data into its raw nibbles `n` (0..15) as int8:
/// (low nibbles = chunk c, high nibbles = chunk c + 4) of the same 4 rows. The offset
/// `q = n - 8` is applied through [`q4_correction`]: `sum (n - 8) x = sum n x - 8 sum x`, exact
/// in i32, which saves two subtractions per register.
#[inline(always)]
pub(super) fn q4_nibbles(v: uint8x16_t) -> (int8x16_t, int8x16_t) {
    // SAFETY: NEON is a baseline feature of every aarch64 target (register operations).
    unsafe { (vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), vreinterpretq_s8_u8(vshrq_n_u8::<4>(v))) }
}

/// `-8 * sum(x)` over one group's 32 activations (`a` = k 0..16, `b` = k 16..32): the INT4
/// offset term, the start value of the group's i32 sums.
#[inline(always)]
pub(super) fn q4_correction(a: int8x16_t, b: int8x16_t) -> i32 {
    // SAFETY: NEON is a baseline feature of every aarch64 target (register operations).
    // |sum| <= 16 * 128 per half fits the i16 of `saddlv`.
    unsafe { -8 * (vaddlvq_s8(a) as i32 + vaddlvq_s8(b) as i32) }
}
