//! `saguaro chat`: an interactive conversation. Each line is a user turn, the answer streams to
//! stdout; `/reset` starts over, `/exit` (or end of input) quits.
//!
//! `chat` and `run` are for people trying a model, so they sample with LiquidAI's recommended
//! LFM2 values by default (`--preset lfm2`, i.e. `options.preset`), and say so in one stderr
//! line with the values in effect; `--preset none` leaves sampling to the model's
//! generation_config.json, `--preset lfm2.5` picks the LFM2.5 values, and `--temperature`
//! overrides any of them.

use std::io::{BufRead, Read};
use std::path::PathBuf;

use clap::Args;
use saguaro_engine::session::Session;
use saguaro_engine::{Error, Message, Options, Request, Result};
use saguaro_host::runtime::host_hooks;

use super::args::{parse_preset, ThreadArgs};
use super::print::{answer, preset_note, print_line, write_stdout};

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Model: a .cact file or a Hugging Face folder with tokenizer.json.
    #[arg(long)]
    model: PathBuf,
    /// System prompt of the conversation.
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
    /// Most tokens per answer (default: the model's).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Seed of the sampler.
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    threads: ThreadArgs,
}

/// One line of interactive input.
enum Line {
    Text(String),
    /// The line was longer than this many bytes (the rest of it was skipped unread into memory).
    TooLong(usize),
    End,
}

/// Reads one line of at most `limit` bytes: a longer line is consumed and dropped without
/// holding it in memory.
fn read_line_limited(input: &mut impl BufRead, limit: usize) -> Result<Line> {
    let io = |e: std::io::Error| Error::Io(format!("stdin: {e}"));
    let mut bytes = Vec::new();
    let n = input.by_ref().take(limit as u64 + 1).read_until(b'\n', &mut bytes).map_err(io)?;
    if n == 0 {
        return Ok(Line::End);
    }
    if bytes.len() > limit && bytes.last() != Some(&b'\n') {
        // Skip to the end of the line, a buffer at a time.
        loop {
            let buf = input.fill_buf().map_err(io)?;
            if buf.is_empty() {
                break;
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    input.consume(i + 1);
                    break;
                }
                None => {
                    let len = buf.len();
                    input.consume(len);
                }
            }
        }
        return Ok(Line::TooLong(limit));
    }
    Ok(Line::Text(String::from_utf8_lossy(&bytes).into_owned()))
}

pub fn chat(args: ChatArgs) -> Result<()> {
    let preset = parse_preset(&args.preset)?;
    let chat = args.threads.options().load_chat(&args.model)?;
    let options = Options { preset, temperature: args.temperature, max_tokens: args.max_tokens, seed: args.seed, ..Default::default() };
    if let Some(note) = preset_note(&chat, &options)? {
        eprintln!("{note}");
    }
    let mut session = Session::new(chat).with_hooks(host_hooks());
    let fresh = || -> Vec<Message> { args.system.iter().map(|s| Message::system(s.clone())).collect() };
    let mut messages = fresh();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    loop {
        write_stdout(b"> ")?;
        let line = match read_line_limited(&mut input, saguaro_engine::api::DEFAULT_MAX_REQUEST_BYTES)? {
            Line::End => break,
            Line::TooLong(n) => {
                // The turn is refused; the conversation goes on.
                eprintln!("error: the line is more than {n} bytes; a chat turn must be shorter");
                continue;
            }
            Line::Text(line) => line,
        };
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages = fresh();
                session.reset();
                print_line("(conversation reset)")?;
                continue;
            }
            _ => {}
        }
        messages.push(Message::user(text));
        let request = Request { messages: messages.clone(), tools: None, tool_choice: None, parallel_tool_calls: None, options: options.clone() };
        match answer(&mut session, &request) {
            Ok(r) => {
                let mut reply = Message::assistant(r.response.clone());
                if !r.function_calls.is_empty() {
                    let calls = r.function_calls.iter().map(|c| serde_json::json!({"name": c.name, "arguments": c.arguments})).collect();
                    reply.tool_calls = Some(calls);
                    print_line(&format!("(tool calls: {})", serde_json::to_string(&r.function_calls).unwrap_or_default()))?;
                }
                messages.push(reply);
            }
            Err(e) => {
                // The conversation goes on: the failed turn is dropped.
                messages.pop();
                eprintln!("error: {e}");
            }
        }
    }
    Ok(())
}
