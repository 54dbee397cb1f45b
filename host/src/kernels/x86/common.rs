//! Shape checks, loop drivers and small helpers shared by the x86 tiers.
//!
//! The drivers here only decide *which* tile of the output is computed next; every f32
//! operation happens in the tiers' tile functions, in the order fixed by the scalar
//! definitions (`saguaro_engine::kernels::scalar`).

use std::arch::x86_64::*;
use std::ops::Range;

use saguaro_engine::kernels::{QuantActs, QuantMatrix};
use saguaro_engine::quant::{QuantShape, GROUP, ROW_BLOCK};

/// Bytes of activations (one token = `cols_padded` bytes) a token chunk may occupy so that
/// the chunk stays in L2 while every row tile of the weights streams past it.
const ACT_CHUNK_BYTES: usize = 256 * 1024;

/// How far ahead (bytes) decode GEMV tiles prefetch the weight stream. One sequential
/// stream per call (a row block at a time) plus this prefetch measured best on Zen: the
/// hardware prefetcher alone leaves int4 GEMV ~15% short of the memory bandwidth.
pub(super) const PREFETCH_DISTANCE: usize = 4096;

/// Bytes of f32 activations a token chunk of an f32/f16/bf16 matmul may occupy.
const F32_CHUNK_BYTES: usize = 256 * 1024;

/// Raw views of one quantized matmul call, validated by [`GemmCall::new`].
///
/// Invariants (asserted in `new`, relied on by every tile function):
/// - `data` holds at least `(rb0 + nblocks) * groups * block_group_bytes(kind)` bytes,
/// - `scales` holds at least `(rb0 + nblocks) * groups * 32` bytes,
/// - `xq` holds `tokens * cols_padded` i8 with `cols_padded >= groups * 32`,
/// - `xs` and `corr` hold `tokens * groups` values,
/// - `out` holds `tokens * width` f32 with `width = nblocks * 16`.
pub(super) struct GemmCall {
    pub data: *const u8,
    pub scales: *const u8,
    pub groups: usize,
    pub cols_padded: usize,
    pub xq: *const i8,
    pub xs: *const f32,
    pub corr: *const i32,
    pub out: *mut f32,
    pub width: usize,
    pub tokens: usize,
    pub rb0: usize,
    pub nblocks: usize,
}

impl GemmCall {
    /// Checks the shapes exactly like the scalar kernel (same panics on mismatch), plus the
    /// buffer lengths the scalar code would find out by indexing.
    ///
    /// The correction sums are attached afterwards with [`GemmCall::set_corr`].
    pub fn new(w: &QuantMatrix, acts: &QuantActs, blocks: &Range<usize>, out: &mut [f32]) -> Self {
        let groups = w.shape.groups();
        assert_eq!(acts.cols_padded, w.shape.cols_padded, "gemm: activation width mismatch");
        assert!(blocks.end <= w.shape.row_blocks(), "gemm: row blocks out of range");
        let nblocks = blocks.len();
        let width = nblocks * ROW_BLOCK;
        assert_eq!(out.len(), acts.tokens * width, "gemm: bad output length");
        let tokens = acts.tokens;
        if tokens > 0 && nblocks > 0 {
            let group_bytes = QuantShape::block_group_bytes(w.kind);
            let data_need = blocks.end.checked_mul(groups).and_then(|v| v.checked_mul(group_bytes));
            assert!(data_need.is_some_and(|n| n <= w.data.len()), "gemm: weight data too short");
            let scale_need = blocks.end.checked_mul(groups).and_then(|v| v.checked_mul(ROW_BLOCK * 2));
            assert!(scale_need.is_some_and(|n| n <= w.scales.len()), "gemm: weight scales too short");
            let q_need = tokens.checked_mul(acts.cols_padded);
            assert!(q_need.is_some_and(|n| n <= acts.q.len()), "gemm: activations too short");
            assert!(tokens * groups <= acts.scales.len(), "gemm: activation scales too short");
        }
        GemmCall {
            data: w.data.as_ptr(),
            scales: w.scales.as_ptr(),
            groups,
            cols_padded: acts.cols_padded,
            xq: acts.q.as_ptr(),
            xs: acts.scales.as_ptr(),
            corr: std::ptr::null(),
            out: out.as_mut_ptr(),
            width,
            tokens,
            rb0: blocks.start,
            nblocks,
        }
    }

    /// Attaches the per-(token, group) correction sums (`tokens * groups` values).
    pub fn set_corr(&mut self, corr: &[i32]) {
        assert!(corr.len() >= self.tokens * self.groups, "gemm: correction buffer too short");
        self.corr = corr.as_ptr();
    }

    /// Number of (token, group) pairs: the length of the correction buffer.
    pub fn sums_len(&self) -> usize {
        if self.is_empty() {
            0
        } else {
            self.tokens * self.groups
        }
    }

    /// Whether there is anything to compute.
    pub fn is_empty(&self) -> bool {
        self.tokens == 0 || self.nblocks == 0
    }

