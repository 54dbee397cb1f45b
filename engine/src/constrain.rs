//! Constrained decoding: `options.json_schema` and `tool_choice` as token masks.
//!
//! The grammar engine is [llguidance] (the one behind OpenAI's, vLLM's, SGLang's and llama.cpp's
//! structured outputs): a JSON Schema (or a small Lark grammar around schemas) is compiled into
//! an Earley parser over a lexer, and for each step it computes the set of vocabulary tokens
//! whose bytes keep the output a prefix of some sentence of the grammar, by walking a trie of
//! the vocabulary's byte strings.
//!
//! **How a step runs.** Before sampling, every token outside the mask gets the logit `-inf`
//! (exact: nothing else in the logits changes, so greedy and sampled decoding keep their bits,
//! and a seed gives the same tokens on every host). The sampled token is then fed to the
//! matcher. When the grammar is complete and nothing can follow it (an object's closing
//! brace, `<|tool_call_end|>`), generation ends with `finish_reason: stop` without sampling an
//! end-of-turn token; where the grammar accepts but could go on (a top-level number), the mask
//! also allows the model's end-of-sequence ids, and the model chooses. `max_tokens` still cuts
//! (`finish_reason: length`, the JSON then incomplete). Confidence is measured on the raw
//! logits, before the mask, as for unconstrained requests.
//!
//! **What is constrained.**
//! - `options.json_schema`: the answer is JSON valid against the schema, written compactly:
//!   `", "` between items, `": "` after keys, no other whitespace (free whitespace would let a
//!   weak model pad forever). A schema may carry llguidance's own `"x-guidance"` options
//!   (e.g. `{"whitespace_flexible": true}`, `{"coerce_one_of": true}`) to change that. Keywords
//!   llguidance does not implement (`not`, `if`/`then`/`else`, `uniqueItems`, `contains`,
//!   `dependentRequired`, ..., and `oneOf` over branches that may overlap, unless coerced) are
//!   an input error naming them;
//!   `$ref` works within the schema (`#/$defs/...`, any `#/` pointer), not to other documents.
//!   Where a schema leaves numbers unbounded or objects open, the grammar narrows it as
//!   llama.cpp's does (`narrow` below): a weak model could otherwise write digits or keys
//!   forever. Every answer is still valid against the schema as given.
//! - `tool_choice` forcing a call (`"required"`, or a named function): the answer is
//!   `<|tool_call_start|>[{"name": "f", "arguments": {...}}]<|tool_call_end|>` (a model without
//!   those tokens: `{"tool_calls": [{"name": "f", "arguments": {...}}]}`, the JSON convention of
//!   [`crate::chat::json_calls`]), the arguments valid against the tool's `parameters` (a named
//!   function: exactly one call; `required`: one call of any declared tool, or one or more with
//!   `parallel_tool_calls: true`). This is LFM2's JSON tool-call form, which
//!   [`crate::chat::tool_calls`] parses like the Pythonic one; JSON is chosen over the
//!   Pythonic `[f(a=1)]` because every keyword of a `parameters` schema (nested objects,
//!   `additionalProperties`, `anyOf`, `$ref`) maps onto it exactly, where Python keyword
//!   arguments would need a second schema compiler. `json_schema` does not apply to a forced
//!   call.
//! - `tool_choice: "none"`: only `<|tool_call_start|>` is masked out (no grammar runs); with a
//!   `json_schema` the schema's grammar already excludes it.
//! - `json_schema` with tools and `tool_choice` auto: either the JSON answer or tool calls as
//!   above, the model chooses by its first tokens.
//!
//! **Vocabulary.** The trie needs each token's bytes: for byte-level BPE (LFM2, GPT-2 style)
//! the token string mapped back through the byte-to-character table, for sentencepiece-style
//! vocabularies with byte fallback `<0xNN>` tokens and `▁` as the space. Special added tokens
//! are marked so that only the grammar's explicit `<[id]>` references can produce them. The
//! trie and llguidance's precomputed token slices are built once per model, on the first
//! constrained request (see [`ConstraintVocab`]).
//!
//! [llguidance]: https://github.com/guidance-ai/llguidance

