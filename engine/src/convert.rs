//! Conversion of a checkpoint (any [`TensorSource`]: safetensors, GGUF) into a `.cact`
//! file, tensor by tensor: one source tensor is decoded, quantized and written before the
//! next is read, so peak memory is the largest tensor, not the model.

use std::io::Write;

use serde_json::{json, Value};

use crate::config::{LayerKind, Lfm2Config};
use crate::error::{Error, Result};
use crate::format::{CactWriter, TensorDType, TensorPlan};
use crate::quant::{quantize_matrix, QuantKind};
use crate::weights::TensorSource;

/// Storage chosen for the weight matrices. Norms, conv taps and biases are always f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    F32,
    F16,
    Int8,
    Int4,
}

impl std::str::FromStr for Quant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Quant::F32),
            "f16" => Ok(Quant::F16),
            "int8" | "q8" => Ok(Quant::Int8),
            "int4" | "q4" => Ok(Quant::Int4),
            other => Err(Error::Input(format!("unknown quantization `{other}` (expected f32, f16, int8 or int4)"))),
        }
    }
}

impl Quant {
    pub fn name(self) -> &'static str {
        match self {
            Quant::F32 => "f32",
            Quant::F16 => "f16",
            Quant::Int8 => "int8",
            Quant::Int4 => "int4",
        }
    }

    fn matrix_dtype(self) -> TensorDType {
        match self {
            Quant::F32 => TensorDType::F32,
            Quant::F16 => TensorDType::F16,
            Quant::Int8 => TensorDType::Q8,
            Quant::Int4 => TensorDType::Q4,
        }
    }
}

/// What a tensor is to the model, which decides how it may be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A weight matrix used as `x W^T` (or the embedding): quantizable.
    Matrix,
    /// Norm weights, conv taps, biases, router weights: kept f32.
    Exact,
}

/// One tensor the model needs: Hugging Face name, shape, role.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
}

/// Every tensor an LFM2 model of this config needs, in file order.
pub fn required_tensors(config: &Lfm2Config) -> Vec<TensorSpec> {
    let d = config.hidden_size;
    let (v, f, hd, l) = (config.vocab_size, config.ffn_dim, config.head_dim, config.conv_kernel);
    let (h, kv) = (config.num_heads, config.num_kv_heads);
    let mut out = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, role: Role| out.push(TensorSpec { name, shape, role });
    add("model.embed_tokens.weight".into(), vec![v, d], Role::Matrix);
    for (i, kind) in config.layer_kinds.iter().enumerate() {
        let p = format!("model.layers.{i}");
        add(format!("{p}.operator_norm.weight"), vec![d], Role::Exact);
        match kind {
            LayerKind::Conv => {
                add(format!("{p}.conv.in_proj.weight"), vec![3 * d, d], Role::Matrix);
                if config.conv_bias {
                    add(format!("{p}.conv.in_proj.bias"), vec![3 * d], Role::Exact);
                }
                add(format!("{p}.conv.conv.weight"), vec![d, 1, l], Role::Exact);
                if config.conv_bias {
                    add(format!("{p}.conv.conv.bias"), vec![d], Role::Exact);
                }
                add(format!("{p}.conv.out_proj.weight"), vec![d, d], Role::Matrix);
                if config.conv_bias {
                    add(format!("{p}.conv.out_proj.bias"), vec![d], Role::Exact);
                }
            }
            LayerKind::Attention => {
                let a = format!("{p}.self_attn");
                add(format!("{a}.q_proj.weight"), vec![h * hd, d], Role::Matrix);
                add(format!("{a}.k_proj.weight"), vec![kv * hd, d], Role::Matrix);
                add(format!("{a}.v_proj.weight"), vec![kv * hd, d], Role::Matrix);
                add(format!("{a}.out_proj.weight"), vec![d, h * hd], Role::Matrix);
                add(format!("{a}.q_layernorm.weight"), vec![hd], Role::Exact);
                add(format!("{a}.k_layernorm.weight"), vec![hd], Role::Exact);
            }
        }
        add(format!("{p}.ffn_norm.weight"), vec![d], Role::Exact);
        match config.moe.as_ref().filter(|_| config.is_moe_layer(i)) {
            None => {
                add(format!("{p}.feed_forward.w1.weight"), vec![f, d], Role::Matrix);
                add(format!("{p}.feed_forward.w3.weight"), vec![f, d], Role::Matrix);
                add(format!("{p}.feed_forward.w2.weight"), vec![d, f], Role::Matrix);
            }
            Some(moe) => {
                // Router f32; each expert's three matrices next to each other in the file.
                let (e, w) = (moe.num_experts, moe.moe_intermediate_size);
                add(format!("{p}.feed_forward.gate.weight"), vec![e, d], Role::Exact);
                if moe.use_expert_bias {
                    add(format!("{p}.feed_forward.expert_bias"), vec![e], Role::Exact);
                }
                for x in 0..e {
                    let q = format!("{p}.feed_forward.experts.{x}");
                    add(format!("{q}.w1.weight"), vec![w, d], Role::Matrix);
                    add(format!("{q}.w3.weight"), vec![w, d], Role::Matrix);
                    add(format!("{q}.w2.weight"), vec![d, w], Role::Matrix);
                }
            }
        }
    }
    add("model.embedding_norm.weight".into(), vec![d], Role::Exact);
    if !config.tie_embeddings {
        add("lm_head.weight".into(), vec![v, d], Role::Matrix);
    }
    out
}

