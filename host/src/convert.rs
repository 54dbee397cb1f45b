//! `saguaro convert`, `saguaro pull` and `saguaro synth`: write `.cact` files from Hugging Face
//! folders (local, or downloaded first), GGUF files or synthetic weights, streaming tensor by
//! tensor, with a progress bar. The output is never one of the inputs and is written whole or
//! not at all ([`crate::output`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use saguaro_engine::convert::{convert, Extras, Quant};
use saguaro_engine::synth::{shape_config, SynthSource};
use saguaro_engine::weights::TensorSource;
use saguaro_engine::{Error, Lfm2Config, Result};
use serde_json::Value;

use crate::hub::{download_model, HubOptions};
use crate::loader::{map_file, HfFolder};
use crate::output::{check_output, PartialOutput};

/// Converts `src` (a Hugging Face folder or a GGUF file) to a `.cact` at `out`. Refuses an
/// `out` that is `src`, a link to it, or inside it, before reading anything.
pub fn convert_path(src: &Path, out: &Path, quant: Quant, show_progress: bool) -> Result<()> {
    if src.exists() {
        check_output(out, &[src])?;
    }
    if src.is_dir() {
        let folder = HfFolder::open(src)?;
        let source = folder.source()?;
        write_cact(out, &folder.config, &source, quant, &folder.extras(), show_progress)
    } else if src.is_file() {
        let blob = map_file(src)?;
        let bytes: &[u8] = (*blob).as_ref();
        if saguaro_engine::format::is_cact(bytes) {
            Err(Error::Input(format!(
                "{} is already a .cact model file: convert reads a Hugging Face model folder or a GGUF file \
                 (`saguaro info` describes a .cact file)",
                src.display()
            )))
        } else if bytes.starts_with(b"GGUF") {
            let gguf = crate::gguf::GgufFile::parse(bytes).map_err(|e| with_source(e, src))?;
            let config = gguf.model_config()?;
            let (extras, warning) = gguf_extras(&gguf, src);
            if let Some(why) = warning {
                eprintln!("warning: {}: the GGUF's tokenizer is not stored in the .cact: {why}", src.display());
            }
            write_cact(out, &config, &gguf, quant, &extras, show_progress)
        } else {
            Err(Error::Format(format!("{}: not a GGUF file and not a model folder", src.display())))
        }
    } else {
        Err(Error::Io(format!("{}: no such file or folder", src.display())))
    }
}

/// Downloads `repo_id` at `revision` (default: main) with `hub`'s settings and converts it to
/// `output`, by default `<name>-<quant>.cact` in the current folder. Returns the file written.
pub fn pull(
    repo_id: &str,
    revision: Option<&str>,
    output: Option<PathBuf>,
    quant: Quant,
    hub: &HubOptions,
    show_progress: bool,
) -> Result<PathBuf> {
    let folder = download_model(repo_id, revision, hub)?;
    let output = output.unwrap_or_else(|| {
        let name = repo_id.rsplit('/').next().unwrap_or("model");
        PathBuf::from(format!("{name}-{}.cact", quant.name()))
    });
    convert_path(&folder, &output, quant, show_progress)?;
    Ok(output)
}

/// Names the GGUF file in a format error (the reader's messages name only the field).
fn with_source(e: Error, src: &Path) -> Error {
    match e {
        Error::Format(m) => Error::Format(format!("{}: {m}", src.display())),
        other => other,
    }
}

/// What a `.cact` made from a GGUF carries besides tensors: when the file has a tokenizer
/// (`tokenizer.ggml.model`), its tokenizer.json and tokenizer_config.json (rebuilt from the
/// metadata, see [`crate::gguf::tokenizer`]), its chat template and a generation_config.json with
/// its BOS / end-of-generation / padding ids, so the converted model is self-contained. A
/// tokenizer that cannot be rebuilt (llama.cpp could not load it either: a `gpt2` vocabulary
/// without merges, an unknown pre-tokenizer type, ...) is left out, with the reason as the
/// second value: the weights still convert.
pub fn gguf_extras(gguf: &crate::gguf::GgufFile<'_>, src: &Path) -> (Extras, Option<String>) {
    let mut extras = Extras { source: Some(src.display().to_string()), ..Extras::default() };
    if gguf.get("tokenizer.ggml.model").is_none() {
        return (extras, None);
    }
    // Loading it once proves the files are usable before anything is written.
    match gguf.tokenizer().and_then(|tok| tok.load().map(|_| tok)) {
        Ok(tok) => {
            extras.files = tok.files();
            extras.chat_template = tok.chat_template.clone();
            extras.generation_config = Some(tok.generation_config());
            (extras, None)
        }
        Err(e) => (extras, Some(e.to_string())),
    }
}

/// Writes a synthetic model of a published shape.
pub fn synth(shape: &str, quant: Quant, seed: u64, out: &Path, show_progress: bool) -> Result<()> {
    let config_json = shape_config(shape)?;
    check_output(out, &[])?;
    let config = Lfm2Config::from_json(&config_json)?;
    let source = SynthSource::new(&config, seed);
    let extras = Extras { source: Some(format!("synthetic {shape}, seed {seed}")), ..Extras::default() };
    write_cact(out, &config_json, &source, quant, &extras, show_progress)
}

/// Streams a conversion into `out` through a temporary file renamed on success, so a
/// failed or interrupted conversion never leaves a half-written model behind (and an existing
/// `out` is replaced only by a complete file).
pub fn write_cact(
    out: &Path,
    config: &Value,
    source: &dyn TensorSource,
    quant: Quant,
    extras: &Extras,
    show_progress: bool,
) -> Result<()> {
    let partial = PartialOutput::create(out)?;
    let file = partial.file().try_clone().map_err(|e| partial.io_error(e))?;
    let bar = if show_progress { ProgressBar::new(0) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} tensors {msg}")
            .expect("valid template"),
    );
    let result = convert(config, source, quant, extras, BufWriter::with_capacity(1 << 20, file), &mut |done, total, name| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(name.to_string());
    })
    .and_then(|w| w.into_inner().map_err(|e| partial.io_error(e.error())));
    bar.finish_and_clear();
    // The writer's own I/O errors say "writing model file": name the user's path instead.
    let file = result.map_err(|e| match e {
        Error::Io(m) => partial.io_error(m.trim_start_matches("writing model file: ")),
        other => other,
    })?;
    drop(file);
    partial.commit()
}

/// Writes `bytes` to `path` (small helper for tests and tools).
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    f.write_all(bytes).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}
