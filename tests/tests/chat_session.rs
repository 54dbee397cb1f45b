//! Chat completion on the fixture model: transformers' greedy tokens, streaming, stopping,
//! prefix reuse, cancellation, sampling, confidence, metrics and bad requests.

mod chat_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chat_common::*;
use saguaro_engine::session::{ChatModel, Event, OutputProcessor, Session};
use saguaro_engine::{FinishReason, Message, Request, Response, TokenEvent};
use serde_json::{json, Value};

fn no_cancel() -> AtomicBool {
    AtomicBool::new(false)
}

/// Runs a request, collecting the streamed events.
fn run(session: &mut Session, request: &Request) -> (Response, Vec<TokenEvent>) {
    let mut events = Vec::new();
    let r = session.complete(
        request,
        |e| {
            events.push(e.clone());
            true
        },
        &no_cancel(),
    );
    (r, events)
}

fn request(v: Value) -> Request {
    serde_json::from_value(v).unwrap()
}

fn greedy(messages: Value, max_tokens: usize) -> Request {
    request(json!({"messages": messages, "options": {"temperature": 0, "repetition_penalty": 1.0, "max_tokens": max_tokens}}))
}

fn ids(events: &[TokenEvent]) -> Vec<u32> {
    events.iter().map(|e| e.token_id).collect()
}

fn streamed(events: &[TokenEvent]) -> String {
    events.iter().map(|e| e.text.as_str()).collect()
}

#[test]
fn defaults_and_stop_ids_come_from_the_model() {
    let chat = chat_model();
    let d = &chat.defaults;
    assert_eq!((d.temperature, d.min_p, d.repetition_penalty, d.max_tokens), (0.3, 0.15, 1.05, 64));
    assert_eq!((d.top_k, d.top_p), (0, 1.0));
    assert_eq!(chat.eos_ids, vec![7]);
    assert_eq!((chat.tool_call_start, chat.tool_call_end), (Some(10), Some(11)));
}

#[test]
fn the_folder_generation_config_reaches_the_model_file() {
    // The HF folder's generation_config.json travels in the (in-memory) .cact manifest.
    let chat = chat_model();
    let file: Value = serde_json::from_str(&std::fs::read_to_string(model_dir().join("generation_config.json")).unwrap()).unwrap();
    assert_eq!(chat.model.file.manifest.generation_config.as_ref(), Some(&file));
}

