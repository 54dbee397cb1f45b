//! Accuracy of the f16, INT8 and INT4 storage schemes, judged two ways (issue 3, item 9):
//! (a) on the realistic-scale fixture against transformers' f32 logits with fixed
//!     thresholds; (b) on every fixture against the ideal of the scheme (PyTorch with
//!     fake-quantized weights and activations): the engine must be no further from f32 than
//!     that ideal, within a stated margin, and close to the ideal itself.

use saguaro_engine::convert::{convert, Quant};
use saguaro_engine::format::CactFile;
use saguaro_engine::storage::AlignedBytes;
use saguaro_engine::{LogitsMode, Model};
use saguaro_host::loader::HfFolder;
use saguaro_tests::{error_stats, fixture_path, ErrorStats, Reference, FIXTURES, MOE_FIXTURES};

fn prompt_logits(name: &str, quant: Quant, prompt: &[u32]) -> Vec<f32> {
    let folder = HfFolder::open(&fixture_path(name)).unwrap();
    let source = folder.source().unwrap();
    let bytes = convert(&folder.config, &source, quant, &folder.extras(), Vec::new(), &mut |_, _, _| {}).unwrap();
    let file = CactFile::parse(AlignedBytes::copy_from(&bytes).into_blob()).unwrap();
    let model = Model::from_cact(&file).unwrap();
    model.forward(&mut model.new_state(), prompt, LogitsMode::All).unwrap()
}

fn scheme(q: Quant) -> &'static str {
    match q {
        Quant::F16 => "f16",
        Quant::Int8 => "int8",
        Quant::Int4 => "int4",
        Quant::F32 => unreachable!(),
    }
}

#[test]
fn realistic_scale_meets_the_thresholds() {
    // The dense and the mixture-of-experts realistic fixtures, same thresholds. Measured on
    // 2026-11-22 (moe-realistic, engine vs transformers f32): f16 cosine 1.000000, int8
    // 0.99991, int4 0.9829; top-1 agreement 1.0 for all.
    for name in ["realistic-hybrid", "moe-realistic"] {
        let r = Reference::load(name);
        // (scheme, min cosine, min top-1 agreement) against transformers f32.
        for (quant, cosine, top1) in [(Quant::F16, 0.9999, 1.0), (Quant::Int8, 0.999, 0.95), (Quant::Int4, 0.97, 0.90)] {
            let s = error_stats(&prompt_logits(name, quant, &r.prompt), &r.prompt_logits);
            eprintln!("{name} {}: {s:?}", scheme(quant));
            assert!(s.min_cosine >= cosine, "{name} {}: min cosine {} < {cosine}", scheme(quant), s.min_cosine);
            assert!(s.top1_agreement >= top1, "{name} {}: top-1 {} < {top1}", scheme(quant), s.top1_agreement);
        }
    }
}

/// Margins on (b). The ideal rounds activation codes from values computed by PyTorch's own
/// kernels, so near-ties of `x * 127 / amax` can round the other way than in the engine and
/// the difference propagates; the fixtures with amplifying (gain 2) random weights turn that
/// into visible logit differences. Measured on 2026-11-22: engine-vs-ideal cosine >= 0.99994
/// on every fixture and scheme (1.000000 on most); the margins leave a little room without
/// hiding a wrong scheme (a missing activation quantization or another scale rounding gives
/// far lower cosines).
fn margins(quant: Quant) -> (f64, f64) {
    match quant {
        // (allowed loss of min cosine vs f32 beyond the ideal's, min cosine engine vs ideal)
        Quant::F16 => (1e-5, 0.99999),
        Quant::Int8 => (0.001, 0.9995),
        Quant::Int4 => (0.01, 0.999),
        Quant::F32 => unreachable!(),
    }
}

#[test]
fn engine_is_no_further_from_f32_than_the_ideal_scheme() {
    for name in FIXTURES.iter().chain(MOE_FIXTURES) {
        let r = Reference::load(name);
        for quant in [Quant::F16, Quant::Int8, Quant::Int4] {
            let ideal = &r.quant[scheme(quant)];
            let got = prompt_logits(name, quant, &r.prompt);
            let vs_f32 = error_stats(&got, &r.prompt_logits);
            let vs_ideal = error_stats(&got, &ideal.prompt_logits);
            let ErrorStats { min_cosine: ideal_cos, .. } = ideal.error_vs_f32;
            let (loss, agree) = margins(quant);
            eprintln!(
                "{name} {}: engine vs f32 cos {:.6} top1 {:.3} | ideal vs f32 cos {ideal_cos:.6} | engine vs ideal cos {:.6} max {:.4}",
                scheme(quant), vs_f32.min_cosine, vs_f32.top1_agreement, vs_ideal.min_cosine, vs_ideal.max_abs
            );
            assert!(vs_f32.min_cosine >= ideal_cos - loss, "{name} {}: engine cos {} vs ideal {ideal_cos}", scheme(quant), vs_f32.min_cosine);
            assert!(vs_ideal.min_cosine >= agree, "{name} {}: engine vs ideal cos {}", scheme(quant), vs_ideal.min_cosine);
        }
    }
}
