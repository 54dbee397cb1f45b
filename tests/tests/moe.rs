//! LFM2-MoE (issue 8) against transformers' Lfm2MoeForCausalLM: logits within 1e-4 at every
//! position and identical greedy tokens through batched prefill, token-by-token decode and
//! prefix prefill + decode (`check_against_transformers`; decode is the expert-grouped
//! prefill's bits); expert-grouped prefill bit-identical to token-by-token decode
//! (every storage scheme, any thread count); int8/int4 conversions stay close to f32; the
//! router stays f32 and each expert's matrices are separate tensors.

use std::sync::Arc;

use saguaro_engine::convert::{convert, required_tensors, Quant, Role};
use saguaro_engine::format::{CactFile, TensorDType};
use saguaro_engine::parallel::Threads;
use saguaro_engine::storage::AlignedBytes;
use saguaro_engine::{Lfm2Config, LogitsMode, Model};
use saguaro_host::loader::HfFolder;
use saguaro_host::threads::{spin_pool, Pool};
use saguaro_tests::{check_against_transformers, error_stats, fixture_path, Reference, LOGIT_TOLERANCE, MOE_FIXTURES};

fn load(name: &str) -> (Model, Reference) {
    let model = saguaro_host::load_model(&fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    (model, Reference::load(name))
}

fn converted(name: &str, quant: Quant) -> (CactFile, Model) {
    let folder = HfFolder::open(&fixture_path(name)).unwrap();
    let source = folder.source().unwrap();
    let bytes = convert(&folder.config, &source, quant, &folder.extras(), Vec::new(), &mut |_, _, _| {}).unwrap();
    let file = CactFile::parse(AlignedBytes::copy_from(&bytes).into_blob()).unwrap();
    let mut model = Model::from_cact(&file).unwrap();
    model.set_kernels(saguaro_host::kernels::best());
    (file, model)
}

#[test]
fn fixtures_are_moe_models() {
    for name in MOE_FIXTURES {
        let (model, _) = load(name);
        let moe = model.config.moe.as_ref().expect("lfm2_moe config");
        assert!(moe.use_expert_bias && moe.num_dense_layers >= 1, "{name}");
        assert!(!model.config.is_moe_layer(0) && model.config.is_moe_layer(model.config.num_layers - 1));
    }
    let (model, _) = load("moe-e6k3");
    let moe = model.config.moe.as_ref().unwrap();
    assert_eq!((moe.num_experts, moe.num_experts_per_tok, moe.routed_scaling_factor), (6, 3, 1.75));
}

#[test]
fn every_fixture_matches_transformers() {
    for name in MOE_FIXTURES {
        check_against_transformers(name, LOGIT_TOLERANCE);
    }
}

fn bits(m: &Model, seq: &[u32], split: usize) -> Vec<u32> {
    let mut state = m.new_state();
    let mut out: Vec<u32> = Vec::new();
    if split > 0 {
        out.extend(m.forward(&mut state, &seq[..split], LogitsMode::All).unwrap().iter().map(|v| v.to_bits()));
    }
    for &t in &seq[split..] {
        out.extend(m.forward(&mut state, &[t], LogitsMode::All).unwrap().iter().map(|v| v.to_bits()));
    }
    out
}

#[test]
fn grouped_prefill_and_decode_are_bit_identical_for_every_scheme_and_thread_count() {
    for name in MOE_FIXTURES {
        let seq = Reference::load(name).full_sequence();
        for quant in [Quant::F32, Quant::F16, Quant::Int8, Quant::Int4] {
            let (_, mut m) = converted(name, quant);
            let want = bits(&m, &seq, 0); // token by token (split 0 = no prefill)
            assert_eq!(bits(&m, &seq, seq.len()), want, "{name} {quant:?}: batched prefill");
            assert_eq!(bits(&m, &seq, 5), want, "{name} {quant:?}: prefix prefill + decode");
            for n in [2usize, 3] {
                let pool = Arc::new(Pool::new(n).unwrap());
                m.set_threads(Threads { prefill: pool.clone(), decode: pool });
                assert_eq!(bits(&m, &seq, seq.len()), want, "{name} {quant:?}: {n} threads");
                // Decode on n threads: the chosen experts run one per thread.
                assert_eq!(bits(&m, &seq, 5), want, "{name} {quant:?}: decode on {n} threads");
                let spin = Arc::new(spin_pool(n).unwrap());
                m.set_threads(Threads { prefill: Arc::new(Pool::new(n).unwrap()), decode: spin });
                assert_eq!(bits(&m, &seq, 5), want, "{name} {quant:?}: decode on {n} threads (SpinPool)");
            }
        }
    }
}

/// These fixtures use gain-2 weights (like hybrid-gqa or conv-heavy), where quantization
/// error is amplified layer by layer: their fake-quant ideals reach int8 cosine 0.985-0.997
/// and int4 0.3-0.5. Measured here: f16 >= 0.99999, int8 0.981-0.985, int4 0.33-0.45. The
/// thresholds are set just below (int4 only checks the logits stay correlated); there is no
/// MoE fake-quant ideal yet.
#[test]
fn quantized_conversions_stay_close_to_f32() {
    for name in MOE_FIXTURES {
        let reference = Reference::load(name);
        for (quant, min_cosine) in [(Quant::F16, 0.99999), (Quant::Int8, 0.97), (Quant::Int4, 0.2)] {
            let (file, model) = converted(name, quant);
            // The router and the expert bias stay f32; expert matrices take the scheme.
            let want = match quant {
                Quant::F16 => TensorDType::F16,
                Quant::Int8 => TensorDType::Q8,
                _ => TensorDType::Q4,
            };
            let cfg = &model.config;
            let last = cfg.num_layers - 1;
            let p = format!("model.layers.{last}.feed_forward");
            assert_eq!(file.entry(&format!("{p}.gate.weight")).unwrap().dtype, TensorDType::F32);
            assert_eq!(file.entry(&format!("{p}.expert_bias")).unwrap().dtype, TensorDType::F32);
            assert_eq!(file.entry(&format!("{p}.experts.0.w2.weight")).unwrap().dtype, want);
            let logits = model.forward(&mut model.new_state(), &reference.prompt, LogitsMode::All).unwrap();
            let e = error_stats(&logits, &reference.prompt_logits);
            eprintln!("{name} {quant:?}: {e:?}");
            assert!(logits.iter().all(|v| v.is_finite()));
            assert!(e.min_cosine >= min_cosine, "{name} {quant:?}: cosine {} < {min_cosine}", e.min_cosine);
        }
    }
}

#[test]
fn required_tensors_store_each_expert_contiguously() {
    let folder = HfFolder::open(&fixture_path("moe-e4k2")).unwrap();
    let cfg = Lfm2Config::from_json(&folder.config).unwrap();
    let specs = required_tensors(&cfg);
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    // dense layer 0 keeps w1/w3/w2; MoE layers have no dense FFN matrices
    assert!(names.contains(&"model.layers.0.feed_forward.w1.weight"));
    assert!(!names.contains(&"model.layers.1.feed_forward.w1.weight"));
    assert!(!names.iter().any(|n| n.starts_with("model.layers.0.feed_forward.experts")));
    let i = names.iter().position(|&n| n == "model.layers.1.feed_forward.experts.2.w1.weight").unwrap();
    assert_eq!(
        &names[i..i + 4],
        &[
            "model.layers.1.feed_forward.experts.2.w1.weight",
            "model.layers.1.feed_forward.experts.2.w3.weight",
            "model.layers.1.feed_forward.experts.2.w2.weight",
            "model.layers.1.feed_forward.experts.3.w1.weight",
        ]
    );
    let role = |n: &str| specs.iter().find(|s| s.name == n).unwrap().role;
    assert_eq!(role("model.layers.1.feed_forward.gate.weight"), Role::Exact);
    assert_eq!(role("model.layers.1.feed_forward.expert_bias"), Role::Exact);
    assert_eq!(role("model.layers.1.feed_forward.experts.0.w2.weight"), Role::Matrix);
    let spec = specs.iter().find(|s| s.name == "model.layers.1.feed_forward.experts.0.w2.weight").unwrap();
    assert_eq!(spec.shape, vec![64, 48]);
}
