//! What every WebAssembly surface does with a model, independent of how it is called:
//! the wasm-bindgen bindings (`web`) and the WASI component (`component`) are thin adapters
//! over this module, so both give the native CLI's bits for the same calls.
//!
//! - [`ModelBuffer`]: the model file's bytes, written in place chunk by chunk (a download
//!   streams straight into wasm memory; no second full copy).
//! - [`Runtime`]: a loaded model: low-level calls (tokenize, logits, generate) and chat sessions.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use saguaro_engine::format::CactFile;
use saguaro_engine::generate::{generate, GenerateOptions};
use saguaro_engine::parallel::Threads;
use saguaro_engine::storage::AlignedBytes;
use saguaro_engine::{ChatModel, Error, Hooks, LogitsMode, Model, Response, Result, Session, TokenEvent};
use serde::Serialize;

/// Largest model file a wasm32 instance can hold: linear memory is at most 4 GiB, and the
/// runtime needs room for the decode state, the tokenizer and scratch besides the file.
pub const MAX_MODEL_BYTES: u64 = 3 * 1024 * 1024 * 1024 + 512 * 1024 * 1024;

/// The runners of every model loaded from now on (one thread unless a surface that can make
/// threads set them: the npm package's threads build, see `web::threads`).
static THREADS: Mutex<Option<Threads>> = Mutex::new(None);

/// Sets the runners of the models loaded after this call (models already loaded keep theirs).
pub fn set_threads(threads: Threads) {
    *THREADS.lock().unwrap_or_else(|p| p.into_inner()) = Some(threads);
}

/// The runners a model loaded now gets.
pub fn threads() -> Threads {
    THREADS.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
}

/// A model file being received: a fixed-size, 8-byte-aligned buffer filled by [`ModelBuffer::write`].
pub struct ModelBuffer {
    /// The whole file, `[len]` bytes.
    bytes: AlignedBytes,
    /// Bytes written so far (a high-water mark; chunks may arrive in any order).
    written: u64,
}

impl ModelBuffer {
    /// Reserves `len` bytes; fails cleanly (no abort) when wasm32 cannot hold them.
    pub fn new(len: u64) -> Result<ModelBuffer> {
        if len == 0 {
            return Err(Error::Input("the model file is empty".into()));
        }
        if cfg!(target_pointer_width = "32") && len > MAX_MODEL_BYTES {
            return Err(Error::Io(format!(
                "the model file is {:.2} GiB but WebAssembly (wasm32) memory is limited to 4 GiB; \
                 at most {:.2} GiB of model fits. Use an int4 conversion or the native host.",
                len as f64 / GIB,
                MAX_MODEL_BYTES as f64 / GIB
            )));
        }
        let len_usize = usize::try_from(len).map_err(|_| Error::Io(format!("a {len}-byte model does not fit in memory")))?;
        let bytes = try_zeroed(len_usize)?;
        Ok(ModelBuffer { bytes, written: 0 })
    }

    /// Total size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.as_ref().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `chunk` to `offset`; a chunk past the end is an error, not a partial write.
    pub fn write(&mut self, offset: u64, chunk: &[u8]) -> Result<()> {
        let end = offset.checked_add(chunk.len() as u64).filter(|&e| e <= self.len()).ok_or_else(|| {
            Error::Input(format!("a {}-byte chunk at offset {offset} runs past the {}-byte model", chunk.len(), self.len()))
        })?;
        // Both bounds were checked against len (a usize) above.
        self.bytes.as_mut_slice()[offset as usize..end as usize].copy_from_slice(chunk);
        self.written = self.written.max(end);
        Ok(())
    }

    /// Parses the file and builds the model.
    pub fn finish(self) -> Result<Runtime> {
        if self.written != self.len() {
            return Err(Error::Io(format!("the model download ended after {} of {} bytes", self.written, self.len())));
        }
        Runtime::from_aligned(self.bytes)
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// A zero-filled buffer, or an error when the allocator says no (instead of aborting).
fn try_zeroed(len: usize) -> Result<AlignedBytes> {
    // Probe the allocator with a fallible reservation of the same size first: the infallible
    // allocation inside AlignedBytes would abort the instance on failure.
    let mut probe: Vec<u64> = Vec::new();
    probe.try_reserve_exact(len.div_ceil(8)).map_err(|_| {
        Error::Io(format!("could not allocate {:.1} MiB for the model in WebAssembly memory", len as f64 / (1024.0 * 1024.0)))
    })?;
    drop(probe);
    Ok(AlignedBytes::zeroed(len))
}

/// Facts about a loaded model, for `info()` on every surface.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub max_position_embeddings: usize,
    pub file_bytes: usize,
    pub has_tokenizer: bool,
    pub is_moe: bool,
    /// The kernel tier computing (e.g. `simd128` or `scalar`).
    pub kernels: String,
    /// Threads computing a prompt (prefill) and a new token (decode): 1 unless the surface
    /// runs threads (the npm package's threads build).
    pub threads: usize,
}

/// A loaded model and, when its file carries a tokenizer, its chat front end.
pub struct Runtime {
    model: Arc<Model>,
    /// The chat front end, or why the file cannot chat (no tokenizer.json, bad template).
    chat: std::result::Result<Arc<ChatModel>, Error>,
}

impl Runtime {
    /// Loads a model from a complete `.cact` file already in (aligned) memory.
    pub fn from_aligned(bytes: AlignedBytes) -> Result<Runtime> {
        let file = CactFile::parse(bytes.into_blob())?;
        let mut model = Model::from_cact(&file)?;
        model.set_threads(threads());
        let model = Arc::new(model);
        let chat = ChatModel::new(model.clone());
        Ok(Runtime { model, chat })
    }

