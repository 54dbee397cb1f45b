//! The WASI component guest (wasm32-wasip2): exports the `llm` interface of `wit/saguaro.wit`.
//!
//! A thin adapter over [`crate::runtime`]: argument conversion, error mapping (engine error →
//! WIT `error` variant, one case per code) and the host hooks a component has (the clock is
//! wasi:clocks through `std::time`, memory is the size of the linear memory). Everything else,
//! and therefore every bit of every result, comes from `saguaro-engine`, as on every surface.
//!
//! - `model.load-bytes`: the bytes are copied once into an aligned buffer ([`Runtime::from_bytes`]).
//! - `model.load-path`: the file is read through wasi:filesystem (the host's preopens) in 1 MiB
//!   chunks straight into the model buffer: the file is never held twice.
//! - `session`: one engine [`Session`] and the request in progress ([`Completion`]) for the
//!   pull API (`start` / `next` / `cancel` / `finish`); `complete` runs a whole request.
//!
//! Resources are called through `&self` (the canonical ABI), so their state sits in `RefCell`s;
//! a component instance is single-threaded and never re-entered, so a borrow cannot fail in
//! practice, and would be an `input` error rather than a panic if it did. A session holds the
//! model through `Arc`s: dropping the `model` handle first is fine.

use std::cell::RefCell;
use std::io::Read;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use saguaro_engine::generate::GenerateOptions as EngineGenerateOptions;
use saguaro_engine::{Clock, Completion, Error as EngineError, Event, Hooks, Request, Response, Session as EngineSession};

use crate::runtime::{self, ModelBuffer, Runtime};

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "saguaro",
    });
}

use bindings::exports::saguaro::llm::llm::{
    Error, GenerateOptions, Guest, GuestModel, GuestSession, Model, ModelInfo, PrefillProgress, Session, Step, TokenEvent,
};

/// The component: its resource types.
struct Component;

impl Guest for Component {
    type Model = ModelResource;
    type Session = SessionResource;
}

bindings::export!(Component with_types_in bindings);

/// The engine's error as the WIT variant (same case, same message without the code's prefix).
fn to_wit(e: EngineError) -> Error {
    match e {
        EngineError::Config(m) => Error::Config(m),
        EngineError::Weights(m) => Error::Weights(m),
        EngineError::Format(m) => Error::Format(m),
        EngineError::Input(m) => Error::Input(m),
        EngineError::ContextFull(m) => Error::ContextFull(m),
        EngineError::Io(m) => Error::Io(m),
        EngineError::Cancelled => Error::Cancelled,
    }
}

fn busy() -> EngineError {
    EngineError::Input("the session is in use by another call".into())
}

fn empty_file() -> EngineError {
    EngineError::Format("the model file is empty (0 bytes), not a .cact file".into())
}

/// Bytes read per `read` call of `load-path` (one reusable buffer).
const READ_CHUNK: usize = 1 << 20;

