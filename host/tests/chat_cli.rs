//! `saguaro complete`, `chat` and `run` on the chat fixture model (tests/fixtures/chat): the
//! response JSON against transformers' greedy references, streaming, .cact and folder models,
//! and `success: false` with exit status 1 for every kind of bad request.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn chat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/chat")
}

fn model_dir() -> PathBuf {
    chat_dir().join("model")
}

fn generations() -> Vec<Value> {
    let text = std::fs::read_to_string(chat_dir().join("reference.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["generations"].as_array().unwrap().clone()
}

fn saguaro(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_saguaro"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run saguaro");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saguaro-chat-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const FIELDS: [&str; 15] = [
    "success", "error", "cloud_handoff", "response", "function_calls", "confidence", "finish_reason",
    "time_to_first_token_ms", "total_time_ms", "prefill_tps", "decode_tps", "ram_usage_mb", "prefill_tokens",
    "decode_tokens", "total_tokens",
];

fn response_json(out: &Output) -> Value {
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let last = stdout.lines().last().unwrap_or_else(|| panic!("no output; stderr {}", String::from_utf8_lossy(&out.stderr)));
    let v: Value = serde_json::from_str(last).unwrap();
    for k in FIELDS {
        assert!(v.get(k).is_some(), "missing {k} in {last}");
    }
    v
}

#[test]
fn complete_matches_transformers_from_stdin_and_from_a_file() {
    let model = model_dir();
    let dir = temp_dir("complete");
    for (i, g) in generations().iter().enumerate() {
        let request = g["request"].to_string();
        let out = saguaro(&["complete", "--model", model.to_str().unwrap()], &request);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v = response_json(&out);
        assert_eq!(v["success"], json!(true));
        assert_eq!(v["response"], g["text"]);
        assert_eq!(v["decode_tokens"].as_u64().unwrap() as usize, g["tokens"].as_array().unwrap().len());
        assert!(v["time_to_first_token_ms"].as_f64().unwrap() > 0.0);
        assert!(v["ram_usage_mb"].as_f64().unwrap() > 0.0);
        let file = dir.join(format!("request{i}.json"));
        std::fs::write(&file, &request).unwrap();
        let out = saguaro(&["complete", "--model", model.to_str().unwrap(), "--request", file.to_str().unwrap()], "");
        assert!(out.status.success());
        assert_eq!(response_json(&out)["response"], g["text"]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn complete_streams_token_lines_that_add_up_to_the_response() {
    let g = &generations()[1];
    let out = saguaro(&["complete", "--model", model_dir().to_str().unwrap(), "--stream"], &g["request"].to_string());
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (events, response) = lines.split_at(lines.len() - 1);
    let ids: Vec<Value> = events.iter().map(|e| e["token_id"].clone()).collect();
    assert_eq!(Value::Array(ids), g["tokens"]);
    let text: String = events.iter().map(|e| e["text"].as_str().unwrap()).collect();
    assert_eq!(text, response[0]["response"].as_str().unwrap());
    assert_eq!(response[0]["response"], g["text"]);
}

#[test]
fn complete_works_on_a_cact_file_with_the_tokenizer_inside() {
    let dir = temp_dir("cact");
    let cact = dir.join("chat.cact");
    let out = saguaro(&["convert", model_dir().to_str().unwrap(), "-o", cact.to_str().unwrap(), "--quant", "f32", "--quiet"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let g = &generations()[2];
    let out = saguaro(&["complete", "--model", cact.to_str().unwrap()], &g["request"].to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(response_json(&out)["response"], g["text"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A copy of the fixture model with a context of `context` positions.
fn small_context_model(context: usize) -> PathBuf {
    let dir = temp_dir(&format!("ctx{context}"));
    for entry in std::fs::read_dir(model_dir()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let cfg_path = dir.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["max_position_embeddings"] = json!(context);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    dir
}

#[test]
fn bad_requests_print_success_false_and_exit_1() {
    let model = model_dir();
    let m = model.to_str().unwrap();
    let small = small_context_model(8);
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        (m.into(), vec![], "{\"messages\": [{\"role\": \"user\""),
        (m.into(), vec![], "not json at all"),
        (m.into(), vec![], r#"{"messages": [{"role": "robot", "content": "hi"}]}"#),
        (m.into(), vec![], r#"{"messages": []}"#),
        (m.into(), vec![], r#"{"messages": [{"role": "user", "content": "hi"}], "tools": [42]}"#),
        (m.into(), vec![], r#"{"messages": [{"role": "user", "content": "hi"}], "options": {"temperature": "warm"}}"#),
        (small.to_str().unwrap().into(), vec![], r#"{"messages": [{"role": "user", "content": "a prompt longer than eight tokens"}]}"#),
        ("/nonexistent/model".into(), vec![], r#"{"messages": [{"role": "user", "content": "hi"}]}"#),
        (m.into(), vec!["--request".into(), "/nonexistent/request.json".into()], ""),
    ];
    for (model, extra, stdin) in cases {
        let mut args = vec!["complete", "--model", model.as_str()];
        args.extend(extra.iter().map(String::as_str));
        let out = saguaro(&args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stdin}: {stderr}");
        assert!(stderr.starts_with("error: ") && !stderr.contains("panicked"), "{stdin}: {stderr}");
        let v = response_json(&out);
        assert_eq!(v["success"], json!(false), "{stdin}");
        let error = v["error"].as_str().unwrap();
        assert!(!error.is_empty());
        assert!(stderr.contains(error.split(": ").last().unwrap()), "{stderr} vs {error}");
    }
    let _ = std::fs::remove_dir_all(&small);
}

#[test]
fn chat_streams_answers_and_resets() {
    let out = saguaro(
        &["chat", "--model", model_dir().to_str().unwrap(), "--temperature", "0", "--max-tokens", "6"],
        "What is the weather in Paris?\nAnd tomorrow?\n/reset\nWhat is the weather in Paris?\n/exit\nnever read\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let answers: Vec<&str> = stdout.split("> ").filter(|s| !s.is_empty()).collect();
    assert_eq!(answers.len(), 4, "{stdout:?}");
    assert_eq!(answers[2], "(conversation reset)\n");
    // After /reset the same first question gets the same greedy answer.
    assert_eq!(answers[0], answers[3]);
}

#[test]
fn run_answers_with_the_bundled_model() {
    let out = saguaro(&["run"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("generated tokens"));
    // --max-tokens caps the answer (the first token always counts, even an end of turn).
    let out = saguaro(&["run", "--json", "--max-tokens", "1", "--prompt", "Hi"], "");
    assert!(out.status.success());
    let v = response_json(&out);
    assert_eq!((v["success"].clone(), v["decode_tokens"].clone()), (json!(true), json!(1)));
    // --temperature 0 overrides the default preset: pure argmax, transformers' greedy tokens.
    let g = default_generations().into_iter().find(|g| g["name"] == "fixture_generation_config/greedy").unwrap();
    let prompt = g["request"]["messages"][0]["content"].as_str().unwrap();
    let max = g["request"]["options"]["max_tokens"].to_string();
    let out = saguaro(&["run", "--json", "--temperature", "0", "--max-tokens", &max, "--prompt", prompt], "");
    assert!(out.status.success());
    let v = response_json(&out);
    assert_eq!(v["response"], g["text"]);
    assert_eq!(v["decode_tokens"].as_u64().unwrap() as usize, g["tokens"].as_array().unwrap().len());
}

/// The references whose requests leave options to the model and the engine's rules
/// (reference.json `default_generations`, each with the generation_config.json it was made with).
fn default_generations() -> Vec<Value> {
    let text = std::fs::read_to_string(chat_dir().join("reference.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["default_generations"].as_array().unwrap().clone()
}

/// A copy of the fixture model folder whose generation_config.json is `config` (none if null).
fn model_with_generation_config(name: &str, config: &Value) -> PathBuf {
    let dir = temp_dir(name);
    for entry in std::fs::read_dir(model_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap() != "generation_config.json" {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    if !config.is_null() {
        std::fs::write(dir.join("generation_config.json"), config.to_string()).unwrap();
    }
    dir
}

/// The streamed token ids and the response of `complete --stream`.
fn complete_streamed(model: &Path, request: &Value) -> (Value, Value) {
    let out = saguaro(&["complete", "--model", model.to_str().unwrap(), "--stream"], &request.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let response = response_json(&out);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let ids = lines[..lines.len() - 1].iter().map(|l| serde_json::from_str::<Value>(l).unwrap()["token_id"].clone()).collect();
    (Value::Array(ids), response)
}

#[test]
fn complete_defaults_come_from_generation_config_in_a_folder_and_in_a_cact() {
    // Each model variant as a Hugging Face folder and converted to .cact (the manifest keeps
    // generation_config.json): the request's missing options resolve alike and the tokens are
    // transformers' generate() on that folder.
    for (i, g) in default_generations().iter().enumerate() {
        let name = g["name"].as_str().unwrap();
        let folder = model_with_generation_config(&format!("defaults{i}"), &g["generation_config"]);
        // Next to the folder: convert refuses to write inside its source folder.
        let cact = folder.with_extension("cact");
        let out = saguaro(&["convert", folder.to_str().unwrap(), "-o", cact.to_str().unwrap(), "--quant", "f32", "--quiet"], "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for model in [&folder, &cact] {
            let (ids, response) = complete_streamed(model, &g["request"]);
            assert_eq!(ids, g["tokens"], "{name} on {}", model.display());
            assert_eq!(response["response"], g["text"], "{name}");
        }
        let _ = std::fs::remove_dir_all(&folder);
        let _ = std::fs::remove_file(&cact);
    }
}

#[test]
fn run_says_which_preset_it_samples_with_and_equals_complete_with_that_preset() {
    let m = model_dir();
    let prompt = "Tell me a story.";
    let request = |options: Value| json!({"messages": [{"role": "user", "content": prompt}], "options": options});
    let strip = |mut v: Value| {
        for k in ["time_to_first_token_ms", "total_time_ms", "prefill_tps", "decode_tps", "ram_usage_mb"] {
            v[k] = json!(0);
        }
        v
    };
    let cases = [
        (vec![], Some("preset lfm2 (temperature 0.3, top_k 0, top_p 1, min_p 0.15, repetition_penalty 1.05)"), json!({"preset": "lfm2"})),
        (vec!["--preset", "lfm2.5"], Some("preset lfm2.5 (temperature 0.1, top_k 50, top_p 0.1, min_p 0, repetition_penalty 1.05)"), json!({"preset": "lfm2.5"})),
        // --temperature 0 overrides the preset: pure argmax, no penalty, and the note says so.
        (vec!["--temperature", "0"], Some("preset lfm2 (temperature 0, top_k 0, top_p 1, min_p 0.15, repetition_penalty 1)"), json!({"preset": "lfm2", "temperature": 0})),
        (vec!["--preset", "none"], None, json!({})),
    ];
    for (flags, note, options) in cases {
        let mut args = vec!["run", "--model", m.to_str().unwrap(), "--json", "--prompt", prompt, "--max-tokens", "12", "--seed", "5"];
        args.extend(flags.iter().copied());
        let out = saguaro(&args, "");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{flags:?}: {stderr}");
        match note {
            Some(n) => {
                assert_eq!(stderr.lines().filter(|l| l.starts_with("[sampling: ")).count(), 1, "{flags:?}: {stderr}");
                assert!(stderr.contains(n), "{flags:?}: {stderr}");
                assert!(stderr.contains("--preset none"), "{stderr}");
            }
            None => assert!(!stderr.contains("[sampling"), "{flags:?}: {stderr}"),
        }
        let mut options = options;
        options["max_tokens"] = json!(12);
        options["seed"] = json!(5);
        let out_complete = saguaro(&["complete", "--model", m.to_str().unwrap()], &request(options).to_string());
        assert!(out_complete.status.success());
        assert_eq!(strip(response_json(&out)), strip(response_json(&out_complete)), "{flags:?}");
    }
    for bad in [vec!["--preset", "llama"], vec!["--preset", ""]] {
        let mut args = vec!["run", "--model", m.to_str().unwrap()];
        args.extend(bad.iter().copied());
        let out = saguaro(&args, "");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        assert!(stderr.starts_with("error: ") && stderr.contains("--preset") && stderr.contains("`lfm2.5`"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn complete_constrains_to_a_json_schema_and_forces_tool_calls() {
    let model = model_dir();
    let m = model.to_str().unwrap();
    let schema = json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                        "days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city", "days"]});
    let request = json!({"messages": [{"role": "user", "content": "Weather?"}],
                         "options": {"temperature": 0.7, "seed": 5, "max_tokens": 200, "json_schema": schema}});
    let out = saguaro(&["complete", "--model", m], &request.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = response_json(&out);
    assert_eq!(v["finish_reason"], json!("stop"), "{v}");
    let answer: Value = serde_json::from_str(v["response"].as_str().unwrap()).unwrap();
    let days = answer["days"].as_i64().unwrap();
    assert!((1..=7).contains(&days) && answer["city"].as_str().unwrap().chars().count() <= 12, "{answer}");
    assert_eq!(answer.as_object().unwrap().len(), 2, "{answer}");

    // A named tool_choice: one call of that tool, arguments per its parameters.
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": schema}}, {"name": "other"}]);
    let request = json!({"messages": [{"role": "user", "content": "Weather?"}], "tools": tools,
                         "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "options": {"temperature": 0, "max_tokens": 200}});
    let out = saguaro(&["complete", "--model", m], &request.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = response_json(&out);
    assert_eq!(v["finish_reason"], json!("tool_calls"), "{v}");
    let calls = v["function_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["name"], json!("get_weather"));
    assert!((1..=7).contains(&calls[0]["arguments"]["days"].as_i64().unwrap()), "{v}");

    // An unsupported keyword: success false, code input, exit status 1.
    let bad = json!({"messages": [{"role": "user", "content": "x"}], "options": {"json_schema": {"type": "string", "not": {"const": "a"}}}});
    let out = saguaro(&["complete", "--model", m], &bad.to_string());
    assert_eq!(out.status.code(), Some(1));
    let v = response_json(&out);
    assert_eq!((v["success"].clone(), v["error_code"].clone()), (json!(false), json!("input")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("not"), "{v}");
}
