//! The wasmtime host of the Saguaro WASI component (`wit/saguaro.wit`, world `saguaro`); the
//! guest it runs is `wasm/src/component`. The feature that builds this module keeps the name
//! `component`, as does `--engine component`.
//!
//! The guest (`wasm/`, built for wasm32-wasip2) runs the same engine as the native host, so its
//! logits and tokens are the native ones bit for bit (docs/design.md §Determinism). This module
//! runs it in a sandbox:
//!
//! - **Files**: the guest sees only a read-only preopen of the model file's folder (so the
//!   files next to the model too, read-only), mapped at [`GUEST_MODEL_DIR`]; no environment, no arguments, no network (TCP, UDP and name lookup
//!   are denied), stdin closed, stdout discarded, stderr captured (its last lines are quoted
//!   when the guest fails). A Hugging Face folder is converted to an f32 `.cact` in memory by
//!   the host exactly as the native loader does and handed over with `load-bytes`: then the
//!   guest sees no files at all.
//! - **Memory**: a [`ResourceLimiter`] caps the guest's linear memory ([`Limits`]); running
//!   out is an `Error::Io` naming the limit, never a panic of the host.
//! - **Cancellation**: [`CancelHandle::cancel`] (any thread) raises the store's flag. How soon
//!   it takes effect is the runtime's [`Interruption`]:
//!   - [`Interruption::BetweenCalls`] (the default): at the next guest call. Streaming
//!     ([`ComponentSession::complete_streaming`], `start`/`next`) makes one call per token or
//!     prefill step, so a stream stops within one step, and nothing traps: the model stays
//!     usable. A single long call (`generate_tokens`, `logits`, `complete`) runs to its end.
//!   - [`Interruption::Epoch`]: wasmtime's epoch interruption. The compiled code checks the
//!     engine's epoch at every function entry and loop back-edge; `cancel` also bumps the
//!     epoch, the guest traps at its next check and the call returns [`Error::Cancelled`],
//!     even a call that would never return. Other stores of the same engine see the epoch
//!     change, find their flag clear and continue. The checks cost speed in the kernels' tight
//!     loops (measured on the 350M shape, benches/RESULTS.md 2026-12-06 20:46 and the
//!     `component-epochs` run after it: prefill 30-45% slower for int8, 12-14% for int4;
//!     decode unchanged), which is why they are opt-in (`RuntimeOptions`, `--component-epochs`).
//!
//! After a trap (cancellation in the middle of a call, out of memory, a guest bug) the
//! instance's state is undefined, so the [`ComponentModel`] refuses further calls with an
//! error saying to load the model again. Guest errors (`result::err`) leave it usable.
//!
//! Compiling the component takes seconds, so its native code is cached per user
//! ([`default_cache_dir`]; `SAGUARO_COMPONENT_CACHE=DIR|off`); [`ComponentRuntime::compile_info`]
//! says how long compiling or loading it took.

mod cache;
mod locate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use saguaro_engine::generate::GenerateOptions;
use saguaro_engine::{Error, Result, TokenEvent};
use wasmtime::component::{Component, Linker, ResourceAny, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use cache::{default_cache_dir, CACHE_ENV};
pub use locate::{component_candidates, find_component, BUILD_HINT, BUILT_RELATIVE, COMPONENT_ENV, INSTALLED_NAME};

#[allow(missing_docs, clippy::all)]
mod bindings {
    wasmtime::component::bindgen!({
        world: "saguaro",
        path: "../wit",
    });
}

use bindings::exports::saguaro::llm::llm as wit;
use bindings::{Saguaro, SaguaroPre};

/// What a loaded model is (the WIT `model-info` record).
pub use wit::ModelInfo;

/// Where the model's folder appears inside the sandbox.
pub const GUEST_MODEL_DIR: &str = "/model";
/// The default memory limit: 4 GiB, the most a wasm32 memory can hold.
pub const DEFAULT_MEMORY_MB: u64 = 4096;
/// Bytes of the guest's stderr kept for error messages (writes beyond are dropped).
const STDERR_CAPACITY: usize = 1 << 20;

/// Resource limits of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes the guest's linear memory may grow to.
    pub memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::memory_mb(DEFAULT_MEMORY_MB)
    }
}

