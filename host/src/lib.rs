//! saguaro-host: Saguaro on a native machine.
//!
//! Reads model files from disk (memory-mapped `.cact`, Hugging Face folders, GGUF) and hands
//! their bytes to the engine (which does no I/O), plugs in the CPU's best kernels and a
//! prefill thread pool, converts and downloads models, and backs the `saguaro` CLI.
//!
//! - [`loader`]: opening models; [`convert`]: writing `.cact` files (`saguaro convert`, `pull`,
//!   `synth`); [`bench`]: the measurements of `saguaro bench`; [`gguf`]: GGUF reader;
//!   [`hub`]: Hugging Face downloads; [`kernels`]: CPU detection and SIMD tiers;
//!   [`threads`]: the thread pool; [`runtime`]: what a session runs with here (clock and
//!   memory hooks, opening a model with thread settings and `--verify`); [`server`]:
//!   `saguaro serve`, the OpenAI-compatible server; [`output`]: output files that never
//!   replace an input and never stay half-written; [`cache`]: the folder of downloaded models;
//!   [`wasmtime_host`] (feature `component`): the wasmtime host that runs the WASI component
//!   guest (`wasm/src/component`).
//!
//! The CLI (src/cli, in the `saguaro` binary) follows one rule: `host/src/X.rs` holds the logic
//! of a command, usable as a library; `host/src/cli/X.rs` only parses its arguments, calls that
//! logic and prints the result.

pub mod hub;
pub mod bench;
pub mod cache;
pub mod convert;
pub mod gguf;
pub mod kernels;
pub mod loader;
pub mod server;
pub mod output;
pub mod runtime;
pub mod threads;
#[cfg(feature = "component")]
pub mod wasmtime_host;

pub use loader::load_model;
pub use saguaro_engine as engine;
