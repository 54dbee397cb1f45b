//! Property test of the whole command line (issue 17): random bytes, random JSON and damaged
//! model files fed to every `saguaro` command. Whatever comes in, the command exits 0 or 1;
//! on failure stderr has exactly one `error:` line and no panic; no input file changes; and
//! peak memory stays bounded. The case count is kept small (each case runs the binary) so the
//! test takes seconds; raise PROPTEST_CASES to search longer.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{files_digest, run, run_measured, temp_dir};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Peak RSS allowed for any command on these tiny models (MiB).
const MAX_RSS_MB: u64 = 300;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Inputs shared by every case: the chat model as .cact, and the bytes of valid files that
/// cases damage.
struct Shared {
    dir: PathBuf,
    cact: PathBuf,
    cact_bytes: Vec<u8>,
    gguf_bytes: Vec<u8>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = temp_dir("props");
        let cact = dir.join("chat.cact");
        let model = fixtures().join("chat/model");
        let r = run(&["convert", model.to_str().unwrap(), "-o", cact.to_str().unwrap(), "--quant", "int8", "--quiet"], "");
        assert_eq!(r.code, Some(0), "{r:?}");
        let cact_bytes = std::fs::read(&cact).unwrap();
        let gguf_bytes = std::fs::read(fixtures().join("gguf/hybrid-gqa-q8_0.gguf")).unwrap();
        Shared { dir, cact, cact_bytes, gguf_bytes }
    })
}

/// What a case's input file holds.
#[derive(Debug, Clone)]
enum FileKind {
    Random(Vec<u8>),
    /// The chat .cact with bytes overwritten at (position fraction, byte).
    DamagedCact(Vec<(f64, u8)>),
    /// The GGUF fixture with bytes overwritten.
    DamagedGguf(Vec<(f64, u8)>),
    /// The chat .cact cut at a fraction of its length.
    TruncatedCact(f64),
    /// A folder (not a file).
    Folder,
}

fn file_kind() -> impl Strategy<Value = FileKind> {
    let edits = prop::collection::vec((0.0f64..1.0, any::<u8>()), 1..8);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300).prop_map(FileKind::Random),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|mut b| {
            // Random bytes behind a real magic: the readers' header checks.
            let magic: &[u8] = if b.first().is_some_and(|x| x % 2 == 0) { b"CACT" } else { b"GGUF" };
            b.splice(0..0, magic.iter().copied());
            FileKind::Random(b)
        }),
        edits.clone().prop_map(FileKind::DamagedCact),
        edits.prop_map(FileKind::DamagedGguf),
        (0.0f64..1.0).prop_map(FileKind::TruncatedCact),
        Just(FileKind::Folder),
    ]
}

fn damage(bytes: &[u8], edits: &[(f64, u8)]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for &(at, v) in edits {
        let i = ((at * b.len() as f64) as usize).min(b.len() - 1);
        b[i] = v;
    }
    b
}

/// Writes the case's input file (or folder) at `path`.
fn make_input(kind: &FileKind, path: &Path) {
    let s = shared();
    match kind {
        FileKind::Random(b) => std::fs::write(path, b).unwrap(),
        FileKind::DamagedCact(e) => std::fs::write(path, damage(&s.cact_bytes, e)).unwrap(),
        FileKind::DamagedGguf(e) => std::fs::write(path, damage(&s.gguf_bytes, e)).unwrap(),
        FileKind::TruncatedCact(f) => std::fs::write(path, &s.cact_bytes[..(f * s.cact_bytes.len() as f64) as usize]).unwrap(),
        FileKind::Folder => {
            std::fs::create_dir_all(path).unwrap();
            std::fs::write(path.join("config.json"), b"{\"model_type\": \"lfm2\"}").unwrap();
        }
    }
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|x| json!(x)),
        any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| json!(x)),
        "[a-z ]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Requests close to the schema, with random values where it matters.
