//! `--engine component` (the WASI component guest in wasmtime) against `--engine native`: the
//! same bytes for logits and tokens, the same response JSON (timings aside) for chat, and the
//! sandbox's limits tried from outside: a memory limit too small for the model, cancellation of
//! a long generation, reads outside the preopened folder.
//!
//! The tests need the guest component. `$SAGUARO_COMPONENT` names a prebuilt one; otherwise the
//! tests build it once (`cargo build --release --locked -p saguaro-wasm --target wasm32-wasip2`,
//! a no-op when it is up to date) into the cargo target folder the tests run from, where the
//! CLI's default lookup finds it. They never skip: no component is a failure.
#![cfg(feature = "component")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use saguaro_engine::generate::GenerateOptions;
use saguaro_engine::Error;
use saguaro_host::wasmtime_host::{
    CacheUse, ComponentRuntime, Interruption, Limits, RuntimeOptions, BUILT_RELATIVE, CACHE_ENV, COMPONENT_ENV,
};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_saguaro");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    workspace().join("tests/fixtures").join(name)
}

/// The cargo target folder of this test run: `$CARGO_TARGET_DIR`, else the folder above the
/// saguaro binary holding cargo's CACHEDIR.TAG.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() { dir } else { workspace().join(dir) };
    }
    let exe = Path::new(BIN);
    exe.ancestors()
        .skip(1)
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .unwrap_or_else(|| exe.parent().unwrap().parent().unwrap())
        .to_path_buf()
}

/// A compile cache of the tests' own (the user's cache is left alone).
fn cache_dir() -> PathBuf {
    target_dir().join("saguaro-component-cache")
}

struct Setup {
    component: PathBuf,
    runtime: ComponentRuntime,
}

/// The component (built once if needed) and its compiled runtime (which also fills the
/// compile cache the CLI runs below use, so they do not each compile it).
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let component = match std::env::var_os(COMPONENT_ENV).filter(|p| !p.is_empty()) {
            Some(p) => {
                let p = PathBuf::from(p);
                assert!(p.is_file(), "${COMPONENT_ENV}={} does not exist", p.display());
                p
            }
            None => build_component(),
        };
        let runtime = ComponentRuntime::load_with_cache(&component, Some(&cache_dir())).expect("compile the component");
        let info = runtime.compile_info();
        eprintln!("component {}: ready in {:.2} s ({:?})", component.display(), info.seconds, info.cache);
        Setup { component, runtime }
    })
}

fn build_component() -> PathBuf {
    let target = target_dir();
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO"))
        .args(["build", "--release", "--locked", "-p", "saguaro-wasm", "--target", "wasm32-wasip2"])
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", &target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run cargo to build the component");
    assert!(
        out.status.success(),
        "building the component failed (CARGO_TARGET_DIR={}):\n{}",
        target.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = target.join(BUILT_RELATIVE);
    assert!(path.is_file(), "cargo built the component but {} is missing", path.display());
    eprintln!("component built (or up to date) in {:.1} s: {}", t0.elapsed().as_secs_f64(), path.display());
    path
}

/// Runs saguaro with the tests' component cache; `component` adds `--engine component
/// --component PATH`.
fn saguaro(args: &[&str], stdin: &str, component: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    if component {
        cmd.args(["--engine", "component", "--component", setup().component.to_str().unwrap()]);
    }
    run(cmd, stdin)
}

