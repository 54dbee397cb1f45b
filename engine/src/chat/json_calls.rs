//! Tool calls for models that have no tool-call tokens: the engine's JSON convention.
//!
//! LFM2 marks its calls with `<|tool_call_start|>`/`<|tool_call_end|>` tokens and its template
//! lists the tools. A model without those tokens whose template knows nothing of tools (SmolLM2,
//! most small Llama-family chat models) still follows instructions, so the engine uses one plain
//! convention for them, as llama.cpp's generic tool format does:
//!
//! - **Prompt**: a system message lists the tools (one JSON object per line: name, description,
//!   parameters) and asks for calls as a single JSON object and nothing else:
//!   `{"tool_calls": [{"name": "f", "arguments": {...}}]}` ([`instructions`]). It is appended to
//!   the request's own system message, or is the first message when there is none.
//! - **History**: an assistant turn's calls become that same JSON object as its content
//!   ([`calls_content`]); a `tool` message becomes a `user` message whose content is
//!   `{"tool_response": {"name": ..., "content": ...}}` ([`tool_response_message`]), since such
//!   templates have no tool role. A tool message without `name` (OpenAI's form: `tool_call_id`
//!   only) takes the name of the earlier call with that id.
//! - **Output**: [`JsonCallScanner`] watches the start of the answer. Text that begins with
//!   `{"tool_calls"` (whitespace allowed before and inside the brace) is a call block: it is held
//!   back from the response until the JSON object closes, then parsed like LFM2's JSON calls
//!   (see [`super::tool_calls`]). Any other answer streams as text, unchanged.
//! - **Forced calls** (`tool_choice` required or named) are a grammar over the same object
//!   (see `crate::constrain`).

use serde_json::{json, Map, Value};

/// The start of a call block, whitespace aside (`{` then the key).
const CALL_KEY: &str = "\"tool_calls\"";

/// serde_json's compact form with Python's `json.dumps` separators (`", "` and `": "`): how the
/// instructions show the format and how a forced call's grammar writes it.
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// `value` as JSON text with [`Spaced`] separators.
fn spaced(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Spaced);
    // Writing a Value into a Vec cannot fail, and serde_json writes UTF-8.
    serde::Serialize::serialize(value, &mut ser).expect("serializing a JSON value");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// The system text that lists `tools` (OpenAI's `{"type": "function", "function": {...}}` or
/// the bare function object) and states the call format.
pub fn instructions(tools: &[Value]) -> String {
    let mut text = String::from("You can call these tools:\n");
    for t in tools {
        let f = t.get("function").filter(|f| f.is_object()).unwrap_or(t);
        let mut entry = Map::new();
        for key in ["name", "description", "parameters"] {
            if let Some(v) = f.get(key).filter(|v| !v.is_null()) {
                entry.insert(key.into(), v.clone());
            }
        }
        text.push_str(&spaced(&Value::Object(entry)));
        text.push('\n');
    }
    text.push_str(
        "To call tools, reply with only this JSON object and nothing else: \
         {\"tool_calls\": [{\"name\": \"<tool name>\", \"arguments\": {<the arguments as JSON>}}]}\n\
         Otherwise, answer normally.",
    );
    text
}

/// The content of an assistant turn that made `calls` (normalized calls, OpenAI form with
/// object arguments): the JSON object the model is asked to write.
pub fn calls_content(calls: &[Value]) -> String {
    let list: Vec<Value> = calls
        .iter()
        .map(|c| {
            let f = c.get("function").unwrap_or(c);
            json!({"name": f.get("name").cloned().unwrap_or(Value::Null), "arguments": f.get("arguments").cloned().unwrap_or(json!({}))})
        })
        .collect();
    spaced(&json!({ "tool_calls": list }))
}

/// A `tool` message (role, content, optional `name` / `tool_call_id`) as a `user` message.
pub fn tool_response_message(message: &Map<String, Value>) -> Value {
    let mut response = Map::new();
    if let Some(name) = message.get("name").filter(|v| v.is_string()) {
        response.insert("name".into(), name.clone());
    }
    response.insert("content".into(), message.get("content").cloned().unwrap_or(Value::Null));
    json!({"role": "user", "content": spaced(&json!({ "tool_response": response }))})
}

/// Adds [`instructions`] to the template's messages: to the first message when it is a system
/// message with string content, else as a new first message.
pub fn add_instructions(messages: &mut Vec<Value>, tools: &[Value]) {
    let text = instructions(tools);
    if let Some(Value::Object(first)) = messages.first_mut() {
        if first.get("role").and_then(Value::as_str) == Some("system") {
            if let Some(Value::String(content)) = first.get_mut("content") {
                content.push_str("\n\n");
                content.push_str(&text);
                return;
            }
        }
    }
    messages.insert(0, json!({"role": "system", "content": text}));
}

