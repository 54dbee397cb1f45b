//! Helpers shared by the cross-surface tests: where the fixtures live and what their
//! reference outputs (computed by transformers, see fixtures/make_fixtures.py) contain.

use std::path::PathBuf;

use serde::Deserialize;

/// Absolute tolerance on logits against transformers (logits are of order 1-10).
pub const LOGIT_TOLERANCE: f32 = 1e-4;

/// Every fixture model folder, by name.
pub const FIXTURES: &[&str] =
    &["hybrid-gqa", "mqa-headdim", "bf16-convbias", "sharded-allattn", "conv-heavy", "realistic-hybrid"];

/// The Llama and Gemma 3 fixture folders (fixtures/make_llama_gemma_fixtures.py), checked by
/// tests/llama_gemma.rs.
pub const FAMILY_FIXTURES: &[&str] = &["llama-gqa", "llama-bias-untied", "gemma3-sliding", "gemma3-softcap-mqa"];

/// The LFM2-MoE fixture folders (Lfm2MoeForCausalLM): tests/moe.rs checks their f32 paths,
/// tests/quant_accuracy.rs their quantized ones (against fake-quant ideals with per-expert scales).
pub const MOE_FIXTURES: &[&str] = &["moe-e4k2", "moe-e6k3", "moe-realistic"];

/// The folder holding the fixtures.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// One fixture's model folder.
pub fn fixture_path(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// `reference.json` of a fixture, as written by transformers.
#[derive(Debug, Deserialize)]
pub struct Reference {
    pub description: String,
    pub transformers_version: String,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Logits of each prompt position from one batched forward pass, `[P][V]`.
    pub prompt_logits: Vec<Vec<f32>>,
    /// Greedy continuation (16 ids) from `model.generate` with the cache.
    pub greedy: Vec<u32>,
    /// Logits of each position of `prompt + greedy[..15]` from one batched pass.
    pub full_logits: Vec<Vec<f32>>,
    /// The ideal results of each storage scheme (f16, int8, int4): PyTorch with
    /// fake-quantized weights and activations, see fixtures/README.md. Empty for the Llama /
    /// Gemma fixtures (their quantized paths are judged against f32 with thresholds).
    #[serde(default)]
    pub quant: std::collections::HashMap<String, QuantReference>,
}

/// The ideal prompt logits of one quantization scheme and their error against f32.
#[derive(Debug, Deserialize)]
pub struct QuantReference {
    pub prompt_logits: Vec<Vec<f32>>,
    pub error_vs_f32: ErrorStats,
}

/// How far some logits are from the f32 reference.
#[derive(Debug, Deserialize, Clone, Copy)]
pub struct ErrorStats {
    pub max_abs: f64,
    pub min_cosine: f64,
    pub top1_agreement: f64,
}

/// Error statistics of `got` ([P * V] flat) against reference rows.
pub fn error_stats(got: &[f32], want: &[Vec<f32>]) -> ErrorStats {
    let vocab = want[0].len();
    let mut stats = ErrorStats { max_abs: 0.0, min_cosine: 1.0, top1_agreement: 0.0 };
    let mut agree = 0;
    for (g, w) in got.chunks_exact(vocab).zip(want) {
        let (mut dot, mut gg, mut ww) = (0.0f64, 0.0f64, 0.0f64);
        for (&a, &b) in g.iter().zip(w) {
            stats.max_abs = stats.max_abs.max((a as f64 - b as f64).abs());
            dot += a as f64 * b as f64;
            gg += a as f64 * a as f64;
            ww += b as f64 * b as f64;
        }
        stats.min_cosine = stats.min_cosine.min(dot / (gg.sqrt() * ww.sqrt()).max(1e-30));
        if saguaro_engine::math::argmax(g) == saguaro_engine::math::argmax(w) {
            agree += 1;
        }
    }
    stats.top1_agreement = agree as f64 / want.len() as f64;
    stats
}

impl Reference {
    pub fn load(name: &str) -> Reference {
        let path = fixture_path(name).join("reference.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// `prompt + greedy[..len-1]`: the sequence whose logits are `full_logits`.
    pub fn full_sequence(&self) -> Vec<u32> {
        let mut seq = self.prompt.clone();
        seq.extend_from_slice(&self.greedy[..self.greedy.len() - 1]);
        seq
    }
}

/// Largest absolute difference between two logit rows; panics on length mismatch.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "row lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Asserts that each row of `got` ([rows * V] flat) is within `LOGIT_TOLERANCE` of `want`.
pub fn assert_rows_close(what: &str, got: &[f32], want: &[Vec<f32>]) {
    let vocab = want[0].len();
    assert_eq!(got.len(), want.len() * vocab, "{what}: wrong number of logits");
    for (i, (g, w)) in got.chunks_exact(vocab).zip(want).enumerate() {
        let diff = max_abs_diff(g, w);
        assert!(diff <= LOGIT_TOLERANCE, "{what}: position {i} differs from transformers by {diff}");
    }
}
