//! Command-line interface: argument parsing and printing only.
//!
//! The rule: `host/src/X.rs` holds the logic of a command (usable as a library, documented
//! there); `host/src/cli/X.rs` only parses the command's arguments, calls that logic and prints
//! the result. Commands that are nothing but input and output around engine calls (`chat`'s
//! read loop, `info`, `tokenize`, ...) have no library half.
//!
//! One file per subcommand, named after it: `complete`, `chat`, `run`, `logits`, `generate`,
//! `bench`, `info`, `serve`, `verify`, `tokenize`; `convert.rs` holds `convert`, `pull` and
//! `synth` (see its doc). Shared by several commands: [`args`] (threads, `--verify`,
//! `--engine`, the parsers of `--tokens` and `--preset`) and [`print`] (stdout, JSON lines,
//! streamed answers). What a session runs with on this machine (clock and memory hooks,
//! opening a model with thread settings) is not the CLI's: it is `saguaro_host::runtime`.

mod args;
mod bench;
mod chat;
mod complete;
mod convert;
mod generate;
mod info;
mod logits;
mod print;
mod run;
mod serve;
mod tokenize;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use generate::GenerateArgs;
pub use logits::LogitsArgs;

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
    Complete(complete::CompleteArgs),
    /// Chat interactively with a model (streaming; /reset, /exit).
    Chat(chat::ChatArgs),
    /// Answer one prompt (default model: the bundled chat fixture).
    Run(run::RunArgs),
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
        Command::Logits(args) => logits::logits(args),
        Command::Generate(args) => generate::generate(args),
        Command::Convert(args) => convert::convert(args),
        Command::Synth(args) => convert::synth(args),
        Command::Pull(args) => convert::pull(args),
        Command::Info(args) => info::info(args),
        Command::Bench(args) => bench::bench(args),
        Command::Complete(args) => complete::complete(args),
        Command::Chat(args) => chat::chat(args),
        Command::Run(args) => run::run(args),
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