#[test]
fn default_options_follow_the_model_and_match_transformers() {
    // Requests that leave the sampling options to the model (no repetition_penalty; some no
    // options at all), on the fixture model with each generation_config.json variant, against
    // transformers' generate() on a folder with that file (made by make_chat_fixtures.py).
    let refs = default_generations();
    assert!(refs.len() >= 6, "reference.json has {} default generations", refs.len());
    for g in &refs {
        let name = g["name"].as_str().unwrap();
        let chat = chat_model_with_generation_config(&g["generation_config"]);
        let req: Request = serde_json::from_value(g["request"].clone()).unwrap();
        let (r, events) = run(&mut Session::new(chat), &req);
        assert!(r.success, "{name}: {:?}", r.error);
        assert_eq!(ids(&events), u32s(&g["tokens"]), "{name}: tokens");
        assert_eq!(r.response, g["text"].as_str().unwrap(), "{name}: text");
        assert_eq!(r.prefill_tokens, g["prompt_ids"].as_array().unwrap().len(), "{name}");
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    let chat = chat_model();
    for g in generations() {
        let name = g["name"].as_str().unwrap();
        let req: Request = serde_json::from_value(g["request"].clone()).unwrap();
        let mut session = Session::new(chat.clone()).with_hooks(test_hooks());
        let (r, events) = run(&mut session, &req);
        assert!(r.success, "{name}: {:?}", r.error);
        let want = u32s(&g["tokens"]);
        assert_eq!(ids(&events), want, "{name}: tokens");
        assert_eq!(r.response, g["text"].as_str().unwrap(), "{name}: text");
        assert_eq!(streamed(&events), r.response, "{name}: stream");
        assert_eq!(r.prefill_tokens, g["prompt_ids"].as_array().unwrap().len(), "{name}");
        assert_eq!(r.decode_tokens, want.len());
        assert_eq!(r.total_tokens, r.prefill_tokens + r.decode_tokens);
        assert_eq!(r.reused_tokens, 0);
        let ended_on_eos = *want.last().unwrap() == 7;
        let expected = if ended_on_eos { FinishReason::Stop } else { FinishReason::Length };
        assert_eq!(r.finish_reason, Some(expected), "{name}");
        // Confidence: 1 - H/lnV of the raw logits, as computed from transformers' logits in f64.
        let ent: Vec<f64> = g["normalized_entropy"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        for (e, h) in events.iter().zip(&ent) {
            assert!((f64::from(e.confidence) - (1.0 - h)).abs() < 1e-4, "{name}: {} vs {}", e.confidence, 1.0 - h);
        }
        let mean = 1.0 - ent.iter().sum::<f64>() / ent.len() as f64;
        assert!((f64::from(r.confidence) - mean).abs() < 1e-4);
        // Metrics from the hooks.
        assert_eq!(r.ram_usage_mb, 42.0);
        assert!(r.time_to_first_token_ms > 0.0 && r.total_time_ms >= r.time_to_first_token_ms);
        assert!(r.prefill_tps > 0.0 && r.decode_tps > 0.0, "{r:?}");
    }
}

#[test]
fn response_json_has_every_field() {
    let g = &generations()[0];
    let mut session = Session::new(chat_model());
    let r = session.complete_json(&g["request"].to_string(), |_| true, &no_cancel());
    let v: Value = serde_json::from_str(&r.to_json()).unwrap();
    for k in [
        "success", "error", "cloud_handoff", "response", "function_calls", "confidence", "finish_reason",
        "time_to_first_token_ms", "total_time_ms", "prefill_tps", "decode_tps", "ram_usage_mb", "prefill_tokens",
        "decode_tokens", "total_tokens",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["success"], json!(true));
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["finish_reason"], json!("stop"));
    assert_eq!(v["function_calls"], json!([]));
    // Without hooks: no clock (zero timings), RAM estimated from the model and state sizes.
    assert_eq!(r.total_time_ms, 0.0);
    assert!(r.ram_usage_mb > 1.0 && r.ram_usage_mb < 10.0, "{}", r.ram_usage_mb);
    // Round trip through serde.
    let back: Response = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

#[test]
fn follow_up_turns_reuse_the_prefix_and_match_a_fresh_session() {
    let chat = chat_model();
    let first = greedy(json!([{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "What is the weather in Paris?"}]), 40);
    let mut session = Session::new(chat.clone());
    let (r1, e1) = run(&mut session, &first);
    assert_eq!(r1.finish_reason, Some(FinishReason::Stop));
    let prompt1 = chat.prompt_tokens(&first, None).unwrap();

    let mut second = first.clone();
    second.messages.push(Message::assistant(r1.response.clone()));
    second.messages.push(Message::user("And in Tokyo?"));
    second.options.max_tokens = Some(12);
    let (r2, e2) = run(&mut session, &second);
    let (f2, fe2) = run(&mut Session::new(chat.clone()), &second);
    assert_eq!(ids(&e2), ids(&fe2));
    assert_eq!(r2.response, f2.response);
    assert_eq!(f2.reused_tokens, 0);
    // The state held prompt1 and the generated tokens but the last (<|im_end|>, never fed back).
    assert!(r2.reused_tokens >= prompt1.len(), "{} < {}", r2.reused_tokens, prompt1.len());
    assert!(r2.reused_tokens < prompt1.len() + e1.len());
    assert_eq!(r2.prefill_tokens + r2.reused_tokens, f2.prefill_tokens);
}

#[test]
fn prefill_reuse_gives_bit_identical_logits() {
    let chat = chat_model();
    let cancel = no_cancel();
    let tok = &chat.tokenizer;
    let p1 = tok.encode("<|startoftext|><|im_start|>user\nHello there, how are you?<|im_end|>\n<|im_start|>assistant\n").unwrap();
    let mut p2 = p1.clone();
    p2.extend(tok.encode("Fine, thanks.<|im_end|>\n<|im_start|>user\nGood.<|im_end|>\n<|im_start|>assistant\n").unwrap());
    let mut p3 = p1.clone();
    p3.extend(tok.encode("Something else entirely.<|im_end|>\n").unwrap());
    let fresh = |p: &[u32]| Session::new(chat.clone()).prefill(p, &cancel).unwrap();
    let bits = |l: &[f32]| l.iter().map(|x| x.to_bits()).collect::<Vec<_>>();

    let mut s = Session::new(chat.clone());
    let a = s.prefill(&p1, &cancel).unwrap();
    assert_eq!((a.reused, a.processed), (0, p1.len()));
    // Extends the live state: only the suffix runs.
    let b = s.prefill(&p2, &cancel).unwrap();
    assert_eq!((b.reused, b.processed), (p1.len(), p2.len() - p1.len()));
    assert_eq!(bits(&b.logits), bits(&fresh(&p2).logits));
    // Diverges after p1 (the state is at the end of p2): the snapshot of p2 does not help, so
    // it starts over... unless it is p2 itself, whose logits are kept.
    let c = s.prefill(&p2, &cancel).unwrap();
    assert_eq!((c.reused, c.processed), (p2.len(), 0));
    assert_eq!(bits(&c.logits), bits(&b.logits));
    let d = s.prefill(&p3, &cancel).unwrap();
    assert_eq!(d.reused, 0);
    assert_eq!(bits(&d.logits), bits(&fresh(&p3).logits));
    // Back to p1 + more after p3: the snapshot (of p3) does not extend... p1 is not p3's prefix
    // in full, so everything runs again and still matches.
    let e = s.prefill(&p2, &cancel).unwrap();
    assert_eq!(e.reused, 0);
    assert_eq!(bits(&e.logits), bits(&b.logits));

    // The snapshot path: generate after p1 (the state moves past p1), then a prompt that
    // extends p1 differently from what was generated restores the snapshot of p1.
    let mut s = Session::new(chat.clone());
    s.prefill(&p1, &cancel).unwrap();
    let req = greedy(json!([{"role": "user", "content": "Hello there, how are you?"}]), 6);
    let (r, _) = run(&mut s, &req);
    assert_eq!(r.reused_tokens, p1.len(), "same prompt: the snapshot's logits are reused");
    assert_eq!(r.prefill_tokens, 0);
    assert!(s.tokens().len() > p1.len());
    let f = s.prefill(&p3, &cancel).unwrap();
    assert_eq!(f.reused, p1.len(), "restored from the snapshot of p1");
    assert_eq!(bits(&f.logits), bits(&fresh(&p3).logits));
}

#[test]
fn stop_sequences_cut_exactly() {
    let chat = chat_model();
    let g = &generations()[1];
    let base: Request = serde_json::from_value(g["request"].clone()).unwrap();
    let full = g["text"].as_str().unwrap();
    let chars: Vec<(usize, char)> = full.char_indices().collect();
    let mut tried = 0;
    for start in [3usize, 7, 11, 16] {
        let Some(&(a, _)) = chars.get(start) else { continue };
        let b = chars.get(start + 3).map_or(full.len(), |c| c.0);
        let stop = &full[a..b];
        let cut = full.find(stop).unwrap();
        for include in [false, true] {
            let mut req = base.clone();
            req.options.stop_sequences = vec![stop.to_string(), "never-in-the-output".into()];
            req.options.include_stop_sequences = include;
            let (r, events) = run(&mut Session::new(chat.clone()), &req);
            let want = if include { &full[..cut + stop.len()] } else { &full[..cut] };
            assert_eq!(r.response, want, "stop {stop:?} include {include}");
            assert_eq!(streamed(&events), r.response);
            assert_eq!(r.finish_reason, Some(FinishReason::StopSequence));
            // Generation stopped at the token that completed the stop sequence.
            let want_ids = u32s(&g["tokens"]);
            assert_eq!(ids(&events), want_ids[..events.len()]);
            assert!(events.len() < want_ids.len());
            tried += 1;
        }
    }
    assert!(tried >= 6);
    // A stop sequence that never appears changes nothing.
    let mut req = base.clone();
    req.options.stop_sequences = vec!["never-in-the-output".into()];
    let (r, _) = run(&mut Session::new(chat.clone()), &req);
    assert_eq!((r.response.as_str(), r.finish_reason), (full, Some(FinishReason::Length)));
}

#[test]
fn max_tokens_and_context_full() {
    let chat = chat_model();
    let g = &generations()[1];
    let mut req: Request = serde_json::from_value(g["request"].clone()).unwrap();
    req.options.max_tokens = Some(5);
    let (r, events) = run(&mut Session::new(chat.clone()), &req);
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
    assert_eq!(ids(&events), u32s(&g["tokens"])[..5]);
    req.options.max_tokens = Some(0);
    let (r, events) = run(&mut Session::new(chat.clone()), &req);
    assert!(r.success && events.is_empty() && r.response.is_empty());
    assert_eq!(r.finish_reason, Some(FinishReason::Length));

    // A context of prompt + 3 positions: 4 tokens (the 4th is sampled, never fed back).
    let prompt_len = g["prompt_ids"].as_array().unwrap().len();
    let small = chat_model_with(|c| c["max_position_embeddings"] = json!(prompt_len + 3));
    req.options.max_tokens = Some(20);
    let (r, events) = run(&mut Session::new(small.clone()), &req);
    assert_eq!(r.finish_reason, Some(FinishReason::ContextFull));
    assert_eq!(ids(&events), u32s(&g["tokens"])[..4]);
    assert_eq!(streamed(&events), r.response);
    // A prompt over the context is a failed request (and the session still works after it).
    let tiny = chat_model_with(|c| c["max_position_embeddings"] = json!(prompt_len - 1));
    let mut s = Session::new(tiny);
    let (r, events) = run(&mut s, &req);
    assert!(!r.success && events.is_empty());
    assert_eq!(r.error_code.as_deref(), Some("context_full"));
    assert!(r.error.unwrap().contains(&format!("{prompt_len} tokens")));
    let (r, _) = run(&mut s, &greedy(json!([{"role": "user", "content": "Hi"}]), 2));
    assert!(r.success);
}

#[test]
fn cancellation_from_the_callback_and_the_flag() {
    let chat = chat_model();
    let g = &generations()[1];
    let req: Request = serde_json::from_value(g["request"].clone()).unwrap();
    let want = u32s(&g["tokens"]);

    let mut events = Vec::new();
    let r = Session::new(chat.clone()).complete(
        &req,
        |e| {
            events.push(e.clone());
            events.len() < 3
        },
        &no_cancel(),
    );
    assert!(r.success);
    assert_eq!(r.finish_reason, Some(FinishReason::Cancelled));
    assert_eq!(ids(&events), want[..3]);
    assert_eq!(streamed(&events), r.response);

    let cancel = AtomicBool::new(true);
    let r = Session::new(chat.clone()).complete(&req, |_| panic!("no token expected"), &cancel);
    assert_eq!((r.success, r.finish_reason, r.decode_tokens), (true, Some(FinishReason::Cancelled), 0));

    // From another thread: cancel after the second token arrives.
    let cancel = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let cancel = &cancel;
        scope.spawn(move || {
            rx.recv().unwrap();
            rx.recv().unwrap();
            cancel.store(true, Ordering::SeqCst);
            ack_tx.send(()).unwrap();
        });
        let mut n = 0;
        let r = Session::new(chat.clone()).complete(
            &req,
            |_| {
                n += 1;
                if n <= 2 {
                    tx.send(()).unwrap();
                }
                if n == 2 {
                    ack_rx.recv().unwrap();
                }
                true
            },
            cancel,
        );
        assert_eq!(r.finish_reason, Some(FinishReason::Cancelled));
        assert_eq!(r.decode_tokens, 3, "the flag is seen after the next token");
    });
}

