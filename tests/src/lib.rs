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

/// The largest difference between `got` ([rows * V] flat) and reference rows, and where it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorstDiff {
    /// `|got - want|` there (infinite when either value is not finite, or the values are
    /// infinities of different signs).
    pub diff: f32,
    /// Row (sequence position) and column (token id) of the worst element.
    pub position: usize,
    pub index: usize,
    pub got: f32,
    pub want: f32,
}

/// Where `got` is furthest from `want` (first occurrence on ties). Non-finite logits count as
/// infinitely far unless both sides are the same infinity, so a NaN never hides behind `max`.
/// Panics when the shapes differ.
pub fn worst_diff(what: &str, got: &[f32], want: &[Vec<f32>]) -> WorstDiff {
    let vocab = want[0].len();
    assert!(want.iter().all(|w| w.len() == vocab), "{what}: reference rows of different lengths");
    assert_eq!(got.len(), want.len() * vocab, "{what}: {} logits for {} rows of {vocab}", got.len(), want.len());
    let mut worst = WorstDiff { diff: 0.0, position: 0, index: 0, got: got[0], want: want[0][0] };
    for (position, (g, w)) in got.chunks_exact(vocab).zip(want).enumerate() {
        for (index, (&a, &b)) in g.iter().zip(w).enumerate() {
            let diff = if a.is_finite() && b.is_finite() {
                (a - b).abs()
            } else if a == b {
                0.0
            } else {
                f32::INFINITY
            };
            if diff > worst.diff {
                worst = WorstDiff { diff, position, index, got: a, want: b };
            }
        }
    }
    worst
}

/// Asserts that every logit of `got` ([rows * V] flat) is within `tolerance` of `want`,
/// naming the worst position and token id otherwise; returns the worst difference.
pub fn assert_logits_within(what: &str, got: &[f32], want: &[Vec<f32>], tolerance: f32) -> f32 {
    let w = worst_diff(what, got, want);
    assert!(
        w.diff <= tolerance,
        "{what}: position {} token {} is {} where transformers has {} (|diff| {:e} > {tolerance:e})",
        w.position,
        w.index,
        w.got,
        w.want,
        w.diff
    );
    w.diff
}

/// Asserts that each row of `got` ([rows * V] flat) is within `LOGIT_TOLERANCE` of `want`.
pub fn assert_rows_close(what: &str, got: &[f32], want: &[Vec<f32>]) {
    assert_logits_within(what, got, want, LOGIT_TOLERANCE);
}

/// Asserts two token sequences are equal, naming the first position where they differ.
fn assert_same_tokens(what: &str, got: &[u32], want: &[u32]) {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{what}: token {i} is {:?} where transformers has {:?} (got {got:?}, want {want:?})",
            got.get(i),
            want.get(i)
        );
    }
}

