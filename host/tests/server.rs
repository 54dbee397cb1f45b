//! `saguaro serve` over HTTP on 127.0.0.1 (an OS-picked port), with the chat fixture model
//! (tests/fixtures/chat/model: random weights, the real LFM2 chat template): answers equal to
//! `saguaro complete` on the same request (greedy), OpenAI's response, chunk and error shapes,
//! the API key, the queue's 503, cancellation on disconnect, prefix reuse, and a bounded load
//! test. Only loopback addresses are ever contacted.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn chat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/chat")
}

fn model_dir() -> PathBuf {
    chat_dir().join("model")
}

fn generations() -> Vec<Value> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(chat_dir().join("reference.json")).unwrap()).unwrap();
    v["generations"].as_array().unwrap().clone()
}

/// A running `saguaro serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Self::start_with(&model_dir(), extra)
    }

    fn start_with(model: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--model", model.to_str().unwrap(), "--host", "127.0.0.1", "--port", "0"];
        args.extend_from_slice(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_saguaro"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start saguaro serve");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            line.clear();
            let n = stderr.read_line(&mut line).unwrap();
            assert!(n > 0 && Instant::now() < deadline, "the server exited before listening");
            if let Some(rest) = line.split("listening on ").nth(1) {
                let url = rest.split_whitespace().next().unwrap().to_string();
                assert!(url.starts_with("http://127.0.0.1:"), "{url}");
                break url;
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe; keep it for asserts.
        let log = Arc::new(Mutex::new(line.clone()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            sink.lock().unwrap().push_str(&rest);
        });
        Server { child, base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        answer(agent().get(&self.url(path)).call())
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string())
    }

    fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        answer(agent().post(&self.url(path)).set("Content-Type", "application/json").send_string(body))
    }

    /// A streamed request: the status and every `data:` payload (`[DONE]` included).
    fn stream(&self, path: &str, body: &Value) -> (u16, Vec<String>) {
        match agent().post(&self.url(path)).send_string(&body.to_string()) {
            Ok(r) => {
                assert_eq!(r.header("content-type"), Some("text/event-stream"));
                (r.status(), sse_events(r.into_reader()))
            }
            Err(ureq::Error::Status(code, r)) => (code, vec![r.into_string().unwrap()]),
            Err(e) => panic!("{path}: {e}"),
        }
    }

    /// VmHWM (peak resident memory) of the server in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits until no request is generating (cancelled ones stop within a step).
    fn wait_idle(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, h) = self.get("/health");
            if h["slots_processing"] == json!(0) || Instant::now() > deadline {
                return h;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build()
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let (code, resp) = match r {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(code, r)) => (code, r),
        Err(e) => panic!("transport error: {e}"),
    };
    let text = resp.into_string().unwrap();
    (code, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

fn sse_events(reader: impl Read) -> Vec<String> {
    let mut out = Vec::new();
    for line in BufReader::new(reader).lines() {
        let line = line.unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            out.push(data.to_string());
        } else {
            assert!(line.is_empty(), "unexpected SSE line {line:?}");
        }
    }
    out
}

/// `saguaro complete` on an engine request: the reference the server must match.
fn complete(request: &Value) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_saguaro"))
        .args(["complete", "--model", model_dir().to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(String::from_utf8(out.stdout).unwrap().lines().last().unwrap()).unwrap()
}

/// The OpenAI request for an engine request (greedy).
fn openai_request(engine: &Value) -> Value {
    let o = &engine["options"];
    let mut r = json!({"model": "fixture", "messages": engine["messages"], "temperature": 0,
                       "max_tokens": o["max_tokens"], "repetition_penalty": o["repetition_penalty"]});
    if let Some(t) = engine.get("tools") {
        r["tools"] = t.clone();
    }
    r
}

fn assert_error_shape(code: u16, v: &Value, want: u16, what: &str) {
    assert_eq!(code, want, "{what}: {v}");
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {v}");
    assert!(e["type"].is_string(), "{what}: {v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{what}: {v}");
}

fn finish_reason_of(engine: &str) -> &'static str {
    match engine {
        "tool_calls" => "tool_calls",
        "length" | "context_full" => "length",
        _ => "stop",
    }
}

