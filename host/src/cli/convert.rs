//! `saguaro convert`, `saguaro pull` and `saguaro synth`: the arguments and the one-line
//! report of host/src/convert.rs. The three stay in one file, as their logic does: they are
//! the three ways to write a `.cact` (from a local source, from the hub, from random weights)
//! and share `--quant`, `-o/--output` and `--quiet`.

use std::path::PathBuf;

use clap::Args;
use saguaro_engine::convert::Quant;
use saguaro_engine::Result;

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Source: a Hugging Face model folder or a GGUF file of an LFM2 model.
    src: PathBuf,
    /// Output .cact file.
    #[arg(short, long)]
    output: PathBuf,
    /// Storage of the weight matrices: f32, f16, int8 or int4.
    #[arg(long, default_value = "int8")]
    quant: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Model shape: lfm2-350m, lfm2-700m, lfm2-1.2b, lfm2-8b-a1b, lfm2-24b-a2b.
    #[arg(long)]
    shape: String,
    /// Storage of the weight matrices: int8, int4 (f32 and f16 also work).
    #[arg(long, default_value = "int8")]
    quant: String,
    /// Output .cact file.
    #[arg(short, long)]
    output: PathBuf,
    /// Seed of the deterministic random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Hugging Face repository, e.g. LiquidAI/LFM2-350M.
    repo_id: String,
    /// Branch, tag or commit (default: main).
    #[arg(long)]
    revision: Option<String>,
    /// Output .cact file (default: <name>-<quant>.cact in the current folder).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Storage of the weight matrices: f32, f16, int8 or int4.
    #[arg(long, default_value = "int8")]
    quant: String,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// Downloads a model (honouring HF_ENDPOINT, HF_TOKEN, HF_HOME/HF_HUB_CACHE and
/// HF_HUB_OFFLINE) and converts it.
pub fn pull(args: PullArgs) -> Result<()> {
    let quant: Quant = args.quant.parse()?;
    let mut opts = saguaro_host::hub::HubOptions::from_env();
    opts.progress = opts.progress && !args.quiet;
    let output = saguaro_host::convert::pull(&args.repo_id, args.revision.as_deref(), args.output, quant, &opts, !args.quiet)?;
    eprintln!("wrote {} ({} from {})", output.display(), quant.name(), args.repo_id);
    Ok(())
}

pub fn convert(args: ConvertArgs) -> Result<()> {
    let quant: Quant = args.quant.parse()?;
    saguaro_host::convert::convert_path(&args.src, &args.output, quant, !args.quiet)?;
    eprintln!("wrote {} ({})", args.output.display(), quant.name());
    Ok(())
}

pub fn synth(args: SynthArgs) -> Result<()> {
    let quant: Quant = args.quant.parse()?;
    saguaro_host::convert::synth(&args.shape, quant, args.seed, &args.output, !args.quiet)?;
    eprintln!("wrote {} ({}, {})", args.output.display(), args.shape, quant.name());
    Ok(())
}