impl Limits {
    /// A memory limit of `mb` MiB.
    pub fn memory_mb(mb: u64) -> Limits {
        Limits { memory_bytes: mb.saturating_mul(1 << 20) }
    }
}

/// When a [`CancelHandle::cancel`] stops the guest (module docs, **Cancellation**). The two
/// compile different code (separate entries in the code cache); results are the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interruption {
    /// At the next guest call (one token or prefill step when streaming); no checks in the
    /// compiled code.
    #[default]
    BetweenCalls,
    /// Anywhere, through epoch checks in every loop of the compiled code; a cancelled call
    /// leaves the instance unusable (the model must be loaded again).
    Epoch,
}

/// How a [`ComponentRuntime`] compiles and caches the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Folder of the compiled-code cache (`None`: compile every time).
    pub cache_dir: Option<PathBuf>,
    pub interruption: Interruption,
}

impl Default for RuntimeOptions {
    /// The per-user cache ([`default_cache_dir`]) and [`Interruption::BetweenCalls`].
    fn default() -> Self {
        RuntimeOptions { cache_dir: default_cache_dir(), interruption: Interruption::default() }
    }
}

/// How the compiled code of a component was obtained.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheUse {
    /// No cache folder: compiled.
    Off,
    /// Loaded from this cache file.
    Hit(PathBuf),
    /// Compiled and stored in this cache file.
    Stored(PathBuf),
    /// Compiled; the cache could not be read or written (the reason).
    Failed(String),
}

/// Compilation (or cache load) of a component.
#[derive(Debug, Clone)]
pub struct CompileInfo {
    pub path: PathBuf,
    /// Seconds from reading the file to a usable component (compile or cache load).
    pub seconds: f64,
    pub cache: CacheUse,
}

/// Stops the call in progress (or the next one) of a [`ComponentModel`]. Cheap to clone,
/// usable from any thread.
#[derive(Clone)]
pub struct CancelHandle {
    flag: Arc<AtomicBool>,
    engine: Engine,
}

impl CancelHandle {
    /// Requests cancellation: the next guest call returns [`Error::Cancelled`] instead of
    /// running; with [`Interruption::Epoch`], a call in progress also traps at its next epoch
    /// check and returns it.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.engine.increment_epoch();
    }

    /// Whether a cancellation is pending.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelHandle").field("cancelled", &self.is_cancelled()).finish()
    }
}

/// The memory limiter of a store: denies growth past the limit and remembers that it did, so
/// that the trap that follows (the guest's allocator aborts) is reported as what it is.
struct MemoryLimiter {
    limit: usize,
    /// The size the guest asked for when growth was last denied.
    denied: Option<usize>,
    /// Current size of the (one) linear memory.
    current: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit || maximum.is_some_and(|m| desired > m) {
            self.denied = Some(desired);
            return Ok(false);
        }
        self.current = self.current.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|m| desired <= m))
    }
}

/// The store's data: WASI state, the limiter and the cancellation flag.
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    cancelled: Arc<AtomicBool>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A compiled component, ready to instantiate (cheap to clone; one per process is enough).
#[derive(Clone)]
pub struct ComponentRuntime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    interruption: Interruption,
    pre: SaguaroPre<HostState>,
    compile: CompileInfo,
}

fn engine_config(interruption: Interruption) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(interruption == Interruption::Epoch);
    // The guest uses plain simd128; should relaxed SIMD ever appear, keep it deterministic
    // (the same bits on every machine).
    config.relaxed_simd_deterministic(true);
    config
}

fn io(what: impl std::fmt::Display) -> Error {
    Error::Io(what.to_string())
}