/// Everything besides the tensors that goes into a `.cact` file.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// generation_config.json.
    pub generation_config: Option<Value>,
    /// Chat template source.
    pub chat_template: Option<String>,
    /// Files stored verbatim (tokenizer.json, tokenizer_config.json).
    pub files: Vec<(String, Vec<u8>)>,
    /// Where the model came from (recorded in the manifest).
    pub source: Option<String>,
}

/// Converts `source` into a `.cact` written to `out`. `config_json` is stored in the
/// manifest as is (it must parse as an LFM2 config). `progress(done, total, name)` is called
/// before each tensor.
pub fn convert<W: Write>(
    config_json: &Value,
    source: &dyn TensorSource,
    quant: Quant,
    extras: &Extras,
    out: W,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<W> {
    let config = Lfm2Config::from_json(config_json)?;
    let specs = required_tensors(&config);
    let plan: Vec<TensorPlan> = specs
        .iter()
        .map(|s| TensorPlan {
            name: s.name.clone(),
            dtype: match s.role {
                Role::Matrix => quant.matrix_dtype(),
                Role::Exact => TensorDType::F32,
            },
            shape: s.shape.iter().map(|&d| d as u64).collect(),
        })
        .collect();
    let producer = json!({
        "tool": concat!("saguaro ", env!("CARGO_PKG_VERSION")),
        "quant": quant.name(),
        "source": extras.source,
    });
    let mut writer = CactWriter::begin(
        out,
        config_json.clone(),
        extras.generation_config.clone(),
        extras.chat_template.clone(),
        &extras.files,
        Some(producer),
        &plan,
    )?;
    for (i, (spec, p)) in specs.iter().zip(&plan).enumerate() {
        progress(i, specs.len(), &spec.name);
        let values = source.f32_tensor(&spec.name, &spec.shape)?;
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Weights(format!("tensor `{}` holds a non-finite value at element {bad}", spec.name)));
        }
        match p.dtype {
            TensorDType::F32 => writer.write_tensor(&spec.name, bytemuck::cast_slice(&values), None)?,
            TensorDType::F16 => {
                check_range(&spec.name, &values, 65504.0, "f16")?;
                let half: Vec<u8> = values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
                writer.write_tensor(&spec.name, &half, None)?
            }
            TensorDType::Bf16 => unreachable!("bf16 is never chosen as an output dtype"),
            TensorDType::Q8 | TensorDType::Q4 => {
                let kind = if p.dtype == TensorDType::Q8 { QuantKind::Q8 } else { QuantKind::Q4 };
                // The f16 scale is amax / 127 (or / 7): it must not overflow.
                let qmax = if kind == QuantKind::Q8 { 127.0 } else { 7.0 };
                check_range(&spec.name, &values, 65504.0 * qmax, p.dtype.name())?;
                let (rows, cols) = (spec.shape[0], spec.shape[1]);
                let (data, scales) = quantize_matrix(kind, &values, rows, cols);
                writer.write_tensor(&spec.name, &data, Some(&scales))?
            }
        }
    }
    progress(specs.len(), specs.len(), "");
    writer.finish()
}

fn check_range(name: &str, values: &[f32], limit: f32, what: &str) -> Result<()> {
    match values.iter().position(|v| v.abs() > limit) {
        Some(i) => Err(Error::Weights(format!(
            "tensor `{name}` value {} at element {i} is too large to store as {what}",
            values[i]
        ))),
        None => Ok(()),
    }
}
