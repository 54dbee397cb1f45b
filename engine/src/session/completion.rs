//! One request on a session: [`Session::start`] / [`Session::step`] / [`Session::finish`]
//! (sampling, confidence, cloud handoff, finish reasons, metrics) and [`Session::complete`],
//! the same loop run to the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::output::OutputProcessor;
use super::reuse::PrefillStart;
use super::Session;
use crate::api::{
    check_request_size, FinishReason, Request, ResolvedOptions, Response, TokenEvent,
};
use crate::constrain::{self, Constraint};
use crate::error::{Error, Result};
use crate::model::LogitsMode;
use crate::sampling::{normalized_entropy, Sampler};

impl Session {
    /// Parses request JSON and runs [`Session::complete`].
    pub fn complete_json(
        &mut self,
        request_json: &str,
        on_token: impl FnMut(&TokenEvent) -> bool,
        cancel: &AtomicBool,
    ) -> Response {
        match Request::from_json_limited(request_json, self.max_request_bytes) {
            Ok(r) => self.complete(&r, on_token, cancel),
            Err(e) => Response::failure(&e),
        }
    }

    /// Runs one request: every failure becomes a response with `success: false`.
    /// `on_token` sees each generated token; returning false cancels. `cancel` may be set from
    /// another thread; it is checked between prefill chunks and after each sampled token.
    pub fn complete(
        &mut self,
        request: &Request,
        mut on_token: impl FnMut(&TokenEvent) -> bool,
        cancel: &AtomicBool,
    ) -> Response {
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
        let constraint = constrain::for_request(
            || chat.constraint_vocab(),
            request,
            &declared,
            chat.tool_call_start,
        )?;
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
        let output = OutputProcessor::new(
            &chat,
            declared,
            &opts.stop_sequences,
            opts.include_stop_sequences,
            json_calls,
        );
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
            t_prefill: if phase == Phase::Decode {
                Some(t0)
            } else {
                None
            },
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
            return Err(c.fail(Error::Input(
                "this completion is not the session's current request".into(),
            )));
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
                return Ok(Some(Event::Prefill {
                    done: self.tokens.len(),
                    total: c.prompt.len(),
                }));
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
        Ok(Some(Event::Token(TokenEvent {
            token_id: id,
            text,
            confidence: 1.0 - h,
            in_tool_call: step.in_tool_call,
        })))
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
        response.finish_reason = Some(
            if finish == FinishReason::Stop && !response.function_calls.is_empty() {
                FinishReason::ToolCalls
            } else {
                finish
            },
        );
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
/// What one [`Session::step`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A prefill chunk ran: `done` of `total` prompt tokens are in the state.
    Prefill { done: usize, total: usize },
    /// A token was generated.
    Token(TokenEvent),
}

/// Where a [`Completion`] is.
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
    /// The request's prompt tokens.
    prompt: Vec<u32>,
    /// The request's options with the model's defaults filled in.
    opts: ResolvedOptions,
    sampler: Sampler,
    /// Token masks of `json_schema` / `tool_choice`, if the request has any.
    constraint: Option<Constraint>,
    /// Generated ids to text, tool calls and stop decisions.
    output: OutputProcessor,
    /// The prompt and every generated token (the repetition penalty's window).
    history: Vec<u32>,
    /// Logits `[V]` to sample the next token from.
    logits: Vec<f32>,
    /// The last sampled token, not yet run through the model (it runs at the next step, so
    /// a finished or cancelled request never pays for a token it will not use).
    pending: Option<u32>,
    /// Work buffer `[V]` of the entropy computation.
    scratch: Vec<f32>,
    /// h = H / ln V of each generated token.
    entropies: Vec<f32>,
    /// The response built so far.
    response: Response,
    /// Clock time (ms, [`super::Hooks`]) when the request started.
    t0: f64,
    /// Clock time when the prompt was all in the state (None while prefilling).
    t_prefill: Option<f64>,
    /// Clock time when the first token was sampled.
    t_first: Option<f64>,
    phase: Phase,
    /// [`Completion::cancel`] was called.
    cancelled: bool,
    /// The error that ended it, reported by [`Session::finish`].
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