#[test]
fn health_and_models() {
    let s = Server::start(&["--parallel", "2"]);
    let (code, h) = s.get("/health");
    assert_eq!((code, h["status"].clone(), h["slots_idle"].clone()), (200, json!("ok"), json!(2)));
    let (code, m) = s.get("/v1/models");
    assert_eq!(code, 200);
    assert_eq!(m["object"], json!("list"));
    assert_eq!(m["data"][0]["id"], json!("model"));
    assert_eq!(m["data"][0]["object"], json!("model"));
    assert_eq!(m["data"][0]["saguaro"]["context"], json!(4096));
}

#[test]
fn chat_matches_saguaro_complete_streamed_and_not() {
    let s = Server::start(&[]);
    for g in generations() {
        let engine = &g["request"];
        let want = complete(engine);
        assert_eq!(want["response"], g["text"], "the CLI matches transformers");
        let body = openai_request(engine);

        let (code, v) = s.post("/v1/chat/completions", &body);
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["object"], json!("chat.completion"));
        assert_eq!(v["model"], json!("fixture"));
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
        let choice = &v["choices"][0];
        assert_eq!(choice["message"]["role"], json!("assistant"));
        assert_eq!(choice["message"]["content"], want["response"]);
        assert_eq!(choice["finish_reason"], json!(finish_reason_of(want["finish_reason"].as_str().unwrap())));
        let u = &v["usage"];
        assert_eq!(u["completion_tokens"], want["decode_tokens"]);
        assert_eq!(u["prompt_tokens"].as_u64(), Some(want["prefill_tokens"].as_u64().unwrap() + want["reused_tokens"].as_u64().unwrap()));
        assert_eq!(u["total_tokens"].as_u64(), Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()));
        assert_eq!(v["saguaro"]["finish_reason"], want["finish_reason"]);
        assert!(v["saguaro"]["confidence"].as_f64().unwrap() > 0.0);

        let mut body = body.clone();
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let (code, events) = s.stream("/v1/chat/completions", &body);
        assert_eq!(code, 200);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], json!("assistant"));
        let mut text = String::new();
        for c in &chunks {
            assert_eq!(c["object"], json!("chat.completion.chunk"));
            assert_eq!(c["id"], chunks[0]["id"]);
            assert!(c.get("usage").is_some(), "include_usage: every chunk has usage");
            if let Some(t) = c["choices"][0]["delta"]["content"].as_str() {
                text.push_str(t);
            }
        }
        assert_eq!(text, want["response"].as_str().unwrap());
        let n = chunks.len();
        assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], choice["finish_reason"]);
        assert_eq!(chunks[n - 1]["choices"], json!([]));
        assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], want["decode_tokens"]);
    }
}

#[test]
fn completions_take_the_raw_prompt() {
    let s = Server::start(&[]);
    let g = &generations()[0];
    let want = complete(&g["request"]);
    // The chat template's rendering of the first reference request, without the BOS token
    // (the raw endpoint adds it): the same tokens, so the same greedy answer.
    let prompt = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n<|im_start|>assistant\n";
    let body = json!({"model": "m", "prompt": prompt, "temperature": 0, "max_tokens": 40, "repetition_penalty": 1.0});
    let (code, v) = s.post("/v1/completions", &body);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["object"], json!("text_completion"));
    assert_eq!(v["choices"][0]["text"], want["response"]);
    assert_eq!(v["usage"]["completion_tokens"], want["decode_tokens"]);
    let mut body = body;
    body["stream"] = json!(true);
    let (code, events) = s.stream("/v1/completions", &body);
    assert_eq!(code, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, want["response"].as_str().unwrap());
}