fn run(mut cmd: Command, stdin: &str) -> Output {
    use std::io::Write;
    cmd.env(CACHE_ENV, cache_dir()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run saguaro");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: &Output, what: &str) -> Vec<u8> {
    assert!(out.status.success(), "{what}: exit {:?}, stderr {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    out.stdout.clone()
}

/// Exit status 1, one `error: ...` naming `needle`, no panic.
fn assert_clean_error(out: &Output, needle: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: stderr {stderr}");
    assert!(stderr.starts_with("error: "), "{what}: stderr {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: one error line expected: {stderr}");
    assert!(stderr.contains(needle), "{what}: expected `{needle}` in {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("saguaro-component-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn convert(src: &Path, out: &Path, quant: &str) {
    let o = saguaro(&["convert", src.to_str().unwrap(), "-o", out.to_str().unwrap(), "--quant", quant, "--quiet"], "", false);
    ok(&o, "convert");
}

fn reference(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("reference.json")).unwrap()).unwrap()
}

fn prompt(name: &str) -> String {
    let r = reference(name);
    r["prompt"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap().to_string()).collect::<Vec<_>>().join(",")
}

/// The same command through both engines: identical stdout bytes.
fn assert_same_output(args: &[&str], what: &str) -> Vec<u8> {
    let native = ok(&saguaro(args, "", false), &format!("{what} native"));
    let component = ok(&saguaro(args, "", true), &format!("{what} component"));
    assert!(!native.is_empty(), "{what}: no output");
    assert!(native == component, "{what}: the component's output differs from native");
    native
}

/// Models exercising every weight type: Hugging Face folders (f32/bf16, handed to the guest as
/// bytes) and .cact files in f32, int8 and int4 (read by the guest from its preopen).
fn models(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![fixture("hybrid-gqa"), fixture("bf16-convbias")];
    for (name, quant) in [("hybrid-gqa", "f32"), ("hybrid-gqa", "int8"), ("realistic-hybrid", "int4"), ("moe-e4k2", "int8")] {
        let p = dir.join(format!("{name}-{quant}.cact"));
        convert(&fixture(name), &p, quant);
        out.push(p);
    }
    out
}

#[test]
fn logits_through_the_component_are_the_native_bits() {
    let dir = TempDir::new("logits");
    for model in models(&dir.0) {
        let name = model.file_name().unwrap().to_string_lossy().into_owned();
        let tokens = prompt(if name.starts_with("realistic") {
            "realistic-hybrid"
        } else if name.starts_with("moe") {
            "moe-e4k2"
        } else if name.starts_with("bf16") {
            "bf16-convbias"
        } else {
            "hybrid-gqa"
        });
        let out = assert_same_output(&["logits", "--model", model.to_str().unwrap(), "--tokens", &tokens], &name);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["logits"].as_array().unwrap().len(), tokens.split(',').count(), "{name}");
    }
}

#[test]
fn generated_tokens_through_the_component_are_the_native_tokens() {
    let dir = TempDir::new("generate");
    let cact = dir.0.join("sharded-int4.cact");
    convert(&fixture("sharded-allattn"), &cact, "int4");
    for name in ["sharded-allattn", "bf16-convbias", "moe-e6k3"] {
        let model = fixture(name);
        let m = model.to_str().unwrap();
        let out = assert_same_output(
            &["generate", "--model", m, "--tokens", &prompt(name), "--max-tokens", "16", "--temperature", "0", "--json"],
            name,
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["tokens"], reference(name)["greedy"], "{name}: greedy tokens against transformers");
        // Sampling (the portable sampler, seeded) and the plain output format.
        assert_same_output(
            &["generate", "--model", m, "--tokens", &prompt(name), "--max-tokens", "24", "--temperature", "0.8", "--seed", "7"],
            &format!("{name} sampled"),
        );
    }
    assert_same_output(
        &["generate", "--model", cact.to_str().unwrap(), "--tokens", &prompt("sharded-allattn"), "--max-tokens", "32", "--stop-on-eos"],
        "int4 .cact",
    );
}

const TIMINGS: [&str; 5] = ["time_to_first_token_ms", "total_time_ms", "prefill_tps", "decode_tps", "ram_usage_mb"];

fn response(out: &[u8]) -> Value {
    let text = String::from_utf8(out.to_vec()).unwrap();
    let mut v: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    for k in TIMINGS {
        assert!(v.get(k).is_some(), "missing {k} in {text}");
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

#[test]
fn chat_completions_through_the_component_match_native() {
    let chat = fixture("chat");
    let generations: Value = serde_json::from_str(&std::fs::read_to_string(chat.join("reference.json")).unwrap()).unwrap();
    let dir = TempDir::new("chat");
    let cact = dir.0.join("chat.cact");
    convert(&chat.join("model"), &cact, "int8");
    let folder = chat.join("model");
    for (i, g) in generations["generations"].as_array().unwrap().iter().enumerate() {
        let request = g["request"].to_string();
        for model in [&folder, &cact] {
            let m = model.to_str().unwrap();
            let native = ok(&saguaro(&["complete", "--model", m], &request, false), "native complete");
            let component = ok(&saguaro(&["complete", "--model", m], &request, true), "component complete");
            assert_eq!(response(&component), response(&native), "request {i}, {m}");
            if model == &folder {
                assert_eq!(response(&component)["response"], g["text"], "request {i}: text against transformers");
            }
            // Streaming: the same token lines, as they come, then the same response.
            let native = ok(&saguaro(&["complete", "--model", m, "--stream"], &request, false), "native stream");
            let component = ok(&saguaro(&["complete", "--model", m, "--stream"], &request, true), "component stream");
            let lines = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap().lines().map(str::to_string).collect::<Vec<_>>();
            let (n, c) = (lines(&native), lines(&component));
            assert_eq!(n.len(), c.len(), "request {i}: stream lengths");
            assert!(n.len() > 1, "request {i}: no token lines");
            assert_eq!(n[..n.len() - 1], c[..c.len() - 1], "request {i}: token lines");
            assert_eq!(response(&component), response(&native), "request {i}: streamed response");
        }
    }
}

#[test]
fn bad_requests_fail_the_same_way_in_the_component() {
    let model = fixture("chat").join("model");
    let m = model.to_str().unwrap();
    for request in ["not json at all", r#"{"messages": [{"role": "robot", "content": "hi"}]}"#, r#"{"messages": []}"#] {
        for stream in [false, true] {
            let args: &[&str] = if stream { &["complete", "--model", m, "--stream"] } else { &["complete", "--model", m] };
            let native = saguaro(args, request, false);
            let component = saguaro(args, request, true);
            assert_eq!(native.status.code(), Some(1));
            assert_eq!(component.status.code(), Some(1), "{request}: {}", String::from_utf8_lossy(&component.stderr));
            assert_eq!(response(&component.stdout), response(&native.stdout), "{request}");
            assert_eq!(component.stderr, native.stderr, "{request}");
        }
    }
    // Bad token ids: the engine's own message.
    let model = fixture("hybrid-gqa");
    for args in [["logits", "--tokens", "1,397"], ["generate", "--tokens", "5,99999"]] {
        let mut full = vec![args[0], "--model", model.to_str().unwrap()];
        full.extend_from_slice(&args[1..]);
        let native = saguaro(&full, "", false);
        let component = saguaro(&full, "", true);
        assert_clean_error(&component, "token id", "bad token through the component");
        assert_eq!(component.stderr, native.stderr);
    }
}

#[test]
fn a_memory_limit_too_small_for_the_model_is_a_clean_error() {
    let dir = TempDir::new("memory");
    let cact = dir.0.join("conv-heavy.cact");
    convert(&fixture("conv-heavy"), &cact, "f32");
    let size_mb = std::fs::metadata(&cact).unwrap().len() >> 20;
    assert!(size_mb >= 3, "the model should be a few MiB, is {size_mb} MiB");
    // Under the file size (the guest holds the whole file), and far under.
    for mb in [size_mb.to_string(), "1".to_string()] {
        for args in [&["logits", "--tokens", "1,2,3"][..], &["generate", "--tokens", "1,2,3"][..]] {
            let mut full = vec![args[0], "--model", cact.to_str().unwrap(), "--component-memory-mb", &mb];
            full.extend_from_slice(&args[1..]);
            let out = saguaro(&full, "", true);
            assert_clean_error(&out, "ran out of memory", &format!("{mb} MiB"));
            assert_clean_error(&out, &format!("limit {mb} MiB"), &format!("{mb} MiB"));
            assert!(out.stdout.is_empty());
        }
    }
    // complete prints its failure JSON as well.
    let out = saguaro(
        &["complete", "--model", fixture("chat").join("model").to_str().unwrap(), "--component-memory-mb", "1"],
        r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
        true,
    );
    assert_clean_error(&out, "ran out of memory", "complete");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["success"].clone(), v["error_code"].clone()), (json!(false), json!("io")));
    // Enough memory: the same command works.
    let out = saguaro(&["logits", "--model", cact.to_str().unwrap(), "--tokens", "1,2,3", "--component-memory-mb", "256"], "", true);
    ok(&out, "256 MiB");

    // Through the API: a clean error, and the runtime still loads the model with more memory.
    let rt = &setup().runtime;
    let err = rt.load_model(&cact, &Limits::memory_mb(size_mb)).err().expect("load under the limit");
    assert!(matches!(&err, Error::Io(m) if m.contains("ran out of memory")), "{err}");
    assert!(rt.load_model(&cact, &Limits::memory_mb(256)).is_ok());
}

/// A runtime compiled with epoch checks ([`Interruption::Epoch`]), built once.
fn epoch_runtime() -> &'static ComponentRuntime {
    static RUNTIME: OnceLock<ComponentRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let options = RuntimeOptions { cache_dir: Some(cache_dir()), interruption: Interruption::Epoch };
        ComponentRuntime::load_with(&setup().component, &options).expect("compile the component with epoch checks")
    })
}

