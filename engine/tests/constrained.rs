//! Constrained decoding on the random-weight chat fixture (a real LFM2 tokenizer and template,
//! noise for weights): `options.json_schema` answers parse and validate (the `jsonschema`
//! crate, independent of llguidance) for every schema, greedy and sampled with several seeds;
//! forced tool calls parse into calls whose arguments validate against `parameters`;
//! `tool_choice: "none"` masks the tool-call token; bad schemas are input errors.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use saguaro_engine::constrain;
use saguaro_engine::convert::Extras;
use saguaro_engine::session::{ChatModel, Session};
use saguaro_engine::weights::safetensors::SafetensorsSource;
use saguaro_engine::{FinishReason, Model, Request, Response, TokenEvent};
use serde_json::{json, Value};

/// tests/fixtures/chat/model (safetensors, tokenizer, template), loaded once per test binary.
fn chat_model() -> Arc<ChatModel> {
    static MODEL: OnceLock<Arc<ChatModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/chat/model");
            let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let config: Value = serde_json::from_slice(&read("config.json")).unwrap();
            let tokenizer_config: Value = serde_json::from_slice(&read("tokenizer_config.json")).unwrap();
            let weights = read("model.safetensors");
            let source = SafetensorsSource::new(&[("model.safetensors".to_string(), weights.as_slice())]).unwrap();
            let extras = Extras {
                generation_config: Some(serde_json::from_slice(&read("generation_config.json")).unwrap()),
                chat_template: tokenizer_config["chat_template"].as_str().map(str::to_string),
                files: ["tokenizer.json", "tokenizer_config.json"].iter().map(|f| (f.to_string(), read(f))).collect(),
                source: None,
            };
            let model = Model::from_source(&config, &source, &extras).unwrap();
            ChatModel::new(Arc::new(model)).unwrap()
        })
        .clone()
}

fn run(request: &Value) -> (Response, Vec<TokenEvent>) {
    let request: Request = serde_json::from_value(request.clone()).unwrap();
    let mut events = Vec::new();
    let r = Session::new(chat_model()).complete(
        &request,
        |e| {
            events.push(e.clone());
            true
        },
        &AtomicBool::new(false),
    );
    (r, events)
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("test schema {schema} is not valid: {e}"))
}

/// Schemas covering nesting, enums, const, arrays (bounded and prefixItems), integers and
/// numbers with bounds, required and optional fields, closed objects, strings with patterns,
/// lengths and formats, anyOf, nullable types and $ref into $defs.
fn schemas() -> Vec<Value> {
    vec![
        json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0, "maximum": 150}},
               "required": ["name", "age"], "additionalProperties": false}),
        json!({"type": "object", "properties": {
                  "user": {"type": "object", "properties": {
                      "id": {"type": "integer"},
                      "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 1, "maxItems": 3},
                      "address": {"type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 8}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                                  "required": ["city", "zip"], "additionalProperties": false}},
                   "required": ["id", "tags", "address"], "additionalProperties": false}},
               "required": ["user"], "additionalProperties": false}),
        json!({"type": "array", "items": {"type": "number", "minimum": -10, "maximum": 10}, "minItems": 2, "maxItems": 4}),
        json!({"enum": ["red", "green", "blue", 42, null, true]}),
        json!({"type": "object", "properties": {"kind": {"const": "point"}, "x": {"type": "number"}, "y": {"type": "number"}, "label": {"type": ["string", "null"], "maxLength": 6}},
               "required": ["kind", "x", "y"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"when": {"type": "string", "format": "date"}, "ok": {"type": "boolean"}, "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}},
               "required": ["when", "ok", "ratio"], "additionalProperties": false}),
        json!({"$defs": {"item": {"type": "object", "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"}, "qty": {"type": "integer", "minimum": 1, "maximum": 99}},
                                  "required": ["sku", "qty"], "additionalProperties": false}},
               "type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1, "maxItems": 3}, "note": {"type": "string", "maxLength": 10}},
               "required": ["items"], "additionalProperties": false}),
        json!({"anyOf": [{"type": "integer", "minimum": 100, "maximum": 200}, {"type": "object", "properties": {"error": {"type": "string", "maxLength": 8}}, "required": ["error"], "additionalProperties": false}]}),
        json!({"type": "array", "prefixItems": [{"type": "string", "enum": ["GET", "POST"]}, {"type": "integer", "minimum": 200, "maximum": 599}], "items": false, "minItems": 2}),
    ]
}

