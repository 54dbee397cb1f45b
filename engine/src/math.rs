//! Small f32 operations of the forward pass, each in one fixed order so every host gets the
//! same bits. Transcendentals come from `libm` (pure Rust), never the platform's libm.

use crate::kernels::Kernels;

/// RMSNorm as transformers computes it: `w * (x * (1 / sqrt(mean(x^2) + eps)))`.
/// `x` and `out` are one row of length `w.len()`.
pub fn rms_norm(k: &Kernels, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let mean_sq = (k.dot_f32)(x, x) / x.len() as f32;
    let inv = 1.0 / (mean_sq + eps).sqrt();
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = wi * (xi * inv);
    }
}

/// RMSNorm of each row of `x` in place.
pub fn rms_norm_rows_inplace(k: &Kernels, x: &mut [f32], w: &[f32], eps: f32) {
    let mut row_out = vec![0.0f32; w.len()];
    for row in x.chunks_exact_mut(w.len()) {
        rms_norm(k, row, w, eps, &mut row_out);
        row.copy_from_slice(&row_out);
    }
}

/// SiLU: `x * sigmoid(x)` computed as `x / (1 + exp(-x))`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + libm::expf(-x))
}

/// Logistic sigmoid.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-x))
}

/// In-place softmax over `x`: subtract the max, exponentiate, divide by the running sum
/// (summed left to right).
pub fn softmax_inplace(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Rotary position embedding (NeoX / rotate_half style) for one head dimension.
#[derive(Debug, Clone)]
pub struct Rope {
    /// `inv_freq[j] = 1 / theta^(2j/hd)`, j < hd/2, computed in f32 like transformers.
    inv_freq: Vec<f32>,
}

impl Rope {
    pub fn new(head_dim: usize, theta: f32) -> Self {
        let inv_freq = (0..head_dim / 2)
            .map(|j| 1.0 / libm::powf(theta, (2 * j) as f32 / head_dim as f32))
            .collect();
        Rope { inv_freq }
    }

    /// cos and sin of `pos * inv_freq[j]` (angle in f32), each of length hd/2.
    pub fn angles(&self, pos: usize, cos: &mut [f32], sin: &mut [f32]) {
        for ((c, s), &f) in cos.iter_mut().zip(sin.iter_mut()).zip(&self.inv_freq) {
            let angle = pos as f32 * f;
            *c = libm::cosf(angle);
            *s = libm::sinf(angle);
        }
    }

    /// Rotates one head vector `z` [hd] in place: `z*cos + rotate_half(z)*sin` with
    /// `rotate_half(z) = [-z[hd/2:], z[:hd/2]]`.
    pub fn apply(z: &mut [f32], cos: &[f32], sin: &[f32]) {
        let half = z.len() / 2;
        let (lo, hi) = z.split_at_mut(half);
        for j in 0..half {
            let (a, b) = (lo[j], hi[j]);
            lo[j] = a * cos[j] - b * sin[j];
            hi[j] = b * cos[j] + a * sin[j];
        }
    }
}

/// Index of the largest value; the lowest index wins ties, NaN never wins.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] || (x[best].is_nan() && !v.is_nan()) {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, -1e30];
        softmax_inplace(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(x[3], 0.0);
    }

    #[test]
    fn rope_at_zero_is_identity_and_rotates_pairs() {
        let rope = Rope::new(4, 10000.0);
        let (mut c, mut s) = (vec![0.0; 2], vec![0.0; 2]);
        rope.angles(0, &mut c, &mut s);
        let mut z = vec![1.0, 2.0, 3.0, 4.0];
        Rope::apply(&mut z, &c, &s);
        assert_eq!(z, vec![1.0, 2.0, 3.0, 4.0]);
        rope.angles(1, &mut c, &mut s);
        // j = 0 has inv_freq 1: pair (z0, z2) rotates by 1 radian.
        let mut z = vec![1.0, 0.0, 0.0, 0.0];
        Rope::apply(&mut z, &c, &s);
        assert!((z[0] - 1f32.cos()).abs() < 1e-6 && (z[2] - 1f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn argmax_prefers_first_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.2]), 1);
    }
}
