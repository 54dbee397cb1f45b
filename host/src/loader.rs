//! Opening models from disk: `.cact` files are memory-mapped and read in place; Hugging Face
//! folders (config.json + safetensors, single or sharded) are converted to an in-memory
//! f32 `.cact` on the fly.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use saguaro_engine::convert::Extras;
use saguaro_engine::format::{is_cact, CactFile};
use saguaro_engine::storage::Blob;
use saguaro_engine::weights::safetensors::{shard_files_from_index, SafetensorsSource};
use saguaro_engine::{Error, Model, Result};
use serde_json::Value;

/// Loads the model at `path` (a `.cact` file or a Hugging Face model folder) with this
/// CPU's best kernels (or `SAGUARO_KERNELS`) and prefill on all cores, decode on one.
pub fn load_model(path: &Path) -> Result<Model> {
    let mut model = load_model_portable(path)?;
    model.set_kernels(crate::kernels::select()?);
    model.set_threads(crate::threads::make_threads(0, 1)?);
    Ok(model)
}

/// Loads a model with the portable (scalar) kernels and no threads.
pub fn load_model_portable(path: &Path) -> Result<Model> {
    if path.is_dir() {
        let folder = HfFolder::open(path)?;
        let source = folder.source()?;
        Model::from_source(&folder.config, &source, &folder.extras())
    } else if path.is_file() {
        let blob = map_file(path)?;
        let bytes: &[u8] = (*blob).as_ref();
        if is_cact(bytes) {
            let file = CactFile::parse(blob).map_err(|e| with_path(e, path))?;
            Model::from_cact(&file).map_err(|e| with_path(e, path))
        } else {
            Err(not_cact(path, bytes))
        }
    } else {
        Err(Error::Io(format!("{}: no such file or folder", path.display())))
    }
}

/// Opens and validates a `.cact` file; errors name the path and say what it is instead (a
/// folder, another kind of file).
pub fn open_cact(path: &Path) -> Result<CactFile> {
    if path.is_dir() {
        let hint = if path.join("config.json").is_file() {
            format!(" (a Hugging Face model folder: `saguaro convert {} -o model.cact` makes one)", path.display())
        } else {
            String::new()
        };
        return Err(Error::Input(format!("{} is a folder, not a .cact file{hint}", path.display())));
    }
    if !path.exists() {
        return Err(Error::Io(format!("{}: no such file", path.display())));
    }
    let blob = map_file(path)?;
    let bytes: &[u8] = (*blob).as_ref();
    if !is_cact(bytes) {
        return Err(not_cact(path, bytes));
    }
    CactFile::parse(blob).map_err(|e| with_path(e, path))
}

/// The error for a file that is not a `.cact`: what it is instead, when that is clear.
fn not_cact(path: &Path, bytes: &[u8]) -> Error {
    let what = if bytes.starts_with(b"GGUF") {
        " is a GGUF file, not a .cact file (`saguaro convert` turns it into one)"
    } else if bytes.is_empty() {
        " is empty: not a .cact file"
    } else {
        ": not a .cact file (its first bytes are not \"CACT\") and not a model folder"
    };
    Error::Format(format!("{}{what}", path.display()))
}

/// Checks the checksums of the `.cact` file at `path` (see [`CactFile::check_integrity`]);
/// returns the number of regions checked. A folder has no checksums: an error.
pub fn verify_file(path: &Path) -> Result<usize> {
    if path.is_dir() {
        return Err(Error::Input(format!(
            "{} is a model folder, which has no checksums: verifying needs a .cact file",
            path.display()
        )));
    }
    open_cact(path)?.check_integrity().map_err(|e| with_path(e, path))
}


/// The tokenizer of a model without its weights: a `.cact` file's, a GGUF file's (rebuilt from
/// its `tokenizer.ggml.*` metadata) or a Hugging Face folder's tokenizer.json (with
/// tokenizer_config.json when present).
pub fn load_tokenizer(path: &Path) -> Result<saguaro_engine::Tokenizer> {
    if path.is_dir() {
        let json = dir_file(path, "tokenizer.json")?
            .ok_or_else(|| Error::Io(format!("{}: no tokenizer.json", path.display())))?;
        let config = dir_file(path, "tokenizer_config.json")?;
        saguaro_engine::Tokenizer::from_json(&json, config.as_deref()).map_err(|e| with_path(e, path))
    } else if path.is_file() {
        let blob = map_file(path)?;
        let bytes: &[u8] = (*blob).as_ref();
        if bytes.starts_with(b"GGUF") {
            let gguf = crate::gguf::GgufFile::parse(bytes).map_err(|e| with_path(e, path))?;
            gguf.tokenizer().and_then(|t| t.load()).map_err(|e| with_path(e, path))
        } else if is_cact(bytes) {
            let file = CactFile::parse(blob).map_err(|e| with_path(e, path))?;
            saguaro_engine::Tokenizer::from_cact(&file).map_err(|e| with_path(e, path))
        } else {
            Err(Error::Format(format!("{}: not a .cact or GGUF file and not a model folder", path.display())))
        }
    } else {
        Err(Error::Io(format!("{}: no such file or folder", path.display())))
    }
}

