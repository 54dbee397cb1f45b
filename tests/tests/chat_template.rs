//! The chat template and tokenizer against transformers and tokenizers (Python): every
//! fixture request rendered with each real template (LFM2, LFM2.5, llama.cpp's LFM2 variant)
//! must give transformers' text and token ids exactly.

mod chat_common;

use chat_common::*;
use saguaro_engine::chat::{template_messages, ChatTemplate, TemplateVars, LFM2_TEMPLATE};
use saguaro_engine::tokenizer::{StreamDecoder, Tokenizer};
use saguaro_engine::Request;
use serde_json::Value;

fn template_source(name: &str) -> String {
    std::fs::read_to_string(chat_dir().join("templates").join(name)).unwrap()
}

fn tokenizer() -> Tokenizer {
    let dir = model_dir();
    Tokenizer::from_json(
        &std::fs::read(dir.join("tokenizer.json")).unwrap(),
        Some(&std::fs::read(dir.join("tokenizer_config.json")).unwrap()),
    )
    .unwrap()
}

#[test]
fn templates_are_the_recorded_files() {
    // Sizes of the files as published (see tests/fixtures/chat/README.md for the sources).
    for (name, len) in [("lfm2.jinja", 1380), ("lfm2.5-8b-a1b.jinja", 4295), ("llama-cpp-lfm2.jinja", 2261)] {
        assert_eq!(template_source(name).len(), len, "{name}");
    }
    assert_eq!(LFM2_TEMPLATE, template_source("lfm2.jinja"), "the built-in template is LFM2's");
    let cfg: Value = serde_json::from_slice(&std::fs::read(model_dir().join("tokenizer_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["chat_template"].as_str().unwrap(), LFM2_TEMPLATE);
    // What the templates are: LFM2 lists tools between list tokens, LFM2.5 as plain JSON.
    assert!(template_source("lfm2.jinja").contains("List of tools: <|tool_list_start|>["));
    assert!(template_source("lfm2.5-8b-a1b.jinja").contains("\"\\n\\nList of tools: \" + (tools | tojson)"));
}

#[test]
fn renders_every_case_like_transformers() {
    let fixture = read_json("template_cases.json");
    let tok = tokenizer();
    let vars = TemplateVars {
        special_tokens: tok.special_tokens().to_vec(),
        unix_seconds: Some(fixture["unix_seconds"].as_i64().unwrap()),
    };
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let request: Request = serde_json::from_value(case["request"].clone()).unwrap();
        request.validate().unwrap();
        for (tname, want) in case["renderings"].as_object().unwrap() {
            let template = ChatTemplate::new(&template_source(tname)).unwrap();
            let messages = template_messages(&request.messages, template.reads_tool_calls()).unwrap();
            let text = match template.render(&messages, request.tools.as_deref(), true, &vars) {
                Ok(t) => t,
                Err(e) => {
                    failures.push(format!("{name} / {tname}: {e}"));
                    continue;
                }
            };
            if text != want["text"].as_str().unwrap() {
                failures.push(format!("{name} / {tname}: text\n got: {text:?}\nwant: {:?}", want["text"].as_str().unwrap()));
                continue;
            }
            let ids = tok.encode(&text).unwrap();
            if ids != u32s(&want["ids"]) {
                failures.push(format!("{name} / {tname}: token ids differ"));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{} of the renderings differ:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(checked, 14 * 3);
}

#[test]
fn chat_model_prompts_are_transformers_prompts() {
    // The model's own template (LFM2's, from tokenizer_config.json) through ChatModel.
    let chat = chat_model();
    let fixture = read_json("template_cases.json");
    for case in fixture["cases"].as_array().unwrap() {
        let request: Request = serde_json::from_value(case["request"].clone()).unwrap();
        let want = &case["renderings"]["lfm2.jinja"];
        assert_eq!(chat.render(&request, Some(1_748_779_200)).unwrap(), want["text"].as_str().unwrap());
        assert_eq!(chat.prompt_tokens(&request, None).unwrap(), u32s(&want["ids"]), "{}", case["name"]);
    }
}

#[test]
fn tokenizer_matches_python() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 512);
    for (i, name) in ["<|pad|>", "<|startoftext|>", "<|endoftext|>"].iter().enumerate() {
        assert_eq!(tok.token_id(name), Some(i as u32));
    }
    assert_eq!(tok.token_id("<|im_start|>"), Some(6));
    assert_eq!(tok.token_id("<|im_end|>"), Some(7));
    assert_eq!(tok.token_id("<|tool_call_start|>"), Some(10));
    assert_eq!(tok.token_id("<|tool_response_end|>"), Some(13));
    assert!(tok.is_special(7) && !tok.is_special(100));
    let names: Vec<&str> = tok.special_tokens().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["bos_token", "eos_token", "pad_token"]);
    for case in read_json("tokenizer_cases.json")["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids, u32s(&case["ids"]), "encode {text:?}");
        // Python's encode with special tokens adds <|startoftext|>; ours never adds any.
        let with_special = u32s(&case["ids_with_special"]);
        assert_eq!(with_special[0], 1);
        assert_eq!(&with_special[1..], &ids[..]);
        assert_eq!(tok.decode(&ids, false).unwrap(), case["decoded"].as_str().unwrap());
        assert_eq!(tok.decode(&ids, true).unwrap(), case["decoded_skip_special"].as_str().unwrap());
    }
}

fn stream(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
    let mut d = StreamDecoder::new();
    let mut pieces: Vec<String> = ids.iter().map(|&id| d.push(tok, id).unwrap()).collect();
    pieces.push(d.finish(tok).unwrap());
    pieces
}

#[test]
fn streaming_never_splits_characters() {
    let tok = tokenizer();
    for case in read_json("tokenizer_cases.json")["cases"].as_array().unwrap() {
        let ids = u32s(&case["ids"]);
        let pieces = stream(&tok, &ids);
        let want = case["decoded_skip_special"].as_str().unwrap();
        assert_eq!(pieces.concat(), want);
        // Valid text decodes piece by piece without a replacement character.
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
    }
    // Multi-byte characters split over byte tokens come out whole, once complete.
    let text = "日本語 🌵 é";
    let ids = tok.encode(text).unwrap();
    let pieces = stream(&tok, &ids);
    assert_eq!(pieces.concat(), text);
    assert!(ids.len() > text.chars().count(), "the fixture vocabulary splits these characters");
    assert!(pieces.iter().any(|p| p.is_empty()), "some tokens must have been held back: {pieces:?}");
}

#[test]
fn streaming_arbitrary_ids_matches_full_decode() {
    let tok = tokenizer();
    let mut rng = saguaro_engine::sampling::SplitMix64::new(11);
    for _ in 0..300 {
        let n = 1 + (rng.next_u64() % 24) as usize;
        let ids: Vec<u32> = (0..n).map(|_| (rng.next_u64() % 512) as u32).collect();
        let pieces = stream(&tok, &ids);
        assert_eq!(pieces.concat(), tok.decode(&ids, true).unwrap(), "{ids:?}");
    }
}

#[test]
fn hostile_tokenizer_files_are_errors_not_panics() {
    let json = std::fs::read(model_dir().join("tokenizer.json")).unwrap();
    // Truncations at many lengths, and single-byte corruptions.
    for cut in (0..json.len()).step_by(97) {
        let _ = Tokenizer::from_json(&json[..cut], None);
    }
    let mut rng = saguaro_engine::sampling::SplitMix64::new(5);
    for _ in 0..300 {
        let mut bad = json.clone();
        let at = (rng.next_u64() % bad.len() as u64) as usize;
        bad[at] = b"{}[]\",:0123456789-aZ \\"[(rng.next_u64() % 22) as usize];
        if let Ok(tok) = Tokenizer::from_json(&bad, None) {
            let ids = tok.encode("Hello <|im_end|> wörld 🌵").unwrap_or_default();
            let _ = tok.decode(&ids, true);
            let _ = tok.decode(&[0, 5, 511, 100_000], false);
        }
    }
    // A template that fails to compile or to render is an error too.
    assert!(ChatTemplate::new("{% for %}").is_err());
    assert!(ChatTemplate::new("{{ messages[0]['x'] + 1 }}").unwrap().render(&[], None, true, &TemplateVars::default()).is_err());
}
