//! Synthetic models of the real LFM2 shapes with deterministic random weights, for
//! benchmarks (speed does not depend on the values) where real checkpoints cannot be
//! downloaded. Weights are generated tensor by tensor on request, so writing a synthetic
//! model streams like converting a real one.

use std::borrow::Cow;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::generate::SplitMix64;
use crate::weights::{DType, RawTensor, TensorSource};

/// The published LFM2 shapes (docs/lfm2.md §Family).
pub const SHAPES: &[&str] = &["lfm2-350m", "lfm2-700m", "lfm2-1.2b", "lfm2-8b-a1b", "lfm2-24b-a2b"];

/// config.json of a published shape.
pub fn shape_config(shape: &str) -> Result<Value> {
    let dense_attn = [2usize, 5, 8, 10, 12, 14];
    let (hidden, layers, heads, ffn, attn): (usize, usize, usize, usize, Vec<usize>) = match shape {
        "lfm2-350m" => (1024, 16, 16, 4608, dense_attn.to_vec()),
        "lfm2-700m" => (1536, 16, 24, 6912, dense_attn.to_vec()),
        "lfm2-1.2b" => (2048, 16, 32, 8192, dense_attn.to_vec()),
        "lfm2-8b-a1b" => (2048, 24, 32, 7168, vec![2, 6, 10, 14, 18, 21]),
        "lfm2-24b-a2b" => (2048, 40, 32, 11776, (0..40).filter(|i| i % 4 == 2).collect()),
        other => {
            return Err(Error::Input(format!("unknown shape `{other}` (expected one of {})", SHAPES.join(", "))))
        }
    };
    let layer_types: Vec<&str> = (0..layers).map(|i| if attn.contains(&i) { "full_attention" } else { "conv" }).collect();
    let mut config = json!({
        "architectures": ["Lfm2ForCausalLM"],
        "model_type": "lfm2",
        "vocab_size": 65536,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": 8,
        "intermediate_size": ffn,
        "block_auto_adjust_ff_dim": false,
        "layer_types": layer_types,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "norm_eps": 1e-5,
        "conv_L_cache": 3,
        "conv_bias": false,
        "tie_word_embeddings": true,
        "max_position_embeddings": 128000,
        "bos_token_id": 1,
        "eos_token_id": 7,
        "pad_token_id": 0,
    });
    let moe = match shape {
        "lfm2-8b-a1b" => Some((32, 4, 1792)),
        "lfm2-24b-a2b" => Some((64, 4, 1536)),
        _ => None,
    };
    if let Some((experts, k, width)) = moe {
        let obj = config.as_object_mut().expect("object");
        obj.insert("architectures".into(), json!(["Lfm2MoeForCausalLM"]));
        obj.insert("model_type".into(), json!("lfm2_moe"));
        obj.insert("num_experts".into(), json!(experts));
        obj.insert("num_experts_per_tok".into(), json!(k));
        obj.insert("moe_intermediate_size".into(), json!(width));
        obj.insert("num_dense_layers".into(), json!(2));
        obj.insert("use_expert_bias".into(), json!(true));
        obj.insert("routed_scaling_factor".into(), json!(1.0));
        obj.insert("norm_topk_prob".into(), json!(true));
    }
    Ok(config)
}

/// Ids of the special tokens of [`synth_vocab`] (as in LFM2's tokenizer: 0 pad, 1 start of
/// text, 7 `<|im_end|>`, 10/11 the tool-call markers).
pub const SYNTH_SPECIALS: [&str; 16] = [
    "<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|fim_pre|>", "<|fim_mid|>", "<|fim_suf|>", "<|im_start|>",
    "<|im_end|>", "<|tool_list_start|>", "<|tool_list_end|>", "<|tool_call_start|>", "<|tool_call_end|>",
    "<|tool_response_start|>", "<|tool_response_end|>", "<|reserved_0|>", "<|reserved_1|>",
];