/// Where the scanner is in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace, or a prefix of `{"tool_calls"`, so far: held back.
    Undecided,
    /// Inside a call block: held until its JSON object closes.
    Call,
    /// Plain text (or after a call block): passed through.
    Text,
}

/// What [`JsonCallScanner::push`] made of a piece of text.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Scanned {
    /// Text of the answer to pass on (held-back text once it is known to be text).
    pub text: String,
    /// The piece belongs to a call block.
    pub in_call: bool,
    /// A whole call block, when its object closed with this piece.
    pub call: Option<String>,
}

/// Finds a `{"tool_calls": [...]}` block at the start of an answer (see the module docs).
#[derive(Debug, Clone)]
pub struct JsonCallScanner {
    state: State,
    held: String,
}

impl Default for JsonCallScanner {
    fn default() -> Self {
        JsonCallScanner { state: State::Undecided, held: String::new() }
    }
}

/// Whether `text` (held, leading whitespace included) starts a call block: `Some(true)` yes,
/// `Some(false)` no, `None` not yet known.
fn starts_call(text: &str) -> Option<bool> {
    let t = text.trim_start();
    if t.is_empty() {
        return None;
    }
    let Some(rest) = t.strip_prefix('{') else { return Some(false) };
    let rest = rest.trim_start();
    if rest.len() >= CALL_KEY.len() {
        Some(rest.starts_with(CALL_KEY))
    } else if CALL_KEY.starts_with(rest) {
        None
    } else {
        Some(false)
    }
}

/// The byte length of the first JSON value in `text`, once it is complete.
fn complete_value_len(text: &str) -> Option<usize> {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    match values.next() {
        Some(Ok(_)) => Some(values.byte_offset()),
        _ => None,
    }
}

impl JsonCallScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next piece of decoded answer text.
    pub fn push(&mut self, piece: &str) -> Scanned {
        match self.state {
            State::Text => Scanned { text: piece.to_string(), ..Scanned::default() },
            State::Undecided => {
                self.held.push_str(piece);
                match starts_call(&self.held) {
                    None => Scanned::default(),
                    Some(false) => {
                        self.state = State::Text;
                        Scanned { text: std::mem::take(&mut self.held), ..Scanned::default() }
                    }
                    Some(true) => {
                        self.state = State::Call;
                        self.after_call_piece(piece)
                    }
                }
            }
            State::Call => {
                self.held.push_str(piece);
                self.after_call_piece(piece)
            }
        }
    }

    /// In a call block, after `piece` was added: ends it when its object is complete (text
    /// after it is passed on).
    fn after_call_piece(&mut self, piece: &str) -> Scanned {
        // Only a closing brace can complete the object (possibly with more text in the same
        // piece, `}.`): without one in the new piece, skip the parse.
        if !piece.contains('}') {
            return Scanned { in_call: true, ..Scanned::default() };
        }
        match complete_value_len(&self.held) {
            None => Scanned { in_call: true, ..Scanned::default() },
            Some(end) => {
                let rest = self.held.split_off(end);
                self.state = State::Text;
                Scanned { text: rest, in_call: true, call: Some(std::mem::take(&mut self.held)) }
            }
        }
    }

    /// Ends the answer: held text that never became a call block (to pass on), or the text of
    /// a call block the model left open (`Err`).
    pub fn finish(&mut self) -> Result<String, String> {
        let held = std::mem::take(&mut self.held);
        match std::mem::replace(&mut self.state, State::Text) {
            State::Call => Err(held),
            _ => Ok(held),
        }
    }
}

/// `text` for an error message: at most 200 characters, `...` when cut.
pub fn shorten(text: &str) -> String {
    let mut shown: String = text.chars().take(200).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    shown
}