#[test]
fn stepwise_completion_is_complete_one_step_at_a_time() {
    let chat = chat_model();
    // A prompt longer than one prefill chunk (256 tokens), so prefill takes several steps.
    let long_text = "the quick brown fox jumps over the lazy dog and then ".repeat(60);
    let requests = [
        serde_json::from_value::<Request>(generations()[1]["request"].clone()).unwrap(),
        greedy(json!([{"role": "user", "content": long_text}]), 8),
    ];
    for req in &requests {
        let (want, want_events) = run(&mut Session::new(chat.clone()), req);
        let mut session = Session::new(chat.clone());
        let mut c = session.start(req).unwrap();
        let total = c.prompt_len();
        let (mut events, mut prefill) = (Vec::new(), Vec::new());
        while let Some(e) = session.step(&mut c, &no_cancel()).unwrap() {
            match e {
                Event::Prefill { done, total: t } => {
                    assert_eq!(t, total);
                    prefill.push(done);
                }
                Event::Token(t) => events.push(t),
            }
        }
        assert!(c.is_finished());
        let got = session.finish(c);
        assert_eq!(events, want_events);
        assert_eq!((got.response.as_str(), got.finish_reason, got.decode_tokens), (want.response.as_str(), want.finish_reason, want.decode_tokens));
        // One event per 256-token chunk, ending at the whole prompt.
        let chunks: Vec<usize> = (1..=total.div_ceil(256)).map(|k| (k * 256).min(total)).collect();
        assert_eq!(prefill, chunks);
    }
    assert!(requests[1].messages[0].content.as_ref().unwrap().as_str().unwrap().len() > 1000);

    // Cancelling between steps ends the request at the next step, with no further token.
    let mut session = Session::new(chat.clone());
    let mut c = session.start(&requests[1]).unwrap();
    let mut tokens = 0;
    while let Some(e) = session.step(&mut c, &no_cancel()).unwrap() {
        if let Event::Token(_) = e {
            tokens += 1;
            c.cancel();
        }
    }
    let r = session.finish(c);
    assert_eq!((r.finish_reason, r.decode_tokens, tokens), (Some(FinishReason::Cancelled), 1, 1));

    // Cancelled during prefill: the chunks that ran are counted, and the session goes on.
    let mut session = Session::new(chat.clone());
    let mut c = session.start(&requests[1]).unwrap();
    session.step(&mut c, &no_cancel()).unwrap();
    c.cancel();
    assert_eq!(session.step(&mut c, &no_cancel()).unwrap(), None);
    let r = session.finish(c);
    assert_eq!((r.finish_reason, r.decode_tokens, r.prefill_tokens), (Some(FinishReason::Cancelled), 0, 256));
    let (again, _) = run(&mut session, &requests[1]);
    let (fresh, _) = run(&mut Session::new(chat.clone()), &requests[1]);
    assert_eq!(again.response, fresh.response);

    // Only the session's latest request may step.
    let mut old = session.start(&requests[0]).unwrap();
    let mut new = session.start(&requests[0]).unwrap();
    let err = session.step(&mut old, &no_cancel()).unwrap_err();
    assert_eq!(err.code(), "input");
    assert!(!session.finish(old).success);
    assert!(session.step(&mut new, &no_cancel()).unwrap().is_some());
}

