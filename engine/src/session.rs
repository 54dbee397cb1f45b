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
//! user message) prefills only the new suffix. The conv layers' state cannot be rolled back, so
//! after each prompt prefill the session also keeps a snapshot (a clone of the state, with the
//! prompt's last logits); when the new prompt diverges inside the generated part (the template
//! re-renders the answer differently, a stop sequence cut it), the snapshot is restored if the
//! new prompt extends the previous prompt, and everything is prefilled again otherwise. A prompt
//! identical to the previous one reuses the snapshot's logits and prefills nothing. Reuse is exact:
//! the forward pass gives the same bits for a token whether it comes in a batch or alone.
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::api::{
    check_request_size, FinishReason, FunctionCall, GenerationDefaults, Request, ResolvedOptions, Response, TokenEvent,
    ToolChoice, DEFAULT_MAX_REQUEST_BYTES,
};
use crate::chat::json_calls::JsonCallScanner;
use crate::chat::{self, ChatTemplate, TemplateVars, ToolFormat, LFM2_TEMPLATE};
use crate::constrain::{self, Constraint, ConstraintVocab};
use crate::error::{Error, Result};
use crate::model::{LogitsMode, Model, State};
use crate::sampling::{normalized_entropy, Sampler};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Prompt tokens per forward call during prefill: cancellation is checked between chunks (the
/// forward pass gives the same bits however a prompt is cut).
const PREFILL_CHUNK: usize = 256;

/// Bytes of prompt text tokenized at a time while counting a long prompt's tokens: the count
/// stops as soon as it passes the context, so memory and time follow the context, not the input.
const COUNT_CHUNK_BYTES: usize = 16 << 10;
/// Tokens a cut between two counting chunks may add (a token split in two, a merge lost).
/// Cuts are made before a space that starts a word, where pre-tokenizers split anyway, so
/// this is slack for unusual tokenizers.
const COUNT_SLACK_PER_CUT: usize = 8;

/// Time as the host sees it.
pub trait Clock: Send + Sync {
    /// Milliseconds from any fixed origin, never decreasing.
    fn now_ms(&self) -> f64;
    /// Seconds since 1970-01-01 UTC (for templates that print today's date), if known.
    fn unix_seconds(&self) -> Option<i64> {
        None
    }
}

/// What the host provides to a session: a clock and a memory probe.
#[derive(Clone, Default)]
pub struct Hooks {
    pub clock: Option<Arc<dyn Clock>>,
    /// Resident memory of the process in MiB.
    pub ram_usage_mb: Option<Arc<dyn Fn() -> f64 + Send + Sync>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").field("clock", &self.clock.is_some()).field("ram_usage_mb", &self.ram_usage_mb.is_some()).finish()
    }
}

impl Hooks {
    fn now_ms(&self) -> f64 {
        self.clock.as_ref().map_or(0.0, |c| c.now_ms())
    }
}

/// A model ready for chat: tokenizer, template, defaults and stop ids, shared by sessions.
#[derive(Debug)]
pub struct ChatModel {
    pub model: Arc<Model>,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub defaults: GenerationDefaults,
    /// Ids that end generation.
    pub eos_ids: Vec<u32>,
    pub tool_call_start: Option<u32>,
    pub tool_call_end: Option<u32>,
    /// How the model writes tool calls: between the two ids above when it has both, else the
    /// JSON convention of [`chat::json_calls`].
    pub tool_format: ToolFormat,
    /// UTF-8 length of the longest token string of the vocabulary (added tokens included): no
    /// token stands for more bytes of text, so a text of n bytes has at least n / this tokens.
    pub max_token_bytes: usize,
    /// Fewest tokens the chat template adds for each message (its role markers), measured when
    /// the model is loaded; 0 when the template does not render every message on its own (it
    /// merges or skips messages, or refuses the probe conversations). A request with n messages
    /// has at least n times this many prompt tokens, known before rendering anything.
    pub min_tokens_per_message: usize,
    /// The template writes a user message's text into the prompt (checked when the model is
    /// loaded): then the bytes of the user messages' text bound the prompt's tokens from below
    /// before rendering.
    pub renders_user_text: bool,
    /// The vocabulary as a token trie for constrained decoding, built by the first request
    /// that needs it (tens of milliseconds for 65k tokens; most requests never do).
    constraint_vocab: OnceLock<Result<Arc<ConstraintVocab>>>,
}

/// See [`ChatModel::min_tokens_per_message`]: for each role, the tokens that a second and a
/// third empty message of that role add to the rendered conversation; the least of all.
fn min_tokens_per_message(template: &ChatTemplate, tokenizer: &Tokenizer) -> usize {
    let vars = TemplateVars { special_tokens: tokenizer.special_tokens().to_vec(), unix_seconds: None };
    let mut least = usize::MAX;
    for role in ["system", "user", "assistant", "tool"] {
        let mut counts = [0usize; 3];
        for (n, count) in counts.iter_mut().enumerate() {
            let messages = vec![serde_json::json!({"role": role, "content": ""}); n + 1];
            let tokens = template.render(&messages, None, false, &vars).and_then(|text| tokenizer.encode(&text));
            match tokens {
                Ok(ids) => *count = ids.len(),
                Err(_) => return 0,
            }
        }
        least = least.min(counts[1].saturating_sub(counts[0])).min(counts[2].saturating_sub(counts[1]));
    }
    if least == usize::MAX {
        0
    } else {
        least
    }
}

