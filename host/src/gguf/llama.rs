//! Llama and Gemma 3 GGUF files as llama.cpp writes them, seen with Hugging Face eyes.
//!
//! What llama.cpp's `convert_hf_to_gguf.py` (`LlamaModel`, `Gemma3Model`) does to each tensor,
//! and how it is undone here so that the engine's one forward pass (transformers' layout)
//! serves GGUF and Hugging Face checkpoints alike:
//! - names: `model.embed_tokens` → `token_embd`, `model.norm` → `output_norm`, `lm_head` →
//!   `output` (absent when tied), per layer N `input_layernorm` → `blk.N.attn_norm`,
//!   `self_attn.{q,k,v}_proj` → `blk.N.attn_{q,k,v}`, `self_attn.o_proj` → `blk.N.attn_output`,
//!   `mlp.{gate,up,down}_proj` → `blk.N.ffn_{gate,up,down}` (weights and biases). Llama's
//!   `post_attention_layernorm` (the pre-MLP norm) → `blk.N.ffn_norm`. Gemma 3:
//!   `self_attn.{q,k}_norm` → `blk.N.attn_{q,k}_norm`, `post_attention_layernorm` →
//!   `blk.N.post_attention_norm`, `pre_feedforward_layernorm` → `blk.N.ffn_norm`,
//!   `post_feedforward_layernorm` → `blk.N.post_ffw_norm`.
//! - Llama `attn_q` / `attn_k` (weights and biases) are permuted for ggml's interleaved RoPE
//!   (`LlamaModel.permute`): the rows of each head, seen as `[2, hd/2]`, are stored as
//!   `[hd/2, 2]` (pairs (j, j + hd/2) become adjacent). Undone here: HF row `s*hd/2 + j` of a
//!   head is GGUF row `2j + s`. The head count is `attention.head_count` for q and
//!   `attention.head_count_kv` for k.
//! - Gemma 3 norms (`*norm.weight`) are stored as `1 + w` (llama.cpp's RMSNorm multiplies by
//!   the weight, Gemma's by `1 + w`): served here as `stored - 1` (in f32; the engine adds the
//!   1 back when it loads a Gemma model).
//! - GGUF dims are the PyTorch shape reversed; matrices are F32/F16/BF16 or any block type
//!   [`super::types`] dequantizes (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K).
//!
//! Metadata ([`GgufFile::model_config`], prefix `llama.` or `gemma3.`): `embedding_length`,
//! `block_count`, `feed_forward_length`, `attention.head_count`, `attention.head_count_kv`,
//! `attention.key_length` / `value_length` (head_dim; else hidden / heads),
//! `rope.dimension_count` (must be the head width: partial RoPE is not supported),
//! `rope.freq_base`, `rope.scaling.type` (`none` / `linear`) and `rope.scaling.factor`,
//! `attention.layer_norm_rms_epsilon`, `context_length`. Gemma 3 also: `attention.sliding_window`,
//! `final_logit_softcapping`. What llama.cpp's Gemma 3 assumes rather
//! than stores is assumed the same way: every 6th layer global, the others sliding; local RoPE
//! base 10000; attention scale `1/sqrt(head_dim)` (`1/sqrt(hidden/heads)` for the 62-layer 27B).

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use saguaro_engine::weights::{DType, RawTensor};
use saguaro_engine::{Error, Result};

use super::{format_err, GgufFile, MetaValue};

/// The GGUF name of Hugging Face tensor `hf` in a Llama (`gemma == false`) or Gemma 3 file.
pub fn llama_family_gguf_name(hf: &str, gemma: bool) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || layer.len() > 9 || !layer.bytes().all(|b| b.is_ascii_digit()) || (layer.len() > 1 && layer.starts_with('0')) {
        return None;
    }
    let (module, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let gguf = match (module, gemma) {
        ("input_layernorm", _) => "attn_norm",
        ("self_attn.q_proj", _) => "attn_q",
        ("self_attn.k_proj", _) => "attn_k",
        ("self_attn.v_proj", _) => "attn_v",
        ("self_attn.o_proj", _) => "attn_output",
        ("mlp.gate_proj", _) => "ffn_gate",
        ("mlp.up_proj", _) => "ffn_up",
        ("mlp.down_proj", _) => "ffn_down",
        ("post_attention_layernorm", false) => "ffn_norm",
        ("post_attention_layernorm", true) => "post_attention_norm",
        ("self_attn.q_norm", true) => "attn_q_norm",
        ("self_attn.k_norm", true) => "attn_k_norm",
        ("pre_feedforward_layernorm", true) => "ffn_norm",
        ("post_feedforward_layernorm", true) => "post_ffw_norm",
        _ => return None,
    };
    Some(format!("blk.{layer}.{gguf}.{suffix}"))
}

