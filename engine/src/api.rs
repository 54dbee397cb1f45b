//! The one request/response schema every surface speaks (docs/design.md §API).
//!
//! Field names are Cactus's, so apps can switch. A request is JSON like
//!
//! ```json
//! {"messages": [{"role": "system", "content": "Be brief."},
//!               {"role": "user", "content": "Weather in Paris?"}],
//!  "tools": [{"type": "function", "function": {"name": "get_weather", "description": "...",
//!             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
//!  "options": {"temperature": 0.3, "max_tokens": 256, "stop_sequences": ["\n\n"], "seed": 7}}
//! ```
//!
//! - `messages[].role`: `system`, `user`, `assistant` or `tool`. `content`: a string, a list of
//!   content parts (passed to the template as is), or absent/null (e.g. an assistant turn that only
//!   calls tools). `tool_calls` (assistant): OpenAI-style `{"type": "function", "function":
//!   {"name", "arguments"}}` or flat `{"name", "arguments"}`; `arguments` an object or a JSON
//!   string of one. Any other field (`tool_call_id`, `name`, `thinking`, ...) is passed to the
//!   template unchanged; null fields are dropped (as transformers does).
//! - `tools`: OpenAI-style function schemas or bare `{"name", "description", "parameters"}`. They
//!   reach the template exactly as given; their names are the ones tool calls are checked against.
//! - `tool_choice` (OpenAI's): `"auto"` (default: the model decides), `"none"` (the tool-call
//!   token is masked out), `"required"` (the answer is a call of a declared tool; several calls
//!   only with `"parallel_tool_calls": true`) or
//!   `{"type": "function", "function": {"name": "f"}}` (the answer is one call of `f`); forced
//!   calls have arguments valid against the tool's `parameters` ([`crate::constrain`]).
//! - `options`: see [`Options`] (each default and where it comes from: [`Options::resolve`]).
//!   Unknown option names are ignored (Cactus has a few more).
//!   `options.json_schema` constrains the answer to JSON valid against a JSON Schema.
//!
//! The response ([`Response`]) always has every field of the schema; on failure `success` is
//! false, `error` says why, `error_code` is the engine error's code ([`crate::Error::code`]) and
//! the rest are zero/empty. `finish_reason` ([`FinishReason`]) says why generation ended.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::sampling::SamplingParams;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// A string, a list of content parts, or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    /// Tool calls made by an assistant turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    /// Any other field, passed to the template as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// A message with a role and text content.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: Some(Value::String(content.into())), tool_calls: None, extra: Map::new() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
    pub fn tool(content: impl Into<String>) -> Self {
        Self::new("tool", content)
    }
}

/// Largest positive `temperature`: far past any useful value (the distribution is already
/// uniform to f32 precision), small enough that `logit / temperature` stays meaningful.
pub const MAX_TEMPERATURE: f32 = 100.0;
/// Smallest positive `temperature`: below it `logit / temperature` can overflow f32 and the
/// softmax turns into NaNs. Use 0 for greedy decoding.
pub const MIN_TEMPERATURE: f32 = 1e-3;
/// Largest `top_k`: above every vocabulary (a `top_k` at or above the vocabulary size keeps every
/// token, like 0). Also keeps the accepted range the same on 32-bit WebAssembly and 64-bit hosts.
pub const MAX_TOP_K: usize = 1 << 20;
/// `repetition_penalty` range: outside it, dividing logits by it can overflow f32.
pub const MIN_REPETITION_PENALTY: f32 = 0.01;
pub const MAX_REPETITION_PENALTY: f32 = 100.0;
/// Default limit on a request's size (the JSON text, or the strings of a request object):
/// every surface refuses larger requests before any work.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 << 20;

/// Checks a sampling temperature: 0 (greedy) or in [[`MIN_TEMPERATURE`], [`MAX_TEMPERATURE`]].
/// The one rule for every surface (requests, `generate`, `generateTokens`, `generate-tokens`).
pub fn check_temperature(temperature: f32) -> Result<()> {
    temperature_problem(temperature).map_or(Ok(()), |why| Err(Error::Input(why)))
}

fn temperature_problem(temperature: f32) -> Option<String> {
    if temperature == 0.0 || (MIN_TEMPERATURE..=MAX_TEMPERATURE).contains(&temperature) {
        None
    } else {
        Some(format!(
            "temperature {temperature} is out of range: use 0 (greedy) or a value from {MIN_TEMPERATURE} to {MAX_TEMPERATURE}"
        ))
    }
}

