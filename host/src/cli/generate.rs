//! `saguaro generate`: tokens after a prompt given as token ids (greedy or sampled), printed as
//! ids or as JSON with the finish reason.

use clap::Args;
use saguaro_engine::generate::{generate_with_reason, GenerateOptions, Generated};
use saguaro_engine::{FinishReason, Result};
use saguaro_host::runtime::verify_if;
use serde::Serialize;

use super::args::{parse_tokens, TokenRunArgs};
use super::print::{print_json, write_stdout};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    run: TokenRunArgs,
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
struct TokensOutput<'a> {
    tokens: &'a [u32],
    /// `length`, `stop` (end of sequence with --stop-on-eos) or `context_full`.
    finish_reason: FinishReason,
}

pub fn generate(args: GenerateArgs) -> Result<()> {
    let tokens = parse_tokens(&args.run.tokens)?;
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        seed: args.seed,
        stop_on_eos: args.stop_on_eos,
    };
    let (out, context) = if args.run.engine.is_component()? {
        verify_if(args.run.threads.verify, &args.run.model)?;
        generate_component(&args, &tokens, &opts)?
    } else {
        let model = args.run.threads.load(&args.run.model)?;
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

/// `generate --engine component`: the tokens, why they ended, and the model's context.
#[cfg(feature = "component")]
fn generate_component(args: &GenerateArgs, tokens: &[u32], opts: &GenerateOptions) -> Result<(Generated, usize)> {
    let mut model = args.run.engine.load_component(&args.run.model)?;
    let out = model.generate_tokens(tokens, opts)?;
    let context = model.info().max_position_embeddings as usize;
    let finish = finish_of(out.len(), opts.max_tokens, tokens.len(), context);
    Ok((Generated { tokens: out, finish }, context))
}

#[cfg(not(feature = "component"))]
fn generate_component(_: &GenerateArgs, _: &[u32], _: &GenerateOptions) -> Result<(Generated, usize)> {
    Err(super::args::unavailable())
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