#[test]
fn sampling_is_seeded_and_reproducible() {
    let chat = chat_model();
    let make = |seed: u64, extra: Value| {
        let mut opts = json!({"temperature": 0.9, "max_tokens": 16, "seed": seed});
        for (k, v) in extra.as_object().unwrap() {
            opts[k] = v.clone();
        }
        request(json!({"messages": [{"role": "user", "content": "Tell me a story."}], "options": opts}))
    };
    for extra in [json!({}), json!({"top_k": 20}), json!({"top_p": 0.9}), json!({"min_p": 0.05, "repetition_penalty": 1.2})] {
        let (a, ea) = run(&mut Session::new(chat.clone()), &make(42, extra.clone()));
        let (b, eb) = run(&mut Session::new(chat.clone()), &make(42, extra.clone()));
        assert!(a.success, "{:?}", a.error);
        assert_eq!(ids(&ea), ids(&eb), "{extra}");
        assert_eq!(a.response, b.response);
        assert_eq!(streamed(&ea), a.response);
        let (_, ec) = run(&mut Session::new(chat.clone()), &make(43, extra.clone()));
        assert_ne!(ids(&ea), ids(&ec), "{extra}: another seed, other tokens");
    }
    // Default options come from generation_config.json (temperature 0.3, min_p 0.15).
    let (r, _) = run(&mut Session::new(chat.clone()), &request(json!({"messages": [{"role": "user", "content": "Hi"}]})));
    assert!(r.success && r.decode_tokens >= 1 && r.decode_tokens <= 64);
}

