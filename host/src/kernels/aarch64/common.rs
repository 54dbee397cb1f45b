//! Shape checks, raw views and small NEON helpers shared by the aarch64 tiers.
//!
//! Every f32 operation here follows the scalar definitions
//! (`saguaro_engine::kernels::scalar`) step by step: products and sums are separate
//! instructions (`fmul` then `fadd`, never `fmla`), and reductions use the canonical tree.

use std::arch::aarch64::*;
use std::arch::asm;
use std::ops::Range;

use saguaro_engine::kernels::{QuantActs, QuantMatrix};
use saguaro_engine::quant::{QuantKind, QuantShape, GROUP, ROW_BLOCK};

/// Raw views of one quantized matmul call, validated by [`Gemm::new`].
///
/// Invariants (asserted in `new`, relied on by every tile function):
/// - `data` holds at least `(rb0 + nblocks) * groups * group_bytes` bytes,
/// - `scales` holds at least `(rb0 + nblocks) * groups * 32` bytes,
/// - `xq` holds `tokens * cols_padded` i8 with `cols_padded == groups * 32`,
/// - `xs` holds `tokens * groups` f32,
/// - `out` holds `tokens * width` f32 with `width = nblocks * 16`.
pub(super) struct Gemm {
    pub kind: QuantKind,
    pub data: *const u8,
    pub scales: *const u8,
    pub groups: usize,
    pub group_bytes: usize,
    pub cols_padded: usize,
    pub xq: *const i8,
    pub xs: *const f32,
    pub out: *mut f32,
    pub width: usize,
    pub tokens: usize,
    pub rb0: usize,
    pub nblocks: usize,
}

impl Gemm {
    /// Checks the shapes exactly like the scalar kernel (same panics on mismatch), plus the
    /// buffer lengths the scalar code would find out by indexing.
    pub fn new(w: &QuantMatrix, acts: &QuantActs, blocks: &Range<usize>, out: &mut [f32]) -> Self {
        let groups = w.shape.groups();
        assert_eq!(acts.cols_padded, w.shape.cols_padded, "gemm: activation width mismatch");
        assert!(blocks.end <= w.shape.row_blocks(), "gemm: row blocks out of range");
        let nblocks = blocks.len();
        let width = nblocks * ROW_BLOCK;
        assert_eq!(out.len(), acts.tokens * width, "gemm: bad output length");
        assert_eq!(acts.cols_padded, groups * GROUP, "gemm: activation width mismatch");
        let group_bytes = QuantShape::block_group_bytes(w.kind);
        let tokens = acts.tokens;
        if tokens > 0 && nblocks > 0 {
            let data_need = blocks.end.checked_mul(groups).and_then(|v| v.checked_mul(group_bytes));
            assert!(data_need.is_some_and(|n| n <= w.data.len()), "gemm: weight data too short");
            let scale_need = blocks.end.checked_mul(groups).and_then(|v| v.checked_mul(ROW_BLOCK * 2));
            assert!(scale_need.is_some_and(|n| n <= w.scales.len()), "gemm: weight scales too short");
            let q_need = tokens.checked_mul(acts.cols_padded);
            assert!(q_need.is_some_and(|n| n <= acts.q.len()), "gemm: activations too short");
            assert!(tokens * groups <= acts.scales.len(), "gemm: activation scales too short");
        }
        Gemm {
            kind: w.kind,
            data: w.data.as_ptr(),
            scales: w.scales.as_ptr(),
            groups,
            group_bytes,
            cols_padded: acts.cols_padded,
            xq: acts.q.as_ptr(),
            xs: acts.scales.as_ptr(),
            out: out.as_mut_ptr(),
            width,
            tokens,
            rb0: blocks.start,
            nblocks,
        }
    }

    /// Quantized data of row block `rb0 + bi`, group 0 (`groups * group_bytes` bytes).
    ///
    /// # Safety
    /// `bi < nblocks`.
    #[inline(always)]
    pub unsafe fn wdata(&self, bi: usize) -> *const u8 {
        // SAFETY: in bounds by the invariants of `new` and `bi < nblocks`.
        unsafe { self.data.add((self.rb0 + bi) * self.groups * self.group_bytes) }
    }

    /// f16 scales of row block `rb0 + bi`, group 0 (`groups * 32` bytes).
    ///
    /// # Safety
    /// `bi < nblocks`.
    #[inline(always)]
    pub unsafe fn wscales(&self, bi: usize) -> *const u8 {
        // SAFETY: in bounds by the invariants of `new` and `bi < nblocks`.
        unsafe { self.scales.add((self.rb0 + bi) * self.groups * ROW_BLOCK * 2) }
    }

    /// Quantized activations of token `t` (`cols_padded` bytes).
    ///
    /// # Safety
    /// `t < tokens`.
    #[inline(always)]
    pub unsafe fn x(&self, t: usize) -> *const i8 {
        // SAFETY: in bounds by the invariants of `new` and `t < tokens`.
        unsafe { self.xq.add(t * self.cols_padded) }
    }

    /// Activation scales of token `t` (`groups` f32).
    ///
    /// # Safety
    /// `t < tokens`.
    #[inline(always)]
    pub unsafe fn xscales(&self, t: usize) -> *const f32 {
        // SAFETY: in bounds by the invariants of `new` and `t < tokens`.
        unsafe { self.xs.add(t * self.groups) }
    }

    /// Stores the 16 accumulators of token `t`, row block `bi`.
    ///
    /// # Safety
    /// `t < tokens`, `bi < nblocks`.
    #[inline(always)]
    pub unsafe fn store(&self, t: usize, bi: usize, acc: &[float32x4_t; 4]) {
        // SAFETY: `t * width + bi * 16 + 16 <= tokens * width` by the invariants of `new`;
        // `vst1q_f32_x4` has no alignment requirement beyond f32's.
        unsafe {
            vst1q_f32_x4(self.out.add(t * self.width + bi * ROW_BLOCK), float32x4x4_t(acc[0], acc[1], acc[2], acc[3]))
        }
    }
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
