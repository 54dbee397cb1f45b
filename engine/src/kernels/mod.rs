//! The kernel table (design contract 3).
//!
//! Hot operations are function pointers in a [`Kernels`] table. The engine fills it with
//! the portable definitions ([`scalar`]); hosts replace entries with SIMD variants after
//! detecting CPU features. Every variant must return results bit-identical to the scalar
//! definition, which fixes one canonical f32 reduction order (see [`scalar::dot_f32`]).

pub mod scalar;

/// Number of partial sums in the canonical f32 dot product. 16 lanes = one AVX-512
/// register, two AVX2 registers, four NEON / wasm simd128 registers: every ISA can
/// reproduce the same order without reassociation.
pub const F32_LANES: usize = 16;

/// `out[t][r] = dot(x[t], w[r])` for x `[T, cols]`, w `[rows, cols]`, out `[T, rows]`.
pub type MatmulF32 = fn(x: &[f32], w: &[f32], cols: usize, out: &mut [f32]);
/// The canonical f32 dot product of two equal-length slices.
pub type DotF32 = fn(a: &[f32], b: &[f32]) -> f32;

/// One table of kernels. `Copy` so a model can hold its own and tests can swap tiers.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// Name of the tier that filled the table (`scalar`, `avx2`, `neon`, ...).
    pub tier: &'static str,
    pub dot_f32: DotF32,
    pub matmul_f32: MatmulF32,
}

impl Kernels {
    /// The scalar definitions: always available, the reference for every other tier.
    pub const fn scalar() -> Self {
        Kernels { tier: "scalar", dot_f32: scalar::dot_f32, matmul_f32: scalar::matmul_f32 }
    }

    /// The best kernels this build can use without runtime detection.
    pub fn portable() -> Self {
        Self::scalar()
    }
}

impl Default for Kernels {
    fn default() -> Self {
        Self::portable()
    }
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels").field("tier", &self.tier).finish_non_exhaustive()
    }
}