use std::collections::HashMap;
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Map, Value};

use crate::api::{Request, ToolChoice};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// Longest token (bytes) the trie accepts: llguidance's trie holds up to ~2 KB per token;
/// real vocabularies stay under a few hundred bytes.
const MAX_TOKEN_BYTES: usize = 1024;
/// Largest vocabulary the trie accepts (its node ids have 24 bits for the token id).
const MAX_VOCAB: usize = 1 << 22;

/// The JSON formatting every schema gets unless it brings its own `x-guidance`.
fn default_json_options() -> Value {
    json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "})
}

/// A vocabulary's byte strings as llguidance's tokenizer environment.
struct ByteVocab {
    trie: TokTrie,
}

impl TokenizerEnv for ByteVocab {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// Only used by llguidance for forced ("fast-forward") tokens, which this engine never
    /// asks for: the model samples every token under the mask. Greedy over the trie is a
    /// valid (not canonical) tokenization.
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.greedy_tokenize(s)
    }
}

/// GPT-2's byte-level alphabet: the character each byte is written as in a byte-level BPE
/// vocabulary, inverted.
fn byte_level_chars() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut next = 256u32;
    for b in 0..=255u8 {
        let c = b as char;
        if matches!(c, '!'..='~' | '\u{A1}'..='\u{AC}' | '\u{AE}'..='\u{FF}') {
            map.insert(c, b);
        } else if let Some(shifted) = char::from_u32(next) {
            map.insert(shifted, b);
            next += 1;
        }
    }
    map
}

/// How a vocabulary spells bytes, read from the tokenizer's decoder.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Spelling {
    /// Byte-level BPE: every byte has its own character.
    ByteLevel,
    /// Text tokens with `space` for ' ' and `<0xNN>` tokens for raw bytes.
    ByteFallback { space: char },
}

fn spelling(decoder: &Value) -> Option<Spelling> {
    let mut byte_fallback = false;
    let mut space = ' ';
    let mut stack = vec![decoder];
    while let Some(d) = stack.pop() {
        match d.get("type").and_then(Value::as_str) {
            Some("ByteLevel") => return Some(Spelling::ByteLevel),
            Some("ByteFallback") => byte_fallback = true,
            Some("Replace") if d.get("content").and_then(Value::as_str) == Some(" ") => {
                let mut chars = d.pointer("/pattern/String").and_then(Value::as_str).unwrap_or("").chars();
                if let (Some(c), None) = (chars.next(), chars.next()) {
                    space = c;
                }
            }
            Some("Sequence") => stack.extend(d.get("decoders").and_then(Value::as_array).into_iter().flatten()),
            _ => {}
        }
    }
    byte_fallback.then_some(Spelling::ByteFallback { space })
}

