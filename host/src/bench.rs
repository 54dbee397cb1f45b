//! `saguaro bench`: prefill and decode speed, time to first token, open time and memory of one
//! model on this machine, natively ([`native`]) or through the WASI component in wasmtime
//! ([`component`]), as one JSON object (benches/run.sh records the results); process memory from
//! /proc and the machine's memory read bandwidth (the ceiling decode speed is compared with).

use std::path::Path;
use std::time::Instant;

use saguaro_engine::math::argmax;
use saguaro_engine::{Error, LogitsMode, Model, Result};
use serde_json::{json, Value};

/// Resident memory of this process, in bytes (Linux; zeros elsewhere).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Memory {
    /// VmRSS: resident memory now.
    pub rss: u64,
    /// VmHWM: peak resident memory.
    pub peak_rss: u64,
    /// RssAnon: resident anonymous memory (heap, stacks): what the process allocated, as
    /// opposed to file pages of the memory-mapped model.
    pub rss_anon: u64,
    /// RssFile: resident file-backed pages (the mapped model, the binary).
    pub rss_file: u64,
}

/// Reads /proc/self/status.
pub fn memory() -> Memory {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return Memory::default() };
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Memory { rss: field("VmRSS:"), peak_rss: field("VmHWM:"), rss_anon: field("RssAnon:"), rss_file: field("RssFile:") }
}

/// Single-thread memory read bandwidth in bytes per second: the best of several passes
/// summing a buffer much larger than the caches (`bytes`, e.g. 1 GiB), read as four
/// interleaved streams (more loads in flight than one stream; measured best here).
pub fn read_bandwidth(bytes: usize, passes: usize) -> f64 {
    const STREAMS: usize = 4;
    let words = bytes / 8;
    let buf: Vec<u64> = (0..words as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    let per = words / STREAMS / 8 * 8;
    let parts: Vec<&[u64]> = (0..STREAMS).map(|s| &buf[s * per..(s + 1) * per]).collect();
    let mut best = 0.0f64;
    for _ in 0..passes {
        let start = Instant::now();
        // Independent wrapping-add accumulators per stream: trivially vectorised, so the
        // loop is bound by memory, not by arithmetic.
        let mut acc = [[0u64; 8]; STREAMS];
        let mut i = 0;
        while i + 8 <= per {
            for (a, p) in acc.iter_mut().zip(&parts) {
                for (x, &w) in a.iter_mut().zip(&p[i..i + 8]) {
                    *x = x.wrapping_add(w);
                }
            }
            i += 8;
        }
        std::hint::black_box(acc);
        let secs = start.elapsed().as_secs_f64();
        best = best.max((per * STREAMS * 8) as f64 / secs);
    }
    best
}

pub const MB: f64 = 1024.0 * 1024.0;

/// What one bench run does: a prompt of `prefill` tokens, then `decode` greedy tokens.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    pub prefill: usize,
    pub decode: usize,
    /// Native engine: also decode `decode` tokens under the token masks of the JSON Schema in
    /// this file, over a synthetic byte-level vocabulary of the model's size (synthetic models
    /// carry no tokenizer), and report the mask cost per token next to the plain decode.
    pub json_schema: Option<&'a Path>,
}

