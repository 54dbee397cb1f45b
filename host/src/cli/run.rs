//! `saguaro run`: answers one prompt (`--prompt`, default a short question) with the model
//! given, or the bundled chat fixture model (a tiny random model: the text is noise, the
//! pipeline is real), streaming the answer to stdout and a one-line summary to stderr.
//!
//! Like `chat`, it samples with LiquidAI's recommended LFM2 values by default (`--preset lfm2`)
//! and says so on stderr; see cli/chat.rs.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use clap::Args;
use saguaro_engine::session::Session;
use saguaro_engine::{Message, Options, Request, Result};
use saguaro_host::runtime::host_hooks;

use super::args::{parse_preset, ThreadArgs};
use super::print::{answer, failure_error, preset_note, print_line};

/// The model `saguaro run` uses when none is given: the chat fixture of this source tree.
pub const BUNDLED_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/chat/model");

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Model: a .cact file or a Hugging Face folder (default: the bundled chat fixture model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The user message.
    #[arg(long, default_value = "What is the weather in Paris?")]
    prompt: String,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
    /// Sampling temperature (default: the preset's; 0 is greedy, without a repetition penalty).
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// Sampling preset: `lfm2` (LiquidAI's recommended LFM2 sampling: temperature 0.3, min_p
    /// 0.15, repetition_penalty 1.05), `lfm2.5` (temperature 0.1, top_k 50, top_p 0.1,
    /// repetition_penalty 1.05) or `none` (the model's generation_config.json, else neutral
    /// sampling). The values in effect are printed on stderr.
    #[arg(long, default_value = "lfm2", value_name = "lfm2|lfm2.5|none")]
    preset: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Seed of the sampler.
    #[arg(long)]
    seed: Option<u64>,
    /// Print the response JSON instead of the text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    threads: ThreadArgs,
}

pub fn run(args: RunArgs) -> Result<()> {
    let path = args.model.clone().unwrap_or_else(|| {
        let bundled = PathBuf::from(BUNDLED_MODEL);
        std::fs::canonicalize(&bundled).unwrap_or(bundled)
    });
    let preset = parse_preset(&args.preset)?;
    let chat = args.threads.options().load_chat(&path)?;
    let mut messages: Vec<Message> = args.system.iter().map(|s| Message::system(s.clone())).collect();
    messages.push(Message::user(args.prompt.clone()));
    let options =
        Options { preset, temperature: args.temperature, max_tokens: Some(args.max_tokens), seed: args.seed, ..Default::default() };
    if let Some(note) = preset_note(&chat, &options)? {
        eprintln!("{note}");
    }
    let mut session = Session::new(chat).with_hooks(host_hooks());
    let request = Request { messages, tools: None, tool_choice: None, parallel_tool_calls: None, options };
    if args.json {
        let r = session.complete(&request, |_| true, &AtomicBool::new(false));
        print_line(&r.to_json())?;
        return if r.success { Ok(()) } else { Err(failure_error(&r)) };
    }
    let r = answer(&mut session, &request)?;
    if r.finish_reason == Some(saguaro_engine::FinishReason::ContextFull) {
        eprintln!("note: finish_reason context_full: the model's context filled before --max-tokens {}", args.max_tokens);
    }
    eprintln!(
        "[{}: {} prompt + {} generated tokens, {:.1} ms to first token, {:.1} tok/s decode, finish {}]",
        path.display(),
        r.prefill_tokens,
        r.decode_tokens,
        r.time_to_first_token_ms,
        r.decode_tps,
        r.finish_reason.map(|f| serde_json::to_string(&f).unwrap_or_default()).unwrap_or_default().trim_matches('"')
    );
    Ok(())
}
