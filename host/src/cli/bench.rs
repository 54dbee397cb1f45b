//! `saguaro bench`: the arguments and the printing of the measurement in
//! host/src/bench.rs (prefill and decode speed, time to first token, open time and memory of
//! one model on this machine; benches/run.sh records the results).

use std::path::{Path, PathBuf};

use clap::Args;
use saguaro_engine::{Error, Result};
use saguaro_host::bench::{read_bandwidth, Workload};
use saguaro_host::runtime::verify_if;
use serde_json::{json, Value};

use super::args::{EngineArgs, ThreadArgs};
use super::print::write_stdout;

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
    threads: ThreadArgs,
    #[command(flatten)]
    engine: EngineArgs,
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
        return write_stdout(format!("{}\n", if args.json { out.to_string() } else { format!("read bandwidth {gbs:.2} GB/s") }).as_bytes());
    }
    let path = args.model.as_ref().ok_or_else(|| Error::Input("give --model (or --bandwidth)".into()))?;
    if args.prefill == 0 {
        return Err(Error::Input("--prefill must be at least 1".into()));
    }
    let work = Workload { prefill: args.prefill, decode: args.decode, json_schema: args.json_schema.as_deref() };
    let out = if args.engine.is_component()? {
        verify_if(args.threads.verify, path)?;
        bench_component(&args, path, &work)?
    } else {
        saguaro_host::bench::native(path, || args.threads.load(path), &work)?
    };
    let text = if args.json { format!("{out}\n") } else { format!("{}\n", serde_json::to_string_pretty(&out).unwrap_or_default()) };
    write_stdout(text.as_bytes())
}

/// `bench --engine component`: the same measurement through the WASI component in wasmtime.
#[cfg(feature = "component")]
fn bench_component(args: &BenchArgs, path: &Path, work: &Workload) -> Result<Value> {
    saguaro_host::bench::component(path, || args.engine.load_component(path), work)
}

#[cfg(not(feature = "component"))]
fn bench_component(_args: &BenchArgs, _path: &Path, _work: &Workload) -> Result<Value> {
    Err(super::args::unavailable())
}
