//! Model configuration: config.json in, a fully resolved [`ModelConfig`] out, for the three
//! families the engine runs (`model_type` picks the [`Architecture`]):
//! - LFM2 / LFM2-MoE (`lfm2`, `lfm2_moe`, or no `model_type`: files made before other
//!   families existed);
//! - Llama (`llama`, e.g. SmolLM2);
//! - Gemma 3 text (`gemma3_text`).
//!
//! Llama and Gemma 3 follow transformers' `LlamaConfig` / `Gemma3TextConfig` (v5): see
//! [`ModelConfig::from_json`] and the family functions below for their keys and defaults.
//!
//! Every LFM2 rule here follows transformers' `Lfm2Config` / `Lfm2MLP` (the reference), as
//! summarised in docs/lfm2.md §Config:
//! - `layer_types` wins; else built from `full_attn_idxs`; if both are absent every layer is
//!   attention.
//! - FFN width: `block_ff_dim` wins over `intermediate_size`; with `block_auto_adjust_ff_dim`
//!   (default true) `F = int(2F/3)`, then, when `block_ffn_dim_multiplier` is not null,
//!   `F = int(mult * F)` rounded up to a multiple of `block_multiple_of` (default 256).
//!   LFM2-MoE uses `intermediate_size` as is for its dense layers.
//! - `head_dim` = config value if present, else hidden / heads.
//! - `rope_theta` flat, or inside `rope_parameters` (v5 configs); default 1e6.
//! - legacy `tie_embedding` means `tie_word_embeddings`.
//!
//! Fields without which the model cannot be built (sizes, head counts) are required and
//! a missing or malformed one is an [`Error::Config`] naming it.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The model family: which tensors a file holds and which forward pass runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// LFM2 and LFM2-MoE: gated short convolutions and GQA attention with QK-norm.
    Lfm2,
    /// Llama: GQA attention, RMSNorm, SwiGLU; optional attention / MLP biases.
    Llama,
    /// Gemma 3 text: scaled embeddings, (1 + w) RMSNorm before and after each block,
    /// QK-norm, GeGLU (gelu-tanh), sliding-window and global attention layers.
    Gemma3,
}

impl Architecture {
    /// The name recorded in `.cact` manifests (`architecture`).
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Lfm2 => "lfm2",
            Architecture::Llama => "llama",
            Architecture::Gemma3 => "gemma3",
        }
    }

    /// The family of a config.json `model_type` (None: an LFM2 file from before `model_type`
    /// was required).
    pub fn from_model_type(model_type: Option<&str>) -> Result<Self> {
        match model_type {
            None | Some("lfm2") | Some("lfm2_moe") => Ok(Architecture::Lfm2),
            Some("llama") => Ok(Architecture::Llama),
            Some("gemma3_text") => Ok(Architecture::Gemma3),
            Some("gemma3") => Err(Error::Config(
                "model_type `gemma3` is the multimodal Gemma 3; use a text-only checkpoint (model_type `gemma3_text`)".into(),
            )),
            Some(other) => Err(Error::Config(format!(
                "model_type `{other}` is not supported (expected `lfm2`, `lfm2_moe`, `llama` or `gemma3_text`)"
            ))),
        }
    }
}

/// The gate activation of the gated FFN: `down(act(gate x) * up x)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(x)` (SwiGLU): LFM2, Llama.
    Silu,
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (GeGLU, PyTorch's
    /// `gelu(approximate="tanh")`): Gemma 3.
    GeluTanh,
}

/// The token mixer of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// Gated short convolution (`conv` in `layer_types`).
    Conv,
    /// Grouped-query attention with RoPE (`full_attention`; Gemma's `sliding_attention` too,
    /// with its window in [`ModelConfig::layer_windows`]).
    Attention,
}

/// Mixture-of-experts settings of LFM2-MoE (`model_type: lfm2_moe`).
#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    /// Experts per MoE layer (E).
    pub num_experts: usize,
    /// Experts chosen per token (k).
    pub num_experts_per_tok: usize,
    /// Hidden width of each expert's SwiGLU (I).
    pub moe_intermediate_size: usize,
    /// The first `num_dense_layers` layers use a dense FFN instead of experts.
    pub num_dense_layers: usize,
    /// Whether `feed_forward.expert_bias` [E] is added to the router scores for selection.
    pub use_expert_bias: bool,
    /// Multiplier on the (normalised) top-k weights.
    pub routed_scaling_factor: f32,
    /// Renormalise the top-k weights to sum to one (plus 1e-6).
    pub norm_topk_prob: bool,
}

