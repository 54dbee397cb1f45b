//! Where weights come from: a [`TensorSource`] hands out raw tensors by name.
//!
//! The model loader asks a source for each tensor it needs and checks dtype and shape, so
//! any container (safetensors today, .cact and GGUF next) only has to implement `tensor`.

pub mod safetensors;

use crate::error::{Error, Result};

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
}

/// A tensor as stored: dtype, shape and its little-endian bytes, borrowed from the source
/// (safetensors) or owned when the source had to decode them (e.g. GGUF Q8_0 blocks
/// dequantized to f32).
#[derive(Debug, Clone)]
pub struct RawTensor<'a> {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: std::borrow::Cow<'a, [u8]>,
}

impl RawTensor<'_> {
    /// Decodes the tensor to f32 values. The byte length was checked against the shape
    /// by the source.
    pub fn to_f32(&self) -> Vec<f32> {
        let n = self.shape.iter().product::<usize>();
        debug_assert_eq!(self.bytes.len(), n * self.dtype.size());
        match self.dtype {
            DType::F32 => self
                .bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => self
                .bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => self
                .bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        }
    }
}

/// Anything that can look up a tensor by its Hugging Face name.
pub trait TensorSource {
    /// The tensor called `name`, or `Ok(None)` when the source has no such tensor.
    fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>>;

    /// How a conversion picks INT4 scales for this source's matrices: GGUF files (values from
    /// ggml blocks) use [`ScaleRule::Ggml`], so Q4_0 blocks convert without loss.
    fn int4_scale_rule(&self) -> crate::quant::ScaleRule {
        crate::quant::ScaleRule::Amax
    }

    /// The most compact matrix dtype that still holds what this source stores for `name`, when
    /// the source's own recipe kept that tensor finer than its other matrices: llama.cpp's 4-bit
    /// files keep the token embedding (the tied LM head) at Q8_0 or Q6_K, and a conversion to
    /// int4 then stores it as int8 instead of rounding it a second time, coarser. `None` (the
    /// default): no floor, every matrix gets the requested dtype.
    fn matrix_dtype_floor(&self, _name: &str) -> Option<crate::format::TensorDType> {
        None
    }

    /// The tensor called `name` as f32, checked against the expected shape.
    fn f32_tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let raw = self
            .tensor(name)?
            .ok_or_else(|| Error::Weights(format!("missing tensor `{name}`")))?;
        if raw.shape != shape {
            return Err(Error::Weights(format!(
                "tensor `{name}` has shape {:?}, expected {:?}",
                raw.shape, shape
            )));
        }
        Ok(raw.to_f32())
    }
}
