//! Conversion of a checkpoint (any [`TensorSource`]: safetensors, GGUF) into a `.cact`
//! file, tensor by tensor: one source tensor is decoded, quantized and written before the
//! next is read, so peak memory is the largest tensor, not the model.

use std::io::Write;

use serde_json::{json, Value};

use crate::config::{Architecture, LayerKind, ModelConfig};
use crate::error::{Error, Result};
use crate::format::{CactWriter, TensorDType, TensorPlan};
use crate::quant::{quantize_matrix_with, QuantKind};
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

/// Where one family keeps its tensors: Hugging Face names, which `.cact` files keep too. Layer
/// names are relative to `model.layers.N.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorNames {
    /// The token embedding [V, D] (also the LM head when tied).
    pub embedding: &'static str,
    /// The final RMSNorm [D] (LFM2 calls it `embedding_norm`).
    pub final_norm: &'static str,
    /// RMSNorm [D] before the mixer.
    pub attn_norm: &'static str,
    /// Attention projections q [H*hd, D], k and v [KV*hd, D], output [D, H*hd].
    pub q_proj: &'static str,
    pub k_proj: &'static str,
    pub v_proj: &'static str,
    pub o_proj: &'static str,
    /// Per-head RMSNorm [hd] of queries and keys (QK-norm), before RoPE.
    pub q_norm: Option<&'static str>,
    pub k_norm: Option<&'static str>,
    /// RMSNorm [D] of the attention output, before the residual add (Gemma).
    pub post_attn_norm: Option<&'static str>,
    /// RMSNorm [D] before the FFN.
    pub ffn_norm: &'static str,
    /// RMSNorm [D] of the FFN output, before the residual add (Gemma).
    pub post_ffn_norm: Option<&'static str>,
    /// The gated FFN: gate and up [F, D], down [D, F].
    pub gate_proj: &'static str,
    pub up_proj: &'static str,
    pub down_proj: &'static str,
}

impl TensorNames {
    /// The names of `arch`'s tensors.
    pub fn of(arch: Architecture) -> &'static TensorNames {
        const LFM2: TensorNames = TensorNames {
            embedding: "model.embed_tokens.weight",
            final_norm: "model.embedding_norm.weight",
            attn_norm: "operator_norm.weight",
            q_proj: "self_attn.q_proj",
            k_proj: "self_attn.k_proj",
            v_proj: "self_attn.v_proj",
            o_proj: "self_attn.out_proj",
            q_norm: Some("self_attn.q_layernorm.weight"),
            k_norm: Some("self_attn.k_layernorm.weight"),
            post_attn_norm: None,
            ffn_norm: "ffn_norm.weight",
            post_ffn_norm: None,
            gate_proj: "feed_forward.w1",
            up_proj: "feed_forward.w3",
            down_proj: "feed_forward.w2",
        };
        const LLAMA: TensorNames = TensorNames {
            embedding: "model.embed_tokens.weight",
            final_norm: "model.norm.weight",
            attn_norm: "input_layernorm.weight",
            q_proj: "self_attn.q_proj",
            k_proj: "self_attn.k_proj",
            v_proj: "self_attn.v_proj",
            o_proj: "self_attn.o_proj",
            q_norm: None,
            k_norm: None,
            post_attn_norm: None,
            // Llama's "post_attention_layernorm" is the norm before the MLP.
            ffn_norm: "post_attention_layernorm.weight",
            post_ffn_norm: None,
            gate_proj: "mlp.gate_proj",
            up_proj: "mlp.up_proj",
            down_proj: "mlp.down_proj",
        };
        const GEMMA3: TensorNames = TensorNames {
            q_norm: Some("self_attn.q_norm.weight"),
            k_norm: Some("self_attn.k_norm.weight"),
            // Gemma's "post_attention_layernorm" really follows attention.
            post_attn_norm: Some("post_attention_layernorm.weight"),
            ffn_norm: "pre_feedforward_layernorm.weight",
            post_ffn_norm: Some("post_feedforward_layernorm.weight"),
            ..LLAMA
        };
        match arch {
            Architecture::Lfm2 => &LFM2,
            Architecture::Llama => &LLAMA,
            Architecture::Gemma3 => &GEMMA3,
        }
    }
}