/// RoPE settings of one kind of attention layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeConfig {
    /// Base theta.
    pub theta: f32,
    /// Linear position scaling (`rope_type: linear`): inv_freq is divided by it. 1 otherwise.
    pub linear_factor: f32,
}

/// A resolved model configuration: every derived quantity already computed.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The family (decides tensor names and the forward pass).
    pub arch: Architecture,
    /// `lfm2`, `lfm2_moe`, `llama` or `gemma3_text`.
    pub model_type: String,
    /// Vocabulary size V (rows of the embedding / LM head).
    pub vocab_size: usize,
    /// Model width D.
    pub hidden_size: usize,
    /// Number of layers; equals `layer_kinds.len()`.
    pub num_layers: usize,
    /// Query heads H.
    pub num_heads: usize,
    /// Key/value heads KV (H is a multiple of KV; 1 is MQA).
    pub num_kv_heads: usize,
    /// Width of one head (hd).
    pub head_dim: usize,
    /// Width F of the dense gated FFN (after LFM2's auto-adjust rule).
    pub ffn_dim: usize,
    /// Mixer of each layer.
    pub layer_kinds: Vec<LayerKind>,
    /// Per layer: `Some(W)` for sliding-window attention (a query at position p sees keys at
    /// p-W+1..=p), None for global attention and conv layers.
    pub layer_windows: Vec<Option<usize>>,
    /// RoPE base of global attention layers (all attention layers unless Gemma).
    pub rope_theta: f32,
    /// Linear RoPE scaling of global attention layers (1 = none).
    pub rope_linear_factor: f32,
    /// RoPE of sliding-window layers (Gemma 3: `rope_local_base_freq`), when they differ.
    pub rope_local: Option<RopeConfig>,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// Gemma: RMSNorm multiplies by `1 + w` (the stored weight is the offset from 1).
    pub norm_unit_offset: bool,
    /// Gate activation of the FFN.
    pub activation: Activation,
    /// Multiplier of the embedding rows (Gemma: sqrt(D) rounded to f32), None for 1.
    pub embed_scale: Option<f32>,
    /// Attention scores are `q.k * attn_scale` (`1/sqrt(hd)`, or Gemma's
    /// `query_pre_attn_scalar^-0.5`), rounded to f32 as transformers does.
    pub attn_scale: f32,
    /// Gemma: logits become `cap * tanh(logits / cap)`.
    pub final_softcap: Option<f32>,
    /// Llama `attention_bias`: q/k/v/o projections carry biases.
    pub attention_bias: bool,
    /// Llama `mlp_bias`: gate/up/down projections carry biases.
    pub mlp_bias: bool,
    /// Short-conv kernel length L (taps), `conv_L_cache`.
    pub conv_kernel: usize,
    /// Whether in_proj, conv and out_proj of conv blocks carry biases.
    pub conv_bias: bool,
    /// Whether the LM head is the embedding matrix.
    pub tie_embeddings: bool,
    /// Longest supported context.
    pub max_position_embeddings: usize,
    /// Special ids from the config, when present.
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    /// Present for LFM2-MoE.
    pub moe: Option<MoeConfig>,
}

/// The name the LFM2-only engine gave its config; every family now shares one type.
pub type Lfm2Config = ModelConfig;

/// transformers' `Lfm2Config.default_theta`.
const DEFAULT_ROPE_THETA: f64 = 1_000_000.0;