/// See [`ChatModel::renders_user_text`].
fn renders_user_text(template: &ChatTemplate, tokenizer: &Tokenizer) -> bool {
    const PROBE: &str = "saguaro probe: 7f3a9c";
    let vars = TemplateVars { special_tokens: tokenizer.special_tokens().to_vec(), unix_seconds: None };
    let messages = [serde_json::json!({"role": "user", "content": PROBE})];
    template.render(&messages, None, true, &vars).is_ok_and(|text| text.contains(PROBE))
}

/// The chat template of a model file: the manifest's, else tokenizer_config.json's
/// `chat_template` (a string, or a list of named templates: `default` or the first), else LFM2's.
fn template_source(model: &Model) -> Result<String> {
    if let Some(t) = &model.file.manifest.chat_template {
        return Ok(t.clone());
    }
    if let Some(bytes) = model.file.file("tokenizer_config.json") {
        let cfg: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Format(format!("tokenizer_config.json is not valid JSON: {e}")))?;
        match cfg.get("chat_template") {
            Some(Value::String(s)) => return Ok(s.clone()),
            Some(Value::Array(list)) => {
                let named = |n: &str| list.iter().find(|t| t.get("name").and_then(Value::as_str) == Some(n));
                if let Some(t) = named("default").or_else(|| list.first()).and_then(|t| t.get("template")).and_then(Value::as_str) {
                    return Ok(t.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(LFM2_TEMPLATE.to_string())
}

fn ids_of(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().and_then(|x| u32::try_from(x).ok()).into_iter().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok())).collect(),
        _ => Vec::new(),
    }
}

impl ChatModel {
    /// Reads the tokenizer, template and defaults from the model's file.
    pub fn new(model: Arc<Model>) -> Result<Arc<ChatModel>> {
        let tokenizer = Tokenizer::from_cact(&model.file)?;
        let template = ChatTemplate::new(&template_source(&model)?)?;
        let gen_config = model.file.manifest.generation_config.as_ref();
        let defaults = GenerationDefaults::from_generation_config(gen_config);
        let mut eos_ids = model.config.eos_token_ids.clone();
        eos_ids.extend(ids_of(gen_config.and_then(|g| g.get("eos_token_id"))));
        eos_ids.extend(tokenizer.token_id("<|im_end|>"));
        eos_ids.sort_unstable();
        eos_ids.dedup();
        let tool_call_start = tokenizer.token_id(chat::TOOL_CALL_START);
        let tool_call_end = tokenizer.token_id(chat::TOOL_CALL_END);
        let tool_format = if tool_call_start.is_some() && tool_call_end.is_some() { ToolFormat::Markers } else { ToolFormat::Json };
        let max_token_bytes = tokenizer.inner().get_vocab(true).keys().map(String::len).max().unwrap_or(1).max(1);
        let min_tokens_per_message = min_tokens_per_message(&template, &tokenizer);
        let renders_user_text = renders_user_text(&template, &tokenizer);
        Ok(Arc::new(ChatModel {
            model,
            tokenizer,
            template,
            defaults,
            eos_ids,
            tool_call_start,
            tool_call_end,
            tool_format,
            max_token_bytes,
            min_tokens_per_message,
            renders_user_text,
            constraint_vocab: OnceLock::new(),
        }))
    }

    /// The vocabulary prepared for constrained decoding (built on first use, then shared).
    pub fn constraint_vocab(&self) -> Result<Arc<ConstraintVocab>> {
        self.constraint_vocab
            .get_or_init(|| {
                ConstraintVocab::from_tokenizer(
                    &self.tokenizer,
                    self.model.config.vocab_size,
                    &self.eos_ids,
                    self.tool_call_start,
                    self.tool_call_end,
                )
                .map(Arc::new)
            })
            .clone()
    }

    /// The prompt text of a request (the template rendered with a generation prompt).
    pub fn render(&self, request: &Request, unix_seconds: Option<i64>) -> Result<String> {
        request.validate()?;
        let mut messages = chat::template_messages_for(&request.messages, self.template.reads_tool_calls(), self.tool_format)?;
        let mut tools = request.tools.as_deref();
        if self.json_tool_calls(request)? && !self.template.reads_tools() {
            // The template cannot list the tools: the engine's instructions do (chat::json_calls).
            chat::json_calls::add_instructions(&mut messages, tools.unwrap_or_default());
            tools = None;
        }
        let vars = TemplateVars { special_tokens: self.tokenizer.special_tokens().to_vec(), unix_seconds };
        self.template.render(&messages, tools, true, &vars)
    }

    /// Whether this request's answer may hold `{"tool_calls": ...}` calls: a model without
    /// tool-call tokens, tools declared and not refused by `tool_choice: "none"`.
    pub fn json_tool_calls(&self, request: &Request) -> Result<bool> {
        Ok(self.tool_format == ToolFormat::Json
            && request.tools.as_ref().is_some_and(|t| !t.is_empty())
            && request.tool_choice()? != ToolChoice::None)
    }

    /// The prompt token ids of a request. A prompt longer than the context is an
    /// [`Error::ContextFull`], found at a cost that follows the context rather than the input
    /// (tokenizing a whole 50 MB prompt takes gigabytes and tens of seconds):
    /// - before rendering: at least [`ChatModel::min_tokens_per_message`] tokens per message, and
    ///   the user messages' text at one token per 2 x [`ChatModel::max_token_bytes`] bytes;
    /// - after rendering, at most one token per byte: a text no longer than the context fits;
    /// - at least one token per [`ChatModel::max_token_bytes`] bytes (halved, for normalizers
    ///   that shrink text): a text longer than that bound is refused without tokenizing;
    /// - otherwise the text is tokenized in chunks with a running count that stops as soon as
    ///   it passes the context; only a prompt that fits is then tokenized whole.
    pub fn prompt_tokens(&self, request: &Request, unix_seconds: Option<i64>) -> Result<Vec<u32>> {
        let context = self.model.config.max_position_embeddings;
        // Before rendering (which costs time and memory per message and per byte): the messages'
        // markers alone, and the user messages' text alone.
        let at_least = request.messages.len().saturating_mul(self.min_tokens_per_message);
        if at_least > context {
            return Err(Error::ContextFull(format!(
                "the prompt has at least {at_least} tokens ({} messages of at least {} tokens each), the context holds {context}",
                request.messages.len(),
                self.min_tokens_per_message
            )));
        }
        if self.renders_user_text {
            let user_bytes: usize = request
                .messages
                .iter()
                .filter(|m| m.role == "user")
                .filter_map(|m| m.content.as_ref().and_then(Value::as_str))
                .map(str::len)
                .sum();
            let at_least = user_bytes / (2 * self.max_token_bytes);
            if at_least > context {
                return Err(Error::ContextFull(format!(
                    "the prompt has at least {at_least} tokens ({user_bytes} bytes of user text), the context holds {context}"
                )));
            }
        }
        let text = self.render(request, unix_seconds)?;
        // Short prompts are tokenized once, below; long ones are counted in chunks first.
        if text.len() > context && text.len() > COUNT_CHUNK_BYTES {
            let at_least = text.len() / (2 * self.max_token_bytes);
            if at_least > context {
                return Err(Error::ContextFull(format!(
                    "the prompt has at least {at_least} tokens ({} bytes of text), the context holds {context}",
                    text.len()
                )));
            }
            let mut counted = 0usize;
            let mut rest = text.as_str();
            let mut cuts = 0usize;
            while !rest.is_empty() {
                let cut = count_chunk_end(rest, COUNT_CHUNK_BYTES);
                counted += self.tokenizer.encode(&rest[..cut])?.len();
                rest = &rest[cut..];
                if !rest.is_empty() {
                    cuts += 1;
                }
                if counted > context + cuts * COUNT_SLACK_PER_CUT {
                    return Err(Error::ContextFull(format!(
                        "the prompt has more than {context} tokens ({counted} in its first {} of {} bytes), the context holds {context}",
                        text.len() - rest.len(),
                        text.len()
                    )));
                }
            }
        }
        self.tokenizer.encode_prompt(&text)
    }
}

/// The state after a prompt's prefill, kept for reuse.
#[derive(Debug, Clone)]
struct Snapshot {
    tokens: Vec<u32>,
    state: State,
    logits: Vec<f32>,
}

/// What [`Session::prefill`] did.
#[derive(Debug, Clone)]
pub struct Prefill {
    /// The last prompt position's logits `[V]`.
    pub logits: Vec<f32>,
    /// Prompt tokens whose state was already there (live or from the snapshot).
    pub reused: usize,
    /// Prompt tokens run through the model now.
    pub processed: usize,
}

/// One conversation over a shared [`ChatModel`].
#[derive(Debug)]
pub struct Session {
    chat: Arc<ChatModel>,
    state: State,
    /// Tokens the state has consumed (`state.pos == tokens.len()`).
    tokens: Vec<u32>,
    snapshot: Option<Snapshot>,
    hooks: Hooks,
    /// Keep a snapshot after each prompt (on by default; costs one copy of the state).
    pub keep_snapshots: bool,
    /// Requests started so far (a [`Completion`] remembers its number).
    completions: u64,
    /// Largest request accepted, in bytes (JSON text, or [`Request::text_bytes`] of a request
    /// object); default [`DEFAULT_MAX_REQUEST_BYTES`].
    pub max_request_bytes: usize,
}

/// Holds back text that could start a stop sequence; finds the first complete one.
#[derive(Debug, Default)]
struct StopMatcher {
    stops: Vec<String>,
    include: bool,
    pending: String,
}

impl StopMatcher {
    /// Adds text; returns the text that can be released and whether a stop sequence matched
    /// (then nothing after it is ever released).
    fn push(&mut self, text: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (text.to_string(), false);
        }
        self.pending.push_str(text);
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()).map(|at| (at, std::cmp::Reverse(s.len()), s)))
            .min();
        if let Some((at, _, stop)) = hit {
            let mut out = self.pending[..at].to_string();
            if self.include {
                out.push_str(stop);
            }
            self.pending.clear();
            return (out, true);
        }
        let mut hold = 0;
        for s in &self.stops {
            for k in (1..s.len()).rev() {
                if k > hold && s.is_char_boundary(k) && self.pending.ends_with(&s[..k]) {
                    hold = k;
                    break;
                }
            }
        }
        let cut = self.pending.len() - hold;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    /// Releases what is held (generation ended without a match).
    fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// What one generated token did to the output.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Response text released by this token.
    pub text: String,
    /// The token belongs to a tool call (markers included).
    pub in_tool_call: bool,
    /// `Stop` for an end-of-sequence id, `StopSequence` when a stop sequence matched.
    pub finish: Option<FinishReason>,
}

