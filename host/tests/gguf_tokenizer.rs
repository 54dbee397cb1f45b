//! Tokenizers rebuilt from GGUF metadata against llama.cpp: the ids of every text of
//! tests/fixtures/gguf-tokenizer/texts.json must equal those `llama-tokenize` printed for the same
//! file (expected.json, written by make_expected.py with the llama.cpp named in it), for the small
//! synthetic GGUFs of that folder (byte-level BPE with four pre-tokenizer types, SentencePiece BPE
//! with and without a space prefix) and for the real SmolLM2-135M-Instruct GGUF when it can be
//! had (scripts/get-smollm2.sh; skipped, saying why, otherwise). Also: hostile metadata gives
//! errors, never panics; a converted GGUF carries its tokenizer and chat template.

use std::collections::BTreeMap;
use std::path::PathBuf;

use saguaro_host::gguf::{GgufFile, GgufTokenizer, VocabKind};
use serde::Deserialize;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gguf-tokenizer")
}

#[derive(Debug, Deserialize)]
struct Expected {
    generator: String,
    models: BTreeMap<String, ExpectedModel>,
}

#[derive(Debug, Deserialize)]
struct ExpectedModel {
    file: String,
    ids: Vec<Vec<u32>>,
}

fn texts() -> Vec<String> {
    serde_json::from_slice(&std::fs::read(fixtures().join("texts.json")).unwrap()).unwrap()
}

fn expected() -> Expected {
    serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap()
}

fn tokenizer_of(path: &std::path::Path) -> GgufTokenizer {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let gguf = GgufFile::parse(&bytes).unwrap();
    gguf.tokenizer().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares every text's ids with llama-tokenize's; returns the mismatches, described.
fn mismatches(name: &str, path: &std::path::Path, want: &[Vec<u32>]) -> Vec<String> {
    let t = tokenizer_of(path);
    assert_eq!(t.skipped_merges, 0, "{name}: merges left out");
    let tok = t.load().unwrap();
    let texts = texts();
    assert_eq!(texts.len(), want.len(), "{name}: expected.json does not cover texts.json (rerun make_expected.py)");
    let mut bad = Vec::new();
    for (text, want) in texts.iter().zip(want) {
        // llama-tokenize calls llama_tokenize(add_special = the model's add_bos).
        let got = if t.add_bos { tok.encode_special(text) } else { tok.encode(text) }.unwrap();
        if &got != want {
            bad.push(format!("{name}: {text:?}\n  llama.cpp {want:?}\n  saguaro   {got:?}"));
        }
    }
    bad
}

#[test]
fn synthetic_gguf_tokenizers_match_llama_cpp() {
    let exp = expected();
    assert!(exp.generator.contains("llama.cpp"), "{}", exp.generator);
    let mut bad = Vec::new();
    let mut checked = 0;
    for (name, m) in &exp.models {
        if name == "smollm2" {
            continue;
        }
        bad.extend(mismatches(name, &fixtures().join(&m.file), &m.ids));
        checked += 1;
    }
    assert_eq!(checked, 6, "every synthetic GGUF has expected ids");
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn smollm2_tokenizer_matches_llama_cpp() {
    let path = match saguaro_host::cache::smollm2_gguf() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: the SmolLM2 GGUF cannot be had: {why}");
            return;
        }
    };
    let exp = expected();
    let m = exp.models.get("smollm2").expect("expected.json has the SmolLM2 ids");
    let bad = mismatches("smollm2", &path, &m.ids);
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));

    // The metadata as the file has it: a byte-level BPE of type smollm, no BOS added, ChatML.
    let t = tokenizer_of(&path);
    assert_eq!(t.kind, VocabKind::Bpe { pre: "smollm".into() });
    assert_eq!((t.n_tokens, t.bos_id, t.eos_id, t.add_bos, t.add_eos), (49152, Some(1), Some(2), false, false));
    assert!(t.chat_template.as_deref().unwrap_or_default().contains("<|im_start|>"));
    let tok = t.load().unwrap();
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    assert!(t.eog_ids.contains(&2));
}

/// The byte-level decoder gives back the exact text; so does the SentencePiece one without a
/// space prefix (byte fallback covers every character).
#[test]
fn decoding_gives_back_the_text() {
    for name in ["bpe-smollm", "bpe-llama-bpe", "bpe-qwen2", "bpe-gpt-2", "spm-gemma"] {
        let tok = tokenizer_of(&fixtures().join(format!("{name}.gguf"))).load().unwrap();
        for text in texts() {
            let ids = tok.encode(&text).unwrap();
            assert_eq!(tok.decode(&ids, false).unwrap(), text, "{name}");
        }
    }
}