impl ModelConfig {
    /// Parses config.json text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::Config(format!("config.json is not valid JSON: {e}")))?;
        Self::from_json(&value)
    }

    /// Parses an already decoded config.json object.
    pub fn from_json(value: &Value) -> Result<Self> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::Config("config.json must be a JSON object".into()))?;
        let c = Fields(obj);

        let model_type = match obj.get("model_type") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(Error::Config("field `model_type` must be a string".into())),
        };
        let arch = Architecture::from_model_type(model_type)?;
        let model_type = model_type.unwrap_or("lfm2").to_string();
        let is_moe = model_type == "lfm2_moe";

        let vocab_size = c.req_usize("vocab_size")?;
        let hidden_size = c.req_usize("hidden_size")?;
        let num_layers = c.req_usize("num_hidden_layers")?;
        let num_heads = c.req_usize("num_attention_heads")?;
        let num_kv_heads = match arch {
            // LlamaConfig: num_key_value_heads defaults to num_attention_heads (MHA).
            Architecture::Llama => c.opt_usize("num_key_value_heads")?.unwrap_or(num_heads),
            _ => c.req_usize("num_key_value_heads")?,
        };
        if num_heads % num_kv_heads != 0 {
            return Err(Error::Config(format!(
                "num_attention_heads ({num_heads}) must be a multiple of num_key_value_heads ({num_kv_heads})"
            )));
        }
        let head_dim = match c.opt_usize("head_dim")? {
            Some(h) => h,
            None if arch == Architecture::Gemma3 => 256, // Gemma3TextConfig default
            None => {
                if hidden_size % num_heads != 0 {
                    return Err(Error::Config(format!(
                        "hidden_size ({hidden_size}) is not a multiple of num_attention_heads ({num_heads}) and no head_dim is given"
                    )));
                }
                hidden_size / num_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(Error::Config(format!("head_dim ({head_dim}) must be even for RoPE")));
        }
        let tie_default = match arch {
            Architecture::Llama => false, // LlamaConfig.tie_word_embeddings
            _ => true,
        };
        let tie_embeddings = match c.opt_bool("tie_word_embeddings")? {
            Some(t) => t,
            None => c.opt_bool("tie_embedding")?.unwrap_or(tie_default),
        };
        let bos_token_id = c.opt_token("bos_token_id")?;
        let pad_token_id = c.opt_token("pad_token_id")?;
        let eos_token_ids = match obj.get("eos_token_id") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| as_token(v, "eos_token_id"))
                .collect::<Result<Vec<_>>>()?,
            Some(v) => vec![as_token(v, "eos_token_id")?],
        };

        let mut config = ModelConfig {
            arch,
            model_type,
            vocab_size,
            hidden_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            ffn_dim: 0,
            layer_kinds: vec![LayerKind::Attention; num_layers],
            layer_windows: vec![None; num_layers],
            rope_theta: 0.0,
            rope_linear_factor: 1.0,
            rope_local: None,
            norm_eps: 0.0,
            norm_unit_offset: false,
            activation: Activation::Silu,
            embed_scale: None,
            // transformers: `head_dim**-0.5` (a Python float) times an f32 tensor.
            attn_scale: (head_dim as f64).powf(-0.5) as f32,
            final_softcap: None,
            attention_bias: false,
            mlp_bias: false,
            conv_kernel: 3,
            conv_bias: false,
            tie_embeddings,
            max_position_embeddings: 0,
            bos_token_id,
            eos_token_ids,
            pad_token_id,
            moe: None,
        };
        match arch {
            Architecture::Lfm2 => config.lfm2_fields(&c, is_moe)?,
            Architecture::Llama => config.llama_fields(&c)?,
            Architecture::Gemma3 => config.gemma3_fields(&c)?,
        }
        if !(config.norm_eps > 0.0 && config.norm_eps.is_finite()) {
            return Err(Error::Config(format!("the RMSNorm epsilon ({}) must be positive", config.norm_eps)));
        }
        Ok(config)
    }

    /// LFM2 / LFM2-MoE keys (see the module documentation).
    fn lfm2_fields(&mut self, c: &Fields, is_moe: bool) -> Result<()> {
        self.ffn_dim = resolve_ffn_dim(c, is_moe)?;
        self.layer_kinds = resolve_layer_kinds(c, self.num_layers)?;
        self.rope_theta = resolve_rope(c.0, None, DEFAULT_ROPE_THETA)?.theta;
        // Kept as the LFM2 engine always computed it (the digests pin these bits).
        self.attn_scale = (1.0 / (self.head_dim as f64).sqrt()) as f32;
        self.norm_eps = c.opt_f64("norm_eps")?.unwrap_or(1e-5) as f32;
        self.conv_kernel = c.opt_usize("conv_L_cache")?.unwrap_or(3);
        self.conv_bias = c.opt_bool("conv_bias")?.unwrap_or(false);
        self.max_position_embeddings = c.opt_usize("max_position_embeddings")?.unwrap_or(128_000);
        if is_moe {
            let num_experts = c.req_usize("num_experts")?;
            let num_experts_per_tok = c.req_usize("num_experts_per_tok")?;
            if num_experts_per_tok > num_experts {
                return Err(Error::Config(format!(
                    "num_experts_per_tok ({num_experts_per_tok}) exceeds num_experts ({num_experts})"
                )));
            }
            let num_dense_layers = c.opt_usize_zero("num_dense_layers")?.unwrap_or(2);
            if num_dense_layers > self.num_layers {
                return Err(Error::Config(format!(
                    "num_dense_layers ({num_dense_layers}) exceeds num_hidden_layers ({})",
                    self.num_layers
                )));
            }
            self.moe = Some(MoeConfig {
                num_experts,
                num_experts_per_tok,
                moe_intermediate_size: c.req_usize("moe_intermediate_size")?,
                num_dense_layers,
                use_expert_bias: c.opt_bool("use_expert_bias")?.unwrap_or(true),
                routed_scaling_factor: c.opt_f64("routed_scaling_factor")?.unwrap_or(1.0) as f32,
                norm_topk_prob: c.opt_bool("norm_topk_prob")?.unwrap_or(true),
            });
        }
        Ok(())
    }

    /// `LlamaConfig` keys: `intermediate_size` (as is), `rms_norm_eps` (1e-6), `rope_theta` /
    /// `rope_parameters` (default 10000; `default` or `linear`), `hidden_act` (`silu` only),
    /// `attention_bias`, `mlp_bias`, `max_position_embeddings` (2048).
    fn llama_fields(&mut self, c: &Fields) -> Result<()> {
        self.ffn_dim = c.req_usize("intermediate_size")?;
        let rope = resolve_rope(c.0, None, 10_000.0)?;
        (self.rope_theta, self.rope_linear_factor) = (rope.theta, rope.linear_factor);
        self.norm_eps = c.opt_f64("rms_norm_eps")?.unwrap_or(1e-6) as f32;
        match c.opt_str("hidden_act")? {
            None | Some("silu") => {}
            Some(other) => return Err(Error::Config(format!("hidden_act `{other}` is not supported for llama (only `silu`)"))),
        }
        self.attention_bias = c.opt_bool("attention_bias")?.unwrap_or(false);
        self.mlp_bias = c.opt_bool("mlp_bias")?.unwrap_or(false);
        self.max_position_embeddings = c.opt_usize("max_position_embeddings")?.unwrap_or(2048);
        Ok(())
    }

    /// `Gemma3TextConfig` keys: `intermediate_size`, `rms_norm_eps` (1e-6), `layer_types`
    /// (else every 6th layer global: `sliding_window_pattern`), `sliding_window` (4096),
    /// RoPE per layer type (`rope_parameters.{full,sliding}_attention`, or legacy `rope_theta`
    /// 1e6 + `rope_scaling` for global layers and `rope_local_base_freq` 1e4 for local ones),
    /// `query_pre_attn_scalar` (256), `final_logit_softcapping` (`attn_logit_softcapping` is