/// Generation options. Every field is optional. A missing sampling value (temperature, top_k,
/// top_p, min_p, repetition_penalty) comes from, in order: the `preset` if the request names
/// one, else the model's generation_config.json, else the neutral value ([`NEUTRAL`]: what
/// transformers samples with when nothing is set). `temperature: 0` in the request is pure
/// argmax: the repetition penalty is then the request's own `repetition_penalty` or none (a
/// preset's or the model's penalty does not apply). Out-of-range values are refused (never clamped), on
/// every surface. See [`Options::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// A named set of sampling values ([`Preset`]: `"lfm2"` or `"lfm2.5"`) used instead of the
    /// model's generation_config.json; the other options here override it value by value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// 0 = greedy (argmax), else in [[`MIN_TEMPERATURE`], [`MAX_TEMPERATURE`]]. Default: preset, generation_config.json
    /// (`temperature`; `do_sample: false` means 0), else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Keep the k most likely tokens; 0 = off; at most [`MAX_TOP_K`]. Default: preset, generation_config.json, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Nucleus sampling, in (0, 1]; 1 = off. Default: preset, generation_config.json, else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Drop tokens less likely than `min_p` times the most likely one, in [0, 1]; 0 = off.
    /// Default: preset, generation_config.json, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    /// In [[`MIN_REPETITION_PENALTY`], [`MAX_REPETITION_PENALTY`]]; 1 = off. Applied over the last
    /// [`SamplingParams::repetition_window`] tokens. Default: 1 when the request sets
    /// `temperature: 0`; otherwise preset, generation_config.json, else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
    /// Most new tokens to generate (the end-of-turn token counts). Default:
    /// generation_config.json `max_new_tokens`, else [`DEFAULT_MAX_TOKENS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// Stop when the generated text contains one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    /// Keep the matched stop sequence at the end of `response` (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_stop_sequences: bool,
    /// Seed of the portable sampler (default 0): the same seed gives the same tokens everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// `cloud_handoff` threshold on the rolling confidence, in [0, 1] (default 0.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_threshold: Option<f32>,
    /// A JSON Schema (an object): `response` is then JSON valid against it, written compactly
    /// (`", "` and `": "` separators, no other whitespace). Token masks from the schema are
    /// applied before sampling ([`crate::constrain`]); keywords the grammar compiler does not
    /// implement are an input error, not ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<Value>,
}

/// A completion request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `"auto"`, `"none"`, `"required"` or `{"type": "function", "function": {"name": ...}}`
    /// (see [`ToolChoice`]); absent or null = auto.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// OpenAI's `parallel_tool_calls`: whether a constrained answer (`tool_choice: "required"`,
    /// or tools beside a `json_schema`) may hold more than one call. Default false, as in
    /// llama.cpp's server: a small model offered "one or more" calls tends to repeat its call
    /// until `max_tokens` (SmolLM2-135M did). Unconstrained answers are never cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub options: Options,
}

/// What the request allows the model to do with its tools (OpenAI's `tool_choice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// Text or tool calls, as the model decides (nothing is masked).
    Auto,
    /// No tool call: `<|tool_call_start|>` is masked out.
    None,
    /// One or more calls of declared tools, arguments valid against their `parameters`.
    Required,
    /// One call of this tool, arguments valid against its `parameters`.
    Function(String),
}

impl ToolChoice {
    /// Reads OpenAI's shapes: a string, `{"type": "function", "function": {"name": ...}}`, or
    /// the flat `{"type": "function", "name": ...}` of OpenAI's Responses API.
    pub fn from_value(v: &Value) -> std::result::Result<ToolChoice, String> {
        match v {
            Value::Null => Ok(ToolChoice::Auto),
            Value::String(s) => match s.as_str() {
                "auto" => Ok(ToolChoice::Auto),
                "none" => Ok(ToolChoice::None),
                "required" => Ok(ToolChoice::Required),
                other => Err(format!("`{other}` is not one of \"auto\", \"none\", \"required\" or a function object")),
            },
            Value::Object(o) => {
                if let Some(t) = o.get("type").filter(|t| t.as_str() != Some("function")) {
                    return Err(format!("type {t} is not supported (only \"function\")"));
                }
                let name = match o.get("function") {
                    Some(Value::Object(f)) => f.get("name"),
                    Some(_) => return Err("`function` must be an object with a `name`".into()),
                    None => o.get("name"),
                };
                match name {
                    Some(Value::String(n)) if !n.is_empty() => Ok(ToolChoice::Function(n.clone())),
                    _ => Err("a function tool_choice needs a non-empty string `function.name`".into()),
                }
            }
            _ => Err("must be a string or an object".into()),
        }
    }
}

impl Request {
    /// Parses request JSON; a syntax or type error is an [`Error::Input`]. Text over
    /// [`DEFAULT_MAX_REQUEST_BYTES`] is refused before parsing ([`Request::from_json_limited`]
    /// takes another limit).
    pub fn from_json(text: &str) -> Result<Request> {
        Self::from_json_limited(text, DEFAULT_MAX_REQUEST_BYTES)
    }

    /// [`Request::from_json`] with a size limit of `max_bytes`.
    pub fn from_json_limited(text: &str, max_bytes: usize) -> Result<Request> {
        check_request_size(text.len(), max_bytes)?;
        serde_json::from_str(text).map_err(|e| Error::Input(format!("request is not valid JSON for the schema: {e}")))
    }

    /// Bytes of text the request carries: every string (contents, tool calls, tool schemas,
    /// other message fields, keys included) and one byte per other value. A lower bound of its
    /// JSON size, computed without serializing (a request object from JS has no JSON text).
    pub fn text_bytes(&self) -> usize {
        fn value_bytes(v: &Value) -> usize {
            match v {
                Value::String(s) => s.len(),
                Value::Array(a) => a.iter().map(value_bytes).sum::<usize>() + 1,
                Value::Object(o) => o.iter().map(|(k, v)| k.len() + value_bytes(v)).sum::<usize>() + 1,
                _ => 1,
            }
        }
        let messages: usize = self
            .messages
            .iter()
            .map(|m| {
                m.role.len()
                    + m.content.as_ref().map_or(0, value_bytes)
                    + m.tool_calls.iter().flatten().map(value_bytes).sum::<usize>()
                    + m.extra.iter().map(|(k, v)| k.len() + value_bytes(v)).sum::<usize>()
            })
            .sum();
        let tools: usize = self.tools.iter().flatten().map(value_bytes).sum();
        let stops: usize = self.options.stop_sequences.iter().map(String::len).sum();
        messages + tools + stops
    }

