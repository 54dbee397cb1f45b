//! The compiled-code cache: compiling the guest with Cranelift takes seconds (release) to
//! minutes (a debug build of the host), so the native code of each component is kept in a
//! per-user cache folder, keyed by the component's bytes and the engine's compatibility hash
//! (wasmtime version and every setting that changes code generation).
//!
//! A cached file is native code that wasmtime maps and runs without verification, so it is
//! only read from the user's own cache folder (`$XDG_CACHE_HOME/saguaro/components`, else
//! `~/.cache/saguaro/components`, created private), never from next to the component (which
//! may be a shared or downloaded folder). `SAGUARO_COMPONENT_CACHE=DIR` picks another folder,
//! `SAGUARO_COMPONENT_CACHE=off` turns the cache off. Every cache failure falls back to
//! compiling: the cache can make loading faster, never make it fail.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;

/// Environment variable: the cache folder, or `off`.
pub const CACHE_ENV: &str = "SAGUARO_COMPONENT_CACHE";

/// The cache folder to use by default (None: caching is off or there is no home folder).
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os(CACHE_ENV) {
        let s = v.to_string_lossy();
        if s.is_empty() {
            // unset-like: fall through to the default
        } else if ["off", "0", "none", "false", "no"].contains(&s.to_ascii_lowercase().as_str()) {
            return None;
        } else {
            return Some(PathBuf::from(v));
        }
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| Path::new(v).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("saguaro").join("components"))
}

/// The cache file of `bytes` compiled by `engine`, in `dir`.
pub fn cache_file(dir: &Path, engine: &Engine, bytes: &[u8]) -> PathBuf {
    // 128 bits of the component's bytes (two SipHash runs with different prefixes) and 64 of
    // the engine's compatibility hash. Deserializing checks the wasmtime version and settings
    // again, so a stale or foreign entry is a miss, never a wrong load.
    let digest = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        bytes.len().hash(&mut h);
        bytes.hash(&mut h);
        h.finish()
    };
    let mut h = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!("saguaro-{:016x}{:016x}-{:016x}.cwasm", digest(1), digest(2), h.finish()))
}

/// Writes `bytes` to `path` through a temporary file renamed into place, so that concurrent
/// processes never see a partial file. Errors are returned for the caller to ignore.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}
