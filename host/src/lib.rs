//! saguaro-host: Saguaro on a native machine.
//!
//! Reads model files from disk and hands their bytes to the engine (which does no I/O),
//! and backs the `saguaro` command-line tool. Later: memory-mapped .cact files, CPU-feature
//! kernel dispatch, the prefill thread pool, converters and the wasmtime component host.

pub mod loader;

pub use loader::load_model;
pub use saguaro_engine as engine;
