//! Scalar kernels: the definition of every result. SIMD variants are tested against these
//! for bit equality, so the order of every f32 operation here is part of the contract.

use super::F32_LANES;

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
    assert!(cols > 0 && x.len() % cols == 0 && w.len() % cols == 0, "matmul_f32: bad shapes");
    let rows = w.len() / cols;
    let tokens = x.len() / cols;
    assert_eq!(out.len(), tokens * rows, "matmul_f32: bad output length");
    for (xt, out_t) in x.chunks_exact(cols).zip(out.chunks_exact_mut(rows)) {
        for (wr, o) in w.chunks_exact(cols).zip(out_t.iter_mut()) {
            *o = dot_f32(xt, wr);
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
    fn matmul_is_rowwise_dot() {
        let x: Vec<f32> = (0..6).map(|i| i as f32).collect(); // [2, 3]
        let w: Vec<f32> = vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0]; // [2, 3]
        let mut out = vec![0.0; 4];
        matmul_f32(&x, &w, 3, &mut out);
        assert_eq!(out, vec![0.0, 3.0, 3.0, 9.0]);
    }
}