    /// Checks roles, contents, tool calls and tool schemas; returns the declared tool names.
    pub fn validate(&self) -> Result<Vec<String>> {
        if self.messages.is_empty() {
            return Err(Error::Input("`messages` is empty: a request needs at least one message".into()));
        }
        for (i, m) in self.messages.iter().enumerate() {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "tool") {
                return Err(Error::Input(format!(
                    "messages[{i}]: unknown role `{}` (expected system, user, assistant or tool)",
                    m.role
                )));
            }
            match &m.content {
                // An assistant turn may consist of tool calls only; every other turn is text.
                None | Some(Value::Null) if m.role == "assistant" && m.tool_calls.as_ref().is_some_and(|c| !c.is_empty()) => {}
                None | Some(Value::Null) => {
                    return Err(Error::Input(format!(
                        "messages[{i}].content is missing or null: {} messages need a string{}",
                        m.role,
                        if m.role == "assistant" { ", a list of content parts or tool_calls" } else { " or a list of content parts" }
                    )))
                }
                Some(Value::String(_)) => {}
                Some(Value::Array(parts)) => {
                    if let Some(j) = parts.iter().position(|p| !p.is_object() && !p.is_string()) {
                        return Err(Error::Input(format!("messages[{i}].content[{j}]: a content part must be an object or a string")));
                    }
                }
                Some(_) => {
                    return Err(Error::Input(format!("messages[{i}].content must be a string, a list of parts or null")))
                }
            }
            if let Some(calls) = &m.tool_calls {
                if m.role != "assistant" {
                    return Err(Error::Input(format!("messages[{i}]: only assistant messages can have tool_calls")));
                }
                for (j, c) in calls.iter().enumerate() {
                    normalize_tool_call(c).map_err(|e| Error::Input(format!("messages[{i}].tool_calls[{j}]: {e}")))?;
                }
            }
        }
        let mut names = Vec::new();
        for (i, t) in self.tools.iter().flatten().enumerate() {
            names.push(tool_name(t).map_err(|e| Error::Input(format!("tools[{i}]: {e}")))?);
        }
        self.check_tool_choice(&names)?;
        match &self.options.json_schema {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(_) => return Err(Error::Input("options.json_schema must be a JSON Schema object".into())),
        }
        Ok(names)
    }

    /// The request's [`ToolChoice`], checked against the declared tool names.
    pub fn tool_choice(&self) -> Result<ToolChoice> {
        let choice = match &self.tool_choice {
            None => ToolChoice::Auto,
            Some(v) => ToolChoice::from_value(v).map_err(|e| Error::Input(format!("tool_choice: {e}")))?,
        };
        Ok(choice)
    }

    fn check_tool_choice(&self, declared: &[String]) -> Result<()> {
        match self.tool_choice()? {
            ToolChoice::Required if declared.is_empty() => {
                Err(Error::Input("tool_choice is \"required\" but the request declares no tools".into()))
            }
            ToolChoice::Function(name) if !declared.contains(&name) => Err(Error::Input(format!(
                "tool_choice names `{name}`, which is not a declared tool (declared: {})",
                if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
            ))),
            _ => Ok(()),
        }
    }

    /// The `parameters` schema of the declared tool `name` (`None` when it has none).
    pub fn tool_parameters(&self, name: &str) -> Option<&Value> {
        self.tools.iter().flatten().find_map(|t| {
            let func = t.get("function").filter(|f| f.is_object()).unwrap_or(t);
            (func.get("name").and_then(Value::as_str) == Some(name)).then(|| func.get("parameters")).flatten()
        })
    }
}

/// Refuses a request of `bytes` bytes when it is over `max_bytes`.
pub fn check_request_size(bytes: usize, max_bytes: usize) -> Result<()> {
    if bytes > max_bytes {
        return Err(Error::Input(format!(
            "the request is {bytes} bytes, more than the limit of {max_bytes} bytes ({:.1} MiB)",
            max_bytes as f64 / (1024.0 * 1024.0)
        )));
    }
    Ok(())
}

/// The name of a tool schema (OpenAI-style or bare), after checking its shape.
pub fn tool_name(tool: &Value) -> std::result::Result<String, String> {
    let obj = tool.as_object().ok_or("a tool schema must be a JSON object")?;
    let func = match obj.get("function") {
        Some(Value::Object(f)) => f,
        Some(_) => return Err("`function` must be an object".into()),
        None => obj,
    };
    let name = match func.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => return Err("a tool needs a non-empty string `name`".into()),
    };
    match func.get("parameters") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err(format!("tool `{name}`: `parameters` must be a JSON schema object")),
    }
    Ok(name)
}

