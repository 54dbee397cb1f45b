//! What the host lends a session: a clock (the engine has none on wasm32) and a memory probe.

use std::sync::Arc;

/// Time as the host sees it.
pub trait Clock: Send + Sync {
    /// Milliseconds from any fixed origin, never decreasing.
    fn now_ms(&self) -> f64;
    /// Seconds since 1970-01-01 UTC (for templates that print today's date), if known.
    fn unix_seconds(&self) -> Option<i64> {
        None
    }
}

/// What the host provides to a session: a clock and a memory probe.
#[derive(Clone, Default)]
pub struct Hooks {
    pub clock: Option<Arc<dyn Clock>>,
    /// Resident memory of the process in MiB.
    pub ram_usage_mb: Option<Arc<dyn Fn() -> f64 + Send + Sync>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("clock", &self.clock.is_some())
            .field("ram_usage_mb", &self.ram_usage_mb.is_some())
            .finish()
    }
}

impl Hooks {
    pub(super) fn now_ms(&self) -> f64 {
        self.clock.as_ref().map_or(0.0, |c| c.now_ms())
    }
}
