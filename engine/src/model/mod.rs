//! The model: weights as the forward pass sees them, its state, and the forward pass, for
//! every family the engine runs (LFM2 / LFM2-MoE, Llama, Gemma 3; see [`Architecture`]).
//!
//! - [`Model`] holds the resolved config, every weight (shapes in the field comments) and
//!   the kernel table it computes with. The families share the blocks (attention, gated
//!   FFN); what differs is optional (biases, QK-norm, post-norms, windows) and recorded in
//!   the weights and the config, so one forward pass reads them all.
//! - [`State`] is one sequence's memory: conv tails and KV caches ([`state`]).
//! - [`forward`] is the single readable forward pass (batched prefill and one-token decode
//!   are the same code with T tokens).

mod forward;
mod state;

pub use forward::LogitsMode;
pub use state::{Checkpoint, KvCache, LayerState, State};

use crate::config::{Activation, Architecture, LayerKind, ModelConfig};
use crate::convert::{convert, Extras, Quant, TensorNames};
use crate::error::{Error, Result};
use crate::format::{CactFile, TensorDType, TensorEntry};
use crate::kernels::{Kernels, QuantActs, QuantMatrix};
use crate::math::Rope;
use crate::parallel::{for_each_piece_mut, split_len, Parallel, Threads};
use crate::quant::{dequantize_row, QuantKind, QuantShape};
use crate::storage::{AlignedBytes, ByteRange};
use crate::weights::TensorSource;
use std::ops::Range;

/// How a weight matrix is stored (a view into the model file, never a copy).
#[derive(Debug, Clone)]
pub enum WeightData {
    /// `[rows, cols]` f32.
    F32(ByteRange),
    /// `[rows, cols]` f16, widened exactly at use.
    F16(ByteRange),
    /// `[rows, cols]` bf16, widened exactly at use.
    Bf16(ByteRange),
    /// INT8 or INT4 in the `r16k4` layout with f16 scales `[row_blocks][groups][16]`.
    Quant { kind: QuantKind, shape: QuantShape, data: ByteRange, scales: ByteRange },
}

/// A weight matrix `[rows, cols]` (one row per output feature), used as `y = x W^T`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    pub data: WeightData,
}

impl Linear {
    fn load(file: &CactFile, name: &str, rows: usize, cols: usize) -> Result<Self> {
        let entry = tensor_entry(file, name, &[rows, cols])?;
        let data = file.range(entry.data);
        let data = match entry.dtype {
            TensorDType::F32 => WeightData::F32(data),
            TensorDType::F16 => WeightData::F16(data),
            TensorDType::Bf16 => WeightData::Bf16(data),
            TensorDType::Q8 | TensorDType::Q4 => WeightData::Quant {
                kind: entry.dtype.quant_kind().expect("q8/q4"),
                shape: QuantShape::new(rows, cols).expect("validated by the reader"),
                data,
                scales: file.range(entry.scales.expect("validated by the reader")),
            },
        };
        Ok(Linear { rows, cols, data })
    }

    /// `out [T, rows] = x [T, cols] W^T`, split across `par`: by tokens when T > 1, by row
    /// blocks when T == 1. Every output element is computed by the same operations either
    /// way, so results do not depend on the thread count.
    pub fn forward(&self, k: &Kernels, par: &dyn Parallel, x: &[f32], out: &mut [f32]) {
        let tokens = x.len() / self.cols;
        let threads = par.threads();
        if threads == 1 {
            return self.forward_rows(k, x, 0..self.rows, out);
        }
        if tokens == 1 {
            // 16-row blocks per task, so quantized kernels never split a block.
            let blocks = self.rows.div_ceil(16);
            let piece = split_len(blocks, threads, 4) * 16;
            for_each_piece_mut(par, out, piece, &|i, o| {
                let start = i * piece;
                self.forward_rows(k, x, start..start + o.len(), o)
            });
        } else {
            let per_task = split_len(tokens, threads, 1);
            for_each_piece_mut(par, out, per_task * self.rows, &|i, o| {
                let t0 = i * per_task;
                let n = o.len() / self.rows;
                self.forward_rows(k, &x[t0 * self.cols..(t0 + n) * self.cols], 0..self.rows, o)
            });
        }
    }