#[test]
fn cancel_stops_a_long_generation_and_leaves_other_models_running() {
    let rt = epoch_runtime();
    assert_eq!(rt.interruption(), Interruption::Epoch);
    assert_eq!(setup().runtime.interruption(), Interruption::BetweenCalls, "the default");
    let model_path = fixture("realistic-hybrid");
    let mut long = rt.load_model(&model_path, &Limits::default()).unwrap();
    let mut other = rt.load_model(&fixture("sharded-allattn"), &Limits::default()).unwrap();
    let cancel = long.cancel_handle();
    let ids: Vec<u32> = prompt("realistic-hybrid").split(',').map(|t| t.parse().unwrap()).collect();
    let opts = GenerateOptions { max_tokens: 100_000, temperature: 0.0, seed: 0, stop_on_eos: false };

    // Another model of the same engine generates meanwhile: the epoch bump must not stop it.
    let other_ids: Vec<u32> = prompt("sharded-allattn").split(',').map(|t| t.parse().unwrap()).collect();
    let short = GenerateOptions { max_tokens: 16, ..opts.clone() };
    let other_thread = std::thread::spawn(move || {
        let mut runs = Vec::new();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(400) {
            runs.push(other.generate_tokens(&other_ids, &short).expect("the other model keeps working"));
        }
        runs
    });

    let t0 = Instant::now();
    let worker = std::thread::spawn(move || {
        let r = long.generate_tokens(&ids, &opts);
        (r, Instant::now(), long)
    });
    std::thread::sleep(Duration::from_millis(100));
    let cancelled_at = Instant::now();
    cancel.cancel();
    let (result, returned_at, mut long) = worker.join().unwrap();
    assert_eq!(result, Err(Error::Cancelled), "after {:?}", returned_at - t0);
    let latency = returned_at.saturating_duration_since(cancelled_at);
    assert!(latency < Duration::from_secs(1), "cancel took {latency:?}");
    eprintln!("cancelled after {:?}, {latency:?} after the request", returned_at - t0);
    // The instance stopped mid-call: it refuses further work with a clear error.
    match long.logits(&[1, 2]) {
        Err(Error::Io(m)) => assert!(m.contains("load the model again"), "{m}"),
        other => panic!("expected an error after cancel, got {other:?}"),
    }

    let runs = other_thread.join().unwrap();
    assert!(!runs.is_empty());
    let want = reference("sharded-allattn")["greedy"].clone();
    for r in runs {
        assert_eq!(json!(r), want);
    }

    // A cancel while nothing runs cancels the next call only, in either runtime; both
    // compile the same bits.
    let mut fast = setup().runtime.load_model(&fixture("sharded-allattn"), &Limits::default()).unwrap();
    let want = fast.logits(&[1, 2]).unwrap();
    for rt in [rt, &setup().runtime] {
        let mut m = rt.load_model(&fixture("sharded-allattn"), &Limits::default()).unwrap();
        m.cancel_handle().cancel();
        assert_eq!(m.logits(&[1, 2]), Err(Error::Cancelled));
        let got = m.logits(&[1, 2]).unwrap();
        assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
}

#[test]
fn cancel_between_calls_stops_a_stream_at_the_next_token_and_the_model_stays_usable() {
    let rt = &setup().runtime;
    assert_eq!(rt.interruption(), Interruption::BetweenCalls);
    let chat = fixture("chat");
    let generations: Value = serde_json::from_str(&std::fs::read_to_string(chat.join("reference.json")).unwrap()).unwrap();
    let request = generations["generations"][0]["request"].to_string();
    let mut model = rt.load_model(&chat.join("model"), &Limits::default()).unwrap();
    let fresh = model.session().unwrap().complete(&request).unwrap();
    let full_tokens = response(fresh.as_bytes())["decode_tokens"].as_u64().unwrap();
    assert!(full_tokens > 4, "the request makes {full_tokens} tokens");

    // Cancelled from the handle (as another thread would) after the third token: no fourth.
    let cancel = model.cancel_handle();
    let mut session = model.session().unwrap();
    let mut seen = 0;
    let result = session.complete_streaming(&request, |_| {
        seen += 1;
        if seen == 3 {
            cancel.cancel();
        }
        true
    });
    assert_eq!(result, Err(Error::Cancelled));
    assert_eq!(seen, 3, "tokens delivered after the cancel");
    // Nothing trapped: the same session takes the next request and answers as a fresh one.
    session.reset().unwrap();
    let again = session.complete_streaming(&request, |_| true).unwrap();
    assert_eq!(response(again.as_bytes()), response(fresh.as_bytes()));
}

#[test]
fn the_component_cannot_read_outside_its_preopen() {
    let rt = &setup().runtime;
    let dir = TempDir::new("preopen");
    let inside = dir.0.join("inside");
    std::fs::create_dir_all(&inside).unwrap();
    // A valid model just outside the preopened folder, and links to it from inside: a leak
    // would load successfully, so an error proves the wall.
    let outside = dir.0.join("outside.cact");
    convert(&fixture("sharded-allattn"), &outside, "f32");
    std::fs::copy(&outside, inside.join("model.cact")).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside, inside.join("abs-link.cact")).unwrap();
        std::os::unix::fs::symlink("../outside.cact", inside.join("rel-link.cact")).unwrap();
    }
    let limits = Limits::default();
    // The model inside loads.
    let m = rt.sandbox(Some(&inside), &limits).unwrap().load_path("/model/model.cact").expect("load inside the preopen");
    assert_eq!(m.info().vocab_size, 509);
    for path in [
        "/etc/passwd",
        "../outside.cact",
        "/model/../outside.cact",
        "/outside.cact",
        "outside.cact",
        "/model/abs-link.cact",
        "/model/rel-link.cact",
        "/model/missing.cact",
        "/model",
    ] {
        match rt.sandbox(Some(&inside), &limits).unwrap().load_path(path) {
            Err(Error::Io(msg)) => assert!(!msg.is_empty()),
            Err(other) => panic!("{path}: expected an i/o error, got {other}"),
            Ok(_) => panic!("{path}: the component read outside its preopen"),
        }
    }
    // Without a preopen (a model given as bytes) there is nothing to read at all.
    match rt.sandbox(None, &limits).unwrap().load_path("/model/model.cact") {
        Err(Error::Io(_)) => {}
        Err(other) => panic!("expected an i/o error, got {other}"),
        Ok(_) => panic!("read a file without a preopen"),
    }
}

