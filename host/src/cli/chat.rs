//! `saguaro complete`, `saguaro chat` and `saguaro run`: the chat API from the command line.
//!
//! - `complete` reads a request (the JSON of saguaro_engine::api) from a file or stdin and
//!   prints the response JSON on one line. A failed request (bad JSON, unknown role, a prompt
//!   over the context, a model that cannot be loaded, ...) prints `{"success": false, "error":
//!   ...}` on stdout all the same, `error: ...` on stderr, and exits with status 1.
//!   `--stream` first prints one JSON line per generated token (`token_id`, `text`, ...).
//!   `--engine component` runs the request inside the WASI component (see cli/engine.rs):
//!   the same lines, timings aside.
//!   `complete` passes the request through as it is: missing options take the engine's
//!   defaults (saguaro_engine::api::Options::resolve), as on every other surface.
//! - `chat` is an interactive conversation: each line is a user turn, the answer streams to
//!   stdout; `/reset` starts over, `/exit` (or end of input) quits.
//! - `run` answers one prompt (`--prompt`, default a short question) with the model given, or
//!   the bundled chat fixture model (a tiny random model: the text is noise, the pipeline is
//!   real), streaming the answer to stdout and a one-line summary to stderr.
//!
//! `chat` and `run` are for people trying a model, so they sample with LiquidAI's recommended
//! LFM2 values by default (`--preset lfm2`, i.e. `options.preset`), and say so in one stderr
//! line with the values in effect; `--preset none` leaves sampling to the model's
//! generation_config.json, `--preset lfm2.5` picks the LFM2.5 values, and `--temperature`
//! overrides any of them.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use saguaro_engine::session::{ChatModel, Clock, Hooks, Session};
use saguaro_engine::{Error, Message, Options, Preset, Request, Response, Result};

use super::engine::EngineArgs;
use super::write_stdout;

/// The model `saguaro run` uses when none is given: the chat fixture of this source tree.
pub const BUNDLED_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/chat/model");

/// Model and threads, shared by the chat commands.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Prefill threads (0 = all cores; the native engine only).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Decode threads (decode is memory-bound: 1 is usually fastest; the native engine only).
    #[arg(long, default_value_t = 1)]
    pub decode_threads: usize,
    /// Check the .cact file's checksums before using it (reads the whole file once).
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// Model: a .cact file or a Hugging Face folder with tokenizer.json.
    #[arg(long)]
    model: PathBuf,
    /// Request JSON file, or `-` for stdin.
    #[arg(long, default_value = "-")]
    request: String,
    /// Print each generated token as a JSON line before the response.
    #[arg(long)]
    stream: bool,
    /// Largest request accepted, in bytes (larger ones are refused before they are read whole).
    #[arg(long, value_name = "BYTES", default_value_t = saguaro_engine::api::DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
    #[command(flatten)]
    threads: ModelArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Model: a .cact file or a Hugging Face folder with tokenizer.json.
    #[arg(long)]
    model: PathBuf,
    /// System prompt of the conversation.
    #[arg(long)]
    system: Option<String>,
    /// Sampling temperature (default: the preset's; 0 is greedy, without a repetition penalty).
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// Sampling preset: `lfm2` (LiquidAI's recommended LFM2 sampling: temperature 0.3, min_p
    /// 0.15, repetition_penalty 1.05), `lfm2.5` (temperature 0.1, top_k 50, top_p 0.1,
    /// repetition_penalty 1.05) or `none` (the model's generation_config.json, else neutral
    /// sampling). The values in effect are printed on stderr.
    #[arg(long, default_value = "lfm2", value_name = "lfm2|lfm2.5|none")]
    preset: String,
    /// Most tokens per answer (default: the model's).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Seed of the sampler.
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    threads: ModelArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Model: a .cact file or a Hugging Face folder (default: the bundled chat fixture model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The user message.
    #[arg(long, default_value = "What is the weather in Paris?")]
    prompt: String,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
    /// Sampling temperature (default: the preset's; 0 is greedy, without a repetition penalty).
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// Sampling preset: `lfm2` (LiquidAI's recommended LFM2 sampling: temperature 0.3, min_p
    /// 0.15, repetition_penalty 1.05), `lfm2.5` (temperature 0.1, top_k 50, top_p 0.1,
    /// repetition_penalty 1.05) or `none` (the model's generation_config.json, else neutral
    /// sampling). The values in effect are printed on stderr.
    #[arg(long, default_value = "lfm2", value_name = "lfm2|lfm2.5|none")]
    preset: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Seed of the sampler.
    #[arg(long)]
    seed: Option<u64>,
    /// Print the response JSON instead of the text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    threads: ModelArgs,
}