/// One line of a wasmtime error (the trap when there is one).
fn one_line(e: &wasmtime::Error) -> String {
    let text = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": "),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl ComponentRuntime {
    /// Compiles (or loads from the per-user cache) the component at `path`, with the default
    /// [`RuntimeOptions`].
    pub fn load(path: &Path) -> Result<ComponentRuntime> {
        ComponentRuntime::load_with(path, &RuntimeOptions::default())
    }

    /// Like [`load`](Self::load) with an explicit cache folder (`None`: no cache).
    pub fn load_with_cache(path: &Path, cache_dir: Option<&Path>) -> Result<ComponentRuntime> {
        let options = RuntimeOptions { cache_dir: cache_dir.map(Path::to_path_buf), ..RuntimeOptions::default() };
        ComponentRuntime::load_with(path, &options)
    }

    /// Compiles (or loads from `options.cache_dir`) the component at `path`.
    pub fn load_with(path: &Path, options: &RuntimeOptions) -> Result<ComponentRuntime> {
        let start = Instant::now();
        let cache_dir = options.cache_dir.as_deref();
        if !path.is_file() {
            return Err(io(format!("{}: no such component file; {BUILD_HINT}", path.display())));
        }
        let bytes = std::fs::read(path).map_err(|e| io(format!("{}: {e}", path.display())))?;
        let engine = Engine::new(&engine_config(options.interruption)).map_err(|e| io(format!("wasmtime: {}", one_line(&e))))?;
        let not_component = |e: wasmtime::Error| io(format!("{}: not a usable Saguaro component: {}", path.display(), one_line(&e)));
        let (component, cache) = match cache_dir {
            None => (Component::from_binary(&engine, &bytes).map_err(not_component)?, CacheUse::Off),
            Some(dir) => {
                let file = cache::cache_file(dir, &engine, &bytes);
                // SAFETY: the file is one this code wrote (atomically) into the user's private
                // cache folder from Component::serialize of the same engine settings; wasmtime
                // checks its header (version, settings) and refuses mismatches. See cache.rs.
                match file.is_file().then(|| unsafe { Component::deserialize_file(&engine, &file) }) {
                    Some(Ok(c)) => (c, CacheUse::Hit(file)),
                    _ => {
                        let c = Component::from_binary(&engine, &bytes).map_err(not_component)?;
                        let stored = c
                            .serialize()
                            .map_err(|e| one_line(&e))
                            .and_then(|b| cache::write_atomically(&file, &b).map_err(|e| format!("{}: {e}", file.display())));
                        match stored {
                            Ok(()) => (c, CacheUse::Stored(file)),
                            Err(why) => (c, CacheUse::Failed(why)),
                        }
                    }
                }
            }
        };
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| io(format!("wasmtime-wasi: {}", one_line(&e))))?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(SaguaroPre::new)
            .map_err(not_component)?;
        let compile = CompileInfo { path: path.to_path_buf(), seconds: start.elapsed().as_secs_f64(), cache };
        Ok(ComponentRuntime { inner: Arc::new(RuntimeInner { engine, interruption: options.interruption, pre, compile }) })
    }

    /// When a cancel takes effect in this runtime's models.
    pub fn interruption(&self) -> Interruption {
        self.inner.interruption
    }

    /// How the compiled code was obtained and how long it took.
    pub fn compile_info(&self) -> &CompileInfo {
        &self.inner.compile
    }

    /// A fresh instance of the component with `preopen` (a host folder, if any) visible
    /// read-only at [`GUEST_MODEL_DIR`].
    pub fn sandbox(&self, preopen: Option<&Path>, limits: &Limits) -> Result<Sandbox> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        wasi.stderr(stderr.clone());
        if let Some(dir) = preopen {
            wasi.preopened_dir(dir, GUEST_MODEL_DIR, FsPerms::ReadOnly)
                .map_err(|e| io(format!("{}: {}", dir.display(), one_line(&e))))?;
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        let limit = usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX);
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter { limit, denied: None, current: 0 },
            cancelled: cancelled.clone(),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        if self.inner.interruption == Interruption::Epoch {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(|ctx| {
                Ok(if ctx.data().cancelled.load(Ordering::SeqCst) { UpdateDeadline::Interrupt } else { UpdateDeadline::Continue(1) })
            });
        }
        let cancel = CancelHandle { flag: cancelled, engine: self.inner.engine.clone() };
        let mut sandbox = Sandbox {
            store,
            api: None,
            cancel,
            limits: limits.clone(),
            interruption: self.inner.interruption,
            broken: None,
            stderr,
            rename: None,
        };
        let result = self.inner.pre.instantiate(&mut sandbox.store);
        match result {
            Ok(api) => {
                sandbox.api = Some(api);
                Ok(sandbox)
            }
            Err(e) => Err(sandbox.trapped(e)),
        }
    }

    /// Loads the model at `model` (a `.cact` file, or a Hugging Face folder converted in
    /// memory like the native loader does) in a new sandbox.
    pub fn load_model(&self, model: &Path, limits: &Limits) -> Result<ComponentModel> {
        if model.is_dir() {
            let folder = crate::loader::HfFolder::open(model)?;
            let source = folder.source()?;
            let bytes = saguaro_engine::convert::convert(
                &folder.config,
                &source,
                saguaro_engine::convert::Quant::F32,
                &folder.extras(),
                Vec::new(),
                &mut |_, _, _| {},
            )?;
            drop(source);
            drop(folder);
            self.sandbox(None, limits)?.load_bytes(&bytes)
        } else if model.is_file() {
            let full = std::fs::canonicalize(model).map_err(|e| io(format!("{}: {e}", model.display())))?;
            let (Some(dir), Some(name)) = (full.parent(), full.file_name().and_then(|n| n.to_str())) else {
                return Err(io(format!("{}: the component needs a file name in UTF-8", model.display())));
            };
            let mut sandbox = self.sandbox(Some(dir), limits)?;
            let guest = format!("{GUEST_MODEL_DIR}/{name}");
            sandbox.rename = Some((guest.clone(), model.display().to_string()));
            sandbox.load_path(&guest)
        } else {
            Err(io(format!("{}: no such file or folder", model.display())))
        }
    }
}

