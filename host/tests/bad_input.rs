//! Hostile and careless input against the `saguaro` binary (issue 17): no command writes over
//! its own inputs, partial outputs never survive (errors, Ctrl-C), running out of context is a
//! finish reason, memory and time follow the context rather than the input, errors say what to
//! do, and checksums catch a flipped bit.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{files_digest, run, run_measured, temp_dir, Run};
use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn chat_model() -> PathBuf {
    fixtures().join("chat/model")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Copies every file of `from` into a new folder `name` under `dir`.
fn copy_folder(from: &Path, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
    to
}

/// Exit status 1, exactly one `error:` line on stderr containing `needle`, no panic.
fn assert_error(r: &Run, needle: &str) {
    assert_eq!(r.code, Some(1), "{r:?}");
    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{r:?}");
    assert!(errors[0].contains(needle), "expected `{needle}` in {}", errors[0]);
    assert!(!r.stderr.contains("panicked"), "{r:?}");
}

#[test]
fn convert_never_writes_over_its_own_inputs() {
    let dir = temp_dir("own-inputs");
    let gguf = dir.join("m.gguf");
    std::fs::copy(fixtures().join("gguf/hybrid-gqa-f32.gguf"), &gguf).unwrap();
    let folder = copy_folder(&chat_model(), &dir, "folder");
    std::os::unix::fs::symlink(&gguf, dir.join("link.cact")).unwrap();
    std::fs::hard_link(&gguf, dir.join("hard.cact")).unwrap();
    std::fs::hard_link(folder.join("model.safetensors"), dir.join("weights.cact")).unwrap();
    std::os::unix::fs::symlink(&folder, dir.join("folder-link")).unwrap();
    let before = files_digest(&dir);

    let cases: Vec<(&Path, PathBuf, &str)> = vec![
        (&gguf, gguf.clone(), "it is the input file"),
        (&gguf, dir.join("link.cact"), "it is the input file"),
        (&gguf, dir.join("hard.cact"), "it is the input file"),
        (&gguf, dir.join("./sub/../m.gguf"), "the folder"), // `sub` does not exist
        (&folder, folder.join("model.safetensors"), "inside the source folder"),
        (&folder, folder.join("new.cact"), "inside the source folder"),
        (&folder, dir.join("folder-link/config.json"), "inside the source folder"),
        (&folder, dir.join("weights.cact"), "same file as"),
        (&folder, dir.clone(), "is a folder"),
    ];
    for (src, out, needle) in &cases {
        let r = run(&["convert", s(src), "-o", s(out), "--quiet"], "");
        assert_error(&r, needle);
        assert_eq!(files_digest(&dir), before, "{out:?} changed a file");
    }
    // `pull` converts the hub cache's snapshot folder: the same rule applies.
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failed_conversions_leave_no_partial_file_and_keep_the_old_output() {
    let dir = temp_dir("partial");
    // A checkpoint that fails half-way: the header names a tensor that is not there.
    let folder = copy_folder(&fixtures().join("hybrid-gqa"), &dir, "src");
    let file = folder.join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    let patched = header.replacen("model.layers.3.ffn_norm.weight", "model.layers.3.ffn_norm.wxxxxx", 1);
    bytes[8..8 + header_len].copy_from_slice(patched.as_bytes());
    std::fs::write(&file, bytes).unwrap();

    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("m.cact");
    let r = run(&["convert", s(&folder), "-o", s(&out), "--quiet"], "");
    assert_error(&r, "model.layers.3.ffn_norm.weight");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "a partial file remained");

    std::fs::write(&out, b"the previous model").unwrap();
    let r = run(&["convert", s(&folder), "-o", s(&out), "--quiet"], "");
    assert_error(&r, "missing tensor");
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous model");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_output_symlink_is_replaced_and_its_target_left_alone() {
    let dir = temp_dir("outlink");
    let other = dir.join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("old.cact"), b"someone else's file").unwrap();
    let link = dir.join("m.cact");
    std::os::unix::fs::symlink(other.join("old.cact"), &link).unwrap();
    let r = run(&["convert", s(&chat_model()), "-o", s(&link), "--quant", "f32", "--quiet"], "");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(std::fs::read(&link).unwrap().starts_with(b"CACT"));
    assert_eq!(std::fs::read(other.join("old.cact")).unwrap(), b"someone else's file");
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1, "a temporary file was left beside the target");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ctrl_c_removes_the_partial_output() {
    let dir = temp_dir("sigint");
    let out = dir.join("big.cact");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_saguaro"))
        .args(["synth", "--shape", "lfm2-1.2b", "--quant", "f32", "-o", s(&out), "--quiet"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the partial file exists and has data, then interrupt.
    let start = Instant::now();
    let partial = loop {
        let found = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).find(|p| {
            p.file_name().unwrap().to_string_lossy().ends_with(".partial") && p.metadata().map(|m| m.len() > 1 << 20).unwrap_or(false)
        });
        if let Some(p) = found {
            break p;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no partial output appeared");
        assert!(child.try_wait().unwrap().is_none(), "synth ended before it could be interrupted");
        std::thread::sleep(Duration::from_millis(10));
    };
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out_status = child.wait_with_output().unwrap();
    assert_eq!(out_status.status.code(), Some(130), "{out_status:?}");
    let stderr = String::from_utf8_lossy(&out_status.stderr);
    assert!(stderr.contains("error: interrupted"), "{stderr}");
    assert!(!partial.exists(), "{partial:?} remained");
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A copy of the chat fixture model with a context of `context` positions.
fn small_context_model(dir: &Path, context: usize) -> PathBuf {
    let m = copy_folder(&chat_model(), dir, &format!("ctx{context}"));
    let p = m.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    cfg["max_position_embeddings"] = json!(context);
    std::fs::write(&p, cfg.to_string()).unwrap();
    m
}

#[test]
fn generate_reports_context_full_with_the_tokens_it_made() {
    let dir = temp_dir("ctx");
    let model = small_context_model(&dir, 8);
    let r = run(&["generate", "--model", s(&model), "--tokens", "1,2,3", "--max-tokens", "20", "--json"], "");
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    // 3 prompt tokens + 5 generated fill the 8 positions; the 6th is sampled from the last logits.
    assert_eq!(v["tokens"].as_array().unwrap().len(), 6, "{v}");
    assert_eq!(v["finish_reason"], json!("context_full"));
    assert!(r.stderr.contains("context_full") && r.stderr.contains("--max-tokens 20"), "{r:?}");

    // Plain output prints the tokens too; within the context the reason is `length`.
    let r = run(&["generate", "--model", s(&model), "--tokens", "1,2,3", "--max-tokens", "20"], "");
    assert_eq!((r.code, r.stdout.split_whitespace().count()), (Some(0), 6), "{r:?}");
    let r = run(&["generate", "--model", s(&model), "--tokens", "1,2,3", "--max-tokens", "2", "--json"], "");
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((v["tokens"].as_array().unwrap().len(), v["finish_reason"].clone()), (2, json!("length")));
    assert!(r.stderr.is_empty(), "{r:?}");

    // A prompt that does not fit is still an error, naming the prompt.
    let r = run(&["generate", "--model", s(&model), "--tokens", "1,2,3,4,5,6,7,8,9"], "");
    assert_error(&r, "the prompt has 9 tokens, the context holds 8");
    // `run` and `complete` say context_full the same way (the 12-token chat prompt fills the context;
    // one token is sampled from its last logits, the greedy stop would only come after it).
    let r = run(&["run", "--model", s(&small_context_model(&dir, 12)), "--prompt", "Hi", "--max-tokens", "100", "--temperature", "0"], "");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.contains("finish context_full") && r.stderr.contains("--max-tokens 100"), "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn huge_requests_are_refused_fast_with_bounded_memory() {
    let model = chat_model();
    let m = s(&model);
    let fifty_mb = format!(r#"{{"messages": [{{"role": "user", "content": "{}"}}]}}"#, "lorem ipsum ".repeat((50 << 20) / 12));
    assert!(fifty_mb.len() > 40 << 20);

    // Over the size limit: refused before it is read whole.
    let r = run_measured(&["complete", "--model", m], &fifty_mb);
    assert_error(&r, "--max-request-bytes");
    assert!(r.peak_rss_kb < 100 << 10, "peak RSS {} KiB", r.peak_rss_kb);
    assert!(r.elapsed < Duration::from_secs(3), "{:?}", r.elapsed);
    let v: Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["success"], json!(false));

    // Allowed in size: refused as over the context from its length alone, never tokenized whole.
    let r = run_measured(&["complete", "--model", m, "--max-request-bytes", "100000000"], &fifty_mb);
    assert_error(&r, "the prompt has at least");
    assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
    assert!(r.peak_rss_kb < 250 << 10, "peak RSS {} KiB", r.peak_rss_kb);

    // Many small messages inside the limit: refused by the running token count.
    let messages: Vec<Value> = (0..150_000).map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": "hi"})).collect();
    let many = json!({ "messages": messages }).to_string();
    assert!(many.len() < 8 << 20);
    let r = run_measured(&["complete", "--model", m], &many);
    assert_error(&r, "context");
    assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
    assert!(r.peak_rss_kb < 150 << 10, "peak RSS {} KiB", r.peak_rss_kb);

    // Just over what the length bound can decide: the chunked count stops early.
    let words: String = (0..6000).map(|i| format!("w{i} ")).collect();
    let r = run(&["complete", "--model", m], &json!({"messages": [{"role": "user", "content": words}]}).to_string());
    assert_error(&r, "in its first");

    // `chat` refuses an over-long line and goes on with the conversation.
    let line = "x".repeat(9 << 20);
    let r = run_measured(&["chat", "--model", m, "--max-tokens", "2"], &format!("{line}\nhello\n"));
    assert_eq!(r.code, Some(0), "{:?}", r.stderr);
    assert!(r.stderr.contains("error: the line is more than"), "{}", r.stderr);
    assert_eq!(r.stdout.matches("> ").count(), 3, "{}", r.stdout);
    assert!(r.peak_rss_kb < 100 << 10, "peak RSS {} KiB", r.peak_rss_kb);
}

#[test]
fn errors_name_the_file_and_what_to_do() {
    let dir = temp_dir("messages");
    let cact = dir.join("chat.cact");
    let r = run(&["convert", s(&chat_model()), "-o", s(&cact), "--quant", "f32", "--quiet"], "");
    assert_eq!(r.code, Some(0), "{r:?}");
    let (folder, gguf) = (chat_model(), fixtures().join("gguf/hybrid-gqa-f32.gguf"));
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["info", s(&folder)], "", "is a folder, not a .cact file"),
        (vec!["info", s(&gguf)], "", "is a GGUF file"),
        (vec!["convert", s(&cact), "-o", "/tmp/never.cact"], "", "is already a .cact model file"),
        (vec!["verify", s(&folder)], "", "has no checksums"),
        (vec!["complete", "--model", s(&cact)], r#"{"messages": [{"role": "user", "content": null}]}"#, "messages[0].content is missing or null"),
        (vec!["complete", "--model", s(&cact)], r#"{"messages": [{"role": "user", "content": "hi"}], "options": {"temperature": 1000}}"#, "options.temperature 1000 is out of range"),
        (vec!["complete", "--model", s(&cact)], r#"{"messages": [{"role": "user", "content": "hi"}], "options": {"top_k": 99999999999}}"#, "options.top_k"),
        (vec!["generate", "--model", s(&cact), "--tokens", "1", "--temperature", "1e9"], "", "temperature 1000000000 is out of range"),
        (vec!["bench", "--model", s(&cact), "--prefill", "4000", "--decode", "100"], "", "--prefill 4000 + --decode 100"),
        (vec!["complete", "--model", s(&cact), "--request", s(&dir)], "", "is a folder"),
    ];
    for (args, stdin, needle) in cases {
        let r = run(&args, stdin);
        assert_error(&r, needle);
        // One prefix per message: never "invalid input: invalid input: ...".
        for prefix in ["invalid input: ", "invalid model file: ", "i/o error: ", "invalid model config: "] {
            assert!(r.stderr.matches(prefix).count() <= 1, "{args:?}: {}", r.stderr);
        }
        assert!(!r.stderr.contains(".partial"), "{args:?}: {}", r.stderr);
    }
    // Corrupt GGUF length fields name the field that is wrong.
    let good = std::fs::read(fixtures().join("gguf/hybrid-gqa-f32.gguf")).unwrap();
    let bad = dir.join("bad.gguf");
    // Bytes 24..32: the length of the first metadata key.
    let mut b = good.clone();
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&bad, &b).unwrap();
    assert_error(&run(&["convert", s(&bad), "-o", s(&dir.join("x.cact"))], ""), "metadata key #0");
    // Bytes 56..64: the length of the first value (a string), too long but inside the file: the
    // error comes at the next key, and names this value too.
    let mut b = good.clone();
    b[56..64].copy_from_slice(&1_000_000u64.to_le_bytes());
    std::fs::write(&bad, &b).unwrap();
    assert_error(
        &run(&["convert", s(&bad), "-o", s(&dir.join("x.cact"))], ""),
        "the value before it, metadata `general.architecture` at offset 52",
    );
    // Bytes 8..16: the tensor count.
    let mut b = good.clone();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&bad, &b).unwrap();
    assert_error(&run(&["convert", s(&bad), "-o", s(&dir.join("x.cact"))], ""), "tensor count");
    assert!(!dir.join("x.cact").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The data offset of the `i`th tensor of a .cact file (from its manifest).
fn tensor_offset(bytes: &[u8], i: usize) -> (String, usize) {
    let len = u64::from_le_bytes(bytes[24..32].try_into().unwrap()) as usize;
    let manifest: Value = serde_json::from_slice(&bytes[64..64 + len]).unwrap();
    let t = &manifest["tensors"][i];
    (t["name"].as_str().unwrap().to_string(), t["data"]["offset"].as_u64().unwrap() as usize)
}

#[test]
fn verify_catches_a_flipped_bit() {
    let dir = temp_dir("verify");
    let cact = dir.join("chat.cact");
    let r = run(&["convert", s(&chat_model()), "-o", s(&cact), "--quant", "int8", "--quiet"], "");
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = run(&["verify", s(&cact)], "");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains(": ok (") && r.stdout.contains("xxh3-64"), "{r:?}");
    let info = run(&["info", "--brief", s(&cact)], "");
    assert!(info.stdout.contains("checksums   xxh3-64"), "{}", info.stdout);

    let mut bytes = std::fs::read(&cact).unwrap();
    let (name, offset) = tensor_offset(&bytes, 2);
    bytes[offset + 17] ^= 0x04;
    let bad = dir.join("bad.cact");
    std::fs::write(&bad, &bytes).unwrap();
    assert_error(&run(&["verify", s(&bad)], ""), &format!("checksum mismatch in tensor `{name}`"));
    let request = r#"{"messages": [{"role": "user", "content": "hi"}], "options": {"max_tokens": 2}}"#;
    // Without --verify the damage goes unnoticed; with it, the model is refused before use.
    assert_eq!(run(&["complete", "--model", s(&bad)], request).code, Some(0));
    assert_error(&run(&["complete", "--model", s(&bad), "--verify"], request), "checksum mismatch");
    assert_error(&run(&["generate", "--model", s(&bad), "--tokens", "1", "--verify"], ""), "checksum mismatch");
    assert_error(&run(&["run", "--model", s(&bad), "--verify"], ""), "checksum mismatch");
    assert_eq!(run(&["generate", "--model", s(&cact), "--tokens", "1", "--verify"], "").code, Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The helper process of `common::run_measured` (and a check that measuring works).
#[test]
fn rss_helper() {
    common::rss_helper();
}