/// Measures the native engine on the model at `path`, opened by `open` (its time, `--verify`
/// included, is the open time).
pub fn native(path: &Path, open: impl FnOnce() -> Result<Model>, work: &Workload) -> Result<Value> {
    let before = memory();
    let start = Instant::now();
    let model = open()?;
    let open_ms = start.elapsed().as_secs_f64() * 1e3;
    let after_open = memory();
    check_fits(work, model.config.max_position_embeddings)?;

    let schema = match work.json_schema {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::Io(format!("{}: {e}", p.display())))?;
            Some(serde_json::from_str::<Value>(&text).map_err(|e| Error::Input(format!("{}: not JSON: {e}", p.display())))?)
        }
        None => None,
    };
    let prompt = bench_prompt(model.config.vocab_size as u32, work.prefill);
    let mut state = model.new_state();
    let start = Instant::now();
    let logits = model.forward(&mut state, &prompt, LogitsMode::Last)?;
    let mut next = argmax(&logits) as u32;
    let ttft = start.elapsed().as_secs_f64();
    let prefilled = schema.as_ref().map(|_| (state.clone(), logits.clone()));

    let start = Instant::now();
    for _ in 0..work.decode {
        let logits = model.forward(&mut state, &[next], LogitsMode::Last)?;
        next = argmax(&logits) as u32;
    }
    let decode_secs = start.elapsed().as_secs_f64();
    let after = memory();

    // Bytes one decode step reads: every tensor (the embedding is read whole as the LM
    // head) except, in MoE layers, the experts not chosen (k of E, all of equal size), plus
    // the KV cache at the mean decode position.
    let c = &model.config;
    let bytes = |t: &saguaro_engine::format::TensorEntry| t.data.length + t.scales.map_or(0, |s| s.length);
    let tensors = &model.file.manifest.tensors;
    let mut weight_bytes: u64 = tensors.iter().map(bytes).sum();
    if let Some(moe) = &c.moe {
        let expert_bytes: u64 = tensors.iter().filter(|t| t.name.contains(".feed_forward.experts.")).map(bytes).sum();
        let unused = (moe.num_experts - moe.num_experts_per_tok) as u64;
        weight_bytes -= expert_bytes / moe.num_experts as u64 * unused;
    }
    let attn_layers = c.layer_kinds.iter().filter(|k| **k == saguaro_engine::LayerKind::Attention).count();
    let mean_pos = work.prefill + work.decode / 2;
    let kv_bytes = (attn_layers * mean_pos * c.num_kv_heads * c.head_dim * 2 * 4) as u64;

    let speeds = Speeds { ttft, decode_secs, open_ms, before, after_open, after };
    let threads = (model.threads.prefill.threads(), model.threads.decode.threads());
    let mut extra = json!({"rss_file_mb": after.rss_file as f64 / MB, "bytes_per_decode_token": weight_bytes + kv_bytes});
    if let (Some(schema), Some((state, logits))) = (&schema, prefilled) {
        let c = bench_constrained(&model, schema, state, logits, work.decode)?;
        let plain_ms = decode_secs * 1e3 / work.decode.max(1) as f64;
        if let (Some(out), Value::Object(c)) = (extra.as_object_mut(), c) {
            let mask_ms = c.get("mask_ms_mean").and_then(Value::as_f64).unwrap_or(0.0);
            out.extend(c);
            out.insert("json_schema".into(), json!(work.json_schema.map(|p| p.display().to_string())));
            out.insert("mask_cost_pct_of_decode".into(), json!(100.0 * mask_ms / plain_ms));
        }
    }
    Ok(report(work, path, "native", model.kernels.tier, threads, &speeds, extra))
}

/// Refuses --prefill + --decode past the model's context (named, instead of a context error
/// half-way through the measurement).
fn check_fits(work: &Workload, context: usize) -> Result<()> {
    match work.prefill.checked_add(work.decode) {
        Some(n) if n <= context => Ok(()),
        _ => Err(Error::Input(format!(
            "--prefill {} + --decode {} tokens do not fit in the model's context of {context} positions",
            work.prefill, work.decode
        ))),
    }
}

