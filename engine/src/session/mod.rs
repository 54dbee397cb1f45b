//! Chat completion sessions: the request/response API of [`crate::api`] over a loaded model.
//!
//! - [`ChatModel`]: a model with its tokenizer, chat template, generation defaults and stop
//!   ids, loaded once and shared (`Arc`) by any number of sessions.
//! - [`Session`]: one conversation's state. [`Session::complete`] renders the request with the
//!   template, tokenizes it, prefills what the state does not hold yet, samples
//!   ([`crate::sampling`]), streams each token to a callback and builds the [`Response`].
//!   [`Session::start`] / [`Session::step`] / [`Session::finish`] is the same work pulled one
//!   prefill chunk or one token at a time, for hosts that must yield between steps (a browser's
//!   event loop, a component's `next`): `complete` is exactly that loop.
//!
//! **Prefix reuse.** The session remembers the tokens its state has consumed. A request whose
//! prompt extends them (the usual next turn: the previous prompt, the generated answer, the new
//! user message) prefills only the new suffix. After each prompt prefill the session also keeps
//! a snapshot: a [`crate::model::Checkpoint`] of the state (its position and a copy of the conv
//! layers' tails, which cannot be recomputed; the KV caches are rolled back by truncation) with
//! the prompt's last logits. When the new prompt diverges inside the generated part (the
//! template re-renders the answer differently, a stop sequence cut it), the state rolls back to
//! the snapshot if the new prompt extends the previous prompt, and everything is prefilled again
//! otherwise (the snapshot is then dropped: its KV positions were in the state just cleared).
//! A model without conv layers (Llama, Gemma) can go back to any position by truncating its KV
//! caches ([`crate::model::State::checkpoint_at`]), so there the state keeps the whole common
//! prefix, e.g. a forced tool call's tokens up to where their re-tokenized text differs. A
//! prompt identical to the previous one reuses the snapshot's logits and prefills nothing. Reuse
//! is exact: the forward pass gives the same bits for a token whether it comes in a batch or
//! alone.
//!
//! **Stopping.** Generation ends on an end-of-sequence id (config.json `eos_token_id`,
//! generation_config.json `eos_token_id`, and `<|im_end|>` when the tokenizer has it; the id is
//! not part of the text), on a stop sequence found in the generated text (matched across token
//! boundaries: text that could be the start of a stop sequence is held back, so the stream never
//! shows text past a stop; `include_stop_sequences` keeps the matched sequence), after
//! `max_tokens`, when the context is full, or when cancelled (the callback returns false or the
//! cancel flag is set, checked between prefill chunks and before each decoding step). Cancelling
//! is not a failure: the response holds what was streamed, `finish_reason` is `cancelled`.
//!
//! **Streaming.** Every generated token produces one [`TokenEvent`] with the text it releases:
//! special tokens are skipped, incomplete UTF-8 sequences are held until complete, tool calls
//! (between `<|tool_call_start|>` and `<|tool_call_end|>`) go to the tool-call parser instead of
//! the text, and the last event carries whatever was still held. `response` is exactly the
//! concatenation of the events' text.
//!
//! **Tool calls** are parsed when `<|tool_call_end|>` arrives (or at the end, if the model never
//! closed the call) with [`crate::chat::tool_calls`]; calls naming a declared tool go to
//! `function_calls`, others (and malformed ones) to `tool_call_errors`. `finish_reason` is
//! `tool_calls` when the model ended its turn after calling tools.
//!
//! **Confidence.** For each generated token, h = H / ln V, the entropy of the model's softmax
//! over the whole vocabulary (raw logits, before repetition penalty, temperature and filters)
//! divided by its maximum. A token's confidence is 1 - h; the response's `confidence` is
//! 1 - mean(h) over the generated tokens (1 when none). `cloud_handoff` is true when, after any
//! token, the mean confidence of the last min(10, n) tokens is below `confidence_threshold`
//! (default 0.7): the first token alone, then rolling windows of up to 10. Generation goes on
//! regardless; the app decides what to do with the flag.
//!
//! **Metrics.** The engine has no clock (`std::time::Instant` does not exist on
//! wasm32-unknown-unknown): timings come from the [`Clock`] in the session's [`Hooks`] (all
//! zero without one), RAM from its `ram_usage_mb` callback (without one: the model file's size
//! plus the session's state and snapshot, an estimate of what the engine holds). The same clock
//! gives `strftime_now` in templates its date.
//!
//! **Files.** `chat_model.rs`: [`ChatModel`] and rendering a request; `prompt.rs`: the prompt's
//! tokens and the early context-full checks; `reuse.rs`: prefill with prefix reuse and the
//! snapshot; `completion.rs`: [`Session::start`] / [`Session::step`] / [`Session::finish`]
//! (sampling, confidence, finish reasons, metrics); `output.rs`: generated ids to text and tool
//! calls; `stop.rs`: stop sequences; `hooks.rs`: what the host provides.

mod chat_model;
mod completion;
mod hooks;
mod output;
mod prompt;
mod reuse;
mod stop;

use std::sync::Arc;

pub use chat_model::ChatModel;
pub use completion::{Completion, Event};
pub use hooks::{Clock, Hooks};
pub use output::{OutputProcessor, Step};
pub use reuse::Prefill;

use crate::api::DEFAULT_MAX_REQUEST_BYTES;
use crate::model::{Model, State};
use reuse::Snapshot;

/// One conversation over a shared [`ChatModel`].
#[derive(Debug)]
pub struct Session {
    chat: Arc<ChatModel>,
    /// The model's memory of `tokens`.
    state: State,
    /// Tokens the state has consumed (`state.pos == tokens.len()`).
    tokens: Vec<u32>,
    /// Where the last prompt's prefill ended (see the module docs, "Prefix reuse").
    snapshot: Option<Snapshot>,
    /// The host's clock and memory probe.
    hooks: Hooks,
    /// Keep a snapshot after each prompt (on by default; costs a copy of the conv tails and the
    /// last logits, a few hundred kilobytes whatever the context length).
    pub keep_snapshots: bool,
    /// Requests started so far (a [`Completion`] remembers its number).
    completions: u64,
    /// Largest request accepted, in bytes (JSON text, or [`crate::api::Request::text_bytes`] of a request
    /// object); default [`DEFAULT_MAX_REQUEST_BYTES`].
    pub max_request_bytes: usize,
}
impl Session {
    pub fn new(chat: Arc<ChatModel>) -> Self {
        let state = chat.model.new_state();
        Session {
            chat,
            state,
            tokens: Vec::new(),
            snapshot: None,
            hooks: Hooks::default(),
            keep_snapshots: true,
            completions: 0,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }

    /// Sets the host hooks (clock, memory probe).
    pub fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    pub fn set_hooks(&mut self, hooks: Hooks) {
        self.hooks = hooks;
    }

    pub fn chat(&self) -> &Arc<ChatModel> {
        &self.chat
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.chat.model
    }

    /// The tokens the session's state holds.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}
