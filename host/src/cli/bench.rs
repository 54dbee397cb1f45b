//! `saguaro bench`: prefill and decode speed, time to first token, open time and memory of
//! one model on this machine (benches/run.sh records the results).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use saguaro_engine::math::argmax;
use saguaro_engine::{Error, LogitsMode, Result};
use saguaro_host::bench::{memory, read_bandwidth, Memory, MB};
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A .cact model (e.g. from `saguaro synth`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Prompt length (random token ids).
    #[arg(long, default_value_t = 1024)]
    prefill: usize,
    /// Tokens to decode after the prompt (greedy, one at a time).
    #[arg(long, default_value_t = 100)]
    decode: usize,
    #[command(flatten)]
    threads: super::run::ThreadArgs,
    #[command(flatten)]
    engine: super::engine::EngineArgs,
    /// Instead of a model, measure single-thread memory read bandwidth (GB/s).
    #[arg(long)]
    bandwidth: bool,
    /// Also decode `--decode` tokens under the token masks of this JSON Schema (native
    /// engine), over a synthetic byte-level vocabulary of the model's size (synthetic models
    /// carry no tokenizer), and report the mask cost per token next to the plain decode.
    #[arg(long, value_name = "FILE")]
    json_schema: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if args.bandwidth {
        let gbs = read_bandwidth(1 << 30, 5) / 1e9;
        let out = json!({"read_bandwidth_gbs": gbs});
        return super::write_stdout(format!("{}\n", if args.json { out.to_string() } else { format!("read bandwidth {gbs:.2} GB/s") }).as_bytes());
    }
    let path = args.model.as_ref().ok_or_else(|| Error::Input("give --model (or --bandwidth)".into()))?;
    if args.prefill == 0 {
        return Err(Error::Input("--prefill must be at least 1".into()));
    }
    if args.engine.is_component()? {
        super::run::verify_if(args.threads.verify, path)?;
        return bench_component(&args, path);
    }
    let before = memory();
    let start = Instant::now();
    let model = args.threads.load(path)?;
    let open_ms = start.elapsed().as_secs_f64() * 1e3;
    let after_open = memory();
    check_fits(&args, model.config.max_position_embeddings)?;

    let schema = match &args.json_schema {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::Io(format!("{}: {e}", p.display())))?;
            Some(serde_json::from_str::<Value>(&text).map_err(|e| Error::Input(format!("{}: not JSON: {e}", p.display())))?)
        }
        None => None,
    };
    let prompt = bench_prompt(model.config.vocab_size as u32, args.prefill);
    let mut state = model.new_state();
    let start = Instant::now();
    let logits = model.forward(&mut state, &prompt, LogitsMode::Last)?;
    let mut next = argmax(&logits) as u32;
    let ttft = start.elapsed().as_secs_f64();
    let prefilled = schema.as_ref().map(|_| (state.clone(), logits.clone()));

    let start = Instant::now();
    for _ in 0..args.decode {
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
    let mean_pos = args.prefill + args.decode / 2;
    let kv_bytes = (attn_layers * mean_pos * c.num_kv_heads * c.head_dim * 2 * 4) as u64;

    let speeds = Speeds { ttft, decode_secs, open_ms, before, after_open, after };
    let threads = (model.threads.prefill.threads(), model.threads.decode.threads());
    let mut extra = json!({"rss_file_mb": after.rss_file as f64 / MB, "bytes_per_decode_token": weight_bytes + kv_bytes});
    if let (Some(schema), Some((state, logits))) = (&schema, prefilled) {
        let c = bench_constrained(&model, schema, state, logits, args.decode)?;
        let plain_ms = decode_secs * 1e3 / args.decode.max(1) as f64;
        if let (Some(out), Value::Object(c)) = (extra.as_object_mut(), c) {
            let mask_ms = c.get("mask_ms_mean").and_then(Value::as_f64).unwrap_or(0.0);
            out.extend(c);
            out.insert("json_schema".into(), json!(args.json_schema.as_ref().map(|p| p.display().to_string())));
            out.insert("mask_cost_pct_of_decode".into(), json!(100.0 * mask_ms / plain_ms));
        }
    }
    report(&args, path, "native", model.kernels.tier, threads, &speeds, extra)
}

