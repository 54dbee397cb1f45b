//! The f32 forward pass against transformers on every fixture: logits within 1e-4 at every
//! position and identical greedy tokens, through batched prefill, token-by-token decode,
//! and prefill of a prefix followed by decode of the rest.

use saguaro_engine::generate::{generate, GenerateOptions};
use saguaro_engine::{LogitsMode, Model};
use saguaro_tests::{assert_rows_close, fixture_path, Reference, FIXTURES};

fn load(name: &str) -> (Model, Reference) {
    let model = saguaro_host::load_model(&fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    (model, Reference::load(name))
}

#[test]
fn batched_prefill_matches_transformers() {
    for name in FIXTURES {
        let (model, reference) = load(name);
        let mut state = model.new_state();
        let logits = model.forward(&mut state, &reference.prompt, LogitsMode::All).unwrap();
        assert_rows_close(&format!("{name} prompt"), &logits, &reference.prompt_logits);

        let mut state = model.new_state();
        let logits = model.forward(&mut state, &reference.full_sequence(), LogitsMode::All).unwrap();
        assert_rows_close(&format!("{name} full"), &logits, &reference.full_logits);
    }
}

#[test]
fn token_by_token_decode_matches_transformers_and_batched_bits() {
    for name in FIXTURES {
        let (model, reference) = load(name);
        let seq = reference.full_sequence();
        let mut batched_state = model.new_state();
        let batched = model.forward(&mut batched_state, &seq, LogitsMode::All).unwrap();

        let mut state = model.new_state();
        let mut stepwise = Vec::new();
        for &tok in &seq {
            stepwise.extend(model.forward(&mut state, &[tok], LogitsMode::All).unwrap());
        }
        assert_rows_close(&format!("{name} decode"), &stepwise, &reference.full_logits);
        // Same per-token arithmetic: bit-identical to the batched pass, and same state.
        assert!(batched.iter().zip(&stepwise).all(|(a, b)| a.to_bits() == b.to_bits()), "{name}: decode bits differ from prefill");
        assert_eq!(state, batched_state, "{name}: states differ");
    }
}

#[test]
fn prefix_prefill_then_decode_matches() {
    for name in FIXTURES {
        let (model, reference) = load(name);
        let seq = reference.full_sequence();
        for split in [1, 2, 3, reference.prompt.len() / 2, reference.prompt.len()] {
            let mut state = model.new_state();
            let mut logits = model.forward(&mut state, &seq[..split], LogitsMode::All).unwrap();
            for &tok in &seq[split..] {
                logits.extend(model.forward(&mut state, &[tok], LogitsMode::All).unwrap());
            }
            assert_rows_close(&format!("{name} split at {split}"), &logits, &reference.full_logits);
        }
        // Two prefill chunks, then decode.
        let mut state = model.new_state();
        let mid = reference.prompt.len() / 2;
        let mut logits = model.forward(&mut state, &seq[..mid], LogitsMode::All).unwrap();
        logits.extend(model.forward(&mut state, &seq[mid..reference.prompt.len()], LogitsMode::All).unwrap());
        for &tok in &seq[reference.prompt.len()..] {
            logits.extend(model.forward(&mut state, &[tok], LogitsMode::All).unwrap());
        }
        assert_rows_close(&format!("{name} chunked"), &logits, &reference.full_logits);
    }
}

#[test]
fn greedy_continuation_is_identical() {
    for name in FIXTURES {
        let (model, reference) = load(name);
        let opts = GenerateOptions { max_tokens: reference.greedy.len(), ..GenerateOptions::default() };
        let mut state = model.new_state();
        let tokens = generate(&model, &mut state, &reference.prompt, &opts, |_| true).unwrap();
        assert_eq!(tokens, reference.greedy, "{name}: greedy continuation");

        // Prefill part of the prompt first, then generate from the rest.
        let mut state = model.new_state();
        let mid = reference.prompt.len() / 2;
        model.forward(&mut state, &reference.prompt[..mid], LogitsMode::None).unwrap();
        let tokens = generate(&model, &mut state, &reference.prompt[mid..], &opts, |_| true).unwrap();
        assert_eq!(tokens, reference.greedy, "{name}: greedy after a prefix");
    }
}

#[test]
fn fixtures_cover_what_they_claim() {
    use saguaro_engine::LayerKind::{Attention, Conv};
    let cfg = |n: &str| load(n).0.config;
    let c = cfg("mqa-headdim");
    assert_eq!((c.num_kv_heads, c.head_dim, c.rope_theta), (1, 12, 10000.0));
    assert_eq!(c.layer_kinds, vec![Conv, Attention, Conv, Attention, Conv]);
    let c = cfg("sharded-allattn");
    assert!(c.layer_kinds.iter().all(|k| *k == Attention));
    assert_eq!(c.rope_theta, 500000.0);
    let c = cfg("bf16-convbias");
    assert!(c.conv_bias);
    assert_eq!(c.ffn_dim, 224);
    assert_eq!(cfg("hybrid-gqa").ffn_dim, 192);
    assert_eq!(cfg("conv-heavy").ffn_dim, 256);
}

#[test]
fn long_prompts_are_chunked_without_changing_bits() {
    // 600 tokens: three prefill chunks. Same bits as feeding 100-token pieces.
    let (model, _) = load("hybrid-gqa");
    let prompt: Vec<u32> = (0..600u32).map(|i| (i * 7919 + 13) % 397).collect();
    let all = model.forward(&mut model.new_state(), &prompt, LogitsMode::All).unwrap();
    let mut state = model.new_state();
    let mut pieces = Vec::new();
    for chunk in prompt.chunks(100) {
        pieces.extend(model.forward(&mut state, chunk, LogitsMode::All).unwrap());
    }
    assert!(all.iter().zip(&pieces).all(|(a, b)| a.to_bits() == b.to_bits()));
    let last = model.forward(&mut model.new_state(), &prompt, LogitsMode::Last).unwrap();
    assert_eq!(last[..], all[all.len() - 397..]);
}