/// A tool call of a request message in the OpenAI form templates read:
/// `{"type": "function", "function": {"name", "arguments": {...}}}` (plus `id` if given),
/// with `arguments` parsed when it came as a JSON string.
pub fn normalize_tool_call(call: &Value) -> std::result::Result<Value, String> {
    let obj = call.as_object().ok_or("a tool call must be a JSON object")?;
    let func = match obj.get("function") {
        Some(Value::Object(f)) => f,
        Some(_) => return Err("`function` must be an object".into()),
        None => obj,
    };
    let name = match func.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => return Err("a tool call needs a non-empty string `name`".into()),
    };
    let arguments = match func.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(m)) => Value::Object(m.clone()),
        Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Value::Object(m),
            _ => return Err(format!("tool call `{name}`: `arguments` is a string that is not a JSON object")),
        },
        Some(_) => return Err(format!("tool call `{name}`: `arguments` must be an object")),
    };
    let mut function = Map::new();
    function.insert("name".into(), Value::String(name));
    function.insert("arguments".into(), arguments);
    let mut out = Map::new();
    out.insert("type".into(), Value::String("function".into()));
    out.insert("function".into(), Value::Object(function));
    if let Some(id) = obj.get("id").filter(|v| !v.is_null()) {
        out.insert("id".into(), id.clone());
    }
    Ok(Value::Object(out))
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn (an end-of-sequence token) and made no tool call.
    Stop,
    /// The model ended its turn after calling tools (`function_calls` is not empty).
    ToolCalls,
    /// `max_tokens` tokens were generated.
    Length,
    /// The text reached one of `stop_sequences`.
    StopSequence,
    /// The context window is full (prompt + generated tokens = max_position_embeddings).
    ContextFull,
    /// The token callback returned false or the cancel flag was set.
    Cancelled,
}

/// A tool call parsed from the model's output, with typed argument values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: Map<String, Value>,
}

/// What the streaming callback sees for each generated token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenEvent {
    pub token_id: u32,
    /// Text released by this token (may be empty: an incomplete UTF-8 sequence, text that could
    /// start a stop sequence, a tool call, an end-of-turn token; the last event also carries
    /// whatever was held back). The concatenation of every event's text is `response`.
    pub text: String,
    /// 1 - H / ln V of this token's distribution.
    pub confidence: f32,
    /// True for the tokens of a tool call (they are not part of `response`).
    pub in_tool_call: bool,
}

/// A completion response. Every field is always present (`error_code` and
/// `tool_call_errors` only when there is something to say).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub success: bool,
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// True when the confidence fell below `confidence_threshold` (see [`crate::session`]).
    pub cloud_handoff: bool,
    /// The assistant's text, tool calls removed.
    pub response: String,
    pub function_calls: Vec<FunctionCall>,
    /// Tool calls that could not be parsed or name an undeclared tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_call_errors: Vec<String>,
    /// 1 - mean normalised entropy over the generated tokens (1 when none).
    pub confidence: f32,
    pub finish_reason: Option<FinishReason>,
    pub time_to_first_token_ms: f64,
    pub total_time_ms: f64,
    pub prefill_tps: f64,
    pub decode_tps: f64,
    pub ram_usage_mb: f64,
    /// Prompt tokens run through the model by this request (the reused prefix excluded).
    pub prefill_tokens: usize,
    /// Generated tokens (the end-of-turn token included).
    pub decode_tokens: usize,
    /// prefill_tokens + decode_tokens.
    pub total_tokens: usize,
    /// Prompt tokens whose state came from earlier requests of the session.
    #[serde(default)]
    pub reused_tokens: usize,
}

impl Response {
    /// A failed response carrying `err`.
    pub fn failure(err: &Error) -> Response {
        Response {
            success: false,
            error: Some(err.to_string()),
            error_code: Some(err.code().to_string()),
            cloud_handoff: false,
            response: String::new(),
            function_calls: Vec::new(),
            tool_call_errors: Vec::new(),
            confidence: 0.0,
            finish_reason: None,
            time_to_first_token_ms: 0.0,
            total_time_ms: 0.0,
            prefill_tps: 0.0,
            decode_tps: 0.0,
            ram_usage_mb: 0.0,
            prefill_tokens: 0,
            decode_tokens: 0,
            total_tokens: 0,
            reused_tokens: 0,
        }
    }

    /// The response as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!("{{\"success\":false,\"error\":\"response serialization failed: {e}\"}}")
        })
    }
}

/// `max_tokens` when neither the request nor generation_config.json says (Saguaro's own value:
/// transformers' `max_length` 20 counts the prompt too and would cut most chat answers).
pub const DEFAULT_MAX_TOKENS: usize = 512;
/// `confidence_threshold` when the request does not say.
pub const DEFAULT_CONFIDENCE_THRESHOLD: f32 = 0.7;

/// The five sampling values a request, a preset or a model can set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingDefaults {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
}

/// The sampling values used when neither the request, a preset nor the model says: plain
/// sampling from the model's distribution. These are transformers' values for sampling
/// (`do_sample=True`: temperature 1, top_p 1, repetition_penalty 1, min_p unset) with one
/// difference: transformers' global default `top_k` is 50, here top_k is off (0), so an unset
/// value never cuts the distribution.
pub const NEUTRAL: SamplingDefaults =
    SamplingDefaults { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0 };

/// Named sampling recipes (`options.preset`). Each sets all five sampling values, so the result
/// does not depend on the model's generation_config.json; options given next to the preset
/// override it value by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    /// LiquidAI's recommended sampling for LFM2 (docs/lfm2.md §Sampling, from the model cards):
    /// temperature 0.3, min_p 0.15, repetition_penalty 1.05 (top_k off, top_p 1).
    #[serde(rename = "lfm2")]
    Lfm2,
    /// LiquidAI's recommended sampling for LFM2.5: temperature 0.1, top_k 50, top_p 0.1,
    /// repetition_penalty 1.05 (min_p off).
    #[serde(rename = "lfm2.5")]
    Lfm25,
}

impl Preset {
    /// Every preset, in the order help texts list them.
    pub const ALL: [Preset; 2] = [Preset::Lfm2, Preset::Lfm25];