/// ignored, as transformers does),
    /// `hidden_activation` (`gelu_pytorch_tanh`), `attention_bias`.
    fn gemma3_fields(&mut self, c: &Fields) -> Result<()> {
        let n = self.num_layers;
        self.ffn_dim = c.req_usize("intermediate_size")?;
        self.norm_eps = c.opt_f64("rms_norm_eps")?.unwrap_or(1e-6) as f32;
        self.norm_unit_offset = true;
        self.activation = Activation::GeluTanh;
        for key in ["hidden_activation", "hidden_act"] {
            match c.opt_str(key)? {
                None | Some("gelu_pytorch_tanh") | Some("gelu_tanh") => {}
                Some(other) => {
                    return Err(Error::Config(format!("{key} `{other}` is not supported for gemma3 (only `gelu_pytorch_tanh`)")))
                }
            }
        }
        if c.opt_bool("use_bidirectional_attention")?.unwrap_or(false) {
            return Err(Error::Config("use_bidirectional_attention is not supported (causal language models only)".into()));
        }
        // `hidden_size**0.5` becomes an f32 tensor, then the embedding's dtype (f32 here).
        self.embed_scale = Some((self.hidden_size as f64).sqrt() as f32);
        let scalar = c.opt_f64("query_pre_attn_scalar")?.unwrap_or(256.0);
        if !(scalar > 0.0 && scalar.is_finite()) {
            return Err(Error::Config(format!("query_pre_attn_scalar ({scalar}) must be positive")));
        }
        self.attn_scale = scalar.powf(-0.5) as f32;
        // `attn_logit_softcapping` is read by Gemma3TextConfig but never applied by
        // transformers' Gemma3Attention (Gemma 2 applied it; llama.cpp's converter asserts it is
        // null for Gemma 3): ignored here too, so logits match the reference.
        self.final_softcap = c.opt_positive_f32("final_logit_softcapping")?;
        self.attention_bias = c.opt_bool("attention_bias")?.unwrap_or(false);
        self.max_position_embeddings = c.opt_usize("max_position_embeddings")?.unwrap_or(131_072);

        let window = c.opt_usize("sliding_window")?.unwrap_or(4096);
        let sliding: Vec<bool> = match c.0.get("layer_types") {
            Some(Value::Array(items)) => {
                if items.len() != n {
                    return Err(Error::Config(format!(
                        "layer_types has {} entries but num_hidden_layers is {n}",
                        items.len()
                    )));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v.as_str() {
                        Some("sliding_attention") => Ok(true),
                        Some("full_attention") => Ok(false),
                        _ => Err(Error::Config(format!(
                            "layer_types[{i}] is {v}: expected `sliding_attention` or `full_attention`"
                        ))),
                    })
                    .collect::<Result<_>>()?
            }
            None | Some(Value::Null) => {
                let pattern = c.opt_usize("sliding_window_pattern")?.unwrap_or(6);
                (0..n).map(|i| (i + 1) % pattern != 0).collect()
            }
            Some(_) => return Err(Error::Config("field `layer_types` must be a list of strings".into())),
        };
        self.layer_windows = sliding.iter().map(|&s| s.then_some(window)).collect();

        let params = c.0.get("rope_parameters").filter(|v| !v.is_null());
        let per_type = params.and_then(Value::as_object).filter(|p| p.contains_key("full_attention") || p.contains_key("sliding_attention"));
        let (global, local) = match per_type {
            Some(p) => {
                let of = |key: &str, default: f64| -> Result<RopeConfig> {
                    match p.get(key).filter(|v| !v.is_null()) {
                        None => Ok(RopeConfig { theta: default as f32, linear_factor: 1.0 }),
                        Some(v) => {
                            let o = v.as_object().ok_or_else(|| {
                                Error::Config(format!("field `rope_parameters.{key}` must be an object"))
                            })?;
                            resolve_rope(o, Some(key), default)
                        }
                    }
                };
                (of("full_attention", 1e6)?, of("sliding_attention", 1e4)?)
            }
            None => {
                let global = resolve_rope(c.0, None, 1e6)?;
                let local_theta = c.opt_f64("rope_local_base_freq")?.unwrap_or(1e4);
                check_theta(local_theta, "rope_local_base_freq")?;
                (global, RopeConfig { theta: local_theta as f32, linear_factor: 1.0 })
            }
        };
        (self.rope_theta, self.rope_linear_factor) = (global.theta, global.linear_factor);
        self.rope_local = Some(local);
        Ok(())
    }

    /// True for layers whose FFN is a mixture of experts.
    pub fn is_moe_layer(&self, layer: usize) -> bool {
        self.moe.as_ref().is_some_and(|m| layer >= m.num_dense_layers)
    }

    /// RoPE of layer `layer`: the local settings for sliding-window layers that have them.
    pub fn rope_for_layer(&self, layer: usize) -> RopeConfig {
        match (self.layer_windows.get(layer).copied().flatten(), self.rope_local) {
            (Some(_), Some(local)) => local,
            _ => RopeConfig { theta: self.rope_theta, linear_factor: self.rope_linear_factor },
        }
    }
}