/// Checks one fixture's model (loaded as `saguaro_host::load_model` loads it: this CPU's best
/// kernels, prefill on every core) against its transformers reference (`reference.json`):
///
/// - logits within `tolerance` at every position and token, through one batched pass over the
///   prompt and over `prompt + greedy[..15]`;
/// - token-by-token decode of that sequence: within `tolerance`, and bit-identical to the
///   batched pass with an equal final state;
/// - prefill of a prefix (1, 2, 3, half the prompt, the whole prompt) then the rest one token at
///   a time, and in chunks of 5; the prompt prefilled in two chunks, then decode;
/// - greedy generation identical to transformers' 16 tokens, from the whole prompt and after
///   prefilling half of it.
///
/// Panics with the fixture, the step and the worst position and token id on any failure;
/// returns the largest logit difference seen.
pub fn check_against_transformers(name: &str, tolerance: f32) -> f32 {
    use saguaro_engine::generate::{generate, GenerateOptions};
    use saguaro_engine::LogitsMode;

    let model = saguaro_host::load_model(&fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let r = Reference::load(name);
    let seq = r.full_sequence();
    let p = r.prompt.len();
    assert!(p >= 4 && r.greedy.len() >= 2, "{name}: reference too short to check");
    let forward = |state: &mut saguaro_engine::State, tokens: &[u32]| {
        model.forward(state, tokens, LogitsMode::All).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let mut worst = 0.0f32;
    let mut check = |what: &str, got: &[f32], want: &[Vec<f32>]| {
        worst = worst.max(assert_logits_within(&format!("{name} {what}"), got, want, tolerance));
    };

    // One batched pass.
    check("prompt", &forward(&mut model.new_state(), &r.prompt), &r.prompt_logits);
    let mut batched_state = model.new_state();
    let batched = forward(&mut batched_state, &seq);
    check("full", &batched, &r.full_logits);

    // Token by token: the same bits as the batched pass, and the same state.
    let mut state = model.new_state();
    let mut stepwise = Vec::new();
    for &tok in &seq {
        stepwise.extend(forward(&mut state, &[tok]));
    }
    check("decode", &stepwise, &r.full_logits);
    if let Some(i) = batched.iter().zip(&stepwise).position(|(a, b)| a.to_bits() != b.to_bits()) {
        let vocab = r.full_logits[0].len();
        panic!(
            "{name}: decode differs from the batched pass in bits at position {} token {} ({} vs {})",
            i / vocab,
            i % vocab,
            stepwise[i],
            batched[i]
        );
    }
    assert!(state == batched_state, "{name}: the state after decode differs from the batched pass's");

    // A prefix prefilled, then the rest one token at a time and in chunks of 5.
    for split in [1, 2, 3, p / 2, p] {
        for step in [1, 5] {
            let mut state = model.new_state();
            let mut logits = forward(&mut state, &seq[..split]);
            for chunk in seq[split..].chunks(step) {
                logits.extend(forward(&mut state, chunk));
            }
            check(&format!("split at {split}, then {step} at a time"), &logits, &r.full_logits);
        }
    }
    // The prompt in two prefill chunks, then decode.
    let mut state = model.new_state();
    let mut logits = forward(&mut state, &seq[..p / 2]);
    logits.extend(forward(&mut state, &seq[p / 2..p]));
    for &tok in &seq[p..] {
        logits.extend(forward(&mut state, &[tok]));
    }
    check("prompt in two chunks, then decode", &logits, &r.full_logits);

    // Greedy generation, from the whole prompt and after a prefix.
    let opts = GenerateOptions { max_tokens: r.greedy.len(), ..GenerateOptions::default() };
    let tokens = generate(&model, &mut model.new_state(), &r.prompt, &opts, |_| true).unwrap();
    assert_same_tokens(&format!("{name} greedy"), &tokens, &r.greedy);
    let mut state = model.new_state();
    model.forward(&mut state, &r.prompt[..p / 2], LogitsMode::None).unwrap();
    let tokens = generate(&model, &mut state, &r.prompt[p / 2..], &opts, |_| true).unwrap();
    assert_same_tokens(&format!("{name} greedy after a prefix"), &tokens, &r.greedy);

    eprintln!("{name}: max |diff| to transformers {worst:.2e}");
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_diff_names_the_worst_position_and_token() {
        let want = vec![vec![1.0f32, 2.0, 3.0], vec![4.0, 5.0, 6.0]];
        let w = worst_diff("t", &[1.0, 2.0, 3.0, 4.0, 5.5, 6.25], &want);
        assert_eq!(w, WorstDiff { diff: 0.5, position: 1, index: 1, got: 5.5, want: 5.0 });
        let msg = std::panic::catch_unwind(|| assert_logits_within("t", &[1.0, 2.0, 3.0, 4.0, 5.5, 6.0], &want, 1e-4))
            .unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(msg.contains("position 1 token 1 is 5.5 where transformers has 5"), "{msg}");
        assert_eq!(assert_logits_within("t", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.00005], &want, 1e-4), 6.00005 - 6.0);
    }

    #[test]
    fn non_finite_logits_never_pass() {
        let want = vec![vec![1.0f32, f32::NEG_INFINITY]];
        assert_eq!(worst_diff("t", &[1.0, f32::NEG_INFINITY], &want).diff, 0.0);
        let inf = f32::INFINITY;
        for bad in [[f32::NAN, -inf], [1.0, inf], [1.0, 0.0], [inf, -inf]] {
            let w = worst_diff("t", &bad, &want);
            assert_eq!(w.diff, f32::INFINITY, "{bad:?}");
        }
        assert!(std::panic::catch_unwind(|| assert_rows_close("t", &[f32::NAN, f32::NEG_INFINITY], &want)).is_err());
    }
}
