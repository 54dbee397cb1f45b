//! The elementwise entries (softmax, SwiGLU gate, axpy) for the x86 tiers: the scalar
//! definitions themselves, compiled again with AVX2 or AVX-512 enabled so the compiler
//! vectorizes them wider. They are lane-wise (or the canonical 16-lane sum), use no fused
//! multiply-add (Rust never contracts), so the bits are those of the scalar code.

use saguaro_engine::kernels::scalar;

macro_rules! multiversion {
    ($feature:literal, $softmax:ident, $silu_mul:ident, $axpy:ident) => {
        pub fn $softmax(x: &mut [f32]) {
            #[target_feature(enable = $feature)]
            fn imp(x: &mut [f32]) {
                scalar::softmax(x)
            }
            // SAFETY: this entry is only placed in a kernel table by a tier whose `kernels()`
            // checked at run time that the CPU has these features.
            unsafe { imp(x) }
        }

        pub fn $silu_mul(gate: &mut [f32], up: &[f32]) {
            #[target_feature(enable = $feature)]
            fn imp(gate: &mut [f32], up: &[f32]) {
                scalar::silu_mul(gate, up)
            }
            // SAFETY: as above, the tier checked the features before handing this out.
            unsafe { imp(gate, up) }
        }

        pub fn $axpy(a: f32, x: &[f32], y: &mut [f32]) {
            #[target_feature(enable = $feature)]
            fn imp(a: f32, x: &[f32], y: &mut [f32]) {
                scalar::axpy(a, x, y)
            }
            // SAFETY: as above, the tier checked the features before handing this out.
            unsafe { imp(a, x, y) }
        }
    };
}

multiversion!("avx2", softmax_avx2, silu_mul_avx2, axpy_avx2);
multiversion!("avx512f", softmax_avx512, silu_mul_avx512, axpy_avx512);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(seed: u32, n: usize, scale: f32) -> Vec<f32> {
        (0..n as u32).map(|i| {
            let h = (i.wrapping_add(seed)).wrapping_mul(2_654_435_761) >> 8;
            ((h % 20001) as f32 / 10000.0 - 1.0) * scale
        }).collect()
    }

    proptest! {
        #[test]
        fn wide_versions_equal_scalar_bits(n in 0usize..700, seed in 0u32..10_000, scale in 0.01f32..120.0) {
            let tiers: Vec<(bool, fn(&mut [f32]), fn(&mut [f32], &[f32]), fn(f32, &[f32], &mut [f32]))> = vec![
                (std::arch::is_x86_feature_detected!("avx2"), softmax_avx2, silu_mul_avx2, axpy_avx2),
                (std::arch::is_x86_feature_detected!("avx512f"), softmax_avx512, silu_mul_avx512, axpy_avx512),
            ];
            let x = values(seed, n, scale);
            let y = values(seed ^ 77, n, scale);
            for (available, softmax, silu_mul, axpy) in tiers {
                if !available { continue; }
                if n > 0 {
                    let (mut a, mut b) = (x.clone(), x.clone());
                    scalar::softmax(&mut a);
                    softmax(&mut b);
                    prop_assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
                }
                let (mut a, mut b) = (x.clone(), x.clone());
                scalar::silu_mul(&mut a, &y);
                silu_mul(&mut b, &y);
                prop_assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
                let (mut a, mut b) = (y.clone(), y.clone());
                scalar::axpy(0.37 * scale, &x, &mut a);
                axpy(0.37 * scale, &x, &mut b);
                prop_assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
            }
        }
    }
}
