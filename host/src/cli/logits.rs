//! `saguaro logits`: the logits of every input position of a prompt given as token ids, as
//! JSON: {"logits": [[...], ...]}.

use std::path::PathBuf;

use clap::Args;
use saguaro_engine::{LogitsMode, Result};
use saguaro_host::runtime::verify_if;
use serde::Serialize;

use super::args::{parse_tokens, EngineArgs, ThreadArgs};
use super::print::print_json;

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

#[derive(Serialize)]
struct LogitsOutput<'a> {
    logits: Vec<&'a [f32]>,
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

/// `logits --engine component`: the same rows, computed inside the component.
#[cfg(feature = "component")]
fn logits_component(args: &LogitsArgs, tokens: &[u32]) -> Result<()> {
    let mut model = args.engine.load_component(&args.model)?;
    let logits = model.logits(tokens)?;
    let vocab = model.info().vocab_size as usize;
    if vocab == 0 || logits.len() != tokens.len() * vocab {
        return Err(saguaro_engine::Error::Io(format!(
            "the component returned {} logits for {} tokens of a {vocab}-token vocabulary",
            logits.len(),
            tokens.len()
        )));
    }
    print_json(&LogitsOutput { logits: logits.chunks_exact(vocab).collect() })
}

#[cfg(not(feature = "component"))]
fn logits_component(_: &LogitsArgs, _: &[u32]) -> Result<()> {
    Err(super::args::unavailable())
}