/// The bytes of every token id below `vocab` (special added tokens prefixed with the trie's
/// special marker; ids the tokenizer does not know get a special placeholder, so no grammar
/// can produce them).
pub fn token_bytes(tokenizer: &Tokenizer, vocab: usize) -> Result<Vec<Vec<u8>>> {
    let inner = tokenizer.inner();
    let decoder = serde_json::to_value(inner.get_decoder())
        .map_err(|e| Error::Format(format!("tokenizer decoder: {e}")))?;
    let spell = spelling(&decoder).ok_or_else(|| {
        Error::Input(format!(
            "constrained decoding needs a byte-level or byte-fallback tokenizer; this one's decoder is {}",
            decoder.get("type").unwrap_or(&Value::Null)
        ))
    })?;
    let chars = byte_level_chars();
    let added = inner.get_added_tokens_decoder();
    let special = |id: usize, name: &str| {
        let mut b = vec![TokTrie::SPECIAL_TOKEN_MARKER];
        b.extend_from_slice(name.as_bytes());
        if name.is_empty() {
            b.extend_from_slice(format!("<[{id}]>").as_bytes());
        }
        b
    };
    let mut out = Vec::with_capacity(vocab);
    for id in 0..vocab {
        let id32 = id as u32;
        let bytes = if let Some(t) = added.get(&id32) {
            if t.special {
                special(id, &t.content)
            } else {
                t.content.as_bytes().to_vec()
            }
        } else if let Some(name) = inner.id_to_token(id32) {
            match spell {
                Spelling::ByteLevel => name
                    .chars()
                    .map(|c| chars.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| Error::Format(format!("token {id} `{name}` is not byte-level BPE")))?,
                Spelling::ByteFallback { space } => {
                    let hex = name.strip_prefix("<0x").and_then(|h| h.strip_suffix('>'));
                    match hex.filter(|h| h.len() == 2).map(|h| u8::from_str_radix(h, 16)) {
                        Some(Ok(b)) => vec![b],
                        _ => name.replace(space, " ").into_bytes(),
                    }
                }
            }
        } else {
            special(id, "")
        };
        if bytes.len() > MAX_TOKEN_BYTES {
            return Err(Error::Format(format!("token {id} is {} bytes long (at most {MAX_TOKEN_BYTES})", bytes.len())));
        }
        out.push(bytes);
    }
    Ok(out)
}

/// A model's vocabulary prepared for constrained decoding: the token trie and llguidance's
/// parser factory (with its precomputed slices), built once and shared by every request.
pub struct ConstraintVocab {
    factory: ParserFactory,
    vocab: usize,
    tool_call_start: Option<u32>,
    tool_call_end: Option<u32>,
}

impl std::fmt::Debug for ConstraintVocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintVocab").field("vocab", &self.vocab).finish()
    }
}