fn dir_file(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let p = dir.join(name);
    if p.is_file() {
        read_file(&p).map(Some)
    } else {
        Ok(None)
    }
}

/// Memory-maps a file read-only.
pub fn map_file(path: &Path) -> Result<Blob> {
    let file = File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let len = file.metadata().map_err(|e| Error::Io(format!("{}: {e}", path.display())))?.len();
    if len == 0 {
        // mmap of an empty file fails on some systems; an empty blob is equivalent.
        return Ok(Arc::new(Vec::<u8>::new()));
    }
    // SAFETY: the map is read-only and private to us. The one hazard of a file mapping is
    // another process truncating or rewriting the file while it is mapped (a SIGBUS or
    // changing bytes); model files are treated as immutable while open, as every mmap-based
    // runtime does. All reads through the map are bounds-checked slices, validated by the
    // format reader before use. Covered by the .cact loading tests (tests/tests/cact.rs).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::Io(format!("{}: mmap failed: {e}", path.display())))?;
    Ok(Arc::new(map))
}

fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
        Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
        Error::Weights(m) => Error::Weights(format!("{}: {m}", path.display())),
        other => other,
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_file(path)?).map_err(|_| Error::Format(format!("{}: not UTF-8 text", path.display())))
}

fn read_json(path: &Path) -> Result<Value> {
    serde_json::from_str(&read_text(path)?).map_err(|e| Error::Format(format!("{}: not valid JSON: {e}", path.display())))
}

/// The safetensors files of a folder: the shards named by the index, else model.safetensors.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let files = shard_files_from_index(&read_text(&index)?).map_err(|e| with_path(e, &index))?;
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(Error::Io(format!("{}: no model.safetensors or model.safetensors.index.json", dir.display())))
}

/// A Hugging Face model folder: its config, mapped weight shards and auxiliary files.
pub struct HfFolder {
    pub dir: PathBuf,
    /// config.json, parsed as JSON (LFM2 rules are applied by the engine).
    pub config: Value,
    /// (file name, mapped bytes) of each safetensors shard.
    pub shards: Vec<(String, Blob)>,
    pub generation_config: Option<Value>,
    pub chat_template: Option<String>,
    /// tokenizer.json / tokenizer_config.json, verbatim, when present.
    pub files: Vec<(String, Vec<u8>)>,
}

impl HfFolder {
    pub fn open(dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(Error::Io(format!("{}: no config.json", dir.display())));
        }
        let config_text = read_text(&config_path)?;
        let config: Value = serde_json::from_str(&config_text)
            .map_err(|e| Error::Config(format!("{}: config.json is not valid JSON: {e}", config_path.display())))?;
        // Validate early so errors name config.json rather than a later step.
        saguaro_engine::Lfm2Config::from_json(&config).map_err(|e| with_path(e, &config_path))?;

        let shards = safetensors_files(dir)?
            .iter()
            .map(|p| Ok((p.file_name().unwrap_or_default().to_string_lossy().into_owned(), map_file(p)?)))
            .collect::<Result<Vec<_>>>()?;

        let optional_json = |name: &str| -> Result<Option<Value>> {
            let p = dir.join(name);
            if p.is_file() {
                read_json(&p).map(Some)
            } else {
                Ok(None)
            }
        };
        let generation_config = optional_json("generation_config.json")?;
        let tokenizer_config = optional_json("tokenizer_config.json")?;
        // The chat template: chat_template.jinja (transformers v5), else tokenizer_config.
        let jinja = dir.join("chat_template.jinja");
        let chat_template = if jinja.is_file() {
            Some(read_text(&jinja)?)
        } else {
            tokenizer_config.as_ref().and_then(|t| t.get("chat_template")).and_then(Value::as_str).map(str::to_string)
        };
        let mut files = Vec::new();
        for name in ["tokenizer.json", "tokenizer_config.json"] {
            let p = dir.join(name);
            if p.is_file() {
                files.push((name.to_string(), read_file(&p)?));
            }
        }
        Ok(HfFolder { dir: dir.to_path_buf(), config, shards, generation_config, chat_template, files })
    }

    /// A tensor source over the mapped shards.
    pub fn source(&self) -> Result<SafetensorsSource<'_>> {
        let shards: Vec<(String, &[u8])> = self.shards.iter().map(|(n, b)| (n.clone(), (**b).as_ref())).collect();
        SafetensorsSource::new(&shards)
    }

    /// Everything besides tensors that a `.cact` made from this folder carries.
    pub fn extras(&self) -> Extras {
        Extras {
            generation_config: self.generation_config.clone(),
            chat_template: self.chat_template.clone(),
            files: self.files.clone(),
            source: Some(self.dir.display().to_string()),
        }
    }
}
