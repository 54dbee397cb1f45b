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

/// `e^x` in f32, the same bits on every host and in every vector width: Cody-Waite range
/// reduction `x = n ln2 + r` and a degree-6 polynomial (Cephes `expf` coefficients), every
/// multiply and add rounded separately (no FMA), `2^n` built from the exponent bits. Branch
/// free so loops over slices vectorize. Max error about 2 ulp; inputs are clamped to
/// [-87, 88] (so `exp(-inf)` gives ~1.6e-38, not 0; NaN gives NaN).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest, ties to even, by the 1.5 * 2^23 trick: exact for |v| < 2^22 (here
    // |v| < 128), pure add/sub so it vectorizes on every ISA (round_ties_even would call
    // rintf on baseline x86-64).
    const ROUND: f32 = 12_582_912.0;
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI;
    let r = r - n * LN2_LO;
    let r2 = r * r;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let y = p * r2 + r + 1.0;
    // n is in [-126, 127]: a normal power of two.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    y * scale
}

/// SiLU: `x * sigmoid(x)` computed as `x / (1 + exp(-x))`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp_f32(-x))
}

/// GELU with the tanh approximation, as PyTorch's `gelu(x, approximate="tanh")` computes it
/// for f32: `0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`, with `x^3` as
/// `x * x * x` and tanh from `libm` (the same bits on every host).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    // PyTorch's kBeta = M_SQRT2 * M_2_SQRTPI * 0.5 (= sqrt(2/pi)), rounded to f32.
    const BETA: f32 = (std::f64::consts::SQRT_2 * std::f64::consts::FRAC_2_SQRT_PI * 0.5) as f32;
    const KAPPA: f32 = 0.044715;
    let inner = BETA * (x + KAPPA * (x * x * x));
    0.5 * x * (1.0 + libm::tanhf(inner))
}

/// Tanh soft-capping (Gemma): `cap * tanh(x / cap)`, in the order transformers applies it.
#[inline]
pub fn softcap(x: f32, cap: f32) -> f32 {
    libm::tanhf(x / cap) * cap
}

/// Logistic sigmoid.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// In-place softmax with the portable kernels (see [`crate::kernels::scalar::softmax`]).
pub fn softmax_inplace(x: &mut [f32]) {
    crate::kernels::scalar::softmax(x)
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

    /// As [`Rope::new`] with linear position scaling (`rope_type: linear`): transformers
    /// divides each inverse frequency by `factor` (in f32). `factor == 1` is [`Rope::new`].
    pub fn with_scaling(head_dim: usize, theta: f32, factor: f32) -> Self {
        let mut rope = Self::new(head_dim, theta);
        if factor != 1.0 {
            rope.inv_freq.iter_mut().for_each(|f| *f /= factor);
        }
        rope
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
    fn exp_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp_f32(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_37;
        }
        assert!(worst < 3.0 * f32::EPSILON as f64, "relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NEG_INFINITY) < 1e-37);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, -1e3];
        softmax_inplace(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[3] < 1e-30);
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
