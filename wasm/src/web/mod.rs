//! wasm-bindgen bindings for browsers and Node (wasm32-unknown-unknown): three classes over
//! [`crate::runtime`], wrapped by the typed JS API of the npm package (`npm/src`).
//!
//! - `ModelBuffer`: `new(len)`, `write(offset, chunk)`, `finish() -> Model`. A download is
//!   written chunk by chunk into the final aligned buffer (no second full copy).
//! - `Model`: `fromBytes`, `info`, `tokenize`, `detokenize`, `logits`, `generateTokens`, `session`.
//! - `Session`: `complete` (synchronous) and the pull API `start` / `next` / `cancel` / `finish`,
//!   which lets JS yield to its event loop between steps (one prefill chunk or one token each).
//!
//! - threads (threads.rs): `startThreads`, `threadWorkerRun`, ...: the thread pool of the
//!   threads build, driven by npm/src/threads.ts.
//!
//! Requests and responses are plain JS objects with the JSON schema's field names
//! (`saguaro_engine::api`). Every engine error is thrown as a JS `Error` whose `code` is
//! [`saguaro_engine::Error::code`]; nothing here panics on bad input.

mod error;
mod hooks;
mod model;
mod session;
mod threads;

pub use model::{Model, ModelBuffer};
pub use session::Session;

use wasm_bindgen::prelude::*;

/// Runs once when the module is instantiated: panics (which should never happen) are reported
/// to `console.error` with their message before the instance traps.
#[wasm_bindgen(start)]
fn on_instantiate() {
    hooks::install_panic_hook();
}

/// The crate version (the npm package checks it matches its own).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Largest model file this build accepts, in bytes (wasm32 memory is at most 4 GiB).
#[wasm_bindgen(js_name = maxModelBytes)]
pub fn max_model_bytes() -> f64 {
    crate::runtime::MAX_MODEL_BYTES as f64
}

/// Current size of the WebAssembly memory in bytes.
#[wasm_bindgen(js_name = memoryBytes)]
pub fn memory_bytes() -> f64 {
    hooks::memory_bytes()
}
