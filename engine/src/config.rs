//! LFM2 / LFM2-MoE configuration: config.json in, a fully resolved [`Lfm2Config`] out.
//!
//! Every rule here follows transformers' `Lfm2Config` / `Lfm2MLP` (the reference), as
//! summarised in `shared/lfm2-spec.md`:
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

/// The token mixer of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// Gated short convolution (`conv` in `layer_types`).
    Conv,
    /// Grouped-query attention with QK-norm and RoPE (`full_attention`).
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

/// A resolved LFM2 configuration: every derived quantity already computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Lfm2Config {
    /// `lfm2` or `lfm2_moe`.
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
    /// Width F of the dense SwiGLU FFN after the auto-adjust rule.
    pub ffn_dim: usize,
    /// Mixer of each layer.
    pub layer_kinds: Vec<LayerKind>,
    /// RoPE base.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
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

/// transformers' `Lfm2Config.default_theta`.
const DEFAULT_ROPE_THETA: f64 = 1_000_000.0;

impl Lfm2Config {
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
            None => "lfm2".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(Error::Config("field `model_type` must be a string".into())),
        };
        let is_moe = match model_type.as_str() {
            "lfm2" => false,
            "lfm2_moe" => true,
            other => {
                return Err(Error::Config(format!(
                    "model_type `{other}` is not supported (expected `lfm2` or `lfm2_moe`)"
                )))
            }
        };

        let vocab_size = c.req_usize("vocab_size")?;
        let hidden_size = c.req_usize("hidden_size")?;
        let num_layers = c.req_usize("num_hidden_layers")?;
        let num_heads = c.req_usize("num_attention_heads")?;
        let num_kv_heads = c.req_usize("num_key_value_heads")?;
        if num_heads % num_kv_heads != 0 {
            return Err(Error::Config(format!(
                "num_attention_heads ({num_heads}) must be a multiple of num_key_value_heads ({num_kv_heads})"
            )));
        }
        let head_dim = match c.opt_usize("head_dim")? {
            Some(h) => h,
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

        let ffn_dim = resolve_ffn_dim(&c, is_moe)?;
        let layer_kinds = resolve_layer_kinds(&c, num_layers)?;

        let rope_theta = resolve_rope_theta(obj)?;
        let norm_eps = c.opt_f64("norm_eps")?.unwrap_or(1e-5);
        if norm_eps.is_nan() || norm_eps <= 0.0 {
            return Err(Error::Config(format!("norm_eps ({norm_eps}) must be positive")));
        }
        let conv_kernel = c.opt_usize("conv_L_cache")?.unwrap_or(3);
        let conv_bias = c.opt_bool("conv_bias")?.unwrap_or(false);
        let tie_embeddings = match c.opt_bool("tie_word_embeddings")? {
            Some(t) => t,
            None => c.opt_bool("tie_embedding")?.unwrap_or(true),
        };
        let max_position_embeddings = c.opt_usize("max_position_embeddings")?.unwrap_or(128_000);

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

        let moe = if is_moe {
            let num_experts = c.req_usize("num_experts")?;
            let num_experts_per_tok = c.req_usize("num_experts_per_tok")?;
            if num_experts_per_tok > num_experts {
                return Err(Error::Config(format!(
                    "num_experts_per_tok ({num_experts_per_tok}) exceeds num_experts ({num_experts})"
                )));
            }
            let num_dense_layers = c.opt_usize_zero("num_dense_layers")?.unwrap_or(2);
            if num_dense_layers > num_layers {
                return Err(Error::Config(format!(
                    "num_dense_layers ({num_dense_layers}) exceeds num_hidden_layers ({num_layers})"
                )));
            }
            Some(MoeConfig {
                num_experts,
                num_experts_per_tok,
                moe_intermediate_size: c.req_usize("moe_intermediate_size")?,
                num_dense_layers,
                use_expert_bias: c.opt_bool("use_expert_bias")?.unwrap_or(true),
                routed_scaling_factor: c.opt_f64("routed_scaling_factor")?.unwrap_or(1.0) as f32,
                norm_topk_prob: c.opt_bool("norm_topk_prob")?.unwrap_or(true),
            })
        } else {
            None
        };

        Ok(Lfm2Config {
            model_type,
            vocab_size,
            hidden_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            ffn_dim,
            layer_kinds,
            rope_theta,
            norm_eps: norm_eps as f32,
            conv_kernel,
            conv_bias,
            tie_embeddings,
            max_position_embeddings,
            bos_token_id,
            eos_token_ids,
            pad_token_id,
            moe,
        })
    }

    /// True for layers whose FFN is a mixture of experts.
    pub fn is_moe_layer(&self, layer: usize) -> bool {
        self.moe.as_ref().is_some_and(|m| layer >= m.num_dense_layers)
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

/// `rope_theta` at top level or inside `rope_parameters` (transformers v5).
fn resolve_rope_theta(obj: &Map<String, Value>) -> Result<f32> {
    let mut theta = None;
    if let Some(params) = obj.get("rope_parameters").filter(|v| !v.is_null()) {
        let params = params
            .as_object()
            .ok_or_else(|| Error::Config("field `rope_parameters` must be an object".into()))?;
        if let Some(kind) = params.get("rope_type") {
            if kind.as_str() != Some("default") {
                return Err(Error::Config(format!(
                    "rope_parameters.rope_type {kind} is not supported (only `default`)"
                )));
            }
        }
        if let Some(v) = params.get("rope_theta") {
            theta = Some(v.as_f64().ok_or_else(|| {
                Error::Config("field `rope_parameters.rope_theta` must be a number".into())
            })?);
        }
    }
    if theta.is_none() {
        if let Some(v) = obj.get("rope_theta") {
            theta = Some(
                v.as_f64()
                    .ok_or_else(|| Error::Config("field `rope_theta` must be a number".into()))?,
            );
        }
    }
    let theta = theta.unwrap_or(DEFAULT_ROPE_THETA);
    if !(theta > 1.0 && theta.is_finite()) {
        return Err(Error::Config(format!("rope_theta ({theta}) must be a finite number > 1")));
    }
    Ok(theta as f32)
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
        assert!(Lfm2Config::from_json(&with(base(), "model_type", json!("llama"))).is_err());
        assert!(Lfm2Config::from_json_str("{not json").is_err());
        assert!(Lfm2Config::from_json_str("[1,2]").is_err());
    }
}
