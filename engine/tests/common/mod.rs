//! Cross-platform determinism check shared by the engine test (portable kernels: scalar on
//! native, simd128 in wasm) and the host test (every native SIMD tier, also under qemu):
//! each fixture, converted to f32/f16/int8/int4, runs its prompt plus four greedy decode
//! steps; the bits of every logit are hashed (FNV-1a 64). All platforms and tiers must give
//! the digests recorded in tests/fixtures/digests.json (written by the scalar tier, see
//! `SAGUARO_WRITE_DIGESTS`). Correctness against transformers is tested elsewhere; this
//! checks that every host computes the same bits.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use saguaro_engine::convert::{convert, Extras, Quant};
use saguaro_engine::format::CactFile;
use saguaro_engine::kernels::Kernels;
use saguaro_engine::math::argmax;
use saguaro_engine::storage::AlignedBytes;
use saguaro_engine::weights::safetensors::{shard_files_from_index, SafetensorsSource};
use saguaro_engine::{LogitsMode, Model};

pub const DIGEST_FIXTURES: &[&str] =
    &["hybrid-gqa", "mqa-headdim", "bf16-convbias", "sharded-allattn", "conv-heavy", "moe-e4k2", "moe-e6k3"];
pub const QUANTS: &[(&str, Quant)] = &[("f32", Quant::F32), ("f16", Quant::F16), ("int8", Quant::Int8), ("int4", Quant::Int4)];

/// tests/fixtures; `SAGUARO_FIXTURES_DIR` overrides it (the wasm runner resolves `..` through
/// symlinks lexically, so scripts/test-wasm-kernels.sh passes the absolute path).
pub fn fixtures_dir() -> PathBuf {
    match std::env::var("SAGUARO_FIXTURES_DIR") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures"),
    }
}

fn fnv(bits: impl Iterator<Item = u32>) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bits {
        for byte in b.to_le_bytes() {
            h = (h ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The f32 .cact bytes... of a fixture folder, converted with `quant`.
pub fn fixture_model(name: &str, quant: Quant) -> (Model, Vec<u32>) {
    let dir = fixtures_dir().join(name);
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let prompt: Vec<u32> = reference["prompt"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let files = if dir.join("model.safetensors.index.json").exists() {
        shard_files_from_index(&std::fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap()).unwrap()
    } else {
        vec!["model.safetensors".to_string()]
    };
    let buffers: Vec<(String, Vec<u8>)> = files.iter().map(|f| (f.clone(), std::fs::read(dir.join(f)).unwrap())).collect();
    let shards: Vec<(String, &[u8])> = buffers.iter().map(|(n, b)| (n.clone(), b.as_slice())).collect();
    let source = SafetensorsSource::new(&shards).unwrap();
    let bytes = convert(&config, &source, quant, &Extras::default(), Vec::new(), &mut |_, _, _| {}).unwrap();
    let file = CactFile::parse(AlignedBytes::copy_from(&bytes).into_blob()).unwrap();
    (Model::from_cact(&file).unwrap(), prompt)
}

/// Digest of one model run: prompt logits (batched) then 4 greedy decode steps.
pub fn run_digest(model: &Model, prompt: &[u32]) -> String {
    let mut state = model.new_state();
    let mut all = model.forward(&mut state, prompt, LogitsMode::All).unwrap();
    let vocab = model.config.vocab_size;
    for _ in 0..4 {
        let next = argmax(&all[all.len() - vocab..]) as u32;
        all.extend(model.forward(&mut state, &[next], LogitsMode::All).unwrap());
    }
    fnv(all.iter().map(|v| v.to_bits()))
}

/// `fixture/quant` -> digest, with the given kernels.
pub fn digests(kernels: Kernels) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in DIGEST_FIXTURES {
        for (qname, quant) in QUANTS {
            let (mut model, prompt) = fixture_model(name, *quant);
            model.set_kernels(kernels);
            out.insert(format!("{name}/{qname}"), run_digest(&model, &prompt));
        }
    }
    out
}

pub fn recorded() -> BTreeMap<String, String> {
    let path = fixtures_dir().join("digests.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run with SAGUARO_WRITE_DIGESTS=1)", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Compares with the recorded digests; with SAGUARO_WRITE_DIGESTS=1 (scalar only) records them.
pub fn check(tier: &str, got: &BTreeMap<String, String>) {
    if tier == "scalar" && std::env::var("SAGUARO_WRITE_DIGESTS").is_ok_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(got).unwrap();
        std::fs::write(fixtures_dir().join("digests.json"), text + "\n").unwrap();
        return;
    }
    let want = recorded();
    let mut bad = Vec::new();
    for (k, v) in &want {
        if got.get(k) != Some(v) {
            bad.push(k.clone());
        }
    }
    assert!(bad.is_empty(), "tier {tier}: logits differ from the recorded bits for {bad:?}");
}
