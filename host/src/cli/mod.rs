//! Command-line interface. Each subcommand lives in its own module; they share the
//! argument parsing helpers here.

mod run;

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