#[test]
fn special_tokens_and_flags() {
    let t = tokenizer_of(&fixtures().join("spm-gemma.gguf"));
    assert_eq!(t.kind, VocabKind::Spm);
    assert_eq!((t.bos_id, t.eos_id, t.unk_id, t.pad_id, t.add_bos, t.add_eos), (Some(2), Some(1), Some(3), Some(0), true, false));
    let tok = t.load().unwrap();
    let ids = tok.encode("<start_of_turn>user").unwrap();
    assert_eq!(ids[0], tok.token_id("<start_of_turn>").unwrap());
    // CONTROL tokens are special (dropped when decoding response text), USER_DEFINED are not.
    assert!(tok.is_special(4) && !tok.is_special(6));
    assert_eq!(tok.decode(&tok.encode("<start_of_turn>hi <mask>").unwrap(), true).unwrap(), "hi <mask>");
    assert_eq!(tok.prompt_bos(), Some(2));
    let cfg = &t.tokenizer_config;
    assert_eq!((cfg["bos_token"].as_str(), cfg["add_bos_token"].as_bool()), (Some("<bos>"), Some(true)));
    assert!(cfg["chat_template"].as_str().unwrap_or_default().contains("<start_of_turn>"));

    // A chat prompt gets BOS once, whether the template wrote it or not.
    let bos = "<bos>".to_string();
    assert_eq!(tok.encode_prompt(&(bos + "<start_of_turn>")).unwrap()[..2], [2, 4]);
    assert_eq!(tok.encode_prompt("<start_of_turn>").unwrap()[..2], [2, 4]);

    let t = tokenizer_of(&fixtures().join("bpe-smollm.gguf"));
    assert!(!t.add_bos);
    assert_eq!(t.load().unwrap().prompt_bos(), None);
    let t = tokenizer_of(&fixtures().join("bpe-llama-bpe.gguf"));
    assert!(t.add_bos, "llama-bpe adds BOS by default");
}

// ------------------------------------------------------------------------------------------
// Hostile metadata
// ------------------------------------------------------------------------------------------

