//! Scalar kernels: the definition of every result. SIMD variants are tested against these
//! for bit equality, so the order of every f32 operation here is part of the contract
//! (docs/design.md §Determinism, §Kernels).

use super::{QuantActs, QuantMatrix, F32_LANES};
use crate::quant::{QuantKind, CHUNK_BYTES, CHUNK_K, GROUP, ROW_BLOCK};

/// Canonical f32 dot product.
///
/// Element `i` is multiplied (rounded to f32, no fused multiply-add) and added to partial
/// sum `i % 16`; the length is padded with zero products to a multiple of 16 so vector
/// code with zero-filled tails matches exactly. The 16 partial sums are combined
/// pairwise: `p[j] += p[j + 8]`, then `+4`, `+2`, `+1`.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
    let mut acc = [0.0f32; F32_LANES];
    let mut chunks_a = a.chunks_exact(F32_LANES);
    let mut chunks_b = b.chunks_exact(F32_LANES);
    for (ca, cb) in (&mut chunks_a).zip(&mut chunks_b) {
        for lane in 0..F32_LANES {
            acc[lane] += ca[lane] * cb[lane];
        }
    }
    let (ra, rb) = (chunks_a.remainder(), chunks_b.remainder());
    if !ra.is_empty() {
        for lane in 0..F32_LANES {
            let p = if lane < ra.len() { ra[lane] * rb[lane] } else { 0.0 };
            acc[lane] += p;
        }
    }
    reduce_lanes(acc)
}

/// Pairwise combination of the 16 partial sums (the canonical tree).
#[inline]
pub fn reduce_lanes(mut acc: [f32; F32_LANES]) -> f32 {
    let mut width = F32_LANES / 2;
    while width > 0 {
        for j in 0..width {
            acc[j] += acc[j + width];
        }
        width /= 2;
    }
    acc[0]
}

/// `out[t][r] = dot_f32(x[t], w[r])`.
pub fn matmul_f32(x: &[f32], w: &[f32], cols: usize, out: &mut [f32]) {
    assert!(cols > 0 && x.len().is_multiple_of(cols) && w.len().is_multiple_of(cols), "matmul_f32: bad shapes");
    let rows = w.len() / cols;
    let tokens = x.len() / cols;
    assert_eq!(out.len(), tokens * rows, "matmul_f32: bad output length");
    for (xt, out_t) in x.chunks_exact(cols).zip(out.chunks_exact_mut(rows)) {
        for (wr, o) in w.chunks_exact(cols).zip(out_t.iter_mut()) {
            *o = dot_f32(xt, wr);
        }
    }
}

/// Canonical sum: the lanes of [`dot_f32`] with every product replaced by the element.
#[inline]
pub fn sum_f32(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; F32_LANES];
    let mut chunks = x.chunks_exact(F32_LANES);
    for c in &mut chunks {
        for lane in 0..F32_LANES {
            acc[lane] += c[lane];
        }
    }
    let rest = chunks.remainder();
    for lane in 0..F32_LANES {
        acc[lane] += if lane < rest.len() { rest[lane] } else { 0.0 };
    }
    reduce_lanes(acc)
}

/// In-place softmax: `m = max(x)`, `e = exp_f32(x - m)`, `s` = canonical sum of `e`,
/// `x = e * (1 / s)`.
#[inline]
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in x.iter_mut() {
        *v = crate::math::exp_f32(*v - max);
    }
    let inv = 1.0 / sum_f32(x);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// SwiGLU gate in place: `gate = silu(gate) * up`, elementwise.
#[inline]
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "silu_mul: length mismatch");
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = crate::math::silu(*g) * u;
    }
}

/// `y += a * x`, elementwise (multiply rounded, then add).
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy: length mismatch");
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// `matmul_f32` with f16 weights: each weight is widened to f32 (exact), then the
/// canonical dot product.
pub fn matmul_f16(x: &[f32], w: &[u8], cols: usize, out: &mut [f32]) {
    matmul_widened(x, w, cols, out, |b| half::f16::from_le_bytes(b).to_f32())
}

/// `matmul_f32` with bf16 weights (widened exactly).
pub fn matmul_bf16(x: &[f32], w: &[u8], cols: usize, out: &mut [f32]) {
    matmul_widened(x, w, cols, out, |b| half::bf16::from_le_bytes(b).to_f32())
}