/// Turns generated ids into response text, tool calls and stop decisions: end-of-sequence ids,
/// tool-call blocks (parsed and checked against the declared tools), streaming detokenization
/// and stop sequences. [`Session::complete`] feeds it every sampled id.
#[derive(Debug)]
pub struct OutputProcessor {
    chat: Arc<ChatModel>,
    declared: Vec<String>,
    decoder: StreamDecoder,
    stopper: StopMatcher,
    in_tool_call: bool,
    tool_ids: Vec<u32>,
    /// Finds a `{"tool_calls": ...}` answer (models without tool-call tokens; see
    /// [`ChatModel::json_tool_calls`]).
    json_calls: Option<JsonCallScanner>,
    /// Calls naming a declared tool.
    pub calls: Vec<FunctionCall>,
    /// Malformed calls and calls of undeclared tools.
    pub errors: Vec<String>,
}

impl OutputProcessor {
    pub fn new(chat: &Arc<ChatModel>, declared: Vec<String>, stop_sequences: &[String], include_stop_sequences: bool, json_calls: bool) -> Self {
        OutputProcessor {
            chat: Arc::clone(chat),
            declared,
            decoder: StreamDecoder::new(),
            stopper: StopMatcher { stops: stop_sequences.to_vec(), include: include_stop_sequences, pending: String::new() },
            in_tool_call: false,
            tool_ids: Vec::new(),
            json_calls: json_calls.then(JsonCallScanner::new),
            calls: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn close_call(&mut self, closed: bool) -> Result<()> {
        let body = self.chat.tokenizer.decode(&self.tool_ids, false)?;
        let out = chat::parse_and_check(&body, &self.declared);
        self.calls.extend(out.calls);
        if closed {
            self.errors.extend(out.errors);
        } else {
            self.errors.push(format!("tool call never closed with {}: `{body}`", chat::TOOL_CALL_END));
        }
        self.in_tool_call = false;
        self.tool_ids.clear();
        Ok(())
    }

    /// Processes one generated id.
    pub fn push(&mut self, id: u32) -> Result<Step> {
        let chat = Arc::clone(&self.chat);
        if chat.eos_ids.contains(&id) {
            return Ok(Step { text: String::new(), in_tool_call: false, finish: Some(FinishReason::Stop) });
        }
        if self.in_tool_call {
            if Some(id) == chat.tool_call_end {
                self.close_call(true)?;
            } else {
                self.tool_ids.push(id);
            }
            return Ok(Step { text: String::new(), in_tool_call: true, finish: None });
        }
        if Some(id) == chat.tool_call_start {
            self.in_tool_call = true;
            self.tool_ids.clear();
            return Ok(Step { text: String::new(), in_tool_call: true, finish: None });
        }
        let piece = self.decoder.push(&chat.tokenizer, id)?;
        let (piece, in_tool_call) = self.scan_json_calls(piece);
        let (text, matched) = self.stopper.push(&piece);
        Ok(Step { text, in_tool_call, finish: matched.then_some(FinishReason::StopSequence) })
    }

    /// Passes decoded text through the `{"tool_calls": ...}` scanner, if the request has one:
    /// the text to pass on, and whether the piece belongs to a call block (parsed into calls
    /// and errors when it closes).
    fn scan_json_calls(&mut self, piece: String) -> (String, bool) {
        let Some(scanner) = &mut self.json_calls else { return (piece, false) };
        let scanned = scanner.push(&piece);
        if let Some(block) = scanned.call {
            match chat::json_calls::call_list(&block) {
                Ok(list) => {
                    let out = chat::parse_and_check(&list, &self.declared);
                    self.calls.extend(out.calls);
                    self.errors.extend(out.errors);
                }
                Err(e) => self.errors.push(format!("malformed tool call: {e}: `{}`", chat::json_calls::shorten(&block))),
            }
        }
        (scanned.text, scanned.in_call)
    }

    /// Ends the output: releases held text (unless a stop sequence matches in it: then the
    /// second value is true) and parses a tool call the model left open.
    pub fn finish(&mut self) -> Result<(String, bool)> {
        if self.in_tool_call {
            self.close_call(false)?;
        }
        let tail = self.decoder.finish(&self.chat.tokenizer)?;
        let (mut tail, _) = self.scan_json_calls(tail);
        if let Some(mut scanner) = self.json_calls.take() {
            match scanner.finish() {
                Ok(held) => tail.push_str(&held),
                Err(open) => self.errors.push(format!(
                    "tool call never closed (its JSON object is incomplete): `{}`",
                    chat::json_calls::shorten(&open)
                )),
            }
        }
        let (mut text, matched) = self.stopper.push(&tail);
        if !matched {
            text.push_str(&self.stopper.finish());
        }
        Ok((text, matched))
    }
}

/// Where to end a counting chunk of at most about `max` bytes of `text`: before a space that
/// follows a non-space and precedes a non-space (a word boundary every pre-tokenizer keeps),
/// else at a character boundary.
fn count_chunk_end(text: &str, max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    let bytes = text.as_bytes();
    let lo = max / 2;
    let word_start = (lo.max(1)..max)
        .rev()
        .find(|&i| bytes[i] == b' ' && !bytes[i - 1].is_ascii_whitespace() && i + 1 < bytes.len() && !bytes[i + 1].is_ascii_whitespace());
    if let Some(i) = word_start {
        return i;
    }
    let mut i = max;
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
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

    /// Forgets the conversation (state and snapshot).
    pub fn reset(&mut self) {
        self.state.reset();
        self.tokens.clear();
        self.snapshot = None;
    }

    /// Bytes held by the state and the snapshot.
    pub fn state_bytes(&self) -> usize {
        self.state.bytes() + self.snapshot.as_ref().map_or(0, |s| s.state.bytes() + s.logits.len() * 4)
    }

    /// Brings the state to the end of `prompt` reusing what it can (see the module docs) and
    /// returns the last logits. Errors: empty prompt, bad ids, a prompt longer than the context,
    /// [`Error::Cancelled`] (the state then holds the chunks done so far).
    pub fn prefill(&mut self, prompt: &[u32], cancel: &AtomicBool) -> Result<Prefill> {
        let reused = match self.prepare_prefill(prompt)? {
            PrefillStart::Done(logits) => return Ok(Prefill { logits, reused: prompt.len(), processed: 0 }),
            PrefillStart::From(reused) => reused,
        };
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            if let Some(logits) = self.prefill_chunk(prompt)? {
                return Ok(Prefill { logits, reused, processed: prompt.len() - reused });
            }
        }
    }

    /// Checks `prompt` and restores the longest reusable state: the live one or the snapshot.
    fn prepare_prefill(&mut self, prompt: &[u32]) -> Result<PrefillStart> {
        let model = Arc::clone(&self.chat.model);
        model.check_tokens(prompt)?;
        let max = model.config.max_position_embeddings;
        if prompt.len() > max {
            return Err(Error::ContextFull(format!("the prompt has {} tokens, the context holds {max}", prompt.len())));
        }
        if let Some(s) = self.snapshot.as_ref().filter(|s| s.tokens == prompt) {
            self.state = s.state.clone();
            self.tokens = s.tokens.clone();
            return Ok(PrefillStart::Done(s.logits.clone()));
        }
        let live = common_prefix(&self.tokens, prompt);
        if !(live == self.tokens.len() && live < prompt.len()) {
            match self.snapshot.as_ref().filter(|s| s.tokens.len() < prompt.len() && prompt.starts_with(&s.tokens)) {
                Some(s) => {
                    self.state = s.state.clone();
                    self.tokens = s.tokens.clone();
                }
                None => {
                    self.state.reset();
                    self.tokens.clear();
                }
            }
        }
        Ok(PrefillStart::From(self.tokens.len()))
    }

    /// Runs the next [`PREFILL_CHUNK`] tokens of `prompt` (the state holds a prefix of it).
    /// Returns the last logits once the whole prompt is in (and snapshots it).
    fn prefill_chunk(&mut self, prompt: &[u32]) -> Result<Option<Vec<f32>>> {
        let model = Arc::clone(&self.chat.model);
        let start = self.tokens.len();
        let end = prompt.len().min(start + PREFILL_CHUNK);
        let last = end == prompt.len();
        let mode = if last { LogitsMode::Last } else { LogitsMode::None };
        let logits = match model.forward(&mut self.state, &prompt[start..end], mode) {
            Ok(l) => l,
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        self.tokens.extend_from_slice(&prompt[start..end]);
        if !last {
            return Ok(None);
        }
        if self.keep_snapshots {
            self.snapshot = Some(Snapshot { tokens: prompt.to_vec(), state: self.state.clone(), logits: logits.clone() });
        }
        Ok(Some(logits))
    }

    /// Parses request JSON and runs [`Session::complete`].
    pub fn complete_json(&mut self, request_json: &str, on_token: impl FnMut(&TokenEvent) -> bool, cancel: &AtomicBool) -> Response {
        match Request::from_json_limited(request_json, self.max_request_bytes) {
            Ok(r) => self.complete(&r, on_token, cancel),
            Err(e) => Response::failure(&e),
        }
    }

    /// Runs one request: every failure becomes a response with `success: false`.
    /// `on_token` sees each generated token; returning false cancels. `cancel` may be set from
    /// another thread; it is checked between prefill chunks and after each sampled token.
    pub fn complete(&mut self, request: &Request, mut on_token: impl FnMut(&TokenEvent) -> bool, cancel: &AtomicBool) -> Response {
        let mut completion = match self.start(request) {
            Ok(c) => c,
            Err(e) => return Response::failure(&e),
        };
        loop {
            match self.step(&mut completion, cancel) {
                Ok(Some(Event::Token(event))) => {
                    if !on_token(&event) {
                        completion.cancel();
                    }
                }
                Ok(Some(Event::Prefill { .. })) => {}
                Ok(None) | Err(_) => return self.finish(completion),
            }
        }
    }

    fn ram_mb(&self) -> f64 {
        match &self.hooks.ram_usage_mb {
            Some(f) => f(),
            None => (self.chat.model.file.len() + self.state_bytes()) as f64 / (1024.0 * 1024.0),
        }
    }

    /// Starts a request without running the model: validates it, renders and tokenizes the
    /// prompt and restores the reusable state. Drive it with [`Session::step`] (one prefill chunk
    /// or one token per call, so a caller can yield, report progress or cancel in between) and
    /// end it with [`Session::finish`]. [`Session::complete`] is this loop.
    pub fn start(&mut self, request: &Request) -> Result<Completion> {
        let t0 = self.hooks.now_ms();
        let chat = Arc::clone(&self.chat);
        check_request_size(request.text_bytes(), self.max_request_bytes)?;
        let declared = request.validate()?;
        let opts = request.options.resolve(&chat.defaults)?;
        let constraint = constrain::for_request(|| chat.constraint_vocab(), request, &declared, chat.tool_call_start)?;
        let unix = self.hooks.clock.as_ref().and_then(|c| c.unix_seconds());
        let prompt = chat.prompt_tokens(request, unix)?;
        let (phase, logits, reused) = match self.prepare_prefill(&prompt)? {
            PrefillStart::Done(logits) => (Phase::Decode, logits, prompt.len()),
            PrefillStart::From(reused) => (Phase::Prefill, Vec::new(), reused),
        };
        self.completions += 1;

        let mut response = Response::failure(&Error::Input(String::new()));
        response.success = true;
        response.error = None;
        response.error_code = None;
        response.confidence = 1.0;
        response.reused_tokens = reused;
        response.prefill_tokens = prompt.len() - reused;

        let json_calls = chat.json_tool_calls(request)?;
        let output = OutputProcessor::new(&chat, declared, &opts.stop_sequences, opts.include_stop_sequences, json_calls);
        Ok(Completion {
            id: self.completions,
            sampler: Sampler::new(opts.sampling.clone()),
            constraint,
            history: prompt.clone(),
            prompt,
            opts,
            output,
            logits,
            pending: None,
            scratch: Vec::new(),
            entropies: Vec::new(),
            response,
            t0,
            t_prefill: if phase == Phase::Decode { Some(t0) } else { None },
            t_first: None,
            phase,
            cancelled: false,
            error: None,
        })
    }

    /// Advances `c` by one prefill chunk or one generated token. `Ok(None)` once it has
    /// finished (then call [`Session::finish`]); an error also ends it. `cancel` is checked
    /// before each prefill chunk and after sampling a token (the token's event then carries
    /// the held-back text); [`Completion::cancel`] ends it at the next call.
    pub fn step(&mut self, c: &mut Completion, cancel: &AtomicBool) -> Result<Option<Event>> {
        if c.id != self.completions {
            return Err(c.fail(Error::Input("this completion is not the session's current request".into())));
        }
        match c.phase {
            Phase::Finished(_) | Phase::Failed => return Ok(None),
            _ if c.cancelled => {
                c.phase = Phase::Finished(FinishReason::Cancelled);
                return Ok(None);
            }
            Phase::Prefill => {
                if cancel.load(Ordering::Relaxed) {
                    c.phase = Phase::Finished(FinishReason::Cancelled);
                    return Ok(None);
                }
                let prompt = std::mem::take(&mut c.prompt);
                let result = self.prefill_chunk(&prompt);
                c.prompt = prompt;
                match result {
                    Ok(Some(logits)) => {
                        c.logits = logits;
                        c.phase = Phase::Decode;
                        c.t_prefill = Some(self.hooks.now_ms());
                    }
                    Ok(None) => {}
                    Err(e) => return Err(c.fail(e)),
                }
                return Ok(Some(Event::Prefill { done: self.tokens.len(), total: c.prompt.len() }));
            }
            Phase::Decode => {}
        }
        let model = Arc::clone(&self.chat.model);
        if let Some(id) = c.pending.take() {
            match model.forward(&mut self.state, &[id], LogitsMode::Last) {
                Ok(l) => c.logits = l,
                Err(e) => {
                    self.reset();
                    return Err(c.fail(e));
                }
            }
            self.tokens.push(id);
        } else if c.opts.max_tokens == 0 {
            c.phase = Phase::Finished(FinishReason::Length);
            return Ok(None);
        } else if cancel.load(Ordering::Relaxed) {
            c.phase = Phase::Finished(FinishReason::Cancelled);
            return Ok(None);
        }

        let kernels = model.kernels;
        let h = normalized_entropy(&kernels, &c.logits, &mut c.scratch);
        // The mask comes before any sampling arithmetic: disallowed ids are -inf, the other
        // logits keep their bits.
        if let Some(Err(e)) = c.constraint.as_mut().map(|k| k.apply(&mut c.logits)) {
            return Err(c.fail(e));
        }
        let id = c.sampler.sample(&kernels, &mut c.logits, &c.history);
        if !self.chat.eos_ids.contains(&id) {
            if let Some(Err(e)) = c.constraint.as_mut().map(|k| k.commit(id)) {
                return Err(c.fail(e));
            }
        }
        c.history.push(id);
        c.entropies.push(h);
        if c.t_first.is_none() {
            c.t_first = Some(self.hooks.now_ms());
        }
        let window = &c.entropies[c.entropies.len().saturating_sub(10)..];
        let window_conf = 1.0 - window.iter().sum::<f32>() / window.len() as f32;
        if window_conf < c.opts.confidence_threshold {
            c.response.cloud_handoff = true;
        }

        let step = c.output.push(id).map_err(|e| c.fail(e))?;
        let mut text = step.text;
        let mut finish = step.finish;
        if finish.is_none() && c.constraint.as_ref().is_some_and(Constraint::is_complete) {
            // The grammar is complete and nothing can follow: the answer is whole.
            finish = Some(FinishReason::Stop);
        }
        if finish.is_none() && c.entropies.len() >= c.opts.max_tokens {
            finish = Some(FinishReason::Length);
        }
        if finish.is_none() && cancel.load(Ordering::Relaxed) {
            finish = Some(FinishReason::Cancelled);
        }
        if finish.is_none() && self.state.pos >= model.config.max_position_embeddings {
            finish = Some(FinishReason::ContextFull);
        }
        if finish.is_some() && finish != Some(FinishReason::StopSequence) {
            let (tail, matched) = c.output.finish().map_err(|e| c.fail(e))?;
            text.push_str(&tail);
            if matched {
                finish = Some(FinishReason::StopSequence);
            }
        }
        c.response.response.push_str(&text);
        match finish {
            Some(f) => c.phase = Phase::Finished(f),
            None => c.pending = Some(id),
        }
        Ok(Some(Event::Token(TokenEvent { token_id: id, text, confidence: 1.0 - h, in_tool_call: step.in_tool_call })))
    }

    /// Ends `c` and builds its response (a failure response if a step failed). A completion
    /// ended before it finished counts as cancelled.
    pub fn finish(&mut self, mut c: Completion) -> Response {
        if let Some(e) = c.error.take() {
            return Response::failure(&e);
        }
        let finish = match c.phase {
            Phase::Finished(f) => f,
            _ => FinishReason::Cancelled,
        };
        let t_end = self.hooks.now_ms();
        let mut response = c.response;
        let generated = c.entropies.len();
        response.function_calls = std::mem::take(&mut c.output.calls);
        response.tool_call_errors = std::mem::take(&mut c.output.errors);
        response.finish_reason = Some(if finish == FinishReason::Stop && !response.function_calls.is_empty() {
            FinishReason::ToolCalls
        } else {
            finish
        });
        if c.t_prefill.is_none() {
            // Cancelled during prefill: report the chunks actually run.
            response.prefill_tokens = self.tokens.len().saturating_sub(response.reused_tokens);
        }
        response.decode_tokens = generated;
        response.total_tokens = response.prefill_tokens + generated;
        if !c.entropies.is_empty() {
            response.confidence = 1.0 - c.entropies.iter().sum::<f32>() / c.entropies.len() as f32;
        }
        response.total_time_ms = t_end - c.t0;
        response.time_to_first_token_ms = c.t_first.map_or(0.0, |t| t - c.t0);
        if let Some(tp) = c.t_prefill {
            let prefill_s = (tp - c.t0) / 1000.0;
            if prefill_s > 0.0 {
                response.prefill_tps = response.prefill_tokens as f64 / prefill_s;
            }
        }
        if let Some(tf) = c.t_first {
            let decode_s = (t_end - tf) / 1000.0;
            if generated > 1 && decode_s > 0.0 {
                response.decode_tps = (generated - 1) as f64 / decode_s;
            }
        }
        response.ram_usage_mb = self.ram_mb();
        response
    }
}

/// Where a prompt's prefill starts.
enum PrefillStart {
    /// The snapshot holds exactly this prompt: its last logits.
    Done(Vec<f32>),
    /// The state holds this many prompt tokens; the rest must run.
    From(usize),
}

/// What one [`Session::step`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A prefill chunk ran: `done` of `total` prompt tokens are in the state.
    Prefill { done: usize, total: usize },
    /// A token was generated.
    Token(TokenEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Prefill,
    Decode,
    Finished(FinishReason),
    Failed,
}

/// A request in progress on a [`Session`] (see [`Session::start`]).
#[derive(Debug)]
pub struct Completion {
    /// The session's request counter when started: only the latest request may step.
    id: u64,
    prompt: Vec<u32>,
    opts: ResolvedOptions,
    sampler: Sampler,
    /// Token masks of `json_schema` / `tool_choice`, if the request has any.
    constraint: Option<Constraint>,
    output: OutputProcessor,
    /// The prompt and every generated token (the repetition penalty's window).
    history: Vec<u32>,
    /// Logits `[V]` to sample the next token from.
    logits: Vec<f32>,
    /// The last sampled token, not yet run through the model (it runs at the next step, so
    /// a finished or cancelled request never pays for a token it will not use).
    pending: Option<u32>,
    scratch: Vec<f32>,
    /// h = H / ln V of each generated token.
    entropies: Vec<f32>,
    /// The response built so far.
    response: Response,
    t0: f64,
    t_prefill: Option<f64>,
    t_first: Option<f64>,
    phase: Phase,
    cancelled: bool,
    error: Option<Error>,
}

impl Completion {
    /// Ends the request at the next [`Session::step`] with `finish_reason: cancelled`; text
    /// still held back (a possible stop sequence, an incomplete character) is dropped.
    pub fn cancel(&mut self) {
        self.cancelled = true;
    }

    /// True once [`Session::step`] has nothing more to do.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_) | Phase::Failed)
    }

    /// Prompt tokens of this request.
    pub fn prompt_len(&self) -> usize {
        self.prompt.len()
    }

    fn fail(&mut self, e: Error) -> Error {
        self.phase = Phase::Failed;
        self.error = Some(e.clone());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], include: bool, pieces: &[&str]) -> (Vec<String>, bool, String) {
        let mut m = StopMatcher { stops: stops.iter().map(|s| s.to_string()).collect(), include, pending: String::new() };
        let mut out = Vec::new();
        for p in pieces {
            let (r, hit) = m.push(p);
            out.push(r);
            if hit {
                return (out, true, String::new());
            }
        }
        let rest = m.finish();
        (out, false, rest)
    }

