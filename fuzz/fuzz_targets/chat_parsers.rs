//! Any text given to the chat parsers: tool calls in model output (Pythonic and JSON), request
//! JSON (validation, template messages) and the LFM2 chat template rendering the result: an
//! error or a value, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use saguaro_engine::chat::{parse_and_check, parse_tool_calls, template_messages, ChatTemplate, TemplateVars, LFM2_TEMPLATE};
use saguaro_engine::Request;

fuzz_target!(|data: &[u8]| {
    static TEMPLATE: OnceLock<ChatTemplate> = OnceLock::new();
    let text = String::from_utf8_lossy(data);
    let _ = parse_tool_calls(&text);
    let _ = parse_and_check(&text, &["get_weather".to_string()]);
    let Ok(request) = Request::from_json(&text) else { return };
    if request.validate().is_err() {
        return;
    }
    let Ok(messages) = template_messages(&request.messages, false) else { return };
    let template = TEMPLATE.get_or_init(|| ChatTemplate::new(LFM2_TEMPLATE).expect("the built-in template compiles"));
    let vars = TemplateVars { special_tokens: vec![("bos_token".into(), "<|startoftext|>".into())], unix_seconds: Some(0) };
    let _ = template.render(&messages, request.tools.as_deref(), true, &vars);
});
