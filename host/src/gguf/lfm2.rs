//! LFM2 / LFM2-MoE GGUF files as llama.cpp writes them, seen with Hugging Face eyes.
//!
//! What llama.cpp's `convert_hf_to_gguf.py` (`LFM2Model`, `LFM2MoeModel`) does to each
//! tensor, and how it is undone here:
//! - names: `model.embed_tokens` → `token_embd`, `model.embedding_norm` (the final norm) →
//!   `token_embd_norm`, `lm_head` → `output` (only in untied checkpoints), and per layer N
//!   `operator_norm` → `blk.N.attn_norm`, `ffn_norm` → `blk.N.ffn_norm`, `conv.{in_proj,conv,
//!   out_proj}` → `blk.N.shortconv.{in_proj,conv,out_proj}`, `self_attn.{q,k,v}_proj` →
//!   `blk.N.attn_{q,k,v}`, `self_attn.out_proj` → `blk.N.attn_output`, `self_attn.{q,k}_layernorm`
//!   → `blk.N.attn_{q,k}_norm`, `feed_forward.{w1,w3,w2}` → `blk.N.ffn_{gate,up,down}`; MoE:
//!   `feed_forward.gate` → `blk.N.ffn_gate_inp`, `feed_forward.expert_bias` →
//!   `blk.N.exp_probs_b.bias`, and the per-expert `feed_forward.experts.E.{w1,w3,w2}` stacked
//!   (`torch.stack(dim=0)`) into `blk.N.ffn_{gate,up,down}_exps`.
//! - shapes: GGUF dims are the PyTorch shape reversed (`ne0` = columns); no tensor is
//!   permuted or transposed. The only reshape is the short-conv weight, squeezed from
//!   `[D, 1, L]` to `[D, L]` (GGUF `ne = [L, D]`): served here as `[D, 1, L]` again. Stacked
//!   experts have `ne = [cols, rows, E]`; expert E is the E-th contiguous slice.
//! - types: 1-D tensors, `*_norm.weight`, the short-conv weight, the router
//!   (`ffn_gate_inp`) and `exp_probs_b.bias` are always F32; other matrices get the output
//!   type (F16/BF16/Q8_0, or any llama-quantize type).
//!
//! Metadata keys used by [`GgufFile::lfm2_config`] (prefix `lfm2.` or `lfm2moe.` after
//! `general.architecture`): `embedding_length`, `block_count`, `attention.head_count`,
//! `attention.head_count_kv` (per-layer array, 0 marks a conv layer), `feed_forward_length`
//! (already the final width), `rope.freq_base`, `attention.layer_norm_rms_epsilon`,
//! `shortconv.l_cache`, `context_length`, `attention.key_length` / `value_length`,
//! `vocab_size`; MoE: `expert_count`, `expert_used_count`, `expert_feed_forward_length`,
//! `leading_dense_block_count`, `expert_gating_func` (2 = sigmoid), `expert_weights_scale`,
//! `expert_weights_norm`; tokenizer: `tokenizer.ggml.{bos,eos,eot,padding}_token_id`,
//! `tokenizer.ggml.tokens`.

use serde_json::{json, Map, Value};

use saguaro_engine::weights::{RawTensor, TensorSource};
use saguaro_engine::{Error, Result};

use super::{format_err, GgmlType, GgufFile, MetaValue, TensorInfo};

/// Most layers [`GgufFile::lfm2_config`] accepts (real models have 16 to 40).
pub const MAX_LAYERS: u64 = 4096;

/// Where a Hugging Face tensor lives in a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GgufName {
    /// The whole GGUF tensor of this name.
    Tensor(String),
    /// Expert `expert` (outermost index) of a stacked `*_exps` tensor.
    Expert { tensor: String, expert: usize },
}