/// Undoes `LlamaModel.permute` on `values` (`[rows, cols]`, rows = `n_head` heads of
/// `rows / n_head` rows each; `cols` = 1 for a bias).
fn unpermute_rows(values: &[f32], rows: usize, cols: usize, n_head: usize) -> Result<Vec<f32>> {
    if n_head == 0 || rows % n_head != 0 || (rows / n_head) % 2 != 0 || values.len() != rows * cols {
        return Err(Error::Weights(format!(
            "cannot undo llama.cpp's Q/K permutation: {rows} rows do not split into {n_head} heads of even width"
        )));
    }
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0.0f32; values.len()];
    for h in 0..n_head {
        for j in 0..half {
            for s in 0..2 {
                let src = h * hd + 2 * j + s;
                let dst = h * hd + s * half + j;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    Ok(out)
}

fn owned_f32(shape: Vec<usize>, values: &[f32]) -> RawTensor<'static> {
    RawTensor { dtype: DType::F32, shape, bytes: Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect()) }
}

impl<'a> GgufFile<'a> {
    /// A Hugging Face style config.json object built from the metadata of any supported
    /// architecture (`lfm2`, `lfm2moe`, `llama`, `gemma3`), for
    /// [`saguaro_engine::ModelConfig::from_json`].
    pub fn model_config(&self) -> Result<Value> {
        match self.architecture() {
            Some("llama") => self.llama_family_config(false),
            Some("gemma3") => self.llama_family_config(true),
            Some("lfm2") | Some("lfm2moe") => self.lfm2_config(),
            Some(other) => Err(format_err(format!(
                "general.architecture is `{other}`; saguaro runs `lfm2`, `lfm2moe`, `llama` and `gemma3`"
            ))),
            None => Err(format_err("metadata `general.architecture` is missing or not a string")),
        }
    }