fn request_json() -> impl Strategy<Value = Value> {
    let role = prop_oneof![Just("system"), Just("user"), Just("assistant"), Just("tool"), Just("robot")];
    let content = prop_oneof![
        "[a-zA-Z ?!]{0,40}".prop_map(Value::String),
        Just(Value::Null),
        any_json(),
    ];
    let message = (role, content, prop::option::of(any_json())).prop_map(|(role, content, calls)| {
        let mut m = json!({"role": role, "content": content});
        if let Some(c) = calls {
            m["tool_calls"] = json!([c]);
        }
        m
    });
    let number = prop_oneof![
        (-10.0f64..10.0).prop_map(|x| json!(x)),
        Just(json!(1e30)),
        Just(json!(1e-30)),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        Just(json!("hot")),
    ];
    let options = (
        prop::option::of(number.clone()),
        prop::option::of(number.clone()),
        prop::option::of(number.clone()),
        prop::option::of(number),
        prop::option::of(0u64..6),
        prop::collection::vec("[a-z]{0,3}", 0..2),
    )
        .prop_map(|(t, k, p, r, max, stops)| {
            let mut o = json!({"max_tokens": max.unwrap_or(2), "stop_sequences": stops});
            for (name, v) in [("temperature", t), ("top_k", k), ("top_p", p), ("repetition_penalty", r)] {
                if let Some(v) = v {
                    o[name] = v;
                }
            }
            o
        });
    (prop::collection::vec(message, 0..4), prop::option::of(any_json()), options).prop_map(|(messages, tools, options)| {
        let mut r = json!({"messages": messages, "options": options});
        if let Some(t) = tools {
            r["tools"] = json!([t]);
        }
        r
    })
}

/// What a case runs.
#[derive(Debug, Clone)]
enum Command {
    Logits(FileKind, String),
    Generate(String, String, u8),
    Convert(FileKind, bool),
    Pull(String),
    Synth(String),
    Bench(FileKind),
    Info(FileKind),
    Verify(FileKind),
    Complete(Result<Value, Vec<u8>>),
    CompleteFile(FileKind),
    Chat(Vec<String>),
    Run(String, String),
}

fn command() -> impl Strategy<Value = Command> {
    let tokens = prop_oneof!["[0-9,]{0,12}", "[ -~]{0,12}", prop::collection::vec(0u32..600, 1..6).prop_map(|v| {
        v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    })];
    let float = prop_oneof![Just("0".to_string()), Just("1e9".to_string()), Just("-1".to_string()), Just("nan".to_string()), "[0-9.]{1,4}"];
    prop_oneof![
        (file_kind(), tokens.clone()).prop_map(|(f, t)| Command::Logits(f, t)),
        (tokens, float.clone(), 0u8..6).prop_map(|(t, temp, n)| Command::Generate(t, temp, n)),
        (file_kind(), any::<bool>()).prop_map(|(f, onto_input)| Command::Convert(f, onto_input)),
        "[ -~]{0,20}".prop_map(Command::Pull),
        "[a-z0-9.-]{0,12}".prop_map(Command::Synth),
        file_kind().prop_map(Command::Bench),
        file_kind().prop_map(Command::Info),
        file_kind().prop_map(Command::Verify),
        prop_oneof![
            request_json().prop_map(Ok),
            any_json().prop_map(Ok),
            prop::collection::vec(any::<u8>(), 0..200).prop_map(Err),
        ]
        .prop_map(Command::Complete),
        file_kind().prop_map(Command::CompleteFile),
        prop::collection::vec("[ -~]{0,30}", 0..3).prop_map(Command::Chat),
        ("[ -~]{0,30}", float).prop_map(|(p, t)| Command::Run(p, t)),
    ]
}

/// Writes the case's input file (if it has one) into `dir`.
fn prepare(cmd: &Command, dir: &Path) {
    if let Command::Logits(f, _)
    | Command::Convert(f, _)
    | Command::Bench(f)
    | Command::Info(f)
    | Command::Verify(f)
    | Command::CompleteFile(f) = cmd
    {
        make_input(f, &dir.join("input.bin"));
    }
}