/// The GGUF location of Hugging Face tensor `hf` (llama.cpp's LFM2 / LFM2-MoE naming), or
/// None for names LFM2 does not have.
pub fn hf_to_gguf_name(hf: &str) -> Option<GgufName> {
    let whole = |s: &str| Some(GgufName::Tensor(s.to_string()));
    match hf {
        "model.embed_tokens.weight" => return whole("token_embd.weight"),
        "model.embedding_norm.weight" => return whole("token_embd_norm.weight"),
        "lm_head.weight" => return whole("output.weight"),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer = parse_index(layer)?;
    let blk = |s: &str| Some(GgufName::Tensor(format!("blk.{layer}.{s}")));
    if let Some(expert_rest) = rest.strip_prefix("feed_forward.experts.") {
        let (expert, w) = expert_rest.split_once('.')?;
        let expert = parse_index(expert)?;
        let stacked = match w {
            "w1.weight" => "ffn_gate_exps.weight",
            "w3.weight" => "ffn_up_exps.weight",
            "w2.weight" => "ffn_down_exps.weight",
            _ => return None,
        };
        return Some(GgufName::Expert { tensor: format!("blk.{layer}.{stacked}"), expert });
    }
    match rest {
        "operator_norm.weight" => blk("attn_norm.weight"),
        "ffn_norm.weight" => blk("ffn_norm.weight"),
        "conv.in_proj.weight" => blk("shortconv.in_proj.weight"),
        "conv.in_proj.bias" => blk("shortconv.in_proj.bias"),
        "conv.conv.weight" => blk("shortconv.conv.weight"),
        "conv.conv.bias" => blk("shortconv.conv.bias"),
        "conv.out_proj.weight" => blk("shortconv.out_proj.weight"),
        "conv.out_proj.bias" => blk("shortconv.out_proj.bias"),
        "self_attn.q_proj.weight" => blk("attn_q.weight"),
        "self_attn.k_proj.weight" => blk("attn_k.weight"),
        "self_attn.v_proj.weight" => blk("attn_v.weight"),
        "self_attn.out_proj.weight" => blk("attn_output.weight"),
        "self_attn.q_layernorm.weight" => blk("attn_q_norm.weight"),
        "self_attn.k_layernorm.weight" => blk("attn_k_norm.weight"),
        "feed_forward.w1.weight" => blk("ffn_gate.weight"),
        "feed_forward.w3.weight" => blk("ffn_up.weight"),
        "feed_forward.w2.weight" => blk("ffn_down.weight"),
        "feed_forward.gate.weight" => blk("ffn_gate_inp.weight"),
        "feed_forward.expert_bias" => blk("exp_probs_b.bias"),
        _ => None,
    }
}

/// A decimal index without sign or leading zeros (so each HF name maps one way).
fn parse_index(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// A tensor as stored in the GGUF file, under its Hugging Face name and shape: for Q8_0 /
/// Q4_0 (and other block types) `bytes` are the ggml blocks themselves, row after row in
/// row-major order (each row of `shape.last()` elements is `shape.last() / 32` blocks), so a
/// converter can import them without a round trip through f32.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorView<'a> {
    pub ggml_type: GgmlType,
    /// Hugging Face (row-major) shape.
    pub shape: Vec<usize>,
    pub bytes: &'a [u8],
}

impl<'a> GgufFile<'a> {
    fn find(&self, name: &str) -> Option<&TensorInfo<'a>> {
        self.tensor_info(name).or_else(|| {
            // Some writers call the final norm output_norm.
            (name == "token_embd_norm.weight").then(|| self.tensor_info("output_norm.weight")).flatten()
        })
    }

    /// The tensor with Hugging Face name `hf_name` as stored (type, HF shape, raw bytes), or
    /// `Ok(None)` when the file has no such tensor. Per-expert names slice the stacked
    /// `*_exps` tensors.
    pub fn raw_tensor(&self, hf_name: &str) -> Result<Option<GgufTensorView<'a>>> {
        let Some(location) = hf_to_gguf_name(hf_name) else { return Ok(None) };
        match location {
            GgufName::Tensor(gguf_name) => {
                let Some(info) = self.find(&gguf_name) else { return Ok(None) };
                let mut shape = info.shape();
                if hf_name.ends_with(".conv.conv.weight") && shape.len() == 2 {
                    // Squeezed [D, L] -> HF [D, 1, L].
                    shape.insert(1, 1);
                }
                Ok(Some(GgufTensorView { ggml_type: info.ggml_type, shape, bytes: info.data }))
            }
            GgufName::Expert { tensor, expert } => {
                let Some(info) = self.find(&tensor) else { return Ok(None) };
                if info.dims.len() != 3 {
                    return Err(Error::Weights(format!(
                        "GGUF tensor `{tensor}` (for `{hf_name}`) has dims {:?}, expected [cols, rows, experts]",
                        info.dims
                    )));
                }
                let n_experts = info.dims[2];
                if expert >= n_experts {
                    return Ok(None);
                }
                // n_experts > 0 here; the size was checked to be dims product / block * type size.
                let per = info.data.len() / n_experts;
                let bytes = &info.data[expert * per..(expert + 1) * per];
                Ok(Some(GgufTensorView { ggml_type: info.ggml_type, shape: vec![info.dims[1], info.dims[0]], bytes }))
            }
        }
    }

    /// Builds a Hugging Face style config.json object from the `lfm2.*` / `lfm2moe.*`
    /// metadata, for [`saguaro_engine::Lfm2Config::from_json`].
    pub fn lfm2_config(&self) -> Result<Value> {
        let arch = self
            .architecture()
            .ok_or_else(|| format_err("metadata `general.architecture` is missing or not a string"))?;
        let is_moe = match arch {
            "lfm2" => false,
            "lfm2moe" => true,
            other => {
                return Err(format_err(format!("general.architecture is `{other}`, expected `lfm2` or `lfm2moe`")))
            }
        };
        let key = |k: &str| format!("{arch}.{k}");
        let meta = Meta(self);

        let hidden = meta.req_u64(&key("embedding_length"))?;
        let n_layers = meta.req_u64(&key("block_count"))?;
        if n_layers == 0 || n_layers > MAX_LAYERS {
            return Err(format_err(format!("`{}` is {n_layers}, expected 1 to {MAX_LAYERS}", key("block_count"))));
        }
        let n_layers = n_layers as usize;
        let heads = meta
            .per_layer_uniform(&key("attention.head_count"), n_layers, true)?
            .ok_or_else(|| format_err(format!("metadata `{}` is missing", key("attention.head_count"))))?;

        // Per-layer KV heads: 0 marks a short-conv layer.
        let kv_key = key("attention.head_count_kv");
        let kv_per_layer: Vec<u64> = match self.get(&kv_key) {
            None => vec![heads; n_layers],
            Some(MetaValue::Array(a)) => {
                if a.len() != n_layers {
                    return Err(format_err(format!(
                        "`{kv_key}` has {} entries but block_count is {n_layers}",
                        a.len()
                    )));
                }
                a.iter()
                    .map(|v| {
                        v.as_u64().ok_or_else(|| format_err(format!("`{kv_key}` must hold non-negative integers")))
                    })
                    .collect::<Result<_>>()?
            }
            Some(v) => vec![
                v.as_u64()
                    .ok_or_else(|| format_err(format!("`{kv_key}` must be a non-negative integer")))?;
                n_layers
            ],
        };
        let mut kv_heads = None;
        for &kv in kv_per_layer.iter().filter(|&&kv| kv != 0) {
            match kv_heads {
                None => kv_heads = Some(kv),
                Some(k) if k != kv => {
                    return Err(format_err(format!(
                        "`{kv_key}` has different non-zero values ({k} and {kv}); saguaro needs one KV head count"
                    )))
                }
                _ => {}
            }
        }
        let layer_types: Vec<&str> =
            kv_per_layer.iter().map(|&kv| if kv == 0 { "conv" } else { "full_attention" }).collect();
        let kv_heads = kv_heads.unwrap_or(heads);

        let ffn = meta
            .per_layer_uniform(&key("feed_forward_length"), n_layers, false)?
            .ok_or_else(|| format_err(format!("metadata `{}` is missing", key("feed_forward_length"))))?;

        let vocab = match self.find("token_embd.weight") {
            Some(t) if t.dims.len() == 2 => t.dims[1] as u64,
            _ => match meta.opt_u64(&key("vocab_size"))? {
                Some(v) => v,
                None => match self.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
                    Some(tokens) => tokens.len() as u64,
                    None => return Err(format_err(
                        "cannot tell the vocabulary size: no token_embd.weight, vocab_size or tokenizer.ggml.tokens",
                    )),
                },
            },
        };

        let mut c = Map::new();
        c.insert("architectures".into(), json!([if is_moe { "Lfm2MoeForCausalLM" } else { "Lfm2ForCausalLM" }]));
        c.insert("model_type".into(), json!(if is_moe { "lfm2_moe" } else { "lfm2" }));
        c.insert("vocab_size".into(), json!(vocab));
        c.insert("hidden_size".into(), json!(hidden));
        c.insert("num_hidden_layers".into(), json!(n_layers));
        c.insert("num_attention_heads".into(), json!(heads));
        c.insert("num_key_value_heads".into(), json!(kv_heads));
        c.insert("layer_types".into(), json!(layer_types));
        c.insert("intermediate_size".into(), json!(ffn));
        if !is_moe {
            // feed_forward_length is already the final width.
            c.insert("block_ff_dim".into(), json!(ffn));
            c.insert("block_auto_adjust_ff_dim".into(), json!(false));
        }
        if let Some(hd) = meta.opt_u64(&key("attention.key_length"))? {
            if let Some(vd) = meta.opt_u64(&key("attention.value_length"))? {
                if vd != hd {
                    return Err(format_err(format!(
                        "attention.key_length ({hd}) and attention.value_length ({vd}) differ"
                    )));
                }
            }
            c.insert("head_dim".into(), json!(hd));
        }
        if let Some(theta) = meta.opt_f64(&key("rope.freq_base"))? {
            c.insert("rope_theta".into(), json!(theta));
        }
        if let Some(eps) = meta.opt_f64(&key("attention.layer_norm_rms_epsilon"))? {
            c.insert("norm_eps".into(), json!(eps));
        }
        if let Some(l) = meta.opt_u64(&key("shortconv.l_cache"))? {
            c.insert("conv_L_cache".into(), json!(l));
        }
        if let Some(ctx) = meta.opt_u64(&key("context_length"))? {
            c.insert("max_position_embeddings".into(), json!(ctx));
        }
        let has_conv_bias = (0..n_layers).any(|i| self.find(&format!("blk.{i}.shortconv.in_proj.bias")).is_some());
        c.insert("conv_bias".into(), json!(has_conv_bias));
        c.insert("tie_word_embeddings".into(), json!(self.find("output.weight").is_none()));

        if let Some(bos) = meta.opt_u64("tokenizer.ggml.bos_token_id")? {
            c.insert("bos_token_id".into(), json!(bos));
        }
        if let Some(pad) = meta.opt_u64("tokenizer.ggml.padding_token_id")? {
            c.insert("pad_token_id".into(), json!(pad));
        }
        let eos = meta.opt_u64("tokenizer.ggml.eos_token_id")?;
        let eot = meta.opt_u64("tokenizer.ggml.eot_token_id")?;
        match (eos, eot) {
            (Some(e), Some(t)) if e != t => {
                c.insert("eos_token_id".into(), json!([e, t]));
            }
            (Some(e), _) | (None, Some(e)) => {
                c.insert("eos_token_id".into(), json!(e));
            }
            (None, None) => {}
        }

        if is_moe {
            let req = |k: &str| meta.req_u64(&key(k));
            c.insert("num_experts".into(), json!(req("expert_count")?));
            c.insert("num_experts_per_tok".into(), json!(req("expert_used_count")?));
            c.insert("moe_intermediate_size".into(), json!(req("expert_feed_forward_length")?));
            // llama.cpp reads leading_dense_block_count as optional with default 0.
            let dense = meta.opt_u64(&key("leading_dense_block_count"))?.unwrap_or(0);
            c.insert("num_dense_layers".into(), json!(dense));
            if let Some(func) = meta.opt_u64(&key("expert_gating_func"))? {
                if func != 2 {
                    return Err(format_err(format!(
                        "`{}` is {func}; LFM2-MoE routes with sigmoid (2)",
                        key("expert_gating_func")
                    )));
                }
            }
            let has_bias = (0..n_layers).any(|i| self.find(&format!("blk.{i}.exp_probs_b.bias")).is_some());
            c.insert("use_expert_bias".into(), json!(has_bias));
            let scale = meta.opt_f64(&key("expert_weights_scale"))?.unwrap_or(1.0);
            c.insert("routed_scaling_factor".into(), json!(scale));
            let norm = match self.get(&key("expert_weights_norm")) {
                None => true,
                Some(v) => {
                    v.as_bool().ok_or_else(|| format_err(format!("`{}` must be a bool", key("expert_weights_norm"))))?
                }
            };
            c.insert("norm_topk_prob".into(), json!(norm));
        }
        Ok(Value::Object(c))
    }
}

