//! The kernel table (docs/design.md §Kernels).
//!
//! Hot operations are function pointers in a [`Kernels`] table. The engine fills it with
//! the portable definitions ([`scalar`]); hosts replace entries with SIMD variants after
//! detecting CPU features. Every variant must return results bit-identical to the scalar
//! definition, which fixes the order of every f32 operation (see [`scalar`]).

pub mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd128;

use crate::quant::{QuantKind, QuantShape, GROUP};

/// Number of partial sums in the canonical f32 dot product. 16 lanes = one AVX-512
/// register, two AVX2 registers, four NEON / wasm simd128 registers: every ISA can
/// reproduce the same order without reassociation.
pub const F32_LANES: usize = 16;

/// A quantized weight matrix in the `r16k4` layout (see [`crate::quant`]).
#[derive(Debug, Clone, Copy)]
pub struct QuantMatrix<'a> {
    pub kind: QuantKind,
    pub shape: QuantShape,
    /// Interleaved quantized values, `shape.data_bytes(kind)` bytes.
    pub data: &'a [u8],
    /// f16 scales `[row_blocks][groups][16]`.
    pub scales: &'a [u8],
}

/// Activations quantized to int8 per token and per group of 32 (the other operand of every
/// quantized matmul).
#[derive(Debug, Clone, Default)]
pub struct QuantActs {
    /// Number of tokens T.
    pub tokens: usize,
    /// K rounded up to a multiple of 32.
    pub cols_padded: usize,
    /// `[T, cols_padded]` int8 values in [-127, 127], as `quantize_row` makes them (zero
    /// beyond K). SIMD tiers may rely on the range: the AVX2 GEMM negates activations with
    /// `vpsignb`, which is exact only above -128.
    pub q: Vec<i8>,
    /// `[T, cols_padded / 32]` f32 scales.
    pub scales: Vec<f32>,
}

impl QuantActs {
    /// Quantizes `x` `[T, cols]` with the table's activation quantizer, reusing buffers.
    pub fn quantize(&mut self, k: &Kernels, x: &[f32], cols: usize) {
        let tokens = x.len() / cols;
        let cols_padded = cols.next_multiple_of(GROUP);
        let groups = cols_padded / GROUP;
        self.tokens = tokens;
        self.cols_padded = cols_padded;
        self.q.resize(tokens * cols_padded, 0);
        self.scales.resize(tokens * groups, 0.0);
        for ((xt, qt), st) in x
            .chunks_exact(cols)
            .zip(self.q.chunks_exact_mut(cols_padded))
            .zip(self.scales.chunks_exact_mut(groups))
        {
            (k.quantize_row)(xt, qt, st);
        }
    }
}

/// `out[t][r] = dot(x[t], w[r])` for x `[T, cols]`, w `[rows, cols]` f32, out `[T, rows]`.
pub type MatmulF32 = fn(x: &[f32], w: &[f32], cols: usize, out: &mut [f32]);
/// As [`MatmulF32`] with w stored as little-endian f16 or bf16 bytes `[rows, cols]`.
pub type MatmulHalf = fn(x: &[f32], w: &[u8], cols: usize, out: &mut [f32]);
/// The canonical f32 dot product of two equal-length slices.
pub type DotF32 = fn(a: &[f32], b: &[f32]) -> f32;
/// Quantizes one activation row `x` `[K]` into `q` `[Kp]` and `scales` `[Kp/32]`.
pub type QuantizeRow = fn(x: &[f32], q: &mut [i8], scales: &mut [f32]);
/// In-place softmax of one row.
pub type Softmax = fn(x: &mut [f32]);
/// `gate = silu(gate) * up`, elementwise.
pub type SiluMul = fn(gate: &mut [f32], up: &[f32]);
/// `y += a * x`, elementwise.
pub type Axpy = fn(a: f32, x: &[f32], y: &mut [f32]);
/// Quantized matmul over the row blocks `blocks` (16 rows each) for every token:
/// `out[t][i]` for i < 16 * blocks.len() is row `16 * blocks.start + i` (padding rows
/// included, their values are 0).
pub type GemmQuant = fn(w: &QuantMatrix, acts: &QuantActs, blocks: std::ops::Range<usize>, out: &mut [f32]);

/// One table of kernels. `Copy` so a model can hold its own and tests can swap tiers.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// Name of the tier that filled the table (`scalar`, `avx2`, `neon`, ...).
    pub tier: &'static str,
    pub dot_f32: DotF32,
    pub matmul_f32: MatmulF32,
    pub matmul_f16: MatmulHalf,
    pub matmul_bf16: MatmulHalf,
    pub quantize_row: QuantizeRow,
    pub gemm_q8: GemmQuant,
    pub gemm_q4: GemmQuant,
    pub softmax: Softmax,
    pub silu_mul: SiluMul,
    pub axpy: Axpy,
}

impl Kernels {
    /// The scalar definitions: always available, the reference for every other tier.
    pub const fn scalar() -> Self {
        Kernels {
            tier: "scalar",
            dot_f32: scalar::dot_f32,
            matmul_f32: scalar::matmul_f32,
            matmul_f16: scalar::matmul_f16,
            matmul_bf16: scalar::matmul_bf16,
            quantize_row: scalar::quantize_row,
            gemm_q8: scalar::gemm_q8,
            gemm_q4: scalar::gemm_q4,
            softmax: scalar::softmax,
            silu_mul: scalar::silu_mul,
            axpy: scalar::axpy,
        }
    }

    /// The best kernels this build can use without runtime detection: wasm simd128 when
    /// compiled with `-C target-feature=+simd128` for wasm32, the scalar definitions otherwise.
    pub fn portable() -> Self {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            simd128::kernels()
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        {
            Self::scalar()
        }
    }

    /// The quantized matmul entry for a weight kind.
    pub fn gemm(&self, kind: QuantKind) -> GemmQuant {
        match kind {
            QuantKind::Q8 => self.gemm_q8,
            QuantKind::Q4 => self.gemm_q4,
        }
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