#[test]
fn the_component_path_is_found_or_named_with_a_build_hint() {
    let component = &setup().component;
    let model = fixture("hybrid-gqa");
    let m = model.to_str().unwrap();
    // $SAGUARO_COMPONENT instead of --component.
    let mut cmd = Command::new(BIN);
    cmd.args(["logits", "--model", m, "--tokens", "1,2", "--engine", "component"]).env(COMPONENT_ENV, component);
    let via_env = run(cmd, "");
    let native = saguaro(&["logits", "--model", m, "--tokens", "1,2"], "", false);
    assert_eq!(ok(&via_env, "via env"), ok(&native, "native"));
    // No --component and no $SAGUARO_COMPONENT: the guest built in this target folder (which
    // setup() built there unless $SAGUARO_COMPONENT named another one).
    if std::env::var_os(COMPONENT_ENV).is_none() {
        let mut cmd = Command::new(BIN);
        cmd.args(["logits", "--model", m, "--tokens", "1,2", "--engine", "component"]);
        assert_eq!(ok(&run(cmd, ""), "default component"), ok(&native, "native"));
    }
    // A missing component: the error says how to build one.
    let out = saguaro(&["logits", "--model", m, "--tokens", "1,2", "--engine", "component", "--component", "/nonexistent/c.wasm"], "", false);
    assert_clean_error(&out, "scripts/build-component.sh", "missing --component");
    let mut cmd = Command::new(BIN);
    cmd.args(["logits", "--model", m, "--tokens", "1,2", "--engine", "component"]).env(COMPONENT_ENV, "/nonexistent/c.wasm");
    assert_clean_error(&run(cmd, ""), "/nonexistent/c.wasm", "missing $SAGUARO_COMPONENT");
    // Not a component at all.
    let out = saguaro(&["logits", "--model", m, "--tokens", "1,2", "--engine", "component", "--component", m], "", false);
    assert_clean_error(&out, "no such component file", "a folder as --component");
    let out = saguaro(
        &["logits", "--model", m, "--tokens", "1,2", "--engine", "component", "--component", model.join("config.json").to_str().unwrap()],
        "",
        false,
    );
    assert_clean_error(&out, "not a usable Saguaro component", "a JSON file as --component");
    // Component flags without --engine component.
    let out = saguaro(&["logits", "--model", m, "--tokens", "1,2", "--component-memory-mb", "64"], "", false);
    assert_clean_error(&out, "--engine component", "flags without the engine");
    let out = saguaro(&["logits", "--model", m, "--tokens", "1,2", "--component-epochs"], "", false);
    assert_clean_error(&out, "--engine component", "--component-epochs without the engine");
}

