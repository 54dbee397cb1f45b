//! saguaro-host: Saguaro on a native machine.
//!
//! Reads model files from disk (memory-mapped `.cact`, Hugging Face folders, GGUF) and hands
//! their bytes to the engine (which does no I/O), plugs in the CPU's best kernels and a
//! prefill thread pool, converts and downloads models, and backs the `saguaro` CLI.
//!
//! - [`loader`]: opening models; [`convert`]: writing `.cact` files; [`gguf`]: GGUF reader;
//!   [`hub`]: Hugging Face downloads; [`kernels`]: CPU detection and SIMD tiers;
//!   [`threads`]: the thread pool; [`server`]: `saguaro serve`, the OpenAI-compatible server;
//!   [`output`]: output files that never replace an input and never stay half-written;
//!   [`component`] (feature `component`): the wasmtime host
//!   that runs the WASI component guest.

pub mod hub;
pub mod bench;
pub mod cache;
#[cfg(feature = "component")]
pub mod component;
pub mod convert;
pub mod gguf;
pub mod kernels;
pub mod loader;
pub mod server;
pub mod output;
pub mod threads;

pub use loader::load_model;
pub use saguaro_engine as engine;
