//! OpenAI's wire format to and from the engine's one request/response schema
//! (engine/src/api.rs).
//!
//! Requests: every field is type-checked here so that a bad one is a 400 naming it (`param`);
//! then the engine request is built as JSON and parsed with serde, so fields the engine learns
//! later (`options.json_schema`, `tool_choice`) need no change here (see [`Caps`]).
//! Responses: `chat.completion` / `text_completion` objects, their streamed chunks, `usage`, and
//! Saguaro's own figures in a `saguaro` extension object.

use std::hash::{BuildHasher, Hasher};

use saguaro_engine::{FinishReason, Request, Response};
use serde_json::{json, Map, Value};

use super::error::ApiError;

/// What this build's engine request understands beyond the base schema. Found by parsing a
/// probe request and serializing it back: serde drops fields a struct does not have, so a
/// field that survives the round trip is one the engine reads. This keeps the server right
/// before and after the engine gains constrained decoding, without a compile-time link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `options.json_schema`: constrained decoding (response_format json_schema/json_object).
    pub json_schema: bool,
    /// `tool_choice` on the request: forced or forbidden tool calls.
    pub tool_choice: bool,
}

impl Caps {
    pub fn detect() -> Caps {
        let probe = json!({
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": "required",
            "options": {"json_schema": {"type": "object"}},
        });
        let back = serde_json::from_value::<Request>(probe).ok().and_then(|r| serde_json::to_value(r).ok());
        let has = |ptr: &str| back.as_ref().and_then(|v| v.pointer(ptr)).is_some_and(|v| !v.is_null());
        Caps { json_schema: has("/options/json_schema"), tool_choice: has("/tool_choice") }
    }
}

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`: messages through the model's chat template.
    Chat,
    /// `/v1/completions`: a raw prompt, no template.
    Text,
}

/// An OpenAI request turned into an engine request, with what the server itself needs.
#[derive(Debug, Clone)]
pub struct Translated {
    pub request: Request,
    pub stream: bool,
    pub include_usage: bool,
    /// The `model` the client named (echoed back, as llama.cpp does; any name is accepted).
    pub model: Option<String>,
    /// The sampler's seed: the client's, or a random one (reported in `saguaro.seed`).
    pub seed: u64,
}

type Obj = Map<String, Value>;

/// A field, with JSON null taken as absent (OpenAI's SDKs send null for unset options).
fn get<'a>(obj: &'a Obj, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn number(obj: &Obj, key: &str) -> Result<Option<f64>, ApiError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| ApiError::field(key, format!("`{key}` must be a number, got {v}"))),
    }
}

fn boolean(obj: &Obj, key: &str) -> Result<Option<bool>, ApiError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| ApiError::field(key, format!("`{key}` must be a boolean, got {v}"))),
    }
}

fn integer(obj: &Obj, key: &str) -> Result<Option<i64>, ApiError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => match (v.as_i64(), v.as_u64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(_)) => Ok(Some(i64::MAX)),
            _ => Err(ApiError::field(key, format!("`{key}` must be an integer, got {v}"))),
        },
    }
}

fn string<'a>(obj: &'a Obj, key: &str) -> Result<Option<&'a str>, ApiError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| ApiError::field(key, format!("`{key}` must be a string, got {v}"))),
    }
}

/// A random seed for requests that give none (OpenAI's and llama.cpp's sampling is random
/// unless seeded). std's `RandomState` is seeded from the OS once and stepped per instance.
fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// The body as a JSON object.
pub fn parse_body(bytes: &[u8]) -> Result<Obj, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ApiError::invalid(None, format!("the request body is not valid JSON: {e}")))?;
    match value {
        Value::Object(o) => Ok(o),
        other => Err(ApiError::invalid(None, format!("the request body must be a JSON object, got {}", kind_of(&other)))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Translates a request body for `endpoint`.
pub fn translate(body: &Obj, endpoint: Endpoint, caps: Caps) -> Result<Translated, ApiError> {
    let model = string(body, "model")?.map(str::to_string);
    let stream = boolean(body, "stream")?.unwrap_or(false);
    let include_usage = match get(body, "stream_options") {
        None => false,
        Some(Value::Object(o)) => boolean(o, "include_usage").map_err(|e| ApiError { param: Some("stream_options.include_usage".into()), ..e })?.unwrap_or(false),
        Some(v) => return Err(ApiError::field("stream_options", format!("`stream_options` must be an object, got {}", kind_of(v)))),
    };
    let (mut options, seed) = options(body, endpoint)?;
    let mut request = Obj::new();
    match endpoint {
        Endpoint::Chat => chat_fields(body, caps, &mut request, &mut options)?,
        Endpoint::Text => text_fields(body, &mut request)?,
    }
    request.insert("options".into(), Value::Object(options));
    let request: Request = serde_json::from_value(Value::Object(request)).map_err(|e| ApiError::invalid(None, format!("invalid request: {e}")))?;
    // Roles, tool calls and tool schemas: caught here as a 400 before the request waits for a slot.
    request.validate()?;
    Ok(Translated { request, stream, include_usage, model, seed })
}

/// Sampling and stopping options (both endpoints).
fn options(body: &Obj, endpoint: Endpoint) -> Result<(Obj, u64), ApiError> {
    let mut o = Obj::new();
    for key in ["temperature", "top_p", "min_p"] {
        if let Some(x) = number(body, key)? {
            o.insert(key.into(), json!(x));
        }
    }
    // llama.cpp's extension names for what the engine has.
    if let Some(k) = integer(body, "top_k")? {
        if k < 0 {
            return Err(ApiError::field("top_k", "`top_k` must be >= 0 (0 = off)"));
        }
        o.insert("top_k".into(), json!(k));
    }
    for key in ["repetition_penalty", "repeat_penalty"] {
        if let Some(x) = number(body, key)? {
            o.insert("repetition_penalty".into(), json!(x));
        }
    }
    if let Some(x) = number(body, "confidence_threshold")? {
        o.insert("confidence_threshold".into(), json!(x));
    }
    // The engine has a repetition penalty, not OpenAI's additive ones: refuse rather than
    // silently sample differently than asked.
    for key in ["presence_penalty", "frequency_penalty"] {
        if number(body, key)?.is_some_and(|x| x != 0.0) {
            return Err(ApiError::field(key, format!("`{key}` is not supported (use `repetition_penalty`, e.g. 1.1)")));
        }
    }
    let max_key = if get(body, "max_completion_tokens").is_some() { "max_completion_tokens" } else { "max_tokens" };
    if let Some(m) = integer(body, max_key)? {
        if m < 0 {
            return Err(ApiError::field(max_key, format!("`{max_key}` must be >= 0")));
        }
        o.insert("max_tokens".into(), json!(m));
    }
    match get(body, "stop") {
        None => {}
        Some(Value::String(s)) => {
            o.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(list)) => {
            if let Some(bad) = list.iter().find(|s| !s.is_string()) {
                return Err(ApiError::field("stop", format!("`stop` must be a string or an array of strings, found {bad}")));
            }
            o.insert("stop_sequences".into(), Value::Array(list.clone()));
        }
        Some(v) => return Err(ApiError::field("stop", format!("`stop` must be a string or an array of strings, got {}", kind_of(v)))),
    }
    let seed = match integer(body, "seed")? {
        // llama.cpp's convention: -1 (any negative) = a random seed.
        Some(s) if s >= 0 => s as u64,
        _ => random_seed(),
    };
    o.insert("seed".into(), json!(seed));
    if let Some(n) = integer(body, "n")? {
        if n != 1 {
            return Err(ApiError::field("n", format!("`n` must be 1: one choice per request is supported, got {n}")));
        }
    }
    if let Some(b) = integer(body, "best_of")? {
        if b != 1 {
            return Err(ApiError::field("best_of", "`best_of` must be 1"));
        }
    }
    match endpoint {
        Endpoint::Chat if boolean(body, "logprobs")? == Some(true) || get(body, "top_logprobs").is_some() => {
            return Err(ApiError::field("logprobs", "`logprobs` are not supported"));
        }
        Endpoint::Text if get(body, "logprobs").is_some() => {
            return Err(ApiError::field("logprobs", "`logprobs` are not supported"));
        }
        _ => {}
    }
    if let Some(bias) = get(body, "logit_bias") {
        if bias.as_object().is_none_or(|m| !m.is_empty()) {
            return Err(ApiError::field("logit_bias", "`logit_bias` is not supported"));
        }
    }
    Ok((o, seed))
}

/// `messages`, `tools`, `tool_choice`, `response_format` of a chat request.
fn chat_fields(body: &Obj, caps: Caps, request: &mut Obj, options: &mut Obj) -> Result<(), ApiError> {
    let messages = match get(body, "messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err(ApiError::field("messages", "`messages` is empty: a request needs at least one message")),
        Some(v) => return Err(ApiError::field("messages", format!("`messages` must be an array of messages, got {}", kind_of(v)))),
        None => return Err(ApiError::field("messages", "`messages` is required")),
    };
    let messages = messages.iter().enumerate().map(|(i, m)| message(i, m)).collect::<Result<Vec<_>, _>>()?;
    request.insert("messages".into(), Value::Array(messages));

    let mut tools = match get(body, "tools") {
        None => None,
        Some(Value::Array(t)) => {
            for (i, tool) in t.iter().enumerate() {
                let kind = tool.get("type").and_then(Value::as_str);
                if !tool.is_object() || kind.is_some_and(|k| k != "function") {
                    return Err(ApiError::field(&format!("tools[{i}]"), "a tool must be an object of type `function`"));
                }
            }
            Some(t.clone())
        }
        Some(v) => return Err(ApiError::field("tools", format!("`tools` must be an array, got {}", kind_of(v)))),
    };
    let declared: Vec<String> = tools.iter().flatten().filter_map(|t| saguaro_engine::api::tool_name(t).ok()).collect();

    if let Some(choice) = get(body, "tool_choice") {
        let named = match choice {
            Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => None,
            Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
                match o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
                    Some(name) => Some(name.to_string()),
                    None => return Err(ApiError::field("tool_choice", "`tool_choice.function.name` must be a string")),
                }
            }
            _ => {
                return Err(ApiError::field(
                    "tool_choice",
                    "`tool_choice` must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                ))
            }
        };
        if let Some(name) = &named {
            if !declared.contains(name) {
                return Err(ApiError::field("tool_choice", format!("`tool_choice` names `{name}`, which is not in `tools`")));
            }
        }
        if choice.as_str() == Some("required") && declared.is_empty() {
            return Err(ApiError::field("tool_choice", "`tool_choice` is \"required\" but `tools` is empty"));
        }
        if caps.tool_choice {
            request.insert("tool_choice".into(), choice.clone());
        } else if choice.as_str() == Some("none") {
            // Without engine support the model cannot be stopped from calling a tool it
            // sees, so it is not shown any.
            tools = None;
        } else if choice.as_str() != Some("auto") {
            return Err(ApiError::field("tool_choice", "forced tool calls (`tool_choice` \"required\" or a named function) need constrained decoding, which this build's engine does not have"));
        }
    }
    if let Some(t) = tools {
        request.insert("tools".into(), Value::Array(t));
    }
    // Whether a constrained answer may hold several calls (the engine's default is one).
    match get(body, "parallel_tool_calls") {
        None | Some(Value::Null) => {}
        Some(p @ Value::Bool(_)) => {
            request.insert("parallel_tool_calls".into(), p.clone());
        }
        Some(v) => return Err(ApiError::field("parallel_tool_calls", format!("`parallel_tool_calls` must be a boolean, got {}", kind_of(v)))),
    }

    if let Some(format) = get(body, "response_format") {
        let kind = format.get("type").and_then(Value::as_str);
        let schema = match kind {
            Some("text") => None,
            Some("json_object") => Some(json!({"type": "object"})),
            Some("json_schema") => match format.get("json_schema") {
                Some(Value::Object(js)) => match js.get("schema") {
                    Some(s @ (Value::Object(_) | Value::Bool(_))) => Some(s.clone()),
                    // OpenAI allows a json_schema without `schema`: any JSON.
                    None | Some(Value::Null) => Some(json!({})),
                    Some(_) => return Err(ApiError::field("response_format.json_schema.schema", "`schema` must be a JSON Schema object")),
                },
                _ => return Err(ApiError::field("response_format.json_schema", "`json_schema` must be an object with a `schema`")),
            },
            _ => {
                return Err(ApiError::field(
                    "response_format",
                    "`response_format.type` must be \"text\", \"json_object\" or \"json_schema\"",
                ))
            }
        };
        if let Some(schema) = schema {
            if !caps.json_schema {
                return Err(ApiError::field("response_format", "JSON output (`response_format` json_object/json_schema) needs constrained decoding, which this build's engine does not have"));
            }
            options.insert("json_schema".into(), schema);
        }
    }
    Ok(())
}

/// One OpenAI message as the engine takes it: `developer` is the system role, text content
/// parts are joined (the model reads text only), other fields pass to the template.
fn message(i: usize, m: &Value) -> Result<Value, ApiError> {
    let at = |what: &str| format!("messages[{i}]{what}");
    let obj = m.as_object().ok_or_else(|| ApiError::field(&at(""), format!("messages[{i}] must be an object, got {}", kind_of(m))))?;
    let role = match obj.get("role") {
        Some(Value::String(r)) => r.as_str(),
        _ => return Err(ApiError::field(&at(".role"), format!("messages[{i}].role must be a string"))),
    };
    let role = match role {
        "developer" => "system",
        "system" | "user" | "assistant" | "tool" => role,
        other => {
            return Err(ApiError::field(
                &at(".role"),
                format!("messages[{i}].role `{other}` is not supported (system, developer, user, assistant or tool)"),
            ))
        }
    };
    let mut out = obj.clone();
    out.insert("role".into(), Value::String(role.into()));
    match obj.get("content") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(Value::Array(parts)) => {
            let mut text = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let piece = match part {
                    Value::String(s) => Some(s.as_str()),
                    Value::Object(p) => match p.get("type").and_then(Value::as_str) {
                        Some("text") => p.get("text").and_then(Value::as_str),
                        Some("refusal") => p.get("refusal").and_then(Value::as_str),
                        Some(other) => {
                            return Err(ApiError::field(
                                &at(&format!(".content[{j}]")),
                                format!("messages[{i}].content[{j}]: content of type `{other}` is not supported (this model reads text)"),
                            ))
                        }
                        None => None,
                    },
                    _ => None,
                };
                match piece {
                    Some(t) => text.push(t),
                    None => return Err(ApiError::field(&at(&format!(".content[{j}]")), format!("messages[{i}].content[{j}] must be a text part {{\"type\": \"text\", \"text\": \"...\"}}"))),
                }
            }
            out.insert("content".into(), Value::String(text.join("\n")));
        }
        Some(v) => {
            return Err(ApiError::field(&at(".content"), format!("messages[{i}].content must be a string, an array of content parts or null, got {}", kind_of(v))))
        }
    }
    if let Some(calls) = get(obj, "tool_calls") {
        if !calls.is_array() {
            return Err(ApiError::field(&at(".tool_calls"), format!("messages[{i}].tool_calls must be an array")));
        }
    } else {
        out.remove("tool_calls");
    }
    Ok(Value::Object(out))
}

/// `prompt` of a completions request: one string, rendered by the raw template.
fn text_fields(body: &Obj, request: &mut Obj) -> Result<(), ApiError> {
    let prompt = match get(body, "prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => a[0].as_str().unwrap_or_default().to_string(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            return Err(ApiError::field("prompt", "one prompt per request is supported (`prompt` has several)"))
        }
        Some(Value::Array(_)) => return Err(ApiError::field("prompt", "`prompt` must be a string (token-id prompts are not supported)")),
        Some(v) => return Err(ApiError::field("prompt", format!("`prompt` must be a string, got {}", kind_of(v)))),
        None => return Err(ApiError::field("prompt", "`prompt` is required")),
    };
    if boolean(body, "echo")? == Some(true) {
        return Err(ApiError::field("echo", "`echo` is not supported"));
    }
    if string(body, "suffix")?.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::field("suffix", "`suffix` is not supported"));
    }
    request.insert("messages".into(), json!([{"role": "user", "content": prompt}]));
    Ok(())
}

/// The template of `/v1/completions`: the prompt as given, after the BOS token when the
/// tokenizer has one (llama.cpp adds BOS to string prompts of models that want it, and LFM2's
/// own prompts start with it).
pub const RAW_TEMPLATE: &str =
    "{% if bos_token and not messages[0]['content'].startswith(bos_token) %}{{ bos_token }}{% endif %}{{ messages[0]['content'] }}";

/// OpenAI's `finish_reason`: `stop`, `length` or `tool_calls` (a full context is `length`, as
/// OpenAI and llama.cpp say; a cancelled request has no reader left).
pub fn finish_reason(r: &Response) -> &'static str {
    match r.finish_reason {
        Some(FinishReason::ToolCalls) => "tool_calls",
        Some(FinishReason::Length) | Some(FinishReason::ContextFull) => "length",
        _ => "stop",
    }
}

/// `usage`: the whole prompt (reused prefix included, as `cached_tokens`) and generated tokens.
pub fn usage(r: &Response) -> Value {
    let prompt = r.prefill_tokens + r.reused_tokens;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": r.decode_tokens,
        "total_tokens": prompt + r.decode_tokens,
        "prompt_tokens_details": {"cached_tokens": r.reused_tokens},
    })
}

/// Saguaro's figures that OpenAI's schema has no place for.
pub fn extension(r: &Response, seed: u64) -> Value {
    let mut ext = json!({
        "finish_reason": r.finish_reason,
        "confidence": r.confidence,
        "cloud_handoff": r.cloud_handoff,
        "time_to_first_token_ms": r.time_to_first_token_ms,
        "total_time_ms": r.total_time_ms,
        "prefill_tps": r.prefill_tps,
        "decode_tps": r.decode_tps,
        "ram_usage_mb": r.ram_usage_mb,
        "prefill_tokens": r.prefill_tokens,
        "reused_tokens": r.reused_tokens,
        "decode_tokens": r.decode_tokens,
        "seed": seed,
    });
    if !r.tool_call_errors.is_empty() {
        ext["tool_call_errors"] = json!(r.tool_call_errors);
    }
    ext
}

/// The response's tool calls in OpenAI's form (`arguments` a JSON string), with fresh ids.
pub fn tool_calls(r: &Response, id_base: &str) -> Vec<Value> {
    r.function_calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let arguments = serde_json::to_string(&c.arguments).unwrap_or_else(|_| "{}".into());
            json!({"id": format!("call_{id_base}_{i}"), "type": "function", "function": {"name": c.name, "arguments": arguments}})
        })
        .collect()
}

/// What every object of one response shares.
#[derive(Debug, Clone)]
pub struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub seed: u64,
}

impl Meta {
    fn head(&self, object: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!(object));
        m.insert("created".into(), json!(self.created));
        m.insert("model".into(), json!(self.model));
        m.insert("system_fingerprint".into(), json!(concat!("saguaro-", env!("CARGO_PKG_VERSION"))));
        m
    }
}

/// A non-streamed `chat.completion`.
pub fn chat_completion(meta: &Meta, r: &Response) -> Value {
    let calls = tool_calls(r, &meta.id);
    let content = if r.response.is_empty() && !calls.is_empty() { Value::Null } else { json!(r.response) };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let mut out = meta.head("chat.completion");
    out.insert("choices".into(), json!([{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(r)}]));
    out.insert("usage".into(), usage(r));
    out.insert("saguaro".into(), extension(r, meta.seed));
    Value::Object(out)
}

/// A non-streamed `text_completion`.
pub fn text_completion(meta: &Meta, r: &Response) -> Value {
    let mut out = meta.head("text_completion");
    out.insert("choices".into(), json!([{"index": 0, "text": r.response, "logprobs": null, "finish_reason": finish_reason(r)}]));
    out.insert("usage".into(), usage(r));
    out.insert("saguaro".into(), extension(r, meta.seed));
    Value::Object(out)
}

/// Builds the Server-Sent Events of a streamed response, in OpenAI's chunk format.
#[derive(Debug, Clone)]
pub struct Chunks {
    pub meta: Meta,
    pub endpoint: Endpoint,
    /// With `stream_options.include_usage`: every chunk has `usage: null` and a last chunk with
    /// no choices carries the usage.
    pub include_usage: bool,
}

/// One SSE event.
pub fn sse(data: &Value) -> String {
    format!("data: {data}\n\n")
}

/// The stream's last line.
pub const DONE: &str = "data: [DONE]\n\n";

impl Chunks {
    fn chunk(&self, choice: Value) -> Value {
        let object = match self.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Text => "text_completion",
        };
        let mut out = self.meta.head(object);
        out.insert("choices".into(), json!([choice]));
        if self.include_usage {
            out.insert("usage".into(), Value::Null);
        }
        Value::Object(out)
    }

    /// The first chunk of a chat stream: the role (OpenAI sends it with empty content).
    pub fn role(&self) -> Option<String> {
        match self.endpoint {
            Endpoint::Chat => Some(sse(&self.chunk(json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null})))),
            Endpoint::Text => None,
        }
    }

    /// Text released by a token.
    pub fn text(&self, text: &str) -> String {
        sse(&self.chunk(match self.endpoint {
            Endpoint::Chat => json!({"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}),
            Endpoint::Text => json!({"index": 0, "text": text, "logprobs": null, "finish_reason": null}),
        }))
    }

    /// The end: the tool calls (each whole in one delta: the engine parses a call when it is
    /// closed), the chunk with `finish_reason` and the Saguaro extension, the usage chunk if
    /// asked, and `[DONE]`.
    pub fn end(&self, r: &Response) -> String {
        let mut out = String::new();
        if self.endpoint == Endpoint::Chat {
            let calls: Vec<Value> = tool_calls(r, &self.meta.id)
                .into_iter()
                .enumerate()
                .map(|(i, mut c)| {
                    c["index"] = json!(i);
                    c
                })
                .collect();
            if !calls.is_empty() {
                out.push_str(&sse(&self.chunk(json!({"index": 0, "delta": {"tool_calls": calls}, "logprobs": null, "finish_reason": null}))));
            }
        }
        let last = match self.endpoint {
            Endpoint::Chat => json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason(r)}),
            Endpoint::Text => json!({"index": 0, "text": "", "logprobs": null, "finish_reason": finish_reason(r)}),
        };
        let mut last = self.chunk(last);
        last["saguaro"] = extension(r, self.meta.seed);
        out.push_str(&sse(&last));
        if self.include_usage {
            let mut u = self.chunk(Value::Null);
            u["choices"] = json!([]);
            u["usage"] = usage(r);
            out.push_str(&sse(&u));
        }
        out.push_str(DONE);
        out
    }

    /// An error after the stream began (the status line is already sent): an error event,
    /// as OpenAI's SDKs read it, then the end.
    pub fn error(&self, e: &ApiError) -> String {
        format!("{}{DONE}", sse(&e.body()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use saguaro_engine::api::FunctionCall;

    const NO_CAPS: Caps = Caps { json_schema: false, tool_choice: false };
    const ALL_CAPS: Caps = Caps { json_schema: true, tool_choice: true };

    fn tr(body: Value, endpoint: Endpoint, caps: Caps) -> Result<Translated, ApiError> {
        translate(body.as_object().unwrap(), endpoint, caps)
    }

    fn chat(body: Value) -> Result<Translated, ApiError> {
        tr(body, Endpoint::Chat, NO_CAPS)
    }

    #[test]
    fn chat_requests_map_to_engine_requests() {
        let t = chat(json!({
            "model": "anything", "stream": true, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "auto",
            "temperature": 0, "top_p": 0.5, "max_completion_tokens": 9, "max_tokens": 3, "stop": "END", "seed": 5, "n": 1,
            "presence_penalty": 0, "user": "u", "logprobs": false,
        }))
        .unwrap();
        assert!(t.stream && t.include_usage);
        assert_eq!((t.model.as_deref(), t.seed), (Some("anything"), 5));
        let r = serde_json::to_value(&t.request).unwrap();
        assert_eq!(r["messages"][0]["role"], json!("system"));
        assert_eq!(r["messages"][1]["content"], json!("a\nb"));
        assert_eq!(r["messages"][3]["tool_call_id"], json!("c1"));
        assert_eq!(r["tools"][0]["function"]["name"], json!("f"));
        assert_eq!(r["options"], json!({"temperature": 0.0, "top_p": 0.5, "max_tokens": 9, "stop_sequences": ["END"], "seed": 5}));
    }

    #[test]
    fn bad_chat_requests_name_the_field() {
        let base = |extra: Value| {
            let mut b = json!({"messages": [{"role": "user", "content": "hi"}]});
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            b
        };
        let cases = [
            (json!({"messages": "hi"}), "messages"),
            (json!({"messages": []}), "messages"),
            (json!({}), "messages"),
            (json!({"messages": [{"role": "robot", "content": "x"}]}), "messages[0].role"),
            (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
            (json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}), "messages[0].content[0]"),
            (json!({"messages": [{"role": "user", "content": 5}]}), "messages[0].content"),
            (base(json!({"temperature": "hot"})), "temperature"),
            (base(json!({"n": 2})), "n"),
            (base(json!({"max_tokens": -1})), "max_tokens"),
            (base(json!({"max_tokens": 1.5})), "max_tokens"),
            (base(json!({"stop": [1]})), "stop"),
            (base(json!({"stream": "yes"})), "stream"),
            (base(json!({"model": 3})), "model"),
            (base(json!({"logprobs": true})), "logprobs"),
            (base(json!({"presence_penalty": 0.5})), "presence_penalty"),
            (base(json!({"tools": {"name": "f"}})), "tools"),
            (base(json!({"tool_choice": "always"})), "tool_choice"),
            (base(json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}})), "tool_choice"),
            (base(json!({"response_format": {"type": "xml"}})), "response_format"),
            (base(json!({"response_format": {"type": "json_object"}})), "response_format"),
        ];
        for (body, param) in cases {
            let e = chat(body.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e:?}");
            assert!(!e.message.is_empty());
        }
        // Errors the engine's own validation finds are 400s too (no param).
        let e = chat(json!({"messages": [{"role": "user", "content": "x", "tool_calls": [{"name": "f"}]}]})).unwrap_err();
        assert_eq!(e.status, 400);
        let e = chat(base(json!({"temperature": -1}))).unwrap();
        assert_eq!(e.request.options.temperature, Some(-1.0), "resolved later, against the model's defaults");
    }

    #[test]
    fn tool_choice_and_response_format_follow_the_engine_caps() {
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
        let body = json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": "none"});
        // Without engine support "none" hides the tools; with it the choice is passed on.
        let r = serde_json::to_value(chat(body.clone()).unwrap().request).unwrap();
        assert!(r.get("tools").is_none());
        let forced = json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": {"type": "function", "function": {"name": "f"}},
                            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}});
        assert_eq!(chat(forced.clone()).unwrap_err().param.as_deref(), Some("tool_choice"));
        // With the caps the request carries both; the engine in this build drops what it does
        // not know when parsing, which is what Caps::detect looks at.
        let t = tr(forced, Endpoint::Chat, ALL_CAPS).unwrap();
        let caps = Caps::detect();
        let r = serde_json::to_value(t.request).unwrap();
        assert_eq!(r.get("tool_choice").is_some(), caps.tool_choice);
        assert_eq!(r["options"].get("json_schema").is_some(), caps.json_schema);
        // parallel_tool_calls reaches the engine's request; a non-boolean is refused.
        let p = json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": "required", "parallel_tool_calls": true});
        assert_eq!(tr(p, Endpoint::Chat, ALL_CAPS).unwrap().request.parallel_tool_calls, Some(true));
        let bad = json!({"messages": [{"role": "user", "content": "x"}], "parallel_tool_calls": "yes"});
        assert_eq!(chat(bad).unwrap_err().param.as_deref(), Some("parallel_tool_calls"));
    }

    #[test]
    fn completions_take_one_string_prompt() {
        let t = tr(json!({"prompt": ["once"], "max_tokens": 4}), Endpoint::Text, NO_CAPS).unwrap();
        assert_eq!(t.request.messages[0].content, Some(json!("once")));
        for (body, param) in [
            (json!({}), "prompt"),
            (json!({"prompt": [1, 2]}), "prompt"),
            (json!({"prompt": ["a", "b"]}), "prompt"),
            (json!({"prompt": "a", "echo": true}), "echo"),
            (json!({"prompt": "a", "logprobs": 2}), "logprobs"),
            (json!({"prompt": "a", "best_of": 3}), "best_of"),
        ] {
            assert_eq!(tr(body.clone(), Endpoint::Text, NO_CAPS).unwrap_err().param.as_deref(), Some(param), "{body}");
        }
    }

    fn response(finish: FinishReason, text: &str, calls: usize) -> Response {
        let mut r = Response::failure(&saguaro_engine::Error::Input(String::new()));
        r.success = true;
        r.response = text.into();
        r.finish_reason = Some(finish);
        r.prefill_tokens = 7;
        r.reused_tokens = 3;
        r.decode_tokens = 5;
        r.function_calls = (0..calls).map(|i| FunctionCall { name: format!("f{i}"), arguments: json!({"a": i}).as_object().unwrap().clone() }).collect();
        r
    }

    #[test]
    fn responses_and_chunks_have_openai_shapes() {
        let meta = Meta { id: "chatcmpl-1".into(), created: 1, model: "m".into(), seed: 9 };
        let r = response(FinishReason::ToolCalls, "", 2);
        let v = chat_completion(&meta, &r);
        assert_eq!(v["object"], json!("chat.completion"));
        assert_eq!(v["choices"][0]["finish_reason"], json!("tool_calls"));
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(v["choices"][0]["message"]["tool_calls"][1]["function"], json!({"name": "f1", "arguments": "{\"a\":1}"}));
        assert_eq!(v["usage"], json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 3}}));
        assert_eq!(v["saguaro"]["seed"], json!(9));
        for (f, want) in [(FinishReason::ContextFull, "length"), (FinishReason::StopSequence, "stop"), (FinishReason::Length, "length"), (FinishReason::Stop, "stop")] {
            assert_eq!(finish_reason(&response(f, "x", 0)), want);
        }

        let chunks = Chunks { meta: meta.clone(), endpoint: Endpoint::Chat, include_usage: true };
        let parse = |s: &str| -> Vec<Value> {
            s.split("\n\n").filter(|e| !e.is_empty()).map(|e| e.strip_prefix("data: ").unwrap()).filter(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).unwrap()).collect()
        };
        let role = parse(&chunks.role().unwrap());
        assert_eq!(role[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(role[0]["usage"], Value::Null);
        let end_text = chunks.end(&r);
        assert!(end_text.ends_with("data: [DONE]\n\n"));
        let end = parse(&end_text);
        assert_eq!(end.len(), 3);
        assert_eq!(end[0]["choices"][0]["delta"]["tool_calls"][1]["index"], json!(1));
        assert_eq!(end[1]["choices"][0]["finish_reason"], json!("tool_calls"));
        assert_eq!(end[2]["choices"], json!([]));
        assert_eq!(end[2]["usage"]["total_tokens"], json!(15));

        let text = Chunks { meta, endpoint: Endpoint::Text, include_usage: false };
        assert!(text.role().is_none());
        let t = parse(&text.text("hi"));
        assert_eq!((t[0]["object"].clone(), t[0]["choices"][0]["text"].clone()), (json!("text_completion"), json!("hi")));
        assert!(t[0].get("usage").is_none());
    }
}