enum M {
    Str(&'static str),
    U32(u32),
    Bool(bool),
    Strs(Vec<String>),
    I32s(Vec<i32>),
    F32s(Vec<f32>),
}

/// A GGUF v3 file with these metadata and no tensors.
fn gguf(kvs: &[(&str, M)]) -> Vec<u8> {
    fn string(b: &mut Vec<u8>, s: &str) {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    }
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        string(&mut b, k);
        match v {
            M::Str(s) => {
                b.extend(8u32.to_le_bytes());
                string(&mut b, s);
            }
            M::U32(x) => {
                b.extend(4u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
            M::Bool(x) => {
                b.extend(7u32.to_le_bytes());
                b.push(u8::from(*x));
            }
            M::Strs(items) => {
                b.extend(9u32.to_le_bytes());
                b.extend(8u32.to_le_bytes());
                b.extend((items.len() as u64).to_le_bytes());
                for s in items {
                    string(&mut b, s);
                }
            }
            M::I32s(items) => {
                b.extend(9u32.to_le_bytes());
                b.extend(5u32.to_le_bytes());
                b.extend((items.len() as u64).to_le_bytes());
                for x in items {
                    b.extend(x.to_le_bytes());
                }
            }
            M::F32s(items) => {
                b.extend(9u32.to_le_bytes());
                b.extend(6u32.to_le_bytes());
                b.extend((items.len() as u64).to_le_bytes());
                for x in items {
                    b.extend(x.to_le_bytes());
                }
            }
        }
    }
    b
}

fn toks(list: &[&str]) -> M {
    M::Strs(list.iter().map(|s| s.to_string()).collect())
}

fn error_of(kvs: &[(&str, M)]) -> String {
    let bytes = gguf(kvs);
    let f = GgufFile::parse(&bytes).unwrap();
    match f.tokenizer().and_then(|t| t.load().map(|_| t)) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_metadata_is_an_error_not_a_panic() {
    let base = || {
        vec![
            ("tokenizer.ggml.model", M::Str("llama")),
            ("tokenizer.ggml.tokens", toks(&["<unk>", "<s>", "</s>", "a", "b", "ab"])),
            ("tokenizer.ggml.add_space_prefix", M::Bool(false)),
        ]
    };
    // Sanity: the base file is accepted, ids default as in llama.cpp (unk 0, bos 1, eos 2).
    let ok = GgufFile::parse(&gguf(&base())).unwrap().tokenizer().unwrap();
    assert_eq!((ok.unk_id, ok.bos_id, ok.eos_id, ok.add_bos), (Some(0), Some(1), Some(2), true));
    assert_eq!(ok.load().unwrap().encode("ab").unwrap(), vec![5]);

    let cases: Vec<(Vec<(&str, M)>, &str)> = vec![
        (vec![], "tokenizer.ggml.model"),
        (vec![("tokenizer.ggml.model", M::U32(1))], "tokenizer.ggml.model"),
        (vec![("tokenizer.ggml.model", M::Str("t5"))], "not supported"),
        (vec![("tokenizer.ggml.model", M::Str("llama"))], "tokenizer.ggml.tokens"),
        (vec![("tokenizer.ggml.model", M::Str("llama")), ("tokenizer.ggml.tokens", M::I32s(vec![1]))], "array of strings"),
        (vec![("tokenizer.ggml.model", M::Str("llama")), ("tokenizer.ggml.tokens", toks(&[]))], "0 tokens"),
        (vec![("tokenizer.ggml.model", M::Str("llama")), ("tokenizer.ggml.tokens", toks(&["a", "a"]))], "same text"),
        (vec![("tokenizer.ggml.model", M::Str("gpt2")), ("tokenizer.ggml.tokens", toks(&["a"]))], "merges"),
        (
            vec![("tokenizer.ggml.model", M::Str("gpt2")), ("tokenizer.ggml.pre", M::Str("nonsense")), ("tokenizer.ggml.tokens", toks(&["a"]))],
            "nonsense",
        ),
        (
            vec![("tokenizer.ggml.model", M::Str("gpt2")), ("tokenizer.ggml.tokens", toks(&["a"])), ("tokenizer.ggml.merges", M::I32s(vec![3]))],
            "array of strings",
        ),
    ];
    for (kvs, want) in cases {
        let e = error_of(&kvs);
        assert!(e.contains(want), "{e:?} should mention {want:?}");
    }
    let with = |extra: (&'static str, M)| {
        let mut v = base();
        v.push(extra);
        error_of(&v)
    };
    assert!(with(("tokenizer.ggml.token_type", M::I32s(vec![1, 1]))).contains("2 entries"));
    assert!(with(("tokenizer.ggml.token_type", M::F32s(vec![1.0; 6]))).contains("integer"));
    assert!(with(("tokenizer.ggml.scores", M::Strs(vec!["x".into(); 6]))).contains("float"));
    assert!(with(("tokenizer.ggml.add_bos_token", M::U32(1))).contains("bool"));
    assert!(with(("tokenizer.chat_template", M::U32(1))).contains("chat_template"));
    assert!(with(("tokenizer.ggml.bos_token_id", M::Str("x"))).contains("bos_token_id"));

    // Ids outside the vocabulary are ignored (llama.cpp keeps its default); adding a BOS that
    // does not exist is an error.
    let mut v = base();
    v.push(("tokenizer.ggml.bos_token_id", M::U32(1000)));
    assert_eq!(GgufFile::parse(&gguf(&v)).unwrap().tokenizer().unwrap().bos_id, Some(1));
    let kvs = vec![
        ("tokenizer.ggml.model", M::Str("gpt2")),
        ("tokenizer.ggml.pre", M::Str("llama-bpe")),
        ("tokenizer.ggml.tokens", toks(&["a", "b"])),
        ("tokenizer.ggml.merges", toks(&[])),
    ];
    assert!(error_of(&kvs).contains("BOS"));
    // NaN scores and unusable merges are survived.
    let mut v = base();
    v.push(("tokenizer.ggml.scores", M::F32s(vec![f32::NAN; 6])));
    assert!(GgufFile::parse(&gguf(&v)).unwrap().tokenizer().unwrap().load().is_ok());
    let kvs = vec![
        ("tokenizer.ggml.model", M::Str("gpt2")),
        ("tokenizer.ggml.tokens", toks(&["a", "b", "ab"])),
        ("tokenizer.ggml.merges", toks(&["a b", "a b", "x y", "ab", " ", ""])),
        ("tokenizer.ggml.add_bos_token", M::Bool(false)),
    ];
    let t = GgufFile::parse(&gguf(&kvs)).unwrap().tokenizer().unwrap();
    assert_eq!(t.skipped_merges, 5);
    assert_eq!(t.load().unwrap().encode("ab").unwrap(), vec![2]);
}

/// A GGUF converted to .cact keeps its tokenizer, template and special ids: the .cact's
/// tokenizer gives the GGUF's ids.
#[test]
fn conversion_stores_the_tokenizer() {
    use saguaro_engine::format::CactFile;
    let src = fixtures().join("bpe-smollm.gguf");
    let bytes = std::fs::read(&src).unwrap();
    let gguf = GgufFile::parse(&bytes).unwrap();
    let (extras, warning) = saguaro_host::convert::gguf_extras(&gguf, &src);
    assert!(warning.is_none(), "{warning:?}");
    let names: Vec<&str> = extras.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["tokenizer.json", "tokenizer_config.json"]);
    assert!(extras.chat_template.as_deref().unwrap_or_default().contains("<|im_start|>"));
    let gen = extras.generation_config.clone().unwrap();
    assert_eq!(gen["bos_token_id"], 1);
    assert!(gen["eos_token_id"].as_array().unwrap().contains(&serde_json::json!(2)));

    // Through a real .cact (a tiny synthetic model carries the files).
    let config = saguaro_engine::synth::shape_config("lfm2-350m").unwrap();
    let mut config = config;
    for (k, v) in [("hidden_size", 32), ("num_hidden_layers", 1), ("num_attention_heads", 2), ("num_key_value_heads", 1), ("intermediate_size", 64), ("vocab_size", 3275)] {
        config[k] = v.into();
    }
    config["layer_types"] = serde_json::json!(["full_attention"]);
    let cfg = saguaro_engine::Lfm2Config::from_json(&config).unwrap();
    let source = saguaro_engine::synth::SynthSource::new(&cfg, 1);
    let out = std::env::temp_dir().join(format!("saguaro-gguf-tok-{}.cact", std::process::id()));
    saguaro_host::convert::write_cact(&out, &config, &source, saguaro_engine::convert::Quant::F32, &extras, false).unwrap();
    let blob = saguaro_host::loader::map_file(&out).unwrap();
    let file = CactFile::parse(blob).unwrap();
    let _ = std::fs::remove_file(&out);
    let from_cact = saguaro_engine::Tokenizer::from_cact(&file).unwrap();
    let from_gguf = gguf.tokenizer().unwrap().load().unwrap();
    for text in texts() {
        assert_eq!(from_cact.encode(&text).unwrap(), from_gguf.encode(&text).unwrap());
    }
    assert_eq!(file.manifest.chat_template, extras.chat_template);
    // The chat path takes the GGUF's template and tokenizer from the file.
    let model = std::sync::Arc::new(saguaro_engine::Model::from_cact(&file).unwrap());
    let chat = saguaro_engine::session::ChatModel::new(model).unwrap();
    assert_eq!(Some(chat.template.source()), extras.chat_template.as_deref());
    assert!(chat.eos_ids.contains(&2));

    // A GGUF whose tokenizer llama.cpp could not load either (a gpt2 vocabulary without
    // merges) still converts, without a tokenizer, and says why.
    let lfm2 = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gguf/hybrid-gqa-f32.gguf")).unwrap();
    let lfm2 = GgufFile::parse(&lfm2).unwrap();
    let (extras, warning) = saguaro_host::convert::gguf_extras(&lfm2, &src);
    assert!(extras.files.is_empty());
    assert!(warning.unwrap_or_default().contains("merges"));
}

/// Random byte flips and truncations of real tokenizer metadata: every outcome is a value or an
/// error, never a panic (the fuzz target does the same without bounds).
#[test]
fn corrupted_tokenizer_metadata_never_panics() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // xorshift64: deterministic, no dependency.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for name in ["bpe-llama-bpe.gguf", "spm-llama.gguf"] {
        let clean = std::fs::read(fixtures().join(name)).unwrap();
        let (mut parsed, mut built) = (0, 0);
        for round in 0..150 {
            let mut bytes = clean.clone();
            if round % 5 == 4 {
                bytes.truncate(next() as usize % clean.len());
            } else {
                for _ in 0..1 + next() % 4 {
                    let at = next() as usize % bytes.len();
                    bytes[at] = next() as u8;
                }
            }
            let Ok(gguf) = GgufFile::parse(&bytes) else { continue };
            parsed += 1;
            if let Ok(tok) = gguf.tokenizer().and_then(|t| t.load()) {
                built += 1;
                let _ = tok.encode_special("Hello <|im_start|> wörld 🌵  x");
            }
        }
        // Flips that keep the header valid are common: the tokenizer path is really exercised.
        assert!(parsed > 20 && built > 10, "{name}: {parsed} parsed, {built} built");
    }
}