#[test]
fn bad_requests_get_openai_errors() {
    let s = Server::start(&["--max-body-bytes", "4096", "--ctx", "64"]);
    let chat = "/v1/chat/completions";
    let cases: Vec<(&str, String, u16)> = vec![
        (chat, "{\"messages\": [".into(), 400),
        (chat, "not json".into(), 400),
        (chat, "".into(), 400),
        (chat, "[1, 2]".into(), 400),
        (chat, r#"{"messages": "hi"}"#.into(), 400),
        (chat, r#"{"messages": []}"#.into(), 400),
        (chat, r#"{"messages": [{"role": "robot", "content": "hi"}]}"#.into(), 400),
        (chat, r#"{"messages": [{"role": "user", "content": {"x": 1}}]}"#.into(), 400),
        (chat, r#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]}"#.into(), 400),
        (chat, r#"{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}"#.into(), 400),
        (chat, r#"{"messages": [{"role": "user", "content": "hi"}], "temperature": -1}"#.into(), 400),
        (chat, r#"{"messages": [{"role": "user", "content": "hi"}], "top_p": 0}"#.into(), 400),
        (chat, r#"{"messages": [{"role": "user", "content": "hi"}], "n": 2}"#.into(), 400),
        (chat, r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}"#.into(), 400),
        (chat, r#"{"messages": [{"role": "user", "content": "hi"}], "stop": [""]}"#.into(), 400),
        (chat, r#"{"messages": [{"role": "user", "content": "hi"}], "tools": [42]}"#.into(), 400),
        (chat, r#"{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}"#.into(), 400),
        (chat, r#"{"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}]}"#.into(), 400),
        (chat, format!(r#"{{"messages": [{{"role": "user", "content": "{}"}}]}}"#, "word ".repeat(100)), 400),
        (chat, format!(r#"{{"messages": [{{"role": "user", "content": "{}"}}], "stream": true}}"#, "word ".repeat(100)), 400),
        (chat, format!(r#"{{"messages": [{{"role": "user", "content": "{}"}}]}}"#, "x".repeat(5000)), 413),
        ("/v1/completions", r#"{"prompt": [1, 2, 3]}"#.into(), 400),
        ("/v1/completions", r#"{"prompt": "a", "echo": true}"#.into(), 400),
        ("/v1/completions", r#"{"max_tokens": 3}"#.into(), 400),
        ("/v1/nothing", "{}".into(), 404),
    ];
    for (path, body, want) in &cases {
        let (code, v) = s.post_raw(path, body);
        assert_error_shape(code, &v, *want, &format!("{path} {}", &body[..body.len().min(120)]));
    }
    // A prompt over --ctx is OpenAI's context_length_exceeded.
    let (_, v) = s.post_raw(chat, &cases[18].1);
    assert_eq!(v["error"]["code"], json!("context_length_exceeded"));
    let (code, v) = s.get("/v1/chat/completions");
    assert_error_shape(code, &v, 405, "GET on a POST endpoint");
    // The server is unharmed.
    let (code, _) = s.post(chat, &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}));
    assert_eq!(code, 200);
}

#[test]
fn structured_output_and_forced_tool_calls_are_served() {
    let s = Server::start(&[]);
    let chat = "/v1/chat/completions";
    // Structured output and forced tool calls: this build's engine has constrained decoding, so
    // /v1/models says so and both are served, with output that parses (and a schema's keys).
    let (_, m) = s.get("/v1/models");
    let caps = &m["data"][0]["saguaro"];
    assert_eq!(caps["tool_choice"], json!(true), "{m}");
    assert_eq!(caps["json_schema"], json!(true), "{m}");
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]}}}]);
    let forced = json!({"messages": [{"role": "user", "content": "hi"}], "tools": tools, "max_tokens": 160,
                        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "temperature": 0});
    let (code, v) = s.post(chat, &forced);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], json!("tool_calls"), "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], json!("get_weather"), "{v}");
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().expect("arguments are a string")).expect("arguments parse");
    assert!(arguments["city"].is_string(), "{arguments}");
    let object_schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"], "additionalProperties": false});
    let schema = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 160, "temperature": 0,
                        "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": object_schema}}});
    let (code, v) = s.post(chat, &schema);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], json!("stop"), "{v}");
    let content = v["choices"][0]["message"]["content"].as_str().expect("content is a string");
    let parsed: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{content:?} does not parse: {e}"));
    assert!(parsed["answer"].is_i64() && parsed.as_object().unwrap().len() == 1, "{parsed}");
    // An unsupported schema is the client's error, named.
    let bad = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                     "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "string", "not": {"const": "a"}}}}});
    let (code, v) = s.post(chat, &bad);
    assert_error_shape(code, &v, 400, "unsupported schema");
}

#[test]
fn api_key_is_required_when_set() {
    let s = Server::start(&["--api-key", "sekret-key"]);
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).to_string();
    let post = |auth: Option<&str>| {
        let mut r = agent().post(&s.url("/v1/chat/completions"));
        if let Some(a) = auth {
            r = r.set("Authorization", a);
        }
        answer(r.send_string(&body))
    };
    for bad in [None, Some("Bearer wrong"), Some("Bearer sekret-ke"), Some("sekret-key"), Some("Bearer sekret-key2")] {
        let (code, v) = post(bad);
        assert_error_shape(code, &v, 401, &format!("{bad:?}"));
        assert_eq!(v["error"]["code"], json!("invalid_api_key"));
    }
    assert_eq!(post(Some("Bearer sekret-key")).0, 200);
    let (code, v) = answer(agent().get(&s.url("/v1/models")).call());
    assert_error_shape(code, &v, 401, "models without a key");
    assert_eq!(s.get("/health").0, 200, "health needs no key");
}

/// A copy of the fixture model that never ends its turn: `<|im_end|>` renamed (so the
/// tokenizer has no end-of-turn token) and an end-of-sequence id outside the vocabulary. Greedy
/// runs go on until `max_tokens` or the full context (4096 positions: seconds, not milliseconds).
fn endless_model(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saguaro-server-endless-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(model_dir()).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let mut bytes = std::fs::read(&p).unwrap();
        if name.ends_with(".json") {
            let mut text = String::from_utf8(bytes).unwrap().replace("<|im_end|>", "<|im_fin|>");
            if name == "config.json" || name == "generation_config.json" {
                let mut v: Value = serde_json::from_str(&text).unwrap();
                v["eos_token_id"] = json!(100_000);
                text = v.to_string();
            }
            bytes = text.into_bytes();
        }
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir
}

/// A request that runs until `max_tokens` or the full context on the endless model.
fn long_request(max_tokens: usize, stream: bool) -> Value {
    json!({"prompt": "hi", "max_tokens": max_tokens, "temperature": 0, "stream": stream})
}

#[test]
fn a_full_queue_answers_503_and_a_client_that_leaves_frees_its_slot() {
    let endless = endless_model("queue");
    let s = Server::start_with(&endless, &["--parallel", "1", "--queue", "0"]);
    // Alone, the long request generates its 4000 tokens.
    let (_, v) = s.post("/v1/completions", &long_request(4000, false));
    assert_eq!((v["usage"]["completion_tokens"].clone(), v["choices"][0]["finish_reason"].clone()), (json!(4000), json!("length")));
    let generated = |h: &Value| h["tokens_generated"].as_u64().unwrap();
    let before = generated(&s.get("/health").1);
    // Hold the only slot with a stream that is read slowly.
    let r = agent().post(&s.url("/v1/completions")).send_string(&long_request(4000, true).to_string()).unwrap();
    let mut reader = BufReader::new(r.into_reader());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("data: "), "{line}");
    let (code, v) = s.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}));
    assert_error_shape(code, &v, 503, "queue full");
    let retry = agent().post(&s.url("/v1/chat/completions")).send_string(r#"{"messages": [{"role": "user", "content": "x"}]}"#);
    match retry {
        Err(ureq::Error::Status(503, r)) => assert_eq!(r.header("retry-after"), Some("1")),
        other => panic!("expected 503, got {:?}", other.map(|r| r.status())),
    }
    // Leave mid-stream: the generation stops and the slot is free again.
    drop(reader);
    let h = s.wait_idle();
    assert_eq!(h["slots_processing"], json!(0), "{h}");
    assert_eq!(h["requests_cancelled"], json!(1), "{h}");
    // It stopped long before its 4000 tokens.
    println!("a stream dropped after its first event generated {} of its 4000 tokens", generated(&h) - before);
    assert!(generated(&h) - before < 2000, "{h}");
    let (code, _) = s.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}));
    assert_eq!(code, 200);

    // A non-streamed request whose client gives up is cancelled too.
    let quick = ureq::AgentBuilder::new().timeout(Duration::from_millis(300)).build();
    let before = generated(&s.get("/health").1);
    let gone = quick.post(&s.url("/v1/completions")).send_string(&long_request(4000, false).to_string());
    assert!(gone.is_err(), "the request should outlive the client's timeout");
    let h = s.wait_idle();
    assert_eq!(h["slots_processing"], json!(0), "{h}");
    assert_eq!(h["requests_cancelled"], json!(2), "{h}");
    println!("a non-streamed request whose client left after 300 ms generated {} of its 4000 tokens", generated(&h) - before);
    assert!(generated(&h) - before < 2000, "{h}");
    drop(s);
    let _ = std::fs::remove_dir_all(&endless);
}

