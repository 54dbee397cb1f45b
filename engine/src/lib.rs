//! saguaro-engine: the portable core of Saguaro.
//!
//! It runs LiquidAI LFM2 models from bytes: no file or network I/O and no required threads,
//! so the same code serves the native host, WebAssembly in browsers and Node, and the WASI
//! component. See docs/design.md for the contracts this crate keeps (§Bytes, §Determinism,
//! §Kernels, §Errors):
//! bytes in (no I/O), the same answer everywhere (canonical f32 reduction order, `libm`
//! transcendentals), a kernel table that hosts may override, and errors instead of panics.
//!
//! Layout:
//! - [`config`]: config.json parsing with every LFM2 rule.
//! - [`weights`]: reading tensors from safetensors bytes (single or sharded).
//! - [`kernels`]: the kernel table and its scalar definitions.
//! - [`math`]: RMSNorm, RoPE, softmax, SiLU: the small f32 operations of the forward pass.
//! - [`model`]: weights as the model sees them, the decode state and the forward pass.
//! - [`generate`]: token generation loops over the forward pass.
//! - [`api`]: the request/response schema every surface speaks.
//! - [`tokenizer`]: the model's tokenizer.json and streaming detokenization.
//! - [`chat`]: the chat template (as transformers renders it) and tool-call parsing.
//! - [`sampling`]: temperature, top-k/top-p/min-p, repetition penalty, portable RNG, entropy.
//! - [`session`]: chat completion with streaming, stop sequences, prefix reuse, confidence.
//! - [`constrain`]: JSON Schema and forced tool calls as token masks (llguidance).

pub mod api;
pub mod chat;
pub mod config;
pub mod constrain;
pub mod convert;
pub mod error;
pub mod format;
pub mod generate;
pub mod kernels;
pub mod math;
pub mod quant;
pub mod sampling;
pub mod session;
pub mod storage;
pub mod synth;
pub mod model;
pub mod parallel;
pub mod tokenizer;
pub mod weights;

pub use config::{Activation, Architecture, LayerKind, Lfm2Config, ModelConfig, MoeConfig, RopeConfig};
pub use error::{Error, Result};
pub use model::{LogitsMode, Model, State};
pub use api::{FinishReason, FunctionCall, Message, Options, Preset, Request, Response, TokenEvent, ToolChoice};
pub use session::{ChatModel, Clock, Completion, Event, Hooks, Session};
pub use tokenizer::Tokenizer;
