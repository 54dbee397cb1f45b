//! `saguaro logits` and `saguaro generate`: the low-level commands over token ids.

use std::path::PathBuf;

use clap::Args;
use saguaro_engine::generate::{generate as generate_tokens, GenerateOptions};
use saguaro_engine::{Error, LogitsMode, Result};
use serde::Serialize;

use super::{parse_tokens, write_stdout};

/// Where the work runs.
#[derive(Debug, Args)]
pub struct ThreadArgs {
    /// Prefill threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Decode threads (decode is memory-bound: 1 is usually fastest).
    #[arg(long, default_value_t = 1)]
    pub decode_threads: usize,
}

impl ThreadArgs {
    /// Loads a model and applies the thread settings.
    pub fn load(&self, path: &std::path::Path) -> Result<saguaro_engine::Model> {
        let mut model = saguaro_host::load_model(path)?;
        model.set_threads(saguaro_host::threads::make_threads(self.threads, self.decode_threads)?);
        Ok(model)
    }
}

#[derive(Debug, Args)]
pub struct LogitsArgs {
    /// Model: a .cact file or a Hugging Face folder (config.json + safetensors).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    threads: ThreadArgs,
    /// Input token ids, comma separated: 1,2,3.
    #[arg(long)]
    tokens: String,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model: a .cact file or a Hugging Face folder (config.json + safetensors).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    threads: ThreadArgs,
    /// Prompt token ids, comma separated: 1,2,3.
    #[arg(long)]
    tokens: String,
    /// Number of new tokens.
    #[arg(long, default_value_t = 16)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Seed of the portable sampler (used when temperature > 0).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop after the model's end-of-sequence token.
    #[arg(long)]
    stop_on_eos: bool,
    /// Print {"tokens": [...]} instead of space-separated ids.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct LogitsOutput<'a> {
    logits: Vec<&'a [f32]>,
}

#[derive(Serialize)]
struct TokensOutput<'a> {
    tokens: &'a [u32],
}

pub fn logits(args: LogitsArgs) -> Result<()> {
    let tokens = parse_tokens(&args.tokens)?;
    let model = args.threads.load(&args.model)?;
    let mut state = model.new_state();
    let logits = model.forward(&mut state, &tokens, LogitsMode::All)?;
    let rows = logits.chunks_exact(model.config.vocab_size).collect();
    print_json(&LogitsOutput { logits: rows })
}

pub fn generate(args: GenerateArgs) -> Result<()> {
    let tokens = parse_tokens(&args.tokens)?;
    let model = args.threads.load(&args.model)?;
    model.check_tokens(&tokens)?;
    let mut state = model.new_state();
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        seed: args.seed,
        stop_on_eos: args.stop_on_eos,
    };
    let out = generate_tokens(&model, &mut state, &tokens, &opts, |_| true)?;
    if args.json {
        print_json(&TokensOutput { tokens: &out })
    } else {
        let text: Vec<String> = out.iter().map(u32::to_string).collect();
        write_stdout(format!("{}\n", text.join(" ")).as_bytes())
    }
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut text = serde_json::to_vec(value).map_err(|e| Error::Io(format!("JSON output: {e}")))?;
    text.push(b'\n');
    write_stdout(&text)
}