    /// The name a request uses (`options.preset`).
    pub fn name(self) -> &'static str {
        match self {
            Preset::Lfm2 => "lfm2",
            Preset::Lfm25 => "lfm2.5",
        }
    }

    /// The preset called `name`, or an input error that lists the known ones.
    pub fn from_name(name: &str) -> Result<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name).ok_or_else(|| {
            let known: Vec<_> = Preset::ALL.iter().map(|p| format!("`{}`", p.name())).collect();
            Error::Input(format!("unknown sampling preset `{name}` (known: {})", known.join(", ")))
        })
    }

    /// The sampling values of the preset.
    pub fn sampling(self) -> SamplingDefaults {
        match self {
            Preset::Lfm2 => SamplingDefaults { temperature: 0.3, min_p: 0.15, repetition_penalty: 1.05, ..NEUTRAL },
            Preset::Lfm25 => {
                SamplingDefaults { temperature: 0.1, top_k: 50, top_p: 0.1, repetition_penalty: 1.05, ..NEUTRAL }
            }
        }
    }
}

/// The model's defaults for missing options: generation_config.json's `temperature`, `top_k`,
/// `top_p`, `min_p`, `repetition_penalty` and `max_new_tokens` where present and valid,
/// otherwise [`NEUTRAL`] and [`DEFAULT_MAX_TOKENS`]. `do_sample: false` means greedy
/// (temperature 0) as in transformers, where it turns off temperature, top_k, top_p and min_p
/// but not the repetition penalty. A generation_config without `do_sample` is read as sampling
/// with its values (transformers would decode greedily and warn that they are unused; a model
/// that lists sampling values means them).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationDefaults {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub max_tokens: usize,
}

impl Default for GenerationDefaults {
    /// A model without generation_config.json.
    fn default() -> Self {
        GenerationDefaults::with_sampling(NEUTRAL, DEFAULT_MAX_TOKENS)
    }
}

impl GenerationDefaults {
    fn with_sampling(s: SamplingDefaults, max_tokens: usize) -> Self {
        GenerationDefaults {
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            min_p: s.min_p,
            repetition_penalty: s.repetition_penalty,
            max_tokens,
        }
    }

    /// The five sampling values.
    pub fn sampling(&self) -> SamplingDefaults {
        SamplingDefaults {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
        }
    }

    /// Defaults from a generation_config.json value. Invalid entries are ignored (a bad
    /// optional hint in a model file should not make the model unusable): the neutral value
    /// stays.
    pub fn from_generation_config(config: Option<&Value>) -> Self {
        let mut d = GenerationDefaults::default();
        let Some(Value::Object(c)) = config else { return d };
        let f = |k: &str| c.get(k).and_then(Value::as_f64).filter(|x| x.is_finite()).map(|x| x as f32);
        if let Some(t) = f("temperature").filter(|t| check_temperature(*t).is_ok()) {
            d.temperature = t;
        }
        if let Some(k) = c.get("top_k").and_then(Value::as_u64).filter(|k| *k <= MAX_TOP_K as u64) {
            d.top_k = k as usize;
        }
        if let Some(p) = f("top_p").filter(|p| *p > 0.0 && *p <= 1.0) {
            d.top_p = p;
        }
        if let Some(p) = f("min_p").filter(|p| (0.0..=1.0).contains(p)) {
            d.min_p = p;
        }
        if let Some(r) = f("repetition_penalty").filter(|r| (MIN_REPETITION_PENALTY..=MAX_REPETITION_PENALTY).contains(r)) {
            d.repetition_penalty = r;
        }
        if let Some(m) = c.get("max_new_tokens").and_then(Value::as_u64).filter(|m| *m > 0) {
            d.max_tokens = usize::try_from(m).unwrap_or(usize::MAX);
        }
        if c.get("do_sample") == Some(&Value::Bool(false)) {
            d.temperature = 0.0;
        }
        d
    }
}

/// Options with every default applied and every value checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedOptions {
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    pub stop_sequences: Vec<String>,
    pub include_stop_sequences: bool,
    pub confidence_threshold: f32,
}

