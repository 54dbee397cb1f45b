//! The aarch64 quantized GEMM driver: the validated raw view of a call ([`Gemm`]), the safe
//! entries `gemm_q8` / `gemm_q4` written once, generic over a tier's microkernels
//! ([`QuantTier`]), and the loop over row blocks and token pairs most tiers share
//! ([`for_token_pairs`]). (Only `neon` has f32 matmuls and `quantize_row`: no driver needed.)
//!
//! # Safety: the one argument for the entries here
//!
//! A tier's [`QuantTier::gemm`] needs the tier's CPU features (`#[target_feature]`
//! functions, feature-specific `asm!`). The entries [`gemm_q8`] and [`gemm_q4`] are safe
//! `fn`s generic over the tier `T`, visible only inside `aarch64`; the only code that names
//! them is the tiers' `kernels()` functions, each of which puts `entry::<ItsTier>` into a
//! table only after its `available()` found every feature of the tier (and of the tiers it
//! falls back to) at run time; debug builds check [`QuantTier::available`] again on every
//! call. The entries validate the call with [`Gemm::new`] (the scalar definition's panics),
//! whose invariants are the bounds every microkernel relies on.

use std::arch::aarch64::*;
use std::ops::Range;

use saguaro_engine::kernels::{QuantActs, QuantMatrix};
use saguaro_engine::quant::{QuantKind, QuantShape, GROUP, ROW_BLOCK};

use super::super::shapes::{self, GemmDims};

/// A tier's quantized GEMM.
pub(super) trait QuantTier {
    /// Whether this CPU has every feature [`QuantTier::gemm`] uses (including those of the
    /// tiers it falls back to).
    fn available() -> bool;

    /// The whole call: every row block of `g` for every token.
    ///
    /// # Safety
    /// The tier's features present; `g` from [`Gemm::new`].
    unsafe fn gemm(g: &Gemm);
}

/// INT8-weight matmul (see `scalar::gemm_q8`); safety: the module docs.
pub(super) fn gemm_q8<T: QuantTier>(w: &QuantMatrix, acts: &QuantActs, blocks: Range<usize>, out: &mut [f32]) {
    debug_assert!(T::available());
    let g = Gemm::new(w, acts, &blocks, out);
    // SAFETY: features (module docs); `g` from `Gemm::new`.
    unsafe { T::gemm(&g) }
}

/// INT4-weight matmul (see `scalar::gemm_q4`); safety: the module docs.
pub(super) fn gemm_q4<T: QuantTier>(w: &QuantMatrix, acts: &QuantActs, blocks: Range<usize>, out: &mut [f32]) {
    debug_assert!(T::available());
    let g = Gemm::new(w, acts, &blocks, out);
    // SAFETY: as `gemm_q8`.
    unsafe { T::gemm(&g) }
}

/// Row blocks outer, tokens in pairs (`pair(bi, t)` for tokens `t`, `t + 1`) so each loaded
/// weight register feeds two tokens, then `single(bi, t)` for an odd last token.
///
/// Inlined into the caller, so a `#[target_feature]` caller's features apply to the
/// microkernels it passes in (which it may then inline).
#[inline(always)]
pub(super) fn for_token_pairs(g: &Gemm, mut pair: impl FnMut(usize, usize), mut single: impl FnMut(usize, usize)) {
    for bi in 0..g.nblocks {
        let mut t = 0;
        while t + 2 <= g.tokens {
            pair(bi, t);
            t += 2;
        }
        if t < g.tokens {
            single(bi, t);
        }
    }
}

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
    /// Checks the shapes with [`shapes::gemm`] (the scalar kernel's panics, plus the buffer
    /// lengths the scalar code would find out by indexing).
    pub fn new(w: &QuantMatrix, acts: &QuantActs, blocks: &Range<usize>, out: &mut [f32]) -> Self {
        let GemmDims { groups, nblocks, width, tokens } = shapes::gemm(w, acts, blocks, out);
        // The tiles read whole groups of every token's row.
        assert_eq!(acts.cols_padded, groups * GROUP, "gemm: activation width mismatch");
        let group_bytes = QuantShape::block_group_bytes(w.kind);
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