fn matmul_widened(x: &[f32], w: &[u8], cols: usize, out: &mut [f32], widen: impl Fn([u8; 2]) -> f32) {
    assert!(cols > 0 && x.len().is_multiple_of(cols) && w.len().is_multiple_of(2 * cols), "matmul_half: bad shapes");
    let rows = w.len() / (2 * cols);
    let tokens = x.len() / cols;
    assert_eq!(out.len(), tokens * rows, "matmul_half: bad output length");
    let mut row = vec![0.0f32; cols];
    for r in 0..rows {
        for (v, b) in row.iter_mut().zip(w[r * 2 * cols..(r + 1) * 2 * cols].chunks_exact(2)) {
            *v = widen([b[0], b[1]]);
        }
        for t in 0..tokens {
            out[t * rows + r] = dot_f32(&x[t * cols..(t + 1) * cols], &row);
        }
    }
}

/// Activation quantization, one row: per group of 32 (zero padded),
/// `amax = max|x|`; if 0 the group is all zeros with scale 0; otherwise
/// `q = clamp(round_half_even(x * (127 / amax)), -127, 127)` and `scale = amax / 127`.
/// (Non-finite inputs give unspecified but non-panicking values.)
pub fn quantize_row(x: &[f32], q: &mut [i8], scales: &mut [f32]) {
    assert!(q.len() == scales.len() * GROUP && x.len() <= q.len(), "quantize_row: bad lengths");
    for (g, (qg, s)) in q.chunks_exact_mut(GROUP).zip(scales.iter_mut()).enumerate() {
        let start = (g * GROUP).min(x.len());
        let xg = &x[start..(start + GROUP).min(x.len())];
        let amax = xg.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
        qg.fill(0);
        if amax == 0.0 {
            *s = 0.0;
            continue;
        }
        let inv = 127.0 / amax;
        for (qi, &v) in qg.iter_mut().zip(xg) {
            *qi = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
        }
        *s = amax / 127.0;
    }
}

/// INT8-weight matmul in the `r16k4` layout. For each token and output row, over groups in
/// order: `isum` = exact i32 sum of 32 products; `acc += (w_scale * x_scale) * isum` (each
/// step rounded to f32, no FMA). Vector code computes 16 rows at once in the same order.
pub fn gemm_q8(w: &QuantMatrix, acts: &QuantActs, blocks: std::ops::Range<usize>, out: &mut [f32]) {
    gemm_quant(w, acts, blocks, out)
}

/// INT4-weight matmul: as [`gemm_q8`] with nibbles `q = n - 8`.
pub fn gemm_q4(w: &QuantMatrix, acts: &QuantActs, blocks: std::ops::Range<usize>, out: &mut [f32]) {
    gemm_quant(w, acts, blocks, out)
}