#[test]
fn a_conversation_reuses_its_prefix() {
    let s = Server::start(&["--parallel", "2"]);
    let mut messages = vec![json!({"role": "user", "content": "What is the weather in Paris?"})];
    let other = json!({"messages": [{"role": "user", "content": "Something else entirely"}], "max_tokens": 8, "temperature": 0});
    let mut reused = Vec::new();
    for turn in 0..3 {
        let (code, v) = s.post("/v1/chat/completions", &json!({"messages": messages, "max_tokens": 8, "temperature": 0}));
        assert_eq!(code, 200, "{v}");
        reused.push(v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap());
        assert_eq!(reused[turn], v["saguaro"]["reused_tokens"].as_u64().unwrap());
        messages.push(json!({"role": "assistant", "content": v["choices"][0]["message"]["content"]}));
        messages.push(json!({"role": "user", "content": format!("And turn {turn}?")}));
        // Another conversation in between takes the other session.
        assert_eq!(s.post("/v1/chat/completions", &other).0, 200);
    }
    assert_eq!(reused[0], 0);
    assert!(reused[1] > 10 && reused[2] > reused[1], "{reused:?}");
}

/// 200 requests from 16 clients: greedy chat and completion requests, streamed or not, some
/// long streams (3000 tokens) dropped after two events, some malformed. Every well-formed
/// request is answered with exactly what it gets alone; the dropped ones stop early; the server
/// survives with bounded memory. On the endless model, so every request runs exactly to its
/// `max_tokens` and the tokens the cancelled ones generated can be counted.
#[test]
fn load_test_200_requests_from_16_clients() {
    const CLIENTS: usize = 16;
    const REQUESTS: usize = 200;
    let endless = endless_model("load");
    let mut s = Server::start_with(&endless, &["--parallel", "4", "--queue", "64"]);
    const PROMPTS: [&str; 12] = [
        "What is the weather in Paris?", "Tell me about the saguaro cactus.", "Weather in Tokyo?", "hi", "Write a haiku.",
        "List three colors.", "2+2=?", "Translate 'cat' to French.", "Who are you?", "Explain rust lifetimes.",
        "Name a planet.", "Say nothing.",
    ];
    // What a request is: (endpoint, body) by index; the body without `stream`.
    fn request(i: usize) -> (&'static str, Value) {
        let p = PROMPTS[i % PROMPTS.len()];
        let max_tokens = 8 + (i * 7) % 33;
        if i % 3 == 2 {
            ("/v1/completions", json!({"prompt": format!("<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n"), "max_tokens": max_tokens, "temperature": 0}))
        } else {
            ("/v1/chat/completions", json!({"messages": [{"role": "user", "content": p}], "max_tokens": max_tokens, "temperature": 0}))
        }
    }
    let text_of = |endpoint: &str, v: &Value| -> String {
        let c = &v["choices"][0];
        if endpoint == "/v1/completions" { c["text"].as_str() } else { c["message"]["content"].as_str() }.unwrap().to_string()
    };
    // Each distinct request alone first (prompt x max_tokens x endpoint repeats with the index's
    // residues, so a few dozen distinct bodies).
    let mut alone = std::collections::HashMap::new();
    for i in 0..REQUESTS {
        let (endpoint, body) = request(i);
        let key = format!("{endpoint}{body}");
        if let std::collections::hash_map::Entry::Vacant(slot) = alone.entry(key) {
            let (code, v) = s.post(endpoint, &body);
            assert_eq!(code, 200, "{v}");
            slot.insert(text_of(endpoint, &v));
        }
    }
    let alone = Arc::new(alone);
    let distinct = alone.len();
    let rss_before = s.peak_rss_kib();
    let generated = |s: &Server| s.get("/health").1["tokens_generated"].as_u64().unwrap() as usize;
    let tokens_before = generated(&s);
    let answered_tokens = Arc::new(AtomicUsize::new(0));

    let next = Arc::new(AtomicUsize::new(0));
    let counts = Arc::new(Mutex::new((0usize, 0usize, 0usize, 0usize))); // answered, streamed, cancelled, malformed
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, counts, alone, base) = (Arc::clone(&next), Arc::clone(&counts), Arc::clone(&alone), s.base.clone());
            let answered_tokens = Arc::clone(&answered_tokens);
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= REQUESTS {
                    break;
                }
                let (endpoint, mut body) = request(i);
                let url = format!("{base}{endpoint}");
                let want = &alone[&format!("{endpoint}{body}")];
                match i % 10 {
                    7 => {
                        let bad = ["{\"messages\": [", "{\"messages\": 3}", "{\"prompt\": 5}", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"n\": 4}"][i % 4];
                        let (code, v) = answer(agent().post(&url).send_string(bad));
                        assert_error_shape(code, &v, 400, bad);
                        counts.lock().unwrap().3 += 1;
                    }
                    3 | 6 => {
                        body["stream"] = json!(true);
                        body["stream_options"] = json!({"include_usage": true});
                        if i % 10 == 3 {
                            body["max_tokens"] = json!(3000);
                        }
                        let r = agent().post(&url).send_string(&body.to_string()).unwrap();
                        let mut reader = BufReader::new(r.into_reader());
                        if i % 10 == 3 {
                            // Leave after two events.
                            let mut line = String::new();
                            for _ in 0..4 {
                                reader.read_line(&mut line).unwrap();
                            }
                            counts.lock().unwrap().2 += 1;
                            continue;
                        }
                        let events = sse_events(reader);
                        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
                        let mut text = String::new();
                        for e in &events[..events.len() - 1] {
                            let c: Value = serde_json::from_str(e).unwrap();
                            if let Some(n) = c["usage"]["completion_tokens"].as_u64() {
                                answered_tokens.fetch_add(n as usize, Ordering::Relaxed);
                            }
                            let piece = if endpoint == "/v1/completions" { &c["choices"][0]["text"] } else { &c["choices"][0]["delta"]["content"] };
                            text.push_str(piece.as_str().unwrap_or(""));
                        }
                        assert_eq!(&text, want, "request {i} streamed");
                        let mut c = counts.lock().unwrap();
                        c.0 += 1;
                        c.1 += 1;
                    }
                    _ => {
                        let (code, v) = answer(agent().post(&url).send_string(&body.to_string()));
                        assert_eq!(code, 200, "request {i}: {v}");
                        let got = if endpoint == "/v1/completions" { &v["choices"][0]["text"] } else { &v["choices"][0]["message"]["content"] };
                        assert_eq!(got.as_str().unwrap(), want, "request {i}");
                        answered_tokens.fetch_add(v["usage"]["completion_tokens"].as_u64().unwrap() as usize, Ordering::Relaxed);
                        counts.lock().unwrap().0 += 1;
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    let elapsed = started.elapsed();
    let h = s.wait_idle();
    assert!(s.alive(), "the server crashed");
    assert_eq!(h["slots_processing"], json!(0), "{h}");
    let (answered, streamed, cancelled, malformed) = *counts.lock().unwrap();
    assert_eq!(answered + cancelled + malformed, REQUESTS);
    assert_eq!((cancelled, malformed), (20, 20));
    let rss_after = s.peak_rss_kib();
    // What the dropped streams generated: everything minus the answered requests' tokens.
    let cancelled_tokens = generated(&s) - tokens_before - answered_tokens.load(Ordering::Relaxed);
    println!(
        "load test: {REQUESTS} requests from {CLIENTS} clients in {:.2} s ({answered} answered, {streamed} of them streamed, {cancelled} long streams dropped after two events, {malformed} malformed -> 400); {distinct} distinct requests all equal to their lone runs; the dropped streams generated {cancelled_tokens} tokens in all (of 3000 each asked); server VmHWM {} KiB after the lone runs, {} KiB after the load; health {h}",
        elapsed.as_secs_f64(),
        rss_before,
        rss_after
    );
    assert_eq!(h["requests_cancelled"], json!(cancelled), "{h}");
    assert!(cancelled_tokens < cancelled * 3000 / 4, "the dropped streams went on: {cancelled_tokens} tokens");
    // The model is 1.4 MB; sessions are 4 at most: the peak stays near the idle footprint.
    assert!(rss_after < 512 * 1024, "peak RSS {rss_after} KiB");
    assert!(rss_after < rss_before + 128 * 1024, "RSS grew under load: {rss_before} -> {rss_after} KiB");
    assert!(!s.log.lock().unwrap().contains("panicked"));
    drop(s);
    let _ = std::fs::remove_dir_all(&endless);
}