    fn meta_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                format_err(format!("metadata `{key}` must be a non-negative integer, found {:?}", v.value_type()))
            }),
        }
    }

    fn meta_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| format_err(format!("metadata `{key}` must be a number, found {:?}", v.value_type()))),
        }
    }

    /// A value given once or per layer (all layers equal).
    fn meta_uniform(&self, key: &str, n_layers: usize) -> Result<Option<u64>> {
        match self.get(key) {
            Some(MetaValue::Array(a)) => {
                if a.len() != n_layers {
                    return Err(format_err(format!("`{key}` has {} entries but block_count is {n_layers}", a.len())));
                }
                let mut out = None;
                for v in a.iter() {
                    let v = v.as_u64().ok_or_else(|| format_err(format!("`{key}` must hold non-negative integers")))?;
                    match out {
                        Some(o) if o != v => {
                            return Err(format_err(format!("`{key}` differs between layers ({o} and {v}); saguaro needs one value")))
                        }
                        _ => out = Some(v),
                    }
                }
                Ok(out)
            }
            _ => self.meta_u64(key),
        }
    }

    fn llama_family_config(&self, gemma: bool) -> Result<Value> {
        let arch = if gemma { "gemma3" } else { "llama" };
        let key = |k: &str| format!("{arch}.{k}");
        let req = |k: &str| -> Result<u64> {
            self.meta_u64(&key(k))?.ok_or_else(|| format_err(format!("metadata `{}` is missing", key(k))))
        };
        let hidden = req("embedding_length")?;
        let n_layers = req("block_count")?;
        if n_layers == 0 || n_layers > super::lfm2::MAX_LAYERS {
            return Err(format_err(format!("`{}` is {n_layers}, expected 1 to {}", key("block_count"), super::lfm2::MAX_LAYERS)));
        }
        let n = n_layers as usize;
        let heads = self
            .meta_uniform(&key("attention.head_count"), n)?
            .ok_or_else(|| format_err(format!("metadata `{}` is missing", key("attention.head_count"))))?;
        let kv_heads = self.meta_uniform(&key("attention.head_count_kv"), n)?.unwrap_or(heads);
        let ffn = self
            .meta_uniform(&key("feed_forward_length"), n)?
            .ok_or_else(|| format_err(format!("metadata `{}` is missing", key("feed_forward_length"))))?;
        if heads == 0 {
            return Err(format_err(format!("`{}` is 0", key("attention.head_count"))));
        }
        let head_dim = match self.meta_u64(&key("attention.key_length"))? {
            Some(hd) => {
                if let Some(vd) = self.meta_u64(&key("attention.value_length"))? {
                    if vd != hd {
                        return Err(format_err(format!("attention.key_length ({hd}) and attention.value_length ({vd}) differ")));
                    }
                }
                hd
            }
            None if gemma => 256, // Gemma3TextConfig default, as llama.cpp's converter writes it
            None => hidden / heads,
        };
        if let Some(rot) = self.meta_u64(&key("rope.dimension_count"))? {
            if rot != head_dim {
                return Err(format_err(format!(
                    "`{}` is {rot} but heads are {head_dim} wide: partial RoPE is not supported",
                    key("rope.dimension_count")
                )));
            }
        }
        let vocab = match self.tensor_info("token_embd.weight") {
            Some(t) if t.dims.len() == 2 => t.dims[1] as u64,
            _ => return Err(format_err("tensor `token_embd.weight` is missing or not 2-D")),
        };

        let mut c = Map::new();
        c.insert("architectures".into(), json!([if gemma { "Gemma3ForCausalLM" } else { "LlamaForCausalLM" }]));
        c.insert("model_type".into(), json!(if gemma { "gemma3_text" } else { "llama" }));
        c.insert("vocab_size".into(), json!(vocab));
        c.insert("hidden_size".into(), json!(hidden));
        c.insert("intermediate_size".into(), json!(ffn));
        c.insert("num_hidden_layers".into(), json!(n_layers));
        c.insert("num_attention_heads".into(), json!(heads));
        c.insert("num_key_value_heads".into(), json!(kv_heads));
        c.insert("head_dim".into(), json!(head_dim));
        if let Some(eps) = self.meta_f64(&key("attention.layer_norm_rms_epsilon"))? {
            c.insert("rms_norm_eps".into(), json!(eps));
        }
        if let Some(ctx) = self.meta_u64(&key("context_length"))? {
            c.insert("max_position_embeddings".into(), json!(ctx));
        }
        c.insert("tie_word_embeddings".into(), json!(self.tensor_info("output.weight").is_none()));

        let theta = self.meta_f64(&key("rope.freq_base"))?.unwrap_or(if gemma { 1e6 } else { 1e4 });
        let mut global = Map::new();
        global.insert("rope_theta".into(), json!(theta));
        let scaling = match self.get(&key("rope.scaling.type")) {
            None => None,
            Some(v) => Some(v.as_str().ok_or_else(|| format_err(format!("`{}` must be a string", key("rope.scaling.type"))))?),
        };
        match scaling {
            None | Some("none") => {
                global.insert("rope_type".into(), json!("default"));
            }
            Some("linear") => {
                let factor = self.meta_f64(&key("rope.scaling.factor"))?.unwrap_or(1.0);
                global.insert("rope_type".into(), json!("linear"));
                global.insert("factor".into(), json!(factor));
            }
            Some(other) => return Err(format_err(format!("rope scaling `{other}` is not supported (only none and linear)"))),
        }

        let bias = |t: &str| (0..n).any(|i| self.tensor_info(&format!("blk.{i}.{t}.bias")).is_some());
        c.insert("attention_bias".into(), json!(["attn_q", "attn_k", "attn_v", "attn_output"].iter().any(|t| bias(t))));
        if gemma {
            // Gemma3TextConfig has attention_bias only.
            if ["ffn_gate", "ffn_up", "ffn_down"].iter().any(|t| bias(t)) {
                return Err(format_err("gemma3 FFN biases are not supported"));
            }
            let mut local = Map::new();
            local.insert("rope_type".into(), json!("default"));
            local.insert("rope_theta".into(), json!(10000.0)); // llama.cpp: rope_freq_base_train_swa
            c.insert("rope_parameters".into(), json!({"full_attention": global, "sliding_attention": local}));
            if let Some(w) = self.meta_u64(&key("attention.sliding_window"))? {
                c.insert("sliding_window".into(), json!(w));
            }
            match self.get(&key("attention.sliding_window_pattern")) {
                None => {}
                Some(v) => match v.as_u64() {
                    Some(p) if p > 0 => {
                        c.insert("sliding_window_pattern".into(), json!(p));
                    }
                    _ => {
                        return Err(format_err(format!(
                            "`{}` is not a positive integer; saguaro only reads the every-Nth-layer-global form",
                            key("attention.sliding_window_pattern")
                        )))
                    }
                },
            }
            // llama.cpp: 1/sqrt(hidden/heads) for the 62-layer 27B, 1/sqrt(head_dim) otherwise.
            let scalar = if n_layers == 62 { hidden / heads } else { head_dim };
            c.insert("query_pre_attn_scalar".into(), json!(scalar));
            if let Some(cap) = self.meta_f64(&key("final_logit_softcapping"))?.filter(|&v| v != 0.0) {
                c.insert("final_logit_softcapping".into(), json!(cap));
            }
        } else {
            c.insert("rope_parameters".into(), Value::Object(global));
            c.insert("mlp_bias".into(), json!(["ffn_gate", "ffn_up", "ffn_down"].iter().any(|t| bias(t))));
        }

        if let Some(bos) = self.meta_u64("tokenizer.ggml.bos_token_id")? {
            c.insert("bos_token_id".into(), json!(bos));
        }
        if let Some(pad) = self.meta_u64("tokenizer.ggml.padding_token_id")? {
            c.insert("pad_token_id".into(), json!(pad));
        }
        let eos = self.meta_u64("tokenizer.ggml.eos_token_id")?;
        let eot = self.meta_u64("tokenizer.ggml.eot_token_id")?;
        match (eos, eot) {
            (Some(e), Some(t)) if e != t => {
                c.insert("eos_token_id".into(), json!([e, t]));
            }
            (Some(e), _) | (None, Some(e)) => {
                c.insert("eos_token_id".into(), json!(e));
            }
            (None, None) => {}
        }
        Ok(Value::Object(c))
    }

    /// A tensor of a Llama / Gemma 3 file under its Hugging Face name, with llama.cpp's
    /// transformations undone (see the module documentation).
    pub(crate) fn llama_family_tensor(&self, hf_name: &str, gemma: bool) -> Result<Option<RawTensor<'a>>> {
        let Some(gguf_name) = llama_family_gguf_name(hf_name, gemma) else { return Ok(None) };
        let Some(info) = self.tensor_info(&gguf_name) else { return Ok(None) };
        let raw = GgufFile::decode(hf_name, info.ggml_type, info.shape(), info.data)?;
        let is_q = hf_name.ends_with("self_attn.q_proj.weight") || hf_name.ends_with("self_attn.q_proj.bias");
        let is_k = hf_name.ends_with("self_attn.k_proj.weight") || hf_name.ends_with("self_attn.k_proj.bias");
        if !gemma && (is_q || is_k) {
            let arch_key = |k: &str| format!("llama.{k}");
            let n_layers = self.meta_u64(&arch_key("block_count"))?.unwrap_or(0) as usize;
            let heads = self
                .meta_uniform(&arch_key("attention.head_count"), n_layers)?
                .ok_or_else(|| format_err("metadata `llama.attention.head_count` is missing"))?;
            let n_head = if is_q { heads } else { self.meta_uniform(&arch_key("attention.head_count_kv"), n_layers)?.unwrap_or(heads) };
            let shape = raw.shape.clone();
            let rows = shape[0];
            let cols: usize = shape[1..].iter().product();
            let values = unpermute_rows(&raw.to_f32(), rows, cols, n_head as usize)?;
            return Ok(Some(owned_f32(shape, &values)));
        }
        if gemma && hf_name.ends_with("norm.weight") {
            let values: Vec<f32> = raw.to_f32().iter().map(|&v| v - 1.0).collect();
            return Ok(Some(owned_f32(raw.shape.clone(), &values)));
        }
        Ok(Some(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_llama_cpp() {
        let n = |hf: &str, g: bool| llama_family_gguf_name(hf, g);
        assert_eq!(n("model.layers.3.post_attention_layernorm.weight", false).unwrap(), "blk.3.ffn_norm.weight");
        assert_eq!(n("model.layers.3.post_attention_layernorm.weight", true).unwrap(), "blk.3.post_attention_norm.weight");
        assert_eq!(n("model.layers.0.pre_feedforward_layernorm.weight", true).unwrap(), "blk.0.ffn_norm.weight");
        assert_eq!(n("model.layers.0.post_feedforward_layernorm.weight", true).unwrap(), "blk.0.post_ffw_norm.weight");
        assert_eq!(n("model.layers.10.self_attn.o_proj.bias", false).unwrap(), "blk.10.attn_output.bias");
        assert_eq!(n("model.layers.1.self_attn.k_norm.weight", true).unwrap(), "blk.1.attn_k_norm.weight");
        assert_eq!(n("model.norm.weight", true).unwrap(), "output_norm.weight");
        assert_eq!(n("model.layers.1.self_attn.k_norm.weight", false), None);
        assert_eq!(n("model.layers.01.input_layernorm.weight", false), None);
        assert_eq!(n("model.layers.1.mlp.gate_proj.scales", false), None);
    }

    #[test]
    fn unpermute_inverts_the_converters_permutation() {
        // Two heads of width 4, two columns: HF row r = [r, 100 + r].
        let hf: Vec<f32> = (0..8).flat_map(|r| [r as f32, 100.0 + r as f32]).collect();
        // LlamaModel.permute: head rows [2, hd/2] -> [hd/2, 2]: per head order 0, 2, 1, 3.
        let order = [0usize, 2, 1, 3, 4, 6, 5, 7];
        let gguf: Vec<f32> = order.iter().flat_map(|&r| [r as f32, 100.0 + r as f32]).collect();
        assert_eq!(unpermute_rows(&gguf, 8, 2, 2).unwrap(), hf);
        assert!(unpermute_rows(&gguf, 8, 2, 3).is_err());
    }
}