/// FFN width rule (transformers `Lfm2MLP.__init__`).
fn resolve_ffn_dim(c: &Fields, is_moe: bool) -> Result<usize> {
    let base = match c.opt_usize("block_ff_dim")? {
        Some(f) => f,
        None => c.req_usize("intermediate_size")?,
    };
    if is_moe {
        return Ok(base);
    }
    if !c.opt_bool("block_auto_adjust_ff_dim")?.unwrap_or(true) {
        return Ok(base);
    }
    let mut f = (2 * base) / 3; // int(2*F/3) for non-negative F
    let multiplier = match c.0.get("block_ffn_dim_multiplier") {
        None => Some(1.0),
        Some(Value::Null) => None,
        Some(v) => Some(v.as_f64().ok_or_else(|| {
            Error::Config("field `block_ffn_dim_multiplier` must be a number or null".into())
        })?),
    };
    if let Some(mult) = multiplier {
        if !(mult > 0.0 && mult.is_finite()) {
            return Err(Error::Config(format!(
                "block_ffn_dim_multiplier ({mult}) must be a positive number"
            )));
        }
        let multiple_of = c.opt_usize("block_multiple_of")?.unwrap_or(256);
        f = (mult * f as f64) as usize;
        f = multiple_of * f.div_ceil(multiple_of);
    }
    if f == 0 {
        return Err(Error::Config("the FFN width resolves to 0".into()));
    }
    Ok(f)
}

