//! `saguaro convert` of quantized GGUF files: matrices the file's own recipe kept finer than
//! its main type (llama.cpp's 4-bit files keep the token embedding at Q8_0) stay int8 in an
//! int4 conversion instead of being rounded a second time; everything else gets the requested
//! dtype.

use std::path::PathBuf;

use saguaro_engine::convert::Quant;
use saguaro_engine::format::{CactFile, TensorDType};
use saguaro_engine::storage::AlignedBytes;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)
}

/// Converts a fixture GGUF and returns each tensor's (name, dtype).
fn converted_dtypes(gguf: &str, quant: Quant) -> Vec<(String, TensorDType)> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.cact");
    saguaro_host::convert::convert_path(&fixture(gguf), &out, quant, false).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let file = CactFile::parse(AlignedBytes::copy_from(&bytes).into_blob()).unwrap();
    file.manifest.tensors.iter().map(|t| (t.name.clone(), t.dtype)).collect()
}

fn matrices(dtypes: &[(String, TensorDType)]) -> Vec<&(String, TensorDType)> {
    dtypes.iter().filter(|(_, d)| *d != TensorDType::F32).collect()
}

#[test]
fn int4_keeps_the_q8_0_embedding_of_a_q4_0_file_at_int8() {
    let dtypes = converted_dtypes("gguf/hybrid-gqa-q4_0.gguf", Quant::Int4);
    let m = matrices(&dtypes);
    assert!(m.len() > 20, "{m:?}");
    for (name, dtype) in m {
        let want = if name == "model.embed_tokens.weight" { TensorDType::Q8 } else { TensorDType::Q4 };
        assert_eq!(*dtype, want, "{name}");
    }
    // int8 and finer are not affected.
    assert!(matrices(&converted_dtypes("gguf/hybrid-gqa-q4_0.gguf", Quant::Int8)).iter().all(|(_, d)| *d == TensorDType::Q8));
}

#[test]
fn a_uniform_file_converts_every_matrix_to_the_requested_dtype() {
    // Q8_0 throughout (embedding included): int4 everywhere, as asked.
    for gguf in ["gguf/hybrid-gqa-q8_0.gguf", "gguf/llama-gqa-q8_0.gguf", "gguf/hybrid-gqa-f16.gguf"] {
        let dtypes = converted_dtypes(gguf, Quant::Int4);
        let m = matrices(&dtypes);
        assert!(!m.is_empty());
        assert!(m.iter().all(|(_, d)| *d == TensorDType::Q4), "{gguf}: {m:?}");
    }
}