/// One instance of the component in its own store, before a model is loaded.
pub struct Sandbox {
    store: Store<HostState>,
    /// None only while instantiating.
    api: Option<Saguaro>,
    cancel: CancelHandle,
    limits: Limits,
    interruption: Interruption,
    /// Set after a trap: the instance must not be entered again.
    broken: Option<Error>,
    stderr: MemoryOutputPipe,
    /// (guest path, host path): guest messages name the file as the user gave it.
    rename: Option<(String, String)>,
}

type CallResult<T> = wasmtime::Result<std::result::Result<T, wit::Error>>;

impl Sandbox {
    /// The handle that cancels this instance's calls.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Current size of the guest's linear memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limiter.current
    }

    /// Loads a model through the guest's `load-path` (a path inside the sandbox, e.g.
    /// `/model/m.cact`).
    pub fn load_path(mut self, guest_path: &str) -> Result<ComponentModel> {
        let model = self
            .call(|store, api| api.saguaro_llm_llm().model().call_load_path(store, guest_path))
            .map_err(|e| self.with_model_path(e))?;
        ComponentModel::new(self, model)
    }

    /// Loads a model from the bytes of a `.cact` file (`load-bytes`).
    pub fn load_bytes(mut self, bytes: &[u8]) -> Result<ComponentModel> {
        let model = self.call(|store, api| api.saguaro_llm_llm().model().call_load_bytes(store, bytes))?;
        ComponentModel::new(self, model)
    }

    /// Runs one guest call with the cancellation, memory and trap bookkeeping.
    fn call<T>(&mut self, f: impl FnOnce(&mut Store<HostState>, &Saguaro) -> CallResult<T>) -> Result<T> {
        if let Some(e) = &self.broken {
            return Err(match e {
                Error::Cancelled => io("the component was cancelled in the middle of a call; load the model again"),
                other => io(format!("the component stopped after an earlier failure ({other}); load the model again")),
            });
        }
        if self.cancel.flag.swap(false, Ordering::SeqCst) {
            return Err(Error::Cancelled);
        }
        self.store.data_mut().limiter.denied = None;
        let Some(api) = &self.api else { return Err(io("the component is not instantiated")) };
        match f(&mut self.store, api) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let e = self.guest_error(e);
                match self.store.data_mut().limiter.denied.take() {
                    // The guest noticed a failed allocation itself; say which limit it hit.
                    Some(asked) if !matches!(e, Error::Cancelled) => Err(self.out_of_memory(asked, Some(&e))),
                    _ => Err(e),
                }
            }
            Err(trap) => Err(self.trapped(trap)),
        }
    }

    fn out_of_memory(&self, asked: usize, detail: Option<&Error>) -> Error {
        let mib = |b: u64| b.div_ceil(1 << 20);
        let limit = self.limits.memory_bytes;
        let why = if asked as u64 > limit {
            format!("limit {} MiB (--component-memory-mb), it asked for {} MiB", mib(limit), mib(asked as u64))
        } else {
            format!("it asked for {} MiB, over the 4096 MiB a wasm32 memory can hold", mib(asked as u64))
        };
        match detail {
            Some(Error::Io(m)) => io(format!("the component ran out of memory: {why}: {m}")),
            Some(e) => io(format!("the component ran out of memory: {why}: {e}")),
            None => io(format!("the component ran out of memory: {why}")),
        }
    }

    /// The error of a trapped call; the instance is unusable afterwards.
    fn trapped(&mut self, e: wasmtime::Error) -> Error {
        let interrupted = e.chain().any(|c| c.downcast_ref::<Trap>() == Some(&Trap::Interrupt))
            || e.downcast_ref::<Trap>() == Some(&Trap::Interrupt);
        let denied = self.store.data_mut().limiter.denied.take();
        let err = if interrupted && self.cancel.flag.swap(false, Ordering::SeqCst) {
            Error::Cancelled
        } else if let Some(asked) = denied {
            self.out_of_memory(asked, None)
        } else {
            let said = self.guest_stderr();
            if said.is_empty() {
                io(format!("the component failed: {}", one_line(&e)))
            } else {
                io(format!("the component failed: {} (it said: {said})", one_line(&e)))
            }
        };
        self.broken = Some(err.clone());
        err
    }

    /// The last lines the guest wrote to stderr (its panic message), on one line.
    fn guest_stderr(&self) -> String {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        if tail.chars().count() > 600 {
            let cut: String = tail.chars().rev().take(600).collect::<Vec<_>>().into_iter().rev().collect();
            format!("...{cut}")
        } else {
            tail
        }
    }

    /// A WIT error as the engine error (messages name host paths, not sandbox paths).
    fn guest_error(&self, e: wit::Error) -> Error {
        let fix = |m: String, prefix: &str| {
            let m = m.strip_prefix(prefix).map(str::to_string).unwrap_or(m);
            match &self.rename {
                Some((guest, host)) => m.replace(guest.as_str(), host),
                None => m,
            }
        };
        match e {
            wit::Error::Config(m) => Error::Config(fix(m, "invalid model config: ")),
            wit::Error::Weights(m) => Error::Weights(fix(m, "invalid weights: ")),
            wit::Error::Format(m) => Error::Format(fix(m, "invalid model file: ")),
            wit::Error::Input(m) => Error::Input(fix(m, "invalid input: ")),
            wit::Error::ContextFull(m) => Error::ContextFull(fix(m, "context full: ")),
            wit::Error::Io(m) => Error::Io(fix(m, "i/o error: ")),
            wit::Error::Cancelled => Error::Cancelled,
        }
    }

    /// Model-loading errors name the file like the native loader does.
    fn with_model_path(&self, e: Error) -> Error {
        let Some((_, host)) = &self.rename else { return e };
        let add = |m: String| if m.contains(host.as_str()) { m } else { format!("{host}: {m}") };
        match e {
            Error::Format(m) => Error::Format(add(m)),
            Error::Config(m) => Error::Config(add(m)),
            Error::Weights(m) => Error::Weights(add(m)),
            other => other,
        }
    }
}