/// Reads a `.cact` file through wasi:filesystem straight into a model buffer.
fn read_model(path: &str) -> Result<Runtime, EngineError> {
    let open_error = |e: std::io::Error| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file, or it is outside the folders the host preopened for this component".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (a component can read only inside the folders its host preopened)".to_string()
            }
            _ => format!("{e} (a component can read only inside the folders its host preopened)"),
        };
        EngineError::Io(format!("cannot open model file {path:?}: {why}"))
    };
    let mut file = std::fs::File::open(path).map_err(open_error)?;
    let meta = file.metadata().map_err(|e| EngineError::Io(format!("cannot stat model file {path:?}: {e}")))?;
    if meta.is_dir() {
        return Err(EngineError::Io(format!("{path:?} is a folder, not a .cact model file")));
    }
    let len = meta.len();
    if len == 0 {
        return Err(empty_file());
    }
    let mut buffer = ModelBuffer::new(len)?;
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut offset = 0u64;
    while offset < len {
        let want = usize::try_from((len - offset).min(READ_CHUNK as u64)).unwrap_or(READ_CHUNK);
        let n = match file.read(&mut chunk[..want]) {
            Ok(0) => {
                return Err(EngineError::Io(format!(
                    "model file {path:?} ended after {offset} of {len} bytes (truncated while reading?)"
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EngineError::Io(format!("reading model file {path:?} at byte {offset}: {e}"))),
        };
        buffer.write(offset, &chunk[..n])?;
        offset += n as u64;
    }
    drop(chunk);
    drop(file);
    buffer.finish()
}

/// wasi:clocks through `std::time`: monotonic for timings, wall clock for templates' dates.
struct WasiClock(Instant);

impl Clock for WasiClock {
    fn now_ms(&self) -> f64 {
        self.0.elapsed().as_secs_f64() * 1000.0
    }
    fn unix_seconds(&self) -> Option<i64> {
        SystemTime::now().duration_since(UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_secs()).ok())
    }
}

/// The component's memory: the size of its linear memory (pages of 64 KiB) in MiB.
fn linear_memory_mb() -> f64 {
    #[cfg(target_arch = "wasm32")]
    let bytes = core::arch::wasm32::memory_size(0) as f64 * 65536.0;
    #[cfg(not(target_arch = "wasm32"))]
    let bytes = 0.0;
    bytes / (1024.0 * 1024.0)
}

fn hooks() -> Hooks {
    Hooks { clock: Some(Arc::new(WasiClock(Instant::now()))), ram_usage_mb: Some(Arc::new(linear_memory_mb)) }
}

fn to_u32(x: usize) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// The `model` resource: a loaded model, shared read-only by its sessions.
pub struct ModelResource {
    runtime: Runtime,
}

impl GuestModel for ModelResource {
    fn load_bytes(bytes: Vec<u8>) -> Result<Model, Error> {
        if bytes.is_empty() {
            return Err(to_wit(empty_file()));
        }
        let runtime = Runtime::from_bytes(&bytes).map_err(to_wit)?;
        drop(bytes);
        Ok(Model::new(ModelResource { runtime }))
    }

    fn load_path(path: String) -> Result<Model, Error> {
        let runtime = read_model(&path).map_err(to_wit)?;
        Ok(Model::new(ModelResource { runtime }))
    }

    fn info(&self) -> ModelInfo {
        let i = self.runtime.info();
        ModelInfo {
            model_type: i.model_type,
            vocab_size: to_u32(i.vocab_size),
            hidden_size: to_u32(i.hidden_size),
            num_layers: to_u32(i.num_layers),
            max_position_embeddings: to_u32(i.max_position_embeddings),
            file_bytes: i.file_bytes as u64,
            has_tokenizer: i.has_tokenizer,
            is_moe: i.is_moe,
            kernels: i.kernels,
        }
    }

    fn tokenize(&self, text: String) -> Result<Vec<u32>, Error> {
        self.runtime.tokenize(&text).map_err(to_wit)
    }

    fn detokenize(&self, ids: Vec<u32>, skip_special: bool) -> Result<String, Error> {
        self.runtime.detokenize(&ids, skip_special).map_err(to_wit)
    }

    fn logits(&self, ids: Vec<u32>) -> Result<Vec<f32>, Error> {
        self.runtime.model().check_tokens(&ids).map_err(to_wit)?;
        self.runtime.logits(&ids).map_err(to_wit)
    }

    fn generate_tokens(&self, ids: Vec<u32>, options: GenerateOptions) -> Result<Vec<u32>, Error> {
        let opts = EngineGenerateOptions {
            max_tokens: options.max_tokens as usize,
            temperature: options.temperature,
            seed: options.seed,
            stop_on_eos: options.stop_on_eos,
        };
        self.runtime.generate_tokens(&ids, &opts, |_| true).map_err(to_wit)
    }

    fn session(&self) -> Result<Session, Error> {
        let session = self.runtime.session(hooks()).map_err(to_wit)?;
        Ok(Session::new(SessionResource { inner: RefCell::new(SessionState { session, completion: None }) }))
    }
}

/// The `session` resource.
pub struct SessionResource {
    inner: RefCell<SessionState>,
}

struct SessionState {
    /// Holds the model (`Arc<ChatModel>` → `Arc<Model>` → the file's bytes).
    session: EngineSession,
    /// The request started by `start`, until `finish` (or a new `start`, `complete`, `reset`).
    completion: Option<Completion>,
}

fn no_request() -> EngineError {
    EngineError::Input("no request in progress: call `start` first".into())
}

impl GuestSession for SessionResource {
    fn complete(&self, request_json: String) -> String {
        let Ok(mut s) = self.inner.try_borrow_mut() else {
            return Response::failure(&busy()).to_json();
        };
        s.completion = None;
        runtime::complete_json(&mut s.session, &request_json, |_| true).to_json()
    }

    fn start(&self, request_json: String) -> Result<(), Error> {
        let mut s = self.inner.try_borrow_mut().map_err(|_| to_wit(busy()))?;
        s.completion = None;
        let request = Request::from_json(&request_json).map_err(to_wit)?;
        let completion = s.session.start(&request).map_err(to_wit)?;
        s.completion = Some(completion);
        Ok(())
    }

    fn next(&self) -> Result<Option<Step>, Error> {
        let mut s = self.inner.try_borrow_mut().map_err(|_| to_wit(busy()))?;
        let SessionState { session, completion } = &mut *s;
        let c = completion.as_mut().ok_or_else(|| to_wit(no_request()))?;
        let event = session.step(c, &AtomicBool::new(false)).map_err(to_wit)?;
        Ok(event.map(|e| match e {
            Event::Prefill { done, total } => Step::Prefill(PrefillProgress { done: to_u32(done), total: to_u32(total) }),
            Event::Token(t) => Step::Token(TokenEvent {
                token_id: t.token_id,
                text: t.text,
                confidence: t.confidence,
                in_tool_call: t.in_tool_call,
            }),
        }))
    }

    fn cancel(&self) {
        if let Ok(mut s) = self.inner.try_borrow_mut() {
            if let Some(c) = s.completion.as_mut() {
                c.cancel();
            }
        }
    }

    fn finish(&self) -> Result<String, Error> {
        let mut s = self.inner.try_borrow_mut().map_err(|_| to_wit(busy()))?;
        let c = s.completion.take().ok_or_else(|| to_wit(no_request()))?;
        Ok(s.session.finish(c).to_json())
    }

    fn reset(&self) {
        if let Ok(mut s) = self.inner.try_borrow_mut() {
            s.completion = None;
            s.session.reset();
        }
    }
}
