//! What a session on this machine runs with: the host's clock and memory probe
//! ([`host_hooks`]), and opening a model with the thread settings and the optional checksum
//! check every command and the server share ([`LoadOptions`]).

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use saguaro_engine::session::{ChatModel, Clock, Hooks};
use saguaro_engine::{Model, Result};

/// The host's clock: `Instant` for timings, the system clock for templates' dates.
struct HostClock(Instant);

impl Clock for HostClock {
    fn now_ms(&self) -> f64 {
        self.0.elapsed().as_secs_f64() * 1000.0
    }
    fn unix_seconds(&self) -> Option<i64> {
        SystemTime::now().duration_since(UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_secs()).ok())
    }
}

/// Resident memory of this process in MiB (Linux: VmRSS of /proc/self/status).
pub fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Clock and memory probe of a native host.
pub fn host_hooks() -> Hooks {
    Hooks {
        clock: Some(Arc::new(HostClock(Instant::now()))),
        ram_usage_mb: if rss_mb().is_some() { Some(Arc::new(|| rss_mb().unwrap_or(0.0))) } else { None },
    }
}

/// `--verify`: checks the model file's checksums (any engine) when `verify` is set.
pub fn verify_if(verify: bool, path: &Path) -> Result<()> {
    if verify {
        crate::loader::verify_file(path)?;
    }
    Ok(())
}

/// How a model is opened on this machine: prefill and decode threads, and whether its
/// checksums are checked first.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Prefill threads (0 = all cores).
    pub threads: usize,
    /// Decode threads.
    pub decode_threads: usize,
    /// Check the .cact file's checksums before using it (reads the whole file once).
    pub verify: bool,
}

impl LoadOptions {
    /// Loads a model (after the checksum check) and applies the thread settings.
    pub fn load(&self, path: &Path) -> Result<Model> {
        verify_if(self.verify, path)?;
        let mut model = crate::load_model(path)?;
        model.set_threads(crate::threads::make_threads(self.threads, self.decode_threads)?);
        Ok(model)
    }

    /// [`LoadOptions::load`], ready for chat sessions (template and tokenizer loaded).
    pub fn load_chat(&self, path: &Path) -> Result<Arc<ChatModel>> {
        ChatModel::new(Arc::new(self.load(path)?))
    }
}