impl Options {
    /// Applies the defaults and validates every value. Each sampling value is the first of:
    /// the request's own value; the preset's (when `preset` is set); the model's
    /// (`defaults`, i.e. generation_config.json, else [`NEUTRAL`]). One exception: when the
    /// request itself sets `temperature: 0`, the repetition penalty is the request's
    /// `repetition_penalty` or 1, so a greedy request is pure argmax unless it asks for a
    /// penalty (greedy coming from the model's `do_sample: false` keeps the model's penalty,
    /// as transformers' `generate()` does).
    pub fn resolve(&self, defaults: &GenerationDefaults) -> Result<ResolvedOptions> {
        let bad = |what: String| Err(Error::Input(format!("options.{what}")));
        let base = match self.preset {
            Some(p) => p.sampling(),
            None => defaults.sampling(),
        };
        let temperature = self.temperature.unwrap_or(base.temperature);
        if let Some(why) = temperature_problem(temperature) {
            return bad(why);
        }
        let top_k = self.top_k.unwrap_or(base.top_k);
        if top_k > MAX_TOP_K {
            return bad(format!("top_k {top_k} is more than {MAX_TOP_K}: use 0 to keep every token"));
        }
        let top_p = self.top_p.unwrap_or(base.top_p);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return bad(format!("top_p {top_p} must be in (0, 1]"));
        }
        let min_p = self.min_p.unwrap_or(base.min_p);
        if !(0.0..=1.0).contains(&min_p) {
            return bad(format!("min_p {min_p} must be in [0, 1]"));
        }
        let penalty_default = if self.temperature == Some(0.0) { NEUTRAL.repetition_penalty } else { base.repetition_penalty };
        let repetition_penalty = self.repetition_penalty.unwrap_or(penalty_default);
        if !(MIN_REPETITION_PENALTY..=MAX_REPETITION_PENALTY).contains(&repetition_penalty) {
            return bad(format!(
                "repetition_penalty {repetition_penalty} is out of range: use a value from {MIN_REPETITION_PENALTY} to {MAX_REPETITION_PENALTY} (1 = off)"
            ));
        }
        let confidence_threshold = self.confidence_threshold.unwrap_or(DEFAULT_CONFIDENCE_THRESHOLD);
        if !(0.0..=1.0).contains(&confidence_threshold) {
            return bad(format!("confidence_threshold {confidence_threshold} must be in [0, 1]"));
        }
        if let Some(i) = self.stop_sequences.iter().position(String::is_empty) {
            return bad(format!("stop_sequences[{i}] is empty"));
        }
        Ok(ResolvedOptions {
            sampling: SamplingParams {
                temperature,
                top_k,
                top_p,
                min_p,
                repetition_penalty,
                repetition_window: SamplingParams::DEFAULT_REPETITION_WINDOW,
                seed: self.seed.unwrap_or(0),
            },
            max_tokens: self.max_tokens.unwrap_or(defaults.max_tokens),
            stop_sequences: self.stop_sequences.clone(),
            include_stop_sequences: self.include_stop_sequences,
            confidence_threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_parses_and_validates() {
        let r = Request::from_json(
            r#"{"messages": [{"role": "user", "content": "hi", "name": "bob", "thinking": null}],
                "tools": [{"name": "f", "parameters": {"type": "object"}},
                          {"type": "function", "function": {"name": "g"}}],
                "options": {"temperature": 0, "force_tools": true}}"#,
        )
        .unwrap();
        assert_eq!(r.validate().unwrap(), vec!["f".to_string(), "g".to_string()]);
        assert_eq!(r.messages[0].extra.get("name"), Some(&json!("bob")));
        assert_eq!(r.options.temperature, Some(0.0));
    }

    #[test]
    fn bad_requests_are_input_errors() {
        let cases = [
            r#"{"messages": []}"#,
            r#"{"messages": [{"role": "bot", "content": "x"}]}"#,
            r#"{"messages": [{"role": "user", "content": 3}]}"#,
            r#"{"messages": [{"role": "user", "content": "x"}], "tools": ["f"]}"#,
            r#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"description": "no name"}]}"#,
            r#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f", "parameters": 1}]}"#,
            r#"{"messages": [{"role": "user", "content": "x", "tool_calls": [{"name": "f"}]}]}"#,
            r#"{"messages": [{"role": "assistant", "tool_calls": [{"name": "f", "arguments": "[1]"}]}]}"#,
        ];
        for c in cases {
            let err = Request::from_json(c).unwrap().validate().unwrap_err();
            assert_eq!(err.code(), "input", "{c}: {err}");
        }
        assert!(Request::from_json("{").is_err());
        assert!(Request::from_json(r#"{"messages": [{"role": "user"}], "options": {"temperature": "hot"}}"#).is_err());
    }

    fn sampling_of(r: &ResolvedOptions) -> SamplingDefaults {
        let s = &r.sampling;
        SamplingDefaults { temperature: s.temperature, top_k: s.top_k, top_p: s.top_p, min_p: s.min_p, repetition_penalty: s.repetition_penalty }
    }

    fn options(v: Value) -> Options {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn generation_config_values_are_read() {
        let d = GenerationDefaults::from_generation_config(Some(&json!({
            "do_sample": true, "temperature": 0.1, "top_k": 50, "top_p": 0.1, "min_p": 0.2,
            "repetition_penalty": 1.3, "max_new_tokens": 9, "eos_token_id": 7})));
        let want = SamplingDefaults { temperature: 0.1, top_k: 50, top_p: 0.1, min_p: 0.2, repetition_penalty: 1.3 };
        assert_eq!((d.sampling(), d.max_tokens), (want, 9));
        // do_sample false: greedy whatever temperature says; the penalty stays (transformers).
        let d = GenerationDefaults::from_generation_config(Some(&json!({"do_sample": false, "temperature": 0.7, "repetition_penalty": 1.2})));
        assert_eq!((d.temperature, d.repetition_penalty), (0.0, 1.2));
        // No file, a file with only token ids, invalid values: the neutral values.
        let neutral = GenerationDefaults { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, max_tokens: DEFAULT_MAX_TOKENS };
        assert_eq!(GenerationDefaults::from_generation_config(None), neutral);
        assert_eq!(GenerationDefaults::from_generation_config(Some(&json!({"bos_token_id": 1, "eos_token_id": 7}))), neutral);
        let invalid = json!({"temperature": -1, "top_k": -3, "top_p": 0, "min_p": 2, "repetition_penalty": 0, "max_new_tokens": 0});
        assert_eq!(GenerationDefaults::from_generation_config(Some(&invalid)), neutral);
        assert_eq!(GenerationDefaults::from_generation_config(Some(&json!([1, 2]))), neutral);
    }

    #[test]
    fn options_resolve_request_then_preset_then_model_then_neutral() {
        let model = GenerationDefaults::from_generation_config(Some(&json!({"temperature": 0.7, "top_k": 20, "repetition_penalty": 1.2, "max_new_tokens": 33})));
        let none = GenerationDefaults::default();

        // Nothing in the request: the model's values, neutral where the model says nothing.
        let r = Options::default().resolve(&model).unwrap();
        assert_eq!(sampling_of(&r), SamplingDefaults { temperature: 0.7, top_k: 20, repetition_penalty: 1.2, ..NEUTRAL });
        assert_eq!(r.max_tokens, 33);
        let r = Options::default().resolve(&none).unwrap();
        assert_eq!((sampling_of(&r), r.max_tokens, r.sampling.seed), (NEUTRAL, DEFAULT_MAX_TOKENS, 0));

        // A preset replaces the model's five sampling values (not max_tokens).
        for preset in Preset::ALL {
            let r = options(json!({"preset": preset.name()})).resolve(&model).unwrap();
            assert_eq!((sampling_of(&r), r.max_tokens), (preset.sampling(), 33), "{preset:?}");
        }
        assert_eq!(Preset::Lfm2.sampling(), SamplingDefaults { temperature: 0.3, top_k: 0, top_p: 1.0, min_p: 0.15, repetition_penalty: 1.05 });
        assert_eq!(Preset::Lfm25.sampling(), SamplingDefaults { temperature: 0.1, top_k: 50, top_p: 0.1, min_p: 0.0, repetition_penalty: 1.05 });

        // Request values override the preset and the model, one by one.
        let r = options(json!({"preset": "lfm2", "temperature": 0.9, "top_k": 5, "max_tokens": 4})).resolve(&model).unwrap();
        assert_eq!(sampling_of(&r), SamplingDefaults { temperature: 0.9, top_k: 5, ..Preset::Lfm2.sampling() });
        assert_eq!(r.max_tokens, 4);
        let r = options(json!({"min_p": 0.5, "top_p": 0.8})).resolve(&model).unwrap();
        assert_eq!(sampling_of(&r), SamplingDefaults { temperature: 0.7, top_k: 20, top_p: 0.8, min_p: 0.5, repetition_penalty: 1.2 });
    }

    #[test]
    fn temperature_zero_in_the_request_is_pure_argmax_unless_it_asks_for_a_penalty() {
        let model = GenerationDefaults::from_generation_config(Some(&json!({"do_sample": true, "temperature": 0.3, "repetition_penalty": 1.05})));
        for req in [json!({"temperature": 0}), json!({"temperature": 0.0, "preset": "lfm2"}), json!({"temperature": 0, "preset": "lfm2.5"})] {
            let r = options(req.clone()).resolve(&model).unwrap();
            assert_eq!((r.sampling.temperature, r.sampling.repetition_penalty), (0.0, 1.0), "{req}");
        }
        let r = options(json!({"temperature": 0, "repetition_penalty": 1.3})).resolve(&model).unwrap();
        assert_eq!((r.sampling.temperature, r.sampling.repetition_penalty), (0.0, 1.3));
        // Greedy because the model says do_sample false: the model's penalty applies, as in
        // transformers' generate() with that generation_config.
        let greedy_model = GenerationDefaults::from_generation_config(Some(&json!({"do_sample": false, "repetition_penalty": 1.3})));
        let r = Options::default().resolve(&greedy_model).unwrap();
        assert_eq!((r.sampling.temperature, r.sampling.repetition_penalty), (0.0, 1.3));
        // A non-zero temperature keeps the model's penalty.
        let r = options(json!({"temperature": 0.5})).resolve(&model).unwrap();
        assert_eq!(r.sampling.repetition_penalty, 1.05);
    }

    #[test]
    fn presets_parse_by_name_and_unknown_ones_are_input_errors() {
        assert_eq!(options(json!({"preset": "lfm2.5"})).preset, Some(Preset::Lfm25));
        assert_eq!(options(json!({"preset": null})).preset, None);
        for p in Preset::ALL {
            assert_eq!(Preset::from_name(p.name()).unwrap(), p);
            assert_eq!(serde_json::to_value(p).unwrap(), json!(p.name()));
        }
        let err = Preset::from_name("llama").unwrap_err();
        assert_eq!(err.code(), "input");
        assert!(err.to_string().contains("`lfm2`, `lfm2.5`"), "{err}");
        let err = Request::from_json(r#"{"messages": [{"role": "user", "content": "x"}], "options": {"preset": "LFM2"}}"#).unwrap_err();
        assert_eq!(err.code(), "input");
        assert!(err.to_string().contains("lfm2.5"), "{err}");
    }

    #[test]
    fn invalid_options_are_input_errors() {
        let d = GenerationDefaults::default();
        for bad in [
            Options { temperature: Some(-1.0), ..Default::default() },
            Options { temperature: Some(f32::NAN), ..Default::default() },
            Options { top_p: Some(0.0), ..Default::default() },
            Options { min_p: Some(1.5), ..Default::default() },
            Options { repetition_penalty: Some(0.0), ..Default::default() },
            Options { repetition_penalty: Some(f32::INFINITY), temperature: Some(0.0), ..Default::default() },
            Options { confidence_threshold: Some(2.0), ..Default::default() },
            Options { stop_sequences: vec![String::new()], ..Default::default() },
        ] {
            assert_eq!(bad.resolve(&d).unwrap_err().code(), "input", "{bad:?}");
        }
    }

    #[test]
    fn out_of_range_sampling_values_are_refused_with_the_option_named() {
        let d = GenerationDefaults::default();
        let cases = [
            (Options { temperature: Some(1e6), ..Default::default() }, "options.temperature"),
            (Options { temperature: Some(1e-30), ..Default::default() }, "options.temperature"),
            (Options { temperature: Some(f32::INFINITY), ..Default::default() }, "options.temperature"),
            (Options { top_k: Some(usize::MAX), ..Default::default() }, "options.top_k"),
            (Options { top_k: Some(MAX_TOP_K + 1), ..Default::default() }, "options.top_k"),
            (Options { repetition_penalty: Some(1e-30), ..Default::default() }, "options.repetition_penalty"),
            (Options { repetition_penalty: Some(1e9), ..Default::default() }, "options.repetition_penalty"),
        ];
        for (o, needle) in cases {
            let e = o.resolve(&d).unwrap_err();
            assert_eq!(e.code(), "input");
            assert!(e.to_string().contains(needle), "{o:?}: {e}");
        }
        // The edges are accepted.
        for o in [
            Options { temperature: Some(0.0), top_k: Some(MAX_TOP_K), ..Default::default() },
            Options { temperature: Some(MIN_TEMPERATURE), repetition_penalty: Some(MIN_REPETITION_PENALTY), ..Default::default() },
            Options { temperature: Some(MAX_TEMPERATURE), repetition_penalty: Some(MAX_REPETITION_PENALTY), ..Default::default() },
        ] {
            assert!(o.resolve(&d).is_ok(), "{o:?}");
        }
        // generation_config values out of range are ignored (the model's file is not the caller's fault).
        let g = GenerationDefaults::from_generation_config(Some(&json!({"temperature": 1e9, "top_k": 1u64 << 40})));
        assert_eq!((g.temperature, g.top_k), (NEUTRAL.temperature, 0));
        assert!(check_temperature(-0.5).is_err() && check_temperature(f32::NAN).is_err() && check_temperature(0.7).is_ok());
    }

    #[test]
    fn null_or_missing_content_is_a_schema_error() {
        for (c, needle) in [
            (r#"{"messages": [{"role": "user", "content": null}]}"#, "messages[0].content is missing or null: user messages need a string"),
            (r#"{"messages": [{"role": "user"}]}"#, "messages[0].content is missing or null"),
            (r#"{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": null}]}"#, "messages[1].content is missing or null: assistant messages need"),
        ] {
            let e = Request::from_json(c).unwrap().validate().unwrap_err();
            assert!(e.to_string().contains(needle), "{c}: {e}");
        }
        // An assistant turn made only of tool calls needs no content.
        let ok = r#"{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": null, "tool_calls": [{"name": "f"}]}]}"#;
        assert!(Request::from_json(ok).unwrap().validate().is_ok());
    }

    #[test]
    fn requests_over_the_size_limit_are_refused_before_parsing() {
        let big = format!(r#"{{"messages": [{{"role": "user", "content": "{}"}}]}}"#, "a".repeat(100));
        let e = Request::from_json_limited(&big, 64).unwrap_err();
        assert!(e.to_string().contains("more than the limit of 64 bytes"), "{e}");
        let r = Request::from_json_limited(&big, 1000).unwrap();
        assert!(r.text_bytes() >= 100 && r.text_bytes() <= big.len(), "{}", r.text_bytes());
        assert!(Request::from_json("not json").is_err());
    }

    #[test]
    fn tool_calls_normalize_to_openai_form() {
        let flat = json!({"name": "f", "arguments": "{\"a\": 1}"});
        assert_eq!(normalize_tool_call(&flat).unwrap(), json!({"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}));
        let wrapped = json!({"id": "c1", "type": "function", "function": {"name": "g", "arguments": {"b": [true]}}});
        assert_eq!(normalize_tool_call(&wrapped).unwrap(), json!({"type": "function", "function": {"name": "g", "arguments": {"b": [true]}}, "id": "c1"}));
        assert!(normalize_tool_call(&json!({"name": "f", "arguments": 3})).is_err());
    }

    #[test]
    fn tool_choice_reads_openai_shapes() {
        let ok = |v: Value| ToolChoice::from_value(&v).unwrap();
        assert_eq!(ok(json!("auto")), ToolChoice::Auto);
        assert_eq!(ok(Value::Null), ToolChoice::Auto);
        assert_eq!(ok(json!("none")), ToolChoice::None);
        assert_eq!(ok(json!("required")), ToolChoice::Required);
        assert_eq!(ok(json!({"type": "function", "function": {"name": "f"}})), ToolChoice::Function("f".into()));
        assert_eq!(ok(json!({"type": "function", "name": "g"})), ToolChoice::Function("g".into()));
        for bad in [json!("any"), json!(3), json!({"type": "custom", "name": "f"}), json!({"function": "f"}), json!({"function": {"name": ""}})] {
            assert!(ToolChoice::from_value(&bad).is_err(), "{bad}");
        }
        let r = Request::from_json(r#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f", "parameters": {"type": "object"}}],
                                       "tool_choice": {"type": "function", "function": {"name": "f"}}, "options": {"json_schema": {"type": "string"}}}"#)
        .unwrap();
        assert_eq!(r.validate().unwrap(), vec!["f".to_string()]);
        assert_eq!(r.tool_parameters("f"), Some(&json!({"type": "object"})));
        assert_eq!(r.tool_parameters("g"), None);
        assert_eq!(r.options.json_schema, Some(json!({"type": "string"})));
    }

    #[test]
    fn failure_response_has_every_field() {
        let r = Response::failure(&Error::Input("bad".into()));
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        for k in [
            "success", "error", "cloud_handoff", "response", "function_calls", "confidence", "finish_reason",
            "time_to_first_token_ms", "total_time_ms", "prefill_tps", "decode_tps", "ram_usage_mb",
            "prefill_tokens", "decode_tokens", "total_tokens",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["success"], json!(false));
        assert_eq!(v["error_code"], json!("input"));
    }
}