fn gemm_quant(w: &QuantMatrix, acts: &QuantActs, blocks: std::ops::Range<usize>, out: &mut [f32]) {
    let groups = w.shape.groups();
    assert_eq!(acts.cols_padded, w.shape.cols_padded, "gemm: activation width mismatch");
    assert!(blocks.end <= w.shape.row_blocks(), "gemm: row blocks out of range");
    let width = blocks.len() * ROW_BLOCK;
    assert_eq!(out.len(), acts.tokens * width, "gemm: bad output length");
    let group_bytes = crate::quant::QuantShape::block_group_bytes(w.kind);
    for t in 0..acts.tokens {
        let xq = &acts.q[t * acts.cols_padded..(t + 1) * acts.cols_padded];
        let xs = &acts.scales[t * groups..(t + 1) * groups];
        for (bi, rb) in blocks.clone().enumerate() {
            let mut acc = [0.0f32; ROW_BLOCK];
            for g in 0..groups {
                let base = (rb * groups + g) * group_bytes;
                let xg = &xq[g * GROUP..(g + 1) * GROUP];
                let mut isum = [0i32; ROW_BLOCK];
                for c in 0..GROUP / CHUNK_K {
                    for (lane, sum) in isum.iter_mut().enumerate() {
                        for j in 0..CHUNK_K {
                            let wq = match w.kind {
                                QuantKind::Q8 => w.data[base + c * CHUNK_BYTES + lane * CHUNK_K + j] as i8 as i32,
                                QuantKind::Q4 => {
                                    let b = w.data[base + (c % 4) * CHUNK_BYTES + lane * CHUNK_K + j];
                                    (if c < 4 { b & 0x0F } else { b >> 4 }) as i32 - 8
                                }
                            };
                            *sum += wq * xg[c * CHUNK_K + j] as i32;
                        }
                    }
                }
                let sbase = (rb * groups + g) * ROW_BLOCK * 2;
                for (lane, a) in acc.iter_mut().enumerate() {
                    let si = sbase + lane * 2;
                    let ws = half::f16::from_le_bytes([w.scales[si], w.scales[si + 1]]).to_f32();
                    *a += (ws * xs[g]) * isum[lane] as f32;
                }
            }
            out[t * width + bi * ROW_BLOCK..][..ROW_BLOCK].copy_from_slice(&acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_f64_closely_and_is_order_defined() {
        for n in [1usize, 3, 15, 16, 17, 31, 64, 100] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.37).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.21).collect();
            let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let got = dot_f32(&a, &b);
            assert!((got as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()), "n={n}");
            // Lane rule: element i lands in partial sum i % 16.
            let mut lanes = [0.0f32; F32_LANES];
            for i in 0..n {
                lanes[i % F32_LANES] += a[i] * b[i];
            }
            assert_eq!(got.to_bits(), reduce_lanes(lanes).to_bits(), "n={n}");
        }
    }

    #[test]
    fn quantized_gemm_matches_dequantized_math() {
        use crate::quant::{quantize_matrix, QuantShape};
        let (rows, cols, tokens) = (21, 45, 3);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0).collect();
        let x: Vec<f32> = (0..tokens * cols).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
        let shape = QuantShape::new(rows, cols).unwrap();
        for kind in [QuantKind::Q8, QuantKind::Q4] {
            let (data, scales) = quantize_matrix(kind, &w, rows, cols);
            let m = QuantMatrix { kind, shape, data: &data, scales: &scales };
            let mut acts = QuantActs::default();
            acts.quantize(&super::super::Kernels::scalar(), &x, cols);
            let mut out = vec![0.0; tokens * 32];
            gemm_quant(&m, &acts, 0..2, &mut out);
            // Same sum in f64 from dequantized values.
            let mut wrow = vec![0.0; cols];
            for r in 0..rows {
                crate::quant::dequantize_row(kind, &data, &scales, &shape, r, &mut wrow);
                for t in 0..tokens {
                    let mut want = 0.0f64;
                    for k in 0..cols {
                        let xq = acts.q[t * 64 + k] as f64 * acts.scales[t * 2 + k / 32] as f64;
                        want += xq * wrow[k] as f64;
                    }
                    let got = out[t * 32 + r] as f64;
                    assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "{kind:?} r{r} t{t}: {got} vs {want}");
                }
            }
            assert!(out[..32].iter().skip(rows).all(|&v| v == 0.0), "padding rows are zero");
        }
    }

    #[test]
    fn quantize_row_rounds_half_even_and_pads() {
        let x = [1.0f32, -0.5, 0.25, 127.0 / 254.0 * 1.0];
        let mut q = [9i8; 32];
        let mut s = [0.0f32; 1];
        quantize_row(&x, &mut q, &mut s);
        assert_eq!(s[0], 1.0 / 127.0);
        assert_eq!(&q[..4], &[127, -64, 32, 64]); // -63.5 -> -64, 63.5 -> 64 (ties to even)
        assert!(q[4..].iter().all(|&v| v == 0));
        let mut q = [1i8; 32];
        quantize_row(&[0.0; 5], &mut q, &mut s);
        assert_eq!((q, s[0]), ([0i8; 32], 0.0));
    }

    #[test]
    fn matmul_is_rowwise_dot() {
        let x: Vec<f32> = (0..6).map(|i| i as f32).collect(); // [2, 3]
        let w: Vec<f32> = vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0]; // [2, 3]
        let mut out = vec![0.0; 4];
        matmul_f32(&x, &w, 3, &mut out);
        assert_eq!(out, vec![0.0, 3.0, 3.0, 9.0]);
    }
}