fn check_answer(schema: &Value, r: &Response, what: &str) {
    assert!(r.success, "{what}: {:?}", r.error);
    assert_eq!(r.finish_reason, Some(FinishReason::Stop), "{what}: finish {:?}, response `{}`", r.finish_reason, r.response);
    assert!(r.function_calls.is_empty(), "{what}");
    let v: Value = serde_json::from_str(&r.response).unwrap_or_else(|e| panic!("{what}: `{}` is not JSON: {e}", r.response));
    let errors: Vec<String> = validator(schema).iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{what}: `{}` is invalid: {errors:?}", r.response);
}

#[test]
fn json_schema_answers_validate_greedy_and_sampled() {
    for (i, schema) in schemas().iter().enumerate() {
        let mut runs = vec![("greedy".to_string(), json!({"temperature": 0, "repetition_penalty": 1.0}))];
        for seed in 1..=4 {
            runs.push((format!("t=1 seed {seed}"), json!({"temperature": 1.0, "top_p": 1.0, "min_p": 0.0, "seed": seed})));
        }
        runs.push(("defaults".to_string(), json!({"seed": 9})));
        for (label, mut options) in runs {
            options["json_schema"] = schema.clone();
            options["max_tokens"] = json!(400);
            let request = json!({"messages": [{"role": "user", "content": "Give me the data as JSON."}], "options": options});
            let (r, events) = run(&request);
            check_answer(schema, &r, &format!("schema {i} {label}"));
            // The stream is the response, token by token.
            assert_eq!(events.iter().map(|e| e.text.as_str()).collect::<String>(), r.response);
            assert_eq!(r.decode_tokens, events.len());
        }
    }
}

#[test]
fn constrained_output_is_deterministic() {
    let schema = &schemas()[1];
    for options in [json!({"temperature": 0}), json!({"temperature": 0.8, "seed": 3})] {
        let mut options = options;
        options["json_schema"] = schema.clone();
        let request = json!({"messages": [{"role": "user", "content": "JSON please"}], "options": options});
        let (a, ea) = run(&request);
        let (b, eb) = run(&request);
        check_answer(schema, &a, "determinism");
        assert_eq!(a.response, b.response);
        assert_eq!(ea.iter().map(|e| e.token_id).collect::<Vec<_>>(), eb.iter().map(|e| e.token_id).collect::<Vec<_>>());
    }
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "minLength": 1, "maxLength": 10},
                "unit": {"enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7}},
             "required": ["city", "unit"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "book", "description": "Book seats",
            "parameters": {"$defs": {"seat": {"type": "object", "properties": {"row": {"type": "integer", "minimum": 1, "maximum": 40}, "col": {"enum": ["A", "B", "C"]}}, "required": ["row", "col"], "additionalProperties": false}},
              "type": "object", "properties": {"seats": {"type": "array", "items": {"$ref": "#/$defs/seat"}, "minItems": 1, "maxItems": 2}, "vip": {"type": "boolean"}},
              "required": ["seats"], "additionalProperties": false}}},
        {"name": "ping"}
    ])
}

fn parameters(name: &str) -> Value {
    tools()
        .as_array()
        .unwrap()
        .iter()
        .find_map(|t| {
            let f = t.get("function").unwrap_or(t);
            (f["name"] == json!(name)).then(|| f.get("parameters").cloned().unwrap_or(json!({"type": "object"})))
        })
        .unwrap()
}

