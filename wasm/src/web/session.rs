//! `Session`: chat completions, synchronous (`complete`) or pulled step by step
//! (`start` / `next` / `cancel` / `finish`) so JS can yield to its event loop in between.

use std::sync::atomic::AtomicBool;

use saguaro_engine::{Completion, Error, Event, Request, Response, TokenEvent};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::error::{js, js_error, to_js, with_code};

/// One step's event as JS sees it: `{type: "prefill", done, total}` or
/// `{type: "token", token_id, text, confidence, in_tool_call}`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum JsEvent<'a> {
    Prefill { done: usize, total: usize },
    Token(&'a TokenEvent),
}

/// A conversation: keeps its state between requests (a follow-up that extends the previous
/// prompt prefills only the new part).
#[wasm_bindgen]
pub struct Session {
    session: saguaro_engine::Session,
    /// The request in progress (pull API).
    current: Option<Completion>,
}

/// Never set: cancellation goes through [`Completion::cancel`].
static NO_CANCEL: AtomicBool = AtomicBool::new(false);

/// The engine error as a JS error that also carries the failure response (`success: false`,
/// as `saguaro complete` prints it) in `response`.
fn failure(err: &Error) -> JsValue {
    let e = js_error(err);
    if let Ok(r) = to_js(&Response::failure(err)) {
        let _ = js_sys::Reflect::set(&e, &JsValue::from_str("response"), &r);
    }
    e
}

/// A request given as a JS object (the JSON schema's field names) or as a JSON string.
fn parse_request(request: JsValue) -> Result<Request, Error> {
    match request.as_string() {
        Some(text) => Request::from_json(&text),
        None if request.is_object() => serde_wasm_bindgen::from_value(request.clone()).map_err(|e| {
            // serde_json's message names the field and what was expected: use it when the
            // object survives JSON.stringify.
            match js_sys::JSON::stringify(&request).ok().and_then(|s| s.as_string()).map(|s| Request::from_json(&s)) {
                Some(Err(json_err)) => json_err,
                _ => Error::Input(format!("the request does not match the schema: {e}")),
            }
        }),
        None => Err(Error::Input("the request must be an object (or a JSON string)".into())),
    }
}

fn event_to_js(event: &Event) -> Result<JsValue, JsValue> {
    match event {
        Event::Prefill { done, total } => to_js(&JsEvent::Prefill { done: *done, total: *total }),
        Event::Token(t) => to_js(&JsEvent::Token(t)),
    }
}

impl Session {
    pub(super) fn new(session: saguaro_engine::Session) -> Session {
        Session { session, current: None }
    }
}

#[wasm_bindgen]
impl Session {
    /// Starts a request (replacing any unfinished one): validates it, renders and tokenizes
    /// the prompt. Returns the prompt's token count. Throws `input` / `context_full` errors
    /// (with the failure response in `response`).
    pub fn start(&mut self, request: JsValue) -> Result<usize, JsValue> {
        self.current = None;
        let completion = parse_request(request).and_then(|r| self.session.start(&r)).map_err(|e| failure(&e))?;
        let n = completion.prompt_len();
        self.current = Some(completion);
        Ok(n)
    }

    /// Runs one prefill chunk or one token of the current request and returns its event, or
    /// `undefined` once the request has finished (then call `finish`). Throws the engine's
    /// error if the step fails (`finish` then returns the failure response).
    #[wasm_bindgen(js_name = next)]
    pub fn next_event(&mut self) -> Result<JsValue, JsValue> {
        let Some(c) = self.current.as_mut() else {
            return Ok(JsValue::UNDEFINED);
        };
        match js(self.session.step(c, &NO_CANCEL))? {
            Some(event) => event_to_js(&event),
            None => Ok(JsValue::UNDEFINED),
        }
    }

    /// Ends the current request at the next step with `finish_reason: "cancelled"`.
    pub fn cancel(&mut self) {
        if let Some(c) = self.current.as_mut() {
            c.cancel();
        }
    }

    /// True while a started request has not been finished.
    #[wasm_bindgen(getter)]
    pub fn active(&self) -> bool {
        self.current.is_some()
    }

    /// Ends the current request and returns its response object (`finish_reason: "cancelled"`
    /// if it had not finished; `success: false` if a step failed). Throws `input` when no
    /// request was started.
    pub fn finish(&mut self) -> Result<JsValue, JsValue> {
        let c = self.current.take().ok_or_else(|| with_code("invalid input: no request in progress (call start first)", "input"))?;
        to_js(&self.session.finish(c))
    }

    /// Runs a whole request synchronously and returns the response object. `on_token(event)`
    /// sees each token event; returning `false` cancels; an exception cancels and is rethrown.
    /// Engine errors are thrown with their `code`.
    pub fn complete(&mut self, request: JsValue, on_token: Option<js_sys::Function>) -> Result<JsValue, JsValue> {
        self.start(request)?;
        loop {
            let step = {
                let c = self.current.as_mut().expect("started above");
                self.session.step(c, &NO_CANCEL)
            };
            match step {
                Ok(Some(Event::Token(t))) => {
                    if let Some(f) = &on_token {
                        let result = event_to_js(&Event::Token(t)).and_then(|ev| f.call1(&JsValue::NULL, &ev));
                        match result {
                            Ok(v) if v == JsValue::FALSE => self.cancel(),
                            Ok(_) => {}
                            Err(e) => {
                                self.current = None;
                                return Err(e);
                            }
                        }
                    }
                }
                Ok(Some(Event::Prefill { .. })) => {}
                Ok(None) => return self.finish(),
                Err(e) => {
                    self.current = None;
                    return Err(failure(&e));
                }
            }
        }
    }

    /// Forgets the conversation (state, reusable prefix, any request in progress).
    pub fn reset(&mut self) {
        self.current = None;
        self.session.reset();
    }

    /// Tokens the session's state holds (prompt and generated tokens of the conversation).
    #[wasm_bindgen(getter, js_name = tokenCount)]
    pub fn token_count(&self) -> usize {
        self.session.tokens().len()
    }
}