/// A model loaded in its own sandboxed component instance.
pub struct ComponentModel {
    sandbox: Sandbox,
    model: ResourceAny,
    info: ModelInfo,
}

impl ComponentModel {
    /// Compiles (or takes from the cache) `component` and loads `model` in it.
    pub fn load(component: &Path, model: &Path, limits: &Limits) -> Result<ComponentModel> {
        ComponentRuntime::load(component)?.load_model(model, limits)
    }

    fn new(mut sandbox: Sandbox, model: ResourceAny) -> Result<ComponentModel> {
        let info = sandbox.call(|store, api| api.saguaro_llm_llm().model().call_info(store, model).map(Ok))?;
        Ok(ComponentModel { sandbox, model, info })
    }

    /// What the model is (`kernels` is `simd128` in a component).
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The handle that cancels this model's calls (see [`CancelHandle`]).
    pub fn cancel_handle(&self) -> CancelHandle {
        self.sandbox.cancel_handle()
    }

    /// Current size of the guest's linear memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.sandbox.memory_bytes()
    }

    /// When a cancel takes effect (the runtime's [`Interruption`]).
    pub fn interruption(&self) -> Interruption {
        self.sandbox.interruption
    }

    /// Token ids of `text` (no special tokens added).
    pub fn tokenize(&mut self, text: &str) -> Result<Vec<u32>> {
        let m = self.model;
        self.sandbox.call(|store, api| api.saguaro_llm_llm().model().call_tokenize(store, m, text))
    }

    /// Text of `ids`.
    pub fn detokenize(&mut self, ids: &[u32], skip_special: bool) -> Result<String> {
        let m = self.model;
        self.sandbox.call(|store, api| api.saguaro_llm_llm().model().call_detokenize(store, m, ids, skip_special))
    }

    /// Logits of every position from a fresh state, row-major `[ids.len() x vocab_size]`.
    pub fn logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        let m = self.model;
        self.sandbox.call(|store, api| api.saguaro_llm_llm().model().call_logits(store, m, ids))
    }

    /// New token ids after `ids`, from a fresh state.
    pub fn generate_tokens(&mut self, ids: &[u32], opts: &GenerateOptions) -> Result<Vec<u32>> {
        // Generation stops when the context is full, long before u32::MAX tokens: a larger
        // max_tokens means the same as u32::MAX.
        let max_tokens = u32::try_from(opts.max_tokens).unwrap_or(u32::MAX);
        let options = wit::GenerateOptions {
            max_tokens,
            temperature: opts.temperature,
            seed: opts.seed,
            stop_on_eos: opts.stop_on_eos,
        };
        let m = self.model;
        self.sandbox.call(|store, api| api.saguaro_llm_llm().model().call_generate_tokens(store, m, ids, options))
    }

    /// A new chat session (fails when the model has no tokenizer).
    pub fn session(&mut self) -> Result<ComponentSession<'_>> {
        let m = self.model;
        let session = self.sandbox.call(|store, api| api.saguaro_llm_llm().model().call_session(store, m))?;
        Ok(ComponentSession { model: self, session })
    }
}