    /// Walks the output in tiles: token chunks that fit in L2, then row tiles of up to
    /// `rb_tile` row blocks, then token tiles of up to `tt_tile` tokens.
    /// `tile(rbn, tn, bi, t)` computes row blocks `bi..bi+rbn` (relative to the call) for
    /// tokens `t..t+tn`. Tiles never overlap and cover the output exactly once, so the
    /// tiling does not change any result (each output is computed whole by one tile).
    pub fn drive(&self, rb_tile: usize, tt_tile: usize, mut tile: impl FnMut(usize, usize, usize, usize)) {
        let chunk = (ACT_CHUNK_BYTES / self.cols_padded.max(1)).max(tt_tile) / tt_tile * tt_tile;
        let mut t0 = 0;
        while t0 < self.tokens {
            let t_end = (t0 + chunk).min(self.tokens);
            let mut bi = 0;
            while bi < self.nblocks {
                let rbn = rb_tile.min(self.nblocks - bi);
                let mut t = t0;
                while t < t_end {
                    let tn = tt_tile.min(t_end - t);
                    tile(rbn, tn, bi, t);
                    t += tn;
                }
                bi += rbn;
            }
            t0 = t_end;
        }
    }
}

/// A small-buffer for the per-(token, group) activation sums: on the stack for decode-sized
/// calls, on the heap for prefill.
pub(super) struct SumBuf {
    stack: [i32; 512],
    heap: Vec<i32>,
    len: usize,
}

impl SumBuf {
    pub fn new(len: usize) -> Self {
        let heap = if len > 512 { vec![0; len] } else { Vec::new() };
        SumBuf { stack: [0; 512], heap, len }
    }

    pub fn as_mut_slice(&mut self) -> &mut [i32] {
        if self.len > 512 {
            &mut self.heap
        } else {
            &mut self.stack[..self.len]
        }
    }
}

/// `corr[t * groups + g] = factor * sum(x[t][32g .. 32g + 32])` for every token and group
/// (exact i32: |sum| <= 32 * 128).
///
/// # Safety
/// AVX2 must be available; `acts.q` must hold `tokens * cols_padded` values with
/// `cols_padded >= 32 * groups`, and `corr` `tokens * groups` (as [`GemmCall::new`] checks).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn group_sums(acts: &QuantActs, groups: usize, factor: i32, corr: &mut [i32]) {
    debug_assert!(corr.len() >= acts.tokens * groups && acts.q.len() >= acts.tokens * acts.cols_padded);
    let flip = _mm256_set1_epi8(-128);
    let zero = _mm256_setzero_si256();
    for t in 0..acts.tokens {
        for g in 0..groups {
            // SAFETY: t < tokens and 32 * g + 32 <= cols_padded, so the 32 bytes read lie in
            // acts.q (length >= tokens * cols_padded, checked by the caller).
            let v = unsafe { _mm256_loadu_si256(acts.q.as_ptr().add(t * acts.cols_padded + g * GROUP).cast()) };
            // x + 128 as u8, summed in 4 u64 lanes by vpsadbw against zero.
            let s = _mm256_sad_epu8(_mm256_xor_si256(v, flip), zero);
            let s = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            let s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
            let sum = _mm_cvtsi128_si32(s) - 32 * 128;
            corr[t * groups + g] = factor * sum;
        }
    }
}

/// Walks an f32-output matmul `out[t][r]` (tokens x rows) in tiles: token chunks that keep
/// their activations in L2, then row tiles of `rr` rows, then token tiles of `tt` tokens.
/// `tile(rn, tn, r, t)` computes rows `r..r+rn` for tokens `t..t+tn`.
pub(super) fn drive_matmul(rows: usize, tokens: usize, cols: usize, rr: usize, tt: usize, mut tile: impl FnMut(usize, usize, usize, usize)) {
    let chunk = (F32_CHUNK_BYTES / (4 * cols.max(1))).max(tt) / tt * tt;
    let mut t0 = 0;
    while t0 < tokens {
        let t_end = (t0 + chunk).min(tokens);
        let mut r = 0;
        while r < rows {
            let rn = rr.min(rows - r);
            let mut t = t0;
            while t < t_end {
                let tn = tt.min(t_end - t);
                tile(rn, tn, r, t);
                t += tn;
            }
            r += rn;
        }
        t0 = t_end;
    }
}

/// Shape checks of the f32 matmul (same messages as the scalar kernel). Returns (rows, tokens).
pub(super) fn check_matmul_f32(x: &[f32], w: &[f32], cols: usize, out: &[f32]) -> (usize, usize) {
    assert!(cols > 0 && x.len().is_multiple_of(cols) && w.len().is_multiple_of(cols), "matmul_f32: bad shapes");
    let rows = w.len() / cols;
    let tokens = x.len() / cols;
    assert_eq!(out.len(), tokens * rows, "matmul_f32: bad output length");
    (rows, tokens)
}

/// Shape checks of the f16 / bf16 matmul. Returns (rows, tokens).
pub(super) fn check_matmul_half(x: &[f32], w: &[u8], cols: usize, out: &[f32]) -> (usize, usize) {
    assert!(cols > 0 && x.len().is_multiple_of(cols) && w.len().is_multiple_of(2 * cols), "matmul_half: bad shapes");
    let rows = w.len() / (2 * cols);
    let tokens = x.len() / cols;
    assert_eq!(out.len(), tokens * rows, "matmul_half: bad output length");
    (rows, tokens)
}
