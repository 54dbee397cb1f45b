//! `saguaro logits`: the logits of every input position of a prompt given as token ids, as
//! JSON: {"logits": [[...], ...]}.

use clap::Args;
use saguaro_engine::{LogitsMode, Result};
use saguaro_host::runtime::verify_if;
use serde::Serialize;

use super::args::{parse_tokens, TokenRunArgs};
use super::print::print_json;

#[derive(Debug, Args)]
pub struct LogitsArgs {
    #[command(flatten)]
    run: TokenRunArgs,
}

#[derive(Serialize)]
struct LogitsOutput<'a> {
    logits: Vec<&'a [f32]>,
}

pub fn logits(args: LogitsArgs) -> Result<()> {
    let tokens = parse_tokens(&args.run.tokens)?;
    if args.run.engine.is_component()? {
        verify_if(args.run.threads.verify, &args.run.model)?;
        return logits_component(&args, &tokens);
    }
    let model = args.run.threads.load(&args.run.model)?;
    let mut state = model.new_state();
    let logits = model.forward(&mut state, &tokens, LogitsMode::All)?;
    let rows = logits.chunks_exact(model.config.vocab_size).collect();
    print_json(&LogitsOutput { logits: rows })
}

/// `logits --engine component`: the same rows, computed inside the component.
#[cfg(feature = "component")]
fn logits_component(args: &LogitsArgs, tokens: &[u32]) -> Result<()> {
    let mut model = args.run.engine.load_component(&args.run.model)?;
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
