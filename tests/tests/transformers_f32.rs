//! The f32 forward pass against transformers on every LFM2 fixture: logits within 1e-4 at
//! every position and identical greedy tokens, through batched prefill, token-by-token decode,
//! and prefill of a prefix followed by decode of the rest (`check_against_transformers`);
//! what each fixture covers; long prompts in chunks.

use saguaro_engine::{LogitsMode, Model};
use saguaro_tests::{check_against_transformers, fixture_path, Reference, FIXTURES, LOGIT_TOLERANCE};

fn load(name: &str) -> (Model, Reference) {
    let model = saguaro_host::load_model(&fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    (model, Reference::load(name))
}

#[test]
fn every_fixture_matches_transformers() {
    for name in FIXTURES {
        check_against_transformers(name, LOGIT_TOLERANCE);
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