/// The calls of a closed block, in the text form [`super::tool_calls::parse_tool_calls`] reads
/// (`[{"name": ..., "arguments": ...}, ...]`), or why the block is not a call list.
pub fn call_list(block: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(block.trim()).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("tool_calls") {
        Some(list @ Value::Array(_)) => Ok(list.to_string()),
        Some(_) => Err("`tool_calls` must be a list of calls".into()),
        None => Err("no `tool_calls` key".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any answer, cut into any pieces, never panics and loses nothing: the text passed on,
        /// the call blocks and what finish() returns are the answer, in order.
        #[test]
        fn nothing_is_lost_or_panics(pieces in proptest::collection::vec("[ {}\\[\\]\"a-z_:,0-9é🌵]{0,12}", 0..12)) {
            let mut s = JsonCallScanner::new();
            let mut seen = String::new();
            for p in &pieces {
                let out = s.push(p);
                if let Some(call) = out.call {
                    prop_assert!(call.trim_start().starts_with('{'), "a call block starts with a brace: {:?}", call);
                    seen.push_str(&call);
                }
                seen.push_str(&out.text);
            }
            match s.finish() {
                Ok(held) | Err(held) => seen.push_str(&held),
            }
            prop_assert_eq!(seen, pieces.concat());
        }

        /// A call block cut anywhere (on character boundaries) is found whole.
        #[test]
        fn call_blocks_cut_anywhere_are_found(cuts in proptest::collection::vec(0usize..80, 0..8), tail in "[ a-z]{0,5}") {
            let block = r#" { "tool_calls": [{"name": "f", "arguments": {"q": "}{ é"}}]}"#;
            let answer = format!("{block}{tail}");
            let mut bounds: Vec<usize> = cuts.into_iter().filter(|&c| answer.is_char_boundary(c) && c < answer.len()).collect();
            bounds.extend([0, answer.len()]);
            bounds.sort_unstable();
            bounds.dedup();
            let mut s = JsonCallScanner::new();
            let (mut calls, mut text) = (Vec::new(), String::new());
            for w in bounds.windows(2) {
                let out = s.push(&answer[w[0]..w[1]]);
                calls.extend(out.call);
                text.push_str(&out.text);
            }
            text.push_str(&s.finish().unwrap());
            prop_assert_eq!(calls, vec![block.to_string()]);
            prop_assert_eq!(text, tail);
        }
    }

    fn scan(pieces: &[&str]) -> (String, Vec<String>, Result<String, String>) {
        let mut s = JsonCallScanner::new();
        let (mut text, mut calls) = (String::new(), Vec::new());
        for p in pieces {
            let out = s.push(p);
            text.push_str(&out.text);
            calls.extend(out.call);
        }
        (text, calls, s.finish())
    }

    #[test]
    fn plain_answers_pass_through_unchanged() {
        assert_eq!(scan(&["Hello", ", world"]), ("Hello, world".into(), vec![], Ok(String::new())));
        // A JSON answer that is not a call block is text too.
        assert_eq!(scan(&["{\"", "answer\": 1}"]), ("{\"answer\": 1}".into(), vec![], Ok(String::new())));
        assert_eq!(scan(&["  ", "{", " \"tool", "s\": []}"]).0, "  { \"tools\": []}");
        // Whitespace alone is held until the answer ends, then released.
        assert_eq!(scan(&[" ", "\n"]), (String::new(), vec![], Ok(" \n".into())));
    }

    #[test]
    fn call_blocks_are_held_and_cut_at_their_closing_brace() {
        let (text, calls, end) = scan(&[" {", "\"tool_calls\": [{\"name\": \"f\", \"arguments\": {\"a\": \"}\"}", "}]}", "\n"]);
        assert_eq!(calls, vec![" {\"tool_calls\": [{\"name\": \"f\", \"arguments\": {\"a\": \"}\"}}]}".to_string()]);
        assert_eq!(text, "\n");
        assert_eq!(end, Ok(String::new()));
        assert_eq!(call_list(&calls[0]).unwrap(), r#"[{"name":"f","arguments":{"a":"}"}}]"#);
        // Left open: the block comes back as an error.
        let (_, calls, end) = scan(&["{ \"tool_calls\": [{\"name\""]);
        assert!(calls.is_empty());
        assert_eq!(end, Err("{ \"tool_calls\": [{\"name\"".into()));
    }

    #[test]
    fn call_lists_and_history() {
        assert!(call_list("{\"tool_calls\": 3}").is_err());
        assert!(call_list("{\"tool_calls\": [] ").is_err());
        let calls = vec![json!({"type": "function", "function": {"name": "f", "arguments": {"a": 1}}})];
        assert_eq!(calls_content(&calls), r#"{"tool_calls": [{"name": "f", "arguments": {"a": 1}}]}"#);
        let tool = json!({"role": "tool", "name": "f", "content": "sunny"});
        assert_eq!(
            tool_response_message(tool.as_object().unwrap()),
            json!({"role": "user", "content": r#"{"tool_response": {"name": "f", "content": "sunny"}}"#})
        );
        let tools = vec![json!({"type": "function", "function": {"name": "f", "description": "does f", "parameters": {"type": "object"}}})];
        let mut messages = vec![json!({"role": "user", "content": "hi"})];
        add_instructions(&mut messages, &tools);
        assert_eq!(messages[0]["role"], "system");
        let text = messages[0]["content"].as_str().unwrap();
        assert!(text.contains(r#"{"name": "f", "description": "does f", "parameters": {"type": "object"}}"#), "{text}");
        let mut messages = vec![json!({"role": "system", "content": "Be brief."}), json!({"role": "user", "content": "hi"})];
        add_instructions(&mut messages, &tools);
        assert_eq!(messages.len(), 2);
        assert!(messages[0]["content"].as_str().unwrap().starts_with("Be brief.\n\nYou can call these tools:"));
    }
}
