//! saguaro-wasm: Saguaro's WebAssembly surfaces over one shared [`runtime`].
//!
//! - `web` (wasm32-unknown-unknown): wasm-bindgen bindings for browsers and Node; the npm
//!   package in `npm/` wraps them in a typed JS API.
//! - `component` (wasm32-wasip2): the WASI component guest exporting `wit/saguaro.wit`.
//!
//! Both are thin: argument conversion, error mapping and host hooks (clock, cancellation).
//! The work, and therefore the bits, is in [`runtime`] and `saguaro-engine`.

pub mod runtime;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub mod web;

#[cfg(target_os = "wasi")]
pub mod component;
