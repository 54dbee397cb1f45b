//! Arguments shared by several commands: threads and `--verify` ([`ThreadArgs`]), where the
//! model runs (`--engine`, [`EngineArgs`]), a model run on token ids ([`TokenRunArgs`]), and
//! the parsers of `--tokens` and `--preset`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use saguaro_engine::{Error, Preset, Result};
use saguaro_host::runtime::LoadOptions;

/// A model run on token ids: `logits` and `generate`.
#[derive(Debug, Args)]
pub struct TokenRunArgs {
    /// Model: a .cact file or a Hugging Face folder (config.json + safetensors).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub threads: ThreadArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Prompt token ids, comma separated: 1,2,3.
    #[arg(long)]
    pub tokens: String,
}

/// Threads and `--verify`, shared by every command that opens a model.
#[derive(Debug, Args)]
pub struct ThreadArgs {
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

impl ThreadArgs {
    /// The settings as the library takes them.
    pub fn options(&self) -> LoadOptions {
        LoadOptions { threads: self.threads, decode_threads: self.decode_threads, verify: self.verify }
    }

    /// Loads a model (after `--verify`) and applies the thread settings.
    pub fn load(&self, path: &std::path::Path) -> Result<saguaro_engine::Model> {
        self.options().load(path)
    }
}

/// `--engine native|component`: where `logits`, `generate`, `complete` and `bench` run. The
/// component engine runs the WASI component guest (wit/saguaro.wit) in wasmtime, in a sandbox
/// that sees only the model's folder (read-only), with a memory limit; its output is the native
/// output bit for bit (timings aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// This program, with this CPU's kernels and threads.
    Native,
    /// The WASI component in wasmtime (simd128, one thread; --threads does not apply).
    Component,
}

#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Where the model runs: `native`, or `component` (the WASI component in a wasmtime
    /// sandbox: one thread, so --threads and --decode-threads are ignored).
    #[arg(long, value_enum, default_value_t = EngineKind::Native)]
    pub engine: EngineKind,
    /// The component for --engine component (default: $SAGUARO_COMPONENT, else
    /// saguaro_component.wasm next to this program, else the guest built in this program's
    /// cargo target folder, wasm32-wasip2/wasm-release/saguaro_wasm.wasm).
    #[arg(long, value_name = "PATH")]
    pub component: Option<PathBuf>,
    /// Memory limit of the component in MiB (default 4096, the most wasm32 can address).
    #[arg(long, value_name = "MB")]
    pub component_memory_mb: Option<u64>,
    /// Compile the component with wasmtime's epoch checks, so that a cancel can stop a call in
    /// progress (slower: the checks sit in every loop; see README).
    #[arg(long)]
    pub component_epochs: bool,
}

impl EngineArgs {
    /// True for `--engine component`; an error when component flags come without it.
    pub fn is_component(&self) -> Result<bool> {
        match self.engine {
            EngineKind::Component => Ok(true),
            EngineKind::Native => {
                if self.component.is_some() || self.component_memory_mb.is_some() || self.component_epochs {
                    Err(Error::Input(
                        "--component, --component-memory-mb and --component-epochs need --engine component".into(),
                    ))
                } else {
                    Ok(false)
                }
            }
        }
    }

    /// Loads `model` in the component (compiled, or taken from the per-user cache).
    #[cfg(feature = "component")]
    pub fn load_component(&self, model: &std::path::Path) -> Result<saguaro_host::wasmtime_host::ComponentModel> {
        use saguaro_host::wasmtime_host::{
            find_component, ComponentRuntime, Interruption, Limits, RuntimeOptions, DEFAULT_MEMORY_MB,
        };
        let mb = self.component_memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
        if mb == 0 {
            return Err(Error::Input("--component-memory-mb must be at least 1".into()));
        }
        let path = match &self.component {
            Some(p) => p.clone(),
            None => find_component()?,
        };
        let interruption = if self.component_epochs { Interruption::Epoch } else { Interruption::BetweenCalls };
        let runtime = ComponentRuntime::load_with(&path, &RuntimeOptions { interruption, ..RuntimeOptions::default() })?;
        runtime.load_model(model, &Limits::memory_mb(mb))
    }
}

/// The error of `--engine component` in a build without the wasmtime host.
#[cfg(not(feature = "component"))]
pub fn unavailable() -> Error {
    Error::Input("--engine component needs a saguaro built with the `component` feature (the default)".into())
}

/// Parses `1,2,3` into token ids with an error that names the bad item.
pub fn parse_tokens(text: &str) -> Result<Vec<u32>> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Input("the token list is empty".into()));
    }
    text.split(',')
        .map(|item| {
            let item = item.trim();
            item.parse::<u32>()
                .map_err(|_| Error::Input(format!("`{item}` is not a token id (expected e.g. --tokens 1,2,3)")))
        })
        .collect()
}

/// `--preset`: a preset name, or `none`.
pub fn parse_preset(name: &str) -> Result<Option<Preset>> {
    match name {
        "none" => Ok(None),
        _ => Preset::from_name(name).map(Some).map_err(|e| match e {
            Error::Input(m) => Error::Input(format!("--preset: {m} or `none`")),
            other => other,
        }),
    }
}
