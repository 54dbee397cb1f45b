//! `saguaro tokenize`: the token ids of a text with a model's tokenizer: a `.cact` file's, a GGUF
//! file's (rebuilt from its `tokenizer.ggml.*` metadata, no conversion needed) or a Hugging Face
//! folder's. Like llama.cpp's `llama-tokenize --ids`: special tokens written in the text become
//! their ids, BOS/EOS are added as the tokenizer asks unless `--no-bos`, the output is
//! `[1, 2, 3]`.

use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use saguaro_engine::{Error, Result};

use super::print::write_stdout;

#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// Model: a .cact file, a GGUF file or a Hugging Face folder with tokenizer.json.
    #[arg(long)]
    model: PathBuf,
    /// The text (default: read from --file, else stdin, byte for byte).
    #[arg(long, short = 'p', conflicts_with = "file")]
    prompt: Option<String>,
    /// Read the text from this file, byte for byte.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Add no BOS/EOS (only the text's own tokens).
    #[arg(long)]
    no_bos: bool,
    /// Print one `id<TAB>piece` line per token (the piece as a JSON string) instead of the list.
    #[arg(long)]
    pieces: bool,
}

pub fn tokenize(args: TokenizeArgs) -> Result<()> {
    let tok = saguaro_host::loader::load_tokenizer(&args.model)?;
    let text = match (args.prompt, &args.file) {
        (Some(p), _) => p,
        (None, Some(path)) => {
            let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
            String::from_utf8(bytes).map_err(|_| Error::Input(format!("{}: the text is not UTF-8", path.display())))?
        }
        (None, None) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| Error::Io(format!("stdin: {e}")))?;
            s
        }
    };
    let ids = if args.no_bos { tok.encode(&text)? } else { tok.encode_special(&text)? };
    let mut out = String::new();
    if args.pieces {
        for &id in &ids {
            let piece = tok.decode(&[id], false)?;
            out.push_str(&format!("{id}\t{}\n", serde_json::Value::String(piece)));
        }
    } else {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        out = format!("[{}]\n", list.join(", "));
    }
    write_stdout(out.as_bytes())
}