/// The host's clock: `Instant` for timings, the system clock for templates' dates.
struct HostClock(Instant);

impl Clock for HostClock {
    fn now_ms(&self) -> f64 {
        self.0.elapsed().as_secs_f64() * 1000.0
    }
    fn unix_seconds(&self) -> Option<i64> {
        SystemTime::now().duration_since(UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_secs()).ok())
    }
}

/// Resident memory of this process in MiB (Linux: VmRSS of /proc/self/status).
fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Clock and memory probe of a native host.
pub fn host_hooks() -> Hooks {
    Hooks {
        clock: Some(Arc::new(HostClock(Instant::now()))),
        ram_usage_mb: if rss_mb().is_some() { Some(Arc::new(|| rss_mb().unwrap_or(0.0))) } else { None },
    }
}

fn load(path: &Path, threads: &ModelArgs) -> Result<Arc<ChatModel>> {
    super::run::verify_if(threads.verify, path)?;
    let mut model = saguaro_host::load_model(path)?;
    model.set_threads(saguaro_host::threads::make_threads(threads.threads, threads.decode_threads)?);
    ChatModel::new(Arc::new(model))
}

fn print_line(text: &str) -> Result<()> {
    write_stdout(format!("{text}\n").as_bytes())
}

/// Reads the request, refusing it as soon as it passes `limit` bytes (memory stays bounded
/// whatever is sent).
fn read_request(source: &str, limit: usize) -> Result<String> {
    let too_big = |what: &str| {
        Error::Input(format!(
            "the request ({what}) is more than {limit} bytes; raise the limit with --max-request-bytes if it is meant to be this large"
        ))
    };
    let mut bytes = Vec::new();
    let take = limit as u64 + 1;
    if source == "-" {
        std::io::stdin().lock().take(take).read_to_end(&mut bytes).map_err(|e| Error::Io(format!("stdin: {e}")))?;
        if bytes.len() > limit {
            return Err(too_big("stdin"));
        }
    } else {
        let path = Path::new(source);
        if path.is_dir() {
            return Err(Error::Input(format!("--request {source} is a folder, not a request JSON file")));
        }
        let file = std::fs::File::open(path).map_err(|e| Error::Io(format!("{source}: {e}")))?;
        file.take(take).read_to_end(&mut bytes).map_err(|e| Error::Io(format!("{source}: {e}")))?;
        if bytes.len() > limit {
            return Err(too_big(source));
        }
    }
    String::from_utf8(bytes).map_err(|e| Error::Input(format!("the request is not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))
}

/// A failed response's error as the engine error it came from (for stderr and the exit status).
fn failure_error(r: &Response) -> Error {
    let msg = r.error.clone().unwrap_or_else(|| "request failed".into());
    let strip = |prefix: &str| msg.strip_prefix(prefix).unwrap_or(&msg).to_string();
    match r.error_code.as_deref() {
        Some("config") => Error::Config(strip("invalid model config: ")),
        Some("weights") => Error::Weights(strip("invalid weights: ")),
        Some("format") => Error::Format(strip("invalid model file: ")),
        Some("context_full") => Error::ContextFull(strip("context full: ")),
        Some("io") => Error::Io(strip("i/o error: ")),
        Some("cancelled") => Error::Cancelled,
        _ => Error::Input(strip("invalid input: ")),
    }
}

pub fn complete(args: CompleteArgs) -> Result<()> {
    let response = (|| -> Result<Response> {
        let text = read_request(&args.request, args.max_request_bytes)?;
        if args.engine.is_component()? {
            super::run::verify_if(args.threads.verify, &args.model)?;
            return complete_component(&args, &text);
        }
        let chat = load(&args.model, &args.threads)?;
        let mut session = Session::new(chat).with_hooks(host_hooks());
        session.max_request_bytes = args.max_request_bytes;
        let cancel = AtomicBool::new(false);
        let mut write_error = None;
        let r = session.complete_json(
            &text,
            |event| {
                if args.stream {
                    let line = serde_json::to_string(event).unwrap_or_default();
                    if let Err(e) = print_line(&line) {
                        write_error = Some(e);
                        return false;
                    }
                }
                true
            },
            &cancel,
        );
        match write_error {
            Some(e) => Err(e),
            None => Ok(r),
        }
    })()
    .unwrap_or_else(|e| Response::failure(&e));
    print_line(&response.to_json())?;
    if response.success {
        Ok(())
    } else {
        // The JSON above is the answer; the error line and status 1 are for scripts.
        Err(failure_error(&response))
    }
}

/// `complete --engine component`: the request runs inside the component (streamed through
/// its pull API with `--stream`); the response JSON is the guest's, printed the native way.
#[cfg(feature = "component")]
fn complete_component(args: &CompleteArgs, request: &str) -> Result<Response> {
    let mut model = args.engine.load_component(&args.model)?;
    let mut session = model.session()?;
    let json = if args.stream {
        let mut write_error = None;
        let json = session.complete_streaming(request, |event| {
            let line = serde_json::to_string(event).unwrap_or_default();
            match print_line(&line) {
                Ok(()) => true,
                Err(e) => {
                    write_error = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = write_error {
            return Err(e);
        }
        json
    } else {
        session.complete(request)?
    };
    serde_json::from_str(&json).map_err(|e| Error::Io(format!("the component's response is not valid response JSON: {e}")))
}

#[cfg(not(feature = "component"))]
fn complete_component(_: &CompleteArgs, _: &str) -> Result<Response> {
    Err(super::engine::unavailable())
}

/// Streams one answer to stdout; returns the response.
fn answer(session: &mut Session, request: &Request) -> Result<Response> {
    let cancel = AtomicBool::new(false);
    let mut out = std::io::stdout().lock();
    let r = session.complete(
        request,
        |event| {
            let _ = out.write_all(event.text.as_bytes());
            let _ = out.flush();
            true
        },
        &cancel,
    );
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    if r.success {
        Ok(r)
    } else {
        Err(failure_error(&r))
    }
}

/// One line of interactive input.
enum Line {
    Text(String),
    /// The line was longer than this many bytes (the rest of it was skipped unread into memory).
    TooLong(usize),
    End,
}

/// Reads one line of at most `limit` bytes: a longer line is consumed and dropped without
/// holding it in memory.
fn read_line_limited(input: &mut impl BufRead, limit: usize) -> Result<Line> {
    let io = |e: std::io::Error| Error::Io(format!("stdin: {e}"));
    let mut bytes = Vec::new();
    let n = input.by_ref().take(limit as u64 + 1).read_until(b'\n', &mut bytes).map_err(io)?;
    if n == 0 {
        return Ok(Line::End);
    }
    if bytes.len() > limit && bytes.last() != Some(&b'\n') {
        // Skip to the end of the line, a buffer at a time.
        loop {
            let buf = input.fill_buf().map_err(io)?;
            if buf.is_empty() {
                break;
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    input.consume(i + 1);
                    break;
                }
                None => {
                    let len = buf.len();
                    input.consume(len);
                }
            }
        }
        return Ok(Line::TooLong(limit));
    }
    Ok(Line::Text(String::from_utf8_lossy(&bytes).into_owned()))
}

/// `--preset`: a preset name, or `none`.
fn parse_preset(name: &str) -> Result<Option<Preset>> {
    match name {
        "none" => Ok(None),
        _ => Preset::from_name(name).map(Some).map_err(|e| match e {
            Error::Input(m) => Error::Input(format!("--preset: {m} or `none`")),
            other => other,
        }),
    }
}

/// The one-line stderr note of `chat` and `run` when a preset is in effect: its name and the
/// sampling values the engine will use (the preset's, overridden by the command's flags).
fn preset_note(chat: &ChatModel, options: &Options) -> Result<Option<String>> {
    let Some(preset) = options.preset else { return Ok(None) };
    let s = options.resolve(&chat.defaults)?.sampling;
    Ok(Some(format!(
        "[sampling: preset {} (temperature {}, top_k {}, top_p {}, min_p {}, repetition_penalty {}); \
         --preset none for the model's own defaults]",
        preset.name(),
        s.temperature,
        s.top_k,
        s.top_p,
        s.min_p,
        s.repetition_penalty
    )))
}

pub fn chat(args: ChatArgs) -> Result<()> {
    let preset = parse_preset(&args.preset)?;
    let chat = load(&args.model, &args.threads)?;
    let options = Options { preset, temperature: args.temperature, max_tokens: args.max_tokens, seed: args.seed, ..Default::default() };
    if let Some(note) = preset_note(&chat, &options)? {
        eprintln!("{note}");
    }
    let mut session = Session::new(chat).with_hooks(host_hooks());
    let fresh = || -> Vec<Message> { args.system.iter().map(|s| Message::system(s.clone())).collect() };
    let mut messages = fresh();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    loop {
        write_stdout(b"> ")?;
        let line = match read_line_limited(&mut input, saguaro_engine::api::DEFAULT_MAX_REQUEST_BYTES)? {
            Line::End => break,
            Line::TooLong(n) => {
                // The turn is refused; the conversation goes on.
                eprintln!("error: the line is more than {n} bytes; a chat turn must be shorter");
                continue;
            }
            Line::Text(line) => line,
        };
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages = fresh();
                session.reset();
                print_line("(conversation reset)")?;
                continue;
            }
            _ => {}
        }
        messages.push(Message::user(text));
        let request = Request { messages: messages.clone(), tools: None, tool_choice: None, parallel_tool_calls: None, options: options.clone() };
        match answer(&mut session, &request) {
            Ok(r) => {
                let mut reply = Message::assistant(r.response.clone());
                if !r.function_calls.is_empty() {
                    let calls = r.function_calls.iter().map(|c| serde_json::json!({"name": c.name, "arguments": c.arguments})).collect();
                    reply.tool_calls = Some(calls);
                    print_line(&format!("(tool calls: {})", serde_json::to_string(&r.function_calls).unwrap_or_default()))?;
                }
                messages.push(reply);
            }
            Err(e) => {
                // The conversation goes on: the failed turn is dropped.
                messages.pop();
                eprintln!("error: {e}");
            }
        }
    }
    Ok(())
}

pub fn run(args: RunArgs) -> Result<()> {
    let path = args.model.clone().unwrap_or_else(|| {
        let bundled = PathBuf::from(BUNDLED_MODEL);
        std::fs::canonicalize(&bundled).unwrap_or(bundled)
    });
    let preset = parse_preset(&args.preset)?;
    let chat = load(&path, &args.threads)?;
    let mut messages: Vec<Message> = args.system.iter().map(|s| Message::system(s.clone())).collect();
    messages.push(Message::user(args.prompt.clone()));
    let options =
        Options { preset, temperature: args.temperature, max_tokens: Some(args.max_tokens), seed: args.seed, ..Default::default() };
    if let Some(note) = preset_note(&chat, &options)? {
        eprintln!("{note}");
    }
    let mut session = Session::new(chat).with_hooks(host_hooks());
    let request = Request { messages, tools: None, tool_choice: None, parallel_tool_calls: None, options };
    if args.json {
        let r = session.complete(&request, |_| true, &AtomicBool::new(false));
        print_line(&r.to_json())?;
        return if r.success { Ok(()) } else { Err(failure_error(&r)) };
    }
    let r = answer(&mut session, &request)?;
    if r.finish_reason == Some(saguaro_engine::FinishReason::ContextFull) {
        eprintln!("note: finish_reason context_full: the model's context filled before --max-tokens {}", args.max_tokens);
    }
    eprintln!(
        "[{}: {} prompt + {} generated tokens, {:.1} ms to first token, {:.1} tok/s decode, finish {}]",
        path.display(),
        r.prefill_tokens,
        r.decode_tokens,
        r.time_to_first_token_ms,
        r.decode_tps,
        r.finish_reason.map(|f| serde_json::to_string(&f).unwrap_or_default()).unwrap_or_default().trim_matches('"')
    );
    Ok(())
}