impl ConstraintVocab {
    /// From each token's bytes (see [`token_bytes`]), the ids that end a turn, and the
    /// tool-call marker ids.
    pub fn new(words: Vec<Vec<u8>>, eos_ids: &[u32], tool_call_start: Option<u32>, tool_call_end: Option<u32>) -> Result<Self> {
        let vocab = words.len();
        if vocab == 0 || vocab > MAX_VOCAB {
            return Err(Error::Format(format!("a vocabulary of {vocab} tokens cannot be constrained (1..={MAX_VOCAB})")));
        }
        if let Some(id) = words.iter().position(|w| w.len() > MAX_TOKEN_BYTES) {
            return Err(Error::Format(format!("token {id} is longer than {MAX_TOKEN_BYTES} bytes")));
        }
        let eos: Vec<u32> = eos_ids.iter().copied().filter(|&id| (id as usize) < vocab).collect();
        // Without an end-of-sequence id llguidance still needs one to name; an id whose bytes
        // no grammar can produce would do, but every real model has one.
        let first_eos = *eos.first().ok_or_else(|| Error::Input("constrained decoding needs an end-of-sequence token id".into()))?;
        let info = TokRxInfo::new(vocab as u32, first_eos);
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eos);
        let env: TokEnv = Arc::new(ByteVocab { trie });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| Error::Input(format!("constrained decoding: {e}")))?;
        // Warnings to stderr would mix into a CLI's output; errors come back as values.
        factory.quiet();
        // Errors name the failing schema part, not the whole grammar and token history.
        factory.limits_mut().verbose_errors = false;
        Ok(ConstraintVocab { factory, vocab, tool_call_start, tool_call_end })
    }

    /// The vocabulary of a chat model's tokenizer, `vocab` ids long (the model's logits).
    pub fn from_tokenizer(tokenizer: &Tokenizer, vocab: usize, eos_ids: &[u32], tool_call_start: Option<u32>, tool_call_end: Option<u32>) -> Result<Self> {
        let words = token_bytes(tokenizer, vocab.max(tokenizer.vocab_size()))?;
        Self::new(words, eos_ids, tool_call_start, tool_call_end)
    }

    /// Ids in the vocabulary (the length of every mask).
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// A matcher for a Lark grammar (llguidance's dialect, `%json {...}` for schemas).
    fn matcher(&self, lark: String) -> Result<Matcher> {
        let parser = self
            .factory
            .create_parser(TopLevelGrammar::from_lark(lark))
            .map_err(|e| Error::Input(format!("json_schema: {}", first_line(&e.to_string()))))?;
        Ok(Matcher::new(Ok(parser)))
    }

    /// A constraint to JSON valid against `schema` (the whole answer).
    pub fn json_schema(&self, schema: &Value) -> Result<Constraint> {
        let lark = format!("start: {}\n", json_rule(schema)?);
        Ok(Constraint::grammar(self.matcher(lark)?, self.vocab))
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// The largest integer every JSON reader keeps exactly (I-JSON, RFC 7493): the default bound
/// of numbers a schema leaves unbounded.
const SAFE_INTEGER: i64 = (1 << 53) - 1;
/// The default resolution of `number`s without `multipleOf`: at most 6 decimals. (The regex
/// engine's decimal automaton multiplies a digit by 10^decimals in a u32, so 8 is its limit.)
const NUMBER_STEP: f64 = 1e-6;

/// Narrows a schema to a subset of its language that a weak model cannot make endless, as
/// llama.cpp's grammars do (its numbers have at most 16 digits per part, its objects no keys
/// beyond `properties` unless `additionalProperties` asks for them). Every answer of the
/// narrowed schema is valid against the original:
/// - `integer`/`number` without bounds get `minimum`/`maximum` ±(2^53-1); `number`s without
///   `multipleOf` get `multipleOf: 1e-6` (no exponents, at most 6 decimals);
/// - objects that list `properties` but say nothing of `additionalProperties` (nor
///   `patternProperties`) get `additionalProperties: false`, unless the document uses `allOf`
///   (where closing one branch would forbid the other branch's keys).
fn narrow(schema: &mut Value, close_objects: bool) -> Result<()> {
    let Value::Object(m) = schema else { return Ok(()) };
    for key in ["properties", "patternProperties", "$defs", "definitions"] {
        if let Some(Value::Object(props)) = m.get_mut(key) {
            for v in props.values_mut() {
                narrow(v, close_objects)?;
            }
        }
    }
    for key in ["additionalProperties", "items", "additionalItems", "not", "if", "then", "else", "contains", "propertyNames"] {
        match m.get_mut(key) {
            Some(Value::Array(list)) => {
                for v in list {
                    narrow(v, close_objects)?;
                }
            }
            Some(v) => narrow(v, close_objects)?,
            None => {}
        }
    }
    for key in ["prefixItems", "anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(list)) = m.get_mut(key) {
            for v in list {
                narrow(v, close_objects)?;
            }
        }
    }
    let types: Vec<&str> = match m.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let numeric = types.iter().any(|t| matches!(*t, "integer" | "number"));
    let real = types.contains(&"number");
    if numeric {
        if !m.contains_key("minimum") && !m.contains_key("exclusiveMinimum") {
            m.insert("minimum".into(), json!(-SAFE_INTEGER));
        }
        if !m.contains_key("maximum") && !m.contains_key("exclusiveMaximum") {
            m.insert("maximum".into(), json!(SAFE_INTEGER));
        }
        if real && !m.contains_key("multipleOf") {
            m.insert("multipleOf".into(), json!(NUMBER_STEP));
        }
    }
    if let Some(step) = m.get("multipleOf").and_then(Value::as_f64) {
        // Finer steps overflow the regex engine's automaton (9 * 10^decimals in a u32).
        let scaled = step * 1e8;
        if step > 0.0 && (scaled - scaled.round()).abs() > 1e-6 * scaled.max(1.0) {
            return Err(Error::Input(format!("json_schema: multipleOf {step} has more than 8 decimals, which is not supported")));
        }
    }
    if close_objects && m.contains_key("properties") && !m.contains_key("additionalProperties") && !m.contains_key("patternProperties") {
        m.insert("additionalProperties".into(), Value::Bool(false));
    }
    Ok(())
}

