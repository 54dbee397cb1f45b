//! The LFM2 model: weights as the forward pass sees them, its state, and the forward pass.
//!
//! - [`Model`] holds the resolved config, every weight (shapes in the field comments) and
//!   the kernel table it computes with.
//! - [`State`] is one sequence's memory: conv tails and KV caches ([`state`]).
//! - [`forward`] is the single readable forward pass (batched prefill and one-token decode
//!   are the same code with T tokens).

mod forward;
mod state;

pub use forward::LogitsMode;
pub use state::{LayerState, State};

use crate::config::{LayerKind, Lfm2Config};
use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::math::Rope;
use crate::weights::TensorSource;

/// A dense weight matrix `[rows, cols]` (row-major: one row per output feature), used as
/// `y = x W^T`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// `[rows, cols]` f32 values.
    pub weight: Vec<f32>,
}

impl Linear {
    fn load(src: &dyn TensorSource, name: &str, rows: usize, cols: usize) -> Result<Self> {
        Ok(Linear { rows, cols, weight: src.f32_tensor(name, &[rows, cols])? })
    }

    /// `out [T, rows] = x [T, cols] W^T`.
    pub fn forward(&self, k: &Kernels, x: &[f32], out: &mut [f32]) {
        (k.matmul_f32)(x, &self.weight, self.cols, out);
    }
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

/// Grouped-query attention block with QK-norm (`model.layers.N.self_attn.*`).
#[derive(Debug, Clone)]
pub struct AttentionBlock {
    /// `q_proj.weight` [H*hd, D].
    pub q_proj: Linear,
    /// `k_proj.weight` [KV*hd, D].
    pub k_proj: Linear,
    /// `v_proj.weight` [KV*hd, D].
    pub v_proj: Linear,
    /// `out_proj.weight` [D, H*hd].
    pub out_proj: Linear,
    /// `q_layernorm.weight` [hd]: RMSNorm per query head, before RoPE.
    pub q_norm: Vec<f32>,
    /// `k_layernorm.weight` [hd]: RMSNorm per key head, before RoPE.
    pub k_norm: Vec<f32>,
}

/// The token mixer of a layer.
#[derive(Debug, Clone)]
pub enum Mixer {
    Conv(ConvBlock),
    Attention(AttentionBlock),
}

/// SwiGLU feed-forward (`model.layers.N.feed_forward.*`): `w2(silu(w1 u) * w3 u)`.
#[derive(Debug, Clone)]
pub struct FeedForward {
    /// `w1.weight` (gate) [F, D].
    pub w1: Linear,
    /// `w3.weight` (up) [F, D].
    pub w3: Linear,
    /// `w2.weight` (down) [D, F].
    pub w2: Linear,
}

/// One decoder layer: `h += mixer(norm(h)); h += ffn(norm(h))`.
#[derive(Debug, Clone)]
pub struct Layer {
    /// `operator_norm.weight` [D]: RMSNorm before the mixer.
    pub operator_norm: Vec<f32>,
    pub mixer: Mixer,
    /// `ffn_norm.weight` [D]: RMSNorm before the FFN.
    pub ffn_norm: Vec<f32>,
    pub ffn: FeedForward,
}

/// A loaded LFM2 model.
#[derive(Debug, Clone)]
pub struct Model {
    pub config: Lfm2Config,
    /// `model.embed_tokens.weight` [V, D]; also the LM head when embeddings are tied.
    pub embedding: Linear,
    /// `lm_head.weight` [V, D] for untied checkpoints only.
    pub lm_head: Option<Linear>,
    /// `model.embedding_norm.weight` [D]: despite its name, the FINAL norm.
    pub final_norm: Vec<f32>,
    pub layers: Vec<Layer>,
    /// RoPE frequencies for the attention head dimension.
    pub rope: Rope,
    /// The kernels this model computes with.
    pub kernels: Kernels,
}

impl Model {
    /// Builds a model from a config and a tensor source with Hugging Face tensor names,
    /// checking every tensor's presence, dtype and shape.
    pub fn from_source(config: Lfm2Config, src: &dyn TensorSource) -> Result<Self> {
        if config.moe.is_some() {
            return Err(Error::Config(
                "lfm2_moe (mixture-of-experts) models are parsed but not yet runnable".into(),
            ));
        }
        let d = config.hidden_size;
        let v = config.vocab_size;
        let f = config.ffn_dim;
        let hd = config.head_dim;
        let l = config.conv_kernel;

        let embedding = Linear::load(src, "model.embed_tokens.weight", v, d)?;
        let lm_head = if config.tie_embeddings {
            None
        } else {
            Some(Linear::load(src, "lm_head.weight", v, d)?)
        };
        let final_norm = src.f32_tensor("model.embedding_norm.weight", &[d])?;

        let mut layers = Vec::with_capacity(config.num_layers);
        for (i, kind) in config.layer_kinds.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let bias = |name: &str, n: usize| -> Result<Option<Vec<f32>>> {
                if config.conv_bias {
                    Ok(Some(src.f32_tensor(&format!("{p}.conv.{name}.bias"), &[n])?))
                } else {
                    Ok(None)
                }
            };
            let mixer = match kind {
                LayerKind::Conv => Mixer::Conv(ConvBlock {
                    in_proj: Linear::load(src, &format!("{p}.conv.in_proj.weight"), 3 * d, d)?,
                    in_bias: bias("in_proj", 3 * d)?,
                    taps: src.f32_tensor(&format!("{p}.conv.conv.weight"), &[d, 1, l])?,
                    conv_bias: bias("conv", d)?,
                    out_proj: Linear::load(src, &format!("{p}.conv.out_proj.weight"), d, d)?,
                    out_bias: bias("out_proj", d)?,
                }),
                LayerKind::Attention => {
                    let (h, kv) = (config.num_heads, config.num_kv_heads);
                    let a = format!("{p}.self_attn");
                    Mixer::Attention(AttentionBlock {
                        q_proj: Linear::load(src, &format!("{a}.q_proj.weight"), h * hd, d)?,
                        k_proj: Linear::load(src, &format!("{a}.k_proj.weight"), kv * hd, d)?,
                        v_proj: Linear::load(src, &format!("{a}.v_proj.weight"), kv * hd, d)?,
                        out_proj: Linear::load(src, &format!("{a}.out_proj.weight"), d, h * hd)?,
                        q_norm: src.f32_tensor(&format!("{a}.q_layernorm.weight"), &[hd])?,
                        k_norm: src.f32_tensor(&format!("{a}.k_layernorm.weight"), &[hd])?,
                    })
                }
            };
            layers.push(Layer {
                operator_norm: src.f32_tensor(&format!("{p}.operator_norm.weight"), &[d])?,
                mixer,
                ffn_norm: src.f32_tensor(&format!("{p}.ffn_norm.weight"), &[d])?,
                ffn: FeedForward {
                    w1: Linear::load(src, &format!("{p}.feed_forward.w1.weight"), f, d)?,
                    w3: Linear::load(src, &format!("{p}.feed_forward.w3.weight"), f, d)?,
                    w2: Linear::load(src, &format!("{p}.feed_forward.w2.weight"), d, f)?,
                },
            });
        }

        let rope = Rope::new(hd, config.rope_theta);
        Ok(Model { config, embedding, lm_head, final_norm, layers, rope, kernels: Kernels::portable() })
    }

    /// Replaces the kernel table (hosts plug in CPU-specific kernels; tests swap tiers).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
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