/// Typed metadata lookups with errors naming the key.
struct Meta<'f, 'a>(&'f GgufFile<'a>);

impl Meta<'_, '_> {
    fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                format_err(format!("metadata `{key}` must be a non-negative integer, found {:?}", v.value_type()))
            }),
        }
    }

    fn req_u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?.ok_or_else(|| format_err(format!("metadata `{key}` is missing")))
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| format_err(format!("metadata `{key}` must be a number, found {:?}", v.value_type()))),
        }
    }

    /// A value given once or per layer (llama.cpp accepts both); per-layer values must all
    /// be equal (ignoring zeros when `skip_zero`).
    fn per_layer_uniform(&self, key: &str, n_layers: usize, skip_zero: bool) -> Result<Option<u64>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(MetaValue::Array(a)) => {
                if a.len() != n_layers {
                    return Err(format_err(format!("`{key}` has {} entries but block_count is {n_layers}", a.len())));
                }
                let mut out = None;
                for v in a.iter() {
                    let v = v.as_u64().ok_or_else(|| format_err(format!("`{key}` must hold non-negative integers")))?;
                    if skip_zero && v == 0 {
                        continue;
                    }
                    match out {
                        None => out = Some(v),
                        Some(o) if o != v => {
                            return Err(format_err(format!(
                                "`{key}` differs between layers ({o} and {v}); saguaro needs one value"
                            )))
                        }
                        _ => {}
                    }
                }
                Ok(out)
            }
            Some(_) => self.opt_u64(key),
        }
    }
}

