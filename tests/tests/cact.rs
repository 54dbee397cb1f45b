//! The .cact file: conversion round trips, in-place loading, and hostile files.

use proptest::prelude::*;
use saguaro_engine::convert::{convert, Quant};
use saguaro_engine::format::{CactFile, ALIGNMENT, MAGIC};
use saguaro_engine::storage::AlignedBytes;
use saguaro_engine::{LogitsMode, Model};
use saguaro_host::loader::HfFolder;
use saguaro_tests::{assert_rows_close, fixture_path, Reference, FIXTURES};

/// Converts a fixture folder to .cact bytes in memory.
fn cact_bytes(name: &str, quant: Quant) -> Vec<u8> {
    let folder = HfFolder::open(&fixture_path(name)).unwrap();
    let source = folder.source().unwrap();
    convert(&folder.config, &source, quant, &folder.extras(), Vec::new(), &mut |_, _, _| {}).unwrap()
}

fn open(bytes: &[u8]) -> saguaro_engine::Result<Model> {
    let file = CactFile::parse(AlignedBytes::copy_from(bytes).into_blob())?;
    Model::from_cact(&file)
}

#[test]
fn f32_cact_matches_transformers_and_the_folder_bit_for_bit() {
    for name in FIXTURES {
        let reference = Reference::load(name);
        let model = open(&cact_bytes(name, Quant::F32)).unwrap();
        let from_folder = saguaro_host::load_model(&fixture_path(name)).unwrap();
        let a = model.forward(&mut model.new_state(), &reference.prompt, LogitsMode::All).unwrap();
        let b = from_folder.forward(&mut from_folder.new_state(), &reference.prompt, LogitsMode::All).unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{name}");
        assert_rows_close(name, &a, &reference.prompt_logits);
    }
}

#[test]
fn header_magic_and_alignment_of_every_tensor() {
    for quant in [Quant::F32, Quant::F16, Quant::Int8, Quant::Int4] {
        let bytes = cact_bytes("conv-heavy", quant);
        assert_eq!(&bytes[..4], b"CACT");
        assert_eq!(u32::from_le_bytes(bytes[..4].try_into().unwrap()), MAGIC);
        let file = CactFile::parse(AlignedBytes::copy_from(&bytes).into_blob()).unwrap();
        for t in &file.manifest.tensors {
            assert_eq!(t.data.offset % ALIGNMENT as u64, 0, "{}", t.name);
            if let Some(s) = t.scales {
                assert_eq!(s.offset % ALIGNMENT as u64, 0, "{} scales", t.name);
            }
        }
    }
}

#[test]
fn mmap_loading_reads_in_place_and_matches_memory() {
    let dir = std::env::temp_dir().join(format!("saguaro-cact-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.cact");
    let bytes = cact_bytes("hybrid-gqa", Quant::Int8);
    std::fs::write(&path, &bytes).unwrap();
    let mapped = saguaro_host::load_model(&path).unwrap();
    let in_memory = open(&bytes).unwrap();
    let prompt = Reference::load("hybrid-gqa").prompt;
    let a = mapped.forward(&mut mapped.new_state(), &prompt, LogitsMode::All).unwrap();
    let b = in_memory.forward(&mut in_memory.new_state(), &prompt, LogitsMode::All).unwrap();
    assert_eq!(a, b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn converting_streams_without_changing_bits() {
    // The same conversion twice gives the same file (deterministic writer and quantizer).
    assert_eq!(cact_bytes("bf16-convbias", Quant::Int4), cact_bytes("bf16-convbias", Quant::Int4));
}

/// Opening must never panic: every outcome is Ok or a clean error. When the file opens, a
/// forward pass must not panic either (flipped weight bytes only change numbers).
fn open_and_run(bytes: &[u8]) {
    if let Ok(model) = open(bytes) {
        let _ = model.forward(&mut model.new_state(), &[1, 2, 3], LogitsMode::Last);
    }
}

#[test]
fn every_truncation_is_a_clean_error() {
    let bytes = cact_bytes("sharded-allattn", Quant::Int8);
    for cut in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
        let err = open(&bytes[..cut]).err().expect("truncated file must not open");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn header_fields_are_validated() {
    let good = cact_bytes("hybrid-gqa", Quant::Int8);
    let patch = |at: usize, value: &[u8]| {
        let mut b = good.clone();
        b[at..at + value.len()].copy_from_slice(value);
        open(&b).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(patch(0, b"GGUF").contains("magic"));
    assert!(patch(4, &2u32.to_le_bytes()).contains("version 2"));
    assert!(patch(12, &3u32.to_le_bytes()).contains("alignment"));
    assert!(patch(24, &u64::MAX.to_le_bytes()).contains("manifest"));
    assert!(patch(32, &7u64.to_le_bytes()).contains("data offset"));
    assert!(patch(40, &1u64.to_le_bytes()).contains("header says"));
    let mut padded = good.clone();
    padded.push(0);
    assert!(open(&padded).is_err());
}

#[test]
fn manifest_lies_are_caught() {
    let good = cact_bytes("hybrid-gqa", Quant::Int4);
    let file = CactFile::parse(AlignedBytes::copy_from(&good).into_blob()).unwrap();
    let manifest_len = u64::from_le_bytes(good[24..32].try_into().unwrap()) as usize;
    let text = std::str::from_utf8(&good[64..64 + manifest_len]).unwrap().to_string();
    let first = &file.manifest.tensors[0];
    let second = &file.manifest.tensors[1];
    // Same-length textual edits keep the header valid so the manifest checks are reached.
    let cases = [
        (format!("\"offset\":{}", second.data.offset), format!("\"offset\":{}", first.data.offset), "overlaps"),
        ("\"dtype\":\"q4\"".to_string(), "\"dtype\":\"q8\"".to_string(), "bytes"),
        ("\"layout\":\"r16k4\"".to_string(), "\"layout\":\"plain\"".to_string(), "not valid"),
        ("model.embed_tokens.weight".to_string(), "model.embed_tokens.wxxxxx".to_string(), "missing tensor"),
    ];
    for (from, to, needle) in cases {
        assert!(text.contains(&from), "{from}");
        let edited = text.replacen(&from, &to, 1);
        let mut bytes = good.clone();
        if edited.len() == text.len() {
            bytes[64..64 + manifest_len].copy_from_slice(edited.as_bytes());
        } else {
            continue; // lengths differ (offset digits): covered by the fuzz properties
        }
        let err = open(&bytes).err().unwrap_or_else(|| panic!("{from} -> {to} should fail")).to_string();
        assert!(err.contains(needle), "{from} -> {to}: {err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn bit_flips_never_panic(flips in proptest::collection::vec((0usize..1 << 20, 0u8..8), 1..8)) {
        let mut bytes = cact_bytes("mqa-headdim", Quant::Int8);
        let n = bytes.len();
        for (at, bit) in flips {
            // Bias half the flips into the header and manifest, where structure lives.
            let at = if at % 2 == 0 { at % 2048.min(n) } else { at % n };
            bytes[at] ^= 1 << bit;
        }
        open_and_run(&bytes);
    }

    #[test]
    fn truncation_plus_flips_never_panic(cut in 0usize..1 << 20, at in 0usize..4096, bit in 0u8..8) {
        let mut bytes = cact_bytes("mqa-headdim", Quant::Int4);
        let cut = cut % bytes.len();
        bytes.truncate(cut.max(1));
        let i = at % bytes.len();
        bytes[i] ^= 1 << bit;
        open_and_run(&bytes);
    }
}
