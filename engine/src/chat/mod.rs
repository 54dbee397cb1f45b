//! Chat: the model's chat template, the messages it is given, and tool calls in its output.
//!
//! - [`template`]: the Jinja template rendered as transformers renders it.
//! - [`pyfmt`]: Python's `json.dumps` / `str` for the template's `tojson` and output.
//! - [`tool_calls`]: the parser of LFM2's Pythonic and JSON tool calls.
//! - [`json_calls`]: the JSON tool-call convention for models without tool-call tokens.
//! - [`template_messages`]: request messages as the template sees them.
//! - [`LFM2_TEMPLATE`]: the template used when a model file has none (LFM2's own, verbatim).

pub mod json_calls;
pub mod pyfmt;
pub mod template;
pub mod tool_calls;

pub use template::{ChatTemplate, TemplateVars};
pub use tool_calls::{parse_and_check, parse_tool_calls, ToolCallOutcome};

use serde_json::{Map, Value};

use crate::api::{normalize_tool_call, Message};
use crate::error::{Error, Result};

/// LFM2's chat template (LFM2-350M/700M/1.2B, tokenizer_config.json), byte for byte; the
/// fallback for model files that carry none. tests/fixtures/chat/templates/lfm2.jinja is the same
/// file and says where it comes from.
pub const LFM2_TEMPLATE: &str = include_str!("lfm2.jinja");

/// `<|tool_call_start|>` / `<|tool_call_end|>`: LFM2's tool-call markers.
pub const TOOL_CALL_START: &str = "<|tool_call_start|>";
pub const TOOL_CALL_END: &str = "<|tool_call_end|>";

/// How a model writes tool calls in its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// Between the `<|tool_call_start|>` / `<|tool_call_end|>` tokens (LFM2).
    Markers,
    /// A `{"tool_calls": [...]}` JSON answer, for models without those tokens ([`json_calls`]).
    Json,
}

/// [`template_messages_for`] a model with LFM2's tool-call markers.
pub fn template_messages(messages: &[Message], template_reads_tool_calls: bool) -> Result<Vec<Value>> {
    template_messages_for(messages, template_reads_tool_calls, ToolFormat::Markers)
}

/// The messages a template is given for `messages`, as transformers would receive them from
/// an app: null fields dropped; tool calls in the OpenAI form with object arguments; reasoning
/// aliased as transformers does (`thinking`, `reasoning_content`). When the template never reads
/// `tool_calls` (LFM2's original template, most templates without tool support), an assistant
/// turn's calls are written at the start of its content as the model itself emits them, so the
/// history keeps them: `<|tool_call_start|>[f(a=1)]<|tool_call_end|>` ([`ToolFormat::Markers`])
/// or `{"tool_calls": [...]}` ([`ToolFormat::Json`]; `tool` messages then become `user` messages
/// carrying `{"tool_response": ...}`, see [`json_calls`]).
pub fn template_messages_for(messages: &[Message], template_reads_tool_calls: bool, format: ToolFormat) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(messages.len());
    // Tool-call ids seen so far and their function names: an OpenAI `tool` message names its
    // call by `tool_call_id` only, while the JSON convention's tool response carries the name.
    let mut call_names: Vec<(Value, Value)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let mut obj = Map::new();
        obj.insert("role".into(), Value::String(m.role.clone()));
        if let Some(c) = m.content.as_ref().filter(|c| !c.is_null()) {
            obj.insert("content".into(), c.clone());
        }
        for (k, v) in &m.extra {
            if !v.is_null() {
                obj.insert(k.clone(), v.clone());
            }
        }
        if let Some(calls) = &m.tool_calls {
            let calls = calls
                .iter()
                .enumerate()
                .map(|(j, c)| normalize_tool_call(c).map_err(|e| Error::Input(format!("messages[{i}].tool_calls[{j}]: {e}"))))
                .collect::<Result<Vec<_>>>()?;
            for call in &calls {
                if let (Some(id), Some(name)) = (call.get("id"), call.get("function").and_then(|f| f.get("name"))) {
                    call_names.push((id.clone(), name.clone()));
                }
            }
            if template_reads_tool_calls {
                obj.insert("tool_calls".into(), Value::Array(calls));
            } else if !calls.is_empty() {
                let prefix = match format {
                    ToolFormat::Markers => tool_calls::render_pythonic_calls(&calls, TOOL_CALL_START, TOOL_CALL_END),
                    ToolFormat::Json => json_calls::calls_content(&calls),
                };
                let content = match obj.get("content") {
                    None => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(_) => {
                        return Err(Error::Input(format!(
                            "messages[{i}]: with this model's template an assistant turn with tool_calls needs string content"
                        )))
                    }
                };
                let sep = if format == ToolFormat::Json && !content.is_empty() { "\n" } else { "" };
                obj.insert("content".into(), Value::String(prefix + sep + &content));
            }
        }
        if format == ToolFormat::Json && !template_reads_tool_calls && m.role == "tool" {
            if !obj.get("name").is_some_and(Value::is_string) {
                let named = obj.get("tool_call_id").and_then(|id| call_names.iter().rev().find(|(c, _)| c == id));
                if let Some((_, name)) = named {
                    obj.insert("name".into(), name.clone());
                }
            }
            out.push(json_calls::tool_response_message(&obj));
            continue;
        }
        out.push(alias_reasoning(obj));
    }
    Ok(out)
}