/// Nominal bits per weight of a GGUF tensor type (block overheads aside), to compare them.
fn nominal_bits(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::F32 | GgmlType::I32 => 32,
        GgmlType::F16 | GgmlType::BF16 | GgmlType::I16 => 16,
        GgmlType::Q8_0 | GgmlType::Q8_1 | GgmlType::Q8_K | GgmlType::I8 => 8,
        GgmlType::Q6_K => 6,
        GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5_K => 5,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4_K | GgmlType::IQ4_NL | GgmlType::IQ4_XS => 4,
        GgmlType::Q3_K | GgmlType::IQ3_XXS | GgmlType::IQ3_S => 3,
        GgmlType::Q2_K | GgmlType::IQ2_XXS | GgmlType::IQ2_XS | GgmlType::IQ2_S => 2,
        GgmlType::IQ1_S => 1,
        #[allow(unreachable_patterns)]
        _ => 32,
    }
}

impl GgufFile<'_> {
    /// The GGUF type of the tensor a Hugging Face name maps to (whole or stacked-expert tensor).
    fn source_ggml_type(&self, hf_name: &str) -> Option<GgmlType> {
        match self.architecture() {
            Some(arch @ ("llama" | "gemma3")) => {
                let gguf_name = super::llama::llama_family_gguf_name(hf_name, arch == "gemma3")?;
                self.tensor_info(&gguf_name).map(|info| info.ggml_type)
            }
            _ => match hf_to_gguf_name(hf_name)? {
                GgufName::Tensor(n) => self.find(&n).map(|info| info.ggml_type),
                GgufName::Expert { tensor, .. } => self.find(&tensor).map(|info| info.ggml_type),
            },
        }
    }

    /// The most common type among the file's tensors of two or more dimensions (first seen
    /// on ties): the type its quantization recipe is named after.
    fn main_matrix_type(&self) -> Option<GgmlType> {
        let mut counts: Vec<(GgmlType, usize)> = Vec::new();
        for info in self.tensors().iter().filter(|t| t.dims.len() >= 2) {
            match counts.iter_mut().find(|(t, _)| *t == info.ggml_type) {
                Some((_, n)) => *n += 1,
                None => counts.push((info.ggml_type, 1)),
            }
        }
        counts.iter().fold(None, |best: Option<(GgmlType, usize)>, &(t, n)| match best {
            Some((_, m)) if m >= n => best,
            _ => Some((t, n)),
        }).map(|(t, _)| t)
    }
}