/// A deterministic stand-in for a byte-level BPE vocabulary of `n` tokens (each token's
/// bytes; special tokens start with 0xFF, the trie's marker), for benchmarking grammar masks
/// where the real 65536-token LFM2 tokenizer cannot be downloaded. It has what shapes a
/// vocabulary trie: the 16 special tokens, all 256 bytes, every 1-3 digit number (LFM2
/// splits digits in threes), whitespace runs, punctuation clusters (`", `, `{"`, `});`),
/// two- and three-byte UTF-8 characters and pairs, and English-like word pieces from a
/// syllable table, with and without a leading space and capitalised, lengths 2 to ~14 bytes
/// (mean ~6, as in real 64k vocabularies).
pub fn synth_vocab(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut push = |out: &mut Vec<Vec<u8>>, t: Vec<u8>| {
        if out.len() < n && seen.insert(t.clone()) {
            out.push(t);
        }
    };
    for s in SYNTH_SPECIALS {
        let mut t = vec![0xFF];
        t.extend_from_slice(s.as_bytes());
        push(&mut out, t);
    }
    for b in 0..=255u8 {
        push(&mut out, vec![b]);
    }
    for len in 1..=3u32 {
        for v in 0..10u32.pow(len) {
            push(&mut out, format!("{v:0width$}", width = len as usize).into_bytes());
        }
    }
    for k in 2..=16 {
        for unit in [" ", "\n", "\t"] {
            push(&mut out, unit.repeat(k).into_bytes());
        }
        push(&mut out, format!("\n{}", " ".repeat(k)).into_bytes());
    }
    let mut rng = SplitMix64::new(seed);
    let mut pick = |k: usize| (rng.next_u64() % k as u64) as usize;
    let punct = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    for _ in 0..4000 {
        let len = 2 + pick(3);
        let mut t: Vec<u8> = (0..len).map(|_| punct[pick(punct.len())]).collect();
        match pick(4) {
            0 => t.insert(0, b' '),
            1 => t.push(b'\n'),
            _ => {}
        }
        push(&mut out, t);
    }
    // Two-byte (Latin-1 supplement to Cyrillic) and three-byte (CJK) characters and pairs.
    for _ in 0..6000 {
        let c = if pick(2) == 0 { 0xC0 + pick(0x400) as u32 } else { 0x4E00 + pick(0x5000) as u32 };
        let mut t = char::from_u32(c).map(String::from).unwrap_or_default();
        if pick(3) == 0 {
            t.push(char::from_u32(0x4E00 + pick(0x5000) as u32).unwrap_or('x'));
        }
        push(&mut out, t.into_bytes());
    }
    const SYLLABLES: [&str; 48] = [
        "th", "e", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed", "is", "it",
        "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le", "ve", "co", "me", "de", "hi", "ri",
        "ro", "ic", "ne", "ea", "ra", "ce", "li", "ch", "ll", "be", "ma", "si",
    ];
    let mut guard = 0;
    while out.len() < n && guard < 50 * n {
        guard += 1;
        let mut w = String::new();
        for _ in 0..1 + pick(5) {
            w.push_str(SYLLABLES[pick(SYLLABLES.len())]);
        }
        if pick(2) == 0 {
            w.push(char::from(b'a' + pick(26) as u8));
        }
        if pick(8) == 0 {
            let mut c = w.chars();
            w = c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or(w);
        }
        if pick(5) < 3 {
            w.insert(0, ' ');
        }
        push(&mut out, w.into_bytes());
    }
    // Pad (only reachable for huge n): placeholder specials.
    while out.len() < n {
        let mut t = vec![0xFF];
        t.extend_from_slice(format!("<[{}]>", out.len()).as_bytes());
        out.push(t);
    }
    out
}

/// Deterministic random tensors by name: linear weights ~ N(0, (0.6/sqrt(fan_in))^2)
/// (uniform with that deviation), embeddings with unit deviation, norm weights 1, conv
/// taps small. The same (seed, name) always gives the same values on every host.
pub struct SynthSource {
    seed: u64,
    /// Name -> shape of every tensor of the model.
    shapes: std::collections::HashMap<String, Vec<usize>>,
}

impl SynthSource {
    pub fn new(config: &crate::Lfm2Config, seed: u64) -> Self {
        let shapes = crate::convert::required_tensors(config).into_iter().map(|s| (s.name, s.shape)).collect();
        SynthSource { seed, shapes }
    }
}