fn check_calls(r: &Response, allowed: &[&str], what: &str) {
    assert!(r.success, "{what}: {:?}", r.error);
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls), "{what}: {:?} {:?}", r.response, r.tool_call_errors);
    assert!(r.tool_call_errors.is_empty(), "{what}: {:?}", r.tool_call_errors);
    assert!(!r.function_calls.is_empty(), "{what}");
    assert_eq!(r.response, "", "{what}: a forced call has no text");
    for call in &r.function_calls {
        assert!(allowed.contains(&call.name.as_str()), "{what}: {}", call.name);
        let args = Value::Object(call.arguments.clone());
        let errors: Vec<String> = validator(&parameters(&call.name)).iter_errors(&args).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{what}: {} {args} invalid: {errors:?}", call.name);
    }
}

#[test]
fn named_tool_choice_forces_one_valid_call() {
    for name in ["get_weather", "book", "ping"] {
        for (label, options) in [
            ("greedy", json!({"temperature": 0, "max_tokens": 300})),
            ("seed 1", json!({"temperature": 1.0, "min_p": 0.0, "seed": 1, "max_tokens": 300})),
            ("seed 2", json!({"temperature": 1.0, "min_p": 0.0, "seed": 2, "max_tokens": 300})),
        ] {
            let request = json!({"messages": [{"role": "user", "content": "Do it."}], "tools": tools(),
                                 "tool_choice": {"type": "function", "function": {"name": name}}, "options": options});
            let (r, events) = run(&request);
            let what = format!("{name} {label}");
            check_calls(&r, &[name], &what);
            assert_eq!(r.function_calls.len(), 1, "{what}");
            // The call is written with LFM2's markers, every token inside the call.
            assert!(events.iter().all(|e| e.in_tool_call), "{what}");
            assert_eq!(events.first().map(|e| e.token_id), chat_model().tool_call_start, "{what}");
            assert_eq!(events.last().map(|e| e.token_id), chat_model().tool_call_end, "{what}");
        }
    }
}

#[test]
fn required_tool_choice_forces_calls_of_declared_tools() {
    for seed in 0..4 {
        // One call unless the request allows parallel calls (then one or more).
        for parallel in [None, Some(false), Some(true)] {
            let request = json!({"messages": [{"role": "user", "content": "Use a tool."}], "tools": tools(), "tool_choice": "required",
                                 "parallel_tool_calls": parallel,
                                 "options": {"temperature": 1.0, "min_p": 0.0, "seed": seed, "max_tokens": 400}});
            let (r, _) = run(&request);
            let what = format!("required seed {seed} parallel {parallel:?}");
            check_calls(&r, &["get_weather", "book", "ping"], &what);
            if parallel != Some(true) {
                assert_eq!(r.function_calls.len(), 1, "{what}");
            }
        }
    }
}

#[test]
fn auto_with_a_schema_gives_json_or_valid_calls() {
    let schema = json!({"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"], "additionalProperties": false});
    for seed in 0..6 {
        let request = json!({"messages": [{"role": "user", "content": "?"}], "tools": tools(), "tool_choice": "auto",
                             "options": {"temperature": 1.0, "min_p": 0.0, "seed": seed, "max_tokens": 300, "json_schema": schema}});
        let (r, _) = run(&request);
        if r.function_calls.is_empty() {
            check_answer(&schema, &r, &format!("auto seed {seed}"));
        } else {
            check_calls(&r, &["get_weather", "book", "ping"], &format!("auto seed {seed}"));
        }
    }
}

#[test]
fn tool_choice_none_masks_the_tool_call_token() {
    let chat = chat_model();
    let start = chat.tool_call_start.unwrap();
    let request: Request = serde_json::from_value(json!({"messages": [{"role": "user", "content": "x"}], "tools": tools(), "tool_choice": "none"})).unwrap();
    let declared = request.validate().unwrap();
    let mut k = constrain::for_request(|| chat.constraint_vocab(), &request, &declared, chat.tool_call_start).unwrap().expect("a constraint");
    let mut logits = vec![1.5f32; chat.model.config.vocab_size];
    logits[start as usize] = 100.0;
    k.apply(&mut logits).unwrap();
    for (i, l) in logits.iter().enumerate() {
        if i == start as usize {
            assert_eq!(*l, f32::NEG_INFINITY);
        } else {
            assert_eq!(l.to_bits(), 1.5f32.to_bits(), "id {i}");
        }
    }
    // End to end: even a greedy run whose logits favour nothing in particular makes no call.
    let (r, events) = run(&json!({"messages": [{"role": "user", "content": "x"}], "tools": tools(), "tool_choice": "none",
                                  "options": {"temperature": 0, "max_tokens": 40}}));
    assert!(r.success && r.function_calls.is_empty() && r.tool_call_errors.is_empty());
    assert!(events.iter().all(|e| Some(e.token_id) != chat.tool_call_start));
}

