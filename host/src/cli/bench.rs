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

    let prompt = bench_prompt(model.config.vocab_size as u32, args.prefill);
    let mut state = model.new_state();
    let start = Instant::now();
    let logits = model.forward(&mut state, &prompt, LogitsMode::Last)?;
    let mut next = argmax(&logits) as u32;
    let ttft = start.elapsed().as_secs_f64();

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
    let extra = json!({"rss_file_mb": after.rss_file as f64 / MB, "bytes_per_decode_token": weight_bytes + kv_bytes});
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
