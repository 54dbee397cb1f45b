//! Opening a model from a path: a Hugging Face folder (config.json + safetensors, single
//! file or sharded with model.safetensors.index.json).

use std::path::{Path, PathBuf};

use saguaro_engine::weights::safetensors::{shard_files_from_index, SafetensorsSource};
use saguaro_engine::{Error, Lfm2Config, Model, Result};

/// Loads the model at `path` (a Hugging Face model folder).
pub fn load_model(path: &Path) -> Result<Model> {
    if path.is_dir() {
        load_hf_folder(path)
    } else if path.exists() {
        Err(Error::Input(format!(
            "{}: expected a Hugging Face model folder (config.json + *.safetensors)",
            path.display()
        )))
    } else {
        Err(Error::Io(format!("{}: no such file or folder", path.display())))
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_file(path)?)
        .map_err(|_| Error::Format(format!("{}: not UTF-8 text", path.display())))
}

/// The safetensors files of a folder: the shards named by the index, else model.safetensors.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let files = shard_files_from_index(&read_text(&index)?)?;
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(Error::Io(format!(
        "{}: no model.safetensors or model.safetensors.index.json",
        dir.display()
    )))
}

fn load_hf_folder(dir: &Path) -> Result<Model> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(Error::Io(format!("{}: no config.json", dir.display())));
    }
    let config = Lfm2Config::from_json_str(&read_text(&config_path)?)
        .map_err(|e| prefix_error(e, &config_path))?;
    let files = safetensors_files(dir)?;
    let buffers: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| Ok((p.file_name().unwrap_or_default().to_string_lossy().into_owned(), read_file(p)?)))
        .collect::<Result<_>>()?;
    let shards: Vec<(String, &[u8])> = buffers.iter().map(|(n, b)| (n.clone(), b.as_slice())).collect();
    let source = SafetensorsSource::new(&shards)?;
    Model::from_source(config, &source)
}

/// Adds the file name to a config error so the user knows which file to fix.
fn prefix_error(e: Error, path: &Path) -> Error {
    match e {
        Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
        other => other,
    }
}