    #[test]
    fn counting_chunks_end_before_a_word_or_on_a_character_boundary() {
        assert_eq!(count_chunk_end("short", 16), 5);
        let text = "aaaa bbbb cccc dddd";
        let cut = count_chunk_end(text, 12);
        assert_eq!(&text[cut..], " cccc dddd");
        // Double spaces are not cut (pre-tokenizers group whitespace runs).
        let text = "aaaaaa  bbbbbbbbb";
        assert_eq!(count_chunk_end(text, 12), 12);
        // No space at all: the last character boundary at or before the limit.
        let text = "ééééééééé";
        let cut = count_chunk_end(text, 7);
        assert_eq!(cut, 6);
        assert!(text.is_char_boundary(cut));
    }

    #[test]
    fn stop_sequences_match_across_pieces() {
        let (out, hit, _) = run(&["END"], false, &["abc E", "N", "Dxyz"]);
        assert!(hit);
        assert_eq!(out, vec!["abc ", "", ""]);
        assert_eq!(out.concat(), "abc ");
        let (out, hit, _) = run(&["END"], true, &["abc E", "ND"]);
        assert!(hit);
        assert_eq!(out.concat(), "abc END");
        // A false start is released once it cannot be a stop any more.
        let (out, hit, rest) = run(&["END"], false, &["abc EN", "x"]);
        assert!(!hit);
        assert_eq!((out.concat(), rest), ("abc ENx".to_string(), String::new()));
        // Held text comes back at the end.
        let (out, hit, rest) = run(&["END", "STOP"], false, &["x ST"]);
        assert!(!hit);
        assert_eq!((out.concat(), rest), ("x ".to_string(), "ST".to_string()));
        // The earliest match wins, then the longest.
        let (out, _, _) = run(&["bc", "abcd", "ab"], false, &["xxabcd"]);
        assert_eq!(out.concat(), "xx");
        // Multi-byte stop sequences are held on character boundaries.
        let (out, hit, _) = run(&["日本"], false, &["a日", "本b"]);
        assert!(hit);
        assert_eq!(out, vec!["a", ""]);
    }
}
