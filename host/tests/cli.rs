//! The `saguaro` binary as users and outside checks call it: exact output shapes, and a
//! clear message with exit status 1 (never a panic) for every kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn saguaro(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_saguaro")).args(args).output().expect("run saguaro")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

fn reference(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

fn join(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// Runs saguaro expecting failure: exit status 1, an `error:` line naming `needle`, no panic.
fn assert_clean_error(args: &[&str], needle: &str) {
    let out = saguaro(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "args {args:?}: stderr {stderr}");
    assert!(stderr.starts_with("error: "), "args {args:?}: stderr {stderr}");
    assert!(stderr.contains(needle), "args {args:?}: expected `{needle}` in {stderr}");
    assert!(!stderr.contains("panicked"), "args {args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "args {args:?}: printed output on failure");
}

#[test]
fn logits_prints_one_row_per_position_matching_transformers() {
    let r = reference("hybrid-gqa");
    let prompt = ids(&r["prompt"]);
    let model = fixture("hybrid-gqa");
    let out = saguaro(&["logits", "--model", model.to_str().unwrap(), "--tokens", &join(&prompt)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = json["logits"].as_array().unwrap();
    let want = r["prompt_logits"].as_array().unwrap();
    assert_eq!(rows.len(), prompt.len());
    for (got, want) in rows.iter().zip(want) {
        let (got, want) = (got.as_array().unwrap(), want.as_array().unwrap());
        assert_eq!(got.len(), 397);
        for (g, w) in got.iter().zip(want) {
            assert!((g.as_f64().unwrap() - w.as_f64().unwrap()).abs() <= 1e-4);
        }
    }
}

#[test]
fn generate_json_prints_the_greedy_tokens() {
    for name in ["sharded-allattn", "bf16-convbias"] {
        let r = reference(name);
        let model = fixture(name);
        let out = saguaro(&[
            "generate", "--model", model.to_str().unwrap(), "--tokens", &join(&ids(&r["prompt"])),
            "--max-tokens", "16", "--temperature", "0", "--json",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(ids(&json["tokens"]), ids(&r["greedy"]), "{name}");
    }
}

#[test]
fn bad_tokens_are_clean_errors() {
    let model = fixture("hybrid-gqa");
    let m = model.to_str().unwrap();
    assert_clean_error(&["logits", "--model", m, "--tokens", ""], "empty");
    assert_clean_error(&["logits", "--model", m, "--tokens", "1,x,3"], "`x` is not a token id");
    assert_clean_error(&["logits", "--model", m, "--tokens", "1,397"], "token id 397");
    assert_clean_error(&["generate", "--model", m, "--tokens", "5,99999", "--json"], "out of range");
    assert_clean_error(&["generate", "--model", m, "--tokens", "5", "--temperature", "-1"], "temperature");
    assert_clean_error(&["logits", "--model", "/nonexistent/model", "--tokens", "1"], "no such file");
}

/// Copies a fixture into a temporary folder so a test can damage it.
struct Scratch(PathBuf);

impl Scratch {
    fn copy_of(name: &str, tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("saguaro-cli-{}-{name}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(fixture(name)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        Scratch(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn edit_config(&self, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
        let p = self.0.join("config.json");
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        edit(v.as_object_mut().unwrap());
        std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn bad_configs_are_clean_errors() {
    let s = Scratch::copy_of("hybrid-gqa", "missing");
    s.edit_config(|c| {
        c.remove("num_attention_heads");
    });
    assert_clean_error(&["logits", "--model", s.path(), "--tokens", "1"], "`num_attention_heads`");

    let s = Scratch::copy_of("hybrid-gqa", "malformed");
    s.edit_config(|c| {
        c.insert("hidden_size".into(), "sixty-four".into());
    });
    assert_clean_error(&["logits", "--model", s.path(), "--tokens", "1"], "`hidden_size`");

    let s = Scratch::copy_of("hybrid-gqa", "layertype");
    s.edit_config(|c| {
        c.insert("layer_types".into(), serde_json::json!(["conv", "conv", "mamba", "conv", "full_attention", "conv"]));
    });
    assert_clean_error(&["generate", "--model", s.path(), "--tokens", "1"], "unknown layer type");

    let s = Scratch::copy_of("hybrid-gqa", "notjson");
    std::fs::write(s.0.join("config.json"), "{\"vocab_size\": 397,").unwrap();
    assert_clean_error(&["logits", "--model", s.path(), "--tokens", "1"], "not valid JSON");

    // A config that no longer matches the weights: the shape check names the tensor.
    let s = Scratch::copy_of("hybrid-gqa", "shape");
    s.edit_config(|c| {
        c.insert("vocab_size".into(), 400.into());
    });
    assert_clean_error(&["logits", "--model", s.path(), "--tokens", "1"], "model.embed_tokens.weight");
}

/// Rewrites one tensor's header entry of a safetensors file (same-length replacement).
fn patch_header(file: &Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(file).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    assert!(header.contains(from), "{from} not in header");
    let patched = header.replacen(from, to, 1);
    bytes[8..8 + header_len].copy_from_slice(patched.as_bytes());
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn bad_tensors_are_clean_errors() {
    // Missing tensor: rename it in the header.
    let s = Scratch::copy_of("hybrid-gqa", "missingtensor");
    patch_header(&s.0.join("model.safetensors"), "model.layers.3.ffn_norm.weight", "model.layers.3.ffn_norm.wxxxxx");
    assert_clean_error(&["logits", "--model", s.path(), "--tokens", "1"], "missing tensor `model.layers.3.ffn_norm.weight`");

    // Wrong dtype: F32 data relabelled as I32 (same element size, so the file stays valid).
    let s = Scratch::copy_of("hybrid-gqa", "dtype");
    let file = s.0.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    let key = "\"model.embedding_norm.weight\":{\"dtype\":\"F32\"";
    assert!(header.contains(key), "unexpected header layout: {}", &header[..200]);
    patch_header(&file, key, "\"model.embedding_norm.weight\":{\"dtype\":\"I32\"");
    assert_clean_error(&["logits", "--model", s.path(), "--tokens", "1"], "dtype");

    // Truncated weights file.
    let s = Scratch::copy_of("hybrid-gqa", "truncated");
    let file = s.0.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_error(&["logits", "--model", s.path(), "--tokens", "1"], "safetensors");

    // Missing shard of a sharded checkpoint.
    let s = Scratch::copy_of("sharded-allattn", "shard");
    std::fs::remove_file(s.0.join("model-00002-of-00003.safetensors")).unwrap();
    assert_clean_error(&["logits", "--model", s.path(), "--tokens", "1"], "model-00002-of-00003.safetensors");
}

#[test]
fn convert_info_and_hostile_cact_files() {
    let dir = std::env::temp_dir().join(format!("saguaro-cli-cact-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = fixture("mqa-headdim");
    let r = reference("mqa-headdim");
    for quant in ["f32", "f16", "int8", "int4"] {
        let out = dir.join(format!("m-{quant}.cact"));
        let o = saguaro(&["convert", model.to_str().unwrap(), "-o", out.to_str().unwrap(), "--quant", quant, "--quiet"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let info = saguaro(&["info", out.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&info.stdout);
        assert!(info.status.success() && text.contains("parameters") && text.contains("model.embed_tokens.weight"), "{text}");
    }
    // The f32 file gives transformers' greedy tokens.
    let f32_path = dir.join("m-f32.cact");
    let o = saguaro(&["generate", "--model", f32_path.to_str().unwrap(), "--tokens", &join(&ids(&r["prompt"])), "--max-tokens", "16", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ids(&json["tokens"]), ids(&r["greedy"]));

    let good = std::fs::read(dir.join("m-int8.cact")).unwrap();
    let bad = dir.join("bad.cact");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (good[..good.len() / 2].to_vec(), "header says"),
        (good[..40].to_vec(), "shorter than"),
        ({ let mut b = good.clone(); b[0] = b'X'; b }, "not a .cact file"),
        ({ let mut b = good.clone(); b[4] = 9; b }, "version 9"),
        ({ let mut b = good.clone(); b[70] = b'#'; b }, "manifest"),
    ];
    for (bytes, needle) in cases {
        std::fs::write(&bad, &bytes).unwrap();
        assert_clean_error(&["logits", "--model", bad.to_str().unwrap(), "--tokens", "1,2"], needle);
        let info = saguaro(&["info", bad.to_str().unwrap()]);
        assert_eq!(info.status.code(), Some(1));
    }
    // A failed conversion leaves no output behind.
    let out = dir.join("never.cact");
    assert_clean_error(&["convert", "/nonexistent", "-o", out.to_str().unwrap()], "no such file");
    assert_clean_error(&["convert", model.to_str().unwrap(), "-o", out.to_str().unwrap(), "--quant", "int3"], "unknown quantization");
    assert!(!out.exists());
    assert_clean_error(&["synth", "--shape", "gpt-2", "-o", out.to_str().unwrap()], "unknown shape");
    std::fs::remove_dir_all(&dir).unwrap();
}