/// Greedy decode under a JSON Schema's masks from the prefilled `state`: the time of each
/// mask step (mask, -inf fill, feeding the chosen token to the grammar) and the whole loop.
/// When a document is complete (or the model ends it) a new one starts from the same schema:
/// its compile time is reported apart, as a request pays it once.
fn bench_constrained(model: &saguaro_engine::Model, schema: &Value, mut state: saguaro_engine::State, mut logits: Vec<f32>, decode: usize) -> Result<Value> {
    use saguaro_engine::constrain::ConstraintVocab;
    use saguaro_engine::synth::synth_vocab;
    const EOS: u32 = 7;
    let vocab_size = model.config.vocab_size;
    let t = Instant::now();
    let vocab = ConstraintVocab::new(synth_vocab(vocab_size, 0), &[EOS], Some(10), Some(11))?;
    let vocab_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut compile_ms = Vec::new();
    let mut compile = || -> Result<_> {
        let t = Instant::now();
        let k = vocab.json_schema(schema)?;
        compile_ms.push(t.elapsed().as_secs_f64() * 1e3);
        Ok(k)
    };
    let mut k = compile()?;
    let (mut mask_ms, mut documents, mut forward_secs) = (Vec::with_capacity(decode), 0usize, 0.0f64);
    let start = Instant::now();
    for _ in 0..decode {
        let t = Instant::now();
        k.apply(&mut logits)?;
        let id = argmax(&logits) as u32;
        let done = id == EOS || {
            k.commit(id)?;
            k.is_complete()
        };
        mask_ms.push(t.elapsed().as_secs_f64() * 1e3);
        if done {
            documents += 1;
            k = compile()?;
        }
        let t = Instant::now();
        logits = model.forward(&mut state, &[id], LogitsMode::Last)?;
        forward_secs += t.elapsed().as_secs_f64();
    }
    let total = start.elapsed().as_secs_f64();
    let n = mask_ms.len().max(1) as f64;
    let mean = mask_ms.iter().sum::<f64>() / n;
    mask_ms.sort_by(f64::total_cmp);
    let pct = |q: f64| mask_ms.get(((mask_ms.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    Ok(json!({
        "constrained_decode_tps": decode as f64 / total,
        "constrained_forward_ms_mean": forward_secs * 1e3 / n,
        "mask_ms_mean": mean,
        "mask_ms_p50": pct(0.5),
        "mask_ms_p99": pct(0.99),
        "mask_ms_max": pct(1.0),
        "grammar_compile_ms_mean": compile_ms.iter().sum::<f64>() / compile_ms.len().max(1) as f64,
        "constraint_vocab_build_ms": vocab_ms,
        "documents_completed": documents,
    }))
}

/// What one bench run measured, on any engine.
struct Speeds {
    /// Seconds to prefill the prompt and pick the first token.
    ttft: f64,
    /// Seconds for the `decode` tokens after it.
    decode_secs: f64,
    open_ms: f64,
    before: Memory,
    after_open: Memory,
    after: Memory,
}

/// The bench's JSON: the fields every engine reports, then `extra`.
fn report(work: &Workload, path: &Path, surface: &str, kernels: &str, threads: (usize, usize), m: &Speeds, extra: Value) -> Value {
    let mut out = json!({
        "model": path.display().to_string(),
        "surface": surface,
        "kernels": kernels,
        "prefill_threads": threads.0,
        "decode_threads": threads.1,
        "prefill_tokens": work.prefill,
        "decode_tokens": work.decode,
        "prefill_tps": work.prefill as f64 / m.ttft,
        "decode_tps": if work.decode > 0 { work.decode as f64 / m.decode_secs } else { 0.0 },
        "time_to_first_token_ms": m.ttft * 1e3,
        "open_ms": m.open_ms,
        "peak_rss_mb": m.after.peak_rss as f64 / MB,
        "rss_anon_open_mb": m.after_open.rss_anon as f64 / MB,
        "rss_anon_mb": m.after.rss_anon as f64 / MB,
        "rss_anon_before_open_mb": m.before.rss_anon as f64 / MB,
    });
    if let (Some(out), Value::Object(extra)) = (out.as_object_mut(), extra) {
        out.extend(extra);
    }
    out
}

/// The benchmark prompt: deterministic "random" ids avoiding the special ids below 16 (the
/// same formula in benches/wasm-node.mjs).
fn bench_prompt(vocab: u32, len: usize) -> Vec<u32> {
    let (first, span) = if vocab > 32 { (16, vocab - 16) } else { (0, vocab) };
    (0..len as u32).map(|i| first + (i.wrapping_mul(2_654_435_761) >> 8) % span).collect()
}

/// The same measurement through the WASI component in wasmtime, opened by `open`. The
/// interface has no per-token callback for `generate-tokens`, so it times two calls from a
/// fresh state: prefill + the first token, then prefill + 1 + `decode` tokens; decode speed is
/// `decode` over the difference. Open time includes compiling the component (or loading it from
/// the cache) and copying the file into the guest's memory.
#[cfg(feature = "component")]
pub fn component(
    path: &Path,
    open: impl FnOnce() -> Result<crate::wasmtime_host::ComponentModel>,
    work: &Workload,
) -> Result<Value> {
    use saguaro_engine::generate::GenerateOptions;
    let before = memory();
    let start = Instant::now();
    let mut model = open()?;
    let open_ms = start.elapsed().as_secs_f64() * 1e3;
    let after_open = memory();
    check_fits(work, model.info().max_position_embeddings as usize)?;
    let prompt = bench_prompt(model.info().vocab_size, work.prefill);
    let opts = |n: usize| GenerateOptions { max_tokens: n, temperature: 0.0, seed: 0, stop_on_eos: false };
    let start = Instant::now();
    model.generate_tokens(&prompt, &opts(1))?;
    let ttft = start.elapsed().as_secs_f64();
    let start = Instant::now();
    model.generate_tokens(&prompt, &opts(work.decode + 1))?;
    let decode_secs = (start.elapsed().as_secs_f64() - ttft).max(1e-9);
    let after = memory();
    let speeds = Speeds { ttft, decode_secs, open_ms, before, after_open, after };
    let extra = json!({"guest_memory_mb": model.memory_bytes() as f64 / MB});
    // The epoch checks change the compiled code's speed: such rows say so.
    let surface = match model.interruption() {
        crate::wasmtime_host::Interruption::BetweenCalls => "component",
        crate::wasmtime_host::Interruption::Epoch => "component+epochs",
    };
    Ok(report(work, path, surface, &model.info().kernels, (1, 1), &speeds, extra))
}