/// `layer_types`, else `full_attn_idxs`, else all attention.
fn resolve_layer_kinds(c: &Fields, num_layers: usize) -> Result<Vec<LayerKind>> {
    match c.0.get("layer_types") {
        Some(Value::Array(items)) => {
            if items.len() != num_layers {
                return Err(Error::Config(format!(
                    "layer_types has {} entries but num_hidden_layers is {num_layers}",
                    items.len()
                )));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, v)| match v.as_str() {
                    Some("conv") => Ok(LayerKind::Conv),
                    Some("full_attention") | Some("attention") => Ok(LayerKind::Attention),
                    Some(other) => Err(Error::Config(format!(
                        "layer_types[{i}] is `{other}`: unknown layer type (expected `conv` or `full_attention`)"
                    ))),
                    None => Err(Error::Config(format!("layer_types[{i}] must be a string"))),
                })
                .collect()
        }
        Some(Value::Null) | None => match c.0.get("full_attn_idxs") {
            Some(Value::Array(items)) => {
                let mut kinds = vec![LayerKind::Conv; num_layers];
                for (j, v) in items.iter().enumerate() {
                    let idx = v.as_u64().ok_or_else(|| {
                        Error::Config(format!("full_attn_idxs[{j}] must be a non-negative integer"))
                    })? as usize;
                    if idx >= num_layers {
                        return Err(Error::Config(format!(
                            "full_attn_idxs[{j}] = {idx} is out of range for {num_layers} layers"
                        )));
                    }
                    kinds[idx] = LayerKind::Attention;
                }
                Ok(kinds)
            }
            Some(Value::Null) | None => Ok(vec![LayerKind::Attention; num_layers]),
            Some(_) => Err(Error::Config("field `full_attn_idxs` must be a list of integers".into())),
        },
        Some(_) => Err(Error::Config("field `layer_types` must be a list of strings".into())),
    }
}

/// RoPE settings from `obj`. With `nested` (Gemma's per-layer-type `rope_parameters.<type>`)
/// `obj` is that parameter object; otherwise it is the config: `rope_parameters` (transformers
/// v5), else the legacy top-level `rope_theta` and `rope_scaling`. `rope_type` must be
/// `default` or `linear` (with `factor`).
fn resolve_rope(obj: &Map<String, Value>, nested: Option<&str>, default_theta: f64) -> Result<RopeConfig> {
    let prefix = match nested {
        Some(key) => format!("rope_parameters.{key}."),
        None => "rope_parameters.".to_string(),
    };
    let params = match nested {
        Some(_) => Some(obj),
        None => match obj.get("rope_parameters").filter(|v| !v.is_null()) {
            Some(p) => Some(p.as_object().ok_or_else(|| Error::Config("field `rope_parameters` must be an object".into()))?),
            None => None,
        },
    };
    let mut theta = None;
    let mut scaling: Option<(&Map<String, Value>, String)> = None;
    if let Some(params) = params {
        if let Some(v) = params.get("rope_theta") {
            theta = Some(v.as_f64().ok_or_else(|| Error::Config(format!("field `{prefix}rope_theta` must be a number")))?);
        }
        scaling = Some((params, prefix.clone()));
    }
    if nested.is_none() {
        if theta.is_none() {
            if let Some(v) = obj.get("rope_theta") {
                theta = Some(v.as_f64().ok_or_else(|| Error::Config("field `rope_theta` must be a number".into()))?);
            }
        }
        if let Some(s) = obj.get("rope_scaling").filter(|v| !v.is_null()) {
            let s = s.as_object().ok_or_else(|| Error::Config("field `rope_scaling` must be an object".into()))?;
            scaling = Some((s, "rope_scaling.".to_string()));
        }
    }
    let mut linear_factor = 1.0f64;
    if let Some((s, prefix)) = scaling {
        let kind = s.get("rope_type").or_else(|| s.get("type"));
        match kind.map(|k| k.as_str()) {
            None | Some(Some("default")) => {}
            Some(Some("linear")) => {
                linear_factor = s.get("factor").and_then(Value::as_f64).ok_or_else(|| {
                    Error::Config(format!("field `{prefix}factor` must be a number for linear RoPE scaling"))
                })?;
                if !(linear_factor > 0.0 && linear_factor.is_finite()) {
                    return Err(Error::Config(format!("field `{prefix}factor` ({linear_factor}) must be positive")));
                }
            }
            Some(_) => {
                return Err(Error::Config(format!(
                    "{prefix}rope_type {} is not supported (only `default` and `linear`)",
                    kind.unwrap_or(&Value::Null)
                )))
            }
        }
    }
    let theta = theta.unwrap_or(default_theta);
    check_theta(theta, "rope_theta")?;
    Ok(RopeConfig { theta: theta as f32, linear_factor: linear_factor as f32 })
}

fn check_theta(theta: f64, key: &str) -> Result<()> {
    if !(theta > 1.0 && theta.is_finite()) {
        return Err(Error::Config(format!("{key} ({theta}) must be a finite number > 1")));
    }
    Ok(())
}