impl TensorSource for GgufFile<'_> {
    /// Serves tensors under their Hugging Face names (Llama / Gemma 3 files: see
    /// [`super::llama`]): F32 / F16 / BF16 borrowed, Q8_0 /
    /// Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q4_K / Q5_K / Q6_K dequantized to f32; other types are
    /// an error.
    fn int4_scale_rule(&self) -> saguaro_engine::quant::ScaleRule {
        saguaro_engine::quant::ScaleRule::Ggml
    }

    /// int8 for a matrix the file stores finer than its main matrix type (the most common
    /// type among its tensors of two or more dimensions) with more than 4 bits: the token
    /// embedding at Q8_0 / Q6_K in a Q4 file, Q6_K tensors of a Q4_K_M file. So `--quant int4`
    /// rounds only what the file's author rounded to 4 bits.
    fn matrix_dtype_floor(&self, name: &str) -> Option<saguaro_engine::format::TensorDType> {
        let ty = self.source_ggml_type(name)?;
        let main = self.main_matrix_type()?;
        (nominal_bits(ty) > 4 && nominal_bits(ty) > nominal_bits(main)).then_some(saguaro_engine::format::TensorDType::Q8)
    }

    fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>> {
        match self.architecture() {
            Some("llama") => return self.llama_family_tensor(name, false),
            Some("gemma3") => return self.llama_family_tensor(name, true),
            _ => {}
        }
        match self.raw_tensor(name)? {
            None => Ok(None),
            Some(view) => GgufFile::decode(name, view.ggml_type, view.shape, view.bytes).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_names_map_to_llama_cpp_names() {
        let t = |s: &str| Some(GgufName::Tensor(s.to_string()));
        assert_eq!(hf_to_gguf_name("model.embed_tokens.weight"), t("token_embd.weight"));
        assert_eq!(hf_to_gguf_name("model.embedding_norm.weight"), t("token_embd_norm.weight"));
        assert_eq!(hf_to_gguf_name("lm_head.weight"), t("output.weight"));
        assert_eq!(hf_to_gguf_name("model.layers.3.conv.conv.weight"), t("blk.3.shortconv.conv.weight"));
        assert_eq!(hf_to_gguf_name("model.layers.12.self_attn.out_proj.weight"), t("blk.12.attn_output.weight"));
        assert_eq!(hf_to_gguf_name("model.layers.0.self_attn.k_layernorm.weight"), t("blk.0.attn_k_norm.weight"));
        assert_eq!(hf_to_gguf_name("model.layers.0.feed_forward.w3.weight"), t("blk.0.ffn_up.weight"));
        assert_eq!(hf_to_gguf_name("model.layers.4.feed_forward.expert_bias"), t("blk.4.exp_probs_b.bias"));
        assert_eq!(hf_to_gguf_name("model.layers.4.feed_forward.gate.weight"), t("blk.4.ffn_gate_inp.weight"));
        assert_eq!(
            hf_to_gguf_name("model.layers.4.feed_forward.experts.31.w2.weight"),
            Some(GgufName::Expert { tensor: "blk.4.ffn_down_exps.weight".into(), expert: 31 })
        );
        for bad in [
            "model.layers.x.ffn_norm.weight",
            "model.layers.01.ffn_norm.weight",
            "model.layers.-1.ffn_norm.weight",
            "model.layers.1.feed_forward.experts.1.w4.weight",
            "model.layers.1",
            "model.norm.weight",
            "",
        ] {
            assert_eq!(hf_to_gguf_name(bad), None, "{bad}");
        }
    }
}