fn uses_all_of(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("allOf") || m.values().any(uses_all_of),
        Value::Array(a) => a.iter().any(uses_all_of),
        _ => false,
    }
}

/// `%json {schema}`: the schema [`narrow`]ed, with the default formatting unless it brings
/// its own `x-guidance`.
fn json_rule(schema: &Value) -> Result<String> {
    let mut narrowed = schema.clone();
    narrow(&mut narrowed, !uses_all_of(schema))?;
    let mut schema = match narrowed {
        Value::Object(m) => m,
        Value::Bool(true) => Map::new(),
        _ => return Err(Error::Input("json_schema must be a JSON Schema object".into())),
    };
    if !schema.contains_key("x-guidance") {
        schema.insert("x-guidance".into(), default_json_options());
    }
    let text = serde_json::to_string(&Value::Object(schema)).map_err(|e| Error::Input(format!("json_schema: {e}")))?;
    Ok(format!("%json {text}"))
}

/// Prefixes every local `$ref` (`#...`) under `v` with `at`, so a schema moved to the JSON
/// pointer `at` of a larger document still points at its own parts.
fn rebase_refs(v: &mut Value, at: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x {
                    Value::String(r) if k == "$ref" && r.starts_with('#') => {
                        let rest = r[1..].trim_start_matches('/');
                        *r = if rest.is_empty() { format!("#{at}") } else { format!("#{at}/{rest}") };
                    }
                    _ => rebase_refs(x, at),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rebase_refs(x, at)),
        _ => {}
    }
}

/// The schema of one call object `{"name": name, "arguments": parameters}`.
fn call_schema(name: &str, parameters: Option<&Value>) -> Result<Value> {
    let mut args = match parameters {
        None | Some(Value::Null) => json!({"type": "object"}),
        Some(Value::Object(p)) if p.is_empty() => json!({"type": "object"}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(Error::Input(format!("tool `{name}`: `parameters` must be a JSON schema object"))),
    };
    rebase_refs(&mut args, "/properties/arguments");
    Ok(json!({
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": args},
        "required": ["name", "arguments"],
        "additionalProperties": false,
    }))
}

/// What a request needs from the decoder, if anything (see the module documentation).
pub fn for_request(vocab: impl FnOnce() -> Result<Arc<ConstraintVocab>>, request: &Request, declared: &[String], tool_call_start: Option<u32>) -> Result<Option<Constraint>> {
    let choice = request.tool_choice()?;
    let schema = request.options.json_schema.as_ref().filter(|s| !s.is_null());
    let forced: Option<Vec<&String>> = match &choice {
        ToolChoice::Required => Some(declared.iter().collect()),
        ToolChoice::Function(name) => Some(declared.iter().filter(|d| *d == name).take(1).collect()),
        ToolChoice::Auto | ToolChoice::None => None,
    };
    if schema.is_none() && forced.is_none() {
        return Ok(match (choice, tool_call_start) {
            (ToolChoice::None, Some(id)) => Some(Constraint::forbid(vec![id])),
            _ => None,
        });
    }
    let vocab = vocab()?;
    let tool_rule = |names: &[&String], many: bool| -> Result<String> {
        // Between the tool-call tokens, or (a model without them) the JSON convention of
        // crate::chat::json_calls, written as its instructions show it.
        let (open, close) = match (vocab.tool_call_start, vocab.tool_call_end) {
            (Some(start), Some(end)) => (format!("<[{start}]> \"[\""), format!("\"]\" <[{end}]>")),
            _ => (r#""{\"tool_calls\": [""#.to_string(), r#""]}""#.to_string()),
        };
        let mut rules = String::new();
        let mut alts = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let schema = call_schema(name, request.tool_parameters(name))?;
            rules.push_str(&format!("call_{i}: {}\n", json_rule(&schema)?));
            alts.push(format!("call_{i}"));
        }
        let list = if many { "call (\", \" call)*" } else { "call" };
        Ok(format!("tools: {open} {list} {close}\ncall: {}\n{rules}", alts.join(" | ")))
    };
    let parallel = request.parallel_tool_calls.unwrap_or(false);
    let lark = match (&choice, forced, schema) {
        (ToolChoice::Function(_), Some(names), _) => format!("start: tools\n{}", tool_rule(&names, false)?),
        (_, Some(names), _) => format!("start: tools\n{}", tool_rule(&names, parallel)?),
        // Auto with tools: the JSON answer or calls.
        (ToolChoice::Auto, None, Some(schema)) if !declared.is_empty() => {
            let names: Vec<&String> = declared.iter().collect();
            format!("start: answer | tools\nanswer: {}\n{}", json_rule(schema)?, tool_rule(&names, parallel)?)
        }
        (_, None, Some(schema)) => format!("start: {}\n", json_rule(schema)?),
        (_, None, None) => return Ok(None),
    };
    Ok(Some(Constraint::grammar(vocab.matcher(lark)?, vocab.vocab)))
}

/// The constraint of one request: a grammar's matcher, or just ids that may never be sampled.
pub struct Constraint {
    matcher: Option<Matcher>,
    forbidden: Vec<u32>,
    vocab: usize,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint").field("grammar", &self.matcher.is_some()).field("forbidden", &self.forbidden).finish()
    }
}