    /// Loads a model from bytes anywhere in memory (copied once into an aligned buffer).
    pub fn from_bytes(bytes: &[u8]) -> Result<Runtime> {
        let mut buffer = ModelBuffer::new(bytes.len() as u64)?;
        buffer.write(0, bytes)?;
        buffer.finish()
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The chat front end, or the reason this model file has none.
    pub fn chat(&self) -> Result<&Arc<ChatModel>> {
        self.chat.as_ref().map_err(|e| Error::Input(format!("this model cannot chat: {e}")))
    }

    pub fn info(&self) -> ModelInfo {
        let c = &self.model.config;
        ModelInfo {
            model_type: c.model_type.clone(),
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            num_layers: c.num_layers,
            max_position_embeddings: c.max_position_embeddings,
            file_bytes: self.model.file.len(),
            has_tokenizer: self.chat.is_ok(),
            is_moe: c.moe.is_some(),
            kernels: self.model.kernels.tier.to_string(),
            threads: self.model.threads.prefill.threads(),
        }
    }

    /// Token ids of `text` (no special tokens added; the chat template adds its own).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.chat()?.tokenizer.encode(text)
    }

    /// Text of `ids`; `skip_special` drops special tokens such as `<|im_end|>`.
    pub fn detokenize(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let chat = self.chat()?;
        let vocab = self.model.config.vocab_size;
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::Input(format!("token id {bad} is out of range (vocab size {vocab})")));
        }
        chat.tokenizer.decode(ids, skip_special)
    }

    /// Logits of every position of `ids` from a fresh state, row-major `[ids.len(), vocab]`
    /// (what `saguaro logits` prints).
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let mut state = self.model.new_state();
        self.model.forward(&mut state, ids, LogitsMode::All)
    }

    /// New tokens after `ids` from a fresh state (what `saguaro generate` prints). `on_token`
    /// returning false stops early. When the context fills before `max_tokens`, the tokens made
    /// so far are returned (finish reason `context_full`, as in chat), not an error.
    pub fn generate_tokens(&self, ids: &[u32], opts: &GenerateOptions, on_token: impl FnMut(u32) -> bool) -> Result<Vec<u32>> {
        self.model.check_tokens(ids)?;
        let mut state = self.model.new_state();
        generate(&self.model, &mut state, ids, opts, on_token)
    }

    /// A chat session with the surface's clock and memory probe.
    pub fn session(&self, hooks: Hooks) -> Result<Session> {
        Ok(Session::new(self.chat()?.clone()).with_hooks(hooks))
    }
}

/// Runs one request (JSON of `saguaro_engine::api::Request`) on `session`; never fails: errors
/// are in the response. `on_token` returning false cancels.
pub fn complete_json(session: &mut Session, request_json: &str, on_token: impl FnMut(&TokenEvent) -> bool) -> Response {
    session.complete_json(request_json, on_token, &AtomicBool::new(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_rejects_empty_and_out_of_range_chunks() {
        assert_eq!(ModelBuffer::new(0).err().map(|e| e.code()), Some("input"));
        let mut b = ModelBuffer::new(10).unwrap();
        assert!(b.write(8, &[1, 2, 3]).is_err());
        assert!(b.write(u64::MAX, &[1]).is_err());
        b.write(0, &[0; 4]).unwrap();
        // Only 4 of 10 bytes arrived.
        let err = b.finish().err().unwrap();
        assert_eq!(err.code(), "io");
        assert!(err.to_string().contains("4 of 10"), "{err}");
    }

    #[test]
    fn garbage_bytes_are_a_format_error() {
        let err = Runtime::from_bytes(&[7u8; 256]).err().unwrap();
        assert_eq!(err.code(), "format", "{err}");
    }
}