    /// `out [T, rows.len()]` = the rows `rows` of `x W^T`, on the calling thread. `rows`
    /// starts at a multiple of 16.
    pub fn forward_rows(&self, k: &Kernels, x: &[f32], rows: Range<usize>, out: &mut [f32]) {
        let c = self.cols;
        match &self.data {
            WeightData::F32(w) => (k.matmul_f32)(x, &w.as_f32()[rows.start * c..rows.end * c], c, out),
            WeightData::F16(w) => (k.matmul_f16)(x, &w.bytes()[rows.start * c * 2..rows.end * c * 2], c, out),
            WeightData::Bf16(w) => (k.matmul_bf16)(x, &w.bytes()[rows.start * c * 2..rows.end * c * 2], c, out),
            WeightData::Quant { kind, shape, data, scales } => {
                debug_assert_eq!(rows.start % 16, 0);
                let mut acts = QuantActs::default();
                acts.quantize(k, x, c);
                let m = QuantMatrix { kind: *kind, shape: *shape, data: data.bytes(), scales: scales.bytes() };
                let blocks = rows.start / 16..rows.end.div_ceil(16);
                let width = blocks.len() * 16;
                if width == rows.len() {
                    (k.gemm(*kind))(&m, &acts, blocks, out);
                } else {
                    let mut tmp = vec![0.0f32; acts.tokens * width];
                    (k.gemm(*kind))(&m, &acts, blocks, &mut tmp);
                    for (o, t) in out.chunks_exact_mut(rows.len()).zip(tmp.chunks_exact(width)) {
                        o.copy_from_slice(&t[..rows.len()]);
                    }
                }
            }
        }
    }