fn grammar_error(m: &Matcher, what: &str) -> Error {
    Error::Input(format!("constrained decoding: {what}: {}", m.get_error().unwrap_or_else(|| "the grammar stopped".into())))
}

impl Constraint {
    fn grammar(matcher: Matcher, vocab: usize) -> Self {
        Constraint { matcher: Some(matcher), forbidden: Vec::new(), vocab }
    }

    fn forbid(ids: Vec<u32>) -> Self {
        Constraint { matcher: None, forbidden: ids, vocab: 0 }
    }

    /// The allowed ids of the next step (`None` when only fixed ids are forbidden).
    pub fn mask(&mut self) -> Result<Option<SimpleVob>> {
        let Some(m) = &mut self.matcher else { return Ok(None) };
        m.compute_mask().map(Some).map_err(|e| Error::Input(format!("constrained decoding: {}", first_line(&e.to_string()))))
    }

    /// Sets every logit the constraint forbids to `-inf` (ids past the vocabulary included).
    pub fn apply(&mut self, logits: &mut [f32]) -> Result<()> {
        for &id in &self.forbidden {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        let Some(mask) = self.mask()? else { return Ok(()) };
        let n = logits.len().min(self.vocab);
        let words = mask.as_slice();
        let mut any = false;
        for (w, chunk) in logits[..n].chunks_mut(32).enumerate() {
            let bits = words.get(w).copied().unwrap_or(0);
            if bits == u32::MAX {
                any = true;
                continue;
            }
            for (b, l) in chunk.iter_mut().enumerate() {
                if bits & (1 << b) == 0 {
                    *l = f32::NEG_INFINITY;
                } else {
                    any = true;
                }
            }
        }
        logits[n..].fill(f32::NEG_INFINITY);
        if !any {
            return Err(Error::Input("constrained decoding: the grammar allows no token here".into()));
        }
        Ok(())
    }

    /// Feeds the sampled id to the grammar (end-of-sequence ids end the request before this).
    pub fn commit(&mut self, id: u32) -> Result<()> {
        let Some(m) = &mut self.matcher else { return Ok(()) };
        if m.consume_token(id).is_err() {
            return Err(grammar_error(m, &format!("token {id} was refused")));
        }
        Ok(())
    }

    /// True when the grammar is complete and nothing may follow: generation ends here.
    pub fn is_complete(&self) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_stopped() && !m.is_error())
    }
}