/// What one [`ComponentSession::next`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A prefill chunk ran: `done` of the prompt's `total` tokens are in the state.
    Prefill { done: u32, total: u32 },
    /// A token was generated.
    Token(TokenEvent),
}

/// A chat session inside a [`ComponentModel`] (dropped with it).
pub struct ComponentSession<'a> {
    model: &'a mut ComponentModel,
    session: ResourceAny,
}

impl ComponentSession<'_> {
    /// Runs a whole request (request JSON) and returns the response JSON (a failed request
    /// is a response with `success: false`; `Err` only when the component itself fails).
    pub fn complete(&mut self, request_json: &str) -> Result<String> {
        let s = self.session;
        self.model.sandbox.call(|store, api| api.saguaro_llm_llm().session().call_complete(store, s, request_json).map(Ok))
    }

    /// Starts a request without running the model (pull it with [`next`](Self::next)).
    pub fn start(&mut self, request_json: &str) -> Result<()> {
        let s = self.session;
        self.model.sandbox.call(|store, api| api.saguaro_llm_llm().session().call_start(store, s, request_json))
    }

    /// Runs one prefill chunk or generates one token; `None` once finished.
    #[allow(clippy::should_implement_trait)] // the WIT's name; fallible, so not an Iterator
    pub fn next(&mut self) -> Result<Option<Step>> {
        let s = self.session;
        let step = self.model.sandbox.call(|store, api| api.saguaro_llm_llm().session().call_next(store, s))?;
        Ok(step.map(|step| match step {
            wit::Step::Prefill(p) => Step::Prefill { done: p.done, total: p.total },
            wit::Step::Token(t) => Step::Token(TokenEvent {
                token_id: t.token_id,
                text: t.text,
                confidence: t.confidence,
                in_tool_call: t.in_tool_call,
            }),
        }))
    }

    /// Ends the request in progress at the next [`next`](Self::next) (finish reason
    /// `cancelled`): the graceful stop, unlike [`CancelHandle::cancel`].
    pub fn cancel(&mut self) -> Result<()> {
        let s = self.session;
        self.model.sandbox.call(|store, api| api.saguaro_llm_llm().session().call_cancel(store, s).map(Ok))
    }

    /// Ends the request in progress and returns its response JSON.
    pub fn finish(&mut self) -> Result<String> {
        let s = self.session;
        self.model.sandbox.call(|store, api| api.saguaro_llm_llm().session().call_finish(store, s))
    }

    /// Forgets the conversation.
    pub fn reset(&mut self) -> Result<()> {
        let s = self.session;
        self.model.sandbox.call(|store, api| api.saguaro_llm_llm().session().call_reset(store, s).map(Ok))
    }

    /// Runs a request through the pull API, handing each generated token to `on_token` as it
    /// comes (return false to stop: the request ends with finish reason `cancelled`), and
    /// returns the response JSON. A request the guest refuses at `start` (bad JSON, unknown
    /// role, ...) comes back as its `success: false` response, like [`complete`](Self::complete).
    pub fn complete_streaming(&mut self, request_json: &str, mut on_token: impl FnMut(&TokenEvent) -> bool) -> Result<String> {
        match self.start(request_json) {
            Ok(()) => {}
            Err(e) if self.model.sandbox.broken.is_none() && !matches!(e, Error::Cancelled) => {
                return Ok(saguaro_engine::Response::failure(&e).to_json());
            }
            Err(e) => return Err(e),
        }
        loop {
            match self.next() {
                Ok(Some(Step::Token(event))) => {
                    if !on_token(&event) {
                        self.cancel()?;
                    }
                }
                Ok(Some(Step::Prefill { .. })) => {}
                Ok(None) => break,
                // A failed step fails the request: `finish` returns its failure response (as
                // the native Session::complete does).
                Err(e) if self.model.sandbox.broken.is_none() && !matches!(e, Error::Cancelled) => break,
                // A CancelHandle stopped the stream between two steps (nothing trapped): end
                // the guest's request as a cancel from `on_token` would, so that the session
                // takes the next request, and report the cancel.
                Err(Error::Cancelled) if self.model.sandbox.broken.is_none() => {
                    self.cancel()?;
                    self.finish()?;
                    return Err(Error::Cancelled);
                }
                Err(e) => return Err(e),
            }
        }
        self.finish()
    }
}

impl Drop for ComponentSession<'_> {
    fn drop(&mut self) {
        if self.model.sandbox.broken.is_none() {
            // Frees the guest's session state; a failure here leaves only guest memory behind.
            let _ = self.session.resource_drop(&mut self.model.sandbox.store);
        }
    }
}
