//! `saguaro logits` and `saguaro generate`: the low-level commands over token ids.

use std::path::PathBuf;

use clap::Args;
use saguaro_engine::generate::{generate_with_reason, GenerateOptions, Generated};
use saguaro_engine::{Error, FinishReason, LogitsMode, Result};
use serde::Serialize;

use super::engine::EngineArgs;
use super::{parse_tokens, write_stdout};

/// Where the work runs.
#[derive(Debug, Args)]
pub struct ThreadArgs {
    /// Prefill threads (0 = all cores; the native engine only).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Decode threads (decode is memory-bound: 1 is usually fastest; the native engine only).
    #[arg(long, default_value_t = 1)]
    pub decode_threads: usize,
    /// Check the .cact file's checksums before using it (reads the whole file once).
    #[arg(long)]
    pub verify: bool,
}

/// `--verify`: checks the model file's checksums (any engine).
pub fn verify_if(verify: bool, path: &std::path::Path) -> Result<()> {
    if verify {
        saguaro_host::loader::verify_file(path)?;
    }
    Ok(())
}

impl ThreadArgs {
    /// Loads a model (after `--verify`) and applies the thread settings.
    pub fn load(&self, path: &std::path::Path) -> Result<saguaro_engine::Model> {
        verify_if(self.verify, path)?;
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
    #[command(flatten)]
    engine: EngineArgs,
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
    #[command(flatten)]
    engine: EngineArgs,
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
    /// Print {"tokens": [...], "finish_reason": ...} instead of space-separated ids.
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
    /// `length`, `stop` (end of sequence with --stop-on-eos) or `context_full`.
    finish_reason: FinishReason,
}

pub fn logits(args: LogitsArgs) -> Result<()> {
    let tokens = parse_tokens(&args.tokens)?;
    if args.engine.is_component()? {
        verify_if(args.threads.verify, &args.model)?;
        return logits_component(&args, &tokens);
    }
    let model = args.threads.load(&args.model)?;
    let mut state = model.new_state();
    let logits = model.forward(&mut state, &tokens, LogitsMode::All)?;
    let rows = logits.chunks_exact(model.config.vocab_size).collect();
    print_json(&LogitsOutput { logits: rows })
}

pub fn generate(args: GenerateArgs) -> Result<()> {
    let tokens = parse_tokens(&args.tokens)?;
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        seed: args.seed,
        stop_on_eos: args.stop_on_eos,
    };
    let (out, context) = if args.engine.is_component()? {
        verify_if(args.threads.verify, &args.model)?;
        generate_component(&args, &tokens, &opts)?
    } else {
        let model = args.threads.load(&args.model)?;
        model.check_tokens(&tokens)?;
        let context = model.config.max_position_embeddings;
        let mut state = model.new_state();
        (generate_with_reason(&model, &mut state, &tokens, &opts, |_| true)?, context)
    };
    let printed = if args.json {
        print_json(&TokensOutput { tokens: &out.tokens, finish_reason: out.finish })
    } else {
        let text: Vec<String> = out.tokens.iter().map(u32::to_string).collect();
        write_stdout(format!("{}\n", text.join(" ")).as_bytes())
    };
    if out.finish == FinishReason::ContextFull {
        // Not an error: the tokens are printed; the note says why there are fewer.
        eprintln!(
            "note: finish_reason context_full: the model's context of {context} positions filled after {} generated tokens, before --max-tokens {}",
            out.tokens.len(),
            args.max_tokens
        );
    }
    printed
}

/// Why the component's generation ended: its interface returns only the tokens, and stops
/// early only at an end-of-sequence id (with stop_on_eos) or when the context is full (the last
/// token made is never run through the model, so n tokens after the prompt need n - 1 positions).
#[cfg_attr(not(feature = "component"), allow(dead_code))]
pub fn finish_of(generated: usize, max_tokens: usize, prompt: usize, context: usize) -> FinishReason {
    if generated >= max_tokens {
        FinishReason::Length
    } else if prompt + generated > context {
        FinishReason::ContextFull
    } else {
        FinishReason::Stop
    }
}

/// `logits --engine component`: the same rows, computed inside the component.
#[cfg(feature = "component")]
fn logits_component(args: &LogitsArgs, tokens: &[u32]) -> Result<()> {
    let mut model = args.engine.load_component(&args.model)?;
    let logits = model.logits(tokens)?;
    let vocab = model.info().vocab_size as usize;
    if vocab == 0 || logits.len() != tokens.len() * vocab {
        return Err(Error::Io(format!(
            "the component returned {} logits for {} tokens of a {vocab}-token vocabulary",
            logits.len(),
            tokens.len()
        )));
    }
    print_json(&LogitsOutput { logits: logits.chunks_exact(vocab).collect() })
}

#[cfg(not(feature = "component"))]
fn logits_component(_: &LogitsArgs, _: &[u32]) -> Result<()> {
    Err(super::engine::unavailable())
}

/// `generate --engine component`: the tokens, why they ended, and the model's context.
#[cfg(feature = "component")]
fn generate_component(args: &GenerateArgs, tokens: &[u32], opts: &GenerateOptions) -> Result<(Generated, usize)> {
    let mut model = args.engine.load_component(&args.model)?;
    let out = model.generate_tokens(tokens, opts)?;
    let context = model.info().max_position_embeddings as usize;
    let finish = finish_of(out.len(), opts.max_tokens, tokens.len(), context);
    Ok((Generated { tokens: out, finish }, context))
}

#[cfg(not(feature = "component"))]
fn generate_component(_: &GenerateArgs, _: &[u32], _: &GenerateOptions) -> Result<(Generated, usize)> {
    Err(super::engine::unavailable())
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut text = serde_json::to_vec(value).map_err(|e| Error::Io(format!("JSON output: {e}")))?;
    text.push(b'\n');
    write_stdout(&text)
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_finish_reasons_follow_the_native_rules() {
        // Context 8, prompt 3: the native engine makes 6 tokens before the context is full.
        assert_eq!(finish_of(6, 20, 3, 8), FinishReason::ContextFull);
        assert_eq!(finish_of(6, 6, 3, 8), FinishReason::Length);
        assert_eq!(finish_of(2, 20, 3, 8), FinishReason::Stop);
    }
}