/// Typed access to config fields with errors that name the field.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn req_usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| Error::Config(format!("missing required field `{key}`")))
    }

    /// A positive integer, or None when absent/null.
    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.opt_usize_zero(key)? {
            Some(0) => Err(Error::Config(format!("field `{key}` must be a positive integer, got 0"))),
            other => Ok(other),
        }
    }

    /// A non-negative integer, or None when absent/null.
    fn opt_usize_zero(&self, key: &str) -> Result<Option<usize>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let n = v.as_u64().ok_or_else(|| {
                    Error::Config(format!("field `{key}` must be a non-negative integer, got {v}"))
                })?;
                // Guard against absurd sizes that would overflow later arithmetic.
                if n > (1 << 32) {
                    return Err(Error::Config(format!("field `{key}` = {n} is too large")));
                }
                Ok(Some(n as usize))
            }
        }
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| Error::Config(format!("field `{key}` must be a number, got {v}"))),
        }
    }

    fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(Error::Config(format!("field `{key}` must be a string, got {v}"))),
        }
    }

    /// A positive finite number, or None when absent/null.
    fn opt_positive_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.opt_f64(key)? {
            None => Ok(None),
            Some(v) if v > 0.0 && v.is_finite() => Ok(Some(v as f32)),
            Some(v) => Err(Error::Config(format!("field `{key}` ({v}) must be a positive number"))),
        }
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(Error::Config(format!("field `{key}` must be true or false, got {v}"))),
        }
    }

    fn opt_token(&self, key: &str) -> Result<Option<u32>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => as_token(v, key).map(Some),
        }
    }
}