/// Runs one case in `dir` (after [`prepare`]); returns the files it must not change.
fn run_case(cmd: &Command, dir: &Path) -> (common::Run, Vec<PathBuf>) {
    let s = shared();
    let cact = s.cact.to_str().unwrap().to_string();
    let input = dir.join("input.bin");
    let input_s = input.to_str().unwrap().to_string();
    let out = dir.join("out.cact");
    let out_s = out.to_str().unwrap().to_string();
    let mut inputs = vec![s.cact.clone()];
    let mut stdin: Vec<u8> = Vec::new();
    let args: Vec<String> = match cmd {
        Command::Logits(_, t) => {
            inputs.push(input.clone());
            vec!["logits".into(), "--model".into(), input_s, "--tokens".into(), t.clone()]
        }
        Command::Generate(t, temp, n) => vec![
            "generate".into(), "--model".into(), cact, "--tokens".into(), t.clone(), "--max-tokens".into(), n.to_string(),
            "--temperature".into(), temp.clone(), "--json".into(),
        ],
        Command::Convert(_, onto_input) => {
            inputs.push(input.clone());
            let target = if *onto_input { input_s.clone() } else { out_s };
            vec!["convert".into(), input_s, "-o".into(), target, "--quiet".into()]
        }
        Command::Pull(repo) => vec!["pull".into(), repo.clone(), "-o".into(), out_s, "--quiet".into()],
        Command::Synth(shape) => vec!["synth".into(), "--shape".into(), shape.clone(), "-o".into(), out_s, "--quiet".into()],
        Command::Bench(_) => {
            inputs.push(input.clone());
            vec!["bench".into(), "--model".into(), input_s, "--prefill".into(), "4".into(), "--decode".into(), "2".into(), "--json".into()]
        }
        Command::Info(_) => {
            inputs.push(input.clone());
            vec!["info".into(), input_s]
        }
        Command::Verify(_) => {
            inputs.push(input.clone());
            vec!["verify".into(), input_s]
        }
        Command::Complete(body) => {
            stdin = match body {
                Ok(v) => v.to_string().into_bytes(),
                Err(bytes) => bytes.clone(),
            };
            vec!["complete".into(), "--model".into(), cact]
        }
        Command::CompleteFile(_) => {
            inputs.push(input.clone());
            vec!["complete".into(), "--model".into(), cact, "--request".into(), input_s]
        }
        Command::Chat(lines) => {
            stdin = lines.join("\n").into_bytes();
            vec!["chat".into(), "--model".into(), cact, "--max-tokens".into(), "2".into()]
        }
        Command::Run(prompt, temp) => vec![
            "run".into(), "--model".into(), cact, "--prompt".into(), prompt.clone(), "--max-tokens".into(), "2".into(),
            "--temperature".into(), temp.clone(),
        ],
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The RSS helper passes stdin as text: invalid UTF-8 goes through `run_bytes` (its RSS is
    // not measured; those requests are refused before parsing anyway).
    let r = match String::from_utf8(stdin.clone()) {
        Ok(text) => run_measured(&args, &text),
        Err(_) => common::run_bytes(&args, &stdin),
    };
    (r, inputs)
}

fn digest_of(paths: &[PathBuf]) -> Vec<(PathBuf, u64)> {
    use std::hash::{Hash, Hasher};
    paths
        .iter()
        .flat_map(|p| {
            if p.is_dir() {
                files_digest(p).into_iter().collect::<Vec<_>>()
            } else {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(p).unwrap_or_default().hash(&mut h);
                vec![(p.clone(), h.finish())]
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_command_fails_cleanly_and_changes_no_input(cmd in command()) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static CASE: AtomicUsize = AtomicUsize::new(0);
        let dir = shared().dir.join(format!("case{}", CASE.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap();
        let fixture_before = files_digest(&fixtures().join("chat/model"));
        let cact_before = digest_of(&[shared().cact.clone()]);
        prepare(&cmd, &dir);
        let input_before = digest_of(&[dir.join("input.bin")]);
        let (r, inputs) = run_case(&cmd, &dir);
        prop_assert!(matches!(r.code, Some(0) | Some(1)), "{cmd:?}: {r:?}");
        prop_assert!(!r.stderr.contains("panicked"), "{cmd:?}: {r:?}");
        if r.code == Some(1) {
            let errors = r.stderr.lines().filter(|l| l.starts_with("error: ")).count();
            prop_assert_eq!(errors, 1, "{:?}: {:?}", cmd, r);
        }
        prop_assert!(r.peak_rss_kb < MAX_RSS_MB << 10, "{cmd:?}: peak RSS {} KiB", r.peak_rss_kb);
        prop_assert_eq!(digest_of(&[shared().cact.clone()]), cact_before, "{:?} changed the model", cmd);
        if inputs.iter().any(|p| p.starts_with(&dir)) {
            prop_assert_eq!(digest_of(&[dir.join("input.bin")]), input_before, "{:?} changed its input", cmd);
        }
        prop_assert_eq!(files_digest(&fixtures().join("chat/model")), fixture_before);
        // Only the output may have been added: no partial files.
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            prop_assert!(name == "input.bin" || name == "out.cact", "{cmd:?} left {name}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn rss_helper() {
    common::rss_helper();
}