/// transformers' `_alias_reasoning_fields`: `{"thinking": r, **message, "reasoning_content": r}`
/// where r is the first of reasoning_content / thinking / reasoning that is present.
fn alias_reasoning(obj: Map<String, Value>) -> Value {
    let reasoning = ["reasoning_content", "thinking", "reasoning"].iter().find_map(|k| obj.get(*k).cloned());
    let Some(r) = reasoning else { return Value::Object(obj) };
    let mut out = Map::new();
    out.insert("thinking".into(), r.clone());
    for (k, v) in obj {
        out.insert(k, v);
    }
    out.insert("reasoning_content".into(), r);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(v: Value) -> Message {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn messages_for_the_template() {
        let m = vec![
            msg(json!({"role": "user", "content": "hi", "name": null, "x": 1})),
            msg(json!({"role": "assistant", "content": null, "tool_calls": [{"name": "f", "arguments": "{\"a\": 1}"}]})),
            msg(json!({"role": "assistant", "content": "ok", "thinking": "hmm"})),
        ];
        let with = template_messages(&m, true).unwrap();
        assert_eq!(with[0], json!({"role": "user", "content": "hi", "x": 1}));
        assert_eq!(with[1], json!({"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}));
        assert_eq!(
            serde_json::to_string(&with[2]).unwrap(),
            r#"{"thinking":"hmm","role":"assistant","content":"ok","reasoning_content":"hmm"}"#
        );
        let without = template_messages(&m, false).unwrap();
        assert_eq!(without[1], json!({"role": "assistant", "content": "<|tool_call_start|>[f(a=1)]<|tool_call_end|>"}));
        // Without tool-call tokens: the JSON convention, and tool results as user messages.
        let mut m = m;
        m.push(msg(json!({"role": "tool", "name": "f", "content": "42"})));
        let json_form = template_messages_for(&m, false, ToolFormat::Json).unwrap();
        assert_eq!(json_form[1], json!({"role": "assistant", "content": "{\"tool_calls\": [{\"name\": \"f\", \"arguments\": {\"a\": 1}}]}"}));
        assert_eq!(json_form[3], json!({"role": "user", "content": "{\"tool_response\": {\"name\": \"f\", \"content\": \"42\"}}"}));
        // An OpenAI tool message names its call by id only: the response takes the call's name.
        let by_id = vec![
            msg(json!({"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "g", "arguments": {}}}]})),
            msg(json!({"role": "tool", "tool_call_id": "c1", "content": "7"})),
            msg(json!({"role": "tool", "tool_call_id": "unknown", "content": "8"})),
        ];
        let by_id = template_messages_for(&by_id, false, ToolFormat::Json).unwrap();
        assert_eq!(by_id[1], json!({"role": "user", "content": "{\"tool_response\": {\"name\": \"g\", \"content\": \"7\"}}"}));
        assert_eq!(by_id[2], json!({"role": "user", "content": "{\"tool_response\": {\"content\": \"8\"}}"}));
        // A template that reads tool_calls gets them, and its tool messages, as they are.
        let read = template_messages_for(&m, true, ToolFormat::Json).unwrap();
        assert_eq!(read[1], with[1]);
        assert_eq!(read[3], json!({"role": "tool", "name": "f", "content": "42"}));
    }

    #[test]
    fn builtin_template_renders() {
        let t = ChatTemplate::new(LFM2_TEMPLATE).unwrap();
        assert!(!t.reads_tool_calls());
        let msgs = template_messages(&[Message::system("S"), Message::user("U")], false).unwrap();
        let vars = TemplateVars { special_tokens: vec![("bos_token".into(), "<|startoftext|>".into())], unix_seconds: None };
        let out = t.render(&msgs, Some(&[json!({"name": "f"})]), true, &vars).unwrap();
        assert_eq!(
            out,
            "<|startoftext|><|im_start|>system\nS\nList of tools: <|tool_list_start|>[{\"name\": \"f\"}]<|tool_list_end|><|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