// Hosts share one ChatModel (and its ConstraintVocab) between threads and run sessions, with
// their constraints, on worker threads.
const _: () = {
    fn shared<T: Send + Sync>() {}
    fn movable<T: Send>() {}
    #[allow(dead_code)]
    fn check() {
        shared::<ConstraintVocab>();
        shared::<crate::session::ChatModel>();
        movable::<Constraint>();
        movable::<crate::session::Session>();
        movable::<crate::session::Completion>();
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_bounds_numbers_and_closes_objects() {
        let mut s = json!({"type": "object", "properties": {
            "n": {"type": "number"}, "i": {"type": ["integer", "null"], "minimum": 3},
            "o": {"type": "object", "properties": {"x": {"type": "string"}}},
            "free": {"type": "object", "additionalProperties": true, "properties": {}}},
            "$defs": {"d": {"type": "number", "exclusiveMaximum": 1, "multipleOf": 0.25}}});
        narrow(&mut s, true).unwrap();
        assert_eq!(s["properties"]["n"], json!({"type": "number", "minimum": -SAFE_INTEGER, "maximum": SAFE_INTEGER, "multipleOf": NUMBER_STEP}));
        assert_eq!(s["properties"]["i"], json!({"type": ["integer", "null"], "minimum": 3, "maximum": SAFE_INTEGER}));
        assert_eq!(s["properties"]["o"]["additionalProperties"], json!(false));
        assert_eq!(s["properties"]["free"]["additionalProperties"], json!(true));
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(s["$defs"]["d"], json!({"type": "number", "exclusiveMaximum": 1, "multipleOf": 0.25, "minimum": -SAFE_INTEGER}));
        // Under allOf, objects stay open (closing one branch would forbid the other's keys).
        let all = json!({"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]});
        let mut s = all.clone();
        narrow(&mut s, !uses_all_of(&all)).unwrap();
        assert_eq!(s, all);
        assert!(narrow(&mut json!({"type": "number", "multipleOf": 1e-9}), true).is_err());
        assert!(narrow(&mut json!({"type": "number", "multipleOf": 0.00000001}), true).is_ok());
    }

    #[test]
    fn refs_follow_a_moved_schema() {
        let mut p = json!({"properties": {"a": {"$ref": "#/$defs/x"}, "b": {"items": {"$ref": "#"}}, "c": {"$ref": "https://x/y"}}});
        rebase_refs(&mut p, "/properties/arguments");
        assert_eq!(p["properties"]["a"]["$ref"], json!("#/properties/arguments/$defs/x"));
        assert_eq!(p["properties"]["b"]["items"]["$ref"], json!("#/properties/arguments"));
        assert_eq!(p["properties"]["c"]["$ref"], json!("https://x/y"));
    }

    #[test]
    fn decoders_tell_how_bytes_are_spelled() {
        assert_eq!(spelling(&json!({"type": "ByteLevel"})), Some(Spelling::ByteLevel));
        let seq = json!({"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                                                          {"type": "ByteFallback"}, {"type": "Fuse"}]});
        assert_eq!(spelling(&seq), Some(Spelling::ByteFallback { space: '▁' }));
        assert_eq!(spelling(&json!({"type": "WordPiece"})), None);
        assert_eq!(spelling(&Value::Null), None);
        let map = byte_level_chars();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'A'], b'A');
    }

    #[test]
    fn vocabularies_are_checked() {
        assert!(ConstraintVocab::new(Vec::new(), &[0], None, None).is_err());
        assert!(ConstraintVocab::new(vec![b"a".to_vec(); 4], &[], None, None).is_err());
        assert!(ConstraintVocab::new(vec![vec![b'x'; MAX_TOKEN_BYTES + 1], b"y".to_vec()], &[1], None, None).is_err());
        // A tiny vocabulary: "a", "b", "ab", "\"", EOS.
        let words = vec![b"a".to_vec(), b"b".to_vec(), b"ab".to_vec(), b"\"".to_vec(), b"\xff<eos>".to_vec()];
        let v = ConstraintVocab::new(words, &[4, 99], None, None).unwrap();
        let mut k = v.json_schema(&json!({"enum": ["ab", "b"]})).unwrap();
        let mut logits = vec![0.0f32; 6];
        k.apply(&mut logits).unwrap();
        // Only the opening quote, and nothing past the vocabulary.
        assert_eq!(logits.iter().map(|l| l.is_finite()).collect::<Vec<_>>(), [false, false, false, true, false, false]);
        k.commit(3).unwrap();
        let mut logits = vec![0.0f32; 5];
        k.apply(&mut logits).unwrap();
        assert_eq!(logits.iter().map(|l| l.is_finite()).collect::<Vec<_>>(), [true, true, true, false, false]);
        k.commit(2).unwrap();
        k.commit(3).unwrap();
        assert!(k.is_complete());
        // A token the mask did not allow is an error, not a panic.
        let mut k = v.json_schema(&json!({"const": "a"})).unwrap();
        assert!(k.commit(1).is_err());
    }

    /// One token per printable ASCII byte (id = byte - 0x20), then EOS; no tool-call tokens.
    fn ascii_vocab() -> Arc<ConstraintVocab> {
        let mut words: Vec<Vec<u8>> = (0x20u8..0x7f).map(|b| vec![b]).collect();
        words.push(b"\xff<eos>".to_vec());
        let eos = (words.len() - 1) as u32;
        Arc::new(ConstraintVocab::new(words, &[eos], None, None).unwrap())
    }

    #[test]
    fn forced_calls_without_markers_use_the_json_convention() {
        let v = ascii_vocab();
        let r: Request = serde_json::from_value(json!({
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}],
            "tool_choice": "required"
        }))
        .unwrap();
        let declared = r.validate().unwrap();
        let mut k = for_request(|| Ok(Arc::clone(&v)), &r, &declared, None).unwrap().expect("a grammar");
        let id = |c: u8| u32::from(c - 0x20);
        let mut logits = vec![0.0f32; 96];
        k.apply(&mut logits).unwrap();
        let allowed: Vec<usize> = (0..96).filter(|&i| logits[i].is_finite()).collect();
        assert_eq!(allowed, vec![id(b'{') as usize], "only the opening brace first");
        for &c in br#"{"tool_calls": [{"name": "f", "arguments": {"a": 7}}]}"# {
            k.commit(id(c)).unwrap_or_else(|e| panic!("`{}` refused: {e}", c as char));
        }
        assert!(k.is_complete());
    }

    #[test]
    fn required_allows_a_second_call_only_with_parallel_tool_calls() {
        let v = ascii_vocab();
        let id = |c: u8| u32::from(c - 0x20);
        for parallel in [None, Some(false), Some(true)] {
            let r: Request = serde_json::from_value(json!({
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer", "maximum": 9}}, "required": ["a"]}}],
                "tool_choice": "required", "parallel_tool_calls": parallel
            }))
            .unwrap();
            let declared = r.validate().unwrap();
            let mut k = for_request(|| Ok(Arc::clone(&v)), &r, &declared, None).unwrap().expect("a grammar");
            for &c in br#"{"tool_calls": [{"name": "f", "arguments": {"a": 7}}"# {
                k.commit(id(c)).unwrap_or_else(|e| panic!("`{}` refused: {e}", c as char));
            }
            let mut logits = vec![0.0f32; 96];
            k.apply(&mut logits).unwrap();
            let allowed: Vec<u8> = (0..95u8).filter(|&i| logits[usize::from(i)].is_finite()).map(|i| i + 0x20).collect();
            let expected: &[u8] = if parallel == Some(true) { b",]" } else { b"]" };
            assert_eq!(allowed, expected, "parallel {parallel:?}: {:?}", String::from_utf8_lossy(&allowed));
        }
    }
}