#[test]
fn masks_keep_allowed_logits_exactly() {
    let chat = chat_model();
    let vocab = chat.constraint_vocab().unwrap();
    let mut k = vocab.json_schema(&json!({"type": "boolean"})).unwrap();
    let v = chat.model.config.vocab_size;
    let logits: Vec<f32> = (0..v).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut masked = logits.clone();
    k.apply(&mut masked).unwrap();
    let allowed: Vec<usize> = (0..v).filter(|&i| masked[i] != f32::NEG_INFINITY).collect();
    assert!(!allowed.is_empty() && allowed.len() < v / 4, "{allowed:?}");
    for &i in &allowed {
        assert_eq!(masked[i].to_bits(), logits[i].to_bits());
        // Every allowed token starts `true` or `false`.
        let text = chat.tokenizer.decode(&[i as u32], false).unwrap();
        assert!("true".starts_with(&text) || "false".starts_with(&text), "token {i} `{text}`");
    }
}

#[test]
fn bad_schemas_and_tool_choices_are_input_errors() {
    let user = json!([{"role": "user", "content": "x"}]);
    let cases = [
        (json!({"messages": user, "options": {"json_schema": {"type": "object", "not": {"required": ["a"]}}}}), "not"),
        (json!({"messages": user, "options": {"json_schema": {"type": "array", "uniqueItems": true}}}), "uniqueItems"),
        (json!({"messages": user, "options": {"json_schema": {"type": "strin"}}}), "strin"),
        (json!({"messages": user, "options": {"json_schema": {"type": 3}}}), "type"),
        (json!({"messages": user, "options": {"json_schema": {"$ref": "#/$defs/missing"}}}), "missing"),
        (json!({"messages": user, "options": {"json_schema": {"type": "string", "pattern": "(unclosed"}}}), ""),
        (json!({"messages": user, "options": {"json_schema": {"type": "integer", "minimum": 5, "maximum": 1}}}), ""),
        (json!({"messages": user, "options": {"json_schema": "object"}}), "json_schema"),
        (json!({"messages": user, "options": {"json_schema": {"type": "number", "multipleOf": 1e-12}}}), "multipleOf"),
        (json!({"messages": user, "options": {"json_schema": {"oneOf": [{"type": "object", "properties": {"a": {"type": "string"}}},
                                                                         {"type": "object", "properties": {"b": {"type": "integer"}}}]}}}), "oneOf"),
        (json!({"messages": user, "tool_choice": "required"}), "no tools"),
        (json!({"messages": user, "tools": tools(), "tool_choice": {"type": "function", "function": {"name": "nope"}}}), "nope"),
        (json!({"messages": user, "tools": tools(), "tool_choice": "sometimes"}), "sometimes"),
        (json!({"messages": user, "tools": tools(), "tool_choice": {"type": "function"}}), "name"),
        (json!({"messages": user, "tools": [{"name": "f", "parameters": {"type": "object", "properties": {"a": {"not": {}}}}}],
                "tool_choice": "required"}), "not"),
    ];
    for (request, needle) in cases {
        let (r, events) = run(&request);
        assert!(!r.success, "{request}: {}", r.response);
        assert_eq!(r.error_code.as_deref(), Some("input"), "{request}: {:?}", r.error);
        let msg = r.error.unwrap_or_default();
        assert!(msg.contains(needle), "{request}: `{msg}` should mention `{needle}`");
        assert!(events.is_empty());
    }
}
