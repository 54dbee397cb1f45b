//! `saguaro convert` and `saguaro synth`.

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