fn as_token(v: &Value, key: &str) -> Result<u32> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| Error::Config(format!("field `{key}` must hold token ids, got {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "model_type": "lfm2", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 256
        })
    }

    fn with(mut v: Value, key: &str, val: Value) -> Value {
        v.as_object_mut().unwrap().insert(key.into(), val);
        v
    }

    #[test]
    fn ffn_auto_adjust_matches_transformers() {
        // LFM2-350M: block_ff_dim 6656, multiplier 1.0, multiple_of 256 -> 4608.
        let v = with(base(), "block_ff_dim", json!(6656));
        assert_eq!(Lfm2Config::from_json(&v).unwrap().ffn_dim, 4608);
        // block_ff_dim wins over intermediate_size.
        assert_eq!(Lfm2Config::from_json(&with(base(), "block_ff_dim", json!(300))).unwrap().ffn_dim, 256);
        // Multiplier 1.5, multiple_of 32: int(2*256/3)=170, int(1.5*170)=255 -> 256.
        let v = with(with(base(), "block_ffn_dim_multiplier", json!(1.5)), "block_multiple_of", json!(32));
        assert_eq!(Lfm2Config::from_json(&v).unwrap().ffn_dim, 256);
        // Null multiplier: no rounding to the multiple.
        let v = with(base(), "block_ffn_dim_multiplier", Value::Null);
        assert_eq!(Lfm2Config::from_json(&v).unwrap().ffn_dim, 170);
        // Auto-adjust off: as is.
        let v = with(base(), "block_auto_adjust_ff_dim", json!(false));
        assert_eq!(Lfm2Config::from_json(&v).unwrap().ffn_dim, 256);
        // MoE: dense width as is.
        let v = with(
            with(with(with(base(), "model_type", json!("lfm2_moe")), "num_experts", json!(4)), "num_experts_per_tok", json!(2)),
            "moe_intermediate_size",
            json!(32),
        );
        let c = Lfm2Config::from_json(&v).unwrap();
        assert_eq!(c.ffn_dim, 256);
        assert_eq!(c.moe.as_ref().unwrap().num_dense_layers, 2);
        assert!(!c.is_moe_layer(1) && c.is_moe_layer(2));
    }

    #[test]
    fn layer_kinds_rules() {
        let c = Lfm2Config::from_json(&base()).unwrap();
        assert_eq!(c.layer_kinds, vec![LayerKind::Attention; 4]);
        let c = Lfm2Config::from_json(&with(base(), "full_attn_idxs", json!([1, 3]))).unwrap();
        assert_eq!(c.layer_kinds, vec![LayerKind::Conv, LayerKind::Attention, LayerKind::Conv, LayerKind::Attention]);
        let v = with(with(base(), "full_attn_idxs", json!([1])), "layer_types", json!(["conv", "conv", "conv", "full_attention"]));
        assert_eq!(Lfm2Config::from_json(&v).unwrap().layer_kinds[3], LayerKind::Attention);
        let err = Lfm2Config::from_json(&with(base(), "layer_types", json!(["conv", "mamba", "conv", "conv"]))).unwrap_err();
        assert!(err.to_string().contains("layer_types[1] is `mamba`"), "{err}");
        assert!(Lfm2Config::from_json(&with(base(), "full_attn_idxs", json!([9]))).is_err());
    }

    #[test]
    fn rope_theta_and_head_dim_and_ties() {
        assert_eq!(Lfm2Config::from_json(&base()).unwrap().rope_theta, 1e6);
        assert_eq!(Lfm2Config::from_json(&with(base(), "rope_theta", json!(10000.0))).unwrap().rope_theta, 1e4);
        let v = with(base(), "rope_parameters", json!({"rope_type": "default", "rope_theta": 5e5}));
        assert_eq!(Lfm2Config::from_json(&v).unwrap().rope_theta, 5e5);
        assert_eq!(Lfm2Config::from_json(&base()).unwrap().head_dim, 16);
        assert_eq!(Lfm2Config::from_json(&with(base(), "head_dim", json!(24))).unwrap().head_dim, 24);
        assert!(!Lfm2Config::from_json(&with(base(), "tie_embedding", json!(false))).unwrap().tie_embeddings);
        assert!(Lfm2Config::from_json(&base()).unwrap().tie_embeddings);
    }

    #[test]
    fn missing_and_malformed_fields_are_named() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("hidden_size");
        assert!(Lfm2Config::from_json(&v).unwrap_err().to_string().contains("`hidden_size`"));
        let err = Lfm2Config::from_json(&with(base(), "num_attention_heads", json!("four"))).unwrap_err();
        assert!(err.to_string().contains("`num_attention_heads`"), "{err}");
        assert!(Lfm2Config::from_json(&with(base(), "num_key_value_heads", json!(3))).is_err());
        assert!(Lfm2Config::from_json(&with(base(), "model_type", json!("mamba"))).is_err());
        assert!(Lfm2Config::from_json_str("{not json").is_err());
        assert!(Lfm2Config::from_json_str("[1,2]").is_err());
    }

    #[test]
    fn llama_and_gemma_keys_and_defaults() {
        let llama = json!({"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 96});
        let c = ModelConfig::from_json(&llama).unwrap();
        assert_eq!((c.arch, c.num_kv_heads, c.head_dim, c.rope_theta, c.norm_eps), (Architecture::Llama, 4, 16, 1e4, 1e-6));
        assert!(!c.tie_embeddings && c.layer_windows.iter().all(Option::is_none) && c.embed_scale.is_none());
        let v = with(llama.clone(), "rope_scaling", json!({"type": "linear", "factor": 4.0}));
        assert_eq!(ModelConfig::from_json(&v).unwrap().rope_linear_factor, 4.0);
        let v = with(llama.clone(), "rope_parameters", json!({"rope_type": "llama3", "rope_theta": 5e5}));
        assert!(ModelConfig::from_json(&v).unwrap_err().to_string().contains("llama3"));
        assert!(ModelConfig::from_json(&with(llama, "hidden_act", json!("gelu"))).is_err());

        // Legacy Gemma 3 keys: rope_theta + rope_local_base_freq, pattern of 6, defaults.
        let gemma = json!({"model_type": "gemma3_text", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 7,
            "num_attention_heads": 4, "num_key_value_heads": 1, "intermediate_size": 96, "head_dim": 16,
            "rope_theta": 5e5, "rope_local_base_freq": 2e4, "sliding_window": 8});
        let c = ModelConfig::from_json(&gemma).unwrap();
        assert_eq!(c.layer_windows, vec![Some(8), Some(8), Some(8), Some(8), Some(8), None, Some(8)]);
        assert_eq!((c.rope_theta, c.rope_for_layer(0).theta, c.rope_for_layer(5).theta), (5e5, 2e4, 5e5));
        assert_eq!((c.attn_scale, c.embed_scale, c.norm_unit_offset), ((256f64).powf(-0.5) as f32, Some(8.0), true));
        assert!(c.tie_embeddings && c.final_softcap.is_none());
        let v = with(gemma.clone(), "layer_types", json!(vec!["full_attention"; 7]));
        assert!(ModelConfig::from_json(&v).unwrap().layer_windows.iter().all(Option::is_none));
        assert!(ModelConfig::from_json(&with(gemma.clone(), "layer_types", json!(vec!["x"; 7]))).is_err());
        assert!(ModelConfig::from_json(&with(gemma.clone(), "final_logit_softcapping", json!(-1.0))).is_err());
        assert!(ModelConfig::from_json(&with(gemma, "model_type", json!("gemma3"))).unwrap_err().to_string().contains("gemma3_text"));
    }
}