/// Every tensor a model of this config needs, in file order.
pub fn required_tensors(config: &ModelConfig) -> Vec<TensorSpec> {
    let names = TensorNames::of(config.arch);
    let d = config.hidden_size;
    let (v, f, hd, l) = (config.vocab_size, config.ffn_dim, config.head_dim, config.conv_kernel);
    let (h, kv) = (config.num_heads, config.num_kv_heads);
    let mut out = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, role: Role| out.push(TensorSpec { name, shape, role });
    add(names.embedding.into(), vec![v, d], Role::Matrix);
    for (i, kind) in config.layer_kinds.iter().enumerate() {
        let p = format!("model.layers.{i}");
        add(format!("{p}.{}", names.attn_norm), vec![d], Role::Exact);
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
                for (proj, rows, cols) in
                    [(names.q_proj, h * hd, d), (names.k_proj, kv * hd, d), (names.v_proj, kv * hd, d), (names.o_proj, d, h * hd)]
                {
                    add(format!("{p}.{proj}.weight"), vec![rows, cols], Role::Matrix);
                    if config.attention_bias {
                        add(format!("{p}.{proj}.bias"), vec![rows], Role::Exact);
                    }
                }
                for norm in [names.q_norm, names.k_norm].into_iter().flatten() {
                    add(format!("{p}.{norm}"), vec![hd], Role::Exact);
                }
                if let Some(norm) = names.post_attn_norm {
                    add(format!("{p}.{norm}"), vec![d], Role::Exact);
                }
            }
        }
        add(format!("{p}.{}", names.ffn_norm), vec![d], Role::Exact);
        match config.moe.as_ref().filter(|_| config.is_moe_layer(i)) {
            None => {
                for (proj, rows, cols) in [(names.gate_proj, f, d), (names.up_proj, f, d), (names.down_proj, d, f)] {
                    add(format!("{p}.{proj}.weight"), vec![rows, cols], Role::Matrix);
                    if config.mlp_bias {
                        add(format!("{p}.{proj}.bias"), vec![rows], Role::Exact);
                    }
                }
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
        if let Some(norm) = names.post_ffn_norm {
            add(format!("{p}.{norm}"), vec![d], Role::Exact);
        }
    }
    add(names.final_norm.into(), vec![d], Role::Exact);
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
/// manifest as is (it must parse as a [`ModelConfig`]); the manifest also records the
/// architecture it resolves to. `progress(done, total, name)` is called
/// before each tensor.
pub fn convert<W: Write>(
    config_json: &Value,
    source: &dyn TensorSource,
    quant: Quant,
    extras: &Extras,
    out: W,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<W> {
    let config = ModelConfig::from_json(config_json)?;
    let specs = required_tensors(&config);
    let plan: Vec<TensorPlan> = specs
        .iter()
        .map(|s| TensorPlan {
            name: s.name.clone(),
            dtype: match s.role {
                Role::Matrix => match source.matrix_dtype_floor(&s.name) {
                    Some(floor) if bits_per_weight(floor) > bits_per_weight(quant.matrix_dtype()) => floor,
                    _ => quant.matrix_dtype(),
                },
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
                let (data, scales) = quantize_matrix_with(kind, source.int4_scale_rule(), &values, rows, cols);
                writer.write_tensor(&spec.name, &data, Some(&scales))?
            }
        }
    }
    progress(specs.len(), specs.len(), "");
    writer.finish()
}

/// Nominal bits per weight of a matrix dtype, to compare precisions.
fn bits_per_weight(dtype: TensorDType) -> u32 {
    match dtype {
        TensorDType::F32 => 32,
        TensorDType::F16 | TensorDType::Bf16 => 16,
        TensorDType::Q8 => 8,
        TensorDType::Q4 => 4,
    }
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