    /// Row `r` as f32 values (embedding lookup).
    pub fn row(&self, r: usize, out: &mut [f32]) {
        let c = self.cols;
        match &self.data {
            WeightData::F32(w) => out.copy_from_slice(&w.as_f32()[r * c..(r + 1) * c]),
            WeightData::F16(w) => {
                for (o, b) in out.iter_mut().zip(w.bytes()[r * c * 2..(r + 1) * c * 2].chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            WeightData::Bf16(w) => {
                for (o, b) in out.iter_mut().zip(w.bytes()[r * c * 2..(r + 1) * c * 2].chunks_exact(2)) {
                    *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            WeightData::Quant { kind, shape, data, scales } => {
                dequantize_row(*kind, data.bytes(), scales.bytes(), shape, r, out)
            }
        }
    }

    /// True when the matrix takes quantized activations.
    pub fn is_quantized(&self) -> bool {
        matches!(self.data, WeightData::Quant { .. })
    }
}

/// The table entry of `name`, checked against the shape the config implies.
fn tensor_entry<'a>(file: &'a CactFile, name: &str, shape: &[usize]) -> Result<&'a TensorEntry> {
    let entry = file.entry(name).ok_or_else(|| Error::Weights(format!("missing tensor `{name}`")))?;
    if entry.shape.len() != shape.len() || entry.shape.iter().zip(shape).any(|(&a, &b)| a != b as u64) {
        return Err(Error::Weights(format!("tensor `{name}` has shape {:?}, expected {:?}", entry.shape, shape)));
    }
    Ok(entry)
}

/// An f32 vector tensor (norm weights, taps, biases), copied out (they are small).
fn load_exact(file: &CactFile, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let entry = tensor_entry(file, name, shape)?;
    if entry.dtype != TensorDType::F32 {
        return Err(Error::Weights(format!("tensor `{name}` must be f32, found {}", entry.dtype.name())));
    }
    Ok(file.range(entry.data).as_f32().to_vec())
}

/// Gated short convolution block (`model.layers.N.conv.*`).
#[derive(Debug, Clone)]
pub struct ConvBlock {
    /// `in_proj.weight` [3D, D]: produces B, C, x (in that order along the 3D axis).
    pub in_proj: Linear,
    /// `in_proj.bias` [3D] when `conv_bias`.
    pub in_bias: Option<Vec<f32>>,
    /// `conv.weight` [D, 1, L] stored as [D, L]: depthwise taps, tap L-1 is the current token.
    pub taps: Vec<f32>,
    /// `conv.bias` [D] when `conv_bias`.
    pub conv_bias: Option<Vec<f32>>,
    /// `out_proj.weight` [D, D].
    pub out_proj: Linear,
    /// `out_proj.bias` [D] when `conv_bias`.
    pub out_bias: Option<Vec<f32>>,
}

/// Grouped-query attention block (`model.layers.N.self_attn.*`).
#[derive(Debug, Clone)]
pub struct AttentionBlock {
    /// `q_proj.weight` [H*hd, D].
    pub q_proj: Linear,
    /// `k_proj.weight` [KV*hd, D].
    pub k_proj: Linear,
    /// `v_proj.weight` [KV*hd, D].
    pub v_proj: Linear,
    /// `out_proj.weight` (LFM2) / `o_proj.weight` [D, H*hd].
    pub out_proj: Linear,
    /// Llama `attention_bias`: `q_proj.bias` [H*hd], `k_proj.bias` and `v_proj.bias` [KV*hd],
    /// `o_proj.bias` [D].
    pub q_bias: Option<Vec<f32>>,
    pub k_bias: Option<Vec<f32>>,
    pub v_bias: Option<Vec<f32>>,
    pub out_bias: Option<Vec<f32>>,
    /// QK-norm (LFM2 `q_layernorm`, Gemma `q_norm`) [hd]: RMSNorm per query head, before
    /// RoPE; None for Llama. Gemma's `1 + w` is already added.
    pub q_norm: Option<Vec<f32>>,
    /// QK-norm of keys (`k_layernorm` / `k_norm`) [hd], like `q_norm`.
    pub k_norm: Option<Vec<f32>>,
    /// Sliding window W (Gemma local layers): a query at position p sees keys p-W+1..=p.
    /// None: every earlier position (global attention).
    pub window: Option<usize>,
    /// RoPE frequencies of this layer (Gemma's local layers use another base).
    pub rope: Rope,
}

/// The token mixer of a layer.
#[derive(Debug, Clone)]
pub enum Mixer {
    Conv(ConvBlock),
    Attention(AttentionBlock),
}

/// Gated feed-forward: `w2(act(w1 u) * w3 u)` with act = SiLU (SwiGLU: LFM2
/// `feed_forward.*`, Llama `mlp.*`) or gelu-tanh (GeGLU: Gemma `mlp.*`).
#[derive(Debug, Clone)]
pub struct FeedForward {
    /// `w1.weight` / `gate_proj.weight` (gate) [F, D].
    pub w1: Linear,
    /// `w3.weight` / `up_proj.weight` (up) [F, D].
    pub w3: Linear,
    /// `w2.weight` / `down_proj.weight` (down) [D, F].
    pub w2: Linear,
    /// Llama `mlp_bias`: `gate_proj.bias` [F], `up_proj.bias` [F], `down_proj.bias` [D].
    pub b1: Option<Vec<f32>>,
    pub b3: Option<Vec<f32>>,
    pub b2: Option<Vec<f32>>,
    /// The gate activation.
    pub act: Activation,
}

/// Mixture-of-experts FFN of LFM2-MoE (`model.layers.N.feed_forward.*`, layers >=
/// `num_dense_layers`):
///
/// ```text
/// s = sigmoid(u Wg^T)                  # [E] router scores
/// idx = topk(s + expert_bias, k)       # bias only chooses; ties -> lower expert index
/// w = s[idx]; if norm: w /= sum(w) + 1e-6; w *= routed_scaling_factor
/// out = sum_j w_j * expert_idx_j(u)    # accumulated in selection-rank order (j = 0..k)
/// ```
#[derive(Debug, Clone)]
pub struct MoeBlock {
    /// `gate.weight` [E, D], always f32 (router logits must be exact enough to pick the
    /// same experts as the reference).
    pub gate: Linear,
    /// `expert_bias` [E] when `use_expert_bias`: added to the scores for selection only.
    pub expert_bias: Option<Vec<f32>>,
    /// `experts.{e}.w1/w3/w2`: each expert a SwiGLU of width I, stored as separate tensors
    /// so that one token reads only its k experts' bytes.
    pub experts: Vec<FeedForward>,
    /// Experts per token (k).
    pub top_k: usize,
    pub norm_topk_prob: bool,
    pub routed_scaling_factor: f32,
}

/// The FFN of a layer: dense SwiGLU, or a mixture of SwiGLU experts.
#[derive(Debug, Clone)]
pub enum Ffn {
    Dense(FeedForward),
    Moe(MoeBlock),
}

impl FeedForward {
    /// An LFM2 SwiGLU (dense FFN or one expert): `{prefix}.w1.weight` [F, D],
    /// `{prefix}.w3.weight` [F, D], `{prefix}.w2.weight` [D, F].
    fn load(file: &CactFile, prefix: &str, f: usize, d: usize) -> Result<Self> {
        Ok(FeedForward {
            w1: Linear::load(file, &format!("{prefix}.w1.weight"), f, d)?,
            w3: Linear::load(file, &format!("{prefix}.w3.weight"), f, d)?,
            w2: Linear::load(file, &format!("{prefix}.w2.weight"), d, f)?,
            b1: None,
            b3: None,
            b2: None,
            act: Activation::Silu,
        })
    }
}

/// One decoder layer: `h += post(mixer(norm(h))); h += post(ffn(norm(h)))`, where the post
/// norms exist only in Gemma.
#[derive(Debug, Clone)]
pub struct Layer {
    /// RMSNorm before the mixer [D] (LFM2 `operator_norm`, Llama / Gemma `input_layernorm`).
    pub operator_norm: Vec<f32>,
    pub mixer: Mixer,
    /// Gemma `post_attention_layernorm` [D]: RMSNorm of the mixer output.
    pub post_mixer_norm: Option<Vec<f32>>,
    /// RMSNorm before the FFN [D] (LFM2 `ffn_norm`, Llama `post_attention_layernorm`, Gemma
    /// `pre_feedforward_layernorm`).
    pub ffn_norm: Vec<f32>,
    pub ffn: Ffn,
    /// Gemma `post_feedforward_layernorm` [D]: RMSNorm of the FFN output.
    pub post_ffn_norm: Option<Vec<f32>>,
}

/// A loaded model of any family.
#[derive(Debug, Clone)]
pub struct Model {
    pub config: ModelConfig,
    /// `model.embed_tokens.weight` [V, D]; also the LM head when embeddings are tied.
    pub embedding: Linear,
    /// `lm_head.weight` [V, D] for untied checkpoints only.
    pub lm_head: Option<Linear>,
    /// The final RMSNorm [D] (LFM2 `model.embedding_norm`: despite its name, the FINAL norm;
    /// Llama / Gemma `model.norm`).
    pub final_norm: Vec<f32>,
    pub layers: Vec<Layer>,
    /// RoPE frequencies of global attention layers (each block holds its own copy).
    pub rope: Rope,
    /// The kernels this model computes with.
    pub kernels: Kernels,
    /// Where prefill and decode work runs (serial unless the host plugs in a pool).
    pub threads: Threads,
    /// The file the weights live in (tokenizer, chat template, generation defaults too).
    pub file: CactFile,
}

impl Model {
    /// Opens a model from a validated `.cact` file; weights stay in the file's bytes.
    pub fn from_cact(file: &CactFile) -> Result<Self> {
        let config = ModelConfig::from_json(&file.manifest.config)?;
        if let Some(arch) = &file.manifest.architecture {
            if arch != config.arch.name() {
                return Err(Error::Format(format!(
                    "the manifest says architecture `{arch}` but its config is `{}` ({})",
                    config.model_type,
                    config.arch.name()
                )));
            }
        }
        let names = TensorNames::of(config.arch);
        // Gemma's RMSNorm multiplies by (1 + w): add the 1 here, in f32 as transformers does
        // (`1.0 + weight.float()`), so every family runs the same `w * normalized` RMSNorm.
        let norm = |name: &str, n: usize| -> Result<Vec<f32>> {
            let mut w = load_exact(file, name, &[n])?;
            if config.norm_unit_offset {
                w.iter_mut().for_each(|x| *x += 1.0);
            }
            Ok(w)
        };
        let optional = |present: bool, name: String, n: usize| -> Result<Option<Vec<f32>>> {
            if present {
                Ok(Some(load_exact(file, &name, &[n])?))
            } else {
                Ok(None)
            }
        };
        let d = config.hidden_size;
        let v = config.vocab_size;
        let f = config.ffn_dim;
        let hd = config.head_dim;
        let l = config.conv_kernel;

        let embedding = Linear::load(file, names.embedding, v, d)?;
        let lm_head = if config.tie_embeddings {
            None
        } else {
            Some(Linear::load(file, "lm_head.weight", v, d)?)
        };
        let final_norm = norm(names.final_norm, d)?;

        let mut layers = Vec::with_capacity(config.num_layers);
        for (i, kind) in config.layer_kinds.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let bias = |name: &str, n: usize| -> Result<Option<Vec<f32>>> {
                if config.conv_bias {
                    Ok(Some(load_exact(file, &format!("{p}.conv.{name}.bias"), &[n])?))
                } else {
                    Ok(None)
                }
            };
            let mixer = match kind {
                LayerKind::Conv => Mixer::Conv(ConvBlock {
                    in_proj: Linear::load(file, &format!("{p}.conv.in_proj.weight"), 3 * d, d)?,
                    in_bias: bias("in_proj", 3 * d)?,
                    taps: load_exact(file, &format!("{p}.conv.conv.weight"), &[d, 1, l])?,
                    conv_bias: bias("conv", d)?,
                    out_proj: Linear::load(file, &format!("{p}.conv.out_proj.weight"), d, d)?,
                    out_bias: bias("out_proj", d)?,
                }),
                LayerKind::Attention => {
                    let (h, kv) = (config.num_heads, config.num_kv_heads);
                    let ab = config.attention_bias;
                    let rope = config.rope_for_layer(i);
                    Mixer::Attention(AttentionBlock {
                        q_proj: Linear::load(file, &format!("{p}.{}.weight", names.q_proj), h * hd, d)?,
                        k_proj: Linear::load(file, &format!("{p}.{}.weight", names.k_proj), kv * hd, d)?,
                        v_proj: Linear::load(file, &format!("{p}.{}.weight", names.v_proj), kv * hd, d)?,
                        out_proj: Linear::load(file, &format!("{p}.{}.weight", names.o_proj), d, h * hd)?,
                        q_bias: optional(ab, format!("{p}.{}.bias", names.q_proj), h * hd)?,
                        k_bias: optional(ab, format!("{p}.{}.bias", names.k_proj), kv * hd)?,
                        v_bias: optional(ab, format!("{p}.{}.bias", names.v_proj), kv * hd)?,
                        out_bias: optional(ab, format!("{p}.{}.bias", names.o_proj), d)?,
                        q_norm: names.q_norm.map(|n| norm(&format!("{p}.{n}"), hd)).transpose()?,
                        k_norm: names.k_norm.map(|n| norm(&format!("{p}.{n}"), hd)).transpose()?,
                        window: config.layer_windows[i],
                        rope: Rope::with_scaling(hd, rope.theta, rope.linear_factor),
                    })
                }
            };
            let mb = config.mlp_bias;
            layers.push(Layer {
                operator_norm: norm(&format!("{p}.{}", names.attn_norm), d)?,
                mixer,
                post_mixer_norm: names.post_attn_norm.map(|n| norm(&format!("{p}.{n}"), d)).transpose()?,
                ffn_norm: norm(&format!("{p}.{}", names.ffn_norm), d)?,
                post_ffn_norm: names.post_ffn_norm.map(|n| norm(&format!("{p}.{n}"), d)).transpose()?,
                ffn: match config.moe.as_ref().filter(|_| config.is_moe_layer(i)) {
                    None if config.arch == Architecture::Lfm2 => {
                        Ffn::Dense(FeedForward::load(file, &format!("{p}.feed_forward"), f, d)?)
                    }
                    None => Ffn::Dense(FeedForward {
                        w1: Linear::load(file, &format!("{p}.{}.weight", names.gate_proj), f, d)?,
                        w3: Linear::load(file, &format!("{p}.{}.weight", names.up_proj), f, d)?,
                        w2: Linear::load(file, &format!("{p}.{}.weight", names.down_proj), d, f)?,
                        b1: optional(mb, format!("{p}.{}.bias", names.gate_proj), f)?,
                        b3: optional(mb, format!("{p}.{}.bias", names.up_proj), f)?,
                        b2: optional(mb, format!("{p}.{}.bias", names.down_proj), d)?,
                        act: config.activation,
                    }),
                    Some(moe) => {
                        let (e, w) = (moe.num_experts, moe.moe_intermediate_size);
                        let gate_name = format!("{p}.feed_forward.gate.weight");
                        let gate = Linear::load(file, &gate_name, e, d)?;
                        if !matches!(gate.data, WeightData::F32(_)) {
                            return Err(Error::Weights(format!("tensor `{gate_name}` (router) must be f32")));
                        }
                        let expert_bias = if moe.use_expert_bias {
                            Some(load_exact(file, &format!("{p}.feed_forward.expert_bias"), &[e])?)
                        } else {
                            None
                        };
                        let experts = (0..e)
                            .map(|x| FeedForward::load(file, &format!("{p}.feed_forward.experts.{x}"), w, d))
                            .collect::<Result<Vec<_>>>()?;
                        Ffn::Moe(MoeBlock {
                            gate,
                            expert_bias,
                            experts,
                            top_k: moe.num_experts_per_tok,
                            norm_topk_prob: moe.norm_topk_prob,
                            routed_scaling_factor: moe.routed_scaling_factor,
                        })
                    }
                },
            });
        }

        let rope = Rope::with_scaling(hd, config.rope_theta, config.rope_linear_factor);
        Ok(Model { config, embedding, lm_head, final_norm, layers, rope, kernels: Kernels::portable(), threads: Threads::default(), file: file.clone() })
    }

    /// Builds an f32 model from a config and a tensor source with Hugging Face names (a
    /// safetensors folder, a GGUF file) by converting it to an in-memory `.cact` first, so
    /// every model runs through the same loader.
    pub fn from_source(config_json: &serde_json::Value, src: &dyn TensorSource, extras: &Extras) -> Result<Self> {
        let bytes = convert(config_json, src, Quant::F32, extras, Vec::new(), &mut |_, _, _| {})?;
        let file = CactFile::parse(AlignedBytes::copy_from(&bytes).into_blob())?;
        Model::from_cact(&file)
    }

    /// Replaces the kernel table (hosts plug in CPU-specific kernels; tests swap tiers).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }

    /// Replaces the thread runners (the native host plugs in its pool).
    pub fn set_threads(&mut self, threads: Threads) {
        self.threads = threads;
    }

    /// A fresh, empty state for one sequence.
    pub fn new_state(&self) -> State {
        State::new(&self.config)
    }

    /// The LM head: the tied embedding unless the checkpoint has its own.
    pub fn head(&self) -> &Linear {
        self.lm_head.as_ref().unwrap_or(&self.embedding)
    }

    /// Checks that every id is a valid token of this model.
    pub fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::Input("the token list is empty".into()));
        }
        let vocab = self.config.vocab_size;
        if let Some((i, &bad)) = tokens.iter().enumerate().find(|(_, &t)| t as usize >= vocab) {
            return Err(Error::Input(format!(
                "token id {bad} at position {i} is out of range (vocab size {vocab})"
            )));
        }
        Ok(())
    }
}