/// Refuses --prefill + --decode past the model's context (named, instead of a context error
/// half-way through the measurement).
fn check_fits(args: &BenchArgs, context: usize) -> Result<()> {
    match args.prefill.checked_add(args.decode) {
        Some(n) if n <= context => Ok(()),
        _ => Err(Error::Input(format!(
            "--prefill {} + --decode {} tokens do not fit in the model's context of {context} positions",
            args.prefill, args.decode
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

/// Prints the bench's JSON: the fields every engine reports, then `extra`.
fn report(args: &BenchArgs, path: &Path, surface: &str, kernels: &str, threads: (usize, usize), m: &Speeds, extra: Value) -> Result<()> {
    let mut out = json!({
        "model": path.display().to_string(),
        "surface": surface,
        "kernels": kernels,
        "prefill_threads": threads.0,
        "decode_threads": threads.1,
        "prefill_tokens": args.prefill,
        "decode_tokens": args.decode,
        "prefill_tps": args.prefill as f64 / m.ttft,
        "decode_tps": if args.decode > 0 { args.decode as f64 / m.decode_secs } else { 0.0 },
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
    let text = if args.json { format!("{out}\n") } else { format!("{}\n", serde_json::to_string_pretty(&out).unwrap_or_default()) };
    super::write_stdout(text.as_bytes())
}

/// The benchmark prompt: deterministic "random" ids avoiding the special ids below 16 (the
/// same formula in benches/wasm-node.mjs).
fn bench_prompt(vocab: u32, len: usize) -> Vec<u32> {
    let (first, span) = if vocab > 32 { (16, vocab - 16) } else { (0, vocab) };
    (0..len as u32).map(|i| first + (i.wrapping_mul(2_654_435_761) >> 8) % span).collect()
}

/// `bench --engine component`: the same measurement through the WASI component in wasmtime.
/// The interface has no per-token callback for `generate-tokens`, so it times two calls from a
/// fresh state: prefill + the first token, then prefill + 1 + `decode` tokens; decode speed is
/// `decode` over the difference. Open time includes compiling the component (or loading it from
/// the cache) and copying the file into the guest's memory.
#[cfg(feature = "component")]
fn bench_component(args: &BenchArgs, path: &std::path::Path) -> Result<()> {
    use saguaro_engine::generate::GenerateOptions;
    let before = memory();
    let start = Instant::now();
    let mut model = args.engine.load_component(path)?;
    let open_ms = start.elapsed().as_secs_f64() * 1e3;
    let after_open = memory();
    check_fits(args, model.info().max_position_embeddings as usize)?;
    let prompt = bench_prompt(model.info().vocab_size, args.prefill);
    let opts = |n: usize| GenerateOptions { max_tokens: n, temperature: 0.0, seed: 0, stop_on_eos: false };
    let start = Instant::now();
    model.generate_tokens(&prompt, &opts(1))?;
    let ttft = start.elapsed().as_secs_f64();
    let start = Instant::now();
    model.generate_tokens(&prompt, &opts(args.decode + 1))?;
    let decode_secs = (start.elapsed().as_secs_f64() - ttft).max(1e-9);
    let after = memory();
    let speeds = Speeds { ttft, decode_secs, open_ms, before, after_open, after };
    let extra = json!({"guest_memory_mb": model.memory_bytes() as f64 / MB});
    report(args, path, "component", &model.info().kernels, (1, 1), &speeds, extra)
}

#[cfg(not(feature = "component"))]
fn bench_component(_args: &BenchArgs, _path: &std::path::Path) -> Result<()> {
    Err(super::engine::unavailable())
}
