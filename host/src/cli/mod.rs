//! Command-line interface. Each subcommand lives in its own module; they share the
//! argument parsing helpers here.

mod bench;
mod chat;
mod convert;
mod engine;
mod info;
mod run;
mod serve;
mod verify;
mod tokenize;

use std::process::ExitCode;

use clap::{Parser, Subcommand};


pub use run::{GenerateArgs, LogitsArgs};

/// Saguaro: LFM2 language models on the CPUs people already have.
#[derive(Debug, Parser)]
#[command(name = "saguaro", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the logits of every input position as JSON: {"logits": [[...], ...]}.
    Logits(LogitsArgs),
    /// Generate tokens after a prompt given as token ids.
    Generate(GenerateArgs),
    /// Convert a Hugging Face folder or a GGUF file to a .cact model file.
    Convert(convert::ConvertArgs),
    /// Download a model from the Hugging Face hub and convert it to .cact.
    Pull(convert::PullArgs),
    /// Write a .cact with deterministic random weights of a published LFM2 shape.
    Synth(convert::SynthArgs),
    /// Measure prefill/decode speed, time to first token, open time and memory.
    Bench(bench::BenchArgs),
    /// Describe a .cact file (config, parameters, tensors) and/or this CPU's kernels.
    Info(info::InfoArgs),
    /// Answer a chat request (JSON from a file or stdin) with the response JSON.
    Complete(chat::CompleteArgs),
    /// Chat interactively with a model (streaming; /reset, /exit).
    Chat(chat::ChatArgs),
    /// Answer one prompt (default model: the bundled chat fixture).
    Run(chat::RunArgs),
    /// Serve the model over HTTP with OpenAI's API (chat completions, completions, models).
    Serve(serve::ServeArgs),
    /// Check a .cact file's checksums (every tensor, the manifest, the tokenizer files).
    Verify(verify::VerifyArgs),
    /// Print the token ids of a text (tokenizer of a .cact, a GGUF or a Hugging Face folder).
    Tokenize(tokenize::TokenizeArgs),
}

pub fn main() -> ExitCode {
    // Usage errors exit 1 like every other error (help and --version exit 0).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    let result = match cli.command {
        Command::Logits(args) => run::logits(args),
        Command::Generate(args) => run::generate(args),
        Command::Convert(args) => convert::convert(args),
        Command::Synth(args) => convert::synth(args),
        Command::Pull(args) => convert::pull(args),
        Command::Info(args) => info::info(args),
        Command::Bench(args) => bench::bench(args),
        Command::Complete(args) => chat::complete(args),
        Command::Chat(args) => chat::chat(args),
        Command::Run(args) => chat::run(args),
        Command::Serve(args) => serve::serve(args),
        Command::Verify(args) => verify::verify(args),
        Command::Tokenize(args) => tokenize::tokenize(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Parses `1,2,3` into token ids with an error that names the bad item.
pub fn parse_tokens(text: &str) -> saguaro_engine::Result<Vec<u32>> {
    let text = text.trim();
    if text.is_empty() {
        return Err(saguaro_engine::Error::Input("the token list is empty".into()));
    }
    text.split(',')
        .map(|item| {
            let item = item.trim();
            item.parse::<u32>().map_err(|_| {
                saguaro_engine::Error::Input(format!("`{item}` is not a token id (expected e.g. --tokens 1,2,3)"))
            })
        })
        .collect()
}

/// Writes output to stdout; a closed pipe (`saguaro info m.cact | head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> saguaro_engine::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(saguaro_engine::Error::Io(format!("stdout: {e}")))
        }
        _ => Ok(()),
    }
}
