//! The shape checks of the SIMD entries, shared by every architecture's drivers: the same
//! panics (messages included) as the scalar definitions in `saguaro_engine::kernels::scalar`,
//! plus the buffer lengths the scalar code would find out by indexing, which the drivers'
//! raw-pointer microkernels rely on.

use std::ops::Range;

use saguaro_engine::kernels::{QuantActs, QuantMatrix};
use saguaro_engine::quant::{QuantShape, ROW_BLOCK};

/// Checks an f32-weight matmul `out[t][r] = dot(x[t], w[r])`. Returns (rows, tokens).
pub(crate) fn matmul_f32(x: &[f32], w: &[f32], cols: usize, out: &[f32]) -> (usize, usize) {
    assert!(cols > 0 && x.len().is_multiple_of(cols) && w.len().is_multiple_of(cols), "matmul_f32: bad shapes");
    let rows = w.len() / cols;
    let tokens = x.len() / cols;
    assert_eq!(out.len(), tokens * rows, "matmul_f32: bad output length");
    (rows, tokens)
}

/// Checks an f16 / bf16-weight matmul (`w` holds 2 bytes per weight). Returns (rows, tokens).
pub(crate) fn matmul_half(x: &[f32], w: &[u8], cols: usize, out: &[f32]) -> (usize, usize) {
    assert!(cols > 0 && x.len().is_multiple_of(cols) && w.len().is_multiple_of(2 * cols), "matmul_half: bad shapes");
    let rows = w.len() / (2 * cols);
    let tokens = x.len() / cols;
    assert_eq!(out.len(), tokens * rows, "matmul_half: bad output length");
    (rows, tokens)
}

/// The dimensions of a checked quantized matmul call.
pub(crate) struct GemmDims {
    /// Groups of 32 columns (`w.shape.groups()`).
    pub groups: usize,
    /// Row blocks computed (`blocks.len()`).
    pub nblocks: usize,
    /// Outputs per token (`nblocks * 16`).
    pub width: usize,
    /// Tokens (`acts.tokens`).
    pub tokens: usize,
}

/// Checks a quantized matmul over row blocks `blocks`. When there is anything to compute,
/// also that `w.data` holds `blocks.end * groups` groups of `w.kind`, `w.scales` their f16
/// scales, `acts.q` `tokens * cols_padded` values and `acts.scales` `tokens * groups`.
pub(crate) fn gemm(w: &QuantMatrix, acts: &QuantActs, blocks: &Range<usize>, out: &[f32]) -> GemmDims {
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
    GemmDims { groups, nblocks, width, tokens }
}