fn name_hash(name: &str) -> u64 {
    // FNV-1a: stable across hosts and Rust versions (unlike std's hasher).
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

impl TensorSource for SynthSource {
    fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>> {
        let Some(shape) = self.shapes.get(name) else { return Ok(None) };
        let n: usize = shape.iter().product();
        let mut rng = SplitMix64::new(self.seed ^ name_hash(name));
        let (center, std) = if name.ends_with("norm.weight") || name.ends_with("layernorm.weight") {
            (1.0, 0.0)
        } else if name.contains("embed_tokens") {
            (0.0, 1.0)
        } else if name.ends_with("conv.conv.weight") {
            (0.0, 0.3)
        } else {
            (0.0, 0.6 / (shape[shape.len() - 1] as f32).sqrt())
        };
        // Uniform on [-a, a] has deviation a / sqrt(3).
        let a = std * 3f32.sqrt();
        let mut bytes = Vec::with_capacity(n * 4);
        for _ in 0..n {
            let u = rng.next_f32() * 2.0 - 1.0;
            bytes.extend_from_slice(&(center + a * u).to_le_bytes());
        }
        Ok(Some(RawTensor { dtype: DType::F32, shape: shape.clone(), bytes: Cow::Owned(bytes) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_with_the_published_sizes() {
        for shape in SHAPES {
            let c = crate::Lfm2Config::from_json(&shape_config(shape).unwrap()).unwrap();
            assert_eq!(c.vocab_size, 65536);
            assert_eq!(c.head_dim, 64, "{shape}");
        }
        let c = crate::Lfm2Config::from_json(&shape_config("lfm2-350m").unwrap()).unwrap();
        let params: usize = crate::convert::required_tensors(&c).iter().map(|s| s.shape.iter().product::<usize>()).sum();
        assert_eq!(params, 354_483_968, "LFM2-350M parameter count");
        assert!(shape_config("gpt-2").is_err());
    }

    #[test]
    fn synthetic_tensors_are_deterministic() {
        let mut v = shape_config("lfm2-350m").unwrap();
        v["num_hidden_layers"] = json!(3);
        v["layer_types"] = json!(["conv", "full_attention", "conv"]);
        let c = crate::Lfm2Config::from_json(&v).unwrap();
        let src = SynthSource::new(&c, 5);
        let a = src.tensor("model.layers.0.ffn_norm.weight").unwrap().unwrap();
        assert!(a.to_f32().iter().all(|&x| x == 1.0));
        let a = SynthSource::new(&c, 5).f32_tensor("model.layers.1.self_attn.q_proj.weight", &[1024, 1024]).unwrap();
        let b = SynthSource::new(&c, 5).f32_tensor("model.layers.1.self_attn.q_proj.weight", &[1024, 1024]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].to_bits(), b[0].to_bits());
    }

    #[test]
    fn moe_shapes_have_the_published_sizes() {
        // u64: the totals exceed a 32-bit usize (wasm32).
        let count = |shape: &str| -> (u64, u64) {
            let c = crate::Lfm2Config::from_json(&shape_config(shape).unwrap()).unwrap();
            let specs = crate::convert::required_tensors(&c);
            let total: u64 = specs.iter().map(|s| s.shape.iter().map(|&d| d as u64).product::<u64>()).sum();
            let moe = c.moe.as_ref().unwrap();
            // active per token: everything but the unchosen experts
            let per_expert = 3 * moe.moe_intermediate_size as u64 * c.hidden_size as u64;
            let moe_layers = (c.num_layers - moe.num_dense_layers) as u64;
            (total, total - moe_layers * (moe.num_experts - moe.num_experts_per_tok) as u64 * per_expert)
        };
        let (total, active) = count("lfm2-8b-a1b");
        assert!((8_200_000_000..8_500_000_000).contains(&total), "8B-A1B total {total}");
        assert!((1_300_000_000..1_700_000_000).contains(&active), "8B-A1B active {active}");
        let (total, active) = count("lfm2-24b-a2b");
        assert!((23_000_000_000..25_000_000_000).contains(&total), "24B-A2B total {total}");
        assert!((2_000_000_000..2_600_000_000).contains(&active), "24B-A2B active {active}");
    }

    #[test]
    fn small_moe_synth_converts_to_int4_and_runs() {
        use crate::convert::{convert, Extras, Quant};
        use crate::format::{CactFile, TensorDType};
        use crate::storage::AlignedBytes;
        use crate::{LogitsMode, Model};
        // lfm2-8b-a1b with small widths (the real one is ~4.7 GB in int4).
        let mut v = shape_config("lfm2-8b-a1b").unwrap();
        v["vocab_size"] = json!(256);
        v["hidden_size"] = json!(64);
        v["num_hidden_layers"] = json!(4);
        v["layer_types"] = json!(["conv", "conv", "full_attention", "conv"]);
        v["num_attention_heads"] = json!(4);
        v["num_key_value_heads"] = json!(2);
        v["intermediate_size"] = json!(96);
        v["moe_intermediate_size"] = json!(32);
        v["num_experts"] = json!(8);
        let c = crate::Lfm2Config::from_json(&v).unwrap();
        assert!(c.is_moe_layer(2) && !c.is_moe_layer(1));
        let src = SynthSource::new(&c, 3);
        for quant in [Quant::Int4, Quant::Int8] {
            let bytes = convert(&v, &src, quant, &Extras::default(), Vec::new(), &mut |_, _, _| {}).unwrap();
            let file = CactFile::parse(AlignedBytes::copy_from(&bytes).into_blob()).unwrap();
            assert_eq!(file.entry("model.layers.2.feed_forward.gate.weight").unwrap().dtype, TensorDType::F32);
            assert_eq!(file.entry("model.layers.2.feed_forward.expert_bias").unwrap().dtype, TensorDType::F32);
            let want = if quant == Quant::Int4 { TensorDType::Q4 } else { TensorDType::Q8 };
            assert_eq!(file.entry("model.layers.3.feed_forward.experts.7.w2.weight").unwrap().dtype, want);
            assert!(file.entry("model.layers.3.feed_forward.w1.weight").is_none());
            let model = Model::from_cact(&file).unwrap();
            let tokens = [1u32, 17, 200, 5, 99, 42, 7, 130];
            let mut state = model.new_state();
            let batched = model.forward(&mut state, &tokens, LogitsMode::All).unwrap();
            assert!(batched.iter().all(|x| x.is_finite()));
            let mut state = model.new_state();
            let mut stepwise = Vec::new();
            for &t in &tokens {
                stepwise.extend(model.forward(&mut state, &[t], LogitsMode::All).unwrap());
            }
            assert!(batched.iter().zip(&stepwise).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