#[test]
fn confidence_threshold_sets_cloud_handoff() {
    let chat = chat_model();
    let g = &generations()[0];
    let mut req: Request = serde_json::from_value(g["request"].clone()).unwrap();
    let ent: Vec<f64> = g["normalized_entropy"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    // Rolling means over the last min(10, n) tokens, as documented.
    let lowest = (1..=ent.len())
        .map(|n| {
            let w = &ent[n.saturating_sub(10)..n];
            1.0 - w.iter().sum::<f64>() / w.len() as f64
        })
        .fold(f64::INFINITY, f64::min);
    for (threshold, want) in [(0.0, false), (1.0, true), ((lowest - 1e-3) as f32, false), ((lowest + 1e-3) as f32, true)] {
        req.options.confidence_threshold = Some(threshold);
        let (r, _) = run(&mut Session::new(chat.clone()), &req);
        assert_eq!(r.cloud_handoff, want, "threshold {threshold} (lowest rolling confidence {lowest})");
    }
}

#[test]
fn bad_requests_fail_cleanly_and_the_session_survives() {
    let chat = chat_model();
    let mut session = Session::new(chat.clone());
    let bad = [
        ("{not json", "input"),
        (r#"{"messages": []}"#, "input"),
        (r#"{"messages": [{"role": "wizard", "content": "hi"}]}"#, "input"),
        (r#"{"messages": [{"role": "user", "content": "hi"}], "tools": ["get_weather"]}"#, "input"),
        (r#"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"name": "f", "parameters": "x"}]}"#, "input"),
        (r#"{"messages": [{"role": "user", "content": "hi"}], "options": {"temperature": -1}}"#, "input"),
        (r#"{"messages": [{"role": "user", "content": "hi"}], "options": {"top_p": 7}}"#, "input"),
        (r#"{"messages": [{"role": "user", "content": "hi"}], "options": {"max_tokens": "many"}}"#, "input"),
        (r#"{"messages": [{"role": "user", "content": {"text": "hi"}}]}"#, "input"),
    ];
    for (json, code) in bad {
        let r = session.complete_json(json, |_| panic!("no tokens for a bad request"), &no_cancel());
        assert!(!r.success, "{json}");
        assert_eq!(r.error_code.as_deref(), Some(code), "{json}: {:?}", r.error);
        assert!(!r.error.as_deref().unwrap_or_default().is_empty());
        assert_eq!((r.decode_tokens, r.finish_reason), (0, None));
    }
    let g = &generations()[0];
    let r = session.complete_json(&g["request"].to_string(), |_| true, &no_cancel());
    assert_eq!(r.response, g["text"].as_str().unwrap());
}

#[test]
fn sessions_share_one_model_across_threads() {
    let chat = chat_model();
    let g = generations();
    std::thread::scope(|scope| {
        let handles: Vec<_> = g
            .iter()
            .map(|g| {
                let chat: Arc<ChatModel> = chat.clone();
                scope.spawn(move || {
                    let req: Request = serde_json::from_value(g["request"].clone()).unwrap();
                    let (r, events) = run(&mut Session::new(chat), &req);
                    (ids(&events), r.response, u32s(&g["tokens"]), g["text"].as_str().unwrap().to_string())
                })
            })
            .collect();
        for h in handles {
            let (got, text, want, want_text) = h.join().unwrap();
            assert_eq!((got, text), (want, want_text));
        }
    });
}

#[test]
fn tool_calls_are_parsed_from_the_output_stream() {
    let chat = chat_model();
    let tok = &chat.tokenizer;
    let feed = |text: &str, declared: &[&str], stops: &[&str]| {
        let ids = tok.encode(text).unwrap();
        let declared = declared.iter().map(|s| s.to_string()).collect();
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut p = OutputProcessor::new(&chat, declared, &stops, false, false);
        let mut out = String::new();
        let mut flags = Vec::new();
        let mut finish = None;
        for id in ids {
            let step = p.push(id).unwrap();
            out.push_str(&step.text);
            flags.push(step.in_tool_call);
            if step.finish.is_some() {
                finish = step.finish;
                break;
            }
        }
        if finish != Some(FinishReason::StopSequence) {
            out.push_str(&p.finish().unwrap().0);
        }
        (out, p.calls, p.errors, flags, finish)
    };
    let (text, calls, errors, flags, finish) = feed(
        "Sure, checking.<|tool_call_start|>[get_weather(city=\"Paris\", days=3, hourly=True, at=[\"9:00\", \"12:00\"])]<|tool_call_end|> Done 🌵.<|im_end|>",
        &["get_weather"],
        &[],
    );
    assert_eq!(text, "Sure, checking. Done 🌵.");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].name, "get_weather");
    assert_eq!(Value::Object(calls[0].arguments.clone()), json!({"city": "Paris", "days": 3, "hourly": true, "at": ["9:00", "12:00"]}));
    assert!(flags.iter().any(|f| *f) && !flags[0]);
    assert_eq!(finish, Some(FinishReason::Stop));

    // JSON calls, an undeclared tool, a malformed call, an unterminated call.
    let (_, calls, errors, _, _) = feed(
        r#"<|tool_call_start|>[{"name": "get_weather", "arguments": {"city": "Tōkyō"}}, {"name": "rm_rf", "arguments": {}}]<|tool_call_end|>"#,
        &["get_weather"],
        &[],
    );
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].arguments["city"], json!("Tōkyō"));
    assert!(errors.len() == 1 && errors[0].contains("rm_rf"), "{errors:?}");
    let (text, calls, errors, _, _) = feed("<|tool_call_start|>[get_weather(city=]<|tool_call_end|>ok", &["get_weather"], &[]);
    assert!(calls.is_empty() && errors[0].contains("malformed"), "{errors:?}");
    assert_eq!(text, "ok");
    let (_, calls, errors, _, _) = feed("<|tool_call_start|>[get_weather(city=\"Rome\")]", &["get_weather"], &[]);
    assert_eq!(calls.len(), 1, "a call the model never closed is still parsed");
    assert!(errors[0].contains("never closed"));
    // Stop sequences apply to the text, not to the tool call.
    let (text, calls, _, _, finish) = feed("A<|tool_call_start|>[get_weather(city=\"STOP\")]<|tool_call_end|>B STOP C", &["get_weather"], &["STOP"]);
    assert_eq!((text.as_str(), calls.len(), finish), ("AB ", 1, Some(FinishReason::StopSequence)));
}

#[test]
fn multi_turn_tool_use_renders_calls_into_the_history() {
    // The LFM2 template ignores `tool_calls`: the engine writes them into the assistant turn,
    // as LFM2 emits them, so the next prompt shows the call.
    let chat = chat_model();
    let req = request(json!({
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
            {"role": "tool", "content": "{\"temp\": 21}"}
        ],
        "tools": [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "options": {"temperature": 0, "max_tokens": 4}
    }));
    let text = chat.render(&req, None).unwrap();
    assert!(text.contains("<|im_start|>assistant\n<|tool_call_start|>[get_weather(city=\"Paris\")]<|tool_call_end|><|im_end|>"), "{text}");
    assert!(text.contains("<|tool_response_start|>{\"temp\": 21}<|tool_response_end|>"));
    let (r, _) = run(&mut Session::new(chat), &req);
    assert!(r.success);
}

#[test]
fn a_model_without_a_tokenizer_is_a_clear_error() {
    let model = saguaro_host::loader::load_model_portable(&saguaro_tests::fixture_path("hybrid-gqa")).unwrap();
    let err = ChatModel::new(Arc::new(model)).unwrap_err();
    assert_eq!(err.code(), "format");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}