#[test]
fn component_epochs_from_the_command_line_give_the_native_bits() {
    let dir = TempDir::new("epochs");
    let cact = dir.0.join("m.cact");
    convert(&fixture("realistic-hybrid"), &cact, "int8");
    let (m, tokens) = (cact.to_str().unwrap(), prompt("realistic-hybrid"));
    let native = ok(&saguaro(&["logits", "--model", m, "--tokens", &tokens], "", false), "native logits");
    let epochs = ok(&saguaro(&["logits", "--model", m, "--tokens", &tokens, "--component-epochs"], "", true), "epochs");
    assert_eq!(epochs, native);
}

#[test]
fn compiled_code_is_cached() {
    let setup = setup();
    let again = ComponentRuntime::load_with_cache(&setup.component, Some(&cache_dir())).unwrap();
    assert!(matches!(again.compile_info().cache, CacheUse::Hit(_)), "{:?}", again.compile_info());
    eprintln!(
        "component: first load {:.2} s ({:?}), cached load {:.3} s",
        setup.runtime.compile_info().seconds,
        setup.runtime.compile_info().cache,
        again.compile_info().seconds
    );
    // A corrupt cache entry is a miss, never a failure.
    let CacheUse::Hit(file) = &again.compile_info().cache else { unreachable!() };
    let dir = TempDir::new("cache");
    std::fs::copy(file, dir.0.join(file.file_name().unwrap())).unwrap();
    std::fs::write(dir.0.join(file.file_name().unwrap()), b"not compiled code").unwrap();
    let fresh = ComponentRuntime::load_with_cache(&setup.component, Some(&dir.0)).unwrap();
    assert!(matches!(fresh.compile_info().cache, CacheUse::Stored(_)), "{:?}", fresh.compile_info());
    eprintln!("component: compiled (corrupt cache entry replaced) in {:.2} s", fresh.compile_info().seconds);
}
