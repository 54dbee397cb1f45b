//! `saguaro convert` and `saguaro synth`: write `.cact` files from Hugging Face folders, GGUF
//! files or synthetic weights, streaming tensor by tensor, with a progress bar.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use saguaro_engine::convert::{convert, Extras, Quant};
use saguaro_engine::synth::{shape_config, SynthSource};
use saguaro_engine::weights::TensorSource;
use saguaro_engine::{Error, Lfm2Config, Result};
use serde_json::Value;

use crate::loader::{map_file, HfFolder};

/// Converts `src` (a Hugging Face folder or a GGUF file) to a `.cact` at `out`.
pub fn convert_path(src: &Path, out: &Path, quant: Quant, show_progress: bool) -> Result<()> {
    if src.is_dir() {
        let folder = HfFolder::open(src)?;
        let source = folder.source()?;
        write_cact(out, &folder.config, &source, quant, &folder.extras(), show_progress)
    } else if src.is_file() {
        let blob = map_file(src)?;
        let bytes: &[u8] = (*blob).as_ref();
        if bytes.starts_with(b"GGUF") {
            let gguf = crate::gguf::GgufFile::parse(bytes)?;
            let config = gguf.model_config()?;
            let extras = Extras { source: Some(src.display().to_string()), ..Extras::default() };
            write_cact(out, &config, &gguf, quant, &extras, show_progress)
        } else {
            Err(Error::Format(format!("{}: not a GGUF file and not a model folder", src.display())))
        }
    } else {
        Err(Error::Io(format!("{}: no such file or folder", src.display())))
    }
}

/// Writes a synthetic model of a published shape.
pub fn synth(shape: &str, quant: Quant, seed: u64, out: &Path, show_progress: bool) -> Result<()> {
    let config_json = shape_config(shape)?;
    let config = Lfm2Config::from_json(&config_json)?;
    let source = SynthSource::new(&config, seed);
    let extras = Extras { source: Some(format!("synthetic {shape}, seed {seed}")), ..Extras::default() };
    write_cact(out, &config_json, &source, quant, &extras, show_progress)
}

/// Streams a conversion into `out` through a temporary file renamed on success, so a
/// failed conversion never leaves a half-written model behind.
pub fn write_cact(
    out: &Path,
    config: &Value,
    source: &dyn TensorSource,
    quant: Quant,
    extras: &Extras,
    show_progress: bool,
) -> Result<()> {
    let tmp = temp_path(out);
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", tmp.display()));
    let file = File::create(&tmp).map_err(io)?;
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
    .and_then(|w| w.into_inner().map_err(|e| Error::Io(format!("{}: {}", tmp.display(), e.error()))))
    .and_then(|f| f.sync_all().map_err(io));
    bar.finish_and_clear();
    match result {
        Ok(()) => std::fs::rename(&tmp, out).map_err(|e| Error::Io(format!("{}: {e}", out.display()))),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn temp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".partial-{}", std::process::id()));
    out.with_file_name(name)
}

/// Writes `bytes` to `path` (small helper for tests and tools).
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    f.write_all(bytes).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}
